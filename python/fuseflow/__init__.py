"""FuseFlow from Python: translate a sparse PyTorch model into a FuseFlow program (index
notation), compile it to fused SAM dataflow graphs, simulate it cycle by cycle and verify every
result against the reference evaluator, in-process (the Rust driver through PyO3).

    prog = fuseflow.from_torch(model, (adj, x), formats={"adj": "dcsr"})
    print(prog)                       # the program text, one statement per PyTorch op
    res = prog.run(fusion="partial", hw="rda")
    res.cycles, res.flops, res.offchip_bytes, res.verified, res.outputs["y"]
    ex = fuseflow.explore(prog, par=[None, {"i": 4}], prune="10%")   # design-space exploration

See docs/python.md.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np

from . import _native
from ._errors import FuseflowError, NotYetAvailableError, TranslationError, UnsupportedOpError
from ._explore import Exploration, explore

__all__ = [
    "from_torch",
    "run_file",
    "explore",
    "Exploration",
    "Program",
    "Result",
    "FuseflowError",
    "TranslationError",
    "UnsupportedOpError",
    "NotYetAvailableError",
]
__version__ = "0.1.0"


@dataclass
class _Input:
    name: str
    torch_name: str
    shape: list[int]
    fmt: str
    coords: bytes | None
    vals: bytes
    dense: np.ndarray | None = None  # for save(): the data in the declared shape
    sparse: object = None  # for save(): (coords array, values) of a sparse input


@dataclass
class _Output:
    name: str
    torch_shape: list[int]
    sparse: bool


class Program:
    """A translated model: program text plus the model's tensors bound to its inputs."""

    def __init__(self, text: str, inputs: list[_Input], outputs: list[_Output], modules: list[str | None],
                 title: str, translator=None):  # fmt: skip
        self.text = text
        self._inputs = inputs
        self._outputs = outputs
        self._title = title
        self._translator = translator
        #: The top-level submodule of each statement; the model's own code between layers counts
        #: as the submodule before it (None only for a model without submodules).
        self.modules = modules
        #: Statement numbers (as `fusion=` takes them) grouped by top-level submodule.
        self.module_groups: list[list[int]] = []
        self.statements = _native.check(text, self._file())

    def _file(self) -> str:
        return f"<{self._title}>"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        ins = ", ".join(i.torch_name for i in self._inputs)
        outs = ", ".join(o.name for o in self._outputs)
        return f"<fuseflow.Program {self._title}: {self.statements} statements; inputs {ins}; outputs {outs}>"

    @property
    def inputs(self) -> dict[str, str]:
        """Program input name -> the model's name for it (`fc1_weight` -> `fc1.weight`)."""
        return {i.name: i.torch_name for i in self._inputs}

    @property
    def formats(self) -> dict[str, str]:
        """The model's input and parameter names -> the storage format chosen for them."""
        return {i.torch_name: i.fmt for i in self._inputs}

    def fusion_spec(self, fusion) -> str:
        """`fusion=` as the driver's `--fusion` syntax: `unfused`, `partial` (the `fuse` lines:
        one group per top-level submodule), `full`, `modules` (= partial), a string of groups
        such as `"0-3,4-7"`, or a list (or dict of named lists) of groups whose items are
        statement numbers or submodule names."""
        if isinstance(fusion, str):
            return "partial" if fusion == "modules" else fusion
        groups = list(fusion.values()) if isinstance(fusion, dict) else list(fusion)
        parts = []
        for g in groups:
            items = [g] if isinstance(g, (int, str)) else list(g)
            stmts: list[int] = []
            for it in items:
                if isinstance(it, str):
                    found = [k for k, m in enumerate(self.modules) if m == it]
                    if not found:
                        known = sorted({m for m in self.modules if m})
                        raise FuseflowError(f"fusion names module {it!r}, which has no statement (modules: {', '.join(known)})")
                    stmts.extend(found)
                elif isinstance(it, int) and not isinstance(it, bool):
                    stmts.append(it)
                else:
                    raise FuseflowError(f"fusion group item {it!r} is neither a statement number nor a module name")
            stmts = sorted(set(stmts))
            if not stmts:
                raise FuseflowError("fusion has an empty group")
            if stmts != list(range(stmts[0], stmts[-1] + 1)):
                raise FuseflowError(f"fusion group {stmts} is not a contiguous range of statements")
            parts.append(f"{stmts[0]}-{stmts[-1]}" if len(stmts) > 1 else str(stmts[0]))
        return ",".join(parts)

    def run(self, fusion="unfused", hw="ideal", order=None, par=None, block=None, *, seed: int = 0,
            verify: bool = True, sets=(), fifo_depth: int | None = None, max_cycles: int | None = None,
            mem_limit: int | None = None, stats: bool = True, rel_tol: float = 1e-9,
            abs_tol: float = 1e-9, order_budget: int = 64, jobs: int = 0) -> Result:  # fmt: skip
        """Compiles, simulates and verifies the program, as `fuseflow run` does.

        `fusion`: see `fusion_spec`. `hw`: a preset (`ideal`, `comal`, `rda`) or a TOML file;
        `sets`: `KEY=VALUE` overrides (the CLI's `--set`). `order`: None (the compiler's
        estimate), index names (`"i,k,j"` or a list), or `"best"`: simulate every legal order of
        each group (at most `order_budget`, the best by the estimate) and keep the fastest.
        `par`: parallel lanes, `{"i": 4}` or `{"1:h": 4}` for group 1 only (the CLI's `--par`).
        `block`: sparsity blocking, `B` for every group with a sparse operand or `{group: B}`
        (the CLI's `--block`). `jobs`: threads simulating groups side by side (0 = one per
        core; results do not depend on it). Raises FuseflowError with the CLI's
        one-line message on bad input, limits or deadlocks; a run that does not verify returns
        a Result with `verified` False and `reason`.
        """
        if isinstance(order, (list, tuple)):
            order = ",".join(order)
        pars = [f"{k}={int(v)}" for k, v in (par or {}).items()]
        run_block, group_blocks = None, []
        if isinstance(block, dict):
            group_blocks = [(int(g), int(b)) for g, b in block.items()]
        elif block is not None:
            run_block = int(block)
        inputs = [(i.name, i.shape, i.coords, i.vals) for i in self._inputs]
        report, outs, stats_json = _native.run(
            self.text, self._file(), inputs, fusion=self.fusion_spec(fusion), hw=hw, sets=list(sets), order=order,
            seed=seed, verify=verify, rel_tol=rel_tol, abs_tol=abs_tol, fifo_depth=fifo_depth,
            max_cycles=max_cycles, mem_limit=mem_limit, stats=stats, order_budget=order_budget, par=pars,
            block=run_block, group_blocks=group_blocks, jobs=jobs)  # fmt: skip
        return Result(json.loads(report), outs, self._outputs, stats_json)

    def save(self, path: str | os.PathLike) -> str:
        """Writes the program to `path` with its tensors in `<stem>_data/` beside it (dense as
        `.npy`, sparse matrices as scipy CSR `.npz`, sparse tensors of other ranks as scipy's
        n-dimensional COO `.npz`), so that `fuseflow run PATH` runs it. Returns the path
        written."""
        path = os.fspath(path)
        base = os.path.dirname(os.path.abspath(path))
        stem = os.path.splitext(os.path.basename(path))[0]
        data_dir = os.path.join(base, f"{stem}_data")
        os.makedirs(data_dir, exist_ok=True)
        sources = {}
        for i in self._inputs:
            if i.dense is not None:
                rel = f"{stem}_data/{i.name}.npy"
                np.save(os.path.join(base, rel), i.dense)
            else:
                import scipy.sparse

                coords, vals = i.sparse
                rel = f"{stem}_data/{i.name}.npz"
                if len(i.shape) == 2:
                    m = scipy.sparse.coo_matrix((vals, (coords[:, 0], coords[:, 1])), shape=tuple(i.shape)).tocsr()
                    scipy.sparse.save_npz(os.path.join(base, rel), m)
                else:
                    # The members scipy writes for an n-dimensional coo_array (scipy >= 1.15
                    # reads it back); written with numpy so that older scipy versions work too.
                    np.savez_compressed(os.path.join(base, rel), format=np.array(b"coo"),
                                        shape=np.array(i.shape, dtype=np.int64), data=np.asarray(vals),
                                        coords=np.ascontiguousarray(np.asarray(coords).T), _is_array=np.array(True))  # fmt: skip
            sources[i.name] = f'file("{rel}")'
        from ._frontend import render

        text = render(self._translator, self._title, sources) if self._translator else self.text
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return path


