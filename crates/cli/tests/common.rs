//! Shared helpers for the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fuseflow::{run, RunConfig, RunReport};
use fuseflow_compiler::{legal_orders, LowerOptions};
use fuseflow_ir::CheckedProgram;

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

pub fn parse(src: &str) -> CheckedProgram {
    let p = fuseflow_ir::parse(src, "test.ff", &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{src}"));
    fuseflow_ir::check(p).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Runs `p` under every legal order of its single statement with the given channel capacity,
/// asserting that each run verifies; returns the orders tried.
pub fn run_all_orders(
    p: &CheckedProgram,
    base: &Path,
    capacity: Option<usize>,
    seed: u64,
) -> Vec<(Vec<String>, RunReport)> {
    let orders = legal_orders(p, 0, 1000, &LowerOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!orders.is_empty());
    let mut out = Vec::new();
    for o in orders {
        let mut cfg = RunConfig { order: Some(o.clone()), seed, ..RunConfig::default() };
        cfg.sim.channel_capacity = capacity;
        let r = run(p, base, &cfg).unwrap_or_else(|e| panic!("order {}: {e}", o.join(",")));
        assert!(
            r.verified && r.checked,
            "order {} capacity {:?}: mismatch: {:?}",
            o.join(","),
            capacity,
            r.groups.iter().map(|s| s.mismatch.clone()).collect::<Vec<_>>()
        );
        out.push((o, r));
    }
    out
}

// --- The `fuseflow` binary ---

/// The `fuseflow` binary built for these tests.
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fuseflow"));
    // A suite run inside a Slurm array task or an Indexed Job must not shard the sweeps and
    // reproductions it tests (the tests that want a shard set these again).
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "FUSEFLOW_SHARD_COUNT",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs `fuseflow args...` and returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Asserts a clean failure: exit code 2, no panic, and a single stderr line containing every
/// `needle`.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let (code, _, err) = cli(args);
    assert_eq!(code, 2, "{args:?}: exit code {code}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}

/// A fresh temporary directory for this test process.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseflow-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into()
}

/// The path of an example program.
pub fn example_path(name: &str) -> String {
    examples_dir().join(name).to_string_lossy().into()
}

/// Parses one JSON document.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `(statements, label)` of every group of a `run --json`, in run order.
pub fn run_groups(v: &serde_json::Value) -> Vec<(Vec<u64>, String)> {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let s = g["statements"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            (s, g["label"].as_str().unwrap().to_string())
        })
        .collect()
}
