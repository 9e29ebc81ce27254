//! Parser and checker tests: success cases, implicit-reduction placement, one test per error
//! class, pretty-printer snapshots and a no-panic fuzz test.

use std::collections::BTreeMap;

use fuseflow_tensor::{Format, LevelFormat};
use proptest::prelude::*;

use crate::*;

const FILE: &str = "t.ein";

fn no_params() -> BTreeMap<String, i64> {
    BTreeMap::new()
}

fn parse_check(src: &str, params: &BTreeMap<String, i64>) -> Result<CheckedProgram, IrError> {
    check(parse(src, FILE, params)?)
}

fn ok(src: &str) -> CheckedProgram {
    parse_check(src, &no_params()).unwrap_or_else(|e| panic!("unexpected error: {e}\n{src}"))
}

fn err(src: &str) -> String {
    match parse_check(src, &no_params()) {
        Ok(p) => panic!("expected an error, got\n{}", pretty(&p)),
        Err(e) => e.to_string(),
    }
}

/// Asserts that an error message starts with `t.ein:LINE:COL: ` and mentions every needle.
fn assert_err(src: &str, line: u32, col: u32, needles: &[&str]) {
    let e = err(src);
    let prefix = format!("{FILE}:{line}:{col}: ");
    assert!(e.starts_with(&prefix), "expected prefix {prefix:?} in {e:?}");
    assert!(!e.contains('\n'), "multi-line message {e:?}");
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in {e:?}");
    }
}

/// The right-hand side of the last statement, printed.
fn rhs(src: &str) -> String {
    let p = ok(src);
    pretty_expr(&p.stmts.last().expect("a statement").rhs)
}

const SPMM: &str = "\
# SpMM, Gustavson order is the natural one
input  A[100, 80] dcsr = random(density=0.05)
input  B[80, 60]  dcsr = random(density=0.05, seed=7)
input  C[60]      dense = file(\"c.mtx\")
output X[100, 60] dcsr
temp   T[100, 60] csr

T(i,j) = A(i,k) * B(k,j)
X(i,j) = T(i,j) * C(j)
";

#[test]
fn brief_example_parses_and_checks() {
    let p = ok(SPMM);
    assert_eq!(p.file, FILE);
    assert_eq!(p.decls.len(), 5);
    let a = p.decl("A").unwrap();
    assert_eq!(a.shape, vec![100, 80]);
    assert_eq!(a.role, Role::Input);
    assert_eq!(a.format, Format::all_compressed(2));
    assert_eq!(a.source, Some(Source::Random { density: 0.05, seed: None }));
    assert_eq!(a.span, Span { line: 2, col: 1 });
    assert_eq!(p.decl("B").unwrap().source, Some(Source::Random { density: 0.05, seed: Some(7) }));
    assert_eq!(p.decl("C").unwrap().source, Some(Source::File { path: "c.mtx".into() }));
    assert_eq!(p.decl("X").unwrap().role, Role::Output);
    assert_eq!(p.decl("T").unwrap().role, Role::Temp);
    assert_eq!(p.decl("T").unwrap().format, Format::csr());
    assert_eq!(p.stmts.len(), 2);
    assert_eq!(p.stmts[0].span, Span { line: 8, col: 1 });
    assert_eq!(p.stmts[1].lhs.span, Span { line: 9, col: 1 });
    let sizes: Vec<(&str, usize)> = p.index_sizes[0].iter().map(|(k, &v)| (k.as_str(), v)).collect();
    assert_eq!(sizes, vec![("i", 100), ("j", 60), ("k", 80)]);
    assert_eq!(p.index_sizes[1].len(), 2);
    assert!(p.groups.is_empty());
}

#[test]
fn every_format_spelling() {
    use LevelFormat::{Compressed as C, Dense as D};
    let src = "\
input a[4,5] dense
input b[4,5] sparse = random(density=0.5)
input c[4,5] dcsr = random(density=0.5)
input d[3,4,5] csf = random(density=0.5)
input e[4,5] csr = random(density=0.5)
input f[4,5] csc = random(density=0.5)
input g[4,5] dcsc = random(density=0.5)
input h[3,4,5] (dense, compressed, compressed) = random(density=0.5)
input k[3,4,5] (d, c, d) order(2,0,1) = random(density=0.5)
input l[4,5] csr order(1,0) = random(density=0.5)
input m[4,5] DCSR order(0,1) = random(density=0.5)
input n[4] sparse = random(density=0.5)
input o[4,5] csc order(0,1) = random(density=0.5)
output y[] dense
y() = a(i,j) + b(i,j) + c(i,j) + e(i,j) + f(i,j) + g(i,j) + l(i,j) + m(i,j) + o(i,j) + d(x,i,j) + h(x,i,j) + k(x,i,j) + n(i)
";
    let p = ok(src);
    let f = |n: &str| p.decl(n).unwrap().format.clone();
    let fm = |levels: Vec<LevelFormat>, order: Vec<usize>| Format::new(levels, order).unwrap();
    assert_eq!(f("a"), Format::dense(2));
    assert_eq!(f("b"), Format::all_compressed(2));
    assert_eq!(f("c"), Format::all_compressed(2));
    assert_eq!(f("d"), Format::all_compressed(3));
    assert_eq!(f("e"), Format::csr());
    assert_eq!(f("f"), fm(vec![D, C], vec![1, 0]));
    assert_eq!(f("g"), fm(vec![C, C], vec![1, 0]));
    assert_eq!(f("h"), fm(vec![D, C, C], vec![0, 1, 2]));
    assert_eq!(f("k"), fm(vec![D, C, D], vec![2, 0, 1]));
    assert_eq!(f("l"), fm(vec![D, C], vec![1, 0]));
    assert_eq!(f("m"), Format::all_compressed(2));
    assert_eq!(f("n"), Format::all_compressed(1));
    assert_eq!(f("o"), Format::csr());
    // Dense inputs without a source default to random(density=1).
    assert_eq!(p.decl("a").unwrap().source, Some(Source::Random { density: 1.0, seed: None }));
    // Printing uses the canonical names.
    let names: Vec<String> = p.decls.iter().map(|d| format_name(&d.format)).collect();
    assert_eq!(
        names,
        [
            "dense",
            "dcsr",
            "dcsr",
            "csf",
            "csr",
            "csc",
            "dcsc",
            "(dense, compressed, compressed)",
            "(dense, compressed, dense) order(2,0,1)",
            "csc",
            "dcsr",
            "sparse",
            "csr",
            "dense"
        ]
    );
}

#[test]
fn params_set_dimensions_and_can_be_overridden() {
    let src = "\
param N = 10
param M = 3  # comment
input A[N, M] csr = random(density=0.5)
input x[M] dense
output y[N] dense
y(i) = A(i,j) * x(j)
";
    let p = ok(src);
    assert_eq!(p.decl("A").unwrap().shape, vec![10, 3]);
    let mut params = BTreeMap::new();
    params.insert("N".to_string(), 7);
    let p = parse_check(src, &params).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![7, 3]);
    assert_eq!(p.decl("y").unwrap().shape, vec![7]);
    assert_eq!(p.index_sizes[0]["i"], 7);

    params.insert("Q".to_string(), 7);
    let e = parse_check(src, &params).unwrap_err();
    assert_eq!(e.to_string(), "t.ein: parameter Q is given but not declared by a `param` line");

    let mut params = BTreeMap::new();
    params.insert("N".to_string(), 0);
    let e = parse_check(src, &params).unwrap_err().to_string();
    assert!(e.starts_with("t.ein:3:9: ") && e.contains("A") && e.contains("got 0"), "{e}");

    assert_err("input A[K] dense\n", 1, 9, &["unknown parameter K", "A"]);
    // A bare parameter name in an expression is its value.
    let p = ok("param D = 8\ninput x[D] dense\noutput y[D] dense\ny(i) = x(i) / D - D\n");
    assert_eq!(pretty_expr(&p.stmts[0].rhs), "x(i) / 8 - 8");
    assert_err("param A = 2\ninput A[2] dense\n", 2, 7, &["`A` is a parameter and cannot name a tensor"]);
    assert_err("input A[2] dense\nparam A = 2\n", 2, 7, &["parameter A has the name of a tensor"]);
    assert_err("param N = 2\nparam N = 3\n", 2, 7, &["parameter N is declared twice"]);
}

#[test]
fn scalars_with_and_without_parentheses() {
    let src = "\
input s[] dense = random(density=1)
input x[5] sparse = random(density=0.4)
output y[] dense
output z[] dense
y() = x(i) * s
z = 2 * y() - s() / 4
";
    let p = ok(src);
    assert_eq!(p.decl("s").unwrap().shape, Vec::<usize>::new());
    assert_eq!(p.decl("s").unwrap().format, Format::dense(0));
    assert_eq!(pretty_expr(&p.stmts[0].rhs), "sum(i, x(i)) * s()");
    assert_eq!(pretty_expr(&p.stmts[1].rhs), "2 * y() - s() / 4");
    assert!(p.index_sizes[1].is_empty());
}

