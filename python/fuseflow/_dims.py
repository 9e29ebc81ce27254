"""Dimensions that reshapes split and merge, kept as index relabelings.

A program tensor's dimension is a `Dim`. A `view` that splits a dimension (heads: D -> NH x DH)
splits its `Dim` into children instead of moving data; every dimension that some statement
iterates with the same index variable is in the same *class* (union-find) and must be split the
same way, so the split travels to the weights and temporaries that share the index. When the
program is printed, each tensor's dimensions are the leaves of its `Dim` trees, and each index
variable becomes one index per leaf.
"""

from __future__ import annotations


class RelabelError(Exception):
    """A reshape that is not an index relabeling (sizes that do not factor the same way)."""


class Dim:
    """One dimension of a program tensor (size > 1), possibly split into children."""

    __slots__ = ("size", "children", "_up", "_members")

    def __init__(self, size: int):
        self.size = size
        self.children: list[Dim] | None = None
        self._up: Dim = self
        self._members: list[Dim] = [self]

    def root(self) -> Dim:
        """The representative of this dimension's class."""
        d = self
        while d._up is not d:
            d._up = d._up._up
            d = d._up
        return d

    def leaves(self) -> list[Dim]:
        """This dimension's leaves, outermost first (row-major order)."""
        if self.children is None:
            return [self]
        out: list[Dim] = []
        for c in self.children:
            out.extend(c.leaves())
        return out


def leaves(dims: list[Dim]) -> list[Dim]:
    """The leaves of a sequence of dimensions, in order."""
    out: list[Dim] = []
    for d in dims:
        out.extend(d.leaves())
    return out


def _union(a: Dim, b: Dim) -> None:
    """Puts two unsplit dimensions of equal size in one class."""
    ra, rb = a.root(), b.root()
    if ra is rb:
        return
    if ra.size != rb.size:
        raise RelabelError(f"dimensions of sizes {ra.size} and {rb.size} meet at one index")
    # Members of a class are all split or all leaves, because splits apply to whole classes.
    if (ra.children is None) != (rb.children is None):
        split_like = ra if ra.children is not None else rb
        other = rb if split_like is ra else ra
        split(other, [c.size for c in split_like.children])
    rb._up = ra
    ra._members.extend(rb._members)
    rb._members = []
    if ra.children is not None and rb.children is not None:
        unify(ra.children, rb.children)


def split(d: Dim, factors: list[int]) -> None:
    """Splits an unsplit dimension (and its whole class) into `factors`, outermost first."""
    r = d.root()
    members = list(r._members)
    for m in members:
        if m.children is not None:
            raise RelabelError(f"dimension of size {m.size} is already split")
        m.children = [Dim(f) for f in factors]
    first = members[0].children
    for m in members[1:]:
        for x, y in zip(first, m.children):
            _union(x, y)


def unify(a: list[Dim], b: list[Dim]) -> None:
    """Makes two sequences of dimensions with equal products the same index (or indices),
    splitting leaves where one side is finer than the other."""
    pa = 1
    for d in a:
        pa *= d.size
    pb = 1
    for d in b:
        pb *= d.size
    if pa != pb:
        raise RelabelError(f"sizes {pa} and {pb} meet at one index")
    i = j = 0
    while True:
        la, lb = leaves(a), leaves(b)
        if i >= len(la) or j >= len(lb):
            break
        x, y = la[i], lb[j]
        if x.size == y.size:
            _union(x, y)
            i += 1
            j += 1
        elif x.size < y.size:
            if y.size % x.size:
                raise RelabelError(f"a dimension of size {y.size} cannot be split by {x.size}")
            split(y, [x.size, y.size // x.size])
        else:
            if x.size % y.size:
                raise RelabelError(f"a dimension of size {x.size} cannot be split by {y.size}")
            split(x, [y.size, x.size // y.size])


def regroup(seq: list[Dim], sizes: list[int]) -> list[list[Dim]]:
    """Groups a row-major sequence of dimensions into new axes of `sizes` (a reshape), splitting
    a dimension where an axis ends inside it; an axis of size 1 gets no dimension."""
    seq = leaves(seq)
    out: list[list[Dim]] = []
    pos = 0
    for n in sizes:
        axis: list[Dim] = []
        prod = 1
        while prod < n:
            if pos >= len(seq):
                raise RelabelError(f"no dimension left for an axis of size {n}")
            leaf = seq[pos]
            need = n // prod
            if leaf.size <= need:
                if need % leaf.size:
                    raise RelabelError(f"an axis of size {n} does not factor over a dimension of size {leaf.size}")
                axis.append(leaf)
                prod *= leaf.size
                pos += 1
            else:
                if leaf.size % need:
                    raise RelabelError(f"a dimension of size {leaf.size} cannot be split by {need}")
                split(leaf, [need, leaf.size // need])
                seq[pos : pos + 1] = leaf.children
        if prod != n:
            raise RelabelError(f"an axis of size {n} does not factor over the dimensions")
        out.append(axis)
    if pos != len(seq):
        raise RelabelError("dimensions left over")
    return out
