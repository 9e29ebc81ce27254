"""`python -m fuseflow bench [--paper] [--reps N]`: the package's two performance figures.

1. Translation time of a GPT-3 Small decoder block (paper shapes: S=1024, D=768, 12 heads,
   FFN 3072, BigBird mask block 16), torch.export included, first call in the process (torch's
   own warm-up included) and best of the later ones. `--paper` only; it allocates the model.
2. The Python overhead of `run`: wall time of `Program.run` / `run_file` minus the driver's own
   wall time (`report["wall_seconds"]`, measured in Rust around `run_with`), for the bundled
   examples and the five models at their default sizes: the median of N paired runs.
"""

from __future__ import annotations

import glob
import os
import sys
import time


def _best(fn, reps: int):
    best = None
    out = None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
    return best, out


def translation(reps: int) -> None:
    import torch

    import fuseflow
    from fuseflow.models import GPT3DecoderBlock, bigbird_mask

    torch.manual_seed(0)
    model = GPT3DecoderBlock(d_model=768, heads=12, ff=3072)
    args = (torch.rand(1024, 768), bigbird_mask(1024, 16))
    t = time.perf_counter()
    fuseflow.from_torch(model, args, formats={"mask": "dcsr"})
    first = time.perf_counter() - t
    best, prog = _best(lambda: fuseflow.from_torch(model, args, formats={"mask": "dcsr"}), reps)
    print(f"gpt3 small translation: first {first:.3f} s, best of {reps} later {best:.3f} s "
          f"({prog.statements} statements)")  # fmt: skip


def _paired(fn, reps: int) -> tuple[float, float]:
    """Median over `reps` runs of (Python wall time, the driver's own wall time) of one run."""
    pairs = []
    for _ in range(reps):
        t = time.perf_counter()
        res = fn()
        pairs.append((time.perf_counter() - t, res.wall_seconds))
    pairs.sort(key=lambda p: p[0] - p[1])
    return pairs[len(pairs) // 2]


def overhead(reps: int) -> None:
    import fuseflow
    from fuseflow import models

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "examples", "*.ff"))):
        rows.append((os.path.basename(path), *_paired(lambda: fuseflow.run_file(path), reps)))
    for name in models.NAMES:
        model, args, formats = models.example(name)
        prog = fuseflow.from_torch(model, args, formats=formats)
        rows.append((f"torch:{name}", *_paired(lambda: prog.run(stats=False), reps)))
    total_py = sum(r[1] for r in rows)
    total_rs = sum(r[2] for r in rows)
    print(f"{'program':<28} {'python s':>9} {'driver s':>9} {'overhead ms':>12} {'overhead':>9}")
    for name, py, rs in rows:
        print(f"{name:<28} {py:9.4f} {rs:9.4f} {1e3 * (py - rs):12.2f} {100 * (py - rs) / max(rs, 1e-9):8.1f}%")
    print(f"{'total':<28} {total_py:9.4f} {total_rs:9.4f} {1e3 * (total_py - total_rs):12.2f} "
          f"{100 * (total_py - total_rs) / total_rs:8.1f}%")  # fmt: skip


def table() -> None:
    """Cycles of the five translated models next to the hand-written examples (ideal machine)."""
    import fuseflow
    from fuseflow import models

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    print(f"{'model':<20} {'fusion':<8} {'torch cycles':>13} {'hand-written':>13}")
    for name in models.NAMES:
        model, args, formats = models.example(name)
        prog = fuseflow.from_torch(model, args, formats=formats)
        for fusion in ("unfused", "partial", "full"):
            ours = prog.run(fusion=fusion, stats=False)
            hand = fuseflow.run_file(os.path.join(root, "examples", f"{name}.ff"), fusion=fusion)
            assert ours.verified and hand.verified
            print(f"{name:<20} {fusion:<8} {ours.cycles:>13,} {hand.cycles:>13,}", flush=True)


def main(argv: list[str]) -> int:
    if "--table" in argv:
        table()
        return 0
    reps = 3
    if "--reps" in argv:
        reps = int(argv[argv.index("--reps") + 1])
    if "--paper" in argv:
        translation(reps)
    overhead(reps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
