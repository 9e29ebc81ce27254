//! The `fuseflow` command: the only place that prints and sets exit codes (with its module
//! `term`: progress display, Ctrl-C, whole-or-nothing file writes).

mod explore_cmd;
mod frontend;
mod reproduce_cmd;
mod term;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use fuseflow::control::DEFAULT_MAX_WORK;
use fuseflow::observe::{self, Observed, DEFAULT_TRACE_LIMIT};
use fuseflow::{compile_statement, run_with, DriverError, RunConfig, RunControl};
use fuseflow_sim::{HwConfig, SimConfig, TensorTraffic};

/// Writing to stdout failed. A closed pipe (`fuseflow graph ... | head`) is not an error: the
/// command stops printing and exits as it would have (see [`finish`]).
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// Whether `e` is a write to a stdout whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StdoutError>().is_some_and(|StdoutError(io)| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `Ok(code)` when everything was printed or the reader closed the pipe early; other errors
/// propagate.
fn finish(printed: Result<()>, code: ExitCode) -> Result<ExitCode> {
    match printed {
        Err(e) if !is_broken_pipe(&e) => Err(e),
        _ => Ok(code),
    }
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(StdoutError)?
    };
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*).map_err(StdoutError)?
    };
}

/// Exit codes, shown by `--help` (and in the README).
const EXIT_CODES: &str = "\
Exit codes:
  0  success; for `run`: every output verified against the reference evaluator
  1  `run`: an output differs from the reference, is NaN or infinite, the program has no
     statements, or verification was disabled (--no-verify); `bench`: a benchmark mismatched;
     `simulate --compare-outputs`: an output differs from the given tensors
  2  bad input (program, data, options, fusion plan, order), a limit (memory, work, cycles,
     compile size), or a deadlock
 75  `explore`: a retryable failure (results directory I/O, a memory limit); rerun to resume
130  interrupted (Ctrl-C); nothing half-written is left behind
`simulate` has no reference evaluator: it exits 0 when the simulation completes, and its
outputs are reported as not verified.

Statements are numbered from 0 as written: a softmax/masked_softmax/layernorm line is one
statement. Unfused, a built-in runs as one graph per step, shown as U.K (step K of statement U).";

