"""Graph neural networks over a sparse adjacency (examples/gcn.ff, examples/graphsage.ff)."""

from __future__ import annotations

import torch
from torch import nn


def random_adjacency(n: int, density: float, seed: int = 0) -> torch.Tensor:
    """A 0/1 adjacency as a sparse COO tensor (no self loops, no normalisation), like the
    examples' `random(density=...)` adjacency."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, n, generator=g) < density).float()
    a.fill_diagonal_(0)
    return a.to_sparse_coo()


class GCN(nn.Module):
    """Two-layer GCN: H1 = relu(Linear1(A·X)); Y = softmax(Linear2(A·H1)) over classes."""

    def __init__(self, features: int = 24, hidden: int = 16, classes: int = 7):
        super().__init__()
        self.layer1 = nn.Linear(features, hidden)
        self.layer2 = GCNOut(hidden, classes)

    def forward(self, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.layer1(adj @ x))
        return self.layer2(adj, h)

    @staticmethod
    def example_inputs(nodes: int = 48, features: int = 24, seed: int = 0):
        """(adjacency as sparse COO, dense features) of the example's default sizes."""
        g = torch.Generator().manual_seed(seed)
        return random_adjacency(nodes, 0.08, seed), torch.rand(nodes, features, generator=g)


class GCNOut(nn.Module):
    """The GCN's second layer: softmax(Linear(A·H)) over classes."""

    def __init__(self, hidden: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(hidden, classes)

    def forward(self, adj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(adj @ h), dim=1)


class SAGELayer(nn.Module):
    """One GraphSAGE layer with sum aggregation: relu(Wn·(A·h) + Ws·h)."""

    def __init__(self, inp: int, out: int):
        super().__init__()
        self.neigh = nn.Linear(inp, out)
        self.self_ = nn.Linear(inp, out)

    def forward(self, adj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.neigh(adj @ h) + self.self_(h))


class GraphSAGE(nn.Module):
    """Two-layer GraphSAGE (sum aggregation), as examples/graphsage.ff."""

    def __init__(self, features: int = 24, hidden: int = 16, classes: int = 7):
        super().__init__()
        self.layer1 = SAGELayer(features, hidden)
        self.layer2 = SAGELayer(hidden, classes)

    def forward(self, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(adj, self.layer1(adj, x))

    example_inputs = GCN.example_inputs
