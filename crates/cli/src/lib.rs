//! The FuseFlow driver: load a program, compile each statement, simulate, verify.
//!
//! This library is what the `fuseflow` command, the benchmarks and the end-to-end tests share.
//! It does no terminal output; `main.rs` does.

pub mod bench;
pub mod control;
pub mod observe;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub use control::{Phase, RunControl, RunObserver, RunProgress};
use fuseflow_tensor::budget::{from_coo_bytes, tensor_bytes};
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
    /// The group's graph (for annotated exports).
    #[serde(skip)]
    pub graph: Graph,
    /// Per-node counters, indexed like the graph's nodes.
    #[serde(skip)]
    pub nodes: Vec<NodeStats>,
    /// Activation spans, when [`RunConfig::trace_limit`] asked for them.
    #[serde(skip)]
    pub trace: Option<Trace>,
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
    /// Wall-clock seconds spent simulating.
    pub sim_seconds: f64,
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
fn first_non_finite(name: &str, c: &fuseflow_tensor::Coo) -> Option<String> {
    let i = c.vals.iter().position(|v| !v.is_finite())?;
    let coords: Vec<String> = c.coords(i).iter().map(|x| x.to_string()).collect();
    Some(format!("{name}({}) is {}", coords.join(","), c.vals[i]))
}

/// Compiles (expanded) statement `stmt` on its own, exactly as an unfused [`run`] compiles it:
/// the graph `fuseflow graph` prints and `fuseflow compile` exports is the graph `run`
/// simulates. `order` applies if it names exactly the statement's indices.
pub fn compile_statement(p: &CheckedProgram, stmt: usize, cfg: &RunConfig) -> Result<Kernel, DriverError> {
    let order = cfg.group_orders.get(&stmt).or(cfg.order.as_ref());
    let k = lower_group(p, &[stmt], order.map(|o| o.as_slice()), &cfg.lower)?;
    let order = k.orders.into_iter().next().unwrap_or_default();
    Ok(Kernel { stmt, order, graph: k.graph })
}

