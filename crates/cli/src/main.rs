//! The `fuseflow` command: the only place that prints and sets exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use fuseflow::{compile_statement, run, RunConfig};

#[derive(Parser)]
#[command(
    name = "fuseflow",
    version,
    about = "Compile sparse tensor programs to SAM dataflow graphs and simulate them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ProgramArgs {
    /// Program file (tensor index notation).
    program: PathBuf,
    /// Dataflow order, outermost first, e.g. `i,k,j`.
    #[arg(long, value_delimiter = ',')]
    order: Option<Vec<String>>,
    /// Override a `param` of the program: `--param N=100` (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, i64)>,
    /// Disable the locate optimisation (dense ∩ sparse by lookup).
    #[arg(long)]
    no_locate: bool,
    /// Do not insert coordinate droppers before the output writers.
    #[arg(long)]
    no_crddrop: bool,
    /// Fusion granularity: `unfused`, `full`, `partial` (the program's `fuse` groups) or
    /// explicit groups such as `0-3,4-7`.
    #[arg(long, default_value = "unfused")]
    fusion: fuseflow_compiler::Fusion,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile, simulate and verify a program.
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
        /// Skip verification against the reference evaluator.
        #[arg(long)]
        no_verify: bool,
        /// Stop with an error past this many cycles.
        #[arg(long, default_value_t = 1u64 << 40)]
        max_cycles: u64,
        /// Graph dataset for graph models: a name (`karate`, `cora-synth`, ... see
        /// `fuseflow datasets`) or a path (.mtx, .npz, edge list, Planetoid or OGB directory).
        /// Sets the program's `N`, `F` and `C` params when declared and binds the adjacency.
        #[arg(long)]
        dataset: Option<String>,
        /// Input tensor that receives the dataset's adjacency.
        #[arg(long, default_value = "A")]
        adjacency: String,
        /// Relative tolerance for verification.
        #[arg(long, default_value_t = 1e-9)]
        rel_tol: f64,
        /// Absolute tolerance for verification.
        #[arg(long, default_value_t = 1e-9)]
        abs_tol: f64,
    },
    /// Print a statement's dataflow graph (a fusion group's with `--fusion`).
    Graph {
        #[command(flatten)]
        prog: ProgramArgs,
        /// Statement index, or group index under `--fusion`.
        #[arg(long, default_value_t = 0)]
        stmt: usize,
        /// Graphviz DOT instead of the text dump.
        #[arg(long)]
        dot: bool,
    },
    /// List the legal dataflow orders of every statement.
    Orders {
        #[command(flatten)]
        prog: ProgramArgs,
        /// At most this many orders per statement.
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
    },
    // --- Comal interop (fuseflow-comal) ---
    /// Compile one statement and write it for Comal: `graph.bin` (tortilla protobuf) plus the
    /// input tensors as a SAM tensor directory.
    Compile {
        #[command(flatten)]
        prog: ProgramArgs,
        /// Statement index.
        #[arg(long, default_value_t = 0)]
        stmt: usize,
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
    /// Import a tortilla graph with its tensor directory and simulate it (default config).
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
    },
    // --- end Comal interop ---
}

fn parse_param(s: &str) -> Result<(String, i64), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {s}"))?;
    let v: i64 = v.trim().parse().map_err(|_| format!("parameter {k}: {v} is not an integer"))?;
    Ok((k.trim().to_string(), v))
}

fn load(args: &ProgramArgs) -> Result<fuseflow_ir::CheckedProgram> {
    let params: BTreeMap<String, i64> = args.params.iter().cloned().collect();
    Ok(fuseflow_ir::load(&args.program, &params)?)
}

/// Names declared by `param` lines of a program file.
fn declared_params(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("param "))
        .filter_map(|rest| rest.split(|c: char| c == '=' || c.is_whitespace()).find(|w| !w.is_empty()))
        .map(String::from)
        .collect())
}

