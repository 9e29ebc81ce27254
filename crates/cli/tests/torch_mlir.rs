//! MLIR written by torch-mlir itself (`crates/mlir/tests/fixtures/torch-mlir/`, made by
//! `scripts/gen-torch-mlir-fixtures.py`: the paper's models at tiny sizes and single ops,
//! exported with `torch_mlir.fx.export_and_import(..., output_type=LINALG_ON_TENSORS)`), run
//! without Python: every fixture either runs unfused and fully fused, verifies against the
//! reference evaluator and matches PyTorch's output (saved beside it) within float32
//! tolerance, or fails with one line naming the construct. The table of both outcomes is an
//! insta snapshot, so a construct that starts or stops working shows up as a diff.

use std::path::{Path, PathBuf};

use fuseflow::{run, RunConfig};
use fuseflow_compiler::Fusion;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlir/tests/fixtures/torch-mlir")
}

/// The fixture names, sorted.
fn names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .expect("fixture directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".mlir").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Relative error allowed against PyTorch (float32 results, our reference computes in f64).
const REL_TOL: f64 = 1e-4;
/// Absolute error allowed against PyTorch.
const ABS_TOL: f64 = 1e-5;

/// One row of the table: statements, groups unfused, cycles unfused and fused, or the error.
fn row(name: &str) -> String {
    let d = dir();
    let src = std::fs::read_to_string(d.join(format!("{name}.mlir"))).expect("fixture");
    let file = format!("{name}.mlir");
    // Arguments bound to the inputs PyTorch ran on (argK.npy), as `--input argK=FILE` does.
    let mut opts = fuseflow_mlir::Options::default();
    for k in 0.. {
        let p = d.join(format!("{name}.arg{k}.npy"));
        if !p.exists() {
            break;
        }
        opts.inputs.insert(format!("arg{k}"), p);
    }
    let t = match fuseflow_mlir::parse(&src, &file).and_then(|m| fuseflow_mlir::translate(&m, &file, &opts)) {
        Ok(t) => t,
        Err(e) => return format!("{name:<18} {:>5} {:>6} {:>8} {:>8}  {e}", "-", "-", "-", "-"),
    };
    let expected = fuseflow_tensor::read_any(&d.join(format!("{name}.out.npy"))).expect("PyTorch output");
    let expected = expected.to_dense();
    let mut cycles = Vec::new();
    let mut groups = 0;
    let mut refused = String::new();
    for fusion in [Fusion::Unfused, Fusion::Full] {
        let cfg = RunConfig { fusion: fusion.clone(), bind: t.bind.clone(), ..RunConfig::default() };
        let r = match run(&t.program, &d, &cfg) {
            Ok(r) => r,
            // Fusing a whole model into one graph may have no legal dataflow order (a compiler
            // limit, not the frontend's): recorded in the table; unfused must always run.
            Err(e) if fusion == Fusion::Full => {
                let e = e.to_string();
                let why = e.split_once(": no legal").map_or(e.as_str(), |(_, w)| w);
                refused = format!("; fully fused: no legal{}", why.split(" (").next().unwrap_or(why));
                cycles.push(0);
                continue;
            }
            Err(e) => panic!("{name} {fusion:?}: {e}"),
        };
        assert!(r.verified && r.checked, "{name} {fusion:?}: not verified: {:?}", r.reason);
        assert_eq!(r.outputs.len(), 1, "{name}: one output");
        let got = r.outputs.values().next().expect("an output").to_dense();
        assert_eq!(got.len(), expected.len(), "{name}: output size differs from PyTorch's");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= ABS_TOL + REL_TOL * e.abs(),
                "{name} {fusion:?}: element {i} is {g}, PyTorch gives {e}"
            );
        }
        if fusion == Fusion::Unfused {
            groups = r.groups.len();
        }
        cycles.push(r.cycles);
    }
    let full = if refused.is_empty() { cycles[1].to_string() } else { "-".to_string() };
    format!(
        "{name:<18} {:>5} {:>6} {:>8} {:>8}  runs, verified, matches PyTorch{refused}",
        t.program.user_stmts.len(),
        groups,
        cycles[0],
        full
    )
}

#[test]
fn torch_mlir_fixtures_run_and_match_pytorch_or_fail_in_one_line() {
    let names = names();
    assert!(names.len() >= 20, "the fixtures are missing: {names:?}");
    let mut table =
        format!("{:<18} {:>5} {:>6} {:>8} {:>8}  result\n", "fixture", "stmts", "groups", "unfused", "full");
    for n in &names {
        let r = row(n);
        assert!(!r.contains('\n'), "{n}: the error is not one line: {r}");
        table.push_str(&r);
        table.push('\n');
    }
    insta::assert_snapshot!("torch_mlir_table", table);
}