#[derive(Parser)]
#[command(
    name = "fuseflow",
    version,
    about = "Compile sparse tensor programs to SAM dataflow graphs and simulate them",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ProgramArgs {
    /// Program file: tensor index notation, or MLIR (`.mlir`: linalg + sparse_tensor, as
    /// torch-mlir emits it; see docs/mlir.md).
    program: PathBuf,
    /// MLIR programs: bind a function argument or tensor constant to a data file (`.mtx`,
    /// `.npz`, `.npy`, tensor directory), e.g. `--input arg1=adj.npz` (repeatable).
    #[arg(long = "input", value_name = "NAME=FILE", value_parser = frontend::parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// MLIR programs: density of a generated argument or elided constant, e.g. `--density
    /// arg1=0.05` (default: 1 for dense encodings, 0.1 for sparse ones).
    #[arg(long = "density", value_name = "NAME=D", value_parser = frontend::parse_density)]
    densities: Vec<(String, f64)>,
    /// Dataflow order, outermost first, e.g. `i,k,j` (spaces are ignored). For a fused group,
    /// the index names `fuseflow orders --fusion ...` prints: the program's own, with `k2`, `k3`
    /// ... where the group reuses a name for another loop. `best` (with `run`): simulate every
    /// legal order of every group, on all cores, and keep the fastest; the report lists each
    /// order's cycles.
    #[arg(long, value_delimiter = ',', value_parser = parse_index)]
    order: Option<Vec<String>>,
    /// With `--order best`: simulate at most this many orders per group, the best ones by the
    /// compiler's cost estimate (the report says how many were left out).
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    order_budget: u64,
    /// Apply a `preset` line of the program, e.g. `--preset paper` (the paper-scale shapes of
    /// the models in examples/). Explicit `--param` values (and `run --dataset`) win over it.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Override a `param` of the program: `--param N=100` (repeatable; wins over `--preset`).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, i64)>,
    /// Disable the locate optimisation (dense ∩ sparse by lookup).
    #[arg(long)]
    no_locate: bool,
    /// Do not insert coordinate droppers before the output writers.
    #[arg(long)]
    no_crddrop: bool,
    /// In fused groups, do not let a row reduction share one pass over its row with the
    /// consumer that broadcasts it back (it is off anyway when channels are finite).
    #[arg(long)]
    no_row_sharing: bool,
    /// Store every input read once (and each kernel's output) in the mode order the dataflow
    /// order wants instead of its declared one, so that declared layouts constrain no order (the
    /// paper's dataflow-order study): `orders` lists every order the lowering supports, and
    /// `run` converts the data before each kernel (conversions are not simulated).
    #[arg(long)]
    free_layout: bool,
    /// Fusion granularity: `unfused` (every kernel alone, a built-in's steps included),
    /// `full`, `partial` (the program's `fuse` groups, other statements alone) or explicit
    /// groups of statements numbered as written, such as `0-3,4-7`, or `0-2+4,3,5-13` where
    /// `+` joins statements that are not adjacent (each group convex in the dependence DAG;
    /// groups run in its order). A built-in line is one statement and cannot be split.
    #[arg(long, default_value = "unfused")]
    fusion: fuseflow_compiler::Fusion,
    /// Parallel lanes: run the part of each group below index INDEX in LANES lanes, e.g.
    /// `--par h=4`; `--par 1:h=4` for group 1 only (groups as `fuseflow orders` lists them).
    /// Repeatable: `--par h=4 --par i=4` gives 16 lanes. Wins over the program's `par` lines
    #[arg(long = "par", value_name = "[GROUP:]INDEX=LANES", value_parser = parse_par)]
    par: Vec<fuseflow::ParRequest>,
    /// Sparsity blocking: `--block 16` runs every group that has a sparse operand with 16×16
    /// tiles (the sparse operand, the dimensions it touches, and the dense operands' matrix
    /// dimensions: docs/blocking.md); `--block G:16` blocks group G only (repeatable).
    #[arg(long = "block", value_parser = parse_block, value_name = "[G:]B")]
    block: Vec<(Option<usize>, usize)>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The simulated machine (see docs/hardware.md).
#[derive(clap::Args, Clone)]
struct HwArgs {
    /// Hardware: a preset (`ideal`, `comal`, `rda`) or the path of a TOML file.
    #[arg(long, default_value = "ideal", value_name = "PRESET|FILE")]
    hw: String,
    /// Override one hardware key, e.g. `--set memory.channels=8` (repeatable; after --hw).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// `ideal` switches the off-chip memory model off, `model` switches it on (after --set).
    #[arg(long, value_enum, value_name = "MODE")]
    memory: Option<MemoryMode>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum MemoryMode {
    /// Ideal memory: accesses cost nothing.
    Ideal,
    /// The hardware's off-chip memory model.
    Model,
}

/// Resource limits (see README, "Limits").
#[derive(clap::Args, Clone)]
struct LimitArgs {
    /// Memory budget for everything sized by the input (tensors, the reference evaluator's
    /// relations, channel buffers, outputs), e.g. `8G`, `512M`: each is estimated first and
    /// refused with an error, before it is allocated, past this. Default: half of the
    /// smallest of physical memory, the cgroup limit and `ulimit -v`.
    #[arg(long, value_name = "SIZE", value_parser = fuseflow_tensor::parse_size)]
    mem_limit: Option<u64>,
}

impl LimitArgs {
    /// The memory limit in bytes (`None` = none could be determined).
    fn mem_limit(&self) -> Option<u64> {
        self.mem_limit.or_else(fuseflow::control::default_mem_limit)
    }
}

/// Observability outputs (see docs/observability.md).
#[derive(clap::Args, Clone)]
struct ObserveArgs {
    /// Write per-node statistics of every group to this JSON file.
    #[arg(long, value_name = "FILE.json")]
    stats: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace (Trace Event Format) of node activity to this file.
    #[arg(long, value_name = "FILE.json")]
    trace: Option<PathBuf>,
    /// At most this many spans (complete events) in the trace; recording stops there.
    #[arg(long, default_value_t = DEFAULT_TRACE_LIMIT, value_name = "N")]
    trace_limit: usize,
    /// Write each group's graph as DOT annotated with per-node utilisation: FILE for one
    /// group, FILE's stem + `.gN.dot` for several.
    #[arg(long, value_name = "FILE.dot")]
    dot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile, simulate and verify a program (exit 0 only when verified).
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        prog: ProgramArgs,
        /// Channel capacity in tokens (default: unbounded).
        #[arg(long)]
        fifo_depth: Option<usize>,
        /// Seed for generated inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Skip verification against the reference evaluator. Groups then read what earlier
        /// groups simulated, so they run one after another.
        #[arg(long)]
        no_verify: bool,
        /// Simulate groups (and `--order best`'s candidate orders) on this many threads
        /// (default: one per core). Results are identical for every value.
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// Stop with an error past this many simulated cycles (a budget: raise it for longer
        /// runs).
        #[arg(long, default_value_t = fuseflow_sim::DEFAULT_MAX_CYCLES)]
        max_cycles: u64,
        /// Simulate every node on its own, without the engine's fused products (dense dot
        /// and broadcast products run as one node each; docs/hardware.md): slower, with the
        /// same cycles, counters and outputs. For checking the engine.
        #[arg(long)]
        node_by_node: bool,
        /// Most products one step of the reference evaluator may compute (a dense 20000²
        /// matmul is 8e12); past it the run is refused before the step starts.
        #[arg(long, default_value_t = DEFAULT_MAX_WORK, value_name = "N")]
        max_work: u64,
        /// Graph dataset for graph models: a name (`karate`, `cora-synth`, ... see
        /// `fuseflow datasets`) or a path (.mtx, .npz, edge list, Planetoid or OGB directory).
        /// Sets the program's `N`, `F` and `C` params when declared (over `--preset`, under
        /// `--param`) and binds the adjacency. A dataset without node features (edge lists,
        /// bare matrices; karate's are the identity) gets identity features: F = N and the
        /// `--features` input is bound to the sparse identity.
        #[arg(long)]
        dataset: Option<String>,
        /// Input tensor that receives the dataset's adjacency.
        #[arg(long, default_value = "A")]
        adjacency: String,
        /// Input tensor that receives identity features (datasets without features).
        #[arg(long, default_value = "X")]
        features: String,
        /// Relative tolerance for verification.
        #[arg(long, default_value_t = 1e-9, value_parser = parse_tol)]
        rel_tol: f64,
        /// Absolute tolerance for verification.
        #[arg(long, default_value_t = 1e-9, value_parser = parse_tol)]
        abs_tol: f64,
        #[command(flatten)]
        hw: HwArgs,
        #[command(flatten)]
        observe: ObserveArgs,
    },
    /// Print a statement's dataflow graph (a fusion group's with `--fusion`).
    Graph {
        #[command(flatten)]
        prog: ProgramArgs,
        /// Statement, numbered as written (`U.K` for step K of a built-in statement U), or the
        /// group index (as `orders` lists them) under `--fusion`.
        #[arg(long, default_value = "0", value_name = "N")]
        stmt: String,
        /// Graphviz DOT instead of the text dump.
        #[arg(long)]
        dot: bool,
    },
    /// List the legal dataflow orders of every statement (of every group output with
    /// `--fusion`).
    Orders {
        #[command(flatten)]
        prog: ProgramArgs,
        /// At most this many orders per statement (group output).
        #[arg(long, default_value_t = 100)]
        cap: usize,
    },
    /// List the bundled and synthetic graph datasets.
    Datasets,
    /// Run the simulator benchmarks.
    Bench {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Repetitions per benchmark (the fastest is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also run the paper-scale benchmark: the GPT-3 Small decoder block at the paper's
        /// granularities (`examples/gpt3_decoder.ff --preset paper` unfused and partial; full:
        /// c1, c2 and c3′ of the two-decoder chain), verified, with groups simulated side by side
        /// (about 8 minutes on 2 cores).
        #[arg(long)]
        paper: bool,
        /// Worker threads for the paper-scale benchmark (default: one per core).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        #[command(flatten)]
        hw: HwArgs,
    },
    // --- Comal interop (fuseflow-comal) ---
    /// Compile one statement (or, with `--fusion`, one fusion group) and write it for Comal:
    /// `graph.bin` (tortilla protobuf) plus the input tensors as a SAM tensor directory.
    Compile {
        #[command(flatten)]
        prog: ProgramArgs,
        /// Statement, numbered as written (`U.K` for step K of a built-in statement U), or the
        /// group index (as `orders` lists them) under `--fusion`.
        #[arg(long, default_value = "0", value_name = "N")]
        stmt: String,
        /// Output format (only `comal`).
        #[arg(long)]
        emit: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed for generated inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Import a tortilla graph with its tensor directory and simulate it. There is no
    /// reference evaluator here: outputs are reported as not verified, and the exit code is 0
    /// when the simulation completes (2 on bad input, a deadlock or the cycle limit).
    #[command(after_help = EXIT_CODES)]
    Simulate {
        /// The binary protobuf graph (`graph.bin`).
        #[arg(long)]
        comal: PathBuf,
        /// The tensor directory.
        #[arg(long)]
        data: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Write every output tensor into this tensor directory.
        #[arg(long)]
        dump_outputs: Option<PathBuf>,
        /// Compare every output tensor with the one in this tensor directory (e.g. what a Comal
        /// runner wrote: every level compressed, `tensor_<T>_mode_shape` present); exit 1 on a
        /// mismatch or an unreadable tensor.
        #[arg(long)]
        compare_outputs: Option<PathBuf>,
        /// Relative tolerance of `--compare-outputs`. The defaults suit a simulator that
        /// computes in f32 (Comal): about 1e-7 per operation, accumulated over sums of up to
        /// ~1000 terms of magnitude ~1.
        #[arg(long, default_value_t = 1e-4, value_parser = parse_tol)]
        rel_tol: f64,
        /// Absolute tolerance of `--compare-outputs`.
        #[arg(long, default_value_t = 1e-4, value_parser = parse_tol)]
        abs_tol: f64,
        /// Channel capacity in tokens (default: the hardware's).
        #[arg(long)]
        fifo_depth: Option<usize>,
        /// Stop with an error past this many simulated cycles (a budget: raise it for longer
        /// runs).
        #[arg(long, default_value_t = fuseflow_sim::DEFAULT_MAX_CYCLES)]
        max_cycles: u64,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        hw: HwArgs,
        #[command(flatten)]
        observe: ObserveArgs,
    },
    // --- end Comal interop ---
    // --- design-space exploration (fuseflow-explore, explore_cmd.rs) ---
    /// Sweep fusion partitions, dataflow orders and machines; results go to a resumable
    /// results directory (docs/explore.md). Exit 0 when every point is recorded (failing
    /// points included), 2 for an invalid configuration, 75 for a retryable failure.
    #[command(after_help = EXPLORE_EXIT_CODES)]
    Explore(explore_cmd::ExploreArgs),
    /// Estimate cycles, FLOPs and off-chip bytes of one configuration per group, without
    /// simulating (`--bench` measures the estimate's speed).
    Estimate(explore_cmd::EstimateArgs),
    /// Merge the results directories of a sharded sweep into one.
    #[command(after_help = EXPLORE_EXIT_CODES)]
    Merge(explore_cmd::MergeArgs),
    // --- end design-space exploration ---
    /// Reproduce an experiment of the paper (fig12, fig14, fig15, fig16, fig17 or all):
    /// simulate its configurations into records, then tables and plots built from the records
    /// alone, beside the paper's numbers (docs/reproduce.md). Exit 0 when every row has its
    /// records, 1 when a configuration failed or is not verified, 2 for invalid input, 130
    /// when interrupted (finished configurations are kept: rerun to resume).
    Reproduce(reproduce_cmd::ReproduceArgs),
}

/// Exit codes of `explore` and `merge`.
const EXPLORE_EXIT_CODES: &str = "\
Exit codes:
  0  every selected point is recorded (points that failed are results, see report.md)
  2  invalid configuration: program, space file (unknown axis, impossible value), shard out
     of range, a results directory of another program, data or tool version
 75  retryable: the results directory could not be read or written, or points failed on a
     memory limit; rerun the same command to resume
130  interrupted (Ctrl-C); finished points are kept, rerun to resume";

/// One index name of `--order` (surrounding spaces ignored).
fn parse_index(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty index name (expected e.g. i,k,j)".into());
    }
    if !s.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!("{s:?} is not an index name (expected e.g. i,k,j)"));
    }
    Ok(s.to_string())
}

