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
