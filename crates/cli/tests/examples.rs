//! Every bundled example, under every legal dataflow order, with unbounded and small FIFOs,
//! simulates and matches the reference evaluator.

mod common;

use common::*;

fn example(name: &str) -> fuseflow_ir::CheckedProgram {
    fuseflow_ir::load(&examples_dir().join(name), &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn all_examples_all_orders_verify() {
    let mut n_runs = 0;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("ff") {
            continue;
        }
        let p = fuseflow_ir::load(&path, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        if p.stmts.len() != 1 {
            continue;
        }
        names.push(path.file_name().unwrap().to_string_lossy().to_string());
        for cap in [None, Some(2), Some(16)] {
            n_runs += run_all_orders(&p, &examples_dir(), cap, 7).len();
        }
    }
    names.sort();
    for required in [
        "add.ff",
        "elemmul.ff",
        "mttkrp.ff",
        "sddmm.ff",
        "spmm_gustavson.ff",
        "spmm_inner.ff",
        "spmm_outer.ff",
        "spmv.ff",
        "ttm.ff",
    ] {
        assert!(names.iter().any(|n| n == required), "missing example {required}");
    }
    assert!(n_runs >= 27, "only {n_runs} runs");
}

#[test]
fn spmm_orders_match_their_names() {
    // Gustavson i,k,j uses an order-1 accumulator; inner product i,j,k a scalar reducer;
    // outer product k,i,j an order-2 accumulator.
    for (file, order, kind) in [
        ("spmm_gustavson.ff", "i,k,j", "spacc1"),
        ("spmm_inner.ff", "i,j,k", "reduce"),
        ("spmm_outer.ff", "k,i,j", "spacc2"),
    ] {
        let p = example(file);
        let cfg =
            fuseflow::RunConfig { order: Some(order.split(',').map(String::from).collect()), ..Default::default() };
        let k = fuseflow::compile_statement(&p, 0, &cfg).unwrap();
        let text = k.graph.to_text();
        assert!(text.contains(kind), "{file} {order}: no {kind} in\n{text}");
    }
}

#[test]
fn cycles_do_not_increase_with_fifo_depth() {
    for file in ["spmm_gustavson.ff", "spmm_inner.ff", "spmm_outer.ff"] {
        let p = example(file);
        let mut last = u64::MAX;
        for depth in [2, 4, 16, 64] {
            let mut cfg = fuseflow::RunConfig::default();
            cfg.sim.channel_capacity = Some(depth);
            let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
            assert!(r.verified);
            assert!(r.cycles <= last, "{file}: depth {depth} gave {} cycles, more than {last}", r.cycles);
            last = r.cycles;
        }
        let r = fuseflow::run(&p, &examples_dir(), &fuseflow::RunConfig::default()).unwrap();
        assert!(r.cycles <= last, "{file}: unbounded slower than depth 64");
    }
}

#[test]
fn depth_one_deadlock_is_reported_not_hung() {
    // Without FIFO sizing the scanners' look-ahead deadlocks depth-1 FIFOs; with it (the
    // default) the same run completes and verifies, and the report names the enlarged
    // channels.
    let p = example("spmm_gustavson.ff");
    let mut cfg = fuseflow::RunConfig::default();
    cfg.sim.channel_capacity = Some(1);
    cfg.sim.fifo_sizing = false;
    let err = fuseflow::run(&p, &examples_dir(), &cfg).unwrap_err().to_string();
    assert!(err.contains("deadlock") && err.contains("full"), "{err}");
    assert!(!err.contains('\n'));
    cfg.sim.fifo_sizing = true;
    let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
    assert!(r.verified);
    let fifo = r.groups[0].fifo.as_ref().expect("bounded channels are reported");
    assert!(!fifo.enlarged.is_empty() && fifo.enlarged.iter().all(|c| c.depth > c.configured && c.configured == 1));
    let unsized_total = fifo.bounded_channels as u64;
    let extra: u64 = fifo.enlarged.iter().map(|c| c.depth - c.configured).sum();
    assert_eq!(fifo.total_capacity, unsized_total + extra);
}

#[test]
fn cycle_limit_stops_the_run() {
    let p = example("spmm_inner.ff");
    let mut cfg = fuseflow::RunConfig::default();
    cfg.sim.max_cycles = 100;
    let err = fuseflow::run(&p, &examples_dir(), &cfg).unwrap_err().to_string();
    assert!(err.contains("cycle limit of 100 cycles"), "{err}");
}

#[test]
fn runs_are_deterministic() {
    let p = example("sddmm.ff");
    let cfg = fuseflow::RunConfig { seed: 3, ..Default::default() };
    let a = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
    let b = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
    let strip = |r: &fuseflow::RunReport| serde_json::to_string(&r.without_wall_times()).unwrap();
    assert_eq!(strip(&a), strip(&b));
    let ka = fuseflow::compile_statement(&p, 0, &cfg).unwrap().graph.to_text();
    let kb = fuseflow::compile_statement(&p, 0, &cfg).unwrap().graph.to_text();
    assert_eq!(ka, kb);
}

/// Fused groups (shared streams fanning out to consumers that run at different paces) are as
/// deterministic as single kernels, and do not depend on how far a node runs ahead.
#[test]
fn fused_runs_are_deterministic_and_schedule_independent() {
    for (file, params) in [("gcn.ff", vec![]), ("bigbird_attention.ff", vec![("S", 32), ("DH", 4)])] {
        let params = params.into_iter().map(|(k, v): (&str, i64)| (k.to_string(), v)).collect();
        let p = fuseflow_ir::load(&examples_dir().join(file), &params).unwrap();
        let graphs = || -> Vec<String> {
            let cfg = fuseflow::RunConfig { fusion: fuseflow_compiler::Fusion::Full, ..Default::default() };
            fuseflow::compile_groups(&p, &cfg).unwrap().iter().map(|k| k.graph.to_text()).collect()
        };
        assert_eq!(graphs(), graphs(), "{file}");
        let mut reference = None;
        for soft_cap in [1, 64, usize::MAX] {
            let mut cfg = fuseflow::RunConfig { fusion: fuseflow_compiler::Fusion::Full, ..Default::default() };
            cfg.sim.soft_cap = soft_cap;
            let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
            assert!(r.verified, "{file}");
            let key = (r.cycles, r.tokens, r.flops, r.offchip_bytes);
            assert_eq!(*reference.get_or_insert(key), key, "{file} soft cap {soft_cap}");
        }
    }
}

#[test]
fn scheduling_granularity_does_not_change_results() {
    // Tokens carry their ready cycles, so how far a node runs ahead before yielding must not
    // change cycles, token counts, per-node statistics or outputs.
    for file in ["spmm_gustavson.ff", "spmm_inner.ff", "spmm_outer.ff", "mttkrp.ff", "add.ff"] {
        let p = example(file);
        let mut reference = None;
        for soft_cap in [1, 3, 64, 1024, usize::MAX] {
            for capacity in [None, Some(4)] {
                let mut cfg = fuseflow::RunConfig::default();
                cfg.sim.soft_cap = soft_cap;
                cfg.sim.channel_capacity = capacity;
                let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
                assert!(r.verified);
                let key = (capacity, r.cycles, r.tokens, r.flops);
                match &reference {
                    None => reference = Some(vec![key]),
                    Some(v) => {
                        if let Some(prev) = v.iter().find(|k| k.0 == capacity) {
                            assert_eq!(*prev, key, "{file}: soft cap {soft_cap} changed the result");
                        } else {
                            reference.as_mut().unwrap().push(key);
                        }
                    }
                }
            }
        }
    }
}
