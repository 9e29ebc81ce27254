//! `fuseflow compile --emit comal` and `fuseflow simulate --comal`: the exported graph,
//! imported and simulated, gives the cycle count of `fuseflow run`; bad files give one line and
//! a non-zero exit code.

mod common;

use common::{cli, example_path, fails_with, json, tmpdir};

/// Compiles `program` under `order` for Comal, simulates the export, and compares the cycle
/// count with `fuseflow run --json` for the same program and order.
fn same_cycles(program: &str, order: &str, tag: &str) {
    let dir = tmpdir(tag);
    let out = dir.join("export");
    let out_s = out.to_string_lossy().to_string();
    let (code, stdout, err) =
        cli(&["compile", &example_path(program), "--order", order, "--emit", "comal", "--out", &out_s]);
    assert_eq!(code, 0, "compile: {err}");
    assert!(stdout.contains("graph.bin"), "{stdout}");
    let graph = out.join("graph.bin").to_string_lossy().to_string();
    let dump = dir.join("outputs").to_string_lossy().to_string();
    let (code, stdout, err) =
        cli(&["simulate", "--comal", &graph, "--data", &out_s, "--json", "--dump-outputs", &dump]);
    assert_eq!(code, 0, "simulate: {err}");
    let via = json(&stdout);
    let (code, stdout, err) = cli(&["run", &example_path(program), "--order", order, "--json"]);
    assert_eq!(code, 0, "run: {err}");
    let direct = json(&stdout);
    assert!(via["cycles"].as_u64().unwrap() > 0);
    assert_eq!(via["cycles"], direct["cycles"], "{program} {order}: cycles via Comal export vs run");
    assert_eq!(via["tokens"], direct["tokens"], "{program} {order}: tokens");
    // On the comal machine (its timing quirks, memory off) too: the cross-check compares these.
    let comal_hw = ["--hw", "comal", "--memory", "ideal", "--json"];
    let (code, stdout, err) = cli(&[&["simulate", "--comal", &graph, "--data", &out_s][..], &comal_hw[..]].concat());
    assert_eq!(code, 0, "simulate --hw comal: {err}");
    let via_comal = json(&stdout);
    let (code, stdout, err) = cli(&[&["run", &example_path(program), "--order", order][..], &comal_hw[..]].concat());
    assert_eq!(code, 0, "run --hw comal: {err}");
    assert_eq!(via_comal["cycles"], json(&stdout)["cycles"], "{program} {order}: comal cycles via export vs run");
    // The simulated outputs compare equal with what the export's simulation dumped (what a
    // Comal runner writes is compared the same way).
    let (code, stdout, err) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--compare-outputs", &dump]);
    assert_eq!(code, 0, "compare: {err}");
    assert!(stdout.contains("compare      ") && stdout.contains(" match: 0 mismatches"), "{stdout}");
    // The dumped outputs are tensor directories.
    let names: Vec<String> = std::fs::read_dir(dir.join("outputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("_mode_vals")), "{names:?}");
    // The text report names the cycles too.
    let (code, stdout, _) = cli(&["simulate", "--comal", &graph, "--data", &out_s]);
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("cycles       {}", direct["cycles"])), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compile_then_simulate_matches_run() {
    same_cycles("spmm_gustavson.ff", "i,k,j", "gustavson");
    same_cycles("spmv.ff", "i,j", "spmv");
    same_cycles("sddmm.ff", "i,j,k", "sddmm");
    same_cycles("add.ff", "i,j", "add");
}

/// `compile --fusion G --stmt N` exports fusion group `N` (computing the intermediates it reads
/// by simulating the groups before it); simulating the export gives that group's cycles.
#[test]
fn fused_groups_export_and_match_run() {
    for (program, fusion, group) in
        [("gcn.ff", "partial", 1), ("bigbird_attention.ff", "full", 0), ("nested_matmul.ff", "full", 0)]
    {
        let dir = tmpdir(&format!("fused-{group}-{program}"));
        let out_s = dir.join("export").to_string_lossy().to_string();
        let g = group.to_string();
        let (code, stdout, err) = cli(&[
            "compile",
            &example_path(program),
            "--fusion",
            fusion,
            "--stmt",
            &g,
            "--emit",
            "comal",
            "--out",
            &out_s,
        ]);
        assert_eq!(code, 0, "compile: {err}");
        assert!(stdout.contains(&format!("group {group}")), "{stdout}");
        let graph = dir.join("export").join("graph.bin").to_string_lossy().to_string();
        let (code, stdout, err) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--json"]);
        assert_eq!(code, 0, "simulate: {err}");
        let via = json(&stdout);
        let (code, stdout, err) = cli(&["run", &example_path(program), "--fusion", fusion, "--json"]);
        assert_eq!(code, 0, "run: {err}");
        let direct = json(&stdout);
        assert_eq!(via["cycles"], direct["groups"][group]["cycles"], "{program} {fusion} group {group}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    fails_with(
        &["compile", &example_path("gcn.ff"), "--fusion", "partial", "--stmt", "7", "--emit", "comal", "--out", "x"],
        &["group 7 does not exist"],
    );
}

#[test]
fn bad_files_and_arguments_fail_with_one_line() {
    let dir = tmpdir("bad");
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, b"\xff\xff\xff\xff garbage").unwrap();
    let bad_s = bad.to_string_lossy().to_string();
    let dir_s = dir.to_string_lossy().to_string();
    fails_with(&["simulate", "--comal", &bad_s, "--data", &dir_s], &["bad.bin", "malformed tortilla protobuf"]);
    fails_with(
        &["simulate", "--comal", &dir.join("missing.bin").to_string_lossy(), "--data", &dir_s],
        &["missing.bin", "cannot read"],
    );
    // A valid graph whose tensor directory lacks the data.
    let out = dir.join("export");
    let out_s = out.to_string_lossy().to_string();
    let (code, _, err) = cli(&["compile", &example_path("spmv.ff"), "--emit", "comal", "--out", &out_s]);
    assert_eq!(code, 0, "{err}");
    let graph = out.join("graph.bin").to_string_lossy().to_string();
    fails_with(&["simulate", "--comal", &graph, "--data", &dir_s], &["tensor_", "cannot read"]);
    fails_with(
        &["compile", &example_path("spmv.ff"), "--emit", "dot", "--out", &out_s],
        &["--emit dot", "only `comal`"],
    );
    fails_with(
        &["compile", &example_path("spmv.ff"), "--stmt", "3", "--emit", "comal", "--out", &out_s],
        &["statement 3 does not exist"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A statement that reads temporaries: `compile` computes them by simulating the statements
/// before it, so the export simulates like that statement's group in `run`.
#[test]
fn later_statements_export_their_temporaries() {
    let dir = tmpdir("gcn");
    let out = dir.join("export");
    let out_s = out.to_string_lossy().to_string();
    let (code, _, err) = cli(&["compile", &example_path("gcn.ff"), "--stmt", "8", "--emit", "comal", "--out", &out_s]);
    assert_eq!(code, 0, "compile: {err}");
    let graph = out.join("graph.bin").to_string_lossy().to_string();
    let (code, stdout, err) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--json"]);
    assert_eq!(code, 0, "simulate: {err}");
    let via = json(&stdout);
    let (code, stdout, err) = cli(&["run", &example_path("gcn.ff"), "--json"]);
    assert_eq!(code, 0, "run: {err}");
    let direct = json(&stdout);
    let group = direct["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["statements"] == serde_json::json!([8]))
        .expect("a group for statement 8");
    assert_eq!(via["cycles"], group["cycles"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `simulate --compare-outputs` reports a changed value as a mismatch and a malformed tensor as
/// unreadable, exiting 1; `compile` notes what Comal cannot run.
#[test]
fn compare_outputs_finds_differences() {
    let dir = tmpdir("compare");
    let out_s = dir.join("export").to_string_lossy().to_string();
    let (code, _, err) = cli(&["compile", &example_path("spmv.ff"), "--emit", "comal", "--out", &out_s]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("note: Comal"), "spmv runs on Comal: {err}");
    let graph = dir.join("export").join("graph.bin").to_string_lossy().to_string();
    let dump = dir.join("dump");
    let dump_s = dump.to_string_lossy().to_string();
    let (code, _, err) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--dump-outputs", &dump_s]);
    assert_eq!(code, 0, "{err}");
    // Change one value by far more than the tolerance.
    let vals = dump.join("tensor_y_mode_vals");
    let text = std::fs::read_to_string(&vals).unwrap();
    let first: f64 = text.lines().next().unwrap().parse().unwrap();
    let changed: Vec<String> =
        text.lines().enumerate().map(|(i, l)| if i == 0 { (first + 1.0).to_string() } else { l.to_string() }).collect();
    std::fs::write(&vals, changed.join("\n") + "\n").unwrap();
    let (code, stdout, _) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--compare-outputs", &dump_s]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("compare      y MISMATCH: 1 mismatches"), "{stdout}");
    let (code, stdout, _) =
        cli(&["simulate", "--comal", &graph, "--data", &out_s, "--compare-outputs", &dump_s, "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json(&stdout)["compare"]["y"]["equal"], false, "{stdout}");
    // One value too many: the tensor does not read back.
    std::fs::write(&vals, text.clone() + "1\n").unwrap();
    let (code, stdout, _) = cli(&["simulate", "--comal", &graph, "--data", &out_s, "--compare-outputs", &dump_s]);
    assert_eq!(code, 1);
    assert!(stdout.contains("compare      y UNREADABLE") && stdout.contains("tensor_y_mode_vals"), "{stdout}");
    // What Comal cannot run is noted when compiling (the export is written all the same).
    let prog = dir.join("maxnz.ff");
    std::fs::write(&prog, "input A[4, 5] dcsr = random(density=0.5)\noutput y[4] dense\ny(i) = maxnz(j, A(i,j))\n")
        .unwrap();
    let (code, _, err) = cli(&["compile", &prog.to_string_lossy(), "--emit", "comal", "--out", &out_s]);
    assert_eq!(code, 0, "{err}");
    // A max over nonzeros runs on Comal (its ±∞ conversions have stand-ins), exactly only where
    // a row's largest nonzero is ≥ 0: one note, on the reducer.
    assert_eq!(err.matches("note: Comal: node").count(), 1, "{err}");
    assert!(err.contains("a max over nonzeros") && err.contains("largest nonzero is ≥ 0"), "{err}");
    assert!(!err.contains("has no stage"), "{err}");
    assert!(dir.join("export").join("graph.bin").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A parallel graph (`--par`) whose gathers Comal's Gather can rebuild exports as Comal's
/// Scatter and Gather; simulating the export gives the cycles, tokens and outputs of `run
/// --par`, on the default machine and on the comal preset. Gathers it cannot rebuild are
/// refused with one line naming the gather node.
#[test]
fn parallel_lanes_export_and_match_run() {
    let dir = tmpdir("lanes");
    let out_s = dir.join("export").to_string_lossy().to_string();
    let gcn = example_path("gcn.ff");
    let (code, _, err) = cli(&[
        "compile", &gcn, "--fusion", "partial", "--stmt", "1", "--par", "i=2", "--emit", "comal", "--out", &out_s,
    ]);
    assert_eq!(code, 0, "compile: {err}");
    let graph = dir.join("export").join("graph.bin").to_string_lossy().to_string();
    let bytes = std::fs::read(&graph).unwrap();
    assert!(bytes.windows(5).any(|w| w == b"fork;"), "no fork in the export");
    for hw in [&[][..], &["--hw", "comal", "--memory", "ideal"][..]] {
        let dump = dir.join("outputs").to_string_lossy().to_string();
        let (code, stdout, err) =
            cli(&[&["simulate", "--comal", &graph, "--data", &out_s, "--json", "--dump-outputs", &dump][..], hw]
                .concat());
        assert_eq!(code, 0, "simulate: {err}");
        let via = json(&stdout);
        let (code, stdout, err) =
            cli(&[&["run", &gcn, "--fusion", "partial", "--par", "i=2", "--json"][..], hw].concat());
        assert_eq!(code, 0, "run: {err}");
        let direct = json(&stdout);
        assert!(via["cycles"].as_u64().unwrap() > 0);
        assert_eq!(via["cycles"], direct["groups"][1]["cycles"], "{hw:?}: cycles via the export vs run --par");
        let (code, stdout, err) =
            cli(&[&["simulate", "--comal", &graph, "--data", &out_s, "--compare-outputs", &dump][..], hw].concat());
        assert_eq!(code, 0, "compare: {err}");
        assert!(stdout.contains(" match: 0 mismatches"), "{stdout}");
        let _ = std::fs::remove_dir_all(dir.join("outputs"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    fails_with(
        &["compile", &example_path("spmv.ff"), "--par", "i=2", "--emit", "comal", "--out", "x"],
        &["(gather)", "depth 0"],
    );
}

/// A sparse accumulator's output joined with a bias before its inner levels are complete
/// (the projection `Q(s,h,e) = L(s,d) * W(h,e,d) + b(h,e)` contracting `d` above `(h, e)`) has
/// no reference stream for Comal's joiner, whose driver needs one per operand: the export is
/// refused with one line naming the union, instead of writing a graph Comal would crash on.
#[test]
fn a_join_without_a_reference_stream_is_refused() {
    let dir = tmpdir("acc-join");
    let prog = dir.join("q.ff");
    std::fs::write(
        &prog,
        "input L[4, 6] dense = random(density=1)\ninput W[2, 3, 6] dense order(2,0,1) = random(density=1)\n\
         input b[2, 3] dense = random(density=1)\noutput Q[4, 2, 3] dense\nQ(s,h,e) = L(s,d) * W(h,e,d) + b(h,e)\n",
    )
    .unwrap();
    let prog = prog.to_string_lossy().to_string();
    let (code, out, err) = cli(&["run", &prog, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["groups"][0]["orders"][0], serde_json::json!(["s", "d", "h", "e"]));
    let out_s = dir.join("export").to_string_lossy().to_string();
    fails_with(&["compile", &prog, "--emit", "comal", "--out", &out_s], &["(union)", "no reference stream"]);
    let _ = std::fs::remove_dir_all(&dir);
}
