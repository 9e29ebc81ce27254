//! Design-space exploration for FuseFlow programs.
//!
//! A sweep visits points of a [`space::Space`] (fusion partitions of the user statements,
//! dataflow order choices, parallel lanes, block sizes, machines), evaluates every fusion
//! group of a point through a
//! [`GroupEvaluator`] (the driver implements it: compile, simulate, verify one group), and
//! appends one JSON line per finished point to a results directory ([`store`]).
//!
//! Reuse is what makes exhaustive sweeps affordable: a group's result is a pure function of
//! its statements, its order, its lanes and block size, the machine and the input data (every
//! group reads its inputs,
//! intermediates included, from the same data, see [`GroupEvaluator`]), so it is cached on
//! disk under a content hash ([`hash`], [`store::ResultsDir::cache_get`]). An exhaustive
//! partition sweep of n statements then simulates each of the n(n+1)/2 contiguous groups once
//! per order and machine instead of simulating 2^(n-1) whole programs. Groups need not be
//! contiguous: `partitions = "convex"` visits every partition of the statements' dependence
//! DAG into convex groups ([`space::Dag`]), and a group is always a sorted list of statements.
//!
//! [`estimate`] is an analytic model of a group's cycles, FLOPs and off-chip bytes from its
//! graph and the measured sparsity of the data; [`sweep`] uses it to prune a space to its
//! most promising points, and [`stats`] measures how well it ranks points when every point is
//! simulated. [`report`] writes the CSV, the Markdown and HTML reports ([`html`]) and the Pareto
//! plots; [`shard`] splits a sweep over processes and [`store::merge`] joins their results.
//!
//! This crate knows nothing of the driver (the `fuseflow` package depends on it, not the
//! other way round) and prints nothing: warnings and progress reach the caller as
//! [`sweep::Event`]s.

pub mod estimate;
pub mod hash;
pub mod html;
pub mod report;
pub mod reproduce;
pub mod shard;
pub mod space;
pub mod stats;
pub mod store;
pub mod sweep;

pub use estimate::{DataStats, Estimate, MemoryModel, TensorStats, TileModel, TileRole, TileTiming};
pub use shard::Shard;
pub use space::{Dag, Lanes, Machine, OrderChoice, Partition, PartitionCount, Point, Space, StopReason, Variant};
pub use store::{GroupRecord, PointRecord, ResultsDir, Status};
pub use sweep::{sweep, Event, Prune, SweepOptions, SweepSummary};

/// The version written into results directories and cache keys: results of another version
/// are never mixed with this one's.
pub const TOOL_VERSION: &str = concat!("fuseflow-explore ", env!("CARGO_PKG_VERSION"));

/// Exploration failures that stop a sweep (a failing point never does: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// The space (file or flags) is invalid: an unknown axis, an impossible value, a machine
    /// that does not exist.
    #[error("{0}")]
    Space(String),
    /// `--shard` (or the scheduler's environment) names no valid shard.
    #[error("{0}")]
    Shard(String),
    /// The results directory holds results of another program, data or tool version.
    #[error("{0}")]
    Foreign(String),
    /// Reading or writing the results directory failed (retryable: nothing is lost).
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The sweep was cancelled; finished points are in the results log.
    #[error("cancelled after {done} of {total} points; rerun to resume")]
    Cancelled {
        /// Points finished in this run.
        done: usize,
        /// Points this run had to do.
        total: usize,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The plot file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ExploreError {
    /// Whether running the same command again may succeed (I/O trouble, cancellation) as
    /// opposed to an invalid configuration that will fail again.
    pub fn retryable(&self) -> bool {
        match self {
            ExploreError::Io { .. } | ExploreError::Cancelled { .. } => true,
            ExploreError::Space(_) | ExploreError::Shard(_) | ExploreError::Foreign(_) | ExploreError::Plot { .. } => {
                false
            }
        }
    }
}

/// A group that could not be evaluated: recorded in its points, never fatal to a sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// One line: what failed (deadlock, cycle limit, verification, memory, compilation).
    pub message: String,
    /// Whether it depends on the environment (a memory limit) rather than the configuration:
    /// retryable failures are neither cached nor skipped when a sweep resumes.
    pub retryable: bool,
}

/// A group compiled to a graph.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The verified graph.
    pub graph: fuseflow_graph::Graph,
    /// Tensors the group writes.
    pub outputs: Vec<String>,
    /// The dataflow order of each output expression.
    pub orders: Vec<Vec<String>>,
    /// The lanes applied to this group: those requested whose index it iterates (`none` when
    /// no request fits it).
    pub par: Lanes,
    /// The blocking applied to this group (`None`: it runs scalar).
    pub block: Option<Blocking>,
}

impl Compiled {
    /// A scalar group without lanes.
    pub fn scalar(graph: fuseflow_graph::Graph, outputs: Vec<String>, orders: Vec<Vec<String>>) -> Compiled {
        Compiled { graph, outputs, orders, par: Lanes::default(), block: None }
    }
}

