"""The Python API's types and contracts."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse
import torch
from torch import nn

import fuseflow
from fuseflow import models


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(6, 5)
        self.layer2 = nn.Linear(5, 3)

    def forward(self, a, x):
        return torch.softmax(self.layer2(torch.relu(self.layer1(a @ x))), dim=-1)


def _prog():
    torch.manual_seed(0)
    a = ((torch.rand(8, 8) < 0.3).float()).to_sparse_coo()
    return fuseflow.from_torch(TwoLayers(), (a, torch.rand(8, 6)))


def test_program_text_and_types():
    prog = _prog()
    assert str(prog) == prog.text
    assert prog.text.count(" = ") >= prog.statements
    assert "fuse 0-2, 3-4" in prog.text  # one group per top-level submodule
    assert prog.module_groups == [[0, 1, 2], [3, 4]]
    assert prog.inputs["layer1_weight"] == "layer1.weight"
    assert prog.formats["a"] == "dcsr"
    assert "Program" in repr(prog)


def test_result_types():
    prog = _prog()
    res = prog.run(fusion="partial", hw="rda")
    assert isinstance(res.cycles, int) and res.cycles > 0
    assert isinstance(res.flops, int) and isinstance(res.offchip_bytes, int)
    assert res.verified is True and res.reason is None
    assert isinstance(res.groups, list) and [g["statements"] for g in res.groups] == [[0, 1, 2], [3, 4]]
    assert sum(g["cycles"] for g in res.groups) == res.cycles
    y = res.outputs["y"]
    assert isinstance(y, np.ndarray) and y.shape == (8, 3) and y.dtype == np.float64
    assert isinstance(res.stats, list) and res.stats and all(isinstance(r, dict) for r in res.stats)
    assert {r["group"] for r in res.stats} == {0, 1}
    json.dumps(res.report)


def test_fusion_by_module_by_numbers_and_named_groups_agree():
    prog = _prog()
    by_module = prog.run(fusion={"first": ["layer1"], "second": ["layer2"]}, stats=False)
    by_numbers = prog.run(fusion="0-2,3-4", stats=False)
    partial = prog.run(fusion="partial", stats=False)
    lists = prog.run(fusion=[[0, 1, 2], [3, 4]], stats=False)
    assert by_module.cycles == by_numbers.cycles == partial.cycles == lists.cycles
    assert prog.fusion_spec({"a": ["layer1"], "b": ["layer2"]}) == "0-2,3-4"


def test_runs_are_deterministic():
    prog = _prog()
    a, b = prog.run(fusion="full"), prog.run(fusion="full")
    # Everything but the wall times (each group's `sim_seconds`) is the same.
    groups = lambda r: [{k: v for k, v in g.items() if k != "sim_seconds"} for g in r.report["groups"]]  # noqa: E731
    assert all(g["sim_seconds"] >= 0 for g in a.report["groups"])
    assert a.cycles == b.cycles and groups(a) == groups(b)
    assert _prog().text == prog.text


def test_sparse_output_is_scipy_sparse():
    mask = (torch.rand(6, 6) < 0.4).float()

    class Masked(nn.Module):
        def forward(self, s, m):
            return s * m

    s = torch.rand(6, 6)
    res = fuseflow.from_torch(Masked(), (s, mask), formats={"m": "dcsr"}).run()
    y = res.outputs["y"]
    assert scipy.sparse.issparse(y)
    np.testing.assert_allclose(y.toarray(), (s * mask).double().numpy(), rtol=1e-6)
    assert y.nnz <= int(mask.sum())


def test_save_writes_what_the_driver_runs(tmp_path):
    prog = _prog()
    path = prog.save(tmp_path / "two.ff")
    text = open(path).read()
    assert 'file("two_data/' in text
    saved = fuseflow.run_file(path, fusion="partial")
    direct = prog.run(fusion="partial")
    assert saved.verified and saved.cycles == direct.cycles
    np.testing.assert_allclose(saved.outputs["y"], direct.outputs["y"].reshape(saved.outputs["y"].shape))


def test_save_writes_sparse_tensors_of_any_rank(tmp_path):
    # A 3-D sparse operand is written as scipy's n-dimensional COO archive, which the driver reads.
    class Bmm(nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b)

    torch.manual_seed(0)
    a = ((torch.rand(2, 4, 5) < 0.4).float() * torch.rand(2, 4, 5)).to_sparse_coo()
    prog = fuseflow.from_torch(Bmm(), (a, torch.rand(2, 5, 3)))
    assert prog.formats["a"] == "sparse"
    path = prog.save(tmp_path / "bmm.ff")
    saved = fuseflow.run_file(path)
    direct = prog.run()
    assert saved.verified and direct.verified and saved.cycles == direct.cycles
    np.testing.assert_allclose(saved.outputs["y"], direct.outputs["y"].reshape(saved.outputs["y"].shape))


def test_models_module_lists_the_five_models():
    assert models.NAMES == ("gcn", "graphsage", "sae", "bigbird_attention", "gpt3_decoder")


def test_lanes_blocks_and_order_search_match_the_plain_run():
    """par= and block= are the CLI's --par and --block; order="best" its --order best."""
    prog = fuseflow.from_torch(models.BigBirdAttention(), models.BigBirdAttention.example_inputs(),
                               formats={"mask": "dcsr"})  # fmt: skip
    plain = prog.run(fusion="full")
    assert plain.verified
    laned = prog.run(fusion="full", par={"i": 2})
    assert laned.verified and laned.cycles < plain.cycles
    assert "fork" in laned.report["primitives"]
    np.testing.assert_array_equal(laned.outputs["y"], plain.outputs["y"])
    blocked = prog.run(fusion="full", block=8)
    assert blocked.verified and blocked.report["groups"][0]["block"] == 8
    np.testing.assert_allclose(blocked.outputs["y"], plain.outputs["y"], rtol=1e-9, atol=1e-12)
    best = prog.run(fusion="full", order="best", jobs=1)
    search = best.report["groups"][0]["order_search"]
    assert best.verified and best.cycles == min(t["cycles"] for t in search["trials"])
    assert best.cycles <= plain.cycles
