"""Regenerates the scipy/numpy fixtures used by the npz reader tests.

Run with a Python that has numpy and scipy: python3 make_fixtures.py
All fixtures hold matrix B of sam-semantics.md section 1, except where noted.
"""
import numpy as np
import scipy.sparse as sp

rows = np.array([0, 1, 1, 3, 3])
cols = np.array([1, 0, 2, 1, 3])
vals = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
b = sp.coo_matrix((vals, (rows, cols)), shape=(4, 4))

# CSR, float64 data, int32 indices (scipy's default index type for small matrices).
m = b.tocsr()
assert m.indices.dtype == np.int32
sp.save_npz("b_csr_f64_i32.npz", m)

# CSR, float32 data, int64 indices, uncompressed archive.
m = b.tocsr().astype(np.float32)
m.indices = m.indices.astype(np.int64)
m.indptr = m.indptr.astype(np.int64)
sp.save_npz("b_csr_f32_i64.npz", m, compressed=False)

# COO matrix (row/col arrays), float64.
sp.save_npz("b_coo.npz", b)

# CSC array (sparray: also stores _is_array), int64 data.
sp.save_npz("b_csc_int.npz", sp.csc_array(b.astype(np.int64)))

# 3-D COO array (coords key): 2x3x4 with three entries.
t = sp.coo_array((np.array([1.5, 2.5, 3.5]), (np.array([0, 1, 1]), np.array([2, 0, 2]), np.array([3, 1, 0]))),
                 shape=(2, 3, 4))
sp.save_npz("t3_coo.npz", t)

# Dense arrays: a plain .npy, a Fortran-ordered .npy, and an npz with a single array (arr_0).
d = b.toarray()
np.save("b_dense.npy", d)
np.save("b_dense_fortran.npy", np.asfortranarray(d))
np.savez("b_dense_arr0.npz", d.astype(np.float32))

# Big-endian dense .npy.
np.save("b_dense_be.npy", d.astype(">f8"))

# CSR whose format array is a unicode string ('<U3'), as very old scipy wrote it.
m = b.tocsr()
np.savez("b_csr_unicode_format.npz", format=np.array("csr"), shape=np.array(m.shape), data=m.data,
         indices=m.indices, indptr=m.indptr)

# Matrix Market files as scipy.io.mmwrite writes them.
import scipy.io as sio
s = sp.coo_matrix(([4.0, 1.5, -2.0], ([0, 2, 2], [0, 0, 2])), shape=(3, 3))
s = s + s.T - sp.diags(s.diagonal())
sio.mmwrite("sym.mtx", s, symmetry="symmetric")
sio.mmwrite("b_pattern.mtx", b, field="pattern")
sio.mmwrite("b_array.mtx", b.toarray())