/// How a compiled group is blocked: what simulating it (tiles of which dimensions) and
/// estimating it (each node's tile role, the block structures' statistics) need.
#[derive(Debug, Clone)]
pub struct Blocking {
    /// Block size `B`.
    pub block: usize,
    /// Blocked logical dimensions of every tensor the group touches.
    pub dims: std::collections::BTreeMap<String, Vec<bool>>,
    /// The estimate's view of the blocked graph.
    pub tiles: TileModel,
}

/// What simulating one group gives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupResult {
    /// Simulated cycles.
    pub cycles: u64,
    /// Tokens moved.
    pub tokens: u64,
    /// ALU, reducer and accumulator operations.
    pub flops: u64,
    /// Off-chip bytes read.
    pub bytes_read: u64,
    /// Off-chip bytes written.
    pub bytes_written: u64,
    /// The dataflow order of each output expression.
    pub orders: Vec<Vec<String>>,
    /// Whether every output matched the reference (`None`: not checked).
    pub verified: Option<bool>,
    /// Largest absolute error against the reference (`None`: not checked).
    pub max_abs_error: Option<f64>,
    /// The first mismatching entry, if any.
    pub mismatch: Option<String>,
    /// Wall-clock seconds of compiling and simulating the group.
    pub wall_seconds: f64,
}

/// How a sweep evaluates groups: implemented by the driver (compile, simulate and verify one
/// group of user statements `group`, sorted, on one machine). A group need not be a range: it
/// is any convex set of statements of [`GroupEvaluator::dependences`].
///
/// Every group must read its inputs, intermediates computed by earlier statements included,
/// from data that does not depend on the partition (the driver takes intermediates from the
/// reference evaluator, stored in their declared formats), so that a group's result depends
/// only on the group, its order, the machine and [`GroupEvaluator::fingerprint`].
pub trait GroupEvaluator {
    /// Everything besides group, order and machine that results depend on: the program text,
    /// its parameters, the data (dataset, seed), verification settings, lowering options.
    fn fingerprint(&self) -> String;
    /// The program, for the results directory's description.
    fn program(&self) -> String;
    /// Number of user statements (what partitions split).
    fn statements(&self) -> usize;
    /// The dependence DAG of the user statements (which groups are convex, the order groups
    /// run in). By default a chain: each statement reads the one before, so only ranges are
    /// convex.
    fn dependences(&self) -> Dag {
        Dag::chain(self.statements())
    }
    /// The text of the statements of `group` (part of the group's cache key).
    fn group_text(&self, group: &[usize]) -> String;
    /// Legal dataflow orders of the group's outputs (at most `cap`), as `--order` takes them.
    fn orders(&self, group: &[usize], cap: usize) -> Result<Vec<Vec<String>>, Failure>;
    /// Compiles the group under `order` (the default when `None`, or when it names other
    /// indices than an output's).
    fn compile(&self, group: &[usize], order: Option<&[String]>) -> Result<Compiled, Failure>;
    /// Compiles the group under `order` with `variant`'s lanes (for every index the group
    /// iterates) and block size (when the group has a sparse operand); a request that does
    /// not fit the group leaves it unchanged, and [`Compiled::par`] and [`Compiled::block`]
    /// say what was applied. Evaluators without lanes and blocking refuse other variants.
    fn compile_variant(
        &self,
        group: &[usize],
        order: Option<&[String]>,
        variant: &Variant,
    ) -> Result<Compiled, Failure> {
        if variant.is_plain() {
            self.compile(group, order)
        } else {
            let message =
                format!("lanes and blocking (`{}`) are not supported by this evaluator", variant.to_string().trim());
            Err(Failure { message, retryable: false })
        }
    }
    /// The index variables the program's statements iterate, sorted, when known: the `par`
    /// axis may name only these.
    fn indices(&self) -> Option<Vec<String>> {
        None
    }
    /// The machine's tile units at block size `block`, for estimating blocked groups.
    fn tile_timing(&self, _machine: &Machine, block: usize) -> TileTiming {
        TileTiming::comal(block)
    }
    /// A canonical description of the machine (part of cache keys); an error when the machine
    /// is invalid (an unknown preset, an impossible override).
    fn machine_fingerprint(&self, machine: &Machine) -> Result<String, String>;
    /// The machine's off-chip memory for the estimate, `None` with ideal memory.
    fn memory_model(&self, machine: &Machine) -> Option<MemoryModel>;
    /// Simulates (and verifies) a compiled group on a machine.
    fn simulate(&self, group: &[usize], compiled: &Compiled, machine: &Machine) -> Result<GroupResult, Failure>;
    /// Statistics of the data every group reads (inputs and intermediates).
    fn stats(&self) -> &DataStats;
}
