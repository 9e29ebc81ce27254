//! `fuseflow reproduce` (part of the binary, with `main.rs`): runs an experiment's
//! configurations through the driver, appends a record per configuration, and renders the
//! tables and plots from the records (`fuseflow_explore::reproduce`, docs/reproduce.md).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use fuseflow::{DriverError, ParRequest, RunConfig, RunControl};
use fuseflow_explore::reproduce::records::{records_path, stored_scale, write_atomic};
use fuseflow_explore::reproduce::{
    self, configs, read_records, recorded_runs, same_run_record, Config, Experiment, GroupFigures, PaperData, Record,
    RecordLog, ReproduceError, Scale, RECORD_TOOL,
};
use fuseflow_explore::Shard;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{LimitArgs, StdoutError};

/// `fuseflow reproduce`.
#[derive(clap::Args, Clone)]
pub struct ReproduceArgs {
    /// The experiment: fig12, fig14, fig15, fig16, fig17, or all.
    experiment: String,
    /// Problem sizes: `small` (the programs' default shapes) or `paper` (the paper's shapes
    /// and datasets). Default: small, or the scale of the records with --from.
    #[arg(long, value_name = "small|paper")]
    scale: Option<String>,
    /// Configurations simulated side by side (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Output directory: OUT/EXP/records.jsonl, table.md, table.csv, plot.svg (default
    /// `reproduce-SCALE`; with --from, the --from directory). A rerun resumes: recorded
    /// configurations are not simulated again.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Re-render the tables and plots from the records in this directory, simulating nothing.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Only the configurations whose id (`model/data/variant/machine`) contains this text; the
    /// others' rows say `missing` until they are run.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// This process's shard `I/N` of the configurations, for one reproduction split over
    /// processes or a cluster's job array (default: from SLURM_ARRAY_TASK_ID/COUNT or
    /// JOB_COMPLETION_INDEX with FUSEFLOW_SHARD_COUNT). Each shard appends to its own records
    /// file in the shared --out; tables are built from every shard's records.
    #[arg(long, value_name = "I/N", conflicts_with = "from")]
    shard: Option<String>,
    /// Print the ids of the configurations this command would simulate (after --only and
    /// --shard; those already recorded included), one per line, and stop.
    #[arg(long, conflicts_with = "from")]
    list: bool,
    /// Stop a configuration's simulation past this many cycles (it is recorded as failed, and
    /// a rerun tries it again). Default: 10^10 at small scale, 10^12 at paper scale (full
    /// fusion of Cora-ML's GCN on `rda` alone passes 10^10).
    #[arg(long)]
    max_cycles: Option<u64>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The cycle limit of a configuration when `--max-cycles` is not given: paper-scale runs with
/// the memory model on legitimately take more than the simulator's default.
fn default_max_cycles(scale: Scale) -> u64 {
    match scale {
        Scale::Small => fuseflow_sim::DEFAULT_MAX_CYCLES,
        Scale::Paper => 1_000_000_000_000,
    }
}

/// A progress bar with ETA on stderr, hidden when stderr is not a terminal.
fn bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} configurations  {elapsed} elapsed, ETA {eta}  {msg}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_prefix("reproduce");
    b
}

