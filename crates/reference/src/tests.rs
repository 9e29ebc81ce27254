//! Hand-computed cases for every construct, `compare` cases, and a differential test against a
//! naive dense evaluator.

use std::collections::BTreeMap;

use fuseflow_ir::{check, parse, BinOp, CheckedProgram, Expr, ReduceOp, Role};
use fuseflow_tensor::{Coo, Tensor};
use proptest::prelude::*;

use crate::*;

type Points<'a> = &'a [(&'a [u32], f64)];

fn program(src: &str, params: &BTreeMap<String, i64>) -> CheckedProgram {
    check(parse(src, "t.ein", params).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
}

fn coo(shape: &[usize], pts: Points) -> Coo {
    let mut c = Coo::new(shape.to_vec());
    for (coords, v) in pts {
        c.push(coords, *v);
    }
    c
}

/// A result's nonzero entries in logical order (sorted row-major, no duplicates, no zeros).
fn logical(t: &Tensor) -> Coo {
    let coo = t.to_coo();
    let mut idx: Vec<usize> = (0..coo.nnz()).filter(|&p| coo.vals[p] != 0.0).collect();
    idx.sort_by(|&a, &b| coo.coords(a).cmp(coo.coords(b)));
    let mut out = Coo::new(coo.shape.clone());
    for p in idx {
        out.push(coo.coords(p), coo.vals[p]);
    }
    out
}

/// [`evaluate`], every result in logical order and checked to be in its declared format.
fn eval_logical(p: &CheckedProgram, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Coo>, EvalError> {
    let got = evaluate(p, inputs)?;
    for (name, t) in &got {
        assert_eq!(t.format, p.decl(name).unwrap().format, "{name} is not in its declared format");
        t.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    Ok(got.iter().map(|(n, t)| (n.clone(), logical(t))).collect())
}

/// `f()` evaluating with sparse relations only.
fn sparse_only<T>(f: impl FnOnce() -> T) -> T {
    crate::eval::SPARSE_ONLY.with(|s| s.set(true));
    let r = f();
    crate::eval::SPARSE_ONLY.with(|s| s.set(false));
    r
}

/// [`eval_logical`] with sparse relations only.
fn eval_sparse_only(p: &CheckedProgram, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Coo>, EvalError> {
    sparse_only(|| eval_logical(p, inputs))
}

/// Evaluates `src` with the given input entries (each stored in its declared format).
fn run(src: &str, data: &[(&str, Points)]) -> BTreeMap<String, Coo> {
    let p = program(src, &BTreeMap::new());
    let mut inputs = BTreeMap::new();
    for (name, pts) in data {
        let d = p.decl(name).unwrap();
        inputs.insert(name.to_string(), Tensor::from_coo(&coo(&d.shape, pts), &d.format).unwrap());
    }
    eval_logical(&p, &inputs).unwrap_or_else(|e| panic!("{e}"))
}

/// The points of a result as `(coords, value)`, in the order returned.
fn points(c: &Coo) -> Vec<(Vec<u32>, f64)> {
    (0..c.nnz()).map(|p| (c.coords(p).to_vec(), c.vals[p])).collect()
}

fn expect(c: &Coo, pts: Points) {
    let want: Vec<(Vec<u32>, f64)> = pts.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
    assert_eq!(points(c), want);
}

const B_EX: Points = &[(&[0, 1], 1.0), (&[1, 0], 2.0), (&[1, 2], 3.0), (&[3, 1], 4.0), (&[3, 3], 5.0)];
const C_EX: Points = &[(&[0, 2], 6.0), (&[1, 0], 7.0), (&[1, 3], 8.0), (&[3, 3], 9.0)];
const X_EX: Points = &[(&[0, 0], 7.0), (&[0, 3], 8.0), (&[1, 2], 12.0), (&[3, 0], 28.0), (&[3, 3], 77.0)];

#[test]
fn spmm_matches_the_sam_semantics_example() {
    for (fb, fc) in [("dcsr", "dcsr"), ("dcsr", "dcsc"), ("csr", "dense"), ("dcsc", "csc")] {
        let src = format!("input B[4,4] {fb} = random(density=0.5)\ninput C[4,4] {fc} = random(density=0.5)\noutput X[4,4] dcsr\nX(i,j) = B(i,k) * C(k,j)\n");
        let out = run(&src, &[("B", B_EX), ("C", C_EX)]);
        expect(&out["X"], X_EX);
        assert_eq!(out["X"].shape, vec![4, 4]);
    }
    // The same product written with an explicit sum and the other way round.
    let src = "input B[4,4] dcsr = random(density=0.5)\ninput C[4,4] dcsr = random(density=0.5)\noutput X[4,4] dcsr\noutput Y[4,4] dense\nX(i,j) = sum(k, B(i,k) * C(k,j))\nY(j,i) = C(k,j) * B(i,k)\n";
    let out = run(src, &[("B", B_EX), ("C", C_EX)]);
    expect(&out["X"], X_EX);
    let yt: Vec<(Vec<u32>, f64)> = {
        let mut v: Vec<_> = X_EX.iter().map(|(k, v)| (vec![k[1], k[0]], *v)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(points(&out["Y"]), yt);
}

#[test]
fn spmv_with_bias() {
    let src = "input A[3,4] csr = random(density=0.5)\ninput x[4] dense\ninput b[3] dense\noutput y[3] dense\ny(i) = A(i,j) * x(j) + b(i)\n";
    let out = run(
        src,
        &[
            ("A", &[(&[0, 1], 2.0), (&[0, 3], 1.0), (&[2, 2], 4.0)]),
            ("x", &[(&[0], 1.0), (&[1], 10.0), (&[2], 100.0), (&[3], 1000.0)]),
            ("b", &[(&[1], 0.5), (&[2], -400.0)]),
        ],
    );
    expect(&out["y"], &[(&[0], 1020.0), (&[1], 0.5)]);
}

#[test]
fn add_broadcasts_over_missing_indices() {
    let src = "\
input A[2,3] dcsr = random(density=0.5)
input b[2] sparse = random(density=0.5)
output X[2,3] dense
output Y[2,3] dense
output Z[2,3] dense
X(i,j) = A(i,j) + b(i)
Y(i,j) = b(i) - A(i,j)
Z(i,j) = max(A(i,j), b(i))
";
    let out = run(src, &[("A", &[(&[0, 0], 1.0), (&[1, 2], -3.0)]), ("b", &[(&[1], 2.0)])]);
    expect(&out["X"], &[(&[0, 0], 1.0), (&[1, 0], 2.0), (&[1, 1], 2.0), (&[1, 2], -1.0)]);
    expect(&out["Y"], &[(&[0, 0], -1.0), (&[1, 0], 2.0), (&[1, 1], 2.0), (&[1, 2], 5.0)]);
    expect(&out["Z"], &[(&[0, 0], 1.0), (&[1, 0], 2.0), (&[1, 1], 2.0), (&[1, 2], 2.0)]);
    // Disjoint variables: an outer sum.
    let src = "input u[2] sparse = random(density=0.5)\ninput v[3] sparse = random(density=0.5)\noutput X[2,3] dense\nX(i,j) = u(i) + v(j)\n";
    let out = run(src, &[("u", &[(&[1], 1.0)]), ("v", &[(&[2], 10.0)])]);
    expect(&out["X"], &[(&[0, 2], 10.0), (&[1, 0], 1.0), (&[1, 1], 1.0), (&[1, 2], 11.0)]);
}

#[test]
fn adding_a_constant_densifies() {
    let src = "input A[2,2] dcsr = random(density=0.5)\noutput X[2,2] dense\nX(i,j) = A(i,j) + 1\n";
    let out = run(src, &[("A", &[(&[0, 1], -1.0)])]);
    expect(&out["X"], &[(&[0, 0], 1.0), (&[1, 0], 1.0), (&[1, 1], 1.0)]);
}

#[test]
fn exp_and_other_non_zero_preserving_functions_densify() {
    let src = "\
input A[2,2] dcsr = random(density=0.5)
output E[2,2] dense
output S[2,2] dense
output R[2,2] dense
output N[2,2] dcsr
E(i,j) = exp(A(i,j))
S(i,j) = sigmoid(A(i,j))
R(i,j) = relu(A(i,j)) + gelu(A(i,j))
N(i,j) = -A(i,j) + neg(A(i,j))
";
    let out = run(src, &[("A", &[(&[0, 1], 1.0), (&[1, 1], -2.0)])]);
    let e = std::f64::consts::E;
    expect(&out["E"], &[(&[0, 0], 1.0), (&[0, 1], e), (&[1, 0], 1.0), (&[1, 1], (-2.0f64).exp())]);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    expect(&out["S"], &[(&[0, 0], 0.5), (&[0, 1], sig(1.0)), (&[1, 0], 0.5), (&[1, 1], sig(-2.0))]);
    let gelu = fuseflow_ir::UnaryOp::Gelu;
    expect(&out["R"], &[(&[0, 1], 1.0 + gelu.apply(1.0)), (&[1, 1], gelu.apply(-2.0))]);
    expect(&out["N"], &[(&[0, 1], -2.0), (&[1, 1], 4.0)]);
}

#[test]
fn rsqrt_of_sparse_is_dense_infinity() {
    let src = "input a[3] sparse = random(density=0.5)\noutput r[3] dense\nr(i) = rsqrt(a(i))\n";
    let out = run(src, &[("a", &[(&[1], 4.0)])]);
    expect(&out["r"], &[(&[0], f64::INFINITY), (&[1], 0.5), (&[2], f64::INFINITY)]);
}

#[test]
fn max_reduce_counts_implicit_zeros() {
    let src = "input A[4,3] dcsr = random(density=0.5)\noutput m[4] dense\nm(i) = maxr(j, A(i,j))\n";
    let out = run(
        src,
        &[(
            "A",
            &[(&[0, 0], -1.0), (&[0, 1], -2.0), (&[1, 0], -1.0), (&[1, 1], -2.0), (&[1, 2], -3.0), (&[2, 0], 5.0)],
        )],
    );
    // Row 0 has an implicit zero (max 0, absent); row 1 is full (max -1); row 3 is empty.
    expect(&out["m"], &[(&[1], -1.0), (&[2], 5.0)]);
}

#[test]
fn division_only_where_both_are_present() {
    let src = "input a[3] sparse = random(density=0.5)\ninput b[3] dense\noutput q[3] dense\nq(i) = a(i) / b(i)\n";
    let out = run(src, &[("a", &[(&[0], 1.0), (&[1], 2.0)]), ("b", &[(&[0], 2.0), (&[2], 4.0)])]);
    expect(&out["q"], &[(&[0], 0.5)]);
}

#[test]
fn diagonal_access_and_scalars() {
    let src = "\
input A[3,3] dcsr = random(density=0.5)
input s[] dense
output d[3] dense
output t[] dense
output c[] dense
d(i) = A(i,i) * s
t = A(i,j) * 2
c() = 2 + 3 * 4
";
    let out = run(src, &[("A", &[(&[0, 0], 1.0), (&[0, 2], 5.0), (&[2, 2], 3.0)]), ("s", &[(&[], 10.0)])]);
    expect(&out["d"], &[(&[0], 10.0), (&[2], 30.0)]);
    expect(&out["t"], &[(&[], 18.0)]);
    expect(&out["c"], &[(&[], 14.0)]);
    assert_eq!(out["c"].shape, Vec::<usize>::new());
}

#[test]
fn sum_of_constant_and_unused_index() {
    // sum over an index that the body broadcasts over multiplies by its size.
    let src = "input A[2,5] dense\ninput b[2] sparse = random(density=0.5)\noutput y[2] dense\ny(i) = sum(j, A(i,j) * 0 + b(i))\n";
    let out = run(src, &[("A", &[(&[0, 0], 1.0)]), ("b", &[(&[1], 3.0)])]);
    expect(&out["y"], &[(&[1], 15.0)]);
}

#[test]
fn chained_statements_feed_later_ones() {
    let src = "\
input B[4,4] dcsr = random(density=0.5)
input C[4,4] dcsr = random(density=0.5)
temp T[4,4] dcsr
temp m[4] dense
output Y[4,4] dense
T(i,j) = B(i,k) * C(k,j)
m(i) = maxr(j, T(i,j))
Y(i,j) = T(i,j) / m(i)
";
    let out = run(src, &[("B", B_EX), ("C", C_EX)]);
    expect(&out["T"], X_EX);
    expect(&out["m"], &[(&[0], 8.0), (&[1], 12.0), (&[3], 77.0)]);
    expect(&out["Y"], &[(&[0, 0], 7.0 / 8.0), (&[0, 3], 1.0), (&[1, 2], 1.0), (&[3, 0], 28.0 / 77.0), (&[3, 3], 1.0)]);
    assert_eq!(out.len(), 3);
}

#[test]
fn softmax_rows() {
    let src = "\
input A[2,3] dcsr = random(density=0.5)
temp m[2] dense
temp E[2,3] dense
temp s[2] dense
output Y[2,3] dense
m(i) = maxr(j, A(i,j))
E(i,j) = exp(A(i,j) - m(i))
s(i) = E(i,j)
Y(i,j) = E(i,j) / s(i)
";
    let out = run(src, &[("A", &[(&[0, 0], 1.0), (&[0, 1], 2.0)])]);
    let (e0, e1, e2) = ((1.0f64 - 2.0).exp(), 1.0, (0.0f64 - 2.0).exp());
    let s0 = e0 + e1 + e2;
    let y = &out["Y"];
    assert_eq!(y.nnz(), 6);
    let dense = y.to_dense();
    for (got, want) in dense.iter().zip([e0 / s0, e1 / s0, e2 / s0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]) {
        assert!((got - want).abs() < 1e-15, "{dense:?}");
    }
}

#[test]
fn input_errors_are_typed() {
    let p = program("input A[2,2] dense\noutput X[2,2] dense\nX(i,j) = A(i,j)\n", &BTreeMap::new());
    assert_eq!(evaluate(&p, &BTreeMap::new()).unwrap_err(), EvalError::MissingInput { tensor: "A".into() });
    let mut inputs = BTreeMap::new();
    inputs
        .insert("A".to_string(), Tensor::from_coo(&Coo::new(vec![3, 2]), &fuseflow_tensor::Format::dense(2)).unwrap());
    let e = evaluate(&p, &inputs).unwrap_err();
    assert_eq!(e.to_string(), "input A has shape [3, 2] but is declared with shape [2, 2]");
    let mut bad = Tensor::from_coo(&Coo::new(vec![2, 2]), &fuseflow_tensor::Format::dense(2)).unwrap();
    bad.vals.pop();
    inputs.insert("A".to_string(), bad);
    assert!(matches!(evaluate(&p, &inputs), Err(EvalError::InvalidInput { .. })));
}

#[test]
fn huge_dense_expansion_is_refused() {
    let src = "input a[100000] sparse = random(density=0.5)\ninput b[100000] sparse = random(density=0.5)\noutput X[100000,100000] dense\nX(i,j) = exp(a(i) * b(j))\n";
    let p = program(src, &BTreeMap::new());
    let mut inputs = BTreeMap::new();
    for n in ["a", "b"] {
        inputs.insert(
            n.to_string(),
            Tensor::from_coo(&coo(&[100000], &[(&[1], 1.0)]), &p.decl(n).unwrap().format).unwrap(),
        );
    }
    assert!(matches!(evaluate(&p, &inputs), Err(EvalError::TooLarge { .. })));
}

#[test]
fn max_over_nonzeros_ignores_zeros() {
    let src = "input A[4,3] dcsr = random(density=0.5)\noutput m[4] dense\noutput r[4] dense\nm(i) = maxnz(j, A(i,j))\nr(i) = maxr(j, A(i,j))\n";
    let out = run(
        src,
        &[(
            "A",
            &[(&[0, 0], -1.0), (&[0, 1], -2.0), (&[1, 0], -1.0), (&[1, 1], -2.0), (&[1, 2], -3.0), (&[2, 0], 5.0)],
        )],
    );
    // Row 0 has an implicit zero, which maxnz ignores (maxr does not); row 3 has no entries.
    expect(&out["m"], &[(&[0], -1.0), (&[1], -1.0), (&[2], 5.0)]);
    expect(&out["r"], &[(&[1], -1.0), (&[2], 5.0)]);
    // Computed zeros are ignored too: A - A is zero everywhere, so the result is empty.
    let src =
        "input A[2,3] dcsr = random(density=0.5)\noutput m[2] dense\nm(i) = maxnz(j, A(i,j) - A(i,j) + A(i,j) * 0)\n";
    let out = run(src, &[("A", &[(&[0, 0], -1.0), (&[1, 2], 4.0)])]);
    expect(&out["m"], &[]);
}

#[test]
fn exp_of_nonzeros_keeps_sparsity() {
    let src = "input A[2,3] dcsr = random(density=0.5)\noutput E[2,3] dense\nE(i,j) = expnz(A(i,j) - 1)\n";
    // A - 1 is -1 where A is absent and 0 where A is 1; only the nonzeros are exponentiated.
    let out = run(src, &[("A", &[(&[0, 0], 1.0), (&[1, 1], 3.0)])]);
    let m1 = (-1.0f64).exp();
    expect(&out["E"], &[(&[0, 1], m1), (&[0, 2], m1), (&[1, 0], m1), (&[1, 1], 2f64.exp()), (&[1, 2], m1)]);
}

#[test]
fn exp_sub_follows_the_first_operand() {
    let src = "\
input A[2,3] dcsr = random(density=0.5)
input m[2] sparse = random(density=0.5)
input c[3,2] dcsr = random(density=0.5)
output X[2,3] dcsr
output W[2,3,2] csf
output V[2,3] dense
X(i,j) = expsubnz(A(i,j), m(i))
W(i,j,k) = expsubnz(A(i,j), c(j,k))
V(i,j) = expsubnz(m(i), A(i,j))
";
    let out = run(
        src,
        &[
            ("A", &[(&[0, 0], 1.0), (&[0, 2], 3.0), (&[1, 1], -2.0)]),
            ("m", &[(&[0], 3.0)]),
            ("c", &[(&[0, 1], 1.0), (&[2, 0], 3.0)]),
        ],
    );
    let e = f64::exp;
    // Where a == b the result is exp(0) = 1 (not 0); an absent b reads as 0.
    expect(&out["X"], &[(&[0, 0], e(-2.0)), (&[0, 2], 1.0), (&[1, 1], e(-2.0))]);
    // b has an index a lacks: a is broadcast over it.
    expect(
        &out["W"],
        &[
            (&[0, 0, 0], e(1.0)),
            (&[0, 0, 1], e(0.0)),
            (&[0, 2, 0], 1.0),
            (&[0, 2, 1], e(3.0)),
            (&[1, 1, 0], e(-2.0)),
            (&[1, 1, 1], e(-2.0)),
        ],
    );
    // a lacks an index b has: row 0 of m is broadcast over j, row 1 of m is absent.
    expect(&out["V"], &[(&[0, 0], e(2.0)), (&[0, 1], e(3.0)), (&[0, 2], 1.0)]);
}

#[test]
fn masked_softmax_by_hand() {
    let src = "input A[3,3] dcsr = random(density=0.5)\noutput Y[3,3] dcsr\nY(i,j) = masked_softmax(j, A(i,j))\n";
    let out = run(src, &[("A", &[(&[0, 0], 1.0), (&[0, 1], 2.0), (&[2, 1], -5.0)])]);
    let (a, b) = ((-1.0f64).exp(), 1.0);
    // Row 0: softmax over {1, 2} only; row 1: no entries; row 2: a single entry gives 1.
    expect(&out["Y"], &[(&[0, 0], a / (a + b)), (&[0, 1], b / (a + b)), (&[2, 1], 1.0)]);
    expect(&out["Y__max"], &[(&[0], 2.0), (&[2], -5.0)]);
    expect(&out["Y__sum"], &[(&[0], a + b), (&[2], 1.0)]);
    // The dense softmax of the same data counts the implicit zeros.
    let dense = run(&src.replace("masked_softmax", "softmax"), &[("A", &[(&[0, 0], 1.0), (&[0, 1], 2.0)])]);
    assert_eq!(dense["Y"].nnz(), 9);
}

#[test]
fn layernorm_by_hand() {
    let src = "input x[2,3] dcsr = random(density=0.5)\noutput y[2,3] dense\ny(i,j) = layernorm(j, x(i,j))\n";
    let out = run(src, &[("x", &[(&[0, 0], 1.0), (&[0, 1], 2.0), (&[0, 2], 3.0)])]);
    let r = 1.0 / (2.0f64 / 3.0 + 1e-5).sqrt();
    // Row 1 is constant (all zero): centred values are 0, so the row is 0.
    expect(&out["y"], &[(&[0, 0], -r), (&[0, 2], r)]);
    expect(&out["y__mean"], &[(&[0], 2.0)]);
    let rstd = points(&out["y__rstd"]);
    assert_eq!(rstd.len(), 2);
    assert!((rstd[1].1 - 1.0 / 1e-5f64.sqrt()).abs() < 1e-9);
}

// ---- compare ------------------------------------------------------------------------------

#[test]
fn compare_treats_zeros_duplicates_and_specials_as_values() {
    let e = coo(&[2, 3], &[(&[0, 1], 1.0), (&[1, 2], f64::NAN), (&[1, 0], f64::INFINITY)]);
    let a = coo(
        &[2, 3],
        &[(&[1, 0], f64::INFINITY), (&[0, 0], 0.0), (&[1, 2], f64::NAN), (&[0, 1], 0.25), (&[0, 1], 0.75)],
    );
    let c = compare(&e, &a, 0.0, 0.0);
    assert!(c.ok, "{c}");
    assert_eq!((c.mismatches, c.max_abs_error, c.max_rel_error), (0, 0.0, 0.0));
}

#[test]
fn compare_reports_first_mismatch_and_errors() {
    let e = coo(&[4, 5], &[(&[0, 0], 2.0), (&[3, 4], 1.25), (&[2, 2], 1.0)]);
    let a = coo(&[4, 5], &[(&[0, 0], 2.0 + 1e-12), (&[2, 2], 1.5), (&[1, 1], -1.0)]);
    let c = compare_named("X", &e, &a, 1e-9, 0.0);
    assert!(!c.ok);
    assert_eq!(c.mismatches, 3);
    assert_eq!(c.first_mismatch.as_deref(), Some("X(1,1): expected 0, got -1"));
    assert_eq!(c.max_abs_error, 1.25);
    assert_eq!(c.max_rel_error, 1.0);
    let c = compare(&e, &a, 1e-9, 0.0);
    assert_eq!(c.first_mismatch.as_deref(), Some("(1,1): expected 0, got -1"));
    // Within tolerance.
    let a = coo(&[4, 5], &[(&[0, 0], 2.0 + 1e-12), (&[2, 2], 1.0), (&[3, 4], 1.25)]);
    let c = compare(&e, &a, 1e-9, 0.0);
    assert!(c.ok && c.max_abs_error > 0.0, "{c}");
    assert!(!compare(&e, &a, 0.0, 0.0).ok);
    assert!(compare(&e, &a, 0.0, 1e-11).ok);
}

#[test]
fn compare_nan_and_infinity_mismatches() {
    let e = coo(&[3], &[(&[0], f64::NAN), (&[1], f64::INFINITY), (&[2], f64::INFINITY)]);
    let a = coo(&[3], &[(&[0], 1.0), (&[1], f64::NEG_INFINITY), (&[2], 1e300)]);
    let c = compare(&e, &a, 1.0, 1.0);
    assert_eq!(c.mismatches, 3);
    assert_eq!(c.max_abs_error, f64::INFINITY);
    assert_eq!(c.first_mismatch.as_deref(), Some("(0): expected NaN, got 1"));
}

#[test]
fn compare_rejects_shape_mismatch_and_malformed_coo() {
    let c = compare_named("X", &Coo::new(vec![2, 2]), &Coo::new(vec![2, 3]), 0.0, 0.0);
    assert!(!c.ok);
    assert_eq!(c.first_mismatch.as_deref(), Some("X: shape mismatch: expected [2, 2], got [2, 3]"));
    let mut bad = Coo::new(vec![2]);
    bad.coords.push(5);
    bad.vals.push(1.0);
    let c = compare(&Coo::new(vec![2]), &bad, 0.0, 0.0);
    assert!(!c.ok && c.first_mismatch.unwrap().contains("actual tensor is malformed"));
    let scalar = coo(&[], &[(&[], 1.0)]);
    let c = compare_named("s", &scalar, &Coo::new(vec![]), 0.0, 0.0);
    assert_eq!(c.first_mismatch.as_deref(), Some("s(): expected 1, got 0"));
}

// ---- Size ---------------------------------------------------------------------------------

/// A seeded random sparse matrix (local generator: keeps this crate's tests independent of the
/// tensor crate's generator).
fn random_matrix(n: usize, m: usize, density: f64, seed: u64) -> Coo {
    let mut rng = Lcg(seed);
    let mut c = Coo::new(vec![n, m]);
    for i in 0..n {
        for j in 0..m {
            if rng.unit() < density {
                c.push(&[i as u32, j as u32], 0.1 + rng.unit());
            }
        }
    }
    c
}

#[test]
fn large_spmm_matches_a_direct_product() {
    let n = 2000;
    let src = "param N = 2000\ninput A[N,N] dcsr = random(density=0.01)\ninput B[N,N] dcsr = random(density=0.01)\noutput X[N,N] dcsr\nX(i,j) = A(i,k) * B(k,j)\n";
    let p = program(src, &BTreeMap::new());
    let mut inputs = BTreeMap::new();
    for (name, seed) in [("A", 1), ("B", 2)] {
        inputs.insert(
            name.to_string(),
            Tensor::from_coo(&random_matrix(n, n, 0.01, seed), &p.decl(name).unwrap().format).unwrap(),
        );
    }
    let out = evaluate(&p, &inputs).unwrap();
    // Spot-check one row against a direct computation.
    let a = inputs["A"].to_dense();
    let b = inputs["B"].to_dense();
    let x = out["X"].to_dense();
    for i in [0usize, 1234] {
        for j in 0..n {
            let want: f64 = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
            assert!((x[i * n + j] - want).abs() <= 1e-12 * want.abs().max(1.0));
        }
    }
}

// ---- Differential test against a naive dense evaluator ------------------------------------

/// A tiny deterministic generator for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
}

/// Dense row-major arrays by tensor name.
type DenseVals = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// Evaluates `e` at one assignment of the index variables by explicit loops.
fn dense_eval(e: &Expr, env: &mut BTreeMap<String, usize>, sizes: &BTreeMap<String, usize>, vals: &DenseVals) -> f64 {
    match e {
        Expr::Access(a) => {
            let (shape, data) = &vals[&a.tensor];
            let mut flat = 0;
            for (d, idx) in a.indices.iter().enumerate() {
                flat = flat * shape[d] + env[idx];
            }
            data[flat]
        }
        Expr::Const(c) => *c,
        Expr::Unary(op, a) => op.apply(dense_eval(a, env, sizes, vals)),
        Expr::Binary(op, a, b) => {
            let (x, y) = (dense_eval(a, env, sizes, vals), dense_eval(b, env, sizes, vals));
            match op {
                BinOp::Mul | BinOp::Div if x == 0.0 || y == 0.0 => 0.0,
                _ => op.apply(x, y),
            }
        }
        Expr::Reduce { op, index, body } => {
            let mut acc = if *op == ReduceOp::Sum { 0.0 } else { f64::NEG_INFINITY };
            let mut any_nonzero = false;
            for k in 0..sizes[index] {
                env.insert(index.clone(), k);
                let v = dense_eval(body, env, sizes, vals);
                match op {
                    ReduceOp::Sum => acc += v,
                    ReduceOp::Max => acc = acc.max(v),
                    ReduceOp::MaxNz if v != 0.0 => {
                        any_nonzero = true;
                        acc = acc.max(v);
                    }
                    ReduceOp::MaxNz => {}
                }
            }
            env.remove(index);
            if *op == ReduceOp::MaxNz && !any_nonzero {
                0.0
            } else {
                acc
            }
        }
    }
}

/// Runs every statement of `p` densely.
fn dense_program(p: &CheckedProgram, mut vals: DenseVals) -> DenseVals {
    let mut out = DenseVals::new();
    for (s, stmt) in p.stmts.iter().enumerate() {
        let shape = p.decl(&stmt.lhs.tensor).unwrap().shape.clone();
        let total: usize = shape.iter().product();
        let mut data = vec![0.0; total];
        for (flat, slot) in data.iter_mut().enumerate() {
            let mut env = BTreeMap::new();
            let mut rem = flat;
            for d in (0..shape.len()).rev() {
                env.insert(stmt.lhs.indices[d].clone(), rem % shape[d]);
                rem /= shape[d];
            }
            *slot = dense_eval(&stmt.rhs, &mut env, &p.index_sizes[s], &vals);
        }
        vals.insert(stmt.lhs.tensor.clone(), (shape.clone(), data.clone()));
        out.insert(stmt.lhs.tensor.clone(), (shape, data));
    }
    out
}

const TEMPLATES: &[&str] = &[
    // SpMV
    "input A[N,M] csr = random(density=0.5)\ninput x[M] sparse = random(density=0.5)\noutput y[N] dense\ny(i) = A(i,j) * x(j)\n",
    // SpMM
    "input A[N,K] dcsr = random(density=0.5)\ninput B[K,M] dcsc = random(density=0.5)\noutput X[N,M] dcsr\nX(i,j) = A(i,k) * B(k,j)\n",
    // SDDMM
    "input B[N,M] dcsr = random(density=0.5)\ninput C[N,K] dense\ninput D[K,M] dense\noutput X[N,M] dcsr\nX(i,j) = B(i,j) * C(i,k) * D(k,j)\n",
    // Elementwise add / sub / max
    "input A[N,M] dcsr = random(density=0.5)\ninput B[N,M] csr = random(density=0.5)\ninput C[N,M] dense\noutput X[N,M] dense\nX(i,j) = A(i,j) + B(i,j) - C(i,j) + max(A(i,j), C(i,j))\n",
    // MTTKRP
    "input B[N,K,L] csf = random(density=0.5)\ninput C[K,M] dense\ninput D[L,M] dense\noutput A[N,M] dense\nA(i,j) = B(i,k,l) * C(k,j) * D(l,j)\n",
    // Linear layer with bias and ReLU
    "input A[N,K] dcsr = random(density=0.5)\ninput W[K,M] dense order(1,0)\ninput b[M] sparse = random(density=0.5)\noutput Y[N,M] dense\nY(i,j) = relu(A(i,k) * W(k,j) + b(j))\n",
    // Transposed operands in elementwise operations
    "input A[N,M] dcsr = random(density=0.5)\ninput B[M,N] dcsc = random(density=0.5)\noutput X[M,N] dense\nX(j,i) = A(i,j) - B(j,i) * A(i,j) + exp(B(j,i)) / max(B(j,i), A(i,j))\n",
    // Softmax pieces
    "input A[N,M] dcsr = random(density=0.5)\ntemp m[N] dense\ntemp E[N,M] dense\ntemp s[N] dense\noutput Y[N,M] dense\nm(i) = maxr(j, A(i,j))\nE(i,j) = exp(A(i,j) - m(i))\ns(i) = E(i,j)\nY(i,j) = E(i,j) / s(i)\n",
    // Layer norm pieces
    "input x[N,M] dcsr = random(density=0.5)\ntemp mu[N] dense\ntemp var[N] dense\noutput y[N,M] dense\nmu(i) = x(i,d) / M\nvar(i) = sum(d, (x(i,d) - mu(i)) * (x(i,d) - mu(i))) / M\ny(i,d) = (x(i,d) - mu(i)) * rsqrt(var(i) + 0.00001)\n",
    // (A·B)·C in one statement, a diagonal, scalars and a broadcast outer sum
    "input A[N,K] dcsr = random(density=0.5)\ninput B[K,L] dcsr = random(density=0.5)\ninput C[L,M] dcsr = random(density=0.5)\ninput s[] dense\noutput X[N,M] dcsr\nX(i,l) = A(i,j) * B(j,k) * C(k,l) * s\n",
    "input A[N,N] dcsr = random(density=0.5)\ninput u[N] sparse = random(density=0.5)\ninput v[M] sparse = random(density=0.5)\noutput t[] dense\noutput X[N,M] dense\nt = A(i,i) * 2 - A(i,j) * u(j)\nX(i,j) = sigmoid(u(i) - v(j)) * gelu(v(j)) + t\n",
    // Sparsity-aware operators: expnz, maxnz (also over computed zeros and inside a contraction)
    // and expsubnz with the second operand broadcast either way.
    "input A[N,M] dcsr = random(density=0.5)\ninput B[N,M] csr = random(density=0.5)\ninput C[M,K] dcsr = random(density=0.5)\ninput u[N] sparse = random(density=0.5)\noutput X[N,M] dense\noutput y[N] dense\noutput z[N] dense\noutput W[N,M,K] csf\noutput V[N,M] dense\nX(i,j) = expnz(A(i,j) - B(i,j)) + expsubnz(B(i,j), u(i))\ny(i) = maxnz(j, A(i,j) - B(i,j)) - maxnz(j, u(i) * A(i,j))\nz(i) = maxnz(k, A(i,j) * C(j,k))\nW(i,j,k) = expsubnz(A(i,j), C(j,k))\nV(i,j) = expsubnz(u(i) - 1, A(i,j))\n",
    // The built-ins, as expanded programs (checked against the mathematical definitions in
    // `BUILTIN_CASES` as well).
    "input A[N,M] dcsr = random(density=0.5)\noutput Y[N,M] dense\noutput Z[N,M] dcsr\noutput Ln[N,M] dense\nY(i,j) = softmax(j, A(i,j))\nZ(i,j) = masked_softmax(j, A(i,j) * 2)\nLn(i,j) = layernorm(j, A(i,j))\n",
];

/// Parses a template with the parameters `N, M, K, L = dims` and builds random inputs for it
/// (per-tensor density from `densities`), both as tensors in their declared formats and as
/// dense arrays.
fn prepare(
    body: &str,
    dims: [usize; 4],
    seed: u64,
    densities: &[f64],
) -> (CheckedProgram, BTreeMap<String, Tensor>, DenseVals) {
    let params: BTreeMap<String, i64> =
        ["N", "M", "K", "L"].iter().zip(dims).map(|(n, d)| (n.to_string(), d as i64)).collect();
    let header: String = params.iter().map(|(n, d)| format!("param {n} = {d}\n")).collect();
    // Parameters not used by a template would be "given but not declared": all are declared by
    // the header, so that cannot happen.
    let text = header + body + "\n";
    let p = program(&text, &params);
    let mut rng = Lcg(seed);
    let mut dense = DenseVals::new();
    let mut inputs = BTreeMap::new();
    for (n, d) in p.decls.iter().filter(|d| d.role == Role::Input).enumerate() {
        let density = densities[n % densities.len()];
        let total: usize = d.shape.iter().product();
        let data: Vec<f64> = (0..total)
            .map(|_| {
                let keep = rng.unit() < density;
                let v = [-2.0, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0][(rng.next() % 8) as usize];
                if keep {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        inputs.insert(d.name.clone(), Tensor::from_dense(&d.shape, &data, &d.format).unwrap());
        dense.insert(d.name.clone(), (d.shape.clone(), data));
    }
    (p, inputs, dense)
}

/// Runs both evaluators and compares every result; returns the dense-loop results.
fn against_dense_loops(
    label: &str,
    p: &CheckedProgram,
    inputs: &BTreeMap<String, Tensor>,
    dense: DenseVals,
) -> (BTreeMap<String, Coo>, DenseVals) {
    let want = dense_program(p, dense);
    let got = eval_logical(p, inputs).unwrap_or_else(|e| panic!("{e}"));
    // The dense form of a value never changes a result: with sparse relations only, every
    // result is the same, bit for bit.
    let sparse = eval_sparse_only(p, inputs).unwrap_or_else(|e| panic!("{e}"));
    for (name, g) in &got {
        let s = &sparse[name];
        let bits = |c: &Coo| c.vals.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
        assert!(
            g.coords == s.coords && bits(g) == bits(s),
            "{label}: {name} differs in the sparse form\n{}",
            fuseflow_ir::pretty(p)
        );
    }
    assert_eq!(got.len(), want.len());
    for (name, (shape, data)) in &want {
        let expected = Coo::from_dense(shape, data).unwrap();
        let actual = &got[name];
        // Results are sorted row-major, duplicate-free and without zeros.
        for q in 1..actual.nnz() {
            assert!(actual.coords(q - 1) < actual.coords(q), "{name} not sorted");
        }
        assert!(actual.vals.iter().all(|&v| v != 0.0), "{name} stores a zero");
        let c = compare_named(name, &expected, actual, 1e-9, 1e-12);
        assert!(c.ok, "{label}: {c}\n{}", fuseflow_ir::pretty(p));
    }
    (got, want)
}

/// Builds random inputs for a template, runs both evaluators and compares every result.
fn differential(template: usize, dims: [usize; 4], seed: u64, densities: &[f64]) {
    let (p, inputs, dense) = prepare(TEMPLATES[template], dims, seed, densities);
    against_dense_loops(&format!("template {template}, dims {dims:?}"), &p, &inputs, dense);
}

// ---- Built-ins against their mathematical definitions ---------------------------------------

#[derive(Debug, Clone, Copy)]
enum Builtin {
    Softmax,
    MaskedSoftmax,
    LayerNorm,
}

/// A program whose last statement is `Y(...) = builtin(index at position axis, E)`, and `E`
/// computed directly from the dense inputs over `Y`'s shape (row-major).
struct BuiltinCase {
    src: &'static str,
    kind: Builtin,
    axis: usize,
    e: fn(&DenseVals, &[usize]) -> Vec<f64>,
}

/// The dense array of a tensor.
fn arr<'v>(v: &'v DenseVals, name: &str) -> &'v [f64] {
    &v[name].1
}

/// Row-major coordinates of every point of `shape`.
fn points_of(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut c = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                c[d] = flat % shape[d];
                flat /= shape[d];
            }
            c
        })
        .collect()
}

/// The built-in's definition along `axis` of a dense row-major array:
/// - softmax: `exp(x - max) / Σ exp(x - max)` over the whole line (zeros included);
/// - masked softmax: over the nonzero entries P of the line only, `exp(x - max_P) / Σ_P
///   exp(x - max_P)` on P and 0 elsewhere (an empty P gives a zero line);
/// - layernorm: `(x - mean) / sqrt(var + 1e-5)` with the population variance.
fn builtin_math(kind: Builtin, shape: &[usize], axis: usize, e: &[f64]) -> Vec<f64> {
    let n = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; e.len()];
    for base in (0..e.len()).filter(|b| (b / stride).is_multiple_of(n)) {
        let at: Vec<usize> = (0..n).map(|t| base + t * stride).collect();
        let xs: Vec<f64> = at.iter().map(|&q| e[q]).collect();
        let ys: Vec<f64> = match kind {
            Builtin::Softmax => {
                let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
                let s: f64 = ex.iter().sum();
                ex.iter().map(|x| x / s).collect()
            }
            Builtin::MaskedSoftmax => {
                let m = xs.iter().copied().filter(|&x| x != 0.0).fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = xs.iter().map(|&x| if x != 0.0 { (x - m).exp() } else { 0.0 }).collect();
                let s: f64 = ex.iter().sum();
                ex.iter().map(|&x| if x != 0.0 { x / s } else { 0.0 }).collect()
            }
            Builtin::LayerNorm => {
                let mean = xs.iter().sum::<f64>() / n as f64;
                let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
                xs.iter().map(|x| (x - mean) / (var + 1e-5).sqrt()).collect()
            }
        };
        for (q, y) in at.into_iter().zip(ys) {
            out[q] = y;
        }
    }
    out
}

const BUILTIN_CASES: &[BuiltinCase] = &[
    BuiltinCase {
        src: "input A[N,M] dcsr = random(density=0.5)\noutput Y[N,M] dense\nY(i,j) = softmax(j, A(i,j))\n",
        kind: Builtin::Softmax,
        axis: 1,
        e: |v, _| arr(v, "A").to_vec(),
    },
    BuiltinCase {
        src: "input A[N,M] dcsr = random(density=0.5)\ninput b[N] sparse = random(density=0.5)\noutput Y[N,M] dcsc\nY(i,j) = softmax(i, A(i,j) * 2 - b(i))\n",
        kind: Builtin::Softmax,
        axis: 0,
        e: |v, s| points_of(s).iter().map(|c| 2.0 * arr(v, "A")[c[0] * s[1] + c[1]] - arr(v, "b")[c[0]]).collect(),
    },
    BuiltinCase {
        src: "input Q[L,N,K] dense\ninput Kt[L,M,K] csf = random(density=0.5)\noutput Y[L,N,M] dense\nY(h,i,j) = softmax(j, Q(h,i,d) * Kt(h,j,d) / 2)\n",
        kind: Builtin::Softmax,
        axis: 2,
        e: |v, s| {
            let k = v["Q"].0[2];
            points_of(s)
                .iter()
                .map(|c| {
                    let (h, i, j) = (c[0], c[1], c[2]);
                    (0..k).map(|d| arr(v, "Q")[(h * s[1] + i) * k + d] * arr(v, "Kt")[(h * s[2] + j) * k + d]).sum::<f64>()
                        / 2.0
                })
                .collect()
        },
    },
    BuiltinCase {
        src: "input Mk[N,M] dcsr = random(density=0.5)\ninput Q[N,K] dense\ninput Kt[M,K] dense\noutput Y[N,M] dcsr\nY(i,j) = masked_softmax(j, Mk(i,j) * Q(i,d) * Kt(j,d))\n",
        kind: Builtin::MaskedSoftmax,
        axis: 1,
        e: |v, s| {
            let k = v["Q"].0[1];
            points_of(s)
                .iter()
                .map(|c| {
                    let (i, j) = (c[0], c[1]);
                    let dot: f64 = (0..k).map(|d| arr(v, "Q")[i * k + d] * arr(v, "Kt")[j * k + d]).sum();
                    arr(v, "Mk")[i * s[1] + j] * dot
                })
                .collect()
        },
    },
    BuiltinCase {
        // S - 1 is nonzero where S is absent and zero where S is 1: those entries drop out.
        src: "input S[L,N,M] csf = random(density=0.5)\noutput Y[L,N,M] csf\nY(h,i,j) = masked_softmax(i, S(h,i,j) - 1)\n",
        kind: Builtin::MaskedSoftmax,
        axis: 1,
        e: |v, _| arr(v, "S").iter().map(|x| x - 1.0).collect(),
    },
    BuiltinCase {
        src: "input x[N,M] dcsr = random(density=0.5)\noutput Y[N,M] dense\nY(i,j) = layernorm(j, x(i,j))\n",
        kind: Builtin::LayerNorm,
        axis: 1,
        e: |v, _| arr(v, "x").to_vec(),
    },
    BuiltinCase {
        src: "input X[L,N,M] csf = random(density=0.5)\ninput g[M] dense\noutput Y[L,N,M] dense\nY(b,t,d) = layernorm(d, X(b,t,d) * g(d) + 1)\n",
        kind: Builtin::LayerNorm,
        axis: 2,
        e: |v, s| points_of(s).iter().map(|c| arr(v, "X")[(c[0] * s[1] + c[1]) * s[2] + c[2]] * arr(v, "g")[c[2]] + 1.0).collect(),
    },
    BuiltinCase {
        src: "input x[N,M] dense\noutput Y[N,M] dense order(1,0)\nY(i,j) = layernorm(i, x(i,j))\n",
        kind: Builtin::LayerNorm,
        axis: 0,
        e: |v, _| arr(v, "x").to_vec(),
    },
];

/// Runs a built-in case through both evaluators (every expanded statement compared) and checks
/// the final output against the mathematical definition.
fn builtin_differential(case: usize, dims: [usize; 4], seed: u64, densities: &[f64]) {
    let c = &BUILTIN_CASES[case];
    let (p, inputs, dense) = prepare(c.src, dims, seed, densities);
    let label = format!("built-in case {case}, dims {dims:?}");
    let (got, _) = against_dense_loops(&label, &p, &inputs, dense.clone());
    let y = &p.stmts.last().expect("a statement").lhs.tensor;
    let shape = p.decl(y).unwrap().shape.clone();
    let want = builtin_math(c.kind, &shape, c.axis, &(c.e)(&dense, &shape));
    let expected = Coo::from_dense(&shape, &want).unwrap();
    let cmp = compare_named(y, &expected, &got[y], 1e-9, 1e-12);
    assert!(cmp.ok, "{label} ({:?}): {cmp}\n{}", c.kind, fuseflow_ir::pretty(&p));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn evaluate_matches_dense_loops(
        template in 0..TEMPLATES.len(),
        dims in [1usize..=5, 1usize..=5, 1usize..=5, 1usize..=5],
        seed in any::<u64>(),
        densities in prop::collection::vec(prop::sample::select(&[0.0, 0.2, 0.5, 0.8, 1.0][..]), 1..4),
    ) {
        differential(template, dims, seed, &densities);
    }

    #[test]
    fn builtins_match_their_definitions(
        case in 0..BUILTIN_CASES.len(),
        dims in [1usize..=5, 1usize..=5, 1usize..=5, 1usize..=5],
        seed in any::<u64>(),
        densities in prop::collection::vec(prop::sample::select(&[0.0, 0.2, 0.5, 0.8, 1.0][..]), 1..4),
    ) {
        builtin_differential(case, dims, seed, &densities);
    }
}

#[test]
fn every_template_at_extreme_densities() {
    for t in 0..TEMPLATES.len() {
        for d in [0.0, 1.0] {
            differential(t, [3, 4, 2, 5], 7, &[d]);
            differential(t, [1, 1, 1, 1], 7, &[d]);
        }
    }
    for c in 0..BUILTIN_CASES.len() {
        for d in [0.0, 0.5, 1.0] {
            builtin_differential(c, [3, 4, 2, 5], 7, &[d]);
            builtin_differential(c, [1, 1, 1, 1], 7, &[d]);
        }
    }
}

#[test]
fn wide_rows_are_summed_like_narrow_ones() {
    // j spans 2^17 values, past the row accumulator's dense workspace; the products of row 0
    // meet at j = 70000 and j = 131071 from two values of k, and cancel at j = 5.
    let src = "input A[2,3] dcsr = random(density=0.5)\ninput B[3,131072] dcsr = random(density=0.1)\noutput C[2,131072] dcsr\nC(i,j) = A(i,k) * B(k,j)\n";
    let a: Points = &[(&[0, 0], 2.0), (&[0, 2], 3.0), (&[1, 1], -1.0)];
    let b: Points = &[
        (&[0, 5], 3.0),
        (&[0, 70000], 1.0),
        (&[0, 131071], 0.5),
        (&[1, 9], 4.0),
        (&[2, 5], -2.0),
        (&[2, 70000], 10.0),
        (&[2, 131071], 1.0),
    ];
    let out = run(src, &[("A", a), ("B", b)]);
    expect(&out["C"], &[(&[0, 70000], 32.0), (&[0, 131071], 4.0), (&[1, 9], -4.0)]);
}

#[test]
fn joins_over_wide_shared_keys_search_instead_of_indexing() {
    // k spans 2^20 values, too many to index for a handful of points: the groups are found by
    // binary search, in place (`B(k)`, `C(k,j)`: k leads) and after regrouping (`D(j,k)`).
    let src = "input A[2,1048576] dcsr = random(density=0.1)\ninput B[1048576] sparse = random(density=0.1)\ninput C[1048576,3] dcsr = random(density=0.1)\ninput D[3,1048576] dcsr = random(density=0.1)\noutput X[2] dense\noutput Y[2,3] dense\noutput Z[2,3] dense\nX(i) = A(i,k) * B(k)\nY(i,j) = A(i,k) * C(k,j)\nZ(i,j) = A(i,k) * D(j,k)\n";
    let a: Points = &[(&[0, 7], 2.0), (&[0, 1000000], 3.0), (&[1, 7], -1.0), (&[1, 524288], 5.0)];
    let b: Points = &[(&[7], 10.0), (&[524288], 2.0), (&[1048575], 9.0)];
    let c: Points = &[(&[7, 0], 1.0), (&[7, 2], 4.0), (&[1000000, 2], 0.5), (&[524288, 1], 3.0)];
    let d: Points = &[(&[0, 7], 1.0), (&[1, 524288], 3.0), (&[2, 7], 4.0), (&[2, 1000000], 0.5)];
    let out = run(src, &[("A", a), ("B", b), ("C", c), ("D", d)]);
    expect(&out["X"], &[(&[0], 20.0)]); // row 1 cancels: -10 + 10
    expect(&out["Y"], &[(&[0, 0], 2.0), (&[0, 2], 9.5), (&[1, 0], -1.0), (&[1, 1], 15.0), (&[1, 2], -4.0)]);
    expect(&out["Z"], &[(&[0, 0], 2.0), (&[0, 2], 9.5), (&[1, 0], -1.0), (&[1, 1], 15.0), (&[1, 2], -4.0)]);
}

/// Inputs for `src` from per-tensor value functions of the flat row-major position.
fn dense_inputs(p: &CheckedProgram, f: impl Fn(&str, usize) -> f64) -> BTreeMap<String, Tensor> {
    let mut inputs = BTreeMap::new();
    for d in p.decls.iter().filter(|d| d.role == Role::Input) {
        let n: usize = d.shape.iter().product();
        let data: Vec<f64> = (0..n).map(|i| f(&d.name, i)).collect();
        inputs.insert(d.name.clone(), Tensor::from_dense(&d.shape, &data, &d.format).unwrap());
    }
    inputs
}

#[test]
fn dense_operands_with_zeros_contract_unless_a_zero_meets_an_infinity() {
    // 2048·32·16 = 2^20 products: a matrix product. X has zero rows (as A·H does for nodes
    // without neighbours); W is finite, then holds an infinity, which a stored zero of X must
    // not turn into NaN (the join never multiplies absent points).
    let src =
        "input X[2048,32] dense\ninput W[16,32] dense order(1,0)\noutput T[2048,16] dense\nT(i,c) = X(i,h) * W(c,h)\n";
    let p = program(src, &BTreeMap::new());
    let x = |i: usize| if (i / 32).is_multiple_of(3) { 0.0 } else { ((i * 7919) % 13) as f64 * 0.25 - 1.5 };
    for inf in [false, true] {
        let inputs = dense_inputs(&p, |n, i| match n {
            "X" => x(i),
            _ if inf && i == 5 => f64::INFINITY,
            _ => ((i * 31) % 11) as f64 * 0.5 - 2.0,
        });
        let got = eval_logical(&p, &inputs).unwrap();
        let sparse = eval_sparse_only(&p, &inputs).unwrap();
        let c = compare(&sparse["T"], &got["T"], 1e-12, 1e-12);
        assert!(c.ok, "infinity {inf}: {c}");
        assert!(got["T"].vals.iter().all(|v| !v.is_nan()), "infinity {inf}: a NaN");
    }
}

#[test]
fn dense_values_fit_where_sparse_points_do_not() {
    // 2^20 points: 32 MiB as sparse points, 8 MiB dense. The bias add, the reduction and the
    // division run on the dense form within 40 MiB; with sparse relations only they are refused.
    let src = "input T[1024,1024] dense\ninput b[1024] dense\noutput Z[1024,1024] dense\noutput S[1024] dense\noutput Y[1024,1024] dense\nZ(i,c) = T(i,c) + b(c)\nS(i) = sum(c, Z(i,c))\nY(i,c) = Z(i,c) / S(i)\n";
    let p = program(src, &BTreeMap::new());
    let inputs = dense_inputs(&p, |n, i| if n == "b" { 0.5 } else { (i % 17) as f64 + 1.0 });
    let control = EvalControl { budget: fuseflow_tensor::Budget::new(40 << 20), ..EvalControl::default() };
    let got = evaluate_with(&p, &inputs, &control).unwrap_or_else(|e| panic!("{e}"));
    let (z, s, y) = (&got["Z"].vals, &got["S"].vals, &got["Y"].vals);
    for (i, c) in [(0usize, 0usize), (5, 1000), (1023, 1023)] {
        let t = ((i * 1024 + c) % 17) as f64 + 1.0;
        assert_eq!(z[i * 1024 + c], t + 0.5);
        let sum: f64 = (0..1024).map(|c| ((i * 1024 + c) % 17) as f64 + 1.5).sum();
        assert!((s[i] - sum).abs() <= 1e-9 * sum);
        assert_eq!(y[i * 1024 + c], (t + 0.5) / s[i]);
    }
    let sparse = sparse_only(|| evaluate_with(&p, &inputs, &control));
    assert!(matches!(sparse, Err(EvalError::Memory(_))), "{sparse:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Comparing tensors where they lie reports exactly what comparing their COO forms does,
    /// whatever the two formats and mode orders.
    #[test]
    fn comparing_tensors_in_place_is_comparing_their_coo(
        shape in prop::collection::vec(1usize..=4, 1..=3),
        seed in any::<u64>(),
        formats in [any::<u8>(), any::<u8>()],
        close in any::<bool>(),
    ) {
        use fuseflow_tensor::{Format, LevelFormat};
        let mut rng = Lcg(seed | 1);
        let n: usize = shape.iter().product();
        let special = [0.0, -0.0, 1.0, -2.5, f64::NAN, f64::INFINITY, 3.0];
        let e: Vec<f64> = (0..n).map(|_| special[(rng.next() % 7) as usize]).collect();
        let a: Vec<f64> = e
            .iter()
            .map(|&v| match rng.next() % 8 {
                0 if !close => special[(rng.next() % 7) as usize],
                1 => v * (1.0 + 1e-13),
                _ => v,
            })
            .collect();
        let format = |bits: u8, dense: bool| {
            let rank = shape.len();
            let mut order: Vec<usize> = (0..rank).collect();
            if bits & 1 == 1 {
                order.reverse();
            }
            let levels = (0..rank)
                .map(|l| if dense || (bits >> (l + 1)) & 1 == 0 { LevelFormat::Dense } else { LevelFormat::Compressed })
                .collect();
            Format::new(levels, order).unwrap()
        };
        let expected = Tensor::from_dense(&shape, &e, &format(formats[0], true)).unwrap();
        let actual = Tensor::from_dense(&shape, &a, &format(formats[1], false)).unwrap();
        let fast = compare_tensors("T", &expected, &actual, 1e-9, 1e-12);
        let slow = compare_named("T", &expected.to_coo(), &actual.to_coo(), 1e-9, 1e-12);
        prop_assert_eq!(fast.mismatches, slow.mismatches);
        prop_assert_eq!(fast.ok, slow.ok);
        prop_assert_eq!(&fast.first_mismatch, &slow.first_mismatch);
        prop_assert_eq!(fast.max_abs_error.to_bits(), slow.max_abs_error.to_bits());
        prop_assert_eq!(fast.max_rel_error.to_bits(), slow.max_rel_error.to_bits());
    }
}
