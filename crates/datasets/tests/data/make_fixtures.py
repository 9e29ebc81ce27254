#!/usr/bin/env python3
"""Writes the binary fixtures of the fuseflow-datasets tests (standard library only).

Run from this directory: `python3 make_fixtures.py`. The outputs are committed, so the tests
never need Python; this script documents how each file was made and lets it be remade.

- planetoid/ind.tiny.*: a protocol-2 pickled defaultdict(list) adjacency, plus x/allx/tx and
  y/ally/ty pickles laid out like Python 2's scipy csr_matrix and numpy ndarray pickles. The
  scipy/numpy classes are stand-ins registered under the real module names, so the pickles
  name the same globals without scipy or numpy installed.
- pickle/*.pickle: malformed or hostile pickles (a global outside the subset, a truncated file,
  protocol 4, a plain list).
- npz/tiny_csr.npz: what scipy.sparse.save_npz writes for a 4x4 csr matrix.
- npz/tiny_citation_full.npz: a graph2gauss archive like PyG's CitationFull downloads.
- ogb_*: OGB raw layouts, gzip-compressed (mtime 0, so the bytes are reproducible).
"""

import collections
import gzip
import io
import os
import pickle
import struct
import sys
import types
import zipfile


def fake_module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


# Stand-ins for the globals numpy and scipy pickles name. Pickling only records their names.
numpy = fake_module("numpy")
fake_module("numpy.core")
multiarray = fake_module("numpy.core.multiarray")
fake_module("scipy")
fake_module("scipy.sparse")
csr_module = fake_module("scipy.sparse.csr")


def _reconstruct(*args):
    raise RuntimeError("never called")


_reconstruct.__module__ = "numpy.core.multiarray"
multiarray._reconstruct = _reconstruct


class ndarray:
    pass


ndarray.__module__ = "numpy"
numpy.ndarray = ndarray


class dtype:
    pass


dtype.__module__ = "numpy"
numpy.dtype = dtype


class FakeDtype:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (dtype, (self.code, 0, 1), (3, "<", None, None, None, -1, -1, 0))


class FakeArray:
    """Pickles like numpy.ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') + BUILD state."""

    def __init__(self, shape, code, raw):
        self.shape, self.code, self.raw = shape, code, raw

    def __reduce__(self):
        return (_reconstruct, (ndarray, (0,), b"b"), (1, self.shape, FakeDtype(self.code), False, self.raw))


class csr_matrix:
    def __init__(self, rows, cols):
        # An empty matrix: only the shape matters to the reader.
        self._shape = (rows, cols)
        self.maxprint = 50
        self.format = "csr"
        self.indices = FakeArray((0,), "i4", b"")
        self.indptr = FakeArray((rows + 1,), "i4", b"\0" * 4 * (rows + 1))
        self.data = FakeArray((0,), "f4", b"")


csr_matrix.__module__ = "scipy.sparse.csr"
csr_module.csr_matrix = csr_matrix


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def planetoid():
    graph = collections.defaultdict(list)
    # Duplicates (0->2, 2->0), a self loop (3->3), and 4->5 without its mirror.
    for k, vs in {0: [1, 2, 2], 1: [0, 3], 2: [0, 0], 3: [1, 3, 4], 4: [3, 5], 5: []}.items():
        graph[k].extend(vs)
    write("planetoid/ind.tiny.graph", pickle.dumps(graph, protocol=2))
    for suffix, rows in [("x", 2), ("allx", 4), ("tx", 2)]:
        write(f"planetoid/ind.tiny.{suffix}", pickle.dumps(csr_matrix(rows, 7), protocol=2))
    for suffix, rows in [("y", 2), ("ally", 4), ("ty", 2)]:
        raw = struct.pack(f"<{rows * 3}i", *([1, 0, 0] * rows))
        write(f"planetoid/ind.tiny.{suffix}", pickle.dumps(FakeArray((rows, 3), "i4", raw), protocol=2))
    # A second dataset whose feature files disagree on the width.
    write("planetoid_mismatch/ind.odd.graph", pickle.dumps({0: [1], 1: [0]}, protocol=2))
    write("planetoid_mismatch/ind.odd.x", pickle.dumps(csr_matrix(1, 5), protocol=2))
    write("planetoid_mismatch/ind.odd.tx", pickle.dumps(csr_matrix(1, 6), protocol=2))


