//! `fuseflow._native`: the Rust half of the `fuseflow` Python package.
//!
//! The Python side translates a PyTorch model into program text (index notation, the same
//! language `fuseflow run` reads) plus the model's tensors; this module checks that text and runs
//! it through the same driver as the CLI ([`fuseflow::run_with`]), in-process. Tensors cross the
//! boundary as raw little-endian buffers (`u32` coordinates, `f64` values) so that the module
//! needs no array library; the Python side wraps them with numpy.
//!
//! `explore` sweeps a design space through `fuseflow-explore` and the driver's group evaluator
//! ([`fuseflow::group::GroupRunner`]), as `fuseflow explore` does, into the same results
//! directory.
//!
//! Errors become `fuseflow.FuseflowError` with the CLI's one-line message (without the CLI's
//! `error: ` prefix); nothing here prints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pyo3::create_exception!(
    _native,
    FuseflowError,
    PyValueError,
    "A FuseFlow error: bad program, data, options or fusion plan, a limit, a deadlock; the message is the CLI's one line."
);

/// Runs `work` on a thread of its own and waits for it without holding the GIL, waking every
/// 100 ms to run Python's signal handlers: Python only delivers Ctrl-C (`KeyboardInterrupt`)
/// when the main thread executes Python code, so a long run inside Rust would otherwise ignore
/// it until it ended. On an exception from a handler, `cancel` is set, the work is waited for
/// (it stops at its next check, leaving what it finished in place), and the exception is
/// raised.
fn interruptible<T: Send>(py: Python<'_>, cancel: &AtomicBool, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    std::thread::scope(|s| {
        let (tx, mut rx) = std::sync::mpsc::channel();
        // The driver's recursive passes get the stack a main thread has, not a spawned one's.
        std::thread::Builder::new()
            .name("fuseflow".into())
            .stack_size(16 << 20)
            .spawn_scoped(s, move || {
                let _ = tx.send(work());
            })
            .map_err(|e| FuseflowError::new_err(format!("cannot start a thread for the run: {e}")))?;
        loop {
            let (got, back) = py.allow_threads(move || (rx.recv_timeout(Duration::from_millis(100)), rx));
            rx = back;
            match got {
                Ok(v) => return Ok(v),
                // The worker ended without a result: it panicked, and the scope re-raises that.
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(FuseflowError::new_err("internal error: the run stopped without a result"))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if let Err(e) = py.check_signals() {
                cancel.store(true, Ordering::SeqCst);
                py.allow_threads(move || {
                    let _ = rx.recv();
                });
                return Err(e);
            }
        }
    })
}

/// One line from an error and its causes, as the CLI prints it (causes the message already
/// contains are not repeated).
fn error_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out.replace(['\n', '\r'], " ")
}

/// The Python exception for a Rust error.
fn py_err(e: &dyn std::error::Error) -> PyErr {
    FuseflowError::new_err(error_line(e))
}

/// Parses and checks program text (`file` names it in messages).
fn load(source: &str, file: &str) -> Result<fuseflow_ir::CheckedProgram, PyErr> {
    let parsed = fuseflow_ir::parse(source, file, &BTreeMap::new()).map_err(|e| py_err(&e))?;
    fuseflow_ir::check(parsed).map_err(|e| py_err(&e))
}

/// Checks program text; returns the number of statements as written (a built-in line counts
/// once), so the Python side can validate fusion plans by statement number.
#[pyfunction]
fn check(source: &str, file: &str) -> PyResult<usize> {
    Ok(load(source, file)?.user_stmts.len())
}

/// Decodes an input tensor handed over from Python: `coords` (`u32`, `rank` per entry) and
/// `vals` (`f64`) as little-endian bytes; without `coords`, `vals` is the dense array in
/// row-major order (zeros are not stored).
fn coo_from_bytes(
    name: &str,
    shape: Vec<usize>,
    coords: Option<&[u8]>,
    vals: &[u8],
) -> Result<fuseflow_tensor::Coo, String> {
    if vals.len() % 8 != 0 {
        return Err(format!("input {name}: value buffer of {} bytes is not f64", vals.len()));
    }
    let vals: Vec<f64> =
        vals.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8 bytes"))).collect();
    match coords {
        None => fuseflow_tensor::Coo::from_dense(&shape, &vals).map_err(|e| format!("input {name}: {e}")),
        Some(c) => {
            let coords: Vec<u32> =
                c.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("chunks of 4 bytes"))).collect();
            if c.len() % 4 != 0 || coords.len() != vals.len() * shape.len() {
                return Err(format!(
                    "input {name}: {} coordinates for {} values of rank {}",
                    coords.len(),
                    vals.len(),
                    shape.len()
                ));
            }
            // The Python side hands over coalesced (sorted, duplicate-free) entries.
            let coo = fuseflow_tensor::Coo { shape, coords, vals };
            coo.validate().map_err(|e| format!("input {name}: {e}"))?;
            Ok(coo)
        }
    }
}

