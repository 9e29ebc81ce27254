//! Hardware configurations end to end: presets and their files, overrides, the off-chip
//! memory model (cost, monotonicity, determinism, reporting) and FIFO depth sweeps.

mod common;

use std::path::PathBuf;

use common::{examples_dir, parse};
use fuseflow::RunConfig;
use fuseflow_sim::{simulate, HwConfig, SimConfig, SimError, SimReport};

fn example(file: &str) -> fuseflow_ir::CheckedProgram {
    parse(&std::fs::read_to_string(examples_dir().join(file)).unwrap())
}

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// A preset with overrides, as the simulator configuration.
fn hw(preset: &str, overrides: &[&str]) -> SimConfig {
    let mut h = HwConfig::preset(preset).unwrap();
    for o in overrides {
        h.apply_override(o).unwrap_or_else(|e| panic!("{o}: {e}"));
    }
    h.to_sim_config()
}

/// Runs and verifies `file` through the driver; returns its cycles.
fn cycles(file: &str, sim: &SimConfig) -> u64 {
    let cfg = RunConfig { sim: sim.clone(), ..RunConfig::default() };
    let r = fuseflow::run(&example(file), &examples_dir(), &cfg).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(r.verified && r.checked, "{file}: output does not match the reference");
    r.cycles
}

/// Simulates the first statement of `file` directly, for the full report.
fn report(file: &str, sim: &SimConfig) -> Result<SimReport, SimError> {
    let p = example(file);
    let cfg = RunConfig::default();
    let tensors = fuseflow_ir::load_inputs(&p, &examples_dir(), cfg.seed).unwrap();
    let k = fuseflow::compile_statement(&p, 0, &cfg).unwrap();
    simulate(&k.graph, &tensors, sim)
}

const EXAMPLES: [&str; 7] =
    ["spmv.ff", "spmm_gustavson.ff", "spmm_inner.ff", "spmm_outer.ff", "add.ff", "mttkrp.ff", "sddmm.ff"];

#[test]
fn config_files_are_the_presets() {
    for name in ["comal", "rda"] {
        let file = configs_dir().join(format!("{name}.toml"));
        let loaded = HwConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded, HwConfig::preset(name).unwrap(), "{}", file.display());
        assert_eq!(HwConfig::from_spec(file.to_str().unwrap()).unwrap(), loaded);
        assert_eq!(HwConfig::from_spec(name).unwrap(), loaded);
    }
}

