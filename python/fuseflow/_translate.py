"""PyTorch (Core ATen, via torch.export) to FuseFlow program text.

One statement per PyTorch op that computes something; ops that only relabel indices (`view`,
`reshape`, `permute`, `transpose`, `t`, `expand`, `unsqueeze`, `squeeze`, `clone`, ...) make no
statement: they change which index of which tensor a later statement reads (see `_dims`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from . import _dims
from ._dims import Dim, RelabelError
from ._errors import TranslationError, UnsupportedOpError

#: Function names of our language: no tensor may be called this (see crates/ir RESERVED).
RESERVED = {
    "relu", "exp", "neg", "rsqrt", "sigmoid", "gelu", "erf", "max", "sum", "maxr", "expnz", "maxnz",
    "expsubnz", "softmax", "masked_softmax", "layernorm", "input", "output", "temp", "param",
    "preset", "fuse", "random", "file", "bigbird", "dense", "csr", "csc", "dcsr", "dcsc", "csf",
    "sparse", "compressed", "order",
}  # fmt: skip

#: Formats a user may name in `formats=` (the program's own names).
FORMATS = {"dense", "csr", "csc", "dcsr", "dcsc", "csf", "sparse"}

#: Ops that are index relabelings or pass-throughs (no statement).
_RELABEL = {"view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "unsqueeze",
            "squeeze", "clone", "alias", "contiguous", "_to_copy", "detach", "lift_fresh_copy"}  # fmt: skip


@dataclass
class Decl:
    """A program tensor: an input (with its data), a temporary or an output."""

    name: str
    role: str  # "input" | "temp" | "output"
    dims: list[Dim]
    fmt: str = "dense"
    data: object = None  # inputs: a torch tensor (dense or sparse)
    torch_name: str = ""  # the model's name for an input ("adj", "fc1.weight")
    sparse: bool = False  # a temporary that holds the nonzeros of a sparse operand
    order: list[int] | None = None  # mode order (storage level -> leaf dimension); None = identity
    levels: list[str] | None = None  # per storage level, for sparse temporaries
    auto_format: bool = False  # a parameter stored sparse because it is mostly zero

    def shape(self) -> list[int]:
        """The declared shape: one entry per leaf dimension."""
        return [d.size for d in _dims.leaves(self.dims)]


@dataclass
class Axis:
    """One dimension of a torch value: the program dimensions it covers ([] for size 1 or a
    broadcast dimension) and its size."""

    dims: list[Dim]
    size: int


@dataclass
class View:
    """A torch value as the program sees it: a tensor read through relabeled axes."""

    decl: Decl
    axes: list[Axis]
    masked: bool = False  # -inf outside a sparse mask (masked_fill); only softmax may read it

    def shape(self) -> list[int]:
        return [a.size for a in self.axes]


class Idx:
    """An index variable of one statement; `dims` is the dimension sequence it iterates."""

    def __init__(self, name: str):
        self.name = name
        self.dims: list[Dim] | None = None

    def bind(self, axis: Axis) -> None:
        """Iterates `axis` with this index (a broadcast axis reads nothing)."""
        if not axis.dims:
            return
        if self.dims is None:
            self.dims = list(axis.dims)
        else:
            _dims.unify(self.dims, axis.dims)


@dataclass
class Stmt:
    """One statement: `lhs(idx...) = expr`, the torch op it came from and where."""

    lhs: View
    idx: list[Idx]
    expr: tuple
    op: str
    where: str
    module: str | None
    comment: str = ""


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "t_" + s
    return s


def _where(node) -> str:
    """The model's source line of an FX node (its stack trace's last frame), or its name."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', trace)
    if frames:
        f, line, fn, code = frames[-1]
        return f"{f}:{line} in {fn}: {code.strip()}"
    return f"node {node.name}"


