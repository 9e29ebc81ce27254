//! Differential property tests: random kernels × random formats (level kinds and mode orders)
//! × random shapes and densities (including 0 and 1, so empty rows, columns and tensors occur)
//! × every legal dataflow order; the simulated result must equal the reference evaluator's.

mod common;

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

static RUNS: AtomicUsize = AtomicUsize::new(0);
static NO_ORDER: AtomicUsize = AtomicUsize::new(0);

/// Kernel templates: (statement, tensors with their index lists; the first is the output).
const KERNELS: &[(&str, &[(&str, &str)])] = &[
    ("y(i) = A(i,j) * x(j)", &[("y", "i"), ("A", "ij"), ("x", "j")]),
    ("X(i,j) = A(i,k) * B(k,j)", &[("X", "ij"), ("A", "ik"), ("B", "kj")]),
    ("X(i,j) = A(i,j) + B(i,j)", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,j) - B(i,j)", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,j) * B(i,j)", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,j) * B(i,k) * C(k,j)", &[("X", "ij"), ("A", "ij"), ("B", "ik"), ("C", "kj")]),
    ("X(i,j) = A(i,k,l) * B(k,j) * C(l,j)", &[("X", "ij"), ("A", "ikl"), ("B", "kj"), ("C", "lj")]),
    ("X(i,j,m) = A(i,j,k) * B(m,k)", &[("X", "ijm"), ("A", "ijk"), ("B", "mk")]),
    ("X(i,j) = A(i,j) + b(j)", &[("X", "ij"), ("A", "ij"), ("b", "j")]),
    ("X(i,j) = A(i,j) * b(i)", &[("X", "ij"), ("A", "ij"), ("b", "i")]),
    ("X(i,j) = relu(A(i,j) - B(i,j))", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = exp(A(i,j))", &[("X", "ij"), ("A", "ij")]),
    // erf keeps zeros (erf(0) = 0); exact GELU is x (1/2 + erf(x/√2)/2).
    ("X(i,j) = erf(A(i,j) - B(i,j))", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,j) * (0.5 + 0.5 * erf(A(i,j) * 0.7071067811865476))", &[("X", "ij"), ("A", "ij")]),
    ("X(i,j) = 2 * A(i,j) + 1", &[("X", "ij"), ("A", "ij")]),
    ("y(i) = A(i,j) * x(j) + b(i)", &[("y", "i"), ("A", "ij"), ("x", "j"), ("b", "i")]),
    ("X(i,j) = A(i,j) + B(i,j) * C(i,j)", &[("X", "ij"), ("A", "ij"), ("B", "ij"), ("C", "ij")]),
    ("X(i,j) = max(A(i,j), B(i,j))", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("s() = A(i,j) * B(i,j)", &[("s", ""), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,k) * B(k,l) * C(l,j)", &[("X", "ij"), ("A", "ik"), ("B", "kl"), ("C", "lj")]),
    ("y(i) = maxr(j, A(i,j))", &[("y", "i"), ("A", "ij")]),
    ("y(i) = maxnz(j, A(i,j) - B(i,j))", &[("y", "i"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = expnz(A(i,j) - B(i,j))", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = expsubnz(A(i,j), b(i))", &[("X", "ij"), ("A", "ij"), ("b", "i")]),
    ("X(i,j) = expsubnz(A(i,j), B(i,j))", &[("X", "ij"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = expsubnz(b(i), A(i,j))", &[("X", "ij"), ("b", "i"), ("A", "ij")]),
    ("y(i) = maxr(j, A(i,j) - B(i,j))", &[("y", "i"), ("A", "ij"), ("B", "ij")]),
    ("X(i,j) = A(i,j) - maxr(k, B(i,k))", &[("X", "ij"), ("A", "ij"), ("B", "ik")]),
    // A sum whose accumulator (order 2 under k, i, j) is co-iterated with a bias: legal only
    // where the accumulator provably emits every (i, j), i.e. its operands are dense there.
    ("X(i,j) = A(k,i) * B(k,j) + C(i,j)", &[("X", "ij"), ("A", "ki"), ("B", "kj"), ("C", "ij")]),
    ("X(i,j,m) = A(i,k) * B(k,j,m) + c(j,m)", &[("X", "ijm"), ("A", "ik"), ("B", "kjm"), ("c", "jm")]),
];

#[derive(Debug, Clone)]
struct Case {
    kernel: usize,
    /// FIFO depth of a second, bounded run (FIFO sizing on).
    depth: usize,
    sizes: BTreeMap<char, usize>,
    /// Per tensor: level kinds (true = compressed), mode order, density.
    tensors: Vec<(Vec<bool>, Vec<usize>, f64)>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let global = Just(vec!['i', 'j', 'k', 'l', 'm']).prop_shuffle();
    (0..KERNELS.len(), any::<u64>(), proptest::collection::vec(1usize..6, 6), global, 1usize..5).prop_flat_map(
        |(kernel, seed, dims, global, depth)| {
            let (_, ts) = KERNELS[kernel];
            let per_tensor: Vec<_> = ts
                .iter()
                .map(|(_, idx)| {
                    let r = idx.len();
                    // Mostly follow one global index order (so a legal dataflow order usually
                    // exists), sometimes a random mode order (so conflicts are exercised too).
                    let chars: Vec<char> = idx.chars().collect();
                    let mut follow: Vec<usize> = (0..r).collect();
                    follow.sort_by_key(|&d| global.iter().position(|&g| g == chars[d]));
                    let order =
                        prop_oneof![4 => Just(follow), 1 => Just((0..r).collect::<Vec<usize>>()).prop_shuffle()];
                    (
                        proptest::collection::vec(any::<bool>(), r),
                        order,
                        prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(1.0)],
                    )
                })
                .collect();
            per_tensor.prop_map(move |tensors| {
                let sizes = "ijklm".chars().zip(dims.iter().copied()).collect();
                Case { kernel, depth, sizes, tensors, seed }
            })
        },
    )
}

fn program(c: &Case) -> String {
    let (stmt, ts) = KERNELS[c.kernel];
    let mut src = String::new();
    for (n, ((name, idx), (levels, order, density))) in ts.iter().zip(&c.tensors).enumerate() {
        let shape: Vec<String> = idx.chars().map(|ch| c.sizes[&ch].to_string()).collect();
        let lv: Vec<&str> = levels.iter().map(|&b| if b { "compressed" } else { "dense" }).collect();
        let fmt = if idx.is_empty() {
            "dense".to_string()
        } else {
            let o: Vec<String> = order.iter().map(|d| d.to_string()).collect();
            format!("({}) order({})", lv.join(", "), o.join(","))
        };
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
        cases: 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    fn differential_property(c in case()) {
        let src = program(&c);
        let p = common::parse(&src);
        match fuseflow_compiler::legal_orders(&p, 0, 1000, &Default::default()) {
            Ok(orders) => {
                for o in orders {
                    // Unbounded channels, then FIFOs of the case's depth with FIFO sizing:
                    // every order must verify and never deadlock.
                    for capacity in [None, Some(c.depth)] {
                        let mut cfg = fuseflow::RunConfig { order: Some(o.clone()), seed: c.seed, ..Default::default() };
                        cfg.sim.channel_capacity = capacity;
                        let r = fuseflow::run(&p, std::path::Path::new("."), &cfg)
                            .map_err(|e| TestCaseError::fail(format!("order {} depth {capacity:?}: {e}\n{src}", o.join(","))))?;
                        prop_assert!(r.verified, "order {} depth {:?}: {:?}\n{}", o.join(","), capacity, r.groups[0].mismatch, src);
                        RUNS.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("no legal dataflow order"), "{}\n{}", msg, src);
                NO_ORDER.fetch_add(1, Ordering::Relaxed);
                if std::env::var("FF_DEBUG").is_ok() { eprintln!("NOORDER {}", msg.lines().next().unwrap_or("")); }
            }
        }
    }
}

/// Guards against the property test silently doing nothing (e.g. every case without an order).
/// The property itself runs inside this test so that the counters are its own.
#[test]
fn differential_runs_many_orders() {
    differential_property();
    let runs = RUNS.load(Ordering::Relaxed);
    let none = NO_ORDER.load(Ordering::Relaxed);
    eprintln!("differential: {runs} verified simulations, {none} cases without a legal order");
    assert!(runs >= 1200, "only {runs} simulations ran");
}
