//! Graphs in the style of the FuseFlow compiler's emitter (explicit broadcasts, repeats driven
//! by `rep_ref`, two-operand joiners, a sparse accumulator, Comal's iterate-locate, no `name`
//! metadata, tensor-view names), imported and simulated against a dense reference.

mod common;

use std::collections::BTreeMap;

use common::*;
use fuseflow_comal::proto::{self, operation::Op as P, Operation};
use fuseflow_sim::{simulate, SimConfig};
use fuseflow_tensor::{Format, Tensor};

fn r(id: u64) -> Option<proto::RefStream> {
    Some(proto::RefStream::new(id, ""))
}
fn c(id: u64) -> Option<proto::CrdStream> {
    Some(proto::CrdStream::new(id, ""))
}
fn v(id: u64) -> Option<proto::ValStream> {
    Some(proto::ValStream::new(id, ""))
}
fn op(id: u64, name: &str, o: P) -> Operation {
    Operation { name: name.into(), id, op: Some(o) }
}
fn bcast_ref(id: u64, input: u64, outs: &[u64]) -> Operation {
    op(
        id,
        "broadcast",
        P::Broadcast(proto::Broadcast {
            label: String::new(),
            conn: Some(proto::broadcast::Conn::Ref(proto::broadcast::RefBundle {
                input: r(input),
                outputs: outs.iter().map(|&o| proto::RefStream::new(o, "")).collect(),
            })),
        }),
    )
}
fn lookup(id: u64, tensor: &str, mode: u64, index: &str, input: u64, crd: u64, rf: u64) -> Operation {
    op(
        id,
        "fiberlookup",
        P::FiberLookup(proto::FiberLookup {
            input_ref: r(input),
            output_ref: r(rf),
            output_crd: c(crd),
            index: index.into(),
            tensor: tensor.into(),
            mode,
            format: "compressed".into(),
            src: true,
            root: mode == 0,
            label: format!("{tensor}_{index}"),
        }),
    )
}
fn repeat(id: u64, input: u64, rep: u64, out: u64) -> Operation {
    op(
        id,
        "repeat",
        P::Repeat(proto::Repeat {
            input_ref: r(input).map(proto::repeat::InputRef::InRef),
            output_ref: r(out).map(proto::repeat::OutputRef::OutRef),
            input_rep_sig: r(rep).map(proto::repeat::InputRepSig::RepRef),
            ..Default::default()
        }),
    )
}
fn array(id: u64, tensor: &str, input: u64, out: u64) -> Operation {
    op(
        id,
        "arrayvals",
        P::Array(proto::ArrayVals {
            tensor: tensor.into(),
            input_ref: r(input),
            output_val: v(out),
            ..Default::default()
        }),
    )
}
fn fiber_write(id: u64, tensor: &str, mode: &str, size: usize, input: u64) -> Operation {
    op(
        id,
        "fiberwrite",
        P::FiberWrite(proto::FiberWrite {
            input_crd: c(input),
            tensor: tensor.into(),
            mode_val: mode.into(),
            format: "compressed".into(),
            size: size.to_string(),
            sink: true,
            ..Default::default()
        }),
    )
}
fn val_write(id: u64, tensor: &str, input: u64) -> Operation {
    op(
        id,
        "valwrite",
        P::ValWrite(proto::ValWrite { input_val: v(input), tensor: tensor.into(), sink: true, ..Default::default() }),
    )
}

