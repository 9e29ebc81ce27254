//! Level formats and mode orders.

use crate::TensorError;

/// Storage format of one fibertree level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LevelFormat {
    /// Every coordinate `0..size` is present; only the size is stored.
    Dense,
    /// Only present coordinates are stored, as `seg`/`crd` arrays.
    Compressed,
}

impl LevelFormat {
    /// Short name used in text forms (`dense`, `compressed`).
    pub fn name(self) -> &'static str {
        match self {
            LevelFormat::Dense => "dense",
            LevelFormat::Compressed => "compressed",
        }
    }
}

/// A tensor format: per-level formats plus the mode order (which logical dimension each level
/// stores, outermost level first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Format {
    /// Format of each storage level.
    pub levels: Vec<LevelFormat>,
    /// `mode_order[l]` is the logical dimension stored at level `l`.
    pub mode_order: Vec<usize>,
}

impl Format {
    /// Builds a format, checking that `mode_order` is a permutation of the levels.
    pub fn new(levels: Vec<LevelFormat>, mode_order: Vec<usize>) -> Result<Format, TensorError> {
        if levels.len() != mode_order.len() {
            return Err(TensorError::Rank(format!("{} level formats but mode order {:?}", levels.len(), mode_order)));
        }
        let mut seen = vec![false; mode_order.len()];
        for &d in &mode_order {
            if d >= seen.len() || seen[d] {
                return Err(TensorError::ModeOrder(mode_order));
            }
            seen[d] = true;
        }
        Ok(Format { levels, mode_order })
    }

    /// All levels dense, identity mode order.
    pub fn dense(rank: usize) -> Format {
        Format { levels: vec![LevelFormat::Dense; rank], mode_order: (0..rank).collect() }
    }

    /// All levels compressed (DCSR/CSF), identity mode order.
    pub fn all_compressed(rank: usize) -> Format {
        Format { levels: vec![LevelFormat::Compressed; rank], mode_order: (0..rank).collect() }
    }

    /// CSR: dense rows, compressed columns.
    pub fn csr() -> Format {
        Format { levels: vec![LevelFormat::Dense, LevelFormat::Compressed], mode_order: vec![0, 1] }
    }

    /// Whether every level is dense (a tensor in this format stores every point).
    pub fn is_all_dense(&self) -> bool {
        self.levels.iter().all(|l| *l == LevelFormat::Dense)
    }

    /// For a tensor of `shape` whose levels are all dense: the stride in its values of each
    /// logical dimension (storage level `l` holds dimension `mode_order[l]`; its stride is the
    /// product of the sizes of the levels below it).
    pub fn dense_strides(&self, shape: &[usize]) -> Vec<usize> {
        let mut strides = vec![0usize; shape.len()];
        let mut stride = 1usize;
        for &d in self.mode_order.iter().rev() {
            strides[d] = stride;
            stride = stride.saturating_mul(shape[d]);
        }
        strides
    }

    /// Rank of tensors in this format.
    pub fn rank(&self) -> usize {
        self.levels.len()
    }

    /// Storage level that holds logical dimension `dim`.
    pub fn level_of(&self, dim: usize) -> Option<usize> {
        self.mode_order.iter().position(|&d| d == dim)
    }

    pub(crate) fn check_rank(&self, rank: usize) -> Result<(), TensorError> {
        if self.rank() != rank {
            return Err(TensorError::Rank(format!("format has {} levels, tensor has rank {rank}", self.rank())));
        }
        Ok(())
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lv: Vec<&str> = self.levels.iter().map(|l| l.name()).collect();
        write!(f, "({})", lv.join(", "))?;
        if self.mode_order.iter().enumerate().any(|(i, &d)| i != d) {
            let mo: Vec<String> = self.mode_order.iter().map(|d| d.to_string()).collect();
            write!(f, " order({})", mo.join(","))?;
        }
        Ok(())
    }
}
