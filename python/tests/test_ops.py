"""Every translated op, each against PyTorch's own result (tiny shapes: these run in ms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import check_against_torch
from torch import nn


class Fn(nn.Module):
    """A module whose forward is `fn(*args)`."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def r(*shape):
    return torch.rand(*shape) + 0.1


CASES = {
    "mm": (lambda a, b: torch.mm(a, b), (r(5, 4), r(4, 3))),
    "matmul_2d": (lambda a, b: a @ b, (r(5, 4), r(4, 3))),
    "bmm": (lambda a, b: torch.bmm(a, b), (r(2, 5, 4), r(2, 4, 3))),
    "matmul_batched": (lambda a, b: torch.matmul(a, b), (r(2, 5, 4), r(2, 4, 3))),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b), (r(3), r(5, 4), r(4, 3))),
    "add": (lambda a, b: a + b, (r(4, 3), r(4, 3))),
    "add_broadcast": (lambda a, b: a + b, (r(4, 3), r(3))),
    "add_scalar": (lambda a: a + 2.5, (r(4, 3),)),
    "sub": (lambda a, b: a - b, (r(4, 3), r(4, 3))),
    "sub_scalar": (lambda a: a - 1.5, (r(4, 3),)),
    "rsub_scalar": (lambda a: 1.5 - a, (r(4, 3),)),
    "mul": (lambda a, b: a * b, (r(4, 3), r(4, 3))),
    "mul_scalar": (lambda a: a * -3.0, (r(4, 3),)),
    "div": (lambda a, b: a / b, (r(4, 3), r(4, 3))),
    "div_scalar": (lambda a: a / 8, (r(4, 3),)),
    "relu": (lambda a: torch.relu(a - 0.5), (r(4, 3),)),
    "gelu_tanh": (lambda a: F.gelu(a - 0.5, approximate="tanh"), (r(4, 3),)),
    "gelu_exact": (lambda a: F.gelu(a - 0.5), (r(4, 3),)),
    "erf": (lambda a: torch.erf(a - 0.5), (r(4, 3),)),
    "sigmoid": (lambda a: torch.sigmoid(a), (r(4, 3),)),
    "exp": (lambda a: torch.exp(a), (r(4, 3),)),
    "rsqrt": (lambda a: torch.rsqrt(a), (r(4, 3),)),
    "neg": (lambda a: -a, (r(4, 3),)),
    "softmax": (lambda a: torch.softmax(a, dim=-1), (r(4, 5),)),
    "softmax_dim0": (lambda a: torch.softmax(a, dim=0), (r(4, 5),)),
    "sum_dim": (lambda a: a.sum(dim=1), (r(4, 5),)),
    "sum_keepdim": (lambda a: a - a.sum(dim=1, keepdim=True), (r(4, 5),)),
    "amax": (lambda a: a.amax(dim=0), (r(4, 5),)),
    "mean": (lambda a: a - a.mean(dim=-1, keepdim=True), (r(4, 5),)),
    "permute": (lambda a, b: a.permute(1, 0) @ b, (r(4, 5), r(4, 3))),
    "transpose_3d": (lambda a: torch.relu(a.transpose(0, 2)), (r(2, 3, 4),)),
    "t": (lambda a, b: a.t() + b, (r(4, 5), r(5, 4))),
    "view_split": (lambda a, b: a.view(4, 2, 3).transpose(0, 1) @ b, (r(4, 6), r(2, 3, 2))),
    "reshape_merge": (lambda a, w: a.transpose(0, 1).reshape(4, 6) @ w, (r(2, 4, 3), r(6, 2))),
    "unsqueeze_expand": (lambda a, b: a + b.unsqueeze(0).expand(4, 3), (r(4, 3), r(3))),
    "squeeze": (lambda a, b: a.sum(dim=1, keepdim=True).squeeze(1) + b, (r(4, 3), r(4))),
    "residual": (lambda a, w: a + torch.relu(a @ w), (r(4, 4), r(4, 4))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_torch(name):
    fn, args = CASES[name]
    check_against_torch(Fn(fn), args)


def test_linear_with_and_without_bias():
    check_against_torch(nn.Linear(6, 3), (r(5, 6),))
    check_against_torch(nn.Linear(6, 3, bias=False), (r(5, 6),))


def test_layer_norm_default_and_trained_affine():
    ln = nn.LayerNorm(6)
    prog, _ = check_against_torch(ln, (r(4, 6),))
    assert prog.statements == 1  # an identity affine is dropped
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    prog, _ = check_against_torch(ln, (r(4, 6),))
    assert prog.statements == 2  # the affine part is a statement of its own


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_times_dense(layout):
    a = (torch.rand(6, 6) < 0.3).float() * torch.rand(6, 6)
    a = a.to_sparse_coo() if layout == "coo" else a.to_sparse_csr()
    prog, _ = check_against_torch(Fn(lambda a, x: a @ x), (a, r(6, 3)))
    assert prog.formats["args_0"] == "dcsr"  # a sparse input is stored compressed


def test_sparse_mm_op():
    a = ((torch.rand(6, 6) < 0.3).float() * torch.rand(6, 6)).to_sparse_coo()
    check_against_torch(Fn(lambda a, x: torch.mm(a, x)), (a, r(6, 3)))


def test_masking_by_multiplication_with_a_sparse_mask():
    mask = (torch.rand(5, 5) < 0.4).float()
    prog, _ = check_against_torch(Fn(lambda s, m: torch.softmax(s * m, dim=-1)), (r(5, 5), mask),
                                  formats={"args_1": "dcsr"})  # fmt: skip
    assert " softmax(" in prog.text and "masked_softmax" not in prog.text


def test_masked_fill_softmax_is_masked_softmax():
    mask = (torch.rand(2, 5, 5) < 0.5).float()[0]
    mask.fill_diagonal_(1)
    fn = lambda s, m: torch.softmax(s.masked_fill(m == 0, float("-inf")), dim=-1)  # noqa: E731
    prog, _ = check_against_torch(Fn(fn), (r(2, 5, 5), mask), formats={"args_1": "dcsr"})
    assert "masked_softmax" in prog.text


def test_mostly_zero_parameter_is_stored_sparse_unless_told():
    lin = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        lin.weight.mul_((torch.rand(4, 8) < 0.2).float())
    prog, _ = check_against_torch(lin, (r(3, 8),))
    assert prog.formats["weight"] == "dcsr"
    prog, _ = check_against_torch(lin, (r(3, 8),), formats={"weight": "dense"})
    assert prog.formats["weight"] == "dense"


@pytest.mark.parametrize("fusion", ["partial", "full"])
def test_fused_chain_matches_torch(fusion):
    fn = lambda a, w, b: torch.softmax(torch.relu(a @ w + b), dim=-1)  # noqa: E731
    check_against_torch(Fn(fn), (r(6, 5), r(5, 4), r(4)), fusion=fusion)
