//! Sparse tensors stored as fibertrees.
//!
//! A [`Tensor`] has a logical shape, a [`Format`] (one [`LevelFormat`] per storage level plus a
//! mode order saying which logical dimension each level stores) and per-level arrays
//! ([`LevelData`]) with a final `vals` array. This crate knows nothing about programs, graphs or
//! simulation; it is the data layer that every other crate shares.

pub mod block;
pub mod budget;
mod coo;
mod format;
mod io_error;
pub mod mtx;
pub mod npz;
pub mod patterns;
pub mod random;
pub mod special;
pub mod tensor_dir;

pub use block::Blocked;
pub use budget::{human_bytes, parse_size, Budget, OverBudget};
pub use coo::Coo;
pub use format::{Format, LevelFormat};
pub use io_error::{read_any, IoError};
pub use mtx::{parse_mtx, read_mtx, write_mtx};
pub use npz::{read_npy, read_npz, write_npz_csr};
pub use random::{derive_seed, random_coo, random_dense};
pub use special::erf;
pub use tensor_dir::{read_tensor_dir, write_tensor_dir};

/// Errors raised while building, converting or validating tensors.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TensorError {
    /// A coordinate lies outside the tensor's shape.
    #[error("coordinate {coord} out of range for dimension {dim} of size {size}")]
    OutOfRange {
        /// Logical dimension.
        dim: usize,
        /// Offending coordinate.
        coord: u64,
        /// Size of that dimension.
        size: usize,
    },
    /// Rank of a format, shape or coordinate list disagrees with the tensor.
    #[error("rank mismatch: {0}")]
    Rank(String),
    /// The mode order is not a permutation of `0..rank`.
    #[error("mode order {0:?} is not a permutation of the dimensions")]
    ModeOrder(Vec<usize>),
    /// The stored arrays are internally inconsistent.
    #[error("invalid fibertree: {0}")]
    Invalid(String),
    /// A function argument is out of its domain (e.g. a density outside `[0, 1]`).
    #[error("invalid argument: {0}")]
    Argument(String),
}

/// The stored arrays of one fibertree level.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LevelData {
    /// A dense level stores only its size; fiber `p` is `0..size`, child position `p*size + c`.
    Dense {
        /// Dimension size of this level.
        size: usize,
    },
    /// A compressed level: fiber `p` is `crd[seg[p]..seg[p+1]]`.
    Compressed {
        /// Segment array, one entry per parent position plus one.
        seg: Vec<u32>,
        /// Coordinates.
        crd: Vec<u32>,
    },
}

impl LevelData {
    /// Number of positions (children) this level holds given `parents` parent positions.
    pub fn positions(&self, parents: usize) -> usize {
        match self {
            LevelData::Dense { size } => parents * size,
            LevelData::Compressed { crd, .. } => crd.len(),
        }
    }
}

/// A tensor stored as a fibertree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tensor {
    /// Logical dimension sizes (in logical, not storage, order).
    pub shape: Vec<usize>,
    /// Storage format.
    pub format: Format,
    /// One entry per storage level, outermost first.
    pub levels: Vec<LevelData>,
    /// Values, indexed by the last level's positions (one value for a rank-0 tensor).
    pub vals: Vec<f64>,
}

impl Tensor {
    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of stored values (including explicit zeros and dense padding).
    pub fn stored(&self) -> usize {
        self.vals.len()
    }

