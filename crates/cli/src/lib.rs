//! The FuseFlow driver: load a program, compile each statement, simulate, verify.
//!
//! This library is what the `fuseflow` command, the benchmarks and the end-to-end tests share.
//! It does no terminal output; `main.rs` does.

pub mod bench;
pub mod control;
pub mod group;
pub mod observe;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub use control::{Phase, RunControl, RunObserver, RunProgress};
use fuseflow_tensor::budget::{convert_bytes, from_coo_bytes, tensor_bytes};
use fuseflow_tensor::Budget;

use fuseflow_compiler::{lower_group, plan, Fusion, GroupKernel, Kernel, LowerOptions};
use fuseflow_graph::Graph;
use fuseflow_ir::CheckedProgram;
use fuseflow_sim::{simulate_with, NodeStats, SimConfig, TensorTraffic, Trace};
use fuseflow_tensor::Tensor;

/// Everything a run can be configured with.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Dataflow order for statements whose index variables it names (others use their first
    /// legal order).
    pub order: Option<Vec<String>>,
    /// Simulator parameters.
    pub sim: SimConfig,
    /// Run seed for generated inputs.
    pub seed: u64,
    /// Compare outputs with the reference evaluator.
    pub verify: bool,
    /// Relative tolerance of the comparison.
    pub rel_tol: f64,
    /// Absolute tolerance of the comparison.
    pub abs_tol: f64,
    /// Lowering switches.
    pub lower: LowerOptions,
    /// Fusion granularity.
    pub fusion: Fusion,
    /// Dataflow order per group index (as listed by `plan`), taking precedence over `order`.
    pub group_orders: BTreeMap<usize, Vec<String>>,
    /// Data that replaces inputs' generated data: `(tensor name, COO)`, e.g. a graph dataset's
    /// adjacency bound to `A` and its identity features bound to `X`.
    pub bind: Vec<(String, fuseflow_tensor::Coo)>,
    /// The graph dataset the bound data came from, for the report.
    pub dataset: Option<DatasetInfo>,
    /// Record activation spans for a trace, at most this many over all groups (`None` = off).
    pub trace_limit: Option<usize>,
    /// Memory limit in bytes for everything the run builds from user input (inputs, the
    /// reference's relations, channel buffers, outputs); each is estimated and refused before
    /// it is allocated. `None` = no limit.
    pub mem_limit: Option<u64>,
    /// Most products one step of the reference evaluator may compute (`None` = no limit).
    pub max_work: Option<u64>,
    /// Worker threads for simulating groups (and candidate orders) side by side; 0 = one per
    /// core. Results are the same for every value.
    pub jobs: usize,
    /// Simulate the legal orders of every group and keep the fastest (`--order best`).
    pub order_search: Option<OrderSearch>,
    /// Parallel lanes (`--par`), applied after the program's `par` lines (a later request for
    /// the same index and group wins).
    pub par: Vec<ParRequest>,
    /// Sparsity blocking of the whole run (`--block B`): every group with a sparse operand runs
    /// with `B × B` tiles (see [`fuseflow_compiler::block`]); the others run scalar.
    pub block: Option<usize>,
    /// Sparsity blocking per group index (`--block G:B`), taking precedence over `block`; such
    /// a group must have a sparse operand.
    pub group_blocks: BTreeMap<usize, usize>,
}

/// `--order best`: which orders each group tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSearch {
    /// Most orders simulated per group: the best ones by the compiler's cost estimate.
    pub budget: usize,
}

impl Default for OrderSearch {
    fn default() -> Self {
        OrderSearch { budget: 64 }
    }
}

/// One order that `--order best` simulated for a group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderTrial {
    /// The order of each output expression (empty when it failed before simulating).
    pub orders: Vec<Vec<String>>,
    /// Its rank by the compiler's cost estimate (0 = cheapest).
    pub rank: usize,
    /// The compiler's dense-shape cost estimate (`None`: not estimated).
    pub estimate: Option<f64>,
    /// Simulated cycles (`None` when it failed).
    pub cycles: Option<u64>,
    /// Whether its outputs matched the reference (`None` when not checked).
    pub verified: Option<bool>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// What `--order best` did for a group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrderSearchReport {
    /// Every order simulated, in estimate rank order.
    pub trials: Vec<OrderTrial>,
    /// Legal orders not simulated because of the budget.
    pub skipped: usize,
}

/// A request for parallel lanes: `--par [GROUP:]INDEX=LANES` or a program's `par` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParRequest {
    /// The group (as `plan` lists them), or `None` for every group that iterates the index.
    pub group: Option<usize>,
    /// The index variable.
    pub index: String,
    /// Number of lanes (≥ 1).
    pub lanes: u32,
    /// Where it came from, for errors: `FILE:LINE:COL` or `--par SPEC`.
    pub origin: String,
}

/// The program's `par` lines, then the configured requests.
fn par_requests(p: &CheckedProgram, cfg: &RunConfig) -> Vec<ParRequest> {
    let mut v: Vec<ParRequest> = p
        .pars
        .iter()
        .map(|q| ParRequest {
            group: q.group,
            index: q.index.clone(),
            lanes: q.lanes,
            origin: format!("{}:{}:{}", p.file, q.span.line, q.span.col),
        })
        .collect();
    v.extend(cfg.par.iter().cloned());
    v
}

/// Runs group `gi` (statements `stmts`) in parallel lanes as `reqs` ask. An index a request
/// names for this group alone must be iterated by it; one named for every group applies where
/// it is iterated.
fn apply_par(
    p: &CheckedProgram,
    gi: usize,
    stmts: &[usize],
    graph: fuseflow_graph::Graph,
    reqs: &[ParRequest],
) -> Result<fuseflow_graph::Graph, DriverError> {
    use fuseflow_compiler::par;
    // The last request per index wins.
    let mut chosen: Vec<&ParRequest> = Vec::new();
    for r in reqs.iter().filter(|r| r.group.is_none_or(|g| g == gi)) {
        chosen.retain(|c| c.index != r.index);
        chosen.push(r);
    }
    let mut todo = Vec::new();
    for r in chosen {
        if r.group.is_some() || par::iterates(&graph, &r.index) {
            todo.push((r.index.clone(), r.lanes));
        }
    }
    if todo.is_empty() {
        return Ok(graph);
    }
    par::parallelize_all(&graph, &todo).map_err(|error| {
        let origin = reqs
            .iter()
            .rev()
            .find(|r| r.group.is_none_or(|g| g == gi) && error.index() == Some(r.index.as_str()))
            .map_or_else(|| "--par".to_string(), |r| r.origin.clone());
        DriverError::Compile(fuseflow_compiler::CompileError::Par { origin, group: p.group_label(stmts), error })
    })
}

