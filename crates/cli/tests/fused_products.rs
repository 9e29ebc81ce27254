//! Fused products (`SimConfig::fuse_products`: dot products and broadcast products run as one
//! node each) change nothing but speed: on every example at two granularities, and on random
//! programs × formats × orders × timings, runs with and without them give the same cycles,
//! token counts, per-node counters and output values.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use fuseflow_sim::Sharing;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Runs `p` with and without fused products and checks that everything observable agrees.
/// Returns how many chains the fused run fused (0: nothing was compared) and how many of them
/// absorbed their accumulator.
fn same_with_and_without(p: &fuseflow_ir::CheckedProgram, cfg: &fuseflow::RunConfig, what: &str) -> (usize, usize) {
    let (products, accumulators, _) = compare_fused(p, cfg, what);
    (products, accumulators)
}

/// [`same_with_and_without`], also returning how many filled intersections ran fused.
fn compare_fused(p: &fuseflow_ir::CheckedProgram, cfg: &fuseflow::RunConfig, what: &str) -> (usize, usize, usize) {
    let run = |fuse: bool| {
        let mut cfg = cfg.clone();
        cfg.sim.fuse_products = fuse;
        fuseflow::run(p, &examples_dir(), &cfg).map_err(|e| e.to_string())
    };
    let (fused, plain) = match (run(true), run(false)) {
        (Ok(f), Ok(p)) => (f, p),
        // Finite FIFOs too shallow for the graph deadlock it with or without fusion (the
        // fused run then repeats node by node), with the same error.
        (Err(f), Err(p)) => {
            // A run past the cycle limit names the first node whose clock passed it, in the
            // order the nodes ran: a fused node, which takes many tokens at a time, may get
            // there before another does.
            let limit = |e: &str| e.split(" (at node").next().map(str::to_string);
            if f.contains("passed the cycle limit") {
                assert_eq!(limit(&f), limit(&p), "{what}");
            } else {
                assert_eq!(f, p, "{what}");
            }
            return (0, 0, 0);
        }
        (f, p) => panic!("{what}: fused {:?}, node by node {:?}", f.err(), p.err()),
    };
    assert_eq!(fused.verified, plain.verified, "{what}");
    assert_eq!(
        (fused.cycles, fused.tokens, fused.flops, fused.offchip_bytes),
        (plain.cycles, plain.tokens, plain.flops, plain.offchip_bytes),
        "{what}"
    );
    assert_eq!(fused.groups.len(), plain.groups.len(), "{what}");
    for (g, (a, b)) in fused.groups.iter().zip(&plain.groups).enumerate() {
        assert_eq!(a.nodes.len(), b.nodes.len(), "{what} group {g}");
        for (n, (x, y)) in a.nodes.iter().zip(&b.nodes).enumerate() {
            assert_eq!(x, y, "{what} group {g} node n{n}");
        }
    }
    assert_eq!(fused.outputs, plain.outputs, "{what}: outputs differ");
    assert!(plain.groups.iter().all(|g| g.fused_products + g.fused_fills == 0), "{what}: fused with fusion off");
    assert!(fused.groups.iter().all(|g| g.fused_accumulators <= g.fused_products), "{what}");
    let sum = |f: fn(&fuseflow::GroupReport) -> usize| fused.groups.iter().map(f).sum();
    (sum(|g| g.fused_products), sum(|g| g.fused_accumulators), sum(|g| g.fused_fills))
}

#[test]
fn streams_the_fused_loop_does_not_model_run_node_by_node() {
    // A union above a dot product hands the sparse operand's scanner `N` references for the
    // rows only the bias has: the fused node gives up and the run is repeated node by node.
    let src = |density: f64, bias: &str| {
        format!(
            "input A[8,5] (compressed, dense) = random(density={density})\ninput x[5] dense = random(density=1)\n\
             input b[8] dense = random(density=1)\noutput y[8] dense\ny(i) = A(i,j) * x(j){bias}\n"
        )
    };
    for density in [0.0, 0.1, 1.0] {
        let p = parse(&src(density, " + b(i)"));
        let (fused, _) = same_with_and_without(&p, &Default::default(), &format!("density {density}"));
        // Rows without entries (certain at density 0, all but certain at 0.1) stop the fusion.
        assert_eq!(fused == 0, density < 1.0, "density {density}: {fused} fused");
    }
    // Without the union, the same dot product runs fused.
    assert_eq!(same_with_and_without(&parse(&src(0.1, "")), &Default::default(), "no bias"), (1, 0));
}

