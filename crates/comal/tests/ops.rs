//! Round trips of graphs using every primitive parameter the examples do not: every ALU op
//! (including those Comal's ALU cannot express, and those exported as chains of ALU steps or
//! one-stage stand-ins), constants on either side, max reductions and accumulations,
//! rank-0 outputs, unions over ranges; and hand-built graphs with repeat signals over ref and
//! val streams (folded into Comal's `repeat`) and a coordinate dropper with a value inner stream.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use fuseflow_graph::{AluOp, Graph, JoinKind, Op, OutputBinding, ReduceKind, ScalarOp, TensorBinding};
use fuseflow_tensor::{Format, LevelFormat, Tensor};

const DECLS: &str = "
input  A[6, 5] dcsr = random(density=0.5, seed=1)
input  B[6, 5] dcsr = random(density=0.5, seed=2)
input  C[5, 4] dcsr = random(density=0.5, seed=3)
input  d[5]    dense = random(density=1, seed=4)
input  e[6]    dense = random(density=1, seed=5)
";

const KERNELS: &[(&str, &str)] = &[
    ("output X[6, 5] dcsr", "X(i,j) = neg(A(i,j)) + relu(B(i,j))"),
    ("output X[6, 5] dense", "X(i,j) = exp(A(i,j)) - sigmoid(B(i,j))"),
    ("output X[6, 5] dcsr", "X(i,j) = gelu(A(i,j)) * rsqrt(B(i,j))"),
    ("output X[6, 5] dcsr", "X(i,j) = erf(A(i,j)) + B(i,j)"),
    ("output X[6, 5] dense", "X(i,j) = 2 - A(i,j) + B(i,j) - 3"),
    ("output X[6, 5] dcsr", "X(i,j) = 2 / A(i,j) + B(i,j) / 4"),
    ("output X[6, 5] dcsr", "X(i,j) = 3 * A(i,j) * B(i,j) * 0.5"),
    ("output X[6, 5] dense", "X(i,j) = max(A(i,j), 0.25) + max(0.5, B(i,j)) + max(A(i,j), B(i,j)) + 1.5"),
    ("output X[6, 5] dense", "X(i,j) = A(i,j) / B(i,j) + -A(i,j)"),
    ("output X[6, 4] dcsr", "X(i,k) = maxr(j, A(i,j) * C(j,k))"),
    ("output y[6] dense", "y(i) = maxr(j, A(i,j)) + sum(j, B(i,j) * d(j))"),
    ("output s[] dense", "s() = A(i,j) * B(i,j)"),
    ("output X[6, 5] dense", "X(i,j) = A(i,j) + d(j) + e(i)"),
    ("output X[6, 5] dense", "X(i,j) = exp(A(i,j) * e(i)) * d(j)"),
    // The sparse exponentials travel as chains of Comal ALU steps, the ±∞ conversions of a max
    // over nonzeros as one-stage stand-ins; the chain's first operand with other readers, and
    // as both operands.
    ("output X[6, 5] dcsr", "X(i,j) = expsubnz(A(i,j), e(i)) + expnz(B(i,j))"),
    ("output X[6, 5] dcsr", "X(i,j) = expsubnz(A(i,j), A(i,j)) + A(i,j) * expnz(A(i,j))"),
    ("output y[6] dense", "y(i) = maxnz(j, A(i,j) - B(i,j))"),
    ("output X[6, 4] dcsr", "X(i,k) = maxnz(j, A(i,j) * C(j,k))"),
];