/// Refuses requests for a group the plan does not have, and requests for every group whose
/// index no group iterates.
fn check_par_coverage(p: &CheckedProgram, reqs: &[ParRequest], kernels: &[GroupKernel]) -> Result<(), DriverError> {
    for r in reqs {
        let bad = match r.group {
            Some(g) => (g >= kernels.len()).then(|| {
                format!(
                    "group {g} does not exist (the plan has {} groups: `fuseflow orders` lists them)",
                    kernels.len()
                )
            }),
            None => (!kernels.iter().any(|k| fuseflow_compiler::par::iterates(&k.graph, &r.index)))
                .then(|| format!("no group iterates index {}", r.index)),
        };
        if let Some(message) = bad {
            return Err(DriverError::Par { origin: r.origin.clone(), file: p.file.clone(), message });
        }
    }
    Ok(())
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            order: None,
            sim: SimConfig::default(),
            seed: 0,
            verify: true,
            rel_tol: 1e-9,
            abs_tol: 1e-9,
            lower: LowerOptions::default(),
            fusion: Fusion::Unfused,
            bind: Vec::new(),
            dataset: None,
            group_orders: BTreeMap::new(),
            trace_limit: None,
            mem_limit: None,
            max_work: None,
            jobs: 0,
            order_search: None,
            par: Vec::new(),
            block: None,
            group_blocks: BTreeMap::new(),
        }
    }
}

/// Driver failures: each names the statement, tensor or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Program text or checking.
    #[error(transparent)]
    Ir(#[from] fuseflow_ir::IrError),
    /// Input data, located at the declaration of the input concerned.
    #[error("{at}: {error}")]
    Data {
        /// `FILE:LINE:COL` of the input's declaration.
        at: String,
        /// What went wrong (names the tensor and the data file).
        error: Box<fuseflow_ir::DataError>,
    },
    /// Compilation.
    #[error(transparent)]
    Compile(#[from] fuseflow_compiler::CompileError),
    /// Reference evaluation.
    #[error("reference evaluator: {0}")]
    Reference(String),
    /// A step of the reference evaluation would compute more than [`RunConfig::max_work`]
    /// products; it was refused before it started.
    #[error("reference evaluator: {0}")]
    WorkLimit(fuseflow_reference::EvalError),
    /// Simulation.
    #[error("simulating statements {stmt} ({tensor}): {error}")]
    Sim {
        /// The group's statements in user numbering (e.g. `0-3`, or `2.1` for a part of a
        /// built-in).
        stmt: String,
        /// Tensor it computes.
        tensor: String,
        /// The simulator error.
        error: fuseflow_sim::SimError,
    },
    /// A parallel-lanes request that fits no group of the run.
    #[error("{origin}: {message}")]
    Par {
        /// Where it came from: `FILE:LINE:COL` of a `par` line, or `--par SPEC`.
        origin: String,
        /// Program file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// An `--order` that fits no kernel of the run.
    #[error("{file}: {message}")]
    Order {
        /// Program file.
        file: String,
        /// The order and the kernels' index names.
        message: String,
    },
    /// A step would need more memory than [`RunConfig::mem_limit`] leaves; nothing was
    /// allocated for it.
    #[error(transparent)]
    Memory(#[from] fuseflow_tensor::OverBudget),
    /// [`RunControl::cancel`] was set; `finished` says what had completed.
    #[error("cancelled while {phase}; {finished}")]
    Cancelled {
        /// The phase that was interrupted.
        phase: String,
        /// What had finished.
        finished: String,
    },
    /// A fused group is beyond what the compiler lowers (see [`check_compile_size`]).
    #[error("{what}, over the compiler's limits of {nodes} nodes and {streams} streams: split it into smaller groups (--fusion A-B,C-D or fuse lines)")]
    GroupTooLarge {
        /// The group and its estimated size.
        what: String,
        /// The limit on inlined expression nodes.
        nodes: u64,
        /// The limit on streams before pruning.
        streams: u64,
    },
    /// Worker threads could not be started.
    #[error("{0}")]
    Threads(String),
    /// Converting a simulated tensor.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What went wrong.
        message: String,
    },
}

/// The result of one group's graph (one statement when unfused).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupReport {
    /// The statements this graph computes, numbered as written (a built-in line is one
    /// statement; unfused, each of its parts is a group of its own and lists that statement).
    pub statements: Vec<usize>,
    /// The same in `--fusion` syntax, with `U.K` for part K of built-in statement U when a
    /// group holds only part of it (e.g. `0-3`, `5`, `2.1`).
    pub label: String,
    /// Tensors the graph writes.
    pub outputs: Vec<String>,
    /// Dataflow order used for each output expression.
    pub orders: Vec<Vec<String>>,
    /// Block size when the group ran blocked (tile-valued), else `None`.
    pub block: Option<usize>,
    /// Simulated cycles.
    pub cycles: u64,
    /// Tokens moved over channels.
    pub tokens: u64,
    /// ALU, reducer and accumulator operations.
    pub flops: u64,
    /// Off-chip bytes read (scanners and value arrays).
    pub bytes_read: u64,
    /// Off-chip bytes written (writers).
    pub bytes_written: u64,
    /// Memory requests issued (0 with ideal memory).
    pub mem_requests: u64,
    /// Bytes moved by memory requests (whole lines for reads; 0 with ideal memory).
    pub mem_bytes: u64,
    /// `mem_bytes / (cycles × peak bytes per cycle)`; `None` with ideal memory.
    pub bandwidth_utilisation: Option<f64>,
    /// Traffic per tensor; `None` with ideal memory.
    pub tensors: Option<BTreeMap<String, TensorTraffic>>,
    /// Graph nodes per primitive kind.
    pub primitives: BTreeMap<String, usize>,
    /// Channel capacities when channels are bounded: total FIFO storage and the channels
    /// that FIFO sizing enlarged.
    pub fifo: Option<fuseflow_sim::FifoReport>,
    /// Whether every output matched the reference (`None` when not checked).
    pub verified: Option<bool>,
    /// Largest absolute difference from the reference (`None` when not checked).
    pub max_abs_error: Option<f64>,
    /// First mismatching entry, or the first entry that is NaN or infinite, if any.
    pub mismatch: Option<String>,
    /// The orders `--order best` simulated, when it ran.
    pub order_search: Option<OrderSearchReport>,
    /// Wall time of this group's simulation, in seconds: with groups side by side, the
    /// longest of them bounds the run. Like the run's own wall times it varies from run to
    /// run; nothing else in the report does.
    pub sim_seconds: f64,
    /// The group's graph (for annotated exports).
    #[serde(skip)]
    pub graph: Graph,
    /// Per-node counters, indexed like the graph's nodes.
    #[serde(skip)]
    pub nodes: Vec<NodeStats>,
    /// Activation spans, when [`RunConfig::trace_limit`] asked for them.
    #[serde(skip)]
    pub trace: Option<Trace>,
    /// Product chains the simulator ran fused (`SimReport::fused_products`): engine speed only.
    #[serde(skip)]
    pub fused_products: usize,
    /// Of those, chains that also absorbed their sparse accumulator
    /// (`SimReport::fused_accumulators`).
    #[serde(skip)]
    pub fused_accumulators: usize,
    /// Filled intersections the simulator ran fused (`SimReport::fused_fills`): speed only.
    #[serde(skip)]
    pub fused_fills: usize,
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Program file.
    pub program: String,
    /// Fusion granularity used (`unfused`, `partial`, `full` or groups such as `0-3,4`).
    pub fusion: String,
    /// Every `param` of the program with the value the run used (after `--preset`, the
    /// dataset and `--param`).
    pub params: BTreeMap<String, i64>,
    /// The graph dataset whose data the run used (`--dataset`), if any.
    pub dataset: Option<DatasetInfo>,
    /// Total cycles (sum over groups; kernels run one after another).
    pub cycles: u64,
    /// Total tokens moved.
    pub tokens: u64,
    /// Total arithmetic operations.
    pub flops: u64,
    /// Total off-chip bytes read and written.
    pub offchip_bytes: u64,
    /// Total memory requests (0 with ideal memory).
    pub mem_requests: u64,
    /// Total bytes moved by memory requests (0 with ideal memory).
    pub mem_bytes: u64,
    /// Peak memory bandwidth in bytes per cycle; `None` with ideal memory.
    pub peak_bytes_per_cycle: Option<u64>,
    /// `mem_bytes / (cycles × peak bytes per cycle)` over all groups; `None` with ideal memory.
    pub bandwidth_utilisation: Option<f64>,
    /// Traffic per tensor summed over groups; `None` with ideal memory.
    pub tensors: Option<BTreeMap<String, TensorTraffic>>,
    /// Whether every output was checked, matched the reference and is finite, and the program
    /// computed anything at all.
    pub verified: bool,
    /// Whether outputs were checked at all.
    pub checked: bool,
    /// Why the run is not verified (`None` when it is).
    pub reason: Option<String>,
    /// Largest absolute error over all checked outputs (`None` when not checked).
    pub max_abs_error: Option<f64>,
    /// Nodes per primitive kind over all graphs.
    pub primitives: BTreeMap<String, usize>,
    /// Seconds spent simulating, summed over groups (of the order kept, with `--order best`).
    pub sim_seconds: f64,
    /// Wall-clock seconds of the simulation phase (groups run side by side, so this can be
    /// less than `sim_seconds`, which sums every group's simulation time).
    pub sim_wall_seconds: f64,
    /// Wall-clock seconds for the whole run (loading, reference, compile, simulate, verify).
    pub wall_seconds: f64,
    /// Per-group results.
    pub groups: Vec<GroupReport>,
    /// The simulated value of every `output` tensor, in its declared format (what the graphs
    /// wrote, not the reference's), for callers that hand results back to a user (the Python
    /// package). Not serialised: `--json` reports numbers, not tensors.
    #[serde(skip)]
    pub outputs: BTreeMap<String, Tensor>,
}

impl RunReport {
    /// The report with its wall-clock figures (the run's and each group's) set to 0: what two
    /// runs of the same inputs and seed agree on, byte for byte, on any number of threads.
    pub fn without_wall_times(&self) -> RunReport {
        let mut r = self.clone();
        r.sim_seconds = 0.0;
        r.sim_wall_seconds = 0.0;
        r.wall_seconds = 0.0;
        for g in &mut r.groups {
            g.sim_seconds = 0.0;
        }
        r
    }
}

/// The graph dataset a run used.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetInfo {
    /// Graph name (`karate`, `cora-synth`, or the file it was read from).
    pub name: String,
    /// The loader's one-line description: source, size, what was done to it.
    pub description: String,
    /// What replaced which input, e.g. `A: adjacency`, `X: identity features (sparse)`.
    pub bound: Vec<String>,
}