class Result:
    """A run's results: plain Python values, numpy (or scipy.sparse) outputs, per-node stats."""

    def __init__(self, report: dict, outs, meta: list[_Output], stats_json: str | None):
        #: The whole `fuseflow run --json` report.
        self.report = report
        self.cycles: int = report["cycles"]
        self.flops: int = report["flops"]
        self.offchip_bytes: int = report["offchip_bytes"]
        self.tokens: int = report["tokens"]
        self.verified: bool = report["verified"]
        self.reason: str | None = report["reason"]
        self.max_abs_error: float | None = report["max_abs_error"]
        self.wall_seconds: float = report["wall_seconds"]
        #: Per-group reports (dicts: statements, label, outputs, orders, cycles, flops, ...).
        self.groups: list[dict] = report["groups"]
        self._stats_json = stats_json
        self._stats = None
        by_name = {m.name: m for m in meta}
        self.outputs: dict[str, object] = {}
        for name, shape, coords, vals in outs:
            c = np.frombuffer(coords, dtype="<u4").reshape(-1, len(shape)) if shape else np.zeros((0, 0), "<u4")
            v = np.frombuffer(vals, dtype="<f8")
            m = by_name.get(name)
            if m is not None and m.sparse and len(shape) == 2:
                import scipy.sparse

                self.outputs[name] = scipy.sparse.csr_array(
                    scipy.sparse.coo_array((v.copy(), (c[:, 0].astype(np.int64), c[:, 1].astype(np.int64))), shape=tuple(shape))
                )
            else:
                a = np.zeros(shape, dtype=np.float64)
                if len(v):
                    a[tuple(c.T.astype(np.intp))] = v
                self.outputs[name] = a.reshape(m.torch_shape) if m is not None else a

    @property
    def stats(self) -> list[dict]:
        """Per-node statistics as records (one dict per node, with its `group`), ready for
        `pandas.DataFrame(res.stats)`; [] when the run was asked for no stats."""
        if self._stats is None:
            self._stats = []
            if self._stats_json:
                doc = json.loads(self._stats_json)
                for gi, g in enumerate(doc.get("groups", [])):
                    for node in g.get("nodes", []):
                        rec = {"group": gi}
                        rec.update(node)
                        self._stats.append(rec)
        return self._stats

    def __repr__(self) -> str:
        v = "verified" if self.verified else f"NOT VERIFIED ({self.reason})"
        return f"<fuseflow.Result cycles={self.cycles} flops={self.flops} offchip_bytes={self.offchip_bytes} {v}>"


