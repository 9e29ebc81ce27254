"""Shared helpers: translate a module, run it, compare with PyTorch's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fuseflow

#: float32 tolerance: PyTorch computes in float32, FuseFlow in float64.
RTOL = 1e-4
ATOL = 1e-5


def dense(x):
    """A result as a dense numpy array."""
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def check_against_torch(model, args, fusion="unfused", formats=None, **kw):
    """Translates and runs `model(*args)`; asserts the run verified and equals PyTorch's
    forward pass; returns (program, result)."""
    prog = fuseflow.from_torch(model, args, formats=formats)
    res = prog.run(fusion=fusion, stats=False, **kw)
    assert res.verified, res.reason
    want = model(*args)
    wants = want if isinstance(want, tuple) else (want,)
    names = ["y"] if len(wants) == 1 else [f"y{k}" for k in range(len(wants))]
    for name, w in zip(names, wants):
        w = w.detach().to_dense().double().numpy() if w.layout != torch.strided else w.detach().double().numpy()
        got = dense(res.outputs[name]).reshape(w.shape)
        np.testing.assert_allclose(got, w, rtol=RTOL, atol=ATOL, err_msg=f"{name}\n{prog}")
    return prog, res


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
