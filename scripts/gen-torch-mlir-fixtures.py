#!/usr/bin/env python3
"""Writes crates/mlir/tests/fixtures/torch-mlir/: small PyTorch modules exported through
torch-mlir's FX importer to linalg-on-tensors MLIR, with their inputs and PyTorch's outputs, so
that the Rust tests (crates/cli/tests/torch_mlir.rs) check the MLIR frontend on what torch-mlir
really emits, without Python.

Not part of CI: it needs torch-mlir (PyPI `torch-mlir`, a nightly wheel) and torch, e.g.

    python3 -m venv /work/venvs/torchmlir
    /work/venvs/torchmlir/bin/pip install torch-mlir==20261001 torch numpy
    /work/venvs/torchmlir/bin/python scripts/gen-torch-mlir-fixtures.py

For every fixture NAME it writes
    NAME.mlir          torch_mlir.fx.export_and_import(..., output_type=LINALG_ON_TENSORS)
    NAME.argK.npy      the K-th argument (float32, dense; sparse arguments written dense)
    NAME.out.npy       PyTorch's result (float32)
and MANIFEST.tsv (name, arguments, the sparse layout of each argument, what it exercises).
The models come from python/fuseflow/models at tiny sizes; parameters are drawn from seed 0,
so a rerun with the same torch and torch-mlir writes the same files.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The models package alone (the `fuseflow` package itself needs its compiled extension).
sys.path.insert(0, str(ROOT / "python" / "fuseflow"))

from models import (  # noqa: E402
    BigBirdAttention,
    GCN,
    GPT3DecoderBlock,
    GraphSAGE,
    SparseAutoencoder,
    bigbird_mask,
    random_adjacency,
)


class Fn(nn.Module):
    """A module around one function (the single-op fixtures)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) - 0.25


def sparse_rand(n, m, density, seed, layout):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, m, generator=g) < density).float() * torch.rand(n, m, generator=g)
    return a.to_sparse_csr() if layout == "csr" else a.to_sparse_coo()