#[test]
fn examples_are_the_same_with_fused_products() {
    let (mut chains, mut accs) = (0, 0);
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("ff") {
            continue;
        }
        let p = fuseflow_ir::load(&path, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for fusion in [fuseflow_compiler::Fusion::Unfused, fuseflow_compiler::Fusion::Partial] {
            // On the ideal machine, and on `rda`: 16-deep FIFOs (raised where the graph needs
            // it) and the memory model, which the fused chains model inside.
            for machine in ["ideal", "rda"] {
                let sim = fuseflow_sim::HwConfig::preset(machine).unwrap().to_sim_config();
                let cfg = fuseflow::RunConfig { fusion: fusion.clone(), sim, ..Default::default() };
                let (c, a) = same_with_and_without(&p, &cfg, &format!("{name} {fusion:?} {machine}"));
                chains += c;
                accs += a;
            }
        }
    }
    // The GPT-3 decoder's Q, K and V projections and attention scores, and BigBird's scores,
    // are dot products; the decoder's FFN and out-projection and the GNNs' feature transforms
    // are broadcast products (35 in all at the time of writing).
    assert!(chains >= 40, "only {chains} fused products in the examples");
    // The decoder's out-projection and FFN rows accumulate their products (unfused and in c3).
    assert!(accs >= 8, "only {accs} fused products absorbed their accumulators");
}

#[test]
fn timing_options_are_respected_by_fused_products() {
    // Initiation intervals and latencies per kind, and a cycle limit the fused node must
    // report: as the seven nodes would.
    let p = fuseflow_ir::load(&examples_dir().join("gpt3_decoder.ff"), &Default::default()).unwrap();
    for (kind, ii, lat) in [
        ("scan_dense", 2, 3),
        ("intersect", 1, 4),
        ("array", 3, 2),
        ("alu", 2, 5),
        ("reduce", 4, 1),
        ("repsig", 2, 2),
        ("repeat", 3, 1),
        ("spacc", 2, 3),
    ] {
        let mut cfg = fuseflow::RunConfig::default();
        cfg.sim.timing.per_kind.insert(kind.to_string(), (ii, lat));
        cfg.sim.timing.latency = 2;
        same_with_and_without(&p, &cfg, &format!("gpt3_decoder.ff {kind} ii {ii} latency {lat}"));
    }
}

static CHAINS: AtomicUsize = AtomicUsize::new(0);
static ACCUMULATORS: AtomicUsize = AtomicUsize::new(0);
/// Chains compared with bounded channels, and with the memory model on.
static BOUNDED: AtomicUsize = AtomicUsize::new(0);
static MEMORY: AtomicUsize = AtomicUsize::new(0);

