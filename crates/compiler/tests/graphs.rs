//! Snapshot tests of emitted graphs (text dump). A change to lowering shows up here as a
//! reviewable diff; the end-to-end tests check that the graphs compute the right values.

use std::collections::BTreeMap;

use fuseflow_compiler::{legal_orders, lower_statement, LowerOptions};

fn graph(src: &str, order: &str) -> String {
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "snap.ff", &BTreeMap::new()).unwrap()).unwrap();
    let order: Vec<String> = order.split(',').map(String::from).collect();
    lower_statement(&p, 0, Some(&order), &LowerOptions::default()).unwrap().graph.to_text()
}

const SPMM_ROW: &str = "input A[4, 4] dcsr = random(density=0.5)\ninput B[4, 4] dcsr = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = A(i,k) * B(k,j)\n";
const SPMM_INNER: &str = "input A[4, 4] dcsr = random(density=0.5)\ninput B[4, 4] dcsc = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = A(i,k) * B(k,j)\n";
const SPMM_OUTER: &str = "input A[4, 4] dcsc = random(density=0.5)\ninput B[4, 4] dcsr = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = A(i,k) * B(k,j)\n";

#[test]
fn spmm_gustavson() {
    insta::assert_snapshot!(graph(SPMM_ROW, "i,k,j"));
}

#[test]
fn spmm_inner_product() {
    insta::assert_snapshot!(graph(SPMM_INNER, "i,j,k"));
}

#[test]
fn spmm_outer_product() {
    insta::assert_snapshot!(graph(SPMM_OUTER, "k,i,j"));
}

#[test]
fn spmv_csr_locate() {
    insta::assert_snapshot!(graph("input A[4, 4] csr = random(density=0.5)\ninput x[4] dense = random(density=0.5)\noutput y[4] dense\ny(i) = A(i,j) * x(j)\n", "i,j"));
}

#[test]
fn elementwise_add_union() {
    insta::assert_snapshot!(graph(
        "input B[4, 4] dcsr = random(density=0.5)\ninput C[4, 4] dcsr = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = B(i,j) + C(i,j)\n",
        "i,j"
    ));
}

#[test]
fn bias_add_uses_a_dense_range() {
    insta::assert_snapshot!(graph(
        "input A[4, 4] dcsr = random(density=0.5)\ninput b[4] dense = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = A(i,j) + b(i)\n",
        "i,j"
    ));
}

#[test]
fn mttkrp_global_iteration() {
    insta::assert_snapshot!(graph(
        "input B[4, 4, 4] csf = random(density=0.5)\ninput C[4, 3] dense = random(density=0.5)\ninput D[4, 3] dense = random(density=0.5)\noutput A[4, 3] dense\nA(i,j) = B(i,k,l) * C(k,j) * D(l,j)\n",
        "i,k,l,j"
    ));
}

#[test]
fn order_enumeration_is_deterministic_and_complete() {
    let src = "input A[4, 4] dense = random(density=0.5)\ninput B[4, 4] dense = random(density=0.5)\noutput X[4, 4] dense\nX(i,j) = A(i,k) * B(k,j)\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "o.ff", &BTreeMap::new()).unwrap()).unwrap();
    let orders = legal_orders(&p, 0, 100, &LowerOptions::default()).unwrap();
    let names: Vec<String> = orders.iter().map(|o| o.join(",")).collect();
    // A(i,k), B(k,j), X(i,j) all row-major: i<k, k<j, i<j.
    assert_eq!(names, vec!["i,k,j"]);
}

#[test]
fn conflicting_mode_orders_name_the_tensors() {
    let src = "input A[4, 4] dcsr = random(density=0.5)\ninput B[4, 4] dcsr = random(density=0.5)\noutput X[4, 4] dcsc\nX(i,j) = A(i,k) * B(k,j)\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "c.ff", &BTreeMap::new()).unwrap()).unwrap();
    let err = legal_orders(&p, 0, 100, &LowerOptions::default()).unwrap_err().to_string();
    assert!(err.contains("c.ff:4:1") && err.contains("X: j<i") && err.contains("A: i<k"), "{err}");
}

#[test]
fn forbidden_order_is_an_error() {
    let p = fuseflow_ir::check(fuseflow_ir::parse(SPMM_ROW, "f.ff", &BTreeMap::new()).unwrap()).unwrap();
    let order: Vec<String> = "i,j,k".split(',').map(String::from).collect();
    let err = lower_statement(&p, 0, Some(&order), &LowerOptions::default()).unwrap_err().to_string();
    assert!(err.contains("order i,j,k") && err.contains("tensor B stores k before j"), "{err}");
    let order: Vec<String> = vec!["i".into(), "q".into(), "j".into()];
    let err = lower_statement(&p, 0, Some(&order), &LowerOptions::default()).unwrap_err().to_string();
    assert!(err.contains("index q does not occur"), "{err}");
}
