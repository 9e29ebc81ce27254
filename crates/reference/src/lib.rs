//! The reference evaluator: the oracle every simulation is checked against.
//!
//! [`evaluate`] runs a [`fuseflow_ir::CheckedProgram`] directly on its inputs in `f64`, with
//! "dense semantics, sparse evaluation": values are sparse relations from index tuples to
//! numbers (absent = 0), combined by joins, broadcast unions and group-by reductions. It is
//! written to be obviously correct rather than fast, but handles thousands-wide sparse
//! matrices in well under a second. [`compare`] checks a result against the oracle.

#![warn(missing_docs)]

mod compare;
mod dense;
mod eval;
mod relation;

pub use compare::{compare, compare_named, compare_tensors, Comparison};
pub use eval::{evaluate, evaluate_with, EvalControl, StatementObserver};

/// Errors of the reference evaluator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// An input the program declares was not supplied.
    #[error("input {tensor} was not supplied")]
    MissingInput {
        /// Tensor name.
        tensor: String,
    },
    /// A supplied input has another shape than declared.
    #[error("input {tensor} has shape {actual:?} but is declared with shape {expected:?}")]
    InputShape {
        /// Tensor name.
        tensor: String,
        /// Declared shape.
        expected: Vec<usize>,
        /// Supplied shape.
        actual: Vec<usize>,
    },
    /// A supplied input is not a valid fibertree.
    #[error("input {tensor} is invalid: {source}")]
    InvalidInput {
        /// Tensor name.
        tensor: String,
        /// What is wrong with it.
        #[source]
        source: fuseflow_tensor::TensorError,
    },
    /// A step would enumerate too many points densely (or index tuples are too wide).
    #[error("statement assigning {tensor}: {what} is too large to evaluate")]
    TooLarge {
        /// Left-hand-side tensor of the statement.
        tensor: String,
        /// Which step.
        what: String,
    },
    /// A step would compute more products than [`EvalControl::max_work`] allows.
    #[error("statement assigning {tensor}: the {what} would compute {work} products, over the work limit of {limit}")]
    Work {
        /// Left-hand-side tensor of the statement.
        tensor: String,
        /// Which step.
        what: String,
        /// Products the step would compute.
        work: u64,
        /// The limit.
        limit: u64,
    },
    /// A step would need more memory than [`EvalControl::budget`] leaves.
    #[error(transparent)]
    Memory(#[from] fuseflow_tensor::OverBudget),
    /// [`EvalControl::cancel`] was set.
    #[error("cancelled at statement {statement}")]
    Cancelled {
        /// The statement being evaluated.
        statement: usize,
    },
    /// The program is inconsistent (it did not come from `fuseflow_ir::check`).
    #[error("malformed program: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests;