/// `fuseflow reproduce`.
pub fn reproduce(a: ReproduceArgs) -> Result<ExitCode> {
    let exps = Experiment::parse(&a.experiment)?;
    let scale = a.scale.as_deref().map(Scale::parse).transpose()?;
    let paper = PaperData::load()?;
    if let Some(from) = &a.from {
        return rerender(&exps, scale, from, a.out.as_deref().unwrap_or(from), &paper);
    }
    let scale = scale.unwrap_or(Scale::Small);
    let shard = match &a.shard {
        Some(text) => Some(Shard::parse(text)?),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    // The configurations of this process, by experiment: every shard filters the same plan
    // (after --only) by position, so the processes agree without talking to each other.
    let mine = |exp: Experiment| -> Vec<Config> {
        configs(exp, scale)
            .into_iter()
            .filter(|c| a.only.as_deref().is_none_or(|s| c.id.contains(s)))
            .enumerate()
            .filter(|(i, _)| shard.is_none_or(|sh| sh.contains(*i as u64)))
            .map(|(_, c)| c)
            .collect()
    };
    if a.list {
        let mut o = std::io::stdout().lock();
        for &exp in &exps {
            for c in mine(exp) {
                writeln!(o, "{}", c.id).map_err(StdoutError)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("reproduce-{}", scale.name())));
    let jobs = match a.jobs {
        Some(0) => return Err(anyhow!("--jobs must be at least 1")),
        Some(n) => n,
        None => fuseflow::thread_count(0),
    };
    let start = Instant::now();
    let cancel = super::term::cancel_on_ctrl_c();
    // Every experiment's stored records are checked before anything runs.
    let mut todo: Vec<(Experiment, Vec<Config>)> = Vec::new();
    for &exp in &exps {
        let (done, warnings) = read_records(&out, exp, Some(scale))?;
        for w in warnings {
            let _ = writeln!(std::io::stderr(), "warning: {w} (its configuration runs again)");
        }
        let configs: Vec<Config> =
            mine(exp).into_iter().filter(|c| !done.iter().any(|r| r.id == c.id && r.ok())).collect();
        todo.push((exp, configs));
    }
    let total: usize = todo.iter().map(|t| t.1.len()).sum();
    let pb = bar(total);
    let limits = Limits {
        max_cycles: a.max_cycles.unwrap_or(default_max_cycles(scale)),
        mem_limit: a.limits.mem_limit(),
        inner_jobs: if jobs == 1 { 0 } else { 1 },
    };
    for (exp, configs) in &todo {
        let log = Mutex::new(RecordLog::open_shard(&out, *exp, shard)?);
        // A run another experiment has recorded here (by now: earlier experiments of this
        // command included) is taken over, renamed, not simulated again. Records another tool
        // version wrote are left out (they are refused when their own experiment runs).
        let recorded: Vec<(Experiment, Vec<(Config, Record)>)> = Experiment::ALL
            .iter()
            .filter(|&e| e != exp)
            .filter_map(|&e| read_records(&out, e, Some(scale)).ok().map(|(r, _)| (e, recorded_runs(e, scale, r))))
            .collect();
        let mut reused = Vec::new();
        let mut to_run = Vec::new();
        for c in configs {
            match same_run_record(*exp, c, &recorded) {
                Some(r) => reused.push(r),
                None => to_run.push(c),
            }
        }
        if !reused.is_empty() {
            let mut l = log.lock().map_err(|_| anyhow!("records log poisoned"))?;
            for r in &reused {
                l.append(r).with_context(|| format!("recording {}", r.id))?;
                pb.inc(1);
            }
            let ids: Vec<&str> = reused.iter().map(|r| r.id.as_str()).collect();
            pb.suspend(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: {} already recorded by another experiment (the same run): not simulated again",
                    exp.name(),
                    ids.join(", ")
                );
            });
        }
        let configs = to_run;
        let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs)
            .build()
            .map_err(|e| anyhow!("cannot start {jobs} worker threads: {e}"))?;
        pool.install(|| {
            use rayon::prelude::*;
            configs.par_iter().for_each(|c| {
                if cancel.load(Ordering::SeqCst) || failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                pb.set_message(c.id.clone());
                let Some(r) = run_config(*exp, scale, c, &limits, &cancel) else { return };
                let appended = log
                    .lock()
                    .map_err(|_| anyhow!("records log poisoned"))
                    .and_then(|mut l| l.append(&r).with_context(|| format!("recording {}", c.id)));
                if let Err(e) = appended {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                }
                pb.inc(1);
            });
        });
        if let Some(e) = failed.into_inner().ok().flatten() {
            pb.finish_and_clear();
            return Err(e);
        }
        if cancel.load(Ordering::SeqCst) {
            break;
        }
    }
    pb.finish_and_clear();
    if cancel.load(Ordering::SeqCst) {
        let _ = writeln!(
            std::io::stderr(),
            "interrupted: finished configurations are recorded in {}; rerun the same command to resume",
            out.display()
        );
        return Ok(ExitCode::from(super::term::INTERRUPTED));
    }
    let mut code = ExitCode::SUCCESS;
    for &exp in &exps {
        let (records, _) = read_records(&out, exp, Some(scale))?;
        let rendered = write_rendered(exp, scale, &records, &out, &paper)?;
        // A row another shard (or another --only) runs is missing here without anything
        // having failed.
        if print_summary(exp, scale, &records, &rendered, &out, true)? && a.only.is_none() && shard.is_none() {
            code = ExitCode::from(1);
        }
    }
    super::finish(
        (|| -> Result<()> {
            writeln!(std::io::stdout().lock(), "wall time    {:.1} s", start.elapsed().as_secs_f64())
                .map_err(StdoutError)?;
            Ok(())
        })(),
        code,
    )
}

