//! What a run report promises: "verified" only for finite outputs that match the reference in
//! a program that computes something; `--no-verify` reports no error figure; `simulate` says
//! it verifies nothing; the exit codes are documented in `--help`; the report shows the
//! parameters and the dataset used; data-file errors name the declaring line once.

mod common;

use common::{cli, example_path, fails_with, json, tmpdir, write};

#[test]
fn nan_and_infinite_outputs_are_not_verified() {
    let d = tmpdir("nan");
    // rsqrt of a negative number is NaN and exp(10000) overflows, in the reference as well: the
    // values agree, but they verify nothing.
    for (name, rhs, what) in [("nan.ff", "rsqrt(A(i) - 2)", "is NaN"), ("inf.ff", "exp(A(i) * 100000)", "is inf")] {
        let p = write(&d, name, &format!("input A[4] dense = random(density=1)\noutput Y[4] dense\nY(i) = {rhs}\n"));
        let (code, out, err) = cli(&["run", &p]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.contains(&format!("result       NOT VERIFIED: statements 0: Y(0) {what}")), "{out}");
        let (code, out, _) = cli(&["run", &p, "--json"]);
        assert_eq!(code, 1);
        let v = json(&out);
        assert_eq!(v["verified"], false);
        assert!(v["reason"].as_str().unwrap().contains(what), "{v}");
        assert_eq!(v["groups"][0]["verified"], false);
    }
}

