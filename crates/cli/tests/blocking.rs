//! Sparsity blocking end to end: blocked runs verify against the reference on the un-blocked
//! values exactly as scalar runs do (random programs × block sizes), the blocked attention
//! kernel's graph, and bad input (one line, exit code 2).

mod common;

use common::*;
use fuseflow::{run, RunConfig};
use fuseflow_compiler::Fusion;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Runs the program blocked by `block` (or scalar) and returns the report, asserting nothing.
fn run_blocked(src: &str, block: Option<usize>, fusion: Fusion, seed: u64) -> fuseflow::RunReport {
    let p = parse(src);
    let cfg = RunConfig { block, fusion, seed, ..RunConfig::default() };
    run(&p, std::path::Path::new("."), &cfg).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

#[test]
fn bigbird_attention_blocked_verifies_like_scalar() {
    let prog = example_path("bigbird_attention.ff");
    for (b, fusion) in [("8", "full"), ("16", "full"), ("8", "unfused"), ("16", "partial")] {
        for hw in ["ideal", "rda"] {
            let args = ["run", &prog, "--fusion", fusion, "--param", &format!("B={b}"), "--hw", hw, "--json"];
            let (code, out, err) = cli(&args);
            assert_eq!(code, 0, "scalar {args:?}: {err}");
            let scalar = json(&out);
            let mut blocked_args = args.to_vec();
            blocked_args.extend(["--block", b]);
            let (code, out, err) = cli(&blocked_args);
            assert_eq!(code, 0, "blocked {blocked_args:?}: {err}");
            let blocked = json(&out);
            assert_eq!(blocked["verified"], true);
            let groups = blocked["groups"].as_array().unwrap();
            // The mask's groups run blocked; Q·Kᵀ alone (unfused) has no sparse operand.
            assert!(groups.iter().any(|g| g["block"] == b.parse::<u64>().unwrap()), "{out}");
            if fusion != "unfused" {
                let (s, k) = (scalar["cycles"].as_u64().unwrap(), blocked["cycles"].as_u64().unwrap());
                assert!(k * 4 < s, "{fusion} B={b} {hw}: blocked {k} cycles vs scalar {s}");
                assert!(blocked["tokens"].as_u64() < scalar["tokens"].as_u64());
            }
        }
    }
}

#[test]
fn declared_blocks_run_blocked_without_a_flag() {
    let src = "input A[8, 12] bdcsr(4) = random(density=0.3)\ninput B[12, 8] dense = random(density=1)\n\
               output X[8, 8] dense\nX(i,j) = A(i,k) * B(k,j)\n";
    let r = run_blocked(src, None, Fusion::Unfused, 3);
    assert!(r.verified, "{:?}", r.reason);
    assert_eq!(r.groups[0].block, Some(4));
    let src = "input A[8, 12] csr block(4, 4) = random(density=0.3)\noutput y[8] dense\ny(i) = A(i,k) * 2\n";
    let r = run_blocked(src, None, Fusion::Unfused, 3);
    assert!(r.verified && r.groups[0].block == Some(4), "{:?}", r.reason);
}

#[test]
fn blocked_graph_of_the_attention_kernel() {
    let (code, out, err) =
        cli(&["graph", &example_path("bigbird_attention.ff"), "--fusion", "full", "--block", "8", "--stmt", "0"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn bad_blockings_are_one_line_errors() {
    let bigbird = example_path("bigbird_attention.ff");
    fails_with(
        &["run", &bigbird, "--fusion", "full", "--block", "32"],
        &["bigbird_attention.ff:13:1", "block size 32 does not divide dimension 2 of K (size 16)"],
    );
    fails_with(&["run", &bigbird, "--block", "1"], &["block size 1: a block size must be at least 2"]);
    fails_with(&["run", &bigbird, "--block", "x"], &["block size `x`"]);
    fails_with(&["run", &bigbird, "--fusion", "full", "--block", "3:8"], &["--block 3:8: group 3 does not exist"]);
    fails_with(&["run", &bigbird, "--block", "0:8"], &["--block 0:8: group 0", "has no sparse operand to block"]);
    fails_with(
        &["compile", &bigbird, "--fusion", "full", "--stmt", "0", "--emit", "comal", "--out", "/tmp/x", "--block", "8"],
        &["blocked graphs cannot be exported to Comal"],
    );
    let dir = tmpdir("blocking");
    // A blocked dimension above an unblocked one in storage: tiles could not be leaves.
    let p = write(
        &dir,
        "order.ff",
        "input A[2, 8, 8] (dense, compressed, compressed) order(1,0,2) = random(density=0.5)\n\
         output X[2, 8, 8] dense\nX(b,i,j) = A(b,i,j) * 2\n",
    );
    fails_with(
        &["run", &p, "--block", "4"],
        &["order.ff:1:1", "A ((dense, compressed, compressed) order(1,0,2))", "cannot be blocked", "innermost"],
    );
    let p = write(
        &dir,
        "decl.ff",
        "input A[16, 16] bcsr(5) = random(density=0.5)\noutput X[16, 16] dense\nX(i,j) = A(i,j)\n",
    );
    fails_with(
        &["run", &p],
        &["decl.ff:1:7", "A cannot be blocked: block size 5 does not divide dimension 0 (size 16)"],
    );
    let p = write(
        &dir,
        "rect.ff",
        "input A[16, 16] csr block(4, 8) = random(density=0.5)\noutput X[16, 16] dense\nX(i,j) = A(i,j)\n",
    );
    fails_with(&["run", &p], &["rect.ff:1:", "only square blocks"]);
    let p = write(
        &dir,
        "clash.ff",
        "input A[16, 16] bcsr(4) = random(density=0.5)\noutput X[16, 16] dense\nX(i,j) = A(i,j)\n",
    );
    fails_with(
        &["run", &p, "--block", "8"],
        &["clash.ff:1:1", "--block 8: A is declared with block(4) and cannot be blocked by 8"],
    );
}

/// Programs with a sparse operand `A` (the mask) and dense or sparse others.
const PROGRAMS: &[&str] = &[
    "X(i,j) = A(i,k) * B(k,j)",
    "X(i,j) = A(i,j) * B(i,j)",
    "X(i,j) = A(i,j) + B(i,j)",
    "X(i,j) = relu(A(i,j) - B(i,j))",
    "X(i,j) = exp(A(i,j))",
    "X(i,j) = A(i,j) * B(i,k) * C(k,j)",
    "X(i,j) = expsubnz(A(i,j), maxnz(k, B(i,k)))",
    "X(i,j) = A(i,j) / C(i,j)",
    "X(i,j) = A(i,j) - maxr(k, B(i,k))",
    "X(i,j) = A(i,j) * B(i,j) / (A(i,j) * B(i,j) + 2)",
];

#[derive(Debug, Clone)]
struct Case {
    program: usize,
    block: usize,
    /// Blocks per dimension of i, j, k.
    blocks: [usize; 3],
    a_format: &'static str,
    other_format: &'static str,
    density: f64,
    fusion: bool,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..PROGRAMS.len(),
        2usize..5,
        [1usize..4, 1usize..4, 1usize..4],
        // Row-major formats throughout, so that every program has a legal dataflow order.
        prop_oneof![Just("csr"), Just("dcsr")],
        prop_oneof![Just("dense"), Just("csr"), Just("dcsr")],
        prop_oneof![Just(0.0), Just(0.1), Just(0.4), Just(1.0)],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(program, block, blocks, a_format, other_format, density, fusion, seed)| Case {
            program,
            block,
            blocks,
            a_format,
            other_format,
            density,
            fusion,
            seed,
        })
}

fn program_text(c: &Case) -> String {
    let [i, j, k] = c.blocks.map(|n| n * c.block);
    let stmt = PROGRAMS[c.program];
    let mut s = String::new();
    let shape = |x: char| match x {
        'i' => i,
        'j' => j,
        _ => k,
    };
    // A's indices from the statement (its first access).
    let a_idx: Vec<char> = stmt[stmt.find("A(").unwrap() + 2..].chars().take(3).filter(|c| c.is_alphabetic()).collect();
    s.push_str(&format!(
        "input A[{}, {}] {} = random(density={})\n",
        shape(a_idx[0]),
        shape(a_idx[1]),
        c.a_format,
        c.density
    ));
    for (t, idx) in [("B", "B("), ("C", "C(")] {
        if let Some(p) = stmt.find(idx) {
            let d: Vec<char> = stmt[p + 2..].chars().take(3).filter(|c| c.is_alphabetic()).collect();
            s.push_str(&format!(
                "input {t}[{}, {}] {} = random(density=0.6)\n",
                shape(d[0]),
                shape(d[1]),
                c.other_format
            ));
        }
    }
    s.push_str(&format!("output X[{i}, {j}] dense\n{stmt}\n"));
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// A blocked run verifies exactly when the scalar run of the same program does (here: both
    /// always), for any block size, format, density and fusion.
    #[test]
    fn blocked_runs_verify_like_scalar_runs(c in case()) {
        let src = program_text(&c);
        let fusion = if c.fusion { Fusion::Full } else { Fusion::Unfused };
        let scalar = run_blocked(&src, None, fusion.clone(), c.seed);
        let blocked = run_blocked(&src, Some(c.block), fusion, c.seed);
        prop_assert!(scalar.verified, "scalar: {:?}\n{src}", scalar.reason);
        prop_assert!(blocked.verified, "blocked by {}: {:?}\n{src}", c.block, blocked.reason);
        prop_assert!(blocked.groups.iter().any(|g| g.block == Some(c.block)), "nothing blocked\n{src}");
    }
}
