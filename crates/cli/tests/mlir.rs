//! The MLIR frontend end to end: the same model written as index notation and as MLIR
//! compiles to the same statements up to names and, on the same data, gives the same cycles at
//! every fusion granularity (GCN, masked attention, and block-sparse (BSR) SpMM and attention,
//! fixtures in crates/mlir/tests/fixtures).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fuseflow::{run, RunConfig};
use fuseflow_compiler::Fusion;
use fuseflow_ir::{CheckedProgram, Expr, Role, Stmt};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mlir/tests/fixtures")
}

/// Tensors renamed `T0, T1, ...` in order of first appearance (left-hand side first), indices
/// `p0, p1, ...` by position on the left and in order of appearance on the right.
fn canonical(p: &CheckedProgram) -> (Vec<String>, BTreeMap<String, String>) {
    let mut tensors: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for st in &p.stmts {
        out.push(canon_stmt(st, &mut tensors, p));
    }
    (out, tensors)
}

fn canon_stmt(st: &Stmt, tensors: &mut BTreeMap<String, String>, p: &CheckedProgram) -> String {
    let mut idx: BTreeMap<String, String> = BTreeMap::new();
    let t = |name: &str, tensors: &mut BTreeMap<String, String>| {
        let n = tensors.len();
        let id = tensors.entry(name.to_string()).or_insert_with(|| format!("T{n}")).clone();
        let d = p.decl(name).expect("declared");
        let block = d.block.map(|b| format!(" block({b})")).unwrap_or_default();
        format!("{id}{:?}{}{block}", d.shape, fuseflow_ir::format_name(&d.format))
    };
    let lhs = t(&st.lhs.tensor, tensors);
    for i in &st.lhs.indices {
        let n = idx.len();
        idx.entry(i.clone()).or_insert_with(|| format!("p{n}"));
    }
    let lhs_idx: Vec<String> = st.lhs.indices.iter().map(|i| idx[i].clone()).collect();
    fn e(x: &Expr, idx: &mut BTreeMap<String, String>, f: &mut dyn FnMut(&str) -> String) -> String {
        let name = |i: &str, idx: &mut BTreeMap<String, String>| {
            let n = idx.len();
            idx.entry(i.to_string()).or_insert_with(|| format!("p{n}")).clone()
        };
        match x {
            Expr::Access(a) => {
                let is: Vec<String> = a.indices.iter().map(|i| name(i, idx)).collect();
                format!("{}({})", f(&a.tensor), is.join(","))
            }
            Expr::Const(c) => format!("{c}"),
            Expr::Unary(u, a) => format!("{u:?}({})", e(a, idx, f)),
            Expr::Binary(o, a, b) => format!("{o:?}({}, {})", e(a, idx, f), e(b, idx, f)),
            Expr::Reduce { op, index, body } => {
                let i = name(index, idx);
                format!("{op:?}({i}, {})", e(body, idx, f))
            }
        }
    }
    let rhs = e(&st.rhs, &mut idx, &mut |n| t(n, tensors));
    format!("{lhs}({}) = {rhs}", lhs_idx.join(","))
}

/// Runs `p` with the given inputs bound.
fn cycles(p: &CheckedProgram, bind: &[(String, fuseflow_tensor::Coo)], fusion: Fusion) -> u64 {
    let cfg = RunConfig { fusion: fusion.clone(), bind: bind.to_vec(), ..RunConfig::default() };
    let r = run(p, Path::new("."), &cfg).unwrap_or_else(|e| panic!("{}: {e}", p.file));
    assert!(r.verified && r.checked, "{} {fusion:?}: {:?}", p.file, r.reason);
    r.cycles
}

