"""Multi-head attention with a BigBird block-sparse mask (examples/bigbird_attention.ff)."""

from __future__ import annotations

import torch
from torch import nn


def bigbird_mask(seq: int, block: int = 8, global_: int = 2, window: int = 1, random: int = 2, seed: int = 0):
    """A BigBird mask (band of 2·window+1 blocks, `global_` global block rows and columns,
    `random` random blocks per block row) as a dense 0/1 float tensor; pass it to a model as is
    and mark it sparse with `formats={"mask": "dcsr"}` (or pass `mask.to_sparse_csr()`)."""
    nb = seq // block
    g = torch.Generator().manual_seed(seed)
    blocks = torch.zeros(nb, nb)
    for i in range(nb):
        for j in range(max(0, i - window), min(nb, i + window + 1)):
            blocks[i, j] = 1
        for j in torch.randperm(nb, generator=g)[:random].tolist():
            blocks[i, j] = 1
    blocks[:global_, :] = 1
    blocks[:, :global_] = 1
    return blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)


class BigBirdAttention(nn.Module):
    """softmax over the mask's nonzeros of (Q·Kᵀ)/√d, times V, for Q, K, V of shape
    (heads, seq, head_dim): the paper's fused MHA kernel."""

    def __init__(self, head_dim: int = 16):
        super().__init__()
        self.scale = float(head_dim) ** 0.5

    def forward(self, q, k, v, mask):
        scores = (q @ k.transpose(-1, -2)) / self.scale
        scores = scores.masked_fill(mask == 0, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    @staticmethod
    def example_inputs(heads: int = 2, seq: int = 64, head_dim: int = 16, block: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.rand(heads, seq, head_dim, generator=g) for _ in range(3))
        return q, k, v, bigbird_mask(seq, block, seed=seed)