/// SpMM, Gustavson order (i, k, j): X(i,j) = sum_k A(i,k) B(k,j), A and B DCSR.
fn spmm_gustavson(n: usize, m: usize, p: usize) -> proto::ComalGraph {
    let (a, b) = ("A-0,1", "B-0,1");
    let joiner = op(
        9,
        "intersect_k",
        P::Joiner(proto::Joiner {
            join_type: proto::joiner::Type::Intersect as i32,
            input_pairs: vec![
                proto::joiner::JoinBundle {
                    crd: c(2),
                    in_ref: Some(proto::joiner::Payload {
                        stream: Some(proto::joiner::payload::Stream::RefStream(proto::RefStream::new(7, ""))),
                    }),
                },
                proto::joiner::JoinBundle {
                    crd: c(3),
                    in_ref: Some(proto::joiner::Payload {
                        stream: Some(proto::joiner::payload::Stream::RefStream(proto::RefStream::new(8, ""))),
                    }),
                },
            ],
            index: "k".into(),
            label: "intersect_k".into(),
            output_refs: vec![
                proto::joiner::Payload {
                    stream: Some(proto::joiner::payload::Stream::RefStream(proto::RefStream::new(9, ""))),
                },
                proto::joiner::Payload {
                    stream: Some(proto::joiner::payload::Stream::RefStream(proto::RefStream::new(10, ""))),
                },
            ],
            output_crd: c(4),
        }),
    );
    let mul = op(
        15,
        "mul",
        P::Alu(proto::Alu {
            conn: Some(proto::alu::Conn::Vals(proto::alu::Val {
                inputs: vec![proto::ValStream::new(1, ""), proto::ValStream::new(2, "")],
                output: v(3),
            })),
            stages: vec![proto::alu::Stage { inputs: vec![0, 1], output: 2, op: proto::alu::AluOp::Mul as i32 }],
            ..Default::default()
        }),
    );
    let spacc = op(
        16,
        "spacc",
        P::Spacc(proto::SparseAccumulator {
            input_inner_crd: c(5),
            output_inner_crd: c(6),
            input_outer_crds: vec![proto::CrdStream::new(4, "")],
            input_val: v(3),
            output_val: v(4),
            order: 1,
            inner_crd: "j".into(),
            outer_crds: vec!["k".into()],
            ..Default::default()
        }),
    );
    // Deliberately not in topological order.
    let ops = vec![
        val_write(19, "X", 4),
        spacc,
        mul,
        array(14, b, 13, 2),
        bcast_ref(13, 12, &[13, 14]),
        array(12, a, 11, 1),
        repeat(11, 9, 14, 11),
        lookup(10, b, 1, "j", 10, 5, 12),
        joiner,
        lookup(8, b, 0, "k", 6, 3, 8),
        lookup(7, a, 1, "k", 3, 2, 7),
        repeat(6, 5, 4, 6),
        op(5, "root", P::Root(proto::Generator { label: "B_root".into(), tensor: b.into(), output_ref: r(5) })),
        bcast_ref(4, 2, &[3, 4]),
        lookup(3, a, 0, "i", 1, 1, 2),
        op(2, "root", P::Root(proto::Generator { label: "A_root".into(), tensor: a.into(), output_ref: r(1) })),
        fiber_write(17, "X", "0", n, 1),
        fiber_write(18, "X", "1", p, 6),
    ];
    let _ = m;
    proto::ComalGraph {
        name: "spmm_gustavson".into(),
        channel_size: 1024,
        graph: Some(proto::ProgramGraph { name: "X_ikj".into(), operators: ops }),
    }
}

fn dense_matmul(a: &Tensor, b: &Tensor) -> Vec<f64> {
    let (n, m, p) = (a.shape[0], a.shape[1], b.shape[1]);
    let (da, db) = (a.to_dense(), b.to_dense());
    let mut x = vec![0.0; n * p];
    for i in 0..n {
        for k in 0..m {
            for j in 0..p {
                x[i * p + j] += da[i * m + k] * db[k * p + j];
            }
        }
    }
    x
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + y.abs()))
}

/// Random DCSR inputs `A` (n × m) and `B` (m × p) of [`spmm_gustavson`], written as a SAM
/// tensor directory in a fresh temporary directory.
fn gustavson_inputs(name: &str, n: usize, m: usize, p: usize) -> (TmpDir, Tensor, Tensor) {
    let dir = TmpDir::new(name);
    let dcsr = |shape: &[usize], seed| {
        Tensor::from_coo(&fuseflow_tensor::random_coo(shape, 0.3, seed).unwrap(), &Format::all_compressed(2)).unwrap()
    };
    let (a, b) = (dcsr(&[n, m], 1), dcsr(&[m, p], 2));
    fuseflow_tensor::write_tensor_dir(dir.path(), "A-0,1", &a).unwrap();
    fuseflow_tensor::write_tensor_dir(dir.path(), "B-0,1", &b).unwrap();
    (dir, a, b)
}