/// An input tensor from Python: name, shape, coordinates (`u32` LE; `None` for a dense array),
/// values (`f64` LE).
type InTensor = (String, Vec<usize>, Option<Vec<u8>>, Vec<u8>);

/// An output tensor for Python: name, shape, coordinates (`u32` LE), values (`f64` LE).
type OutTensor = (String, Vec<usize>, Py<PyBytes>, Py<PyBytes>);

/// One `par=` entry, `[GROUP:]INDEX=LANES`, as the CLI's `--par` reads it.
fn par_request(spec: &str) -> PyResult<fuseflow::ParRequest> {
    let bad = |why: &str| FuseflowError::new_err(format!("par {spec}: {why}"));
    let (group, rest) = match spec.split_once(':') {
        Some((g, rest)) => (Some(g.trim().parse::<usize>().map_err(|_| bad("the group is not a group index"))?), rest),
        None => (None, spec),
    };
    let (index, lanes) = rest.split_once('=').ok_or_else(|| bad("expected [GROUP:]INDEX=LANES"))?;
    let index = index.trim().to_string();
    if index.is_empty() || !index.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad("not an index name"));
    }
    let lanes: u32 = lanes.trim().parse().map_err(|_| bad("the lane count is not an integer"))?;
    if lanes == 0 || lanes > fuseflow_ir::MAX_LANES {
        return Err(bad(&format!("the lane count must be between 1 and {}", fuseflow_ir::MAX_LANES)));
    }
    Ok(fuseflow::ParRequest { group, index, lanes, origin: format!("par {spec}") })
}