fn base_dir(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn config(args: &ProgramArgs) -> RunConfig {
    let mut cfg = RunConfig { order: args.order.clone(), ..RunConfig::default() };
    cfg.lower.locate = !args.no_locate;
    cfg.lower.crddrop = !args.no_crddrop;
    cfg.fusion = args.fusion.clone();
    cfg
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
            eprintln!("{}", text.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run { mut prog, fifo_depth, seed, json, no_verify, max_cycles, rel_tol, abs_tol, dataset, adjacency } => {
            if fifo_depth == Some(0) {
                return Err(anyhow!("--fifo-depth must be at least 1"));
            }
            let graph = match &dataset {
                Some(spec) => Some(fuseflow_datasets::load(spec, seed).with_context(|| format!("dataset {spec}"))?),
                None => None,
            };
            if let Some(g) = &graph {
                let declared = declared_params(&prog.program)?;
                for (name, value) in [("N", g.num_nodes), ("F", g.num_features), ("C", g.num_classes)] {
                    if value > 0 && declared.iter().any(|d| d == name) && !prog.params.iter().any(|(k, _)| k == name) {
                        prog.params.push((name.to_string(), value as i64));
                    }
                }
            }
            let p = load(&prog)?;
            let mut cfg = config(&prog);
            cfg.bind = graph.map(|g| (adjacency.clone(), g.adjacency));
            cfg.sim.channel_capacity = fifo_depth;
            cfg.sim.max_cycles = max_cycles;
            cfg.seed = seed;
            cfg.verify = !no_verify;
            cfg.rel_tol = rel_tol;
            cfg.abs_tol = abs_tol;
            let r = run(&p, &base_dir(&prog.program), &cfg)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("program      {} (fusion {})", r.program, r.fusion);
                for g in &r.groups {
                    let v = match g.verified {
                        Some(true) => "verified".to_string(),
                        Some(false) => format!("MISMATCH ({})", g.mismatch.clone().unwrap_or_default()),
                        None => "not verified (--no-verify)".to_string(),
                    };
                    let orders: Vec<String> = g.orders.iter().map(|o| o.join(",")).collect();
                    let stmts: Vec<String> = g.statements.iter().map(|s| s.to_string()).collect();
                    println!(
                        "group [{}] -> {}  order {}  cycles {}  tokens {}  flops {}  bytes r/w {}/{}  {v}",
                        stmts.join(","),
                        g.outputs.join(","),
                        orders.join(" | "),
                        g.cycles,
                        g.tokens,
                        g.flops,
                        g.bytes_read,
                        g.bytes_written
                    );
                }
                println!("cycles       {}", r.cycles);
                println!("tokens       {}", r.tokens);
                println!("flops        {}", r.flops);
                println!("offchip      {} bytes", r.offchip_bytes);
                let kinds: Vec<String> = r.primitives.iter().map(|(k, n)| format!("{k}={n}")).collect();
                println!("primitives   {}", kinds.join(" "));
                println!("max error    {:e}", r.max_abs_error);
                println!(
                    "sim time     {:.3} s ({:.1} M tokens/s)",
                    r.sim_seconds,
                    r.tokens as f64 / r.sim_seconds.max(1e-12) / 1e6
                );
                println!("wall time    {:.3} s", r.wall_seconds);
                println!(
                    "result       {}",
                    if !r.checked {
                        "NOT VERIFIED (verification disabled by --no-verify)"
                    } else if r.verified {
                        "verified against the reference evaluator"
                    } else {
                        "MISMATCH against the reference evaluator"
                    }
                );
            }
            Ok(if r.checked && r.verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Cmd::Graph { prog, stmt, dot } => {
            let p = load(&prog)?;
            if stmt >= p.stmts.len() {
                return Err(anyhow!("{}: statement {stmt} does not exist (the program has {})", p.file, p.stmts.len()));
            }
            let cfg = config(&prog);
            let graph = if cfg.fusion == fuseflow_compiler::Fusion::Unfused {
                compile_statement(&p, stmt, &cfg)?.graph
            } else {
                let mut groups = fuseflow::compile_groups(&p, &cfg)?;
                if stmt >= groups.len() {
                    return Err(anyhow!("{}: group {stmt} does not exist (the fusion has {})", p.file, groups.len()));
                }
                groups.swap_remove(stmt).graph
            };
            if dot {
                print!("{}", graph.to_dot(|_| None));
            } else {
                print!("{}", graph.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Orders { prog, cap } => {
            let p = load(&prog)?;
            let cfg = config(&prog);
            for s in 0..p.stmts.len() {
                let orders = fuseflow_compiler::legal_orders(&p, s, cap, &cfg.lower)?;
                let list: Vec<String> = orders.iter().map(|o| o.join(",")).collect();
                println!("stmt {s} {}: {}", p.stmts[s].lhs.tensor, list.join("  "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Datasets => {
            for (name, description) in fuseflow_datasets::list() {
                println!("{name:<20} {description}");
            }
            Ok(ExitCode::SUCCESS)
        }
        // --- Comal interop (fuseflow-comal) ---
        Cmd::Compile { prog, stmt, emit, out, seed } => comal_compile(&prog, stmt, &emit, &out, seed),
        Cmd::Simulate { comal, data, json, dump_outputs } => {
            comal_simulate(&comal, &data, json, dump_outputs.as_deref())
        }
        // --- end Comal interop ---
        Cmd::Bench { json, reps } => {
            let results = fuseflow::bench::run_suite(reps).context("benchmark failed")?;
            if json {
                println!("{}", serde_json::to_string(&results)?);
            } else {
                for r in &results {
                    println!(
                        "{:<28} tokens {:>11}  cycles {:>10}  wall {:>8.4} s  {:>7.1} M tokens/s  {}",
                        r.name,
                        r.tokens,
                        r.cycles,
                        r.wall_seconds,
                        r.tokens_per_second / 1e6,
                        if r.verified { "verified" } else { "MISMATCH" }
                    );
                }
            }
            Ok(if results.iter().all(|r| r.verified) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

// --- Comal interop (fuseflow-comal) ---

/// `fuseflow compile --emit comal`: statement `stmt` under the requested order, exported with
/// the program's inputs (generated with `seed`, as `run --seed` does) and the temporaries it
/// reads, computed by simulating the statements before it.
fn comal_compile(prog: &ProgramArgs, stmt: usize, emit: &str, out: &Path, seed: u64) -> Result<ExitCode> {
    if emit != "comal" {
        return Err(anyhow!("--emit {emit}: unsupported format (only `comal`)"));
    }
    let p = load(prog)?;
    if stmt >= p.stmts.len() {
        return Err(anyhow!("{}: statement {stmt} does not exist (the program has {})", p.file, p.stmts.len()));
    }
    let cfg = config(prog);
    let k = compile_statement(&p, stmt, &cfg)?;
    let mut tensors = fuseflow_ir::load_inputs(&p, &base_dir(&prog.program), seed)?;
    // Temporaries the statement reads are computed by simulating the statements before it.
    for earlier in 0..stmt {
        if k.graph.inputs.iter().all(|b| tensors.contains_key(&b.tensor)) {
            break;
        }
        let name = p.stmts[earlier].lhs.tensor.clone();
        let ke = compile_statement(&p, earlier, &cfg)?;
        let r = fuseflow_sim::simulate(&ke.graph, &tensors, &cfg.sim)
            .map_err(|e| anyhow!("computing {name} (statement {earlier}) for statement {stmt}: {e}"))?;
        let decl = p.decl(&name).ok_or_else(|| anyhow!("{name}: not declared"))?;
        let t = r.outputs.get(&name).ok_or_else(|| anyhow!("statement {earlier} wrote no {name}"))?;
        tensors.insert(name.clone(), t.convert(&decl.format).map_err(|e| anyhow!("{name}: {e}"))?);
    }
    fuseflow_comal::export_dir(&k.graph, &tensors, out)?;
    println!(
        "wrote {} ({} nodes, order {}) and {} input tensors",
        out.join(fuseflow_comal::GRAPH_FILE).display(),
        k.graph.nodes.len(),
        k.order.join(","),
        k.graph.inputs.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `fuseflow simulate --comal`: import, simulate with the default configuration, report.
fn comal_simulate(graph: &Path, data: &Path, json: bool, dump: Option<&Path>) -> Result<ExitCode> {
    let (g, tensors) = fuseflow_comal::import_file(graph, data)?;
    let r = fuseflow_sim::simulate(&g, &tensors, &fuseflow_sim::SimConfig::default())
        .map_err(|e| anyhow!("{}: {e}", graph.display()))?;
    if let Some(dir) = dump {
        for (name, t) in &r.outputs {
            fuseflow_tensor::write_tensor_dir(dir, name, t)?;
        }
    }
    if json {
        let outputs: BTreeMap<&String, &Vec<usize>> = r.outputs.iter().map(|(k, t)| (k, &t.shape)).collect();
        let v = serde_json::json!({
            "graph": g.name,
            "nodes": g.nodes.len(),
            "cycles": r.cycles,
            "tokens": r.tokens,
            "flops": r.ops,
            "outputs": outputs,
        });
        println!("{v}");
    } else {
        println!("graph        {} ({} nodes)", g.name, g.nodes.len());
        println!("cycles       {}", r.cycles);
        println!("tokens       {}", r.tokens);
        println!("flops        {}", r.ops);
        for (name, t) in &r.outputs {
            println!("output       {name} {:?} ({} stored)", t.shape, t.stored());
        }
    }
    Ok(ExitCode::SUCCESS)
}

// --- end Comal interop ---