#[test]
fn fuseflow_style_spmm_gustavson_imports_and_simulates() {
    let (n, m, p) = (9, 7, 8);
    let (dir, a, b) = gustavson_inputs("gustavson", n, m, p);
    let c = spmm_gustavson(n, m, p);
    let (g, tensors) = fuseflow_comal::from_comal(&c, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    g.verify().unwrap();
    // Broadcasts became fan-out; repeats got their own repeat-signal generators.
    assert_eq!(g.kind_counts().iter().find(|(k, _)| *k == "repsig").map(|x| x.1), Some(2));
    assert_eq!(g.inputs.len(), 2);
    assert_eq!(g.outputs[0].shape, vec![n, p]);
    let report = simulate(&g, &tensors, &SimConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.cycles > 0);
    let x = &report.outputs["X"];
    assert!(close(&x.to_dense(), &dense_matmul(&a, &b)), "SpMM result differs from the dense product");
    // Our export of the imported graph imports back to the same graph.
    let mut tensors2 = BTreeMap::new();
    tensors2.extend(tensors.clone());
    check_round_trip(&g, &tensors2, "imported gustavson");
}

/// SpMV with Comal's iterate-locate: y(i) = A(i,j) x(j), A CSR-like (compressed j), x dense.
#[test]
fn fuseflow_style_spmv_with_locate() {
    let (n, m) = (7, 6);
    let dir = TmpDir::new("spmv");
    let a =
        Tensor::from_coo(&fuseflow_tensor::random_coo(&[n, m], 0.4, 3).unwrap(), &Format::all_compressed(2)).unwrap();
    let x = Tensor::from_coo(&fuseflow_tensor::random_coo(&[m], 1.0, 4).unwrap(), &Format::dense(1)).unwrap();
    fuseflow_tensor::write_tensor_dir(dir.path(), "A", &a).unwrap();
    fuseflow_tensor::write_tensor_dir(dir.path(), "x", &x).unwrap();
    let ops = vec![
        op(1, "root", P::Root(proto::Generator { output_ref: r(1), ..Default::default() })),
        lookup(2, "A", 0, "i", 1, 1, 2),
        bcast_ref(3, 2, &[3, 4]),
        lookup(4, "A", 1, "j", 3, 2, 5),
        bcast_ref(15, 5, &[9, 10]),
        op(5, "root", P::Root(proto::Generator { output_ref: r(6), ..Default::default() })),
        repeat(6, 6, 4, 7),
        repeat(16, 7, 10, 11),
        // Comal's locate: output_ref1 is the located reference; the pass-throughs are unused.
        op(
            7,
            "locate",
            P::Locate(proto::Locate {
                input_crd: c(2),
                input_ref: r(11),
                output_ref1: r(8),
                output_ref2: r(0),
                output_crd: c(0),
                label: String::new(),
            }),
        ),
        array(9, "A", 9, 1),
        array(10, "x", 8, 2),
        op(
            11,
            "mul",
            P::Alu(proto::Alu {
                conn: Some(proto::alu::Conn::Vals(proto::alu::Val {
                    inputs: vec![proto::ValStream::new(1, ""), proto::ValStream::new(2, "")],
                    output: v(3),
                })),
                stages: vec![proto::alu::Stage { inputs: vec![0, 1], output: 2, op: proto::alu::AluOp::Mul as i32 }],
                ..Default::default()
            }),
        ),
        op(12, "reduce", P::Reduce(proto::Reduce { input_val: v(3), output_val: v(4), ..Default::default() })),
        fiber_write(13, "y", "0", n, 1),
        val_write(14, "y", 4),
    ];
    let c = proto::ComalGraph {
        name: "spmv".into(),
        channel_size: 1024,
        graph: Some(proto::ProgramGraph { name: "spmv".into(), operators: ops }),
    };
    let (g, tensors) = fuseflow_comal::from_comal(&c, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let report = simulate(&g, &tensors, &SimConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let (da, dx) = (a.to_dense(), x.to_dense());
    let want: Vec<f64> = (0..n).map(|i| (0..m).map(|j| da[i * m + j] * dx[j]).sum()).collect();
    assert!(close(&report.outputs["y"].to_dense(), &want), "SpMV result differs");
}

/// The FuseFlow compiler's `fiber_write`s carry no `size`: the output's shape comes from the
/// input dimensions whose coordinates reach each writer, with no output shape file needed.
#[test]
fn fiber_write_without_size_takes_it_from_the_data() {
    let (n, m, p) = (9, 7, 8);
    let (dir, a, b) = gustavson_inputs("nosize", n, m, p);
    let mut c = spmm_gustavson(n, m, p);
    let mut blanked = 0;
    for o in &mut c.graph.as_mut().unwrap().operators {
        if let Some(P::FiberWrite(f)) = &mut o.op {
            f.size.clear();
            blanked += 1;
        }
    }
    assert_eq!(blanked, 2);
    assert!(!dir.path().join("tensor_X_mode_shape").exists());
    let (g, tensors) = fuseflow_comal::from_comal(&c, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.outputs[0].shape, vec![n, p], "rows from A's level 0, columns from B's level 1");
    let report = simulate(&g, &tensors, &SimConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(close(&report.outputs["X"].to_dense(), &dense_matmul(&a, &b)), "SpMM result differs");
}