/// The program's input tensors ([`fuseflow_ir::load_inputs_with`]: inputs to skip, a memory
/// budget), errors located at the declaration of the input concerned.
pub fn load_inputs(
    p: &CheckedProgram,
    base_dir: &Path,
    seed: u64,
    opts: &fuseflow_ir::LoadOptions,
) -> Result<fuseflow_ir::Loaded, DriverError> {
    fuseflow_ir::load_inputs_with(p, base_dir, seed, opts).map_err(|error| data_error(p, error))
}

/// Locates a data error at the declaration of its tensor.
fn data_error(p: &CheckedProgram, error: fuseflow_ir::DataError) -> DriverError {
    let at = match error.tensor().and_then(|t| p.decl(t)) {
        Some(d) => format!("{}:{}:{}", p.file, d.span.line, d.span.col),
        None => p.file.clone(),
    };
    DriverError::Data { at, error: Box::new(error) }
}

/// Where an output is NaN or infinite: `Y(3,4) is NaN`.
pub(crate) fn first_non_finite(name: &str, t: &Tensor) -> Option<String> {
    t.vals.iter().position(|v| !v.is_finite())?;
    let mut first = None;
    t.for_each_stored(|c, v| {
        if first.is_none() && !v.is_finite() {
            let coords: Vec<String> = c.iter().map(|x| x.to_string()).collect();
            first = Some(format!("{name}({}) is {v}", coords.join(",")));
        }
    });
    first
}

/// Compiles (expanded) statement `stmt` on its own, exactly as an unfused [`run`] compiles it:
/// the graph `fuseflow graph` prints and `fuseflow compile` exports is the graph `run`
/// simulates. `order` applies if it names exactly the statement's indices.
pub fn compile_statement(p: &CheckedProgram, stmt: usize, cfg: &RunConfig) -> Result<Kernel, DriverError> {
    let order = cfg.group_orders.get(&stmt).or(cfg.order.as_ref());
    let k = lower_configured(p, &[stmt], stmt, order.map(|o| o.as_slice()), cfg)?;
    let order = k.orders.into_iter().next().unwrap_or_default();
    let graph = apply_par(p, stmt, &[stmt], k.graph, &par_requests(p, cfg))?;
    Ok(Kernel { stmt, order, graph })
}