/// `--from DIR`: tables and plots from stored records only.
fn rerender(exps: &[Experiment], scale: Option<Scale>, from: &Path, out: &Path, paper: &PaperData) -> Result<ExitCode> {
    let mut any = false;
    let mut code = ExitCode::SUCCESS;
    for &exp in exps {
        let (records, warnings) = read_records(from, exp, scale)?;
        for w in warnings {
            let _ = writeln!(std::io::stderr(), "warning: {w}");
        }
        let Some(scale) = stored_scale(&records) else {
            if exps.len() == 1 {
                return Err(ReproduceError::Records(format!(
                    "--from {}: no records of {} ({} is missing or empty)",
                    from.display(),
                    exp.name(),
                    records_path(from, exp).display()
                ))
                .into());
            }
            continue;
        };
        any = true;
        let rendered = write_rendered(exp, scale, &records, out, paper)?;
        if print_summary(exp, scale, &records, &rendered, out, false)? {
            code = ExitCode::from(1);
        }
    }
    if !any {
        return Err(ReproduceError::Records(format!(
            "--from {}: no records of any experiment (expected {}/EXP/records.jsonl)",
            from.display(),
            from.display()
        ))
        .into());
    }
    Ok(code)
}

/// Writes `table.md`, `table.csv` and `plot.svg` of `exp` under `out/EXP/`.
fn write_rendered(
    exp: Experiment,
    scale: Scale,
    records: &[Record],
    out: &Path,
    paper: &PaperData,
) -> Result<reproduce::Rendered> {
    let r = reproduce::render(exp, scale, records, paper)?;
    let dir = out.join(exp.name());
    std::fs::create_dir_all(&dir).map_err(|error| ReproduceError::Io { path: dir.display().to_string(), error })?;
    write_atomic(&dir.join("table.md"), r.markdown.as_bytes())?;
    write_atomic(&dir.join("table.csv"), r.csv.as_bytes())?;
    write_atomic(&dir.join("plot.svg"), r.svg.as_bytes())?;
    Ok(r)
}

/// Prints the table and where it went; returns whether a configuration is missing.
fn print_summary(
    exp: Experiment,
    scale: Scale,
    records: &[Record],
    r: &reproduce::Rendered,
    out: &Path,
    simulated: bool,
) -> Result<bool> {
    let mut o = std::io::stdout().lock();
    let wall: f64 = records.iter().map(|x| x.wall_seconds).sum();
    let what = if simulated { "simulated" } else { "re-rendered from records" };
    writeln!(o, "{}", r.markdown).map_err(StdoutError)?;
    writeln!(
        o,
        "{}        {what}: {} records ({} s of runs summed), scale {}, {} missing; {}",
        exp.name(),
        records.len(),
        (wall * 10.0).round() / 10.0,
        scale.name(),
        r.missing.len(),
        out.join(exp.name()).display()
    )
    .map_err(StdoutError)?;
    Ok(!r.missing.is_empty())
}

/// What every configuration runs under.
struct Limits {
    max_cycles: u64,
    mem_limit: Option<u64>,
    /// Worker threads inside one run: 0 (every core) when configurations run one at a time.
    inner_jobs: usize,
}