#[test]
fn an_empty_program_is_not_verified() {
    let p = write(&tmpdir("empty"), "empty.ff", "input A[4] dense = random(density=1)\n");
    let (code, out, _) = cli(&["run", &p]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT VERIFIED: the program has no statements"), "{out}");
    let v = json(&cli(&["run", &p, "--json"]).1);
    assert_eq!((v["verified"].clone(), v["max_abs_error"].clone()), (false.into(), serde_json::Value::Null));
}

#[test]
fn no_verify_reports_no_error_figure() {
    let (code, out, _) = cli(&["run", &example_path("gcn.ff"), "--fusion", "partial", "--no-verify", "--json"]);
    assert_eq!(code, 1);
    let v = json(&out);
    assert_eq!(v["max_abs_error"], serde_json::Value::Null);
    assert_eq!(v["verified"], false);
    assert_eq!(v["reason"], "verification disabled (--no-verify)");
    for g in v["groups"].as_array().unwrap() {
        assert_eq!(
            (g["max_abs_error"].clone(), g["verified"].clone()),
            (serde_json::Value::Null, serde_json::Value::Null)
        );
    }
    let (_, out, _) = cli(&["run", &example_path("add.ff"), "--no-verify"]);
    assert!(out.contains("max error    n/a (not checked)"), "{out}");
    // Checked runs report a number.
    let v = json(&cli(&["run", &example_path("add.ff"), "--json"]).1);
    assert_eq!(v["max_abs_error"], 0.0);
    assert_eq!(v["reason"], serde_json::Value::Null);
}

#[test]
fn simulate_says_it_verifies_nothing() {
    let d = tmpdir("simulate");
    let dir = d.to_string_lossy().to_string();
    let (code, _, err) = cli(&["compile", &example_path("spmv.ff"), "--emit", "comal", "--out", &dir]);
    assert_eq!(code, 0, "{err}");
    let graph = d.join("graph.bin").to_string_lossy().to_string();
    let (code, out, err) = cli(&["simulate", "--comal", &graph, "--data", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("result       NOT VERIFIED: `simulate` has no reference evaluator"), "{out}");
    let (code, out, _) = cli(&["simulate", "--comal", &graph, "--data", &dir, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["verified"], false);
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [vec!["--help"], vec!["run", "--help"], vec!["simulate", "--help"]] {
        let (code, out, _) = cli(&args);
        assert_eq!(code, 0);
        for needle in ["Exit codes:", "  0  ", "  1  ", "  2  bad input", "`simulate` has no reference evaluator"] {
            assert!(out.contains(needle), "{args:?}: {needle:?} missing in {out}");
        }
    }
}

#[test]
fn the_report_shows_parameters_and_dataset() {
    let gcn = example_path("gcn.ff");
    let (code, out, err) = cli(&["run", &gcn, "--fusion", "partial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nparams       C=7 F=24 H=16 N=48\n"), "{out}");
    assert!(!out.contains("dataset"), "{out}");
    let (code, out, err) = cli(&["run", &gcn, "--fusion", "partial", "--dataset", "karate", "--param", "H=8"]);
    assert_eq!(code, 0, "{err}");
    // Karate's features are the identity: F = N, and X is bound to it.
    assert!(out.contains("\nparams       C=4 F=34 H=8 N=34\n"), "{out}");
    assert!(out.contains("\ndataset      Zachary's karate club"), "{out}");
    assert!(
        out.contains(
            "\nbound        A: adjacency (34 x 34, 156 entries); X: identity features (34 x 34, 34 entries, stored dense)\n"
        ),
        "{out}"
    );
    // A synthetic dataset knows its feature width but has no feature values.
    let degrees = write(
        &tmpdir("degrees"),
        "degrees.ff",
        "param N = 4\nparam F = 2\ninput A[N, N] dcsr = random(density=0.001)\noutput D[N] dense\nD(i) = A(i,j) * 2\n",
    );
    let v = json(&cli(&["run", &degrees, "--dataset", "cora-synth", "--json"]).1);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["params"], serde_json::json!({"F": 1433, "N": 2708}));
    assert_eq!(v["dataset"]["name"], "cora-synth");
    let bound = v["dataset"]["bound"].to_string();
    assert!(
        bound.contains("A: adjacency (2708 x 2708") && bound.contains("the program generates its own with F = 1433"),
        "{bound}"
    );
}

/// An edge list has no features: it gets sparse identity features, and a program that stores
/// them densely is refused before anything is allocated when that would be large.
#[test]
fn featureless_datasets_get_sparse_identity_features() {
    let d = tmpdir("edges");
    let mut edges = String::new();
    for i in 0..39 {
        edges.push_str(&format!("{i} {}\n{} {i}\n", i + 1, i + 1));
    }
    let small = write(&d, "small.txt", &edges);
    let gcn = std::fs::read_to_string(example_path("gcn.ff")).unwrap();
    let sparse = write(
        &d,
        "gcn_sparse.ff",
        &gcn.replace("input  X[N, F]  dense = random(density=1)", "input  X[N, F]  dcsr = random(density=0.1)"),
    );
    assert_ne!(std::fs::read_to_string(&sparse).unwrap(), gcn);
    let v = json(&cli(&["run", &sparse, "--dataset", &small, "--fusion", "partial", "--json"]).1);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!((v["params"]["N"].clone(), v["params"]["F"].clone()), (40.into(), 40.into()));
    let bound = v["dataset"]["bound"].to_string();
    assert!(bound.contains("X: identity features (40 x 40, 40 entries, stored dcsr)"), "{bound}");
    // Small dense identity features are allowed (40 x 40), large ones refused in one line.
    let v = json(&cli(&["run", &example_path("gcn.ff"), "--dataset", &small, "--fusion", "partial", "--json"]).1);
    assert_eq!(v["verified"], true, "{v}");
    let big = write(&d, "big.txt", "0 1\n1 0\n4999 0\n");
    fails_with(
        &["run", &example_path("gcn.ff"), "--dataset", &big],
        &[
            "--dataset",
            "no node features",
            "5000 x 5000",
            "input X is declared dense at",
            "gcn.ff:13:1",
            "25000000 values",
            "dcsr",
            "--param F=",
        ],
    );
    // Giving F keeps the program's own features.
    let v = json(&cli(&["run", &example_path("gcn.ff"), "--dataset", &small, "--param", "F=8", "--json"]).1);
    assert_eq!(v["params"]["F"], 8);
    assert!(!v["dataset"]["bound"].to_string().contains("X:"), "{v}");
    // A program without the feature input is told how to name it.
    let renamed = write(&d, "gcn_h0.ff", &gcn.replace("X", "H0"));
    fails_with(&["run", &renamed, "--dataset", &small], &["no input X", "--features"]);
    let v = json(&cli(&["run", &renamed, "--dataset", &small, "--features", "H0", "--json"]).1);
    assert_eq!(v["verified"], true, "{v}");
}

#[test]
fn data_file_errors_name_the_declaring_line_once() {
    let d = tmpdir("datafile");
    let p =
        write(&d, "c.ff", "param N = 40\ninput  C[N] dense = file(\"c.mtx\")\noutput X[N] dense\nX(i) = C(i) * 2\n");
    let (code, _, err) = cli(&["run", &p]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("c.ff:2:1: input C: ") && err.contains("c.mtx: cannot read"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// The README's `input C[40] dense = file("c.mtx")`: a Matrix Market column or row fills a
/// vector, in array and coordinate form.
#[test]
fn matrix_market_vectors_fill_one_dimensional_inputs() {
    let d = tmpdir("vector");
    let values: Vec<f64> = (0..40).map(|i| if i % 3 == 0 { 0.0 } else { 0.25 * i as f64 }).collect();
    let array: String = values.iter().map(|v| format!("{v}\n")).collect();
    let coordinate: Vec<(usize, f64)> = values.iter().copied().enumerate().filter(|(_, v)| *v != 0.0).collect();
    let coord_text = |row: bool| -> String {
        coordinate
            .iter()
            .map(|(i, v)| if row { format!("1 {} {v}\n", i + 1) } else { format!("{} 1 {v}\n", i + 1) })
            .collect()
    };
    let files = [
        ("col_array.mtx", format!("%%MatrixMarket matrix array real general\n40 1\n{array}")),
        ("row_array.mtx", format!("%%MatrixMarket matrix array real general\n1 40\n{array}")),
        (
            "col_coord.mtx",
            format!("%%MatrixMarket matrix coordinate real general\n40 1 {}\n{}", coordinate.len(), coord_text(false)),
        ),
        (
            "row_coord.mtx",
            format!("%%MatrixMarket matrix coordinate real general\n1 40 {}\n{}", coordinate.len(), coord_text(true)),
        ),
    ];
    for (file, text) in files {
        write(&d, file, &text);
        for format in ["dense", "sparse"] {
            let src = format!("input  C[40] {format} = file(\"{file}\")\noutput X[40] dense\nX(i) = C(i) * 2\n");
            let p = write(&d, "vec.ff", &src);
            let (code, out, err) = cli(&["run", &p]);
            assert_eq!(code, 0, "{file} {format}: {err}{out}");
            let prog = fuseflow_ir::load(std::path::Path::new(&p), &Default::default()).unwrap();
            let c = fuseflow_ir::load_inputs(&prog, &d, 0).unwrap()["C"].to_coo();
            let mut dense = vec![0.0; 40];
            for k in 0..c.nnz() {
                dense[c.coords(k)[0] as usize] += c.vals[k];
            }
            assert_eq!(dense, values, "{file} {format}");
        }
    }
    // A vector of the wrong length is still a shape error.
    let p =
        write(&d, "short.ff", "input  C[39] dense = file(\"col_array.mtx\")\noutput X[39] dense\nX(i) = C(i) * 2\n");
    fails_with(&["run", &p], &["short.ff:1:1:", "input C", "[40, 1]", "[39]"]);
}

#[test]
fn unknown_functions_and_spaced_orders() {
    let d = tmpdir("functions");
    let p =
        write(&d, "tanh.ff", "input A[4, 4] dense = random(density=1)\noutput T[4, 4] dense\nT(i,j) = tanh(A(i,j))\n");
    fails_with(&["run", &p], &["tanh.ff:3:10:", "unknown function tanh", "relu", "sigmoid", "softmax"]);
    let p =
        write(&d, "tanh_index.ff", "input A[4] dense = random(density=1)\noutput T[4] dense\nT(i) = A(i) * tanh(i)\n");
    fails_with(&["run", &p], &["unknown function tanh"]);
    let (code, out, err) = cli(&["run", &example_path("spmm_gustavson.ff"), "--order", "i, k, j", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["groups"][0]["orders"], serde_json::json!([["i", "k", "j"]]));
}
