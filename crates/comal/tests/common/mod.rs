//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fuseflow_graph::Graph;
use fuseflow_ir::CheckedProgram;
use fuseflow_sim::{simulate, SimConfig};
use fuseflow_tensor::Tensor;

/// A temporary directory removed on drop.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(tag: &str) -> TmpDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "fuseflow-comal-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every `examples/*.ff`, sorted.
pub fn example_programs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ff"))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

pub fn load(path: &Path) -> CheckedProgram {
    fuseflow_ir::load(path, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn inputs(p: &CheckedProgram, path: &Path) -> BTreeMap<String, Tensor> {
    fuseflow_ir::load_inputs(p, path.parent().unwrap(), 0).unwrap_or_else(|e| panic!("{e}"))
}

pub fn orders(p: &CheckedProgram, stmt: usize) -> Vec<Vec<String>> {
    fuseflow_compiler::legal_orders(p, stmt, 1000, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The graph with its input bindings sorted by name (import orders them by first use).
pub fn normalized(g: &Graph) -> Graph {
    let mut g = g.clone();
    g.inputs.sort_by(|a, b| a.tensor.cmp(&b.tensor));
    g
}

/// Exports `g` with `tensors`, imports it back, and checks that the graph is identical and
/// that simulating it gives the same cycles, tokens and outputs as the original.
pub fn check_round_trip(g: &Graph, tensors: &BTreeMap<String, Tensor>, what: &str) {
    check_round_trip_with(g, tensors, what, true)
}

/// [`check_round_trip`], with bounded channels too only when `bounded` (graphs compiled with
/// row sharing need channels that hold a row).
pub fn check_round_trip_with(g: &Graph, tensors: &BTreeMap<String, Tensor>, what: &str, bounded: bool) {
    let dir = TmpDir::new("rt");
    fuseflow_comal::export_dir(g, tensors, dir.path()).unwrap_or_else(|e| panic!("{what}: export: {e}"));
    let (back, data) = fuseflow_comal::import_dir(dir.path()).unwrap_or_else(|e| panic!("{what}: import: {e}"));
    assert_eq!(normalized(&back), normalized(g), "{what}: graph differs after the round trip");
    for b in &g.inputs {
        assert_eq!(data.get(&b.tensor), tensors.get(&b.tensor), "{what}: tensor {} differs", b.tensor);
    }
    let cfg = SimConfig::default();
    let direct = simulate(g, tensors, &cfg).unwrap_or_else(|e| panic!("{what}: direct: {e}"));
    let via = simulate(&back, &data, &cfg).unwrap_or_else(|e| panic!("{what}: imported: {e}"));
    assert_eq!(via.cycles, direct.cycles, "{what}: cycles");
    assert_eq!(via.tokens, direct.tokens, "{what}: tokens");
    assert_eq!(via.outputs, direct.outputs, "{what}: outputs");
    if !bounded {
        return;
    }
    // Bounded channels too.
    let cfg = SimConfig { channel_capacity: Some(4), ..SimConfig::default() };
    let direct = simulate(g, tensors, &cfg).unwrap_or_else(|e| panic!("{what}: direct: {e}"));
    let via = simulate(&back, &data, &cfg).unwrap_or_else(|e| panic!("{what}: imported: {e}"));
    assert_eq!(via.cycles, direct.cycles, "{what}: cycles with capacity 4");
    assert_eq!(via.outputs, direct.outputs, "{what}: outputs with capacity 4");
}
