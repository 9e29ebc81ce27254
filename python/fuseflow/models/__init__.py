"""The FuseFlow paper's five models as plain `torch.nn.Module`s, shaped like the hand-written
programs in `examples/` (GCN, GraphSAGE, sparse autoencoder, BigBird attention, GPT-3 decoder
block), with `example_inputs` that build inputs of the examples' default sizes.

Each module's `forward` uses only ops `fuseflow.from_torch` translates; `docs/python.md` compares
the translated programs with the hand-written ones.
"""

from .attention import BigBirdAttention, bigbird_mask
from .autoencoder import SparseAutoencoder
from .gnn import GCN, GraphSAGE, random_adjacency
from .gpt3 import GPT3DecoderBlock

__all__ = [
    "GCN",
    "GraphSAGE",
    "SparseAutoencoder",
    "BigBirdAttention",
    "GPT3DecoderBlock",
    "bigbird_mask",
    "random_adjacency",
]

#: The five models by name, as `example` builds them.
NAMES = ("gcn", "graphsage", "sae", "bigbird_attention", "gpt3_decoder")


def example(name: str, seed: int = 0):
    """`(model, args, formats)` of one of the five models at the hand-written example's default
    sizes (`examples/<name>.ff`), with parameters drawn from `seed`: what the tests, the
    fixtures (crates/cli/tests/fixtures/torch/) and the benchmarks translate."""
    import torch

    torch.manual_seed(seed)
    if name == "gcn":
        return GCN(), GCN.example_inputs(seed=seed), None
    if name == "graphsage":
        return GraphSAGE(), GraphSAGE.example_inputs(seed=seed), None
    if name == "sae":
        return SparseAutoencoder(seed=seed), SparseAutoencoder.example_inputs(seed=seed), None
    if name == "bigbird_attention":
        return BigBirdAttention(), BigBirdAttention.example_inputs(seed=seed), {"mask": "dcsr"}
    if name == "gpt3_decoder":
        return GPT3DecoderBlock(), GPT3DecoderBlock.example_inputs(seed=seed), {"mask": "dcsr"}
    raise ValueError(f"unknown model {name!r} (models: {', '.join(NAMES)})")
