//! Fusion groups that are not ranges of the statement list: `--fusion 0-1+3,2,4-13` where the
//! dependence DAG allows it, one-line errors where it does not, `fuseflow explore --partitions
//! convex`, and a property test of the enumeration against the definition and the compiler's
//! `plan` on random programs.

mod common;

use std::collections::BTreeSet;

use common::{cli, example_path, fails_with, json, tmpdir, write};
use fuseflow_compiler::convex::{groups_text, Dag};
use fuseflow_compiler::Fusion;
use proptest::prelude::*;

/// `(label, statements)` of every group of a `run --json`, in run order.
fn groups(v: &serde_json::Value) -> Vec<(String, Vec<u64>)> {
    common::run_groups(v).into_iter().map(|(s, l)| (l, s)).collect()
}

/// GPT-3's Q, K and V projections (statements 1-3) read only the layer norm (0): {LN1, Q, V}
/// with K alone is legal though no range expresses it, runs, and verifies; written in any
/// group order it is the same plan; without verification the groups run in the DAG's order
/// and compute the same cycles.
#[test]
fn a_non_contiguous_gpt3_fusion_runs_and_verifies() {
    let p = example_path("gpt3_decoder.ff");
    let (code, out, err) = cli(&["run", &p, "--fusion", "0-1+3,2,4-13", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["verified"], true, "{out}");
    let g = groups(&v);
    let labels: Vec<&str> = g.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(labels, ["0-1+3", "2", "4-13"]);
    // The fused group writes L1 too: statement 2 (K, in another group) reads it; and Q and
    // V, which the last group reads.
    assert_eq!(v["groups"][0]["outputs"], serde_json::json!(["L1", "Qh", "Vh"]));
    // Written in another order: the same groups, run in the DAG's order.
    let (code, again, err) = cli(&["run", &p, "--fusion", "2,4-13,3+0-1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let w = json(&again);
    assert_eq!(groups(&w), g);
    assert_eq!(w["cycles"], v["cycles"]);
    // Without the reference, each group reads what earlier groups simulated: K's group needs
    // L1 from the first, so only the DAG's order can run.
    let (code, unchecked, err) = cli(&["run", &p, "--fusion", "4-13,2,0-1+3", "--json", "--no-verify"]);
    assert_eq!(code, 1, "run exits 0 only when verified: {err}");
    assert!(err.is_empty() || !err.contains("error"), "{err}");
    let u = json(&unchecked);
    assert_eq!(groups(&u), g);
    assert_eq!(u["cycles"], v["cycles"], "dense intermediates: the same cycles chained or not");
    // And the fusion the issue names: {LN1, Q, K} with V alone.
    let (code, out, err) = cli(&["run", &p, "--fusion", "0-2,3,4-13", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["verified"], true);
}

/// The same groups on a program's `fuse` line (`--fusion partial`): the statement the line
/// leaves out runs alone, the groups run in the DAG's order, and the run equals the
/// `--fusion` one; a group the DAG forbids is refused naming the `fuse` line.
#[test]
fn a_fuse_line_takes_groups_that_are_not_ranges() {
    let src = std::fs::read_to_string(example_path("gpt3_decoder.ff")).unwrap();
    assert!(src.contains("\nfuse 0-3, 4-7, 8-13\n"));
    let dir = tmpdir("convex-fuse-line");
    let p = write(&dir, "d.ff", &src.replace("\nfuse 0-3, 4-7, 8-13\n", "\nfuse 4-13, 0-1+3\n"));
    let (code, out, err) = cli(&["run", &p, "--fusion", "partial", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["verified"], true, "{out}");
    let (code, explicit, err) = cli(&["run", &example_path("gpt3_decoder.ff"), "--fusion", "0-1+3,2,4-13", "--json"]);
    assert_eq!(code, 0, "{err}");
    let w = json(&explicit);
    assert_eq!(groups(&v), groups(&w));
    assert_eq!(v["cycles"], w["cycles"]);
    let line = src.lines().position(|l| l == "fuse 0-3, 4-7, 8-13").unwrap() + 1;
    let bad = write(&dir, "bad.ff", &src.replace("\nfuse 0-3, 4-7, 8-13\n", "\nfuse 0+4, 1-3\n"));
    fails_with(&["run", &bad, "--fusion", "partial"], &[&format!("bad.ff:{line}:6: fuse: group is not contiguous")]);
}

/// An illegal group is refused in one line naming it and the path that leaves and re-enters
/// it; groups that are each convex but need each other are refused naming the cycle.
#[test]
fn illegal_fusions_fail_in_one_line() {
    let p = example_path("gpt3_decoder.ff");
    fails_with(
        &["run", &p, "--fusion", "0+4,1-3,5-13"],
        &["--fusion 0+4,1-3,5-13:", "group 0+4 is not convex", "0 (L1) → 1 (Qh) → 4 (Sc)", "group 1-3"],
    );
    fails_with(&["run", &p, "--fusion", "0-3,3-13"], &["statement 3 is in two groups (0-3 and 3-13)"]);
    fails_with(&["run", &p, "--fusion", "0-2+4,5-13"], &["statement 3 is in none"]);
    fails_with(&["run", &p, "--fusion", "0-2+x"], &["invalid fusion group \"0-2+x\""]);
    // Two independent chains, crossed: {0, 3} and {1, 2} are each convex, but each needs the
    // other to run first.
    let d = tmpdir("convex-cycle");
    let chains = write(&d, "chains.ff", CHAINS);
    fails_with(
        &["run", &chains, "--fusion", "0+3,1-2,4"],
        &["--fusion 0+3,1-2,4:", "groups", "form a cycle", "1 (B1) reads 0 (A1)", "3 (B2) reads 2 (A2)"],
    );
    fails_with(&["estimate", &chains, "--fusion", "0+3,1-2,4"], &["--fusion: partition 0+3,1-2,4:", "form a cycle"]);
}

/// Two independent chains of two statements, each read by a final join.
const CHAINS: &str = "\
input  X[6] dense = random(density=1)
input  Z[6] dense = random(density=1)
output A1[6] dense
output B1[6] dense
output A2[6] dense
output B2[6] dense
output Y[6] dense
A1(i) = X(i) * 2
B1(i) = A1(i) + 1
A2(i) = exp(Z(i))
B2(i) = A2(i) * Z(i)
Y(i)  = B1(i) + B2(i)
";

/// Every partition of the two-chain program that the dependences allow (0 → 1, 2 → 3,
/// {1, 3} → 4): a brute force over the 52 set partitions of 5 statements, written separately
/// from the enumeration (transitive closure of each quotient graph, legal when no group
/// reaches itself), finds 33 legal ones; the 16 partitions into ranges are all legal, since
/// program order is a topological order.
#[test]
fn explore_sweeps_every_convex_partition_identically_with_one_or_two_jobs() {
    let d = tmpdir("convex-explore");
    let prog = write(&d, "chains.ff", CHAINS);
    let dag = Dag::of_program(&common::parse(CHAINS));
    let all = dag.convex_partitions(usize::MAX).unwrap();
    assert_eq!(all.partitions.len(), 33);
    let mut csv = Vec::new();
    for jobs in ["1", "2"] {
        let out = d.join(format!("out-{jobs}"));
        let (code, stdout, err) =
            cli(&["explore", &prog, "--partitions", "convex", "--out", &out.display().to_string(), "--jobs", jobs]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("partitions   33 (16 contiguous)\n"), "{stdout}");
        let points: Vec<serde_json::Value> = std::fs::read_to_string(out.join("points.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(points.len(), 33);
        assert!(points.iter().all(|p| p["status"] == "verified"), "every point verifies");
        let fusions: BTreeSet<String> = points.iter().map(|p| p["fusion"].as_str().unwrap().to_string()).collect();
        let expected: BTreeSet<String> = all.partitions.iter().map(|p| groups_text(p)).collect();
        assert_eq!(fusions, expected);
        // Both heads, then both tails; one branch's head run after the other's (2 before 0-1+3).
        assert!(fusions.contains("0+2,1+3,4") && fusions.contains("2,0-1+3,4"), "{fusions:?}");
        csv.push(std::fs::read_to_string(out.join("results.csv")).unwrap());
    }
    assert_eq!(csv[0], csv[1], "--jobs 1 and 2 give the same results");
    // The limit stops the enumeration and says so; the points are the first ones.
    let out = d.join("limited");
    let (code, stdout, err) = cli(&[
        "explore",
        &prog,
        "--partitions",
        "convex",
        "--max-partitions",
        "5",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains(
            "partitions   5 (4 contiguous); stopped at max_partitions = 5: the program has more convex partitions"
        ),
        "{stdout}"
    );
    fails_with(
        &["explore", &prog, "--partitions", "convex", "--max-partitions", "0"],
        &["--max-partitions", "impossible"],
    );
    fails_with(&["explore", &prog, "--partitions", "0+4,1-3"], &["--partitions", "0+4", "not convex"]);
}

/// A random program of up to 6 statements over vectors: statement k reads `X` and the
/// outputs of the earlier statements `reads[k]` names (indices below k).
fn program(reads: &[Vec<usize>]) -> String {
    let mut s = String::from("input X[4] dense = random(density=1)\n");
    for k in 0..reads.len() {
        s += &format!("output T{k}[4] dense\n");
    }
    for (k, r) in reads.iter().enumerate() {
        let mut rhs = vec!["X(i) * 0.5".to_string()];
        rhs.extend(r.iter().map(|j| format!("T{j}(i)")));
        s += &format!("T{k}(i) = {}\n", rhs.join(" + "));
    }
    s
}

/// Every set partition of `0..n` (restricted growth strings).
fn set_partitions(n: usize) -> Vec<Vec<Vec<usize>>> {
    fn go(s: usize, n: usize, a: &mut Vec<Vec<usize>>, out: &mut Vec<Vec<Vec<usize>>>) {
        if s == n {
            out.push(a.clone());
            return;
        }
        for g in 0..=a.len() {
            if g == a.len() {
                a.push(vec![s]);
                go(s + 1, n, a, out);
                a.pop();
            } else {
                a[g].push(s);
                go(s + 1, n, a, out);
                a[g].pop();
            }
        }
    }
    let mut out = Vec::new();
    go(0, n, &mut Vec::new(), &mut out);
    out
}

fn reads_strategy() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..=6).prop_flat_map(|n| {
        (0..n).map(|k| proptest::sample::subsequence((0..k).collect::<Vec<_>>(), 0..=k)).collect::<Vec<_>>()
    })
}

proptest! {
    /// On random programs: the DAG is what the statements read; the enumerated partitions are
    /// distinct, each accepted by the compiler's `plan`, and exactly the set partitions `plan`
    /// accepts (so every contiguous partition is among them); and one of them, picked at
    /// random, runs and verifies.
    #[test]
    fn enumerated_partitions_are_exactly_the_legal_ones(reads in reads_strategy(), pick in any::<usize>()) {
        let text = program(&reads);
        let p = common::parse(&text);
        let dag = Dag::of_program(&p);
        for (k, r) in reads.iter().enumerate() {
            prop_assert_eq!(dag.preds(k), r.as_slice());
        }
        let n = reads.len();
        let found = dag.convex_partitions(usize::MAX).unwrap();
        prop_assert_eq!(found.stopped, None);
        let texts: Vec<String> = found.partitions.iter().map(|g| groups_text(g)).collect();
        let distinct: BTreeSet<&String> = texts.iter().collect();
        prop_assert_eq!(distinct.len(), texts.len(), "distinct");
        for g in &found.partitions {
            let fusion = Fusion::Groups(g.clone());
            let plan = fuseflow_compiler::plan(&p, &fusion);
            prop_assert!(plan.is_ok(), "{}: {:?}", groups_text(g), plan.err());
            prop_assert_eq!(plan.unwrap(), g.clone(), "the enumeration's groups are plan's, in its order");
        }
        let legal: BTreeSet<String> = set_partitions(n)
            .into_iter()
            .filter_map(|g| fuseflow_compiler::plan(&p, &Fusion::Groups(g)).ok())
            .map(|g| groups_text(&g))
            .collect();
        prop_assert_eq!(distinct.into_iter().cloned().collect::<BTreeSet<_>>(), legal);
        for cuts in 0..1u64 << (n - 1) {
            let mut groups = vec![vec![0]];
            for s in 1..n {
                if cuts >> (s - 1) & 1 == 1 {
                    groups.push(Vec::new());
                }
                groups.last_mut().unwrap().push(s);
            }
            prop_assert!(texts.contains(&groups_text(&groups)), "contiguous {} is enumerated", groups_text(&groups));
        }
        let chosen = &found.partitions[pick % found.partitions.len()];
        let cfg = fuseflow::RunConfig { fusion: Fusion::Groups(chosen.clone()), ..Default::default() };
        let r = fuseflow::run(&p, std::path::Path::new("."), &cfg);
        prop_assert!(r.as_ref().is_ok_and(|r| r.verified), "{}: {:?}", groups_text(chosen), r.err());
    }
}