    /// Builds a fibertree from COO data; duplicate coordinates are summed and explicit zeros kept.
    pub fn from_coo(coo: &Coo, format: &Format) -> Result<Tensor, TensorError> {
        format.check_rank(coo.shape.len())?;
        let rank = coo.shape.len();
        if coo.coords.len() != coo.vals.len() * rank {
            return Err(TensorError::Rank(format!(
                "{} coordinates for {} points of rank {rank}",
                coo.coords.len(),
                coo.vals.len()
            )));
        }
        let order = &format.mode_order;
        // Sort entries by storage order and merge duplicates. Points are kept flat (`rank`
        // coordinates each, in storage order) so that memory is a few words per point.
        let mut idx: Vec<usize> = (0..coo.nnz()).collect();
        idx.sort_by(|&a, &b| {
            let ca = coo.coords(a);
            let cb = coo.coords(b);
            order.iter().map(|&d| ca[d]).cmp(order.iter().map(|&d| cb[d]))
        });
        let mut crds: Vec<u32> = Vec::with_capacity(idx.len() * rank);
        let mut sums: Vec<f64> = Vec::with_capacity(idx.len());
        for i in idx {
            let c = coo.coords(i);
            for &d in order {
                if c[d] as usize >= coo.shape[d] {
                    return Err(TensorError::OutOfRange { dim: d, coord: c[d] as u64, size: coo.shape[d] });
                }
            }
            let n = sums.len();
            let same = n > 0 && order.iter().enumerate().all(|(l, &d)| crds[(n - 1) * rank + l] == c[d]);
            if same {
                sums[n - 1] += coo.vals[i];
            } else {
                crds.extend(order.iter().map(|&d| c[d]));
                sums.push(coo.vals[i]);
            }
        }
        let crd_at = |p: usize, l: usize| crds[p * rank + l];
        // Build levels top-down. `groups` holds, per parent position, the range of points in it.
        let mut levels = Vec::with_capacity(rank);
        let mut groups: Vec<(usize, usize)> = vec![(0, sums.len())];
        for (l, (&dim, &lf)) in order.iter().zip(&format.levels).enumerate() {
            let size = coo.shape[dim];
            match lf {
                LevelFormat::Dense => {
                    let mut next = Vec::with_capacity(groups.len() * size);
                    for &(lo, hi) in &groups {
                        let mut p = lo;
                        for c in 0..size as u32 {
                            let start = p;
                            while p < hi && crd_at(p, l) == c {
                                p += 1;
                            }
                            next.push((start, p));
                        }
                    }
                    groups = next;
                    levels.push(LevelData::Dense { size });
                }
                LevelFormat::Compressed => {
                    let mut seg = Vec::with_capacity(groups.len() + 1);
                    let mut crd = Vec::new();
                    let mut next = Vec::new();
                    seg.push(0u32);
                    for &(lo, hi) in &groups {
                        let mut p = lo;
                        while p < hi {
                            let c = crd_at(p, l);
                            let start = p;
                            while p < hi && crd_at(p, l) == c {
                                p += 1;
                            }
                            crd.push(c);
                            next.push((start, p));
                        }
                        seg.push(crd.len() as u32);
                    }
                    groups = next;
                    levels.push(LevelData::Compressed { seg, crd });
                }
            }
        }
        // An empty group (dense padding) is +0.0; `f64::sum` of nothing would give -0.0.
        let vals =
            groups.iter().map(|&(lo, hi)| if lo == hi { 0.0 } else { sums[lo..hi].iter().sum::<f64>() }).collect();
        Ok(Tensor { shape: coo.shape.clone(), format: format.clone(), levels, vals })
    }

