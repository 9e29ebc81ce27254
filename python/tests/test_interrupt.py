"""Ctrl-C (SIGINT) stops a long `run` or `explore` inside Rust promptly with KeyboardInterrupt,
and an interrupted sweep keeps its finished points: a rerun resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import fuseflow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _gcn(tmp_path, nodes: int, features: int) -> str:
    """The GCN example at a larger size (a run of seconds rather than milliseconds)."""
    with open(os.path.join(REPO, "examples", "gcn.ff")) as f:
        lines = f.read().splitlines()
    sizes = {"N": nodes, "F": features}
    out = []
    for line in lines:
        words = line.split()
        if len(words) >= 4 and words[0] == "param" and words[1] in sizes:
            line = f"param {words[1]} = {sizes[words[1]]}"
        out.append(line)
    path = tmp_path / "gcn_big.ff"
    path.write_text("\n".join(out) + "\n")
    return str(path)


def _interrupt(code: str, ready) -> tuple[int, str, str, float]:
    """Runs `code` in a child Python, sends it SIGINT once `ready()` holds (at most 120 s), and
    returns its exit code, stdout, stderr and the seconds from the signal to its exit."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err, time.monotonic() - sent


def test_ctrl_c_stops_a_long_run(tmp_path):
    # Fully fused at 800 nodes, this run simulates for about 7 s on one core.
    path = _gcn(tmp_path, 800, 200)
    started = tmp_path / "started"
    code = (
        "import fuseflow, pathlib\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"fuseflow.run_file({path!r}, fusion='full')\n"
        "print('finished')\n"
    )
    # Wait a moment after the child starts the run, so that the signal arrives inside Rust.
    seen = []

    def ready():
        if started.exists() and not seen:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 1.5

    code_, out, err, seconds = _interrupt(code, ready)
    assert "finished" not in out
    assert err.rstrip().endswith("KeyboardInterrupt"), err[-2000:]
    assert seconds < 10, f"stopped {seconds:.1f} s after the signal"
    assert code_ != 0


def test_ctrl_c_stops_a_sweep_which_a_rerun_resumes(tmp_path):
    path = _gcn(tmp_path, 300, 150)
    out_dir = tmp_path / "ex"
    log = out_dir / "points.jsonl"
    partitions = ["unfused", "0-3,4-10", "0-4,5-10", "full"]
    code = (
        "import fuseflow\n"
        f"fuseflow.explore({path!r}, partitions={partitions!r}, out={str(out_dir)!r}, jobs=1)\n"
        "print('finished')\n"
    )

    def points() -> int:
        try:
            with open(log) as f:
                return sum(1 for line in f if line.endswith("\n"))
        except FileNotFoundError:
            return 0

    code_, out, err, seconds = _interrupt(code, lambda: points() >= 1)
    assert "finished" not in out
    assert err.rstrip().endswith("KeyboardInterrupt"), err[-2000:]
    assert seconds < 10, f"stopped {seconds:.1f} s after the signal"
    assert code_ != 0
    with open(log) as f:
        records = [json.loads(line) for line in f]
    # The points finished before the signal, and the one in flight as a retryable failure.
    done = [r for r in records if r["error"] is None]
    stopped = [r for r in records if r["error"] is not None]
    assert 1 <= len(done) < len(partitions)
    assert all(r["retryable"] and "cancelled" in r["error"] for r in stopped), stopped
    ex = fuseflow.explore(path, partitions=partitions, out=out_dir, jobs=1)
    assert ex.resumed == len(done) and ex.resumed + ex.ran == ex.selected == len(partitions)
    assert ex.failed == 0