/// Lowers group `gi` (statements `group`), blocked when `--block` asks for it
/// ([`RunConfig::block`], [`RunConfig::group_blocks`]).
fn lower_configured(
    p: &CheckedProgram,
    group: &[usize],
    gi: usize,
    order: Option<&[String]>,
    cfg: &RunConfig,
) -> Result<GroupKernel, DriverError> {
    let block_err = |tensor: &str, message: String| {
        let span = p.decl(tensor).map(|d| d.span).unwrap_or_default();
        DriverError::Compile(fuseflow_compiler::CompileError::Block {
            file: p.file.clone(),
            line: span.line,
            col: span.col,
            message,
        })
    };
    // Operands declared with a block size (`bcsr(16)`, `block(16)`) block their groups.
    let declared: Vec<(String, usize)> = fuseflow_compiler::block::group_operands(p, group)
        .into_iter()
        .filter_map(|t| p.decl(&t).and_then(|d| d.block).map(|b| (t, b)))
        .collect();
    let (block, origin, required) = match (cfg.group_blocks.get(&gi), cfg.block, declared.first()) {
        (Some(&b), _, _) => (b, format!("--block {gi}:{b}"), true),
        (None, Some(b), _) => (b, format!("--block {b}"), false),
        (None, None, Some((t, b))) => (*b, format!("block({b}) of {t}"), true),
        (None, None, None) => return Ok(lower_group(p, group, order, &cfg.lower)?),
    };
    if let Some((t, b)) = declared.iter().find(|(_, b)| *b != block) {
        return Err(block_err(
            t,
            format!("{origin}: {t} is declared with block({b}) and cannot be blocked by {block}"),
        ));
    }
    let mut seeds = fuseflow_compiler::block::sparse_operands(p, group);
    for (t, _) in &declared {
        if !seeds.contains(t) {
            seeds.push(t.clone());
        }
    }
    if seeds.is_empty() {
        if required {
            return Err(DriverError::Compile(fuseflow_compiler::CompileError::Block {
                file: p.file.clone(),
                line: p.stmts[group[0]].span.line,
                col: p.stmts[group[0]].span.col,
                message: format!(
                    "{origin}: group {gi} (statements {}) has no sparse operand to block",
                    p.group_label(group)
                ),
            }));
        }
        return Ok(lower_group(p, group, order, &cfg.lower)?);
    }
    let b = fuseflow_compiler::block_group(p, group, block, &seeds, &origin)?;
    Ok(fuseflow_compiler::lower_blocked_group(p, group, &b, order, &cfg.lower)?)
}

/// Simulates a compiled group: scalar, or blocked ([`GroupKernel::block`]) with its inputs
/// converted to tiles and its outputs expanded back, so both compare with the reference alike.
pub fn simulate_kernel(
    kernel: &GroupKernel,
    tensors: &BTreeMap<String, Tensor>,
    cfg: &SimConfig,
    control: &fuseflow_sim::SimControl,
) -> Result<fuseflow_sim::SimReport, fuseflow_sim::SimError> {
    simulate_graph(&kernel.graph, kernel.block.as_ref(), tensors, cfg, control)
}

/// [`simulate_kernel`] on a graph and its blocking (`None`: scalar).
pub fn simulate_graph(
    graph: &fuseflow_graph::Graph,
    block: Option<&fuseflow_compiler::GroupBlock>,
    tensors: &BTreeMap<String, Tensor>,
    cfg: &SimConfig,
    control: &fuseflow_sim::SimControl,
) -> Result<fuseflow_sim::SimReport, fuseflow_sim::SimError> {
    let Some(b) = block else { return simulate_with(graph, tensors, cfg, control) };
    let mut blocked = BTreeMap::new();
    for input in &graph.inputs {
        let bad = |message: String| fuseflow_sim::SimError::Tensor { tensor: input.tensor.clone(), message };
        let t = tensors.get(&input.tensor).ok_or_else(|| bad("no data supplied".into()))?;
        let dims = b.dims.get(&input.tensor).cloned().unwrap_or_else(|| vec![false; t.rank()]);
        let bt = fuseflow_tensor::Blocked::from_tensor(t, b.block, &dims).map_err(|e| bad(e.to_string()))?;
        blocked.insert(input.tensor.clone(), bt);
    }
    let spec = fuseflow_sim::tile::TileSpec::from_graph(graph, b.block, &b.dims);
    fuseflow_sim::simulate_blocked(graph, &blocked, &spec, cfg, control)
}

/// Compiles every group of the configured fusion granularity.
///
/// Row sharing (see [`LowerOptions::row_sharing`]) needs channels that hold a row; with finite
/// FIFOs the simulator's FIFO sizing gives those channels a row's depth
/// ([`fuseflow_sim::SimConfig::fifo_sizing`]), so it is on whatever the channels.
pub fn compile_groups(p: &CheckedProgram, cfg: &RunConfig) -> Result<Vec<GroupKernel>, DriverError> {
    let groups = plan(p, &cfg.fusion)?;
    if let Some((&g, &b)) = cfg.group_blocks.iter().find(|(&g, _)| g >= groups.len()) {
        return Err(DriverError::Order {
            file: p.file.clone(),
            message: format!("--block {g}:{b}: group {g} does not exist (the fusion has {} groups)", groups.len()),
        });
    }
    let mut out = Vec::new();
    let reqs = par_requests(p, cfg);
    for (i, g) in groups.iter().enumerate() {
        let order = cfg.group_orders.get(&i).or(cfg.order.as_ref());
        let mut k = lower_configured(p, g, i, order.map(|o| o.as_slice()), cfg)?;
        k.graph = apply_par(p, i, g, k.graph, &reqs)?;
        out.push(k);
    }
    check_par_coverage(p, &reqs, &out)?;
    if let Some(order) = &cfg.order {
        if !out.iter().any(|k| k.orders.contains(order)) {
            let kernels: Vec<String> = out.iter().flat_map(|k| k.orders.iter().map(|o| o.join(","))).collect();
            return Err(DriverError::Order {
                file: p.file.clone(),
                message: format!(
                    "--order {} names the indices of no kernel (the kernels use orders {}; `fuseflow orders` lists the legal ones)",
                    order.join(","),
                    kernels.join(" | ")
                ),
            });
        }
    }
    Ok(out)
}

/// Refuses, before anything is lowered, a fusion whose groups would take too long or too much
/// memory to compile: inlining copies an intermediate into each of its reads and joiners
/// forward every payload below them, so long or branching chains of fused statements grow
/// quadratically or worse (see [`fuseflow_compiler::size`]). A group must be within the
/// compiler's fixed limits ([`fuseflow_compiler::size::MAX_EXPR_NODES`],
/// [`fuseflow_compiler::size::MAX_PAYLOAD_STREAMS`]) and its estimated bytes within
/// `mem_limit`. Unfused statements are not checked (they never inline).
pub fn check_compile_size(p: &CheckedProgram, fusion: &Fusion, mem_limit: Option<u64>) -> Result<(), DriverError> {
    if *fusion == Fusion::Unfused {
        return Ok(());
    }
    for (gi, g) in plan(p, fusion)?.iter().enumerate() {
        let size = fuseflow_compiler::group_size(p, g);
        let what = || {
            format!(
                "fused group {gi} (statements {}) would inline {} expression nodes and build up to {} streams before pruning",
                p.group_label(g),
                size.expr_nodes,
                size.payload_streams
            )
        };
        if !size.within_limits() {
            return Err(DriverError::GroupTooLarge {
                what: what(),
                nodes: fuseflow_compiler::size::MAX_EXPR_NODES,
                streams: fuseflow_compiler::size::MAX_PAYLOAD_STREAMS,
            });
        }
        if let Some(limit) = mem_limit {
            Budget::new(limit).check(size.bytes(), || format!("compiling {}", what()))?;
        }
    }
    Ok(())
}

/// Loads, compiles, simulates and (unless disabled) verifies every group of `p`.
pub fn run(p: &CheckedProgram, base_dir: &Path, cfg: &RunConfig) -> Result<RunReport, DriverError> {
    run_with(p, base_dir, cfg, &RunControl::default())
}

