"""`fuseflow.explore`: design-space exploration from Python, through the same Rust sweep as
`fuseflow explore` (crates/explore and the driver's group evaluator), in-process."""

from __future__ import annotations

import json
import os

from . import _native
from ._errors import FuseflowError

# Keyword arguments that are axes, in the order `fuseflow explore` documents them.
_AXES = ("partitions", "max_partitions", "orders", "order_cap", "par", "block", "hw", "fifo_depth", "memory", "channels",
         "bandwidth")  # fmt: skip


def _values(name: str, v) -> list[str]:
    """One axis's values as the text the CLI's flags take (a scalar is a list of one)."""
    if v is None:
        return []
    if isinstance(v, (str, int, dict)):
        v = [v]
    out = []
    for x in v:
        if name == "par":
            if x is None:
                x = "none"
            elif isinstance(x, dict):
                x = ",".join(f"{k}={int(n)}" for k, n in x.items()) if x else "none"
        elif name == "block" and x is None:
            x = "none"
        elif name == "orders" and isinstance(x, (list, tuple)):
            x = ",".join(x)
        elif isinstance(x, bool) or not isinstance(x, (str, int)):
            raise FuseflowError(f"{name}: {x!r} is neither text nor an integer")
        out.append(str(x))
    return out


class Exploration:
    """What `fuseflow.explore` found: every point (plain dicts), the best point per machine and
    order choice, the estimate's accuracy, and where the results directory is."""

    def __init__(self, doc: dict, out: str):
        #: The results directory (points.jsonl, cache/, results.csv, report.md, plots).
        self.out: str = out
        #: The Markdown report.
        self.report_path: str = os.path.join(out, "report.md")
        #: Files the sweep wrote.
        self.files: list[str] = doc["files"]
        #: Points in the whole space; selected for this run (after pruning and sharding); found
        #: finished in the directory; run now; failed.
        self.space: int = doc["space"]
        self.selected: int = doc["selected"]
        self.resumed: int = doc["resumed"]
        self.ran: int = doc["ran"]
        self.failed: int = doc["failed"]
        #: Group simulations this run performed, and groups found in the cache.
        self.simulations: int = doc["simulations"]
        self.cache_hits: int = doc["cache_hits"]
        #: The partitions of the space: how many, how many of them contiguous, and why the
        #: enumeration stopped early (`partitions="convex"` past `max_partitions`) or None.
        self.partitions: int = doc["partitions"]["partitions"]
        self.contiguous: int = doc["partitions"]["contiguous"]
        self.stopped: str | None = doc["partitions"]["stopped"]
        #: Warnings (a corrupt line of a results log skipped, its point run again).
        self.warnings: list[str] = doc["warnings"]
        #: Every record of the directory, sorted by id, as JSON Lines hold them (with `groups`).
        self.records: list[dict] = doc["records"]
        #: One flat dict per point, ready for `pandas.DataFrame(ex.points)`: id, key, fusion,
        #: order, machine, par, block, status, error, cycles, flops, offchip_bytes, est_cycles,
        #: est_flops, est_bytes, groups (how many), wall_seconds, cached_groups.
        self.points: list[dict] = [_flat(r) for r in self.records]
        #: The estimate's accuracy per slice (`"MACHINE order=CHOICE"`): spearman, regret, the
        #: true best kept when pruning to 1/5/10 % (`kept`: {0.01: bool, ...}), pick, best,
        #: points, worst_misses.
        self.accuracy: dict[str, dict] = {}
        for a in doc["accuracy"]:
            v = dict(a["validation"])
            v["kept"] = {f: kept for f, _, kept in v["kept"]}
            self.accuracy[a["slice"]] = v
        #: The point with the fewest simulated cycles per slice (`"MACHINE order=CHOICE"`).
        self.best: dict[str, dict] = {}
        for p in self.points:
            if p["status"] == "failed" or p["cycles"] is None:
                continue
            s = f"{p['machine']} order={p['order']}"
            b = self.best.get(s)
            if b is None or (p["cycles"], p["id"]) < (b["cycles"], b["id"]):
                self.best[s] = p

    def __repr__(self) -> str:
        best = "; ".join(f"{s}: {p['key']} ({p['cycles']} cycles)" for s, p in sorted(self.best.items()))
        return (f"<fuseflow.Exploration {len(self.points)} points in {self.out} "
                f"({self.ran} run now, {self.failed} failed); best {best or 'none'}>")  # fmt: skip