#[test]
fn every_alu_op_and_reduction_round_trips() {
    let mut graphs = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (decl, stmt) in KERNELS {
        let src = format!("{DECLS}{decl}\n{stmt}\n");
        let prog = fuseflow_ir::parse(&src, "ops.ff", &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let p = fuseflow_ir::check(prog).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let tensors = fuseflow_ir::load_inputs(&p, Path::new("."), 0).unwrap();
        for order in orders(&p, 0) {
            let what = format!("{stmt} order {}", order.join(","));
            let k = fuseflow_compiler::lower_statement(&p, 0, Some(&order), &Default::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_round_trip(&k.graph, &tensors, &what);
            graphs += 1;
            for n in &k.graph.nodes {
                match &n.op {
                    Op::Alu { op: AluOp::Scalar { .. } } => {}
                    Op::Alu { op } => {
                        seen.insert(op.name());
                    }
                    Op::Spacc { op: ReduceKind::Max, .. } => {
                        seen.insert("spacc max".into());
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(graphs >= KERNELS.len());
    for op in [
        "add",
        "sub",
        "mul",
        "div",
        "max",
        "neg",
        "relu",
        "exp",
        "rsqrt",
        "sigmoid",
        "gelu",
        "erf",
        "expnz",
        "expsubnz",
        "zero_to_neginf",
        "neginf_to_zero",
        "spacc max",
    ] {
        assert!(seen.contains(op), "no kernel has {op}: {seen:?}");
    }
}

fn matrix(rows: usize, cols: usize, seed: u64, format: Format) -> Tensor {
    let coo = fuseflow_tensor::random_coo(&[rows, cols], 1.0, seed).unwrap();
    Tensor::from_coo(&coo, &format).unwrap()
}

/// `X(i,j) = max(A(i,j) * b(i)[rep by a val signal] + b(i)[rep by a ref signal],
/// b(i)[rep by the same ref signal])`, written through a crd dropper whose inner stream is the
/// value stream. Every A row is full, so nothing is dropped and the output stays consistent.
fn hand_graph() -> (Graph, BTreeMap<String, Tensor>) {
    let mut g = Graph::new("hand");
    let ra = g.add(Op::Root, &[], "A_root")[0];
    let scan = |tensor: &str, level, format| Op::Scan {
        tensor: tensor.into(),
        level,
        dim: level,
        format,
        index: if level == 0 { "i".into() } else { "j".into() },
    };
    let ai = g.add(scan("A", 0, LevelFormat::Dense), &[ra], "A_i");
    let aj = g.add(scan("A", 1, LevelFormat::Compressed), &[ai[1]], "A_j");
    let va = g.add(Op::Array { tensor: "A".into() }, &[aj[1]], "A_vals")[0];
    let rb = g.add(Op::Root, &[], "b_root")[0];
    let bi = g.add(scan("b", 0, LevelFormat::Dense), &[rb], "b_i");
    let vb = g.add(Op::Array { tensor: "b".into() }, &[bi[1]], "b_vals")[0];
    let sig_v = g.add(Op::RepSig, &[va], "sig_val")[0];
    let b1 = g.add(Op::Repeat { index: "j".into() }, &[vb, sig_v], "b_rep1")[0];
    let sig_r = g.add(Op::RepSig, &[aj[1]], "sig_ref")[0];
    let b2 = g.add(Op::Repeat { index: "j".into() }, &[vb, sig_r], "b_rep2")[0];
    let b3 = g.add(Op::Repeat { index: "j".into() }, &[vb, sig_r], "b_rep3")[0];
    let m = g.add(Op::Alu { op: AluOp::Mul }, &[va, b1], "mul")[0];
    let s = g.add(Op::Alu { op: AluOp::Add }, &[m, b2], "add")[0];
    let x = g.add(Op::Alu { op: AluOp::Max }, &[s, b3], "max")[0];
    let x = g.add(Op::Alu { op: AluOp::Scalar { op: ScalarOp::Sub, scalar: 0.5, scalar_first: true } }, &[x], "")[0];
    let dropped = g.add(Op::CrdDrop, &[ai[0], x], "drop");
    g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[dropped[0]], "X_w0");
    g.add(Op::LevelWrite { tensor: "X".into(), level: 1 }, &[aj[0]], "X_w1");
    g.add(Op::ValWrite { tensor: "X".into() }, &[dropped[1]], "X_wvals");
    g.prune();
    g.inputs.push(TensorBinding {
        tensor: "A".into(),
        shape: vec![6, 5],
        levels: vec![LevelFormat::Dense, LevelFormat::Compressed],
        mode_order: vec![0, 1],
    });
    g.inputs.push(TensorBinding {
        tensor: "b".into(),
        shape: vec![6],
        levels: vec![LevelFormat::Dense],
        mode_order: vec![0],
    });
    g.outputs.push(OutputBinding { tensor: "X".into(), shape: vec![6, 5], dims: vec![0, 1] });
    g.verify().unwrap();
    let mut tensors = BTreeMap::new();
    tensors.insert("A".to_string(), matrix(6, 5, 7, Format::csr()));
    let b = fuseflow_tensor::random_coo(&[6], 1.0, 8).unwrap();
    tensors.insert("b".to_string(), Tensor::from_coo(&b, &Format::dense(1)).unwrap());
    (g, tensors)
}

#[test]
fn folded_repeat_signals_and_value_crd_drop_round_trip() {
    let (g, tensors) = hand_graph();
    check_round_trip(&g, &tensors, "hand graph");
    // The ref- and val-driven signals fold into Comal repeats; no repeatsig is emitted.
    let c = fuseflow_comal::to_comal(&g).unwrap();
    let ops = &c.graph.as_ref().unwrap().operators;
    let kinds: Vec<&str> = ops.iter().map(|o| o.name.split(';').next().unwrap()).collect();
    assert!(!kinds.contains(&"repeatsig"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "repeat").count(), 3);
    // The value crd-drop is marked.
    assert!(ops.iter().any(|o| o.name.starts_with("crddrop") && o.name.contains("inner=val")));
    // `c − a` has no one-stage ALU equivalent: an ALU without stages, exact op in the name.
    assert!(ops.iter().any(|o| o.name.contains("op=ssub")
        && o.name.contains("first=1")
        && matches!(&o.op, Some(fuseflow_comal::proto::operation::Op::Alu(a)) if a.stages.is_empty() && a.scalar == 0.5)));
}

#[test]
fn join_kinds_and_reduce_kinds_survive() {
    // A union and an intersection, a max reduction: the compiled examples cover these, but
    // check the exported fields directly too.
    let src = format!("{DECLS}output y[6] dense\ny(i) = maxr(j, A(i,j) + B(i,j)) + sum(j, A(i,j) * B(i,j))\n");
    let p = fuseflow_ir::check(fuseflow_ir::parse(&src, "t.ff", &BTreeMap::new()).unwrap()).unwrap();
    let k = fuseflow_compiler::lower_statement(&p, 0, None, &Default::default()).unwrap();
    let c = fuseflow_comal::to_comal(&k.graph).unwrap();
    let (back, _) = {
        let tensors = fuseflow_ir::load_inputs(&p, Path::new("."), 0).unwrap();
        let dir = TmpDir::new("kinds");
        fuseflow_comal::export_dir(&k.graph, &tensors, dir.path()).unwrap();
        fuseflow_comal::import_dir(dir.path()).unwrap()
    };
    let count = |g: &Graph, f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
    let preds: [&dyn Fn(&Op) -> bool; 3] = [
        &|o| matches!(o, Op::Join { kind: JoinKind::Union, .. }),
        &|o| matches!(o, Op::Join { kind: JoinKind::Intersect, .. }),
        &|o| matches!(o, Op::Reduce { op: ReduceKind::Max }),
    ];
    for f in preds {
        assert!(count(&k.graph, f) >= 1);
        assert_eq!(count(&back, f), count(&k.graph, f));
    }
    assert!(c.graph.unwrap().operators.iter().any(|o| matches!(
        &o.op,
        Some(fuseflow_comal::proto::operation::Op::Reduce(r)) if r.reduce_type == 1
    )));
}