def _module(node) -> str | None:
    """The top-level submodule an FX node belongs to (`layer1`), or None for the root's code."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] for v in stack.values() if v and v[0]]
    if not paths:
        return None
    top = paths[0].split(".")[0]
    # torch.export spells `self.layers[0]` as `layers.0` (or `L['self'].layers[0]`).
    top = re.sub(r"^L\['self'\]\.?", "", top)
    return top or None


class Translator:
    """Walks an exported (Core ATen) graph and builds the program."""

    def __init__(self, formats: dict[str, str] | None, sparse_threshold: float):
        self.formats = dict(formats or {})
        for k, v in self.formats.items():
            if v not in FORMATS:
                raise TranslationError(
                    f"formats[{k!r}] = {v!r} is not a format (use one of {', '.join(sorted(FORMATS))})"
                )
        self.sparse_threshold = sparse_threshold
        self.decls: list[Decl] = []
        self.names: set[str] = set()
        self.stmts: list[Stmt] = []
        self.env: dict[str, object] = {}
        self.node = None
        #: The model's results, in order (set once the graph is walked).
        self.output_views: list[View] = []

    # -- names and declarations ------------------------------------------------------------

    def fresh_name(self, base: str) -> str:
        n = _sanitize(base)
        if n in RESERVED:
            n += "_t"
        cand, k = n, 1
        while cand in self.names:
            cand = f"{n}_{k}"
            k += 1
        self.names.add(cand)
        return cand

    def error(self, msg: str, cls=TranslationError):
        node = self.node
        at = _where(node) if node is not None else "the model"
        return cls(f"{at}: {msg}")

    # -- inputs ------------------------------------------------------------------------------

    def add_input(self, node, torch_name: str, value) -> View:
        import torch

        val = node.meta.get("val")
        shape = list(val.shape) if val is not None else list(value.shape)
        for k, s in enumerate(shape):
            if not isinstance(s, int):
                raise self.error(
                    f"input {torch_name} has a dynamic size ({s}) in dimension {k}: FuseFlow programs have static "
                    "shapes (export without dynamic_shapes)"
                )
        if not isinstance(value, torch.Tensor):
            raise self.error(f"input {torch_name} is a {type(value).__name__}, not a tensor")
        layout = value.layout
        if layout not in (torch.strided, torch.sparse_coo, torch.sparse_csr):
            raise self.error(
                f"input {torch_name} has layout {layout}; pass COO or CSR (a block-sparse mask as CSR/COO, "
                "torch.export cannot trace BSR)"
            )
        if not value.dtype.is_floating_point and value.dtype != torch.bool:
            value = value.to(torch.float32)
        dims = [Dim(s) for s in shape if s != 1]
        fmt = self.formats.get(torch_name)
        if fmt is None:
            if layout != torch.strided:
                fmt = "dcsr" if len(dims) == 2 else ("sparse" if dims else "dense")
            elif node.name.startswith(("p_", "b_", "c_")) and len(dims) == 2 and value.numel() > 0:
                zeros = float((value == 0).sum()) / value.numel()
                fmt = "dcsr" if zeros >= self.sparse_threshold else "dense"
            else:
                fmt = "dense"
        auto = fmt == "dcsr" and torch_name not in self.formats and layout == torch.strided
        if fmt in ("csr", "csc", "dcsr", "dcsc") and len(dims) != 2:
            raise self.error(f"input {torch_name} has {len(dims)} dimensions larger than 1; format {fmt} is for matrices")
        d = Decl(self.fresh_name(torch_name), "input", dims, fmt, value, torch_name, auto_format=auto)
        self.decls.append(d)
        it = iter(dims)
        return View(d, [Axis([next(it)] if s != 1 else [], s) for s in shape])

    # -- statements --------------------------------------------------------------------------

    def new_temp(self, shape: list[int], sparse: bool = False) -> View:
        dims = [Dim(s) for s in shape if s != 1]
        d = Decl(self.fresh_name(self.node.name), "temp", dims, "sparse" if sparse else "dense", sparse=sparse)
        self.decls.append(d)
        it = iter(dims)
        return View(d, [Axis([next(it)] if s != 1 else [], s) for s in shape])

    def emit(self, out: View, idx: list[Idx], expr: tuple) -> View:
        for ix, ax in zip(idx, out.axes):
            ix.bind(ax)
        node = self.node
        self.stmts.append(Stmt(out, idx, expr, str(node.target), _where(node), _module(node)))
        return out

    def access(self, v: View, idx: list[Idx | None]) -> tuple:
        """Reads `v` with one index (or None for a size-1 axis) per axis."""
        for ix, ax in zip(idx, v.axes):
            if ix is not None:
                ix.bind(ax)
        return ("acc", v, list(idx))

    def operand(self, x, out_idx: list[Idx], out_shape: list[int]) -> tuple:
        """A broadcast operand of an element-wise op, read under the output's indices."""
        if not isinstance(x, View):
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                if not math.isfinite(float(x)):
                    raise self.error(f"the constant {x} is not finite")
                return ("const", float(x))
            raise self.error(f"operand {x!r} is neither a tensor nor a number", UnsupportedOpError)
        if x.masked:
            raise self.error("a masked_fill(-inf) result is read by an op other than softmax", UnsupportedOpError)
        off = len(out_shape) - len(x.axes)
        idx: list[Idx | None] = []
        for k, ax in enumerate(x.axes):
            idx.append(None if ax.size == 1 else out_idx[off + k])
        return self.access(x, idx)

    def new_idx(self, n: int) -> list[Idx]:
        return [Idx(f"i{k}") for k in range(n)]

    # -- ops ---------------------------------------------------------------------------------

    def elementwise(self, op: str, args: list, sparse: bool = False) -> View:
        shapes = [a.shape() for a in args if isinstance(a, View)]
        out_shape = list(np.broadcast_shapes(*[tuple(s) for s in shapes]))
        out = self.new_temp(out_shape, sparse)
        idx = self.new_idx(len(out_shape))
        ops = [self.operand(a, idx, out_shape) for a in args]
        expr = ops[0] if op == "id" else (("bin", op, ops[0], ops[1]) if len(ops) == 2 else ("fn", op, ops[0]))
        return self.emit(out, idx, expr)

    def gelu_exact(self, x) -> View:
        """`gelu(approximate='none')` as x · (1/2 + erf(x/√2)/2), with our `erf`."""
        if not isinstance(x, View):
            raise self.error("gelu of a non-tensor", UnsupportedOpError)
        shape = x.shape()
        out = self.new_temp(shape)
        idx = self.new_idx(len(shape))
        a = self.operand(x, idx, shape)
        erf = ("fn", "erf", ("bin", "*", a, ("const", math.sqrt(0.5))))
        return self.emit(out, idx, ("bin", "*", a, ("bin", "+", ("const", 0.5), ("bin", "*", ("const", 0.5), erf))))

    def matmul(self, a: View, b: View, bias=None) -> View:
        """`mm`/`bmm`/`addmm`: (…, i, k) x (…, k, j) (+ bias broadcast over (…, i, j))."""
        for x in (a, b):
            if not isinstance(x, View):
                raise self.error("matmul of a non-tensor", UnsupportedOpError)
            if x.masked:
                raise self.error("a masked_fill(-inf) result is read by an op other than softmax", UnsupportedOpError)
        sa, sb = a.shape(), b.shape()
        if len(sa) != len(sb) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise self.error(f"matmul of shapes {sa} and {sb} is not supported")
        batch = sa[:-2]
        out_shape = batch + [sa[-2], sb[-1]]
        out = self.new_temp(out_shape)
        idx = self.new_idx(len(out_shape))
        k = Idx(f"i{len(out_shape)}")
        ea = self.access(a, [None if a.axes[n].size == 1 else idx[n] for n in range(len(batch))]
                         + [None if sa[-2] == 1 else idx[-2], None if sa[-1] == 1 else k])  # fmt: skip
        eb = self.access(b, [None if b.axes[n].size == 1 else idx[n] for n in range(len(batch))]
                         + [None if sb[-2] == 1 else k, None if sb[-1] == 1 else idx[-1]])  # fmt: skip
        expr = ("bin", "*", ea, eb)
        if bias is not None:
            expr = ("bin", "+", expr, self.operand(bias, idx, out_shape))
        return self.emit(out, idx, expr)

    def reduce(self, kind: str, x: View, dims, keepdim: bool, scale: float | None = None) -> View:
        shape = x.shape()
        rank = len(shape)
        red = sorted({d % rank for d in (dims if dims else range(rank))})
        out_shape = [1 if n in red else s for n, s in enumerate(shape)] if keepdim else [
            s for n, s in enumerate(shape) if n not in red]  # fmt: skip
        out = self.new_temp(out_shape)
        idx = self.new_idx(rank)
        body = self.operand(x, idx, shape)
        expr = ("red", kind, [idx[n] for n in red if shape[n] != 1], body)
        if scale is not None:
            expr = ("bin", "/", expr, ("const", scale))
        out_idx = [idx[n] for n in range(rank) if not (n in red and not keepdim)]
        return self.emit(out, out_idx, expr)

    def softmax(self, x: View, dim: int) -> View:
        shape = x.shape()
        dim %= len(shape)
        out = self.new_temp(shape, sparse=x.masked or x.decl.fmt != "dense")
        idx = self.new_idx(len(shape))
        body = self.access(x, [None if s == 1 else idx[n] for n, s in enumerate(shape)])
        kind = "masked_softmax" if x.masked else "softmax"
        return self.emit(out, idx, ("builtin", kind, idx[dim], body))

    def layer_norm(self, x: View, normalized, weight, bias, eps) -> View:
        shape = x.shape()
        if len(normalized) != 1:
            raise self.error("layer norm over more than one dimension is not supported", UnsupportedOpError)
        if abs(float(eps) - 1e-5) > 1e-12:
            raise self.error(f"layer norm with eps={eps}: FuseFlow's layernorm uses eps=1e-5", UnsupportedOpError)
        out = self.new_temp(shape)
        idx = self.new_idx(len(shape))
        body = self.access(x, [None if s == 1 else idx[n] for n, s in enumerate(shape)])
        res = self.emit(out, idx, ("builtin", "layernorm", idx[-1], body))
        # The affine part is a statement of its own (our layernorm has none); an identity
        # affine (untrained weights 1 and bias 0) is dropped.
        ident = (weight is None or bool((weight.decl.data == 1).all())) and (
            bias is None or bool((bias.decl.data == 0).all()))  # fmt: skip
        if ident:
            return res
        out2 = self.new_temp(shape)
        idx2 = self.new_idx(len(shape))
        expr = self.operand(res, idx2, shape)
        if weight is not None:
            expr = ("bin", "*", expr, self.operand(weight, idx2, shape))
        if bias is not None:
            expr = ("bin", "+", expr, self.operand(bias, idx2, shape))
        self.emit(out2, idx2, expr)
        self.stmts[-1].comment = "affine part of the layer norm above"
        return out2

    # -- relabelings -------------------------------------------------------------------------

    def relabel(self, name: str, x, args) -> View:
        if not isinstance(x, View):
            raise self.error(f"{name} of a non-tensor", UnsupportedOpError)
        axes = x.axes
        rank = len(axes)
        if name in ("clone", "alias", "contiguous", "detach", "lift_fresh_copy", "_to_copy"):
            return x
        if name == "permute":
            perm = [p % rank for p in args[0]]
            return View(x.decl, [axes[p] for p in perm], x.masked)
        if name == "transpose":
            a, b = args[0] % rank, args[1] % rank
            new = list(axes)
            new[a], new[b] = new[b], new[a]
            return View(x.decl, new, x.masked)
        if name == "t":
            return View(x.decl, list(reversed(axes)), x.masked)
        if name == "unsqueeze":
            d = args[0] % (rank + 1)
            return View(x.decl, axes[:d] + [Axis([], 1)] + axes[d:], x.masked)
        if name == "squeeze":
            ds = args[0] if args else list(range(rank))
            ds = {d % rank for d in ([ds] if isinstance(ds, int) else ds)}
            return View(x.decl, [a for n, a in enumerate(axes) if not (n in ds and a.size == 1)], x.masked)
        if name == "expand":
            sizes = list(args[0])
            off = len(sizes) - rank
            new = [Axis([], s) for s in sizes[:off]]
            for n, a in enumerate(axes):
                s = sizes[off + n]
                new.append(a if s in (-1, a.size) else Axis([], s))
            return View(x.decl, new, x.masked)
        # view / reshape / _unsafe_view
        sizes = list(args[0])
        total = math.prod(x.shape())
        if -1 in sizes:
            rest = math.prod(s for s in sizes if s != -1)
            sizes[sizes.index(-1)] = total // rest
        if sizes == x.shape():
            return x
        if x.decl.fmt != "dense" and x.decl.role == "input":
            raise self.error(
                f"{name} of the sparse input {x.decl.torch_name} ({x.decl.fmt}): only dense tensors can be "
                "reshaped (by relabeling their indices)",
                UnsupportedOpError,
            )
        if any(a.size != 1 and not a.dims for a in axes):
            raise self.error(f"{name} of a broadcast (expanded) tensor is not an index relabeling", UnsupportedOpError)
        seq = [d for a in axes for d in a.dims]
        try:
            new_axes = _dims.regroup(seq, [s for s in sizes])
        except RelabelError as e:
            raise self.error(f"{name} from {x.shape()} to {sizes} is not an index relabeling: {e}", UnsupportedOpError)
        return View(x.decl, [Axis(d, s) for d, s in zip(new_axes, sizes)], x.masked)