/// Simulates one configuration; `None` when Ctrl-C stopped it (nothing is recorded).
fn run_config(exp: Experiment, scale: Scale, c: &Config, limits: &Limits, cancel: &Arc<AtomicBool>) -> Option<Record> {
    let t0 = Instant::now();
    let mut record = Record {
        tool: RECORD_TOOL.into(),
        experiment: exp.name().into(),
        scale: scale.name().into(),
        id: c.id.clone(),
        model: c.model.clone(),
        dataset: c.dataset.clone(),
        variant: c.variant.clone(),
        program: c.program.file.clone(),
        fusion: c.fusion.clone(),
        hw: c.hw.clone(),
        par: c.par.iter().map(|(i, n)| format!("{i}={n}")).collect(),
        block: c.block,
        order: c.order.as_ref().map(|o| o.join(",")),
        params: Default::default(),
        cycles: None,
        flops: None,
        bytes: None,
        groups: Vec::new(),
        verified: false,
        error: None,
        wall_seconds: 0.0,
    };
    match simulate(c, limits, cancel) {
        Ok(r) => {
            record.params = r.params.clone();
            record.cycles = Some(r.cycles);
            record.flops = Some(r.flops);
            record.bytes = Some(r.offchip_bytes);
            record.groups = r
                .groups
                .iter()
                .map(|g| GroupFigures {
                    statements: g.statements.clone(),
                    label: g.label.clone(),
                    cycles: g.cycles,
                    flops: g.flops,
                    bytes: g.bytes_read + g.bytes_written,
                })
                .collect();
            record.verified = r.checked && r.verified;
            record.error = r.reason.clone();
        }
        Err(e) if super::is_cancelled(&e) => return None,
        Err(e) => record.error = Some(super::error_line(&e)),
    }
    record.wall_seconds = t0.elapsed().as_secs_f64();
    Some(record)
}

/// Loads the configuration's program and data and runs it through the driver, verified.
fn simulate(c: &Config, limits: &Limits, cancel: &Arc<AtomicBool>) -> Result<fuseflow::RunReport> {
    let mut params = c.params.clone();
    let mut bind = Vec::new();
    let mut dataset = None;
    if let Some(spec) = &c.graph {
        let g = fuseflow_datasets::load(spec, 0).with_context(|| format!("dataset {spec}"))?;
        params.insert("N".into(), g.num_nodes as i64);
        if g.num_features > 0 && !g.identity_features && c.program.source.contains("param F") {
            params.insert("F".into(), g.num_features as i64);
        }
        if g.num_classes > 0 && c.program.source.contains("param C") {
            params.insert("C".into(), g.num_classes as i64);
        }
        bind.push(("A".to_string(), g.adjacency.clone()));
        dataset = Some(fuseflow::DatasetInfo {
            name: g.name.clone(),
            description: g.description.clone(),
            bound: vec![format!("A: adjacency ({n} x {n}, {} entries)", g.num_edges(), n = g.num_nodes)],
        });
    }
    let overrides = fuseflow_ir::Overrides { preset: c.preset.clone(), params };
    let p = fuseflow_ir::check(fuseflow_ir::parse_with(&c.program.source, &c.program.file, &overrides)?)?;
    let hw = fuseflow_sim::HwConfig::from_spec(&c.hw).map_err(|e| anyhow!("--hw {}: {e}", c.hw))?;
    let mut cfg = RunConfig {
        order: c.order.clone(),
        sim: super::sim_config(&hw, limits.max_cycles),
        fusion: c.fusion.parse().map_err(|e: String| anyhow!("{}: {e}", c.id))?,
        bind,
        dataset,
        mem_limit: limits.mem_limit,
        max_work: Some(fuseflow::control::DEFAULT_MAX_WORK),
        jobs: limits.inner_jobs,
        block: c.block,
        par: c
            .par
            .iter()
            .map(|(index, lanes)| ParRequest {
                group: None,
                index: index.clone(),
                lanes: *lanes,
                origin: format!("--par {index}={lanes}"),
            })
            .collect(),
        ..RunConfig::default()
    };
    cfg.lower.free_layout = c.free_layout;
    let control = RunControl { cancel: Some(cancel.clone()), observer: None };
    fuseflow::run_with(&p, Path::new("."), &cfg, &control).map_err(|e: DriverError| e.into())
}
