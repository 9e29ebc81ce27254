"""Bad input: unsupported ops name the op and the model's source line; other errors are
one-line FuseflowErrors like the CLI's."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import fuseflow
from fuseflow import FuseflowError, TranslationError, UnsupportedOpError


class Tanh(nn.Module):
    def forward(self, x):
        return torch.tanh(x)  # the line the error must name


class LogSoftmax(nn.Module):
    def forward(self, x):
        return torch.log_softmax(x, dim=-1)


class Double(nn.Module):
    def forward(self, x):
        return x * 2


class SparseReshape(nn.Module):
    def forward(self, a, x):
        return a.reshape(2, 8) @ x


class SparseSum(nn.Module):
    def forward(self, a, x):
        return torch.sparse.sum(a, dim=1).to_dense() + x


def _line_of(cls, text: str) -> int:
    import inspect

    src, start = inspect.getsourcelines(cls)
    return start + next(k for k, line in enumerate(src) if text in line)


def test_unsupported_op_names_the_op_and_the_source_line():
    with pytest.raises(UnsupportedOpError) as e:
        fuseflow.from_torch(Tanh(), (torch.rand(3, 3),))
    msg = str(e.value)
    assert "aten.tanh" in msg
    assert f"{__file__}:{_line_of(Tanh, 'torch.tanh')}" in msg
    assert "\n" not in msg
    assert isinstance(e.value, NotImplementedError) and isinstance(e.value, FuseflowError)


def test_log_softmax_is_a_clear_error():
    with pytest.raises(UnsupportedOpError, match=r"_log_softmax.*no logarithm"):
        fuseflow.from_torch(LogSoftmax(), (torch.rand(3, 3),))


def test_dynamic_shapes_are_refused():
    dim = torch.export.Dim("n", min=2, max=64)
    with pytest.raises(TranslationError, match=r"input x has a dynamic size .* in dimension 0"):
        fuseflow.from_torch(Double(), (torch.rand(4, 3),), dynamic_shapes={"x": {0: dim}})


def test_sparse_input_in_an_op_we_cannot_lower():
    a = torch.eye(4).to_sparse_coo()
    with pytest.raises(UnsupportedOpError) as e:
        fuseflow.from_torch(SparseSum(), (a, torch.rand(4)))
    assert "unsupported op aten._sparse_sum.dim (on the sparse input a)" in str(e.value)
    assert f"{__file__}:{_line_of(SparseSum, 'torch.sparse.sum')}" in str(e.value)
    # torch.export itself cannot trace some ops on sparse tensors: its first line, as one line.
    msg = r"^torch\.export failed: RuntimeError: reshape is not implemented for sparse"
    with pytest.raises(TranslationError, match=msg):
        fuseflow.from_torch(SparseReshape(), (a, torch.rand(8, 2)))


def test_bad_formats():
    with pytest.raises(TranslationError, match=r"formats\['x'\] = 'blocked' is not a format"):
        fuseflow.from_torch(Double(), (torch.rand(3, 3),), formats={"x": "blocked"})
    with pytest.raises(TranslationError, match=r"formats names nope, which the model has no input"):
        fuseflow.from_torch(Double(), (torch.rand(3, 3),), formats={"nope": "dcsr"})


def test_bad_par_and_block_are_one_line_errors():
    prog = fuseflow.from_torch(Double(), (torch.rand(3, 3),))
    with pytest.raises(FuseflowError, match=r"^par i=0: the lane count must be between 1 and"):
        prog.run(par={"i": 0})
    with pytest.raises(FuseflowError, match=r"^block size 1: a block size must be at least 2"):
        prog.run(block=1)
    with pytest.raises(FuseflowError, match=r"no group iterates index q"):
        prog.run(par={"q": 2})


def test_driver_errors_are_the_cli_one_line_messages():
    prog = fuseflow.from_torch(Double(), (torch.rand(3, 3),))
    with pytest.raises(FuseflowError, match=r"^--fusion 0-7: statement 1 does not exist") as e:
        prog.run(fusion="0-7")
    assert "\n" not in str(e.value)
    with pytest.raises(FuseflowError, match=r"^hw: "):
        prog.run(hw="no-such-machine")
    with pytest.raises(FuseflowError, match=r"--order|order"):
        prog.run(order="q,r")
    with pytest.raises(FuseflowError, match=r"fusion names module 'nope'"):
        prog.run(fusion=[["nope"]])


def test_run_file_errors_name_file_line_and_column(tmp_path):
    p = tmp_path / "bad.ff"
    p.write_text("input A[2, 2] dense\noutput Y[2, 2] dense\nY(i,j) = A(i,j) + B(i,j)\n")
    with pytest.raises(FuseflowError, match=r"bad\.ff:3:\d+: .*B") as e:
        fuseflow.run_file(p)
    assert os.fspath(p) in str(e.value)