    /// The dense row-major tensor ([`Format::dense`]) holding `vals`, which it takes without a
    /// copy: the values of every point of `shape` in logical row-major order.
    pub fn from_row_major(shape: Vec<usize>, vals: Vec<f64>) -> Result<Tensor, TensorError> {
        let total = shape.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
        if total != Some(vals.len()) {
            let needs = total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string());
            return Err(TensorError::Rank(format!(
                "dense data has {} entries, shape {shape:?} needs {needs}",
                vals.len()
            )));
        }
        let levels = shape.iter().map(|&size| LevelData::Dense { size }).collect();
        Ok(Tensor { format: Format::dense(shape.len()), shape, levels, vals })
    }

    /// Builds a tensor from a dense row-major array (logical order); zeros are not stored in
    /// compressed levels.
    pub fn from_dense(shape: &[usize], data: &[f64], format: &Format) -> Result<Tensor, TensorError> {
        Tensor::from_coo(&Coo::from_dense(shape, data)?, format)
    }

    /// Returns every stored entry as COO (explicit zeros included), in storage order.
    pub fn to_coo(&self) -> Coo {
        let mut coo = Coo::new(self.shape.clone());
        self.for_each_stored(|logical, v| coo.push(logical, v));
        coo
    }

    /// Calls `f` with the logical coordinates and value of every stored entry (explicit zeros
    /// included), in storage order.
    pub fn for_each_stored(&self, mut f: impl FnMut(&[u32], f64)) {
        let rank = self.rank();
        if rank == 0 {
            if let Some(&v) = self.vals.first() {
                f(&[], v);
            }
            return;
        }
        // Depth-first walk over positions.
        let mut crds = vec![0u32; rank];
        let mut logical = vec![0u32; rank];
        fn walk(
            t: &Tensor,
            l: usize,
            parent: usize,
            crds: &mut Vec<u32>,
            logical: &mut Vec<u32>,
            f: &mut impl FnMut(&[u32], f64),
        ) {
            let rank = t.rank();
            let mut visit = |c: u32, pos: usize, crds: &mut Vec<u32>, logical: &mut Vec<u32>| {
                crds[l] = c;
                if l + 1 == rank {
                    for (lv, &d) in t.format.mode_order.iter().enumerate() {
                        logical[d] = crds[lv];
                    }
                    f(logical, t.vals[pos]);
                } else {
                    walk(t, l + 1, pos, crds, logical, f);
                }
            };
            match &t.levels[l] {
                LevelData::Dense { size } => {
                    for c in 0..*size {
                        visit(c as u32, parent * size + c, crds, logical);
                    }
                }
                LevelData::Compressed { seg, crd } => {
                    let (lo, hi) = (seg[parent] as usize, seg[parent + 1] as usize);
                    for (pos, &c) in crd.iter().enumerate().take(hi).skip(lo) {
                        visit(c, pos, crds, logical);
                    }
                }
            }
        }
        walk(self, 0, 0, &mut crds, &mut logical, &mut f);
    }

    /// Returns the tensor as a dense row-major array in logical order.
    pub fn to_dense(&self) -> Vec<f64> {
        self.to_coo().to_dense()
    }

    /// Converts to another format (same values, explicit zeros kept where stored).
    pub fn convert(&self, format: &Format) -> Result<Tensor, TensorError> {
        if self.converts_in_place_to(format) {
            return Ok(self.to_dense_format(format));
        }
        Tensor::from_coo(&self.to_coo(), format)
    }

    /// Whether [`Tensor::convert`] to `format` places the stored values straight into a dense
    /// array, without going through COO: `format` has only dense levels and this tensor is
    /// valid (so its coordinates are unique). That gives what the round trip through COO
    /// gives, bit for bit: every position holds at most one stored value, a sum of one value
    /// is that value, and an unstored position is +0.0.
    pub fn converts_in_place_to(&self, format: &Format) -> bool {
        self.rank() > 0
            && format.is_all_dense()
            && Format::new(format.levels.clone(), format.mode_order.clone()).is_ok()
            && format.mode_order.len() == self.rank()
            && self.shape.iter().try_fold(1usize, |n, &s| n.checked_mul(s)).is_some()
            && self.validate().is_ok()
    }

    fn to_dense_format(&self, format: &Format) -> Tensor {
        let order = &format.mode_order;
        let strides = format.dense_strides(&self.shape);
        let mut vals = vec![0.0; self.shape.iter().product()];
        self.for_each_stored(|logical, v| {
            let pos: usize = logical.iter().zip(&strides).map(|(&c, &s)| c as usize * s).sum();
            vals[pos] = v;
        });
        let levels = order.iter().map(|&d| LevelData::Dense { size: self.shape[d] }).collect();
        Tensor { shape: self.shape.clone(), format: format.clone(), levels, vals }
    }

    /// Checks that the arrays form a consistent fibertree of this shape and format.
    ///
    /// Never panics, whatever the arrays hold.
    pub fn validate(&self) -> Result<(), TensorError> {
        self.format.check_rank(self.rank())?;
        Format::new(self.format.levels.clone(), self.format.mode_order.clone())?;
        if self.levels.len() != self.rank() {
            return Err(TensorError::Rank(format!("{} levels for rank {}", self.levels.len(), self.rank())));
        }
        let mut parents = 1usize;
        for (l, level) in self.levels.iter().enumerate() {
            let dim = self.format.mode_order[l];
            let size = self.shape[dim];
            match (level, self.format.levels[l]) {
                (LevelData::Dense { size: s }, LevelFormat::Dense) => {
                    if *s != size {
                        return Err(TensorError::Invalid(format!(
                            "level {l}: dense size {s} but dimension {dim} has size {size}"
                        )));
                    }
                    parents = parents
                        .checked_mul(size)
                        .ok_or_else(|| TensorError::Invalid(format!("level {l}: number of positions overflows")))?;
                }
                (LevelData::Compressed { seg, crd }, LevelFormat::Compressed) => {
                    if seg.len() != parents.saturating_add(1) {
                        return Err(TensorError::Invalid(format!(
                            "level {l}: seg has {} entries, expected {}",
                            seg.len(),
                            parents.saturating_add(1)
                        )));
                    }
                    if seg[0] != 0 || seg[seg.len() - 1] as usize != crd.len() {
                        return Err(TensorError::Invalid(format!(
                            "level {l}: seg must start at 0 and end at crd length {}",
                            crd.len()
                        )));
                    }
                    for p in 0..parents {
                        let (lo, hi) = (seg[p] as usize, seg[p + 1] as usize);
                        if lo > hi || hi > crd.len() {
                            return Err(TensorError::Invalid(format!("level {l}: seg decreases at position {p}")));
                        }
                        for w in lo..hi {
                            if crd[w] as usize >= size {
                                return Err(TensorError::OutOfRange { dim, coord: crd[w] as u64, size });
                            }
                            if w > lo && crd[w] <= crd[w - 1] {
                                return Err(TensorError::Invalid(format!(
                                    "level {l}: coordinates not strictly increasing at position {w}"
                                )));
                            }
                        }
                    }
                    parents = crd.len();
                }
                (data, f) => {
                    let found = match data {
                        LevelData::Dense { .. } => "dense",
                        LevelData::Compressed { .. } => "compressed",
                    };
                    return Err(TensorError::Invalid(format!(
                        "level {l}: format says {} but the level stores {found} data",
                        f.name()
                    )));
                }
            }
        }
        if self.vals.len() != parents {
            return Err(TensorError::Invalid(format!("{} values for {} leaf positions", self.vals.len(), parents)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_b() -> Coo {
        // Matrix B of sam-semantics.md §1.
        let mut c = Coo::new(vec![4, 4]);
        for (i, j, v) in [(0, 1, 1.0), (1, 0, 2.0), (1, 2, 3.0), (3, 1, 4.0), (3, 3, 5.0)] {
            c.push(&[i, j], v);
        }
        c
    }

    #[test]
    fn dcsr_matches_reference_arrays() {
        let t = Tensor::from_coo(&example_b(), &Format::all_compressed(2)).unwrap();
        assert_eq!(t.levels[0], LevelData::Compressed { seg: vec![0, 3], crd: vec![0, 1, 3] });
        assert_eq!(t.levels[1], LevelData::Compressed { seg: vec![0, 1, 3, 5], crd: vec![1, 0, 2, 1, 3] });
        assert_eq!(t.vals, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        t.validate().unwrap();
    }

    #[test]
    fn csr_keeps_empty_rows() {
        let t = Tensor::from_coo(&example_b(), &Format::csr()).unwrap();
        assert_eq!(t.levels[1], LevelData::Compressed { seg: vec![0, 1, 3, 3, 5], crd: vec![1, 0, 2, 1, 3] });
        t.validate().unwrap();
    }

    #[test]
    fn column_major_round_trip() {
        let f = Format::new(vec![LevelFormat::Compressed, LevelFormat::Compressed], vec![1, 0]).unwrap();
        let t = Tensor::from_coo(&example_b(), &f).unwrap();
        assert_eq!(t.levels[0], LevelData::Compressed { seg: vec![0, 4], crd: vec![0, 1, 2, 3] });
        assert_eq!(t.to_dense(), example_b().to_dense());
        t.validate().unwrap();
    }

    #[test]
    fn dense_format_stores_padding() {
        let t = Tensor::from_coo(&example_b(), &Format::dense(2)).unwrap();
        assert_eq!(t.vals.len(), 16);
        assert_eq!(t.to_dense(), example_b().to_dense());
    }

    #[test]
    fn converting_to_a_dense_format_is_the_round_trip_through_coo() {
        // Signed zeros, a NaN, infinities, explicit and implicit zeros; every format of rank 1
        // to 3 as the source and every dense mode order as the target: the values `convert`
        // places must be what rebuilding from COO gives, bit for bit.
        let specials = [-0.0, 0.0, f64::NAN, f64::INFINITY, -1.5, 2.25, f64::MIN_POSITIVE, 0.0, 7.0];
        let perms: [&[usize]; 4] = [&[0], &[0, 1], &[1, 0], &[2, 0, 1]];
        for shape in [vec![7], vec![3, 4], vec![2, 3, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f64> = (0..n).map(|i| specials[i % specials.len()] * (i as f64 + 1.0)).collect();
            let orders: Vec<&[usize]> = perms.iter().copied().filter(|o| o.len() == shape.len()).collect();
            for &src_order in &orders {
                for mask in 0..1u32 << shape.len() {
                    let levels = (0..shape.len())
                        .map(|l| if mask >> l & 1 == 1 { LevelFormat::Compressed } else { LevelFormat::Dense })
                        .collect();
                    let t =
                        Tensor::from_dense(&shape, &data, &Format::new(levels, src_order.to_vec()).unwrap()).unwrap();
                    for &dst_order in &orders {
                        let format = Format::new(vec![LevelFormat::Dense; shape.len()], dst_order.to_vec()).unwrap();
                        assert!(t.converts_in_place_to(&format));
                        let placed = t.convert(&format).unwrap();
                        let rebuilt = Tensor::from_coo(&t.to_coo(), &format).unwrap();
                        let bits = |t: &Tensor| t.vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&placed), bits(&rebuilt), "{:?} -> {:?}", t.format, format);
                        assert_eq!((&placed.levels, &placed.format), (&rebuilt.levels, &rebuilt.format));
                    }
                    let compressed =
                        Format::new(vec![LevelFormat::Compressed; shape.len()], src_order.to_vec()).unwrap();
                    assert!(!t.converts_in_place_to(&compressed));
                }
            }
        }
        // Explicit zeros stored in a compressed level keep their sign.
        let mut c = Coo::new(vec![5]);
        c.push(&[1], -0.0);
        c.push(&[3], 0.0);
        let t = Tensor::from_coo(&c, &Format::new(vec![LevelFormat::Compressed], vec![0]).unwrap()).unwrap();
        let placed = t.convert(&Format::dense(1)).unwrap();
        assert_eq!(
            placed.vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            [0.0f64, -0.0, 0.0, 0.0, 0.0].map(f64::to_bits)
        );
    }

    #[test]
    fn dense_padding_is_positive_zero() {
        let t = Tensor::from_coo(&example_b(), &Format::dense(2)).unwrap();
        assert!(t.vals[0] == 0.0 && t.vals[0].is_sign_positive());
        let mut c = Coo::new(vec![2]);
        c.push(&[1], -0.0);
        let t = Tensor::from_coo(&c, &Format::dense(1)).unwrap();
        assert!(t.vals[0].is_sign_positive() && t.vals[1].is_sign_negative());
    }

    #[test]
    fn validate_never_panics_on_broken_arrays() {
        let mut t = Tensor::from_coo(&example_b(), &Format::all_compressed(2)).unwrap();
        // A seg entry beyond crd that a later entry "repairs" must not index out of bounds.
        t.levels[1] = LevelData::Compressed { seg: vec![0, 9, 3, 5], crd: vec![1, 0, 2, 1, 3] };
        assert!(t.validate().is_err());
        t.levels[1] = LevelData::Dense { size: 4 };
        assert!(t.validate().is_err());
        t.format.mode_order = vec![0, 7];
        assert!(t.validate().is_err());
        let huge = Tensor {
            shape: vec![usize::MAX, usize::MAX],
            format: Format::dense(2),
            levels: vec![LevelData::Dense { size: usize::MAX }, LevelData::Dense { size: usize::MAX }],
            vals: vec![],
        };
        assert!(huge.validate().is_err());
        let mut bad = Coo::new(vec![2, 2]);
        bad.coords.push(0);
        bad.vals.push(1.0);
        assert!(Tensor::from_coo(&bad, &Format::csr()).is_err());
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mut c = Coo::new(vec![2, 2]);
        c.push(&[0, 5], 1.0);
        assert!(matches!(Tensor::from_coo(&c, &Format::csr()), Err(TensorError::OutOfRange { dim: 1, .. })));
    }
}