fn parse_par(s: &str) -> Result<fuseflow::ParRequest, String> {
    let (group, rest) = match s.split_once(':') {
        Some((g, rest)) => {
            let g: usize = g.trim().parse().map_err(|_| format!("{s}: group {g} is not a group index"))?;
            (Some(g), rest)
        }
        None => (None, s),
    };
    let (k, v) = rest.split_once('=').ok_or_else(|| format!("expected [GROUP:]INDEX=LANES, got {s}"))?;
    let index = k.trim().to_string();
    if index.is_empty() || !index.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{s}: `{index}` is not an index name"));
    }
    let lanes: u32 = v.trim().parse().map_err(|_| format!("{s}: lane count {v} is not an integer"))?;
    if lanes == 0 {
        return Err(format!("{s}: the lane count must be at least 1"));
    }
    if lanes > fuseflow_ir::MAX_LANES {
        return Err(format!("{s}: at most {} lanes", fuseflow_ir::MAX_LANES));
    }
    Ok(fuseflow::ParRequest { group, index, lanes, origin: format!("--par {s}") })
}

/// One `--block` value: `B` (the whole run) or `G:B` (group G).
fn parse_block(s: &str) -> Result<(Option<usize>, usize), String> {
    let num = |x: &str, what: &str| {
        x.trim().parse::<usize>().map_err(|_| format!("{what} `{}` is not a non-negative integer", x.trim()))
    };
    let (g, b) = match s.split_once(':') {
        Some((g, b)) => (Some(num(g, "group")?), num(b, "block size")?),
        None => (None, num(s, "block size")?),
    };
    if b < 2 {
        return Err(format!("block size {b}: a block size must be at least 2"));
    }
    Ok((g, b))
}

/// A verification tolerance: a finite number ≥ 0 (a negative one would fail every check).
fn parse_tol(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{s} is not a tolerance (a finite number, 0 or more)")),
    }
}

fn parse_param(s: &str) -> Result<(String, i64), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {s}"))?;
    let v: i64 = v.trim().parse().map_err(|_| format!("parameter {k}: {v} is not an integer"))?;
    Ok((k.trim().to_string(), v))
}

/// Loads the program: declared defaults, then `--preset`, then `--param` (the last of repeated
/// ones wins).
fn load(args: &ProgramArgs) -> Result<fuseflow_ir::CheckedProgram> {
    Ok(frontend::load(args)?.program)
}

/// The expanded statement `--stmt` names without `--fusion`: user statement `U` (an ordinary
/// statement) or `U.K`, step K of built-in statement U.
fn resolve_stmt(p: &fuseflow_ir::CheckedProgram, spec: &str) -> Result<usize> {
    let spec = spec.trim();
    let bad = || anyhow!("--stmt {spec}: expected a statement number such as 2 (or 2.1 for step 1 of a built-in)");
    let (u, k) = match spec.split_once('.') {
        Some((u, k)) => {
            (u.trim().parse::<usize>().map_err(|_| bad())?, Some(k.trim().parse::<usize>().map_err(|_| bad())?))
        }
        None => (spec.parse::<usize>().map_err(|_| bad())?, None),
    };
    let n = p.user_stmts.len();
    let Some(x) = p.user_stmts.get(u) else {
        return Err(anyhow!("{}: statement {u} does not exist (the program has {n})", p.file));
    };
    let at = format!("{}:{}:{}", p.file, x.span.line, x.span.col);
    let steps = x.stmts.len();
    match (k, x.builtin) {
        (None, None) => Ok(x.stmts.start),
        (None, Some(b)) => Err(anyhow!(
            "{at}: statement {u} is a {b} that runs as {steps} graphs unfused: choose one with --stmt {u}.0 to {u}.{}, or give --fusion (then --stmt is a group index) to compile it as one graph",
            steps - 1
        )),
        (Some(k), Some(_)) if k < steps => Ok(x.stmts.start + k),
        (Some(k), Some(b)) => {
            Err(anyhow!("{at}: statement {u} ({b}) has steps {u}.0 to {u}.{}, not {u}.{k}", steps - 1))
        }
        (Some(_), None) => Err(anyhow!("{at}: statement {u} is not a built-in; use --stmt {u}")),
    }
}

/// The group index `--stmt` names under `--fusion`.
fn group_index(spec: &str) -> Result<usize> {
    spec.trim().parse().map_err(|_| {
        anyhow!("--stmt {spec}: with --fusion, --stmt is a group index (as `fuseflow orders --fusion ...` lists them)")
    })
}

