//! The compiler: tensor index notation → SAM dataflow graphs.
//!
//! Pipeline position: tensor IR → **fusion/scheduling and lowering** → dataflow graph.
//! [`order`] computes the dataflow (loop) orders a statement's formats allow; [`lower`] turns a
//! statement and an order into a verified [`fuseflow_graph::Graph`]. Lowering works on an
//! expression tree in which each reduction is an explicit node, and iterates each subtree only
//! over its own index variables (factored iteration): a reduction's operand is recomputed for
//! an outer variable only when that variable precedes the reduced one in the order.

pub mod block;
pub mod convex;
mod expr;
pub mod fuse;
pub mod lower;
pub mod order;
pub mod par;
pub mod size;

pub use block::{block_group, lower_blocked_group, GroupBlock};
pub use convex::{ConvexPartitions, Dag, StopReason};
pub use fuse::{group_orders, group_outputs, lower_group, plan, ranked_group_orders, Fusion, GroupKernel, RankedOrder};
pub use lower::{lower_statement, Kernel, LowerOptions};
pub use order::legal_orders;
pub use size::{group_size, GroupSize};

/// Compilation failures. Messages name the statement, tensors and index variables involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    /// The requested dataflow order is not allowed by the formats.
    #[error("{file}:{line}:{col}: order {order}: {message}")]
    Order {
        /// Program file.
        file: String,
        /// Statement line.
        line: u32,
        /// Statement column.
        col: u32,
        /// The order, comma-separated.
        order: String,
        /// Why it is not allowed.
        message: String,
    },
    /// No legal order exists for a statement.
    #[error("{file}:{line}:{col}: no legal dataflow order: {message}")]
    NoOrder {
        /// Program file.
        file: String,
        /// Statement line.
        line: u32,
        /// Statement column.
        col: u32,
        /// The conflicting constraints.
        message: String,
    },
    /// A construct the lowering does not support yet.
    #[error("{file}:{line}:{col}: unsupported: {message}")]
    Unsupported {
        /// Program file.
        file: String,
        /// Statement line.
        line: u32,
        /// Statement column.
        col: u32,
        /// What is unsupported.
        message: String,
    },
    /// A fusion plan that does not cover the program once, in order.
    #[error("{origin}: {message}")]
    Fusion {
        /// Where the plan came from: `FILE:LINE:COL` of a `fuse` group, or `--fusion GROUPS`.
        origin: String,
        /// What is wrong, in user statement numbering.
        message: String,
    },
    /// A `par` request (`--par`, or a program's `par` line) that a group cannot honour.
    #[error("{origin}: group {group}: {error}")]
    Par {
        /// Where the request came from: `FILE:LINE:COL` of a `par` line, or `--par SPEC`.
        origin: String,
        /// The group, in user statement numbering.
        group: String,
        /// What is wrong.
        error: par::ParError,
    },
    /// A blocking (`--block`, a `block(B)` format) that does not fit the group's tensors.
    #[error("{file}:{line}:{col}: {message}")]
    Block {
        /// Program file.
        file: String,
        /// Line of the tensor's declaration.
        line: u32,
        /// Column of the tensor's declaration.
        col: u32,
        /// What does not fit.
        message: String,
    },
    /// The produced graph failed verification (a compiler bug).
    #[error("internal error: graph verification failed: {0}")]
    Verify(#[from] fuseflow_graph::VerifyError),
}