/// Dot-product kernels (reductions at the innermost level, several stop depths, fibers that
/// a union with a sparse operand leaves empty, a scalar result).
const KERNELS: &[(&str, &[(&str, &str)])] = &[
    ("y(i) = A(i,j) * x(j)", &[("y", "i"), ("A", "ij"), ("x", "j")]),
    ("X(i,j) = A(i,k) * B(j,k)", &[("X", "ij"), ("A", "ik"), ("B", "jk")]),
    ("X(i,j,m) = A(i,j,k) * B(m,k)", &[("X", "ijm"), ("A", "ijk"), ("B", "mk")]),
    ("y(i) = A(i,j) * x(j) + b(i)", &[("y", "i"), ("A", "ij"), ("x", "j"), ("b", "i")]),
    ("s() = A(i,j) * B(i,j)", &[("s", ""), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,k) * B(j,k) * C(i,j)", &[("X", "ij"), ("A", "ik"), ("B", "jk"), ("C", "ij")]),
    ("y(i) = maxr(j, A(i,j) * B(i,j))", &[("y", "i"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,k) * B(k,l) * C(j,l)", &[("X", "ij"), ("A", "ik"), ("B", "kl"), ("C", "jl")]),
    // Broadcast products (Gustavson orders), also under a union and with a third operand.
    ("X(i,j) = A(i,k) * B(k,j)", &[("X", "ij"), ("A", "ik"), ("B", "kj")]),
    ("X(i,j) = A(i,k) * B(k,j) + C(i,j)", &[("X", "ij"), ("A", "ik"), ("B", "kj"), ("C", "ij")]),
    ("X(i,j,m) = A(i,k) * B(k,j,m)", &[("X", "ijm"), ("A", "ik"), ("B", "kjm")]),
    ("X(i,j) = b(i) * B(i,j)", &[("X", "ij"), ("b", "i"), ("B", "ij")]),
    // A value (not a reference) broadcast over the scanned fiber.
    ("X(i,j) = (A(i,k) + C(i,k)) * B(k,j)", &[("X", "ij"), ("A", "ik"), ("C", "ik"), ("B", "kj")]),
    ("X(i,j) = relu(A(i,k)) * B(k,j)", &[("X", "ij"), ("A", "ik"), ("B", "kj")]),
    // Accumulated by max (an accumulator the fused product absorbs too).
    ("X(i,j) = maxr(k, A(i,k) * B(k,j))", &[("X", "ij"), ("A", "ik"), ("B", "kj")]),
];

#[derive(Debug, Clone)]
struct Case {
    kernel: usize,
    sizes: Vec<usize>,
    /// Per tensor: level kinds (true = compressed), density.
    tensors: Vec<(Vec<bool>, f64)>,
    seed: u64,
    ii: (u64, u64),
    /// Scheduling granularity: 1 and 2 make fused broadcast products stop mid-fiber.
    soft_cap: usize,
    /// Channel capacity (`None`: unbounded), and whether the graph's needs raise it.
    fifo: Option<usize>,
    sizing: bool,
    /// The memory model: `(channels, bytes per cycle, latency, queue depth, granularity,
    /// sharing)`, or ideal memory.
    memory: Option<Memory>,
}

fn case() -> impl Strategy<Value = Case> {
    let soft_cap = prop_oneof![Just(1usize), Just(2), Just(1024)];
    // Depths past 64 keep their links' records in a ring of their own (`link::Deep`).
    let fifo = prop_oneof![
        2 => Just(None),
        1 => Just(Some(1usize)),
        1 => Just(Some(2)),
        1 => (3usize..20).prop_map(Some),
        1 => (65usize..90).prop_map(Some),
    ];
    let memory = prop_oneof![2 => Just(None), 1 => memory().prop_map(Some)];
    let timing = ((1u64..3, 1u64..4), soft_cap, (fifo, any::<bool>()), memory);
    (0..KERNELS.len(), any::<u64>(), proptest::collection::vec(1usize..7, 5), timing).prop_flat_map(
        |(kernel, seed, sizes, (ii, soft_cap, (fifo, sizing), memory))| {
            let (_, ts) = KERNELS[kernel];
            let per_tensor: Vec<_> = ts
                .iter()
                .map(|(_, idx)| {
                    // Mostly dense, so that dot products are common; sometimes sparse levels
                    // above them, whose empty fibers reach the dense scanners.
                    let level = prop_oneof![4 => Just(false), 1 => Just(true)];
                    (
                        proptest::collection::vec(level, idx.len()),
                        prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(1.0)],
                    )
                })
                .collect();
            per_tensor.prop_map(move |tensors| Case {
                kernel,
                sizes: sizes.clone(),
                tensors,
                seed,
                ii,
                soft_cap,
                fifo,
                sizing,
                memory,
            })
        },
    )
}

/// A memory model: `(channels, bytes per cycle, latency, queue depth, granularity, sharing)`.
type Memory = (u32, u32, u64, u32, u32, usize);

fn memory() -> impl Strategy<Value = Memory> {
    (1u32..4, 1u32..9, 1u64..40, 1u32..4, prop_oneof![Just(4u32), Just(16), Just(64)], 0usize..3)
}

fn memory_config(
    (channels, bytes_per_cycle, latency, queue_depth, granularity, sharing): Memory,
) -> fuseflow_sim::MemoryConfig {
    fuseflow_sim::MemoryConfig {
        channels,
        bytes_per_cycle,
        latency,
        startup: latency / 2,
        queue_depth,
        granularity,
        sharing: [Sharing::Partition, Sharing::Private, Sharing::Demand][sharing],
    }
}

fn program(c: &Case) -> String {
    let (stmt, ts) = KERNELS[c.kernel];
    let size = |ch: char| c.sizes["ijklm".find(ch).unwrap()];
    let mut src = String::new();
    for (n, ((name, idx), (levels, density))) in ts.iter().zip(&c.tensors).enumerate() {
        let shape: Vec<String> = idx.chars().map(|ch| size(ch).to_string()).collect();
        let lv: Vec<&str> = levels.iter().map(|&b| if b { "compressed" } else { "dense" }).collect();
        let fmt = if idx.is_empty() { "dense".to_string() } else { format!("({})", lv.join(", ")) };
        if n == 0 {
            src.push_str(&format!("output {name}[{}] {fmt}\n", shape.join(", ")));
        } else {
            src.push_str(&format!("input {name}[{}] {fmt} = random(density={density})\n", shape.join(", ")));
        }
    }
    src.push_str(stmt);
    src.push('\n');
    src
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    fn fused_products_property(c in case()) {
        let src = program(&c);
        let p = parse(&src);
        let Ok(orders) = fuseflow_compiler::legal_orders(&p, 0, 100, &Default::default()) else { return Ok(()) };
        for o in orders {
            let mut cfg = fuseflow::RunConfig { order: Some(o.clone()), seed: c.seed, ..Default::default() };
            cfg.sim.timing.ii = c.ii.0;
            cfg.sim.timing.latency = c.ii.1;
            cfg.sim.soft_cap = c.soft_cap;
            cfg.sim.channel_capacity = c.fifo;
            cfg.sim.fifo_sizing = c.sizing;
            cfg.sim.memory = c.memory.map(memory_config);
            let what = format!("order {} fifo {:?} sizing {} memory {:?}\n{src}", o.join(","), c.fifo, c.sizing, c.memory);
            let (n, a) = same_with_and_without(&p, &cfg, &what);
            CHAINS.fetch_add(n, Ordering::Relaxed);
            ACCUMULATORS.fetch_add(a, Ordering::Relaxed);
            if c.fifo.is_some() {
                BOUNDED.fetch_add(n, Ordering::Relaxed);
            }
            if c.memory.is_some() {
                MEMORY.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn fused_products_differential() {
    fused_products_property();
    // Most cases hold a dot or broadcast product; make sure the property compared some.
    assert!(CHAINS.load(Ordering::Relaxed) >= 50, "only {} fused products", CHAINS.load(Ordering::Relaxed));
    let accs = ACCUMULATORS.load(Ordering::Relaxed);
    assert!(accs >= 10, "only {accs} fused products absorbed their accumulators");
    let (bounded, memory) = (BOUNDED.load(Ordering::Relaxed), MEMORY.load(Ordering::Relaxed));
    assert!(bounded >= 20 && memory >= 20, "only {bounded} fused with bounded channels, {memory} with memory");
}

#[test]
fn a_fused_run_that_deadlocks_repeats_node_by_node() {
    // Single-token FIFOs that the graph's needs do not raise: a fused chain, which makes a
    // coordinate's tokens together, can wait on a consumer the separate nodes would have fed
    // one token earlier. The run is then repeated node by node, so every kernel and order
    // completes (or deadlocks) exactly as it does node by node.
    let (mut completed, mut deadlocked) = (0, 0);
    for (kernel, (_, ts)) in KERNELS.iter().enumerate() {
        let c = Case {
            kernel,
            sizes: vec![4, 5, 3, 4, 2],
            tensors: ts.iter().map(|(_, idx)| (vec![false; idx.len()], 1.0)).collect(),
            seed: 7,
            ii: (1, 1),
            soft_cap: 1024,
            fifo: Some(1),
            sizing: false,
            memory: None,
        };
        let src = program(&c);
        let p = parse(&src);
        for o in fuseflow_compiler::legal_orders(&p, 0, 100, &Default::default()).unwrap() {
            let mut cfg = fuseflow::RunConfig { order: Some(o.clone()), ..Default::default() };
            cfg.sim.channel_capacity = Some(1);
            cfg.sim.fifo_sizing = false;
            let plain = fuseflow::run(&p, &examples_dir(), &node_by_node(&cfg)).is_ok();
            same_with_and_without(&p, &cfg, &format!("order {}\n{src}", o.join(",")));
            if plain {
                completed += 1;
            } else {
                deadlocked += 1;
            }
        }
    }
    assert!(completed >= 4 && deadlocked >= 1, "{completed} completed, {deadlocked} deadlocked");
}

fn node_by_node(cfg: &fuseflow::RunConfig) -> fuseflow::RunConfig {
    let mut cfg = cfg.clone();
    cfg.sim.fuse_products = false;
    cfg
}

#[test]
fn fused_products_respect_the_cycle_limit() {
    // A run stops with the cycle-limit error exactly when its cycles pass the limit, fused or
    // node by node: a fused node checks the clocks of the nodes it absorbed too.
    for (order, b_order) in [("i,j,k", "order(1,0)"), ("i,k,j", "")] {
        let src = format!(
            "input A[12,9] dense = random(density=1)\ninput B[9,7] dense {b_order} = random(density=1)\n\
             output X[12,7] dense\nX(i,j) = A(i,k) * B(k,j)\n"
        );
        let p = parse(&src);
        let base =
            fuseflow::RunConfig { order: Some(order.split(',').map(String::from).collect()), ..Default::default() };
        let cycles = fuseflow::run(&p, &examples_dir(), &base).unwrap().cycles;
        for limit in [cycles / 2, cycles - 1, cycles] {
            for fuse in [true, false] {
                let mut cfg = base.clone();
                cfg.sim.max_cycles = limit;
                cfg.sim.fuse_products = fuse;
                match fuseflow::run(&p, &examples_dir(), &cfg) {
                    Ok(r) => assert!(limit >= cycles && r.groups[0].fused_products == usize::from(fuse), "{order}"),
                    Err(e) => assert!(limit < cycles && e.to_string().contains("cycle limit"), "{order} {limit}: {e}"),
                }
            }
        }
    }
}

/// A fully fused GNN layer (`model`: `gcn` or `graphsage`) whose adjacency has this density
/// and seed, at `n` nodes and `f` features: the graph that holds a filled intersection
/// (`prims::fill`: the adjacency's outer level unioned with a range over all nodes, for every
/// row, intersected with the row).
fn gnn(model: &str, n: i64, f: i64, density: f64, seed: u64) -> fuseflow_ir::CheckedProgram {
    let src = std::fs::read_to_string(examples_dir().join(format!("{model}.ff"))).unwrap();
    let src = src.replace("random(density=0.08, seed=11)", &format!("random(density={density}, seed={seed})"));
    assert!(src.contains(&format!("density={density}, seed={seed}")), "{model}.ff no longer reads as expected");
    let params = [("N".to_string(), n), ("F".to_string(), f)].into();
    fuseflow_ir::check(fuseflow_ir::parse(&src, "test.ff", &params).unwrap()).unwrap()
}

#[test]
fn filled_intersections_run_fused_with_the_same_results() {
    // Empty rows (the row operand's `N` references, the union's range-only coordinates), rows
    // of every length, an adjacency with no entries and one with every entry, and one whose
    // outer level lacks some rows (the scanner skips them in runs: with finite FIFOs its sends
    // wait for room; with a narrow memory for its lines, and it may end runs early).
    let mut fills = 0;
    for model in ["gcn", "graphsage"] {
        for (n, density) in [(1, 1.0), (9, 0.0), (23, 0.05), (40, 0.2), (17, 1.0), (160, 0.006)] {
            let p = gnn(model, n, 3, density, 5);
            for machine in ["ideal", "rda", "rda narrow"] {
                let mut sim =
                    fuseflow_sim::HwConfig::preset(machine.split(' ').next().unwrap()).unwrap().to_sim_config();
                if let (true, Some(m)) = (machine.ends_with("narrow"), &mut sim.memory) {
                    (m.channels, m.bytes_per_cycle) = (1, 4);
                }
                let cfg = fuseflow::RunConfig { fusion: fuseflow_compiler::Fusion::Full, sim, ..Default::default() };
                let (_, _, k) = compare_fused(&p, &cfg, &format!("{model} N={n} density {density} {machine}"));
                assert!(k > 0, "{model} N={n} density {density} {machine}: nothing fused");
                fills += k;
            }
        }
    }
    assert!(fills >= 10, "only {fills} filled intersections fused");
}

static FILLS: AtomicUsize = AtomicUsize::new(0);
static FILLS_BOUNDED: AtomicUsize = AtomicUsize::new(0);
static FILLS_MEMORY: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Random graphs, sizes and timings (initiation intervals shared by the chain's kinds,
    /// which lets runs coast, or not; latencies; scheduling granularity), FIFO depths, memory
    /// models and cycle limits: fused and node by node agree.
    fn filled_intersections_property(
        graphsage in any::<bool>(),
        n in 1i64..36,
        density in prop_oneof![Just(0.0), 0.0f64..0.3, Just(1.0)],
        seed in any::<u64>(),
        shared_ii in prop_oneof![Just(Some(1u64)), Just(Some(2)), Just(None)],
        timing in proptest::collection::vec((1u64..3, 1u64..5), 5),
        soft_cap in prop_oneof![Just(1usize), Just(3), Just(1024)],
        limit in prop_oneof![4 => Just(None), 1 => (0.3f64..1.2).prop_map(Some)],
        fifo in prop_oneof![2 => Just(None), 1 => Just(Some(1usize)), 1 => Just(Some(2)), 2 => (3usize..20).prop_map(Some)],
        sizing in any::<bool>(),
        memory in proptest::option::of(memory()),
    ) {
        let p = gnn(if graphsage { "graphsage" } else { "gcn" }, n, 2, density, seed);
        let mut cfg = fuseflow::RunConfig { fusion: fuseflow_compiler::Fusion::Full, seed, ..Default::default() };
        for (kind, &(ii, latency)) in ["scan_compressed", "scan_dense", "range", "union", "intersect"].iter().zip(&timing) {
            cfg.sim.timing.per_kind.insert(kind.to_string(), (shared_ii.unwrap_or(ii), latency));
        }
        cfg.sim.soft_cap = soft_cap;
        cfg.sim.channel_capacity = fifo;
        cfg.sim.fifo_sizing = sizing;
        cfg.sim.memory = memory.map(memory_config);
        if let Some(share) = limit {
            // A cycle limit about the run's length: both runs stop with it, or neither.
            let Ok(r) = fuseflow::run(&p, &examples_dir(), &node_by_node(&cfg)) else { return Ok(()) };
            cfg.sim.max_cycles = (r.cycles as f64 * share) as u64;
        }
        let what = format!(
            "graphsage {graphsage} N={n} density {density} seed {seed} ii {shared_ii:?} timing {timing:?} \
             limit {limit:?} fifo {fifo:?} sizing {sizing} memory {memory:?}"
        );
        let (_, _, k) = compare_fused(&p, &cfg, &what);
        FILLS.fetch_add(k, Ordering::Relaxed);
        if fifo.is_some() {
            FILLS_BOUNDED.fetch_add(k, Ordering::Relaxed);
        }
        if memory.is_some() {
            FILLS_MEMORY.fetch_add(k, Ordering::Relaxed);
        }
    }
}

#[test]
fn filled_intersections_differential() {
    filled_intersections_property();
    let fills = FILLS.load(Ordering::Relaxed);
    let (bounded, memory) = (FILLS_BOUNDED.load(Ordering::Relaxed), FILLS_MEMORY.load(Ordering::Relaxed));
    assert!(
        fills >= 20 && bounded >= 8 && memory >= 8,
        "{fills} filled intersections compared, {bounded} with bounded channels, {memory} with memory"
    );
}