fn base_dir(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn config(args: &ProgramArgs) -> RunConfig {
    let mut cfg = RunConfig { order: args.order.clone(), ..RunConfig::default() };
    if args.order.as_deref() == Some(&["best".to_string()][..]) {
        cfg.order = None;
        cfg.order_search = Some(fuseflow::OrderSearch { budget: args.order_budget as usize });
    }
    cfg.lower.locate = !args.no_locate;
    cfg.lower.crddrop = !args.no_crddrop;
    cfg.lower.row_sharing = !args.no_row_sharing;
    cfg.lower.free_layout = args.free_layout;
    cfg.fusion = args.fusion.clone();
    cfg.par = args.par.clone();
    for &(g, b) in &args.block {
        match g {
            Some(g) => {
                cfg.group_blocks.insert(g, b);
            }
            None => cfg.block = Some(b),
        }
    }
    cfg
}

/// The hardware: preset or file, then `--set` overrides, then `--memory`, then `--fifo-depth`.
fn hardware(args: &HwArgs, fifo_depth: Option<usize>) -> Result<HwConfig> {
    let mut hw = HwConfig::from_spec(&args.hw).map_err(|e| anyhow!("--hw: {e}"))?;
    for o in &args.set {
        hw.apply_override(o).map_err(|e| anyhow!("--set: {e}"))?;
    }
    if let Some(m) = args.memory {
        hw.memory.enabled = m == MemoryMode::Model;
    }
    match fifo_depth {
        Some(0) => return Err(anyhow!("--fifo-depth must be at least 1")),
        Some(d) => hw.fifo_depth = Some(d),
        None => {}
    }
    Ok(hw)
}

/// The simulator configuration for `hw` with a cycle limit.
fn sim_config(hw: &HwConfig, max_cycles: u64) -> SimConfig {
    SimConfig { max_cycles, ..hw.to_sim_config() }
}

/// What `--dataset` gives a run: the data to bind to inputs and the report's description.
struct DatasetBinding {
    bind: Vec<(String, fuseflow_tensor::Coo)>,
    /// `None` for data bound by the program itself (MLIR constants, `--input`).
    info: Option<fuseflow::DatasetInfo>,
}

/// Identity features stored densely above this many values are refused (`--dataset`).
const DENSE_IDENTITY_MAX: usize = 1 << 24;

/// `--dataset`: sets the declared `N`, `F` and `C` that `--param` does not (F = N for identity
/// features), loads the program again with them, and returns it with the data to bind (the
/// adjacency; the sparse identity as the features when the dataset's features are the
/// identity) and the report's description.
fn bind_dataset(
    prog: &mut ProgramArgs,
    spec: &str,
    g: fuseflow_datasets::Graph,
    adjacency: &str,
    features: &str,
) -> Result<(fuseflow_ir::CheckedProgram, DatasetBinding)> {
    let first = load(prog)?;
    let identity = g.identity_features();
    let n = g.num_nodes;
    let width = if identity { n } else { g.num_features };
    let mut set = Vec::new();
    for (name, value) in [("N", n), ("F", width), ("C", g.num_classes)] {
        if value > 0 && first.params.contains_key(name) && !prog.params.iter().any(|(k, _)| k == name) {
            prog.params.push((name.to_string(), value as i64));
            set.push(name);
        }
    }
    // An MLIR program's own data (constants, `--input` files) stays bound beside the dataset's.
    let loaded = frontend::load(prog)?;
    let p = if set.is_empty() { first } else { loaded.program };
    let mut bind: Vec<(String, fuseflow_tensor::Coo)> =
        loaded.bind.into_iter().filter(|(name, _)| name != adjacency && name != features).collect();
    bind.push((adjacency.to_string(), g.adjacency.clone()));
    let mut bound = vec![format!("{adjacency}: adjacency ({n} x {n}, {} entries)", g.num_edges())];
    if set.contains(&"F") {
        if identity {
            let why = if g.identity_features {
                "the dataset's node features are the identity"
            } else {
                "the dataset has no node features, so it gets identity features"
            };
            let Some(d) = p.decl(features).filter(|d| d.role == fuseflow_ir::Role::Input) else {
                return Err(anyhow!(
                    "--dataset {spec}: {why} (F = N = {n}), but the program has no input {features} to receive them: name it with --features, or give --param F=... to keep the program's own features"
                ));
            };
            let dense_rows = d.format.levels.last() == Some(&fuseflow_tensor::LevelFormat::Dense);
            let values = n.saturating_mul(if dense_rows { n } else { 1 });
            if values > DENSE_IDENTITY_MAX {
                return Err(anyhow!(
                    "--dataset {spec}: {why} ({n} x {n}), but input {features} is declared {} at {}:{}:{} and would store {values} values: declare it sparse (e.g. `input {features}[N, F] dcsr`), or give --param F=... to keep the program's own features",
                    fuseflow_ir::format_name(&d.format),
                    p.file,
                    d.span.line,
                    d.span.col
                ));
            }
            bind.push((features.to_string(), g.identity()));
            bound.push(format!(
                "{features}: identity features ({n} x {n}, {n} entries, stored {})",
                fuseflow_ir::format_name(&d.format)
            ));
        } else {
            bound.push(format!("features: none in the dataset; the program generates its own with F = {width}"));
        }
    }
    let info = fuseflow::DatasetInfo { name: g.name.clone(), description: g.description.clone(), bound };
    Ok((p, DatasetBinding { bind, info: Some(info) }))
}

/// One line describing the machine.
fn describe_hw(hw: &HwConfig, args: &HwArgs) -> String {
    let depth = hw.fifo_depth.map_or("unbounded".to_string(), |d| d.to_string());
    let m = &hw.memory.params;
    let memory = if hw.memory.enabled {
        format!(
            "memory model {} channels x {} B/cycle ({} B/cycle peak), latency {}, {}-byte requests, {} sharing",
            m.channels,
            m.bytes_per_cycle,
            m.channels as u64 * m.bytes_per_cycle as u64,
            m.latency,
            m.granularity,
            format!("{:?}", m.sharing).to_lowercase()
        )
    } else {
        "ideal memory".to_string()
    };
    let mut sets = args.set.clone();
    if let Some(m) = args.memory {
        sets.push(format!("--memory {}", if m == MemoryMode::Ideal { "ideal" } else { "model" }));
    }
    let sets = if sets.is_empty() { String::new() } else { format!(" + {}", sets.join(" ")) };
    format!("{}{sets} (fifo depth {depth}, {memory})", hw.name)
}

/// Memory lines of a text summary (nothing with ideal memory).
fn print_memory(
    mem_requests: u64,
    mem_bytes: u64,
    peak: Option<u64>,
    utilisation: Option<f64>,
    tensors: Option<&BTreeMap<String, TensorTraffic>>,
) -> Result<()> {
    let (Some(peak), Some(u)) = (peak, utilisation) else { return Ok(()) };
    outln!(
        "memory       {mem_requests} requests, {mem_bytes} bytes moved, bandwidth utilisation {:.2}% of {peak} B/cycle",
        100.0 * u
    );
    for (name, t) in tensors.into_iter().flatten() {
        outln!(
            "  tensor {name:<8} read {} B  written {} B  requests {}  moved {} B",
            t.bytes_read,
            t.bytes_written,
            t.mem_requests,
            t.mem_bytes
        );
    }
    Ok(())
}

/// FIFO lines of a text summary when channels are bounded: the storage all groups need and
/// the channels FIFO sizing enlarged (the first few; `--json` lists them all).
fn print_fifo<'a>(groups: impl Iterator<Item = Option<&'a fuseflow_sim::FifoReport>>) -> Result<()> {
    const SHOWN: usize = 6;
    let mut channels = 0;
    let mut total = 0u64;
    let mut enlarged = Vec::new();
    let mut any = false;
    for (gi, f) in groups.enumerate() {
        let Some(f) = f else { continue };
        any = true;
        channels += f.bounded_channels;
        total = total.saturating_add(f.total_capacity);
        enlarged.extend(f.enlarged.iter().map(|c| (gi, c)));
    }
    if !any {
        return Ok(());
    }
    outln!("fifo         {channels} bounded channels, {total} tokens of FIFO storage in all");
    if enlarged.is_empty() {
        return Ok(());
    }
    let max = enlarged.iter().map(|(_, c)| c.depth).max().unwrap_or(0);
    let list: Vec<String> = enlarged
        .iter()
        .take(SHOWN)
        .map(|(g, c)| format!("g{g}:s{} {}->n{} {}", c.stream, c.name, c.consumer, c.depth))
        .collect();
    let more = if enlarged.len() > SHOWN { format!(" and {} more", enlarged.len() - SHOWN) } else { String::new() };
    outln!(
        "fifo sizing  {} channels enlarged (deepest {max}) so the graph cannot deadlock: {}{more}",
        enlarged.len(),
        list.join(", ")
    );
    Ok(())
}

/// Writes `text` to `path`, naming the file on failure.
fn write_file(path: &Path, text: &str) -> Result<()> {
    term::write_atomic(path, |w| w.write_all(text.as_bytes()))
        .map_err(|e| anyhow!("{}: cannot write: {e}", path.display()))
}

/// Writes the requested observability files; returns one `(what, description)` per file.
fn write_observations(
    args: &ObserveArgs,
    program: &str,
    hw: &HwConfig,
    groups: &[Observed],
) -> Result<Vec<(String, serde_json::Value)>> {
    let mut written = Vec::new();
    if let Some(path) = &args.stats {
        write_file(path, &observe::stats_json(program, hw, groups))?;
        let nodes: usize = groups.iter().map(|g| g.nodes.len()).sum();
        written.push((
            "stats".to_string(),
            serde_json::json!({"file": path.display().to_string(), "groups": groups.len(), "nodes": nodes}),
        ));
    }
    if let Some(path) = &args.trace {
        let cannot = |e: std::io::Error| anyhow!("{}: cannot write: {e}", path.display());
        let mut summary = None;
        term::write_atomic(path, |w| {
            summary = Some(observe::write_chrome_trace(w, program, &hw.name, groups, args.trace_limit)?);
            Ok(())
        })
        .map_err(cannot)?;
        let summary = summary.ok_or_else(|| anyhow!("{}: the trace was not written", path.display()))?;
        written.push((
            "trace".to_string(),
            serde_json::json!({
                "file": path.display().to_string(),
                "spans": summary.spans,
                "limit": summary.limit,
                "dropped_spans": summary.dropped,
                "truncated": summary.truncated(),
                "bytes": summary.bytes,
            }),
        ));
    }
    if let Some(path) = &args.dot {
        let paths = observe::dot_paths(path, groups.len());
        for (i, (g, p)) in groups.iter().zip(&paths).enumerate() {
            write_file(p, &observe::annotated_dot(g, i))?;
        }
        let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        written.push(("dot".to_string(), serde_json::json!({"files": files})));
    }
    Ok(written)
}