def _flat(r: dict) -> dict:
    est = r.get("estimate") or {}
    return {
        "id": r["id"],
        "key": r["key"],
        "fusion": r["fusion"],
        "order": r["order"],
        "machine": r["machine"],
        "par": r.get("par"),
        "block": r.get("block"),
        "status": r["status"],
        "error": r["error"],
        "cycles": r["cycles"],
        "flops": r["flops"],
        "offchip_bytes": r["offchip_bytes"],
        "est_cycles": est.get("cycles"),
        "est_flops": est.get("flops"),
        "est_bytes": est.get("bytes"),
        "groups": len(r["groups"]),
        "wall_seconds": r["wall_seconds"],
        "cached_groups": r["cached_groups"],
    }


def explore(prog, *, partitions="all", max_partitions=None, orders=None, order_cap=None, par=None, block=None, hw=None, fifo_depth=None,
            memory=None, channels=None, bandwidth=None, space=None, prune=None, validate: bool = False,
            out=None, shard=None, seed: int = 0, verify: bool = True, max_cycles: int | None = None,
            mem_limit: int | None = None, jobs: int | None = None) -> Exploration:  # fmt: skip
    """Sweeps fusion partitions, orders, lanes, block sizes and machines of `prog` (a `Program`
    from `from_torch`, or the path of a program file), simulating and verifying every point
    (or the best `prune` by estimate), as `fuseflow explore` does, into the results directory
    `out` (default `explore-NAME`): a rerun resumes, and the CLI can resume or merge it too.

    Axes (each a value or a list; None keeps the space file's or the default): `partitions`
    ("all": every contiguous partition; "convex": every partition of the dependence DAG into
    convex groups, at most `max_partitions` (default 100000); or partitions such as "0-3,4-10",
    "0-2+4,3,5-10", "unfused", "full"), `orders` ("default",
    "best", index names), `order_cap`, `par` (None or "none", "h=4", "h=2,i=2", or a dict
    {"h": 2, "i": 2}; applied to every group that iterates the index), `block` (None or a
    block size, for every group with a sparse operand), `hw` (presets or TOML files),
    `fifo_depth`, `memory`, `channels`, `bandwidth`. `space` is a space file (TOML) read first.
    `prune`: a count or a fraction (0.1, "10%") of the points to simulate, best by estimate;
    `validate`: simulate every point (the default) and report the estimate's accuracy; `shard`:
    "I/N"; `jobs`: groups simulated side by side (default one per core; results are the same
    for every value, and `mem_limit` is shared between them). Raises FuseflowError with the
    CLI's one-line message for a bad value.
    """
    if prune is not None and validate:
        raise FuseflowError("prune and validate exclude each other (validate simulates every point)")
    if isinstance(prog, (str, os.PathLike)):
        path = os.fspath(prog)
        with open(path) as f:
            text = f.read()
        file, base, inputs = path, os.path.dirname(os.path.abspath(path)), []
        stem = os.path.splitext(os.path.basename(path))[0]
    else:
        text, file, base = prog.text, prog._file(), "."
        inputs = [(i.name, i.shape, i.coords, i.vals) for i in prog._inputs]
        stem = prog._title.replace(" ", "_")
    out = os.fspath(out) if out is not None else f"explore-{stem}"
    kwargs = {"partitions": partitions, "max_partitions": max_partitions, "orders": orders, "order_cap": order_cap, "par": par, "block": block,
              "hw": hw, "fifo_depth": fifo_depth, "memory": memory, "channels": channels, "bandwidth": bandwidth}  # fmt: skip
    axes = [(name, _values(name, kwargs[name])) for name in _AXES]
    space_text, space_file = None, "space.toml"
    if space is not None:
        space_file = os.fspath(space)
        with open(space_file) as f:
            space_text = f.read()
        if partitions == "all":
            axes = [(n, v) for n, v in axes if n != "partitions"]  # the file's, unless given
    try:
        doc = _native.explore(text, file, inputs, out, axes=axes, space=space_text, space_file=space_file,
                              prune=None if prune is None else str(prune), shard=shard, seed=seed, verify=verify,
                              max_cycles=max_cycles, mem_limit=mem_limit, base_dir=base,
                              jobs=0 if jobs is None else jobs)  # fmt: skip
    finally:
        if not isinstance(prog, (str, os.PathLike)):
            _save_beside(prog, out)
    return Exploration(json.loads(doc), out)


def _save_beside(prog, out: str) -> None:
    """Writes a translated program and its tensors into a results directory the sweep wrote
    to (`program.ff`, `program_data/`), so that the CLI can resume, shard or merge it:
    `fuseflow explore OUT/program.ff --out OUT`. Results directories identify a program by its
    statements and data, not by where its inputs come from, so the two share the directory."""
    if not os.path.exists(os.path.join(out, "points.jsonl")):
        return  # refused before the sweep began: nothing is written
    path = os.path.join(out, "program.ff")
    # A directory the sweep accepted holds this program and data, so a saved copy is this one:
    # `save` writes `program.ff` last (by rename), after all the tensors.
    if not os.path.exists(path):
        prog.save(path)