/// [`run`] watched by `control`: progress reports by phase, cancellation (a
/// [`DriverError::Cancelled`] saying what finished). The report is [`run`]'s whenever it
/// returns `Ok`.
pub fn run_with(
    p: &CheckedProgram,
    base_dir: &Path,
    cfg: &RunConfig,
    control: &RunControl,
) -> Result<RunReport, DriverError> {
    let start = Instant::now();
    let mut budget = cfg.mem_limit.map_or(Budget::UNLIMITED, Budget::new);
    // What the whole run will hold, estimated from the declarations alone, is refused before
    // anything is generated or read; each step is checked again when its sizes are known.
    let plan = plan_bytes(p, cfg);
    let total = plan.iter().fold(0u64, |t, item| t.saturating_add(item.1));
    budget.check(total, || describe_plan(&plan))?;
    control.phase(Phase::Loading);
    // Bound data replaces an input, so that input is never generated or read.
    let skip: Vec<String> = cfg.bind.iter().map(|(name, _)| name.clone()).collect();
    for (name, coo) in &cfg.bind {
        budget.hold(fuseflow_tensor::budget::coo_bytes(coo.rank(), coo.nnz() as u64));
        let decl = p.decl(name).filter(|d| d.role == fuseflow_ir::Role::Input).ok_or_else(|| DriverError::Tensor {
            tensor: name.clone(),
            message: "is not an input of the program".into(),
        })?;
        if decl.shape != coo.shape {
            return Err(DriverError::Tensor {
                tensor: name.clone(),
                message: format!("declared {:?} but the bound data is {:?}", decl.shape, coo.shape),
            });
        }
    }
    let loaded = load_inputs(p, base_dir, cfg.seed, &fuseflow_ir::LoadOptions { skip, budget })?;
    budget.hold(loaded.bytes);
    let mut tensors = loaded.tensors;
    control.check(Phase::Loading, || "the inputs were loaded, nothing was simulated".into())?;
    for (name, coo) in &cfg.bind {
        let decl =
            p.decl(name).ok_or_else(|| DriverError::Tensor { tensor: name.clone(), message: "not declared".into() })?;
        budget.check(from_coo_bytes(&decl.shape, &decl.format, coo.nnz() as u64), || {
            format!(
                "converting the bound data ({} entries) to input {name} ({})",
                coo.nnz(),
                fuseflow_ir::format_name(&decl.format)
            )
        })?;
        let t = Tensor::from_coo(coo, &decl.format)
            .map_err(|e| DriverError::Tensor { tensor: name.clone(), message: e.to_string() })?;
        budget.hold(fuseflow_ir::stored_bytes(&t));
        tensors.insert(name.clone(), t);
    }
    if cfg.verify {
        control.phase(Phase::Reference { statement: 0, statements: p.stmts.len() });
        let ctl = control.eval_control(budget, cfg.max_work);
        let r = fuseflow_reference::evaluate_with(p, &tensors, &ctl).map_err(|e| {
            use fuseflow_reference::EvalError;
            if let EvalError::Cancelled { statement } = e {
                control.cancelled_error(
                    Phase::Reference { statement, statements: p.stmts.len() },
                    format!("the inputs were loaded and the reference had evaluated {statement} statements"),
                )
            } else if let EvalError::Memory(m) = e {
                DriverError::Memory(m)
            } else if matches!(e, EvalError::Work { .. }) {
                DriverError::WorkLimit(e)
            } else {
                DriverError::Reference(e.to_string())
            }
        })?;
        // The reference's values, in their declared formats, are what every group reads of
        // the intermediates and what it is checked against.
        budget.hold(r.values().map(fuseflow_ir::stored_bytes).sum());
        tensors.extend(r);
    }
    control.phase(Phase::Compiling);
    check_compile_size(p, &cfg.fusion, budget.limit.checked_sub(budget.held).filter(|_| budget.limit != u64::MAX))?;
    let mut report = RunReport {
        program: p.file.clone(),
        fusion: cfg.fusion.to_string(),
        params: p.params.clone(),
        dataset: cfg.dataset.clone(),
        cycles: 0,
        tokens: 0,
        flops: 0,
        offchip_bytes: 0,
        mem_requests: 0,
        mem_bytes: 0,
        peak_bytes_per_cycle: cfg.sim.memory.as_ref().map(fuseflow_sim::MemoryConfig::peak_bytes_per_cycle),
        bandwidth_utilisation: None,
        tensors: cfg.sim.memory.as_ref().map(|_| BTreeMap::new()),
        verified: cfg.verify,
        checked: cfg.verify,
        reason: None,
        max_abs_error: cfg.verify.then_some(0.0),
        primitives: BTreeMap::new(),
        sim_seconds: 0.0,
        sim_wall_seconds: 0.0,
        wall_seconds: 0.0,
        groups: Vec::new(),
        outputs: BTreeMap::new(),
    };
    let kernels = compile_groups(p, cfg)?;
    let groups = kernels.len();
    if cfg.verify {
        // The reference's values that no group reads or is checked against (intermediates
        // inside a fused group) are not needed.
        let needed: std::collections::BTreeSet<&String> =
            kernels.iter().flat_map(|k| k.graph.inputs.iter().map(|b| &b.tensor).chain(&k.outputs)).collect();
        let unused: Vec<String> = p
            .decls
            .iter()
            .filter(|d| d.role != fuseflow_ir::Role::Input && !needed.contains(&d.name))
            .map(|d| d.name.clone())
            .collect();
        for name in unused {
            if let Some(t) = tensors.remove(&name) {
                budget.release(fuseflow_ir::stored_bytes(&t));
            }
        }
    }
    control.check(Phase::Compiling, || "the inputs were loaded and checked".into())?;
    let sim_start = Instant::now();
    let runs = match cfg.verify {
        // Every group's inputs are known once the reference has run: each reads the
        // reference's values of the intermediates it consumes, so groups are independent and
        // their results (cycles included) do not depend on which ran first or alongside.
        true => simulate_independent(p, kernels, &mut tensors, cfg, control, budget)?,
        // Without the reference, a group reads what earlier groups simulated.
        false => {
            let jobs = group_jobs(p, kernels, cfg)?;
            let threads = if cfg.trace_limit.is_some() { 1 } else { thread_count(cfg.jobs) };
            let pool = if threads > 1 { Some(thread_pool(threads)?) } else { None };
            let mut runs: Vec<GroupRun> = Vec::with_capacity(groups);
            let mut used = 0;
            for (gi, job) in jobs.into_iter().enumerate() {
                let estimates: Vec<Option<f64>> = job.candidates.iter().map(|c| c.1).collect();
                let ways = threads.min(job.candidates.len());
                let shared = share_budget(budget, ways);
                let sim = trace_budget(cfg, used);
                let one = |kernel: GroupKernel| {
                    simulate_group(p, gi, groups, kernel, &tensors, None, cfg, &sim, control, shared)
                };
                let results: Vec<Result<GroupRun, DriverError>> = match &pool {
                    Some(pool) if ways > 1 => {
                        use rayon::prelude::*;
                        pool.install(|| job.candidates.into_par_iter().map(|(k, _)| one(k)).collect())
                    }
                    _ => job.candidates.into_iter().map(|(k, _)| one(k)).collect(),
                };
                let mut run = pick_fastest(results, &estimates, job.skipped)?;
                used += spans(&run);
                // What the graph wrote is alive while it is stored in the declared formats.
                budget.hold(run.written.values().map(fuseflow_ir::stored_bytes).sum());
                for (tensor, written) in &run.written {
                    // Later groups read this result in its declared format.
                    let decl = p.decl(tensor).ok_or_else(|| DriverError::Tensor {
                        tensor: tensor.clone(),
                        message: "not declared".into(),
                    })?;
                    let stored = store_declared(decl, written, &mut budget, "storing the simulated")?;
                    tensors.insert(tensor.clone(), stored);
                }
                // Stored in its declared format, an intermediate as the graph wrote it is not
                // needed again; an output is only looked up by name at the end.
                let dropped = run.written.iter().filter(|(t, _)| !is_output(p, t));
                budget.release(dropped.map(|(_, w)| fuseflow_ir::stored_bytes(w)).sum());
                run.written.retain(|t, _| is_output(p, t));
                runs.push(run);
            }
            runs
        }
    };
    report.sim_wall_seconds = sim_start.elapsed().as_secs_f64();
    if cfg.verify {
        // The outputs as the graphs wrote them are alive while they are stored below.
        budget.hold(runs.iter().flat_map(|r| r.written.values()).map(fuseflow_ir::stored_bytes).sum());
    }
    for run in runs {
        // What the graphs wrote for the program's outputs (not the reference's values), in
        // their declared formats.
        for (name, written) in &run.written {
            let Some(d) = p.decl(name).filter(|d| d.role == fuseflow_ir::Role::Output) else { continue };
            // Without the reference, the chain above already stored what the graph wrote.
            let chained = if cfg.verify { None } else { tensors.remove(name) };
            let t = match chained {
                Some(t) => t,
                None => store_declared(d, written, &mut budget, "keeping the simulated")?,
            };
            report.outputs.insert(name.clone(), t);
        }
        let gr = run.report;
        report.sim_seconds += run.sim_seconds;
        report.verified &= gr.verified.unwrap_or(false);
        if gr.verified == Some(false) && report.reason.is_none() {
            let what = gr.mismatch.clone().unwrap_or_else(|| "an output differs from the reference".into());
            report.reason = Some(format!("statements {}: {what}", gr.label));
        }
        report.max_abs_error = report.max_abs_error.zip(gr.max_abs_error).map(|(a, b)| a.max(b));
        report.cycles += gr.cycles;
        report.tokens += gr.tokens;
        report.flops += gr.flops;
        report.offchip_bytes += gr.bytes_read + gr.bytes_written;
        report.mem_requests += gr.mem_requests;
        report.mem_bytes += gr.mem_bytes;
        if let (Some(all), Some(group)) = (report.tensors.as_mut(), gr.tensors.as_ref()) {
            for (name, t) in group {
                let x = all.entry(name.clone()).or_default();
                x.bytes_read += t.bytes_read;
                x.bytes_written += t.bytes_written;
                x.mem_requests += t.mem_requests;
                x.mem_bytes += t.mem_bytes;
            }
        }
        for (k, n) in &gr.primitives {
            *report.primitives.entry(k.clone()).or_insert(0) += n;
        }
        report.groups.push(gr);
    }
    if !cfg.verify {
        report.reason = Some("verification disabled (--no-verify)".into());
    } else if report.groups.is_empty() {
        report.verified = false;
        report.max_abs_error = None;
        report.reason = Some("the program has no statements, so nothing was computed or checked".into());
    }
    report.bandwidth_utilisation =
        report.peak_bytes_per_cycle.map(|p| report.mem_bytes as f64 / (report.cycles.max(1) as f64 * p as f64));
    report.wall_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Whether `name` is declared as one of the program's outputs.
fn is_output(p: &CheckedProgram, name: &str) -> bool {
    p.decl(name).is_some_and(|d| d.role == fuseflow_ir::Role::Output)
}

/// One simulated group: its report and the tensors its graph wrote.
struct GroupRun {
    report: GroupReport,
    written: BTreeMap<String, Tensor>,
    sim_seconds: f64,
}

/// The configuration of the next group's simulation, with what is left of a trace's span
/// limit after the groups already run.
fn trace_budget(cfg: &RunConfig, used: usize) -> SimConfig {
    match cfg.trace_limit {
        Some(limit) => SimConfig { trace: Some(limit.saturating_sub(used)), ..cfg.sim.clone() },
        None => cfg.sim.clone(),
    }
}

/// Activation spans a run recorded.
fn spans(run: &GroupRun) -> usize {
    run.report.trace.as_ref().map_or(0, |t| t.spans.len())
}

/// A memory budget split `ways` ways: each of that many concurrent simulations may take its
/// share of what is left.
fn share_budget(b: Budget, ways: usize) -> Budget {
    if b.limit == u64::MAX {
        b
    } else {
        Budget { limit: b.held.saturating_add(b.left() / ways.max(1) as u64), held: b.held }
    }
}

/// Worker threads for `jobs` (0 = one per core), as every `--jobs` flag and `jobs=` argument
/// reads it.
pub fn thread_count(jobs: usize) -> usize {
    if jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        jobs
    }
}

