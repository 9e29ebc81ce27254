"""One GPT-3-style decoder block with BigBird attention (examples/gpt3_decoder.ff)."""

from __future__ import annotations

import torch
from torch import nn

from .attention import bigbird_mask


class QKV(nn.Module):
    """Layer norm and the query, key and value projections, split into heads by a reshape (the
    paper's first kernel, c1)."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)

    def forward(self, x):
        s, d = x.shape
        h = self.ln(x)
        return tuple(p(h).view(s, self.heads, d // self.heads).transpose(0, 1) for p in (self.q, self.k, self.v))


class Attention(nn.Module):
    """Masked multi-head attention over the heads (the paper's second kernel, c2)."""

    def forward(self, q, k, v, mask):
        nh, s, dh = q.shape
        scores = (q @ k.transpose(-1, -2)) / (dh**0.5)
        scores = scores.masked_fill(mask == 0, float("-inf"))
        ctx = torch.softmax(scores, dim=-1) @ v
        return ctx.transpose(0, 1).reshape(s, nh * dh)


class FFN(nn.Module):
    """Out-projection, residual, layer norm, FFN with ReLU, residual (the paper's third kernel,
    c3)."""

    def __init__(self, d_model: int, ff: int):
        super().__init__()
        self.out = nn.Linear(d_model, d_model)
        self.ln = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ff)
        self.fc2 = nn.Linear(ff, d_model)

    def forward(self, x, ctx):
        r = x + self.out(ctx)
        return r + self.fc2(torch.relu(self.fc1(self.ln(r))))


class GPT3DecoderBlock(nn.Module):
    """LN → masked multi-head attention → out-projection + residual → LN → FFN + residual."""

    def __init__(self, d_model: int = 32, heads: int = 2, ff: int = 64):
        super().__init__()
        self.qkv = QKV(d_model, heads)
        self.attn = Attention()
        self.ffn = FFN(d_model, ff)

    def forward(self, x, mask):
        q, k, v = self.qkv(x)
        return self.ffn(x, self.attn(q, k, v, mask))

    @staticmethod
    def example_inputs(seq: int = 32, d_model: int = 32, block: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return torch.rand(seq, d_model, generator=g), bigbird_mask(seq, block, seed=seed)
