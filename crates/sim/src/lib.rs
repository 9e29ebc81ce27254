//! Cycle-level simulator of SAM dataflow graphs.
//!
//! The semantic model is DAM's (nodes with local clocks joined by timed channels with latency
//! and capacity); the engine is our own and built for speed: tokens are 16-byte `Copy` values,
//! channels are ring buffers, and every node activation fires as often as its inputs and
//! output space allow. Timing stays exact because each token carries its ready cycle, and it
//! does not depend on the order in which nodes are activated, so runs are deterministic.
//!
//! The simulator knows dataflow graphs and tensors, never the tensor IR.

mod channel;
pub mod control;
mod engine;
pub mod hw;
mod io;
pub mod memory;
pub mod prims;
pub mod tile;
mod token;
pub mod trace;

pub use channel::Channel;
pub use control::{Observer, SimControl, SimProgress};
pub use engine::{
    simulate, simulate_blocked, simulate_with, EnlargedChannel, FifoReport, Network, NodeStats, Quirks, SimConfig,
    SimReport, TensorTraffic, Timing, DEFAULT_CLOCK_MHZ, DEFAULT_MAX_CYCLES, TRACE_SOFT_CAP,
};
pub use fuseflow_tensor::human_bytes;
pub use hw::{HwConfig, HwError};
pub use io::{Io, Primitive};
pub use memory::{MemoryConfig, Sharing};
pub use token::Token;
pub use trace::{Span, Trace};

/// What a sink node recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// A level writer's arrays.
    Level {
        /// Segment array (one entry per parent position, plus one).
        seg: Vec<u32>,
        /// Coordinates.
        crd: Vec<u32>,
    },
    /// A value writer's values.
    Vals(Vec<f64>),
    /// A test sink's tokens.
    Tokens(Vec<Token>),
}

/// Simulation failures. Every variant names the node (and, for deadlocks, the channels).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A primitive received tokens that break SAM stream rules.
    #[error("node n{node}: {message}")]
    Protocol {
        /// Node index.
        node: u32,
        /// What went wrong.
        message: String,
    },
    /// No node can make progress but some are not done.
    #[error("deadlock at cycle {cycle}: {detail}")]
    Deadlock {
        /// Largest local clock reached.
        cycle: u64,
        /// Stuck nodes and the channels they wait on.
        detail: String,
    },
    /// A node's clock passed the configured limit (`SimConfig::max_cycles`).
    #[error("the run passed the cycle limit of {limit} cycles (at node n{node}) without finishing")]
    CycleLimit {
        /// The limit.
        limit: u64,
        /// The node that passed it.
        node: u32,
    },
    /// The caller asked the run to stop (see [`SimControl::cancel`]).
    #[error("cancelled at cycle {cycle}")]
    Cancelled {
        /// Largest local clock reached.
        cycle: u64,
    },
    /// Channel buffers and output writers together went past [`SimControl::mem_limit`].
    #[error(
        "the simulation holds {} in channels and outputs, over the memory limit of {} (largest: {largest})",
        human_bytes(*bytes),
        human_bytes(*limit)
    )]
    Memory {
        /// Bytes held.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The largest holder (a channel or a node) and its bytes.
        largest: String,
    },
    /// A graph refers to a tensor that was not supplied, or supplies it in another format.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// Output writers produced arrays that do not form a tensor.
    #[error("output {tensor}: {message}")]
    Output {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// The graph failed verification.
    #[error("invalid graph: {0}")]
    Graph(#[from] fuseflow_graph::VerifyError),
}