#[test]
fn expressions_precedence_functions_and_constants() {
    let src = "\
input A[3,4] dense
input B[3,4] dense
output X[3,4] dense
X(i,j) = -A(i,j) * 2 + B(i,j) / (A(i,j) - 1e-5) - max(relu(A(i,j)), exp(B(i,j))) + neg(sigmoid(gelu(rsqrt(A(i,j))))) - -0.5 * (1 - 2 - 3)
";
    let p = ok(src);
    let e = &p.stmts[0].rhs;
    assert_eq!(
        pretty_expr(e),
        "-A(i,j) * 2 + B(i,j) / (A(i,j) - 0.00001) - max(relu(A(i,j)), exp(B(i,j))) + -sigmoid(gelu(rsqrt(A(i,j)))) - -0.5 * (1 - 2 - 3)"
    );
    // Left associativity: a - b - c is (a - b) - c.
    match e {
        Expr::Binary(BinOp::Sub, _, rhs) => match &**rhs {
            Expr::Binary(BinOp::Mul, c, _) => assert_eq!(**c, Expr::Const(-0.5)),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(rhs("input a[2] dense\noutput y[2] dense\ny(i) = a(i) - (a(i) - a(i))\n"), "a(i) - (a(i) - a(i))");
    assert_eq!(rhs("input a[2] dense\noutput y[2] dense\ny(i) = a(i) / (a(i) * a(i))\n"), "a(i) / (a(i) * a(i))");
    assert_eq!(rhs("input a[2] dense\noutput y[2] dense\ny(i) = -(a(i) + 1)\n"), "-(a(i) + 1)");
}

/// The user statements of each `fuse` group.
fn group_stmts(p: &CheckedProgram) -> Vec<Vec<usize>> {
    p.groups.iter().map(|g| g.stmts.clone()).collect()
}

#[test]
fn fuse_lines_name_groups() {
    let src = "\
input A[4,4] dense
temp T0[4,4] dense
temp T1[4,4] dense
temp T2[4,4] dense
output X[4,4] dense
fuse 0-2, 3
T0(i,j) = A(i,j) * 2
T1(i,j) = T0(i,j) + 1
T2(i,j) = T1(i,j) * T0(i,j)
X(i,j) = relu(T2(i,j))
";
    let p = ok(src);
    assert_eq!(group_stmts(&p), vec![vec![0, 1, 2], vec![3]]);
    assert_eq!(p.groups[1].span, Span { line: 6, col: 11 });
    assert!(pretty(&p).ends_with("fuse 0-2, 3\n"));
    let two_lines = src.replace("fuse 0-2, 3", "fuse 0-1\nfuse 2-3");
    assert_eq!(group_stmts(&ok(&two_lines)), vec![vec![0, 1], vec![2, 3]]);

    let out_of_range = src.replace("fuse 0-2, 3", "fuse 0-4");
    assert_err(&out_of_range, 6, 6, &["statement 4 does not exist"]);
    let overlap = src.replace("fuse 0-2, 3", "fuse 0-2, 2-3");
    assert_err(&overlap, 6, 11, &["statement 2", "two fusion groups"]);
    let reversed = src.replace("fuse 0-2, 3", "fuse 2-0");
    assert_err(&reversed, 6, 6, &["empty range 2-0"]);

    // A hand-built group that skips a statement lying between its members in the dependency
    // order is rejected by the checker; one that skips an independent statement is accepted.
    let mut prog = parse(&src.replace("fuse 0-2, 3\n", ""), FILE, &no_params()).unwrap();
    let at = Span { line: 9, col: 6 };
    prog.groups = vec![FuseGroup { stmts: vec![0, 2], span: at }];
    let e = check(prog.clone()).unwrap_err().to_string();
    assert!(e.starts_with("t.ein:9:6: fuse: group is not contiguous"), "{e}");
    assert!(e.contains("statement 1 (line 7)"), "{e}");
    let independent = "\
input A[4] dense
temp T0[4] dense
temp T1[4] dense
output X[4] dense
T0(i) = A(i) * 2
T1(i) = A(i) + 1
X(i) = T0(i) * T1(i)
";
    let mut prog = parse(independent, FILE, &no_params()).unwrap();
    prog.groups = vec![FuseGroup { stmts: vec![0, 2], span: at }];
    assert_eq!(group_stmts(&check(prog).unwrap()), vec![vec![0, 2]]);

    // The same group written on a `fuse` line with `+` (in any order), printed back as read.
    let written = format!("{independent}fuse 2+0, 1\n");
    let p = ok(&written);
    assert_eq!(group_stmts(&p), vec![vec![0, 2], vec![1]]);
    assert!(pretty(&p).ends_with("fuse 0+2, 1\n"), "{}", pretty(&p));
    assert_eq!(group_stmts(&ok(&pretty(&p))), vec![vec![0, 2], vec![1]]);
    assert_err(&format!("{independent}fuse 0+0-1\n"), 8, 6, &["statement 0 is twice in one group"]);
    // Through `+`, the dependent case is refused on the `fuse` line, naming the statement between.
    let e = crate::check(parse(&src.replace("fuse 0-2, 3", "fuse 0+2"), FILE, &no_params()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.ein:6:6: fuse: group is not contiguous"), "{e}");
}

#[test]
fn implicit_reduction_placement() {
    // SpMV plus bias: the sum covers only the product.
    assert_eq!(
        rhs("input A[4,5] csr = random(density=0.5)\ninput x[5] dense\ninput b[4] dense\noutput y[4] dense\ny(i) = A(i,j)*x(j) + b(i)\n"),
        "sum(j, A(i,j) * x(j)) + b(i)"
    );
    // SpMM.
    assert_eq!(
        rhs("input A[4,5] dense\ninput B[5,6] dense\noutput X[4,6] dense\nX(i,j) = A(i,k) * B(k,j)\n"),
        "sum(k, A(i,k) * B(k,j))"
    );
    // MTTKRP: k lands on B*C, l on the whole product.
    assert_eq!(
        rhs("input B[2,3,4] csf = random(density=0.5)\ninput C[3,5] dense\ninput D[4,5] dense\noutput A[2,5] dense\nA(i,j) = B(i,k,l)*C(k,j)*D(l,j)\n"),
        "sum(l, sum(k, B(i,k,l) * C(k,j)) * D(l,j))"
    );
    // (A·B)·C written in one statement: j is summed inside, k outside.
    assert_eq!(
        rhs("input A[2,3] dense\ninput B[3,4] dense\ninput C[4,5] dense\noutput X[2,5] dense\nX(i,l) = A(i,j)*B(j,k)*C(k,l)\n"),
        "sum(k, sum(j, A(i,j) * B(j,k)) * C(k,l))"
    );
    // With explicit parentheses the other way round, the nesting follows.
    assert_eq!(
        rhs("input A[2,3] dense\ninput B[3,4] dense\ninput C[4,5] dense\noutput X[2,5] dense\nX(i,l) = A(i,j)*(B(j,k)*C(k,l))\n"),
        "sum(j, A(i,j) * sum(k, B(j,k) * C(k,l)))"
    );
    // Two indices on the same node nest by first occurrence (outermost first).
    assert_eq!(
        rhs("input A[2,3,4] dense\ninput B[4,3] dense\noutput y[2] dense\ny(i) = A(i,j,k) * B(k,j)\n"),
        "sum(j, sum(k, A(i,j,k) * B(k,j)))"
    );
    assert_eq!(
        rhs("input A[2,4,3] dense\ninput B[3,4] dense\noutput y[2] dense\ny(i) = A(i,k,j) * B(j,k)\n"),
        "sum(k, sum(j, A(i,k,j) * B(j,k)))"
    );
    // An index used by a single access is reduced right at the access.
    assert_eq!(
        rhs("input A[4,5] dense\ninput b[4] dense\noutput y[4] dense\ny(i) = A(i,j) + b(i)\n"),
        "sum(j, A(i,j)) + b(i)"
    );
    assert_eq!(rhs("input A[4,5] dense\noutput y[4] dense\ny(i) = exp(A(i,j))\n"), "exp(sum(j, A(i,j)))");
    // A diagonal access counts both occurrences.
    assert_eq!(
        rhs("input A[4,4] dense\ninput B[4,4] dense\noutput y[4] dense\ny(i) = A(i,j) * B(j,j)\n"),
        "sum(j, A(i,j) * B(j,j))"
    );
    // Explicit reductions are kept; implicit ones are added beside them.
    assert_eq!(
        rhs("input A[4,5] dense\ninput B[4,6] dense\ninput c[6] dense\noutput y[4] dense\ny(i) = maxr(j, A(i,j)) + B(i,k)*c(k)\n"),
        "maxr(j, A(i,j)) + sum(k, B(i,k) * c(k))"
    );
    // Implicit reductions inside an explicit one.
    assert_eq!(
        rhs("input A[4,5,6] dense\ninput c[6] dense\noutput y[4] dense\ny(i) = maxr(j, A(i,j,k) * c(k))\n"),
        "maxr(j, sum(k, A(i,j,k) * c(k)))"
    );
    // Full reduction to a scalar.
    assert_eq!(rhs("input A[4,5] dense\noutput s[] dense\ns = A(i,j) * A(i,j)\n"), "sum(i, sum(j, A(i,j) * A(i,j)))");
}

#[test]
fn softmax_in_explicit_steps() {
    let src = "\
input A[4,5] dense
temp m[4] dense
temp E[4,5] dense
temp s[4] dense
output Y[4,5] dense
m(i) = maxr(j, A(i,j))
E(i,j) = exp(A(i,j) - m(i))
s(i) = E(i,j)
Y(i,j) = E(i,j) / s(i)
";
    let p = ok(src);
    let printed: Vec<String> = p.stmts.iter().map(pretty_stmt).collect();
    assert_eq!(
        printed,
        ["m(i) = maxr(j, A(i,j))", "E(i,j) = exp(A(i,j) - m(i))", "s(i) = sum(j, E(i,j))", "Y(i,j) = E(i,j) / s(i)"]
    );
}

// ---- One test per error class -------------------------------------------------------------

const DECLS: &str = "\
input A[4,5] dcsr = random(density=0.5)
input B[5,6] dense
output X[4,6] dense
";

#[test]
fn error_unknown_tensor() {
    assert_err(&format!("{DECLS}X(i,j) = A(i,k) * Z(k,j)\n"), 4, 19, &["unknown tensor Z"]);
    assert_err(&format!("{DECLS}Q(i,j) = A(i,k) * B(k,j)\n"), 4, 1, &["unknown tensor Q"]);
}

#[test]
fn error_declared_twice() {
    assert_err(&format!("{DECLS}temp A[4,4] dense\n"), 4, 1, &["tensor A is declared twice", "line 1"]);
}

#[test]
fn error_arity() {
    assert_err(
        &format!("{DECLS}X(i,j) = A(i,k,l) * B(k,j)\n"),
        4,
        10,
        &["A has rank 2 but is accessed with 3 indices"],
    );
    assert_err(&format!("{DECLS}X(i) = A(i,k)\n"), 4, 1, &["X has rank 2 but is accessed with 1 indices"]);
}

#[test]
fn error_index_with_two_sizes() {
    assert_err(
        &format!("{DECLS}X(i,j) = A(i,k) * B(j,k)\n"),
        4,
        19,
        &["index k", "5 (A dimension 1)", "6 (B dimension 1)"],
    );
}

#[test]
fn error_lhs_indices_not_distinct() {
    let src = "input A[4,4] dense\noutput X[4,4] dense\nX(i,i) = A(i,i)\n";
    assert_err(src, 3, 1, &["index i appears twice on the left-hand side of X"]);
}

#[test]
fn error_lhs_is_input() {
    assert_err(&format!("{DECLS}B(k,j) = A(i,k) * B(k,j)\n"), 4, 1, &["cannot assign to input B"]);
}

#[test]
fn error_assigned_twice_or_never() {
    let src = format!("{DECLS}X(i,j) = A(i,k) * B(k,j)\nX(i,j) = A(i,k) * B(k,j)\n");
    assert_err(&src, 5, 1, &["X is assigned twice", "line 4"]);
    assert_err(&format!("{DECLS}temp T[4] dense\nX(i,j) = A(i,k) * B(k,j)\n"), 4, 1, &["temp T is never assigned"]);
}

#[test]
fn error_used_before_defined() {
    let src = "\
input A[4,4] dense
temp T[4,4] dense
output X[4,4] dense
X(i,j) = T(i,j) + 1
T(i,j) = A(i,j) * 2
";
    assert_err(src, 4, 10, &["T is used before it is defined", "line 5"]);
    let self_ref = "input A[4] dense\noutput X[4] dense\nX(i) = X(i) + A(i)\n";
    assert_err(self_ref, 3, 8, &["X is used before it is defined"]);
}

#[test]
fn error_lhs_index_missing_on_rhs() {
    assert_err(
        "input a[4] dense\noutput X[4,6] dense\nX(i,j) = a(i)\n",
        3,
        1,
        &["index j of X does not occur on the right-hand side"],
    );
    assert_err("input s[] dense\noutput y[3] dense\ny(i) = 2 * s\n", 3, 1, &["index i of y does not occur"]);
}

#[test]
fn error_lhs_shape_mismatch() {
    assert_err(
        "input A[4,5] dense\ninput B[5,6] dense\noutput X[4,7] dense\nX(i,j) = A(i,k) * B(k,j)\n",
        4,
        1,
        &["X dimension 1 has size 7", "index j has size 6", "B dimension 1"],
    );
}

#[test]
fn error_explicit_reduction_misuse() {
    assert_err(&format!("{DECLS}X(i,j) = sum(j, A(i,k) * B(k,j))\n"), 4, 17, &["sum(j, ...)", "left-hand side of X"]);
    assert_err(&format!("{DECLS}X(i,j) = sum(l, A(i,k) * B(k,j))\n"), 4, 17, &["index l does not occur in its body"]);
    assert_err(&format!("{DECLS}X(i,j) = sum(k, sum(k, A(i,k) * B(k,j)))\n"), 4, 24, &["index k is reduced twice"]);
    assert_err(&format!("{DECLS}X(i,j) = sum(k, A(i,k)) * B(k,j)\n"), 4, 27, &["index k", "also used outside"]);
}

#[test]
fn error_bad_formats() {
    assert_err("input A[2,3,4] csr = random(density=0.5)\n", 1, 16, &["format csr needs rank 2", "A has rank 3"]);
    assert_err("input A[2,3] (dense) = random(density=0.5)\n", 1, 14, &["format of A has 1 levels", "rank 2"]);
    assert_err(
        "input A[2,3] dcsr order(0,0) = random(density=0.5)\n",
        1,
        19,
        &["order(0,0) of A is not a permutation"],
    );
    assert_err("input A[2,3] dcsr order(0) = random(density=0.5)\n", 1, 19, &["order(...) of A has 1 entries"]);
    assert_err("input A[2,3] blocked = random(density=0.5)\n", 1, 14, &["unknown format `blocked` for A"]);
    assert_err("input A[2,3] (dense, hashed) = random(density=0.5)\n", 1, 22, &["unknown level format `hashed` for A"]);
    // Hand-built programs are re-validated by the checker.
    let mut p = parse("input A[2,3] dense\n", FILE, &no_params()).unwrap();
    p.decls[0].format = Format { levels: vec![LevelFormat::Dense; 2], mode_order: vec![1, 1] };
    assert!(check(p).unwrap_err().to_string().contains("not a permutation"));
}

#[test]
fn error_sources() {
    assert_err("input A[2,3] dcsr\n", 1, 7, &["input A needs a data source"]);
    assert_err("output A[2,3] dense = random(density=1)\n", 1, 8, &["only inputs take a data source", "A"]);
    assert_err("input A[2,3] dcsr = random(density=2)\n", 1, 36, &["density of A must be in [0, 1]"]);
    assert_err("input A[2,3] dcsr = random(dens=0.1)\n", 1, 28, &["unknown argument `dens`"]);
    assert_err("input A[2,3] dcsr = random(seed=1, seed=2)\n", 1, 36, &["seed given twice"]);
    assert_err("input A[2,3] dcsr = url(\"x\")\n", 1, 21, &["unknown data source `url`"]);
    assert_err("input A[2,3] dcsr = file(x)\n", 1, 26, &["expected a quoted path"]);
}

#[test]
fn error_syntax() {
    assert_err(&format!("{DECLS}X(i,j) = A(i,k) * \n"), 4, 18, &["expected an expression, found end of line"]);
    assert_err(&format!("{DECLS}X(i,j) = A(i,k) B(k,j)\n"), 4, 17, &["unexpected `B`"]);
    assert_err(&format!("{DECLS}X(i,j) = A(i,1) * B(k,j)\n"), 4, 14, &["expected an index variable"]);
    assert_err(&format!("{DECLS}X(i,j) = max(A(i,k))\n"), 4, 20, &["max takes two arguments"]);
    assert_err(&format!("{DECLS}X(i,j) = sum(A(i,k), B(k,j))\n"), 4, 15, &["`(`"]);
    assert_err(&format!("{DECLS}X(i,j) = exp\n"), 4, 13, &["after function exp"]);
    assert_err("input exp[2] dense\n", 1, 7, &["`exp` is a function name"]);
    assert_err("input A[2] dense\noutput y[2] dense\ny(i) = A(i) * 1e999\n", 3, 15, &["out of range"]);
    assert_err("x\n", 1, 2, &["expected `=`"]);
    let deep = format!("input A[2] dense\noutput y[2] dense\ny(i) = {}A(i){}\n", "(".repeat(500), ")".repeat(500));
    assert!(err(&deep).contains("nested deeper"));
    let long = format!("input A[2] dense\noutput y[2] dense\ny(i) = A(i){}\n", " + A(i)".repeat(500));
    assert!(err(&long).contains("nested deeper"));
}

// ---- Files and data -----------------------------------------------------------------------

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fuseflow-ir-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_reads_a_file_and_names_unreadable_paths() {
    let dir = temp_dir("load");
    let path = dir.join("p.ein");
    std::fs::write(&path, SPMM).unwrap();
    let p = load(&path, &no_params()).unwrap();
    assert_eq!(p.file, path.display().to_string());
    let e = load(&dir.join("missing.ein"), &no_params()).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(
        e.to_string().starts_with(&format!("{}: cannot read program file", dir.join("missing.ein").display())),
        "{e}"
    );
    std::fs::write(&path, "input A[2] dcsr\n").unwrap();
    let e = load(&path, &no_params()).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{}:1:7: input A needs", path.display())), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn load_inputs_builds_declared_formats() {
    let src = "\
input A[20, 30] csc = random(density=0.1)
input B[30] dense
input C[20, 30] dcsr = random(density=0.1, seed=5)
input s[] dense
output X[20] dense
X(i) = A(i,j) * B(j) + C(i,j) * s
";
    let p = ok(src);
    let t = load_inputs(&p, std::path::Path::new("."), 42).unwrap();
    assert_eq!(t.len(), 4);
    let a = &t["A"];
    assert_eq!(a.shape, vec![20, 30]);
    assert_eq!(a.format, p.decl("A").unwrap().format);
    assert_eq!(a.to_coo().nnz(), 60);
    a.validate().unwrap();
    assert_eq!(t["B"].vals.len(), 30);
    assert!(t["B"].vals.iter().all(|&v| v != 0.0));
    assert_eq!(t["s"].vals.len(), 1);
    // Same run seed, same data; another run seed changes derived seeds but not fixed ones.
    let again = load_inputs(&p, std::path::Path::new("."), 42).unwrap();
    assert_eq!(again, t);
    let other = load_inputs(&p, std::path::Path::new("."), 43).unwrap();
    assert_ne!(other["A"], t["A"]);
    assert_eq!(other["C"], t["C"]);
}

#[test]
fn load_inputs_reads_files_and_checks_shapes() {
    let dir = temp_dir("data");
    std::fs::write(
        dir.join("m.mtx"),
        "%%MatrixMarket matrix coordinate real general\n3 4 3\n1 1 1.5\n2 3 2.5\n3 4 -1\n",
    )
    .unwrap();
    let good = "input M[3,4] dcsr = file(\"m.mtx\")\noutput Y[3,4] dense\nY(i,j) = M(i,j)\n";
    let t = load_inputs(&ok(good), &dir, 0).unwrap();
    assert_eq!(t["M"].to_dense(), vec![1.5, 0., 0., 0., 0., 0., 2.5, 0., 0., 0., 0., -1.]);
    assert_eq!(t["M"].format, Format::all_compressed(2));

    let bad = good.replace("[3,4]", "[4,3]");
    let e = load_inputs(&ok(&bad), &dir, 0).unwrap_err().to_string();
    assert!(e.contains("input M") && e.contains("m.mtx") && e.contains("[3, 4]") && e.contains("[4, 3]"), "{e}");
    assert!(!e.contains('\n'));

    let missing = good.replace("m.mtx", "nope.mtx");
    let e = load_inputs(&ok(&missing), &dir, 0).unwrap_err().to_string();
    assert!(e.contains("input M") && e.contains("nope.mtx"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---- Pretty printing ----------------------------------------------------------------------

/// Printing and re-parsing gives the same program (up to positions).
fn assert_round_trip(p: &CheckedProgram) {
    let text = pretty(p);
    let q = parse_check(&text, &no_params()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(pretty(&q), text);
    assert_eq!(q.index_sizes, p.index_sizes);
    // The printed program is expanded, so its groups name the expanded statements.
    let expanded =
        |p: &CheckedProgram| -> Vec<Vec<usize>> { p.groups.iter().map(|g| p.expand_user_stmts(&g.stmts)).collect() };
    assert_eq!(expanded(&q), expanded(p));
    for (a, b) in p.decls.iter().zip(&q.decls) {
        assert_eq!(
            (&a.name, &a.shape, &a.format, a.role, &a.source),
            (&b.name, &b.shape, &b.format, b.role, &b.source)
        );
    }
    for (a, b) in p.stmts.iter().zip(&q.stmts) {
        assert_eq!(pretty_stmt(a), pretty_stmt(b));
    }
}

const GCN: &str = "\
# One GCN layer with a row softmax, in fused groups.
param N = 64
param F = 16
param H = 8
input  Adj[N, N] dcsr = random(density=0.05, seed=1)
input  X[N, F]   dense
input  W[F, H]   dense order(1,0)
input  b[H]      dense
temp   XW[N, H]  dense
temp   Z[N, H]   dense
temp   m[N]      dense
temp   E[N, H]   dense
temp   s[N]      dense
output Y[N, H]   dense

XW(i,h) = X(i,f) * W(f,h)
Z(i,h) = relu(Adj(i,j) * XW(j,h) + b(h))
m(i) = maxr(h, Z(i,h))
E(i,h) = exp(Z(i,h) - m(i))
s(i) = sum(h, E(i,h))
Y(i,h) = E(i,h) / s(i)
fuse 0-1, 2-5
";

const LAYERNORM_MTTKRP: &str = "\
param D = 12
input x[4, D] dense = file(\"x.npy\")
input g[D] dense
input B[3, 5, 6] (compressed, dense, compressed) order(0,2,1) = random(density=0.25)
input C[5, 7] csc = random(density=0.5)
input Dm[6, 7] dense
temp mu[4] dense
temp var[4] dense
output y[4, D] dense
output A[3, 7] sparse
mu(i) = x(i,d) / 12
var(i) = sum(d, (x(i,d) - mu(i)) * (x(i,d) - mu(i))) / 12
y(i,d) = (x(i,d) - mu(i)) * rsqrt(var(i) + 1e-5) * g(d)
A(i,j) = B(i,k,l) * C(k,j) * Dm(l,j)
";

#[test]
fn pretty_snapshots() {
    let spmm = ok(SPMM);
    assert_round_trip(&spmm);
    insta::assert_snapshot!("spmm", pretty(&spmm));
    let gcn = ok(GCN);
    assert_round_trip(&gcn);
    insta::assert_snapshot!("gcn_softmax", pretty(&gcn));
    let ln = ok(LAYERNORM_MTTKRP);
    assert_round_trip(&ln);
    insta::assert_snapshot!("layernorm_mttkrp", pretty(&ln));
}

#[test]
fn pretty_prints_awkward_constants() {
    let src = "input a[2] dense\noutput y[2] dense\ny(i) = a(i) * 1e-20 + 123456789012345 - 0.1\n";
    let p = ok(src);
    assert_eq!(pretty_expr(&p.stmts[0].rhs), "a(i) * 1e-20 + 1.23456789012345e14 - 0.1");
    assert_round_trip(&p);
}

// ---- Sparsity-aware operators -------------------------------------------------------------

#[test]
fn nonzero_operators_parse_print_and_apply() {
    let src = "\
input A[4,5] dcsr = random(density=0.5)
input m[4] dense
output E[4,5] dcsr
output M[4] dense
output S[4,5] dcsr
E(i,j) = expnz(A(i,j) * 2)
M(i) = maxnz(j, A(i,j) * 2) + maxr(j, A(i,j))
S(i,j) = expsubnz(A(i,j), m(i)) + expsubnz(A(i,j) - 1, m(i) * 2)
";
    let p = ok(src);
    let printed: Vec<String> = p.stmts.iter().map(pretty_stmt).collect();
    assert_eq!(
        printed,
        [
            "E(i,j) = expnz(A(i,j) * 2)",
            "M(i) = maxnz(j, A(i,j) * 2) + maxr(j, A(i,j))",
            "S(i,j) = expsubnz(A(i,j), m(i)) + expsubnz(A(i,j) - 1, m(i) * 2)"
        ]
    );
    assert!(matches!(p.stmts[0].rhs, Expr::Unary(UnaryOp::ExpNz, _)));
    match &p.stmts[1].rhs {
        Expr::Binary(BinOp::Add, a, b) => {
            assert!(matches!(&**a, Expr::Reduce { op: ReduceOp::MaxNz, index, .. } if index == "j"));
            assert!(matches!(&**b, Expr::Reduce { op: ReduceOp::Max, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&p.stmts[2].rhs, Expr::Binary(BinOp::Add, a, _) if matches!(**a, Expr::Binary(BinOp::ExpSubNz, ..)))
    );
    assert_round_trip(&p);
    // An implicit reduction inside maxnz is placed inside it.
    assert_eq!(
        rhs("input A[4,5,3] dense\noutput m[4] dense\nm(i) = maxnz(j, A(i,j,k))\n"),
        "maxnz(j, sum(k, A(i,j,k)))"
    );

    // Exact values.
    assert_eq!(UnaryOp::ExpNz.apply(0.0), 0.0);
    assert_eq!(UnaryOp::ExpNz.apply(-0.0), 0.0);
    assert_eq!(UnaryOp::ExpNz.apply(1.0), 1f64.exp());
    assert_eq!(UnaryOp::ExpNz.apply(-2.5), (-2.5f64).exp());
    assert!(UnaryOp::ExpNz.preserves_zero());
    assert!(!UnaryOp::Exp.preserves_zero());
    assert_eq!(BinOp::ExpSubNz.apply(0.0, 3.0), 0.0);
    assert_eq!(BinOp::ExpSubNz.apply(0.0, f64::NAN), 0.0);
    assert_eq!(BinOp::ExpSubNz.apply(2.0, 2.0), 1.0);
    assert_eq!(BinOp::ExpSubNz.apply(2.0, 0.0), 2f64.exp());
    assert_eq!(BinOp::ExpSubNz.apply(-1.0, 0.5), (-1.5f64).exp());
    assert_eq!(
        (binary_name(BinOp::ExpSubNz), reduce_name(ReduceOp::MaxNz), unary_name(UnaryOp::ExpNz)),
        ("expsubnz", "maxnz", "expnz")
    );
    for name in ["expnz", "maxnz", "expsubnz", "softmax", "masked_softmax", "layernorm"] {
        assert!(RESERVED.contains(&name), "{name}");
    }
}

#[test]
fn erf_parses_prints_and_evaluates() {
    let p = ok("input a[3] dense\noutput y[3] dense\ny(i) = a(i) * (0.5 + 0.5 * erf(a(i) * 0.7071067811865476))\n");
    let mut found = false;
    fn has_erf(e: &Expr, found: &mut bool) {
        match e {
            Expr::Unary(UnaryOp::Erf, _) => *found = true,
            Expr::Unary(_, x) => has_erf(x, found),
            Expr::Binary(_, a, b) => {
                has_erf(a, found);
                has_erf(b, found);
            }
            Expr::Reduce { body, .. } => has_erf(body, found),
            Expr::Access(_) | Expr::Const(_) => {}
        }
    }
    has_erf(&p.stmts[0].rhs, &mut found);
    assert!(found, "erf(...) parses as UnaryOp::Erf");
    assert!(crate::pretty(&p).contains("erf(a(i) * 7.071067811865476e-1)"), "{}", crate::pretty(&p));
    assert_eq!(unary_name(UnaryOp::Erf), "erf");
    assert!(RESERVED.contains(&"erf"));
    assert!(UnaryOp::Erf.preserves_zero(), "erf(0) = 0 keeps sparsity");
    assert!((UnaryOp::Erf.apply(1.0) - 0.842_700_792_949_714_9).abs() < 1e-15);
    assert!((UnaryOp::Erf.apply(-0.5) + 0.520_499_877_813_046_5).abs() < 1e-15);
}

#[test]
fn error_nonzero_operator_misuse() {
    assert_err(
        &format!("{DECLS}X(i,j) = maxnz(j, A(i,k) * B(k,j))\n"),
        4,
        19,
        &["maxnz(j, ...)", "left-hand side of X"],
    );
    assert_err(&format!("{DECLS}X(i,j) = maxnz(k, A(i,k)) * B(k,j)\n"), 4, 29, &["index k", "also used outside"]);
    assert_err(&format!("{DECLS}X(i,j) = expsubnz(A(i,k) * B(k,j))\n"), 4, 34, &["expsubnz takes two arguments"]);
    assert_err(&format!("{DECLS}X(i,j) = maxnz(A(i,k), B(k,j))\n"), 4, 17, &["`(`"]);
    assert_err("input expnz[2] dense\n", 1, 7, &["`expnz` is a function name"]);
    assert_err("output maxnz[2] dense\n", 1, 8, &["`maxnz` is a function name"]);
    assert_err("temp softmax[2] dense\n", 1, 6, &["`softmax` is a function name"]);
}

// ---- Statement-level built-ins --------------------------------------------------------------

const SOFTMAX: &str = "\
# Attention scores, a row softmax and a per-head softmax over a 3-D tensor.
param N = 6
param H = 2
input  Q[N, 4]    dense
input  K[N, 4]    dense order(1,0)
input  S[H, N, N] csf = random(density=0.3)
temp   T[N, N]    dense
output Y[N, N]    dense
output P[H, N, N] (dense, dense, dense) order(1,0,2)
T(i,j) = Q(i,d) * K(j,d) / 2
Y(i,j) = softmax(j, T(i,j))
P(h,i,j) = softmax(j, S(h,i,j) + T(i,j))
";

const MASKED_SOFTMAX: &str = "\
# Sparse attention: scores only where the mask is stored, softmax over those entries.
param N = 8
input  Mask[N, N] dcsr = random(density=0.25, seed=3)
input  Q[N, 4]    dense
input  K[N, 4]    dense
output A[N, N]    dcsr
output C[N, N]    csc
A(i,j) = masked_softmax(j, Mask(i,j) * Q(i,d) * K(j,d))
C(i,j) = masked_softmax(i, Mask(i,j))
";

const LAYERNORM: &str = "\
param B = 2
param D = 12
input  X[B, 5, D] dense
input  R[B, 5, D] csf = random(density=0.5)
output Y[B, 5, D] dense
Y(b,t,d) = layernorm(d, X(b,t,d) + R(b,t,d))
";

/// Parses a program with built-ins and checks the expanded form: every statement ordinary,
/// temporaries declared right after their tensor with role Temp, and a clean round trip.
fn expanded(src: &str) -> CheckedProgram {
    let p = ok(src);
    assert_round_trip(&p);
    // The unchecked parse already has the expansion (the checker sees ordinary statements).
    let parsed = parse(src, FILE, &no_params()).unwrap();
    assert_eq!(parsed.stmts.len(), p.stmts.len());
    for d in p.decls.iter().filter(|d| d.name.contains("__")) {
        assert_eq!(d.role, Role::Temp, "{}", d.name);
        assert_eq!(d.source, None);
        let owner = d.name.split("__").next().unwrap();
        let at = p.decls.iter().position(|x| x.name == d.name).unwrap();
        let owner_at = p.decls.iter().position(|x| x.name == owner).unwrap();
        assert!(owner_at < at && p.decls[owner_at + 1..at].iter().all(|x| x.name.starts_with(&format!("{owner}__"))));
    }
    p
}

fn decl_summary(p: &CheckedProgram, name: &str) -> (Vec<usize>, String, Role) {
    let d = p.decl(name).unwrap_or_else(|| panic!("no {name}"));
    (d.shape.clone(), format_name(&d.format), d.role)
}

#[test]
fn builtin_softmax_expands() {
    let p = expanded(SOFTMAX);
    let printed: Vec<String> = p.stmts.iter().map(pretty_stmt).collect();
    assert_eq!(
        printed,
        [
            "T(i,j) = sum(d, Q(i,d) * K(j,d)) / 2",
            "Y__max(i) = maxr(j, T(i,j))",
            "Y__exp(i,j) = exp(T(i,j) - Y__max(i))",
            "Y__sum(i) = sum(j, Y__exp(i,j))",
            "Y(i,j) = Y__exp(i,j) / Y__sum(i)",
            "P__max(h,i) = maxr(j, S(h,i,j) + T(i,j))",
            "P__exp(h,i,j) = exp(S(h,i,j) + T(i,j) - P__max(h,i))",
            "P__sum(h,i) = sum(j, P__exp(h,i,j))",
            "P(h,i,j) = P__exp(h,i,j) / P__sum(h,i)",
        ]
    );
    assert_eq!(decl_summary(&p, "Y__max"), (vec![6], "dense".to_string(), Role::Temp));
    assert_eq!(decl_summary(&p, "Y__exp"), (vec![6, 6], "dense".to_string(), Role::Temp));
    assert_eq!(decl_summary(&p, "Y__sum"), (vec![6], "dense".to_string(), Role::Temp));
    // Row temporaries keep the left-hand side's mode order restricted to the row.
    assert_eq!(decl_summary(&p, "P__max"), (vec![2, 6], "dense order(1,0)".to_string(), Role::Temp));
    assert_eq!(decl_summary(&p, "P__exp"), (vec![2, 6, 6], "dense order(1,0,2)".to_string(), Role::Temp));
    // Every expanded statement carries the position of the built-in statement.
    assert!(p.stmts[1..5].iter().all(|s| s.span == Span { line: 11, col: 1 }));
    assert_eq!(p.index_sizes[2]["j"], 6);
    assert_eq!(p.index_sizes[6].get("d"), None);
    insta::assert_snapshot!("builtin_softmax", pretty(&p));
}

#[test]
fn builtin_masked_softmax_expands() {
    let p = expanded(MASKED_SOFTMAX);
    let printed: Vec<String> = p.stmts.iter().map(pretty_stmt).collect();
    assert_eq!(
        printed,
        [
            "A__max(i) = maxnz(j, sum(d, Mask(i,j) * Q(i,d) * K(j,d)))",
            "A__exp(i,j) = expsubnz(sum(d, Mask(i,j) * Q(i,d) * K(j,d)), A__max(i))",
            "A__sum(i) = sum(j, A__exp(i,j))",
            "A(i,j) = A__exp(i,j) / A__sum(i)",
            "C__max(j) = maxnz(i, Mask(i,j))",
            "C__exp(i,j) = expsubnz(Mask(i,j), C__max(j))",
            "C__sum(j) = sum(i, C__exp(i,j))",
            "C(i,j) = C__exp(i,j) / C__sum(j)",
        ]
    );
    // The full-shape temporary keeps the output's (sparse) format.
    assert_eq!(decl_summary(&p, "A__exp"), (vec![8, 8], "dcsr".to_string(), Role::Temp));
    assert_eq!(decl_summary(&p, "C__exp"), (vec![8, 8], "csc".to_string(), Role::Temp));
    assert_eq!(decl_summary(&p, "C__max"), (vec![8], "dense".to_string(), Role::Temp));
    match &p.stmts[1].rhs {
        Expr::Binary(BinOp::ExpSubNz, a, b) => {
            assert!(matches!(**a, Expr::Reduce { op: ReduceOp::Sum, .. }));
            assert!(matches!(&**b, Expr::Access(x) if x.tensor == "A__max" && x.span == Span { line: 8, col: 10 }));
        }
        other => panic!("{other:?}"),
    }
    insta::assert_snapshot!("builtin_masked_softmax", pretty(&p));
}

#[test]
fn builtin_layernorm_expands() {
    let p = expanded(LAYERNORM);
    let printed: Vec<String> = p.stmts.iter().map(pretty_stmt).collect();
    assert_eq!(
        printed,
        [
            "Y__mean(b,t) = sum(d, X(b,t,d) + R(b,t,d)) / 12",
            "Y__cen(b,t,d) = X(b,t,d) + R(b,t,d) - Y__mean(b,t)",
            "Y__var(b,t) = sum(d, Y__cen(b,t,d) * Y__cen(b,t,d)) / 12",
            "Y__rstd(b,t) = rsqrt(Y__var(b,t) + 0.00001)",
            "Y(b,t,d) = Y__cen(b,t,d) * Y__rstd(b,t)",
        ]
    );
    let names: Vec<&str> = p.decls.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["X", "R", "Y", "Y__mean", "Y__cen", "Y__var", "Y__rstd"]);
    assert_eq!(decl_summary(&p, "Y__rstd"), (vec![2, 5], "dense".to_string(), Role::Temp));
    assert_eq!(LAYERNORM_EPS, 1e-5);
    // D follows the size of the normalised index, including a parameter override.
    let mut params = BTreeMap::new();
    params.insert("D".to_string(), 7);
    let q = parse_check(LAYERNORM, &params).unwrap();
    assert_eq!(pretty_stmt(&q.stmts[0]), "Y__mean(b,t) = sum(d, X(b,t,d) + R(b,t,d)) / 7");
    insta::assert_snapshot!("builtin_layernorm", pretty(&p));
}

#[test]
fn builtin_rank_one_and_scalar_rows() {
    // A vector softmax: the row is empty and the statistics are scalars.
    let p = expanded("input x[5] sparse = random(density=0.5)\noutput y[5] dense\ny(j) = softmax(j, x(j))\n");
    assert_eq!(pretty_stmt(&p.stmts[0]), "y__max() = maxr(j, x(j))");
    assert_eq!(pretty_stmt(&p.stmts[3]), "y(j) = y__exp(j) / y__sum()");
    assert_eq!(decl_summary(&p, "y__sum"), (vec![], "dense".to_string(), Role::Temp));
    // Temporaries may be read by later statements.
    let p = expanded(
        "input x[3,5] dense\noutput y[3,5] dense\noutput s[3] dense\ny(i,j) = layernorm(j, x(i,j))\ns(i) = y__var(i) * 2\n",
    );
    assert_eq!(pretty_stmt(&p.stmts[5]), "s(i) = y__var(i) * 2");
}

#[test]
fn fuse_lines_name_source_statements() {
    let src = "\
input A[4,6] dcsr = random(density=0.5)
temp T[4,6] dcsr
temp Y[4,6] dcsr
temp L[4,6] dense
output X[4,6] dense
fuse 0-1, 2
fuse 3
T(i,j) = A(i,j) * 2
Y(i,j) = masked_softmax(j, T(i,j))
L(i,j) = layernorm(j, Y(i,j))
X(i,j) = relu(L(i,j))
";
    let p = ok(src);
    assert_eq!(p.stmts.len(), 11);
    // Groups stay in user numbering; user statement 0 is statement 0, 1 is 1-4, 2 is 5-9 and
    // 3 is 10.
    assert_eq!(group_stmts(&p), vec![vec![0, 1], vec![2], vec![3]]);
    let ranges: Vec<_> = p.user_stmts.iter().map(|u| (u.stmts.clone(), u.builtin)).collect();
    assert_eq!(ranges, vec![(0..1, None), (1..5, Some("masked_softmax")), (5..10, Some("layernorm")), (10..11, None)]);
    let expanded: Vec<Vec<usize>> = p.groups.iter().map(|g| p.expand_user_stmts(&g.stmts)).collect();
    assert_eq!(expanded, vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9], vec![10]]);
    assert_eq!(p.user_stmt_of(3), 1);
    assert_eq!(
        (p.stmt_label(0), p.stmt_label(3), p.stmt_label(9), p.stmt_label(10)),
        ("0".into(), "1.2".into(), "2.4".into(), "3".into())
    );
    assert_eq!(p.group_label(&(0..11).collect::<Vec<_>>()), "0-3");
    assert_eq!(p.group_label(&[0, 1, 2, 3, 4, 10]), "0-1+3");
    assert_eq!(p.group_label(&[2]), "1.1");
    assert_eq!(p.group_label(&[0, 1, 2]), "0+1.0+1.1");
    assert_eq!(p.user_stmts_of(&[3, 4, 5]), vec![1, 2]);
    assert!(pretty(&p).ends_with("fuse 0-4, 5-9, 10\n"), "{}", pretty(&p));
    assert_round_trip(&p);
    let parsed = parse(src, FILE, &no_params()).unwrap();
    assert_eq!(parsed.groups, p.groups);
    // A single built-in statement as a group.
    assert_eq!(group_stmts(&ok(&src.replace("fuse 0-1, 2\nfuse 3", "fuse 1"))), vec![vec![1]]);
    // Ranges and errors are about source statements.
    assert_err(&src.replace("fuse 3", "fuse 4"), 7, 6, &["statement 4 does not exist", "has 4 statements"]);
    assert_err(&src.replace("fuse 3", "fuse 2-3"), 7, 6, &["statement 2", "two fusion groups"]);
    // A source group that skips a dependent built-in is not contiguous after expansion either.
    let gap = src.replace("fuse 0-1, 2\nfuse 3", "fuse 0, 2");
    assert_eq!(group_stmts(&ok(&gap)), vec![vec![0], vec![2]]);
}

#[test]
fn error_unknown_function() {
    let base = "input A[4,5] dense\noutput Y[4,5] dense\n";
    let known = ["unknown function tanh", "relu", "gelu", "maxnz(k, e)", "layernorm(k, e)"];
    assert_err(&format!("{base}Y(i,j) = 2 * tanh(A(i,j))\n"), 3, 14, &known);
    // An index-like argument reads as a tensor access; well-known names still say function.
    assert_err(&format!("{base}Y(i,j) = A(i,j) * tanh(j)\n"), 3, 19, &known);
    assert_err(&format!("{base}Y(i,j) = foo(A(i,j) + 1)\n"), 3, 10, &["unknown function foo"]);
    assert_err(&format!("{base}Y(i,j) = foo(i,j)\n"), 3, 10, &["unknown tensor foo"]);
    // A declared tensor with a bad index list is a syntax error, not a function.
    assert_err(&format!("{base}Y(i,j) = A(i + 1, j)\n"), 3, 14, &["expected `,` or `)`"]);
}

#[test]
fn error_builtin_not_whole_rhs() {
    let base = "input A[4,5] dense\noutput Y[4,5] dense\n";
    assert_err(
        &format!("{base}Y(i,j) = 2 * softmax(j, A(i,j))\n"),
        3,
        14,
        &["softmax(...) must be the whole right-hand side", "Y(i,j) = softmax(j, ...)"],
    );
    assert_err(
        &format!("{base}Y(i,j) = softmax(j, A(i,j)) + 1\n"),
        3,
        29,
        &["softmax(...) must be the whole right-hand side", "`+` follows it"],
    );
    assert_err(&format!("{base}Y(i,j) = (layernorm(j, A(i,j)))\n"), 3, 11, &["layernorm(...) must be the whole"]);
    assert_err(&format!("{base}Y(i,j) = exp(masked_softmax(j, A(i,j)))\n"), 3, 14, &["masked_softmax(...) must be"]);
    assert_err(&format!("{base}Y(i,j) = softmax\n"), 3, 17, &["`(` after softmax"]);
    assert_err(
        &format!("{base}Y(i,j) = softmax(A(i,j))\n"),
        3,
        19,
        &["`,` (softmax takes an index and an expression)"],
    );
    assert_err(&format!("{base}Y(i,j) = softmax(2, A(i,j))\n"), 3, 18, &["index to normalise over"]);
    assert_err(&format!("{base}Y(i,j) = softmax(j, A(i,j)\n"), 3, 27, &["`)` closing softmax(...)"]);
}

#[test]
fn error_builtin_indices() {
    let base = "input A[4,5] dense\ninput v[5] dense\noutput Y[4,5] dense\n";
    assert_err(
        &format!("{base}Y(i,j) = softmax(k, A(i,k))\n"),
        4,
        18,
        &["softmax(k, ...): k is not an index of the left-hand side Y(i,j)"],
    );
    assert_err(
        &format!("{base}Y(i,j) = layernorm(j, sum(j, A(i,j)))\n"),
        4,
        20,
        &["layernorm(j, ...): index j does not occur in the argument"],
    );
    assert_err(
        &format!("{base}Y(i,j) = masked_softmax(j, v(j))\n"),
        4,
        1,
        &["index i of Y does not occur in the argument of masked_softmax(...)"],
    );
    assert_err(
        "input A[4,4] dense\noutput Y[4,4] dense\nY(i,i) = softmax(i, A(i,i))\n",
        3,
        1,
        &["index i appears twice on the left-hand side of Y"],
    );
    assert_err(&format!("{base}Y(i) = softmax(i, A(i,j))\n"), 4, 1, &["Y has rank 2 but is accessed with 1 indices"]);
    assert_err(
        &format!("{base}Y(j,i) = softmax(j, A(i,j))\n"),
        4,
        1,
        &["Y dimension 0 has size 4 but index j has size 5 (from A dimension 1)"],
    );
    // Errors inside the argument keep their own positions.
    assert_err(&format!("{base}Y(i,j) = softmax(j, A(i,j) * Z(j))\n"), 4, 30, &["unknown tensor Z"]);
    assert_err(&format!("{base}Y(i,j) = softmax(j, A(i,j) * v(i))\n"), 4, 30, &["index i is used with two sizes"]);
}

#[test]
fn error_builtin_names() {
    let base = "input A[4,5] dense\noutput Y[4,5] dense\n";
    assert_err(&format!("{base}Z(i,j) = softmax(j, A(i,j))\n"), 3, 1, &["unknown tensor Z"]);
    assert_err(&format!("{base}A(i,j) = softmax(j, A(i,j))\n"), 3, 1, &["cannot assign to input A"]);
    assert_err(
        &format!("{base}temp Y__exp[4,5] dense\nY(i,j) = softmax(j, A(i,j))\n"),
        4,
        1,
        &["softmax(...) declares the temporary Y__exp, but a tensor Y__exp is already declared at line 3"],
    );
    assert_err(
        &format!("param Y__rstd = 3\n{base}Y(i,j) = layernorm(j, A(i,j))\n"),
        4,
        1,
        &["declares the temporary Y__rstd, but Y__rstd is a parameter"],
    );
    assert_err(
        &format!("{base}Y(i,j) = softmax(j, A(i,j))\nY(i,j) = masked_softmax(j, A(i,j))\n"),
        4,
        1,
        &["Y is assigned twice (first at line 3)"],
    );
    assert_err(
        &format!("{base}Y(i,j) = softmax(j, A(i,j))\nY(i,j) = A(i,j)\n"),
        4,
        1,
        &["Y is assigned twice (first at line 3)"],
    );
    // Two outputs whose temporaries would collide.
    let src = "input A[4,5] dense\noutput Y[4,5] dense\noutput Y__max[4,5] dense\nY__max(i,j) = softmax(j, A(i,j))\nY(i,j) = layernorm(j, A(i,j))\n";
    assert!(ok(src).decl("Y__max__exp").is_some());
    let src = "input A[4,5] dense\noutput Y[4,5] dense\noutput Y__max[4,5] dense\nY(i,j) = softmax(j, A(i,j))\nY__max(i,j) = A(i,j)\n";
    assert_err(src, 4, 1, &["declares the temporary Y__max, but a tensor Y__max is already declared at line 3"]);
    // Assigning an auto-declared temporary yourself.
    let src = "input A[4,5] dense\noutput Y[4,5] dense\nY(i,j) = softmax(j, A(i,j))\nY__sum(i) = A(i,j)\n";
    assert_err(src, 4, 1, &["Y__sum is assigned twice (first at line 3)"]);
}

// ---- Fuzzing ------------------------------------------------------------------------------

const FRAGMENTS: &[&str] = &[
    "input",
    "output",
    "temp",
    "param",
    "fuse",
    "A",
    "B",
    "x",
    "i",
    "j",
    "k",
    "N",
    "[",
    "]",
    "(",
    ")",
    ",",
    "=",
    "+",
    "-",
    "*",
    "/",
    "3",
    "0",
    "0.5",
    "1e-5",
    "dense",
    "dcsr",
    "csr",
    "csc",
    "order",
    "random",
    "density",
    "seed",
    "file",
    "\"a.mtx\"",
    "sum",
    "maxr",
    "max",
    "exp",
    "relu",
    "expnz",
    "maxnz",
    "expsubnz",
    "softmax",
    "masked_softmax",
    "layernorm",
    "Y__max",
    "#",
    "\n",
    "\n",
    "\n",
    " ",
    "0-2",
    "s",
    "\"",
];

fn fuzz_one(src: &str) {
    // Must never panic; errors must be one line.
    match parse(src, FILE, &no_params()).and_then(check) {
        Ok(p) => {
            let text = pretty(&p);
            let q = parse_check(&text, &no_params()).unwrap_or_else(|e| panic!("reparse failed: {e}\n{text}"));
            assert_eq!(pretty(&q), text);
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_arbitrary_chars(chars in prop::collection::vec(any::<char>(), 0..120)) {
        fuzz_one(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn fuzz_token_soup(frags in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)) {
        fuzz_one(&frags.join(" "));
    }

    #[test]
    fn fuzz_mutated_programs(
        base in prop::sample::select(&[GCN, SOFTMAX, MASKED_SOFTMAX, LAYERNORM][..]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(FRAGMENTS), any::<bool>()), 1..6),
    ) {
        let mut src: Vec<char> = base.chars().collect();
        for (at, frag, delete) in edits {
            let pos = at.index(src.len() + 1);
            if delete && pos < src.len() {
                src.remove(pos);
            } else {
                for (n, c) in frag.chars().enumerate() {
                    src.insert(pos + n, c);
                }
            }
        }
        fuzz_one(&src.into_iter().collect::<String>());
    }
}

// ---- Presets ------------------------------------------------------------------------------

const PRESETS: &str = "\
# Presets may come before the parameters they set.
preset paper N=2708 M=1433
preset tiny N=2
param N = 10
param M = 3
input A[N, M] csr = random(density=0.5)
input x[M] dense
output y[N] dense
y(i) = A(i,j) * x(j) + M
";

fn with_preset(src: &str, preset: Option<&str>, params: &[(&str, i64)]) -> Result<CheckedProgram, IrError> {
    let overrides = Overrides {
        preset: preset.map(String::from),
        params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    };
    check(parse_with(src, FILE, &overrides)?)
}

#[test]
fn preset_replaces_defaults() {
    let p = ok(PRESETS);
    assert_eq!(p.decl("A").unwrap().shape, vec![10, 3]);
    let p = with_preset(PRESETS, Some("paper"), &[]).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![2708, 1433]);
    assert_eq!(p.index_sizes[0]["j"], 1433);
    // Bare parameter names in expressions see the preset's value too.
    assert_eq!(pretty_expr(&p.stmts[0].rhs), "sum(j, A(i,j) * x(j)) + 1433");
    // A preset that sets only some parameters keeps the others' defaults.
    let p = with_preset(PRESETS, Some("tiny"), &[]).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![2, 3]);
    // parse_with without a preset is parse.
    let p = with_preset(PRESETS, None, &[("N", 4)]).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![4, 3]);
    // Optional minus sign, as on `param` lines; the value is checked where it is used.
    let src = PRESETS.replace("preset tiny N=2", "preset neg N=-2");
    let e = with_preset(&src, Some("neg"), &[]).unwrap_err().to_string();
    assert!(e.starts_with("t.ein:6:9: ") && e.contains("got -2"), "{e}");
}

#[test]
fn explicit_params_win_over_the_preset() {
    let p = with_preset(PRESETS, Some("paper"), &[("M", 5)]).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![2708, 5]);
    let p = with_preset(PRESETS, Some("tiny"), &[("N", 7), ("M", 9)]).unwrap();
    assert_eq!(p.decl("A").unwrap().shape, vec![7, 9]);
    // Explicit parameters are still checked against the declarations.
    let e = with_preset(PRESETS, Some("paper"), &[("Q", 1)]).unwrap_err();
    assert_eq!(e.to_string(), "t.ein: parameter Q is given but not declared by a `param` line");
}

#[test]
fn unknown_preset_lists_the_available_ones() {
    let e = with_preset(PRESETS, Some("huge"), &[]).unwrap_err().to_string();
    assert_eq!(e, "t.ein: unknown preset `huge` (available: paper, tiny)");
    let e = with_preset("param N = 2\n", Some("paper"), &[]).unwrap_err().to_string();
    assert_eq!(e, "t.ein: unknown preset `paper` (the program has no `preset` lines)");
}

#[test]
fn preset_errors_name_the_line() {
    // Undeclared parameters are errors whether or not the preset is selected.
    let src = format!("{PRESETS}preset big N=5 K=3\n");
    for preset in [None, Some("paper"), Some("big")] {
        let e = with_preset(&src, preset, &[]).unwrap_err().to_string();
        assert_eq!(e, "t.ein:10:16: preset big: parameter K is not declared by a `param` line");
    }
    assert_err(&format!("{PRESETS}preset tiny N=3\n"), 10, 8, &["preset tiny is declared twice"]);
    assert_err(&format!("{PRESETS}preset x N=3 N=4\n"), 10, 14, &["preset x sets N twice"]);
    assert_err(&format!("{PRESETS}preset x\n"), 10, 9, &["expected `PARAM=VALUE` in preset x, found end of line"]);
    assert_err(&format!("{PRESETS}preset x N=3, M=4\n"), 10, 13, &["expected `PARAM=VALUE` in preset x, found `,`"]);
    assert_err(&format!("{PRESETS}preset x N 3\n"), 10, 12, &["expected `=`"]);
    assert_err(&format!("{PRESETS}preset x N=big\n"), 10, 12, &["an integer value for N in preset x"]);
    assert_err(&format!("{PRESETS}preset x N=1.5\n"), 10, 12, &["an integer value for N in preset x"]);
    // `preset` without a name is not a preset line (here: a statement missing its `=`).
    assert_err(&format!("{PRESETS}preset\n"), 10, 7, &["expected `=`"]);
}

#[test]
fn bigbird_arguments_take_parameters() {
    let src = "\
param S = 32
param B = 8
preset big S=64 B=16
input M[S, S] dcsr = bigbird(block=B, global=2, window=1, random=2)
input V[S] dense
output y[S] dense
y(i) = M(i,j) * V(j)
";
    let block = |p: &CheckedProgram| match p.decl("M").unwrap().source {
        Some(Source::BigBird { block, .. }) => block,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(block(&ok(src)), 8);
    assert_eq!(block(&with_preset(src, Some("big"), &[]).unwrap()), 16);
    assert_eq!(block(&with_preset(src, Some("big"), &[("B", 32)]).unwrap()), 32);
    assert_err(&src.replace("block=B", "block=K"), 4, 36, &["bigbird(...) of M: block: unknown parameter K"]);
    let e = with_preset(src, None, &[("B", -1)]).unwrap_err().to_string();
    assert!(e.starts_with("t.ein:4:36: ") && e.contains("block = B is -1"), "{e}");
    let e = with_preset(src, None, &[("B", 0)]).unwrap_err().to_string();
    assert!(e.contains("block must be positive"), "{e}");
}

#[test]
fn load_with_applies_a_preset() {
    let dir = temp_dir("preset");
    let path = dir.join("p.ein");
    std::fs::write(&path, PRESETS).unwrap();
    let o = Overrides { preset: Some("tiny".into()), params: BTreeMap::new() };
    assert_eq!(load_with(&path, &o).unwrap().decl("y").unwrap().shape, vec![2]);
    assert_eq!(load(&path, &no_params()).unwrap().decl("y").unwrap().shape, vec![10]);
}

// ---------------------------------------------------------------------------------------------
// `par` lines (parallel lanes)

const PAR_BASE: &str = "input A[4, 4] dense\ninput B[4, 4] dense\noutput X[4, 4] dense\nX(i,j) = A(i,k) * B(k,j)\n";

#[test]
fn par_lines_parse_print_and_reparse() {
    let p = ok(&format!("{PAR_BASE}par i=4, j=2\npar 0: k=3\n"));
    let got: Vec<(Option<usize>, &str, u32)> = p.pars.iter().map(|q| (q.group, q.index.as_str(), q.lanes)).collect();
    assert_eq!(got, vec![(None, "i", 4), (None, "j", 2), (Some(0), "k", 3)]);
    assert_eq!((p.pars[2].span.line, p.pars[2].span.col), (6, 8));
    let text = pretty(&p);
    assert!(text.contains("par i=4\npar j=2\npar 0: k=3\n"), "{text}");
    let again = ok(&text);
    let lanes = |p: &CheckedProgram| p.pars.iter().map(|q| (q.group, q.index.clone(), q.lanes)).collect::<Vec<_>>();
    assert_eq!(lanes(&again), lanes(&p));
}

/// `par` stays usable as a tensor name: only `par NAME =` and `par INT:` start a `par` line.
#[test]
fn par_as_a_tensor_name() {
    let p = ok("input A[3] dense\noutput par[3] dense\npar(i) = A(i)\n");
    assert!(p.pars.is_empty());
}

#[test]
fn par_errors() {
    assert_err(&format!("{PAR_BASE}par i=0\n"), 5, 7, &["par: i=0", "at least 1"]);
    assert_err(&format!("{PAR_BASE}par q=2\n"), 5, 5, &["par: index q is not an index of any statement", "i, j, k"]);
    assert_err(&format!("{PAR_BASE}par i=2, i=3\n"), 5, 10, &["index i is given twice"]);
    assert_err(&format!("{PAR_BASE}par i=5000\n"), 5, 7, &["at most 1024 lanes"]);
    assert_err(&format!("{PAR_BASE}par 1 i=2\n"), 5, 7, &["`:`"]);
}

#[test]
fn block_formats_and_clauses() {
    let p = ok("param B = 4\ninput M[8, 8] bdcsr(B) = random(density=0.5)\ninput A[8, 8] csr block(4, 4) = random(density=0.5)\n\
                input D[2, 8, 8] dense order(0,1,2) block(2) = random(density=1)\noutput X[8, 8] dense\nX(i,j) = M(i,j) * A(i,j)\n");
    let m = p.decl("M").unwrap();
    assert_eq!((m.block, m.format.levels.clone()), (Some(4), vec![LevelFormat::Compressed; 2]));
    let a = p.decl("A").unwrap();
    assert_eq!((a.block, a.format.mode_order.clone()), (Some(4), vec![0, 1]));
    assert_eq!(p.decl("D").unwrap().block, Some(2));
    assert_eq!(p.decl("X").unwrap().block, None);
    // Printed back as a clause, which parses to the same declaration.
    let text = pretty(&p);
    assert!(text.contains("input  M[8, 8] dcsr block(4)"), "{text}");
    let again = ok(&text);
    assert_eq!(
        again.decls.iter().map(|d| d.block).collect::<Vec<_>>(),
        p.decls.iter().map(|d| d.block).collect::<Vec<_>>()
    );
}

#[test]
fn bad_block_declarations() {
    assert_err(
        "input M[8, 8] bcsr(3) = random(density=0.5)\n",
        1,
        7,
        &["M cannot be blocked: block size 3 does not divide dimension 0 (size 8)"],
    );
    assert_err("input M[8, 8] bcsr(1) = random(density=0.5)\n", 1, 20, &["block size of M must be at least 2"]);
    assert_err("input M[8, 8] csr block(2, 4) = random(density=0.5)\n", 1, 28, &["only square blocks"]);
    assert_err("input M[8, 8] bcsr(2) block(2) = random(density=0.5)\n", 1, 23, &["has a block size already"]);
    assert_err("input M[8, 8, 8] bcsr(2) = random(density=0.5)\n", 1, 18, &["needs rank 2"]);
    assert_err(
        "input M[2, 8, 8] (dense, dense, compressed) order(1,0,2) block(2) = random(density=0.5)\n",
        1,
        7,
        &["M cannot be blocked", "innermost"],
    );
}