fn same_model(name: &str, groups: Vec<Vec<usize>>) {
    let ff = fuseflow_ir::load(&fixtures().join(format!("{name}.ff")), &BTreeMap::new()).unwrap();
    let mlir = fuseflow_mlir::load(&fixtures().join(format!("{name}.mlir")), &fuseflow_mlir::Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let m = &mlir.program;
    let (a, names_ff) = canonical(&ff);
    let (b, names_mlir) = canonical(m);
    assert_eq!(a, b, "{name}: the .ff and .mlir statements differ");
    assert_eq!(ff.user_stmts.len(), m.user_stmts.len());
    // The same data for corresponding inputs (by canonical name), generated once.
    let by_id: BTreeMap<&String, &String> = names_mlir.iter().map(|(n, id)| (id, n)).collect();
    let mut bind_ff = Vec::new();
    let mut bind_mlir = Vec::new();
    for d in ff.decls.iter().filter(|d| d.role == Role::Input) {
        let density = match &d.source {
            Some(fuseflow_ir::Source::Random { density, .. }) => *density,
            _ => 1.0,
        };
        let coo = fuseflow_tensor::random_coo(&d.shape, density, 7 + bind_ff.len() as u64).unwrap();
        let other = by_id[&names_ff[&d.name]];
        bind_mlir.push((other.clone(), coo.clone()));
        bind_ff.push((d.name.clone(), coo));
    }
    for fusion in [Fusion::Unfused, Fusion::Full, Fusion::Groups(groups)] {
        assert_eq!(
            cycles(&ff, &bind_ff, fusion.clone()),
            cycles(m, &bind_mlir, fusion.clone()),
            "{name} {fusion:?}: cycles differ"
        );
    }
}

#[test]
fn gcn_as_mlir_and_index_notation_agree() {
    same_model("gcn", vec![(0..4).collect(), (4..8).collect()]);
}

#[test]
fn attention_as_mlir_and_index_notation_agree() {
    same_model("attention", vec![vec![0, 1, 2], vec![3, 4]]);
}

#[test]
fn mlir_on_the_command_line() {
    let gcn = fixtures().join("gcn.mlir");
    let gcn = gcn.to_str().unwrap();
    let (code, out, err) = common::cli(&["run", gcn, "--fusion", "full", "--param", "D48=12", "--density", "adj=0.2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("params       D16=16 D24=24 D48=12 D7=7"), "{out}");
    assert!(out.contains("verified against the reference evaluator"), "{out}");
    let dir = std::env::temp_dir().join(format!("fuseflow-mlir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.mlir");
    std::fs::write(&bad, "module {\n  func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {\n    %0 = tensor.concat dim(0) %a : (tensor<4xf32>) -> tensor<4xf32>\n    return %0 : tensor<4xf32>\n  }\n}\n").unwrap();
    let bad = bad.to_str().unwrap();
    common::fails_with(&["run", bad], &["bad.mlir:3:10: `tensor.concat` at line 3: this operation is not supported"]);
    common::fails_with(
        &["graph", gcn, "--input", "nope=x.npz"],
        &["--input/--density nope", "arguments: adj, x, w1, b1, w2, b2"],
    );
    common::fails_with(&["run", gcn, "--param", "D5=2"], &["--param D5: no dimension of @forward has that size"]);
    let small = dir.join("x.mtx");
    std::fs::write(&small, "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n").unwrap();
    common::fails_with(
        &["run", gcn, "--input", &format!("x={}", small.display())],
        &["the file has shape [2, 2] but %x is declared [48, 24]"],
    );
    // An `--input` file is checked against the memory limit before it is read, as a program
    // file's sources are: 248 bytes of .npy need about 4 times that.
    let matmul = fixtures().join("torch-mlir/matmul.mlir");
    let arg0 = fixtures().join("torch-mlir/matmul.arg0.npy");
    let bind = format!("arg0={}", arg0.display());
    common::fails_with(
        &["run", matmul.to_str().unwrap(), "--input", &bind, "--mem-limit", "900"],
        &["matmul.mlir:2:22: --input arg0: reading", "(248 bytes to read) needs 992 B but the memory limit is 900 B"],
    );
    let (code, _, err) = common::cli(&["run", matmul.to_str().unwrap(), "--input", &bind, "--mem-limit", "1M"]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Rank-0 tensors (a scalar argument, reductions to a scalar, a 1x1 result) and a kernel of
/// constants only (fills read as data, one of them an all-zero sparse operand) run and verify
/// unfused and fully fused.
#[test]
fn scalars_and_constant_kernels_run_and_verify() {
    for name in ["scalar.mlir", "constants.mlir"] {
        let path = fixtures().join(name);
        let path = path.to_str().unwrap();
        for fusion in ["unfused", "full"] {
            let (code, out, err) = common::cli(&["run", path, "--fusion", fusion]);
            assert_eq!(code, 0, "{name} {fusion}: {err}");
            assert!(out.contains("verified against the reference evaluator"), "{name} {fusion}: {out}");
        }
    }
    // Sizes of a kernel of constants are parameters like any other: the fills follow them.
    let path = fixtures().join("constants.mlir");
    let (code, out, err) = common::cli(&["run", path.to_str().unwrap(), "--param", "D4=7", "--fusion", "full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("D4=7") && out.contains("verified against the reference evaluator"), "{out}");
}

/// A dynamic dimension tied to nothing static is a size parameter: `--param D<arg>_<dim>`
/// binds it and the run verifies; without it the run stops with one line (exit code 2).
#[test]
fn dynamic_sizes_run_and_verify() {
    let path = fixtures().join("dynamic.mlir");
    let path = path.to_str().unwrap();
    for fusion in ["unfused", "full"] {
        let (code, out, err) = common::cli(&["run", path, "--param", "Dw_1=5", "--fusion", fusion]);
        assert_eq!(code, 0, "{fusion}: {err}");
        assert!(out.contains("verified against the reference evaluator"), "{fusion}: {out}");
    }
    common::fails_with(
        &["run", path],
        &["dynamic.mlir:8:43: argument %w dimension 1 is dynamic (`?`): bind it with --input w=FILE or give --param Dw_1=N"],
    );
    // `?` sizes that reshapes splitting or merging dimensions determine.
    let path = fixtures().join("dynamic_reshape.mlir");
    for fusion in ["unfused", "full"] {
        let (code, out, err) = common::cli(&["run", path.to_str().unwrap(), "--fusion", fusion]);
        assert_eq!(code, 0, "dynamic_reshape {fusion}: {err}");
        assert!(out.contains("verified against the reference evaluator"), "dynamic_reshape {fusion}: {out}");
    }
}

/// A block encoding (BSR, DCSR of blocks, BSC) is our `bcsr(B)` / `bdcsr(B)` / `csc block(B)`: the same statements and
/// block sizes, and the same cycles at every granularity on the same data.
#[test]
fn block_sparse_models_as_mlir_and_index_notation_agree() {
    same_model("bsr_spmm", vec![vec![0]]);
    same_model("bsc_spmm", vec![vec![0]]);
    same_model("bsr_attention", vec![vec![0, 1, 2], vec![3, 4]]);
}

/// The report's figures (block size, cycles, tokens, FLOPs of every group, and the totals), not
/// the names of tensors and indices, which differ between the two files.
fn figures(out: &str) -> Vec<String> {
    let mut v = Vec::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (k, w) in words.iter().enumerate() {
            if matches!(*w, "block" | "cycles" | "tokens" | "flops") {
                v.push(format!("{w} {}", words.get(k + 1).unwrap_or(&"")));
            }
        }
    }
    v
}

/// On the command line, each block-sparse MLIR fixture runs blocked and verifies, with the same
/// cycles as its `.ff` twin (whose tensors carry the MLIR argument names, so the generated data
/// is the same).
#[test]
fn block_encodings_run_blocked_on_the_command_line() {
    for (name, block) in [("bsr_spmm", "block 2x2"), ("bsc_spmm", "block 2x2"), ("bsr_attention", "block 4x4")] {
        for fusion in ["unfused", "full"] {
            let mut figs = Vec::new();
            for ext in ["mlir", "ff"] {
                let path = fixtures().join(format!("{name}.{ext}"));
                let (code, out, err) = common::cli(&["run", path.to_str().unwrap(), "--fusion", fusion]);
                assert_eq!(code, 0, "{name}.{ext} {fusion}: {err}");
                assert!(out.contains("verified against the reference evaluator"), "{name}.{ext} {fusion}: {out}");
                assert!(out.contains(block), "{name}.{ext} {fusion}: no blocked group\n{out}");
                figs.push(figures(&out));
            }
            assert!(!figs[0].is_empty());
            assert_eq!(figs[0], figs[1], "{name} {fusion}: the .mlir and .ff runs differ");
        }
    }
}

/// An argument named by `torch.arg_name` is that tensor in the graph and reports, and
/// `--input`/`--density` bind it by that name or by its SSA name; the runs verify and, on the
/// same file, give the same cycles either way.
#[test]
fn named_arguments_bind_by_name_on_the_command_line() {
    let path = fixtures().join("named_args.mlir");
    let path = path.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("fuseflow-mlir-named-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let adj = dir.join("adj.mtx");
    std::fs::write(&adj, "%%MatrixMarket matrix coordinate real general\n8 8 3\n1 2 1.5\n4 4 1\n8 7 -2\n").unwrap();
    let mut figs = Vec::new();
    for key in ["adj", "arg0"] {
        let input = format!("{key}={}", adj.display());
        let (code, out, err) = common::cli(&["run", path, "--input", &input, "--density", "x=0.5", "--fusion", "full"]);
        assert_eq!(code, 0, "{key}: {err}");
        assert!(out.contains("verified against the reference evaluator"), "{key}: {out}");
        figs.push(figures(&out));
    }
    assert_eq!(figs[0], figs[1], "--input adj and --input arg0 bind differently");
    let (code, out, err) = common::cli(&["graph", path, "--stmt", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("input adj [8, 8]") && out.contains("input x [8, 4]"), "{out}");
    common::fails_with(
        &["run", path, "--input", &format!("adj={}", adj.display()), "--input", &format!("arg0={}", adj.display())],
        &["--input adj and --input arg0 name the same argument (arg0); give one of them"],
    );
    std::fs::remove_dir_all(&dir).ok();
}
