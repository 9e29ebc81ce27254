//! Statement numbering as users see it: a built-in line (`softmax`, `masked_softmax`,
//! `layernorm`) is one statement in `fuse` lines, `--fusion`, run reports (text and JSON),
//! `orders`, `graph --stmt` and `compile --stmt`; unfused, its steps show as `U.K`. Errors in
//! fusion plans name the `fuse` line or the `--fusion` flag, and `--order` for a fused group
//! takes the program's own index names.

mod common;

use common::{cli, example_path, fails_with, json, tmpdir, write};

/// Statement 0 is a matmul, 1 a softmax (four expanded statements), 2 a scale.
const PROGRAM: &str = "\
input  A[4, 6] dcsr = random(density=0.5)
input  B[6, 5] dense = random(density=1)
temp   T[4, 5] dense
temp   Y[4, 5] dense
output Z[4, 5] dense
T(i,j) = A(i,k) * B(k,j)
Y(i,j) = softmax(j, T(i,j))
Z(i,j) = Y(i,j) * 2
fuse 0-1
";

fn program(name: &str) -> String {
    write(&tmpdir(name), "n.ff", PROGRAM)
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = cli(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    json(&out)
}

#[test]
fn fuse_lines_and_fusion_flag_number_statements_alike() {
    let p = program("alike");
    let partial = run_json(&[&p, "--fusion", "partial"]);
    let explicit = run_json(&[&p, "--fusion", "0-1,2"]);
    let spaced = run_json(&[&p, "--fusion", "0-1, 2"]);
    let expected = vec![(vec![0, 1], "0-1".to_string()), (vec![2], "2".to_string())];
    assert_eq!(common::run_groups(&partial), expected);
    assert_eq!(common::run_groups(&explicit), expected);
    assert_eq!(common::run_groups(&spaced), expected);
    assert_eq!(partial["cycles"], explicit["cycles"], "the same groups");
    assert_eq!(explicit["fusion"], "0-1,2");
    // The softmax alone is one group (one graph), whole.
    let alone = run_json(&[&p, "--fusion", "0,1,2"]);
    assert_eq!(common::run_groups(&alone), vec![(vec![0], "0".into()), (vec![1], "1".into()), (vec![2], "2".into())]);
    assert_eq!(alone["groups"][1]["outputs"], serde_json::json!(["Y"]));
    // Unfused, every step of the softmax is a graph of its own, labelled U.K.
    let unfused = run_json(&[&p]);
    let labels: Vec<String> = common::run_groups(&unfused).into_iter().map(|(_, l)| l).collect();
    assert_eq!(labels, ["0", "1.0", "1.1", "1.2", "1.3", "2"]);
    let stmts: Vec<Vec<u64>> = common::run_groups(&unfused).into_iter().map(|(s, _)| s).collect();
    assert_eq!(stmts, [vec![0], vec![1], vec![1], vec![1], vec![1], vec![2]]);
    // The text report shows the same labels.
    let (code, out, err) = cli(&["run", &p, "--fusion", "partial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("group [0-1] -> Y ") && out.contains("group [2] -> Z "), "{out}");
    let (_, out, _) = cli(&["run", &p]);
    assert!(out.contains("group [1.2] -> Y__sum "), "{out}");
}

#[test]
fn fusion_plan_errors_name_the_flag_or_the_fuse_line() {
    let p = program("errors");
    for (fusion, needles) in [
        ("0-1", vec!["--fusion 0-1:", "cover statements 0-1", "has 3 (0-2)"]),
        ("0-3", vec!["--fusion 0-3:", "statement 3 does not exist"]),
        ("0+2,1", vec!["--fusion 0+2,1:", "group 0+2 is not convex", "path 0 (T) → 1 (Y) → 2 (Z)"]),
        ("0-1,1-2", vec!["--fusion 0-1,1-2:", "statement 1 is in two groups (0-1 and 1-2)"]),
    ] {
        let (code, _, err) = cli(&["run", &p, "--fusion", fusion]);
        assert_eq!(code, 2, "{fusion}: {err}");
        assert!(!err.contains(":0:0") && !err.contains("unsupported"), "{fusion}: {err}");
        for n in needles {
            assert!(err.contains(n), "{fusion}: {err:?} lacks {n:?}");
        }
        fails_with(&["run", &p, "--fusion", fusion], &["--fusion"]);
    }
    fails_with(&["run", &p, "--fusion", "0-x"], &["--fusion", "invalid fusion group"]);
    // `fuse` lines are checked in the same numbering and named by line and column.
    let d = tmpdir("fuse-line");
    let beyond = write(&d, "beyond.ff", &PROGRAM.replace("fuse 0-1", "fuse 0-1, 3"));
    fails_with(&["run", &beyond, "--fusion", "partial"], &["beyond.ff:9:11:", "statement 3 does not exist", "has 3"]);
    let twice = write(&d, "twice.ff", &PROGRAM.replace("fuse 0-1", "fuse 0-1, 1-2"));
    fails_with(&["run", &twice], &["twice.ff:9:11:", "statement 1", "two fusion groups"]);
}

#[test]
fn orders_graph_and_compile_use_the_same_numbers() {
    let p = program("commands");
    let (code, out, err) = cli(&["orders", &p]);
    assert_eq!(code, 0, "{err}");
    let heads: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(heads, ["stmt 0 T", "stmt 1.0 Y__max", "stmt 1.1 Y__exp", "stmt 1.2 Y__sum", "stmt 1.3 Y", "stmt 2 Z"]);
    let (code, out, err) = cli(&["orders", &p, "--fusion", "partial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("group 0 [0-1] Y: i,k,j") && out.contains("\ngroup 1 [2] Z: i,j"), "{out}");

    // Unfused, `--stmt` names a statement as written, or one step of a built-in.
    let (code, out, err) = cli(&["graph", &p, "--stmt", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input Y ") && out.contains("output Z "), "{out}");
    let (code, out, err) = cli(&["graph", &p, "--stmt", "1.2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("output Y__sum "), "{out}");
    fails_with(&["graph", &p, "--stmt", "1"], &["n.ff:7:1:", "softmax", "--stmt 1.0 to 1.3", "--fusion"]);
    fails_with(&["graph", &p, "--stmt", "1.4"], &["n.ff:7:1:", "1.0 to 1.3"]);
    fails_with(&["graph", &p, "--stmt", "0.1"], &["statement 0 is not a built-in"]);
    fails_with(&["graph", &p, "--stmt", "3"], &["statement 3 does not exist", "has 3"]);
    fails_with(&["graph", &p, "--stmt", "x"], &["--stmt x"]);
    // Under --fusion, `--stmt` is a group index and the graph is named in user numbering.
    let (code, out, err) = cli(&["graph", &p, "--fusion", "partial", "--stmt", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("graph group_0-1\n"), "{out}");
    fails_with(&["graph", &p, "--fusion", "partial", "--stmt", "1.0"], &["group index"]);

    let out_dir = tmpdir("compile-step");
    let (code, out, err) =
        cli(&["compile", &p, "--stmt", "1.1", "--emit", "comal", "--out", &out_dir.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("wrote "), "{out}");
    let (code, out, err) = cli(&[
        "compile",
        &p,
        "--fusion",
        "partial",
        "--stmt",
        "1",
        "--emit",
        "comal",
        "--out",
        &out_dir.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(group 1: statements 2,"), "{out}");
    fails_with(&["compile", &p, "--stmt", "1", "--emit", "comal", "--out", "x"], &["--stmt 1.0 to 1.3"]);
}

/// A fused group keeps the program's index names (GCN layer 1 fuses `AX(i,f) = A(i,k) X(k,f)`
/// into `H1(i,h)`: its loops are i, k, f, h) and `--order` takes them, with or without spaces.
#[test]
fn order_for_a_fused_group_takes_the_programs_index_names() {
    let gcn = example_path("gcn.ff");
    let v = run_json(&[&gcn, "--fusion", "partial"]);
    assert_eq!(v["groups"][0]["orders"], serde_json::json!([["i", "k", "f", "h"]]));
    assert_eq!(v["groups"][1]["orders"], serde_json::json!([["i", "k", "h", "c"]]));
    for order in ["i,k,f,h", "i, k, f, h", " i,k , f,h "] {
        let v = run_json(&[&gcn, "--fusion", "partial", "--order", order]);
        assert_eq!(v["groups"][0]["orders"], serde_json::json!([["i", "k", "f", "h"]]), "{order}");
        assert_eq!(v["verified"], true);
    }
    // Where a group reuses a name for another loop, the later loop is renamed k2, k3, ...
    let (code, out, err) = cli(&["orders", &gcn, "--fusion", "full", "--cap", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "group 0 [0-10] Y: i,k,k2,f,h,c");
    // An order that fits no kernel names the kernels' orders.
    fails_with(
        &["run", &gcn, "--fusion", "partial", "--order", "i,k1,f1,h"],
        &["gcn.ff:", "--order i,k1,f1,h names the indices of no kernel", "i,k,f,h | i,k,h,c"],
    );
    fails_with(&["run", &gcn, "--order", "i,,k"], &["--order", "empty index name"]);
}
