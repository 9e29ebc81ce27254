"""`python -m fuseflow fixtures DIR`: writes the programs translated from the five models (the
Rust tests' fixtures); `python -m fuseflow bench`: times translation and `run` (docs/python.md)."""

from __future__ import annotations

import os
import sys


def _fixtures(out: str) -> None:
    import fuseflow
    from fuseflow import models

    os.makedirs(out, exist_ok=True)
    for name in models.NAMES:
        model, args, formats = models.example(name)
        prog = fuseflow.from_torch(model, args, formats=formats, name=name)
        path = os.path.join(out, f"{name}.ff")
        with open(path, "w") as f:
            f.write(prog.text)
        print(path)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "fixtures":
        _fixtures(argv[1])
        return 0
    if argv and argv[0] == "bench":
        from ._bench import main as bench

        return bench(argv[1:])
    print("usage: python -m fuseflow fixtures DIR | bench [--paper] [--reps N] | bench --table", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