def run_file(path: str | os.PathLike, fusion: str = "unfused", hw: str = "ideal", *, seed: int = 0,
             verify: bool = True, stats: bool = False) -> Result:  # fmt: skip
    """Runs a program file (e.g. one `Program.save` wrote) in-process, as `fuseflow run PATH
    --fusion F --hw H --seed S` does; its `file(...)` sources are read relative to it."""
    path = os.fspath(path)
    with open(path) as f:
        text = f.read()
    base = os.path.dirname(os.path.abspath(path))
    report, outs, stats_json = _native.run(text, path, [], fusion=fusion, hw=hw, seed=seed, verify=verify,
                                           stats=stats, base_dir=base)  # fmt: skip
    return Result(json.loads(report), outs, [], stats_json)


def _input_data(d) -> _Input:
    """The tensor of an input declaration as the native module takes it."""
    import torch

    from . import _dims

    t = d.data.detach()
    shape = d.shape()
    if t.layout == torch.strided:
        a = t.to(torch.float64).contiguous().numpy().reshape(shape) if shape else t.to(torch.float64).numpy()
        a = np.ascontiguousarray(a, dtype="<f8")
        if d.fmt == "dense":
            return _Input(d.name, d.torch_name, shape, d.fmt, None, a.tobytes(), dense=a)
        nz = np.nonzero(a)
        coords = np.stack(nz, axis=1).astype("<u4") if len(shape) else np.zeros((0, 0), "<u4")
        vals = a[nz].astype("<f8")
        return _Input(d.name, d.torch_name, shape, d.fmt, coords.tobytes(), vals.tobytes(), dense=a)
    if t.layout == torch.sparse_csr:
        t = t.to_sparse_coo()
    t = t.coalesce()
    idx = t.indices().numpy()
    keep = [k for k, s in enumerate(t.shape) if s != 1]
    if len(_dims.leaves(d.dims)) != len(keep):
        raise TranslationError(f"input {d.torch_name} is sparse and cannot be reshaped")
    coords = np.ascontiguousarray(idx[keep].T.astype("<u4"))
    vals = np.ascontiguousarray(t.values().to(torch.float64).numpy(), dtype="<f8")
    return _Input(d.name, d.torch_name, shape, d.fmt, coords.tobytes(), vals.tobytes(), sparse=(coords, vals))


def from_torch(model, args, kwargs=None, *, formats: dict[str, str] | None = None, sparse_threshold: float = 0.5,
               dynamic_shapes=None, name: str | None = None) -> Program:  # fmt: skip
    """Translates `model(*args, **kwargs)` (torch.export, then the Core ATen decompositions)
    into a FuseFlow program bound to the model's tensors.

    `formats` maps input and parameter names (`"adj"`, `"fc1.weight"`) to storage formats
    (`dense`, `csr`, `dcsr`, ...). Sparse (COO/CSR) inputs default to `dcsr`; a 2-D parameter
    whose fraction of zeros is at least `sparse_threshold` is stored `dcsr`. Raises
    UnsupportedOpError naming the op and the model's source line for an op FuseFlow cannot
    lower, TranslationError for other untranslatable models (dynamic shapes, ...).
    """
    from ._frontend import module_groups, render, translate

    title = name or type(model).__name__
    if not re.fullmatch(r"[A-Za-z0-9_.\- ]+", title):
        title = "model"
    tr = translate(model, args, kwargs, formats, sparse_threshold, dynamic_shapes)
    text = render(tr, title)
    inputs = [_input_data(d) for d in tr.decls if d.role == "input"]
    outputs = []
    for v in tr.output_views:
        outputs.append(_Output(v.decl.name, v.shape(), v.decl.fmt != "dense"))
    groups = module_groups(tr)
    # Each statement's module as fusion groups see it: the model's own code (an activation
    # between layers) belongs to the group it joined.
    modules: list[str | None] = [None] * len(tr.stmts)
    for g in groups:
        m = next((tr.stmts[k].module for k in g if tr.stmts[k].module is not None), None)
        for k in g:
            modules[k] = m
    prog = Program(text, inputs, outputs, modules, title, tr)
    prog.module_groups = groups
    return prog
