//! Builds the input tensors a program declares: seeded random data or files, converted to the
//! declared storage format.

use std::collections::BTreeMap;
use std::path::Path;

use fuseflow_tensor::{Coo, IoError, Tensor, TensorError};

use crate::ast::{CheckedProgram, Role, Source};

/// Errors raised while building input tensors. Every message is one line naming the tensor (and
/// the file, for file sources).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An input declaration has no data source (only possible for hand-built programs).
    #[error("input {tensor} has no data source")]
    NoSource {
        /// Tensor name.
        tensor: String,
    },
    /// The file could not be read or parsed.
    #[error("input {tensor}: {source}")]
    Read {
        /// Tensor name.
        tensor: String,
        /// Reader error (its message starts with the file name).
        #[source]
        source: IoError,
    },
    /// The file's shape differs from the declared shape.
    #[error("input {tensor}: file {file} has shape {file_shape:?} but {tensor} is declared with shape {declared:?}")]
    Shape {
        /// Tensor name.
        tensor: String,
        /// File path.
        file: String,
        /// Shape found in the file.
        file_shape: Vec<usize>,
        /// Declared shape.
        declared: Vec<usize>,
    },
    /// Generating the data or converting it to the declared format failed.
    #[error("input {tensor} ({origin}): {source}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// `random(...)` or the file path.
        origin: String,
        /// Underlying error.
        #[source]
        source: TensorError,
    },
}

impl DataError {
    /// The input tensor the error concerns.
    pub fn tensor(&self) -> &str {
        match self {
            DataError::NoSource { tensor }
            | DataError::Read { tensor, .. }
            | DataError::Shape { tensor, .. }
            | DataError::Tensor { tensor, .. } => tensor,
        }
    }
}

/// A Matrix Market file always holds a matrix: a `n × 1` column or `1 × n` row read for a
/// tensor declared with the one dimension `[n]` becomes that vector.
fn as_declared_vector(coo: Coo, declared: &[usize]) -> Coo {
    match (declared, coo.shape.as_slice()) {
        (&[n], &[rows, 1]) | (&[n], &[1, rows]) if rows == n => {
            let column = coo.shape[1] == 1;
            let coords = coo.coords.chunks(2).map(|c| if column { c[0] } else { c[1] }).collect();
            Coo { shape: vec![n], coords, vals: coo.vals }
        }
        _ => coo,
    }
}

/// Builds every `input` tensor of `p` in its declared format. Random sources use their own seed
/// if given, else `derive_seed(run_seed, name)`; file paths are relative to `base_dir` (the
/// program file's directory), and a file's shape must equal the declared shape (a one-column
/// or one-row matrix file may fill a vector of the same length).
pub fn load_inputs(p: &CheckedProgram, base_dir: &Path, run_seed: u64) -> Result<BTreeMap<String, Tensor>, DataError> {
    let mut out = BTreeMap::new();
    for d in p.decls.iter().filter(|d| d.role == Role::Input) {
        let tensor = d.name.clone();
        let t = match &d.source {
            None => return Err(DataError::NoSource { tensor }),
            Some(Source::Random { density, seed }) => {
                let seed = seed.unwrap_or_else(|| fuseflow_tensor::derive_seed(run_seed, &d.name));
                let origin = format!("random(density={density}, seed={seed})");
                let coo = fuseflow_tensor::random_coo(&d.shape, *density, seed)
                    .map_err(|source| DataError::Tensor { tensor: tensor.clone(), origin: origin.clone(), source })?;
                Tensor::from_coo(&coo, &d.format).map_err(|source| DataError::Tensor { tensor, origin, source })?
            }
            Some(Source::BigBird { block, global, window, random, seed }) => {
                let seed = seed.unwrap_or_else(|| fuseflow_tensor::derive_seed(run_seed, &d.name));
                let origin = format!("bigbird(block={block}, seed={seed})");
                let n = d.shape.first().copied().unwrap_or(0);
                let params = fuseflow_tensor::patterns::BigBird {
                    block: *block,
                    global: *global,
                    window: *window,
                    random: *random,
                };
                let coo = if d.shape.len() != 2 || d.shape[1] != n {
                    Err(fuseflow_tensor::TensorError::Argument(format!(
                        "a BigBird mask must be square, not {:?}",
                        d.shape
                    )))
                } else {
                    fuseflow_tensor::patterns::bigbird_mask(n, &params, seed)
                }
                .map_err(|source| DataError::Tensor {
                    tensor: tensor.clone(),
                    origin: origin.clone(),
                    source,
                })?;
                Tensor::from_coo(&coo, &d.format).map_err(|source| DataError::Tensor { tensor, origin, source })?
            }
            Some(Source::File { path }) => {
                let full = base_dir.join(path);
                let file = full.display().to_string();
                let read_err = |source| DataError::Read { tensor: tensor.clone(), source };
                let coo: Coo = if full.is_dir() {
                    read_dir_tensor(&full, &d.name, &d.format).map_err(read_err)?
                } else {
                    as_declared_vector(fuseflow_tensor::read_any(&full).map_err(read_err)?, &d.shape)
                };
                if coo.shape != d.shape {
                    return Err(DataError::Shape { tensor, file, file_shape: coo.shape, declared: d.shape.clone() });
                }
                Tensor::from_coo(&coo, &d.format).map_err(|source| DataError::Tensor {
                    tensor,
                    origin: file,
                    source,
                })?
            }
        };
        out.insert(d.name.clone(), t);
    }
    Ok(out)
}

/// Reads a SAM tensor directory as COO (logical order).
fn read_dir_tensor(dir: &Path, name: &str, format: &fuseflow_tensor::Format) -> Result<Coo, IoError> {
    fuseflow_tensor::read_tensor_dir(dir, name, format).map(|t| t.to_coo())
}
