//! Groups simulated side by side: with verification on, every group reads the reference's
//! values of its inputs, so a report does not depend on the thread count, and it equals the
//! report of a run whose groups read what earlier groups simulated (`--no-verify`).

mod common;

use std::path::Path;

use common::{example_path, examples_dir, fails_with};
use fuseflow::{run, RunConfig, RunReport};
use fuseflow_compiler::Fusion;

fn load(name: &str) -> fuseflow_ir::CheckedProgram {
    fuseflow_ir::load_with(&examples_dir().join(name), &fuseflow_ir::Overrides::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The report as JSON without its wall-clock figures.
fn comparable(r: &RunReport) -> serde_json::Value {
    serde_json::to_value(r.without_wall_times()).unwrap()
}

fn fusions() -> [Fusion; 3] {
    [Fusion::Unfused, Fusion::Partial, Fusion::Full]
}

#[test]
fn the_thread_count_changes_nothing_in_a_report() {
    // The decoder at partial fusion: three groups of very different lengths.
    let cases = [("gcn.ff", &fusions()[..]), ("sae.ff", &fusions()[..]), ("gpt3_decoder.ff", &[Fusion::Partial][..])];
    for (name, fusions) in cases {
        let p = load(name);
        for fusion in fusions {
            for memory in [false, true] {
                let mut sim = fuseflow_sim::HwConfig::preset("rda").unwrap();
                sim.memory.enabled = memory;
                let base = RunConfig { fusion: fusion.clone(), sim: sim.to_sim_config(), ..RunConfig::default() };
                let one = run(&p, Path::new("."), &RunConfig { jobs: 1, ..base.clone() }).unwrap();
                assert!(one.verified, "{name} {fusion}: {:?}", one.reason);
                let many = run(&p, Path::new("."), &RunConfig { jobs: 3, ..base.clone() }).unwrap();
                assert_eq!(comparable(&one), comparable(&many), "{name} {fusion} memory {memory}");
                // Each group's simulation time is reported; the run's is their sum.
                let summed: f64 = many.groups.iter().map(|g| g.sim_seconds).sum();
                assert!(many.groups.iter().all(|g| g.sim_seconds > 0.0), "{name} {fusion}");
                assert!(
                    (summed - many.sim_seconds).abs() <= 1e-9 * many.sim_seconds,
                    "{summed} vs {}",
                    many.sim_seconds
                );
            }
        }
    }
}

#[test]
fn groups_read_the_reference_as_they_would_read_the_simulation() {
    // The reference's intermediates have the simulated ones' structure, so reading either
    // gives every group the same cycles and counters.
    // (Fully fused programs are one group and read no intermediate.)
    for name in ["gcn.ff", "graphsage.ff", "sae.ff", "gpt3_decoder.ff", "bigbird_attention.ff", "nested_matmul.ff"] {
        let p = load(name);
        for fusion in [Fusion::Unfused, Fusion::Partial] {
            let base = RunConfig { fusion: fusion.clone(), ..RunConfig::default() };
            let checked = run(&p, Path::new("."), &base).unwrap();
            let chained = run(&p, Path::new("."), &RunConfig { verify: false, ..base.clone() }).unwrap();
            let figures = |r: &RunReport| -> Vec<(u64, u64, u64, u64)> {
                r.groups.iter().map(|g| (g.cycles, g.tokens, g.flops, g.bytes_read + g.bytes_written)).collect()
            };
            assert_eq!(figures(&checked), figures(&chained), "{name} {fusion}");
            // Both hand back what the graphs wrote for the program's outputs.
            assert!(!checked.outputs.is_empty(), "{name} {fusion}");
            assert_eq!(checked.outputs.keys().collect::<Vec<_>>(), chained.outputs.keys().collect::<Vec<_>>());
            for (t, a) in &checked.outputs {
                let (a, b) = (a.to_coo(), chained.outputs[t].to_coo());
                let cmp = fuseflow_reference::compare_named(t, &a, &b, 1e-9, 1e-9);
                assert!(cmp.ok, "{name} {fusion} {t}: {:?}", cmp.first_mismatch);
            }
        }
    }
}

#[test]
fn jobs_must_be_positive() {
    fails_with(&["run", &example_path("add.ff"), "--jobs", "0"], &["--jobs must be at least 1"]);
}