/// What a graph wrote for `decl`, converted to its declared format, once the budget allows it
/// (`what` says why, in the refusal: "storing the simulated").
fn store_declared(
    decl: &fuseflow_ir::TensorDecl,
    written: &Tensor,
    budget: &mut Budget,
    what: &str,
) -> Result<Tensor, DriverError> {
    let nnz = written.vals.len() as u64;
    budget.check(convert_bytes(written, &decl.format), || {
        format!("{what} {} ({nnz} entries) as {}", decl.name, fuseflow_ir::format_name(&decl.format))
    })?;
    let stored = written
        .convert(&decl.format)
        .map_err(|e| DriverError::Tensor { tensor: decl.name.clone(), message: e.to_string() })?;
    budget.hold(fuseflow_ir::stored_bytes(&stored));
    Ok(stored)
}

/// A pool of `threads` workers.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, DriverError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DriverError::Threads(format!("cannot start {threads} worker threads: {e}")))
}

/// What one group simulates: its default kernel, or every candidate order with
/// [`RunConfig::order_search`] (the fastest is kept).
struct GroupJob {
    candidates: Vec<(GroupKernel, Option<f64>)>,
    /// Legal orders left out by the search budget.
    skipped: usize,
}

/// The kernels each group simulates.
fn group_jobs(p: &CheckedProgram, kernels: Vec<GroupKernel>, cfg: &RunConfig) -> Result<Vec<GroupJob>, DriverError> {
    let Some(search) = &cfg.order_search else {
        return Ok(kernels.into_iter().map(|k| GroupJob { candidates: vec![(k, None)], skipped: 0 }).collect());
    };
    let mut jobs = Vec::with_capacity(kernels.len());
    let reqs = par_requests(p, cfg);
    for (gi, kernel) in kernels.into_iter().enumerate() {
        let ranked = fuseflow_compiler::ranked_group_orders(p, &kernel.stmts, ORDER_SEARCH_CAP, &cfg.lower)?;
        let keep = ranked.len().min(search.budget.max(1));
        let mut candidates = Vec::with_capacity(keep);
        // Each candidate is compiled as `compile_groups` compiles the group: blocked and in
        // lanes where the run asks for them.
        for r in &ranked[..keep] {
            let mut k = lower_configured(p, &kernel.stmts, gi, Some(&r.order), cfg)?;
            k.graph = apply_par(p, gi, &kernel.stmts, k.graph, &reqs)?;
            candidates.push((k, r.estimate));
        }
        jobs.push(GroupJob { candidates, skipped: ranked.len() - keep });
    }
    Ok(jobs)
}