#[test]
fn load_errors_name_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("fuseflow-hw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "base = \"rda\"\n[memory]\nchannels = 0\n").unwrap();
    let e = HwConfig::load(&bad).unwrap_err().to_string();
    assert!(e.starts_with(&bad.display().to_string()) && e.contains("key `memory.channels`"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    std::fs::write(&bad, "[memory\n").unwrap();
    let e = HwConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("line 1, column"), "{e}");
    let good = dir.join("mine.toml");
    std::fs::write(&good, "base = \"rda\"\nfifo_depth = 4\n").unwrap();
    let h = HwConfig::load(&good).unwrap();
    assert_eq!((h.name.as_str(), h.fifo_depth, h.memory.enabled), ("mine", Some(4), true));
    let e = HwConfig::from_spec(dir.join("missing.toml").to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("missing.toml") && e.contains("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn memory_off_keeps_todays_cycles() {
    // `comal` with the memory and its timing quirks off is exactly the default configuration;
    // `rda` with the memory off is the default with 16-deep channels. The quirks keep the
    // outputs (`cycles` verifies them); on the sparse accumulators of SpMM they save the drain.
    let no_quirks = [
        "timing.quirks.spacc_burst=false",
        "timing.quirks.crddrop_free_inner=false",
        "timing.quirks.reduce_stop_with_value=false",
    ];
    for file in EXAMPLES {
        let ideal = cycles(file, &SimConfig::default());
        let plain: Vec<&str> = ["memory.enabled=false"].into_iter().chain(no_quirks).collect();
        assert_eq!(cycles(file, &hw("comal", &plain)), ideal, "{file}");
        let quirks = cycles(file, &hw("comal", &["memory.enabled=false"]));
        if ["spmm_gustavson.ff", "spmm_outer.ff"].contains(&file) {
            assert!(quirks < ideal, "{file}: comal's quirks give {quirks} cycles, ideal {ideal}");
        }
        let deep = SimConfig { channel_capacity: Some(16), ..SimConfig::default() };
        assert_eq!(cycles(file, &hw("rda", &["memory.enabled=false"])), cycles(file, &deep), "{file}");
    }
}

#[test]
fn memory_costs_cycles_on_spmm() {
    for file in ["spmm_gustavson.ff", "spmm_inner.ff", "spmm_outer.ff"] {
        let ideal = cycles(file, &SimConfig::default());
        let comal = cycles(file, &hw("comal", &[]));
        assert!(comal > ideal, "{file}: comal with memory {comal} vs ideal {ideal}");
        let rda_off = cycles(file, &hw("rda", &["memory.enabled=false"]));
        let rda = cycles(file, &hw("rda", &[]));
        assert!(rda > rda_off, "{file}: rda with memory {rda} vs without {rda_off}");
        // Seeing the whole memory (no interference) is never slower than any share of it.
        for preset in ["rda", "comal"] {
            let private = cycles(file, &hw(preset, &["memory.sharing=private"]));
            let partition = cycles(file, &hw(preset, &[]));
            let demand = cycles(file, &hw(preset, &["memory.sharing=demand"]));
            assert!(private <= partition, "{file} {preset}: private {private} vs partition {partition}");
            assert!(private <= demand, "{file} {preset}: private {private} vs demand {demand}");
        }
    }
}

#[test]
fn more_channels_or_bandwidth_never_increase_cycles() {
    let sweeps: [(&str, &[&str]); 5] = [
        ("memory.channels", &["1", "2", "3", "8", "16", "64"]),
        ("memory.bytes_per_cycle", &["1", "2", "5", "16", "64"]),
        ("memory.queue_depth", &["1", "2", "4", "16", "64"]),
        ("memory.latency", &["400", "100", "10", "0"]),
        ("memory.startup", &["1000", "14", "0"]),
    ];
    for file in ["spmm_gustavson.ff", "spmm_inner.ff", "add.ff", "mttkrp.ff"] {
        for (preset, sharing) in [("rda", "partition"), ("comal", "partition"), ("comal", "demand"), ("rda", "private")]
        {
            let sharing = format!("memory.sharing={sharing}");
            for (key, values) in sweeps {
                let mut last = u64::MAX;
                for v in values {
                    let c = cycles(file, &hw(preset, &[&sharing, &format!("{key}={v}")]));
                    assert!(c <= last, "{file} {preset} {sharing}: {key}={v} gave {c} cycles, more than {last}");
                    last = c;
                }
            }
        }
    }
}

#[test]
fn memory_results_do_not_depend_on_scheduling() {
    // Every memory port is private to its node and updated in that node's program order, so
    // how far nodes run ahead must change nothing: cycles, per-node counters, traffic, outputs.
    // The ideal cases check the same of the primitives' batch paths, which soft cap 1 disables;
    // the memory-off comal cases, of its timing quirks.
    for file in EXAMPLES {
        for (preset, overrides) in [
            ("ideal", &[][..]),
            ("ideal", &["fifo_depth=3"][..]),
            ("comal", &[][..]),
            ("comal", &["memory.sharing=demand"][..]),
            // Comal's timing quirks alone, and with bounded channels (bursts fall back).
            ("comal", &["memory.enabled=false"][..]),
            ("comal", &["memory.enabled=false", "fifo_depth=3"][..]),
            ("rda", &[][..]),
            ("rda", &["fifo_depth=unbounded"][..]),
            ("rda", &["fifo_depth=2", "memory.sharing=demand"][..]),
        ] {
            let mut reference: Option<SimReport> = None;
            for soft_cap in [1, 3, 64, 1024, usize::MAX] {
                let sim = SimConfig { soft_cap, ..hw(preset, overrides) };
                let r = report(file, &sim).unwrap_or_else(|e| panic!("{file} {preset} {overrides:?}: {e}"));
                match &reference {
                    None => reference = Some(r),
                    Some(x) => {
                        let what = format!("{file} {preset} {overrides:?}: soft cap {soft_cap}");
                        assert_eq!(
                            (r.cycles, r.tokens, r.mem_requests, r.mem_bytes),
                            (x.cycles, x.tokens, x.mem_requests, x.mem_bytes),
                            "{what}"
                        );
                        assert_eq!(r.nodes, x.nodes, "{what}");
                        assert_eq!(r.tensors, x.tensors, "{what}");
                        assert_eq!(r.outputs, x.outputs, "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn traffic_is_reported_per_tensor() {
    let r = report("spmm_gustavson.ff", &hw("rda", &[])).unwrap();
    for t in ["A", "B"] {
        let x = &r.tensors[t];
        assert!(x.bytes_read > 0 && x.bytes_written == 0 && x.mem_requests > 0, "{t}: {x:?}");
        // Whole 64-byte lines are read: at least one line, at most one line per word touched.
        assert!(x.mem_bytes >= 64 && x.mem_bytes <= 16 * x.bytes_read, "{t}: {x:?}");
    }
    let x = &r.tensors["X"];
    assert!(x.bytes_written > 0 && x.bytes_read == 0, "{x:?}");
    // Writes move the words written, including each segment array's leading 0.
    assert_eq!(x.mem_bytes, x.bytes_written + 4 * 2, "{x:?}");
    assert_eq!(r.bytes_read, r.tensors.values().map(|t| t.bytes_read).sum::<u64>());
    assert_eq!(r.mem_bytes, r.tensors.values().map(|t| t.mem_bytes).sum::<u64>());
    assert_eq!(r.peak_bytes_per_cycle, Some(16 * 32));
    let u = r.bandwidth_utilisation.unwrap();
    assert!(u > 0.0 && u <= 1.0, "{u}");
    assert!((r.seconds() - r.cycles as f64 * 1e-9).abs() < 1e-15);

    // Ideal memory: the same useful bytes, no requests, no utilisation.
    let i = report("spmm_gustavson.ff", &SimConfig::default()).unwrap();
    assert_eq!(i.bytes_read, r.bytes_read);
    assert_eq!(i.bytes_written, r.bytes_written);
    assert_eq!((i.mem_requests, i.mem_bytes, i.peak_bytes_per_cycle, i.bandwidth_utilisation), (0, 0, None, None));
    assert_eq!(i.tensors["B"].bytes_read, r.tensors["B"].bytes_read);

    // Comal's 4-byte requests: one request per word touched or written.
    let c = report("spmm_gustavson.ff", &hw("comal", &[])).unwrap();
    assert_eq!(c.mem_bytes, 4 * c.mem_requests);
    assert_eq!(c.tensors["X"].mem_bytes, c.tensors["X"].bytes_written + 4 * 2);
    // A fiber's second segment entry is the next fiber's first: consecutive fibers share it.
    let b = &c.tensors["B"];
    assert!(b.mem_bytes <= b.bytes_read && b.mem_bytes > b.bytes_read / 2, "{b:?}");
}

#[test]
fn fifo_depth_sweep_on_spmm() {
    // Deeper channels never cost cycles, and with FIFO sizing every depth runs (the scanners'
    // look-ahead gets its slack). Without sizing, depth 1 deadlocks, and then the error names
    // the full channels (stream ids and names) and the nodes involved, on one line.
    for memory in ["memory.enabled=false", "memory.enabled=true"] {
        let mut last = u64::MAX;
        for depth in ["1", "2", "4", "16", "unbounded"] {
            let sim = hw("rda", &[memory, &format!("fifo_depth={depth}")]);
            let r = report("spmm_gustavson.ff", &sim).unwrap();
            assert!(r.cycles <= last, "{memory}: depth {depth} gave {} cycles, more than {last}", r.cycles);
            last = r.cycles;
        }
        assert_eq!(last, report("spmm_gustavson.ff", &hw("rda", &[memory, "fifo_depth=unbounded"])).unwrap().cycles);
        let e = report("spmm_gustavson.ff", &hw("rda", &[memory, "fifo_depth=1", "fifo_sizing=false"])).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, SimError::Deadlock { .. }), "{m}");
        assert!(m.contains("full [out") && m.contains(" s") && m.contains(" -> n"), "{m}");
        assert!(!m.contains('\n'), "{m}");
    }
}

#[test]
fn depth_one_deadlock_names_its_channels() {
    let err = report("spmm_gustavson.ff", &hw("rda", &["fifo_depth=1", "fifo_sizing=false"])).unwrap_err().to_string();
    assert!(err.starts_with("deadlock at cycle"), "{err}");
    // e.g. "n3 scan_compressed (B_k) full [out0=c5 s4 B_k.crd -> n7 intersect in2, waiting on c9 s8 A_k.crd]"
    assert!(err.contains(".crd") || err.contains(".ref"), "{err}");
    // The wait-for cycle, as a chain of channels from a node back to itself.
    assert!(err.contains("cycle of channels: n") && err.contains(" full]-> n"), "{err}");
}

#[test]
fn per_kind_input_depth_and_timing_apply() {
    let file = "spmm_gustavson.ff";
    let shallow = cycles(file, &hw("rda", &["fifo_depth=2"]));
    let spacc_deep = cycles(file, &hw("rda", &["fifo_depth=2", "input_fifo_depth.spacc=unbounded"]));
    assert!(spacc_deep <= shallow, "{spacc_deep} vs {shallow}");
    let base = cycles(file, &hw("comal", &["memory.enabled=false"]));
    let slow_scan = cycles(file, &hw("comal", &["memory.enabled=false", "timing.scan_compressed.latency=5"]));
    assert!(slow_scan > base, "{slow_scan} vs {base}");
    let slow_alu = cycles(file, &hw("comal", &["memory.enabled=false", "timing.alu.ii=3"]));
    assert!(slow_alu > base, "{slow_alu} vs {base}");
    let slow_all = cycles(file, &hw("ideal", &["timing.ii=2"]));
    assert!(slow_all > base, "{slow_all} vs {base}");
    // Per-kind entries beat the defaults: comal lists every kind at II 1.
    assert_eq!(cycles(file, &hw("comal", &["memory.enabled=false", "timing.ii=2"])), base);
}

/// Simulator speed with the memory model off and on, on the `fuseflow bench` graphs
/// (`cargo test --release -p fuseflow --test hw -- --ignored --nocapture`). The presets'
/// memory model must cost at most 3× the wall time of the same configuration without it.
#[test]
#[ignore]
fn bench_memory_overhead() {
    let configs = [
        ("ideal", "ideal", &[][..]),
        ("comal-off", "comal", &["memory.enabled=false"][..]),
        ("comal", "comal", &[][..]),
        ("comal-demand", "comal", &["memory.sharing=demand"][..]),
        ("rda-off", "rda", &["memory.enabled=false"][..]),
        ("rda", "rda", &[][..]),
        ("rda-demand", "rda", &["memory.sharing=demand"][..]),
    ];
    // The scalar SpMM graphs; the blocked benchmark moves few, heavy tokens.
    for b in fuseflow::bench::SUITE.iter().filter(|b| b.name.starts_with("spmm")) {
        let prog = fuseflow_ir::check(fuseflow_ir::parse(b.program, b.name, &Default::default()).unwrap()).unwrap();
        let order = Some(b.order.iter().map(|s| s.to_string()).collect());
        let mut walls = Vec::new();
        // Interleave the configurations over the repetitions so that load on the host affects
        // them alike; keep each one's best time.
        let mut best = vec![(f64::MAX, 0u64, 0u64); configs.len()];
        for _ in 0..5 {
            for (i, (_, preset, overrides)) in configs.iter().enumerate() {
                let cfg = RunConfig {
                    order: order.clone(),
                    sim: hw(preset, overrides),
                    verify: false,
                    ..RunConfig::default()
                };
                let r = fuseflow::run(&prog, std::path::Path::new("."), &cfg).unwrap();
                if r.sim_seconds < best[i].0 {
                    best[i] = (r.sim_seconds, r.cycles, r.tokens);
                }
            }
        }
        println!("{}", b.name);
        for ((label, _, _), (wall, cycles, tokens)) in configs.iter().zip(&best) {
            walls.push(*wall);
            let off = match label.split('-').next() {
                Some("rda") => best[4].0,
                Some("comal") => best[1].0,
                _ => best[0].0,
            };
            println!(
                "  {label:<13} {cycles:>10} cycles {wall:.3} s {:>5.1} M tokens/s  {:.2}x its memory-off run",
                *tokens as f64 / wall / 1e6,
                wall / off
            );
        }
        assert!(walls[2] <= 3.0 * walls[1] && walls[5] <= 3.0 * walls[4], "memory model too slow: {walls:?}");
    }
}
