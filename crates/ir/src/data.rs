//! Builds the input tensors a program declares: seeded random data or files, converted to the
//! declared storage format.

use std::collections::BTreeMap;
use std::path::Path;

use fuseflow_tensor::budget::{coo_bytes, from_coo_bytes, random_coo_bytes, random_nnz, tensor_bytes};
use fuseflow_tensor::{Budget, Coo, IoError, OverBudget, Tensor, TensorError};

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
    /// Building the tensor would need more memory than the budget leaves (see
    /// [`LoadOptions::budget`]); nothing was allocated.
    #[error(transparent)]
    Memory(#[from] OverBudget),
}

/// How [`load_inputs_with`] builds inputs.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Inputs not to build: the caller supplies them (e.g. a dataset bound to `A`).
    pub skip: Vec<String>,
    /// Memory limit: each input's peak memory is estimated first, against what the inputs
    /// built before it hold, and refused before anything is allocated.
    pub budget: Budget,
}

/// What [`load_inputs_with`] built.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The input tensors, by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Bytes they hold (upper bound).
    pub bytes: u64,
}

/// `input A[60, 50] dcsr`: a declaration as errors name it.
fn describe(name: &str, shape: &[usize], format: &fuseflow_tensor::Format) -> String {
    let dims: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
    format!("input {name}[{}] {}", dims.join(", "), crate::format_name(format))
}

impl DataError {
    /// The input tensor the error concerns (a memory refusal names its tensor in its text).
    pub fn tensor(&self) -> Option<&str> {
        match self {
            DataError::NoSource { tensor }
            | DataError::Read { tensor, .. }
            | DataError::Shape { tensor, .. }
            | DataError::Tensor { tensor, .. } => Some(tensor),
            DataError::Memory(_) => None,
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
    Ok(load_inputs_with(p, base_dir, run_seed, &LoadOptions::default())?.tensors)
}

/// [`load_inputs`] with options: inputs to skip and a memory budget. Every generated input's
/// peak memory (generation, then conversion to its format) is estimated before it is
/// generated; a file is checked after it is read (its size bounds what reading allocates) and
/// before it is converted.
pub fn load_inputs_with(
    p: &CheckedProgram,
    base_dir: &Path,
    run_seed: u64,
    opts: &LoadOptions,
) -> Result<Loaded, DataError> {
    let mut out = BTreeMap::new();
    let mut budget = opts.budget;
    for d in p.decls.iter().filter(|d| d.role == Role::Input && !opts.skip.contains(&d.name)) {
        let tensor = d.name.clone();
        let what = |origin: &str| format!("{} = {origin}", describe(&d.name, &d.shape, &d.format));
        let t = match &d.source {
            None => return Err(DataError::NoSource { tensor }),
            Some(Source::Random { density, seed }) => {
                let seed = seed.unwrap_or_else(|| fuseflow_tensor::derive_seed(run_seed, &d.name));
                let origin = format!("random(density={density}, seed={seed})");
                let nnz = random_nnz(&d.shape, *density);
                let peak = random_coo_bytes(&d.shape, *density)
                    .max(coo_bytes(d.shape.len(), nnz).saturating_add(from_coo_bytes(&d.shape, &d.format, nnz)));
                budget.check(peak, || what(&origin))?;
                let coo = fuseflow_tensor::random_coo(&d.shape, *density, seed)
                    .map_err(|source| DataError::Tensor { tensor: tensor.clone(), origin: origin.clone(), source })?;
                Tensor::from_coo(&coo, &d.format).map_err(|source| DataError::Tensor { tensor, origin, source })?
            }
            Some(Source::BigBird { block, global, window, random, seed }) => {
                let seed = seed.unwrap_or_else(|| fuseflow_tensor::derive_seed(run_seed, &d.name));
                let origin = format!("bigbird(block={block}, seed={seed})");
                let n = d.shape.first().copied().unwrap_or(0);
                // At most `global` dense block rows plus, per block row, its global, band and
                // random blocks.
                let per_row = (2 * *global + 2 * *window + 1 + *random) as u64;
                let nnz = (n as u64)
                    .saturating_mul(*block as u64)
                    .saturating_mul(per_row)
                    .min((n as u64).saturating_mul(n as u64));
                let peak = coo_bytes(2, nnz).saturating_mul(2).saturating_add(from_coo_bytes(&d.shape, &d.format, nnz));
                budget.check(peak, || what(&origin))?;
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
                // Readers allocate in proportion to what they read: a few times the file, or
                // a few times what an archive's members declare they inflate to.
                let size = fuseflow_tensor::npz::expanded_size(&full).unwrap_or(0);
                budget.check(size.saturating_mul(4), || {
                    format!("reading {file} ({size} bytes to read) for {}", describe(&d.name, &d.shape, &d.format))
                })?;
                let read_err = |source| DataError::Read { tensor: tensor.clone(), source };
                let coo: Coo = if full.is_dir() {
                    read_dir_tensor(&full, &d.name, &d.format).map_err(read_err)?
                } else {
                    as_declared_vector(fuseflow_tensor::read_any(&full).map_err(read_err)?, &d.shape)
                };
                if coo.shape != d.shape {
                    return Err(DataError::Shape { tensor, file, file_shape: coo.shape, declared: d.shape.clone() });
                }
                let nnz = coo.nnz() as u64;
                let mut held = budget;
                held.hold(coo_bytes(coo.rank(), nnz));
                held.check(from_coo_bytes(&d.shape, &d.format, nnz), || {
                    format!("converting {file} ({nnz} entries) to {}", describe(&d.name, &d.shape, &d.format))
                })?;
                Tensor::from_coo(&coo, &d.format).map_err(|source| DataError::Tensor {
                    tensor,
                    origin: file,
                    source,
                })?
            }
        };
        budget.hold(stored_bytes(&t));
        out.insert(d.name.clone(), t);
    }
    Ok(Loaded { tensors: out, bytes: budget.held - opts.budget.held })
}

/// Bytes a tensor's arrays hold.
pub fn stored_bytes(t: &Tensor) -> u64 {
    let nnz = t.vals.len() as u64;
    tensor_bytes(&t.shape, &t.format, nnz)
}

/// Reads a SAM tensor directory as COO (logical order).
fn read_dir_tensor(dir: &Path, name: &str, format: &fuseflow_tensor::Format) -> Result<Coo, IoError> {
    fuseflow_tensor::read_tensor_dir(dir, name, format).map(|t| t.to_coo())
}
