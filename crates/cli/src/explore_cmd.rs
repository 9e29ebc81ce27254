//! `fuseflow explore`, `fuseflow estimate` and `fuseflow merge` (part of the binary, with
//! `main.rs`): argument parsing, the progress bar and what they print. The work is done by
//! `fuseflow-explore` through [`fuseflow::group::GroupRunner`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use fuseflow::group::GroupRunner;
use fuseflow_explore::space::{parse_block, parse_memory, Lanes, Partitions, Variant};
use fuseflow_explore::sweep::Explorer;
use fuseflow_explore::{ExploreError, Machine, OrderChoice, Point, Prune, Shard, Space, SweepOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{base_dir, bind_dataset, config, load, LimitArgs, ProgramArgs, StdoutError};

/// Exit code of a sweep that stopped for a reason a rerun may not have (I/O trouble on the
/// results directory, points that failed on a memory limit): retry it (EX_TEMPFAIL).
pub const RETRYABLE: u8 = 75;

/// The program and its data, as `run` takes them.
#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// Program file (tensor index notation).
    program: PathBuf,
    /// Apply a `preset` line of the program (e.g. `paper`).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Override a `param` of the program: `--param N=100` (repeatable).
    #[arg(long = "param", value_parser = super::parse_param)]
    params: Vec<(String, i64)>,
    /// Graph dataset (`fuseflow datasets`), as for `run`.
    #[arg(long)]
    dataset: Option<String>,
    /// Input tensor that receives the dataset's adjacency.
    #[arg(long, default_value = "A")]
    adjacency: String,
    /// Input tensor that receives identity features (datasets without features).
    #[arg(long, default_value = "X")]
    features: String,
    /// Seed for generated inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not verify simulated outputs against the reference evaluator.
    #[arg(long)]
    no_verify: bool,
    /// Stop a group's simulation past this many cycles (the point is recorded as failed).
    #[arg(long, default_value_t = fuseflow_sim::DEFAULT_MAX_CYCLES)]
    max_cycles: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Axes given on the command line (each replaces the space file's axis of the same name).
#[derive(clap::Args, Clone)]
pub struct AxisArgs {
    /// Space file (TOML): axes `partitions`, `orders`, `order_cap`, `par`, `block`, `hw`,
    /// `fifo_depth`, `memory`, `channels`, `bandwidth` (docs/explore.md).
    #[arg(long, value_name = "SPACE.toml")]
    space: Option<PathBuf>,
    /// Partitions: `all` (every contiguous partition), `convex` (every partition of the
    /// dependence DAG into convex groups, at most `--max-partitions`), or `;`-separated ones
    /// such as `0-3,4-10;0-2+4,3,5-10;unfused;full`.
    #[arg(long)]
    partitions: Option<String>,
    /// Most partitions `--partitions convex` enumerates (default 100000); past it the
    /// enumeration stops and says so.
    #[arg(long, value_name = "N")]
    max_partitions: Option<String>,
    /// Order choice, repeatable: `default`, `best` (every legal order per group, the fastest
    /// kept) or index names such as `i,k,f,h`.
    #[arg(long = "orders", value_name = "CHOICE")]
    orders: Vec<String>,
    /// Parallel lanes, repeatable, one value each: `none`, `h=4` or `h=2,i=2`; applied to every
    /// group that iterates the index (`--par none --par i=4` sweeps both).
    #[arg(long = "par", value_name = "none|INDEX=LANES,...")]
    par: Vec<String>,
    /// Block size, repeatable: `none` or `B` (≥ 2), applied to every group with a sparse
    /// operand (`--block none --block 16`).
    #[arg(long = "block", value_name = "none|B")]
    block: Vec<String>,
    /// Hardware presets or files, comma-separated (`ideal,rda`).
    #[arg(long, value_delimiter = ',', value_name = "PRESET|FILE")]
    hw: Vec<String>,
    /// Channel capacities, comma-separated (`unbounded,16`; `hw` keeps the hardware's).
    #[arg(long, value_delimiter = ',', value_name = "DEPTH")]
    fifo_depth: Vec<String>,
    /// Memory models, comma-separated (`ideal,model`; `hw` keeps the hardware's).
    #[arg(long, value_delimiter = ',', value_name = "MODE")]
    memory: Vec<String>,
    /// Memory channel counts, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    channels: Vec<String>,
    /// Bytes per cycle of one memory channel, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "B")]
    bandwidth: Vec<String>,
}

/// `fuseflow explore`.
#[derive(clap::Args, Clone)]
pub struct ExploreArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    axes: AxisArgs,
    /// Results directory (default `explore-PROGRAM`): points.jsonl, cache/, results.csv,
    /// report.md, plots. A rerun resumes; a directory of another program refuses.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Simulate only the best points by estimate: a count (`50`) or a fraction (`0.1`, `10%`).
    #[arg(long, conflicts_with = "validate")]
    prune: Option<String>,
    /// Simulate every point and report how well the estimate ranks them.
    #[arg(long)]
    validate: bool,
    /// Only count: enumerate the space and print how many points and partitions it has (how
    /// many contiguous, whether `--max-partitions` stopped the enumeration, how long it took),
    /// then stop without simulating or writing anything.
    #[arg(long, conflicts_with_all = ["prune", "validate", "shard"])]
    count: bool,
    /// This process's shard `I/N` of the points (default: from SLURM_ARRAY_TASK_ID/COUNT or
    /// JOB_COMPLETION_INDEX with FUSEFLOW_SHARD_COUNT).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Simulate this many groups side by side (default: one per core). Results and the log's
    /// order are identical for every value; the memory budget is shared between them.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
}

/// `fuseflow estimate`.
#[derive(clap::Args, Clone)]
pub struct EstimateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The partition: `unfused`, `full` or groups such as `0-3,4-10` or `0-2+4,3,5-10`
    /// (`partial`: the program's `fuse` lines).
    #[arg(long, default_value = "partial")]
    fusion: String,
    /// Order choice: `default`, `best` or index names.
    #[arg(long, default_value = "default")]
    order: String,
    /// Hardware preset or file.
    #[arg(long, default_value = "ideal", value_name = "PRESET|FILE")]
    hw: String,
    /// Memory model: `ideal`, `model` or `hw`.
    #[arg(long, default_value = "hw")]
    memory: String,
    /// Parallel lanes for every group that iterates the index: `none`, `h=4`, `h=2,i=2`.
    #[arg(long, default_value = "none", value_name = "none|INDEX=LANES,...")]
    par: String,
    /// Block size for every group with a sparse operand: `none` or `B`.
    #[arg(long, default_value = "none", value_name = "none|B")]
    block: String,
    /// Also measure the estimate's speed: every partition of the program, estimated afresh
    /// (configurations per second on one core).
    #[arg(long)]
    bench: bool,
    /// The partitions `--bench` estimates: `all` (contiguous) or `convex` (every convex
    /// partition of the dependence DAG, at most 100000).
    #[arg(long, default_value = "all", value_name = "all|convex", requires = "bench")]
    partitions: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `fuseflow merge`.
#[derive(clap::Args, Clone)]
pub struct MergeArgs {
    /// Results directories of the shards.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged results go (may be one of the inputs).
    #[arg(long)]
    out: PathBuf,
}

/// Loads the program with its dataset and builds the group evaluator (reference once).
fn runner(d: &DataArgs, cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<GroupRunner> {
    let mut prog = ProgramArgs {
        program: d.program.clone(),
        inputs: Vec::new(),
        densities: Vec::new(),
        order: None,
        order_budget: 64,
        preset: d.preset.clone(),
        params: d.params.clone(),
        no_locate: false,
        no_crddrop: false,
        no_row_sharing: false,
        free_layout: false,
        fusion: fuseflow_compiler::Fusion::Unfused,
        par: Vec::new(),
        block: Vec::new(),
        limits: d.limits.clone(),
    };
    let (p, binding) = match &d.dataset {
        Some(spec) => {
            let g = fuseflow_datasets::load(spec, d.seed).with_context(|| format!("dataset {spec}"))?;
            let (p, b) = bind_dataset(&mut prog, spec, g, &d.adjacency, &d.features)?;
            (p, Some(b))
        }
        None => (load(&prog)?, None),
    };
    let mut cfg = config(&prog);
    if let Some(b) = binding {
        cfg.bind = b.bind;
        cfg.dataset = b.info;
    }
    cfg.seed = d.seed;
    cfg.verify = !d.no_verify;
    cfg.sim.max_cycles = d.max_cycles;
    cfg.mem_limit = d.limits.mem_limit();
    cfg.max_work = Some(fuseflow::control::DEFAULT_MAX_WORK);
    Ok(GroupRunner::new(p, &base_dir(&d.program), cfg, Some(cancel))?)
}

/// The space: the file's axes, then the flags'. `indices` are the program's index variables
/// (what the `par` axis may name).
fn space(a: &AxisArgs, dag: &fuseflow_explore::Dag, indices: &[String]) -> Result<Space> {
    let n = dag.len();
    let mut file_text = None;
    let mut s = match &a.space {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
            let s = Space::from_toml(&path.display().to_string(), &text, n)?;
            file_text = Some((path.display().to_string(), text));
            s
        }
        None => Space::default(),
    };
    // Each flag sets its axis as the space file's key does (`Space::set_axis`), so flags, space
    // files and the Python keywords accept the same values.
    let partitions: Vec<String> = a.partitions.iter().flat_map(|p| p.split(';').map(str::to_string)).collect();
    let max_partitions: Vec<String> = a.max_partitions.iter().cloned().collect();
    let flags: [(&str, &[String]); 10] = [
        ("partitions", &partitions),
        ("max_partitions", &max_partitions),
        ("orders", &a.orders),
        ("par", &a.par),
        ("block", &a.block),
        ("hw", &a.hw),
        ("fifo_depth", &a.fifo_depth),
        ("memory", &a.memory),
        ("channels", &a.channels),
        ("bandwidth", &a.bandwidth),
    ];
    for (axis, vals) in flags {
        s.set_axis(axis, vals, n).map_err(|e| ExploreError::Space(format!("--{}: {e}", axis.replace('_', "-"))))?;
    }
    if let Err(e) = s.check_indices(indices) {
        let origin = match &file_text {
            Some((file, text)) if a.par.is_empty() => Space::locate(file, text, "par"),
            _ => "--par".to_string(),
        };
        return Err(ExploreError::Space(format!("{origin}: {e}")).into());
    }
    s.check().map_err(ExploreError::Space)?;
    // Listed partitions must be legal for the program's dependences: say where they came from.
    if let Partitions::List(_) = &s.partitions {
        if let Err(ExploreError::Space(e)) = s.partition_list(dag) {
            let origin = match &file_text {
                Some((file, text)) if a.partitions.is_none() => Space::locate(file, text, "partitions"),
                _ => "--partitions".to_string(),
            };
            return Err(ExploreError::Space(format!("{origin}: {e}")).into());
        }
    }
    Ok(s)
}

/// A progress bar with ETA on stderr, hidden when stderr is not a terminal.
fn bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} points  {elapsed} elapsed, ETA {eta}  {msg}")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix("explore");
    b
}