/// Text lines for the files written.
fn print_observations(written: &[(String, serde_json::Value)]) -> Result<()> {
    for (what, v) in written {
        match what.as_str() {
            "stats" => outln!(
                "stats        {} ({} nodes in {} groups)",
                v["file"].as_str().unwrap_or(""),
                v["nodes"],
                v["groups"]
            ),
            "trace" => {
                let note = if v["truncated"].as_bool() == Some(true) {
                    format!(
                        "; TRUNCATED at --trace-limit {}, {} more spans not recorded",
                        v["limit"], v["dropped_spans"]
                    )
                } else {
                    String::new()
                };
                outln!(
                    "trace        {} ({} spans, {} bytes{note})",
                    v["file"].as_str().unwrap_or(""),
                    v["spans"],
                    v["bytes"]
                );
            }
            _ => {
                let files: Vec<&str> = v["files"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
                outln!("dot          {}", files.join(" "));
            }
        }
    }
    Ok(())
}

/// `--json` output: the report with the hardware and the files written.
fn json_with(
    report: impl serde::Serialize,
    hw: &HwConfig,
    written: Vec<(String, serde_json::Value)>,
) -> Result<String> {
    let mut v = serde_json::to_value(report)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("hardware".into(), serde_json::to_value(hw)?);
        for (what, desc) in written {
            o.insert(what, desc);
        }
    }
    Ok(serde_json::to_string(&v)?)
}

fn check_observe(args: &ObserveArgs) -> Result<()> {
    if args.trace_limit == 0 {
        return Err(anyhow!("--trace-limit must be at least 1"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, like every other error.
            let text = e.to_string();
            let _ = writeln!(std::io::stderr(), "{}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    match real_main(cli) {
        Ok(code) => code,
        // The reader of our output has gone (`fuseflow graph ... | head`): nothing to report.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if is_retryable_explore(&e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", error_line(&e));
            ExitCode::from(explore_cmd::RETRYABLE)
        }
        Err(e) if is_cancelled(&e) => {
            let _ = writeln!(std::io::stderr(), "interrupted: {e:#}; no file was written");
            ExitCode::from(term::INTERRUPTED)
        }
        Err(e) => {
            let hint = hint(&e).map(|h| format!(" ({h})")).unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "error: {}{hint}", error_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once: many errors already quote their
/// cause (a data file error quotes the OS error), and repeating it helps nobody.
fn error_line(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out.replace(['\n', '\r'], " ")
}

/// Whether `e` is an exploration failure that a rerun may not have (I/O on the results
/// directory); an interrupted sweep is reported as interrupted.
fn is_retryable_explore(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<fuseflow_explore::ExploreError>()
            .is_some_and(|x| x.retryable() && !matches!(x, fuseflow_explore::ExploreError::Cancelled { .. }))
    })
}

/// Whether `e` is a run stopped by Ctrl-C.
fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<DriverError>(), Some(DriverError::Cancelled { .. }))
            || matches!(c.downcast_ref::<fuseflow_sim::SimError>(), Some(fuseflow_sim::SimError::Cancelled { .. }))
            || matches!(
                c.downcast_ref::<fuseflow_explore::ExploreError>(),
                Some(fuseflow_explore::ExploreError::Cancelled { .. })
            )
    })
}

