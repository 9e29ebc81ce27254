//! Fused products on one hand-built graph: a broadcast product under a union, whose
//! broadcast references hold `N` where the vector has no entry. The fused node gives up on
//! `N` and the engine runs the graph node by node; with every reference present it runs
//! fused. Either way the report equals the one with fusion off.

use std::collections::BTreeMap;

use fuseflow_graph::{AluOp, Graph, JoinKind, Op, OutputBinding, TensorBinding};
use fuseflow_sim::{simulate, SimConfig, SimReport, Timing};
use fuseflow_tensor::{Format, LevelFormat, Tensor};

/// `X(i,j) = a(i) * B(i,j)` over the union of `a`'s and `B`'s rows (a compressed, B dense):
/// the broadcast product is B's `j` scanner, the repeat of `a`'s reference over it, both
/// arrays and the multiply; `j`'s coordinates also go to a writer.
fn graph() -> Graph {
    let mut g = Graph::new("bcast_union");
    g.inputs.push(TensorBinding {
        tensor: "a".into(),
        shape: vec![4],
        levels: vec![LevelFormat::Compressed],
        mode_order: vec![0],
    });
    g.inputs.push(TensorBinding {
        tensor: "B".into(),
        shape: vec![4, 3],
        levels: vec![LevelFormat::Dense, LevelFormat::Dense],
        mode_order: vec![0, 1],
    });
    let scan = |tensor: &str, level: u32, format: LevelFormat, index: &str| Op::Scan {
        tensor: tensor.into(),
        level,
        dim: level,
        format,
        index: index.into(),
    };
    let ra = g.add(Op::Root, &[], "a_root")[0];
    let sa = g.add(scan("a", 0, LevelFormat::Compressed, "i"), &[ra], "a_i");
    let rb = g.add(Op::Root, &[], "B_root")[0];
    let sb = g.add(scan("B", 0, LevelFormat::Dense, "i"), &[rb], "B_i");
    let join = Op::Join { kind: JoinKind::Union, payloads: vec![1, 1], index: "i".into() };
    let u = g.add(join, &[sa[0], sa[1], sb[0], sb[1]], "union_i");
    let sj = g.add(scan("B", 1, LevelFormat::Dense, "j"), &[u[2]], "B_j");
    let sig = g.add(Op::RepSig, &[sj[0]], "")[0];
    let rep = g.add(Op::Repeat { index: "j".into() }, &[u[1], sig], "a_rep_j")[0];
    let va = g.add(Op::Array { tensor: "a".into() }, &[rep], "a_vals")[0];
    let vb = g.add(Op::Array { tensor: "B".into() }, &[sj[1]], "B_vals")[0];
    let m = g.add(Op::Alu { op: AluOp::Mul }, &[va, vb], "mul")[0];
    g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[u[0]], "X_w0");
    g.add(Op::LevelWrite { tensor: "X".into(), level: 1 }, &[sj[0]], "X_w1");
    g.add(Op::ValWrite { tensor: "X".into() }, &[m], "X_wvals");
    g.outputs.push(OutputBinding { tensor: "X".into(), shape: vec![4, 3], dims: vec![0, 1] });
    g.verify().unwrap();
    g
}

fn run(a: &[f64], timing: &Timing, fuse: bool) -> SimReport {
    let compressed = Format { levels: vec![LevelFormat::Compressed], mode_order: vec![0] };
    let b: Vec<f64> = (1..=12).map(f64::from).collect();
    let tensors = BTreeMap::from([
        ("a".to_string(), Tensor::from_dense(&[4], a, &compressed).unwrap()),
        ("B".to_string(), Tensor::from_dense(&[4, 3], &b, &Format::dense(2)).unwrap()),
    ]);
    let cfg = SimConfig { timing: timing.clone(), fuse_products: fuse, ..SimConfig::default() };
    let r = simulate(&graph(), &tensors, &cfg).unwrap();
    let x = r.outputs["X"].to_coo();
    for (c, v) in x.coords.chunks(2).zip(&x.vals) {
        let (i, j) = (c[0] as usize, c[1] as usize);
        assert_eq!(*v, a[i] * b[i * 3 + j], "X({i},{j})");
    }
    r
}

fn same(x: &SimReport, y: &SimReport, what: &str) {
    assert_eq!((x.cycles, x.tokens, x.ops, x.bytes_read), (y.cycles, y.tokens, y.ops, y.bytes_read), "{what}");
    assert_eq!(x.nodes, y.nodes, "{what}");
    assert_eq!(x.outputs, y.outputs, "{what}");
}

#[test]
fn broadcast_of_absent_operands_runs_node_by_node() {
    let timings = [
        Timing::default(),
        Timing {
            ii: 1,
            latency: 2,
            per_kind: [("repeat", (2, 3)), ("scan_dense", (1, 4)), ("alu", (3, 1))]
                .map(|(k, t)| (k.to_string(), t))
                .into(),
            ..Timing::default()
        },
    ];
    for timing in &timings {
        // Rows 1 and 3 exist only in B: the repeater broadcasts `N` there.
        let sparse = [1.5, 0.0, 2.5, 0.0];
        let (fused, plain) = (run(&sparse, timing, true), run(&sparse, timing, false));
        same(&fused, &plain, "rows without a(i)");
        assert_eq!(fused.fused_products, 0, "the fused node should have given up on N");
        // Every row present: the chain runs fused, with the same report.
        let full = [1.5, -2.0, 2.5, 4.0];
        let (fused, plain) = (run(&full, timing, true), run(&full, timing, false));
        same(&fused, &plain, "every row");
        assert_eq!((fused.fused_products, plain.fused_products), (1, 0));
    }
}
