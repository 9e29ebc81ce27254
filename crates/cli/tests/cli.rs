//! The `fuseflow` command on good and bad input: bad input gives one line naming the problem
//! and a non-zero exit code, never a panic.

mod common;

use common::{cli, example_path, fails_with, json, tmpdir, write};

#[test]
fn run_prints_verified_summary_and_json() {
    let (code, out, err) = cli(&["run", &example_path("spmm_gustavson.ff")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified against the reference evaluator"), "{out}");
    let (code, out, _) =
        cli(&["run", &example_path("spmm_gustavson.ff"), "--json", "--order", "i,k,j", "--fifo-depth", "8"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["cycles", "verified", "max_abs_error", "tokens", "wall_seconds"] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(v["verified"], serde_json::Value::Bool(true));
    assert!(v["cycles"].as_u64().unwrap() > 0);
}

#[test]
fn no_verify_says_so_and_exits_nonzero() {
    let (code, out, _) = cli(&["run", &example_path("add.ff"), "--no-verify"]);
    assert_ne!(code, 0);
    assert!(out.contains("NOT VERIFIED"), "{out}");
}

#[test]
fn graph_prints_dot_and_text() {
    let (code, out, _) = cli(&["graph", &example_path("spmm_inner.ff"), "--order", "i,j,k", "--dot"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph") && out.contains("intersect"), "{out}");
    let (code, out, _) = cli(&["graph", &example_path("spmm_inner.ff")]);
    assert_eq!(code, 0);
    assert!(out.contains("reduce[sum]"), "{out}");
}

/// With `--fusion`, `graph` prints a group's graph and `orders` lists each group output's
/// orders.
#[test]
fn graph_and_orders_follow_fusion_groups() {
    let prog = example_path("bigbird_attention.ff");
    let (code, out, err) = cli(&["orders", &prog, "--fusion", "full", "--cap", "4"]);
    assert_eq!(code, 0, "{err}");
    // Five statements as written (the masked softmax is one), eight after expansion.
    assert!(out.starts_with("group 0 [0-4] O: "), "{out}");
    assert!(out.split("  ").count() >= 2, "at least two legal orders: {out}");
    let (code, out, err) = cli(&["graph", &prog, "--fusion", "full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("graph group_0-4"), "{out}");
    assert!(out.contains("reduce[max]") && out.contains("alu[expsubnz]"), "{out}");
    fails_with(&["graph", &prog, "--fusion", "full", "--stmt", "3"], &["group 3 does not exist"]);
}

#[test]
fn bad_programs_fail_cleanly() {
    let d = tmpdir("bad");
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        ("syntax.ff", "input A[4,4] dcsr = random(density=0.5)\noutput X[4,4] dcsr\nX(i,j) = A(i,j) * \n", vec!["syntax.ff:3:"]),
        ("unknown.ff", "input A[4,4] dcsr = random(density=0.5)\noutput X[4,4] dcsr\nX(i,j) = A(i,j) * Q(i,j)\n", vec!["unknown.ff:3:", "Q"]),
        (
            "sizes.ff",
            "input A[4,5] dcsr = random(density=0.5)\ninput B[6,4] dcsr = random(density=0.5)\noutput X[4,4] dcsr\nX(i,j) = A(i,k) * B(k,j)\n",
            vec!["sizes.ff:4:", "k"],
        ),
        (
            "shape.ff",
            "input A[4,4] dcsr = random(density=0.5)\noutput X[4,5] dcsr\nX(i,j) = A(i,j)\n",
            vec!["shape.ff:", "X"],
        ),
        (
            "noorder.ff",
            "input A[4,4] dcsr = random(density=0.5)\ninput B[4,4] dcsr = random(density=0.5)\noutput X[4,4] dcsc\nX(i,j) = A(i,k) * B(k,j)\n",
            vec!["noorder.ff:4:1", "no legal dataflow order"],
        ),
    ];
    for (name, text, needles) in cases {
        let p = write(&d, name, text);
        fails_with(&["run", &p], &needles);
    }
    fails_with(&["run", &d.join("missing.ff").to_string_lossy()], &["missing.ff"]);
}

#[test]
fn forbidden_order_fails_cleanly() {
    fails_with(&["run", &example_path("spmm_gustavson.ff"), "--order", "i,j,k"], &["order i,j,k", "stores k before j"]);
    fails_with(&["run", &example_path("spmm_gustavson.ff"), "--order", "i,k"], &["missing index j"]);
}

#[test]
fn bad_options_fail_cleanly() {
    fails_with(&["run", &example_path("add.ff"), "--fifo-depth", "0"], &["fifo-depth"]);
}

#[test]
fn malformed_data_files_fail_cleanly() {
    let d = tmpdir("data");
    write(&d, "bad.mtx", "%%MatrixMarket matrix coordinate real general\n4 4 2\n1 1 1.0\n9 1 2.0\n");
    write(&d, "short.mtx", "%%MatrixMarket matrix coordinate real general\n4 4\n");
    write(&d, "wrong.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 1.0\n");
    std::fs::write(d.join("bad.npz"), b"PK\x03\x04 definitely not a zip").unwrap();
    let tdir = d.join("tdir");
    std::fs::create_dir_all(&tdir).unwrap();
    write(&tdir, "tensor_A_mode_shape", "4\n4\n");
    write(&tdir, "tensor_A_mode_0_seg", "0\n2\n");
    write(&tdir, "tensor_A_mode_0_crd", "0\nthree\n");
    write(&tdir, "tensor_A_mode_1_seg", "0\n1\n2\n");
    write(&tdir, "tensor_A_mode_1_crd", "0\n1\n");
    write(&tdir, "tensor_A_mode_vals", "1\n2\n");
    for (file, needles) in [
        ("bad.mtx", vec!["bad.mtx:4"]),
        ("short.mtx", vec!["short.mtx:2"]),
        ("wrong.mtx", vec!["A", "[3, 3]", "[4, 4]"]),
        ("bad.npz", vec!["bad.npz"]),
        ("tdir", vec!["tensor_A_mode_0_crd:2"]),
    ] {
        let prog = format!("input A[4,4] dcsr = file(\"{file}\")\noutput X[4,4] dcsr\nX(i,j) = A(i,j) * A(i,j)\n");
        let p = write(&d, &format!("prog_{}.ff", file.replace('.', "_")), &prog);
        fails_with(&["run", &p], &needles);
    }
}

#[test]
fn bad_multi_statement_programs_fail_cleanly() {
    let d = tmpdir("multi");
    // A tensor used before the statement that defines it (also the only way to write a cycle).
    let p = write(
        &d,
        "cycle.ff",
        "input A[4,4] dcsr = random(density=0.5)\ntemp T[4,4] dcsr\noutput U[4,4] dcsr\nT(i,j) = U(i,j) * A(i,j)\nU(i,j) = T(i,j) + A(i,j)\n",
    );
    fails_with(&["run", &p], &["cycle.ff:4:", "U"]);
    // Fusion groups that split the program out of order or leave statements out.
    let ok = write(
        &d,
        "chain.ff",
        "input A[4,4] dcsr = random(density=0.5)\ntemp T[4,4] dcsr\noutput U[4,4] dcsr\nT(i,j) = A(i,k) * A(k,j)\nU(i,j) = T(i,j) + A(i,j)\n",
    );
    // Groups may be written in any order: they run in the dependences' order.
    let (code, out, err) = cli(&["run", &ok, "--fusion", "1,0", "--json"]);
    assert_eq!(code, 0, "{err}");
    let labels: Vec<String> =
        json(&out)["groups"].as_array().unwrap().iter().map(|g| g["label"].as_str().unwrap().to_string()).collect();
    assert_eq!(labels, ["0", "1"]);
    fails_with(&["run", &ok, "--fusion", "0,0-1"], &["statement 0 is in two groups"]);
    fails_with(&["run", &ok, "--fusion", "0"], &["cover"]);
    fails_with(&["run", &ok, "--fusion", "0-7"], &["has 2"]);
    fails_with(&["run", &ok, "--fusion", "zero"], &["fusion"]);
    // Fusing statements whose operands' mode orders conflict: B is stored j-major, so
    // U = T·B needs j before l while C forces l before j.
    let conflict = write(
        &d,
        "conflict.ff",
        "input A[4,4] dcsr = random(density=0.5)\ninput B[4,4] dcsc = random(density=0.5)\ninput C[4,4] dcsr = random(density=0.5)\ntemp T[4,4] dcsr\noutput U[4,4] dcsr\nT(i,j) = A(i,k) * B(k,j)\nU(i,j) = T(i,j) * C(j,i)\n",
    );
    fails_with(&["run", &conflict, "--fusion", "full"], &["conflict.ff:7:1", "no legal dataflow order"]);
    let (code, _, err) = cli(&["run", &ok, "--fusion", "full"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn dataset_option_binds_the_adjacency() {
    let (code, out, err) =
        cli(&["run", &example_path("gcn.ff"), "--dataset", "karate", "--fusion", "partial", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verified"], serde_json::Value::Bool(true));
    assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    for key in ["flops", "offchip_bytes"] {
        assert!(v[key].as_u64().unwrap() > 0, "{key}");
    }
    fails_with(&["run", &example_path("gcn.ff"), "--dataset", "no-such-graph"], &["no-such-graph"]);
    fails_with(&["run", &example_path("spmv.ff"), "--dataset", "karate"], &["A"]);
}