/// How to raise the limit an error names, if it names one.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    const CYCLES: &str = "raise it with --max-cycles N";
    const MEMORY: &str = "raise it with --mem-limit SIZE, e.g. --mem-limit 32G";
    let sim = |s: &fuseflow_sim::SimError| {
        if matches!(s, fuseflow_sim::SimError::CycleLimit { .. }) {
            Some(CYCLES)
        } else if matches!(s, fuseflow_sim::SimError::Memory { .. }) {
            Some(MEMORY)
        } else {
            None
        }
    };
    e.chain().find_map(|c| {
        if let Some(d) = c.downcast_ref::<DriverError>() {
            if let DriverError::Sim { error, .. } = d {
                return sim(error);
            }
            if matches!(d, DriverError::Memory(_)) {
                return Some(MEMORY);
            }
            if matches!(d, DriverError::WorkLimit(_)) {
                return Some("raise it with --max-work N, or skip verification with --no-verify");
            }
        }
        if let Some(s) = c.downcast_ref::<fuseflow_sim::SimError>() {
            return sim(s);
        }
        if c.downcast_ref::<fuseflow_tensor::OverBudget>().is_some()
            || matches!(c.downcast_ref::<fuseflow_ir::DataError>(), Some(fuseflow_ir::DataError::Memory(_)))
        {
            return Some(MEMORY);
        }
        None
    })
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run {
            mut prog,
            fifo_depth,
            seed,
            json,
            no_verify,
            jobs,
            max_cycles,
            rel_tol,
            abs_tol,
            dataset,
            adjacency,
            features,
            hw: hw_args,
            observe: obs,
            max_work,
            node_by_node,
        } => {
            let hw = hardware(&hw_args, fifo_depth)?;
            check_observe(&obs)?;
            let cancel = term::cancel_on_ctrl_c();
            let graph = match &dataset {
                Some(spec) => Some(fuseflow_datasets::load(spec, seed).with_context(|| format!("dataset {spec}"))?),
                None => None,
            };
            let (p, binding) = match (&dataset, graph) {
                (Some(spec), Some(g)) => {
                    let (p, binding) = bind_dataset(&mut prog, spec, g, &adjacency, &features)?;
                    (p, Some(binding))
                }
                _ => {
                    let loaded = frontend::load(&prog)?;
                    (loaded.program, Some(DatasetBinding { bind: loaded.bind, info: None }))
                }
            };
            let mut cfg = config(&prog);
            if let Some(b) = binding {
                cfg.bind = b.bind;
                cfg.dataset = b.info;
            }
            cfg.sim = SimConfig { fuse_products: !node_by_node, ..sim_config(&hw, max_cycles) };
            cfg.trace_limit = obs.trace.as_ref().map(|_| obs.trace_limit);
            cfg.seed = seed;
            cfg.verify = !no_verify;
            cfg.rel_tol = rel_tol;
            cfg.abs_tol = abs_tol;
            cfg.mem_limit = prog.limits.mem_limit();
            cfg.max_work = Some(max_work);
            cfg.jobs = match jobs {
                Some(0) => return Err(anyhow!("--jobs must be at least 1")),
                Some(n) => n,
                None => 0,
            };
            let progress = term::Progress::new();
            let control = RunControl { cancel: Some(cancel), observer: progress.observer() };
            let r = run_with(&p, &base_dir(&prog.program), &cfg, &control);
            progress.finish();
            let r = r?;
            let written = write_observations(&obs, &r.program, &hw, &observe::groups(&r))?;
            let code = if r.checked && r.verified { ExitCode::SUCCESS } else { ExitCode::from(1) };
            let printed = (|| -> Result<()> {
                if json {
                    outln!("{}", json_with(&r, &hw, written)?);
                } else {
                    outln!("program      {} (fusion {})", r.program, r.fusion);
                    if let Some(d) = &r.dataset {
                        outln!("dataset      {}", d.description);
                        outln!("bound        {}", d.bound.join("; "));
                    }
                    if !r.params.is_empty() {
                        let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        outln!("params       {}", params.join(" "));
                    }
                    outln!("hardware     {}", describe_hw(&hw, &hw_args));
                    for g in &r.groups {
                        let v = match g.verified {
                            Some(true) => "verified".to_string(),
                            Some(false) => format!("NOT VERIFIED ({})", g.mismatch.clone().unwrap_or_default()),
                            None => "not verified (--no-verify)".to_string(),
                        };
                        let orders: Vec<String> = g.orders.iter().map(|o| o.join(",")).collect();
                        let mem = match g.bandwidth_utilisation {
                            Some(u) => {
                                format!(
                                    "  mem requests {} bytes {} util {:.2}%",
                                    g.mem_requests,
                                    g.mem_bytes,
                                    100.0 * u
                                )
                            }
                            None => String::new(),
                        };
                        let block = g.block.map(|b| format!("  block {b}x{b}")).unwrap_or_default();
                        outln!(
                            "group [{}] -> {}  order {}{block}  cycles {}  tokens {}  flops {}  bytes r/w {}/{}{mem}  {v}",
                            g.label,
                            g.outputs.join(","),
                            orders.join(" | "),
                            g.cycles,
                            g.tokens,
                            g.flops,
                            g.bytes_read,
                            g.bytes_written
                        );
                        if let Some(s) = &g.order_search {
                            print_order_search(s)?;
                        }
                    }
                    outln!("cycles       {}", r.cycles);
                    outln!("tokens       {}", r.tokens);
                    outln!("flops        {}", r.flops);
                    outln!("offchip      {} bytes", r.offchip_bytes);
                    print_fifo(r.groups.iter().map(|g| g.fifo.as_ref()))?;
                    print_memory(
                        r.mem_requests,
                        r.mem_bytes,
                        r.peak_bytes_per_cycle,
                        r.bandwidth_utilisation,
                        r.tensors.as_ref(),
                    )?;
                    let kinds: Vec<String> = r.primitives.iter().map(|(k, n)| format!("{k}={n}")).collect();
                    outln!("primitives   {}", kinds.join(" "));
                    match r.max_abs_error {
                        Some(e) => outln!("max error    {e:e}"),
                        None => outln!("max error    n/a (not checked)"),
                    }
                    // With groups side by side, the longest one bounds the simulation phase.
                    let longest = r
                        .groups
                        .iter()
                        .max_by(|a, b| a.sim_seconds.total_cmp(&b.sim_seconds))
                        .filter(|_| r.groups.len() > 1)
                        .map(|g| format!("; longest group [{}] {:.3} s", g.label, g.sim_seconds))
                        .unwrap_or_default();
                    outln!(
                        "sim time     {:.3} s ({:.1} M tokens/s), {:.3} s of wall time with groups side by side{longest}",
                        r.sim_seconds,
                        r.tokens as f64 / r.sim_seconds.max(1e-12) / 1e6,
                        r.sim_wall_seconds
                    );
                    outln!("wall time    {:.3} s", r.wall_seconds);
                    print_observations(&written)?;
                    if r.verified {
                        outln!("result       verified against the reference evaluator");
                    } else {
                        outln!("result       NOT VERIFIED: {}", r.reason.as_deref().unwrap_or("unknown reason"));
                    }
                }
                Ok(())
            })();
            finish(printed, code)
        }
        Cmd::Graph { prog, stmt, dot } => {
            let p = load(&prog)?;
            let cfg = config(&prog);
            simulated_only(&cfg, "graph")?;
            fuseflow::check_compile_size(&p, &cfg.fusion, prog.limits.mem_limit())?;
            let blocking =
                cfg.block.is_some() || !cfg.group_blocks.is_empty() || p.decls.iter().any(|d| d.block.is_some());
            let (graph, block) = if cfg.fusion == fuseflow_compiler::Fusion::Unfused && !blocking {
                (compile_statement(&p, resolve_stmt(&p, &stmt)?, &cfg)?.graph, None)
            } else {
                // Unfused, the groups are the expanded statements.
                let gi = if cfg.fusion == fuseflow_compiler::Fusion::Unfused {
                    resolve_stmt(&p, &stmt)?
                } else {
                    group_index(&stmt)?
                };
                let mut groups = fuseflow::compile_groups(&p, &cfg)?;
                if gi >= groups.len() {
                    return Err(anyhow!("{}: group {gi} does not exist (the fusion has {})", p.file, groups.len()));
                }
                let k = groups.swap_remove(gi);
                (k.graph, k.block)
            };
            if dot {
                out!("{}", graph.to_dot(|_| None));
            } else {
                out!("{}", graph.to_text());
                // A blocked graph is the block structure's; say what its values are.
                if let Some(b) = block {
                    let spec = fuseflow_sim::tile::TileSpec::from_graph(&graph, b.block, &b.dims);
                    let plan = fuseflow_sim::tile::TilePlan::new(&graph, &spec)?;
                    out!("{}", plan.describe(&graph));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Orders { prog, cap } => {
            let p = load(&prog)?;
            let cfg = config(&prog);
            fuseflow::check_compile_size(&p, &cfg.fusion, prog.limits.mem_limit())?;
            // The groups `run` compiles (one per statement unfused), each output's orders.
            let unfused = cfg.fusion == fuseflow_compiler::Fusion::Unfused;
            for (gi, g) in fuseflow_compiler::plan(&p, &cfg.fusion)?.iter().enumerate() {
                let outputs = fuseflow_compiler::group_outputs(&p, g);
                let orders = fuseflow_compiler::group_orders(&p, g, cap, &cfg.lower)?;
                for (t, per_output) in outputs.iter().zip(orders) {
                    let list: Vec<String> = per_output.iter().map(|o| o.join(",")).collect();
                    if unfused {
                        outln!("stmt {} {t}: {}", p.stmt_label(g[0]), list.join("  "));
                    } else {
                        outln!("group {gi} [{}] {t}: {}", p.group_label(g), list.join("  "));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Datasets => {
            for (name, description) in fuseflow_datasets::list() {
                outln!("{name:<20} {description}");
            }
            Ok(ExitCode::SUCCESS)
        }
        // --- Comal interop (fuseflow-comal) ---
        Cmd::Compile { prog, stmt, emit, out, seed } => comal_compile(&prog, &stmt, &emit, &out, seed),
        Cmd::Simulate {
            comal,
            data,
            json,
            dump_outputs,
            compare_outputs,
            rel_tol,
            abs_tol,
            fifo_depth,
            max_cycles,
            limits,
            hw: hw_args,
            observe: obs,
        } => {
            let hw = hardware(&hw_args, fifo_depth)?;
            check_observe(&obs)?;
            let sim = SimConfig { trace: obs.trace.as_ref().map(|_| obs.trace_limit), ..sim_config(&hw, max_cycles) };
            let compare = compare_outputs.as_deref().map(|dir| (dir, rel_tol, abs_tol));
            let out =
                SimulateOut { json, dump: dump_outputs.as_deref(), compare, hw: &hw, hw_args: &hw_args, observe: &obs };
            let cancel = term::cancel_on_ctrl_c();
            let progress = term::Progress::new();
            let observer = progress.observer();
            let control = fuseflow_sim::SimControl {
                cancel: Some(cancel),
                observer: observer.map(|o| -> fuseflow_sim::Observer {
                    Arc::new(move |p: &fuseflow_sim::SimProgress| {
                        o(&fuseflow::RunProgress {
                            phase: fuseflow::Phase::Simulating { group: 0, groups: 1 },
                            sim: Some(*p),
                        })
                    })
                }),
                mem_limit: limits.mem_limit(),
            };
            let r = comal_simulate(&comal, &data, &sim, &control, &out);
            progress.finish();
            r
        }
        // --- end Comal interop ---
        Cmd::Explore(a) => explore_cmd::explore(a),
        Cmd::Estimate(a) => explore_cmd::estimate(a),
        Cmd::Merge(a) => explore_cmd::merge(a),
        Cmd::Reproduce(a) => reproduce_cmd::reproduce(a),
        Cmd::Bench { json, reps, paper, jobs, hw: hw_args } => {
            let hw = hardware(&hw_args, None)?;
            if jobs == Some(0) {
                return Err(anyhow!("--jobs must be at least 1"));
            }
            let results = fuseflow::bench::run_suite_with(reps, &hw.to_sim_config()).context("benchmark failed")?;
            let compiled = fuseflow::bench::run_compile_suite(reps).context("compile benchmark failed")?;
            let papers = if paper {
                // Half an hour of runs: a progress line, and Ctrl-C stops them.
                let progress = term::Progress::new();
                let control = RunControl { cancel: Some(term::cancel_on_ctrl_c()), observer: progress.observer() };
                let r = fuseflow::bench::run_paper_suite(jobs.unwrap_or(0), &hw.to_sim_config(), &control);
                progress.finish();
                r.context("paper-scale benchmark failed")?
            } else {
                Vec::new()
            };
            let code = if results.iter().all(|r| r.verified) && papers.iter().all(|r| r.verified) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            let printed = (|| -> Result<()> {
                if json {
                    let mut all = serde_json::to_value(&results)?;
                    if let Some(list) = all.as_array_mut() {
                        list.extend(compiled.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?);
                        list.extend(papers.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?);
                    }
                    outln!("{}", serde_json::to_string(&all)?);
                    return Ok(());
                }
                if hw != HwConfig::default() || !hw_args.set.is_empty() {
                    outln!("hardware     {}", describe_hw(&hw, &hw_args));
                }
                for r in &results {
                    outln!(
                        "{:<28} tokens {:>11}  cycles {:>10}  wall {:>8.4} s  {:>7.1} M tokens/s  {}",
                        r.name,
                        r.tokens,
                        r.cycles,
                        r.wall_seconds,
                        r.tokens_per_second / 1e6,
                        if r.verified { "verified" } else { "MISMATCH" }
                    );
                }
                for c in &compiled {
                    outln!(
                        "{:<28} compile only (preset {}, fusion {}): {} groups, {} nodes, {} streams  wall {:>8.4} s",
                        c.name,
                        c.preset,
                        c.fusion,
                        c.groups,
                        c.nodes,
                        c.streams,
                        c.wall_seconds
                    );
                }
                for r in &papers {
                    outln!(
                        "{:<28} paper scale, {} --fusion {}: cycles {}  tokens {}  wall {:.1} s (simulation {:.1} s, {:.1} s summed over groups on {} threads)  {}",
                        r.name,
                        r.program,
                        r.fusion_groups,
                        r.cycles,
                        r.tokens,
                        r.wall_seconds,
                        r.sim_wall_seconds,
                        r.sim_seconds,
                        r.jobs,
                        if r.verified { "verified" } else { "MISMATCH" }
                    );
                }
                if !papers.is_empty() {
                    let total: f64 = papers.iter().map(|r| r.wall_seconds).sum();
                    outln!("{:<28} {total:.1} s wall for all three granularities", "gpt3_paper_total");
                }
                Ok(())
            })();
            finish(printed, code)
        }
    }
}

/// The orders `--order best` simulated for a group, fastest first.
fn print_order_search(s: &fuseflow::OrderSearchReport) -> Result<()> {
    let mut trials: Vec<&fuseflow::OrderTrial> = s.trials.iter().collect();
    trials.sort_by_key(|t| (t.cycles.is_none(), t.cycles, t.rank));
    let skipped = if s.skipped > 0 {
        format!(", {} more legal orders left out by --order-budget (the worst by the cost estimate)", s.skipped)
    } else {
        String::new()
    };
    outln!("  order search: {} orders simulated{skipped}", s.trials.len());
    for t in trials {
        let orders: Vec<String> = t.orders.iter().map(|o| o.join(",")).collect();
        let what = match (t.cycles, &t.error) {
            (Some(c), _) => {
                let v = if t.verified == Some(false) { "  NOT VERIFIED" } else { "" };
                format!("{} cycles{v}", c)
            }
            (None, Some(e)) => format!("failed: {e}"),
            (None, None) => "failed".to_string(),
        };
        outln!("    {:<24} {what}  (estimate rank {})", orders.join(" | "), t.rank);
    }
    Ok(())
}

/// Refuses `--order best` where nothing is simulated.
fn simulated_only(cfg: &RunConfig, command: &str) -> Result<()> {
    match cfg.order_search {
        Some(_) => {
            Err(anyhow!("--order best simulates every order, which `{command}` does not: use it with `fuseflow run`"))
        }
        None => Ok(()),
    }
}

// --- Comal interop (fuseflow-comal) ---

/// `fuseflow compile --emit comal`: statement `stmt` under the requested order, exported with
/// the program's inputs (generated with `seed`, as `run --seed` does) and the temporaries it
/// reads, computed by simulating the statements before it.
fn comal_compile(prog: &ProgramArgs, stmt: &str, emit: &str, out: &Path, seed: u64) -> Result<ExitCode> {
    if emit != "comal" {
        return Err(anyhow!("--emit {emit}: unsupported format (only `comal`)"));
    }
    let p = load(prog)?;
    let cfg = config(prog);
    simulated_only(&cfg, "compile")?;
    if cfg.lower.free_layout {
        return Err(anyhow!(
            "--free-layout: the Comal export writes inputs in their declared layouts; compile without it"
        ));
    }
    if cfg.block.is_some() || !cfg.group_blocks.is_empty() {
        return Err(anyhow!(
            "{}: --block: blocked graphs cannot be exported to Comal (Comal picks its block mode by entry point and ignores the graph's block shape; run them with `fuseflow run --block`)",
            p.file
        ));
    }
    let mem_limit = prog.limits.mem_limit();
    fuseflow::check_compile_size(&p, &cfg.fusion, mem_limit)?;
    let budget = mem_limit.map_or(fuseflow_tensor::Budget::UNLIMITED, fuseflow_tensor::Budget::new);
    let load = fuseflow_ir::LoadOptions { skip: Vec::new(), budget };
    if cfg.fusion != fuseflow_compiler::Fusion::Unfused {
        return comal_compile_group(&p, &cfg, prog, group_index(stmt)?, out, seed, &load);
    }
    let stmt = resolve_stmt(&p, stmt)?;
    let k = compile_statement(&p, stmt, &cfg)?;
    let mut tensors = fuseflow::load_inputs(&p, &base_dir(&prog.program), seed, &load)?.tensors;
    // Temporaries the statement reads are computed by simulating the statements before it.
    for earlier in 0..stmt {
        if k.graph.inputs.iter().all(|b| tensors.contains_key(&b.tensor)) {
            break;
        }
        let name = p.stmts[earlier].lhs.tensor.clone();
        let ke = compile_statement(&p, earlier, &cfg)?;
        let r = fuseflow_sim::simulate(&ke.graph, &tensors, &cfg.sim).map_err(|e| {
            anyhow!("computing {name} (statement {}) for statement {}: {e}", p.stmt_label(earlier), p.stmt_label(stmt))
        })?;
        let decl = p.decl(&name).ok_or_else(|| anyhow!("{name}: not declared"))?;
        let t = r.outputs.get(&name).ok_or_else(|| anyhow!("statement {} wrote no {name}", p.stmt_label(earlier)))?;
        tensors.insert(name.clone(), t.convert(&decl.format).map_err(|e| anyhow!("{name}: {e}"))?);
    }
    fuseflow_comal::export_dir(&k.graph, &tensors, out)?;
    print_comal_gaps(&k.graph);
    outln!(
        "wrote {} ({} nodes, order {}) and {} input tensors",
        out.join(fuseflow_comal::GRAPH_FILE).display(),
        k.graph.nodes.len(),
        k.order.join(","),
        k.graph.inputs.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `fuseflow compile --fusion G --stmt N`: writes fusion group `N`; the intermediates it reads
/// are computed by simulating the groups before it.
fn comal_compile_group(
    p: &fuseflow_ir::CheckedProgram,
    cfg: &RunConfig,
    prog: &ProgramArgs,
    group: usize,
    out: &Path,
    seed: u64,
    load: &fuseflow_ir::LoadOptions,
) -> Result<ExitCode> {
    let groups = fuseflow::compile_groups(p, cfg)?;
    let Some(k) = groups.get(group) else {
        return Err(anyhow!("{}: group {group} does not exist (the fusion has {})", p.file, groups.len()));
    };
    let mut tensors = fuseflow::load_inputs(p, &base_dir(&prog.program), seed, load)?.tensors;
    for (gi, earlier) in groups[..group].iter().enumerate() {
        if k.graph.inputs.iter().all(|b| tensors.contains_key(&b.tensor)) {
            break;
        }
        let r = fuseflow_sim::simulate(&earlier.graph, &tensors, &cfg.sim)
            .map_err(|e| anyhow!("computing group {gi} for group {group}: {e}"))?;
        for name in &earlier.outputs {
            let decl = p.decl(name).ok_or_else(|| anyhow!("{name}: not declared"))?;
            let t = r.outputs.get(name).ok_or_else(|| anyhow!("group {gi} wrote no {name}"))?;
            tensors.insert(name.clone(), t.convert(&decl.format).map_err(|e| anyhow!("{name}: {e}"))?);
        }
    }
    fuseflow_comal::export_dir(&k.graph, &tensors, out)?;
    print_comal_gaps(&k.graph);
    let orders: Vec<String> = k.orders.iter().map(|o| o.join(",")).collect();
    outln!(
        "wrote {} (group {group}: statements {}, {} nodes, order {}) and {} input tensors",
        out.join(fuseflow_comal::GRAPH_FILE).display(),
        p.group_label(&k.stmts),
        k.graph.nodes.len(),
        orders.join(" | "),
        k.graph.inputs.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Notes on stderr for what the Comal simulator cannot run as exported (the export is
/// written all the same).
fn print_comal_gaps(g: &fuseflow_graph::Graph) {
    for gap in fuseflow_comal::comal_gaps(g) {
        let _ = writeln!(std::io::stderr().lock(), "note: Comal: {gap}");
    }
}

/// Output options of `fuseflow simulate`.
struct SimulateOut<'a> {
    json: bool,
    dump: Option<&'a Path>,
    /// `--compare-outputs DIR` with its relative and absolute tolerances.
    compare: Option<(&'a Path, f64, f64)>,
    hw: &'a HwConfig,
    hw_args: &'a HwArgs,
    observe: &'a ObserveArgs,
}

/// Why `simulate` never verifies.
const SIMULATE_UNVERIFIED: &str =
    "`simulate` has no reference evaluator (exit code 0 means the simulation completed); `fuseflow run PROGRAM` verifies";

/// `fuseflow simulate --comal`: import, simulate on the configured hardware, report.
fn comal_simulate(
    graph: &Path,
    data: &Path,
    sim: &SimConfig,
    control: &fuseflow_sim::SimControl,
    out: &SimulateOut,
) -> Result<ExitCode> {
    let (g, tensors) = fuseflow_comal::import_file(graph, data)?;
    let r = fuseflow_sim::simulate_with(&g, &tensors, sim, control).with_context(|| graph.display().to_string())?;
    if let Some(dir) = out.dump {
        for (name, t) in &r.outputs {
            fuseflow_tensor::write_tensor_dir(dir, name, t)?;
        }
    }
    let compared = match out.compare {
        Some((dir, rel, abs)) => Some(compare_outputs(&g, &r.outputs, dir, rel, abs)),
        None => None,
    };
    let observed = [Observed {
        statements: Vec::new(),
        label: String::new(),
        outputs: r.outputs.keys().cloned().collect(),
        graph: &g,
        cycles: r.cycles,
        nodes: &r.nodes,
        trace: r.trace.as_ref(),
    }];
    let written = write_observations(out.observe, &graph.display().to_string(), out.hw, &observed)?;
    let memory_on = r.peak_bytes_per_cycle.is_some();
    if out.json {
        let outputs: BTreeMap<&String, &Vec<usize>> = r.outputs.iter().map(|(k, t)| (k, &t.shape)).collect();
        let v = serde_json::json!({
            "graph": g.name,
            "nodes": g.nodes.len(),
            "cycles": r.cycles,
            "tokens": r.tokens,
            "flops": r.ops,
            "offchip_bytes": r.bytes_read + r.bytes_written,
            "bytes_read": r.bytes_read,
            "bytes_written": r.bytes_written,
            "mem_requests": r.mem_requests,
            "mem_bytes": r.mem_bytes,
            "peak_bytes_per_cycle": r.peak_bytes_per_cycle,
            "bandwidth_utilisation": r.bandwidth_utilisation,
            "tensors": memory_on.then_some(&r.tensors),
            "outputs": outputs,
            "verified": false,
            "reason": SIMULATE_UNVERIFIED,
        });
        let mut v = v;
        if let Some(c) = &compared {
            let list: BTreeMap<&String, serde_json::Value> = c
                .iter()
                .map(|(name, res)| {
                    let j = match res {
                        Ok(cmp) => serde_json::json!({
                            "equal": cmp.ok,
                            "mismatches": cmp.mismatches,
                            "max_abs_error": finite(cmp.max_abs_error),
                            "max_rel_error": finite(cmp.max_rel_error),
                            "first_mismatch": cmp.first_mismatch,
                        }),
                        Err(e) => serde_json::json!({ "equal": false, "error": e }),
                    };
                    (name, j)
                })
                .collect();
            v["compare"] = serde_json::json!(list);
        }
        outln!("{}", json_with(v, out.hw, written)?);
    } else {
        outln!("graph        {} ({} nodes)", g.name, g.nodes.len());
        outln!("hardware     {}", describe_hw(out.hw, out.hw_args));
        outln!("cycles       {}", r.cycles);
        outln!("tokens       {}", r.tokens);
        outln!("flops        {}", r.ops);
        outln!(
            "offchip      {} bytes (read {}, written {})",
            r.bytes_read + r.bytes_written,
            r.bytes_read,
            r.bytes_written
        );
        print_memory(
            r.mem_requests,
            r.mem_bytes,
            r.peak_bytes_per_cycle,
            r.bandwidth_utilisation,
            memory_on.then_some(&r.tensors),
        )?;
        for (name, t) in &r.outputs {
            outln!("output       {name} {:?} ({} stored)", t.shape, t.stored());
        }
        for (name, res) in compared.iter().flatten() {
            match res {
                Ok(cmp) => outln!("compare      {name} {cmp}"),
                Err(e) => outln!("compare      {name} UNREADABLE: {e}"),
            }
        }
        print_observations(&written)?;
        outln!("result       NOT VERIFIED: {SIMULATE_UNVERIFIED}");
    }
    let all_equal = compared.iter().flatten().all(|(_, res)| res.as_ref().is_ok_and(|c| c.ok));
    Ok(if all_equal { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `None` for a non-finite error (JSON has no infinity).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Compares each simulated output with the tensor of the same name in `dir`, read with every
/// level compressed in the output's level order (the layout a Comal runner's writers give).
fn compare_outputs(
    g: &fuseflow_graph::Graph,
    outputs: &BTreeMap<String, fuseflow_tensor::Tensor>,
    dir: &Path,
    rel: f64,
    abs: f64,
) -> Vec<(String, std::result::Result<fuseflow_reference::Comparison, String>)> {
    let mut res = Vec::with_capacity(outputs.len());
    for (name, ours) in outputs {
        let dims = g.outputs.iter().find(|b| &b.tensor == name).map(|b| b.dims.clone()).unwrap_or_default();
        let levels = vec![fuseflow_tensor::LevelFormat::Compressed; dims.len()];
        let theirs = fuseflow_tensor::Format::new(levels, dims)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|f| fuseflow_tensor::read_tensor_dir(dir, name, &f).map_err(|e| e.to_string()));
        let cmp = theirs.map(|t| fuseflow_reference::compare_named(name, &ours.to_coo(), &t.to_coo(), rel, abs));
        res.push((name.clone(), cmp));
    }
    res
}

// --- end Comal interop ---
