"""`from_torch`: torch.export -> Core ATen -> the statements of `_translate`, and the program
text they print as."""

from __future__ import annotations

import math
import operator
import os
import re

from . import _dims
from ._errors import TranslationError, UnsupportedOpError
from ._translate import _RELABEL, Stmt, Translator, View

_UNARY = {"relu": "relu", "exp": "exp", "sigmoid": "sigmoid", "rsqrt": "rsqrt", "neg": "neg", "erf": "erf"}
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _num(c: float) -> str:
    """A constant as program text (our numbers are unsigned: a negative one is `neg(...)`)."""
    s = repr(float(c))
    if s.startswith("-"):
        return f"neg({s[1:]})"
    return s


def _density(t) -> float:
    """Fraction of nonzeros of a dense or sparse torch tensor."""
    import torch

    n = max(1, t.numel())
    if t.layout != torch.strided:
        t = t.to_dense()
    return max(float((t != 0).sum()) / n, 1e-6)


def export(model, args, kwargs=None, dynamic_shapes=None):
    """torch.export.export followed by the Core ATen decompositions."""
    import torch

    try:
        ep = torch.export.export(model, tuple(args), kwargs=kwargs, dynamic_shapes=dynamic_shapes)
    except Exception as e:  # torch raises many types; the message is what the user needs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TranslationError(f"torch.export failed: {type(e).__name__}: {first}") from e
    return ep.run_decompositions()


