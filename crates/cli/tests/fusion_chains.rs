//! Property test: random chains of 2 to 5 statements, each consuming the previous result,
//! verify under unfused, fully fused and random partial fusion (split between expanded
//! statements, possibly inside a built-in, and between statements as written).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use fuseflow_compiler::Fusion;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone)]
enum Step {
    Mul,
    Add,
    MatMul(usize),
    Relu,
    BiasCol,
    ScaleRow,
    RowSumSub,
    Softmax,
    MaskedSoftmax,
    LayerNorm,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Mul),
        Just(Step::Add),
        (1usize..5).prop_map(Step::MatMul),
        Just(Step::Relu),
        Just(Step::BiasCol),
        Just(Step::ScaleRow),
        Just(Step::RowSumSub),
        Just(Step::Softmax),
        Just(Step::MaskedSoftmax),
        Just(Step::LayerNorm),
    ]
}

fn fmt(sparse: bool) -> &'static str {
    if sparse {
        "dcsr"
    } else {
        "dense"
    }
}

/// Builds the program text; returns it with the number of statements.
fn program(rows: usize, cols: usize, steps: &[Step], sparse: &[bool], density: f64) -> (String, usize) {
    let mut decls = format!("input A[{rows}, {cols}] {} = random(density={density})\n", fmt(sparse[0]));
    let mut stmts = String::new();
    let mut prev = "A".to_string();
    let mut c = cols;
    for (k, s) in steps.iter().enumerate() {
        let t = format!("T{k}");
        let role = if k + 1 == steps.len() { "output" } else { "temp" };
        let f = fmt(sparse[(k + 1) % sparse.len()]);
        let stmt = match s {
            Step::Mul => {
                decls.push_str(&format!("input B{k}[{rows}, {c}] {f} = random(density={density})\n"));
                format!("{t}(i,j) = {prev}(i,j) * B{k}(i,j)")
            }
            Step::Add => {
                decls.push_str(&format!("input B{k}[{rows}, {c}] {f} = random(density={density})\n"));
                format!("{t}(i,j) = {prev}(i,j) + B{k}(i,j)")
            }
            Step::MatMul(n) => {
                decls.push_str(&format!("input B{k}[{c}, {n}] {f} = random(density={density})\n"));
                c = *n;
                format!("{t}(i,j) = {prev}(i,k) * B{k}(k,j)")
            }
            Step::Relu => format!("{t}(i,j) = relu({prev}(i,j) - 0.5)"),
            Step::BiasCol => {
                decls.push_str(&format!("input b{k}[{c}] dense = random(density=1)\n"));
                format!("{t}(i,j) = {prev}(i,j) + b{k}(j)")
            }
            Step::ScaleRow => {
                decls.push_str(&format!("input s{k}[{rows}] dense = random(density=1)\n"));
                format!("{t}(i,j) = {prev}(i,j) * s{k}(i)")
            }
            Step::RowSumSub => format!("{t}(i,j) = {prev}(i,j) - sum(m, {prev}(i,m))"),
            Step::Softmax => format!("{t}(i,j) = softmax(j, {prev}(i,j))"),
            Step::MaskedSoftmax => format!("{t}(i,j) = masked_softmax(j, {prev}(i,j))"),
            Step::LayerNorm => format!("{t}(i,j) = layernorm(j, {prev}(i,j))"),
        };
        decls.push_str(&format!("{role} {t}[{rows}, {c}] {f}\n"));
        stmts.push_str(&stmt);
        stmts.push('\n');
        prev = t;
    }
    (decls + &stmts, steps.len())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 120,
        max_global_rejects: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    fn chains_property(
        rows in 1usize..6,
        cols in 1usize..6,
        steps in proptest::collection::vec(step(), 2..6),
        sparse in proptest::collection::vec(any::<bool>(), 1..7),
        density in prop_oneof![Just(0.0), Just(0.3), Just(0.7), Just(1.0)],
        cut in any::<proptest::sample::Index>(),
        depth in 1usize..5,
        seed in any::<u64>(),
    ) {
        // Built-ins read their operand two or three times; without row sharing full fusion
        // iterates each use on its own: keep at most two per chain so the fused graph stays
        // small.
        let builtins = steps.iter().filter(|s| matches!(s, Step::Softmax | Step::MaskedSoftmax | Step::LayerNorm)).count();
        prop_assume!(builtins <= 2);
        let (src, _) = program(rows, cols, &steps, &sparse, density);
        let p = fuseflow_ir::check(fuseflow_ir::parse(&src, "chain.ff", &BTreeMap::new()).unwrap()).unwrap();
        // A split anywhere in the expanded statements (possibly inside a built-in), and one
        // between statements as written (what `--fusion A-B,C-D` can express).
        let n = p.stmts.len();
        let split = 1 + cut.index(n - 1);
        let partial = Fusion::Expanded(vec![(0..split).collect(), (split..n).collect()]);
        let users = p.user_stmts.len();
        let user_split = 1 + cut.index(users - 1);
        let user_partial = Fusion::Groups(vec![(0..user_split).collect(), (user_split..users).collect()]);
        // Unbounded channels, and FIFOs of a random depth from 1 to 4 with FIFO sizing, with
        // and without row sharing: sizing must prevent every deadlock, and no configuration
        // may change a result.
        let bounded = fuseflow_sim::SimConfig { channel_capacity: Some(depth), ..Default::default() };
        let runs = [
            (Fusion::Unfused, None, true),
            (Fusion::Full, None, true),
            (Fusion::Full, Some(bounded.clone()), true),
            (Fusion::Full, Some(bounded.clone()), false),
            (partial.clone(), None, true),
            (partial, Some(bounded), true),
            (user_partial, None, true),
        ];
        for (fusion, sim, row_sharing) in runs {
            let bounded = sim.is_some();
            let mut cfg = fuseflow::RunConfig { fusion: fusion.clone(), seed, sim: sim.unwrap_or_default(), ..Default::default() };
            cfg.lower.row_sharing = row_sharing;
            let what = format!("{fusion:?} depth {} row sharing {row_sharing}", if bounded { depth.to_string() } else { "unbounded".into() });
            let r = fuseflow::run(&p, std::path::Path::new("."), &cfg)
                .map_err(|e| TestCaseError::fail(format!("{what}: {e}\n{src}")))?;
            prop_assert!(r.verified, "{}: {:?}\n{}", what, r.groups.iter().map(|g| g.mismatch.clone()).collect::<Vec<_>>(), src);
            RUNS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn fused_chains_verify() {
    chains_property();
    let runs = RUNS.load(Ordering::Relaxed);
    eprintln!("fusion chains: {runs} verified runs");
    assert!(runs >= 525, "only {runs} runs");
}