/// Runs program text like `fuseflow run`: load, reference, compile, simulate, verify.
///
/// `inputs` binds every input as `(name, shape, coords or None for dense, values)`; `fusion`,
/// `hw`, `sets`, `order` (comma-separated index names, `best` to simulate every legal order of
/// each group and keep the fastest, or None for the compiler's estimate), `order_budget`, `par`
/// (`[GROUP:]INDEX=LANES` each), `block` (B for the run) and `group_blocks` (`(G, B)` pairs),
/// `jobs` (0 = one thread per core), `seed`, `verify`, tolerances, `fifo_depth`, `max_cycles` and
/// `mem_limit` (bytes; None = the CLI's default) mean what the CLI's flags do; `base_dir` is
/// where `file("...")` sources are found (the directory of a saved program). Returns the `--json` report (with
/// `hardware`), the simulated outputs, and, when `stats` is set, the `--stats` JSON.
#[pyfunction]
#[pyo3(signature = (source, file, inputs, fusion="unfused", hw="ideal", sets=Vec::new(), order=None, seed=0, verify=true, rel_tol=1e-9, abs_tol=1e-9, fifo_depth=None, max_cycles=None, mem_limit=None, stats=false, base_dir=".", order_budget=64, par=Vec::new(), block=None, group_blocks=Vec::new(), jobs=0))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    source: &str,
    file: &str,
    inputs: Vec<InTensor>,
    fusion: &str,
    hw: &str,
    sets: Vec<String>,
    order: Option<String>,
    seed: u64,
    verify: bool,
    rel_tol: f64,
    abs_tol: f64,
    fifo_depth: Option<usize>,
    max_cycles: Option<u64>,
    mem_limit: Option<u64>,
    stats: bool,
    base_dir: &str,
    order_budget: usize,
    par: Vec<String>,
    block: Option<usize>,
    group_blocks: Vec<(usize, usize)>,
    jobs: usize,
) -> PyResult<(String, Vec<OutTensor>, Option<String>)> {
    let p = load(source, file)?;
    let fusion: fuseflow_compiler::Fusion =
        fusion.parse().map_err(|e: String| FuseflowError::new_err(format!("fusion: {e}")))?;
    let mut hwc = fuseflow_sim::HwConfig::from_spec(hw).map_err(|e| FuseflowError::new_err(format!("hw: {e}")))?;
    for o in &sets {
        hwc.apply_override(o).map_err(|e| FuseflowError::new_err(format!("set: {e}")))?;
    }
    match fifo_depth {
        Some(0) => return Err(FuseflowError::new_err("fifo_depth must be at least 1")),
        Some(d) => hwc.fifo_depth = Some(d),
        None => {}
    }
    let mut bind = Vec::new();
    for (name, shape, coords, vals) in inputs {
        bind.push((
            name.clone(),
            coo_from_bytes(&name, shape, coords.as_deref(), &vals).map_err(FuseflowError::new_err)?,
        ));
    }
    let mut sim = hwc.to_sim_config();
    if let Some(m) = max_cycles {
        sim.max_cycles = m;
    }
    let search = order.as_deref() == Some("best");
    if search && order_budget == 0 {
        return Err(FuseflowError::new_err("order_budget must be at least 1"));
    }
    let par = par.iter().map(|spec| par_request(spec)).collect::<Result<Vec<_>, _>>()?;
    if let Some(b) = block.into_iter().chain(group_blocks.iter().map(|g| g.1)).find(|&b| b < 2) {
        return Err(FuseflowError::new_err(format!("block size {b}: a block size must be at least 2")));
    }
    let cfg = fuseflow::RunConfig {
        order: order.filter(|_| !search).map(|o| o.split(',').map(|s| s.trim().to_string()).collect()),
        order_search: search.then_some(fuseflow::OrderSearch { budget: order_budget }),
        par,
        block,
        group_blocks: group_blocks.into_iter().collect(),
        jobs,
        sim,
        seed,
        verify,
        rel_tol,
        abs_tol,
        fusion,
        bind,
        mem_limit: mem_limit.or_else(fuseflow::control::default_mem_limit),
        ..fuseflow::RunConfig::default()
    };
    // The run holds no Python object: other Python threads go on meanwhile, and Ctrl-C stops it.
    let cancel = Arc::new(AtomicBool::new(false));
    let control = fuseflow::RunControl { cancel: Some(cancel.clone()), ..fuseflow::RunControl::default() };
    let report =
        interruptible(py, &cancel, || fuseflow::run_with(&p, Path::new(base_dir), &cfg, &control).map_err(Box::new))?
            .map_err(|e| py_err(&*e))?;
    let mut json = serde_json::to_value(&report).map_err(|e| py_err(&e))?;
    if let Some(o) = json.as_object_mut() {
        o.insert("hardware".into(), serde_json::to_value(&hwc).map_err(|e| py_err(&e))?);
    }
    let stats = stats.then(|| fuseflow::observe::stats_json(file, &hwc, &fuseflow::observe::groups(&report)));
    let mut outputs = Vec::new();
    for (name, t) in &report.outputs {
        let coo = t.to_coo();
        let coords: Vec<u8> = coo.coords.iter().flat_map(|c| c.to_le_bytes()).collect();
        let vals: Vec<u8> = coo.vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        outputs.push((
            name.clone(),
            coo.shape.clone(),
            PyBytes::new_bound(py, &coords).unbind(),
            PyBytes::new_bound(py, &vals).unbind(),
        ));
    }
    Ok((json.to_string(), outputs, stats))
}

