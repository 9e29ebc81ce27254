"""`fuseflow.explore`: the CLI's sweep in-process (crates/explore through the driver)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import fuseflow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(6, 5)
        self.layer2 = nn.Linear(5, 3)

    def forward(self, a, x):
        return torch.relu(self.layer2(torch.relu(self.layer1(a @ x))))


def _prog():
    torch.manual_seed(0)
    a = ((torch.rand(8, 8) < 0.3).float()).to_sparse_coo()
    return fuseflow.from_torch(TwoLayers(), (a, torch.rand(8, 6)))


def test_a_small_sweep_gives_points_best_and_accuracy(tmp_path):
    prog = _prog()
    out = tmp_path / "ex"
    ex = fuseflow.explore(prog, partitions=["unfused", "full", "0-2,3-4"], par=[None, {"i": 2}], out=out)
    assert isinstance(ex, fuseflow.Exploration)
    assert ex.space == ex.selected == ex.ran == len(ex.points) == 3 * 2
    assert ex.failed == 0 and ex.resumed == 0
    assert ex.out == str(out) and os.path.exists(ex.report_path)
    assert {os.path.basename(f) for f in ex.files} >= {"results.csv", "report.md"}
    # Plain, pandas-friendly records.
    for p in ex.points:
        assert p["status"] == "verified", p
        assert isinstance(p["cycles"], int) and isinstance(p["est_cycles"], float)
        assert p["par"] in (None, "i=2") and p["block"] is None
    assert [p["id"] for p in ex.points] == list(range(6))
    # Each point equals the run of its configuration.
    for p in ex.points:
        par = {"i": 2} if p["par"] else None
        run = prog.run(fusion=p["fusion"], par=par, stats=False)
        assert (p["cycles"], p["flops"], p["offchip_bytes"]) == (run.cycles, run.flops, run.offchip_bytes), p
    (slice_name, best), = ex.best.items()
    assert slice_name == "ideal order=default"
    assert best["cycles"] == min(p["cycles"] for p in ex.points)
    acc = ex.accuracy[slice_name]
    assert acc["points"] == 6 and -1.0 <= acc["spearman"] <= 1.0 and acc["regret"] >= 1.0
    assert set(acc["kept"]) == {0.01, 0.05, 0.1}
    assert "Exploration" in repr(ex)


def test_groups_side_by_side_give_the_same_points(tmp_path):
    prog = _prog()
    strip = lambda ex: [{k: v for k, v in p.items() if k != "wall_seconds"} for p in ex.points]  # noqa: E731
    one = fuseflow.explore(prog, out=tmp_path / "one", jobs=1)
    two = fuseflow.explore(prog, out=tmp_path / "two", jobs=2)
    assert one.ran == two.ran == 16 and strip(one) == strip(two)
    assert (tmp_path / "one" / "results.csv").read_bytes() == (tmp_path / "two" / "results.csv").read_bytes()


def test_convex_partitions_of_a_chain_are_its_ranges_and_the_limit_says_so(tmp_path):
    # The two layers are a chain of statements: its convex partitions are the 16 contiguous.
    ex = fuseflow.explore(_prog(), partitions="convex", out=tmp_path / "c")
    assert (ex.space, ex.partitions, ex.contiguous, ex.stopped) == (16, 16, 16, None)
    assert all(p["status"] == "verified" for p in ex.points)
    few = fuseflow.explore(_prog(), partitions="convex", max_partitions=3, out=tmp_path / "few")
    assert (few.space, few.partitions) == (3, 3)
    assert few.stopped == "stopped at max_partitions = 3: the program has more convex partitions"
    assert [p["fusion"] for p in few.points] == [p["fusion"] for p in ex.points[:3]]


def test_a_rerun_resumes_and_a_wider_space_reuses_the_cache(tmp_path):
    out = tmp_path / "sae"
    sae = os.path.join(REPO, "examples", "sae.ff")
    first = fuseflow.explore(sae, partitions=["full", "unfused"], block=[None, 8], out=out)
    assert (first.ran, first.resumed) == (4, 0)
    assert first.simulations > 0
    again = fuseflow.explore(sae, partitions=["full", "unfused"], block=[None, 8], out=out)
    assert (again.ran, again.resumed, again.simulations) == (0, 4, 0)
    assert again.points == first.points
    # A wider space runs only its new points, its groups from the cache.
    wider = fuseflow.explore(sae, partitions=["full", "unfused", "0,1,2-4"], block=[None, 8], out=out)
    assert (wider.ran, wider.resumed) == (2, 4)
    # Groups 0 and 1 (per block size) from the cache, 2-4 simulated.
    assert (wider.cache_hits, wider.simulations) == (4, 2)
    blocked = [p for p in wider.points if p["block"] == 8]
    assert len(blocked) == 3 and all(p["status"] == "verified" for p in blocked)


def test_a_translated_program_is_saved_beside_its_results_and_resumes_from_the_file(tmp_path):
    out = tmp_path / "two"
    first = fuseflow.explore(_prog(), partitions=["unfused", "full"], out=out)
    assert first.ran == 2
    # What `fuseflow explore OUT/program.ff --out OUT` reads: the same program and data, so the
    # same results directory (the CLI path goes through the same native code).
    saved = out / "program.ff"
    assert saved.exists() and (out / "program_data").is_dir()
    again = fuseflow.explore(saved, partitions=["unfused", "full", "0-2,3-4"], out=out)
    assert (again.resumed, again.ran) == (2, 1)
    assert again.points[:2] == first.points
    # A refused sweep writes nothing, the program included.
    with pytest.raises(fuseflow.FuseflowError):
        fuseflow.explore(_prog(), hw="warp9", out=tmp_path / "bad")
    assert not (tmp_path / "bad" / "program.ff").exists()


def test_prune_simulates_the_best_by_estimate(tmp_path):
    ex = fuseflow.explore(_prog(), prune=2, out=tmp_path / "p")
    assert ex.space == 16 and ex.selected == 2 and len(ex.points) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"par": "q=4"}, 'par: value "q=4": no statement iterates index q'),
        ({"par": {"i": 0}}, 'par: "i=0": lane count "0" of i is impossible'),
        ({"block": 1}, 'block: "1" is impossible'),
        ({"partitions": "0-1,3-4"}, "partitions: partition"),
        ({"partitions": "0+2,1,3-4"}, "partitions: partition 0+2,1,3-4: group 0+2 is not convex"),
        ({"partitions": "convex", "max_partitions": 0}, 'max_partitions: "0" is impossible'),
        ({"hw": "warp9"}, "machine warp9"),
        ({"prune": 0}, "prune 0"),
        ({"shard": "4/4"}, "--shard 4/4"),
        ({"prune": 3, "validate": True}, "prune and validate"),
    ],
)
def test_bad_values_raise_the_cli_one_line_message(tmp_path, kwargs, message):
    with pytest.raises(fuseflow.FuseflowError) as e:
        fuseflow.explore(_prog(), out=tmp_path / "bad", **kwargs)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "bad" / "points.jsonl").exists()


def test_a_space_file_value_is_located(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('hw = "ideal"\nblock = ["none", 0]\n')
    with pytest.raises(fuseflow.FuseflowError, match=r"space.toml:2:1: axis `block`: \"0\" is impossible"):
        fuseflow.explore(_prog(), space=space, out=tmp_path / "s")
