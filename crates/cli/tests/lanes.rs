//! Parallel lanes end to end. Property: random chains of statements (element-wise ops,
//! products, row reductions, softmax, layer norm; dense or sparse operands) under random par
//! factors at random levels give exactly the outputs of the unparallelized graph, and verify,
//! at every fusion granularity and with finite FIFOs. Bad `--par` requests and `par` lines are
//! one-line errors with exit code 2.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use fuseflow::{compile_groups, ParRequest, RunConfig};
use fuseflow_compiler::par::ParError;
use fuseflow_compiler::{CompileError, Fusion};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

static RUNS: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone)]
enum Step {
    Mul,
    Add,
    MatMul(usize),
    Relu,
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
        Just(Step::ScaleRow),
        Just(Step::RowSumSub),
        Just(Step::Softmax),
        Just(Step::MaskedSoftmax),
        Just(Step::LayerNorm),
    ]
}

/// A chain of statements over a batch index `b` (so that there are three levels to split).
fn program(rows: usize, cols: usize, steps: &[Step], sparse: &[bool], density: f64) -> String {
    let f = |k: usize| if sparse[k % sparse.len()] { "(dense, compressed, compressed)" } else { "dense" };
    let mut decls = format!("input A[2, {rows}, {cols}] {} = random(density={density})\n", f(0));
    let mut stmts = String::new();
    let mut prev = "A".to_string();
    let mut c = cols;
    for (k, s) in steps.iter().enumerate() {
        let t = format!("T{k}");
        let role = if k + 1 == steps.len() { "output" } else { "temp" };
        let stmt = match s {
            Step::Mul | Step::Add => {
                decls.push_str(&format!("input B{k}[2, {rows}, {c}] {} = random(density={density})\n", f(k + 1)));
                let op = if matches!(s, Step::Mul) { "*" } else { "+" };
                format!("{t}(b,i,j) = {prev}(b,i,j) {op} B{k}(b,i,j)")
            }
            Step::MatMul(n) => {
                decls.push_str(&format!(
                    "input B{k}[{c}, {n}] {} = random(density={density})\n",
                    if sparse[(k + 1) % sparse.len()] { "dcsr" } else { "dense" }
                ));
                c = *n;
                format!("{t}(b,i,j) = {prev}(b,i,k) * B{k}(k,j)")
            }
            Step::Relu => format!("{t}(b,i,j) = relu({prev}(b,i,j) - 0.5)"),
            Step::ScaleRow => {
                decls.push_str(&format!("input s{k}[{rows}] dense = random(density=1)\n"));
                format!("{t}(b,i,j) = {prev}(b,i,j) * s{k}(i)")
            }
            Step::RowSumSub => format!("{t}(b,i,j) = {prev}(b,i,j) - sum(m, {prev}(b,i,m))"),
            Step::Softmax => format!("{t}(b,i,j) = softmax(j, {prev}(b,i,j))"),
            Step::MaskedSoftmax => format!("{t}(b,i,j) = masked_softmax(j, {prev}(b,i,j))"),
            Step::LayerNorm => format!("{t}(b,i,j) = layernorm(j, {prev}(b,i,j))"),
        };
        decls.push_str(&format!("{role} {t}[2, {rows}, {c}] {}\n", f(k + 1)));
        stmts.push_str(&stmt);
        stmts.push('\n');
        prev = t;
    }
    decls + &stmts
}