/// Sweeps a design space of program text like `fuseflow explore`, into the results directory
/// `out` (resumable, shareable with the CLI), and writes its reports.
///
/// `inputs`, `seed`, `verify`, `max_cycles`, `mem_limit` and `base_dir` are `run`'s. `space`
/// is the text of a space file (`space_file` names it in messages); `axes` sets axes as
/// `(name, values)` pairs over it, each value as text (`partitions` one partition per value,
/// `par` `none` or `h=4,i=2`, `block` `none` or `B`, ...). `prune` (`K`, `0.1`, `10%`) and
/// `shard` (`I/N`) are the CLI's; `jobs` (0: one per core) too. Returns JSON: the summary counts, every record, the
/// estimate's accuracy per machine and order slice, and the files written.
#[pyfunction]
#[pyo3(signature = (source, file, inputs, out, axes=Vec::new(), space=None, space_file="space.toml", prune=None, shard=None, seed=0, verify=true, max_cycles=None, mem_limit=None, base_dir=".", jobs=0))]
#[allow(clippy::too_many_arguments)]
fn explore(
    py: Python<'_>,
    source: &str,
    file: &str,
    inputs: Vec<InTensor>,
    out: &str,
    axes: Vec<(String, Vec<String>)>,
    space: Option<String>,
    space_file: &str,
    prune: Option<String>,
    shard: Option<String>,
    seed: u64,
    verify: bool,
    max_cycles: Option<u64>,
    mem_limit: Option<u64>,
    base_dir: &str,
    jobs: usize,
) -> PyResult<String> {
    use fuseflow_explore::GroupEvaluator;
    // 0: one per core, as the CLI's default.
    let jobs = fuseflow::thread_count(jobs);
    let p = load(source, file)?;
    let prune = prune
        .as_deref()
        .map(fuseflow_explore::Prune::parse)
        .transpose()
        .map_err(|e| FuseflowError::new_err(e.replace("--prune", "prune")))?;
    let shard = shard.as_deref().map(fuseflow_explore::Shard::parse).transpose().map_err(|e| py_err(&e))?;
    let mut bind = Vec::new();
    for (name, shape, coords, vals) in inputs {
        bind.push((
            name.clone(),
            coo_from_bytes(&name, shape, coords.as_deref(), &vals).map_err(FuseflowError::new_err)?,
        ));
    }
    let mut cfg = fuseflow::RunConfig {
        seed,
        verify,
        bind,
        mem_limit: mem_limit.or_else(fuseflow::control::default_mem_limit),
        max_work: Some(fuseflow::control::DEFAULT_MAX_WORK),
        ..fuseflow::RunConfig::default()
    };
    if let Some(m) = max_cycles {
        cfg.sim.max_cycles = m;
    }
    let base = Path::new(base_dir).to_path_buf();
    let out = Path::new(out).to_path_buf();
    // Nothing below holds a Python object: other Python threads go on meanwhile, and Ctrl-C
    // stops the sweep (the points finished are in `out`; a rerun resumes).
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = cancel.clone();
    let result: Result<String, String> = interruptible(py, &cancel, move || {
        let mut runner =
            fuseflow::group::GroupRunner::new(p, &base, cfg, Some(stop.clone())).map_err(|e| error_line(&e))?;
        runner.share_memory(jobs);
        let n = runner.statements();
        let mut s = match &space {
            Some(text) => fuseflow_explore::Space::from_toml(space_file, text, n).map_err(|e| error_line(&e))?,
            None => fuseflow_explore::Space::default(),
        };
        for (name, vals) in &axes {
            s.set_axis(name, vals, n).map_err(|e| format!("{name}: {e}"))?;
        }
        s.check().map_err(|e| e.to_string())?;
        if let Err(e) = s.check_indices(&runner.indices().unwrap_or_default()) {
            let origin = match &space {
                Some(text) if !axes.iter().any(|(k, v)| k == "par" && !v.is_empty()) => {
                    fuseflow_explore::Space::locate(space_file, text, "par")
                }
                _ => "par".to_string(),
            };
            return Err(format!("{origin}: {e}"));
        }
        if let fuseflow_explore::space::Partitions::List(_) = &s.partitions {
            // Listed partitions must be legal for the program's dependences (as the CLI checks).
            s.partition_list(&runner.dependences()).map_err(|e| format!("partitions: {e}"))?;
        }
        let opts = fuseflow_explore::SweepOptions { shard, prune, cancel: Some(stop), jobs };
        let mut warnings = Vec::new();
        let summary = fuseflow_explore::sweep(&runner, &s, &out, &opts, &mut |ev| {
            if let fuseflow_explore::Event::Warning(w) = ev {
                warnings.push(w);
            }
        })
        .map_err(|e| error_line(&e))?;
        let files = fuseflow_explore::report::write_all(&out, &runner.program(), &summary.records, None)
            .map_err(|e| error_line(&e))?;
        let accuracy: Vec<serde_json::Value> = fuseflow_explore::stats::validate_slices(&summary.records)
            .into_iter()
            .map(|(slice, v)| serde_json::json!({"slice": slice, "validation": v}))
            .collect();
        let doc = serde_json::json!({
            "space": summary.space,
            "selected": summary.selected,
            "resumed": summary.resumed,
            "ran": summary.ran,
            "failed": summary.failed,
            "retryable": summary.retryable,
            "simulations": summary.simulations,
            "cache_hits": summary.cache_hits,
            "records": summary.records,
            "partitions": {
                "partitions": summary.partitions.partitions,
                "contiguous": summary.partitions.contiguous,
                "stopped": summary.partitions.stopped.map(|why| why.to_string()),
            },
            "accuracy": accuracy,
            "warnings": warnings,
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        Ok(doc.to_string())
    })?;
    result.map_err(FuseflowError::new_err)
}

/// The native module: `check`, `run`, `explore` and the `FuseflowError` exception.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FuseflowError", m.py().get_type_bound::<FuseflowError>())?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(explore, m)?)?;
    Ok(())
}