/// Compiles every group of the configured fusion granularity.
///
/// Row sharing (see [`LowerOptions::row_sharing`]) needs channels that hold a row; with finite
/// FIFOs the simulator's FIFO sizing gives those channels a row's depth
/// ([`fuseflow_sim::SimConfig::fifo_sizing`]), so it is on whatever the channels.
pub fn compile_groups(p: &CheckedProgram, cfg: &RunConfig) -> Result<Vec<GroupKernel>, DriverError> {
    let groups = plan(p, &cfg.fusion)?;
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let order = cfg.group_orders.get(&i).or(cfg.order.as_ref());
        out.push(lower_group(p, g, order.map(|o| o.as_slice()), &cfg.lower)?);
    }
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
    let expected = if cfg.verify {
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
        budget.hold(r.values().map(|c| fuseflow_tensor::budget::coo_bytes(c.rank(), c.nnz() as u64)).sum());
        Some(r)
    } else {
        None
    };
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
        wall_seconds: 0.0,
        groups: Vec::new(),
        outputs: BTreeMap::new(),
    };
    let kernels = compile_groups(p, cfg)?;
    let groups = kernels.len();
    control.check(Phase::Compiling, || "the inputs were loaded and checked".into())?;
    for (gi, kernel) in kernels.into_iter().enumerate() {
        let label = kernel.outputs.join(",");
        let stmts_label = p.group_label(&kernel.stmts);
        let t0 = Instant::now();
        let phase = Phase::Simulating { group: gi, groups };
        control.phase(phase);
        let sim_cfg = match cfg.trace_limit {
            Some(limit) => {
                let used: usize = report.groups.iter().filter_map(|g| g.trace.as_ref()).map(|t| t.spans.len()).sum();
                SimConfig { trace: Some(limit.saturating_sub(used)), ..cfg.sim.clone() }
            }
            None => cfg.sim.clone(),
        };
        let sim_ctl = control.sim_control(phase, budget);
        let mut sim = simulate_with(&kernel.graph, &tensors, &sim_cfg, &sim_ctl).map_err(|error| {
            if let fuseflow_sim::SimError::Cancelled { cycle } = error {
                let finished = format!("{}; group {gi} was at cycle {cycle}", finished_groups(gi, report.cycles));
                control.cancelled_error(phase, finished)
            } else {
                DriverError::Sim { stmt: stmts_label.clone(), tensor: label.clone(), error }
            }
        })?;
        report.sim_seconds += t0.elapsed().as_secs_f64();
        let mut gr = GroupReport {
            statements: p.user_stmts_of(&kernel.stmts),
            label: stmts_label,
            outputs: kernel.outputs.clone(),
            orders: kernel.orders.clone(),
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
            verified: expected.as_ref().map(|_| true),
            max_abs_error: expected.as_ref().map(|_| 0.0),
            mismatch: None,
            graph: Graph::default(),
            nodes: std::mem::take(&mut sim.nodes),
            trace: sim.trace.take(),
        };
        for tensor in &kernel.outputs {
            let written = sim.outputs.get(tensor).cloned().ok_or_else(|| DriverError::Tensor {
                tensor: tensor.clone(),
                message: "the graph wrote no output".into(),
            })?;
            if let Some(exp) = &expected {
                let e = exp.get(tensor).ok_or_else(|| DriverError::Reference(format!("no result for {tensor}")))?;
                let coo = written.to_coo();
                let cmp = fuseflow_reference::compare_named(tensor, e, &coo, cfg.rel_tol, cfg.abs_tol);
                if !cmp.ok {
                    gr.verified = Some(false);
                    if gr.mismatch.is_none() {
                        gr.mismatch = cmp.first_mismatch.clone();
                    }
                }
                // A NaN or an infinity verifies nothing, even where the reference agrees.
                if let Some(bad) = first_non_finite(tensor, &coo) {
                    gr.verified = Some(false);
                    if gr.mismatch.is_none() {
                        gr.mismatch = Some(bad);
                    }
                }
                gr.max_abs_error = gr.max_abs_error.map(|m| m.max(cmp.max_abs_error));
            }
            // Later groups read this result in its declared format.
            let decl = p
                .decl(tensor)
                .ok_or_else(|| DriverError::Tensor { tensor: tensor.clone(), message: "not declared".into() })?;
            let nnz = written.vals.len() as u64;
            budget.check(from_coo_bytes(&decl.shape, &decl.format, nnz), || {
                format!("storing the simulated {tensor} ({nnz} entries) as {}", fuseflow_ir::format_name(&decl.format))
            })?;
            let stored: Tensor = written
                .convert(&decl.format)
                .map_err(|e| DriverError::Tensor { tensor: tensor.clone(), message: e.to_string() })?;
            budget.hold(fuseflow_ir::stored_bytes(&stored));
            tensors.insert(tensor.clone(), stored);
        }
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
        gr.graph = kernel.graph;
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
    for d in p.decls.iter().filter(|d| d.role == fuseflow_ir::Role::Output) {
        if let Some(t) = tensors.remove(&d.name) {
            report.outputs.insert(d.name.clone(), t);
        }
    }
    report.bandwidth_utilisation =
        report.peak_bytes_per_cycle.map(|p| report.mem_bytes as f64 / (report.cycles.max(1) as f64 * p as f64));
    report.wall_seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// What a cancelled run had finished: `groups 0-2 finished (12345 cycles)`.
fn finished_groups(done: usize, cycles: u64) -> String {
    match done {
        0 => "no group finished".to_string(),
        1 => format!("group 0 finished ({cycles} cycles)"),
        n => format!("groups 0-{} finished ({cycles} cycles)", n - 1),
    }
}

/// What a run will hold at least, or (for the reference evaluator) may hold, by item, from
/// the declarations: generated and bound inputs (exact), every statement's result stored in
/// its declared format (the padding of dense levels: exact whatever the values), and with
/// verification the reference evaluator's results of statements declared dense (at most
/// every point). Inputs read from files and sparse results are checked when their sizes are
/// known.
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
        items.push((format!("input {}", d.name), tensor_bytes(&d.shape, &d.format, nnz)));
    }
    let assigned: std::collections::BTreeSet<&String> = p.stmts.iter().map(|s| &s.lhs.tensor).collect();
    for d in p.decls.iter().filter(|d| assigned.contains(&d.name)) {
        let stored = tensor_bytes(&d.shape, &d.format, 0);
        items.push((format!("{} stored {}", d.name, fuseflow_ir::format_name(&d.format)), stored));
        let dense = d.format.levels.iter().all(|l| *l == fuseflow_tensor::LevelFormat::Dense);
        if cfg.verify && dense {
            let points = d.shape.iter().fold(1u64, |n, &s| n.saturating_mul(s as u64));
            let bytes = fuseflow_tensor::budget::coo_bytes(d.shape.len(), points);
            items.push((format!("{} in the reference", d.name), bytes));
        }
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