def fixtures():
    """(name, module, args, what it exercises)."""
    torch.manual_seed(0)
    out = []
    # The paper's models at tiny sizes.
    adj = random_adjacency(12, 0.25, seed=1)
    x = rand(12, 8, seed=2)
    out.append(("gcn", GCN(features=8, hidden=8, classes=4), (adj, x), "GCN: COO adjacency, linear, relu, softmax"))
    out.append(("gcn_csr", GCN(features=8, hidden=8, classes=4), (adj.to_sparse_csr(), x), "GCN with a CSR adjacency"))
    out.append(("graphsage", GraphSAGE(features=8, hidden=8, classes=4), (adj.to_sparse_csr(), x), "GraphSAGE (sum aggregation)"))
    out.append(("sae", SparseAutoencoder(inputs=16, hidden=8, density=0.3, seed=0), (rand(4, 16, seed=3),), "sparse autoencoder (pruned weights as dense_resource)"))
    q, k, v = (rand(2, 16, 8, seed=s) for s in (4, 5, 6))
    mask = bigbird_mask(16, block=4, seed=0)
    out.append(("attention", BigBirdAttention(head_dim=8), (q, k, v, mask), "masked attention: masked_fill(-inf) with a dense 0/1 mask"))
    out.append(("sddmm_csr", Fn(lambda m, u, w: m * (u @ w)), (sparse_rand(6, 4, 0.3, 17, "csr"), rand(6, 5, seed=18), rand(5, 4, seed=19)), "CSR mask times a dense product"))
    out.append(("gpt3_decoder", GPT3DecoderBlock(d_model=16, heads=2, ff=32), (rand(8, 16, seed=7), bigbird_mask(8, block=2, seed=0)), "GPT-3 decoder block: layer norm, heads, masked attention, FFN"))
    # Single ops.
    a, b = rand(6, 5, seed=8), rand(5, 4, seed=9)
    out.append(("matmul", Fn(torch.mm), (a, b), "linalg.matmul"))
    out.append(("spmm_csr", Fn(torch.mm), (sparse_rand(6, 5, 0.3, 10, "csr"), b), "CSR × dense"))
    out.append(("spmm_coo", Fn(torch.mm), (sparse_rand(6, 5, 0.3, 11, "coo"), b), "COO × dense"))
    out.append(("bmm", Fn(torch.bmm), (rand(2, 3, 5, seed=12), rand(2, 5, 4, seed=13)), "linalg.batch_matmul"))
    out.append(("linear", nn.Linear(5, 3), (a,), "transposed weight, broadcast bias"))
    out.append(("relu", Fn(torch.relu), (a,), "select(cmpf ugt)"))
    out.append(("gelu", Fn(nn.functional.gelu), (a,), "erf"))
    out.append(("gelu_tanh", Fn(lambda t: nn.functional.gelu(t, approximate="tanh")), (a,), "tanh GELU"))
    out.append(("softmax", Fn(lambda t: torch.softmax(t, dim=-1)), (a,), "decomposed softmax"))
    out.append(("layer_norm", nn.LayerNorm(5), (a,), "decomposed layer norm"))
    out.append(("transpose", Fn(lambda t, u: t.t() @ u), (a, rand(6, 3, seed=14)), "transpose of an argument"))
    out.append(("reshape", Fn(lambda t: (t.reshape(2, 3, 5) * 2.0).sum(0)), (a,), "expand_shape"))
    out.append(("expand", Fn(lambda t, u: t + u.expand(6, 5)), (a, rand(1, 5, seed=15)), "broadcast of a size-1 dimension"))
    out.append(("sum", Fn(lambda t: t.sum(dim=1)), (a,), "sum reduction"))
    out.append(("amax", Fn(lambda t: t.amax(dim=1)), (a,), "max reduction"))
    out.append(("mean", Fn(lambda t: t.mean(dim=0, keepdim=True)), (a,), "mean"))
    out.append(("exp_div", Fn(lambda t, u: torch.exp(t) / (u + 2.0)), (a, rand(6, 5, seed=16)), "element-wise"))
    # Attention whose mask is a multiplication (what the frontend reads), not masked_fill.
    out.append(
        (
            "attention_mul",
            Fn(lambda q, k, v, m: torch.softmax((q @ k.transpose(-1, -2)) * m / 8.0**0.5, dim=-1) @ v),
            (q, k, v, mask),
            "attention with a multiplied 0/1 mask",
        )
    )
    # One head: the head split is a size-1 expand_shape (the two-head block splits a dimension).
    out.append(("gpt3_decoder_1head", GPT3DecoderBlock(d_model=16, heads=1, ff=32), (rand(8, 16, seed=20), bigbird_mask(8, block=2, seed=0)), "GPT-3 decoder block with one head"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "crates/mlir/tests/fixtures/torch-mlir"))
    args = ap.parse_args()
    import torch_mlir
    from torch_mlir import fx
    from torch_mlir.compiler_utils import OutputType

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.mlir")) + list(out.glob("*.npy")):
        old.unlink()
    rows = []
    for name, module, xs, what in fixtures():
        module.eval()
        try:
            with torch.no_grad():
                expected = module(*xs)
        except Exception as e:  # noqa: BLE001 - recorded: what PyTorch itself cannot run
            first = str(e).strip().splitlines()[0]
            print(f"{name}: PyTorch cannot run it: {first}", file=sys.stderr)
            rows.append((name, len(xs), "-", f"NOT RUN by PyTorch: {first[:160]}"))
            continue
        try:
            m = fx.export_and_import(module, *xs, output_type=OutputType.LINALG_ON_TENSORS, func_name="forward")
        except Exception as e:  # noqa: BLE001 - recorded: what torch-mlir cannot export
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"{name}: torch-mlir cannot export it: {first}", file=sys.stderr)
            rows.append((name, len(xs), "-", f"NOT EXPORTED by torch-mlir: {first[:160]}"))
            continue
        (out / f"{name}.mlir").write_text(str(m))
        layouts = []
        for k, t in enumerate(xs):
            layouts.append({torch.sparse_csr: "csr", torch.sparse_coo: "coo"}.get(t.layout, "dense"))
            d = t.to_dense() if t.layout != torch.strided else t
            np.save(out / f"{name}.arg{k}.npy", d.detach().numpy().astype(np.float32))
        np.save(out / f"{name}.out.npy", expected.detach().to_dense().numpy().astype(np.float32))
        rows.append((name, len(xs), ",".join(layouts), what))
        print(f"{name}: ok", file=sys.stderr)
    with open(out / "MANIFEST.tsv", "w") as f:
        f.write(f"# torch-mlir {torch_mlir_version()} torch {torch.__version__}\n")
        f.write("name\targs\tlayouts\twhat\n")
        for r in rows:
            f.write("\t".join(str(c) for c in r) + "\n")


def torch_mlir_version():
    try:
        from importlib.metadata import version

        return version("torch-mlir")
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    main()
