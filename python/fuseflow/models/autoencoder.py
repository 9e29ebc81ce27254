"""The sparse autoencoder (examples/sae.ff): 90 %-sparse weights, stored sparse."""

from __future__ import annotations

import torch
from torch import nn


class SparseAutoencoder(nn.Module):
    """enc = relu(X·We + be); Y = enc·Wd + bd, with weights pruned to `density` nonzeros (so
    `from_torch` stores them DCSR: they are mostly zero)."""

    def __init__(self, inputs: int = 256, hidden: int = 32, density: float = 0.1, seed: int = 0):
        super().__init__()
        self.encoder = nn.Linear(inputs, hidden)
        self.decoder = nn.Linear(hidden, inputs)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for lin in (self.encoder, self.decoder):
                lin.weight.mul_((torch.rand(lin.weight.shape, generator=g) < density).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.relu(self.encoder(x)))

    @staticmethod
    def example_inputs(batch: int = 32, inputs: int = 256, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, inputs, generator=g),)