fn requests(pars: &[(usize, u32)], names: &[&str]) -> Vec<ParRequest> {
    let mut v: Vec<ParRequest> = Vec::new();
    for &(k, lanes) in pars {
        let index = names[k % names.len()].to_string();
        if !v.iter().any(|r| r.index == index) {
            v.push(ParRequest { group: None, index, lanes, origin: "--par".into() });
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        max_global_rejects: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    fn lanes_property(
        rows in 1usize..5,
        cols in 1usize..5,
        steps in proptest::collection::vec(step(), 1..4),
        sparse in proptest::collection::vec(any::<bool>(), 1..5),
        density in prop_oneof![Just(0.0), Just(0.4), Just(1.0)],
        pars in proptest::collection::vec((0usize..8, 1u32..6), 1..3),
        depth in 1usize..5,
        seed in any::<u64>(),
    ) {
        let builtins = steps.iter().filter(|s| matches!(s, Step::Softmax | Step::MaskedSoftmax | Step::LayerNorm)).count();
        prop_assume!(builtins <= 1);
        let src = program(rows, cols, &steps, &sparse, density);
        let p = parse(&src);
        // Levels: the batch, the rows, the columns, and the reduced indices of products and
        // row reductions (k, m), wherever they are iterated.
        let par = requests(&pars, &["b", "i", "j", "b", "i", "j", "k", "m"]);
        let iterated = |r: &ParRequest| src.contains(&format!(",{})", r.index)) || src.contains(&format!("({},", r.index)) || src.contains(&format!(",{},", r.index));
        let par: Vec<ParRequest> = par.into_iter().filter(iterated).collect();
        prop_assume!(!par.is_empty());
        let bounded = fuseflow_sim::SimConfig { channel_capacity: Some(depth), ..Default::default() };
        for (fusion, sim) in [
            (Fusion::Full, None),
            (Fusion::Full, Some(bounded.clone())),
            (Fusion::Unfused, None),
        ] {
            let what = format!("{fusion:?} {par:?} depth {:?}", sim.as_ref().map(|s| s.channel_capacity));
            let base = RunConfig { fusion: fusion.clone(), seed, sim: sim.clone().unwrap_or_default(), ..Default::default() };
            let lanes = RunConfig { par: par.clone(), ..base.clone() };
            // Verified against the reference...
            let r = match fuseflow::run(&p, Path::new("."), &lanes) {
                Ok(r) => r,
                // A shape the transformation refuses (two co-iterations of the index that meet
                // below it): a typed one-line error, counted below.
                Err(fuseflow::DriverError::Compile(CompileError::Par { error: ParError::Unsupported { .. }, .. })) => {
                    REFUSED.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("{what}: {e}\n{src}"))),
            };
            prop_assert!(r.verified, "{}: {:?}\n{}", what, r.groups.iter().map(|g| g.mismatch.clone()).collect::<Vec<_>>(), src);
            // ...and identical, tensor for tensor, to the graph without lanes (one group: its
            // inputs are the program's).
            if fusion == Fusion::Full {
                let inputs = fuseflow_ir::load_inputs(&p, Path::new("."), seed).unwrap();
                let one = &compile_groups(&p, &base).unwrap()[0].graph;
                let many = &compile_groups(&p, &lanes).unwrap()[0].graph;
                let cfg = sim.unwrap_or_default();
                let a = fuseflow_sim::simulate(one, &inputs, &cfg).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let b = fuseflow_sim::simulate(many, &inputs, &cfg).map_err(|e| TestCaseError::fail(format!("{what}: {e}\n{src}")))?;
                prop_assert_eq!(a.outputs, b.outputs, "{}\n{}", what, src);
            }
            RUNS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn parallel_lanes_give_the_outputs_of_one_lane() {
    lanes_property();
    let (runs, refused) = (RUNS.load(Ordering::Relaxed), REFUSED.load(Ordering::Relaxed));
    eprintln!("parallel lanes: {runs} verified runs, {refused} cases refused");
    assert!(runs >= 100, "only {runs} runs");
    assert!(refused * 10 <= runs, "{refused} cases refused against {runs} runs");
}

/// The acceptance kernel at a tiny scale: lanes at the outer and second level, alone and
/// together, verify, and more lanes take fewer cycles.
#[test]
fn attention_lanes_verify_and_scale() {
    let p = fuseflow_ir::load_with(
        &examples_dir().join("bigbird_attention.ff"),
        &fuseflow_ir::Overrides {
            preset: None,
            params: BTreeMap::from([("S".into(), 16), ("DH".into(), 4), ("B".into(), 4), ("NH".into(), 4)]),
        },
    )
    .unwrap();
    let cycles = |par: &[(&str, u32)]| {
        let par = par
            .iter()
            .map(|(i, l)| ParRequest { group: None, index: i.to_string(), lanes: *l, origin: "test".into() })
            .collect();
        let cfg = RunConfig { fusion: Fusion::Full, par, ..Default::default() };
        let r = fuseflow::run(&p, &examples_dir(), &cfg).unwrap();
        assert!(r.verified, "{:?}", r.reason);
        r.cycles
    };
    let one = cycles(&[]);
    let h4 = cycles(&[("h", 4)]);
    let i4 = cycles(&[("i", 4)]);
    let both = cycles(&[("h", 4), ("i", 4)]);
    assert!(h4 < one && i4 < one && both < h4.min(i4), "1: {one}, h=4: {h4}, i=4: {i4}, 4x4: {both}");
}

fn spmm() -> String {
    example_path("spmm_gustavson.ff")
}

/// One line on stderr, exit code 2, mentioning `what`.
#[track_caller]
fn refused(args: &[&str], what: &str) {
    fails_with(args, &[what]);
}

#[test]
fn bad_par_flags_are_one_line_errors() {
    let f = spmm();
    refused(&["run", &f, "--par", "i=0"], "i=0: the lane count must be at least 1");
    refused(&["run", &f, "--par", "i=x"], "lane count x is not an integer");
    refused(&["run", &f, "--par", "q=2"], "--par q=2: no group iterates index q");
    refused(&["run", &f, "--par", "3:i=2"], "--par 3:i=2: group 3 does not exist");
    refused(&["graph", &f, "--par", "i=0"], "at least 1");
}

#[test]
fn bad_par_lines_name_file_line_and_column() {
    let dir = tmpdir("par-lines");
    let src = std::fs::read_to_string(spmm()).unwrap();
    let lines = src.lines().count() + 1;
    let with = |name: &str, line: &str| write(&dir, name, &format!("{src}{line}\n"));
    let zero = with("zero.ff", "par i=0");
    refused(&["run", &zero], &format!("zero.ff:{lines}:7: par: i=0: the lane count must be at least 1"));
    let unknown = with("unknown.ff", "par q=2");
    refused(&["run", &unknown], &format!("unknown.ff:{lines}:5: par: index q is not an index of any statement"));
    refused(&["run", &with("twice.ff", "par i=2, i=3")], "par: index i is given twice");
    // A good line runs in lanes, and --par wins over it.
    let good = with("good.ff", "par i=3");
    let (code, out, err) = cli(&["run", &good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("fork=2"), "{out}");
    let (code, out, err) = cli(&["run", &good, "--par", "i=1"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("fork="), "{out}");
}