class Hostile:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def pickles():
    write("pickle/global.pickle", pickle.dumps(Hostile(), protocol=2))
    good = pickle.dumps(collections.defaultdict(list, {0: [1], 1: [0]}), protocol=2)
    write("pickle/truncated.pickle", good[: len(good) // 2])
    write("pickle/protocol4.pickle", pickle.dumps({0: [1]}, protocol=4))
    write("pickle/list.pickle", pickle.dumps([[1, 2], [0]], protocol=2))
    write("pickle/ordered.pickle", pickle.dumps(collections.OrderedDict({0: [1]}), protocol=2))


def npy(descr, shape, raw):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + raw


def npz(path, arrays):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in arrays:
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    write(path, buf.getvalue())


def i32(*v):
    return struct.pack(f"<{len(v)}i", *v)


def i64(*v):
    return struct.pack(f"<{len(v)}q", *v)


def f32(*v):
    return struct.pack(f"<{len(v)}f", *v)


def npzs():
    # 4x4 csr: (0,1) (1,0) (1,2) (2,2) (3,0); (2,2) is a self loop.
    npz(
        "npz/tiny_csr.npz",
        [
            ("indices", npy("<i4", [5], i32(1, 0, 2, 2, 0))),
            ("indptr", npy("<i4", [5], i32(0, 1, 3, 4, 5))),
            ("format", npy("|S3", [], b"csr")),
            ("shape", npy("<i8", [2], i64(4, 4))),
            ("data", npy("<f8", [5], struct.pack("<5d", 1, 2, 1, 1, 1))),
        ],
    )
    # graph2gauss: 5 nodes, directed entries 0->1 0->2 1->1 3->4 4->3 2->0, 6 features, labels 0..2.
    npz(
        "npz/tiny_citation_full.npz",
        [
            ("adj_data", npy("<f4", [6], f32(1, 1, 1, 1, 1, 1))),
            ("adj_indices", npy("<i4", [6], i32(1, 2, 1, 0, 4, 3))),
            ("adj_indptr", npy("<i4", [6], i32(0, 2, 3, 4, 5, 6))),
            ("adj_shape", npy("<i8", [2], i64(5, 5))),
            ("attr_shape", npy("<i8", [2], i64(5, 6))),
            ("labels", npy("<i8", [5], i64(0, 2, 1, 1, 0))),
        ],
    )


def gz(path, text):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(text.encode())
    write(path, buf.getvalue())


def ogb():
    # Homogeneous link-prediction layout (no labels), gzip.
    gz("ogb_tiny/raw/edge.csv.gz", "0,1\n1,2\n2,3\n3,0\n0,1\n4,4\n")
    gz("ogb_tiny/raw/num-node-list.csv.gz", "6\n")
    gz("ogb_tiny/raw/node-feat.csv.gz", "0.1,0.2,0.3\n" * 6)
    # Homogeneous node-classification layout, plain csv.
    write("ogb_labels/raw/edge.csv", b"0,1\n1,0\n2,1\n")
    write("ogb_labels/raw/num-node-list.csv", b"3\n")
    write("ogb_labels/raw/node-label.csv", b"0\n4.0\nnan\n")
    # ogbn-mag: only paper-cites-paper is read.
    rel = "ogb_mag_tiny/raw/relations/"
    gz(rel + "paper___cites___paper/edge.csv.gz", "0,1\n1,2\n2,0\n3,0\n")
    gz(rel + "author___writes___paper/edge.csv.gz", "0,0\n")
    gz("ogb_mag_tiny/raw/num-node-dict.csv.gz", "author,field_of_study,institution,paper\n1,1,1,5\n")
    gz("ogb_mag_tiny/raw/node-feat/paper/node-feat.csv.gz", "0.5,0.5,0.5,0.5\n" * 5)
    gz("ogb_mag_tiny/raw/node-label/paper/node-label.csv.gz", "0\n1\n2\n348\n3\n")
    # An edge naming node 9 of 3.
    write("ogb_bad/raw/edge.csv", b"0,1\n1,9\n")
    write("ogb_bad/raw/num-node-list.csv", b"3\n")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    planetoid()
    pickles()
    npzs()
    ogb()