/// Most legal orders per output expression that `--order best` enumerates.
pub const ORDER_SEARCH_CAP: usize = 10_000;

/// The fastest of a group's candidate runs (verified ones first; ties go to the better
/// estimate rank, i.e. the earlier candidate), with every candidate's result listed.
fn pick_fastest(
    runs: Vec<Result<GroupRun, DriverError>>,
    estimates: &[Option<f64>],
    skipped: usize,
) -> Result<GroupRun, DriverError> {
    if runs.len() == 1 && skipped == 0 && estimates[0].is_none() {
        return runs.into_iter().next().expect("one run");
    }
    let trials: Vec<OrderTrial> = runs
        .iter()
        .zip(estimates)
        .enumerate()
        .map(|(rank, (r, estimate))| match r {
            Ok(run) => OrderTrial {
                orders: run.report.orders.clone(),
                rank,
                estimate: *estimate,
                cycles: Some(run.report.cycles),
                verified: run.report.verified,
                error: None,
            },
            Err(e) => OrderTrial {
                orders: Vec::new(),
                rank,
                estimate: *estimate,
                cycles: None,
                verified: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    let best = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|run| (i, run)))
        .min_by_key(|(i, run)| (run.report.verified == Some(false), run.report.cycles, *i))
        .map(|(i, _)| i);
    let Some(best) = best else {
        // Every candidate failed: the best-ranked one's error.
        return runs.into_iter().next().expect("at least one candidate");
    };
    let mut run = runs.into_iter().nth(best).expect("index in range")?;
    run.report.order_search = Some(OrderSearchReport { trials, skipped });
    Ok(run)
}

/// Simulates every group (every candidate order of every group) on `cfg.jobs` threads. Each
/// reads the program's inputs and the reference's intermediates, so the results do not
/// depend on the thread count or on scheduling.
fn simulate_independent(
    p: &CheckedProgram,
    kernels: Vec<GroupKernel>,
    tensors: &mut BTreeMap<String, Tensor>,
    cfg: &RunConfig,
    control: &RunControl,
    budget: Budget,
) -> Result<Vec<GroupRun>, DriverError> {
    use rayon::prelude::*;
    let jobs = group_jobs(p, kernels, cfg)?;
    let groups = jobs.len();
    // Traces keep a run-wide span limit in group order, so traced runs go one group at a time.
    let threads = if cfg.trace_limit.is_some() { 1 } else { thread_count(cfg.jobs) };
    let mut work: Vec<(usize, GroupKernel)> = Vec::new();
    let mut shapes = Vec::with_capacity(groups);
    for (gi, job) in jobs.into_iter().enumerate() {
        let estimates: Vec<Option<f64>> = job.candidates.iter().map(|c| c.1).collect();
        work.extend(job.candidates.into_iter().map(|(k, _)| (gi, k)));
        shapes.push((estimates, job.skipped));
    }
    let mut shared = share_budget(budget, threads.min(work.len()));
    let results: Vec<Result<GroupRun, DriverError>> = if threads <= 1 {
        // One at a time, so that a trace's span limit is spent in group order; each value
        // goes once the last group that reads it or is checked against it has run.
        let mut last_use: BTreeMap<&String, usize> = BTreeMap::new();
        for (w, (_, k)) in work.iter().enumerate() {
            for name in k.graph.inputs.iter().map(|b| &b.tensor).chain(&k.outputs) {
                last_use.insert(name, w);
            }
        }
        let mut done_after: Vec<Vec<String>> = vec![Vec::new(); work.len()];
        for (name, w) in last_use {
            done_after[w].push(name.clone());
        }
        let mut used = 0;
        let mut results = Vec::with_capacity(work.len());
        for ((gi, kernel), done) in work.into_iter().zip(done_after) {
            let sim = trace_budget(cfg, used);
            let r = simulate_group(p, gi, groups, kernel, tensors, Some(tensors), cfg, &sim, control, shared);
            used += r.as_ref().map_or(0, spans);
            results.push(r);
            for name in done {
                if let Some(t) = tensors.remove(&name) {
                    shared.release(fuseflow_ir::stored_bytes(&t));
                }
            }
        }
        results
    } else {
        let tensors = &*tensors;
        let pool = thread_pool(threads)?;
        pool.install(|| {
            work.into_par_iter()
                .map(|(gi, kernel)| {
                    simulate_group(p, gi, groups, kernel, tensors, Some(tensors), cfg, &cfg.sim, control, shared)
                })
                .collect()
        })
    };
    let mut results = results.into_iter();
    let mut runs = Vec::with_capacity(groups);
    for (estimates, skipped) in shapes {
        let group: Vec<_> = results.by_ref().take(estimates.len()).collect();
        runs.push(pick_fastest(group, &estimates, skipped)?);
    }
    Ok(runs)
}

/// The inputs of `graph` in the formats its bindings ask for
/// ([`fuseflow_compiler::LowerOptions::free_layout`] stores inputs in the order's layout).
fn relayout_inputs(graph: &Graph, tensors: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, DriverError> {
    let mut out = BTreeMap::new();
    for b in &graph.inputs {
        let Some(t) = tensors.get(&b.tensor) else { continue };
        let want = fuseflow_tensor::Format { levels: b.levels.clone(), mode_order: b.mode_order.clone() };
        let t = if t.format == want {
            t.clone()
        } else {
            t.convert(&want).map_err(|e| DriverError::Tensor { tensor: b.tensor.clone(), message: e.to_string() })?
        };
        out.insert(b.tensor.clone(), t);
    }
    Ok(out)
}

/// Simulates one group's kernel and compares what it wrote with the reference's values.
#[allow(clippy::too_many_arguments)]
fn simulate_group(
    p: &CheckedProgram,
    gi: usize,
    groups: usize,
    kernel: GroupKernel,
    tensors: &BTreeMap<String, Tensor>,
    expected: Option<&BTreeMap<String, Tensor>>,
    cfg: &RunConfig,
    sim_cfg: &SimConfig,
    control: &RunControl,
    budget: Budget,
) -> Result<GroupRun, DriverError> {
    let label = kernel.outputs.join(",");
    let stmts_label = p.group_label(&kernel.stmts);
    let t0 = Instant::now();
    let phase = Phase::Simulating { group: gi, groups };
    control.phase(phase);
    // The simulator copies the values and coordinates of every tensor the graph reads (and a
    // free layout copies them once more first): count them before they are made.
    let mut budget = budget;
    let read: Vec<&String> = kernel.graph.inputs.iter().map(|b| &b.tensor).collect();
    let copies = if cfg.lower.free_layout { 2 } else { 1 };
    let copied: u64 = tensors
        .iter()
        .filter(|(name, _)| read.contains(name))
        .map(|(_, t)| fuseflow_ir::stored_bytes(t).saturating_mul(copies))
        .sum();
    budget.check(copied, || format!("the simulator's copies of the inputs of statements {stmts_label}"))?;
    budget.hold(copied);
    let sim_ctl = control.sim_control(phase, budget);
    let relaid;
    let tensors = if cfg.lower.free_layout {
        relaid = relayout_inputs(&kernel.graph, tensors)?;
        &relaid
    } else {
        tensors
    };
    let mut sim = simulate_kernel(&kernel, tensors, sim_cfg, &sim_ctl).map_err(|error| {
        if let fuseflow_sim::SimError::Cancelled { cycle } = error {
            control.cancelled_error(phase, format!("group {gi} of {groups} was at cycle {cycle}"))
        } else {
            DriverError::Sim { stmt: stmts_label.clone(), tensor: label.clone(), error }
        }
    })?;
    let sim_seconds = t0.elapsed().as_secs_f64();
    let mut gr = GroupReport {
        statements: p.user_stmts_of(&kernel.stmts),
        label: stmts_label,
        outputs: kernel.outputs.clone(),
        orders: kernel.orders.clone(),
        block: kernel.block.as_ref().map(|b| b.block),
        cycles: sim.cycles,
        tokens: sim.tokens,
        flops: sim.ops,
        bytes_read: sim.bytes_read,
        bytes_written: sim.bytes_written,
        mem_requests: sim.mem_requests,
        mem_bytes: sim.mem_bytes,
        bandwidth_utilisation: sim.bandwidth_utilisation,
        tensors: sim.peak_bytes_per_cycle.map(|_| sim.tensors.clone()),
        primitives: kernel.graph.kind_counts().into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
        fifo: sim.fifo.take(),
        verified: expected.map(|_| true),
        max_abs_error: expected.map(|_| 0.0),
        mismatch: None,
        order_search: None,
        sim_seconds,
        graph: Graph::default(),
        nodes: std::mem::take(&mut sim.nodes),
        trace: sim.trace.take(),
        fused_products: sim.fused_products,
        fused_accumulators: sim.fused_accumulators,
        fused_fills: sim.fused_fills,
    };
    let mut written = BTreeMap::new();
    for tensor in &kernel.outputs {
        let out = sim.outputs.remove(tensor).ok_or_else(|| DriverError::Tensor {
            tensor: tensor.clone(),
            message: "the graph wrote no output".into(),
        })?;
        if let Some(exp) = expected {
            let e = exp.get(tensor).ok_or_else(|| DriverError::Reference(format!("no result for {tensor}")))?;
            let cmp = fuseflow_reference::compare_tensors(tensor, e, &out, cfg.rel_tol, cfg.abs_tol);
            if !cmp.ok {
                gr.verified = Some(false);
                if gr.mismatch.is_none() {
                    gr.mismatch = cmp.first_mismatch.clone();
                }
            }
            // A NaN or an infinity verifies nothing, even where the reference agrees.
            if let Some(bad) = first_non_finite(tensor, &out) {
                gr.verified = Some(false);
                if gr.mismatch.is_none() {
                    gr.mismatch = Some(bad);
                }
            }
            gr.max_abs_error = gr.max_abs_error.map(|m| m.max(cmp.max_abs_error));
            // Checked, an intermediate is not needed again (later groups read the
            // reference's): only the program's outputs are kept, for the report.
            if !is_output(p, tensor) {
                continue;
            }
        }
        written.insert(tensor.clone(), out);
    }
    gr.graph = kernel.graph;
    Ok(GroupRun { report: gr, written, sim_seconds })
}

/// What a run will hold at least, by item, from the declarations: generated and bound inputs
/// (exact), with verification the reference evaluator's copies of the dense ones, and every
/// statement's result stored in its declared format (the padding of dense levels: exact
/// whatever the values; with verification these are the reference evaluator's results, held
/// once). Inputs read from files and sparse results are checked when their sizes are known.
fn plan_bytes(p: &CheckedProgram, cfg: &RunConfig) -> Vec<(String, u64)> {
    let mut items = Vec::new();
    for d in p.decls.iter().filter(|d| d.role == fuseflow_ir::Role::Input) {
        let bound = cfg.bind.iter().find(|(name, _)| *name == d.name);
        let nnz = match (bound, &d.source) {
            (Some((_, coo)), _) => coo.nnz() as u64,
            (None, Some(fuseflow_ir::Source::Random { density, .. })) => {
                fuseflow_tensor::budget::random_nnz(&d.shape, *density)
            }
            (None, Some(fuseflow_ir::Source::BigBird { .. } | fuseflow_ir::Source::File { .. }) | None) => 0,
        };
        let bytes = tensor_bytes(&d.shape, &d.format, nnz);
        items.push((format!("input {}", d.name), bytes));
        // The reference evaluator holds a copy of a dense input's values until its last
        // statement (when all the results below are held too).
        if cfg.verify && d.format.is_all_dense() && !d.shape.is_empty() {
            items.push((format!("input {} in the reference", d.name), bytes));
        }
    }
    let assigned: std::collections::BTreeSet<&String> = p.stmts.iter().map(|s| &s.lhs.tensor).collect();
    for d in p.decls.iter().filter(|d| assigned.contains(&d.name)) {
        let stored = tensor_bytes(&d.shape, &d.format, 0);
        items.push((format!("{} stored {}", d.name, fuseflow_ir::format_name(&d.format)), stored));
    }
    items
}

/// One line for a refused plan: the total and its largest items.
fn describe_plan(items: &[(String, u64)]) -> String {
    let mut sorted: Vec<&(String, u64)> = items.iter().filter(|item| item.1 > 0).collect();
    sorted.sort_by_key(|item| std::cmp::Reverse(item.1));
    let shown: Vec<String> =
        sorted.iter().take(6).map(|item| format!("{} {}", item.0, fuseflow_tensor::human_bytes(item.1))).collect();
    let more = if sorted.len() > 6 { format!(", {} more", sorted.len() - 6) } else { String::new() };
    format!("the run (largest: {}{more})", shown.join(", "))
}