def translate(model, args, kwargs=None, formats=None, sparse_threshold=0.5, dynamic_shapes=None):
    """Translates `model(*args)` into a `Translator` holding the program's declarations and
    statements."""
    import torch
    from torch.utils import _pytree

    ep = export(model, args, kwargs, dynamic_shapes)
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    state.update(getattr(ep, "constants", {}) or {})
    named = {}
    named.update(sig.inputs_to_parameters)
    named.update(sig.inputs_to_buffers)
    named.update(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    user_vals = iter(_pytree.tree_leaves((tuple(args), dict(kwargs or {}))))
    user_names = set(sig.user_inputs)
    unknown = set(formats or {}) - set(named.values()) - user_names
    if unknown:
        raise TranslationError(
            f"formats names {', '.join(sorted(unknown))}, which the model has no input or parameter of "
            f"(inputs: {', '.join(sig.user_inputs)}; parameters: {', '.join(sorted(named.values()))})"
        )
    tr = Translator(formats, sparse_threshold)
    outputs = []
    for node in ep.graph.nodes:
        tr.node = node
        if node.op == "placeholder":
            if node.name in named:
                tname = named[node.name]
                tr.env[node.name] = tr.add_input(node, tname, state[tname].detach())
            elif node.name in user_names:
                val = next(user_vals)
                while not isinstance(val, torch.Tensor) and val is not None:
                    val = next(user_vals)
                tr.env[node.name] = tr.add_input(node, node.name, val)
            else:
                raise tr.error(f"input {node.name} is neither a user input nor a parameter")
        elif node.op == "call_function":
            tr.env[node.name] = _call(tr, node)
        elif node.op == "output":
            outputs = list(node.args[0])
        else:
            raise tr.error(f"FX node kind {node.op} is not supported", UnsupportedOpError)
    tr.node = None
    out_views = []
    for k, o in enumerate(outputs):
        v = tr.env.get(o.name) if hasattr(o, "name") else None
        if not isinstance(v, View):
            raise TranslationError(f"output {k} of the model is not a computed tensor")
        out_views.append(v)
    _mark_outputs(tr, out_views, outputs)
    tr.output_views = out_views
    return tr


def _mark_outputs(tr: Translator, views: list[View], nodes) -> None:
    """Turns each result into an `output` tensor (copying it when it is an input, a relabeled
    view or masked) named `y` (or `y0`, `y1`, ... for several)."""
    names = ["y"] if len(views) == 1 else [f"y{k}" for k in range(len(views))]
    for k, v in enumerate(views):
        seq = [d for a in v.axes for d in a.dims]
        ident = v.decl.role == "temp" and len(seq) == len(v.decl.dims) and all(
            a is b for a, b in zip(seq, v.decl.dims)) and all(a.dims or a.size == 1 for a in v.axes)  # fmt: skip
        if not ident or v.masked:
            tr.node = nodes[k]
            out = tr.new_temp(v.shape(), sparse=v.decl.fmt != "dense")
            idx = tr.new_idx(len(v.axes))
            tr.emit(out, idx, tr.operand(View(v.decl, v.axes), idx, v.shape()))
            tr.stmts[-1].comment = "copy of a relabeled result"
            views[k] = v = out
            tr.node = None
        tr.names.discard(v.decl.name)
        v.decl.name = tr.fresh_name(names[k])
        v.decl.role = "output"


def _arg(tr: Translator, a):
    if hasattr(a, "name") and hasattr(a, "op"):
        return tr.env[a.name]
    if isinstance(a, (list, tuple)):
        return type(a)(_arg(tr, x) for x in a)
    return a


class _EqZero:
    """`mask == 0` of an input mask: only `where(mask == 0, -inf, x)` may read it."""

    def __init__(self, mask: View):
        self.mask = mask


def _call(tr: Translator, node):
    target = node.target
    if target is operator.getitem:
        seq, k = _arg(tr, node.args[0]), node.args[1]
        if not isinstance(seq, tuple) or seq[k] is None:
            raise tr.error("only the normalised output of a layer norm can be used", UnsupportedOpError)
        return seq[k]
    name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    args = [_arg(tr, a) for a in node.args]
    kw = {k: _arg(tr, v) for k, v in node.kwargs.items()}
    for a in args:
        if isinstance(a, _EqZero) and name != "where":
            raise tr.error(f"`mask == 0` is read by {target}; only masked_fill / where(mask == 0, -inf, x) is supported")
    if name in _RELABEL:
        return tr.relabel(name, args[0], args[1:] or ([kw["size"]] if "size" in kw else []))
    if name in ("mm", "bmm", "_sparse_mm", "matmul"):
        return tr.matmul(args[0], args[1])
    if name == "addmm":
        if kw.get("beta", 1) != 1 or kw.get("alpha", 1) != 1:
            raise tr.error("addmm with beta or alpha other than 1 is not supported", UnsupportedOpError)
        return tr.matmul(args[1], args[2], bias=args[0])
    if name in _BINARY:
        a, b = args[0], args[1]
        alpha = kw.get("alpha", 1)
        if alpha != 1:
            if isinstance(b, (int, float)):
                b = b * alpha
            else:
                raise tr.error(f"{name} with alpha={alpha} is not supported", UnsupportedOpError)
        sparse = name == "mul" and any(isinstance(x, View) and x.decl.fmt != "dense" for x in (a, b))
        if not isinstance(a, View) and not isinstance(b, View):
            raise tr.error(f"{target} of two constants", UnsupportedOpError)
        return tr.elementwise(_BINARY[name], [a, b], sparse)
    if name in _UNARY:
        return tr.elementwise(_UNARY[name], [args[0]])
    if name == "gelu":
        approx = kw.get("approximate", args[1] if len(args) > 1 else "none")
        if approx == "tanh":
            return tr.elementwise("gelu", [args[0]])
        if approx != "none":
            raise tr.error(f"gelu with approximate={approx!r} is not supported", UnsupportedOpError)
        return tr.gelu_exact(args[0])
    if name in ("_softmax", "softmax"):
        return tr.softmax(args[0], args[1])
    if name in ("_log_softmax", "log_softmax"):
        raise tr.error(f"{target}: FuseFlow has no logarithm; use softmax", UnsupportedOpError)
    if name == "native_layer_norm":
        x, shape, w, b, eps = (args + [None] * 5)[:5]
        return (tr.layer_norm(x, shape, w, b, eps if eps is not None else 1e-5), None, None)
    if name in ("sum", "amax", "mean"):
        x = args[0]
        dims = args[1] if len(args) > 1 else kw.get("dim")
        keep = args[2] if len(args) > 2 else kw.get("keepdim", False)
        dims = [dims] if isinstance(dims, int) else (dims or [])
        shape = x.shape()
        red = {d % len(shape) for d in (dims or range(len(shape)))}
        if len(red) == len([s for s in shape if s != 1]) or len(red) == len(shape):
            raise tr.error(f"{target} reduces to a scalar; FuseFlow programs need a tensor result", UnsupportedOpError)
        if name == "mean":
            return tr.reduce("sum", x, dims, keep, scale=float(math.prod(shape[d] for d in red)))
        return tr.reduce("sum" if name == "sum" else "maxr", x, dims, keep)
    if name == "eq" and len(args) == 2 and isinstance(args[0], View) and args[1] == 0:
        if args[0].decl.role != "input":
            raise tr.error("`== 0` of a computed tensor; only an input mask may be compared", UnsupportedOpError)
        return _EqZero(args[0])
    if name == "scalar_tensor":
        return float(args[0])
    if name == "where":
        cond, a, b = args
        if isinstance(cond, _EqZero) and isinstance(a, float) and a == -math.inf and isinstance(b, View):
            out = tr.elementwise("*", [b, cond.mask], sparse=True)
            out.masked = True
            return out
        raise tr.error("where() is supported only as masked_fill(mask == 0, -inf) before a softmax", UnsupportedOpError)
    sparse = [
        a.decl.torch_name for a in args if isinstance(a, View) and a.decl.role == "input" and a.decl.fmt != "dense"
    ]
    on = f" (on the sparse input {', '.join(sparse)})" if sparse else ""
    raise tr.error(f"unsupported op {target}{on}", UnsupportedOpError)


# -- printing ------------------------------------------------------------------------------------


def _names(ix) -> list[str]:
    n = len(_dims.leaves(ix.dims)) if ix.dims else 0
    return [ix.label] if n == 1 else [f"{ix.label}{k}" for k in range(n)]


def _access_names(view: View, idx, where: str) -> list[str]:
    """The index names of an access, one per leaf dimension of the tensor, in declared order."""
    names = {}
    for ix, ax in zip(idx, view.axes):
        if ix is None or not ax.dims:
            continue
        la = _dims.leaves(ax.dims)
        ln = _names(ix)
        if len(la) != len(ln):
            raise TranslationError(f"{where}: internal error: an index of {len(ln)} parts reads {len(la)} dimensions")
        for d, n in zip(la, ln):
            names[id(d)] = n
    out = []
    for d in _dims.leaves(view.decl.dims):
        if id(d) not in names:
            raise TranslationError(f"{where}: internal error: dimension of {view.decl.name} has no index")
        out.append(names[id(d)])
    return out


def _access(view: View, idx, where: str) -> str:
    out = _access_names(view, idx, where)
    return f"{view.decl.name}({','.join(out)})" if out else view.decl.name


def _accesses(e, out: list) -> None:
    if e[0] == "acc":
        out.append((e[1], e[2]))
    elif e[0] == "fn":
        _accesses(e[2], out)
    elif e[0] == "bin":
        _accesses(e[2], out)
        _accesses(e[3], out)
    elif e[0] in ("red", "builtin"):
        _accesses(e[3], out)


_NAMED = {
    "csr": ([0, 1], ["dense", "compressed"]),
    "csc": ([1, 0], ["dense", "compressed"]),
    "dcsr": ([0, 1], ["compressed", "compressed"]),
    "dcsc": ([1, 0], ["compressed", "compressed"]),
}


def _storage(d, rank: int) -> tuple[list[int], list[str]]:
    """A declaration's mode order and level formats."""
    if d.fmt in _NAMED:
        if d.order is None:
            return _NAMED[d.fmt]
        return d.order, _NAMED[d.fmt][1]
    order = d.order or list(range(rank))
    if d.levels is not None:
        return order, d.levels
    return order, ["dense" if d.fmt == "dense" else "compressed"] * rank


def _free(d) -> bool:
    """Whether an input's storage order is still to be chosen: not read yet, and dense or a
    parameter we chose to store sparse (a format the user named is kept as named)."""
    return d.role == "input" and d.order is None and (d.fmt == "dense" or d.auto_format)


def _plan_storage(tr: Translator) -> None:
    """Chooses each temporary's mode order (and, for sparse ones, which levels are compressed).

    Statement by statement: the loop order is a topological order of the storage orders of the
    tensors it reads (inputs and earlier results, already fixed), preferring the result's own
    index order; the result is stored in that loop order. So every statement has a legal order
    whatever relabeling (transpose, heads) its operands went through."""
    # A temporary whose first consumer iterates its leading dimension as that consumer's last
    # result index or as a reduced index (attention's keys and values, the context read by
    # the out-projection) is stored in the order the consumer's view reads it, so the consumer
    # need not run that dimension outermost; any other is stored in its producer's order.
    wanted: dict[int, list[int]] = {}
    for s in tr.stmts:
        reads: list = []
        _accesses(s.expr, reads)
        lhs_names = _access_names(s.lhs, s.idx, "")
        for view, idx in reads:
            d = view.decl
            if d.role == "input" or id(d) in wanted or not d.dims:
                continue
            names = _access_names(view, idx, "")
            lead = names[0]
            pos = {id(x): n for n, x in enumerate(_dims.leaves(d.dims))}
            order = [pos[id(x)] for ax in view.axes for x in _dims.leaves(ax.dims)]
            late = lead not in lhs_names or (len(lhs_names) > 1 and lead == lhs_names[-1])
            wanted[id(d)] = order if late and sorted(order) == list(range(len(names))) else []
    touched: set[int] = set()
    for s in tr.stmts:
        where = f"statement ({s.op}, {s.where})"
        reads: list = []
        _accesses(s.expr, reads)
        lhs = _access_names(s.lhs, s.idx, where)
        # Reduced indices go before the result's last index (Gustavson's i,k,j for a matmul),
        # so that a weight read once is stored the way a sparse-friendly order reads it.
        reduced: list[str] = []
        after: dict[str, set[str]] = {}
        sparse_names: set[str] = set()
        free: list = []
        for view, idx in reads:
            names = _access_names(view, idx, where)
            for n in names:
                if n not in lhs and n not in reduced:
                    reduced.append(n)
            if _free(view.decl):
                free.append((view.decl, names))
                if view.decl.fmt != "dense":
                    sparse_names.update(names)
                continue
            order, levels = _storage(view.decl, len(names))
            stored = [names[m] for m in order]
            for a, b in zip(stored, stored[1:]):
                if a != b:
                    after.setdefault(b, set()).add(a)
            sparse_names.update(stored[k] for k, lv in enumerate(levels) if lv == "compressed")
        # With sparse data in reach (a sparse operand, or one computed from a sparse operand),
        # reduced indices go before the result's last index (Gustavson's i,k,j: a weight read
        # once is stored the way the sparse-driven order reads it); between dense tensors the
        # reduction goes innermost (inner products, as for the transformer's projections).
        sparse_near = bool(sparse_names) or any(id(v.decl) in touched for v, _ in reads)
        if sparse_near:
            touched.add(id(s.lhs.decl))
        want = wanted.get(id(s.lhs.decl))
        first = [lhs[p] for p in want] if want else lhs
        pref = first[:-1] + reduced + first[-1:] if sparse_near else first + reduced
        loop: list[str] = []
        left = list(pref)
        while left:
            ready = [n for n in left if not (after.get(n, set()) - set(loop))]
            pick = ready[0] if ready else left[0]  # a cycle: the compiler reports the conflict
            loop.append(pick)
            left.remove(pick)
        # Dense inputs not read before are stored in this statement's loop order (the data
        # is ours to lay out; the paper stores weights transposed the same way).
        for d, names in free:
            if _free(d):
                d.order = [names.index(n) for n in loop if n in names]
        out = s.lhs.decl
        seq = [n for n in loop if n in lhs]
        out.order = [lhs.index(n) for n in seq]
        if out.sparse:
            out.levels = ["compressed" if n in sparse_names else "dense" for n in seq]
            if all(lv == "dense" for lv in out.levels):
                out.levels, out.fmt, out.sparse = None, "dense", False


def _fmt(d) -> str:
    """A declaration's format text, with its mode order when that is not the identity."""
    rank = len(_dims.leaves(d.dims))
    order = d.order or list(range(rank))
    if d.levels is not None:
        fmt = "(" + ", ".join(d.levels) + ")"
    elif d.fmt in _NAMED and d.order is not None:
        fmt = "(" + ", ".join(_NAMED[d.fmt][1]) + ")"
    else:
        fmt = d.fmt
    if order != list(range(rank)):
        fmt += f" order({','.join(map(str, order))})"
    return fmt


def _expr(e, where: str, top: bool = False) -> str:
    kind = e[0]
    if kind == "acc":
        return _access(e[1], e[2], where)
    if kind == "const":
        return _num(e[1])
    if kind == "fn":
        return f"{e[1]}({_expr(e[2], where, True)})"
    if kind == "bin":
        s = f"{_expr(e[2], where)} {e[1]} {_expr(e[3], where)}"
        return s if top else f"({s})"
    if kind == "red":
        body = _expr(e[3], where, True)
        fn = "sum" if e[1] == "sum" else "maxr"
        for ix in reversed(e[2]):
            for n in reversed(_names(ix)):
                body = f"{fn}({n}, {body})"
        return body
    if kind == "builtin":
        ns = _names(e[2])
        if len(ns) != 1:
            raise TranslationError(f"{where}: {e[1]} over a dimension that a reshape split into {len(ns)} is not supported")
        return f"{e[1]}({ns[0]}, {_expr(e[3], where, True)})"
    raise TranslationError(f"{where}: internal error: expression {kind}")


_LETTERS = "ijklmnopqrstuvwxyzabcdefgh"


def _label(stmt: Stmt) -> None:
    """Names a statement's indices i, j, k, ... in order of appearance."""
    seen = []

    def walk(e):
        if e[0] == "acc":
            for ix in e[2]:
                if ix is not None and ix not in seen:
                    seen.append(ix)
        elif e[0] in ("fn",):
            walk(e[2])
        elif e[0] == "bin":
            walk(e[2])
            walk(e[3])
        elif e[0] == "red":
            walk(e[3])
        elif e[0] == "builtin":
            walk(e[3])

    for ix in stmt.idx:
        if ix not in seen:
            seen.append(ix)
    walk(stmt.expr)
    for n, ix in enumerate(seen):
        ix.label = _LETTERS[n] if n < len(_LETTERS) else f"x{n}"


def module_groups(tr: Translator) -> list[list[int]]:
    """Statements grouped by top-level submodule: runs of statements of one module; a statement
    of the model's own code joins the run before it (the activation after a layer), or, before
    any submodule, the first one."""
    mods = [s.module for s in tr.stmts]
    filled = list(mods)
    prev = None
    for k, m in enumerate(mods):
        if m is None:
            filled[k] = prev
        prev = filled[k]
    first = next((m for m in mods if m is not None), None)
    filled = [first if m is None else m for m in filled]
    groups: list[list[int]] = []
    for k, m in enumerate(filled):
        if groups and filled[groups[-1][-1]] == m:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def render(tr: Translator, title: str, sources: dict[str, str] | None = None) -> str:
    """The program text; `sources` maps input names to `file("...")` sources (for `save`)."""
    lines = [f"# {title}: translated from PyTorch by fuseflow.from_torch (torch.export, Core ATen)."]
    lines.append("# One statement per PyTorch op; view/reshape/permute/expand are index relabelings.")
    for st in tr.stmts:
        _label(st)
    _plan_storage(tr)
    width = max([len(d.name) + 2 + len(", ".join(map(str, d.shape()))) for d in tr.decls] + [8])
    for d in tr.decls:
        if d.role == "input" and d.fmt != "dense" and len(_dims.leaves(d.dims)) != len(d.dims):
            raise TranslationError(f"input {d.torch_name} ({d.fmt}) would need a reshape; only dense inputs can be")
        head = f"{d.name}[{', '.join(map(str, d.shape()))}]"
        line = f"{d.role:<6} {head:<{width}} {_fmt(d)}"
        if sources and d.name in sources:
            line += f" = {sources[d.name]}"
        elif d.role == "input" and d.fmt != "dense":
            # A sparse input needs a source in the text; this one (the model's density) is what
            # a standalone run of the text uses, `Program.run` binds the model's tensor instead.
            line += f" = random(density={_density(d.data):.4g})"
        if d.role == "input" and d.torch_name and d.torch_name != d.name:
            line += f"   # {d.torch_name}"
        lines.append(line.rstrip())
    for n, s in enumerate(tr.stmts):
        where = f"statement {n} ({s.op}, {s.where})"
        lhs = _access(s.lhs, s.idx, where)
        rhs = _expr(s.expr, where, True)
        at = s.where
        m = re.match(r"(.*):(\d+) in \S+: (.*)", at)
        if m:
            at = f"{os.path.basename(m.group(1))}:{m.group(2)}"
        mod = f" [{s.module}]" if s.module else ""
        note = f"; {s.comment}" if s.comment else ""
        lines.append(f"{lhs} = {rhs}   # {n}: {s.op} at {at}{mod}{note}")
    groups = [g for g in module_groups(tr) if len(g) > 1]
    if groups:
        lines.append("fuse " + ", ".join(f"{g[0]}-{g[-1]}" for g in groups) + "   # one group per top-level submodule")
    return "\n".join(lines) + "\n"
