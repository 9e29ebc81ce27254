//! Parallel lanes in the compiler: snapshots of parallel graphs (text dump: forks, lane copies,
//! gathers) and the errors of requests the transformation cannot honour.

use std::collections::BTreeMap;

use fuseflow_compiler::par::{parallelize, parallelize_all, ParError};
use fuseflow_compiler::{lower_statement, LowerOptions};
use fuseflow_graph::{Graph, Op};

fn lowered(src: &str, order: &str) -> Graph {
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "par.ff", &BTreeMap::new()).unwrap()).unwrap();
    let order: Vec<String> = order.split(',').map(String::from).collect();
    lower_statement(&p, 0, Some(&order), &LowerOptions::default()).unwrap().graph
}

const SPMM_ROW: &str = "input A[4, 4] dcsr = random(density=0.5)\ninput B[4, 4] dcsr = random(density=0.5)\noutput X[4, 4] dcsr\nX(i,j) = A(i,k) * B(k,j)\n";
const ROW_SOFTMAX: &str =
    "input A[3, 4, 5] dense = random(density=1)\noutput Y[3, 4, 5] dense\nY(h,i,j) = A(h,i,j) * sum(k, A(h,i,k))\n";

/// Gustavson SpMM with two lanes over rows: a fork per row stream, every primitive below `i`
/// twice, a depth-0 gather for the row values' level and depth-1 gathers (with the row crd
/// stream as control) for the column level and the values.
#[test]
fn spmm_gustavson_two_lanes_over_rows() {
    let g = parallelize(&lowered(SPMM_ROW, "i,k,j"), "i", 2).unwrap();
    insta::assert_snapshot!(g.to_text());
}

/// Two levels, innermost first: each of the 2 lanes over `h` holds its own fork, 3 lanes and
/// gathers over `i` (regions numbered apart).
#[test]
fn nested_lanes_two_by_three() {
    let g = parallelize_all(&lowered(ROW_SOFTMAX, "h,i,j,k"), &[("h".into(), 2), ("i".into(), 3)]).unwrap();
    insta::assert_snapshot!(g.to_text());
    let forks = g.nodes.iter().filter(|n| matches!(n.op, Op::Fork { .. })).count();
    let inner = g.nodes.iter().filter(|n| matches!(&n.op, Op::Fork { index, .. } if index == "i")).count();
    assert!(inner > 0 && inner % 2 == 0, "every h lane has its own i forks ({inner} of {forks})");
}

/// One lane changes nothing.
#[test]
fn one_lane_is_the_graph_itself() {
    let g = lowered(SPMM_ROW, "i,k,j");
    assert_eq!(parallelize(&g, "i", 1).unwrap(), g);
}

#[test]
fn errors_name_the_index() {
    let g = lowered(SPMM_ROW, "i,k,j");
    assert_eq!(
        parallelize(&g, "q", 2).unwrap_err(),
        ParError::NotIterated { index: "q".into(), indices: "i,k,j".into() }
    );
    assert_eq!(parallelize(&g, "i", 0).unwrap_err(), ParError::ZeroLanes { index: "i".into() });
    assert!(parallelize(&g, "q", 2).unwrap_err().to_string().contains("index q is not iterated"));
}

/// A hand-made region whose lanes differ fails the verifier with a `Lanes` error.
#[test]
fn verifier_rejects_lanes_of_different_shapes() {
    let mut g = parallelize(&lowered(SPMM_ROW, "i,k,j"), "i", 2).unwrap();
    let lane1 = g.nodes.iter().position(|n| n.label == "A_vals@1").unwrap();
    g.nodes[lane1].op = Op::Array { tensor: "B".into() };
    let err = g.verify().unwrap_err();
    assert!(matches!(err, fuseflow_graph::VerifyError::Lanes { .. }), "{err}");
}

/// A gather that claims the wrong depth would not restore the stop levels: refused.
#[test]
fn verifier_rejects_a_gather_of_the_wrong_depth() {
    let mut g = parallelize(&lowered(SPMM_ROW, "i,k,j"), "i", 2).unwrap();
    let gi = g.nodes.iter().position(|n| matches!(n.op, Op::Gather { depth: 1, .. })).unwrap();
    if let Op::Gather { depth, .. } = &mut g.nodes[gi].op {
        *depth = 2;
    }
    let err = g.verify().unwrap_err().to_string();
    assert!(err.contains("has depth 2"), "{err}");
}
