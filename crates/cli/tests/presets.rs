//! `preset` lines on the command line (`--preset`, its precedence under `--param` and
//! `--dataset`), the paper-scale presets of the example models (compiled, never simulated here),
//! and output to a closed pipe.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Stdio;

use common::{bin, cli, example_path, examples_dir, fails_with, json};

/// The models of examples/ and the presets each must declare.
const MODELS: &[(&str, &[&str])] = &[
    ("gcn.ff", &["paper"]),
    ("graphsage.ff", &["paper"]),
    ("sae.ff", &["paper", "nih_cxr", "luna16"]),
    ("bigbird_attention.ff", &["paper"]),
    ("gpt3_decoder.ff", &["paper"]),
    ("nested_matmul.ff", &["paper"]),
];

fn load(file: &str, preset: Option<&str>, params: &[(&str, i64)]) -> fuseflow_ir::CheckedProgram {
    let overrides = fuseflow_ir::Overrides {
        preset: preset.map(String::from),
        params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    fuseflow_ir::load_with(&examples_dir().join(file), &overrides).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn shape(p: &fuseflow_ir::CheckedProgram, tensor: &str) -> Vec<usize> {
    p.decl(tensor).unwrap_or_else(|| panic!("no tensor {tensor}")).shape.clone()
}

#[test]
fn every_model_has_its_presets_and_keeps_small_defaults() {
    for (file, presets) in MODELS {
        let small = load(file, None, &[]);
        for preset in *presets {
            let p = load(file, Some(preset), &[]);
            assert_eq!(p.stmts.len(), small.stmts.len(), "{file} --preset {preset}");
        }
        let e = fuseflow_ir::load_with(
            &examples_dir().join(file),
            &fuseflow_ir::Overrides { preset: Some("nope".into()), params: BTreeMap::new() },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown preset `nope`") && e.contains("available: paper"), "{file}: {e}");
    }
    // The paper's shapes (benchmarks.md §2-3) ...
    assert_eq!(shape(&load("gcn.ff", Some("paper"), &[]), "X"), vec![2708, 1433]);
    assert_eq!(shape(&load("gcn.ff", Some("paper"), &[]), "W2"), vec![7, 16]);
    assert_eq!(shape(&load("graphsage.ff", Some("paper"), &[]), "Ws1"), vec![16, 1433]);
    assert_eq!(shape(&load("sae.ff", Some("paper"), &[]), "We"), vec![50176, 256]);
    assert_eq!(shape(&load("sae.ff", Some("nih_cxr"), &[]), "X"), vec![32, 1048576]);
    assert_eq!(shape(&load("bigbird_attention.ff", Some("paper"), &[]), "Q"), vec![12, 1024, 64]);
    let gpt = load("gpt3_decoder.ff", Some("paper"), &[]);
    assert_eq!(shape(&gpt, "Wq"), vec![12, 64, 768]);
    assert_eq!(shape(&gpt, "W1"), vec![3072, 768]);
    for file in ["bigbird_attention.ff", "gpt3_decoder.ff"] {
        let block = |p: &fuseflow_ir::CheckedProgram| match &p.decl("M").unwrap().source {
            Some(fuseflow_ir::Source::BigBird { block, .. }) => *block,
            other => panic!("{other:?}"),
        };
        assert_eq!(block(&load(file, None, &[])), 8, "{file}");
        assert_eq!(block(&load(file, Some("paper"), &[])), 16, "{file}");
        assert_eq!(block(&load(file, Some("paper"), &[("B", 64)])), 64, "{file}");
    }
    // ... and the small defaults the other tests rely on.
    assert_eq!(shape(&load("gcn.ff", None, &[]), "X"), vec![48, 24]);
    assert_eq!(shape(&load("sae.ff", None, &[]), "X"), vec![32, 256]);
    assert_eq!(shape(&load("gpt3_decoder.ff", None, &[]), "Wq"), vec![2, 16, 32]);
    assert_eq!(shape(&load("nested_matmul.ff", Some("paper"), &[]), "A"), vec![34, 34]);
}

#[test]
fn gpt3_decoder_compiles_at_paper_scale() {
    let gpt = example_path("gpt3_decoder.ff");
    let (code, out, err) = cli(&["graph", &gpt, "--preset", "paper", "--fusion", "partial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input X [1024, 768]"), "{}", &out[..out.len().min(2000)]);
    // Explicit --param wins over the preset.
    let (code, out, err) = cli(&["graph", &gpt, "--preset", "paper", "--param", "S=512", "--fusion", "partial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input X [512, 768]"), "{}", &out[..out.len().min(2000)]);
    // Every command that takes a program takes --preset.
    let (code, out, err) = cli(&["orders", &gpt, "--preset", "paper"]);
    assert_eq!(code, 0, "{err}");
    // Statement 0 is a layer norm: its steps are 0.0 to 0.4.
    assert!(out.starts_with("stmt 0.0 L1__mean: "), "{out}");
    assert!(out.contains("\nstmt 0.4 L1: ") && out.contains("\nstmt 1 Qh: "), "{out}");
}

#[test]
fn unknown_preset_is_one_line() {
    let gpt = example_path("gpt3_decoder.ff");
    for cmd in ["run", "graph", "orders"] {
        fails_with(&[cmd, &gpt, "--preset", "huge"], &["gpt3_decoder.ff", "unknown preset `huge`", "available: paper"]);
    }
    fails_with(&["run", &example_path("spmv.ff"), "--preset", "paper"], &["spmv.ff", "no `preset` lines"]);
}

#[test]
fn dataset_wins_over_the_preset_for_the_params_it_sets() {
    // The paper preset's N = 2708 would not fit the 34-node adjacency of karate; the dataset's
    // N, F and C replace the preset's, H = 16 comes from the preset.
    let gcn = example_path("gcn.ff");
    let (code, out, err) =
        cli(&["run", &gcn, "--preset", "paper", "--dataset", "karate", "--fusion", "partial", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["verified"], serde_json::Value::Bool(true));
    // ... and --param wins over the dataset.
    fails_with(&["run", &gcn, "--preset", "paper", "--dataset", "karate", "--param", "N=40"], &["A", "[40, 40]"]);
}

/// Runs `fuseflow args...` with stdout a pipe whose read end is closed at once; returns the exit
/// code and stderr.
fn closed_stdout(args: &[&str]) -> (i32, String) {
    let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), err)
}

#[test]
fn closed_stdout_is_not_an_error() {
    let gpt = example_path("gpt3_decoder.ff");
    let spmv = example_path("spmv.ff");
    let cases: Vec<Vec<&str>> = vec![
        vec!["graph", &gpt, "--fusion", "partial"],
        vec!["graph", &gpt, "--fusion", "partial", "--dot"],
        vec!["orders", &gpt],
        vec!["datasets"],
        vec!["run", &spmv],
        vec!["run", &spmv, "--json"],
    ];
    for args in cases {
        let (code, err) = closed_stdout(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn full_stdout_is_a_one_line_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
    let out = bin().args(["datasets"]).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("writing to stdout") && err.trim_end().lines().count() == 1, "{err}");
}