/// `fuseflow explore`.
pub fn explore(a: ExploreArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let shard = match &a.shard {
        Some(s) => Some(Shard::parse(s)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let prune = a.prune.as_deref().map(Prune::parse).transpose().map_err(ExploreError::Space)?;
    let jobs = match a.jobs {
        Some(0) => return Err(ExploreError::Space("--jobs must be at least 1".into()).into()),
        Some(n) => n,
        None => fuseflow::thread_count(0),
    };
    let cancel = super::term::cancel_on_ctrl_c();
    let mut r = runner(&a.data, cancel.clone())?;
    r.share_memory(jobs);
    use fuseflow_explore::GroupEvaluator;
    let n = r.statements();
    let dag = r.dependences();
    let s = space(&a.axes, &dag, &r.indices().unwrap_or_default())?;
    if a.count {
        let t = Instant::now();
        let (points, pc) = s.enumerate(&dag)?;
        let secs = t.elapsed().as_secs_f64();
        let printed = (|| -> Result<()> {
            let mut o = std::io::stdout().lock();
            let mut line = |s: String| writeln!(o, "{s}").map_err(StdoutError);
            line(format!("program      {} ({} statements, {} points in the space)", r.program(), n, points.len()))?;
            line(partitions_line(&pc))?;
            line(format!("enumerated   in {secs:.3} s"))?;
            Ok(())
        })();
        return super::finish(printed, ExitCode::SUCCESS);
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a.data.program.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        PathBuf::from(format!("explore-{stem}"))
    });
    let opts = SweepOptions { shard, prune, cancel: Some(cancel), jobs };
    let pb = bar();
    let mut warnings = Vec::new();
    let summary = fuseflow_explore::sweep(&r, &s, &out, &opts, &mut |ev| match ev {
        fuseflow_explore::Event::Warning(w) => {
            pb.suspend(|| {
                let _ = writeln!(std::io::stderr(), "warning: {w}");
            });
            warnings.push(w);
        }
        fuseflow_explore::Event::Started { selected, resumed, .. } => {
            pb.set_length((selected - resumed) as u64);
        }
        fuseflow_explore::Event::Point { record, .. } => {
            pb.set_message(record.fusion.clone());
            pb.inc(1);
        }
    });
    pb.finish_and_clear();
    let summary = summary?;
    let files = fuseflow_explore::report::write_all(&out, &r.program(), &summary.records, None)?;
    let wall = start.elapsed().as_secs_f64();
    let validation = fuseflow_explore::stats::validate_slices(&summary.records);
    let printed = (|| -> Result<()> {
        let mut o = std::io::stdout().lock();
        let mut line = |s: String| writeln!(o, "{s}").map_err(StdoutError);
        line(format!("program      {} ({} statements, {} points in the space)", r.program(), n, summary.space))?;
        line(partitions_line(&summary.partitions))?;
        if let Some(sh) = shard {
            line(format!("shard        {}/{}", sh.index, sh.count))?;
        }
        if prune.is_some() {
            line(format!(
                "pruned       {} points kept by estimate (--prune {})",
                summary.selected,
                a.prune.as_deref().unwrap_or_default()
            ))?;
        }
        line(format!(
            "points       {} selected, {} already done, {} run now ({} failed)",
            summary.selected, summary.resumed, summary.ran, summary.failed
        ))?;
        line(format!("groups       {} simulated, {} from the cache", summary.simulations, summary.cache_hits))?;
        for (slice, v) in &validation {
            let rho = v.spearman.map_or("n/a".to_string(), |x| format!("{x:.3}"));
            let kept: Vec<String> = v
                .kept
                .iter()
                .map(|(f, _, k)| format!("{:.0}%: {}", f * 100.0, if *k { "kept" } else { "lost" }))
                .collect();
            line(format!(
                "estimate     {slice}: Spearman {rho} over {} points; regret of its pick {:.3}; true best at {}",
                v.points,
                v.regret,
                kept.join(", ")
            ))?;
            line(format!("best         {slice}: {}", v.best))?;
        }
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let log = fuseflow_explore::shard::log_file(shard, "points");
        line(format!("results      {} ({})", out.join(log).display(), names.join(", ")))?;
        line(format!("wall time    {wall:.2} s"))?;
        Ok(())
    })();
    let code = if summary.retryable > 0 { ExitCode::from(RETRYABLE) } else { ExitCode::SUCCESS };
    super::finish(printed, code)
}

/// `partitions   N (M contiguous)`, and why the enumeration stopped if it did.
fn partitions_line(pc: &fuseflow_explore::PartitionCount) -> String {
    let stopped = pc.stopped.map_or_else(String::new, |why| format!("; {why}"));
    format!("partitions   {} ({} contiguous){stopped}", pc.partitions, pc.contiguous)
}

/// `fuseflow estimate`.
pub fn estimate(a: EstimateArgs) -> Result<ExitCode> {
    use fuseflow_explore::GroupEvaluator;
    let r = runner(&a.data, super::term::cancel_on_ctrl_c())?;
    let n = r.statements();
    let partition = if a.fusion.trim() == "partial" {
        let groups = fuseflow_compiler::plan(r.program_ref(), &fuseflow_compiler::Fusion::Partial)?;
        let users: Vec<String> = groups.iter().map(|g| r.program_ref().group_label(g)).collect();
        fuseflow_explore::Partition::parse(&users.join(","), n).map_err(ExploreError::Space)?
    } else {
        fuseflow_explore::Partition::parse(&a.fusion, n)
            .and_then(|p| p.ordered(&r.dependences()))
            .map_err(|e| ExploreError::Space(format!("--fusion: {e}")))?
    };
    let order = OrderChoice::parse(&a.order).map_err(|e| ExploreError::Space(format!("--order: {e}")))?;
    let variant = Variant {
        par: Lanes::parse(&a.par).map_err(|e| ExploreError::Space(format!("--par: {e}")))?,
        block: parse_block(&a.block).map_err(|e| ExploreError::Space(format!("--block: {e}")))?,
    };
    let machine = Machine {
        hw: a.hw.clone(),
        fifo_depth: None,
        memory: parse_memory(&a.memory).map_err(|e| ExploreError::Space(format!("--memory: {e}")))?,
        channels: None,
        bandwidth: None,
    };
    let s = Space {
        partitions: Partitions::List(vec![partition.clone()]),
        orders: vec![order.clone()],
        hw: vec![a.hw.clone()],
        memory: vec![machine.memory],
        par: vec![variant.par.clone()],
        block: vec![variant.block],
        ..Space::default()
    };
    let ex = Explorer::new(&r, &s).map_err(|e| match e {
        ExploreError::Space(m) => ExploreError::Space(m.replace("axis `par`", "--par")),
        e => e,
    })?;
    let mut groups = Vec::new();
    for g in partition.groups() {
        let e = ex.estimate_group(g, &order, &variant, &machine);
        let orders = match &e {
            Some((_, o)) => ex.compile(g, o, &variant).map(|c| c.orders.clone()).unwrap_or_default(),
            None => Vec::new(),
        };
        groups.push((fuseflow_compiler::convex::group_text(g), e.map(|x| x.0), orders));
    }
    let total = groups.iter().try_fold(fuseflow_explore::Estimate::default(), |acc, g| g.1.map(|e| acc + e));
    let bench = if a.bench {
        let partitions = match a.partitions.trim() {
            "all" => Partitions::All,
            "convex" => Partitions::Convex,
            other => {
                return Err(ExploreError::Space(format!("--partitions: expected all or convex, found {other:?}")).into())
            }
        };
        Some(bench_estimate(&r, &machine, &variant, partitions)?)
    } else {
        None
    };
    let printed = (|| -> Result<()> {
        let mut o = std::io::stdout().lock();
        if a.json {
            let v = serde_json::json!({
                "program": r.program(),
                "fusion": partition.to_string(),
                "order": order.to_string(),
                "machine": machine.to_string(),
                "par": variant.par.to_string(),
                "block": variant.block,
                "estimate": total,
                "groups": groups.iter().map(|(l, e, ord)| serde_json::json!({"statements": l, "estimate": e, "orders": ord})).collect::<Vec<_>>(),
                "bench": bench.as_ref().map(|b| serde_json::json!({"configurations": b.0, "afresh_per_second": b.1, "cold_per_second": b.2, "memoised_per_second": b.3})),
            });
            writeln!(o, "{v}").map_err(StdoutError)?;
            return Ok(());
        }
        writeln!(o, "program      {} (fusion {}, order {}, machine {machine}{variant})", r.program(), partition, order)
            .map_err(StdoutError)?;
        for (l, e, ord) in &groups {
            let ords: Vec<String> = ord.iter().map(|x| x.join(",")).collect();
            match e {
                Some(e) => writeln!(
                    o,
                    "group [{l}]  order {}  cycles {:.0}  flops {:.0}  bytes {:.0}",
                    ords.join(" | "),
                    e.cycles,
                    e.flops,
                    e.bytes
                ),
                None => writeln!(o, "group [{l}]  cannot be compiled, no estimate"),
            }
            .map_err(StdoutError)?;
        }
        match total {
            Some(t) => writeln!(o, "estimate     cycles {:.0}  flops {:.0}  bytes {:.0}", t.cycles, t.flops, t.bytes),
            None => writeln!(o, "estimate     n/a (a group cannot be compiled)"),
        }
        .map_err(StdoutError)?;
        if let Some((configs, afresh, cold, warm)) = bench {
            writeln!(
                o,
                "bench        {configs} partitions: {afresh:.0} configurations/s estimated afresh (graphs compiled once), {cold:.0}/s cold (compiling every group), {warm:.0}/s with group estimates memoised"
            )
            .map_err(StdoutError)?;
        }
        Ok(())
    })();
    super::finish(printed, ExitCode::SUCCESS)
}

/// Measures estimating every partition of the program: cold (a fresh explorer compiles each
/// distinct group), afresh (graphs compiled, every group estimated again for every point),
/// memoised. Returns (configurations, afresh/s, cold/s, memoised/s).
fn bench_estimate(r: &GroupRunner, m: &Machine, v: &Variant, partitions: Partitions) -> Result<(usize, f64, f64, f64)> {
    use fuseflow_explore::GroupEvaluator;
    let s = Space {
        partitions,
        hw: vec![m.hw.clone()],
        memory: vec![m.memory],
        par: vec![v.par.clone()],
        block: vec![v.block],
        ..Space::default()
    };
    let points: Vec<Point> = s.points(&r.dependences())?;
    let ex = Explorer::new(r, &s)?;
    let t = Instant::now();
    let cold: usize = points.iter().filter_map(|p| ex.estimate_point(p)).count();
    let cold_s = t.elapsed().as_secs_f64();
    // Repeat the afresh pass until it has run for at least a second, for a stable rate.
    let (mut reps, t) = (0usize, Instant::now());
    while reps == 0 || t.elapsed().as_secs_f64() < 1.0 {
        let k = points.iter().filter_map(|p| ex.estimate_point_afresh(p)).count();
        if k != cold {
            return Err(anyhow!("estimate bench: {k} of {} points estimated afresh, {cold} cold", points.len()));
        }
        reps += 1;
    }
    let afresh_s = t.elapsed().as_secs_f64() / reps as f64;
    let t = Instant::now();
    let mut warm_reps = 0usize;
    while warm_reps == 0 || t.elapsed().as_secs_f64() < 0.5 {
        let _ = points.iter().filter_map(|p| ex.estimate_point(p)).count();
        warm_reps += 1;
    }
    let warm_s = t.elapsed().as_secs_f64() / warm_reps as f64;
    let rate = |secs: f64| points.len() as f64 / secs.max(1e-12);
    Ok((points.len(), rate(afresh_s), rate(cold_s), rate(warm_s)))
}

/// `fuseflow merge`.
pub fn merge(a: MergeArgs) -> Result<ExitCode> {
    let (records, warnings) = fuseflow_explore::store::merge(&a.dirs, &a.out)?;
    for w in &warnings {
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    let meta = fuseflow_explore::store::read_meta(&a.out)?;
    let files = fuseflow_explore::report::write_all(&a.out, &meta.program, &records, None)?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let printed = (|| -> Result<()> {
        writeln!(
            std::io::stdout().lock(),
            "merged       {} points from {} directories into {} ({})",
            records.len(),
            a.dirs.len(),
            Path::new(&a.out).join("points.jsonl").display(),
            names.join(", ")
        )
        .map_err(StdoutError)?;
        Ok(())
    })();
    super::finish(printed, ExitCode::SUCCESS)
}
