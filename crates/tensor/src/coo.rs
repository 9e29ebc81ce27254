//! Coordinate-list (COO) tensors, the interchange form between readers, generators and
//! fibertrees.

use crate::TensorError;

/// A coordinate-list tensor: `nnz` points, each with `rank` coordinates (logical order) and a value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coo {
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Flat coordinates, `rank` per point.
    pub coords: Vec<u32>,
    /// One value per point.
    pub vals: Vec<f64>,
}

impl Coo {
    /// An empty tensor of the given shape.
    pub fn new(shape: Vec<usize>) -> Coo {
        Coo { shape, coords: Vec::new(), vals: Vec::new() }
    }

    /// Rank of the tensor.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of points (duplicates and explicit zeros included).
    pub fn nnz(&self) -> usize {
        self.vals.len()
    }

    /// Coordinates of point `i`.
    pub fn coords(&self, i: usize) -> &[u32] {
        let r = self.rank();
        &self.coords[i * r..(i + 1) * r]
    }

    /// Appends a point.
    pub fn push(&mut self, coords: &[u32], val: f64) {
        debug_assert_eq!(coords.len(), self.rank());
        self.coords.extend_from_slice(coords);
        self.vals.push(val);
    }

    /// Builds COO from a dense row-major array, skipping zeros.
    pub fn from_dense(shape: &[usize], data: &[f64]) -> Result<Coo, TensorError> {
        let total: usize = shape.iter().product();
        if data.len() != total {
            return Err(TensorError::Rank(format!(
                "dense data has {} entries, shape {:?} needs {total}",
                data.len(),
                shape
            )));
        }
        let mut coo = Coo::new(shape.to_vec());
        let mut c = vec![0u32; shape.len()];
        for (flat, &v) in data.iter().enumerate() {
            if v != 0.0 {
                let mut rem = flat;
                for d in (0..shape.len()).rev() {
                    c[d] = (rem % shape[d]) as u32;
                    rem /= shape[d];
                }
                coo.push(&c, v);
            }
        }
        Ok(coo)
    }

    /// Dense row-major array in logical order; duplicates are summed.
    pub fn to_dense(&self) -> Vec<f64> {
        let total: usize = self.shape.iter().product();
        let mut out = vec![0.0; total];
        for i in 0..self.nnz() {
            out[self.flat_index(i)] += self.vals[i];
        }
        out
    }

    /// Row-major flat index of point `i`.
    pub fn flat_index(&self, i: usize) -> usize {
        let mut flat = 0usize;
        for (d, &c) in self.coords(i).iter().enumerate() {
            flat = flat * self.shape[d] + c as usize;
        }
        flat
    }

    /// Checks every coordinate against the shape.
    pub fn validate(&self) -> Result<(), TensorError> {
        if self.coords.len() != self.vals.len() * self.rank() {
            return Err(TensorError::Rank(format!(
                "{} coordinates for {} points of rank {}",
                self.coords.len(),
                self.nnz(),
                self.rank()
            )));
        }
        for i in 0..self.nnz() {
            for (d, &c) in self.coords(i).iter().enumerate() {
                if c as usize >= self.shape[d] {
                    return Err(TensorError::OutOfRange { dim: d, coord: c as u64, size: self.shape[d] });
                }
            }
        }
        Ok(())
    }
}
