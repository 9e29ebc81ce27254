//! Absolute timing is pinned: cycles, tokens, FLOPs and off-chip bytes of every example at
//! every fusion granularity on the `ideal`, `comal` and `rda` machines, as insta snapshots
//! (`tests/snapshots/timing__*.snap`). Any change of timing, intended or not, changes a
//! snapshot and must be accepted deliberately (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test -p fuseflow --test timing` and a look at the diff).
//!
//! Every run is verified against the reference evaluator. The GPT-3 decoder block runs at
//! reduced shapes here (its default full fusion simulates 5·10⁸ tokens); everything else runs
//! at its program's defaults.

mod common;

use std::fmt::Write;

use common::examples_dir;
use fuseflow_compiler::Fusion;
use fuseflow_sim::HwConfig;

/// Parameter overrides per example (everything else at the program's defaults).
fn params(example: &str) -> Vec<(String, i64)> {
    match example {
        "gpt3_decoder" => [("S", 16), ("D", 16), ("NH", 2), ("DH", 8), ("FF", 32), ("B", 8)]
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect(),
        _ => Vec::new(),
    }
}

/// One line per granularity and machine.
fn table(example: &str) -> String {
    let path = examples_dir().join(format!("{example}.ff"));
    let overrides = fuseflow_ir::Overrides { preset: None, params: params(example).into_iter().collect() };
    let p = fuseflow_ir::load_with(&path, &overrides).unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    for fusion in [Fusion::Unfused, Fusion::Partial, Fusion::Full] {
        for machine in ["ideal", "comal", "rda"] {
            let hw = HwConfig::preset(machine).unwrap();
            let cfg = fuseflow::RunConfig { fusion: fusion.clone(), sim: hw.to_sim_config(), ..Default::default() };
            let r = fuseflow::run(&p, &examples_dir(), &cfg)
                .unwrap_or_else(|e| panic!("{example} {fusion} {machine}: {e}"));
            assert!(
                r.verified,
                "{example} {fusion} {machine}: {:?}",
                r.groups.iter().map(|g| &g.mismatch).collect::<Vec<_>>()
            );
            let fifo: u64 = r.groups.iter().filter_map(|g| g.fifo.as_ref()).map(|f| f.total_capacity).sum();
            writeln!(
                out,
                "{:<8} {machine:<6} groups {:>2}  cycles {:>9}  tokens {:>10}  flops {:>9}  offchip {:>9}  fifo {:>6}",
                fusion.to_string(),
                r.groups.len(),
                r.cycles,
                r.tokens,
                r.flops,
                r.offchip_bytes,
                fifo
            )
            .unwrap();
        }
    }
    out
}

macro_rules! pin {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), table(stringify!($name)));
            }
        )*
    };
}

pin!(
    add,
    bigbird_attention,
    elemmul,
    gcn,
    gpt3_decoder,
    graphsage,
    mttkrp,
    nested_matmul,
    sae,
    sddmm,
    spmm_gustavson,
    spmm_inner,
    spmm_outer,
    spmv,
    ttm,
);

/// Every example is pinned (a new example must be added to the list above).
#[test]
fn every_example_is_pinned() {
    let src = include_str!("timing.rs");
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ff") {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            assert!(src.contains(&format!("    {name},\n")), "examples/{name}.ff has no timing snapshot");
        }
    }
}
