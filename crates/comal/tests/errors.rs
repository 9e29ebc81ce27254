//! Bad input gives one-line errors naming the operation, stream, tensor or file; never a panic.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use fuseflow_comal::proto::{self, operation::Op as P, ComalGraph};
use fuseflow_comal::{from_comal, ExportError, ImportError};
use fuseflow_graph::{Graph, Op};
use fuseflow_tensor::Tensor;

/// The compiled SpMV example, exported into a fresh directory.
fn spmv() -> (Graph, BTreeMap<String, Tensor>, TmpDir, ComalGraph) {
    example("spmv.ff")
}

/// The compiled SDDMM example (locates, dense scans, a joiner, a reducer), exported.
fn sddmm() -> (Graph, BTreeMap<String, Tensor>, TmpDir, ComalGraph) {
    example("sddmm.ff")
}

fn example(name: &str) -> (Graph, BTreeMap<String, Tensor>, TmpDir, ComalGraph) {
    let path = examples_dir().join(name);
    let p = load(&path);
    let tensors = inputs(&p, &path);
    let k = fuseflow_compiler::lower_statement(&p, 0, None, &Default::default()).unwrap();
    let dir = TmpDir::new("err");
    fuseflow_comal::export_dir(&k.graph, &tensors, dir.path()).unwrap();
    let c = fuseflow_comal::to_comal(&k.graph).unwrap();
    (k.graph, tensors, dir, c)
}

fn ops(c: &mut ComalGraph) -> &mut Vec<proto::Operation> {
    &mut c.graph.as_mut().unwrap().operators
}

/// Imports `c` from `dir` expecting an error whose one-line message contains every needle.
fn import_fails(c: &ComalGraph, dir: &Path, needles: &[&str]) -> ImportError {
    let e = match from_comal(c, dir) {
        Ok(_) => panic!("import succeeded; expected {needles:?}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "{msg:?} lacks {n:?}");
    }
    e
}

fn first_op<F: Fn(&P) -> bool>(c: &mut ComalGraph, f: F) -> &mut proto::Operation {
    ops(c).iter_mut().find(|o| o.op.as_ref().is_some_and(&f)).expect("operation kind present")
}

#[test]
fn malformed_protobuf_and_missing_files() {
    for bytes in [&b"\xff\xff\xff\xff"[..], b"\x0a\x05ab", b"\x1a\x02\x12\x7f", b"\x08"] {
        let e = fuseflow_comal::decode_comal(bytes, "g.bin").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("g.bin: malformed tortilla protobuf"), "{msg}");
        assert!(!msg.contains('\n'));
    }
    let dir = TmpDir::new("files");
    std::fs::write(dir.path().join("graph.bin"), b"\xff\xff").unwrap();
    let e = fuseflow_comal::import_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("graph.bin: malformed tortilla protobuf"), "{e}");
    let e = fuseflow_comal::import_dir(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("graph.bin: cannot read"), "{e}");
    // An empty message decodes, but has no program graph.
    let c = fuseflow_comal::decode_comal(b"", "empty").unwrap();
    import_fails(&c, dir.path(), &["no program graph"]);
}

#[test]
fn wiring_errors_name_the_operation_and_stream() {
    let (_, _, dir, c0) = sddmm();
    let d = dir.path();

    // An operation with no op (e.g. a newer kind this schema lacks).
    let mut c = c0.clone();
    ops(&mut c)[3].op = None;
    import_fails(&c, d, &["operation #3", "no op set"]);

    // A consumed id that nothing produces.
    let mut c = c0.clone();
    if let Some(P::Array(a)) = &mut first_op(&mut c, |o| matches!(o, P::Array(_))).op {
        a.input_ref = Some(proto::RefStream::new(999, ""));
    }
    import_fails(&c, d, &["ref stream 999", "produced by no operation", "array"]);

    // Two producers of one id.
    let mut c = c0.clone();
    let dup = first_op(&mut c, |o| matches!(o, P::Root(_))).clone();
    ops(&mut c).push(dup);
    import_fails(&c, d, &["ref stream", "produced by both", "root"]);

    // Two consumers of one id (fan-out needs a broadcast).
    let mut c = c0.clone();
    let dup = first_op(&mut c, |o| matches!(o, P::ValWrite(_))).clone();
    ops(&mut c).push(dup);
    import_fails(&c, d, &["val stream", "consumed by both", "use a broadcast"]);

    // Stream id 0 as an input.
    let mut c = c0.clone();
    if let Some(P::Reduce(r)) = &mut first_op(&mut c, |o| matches!(o, P::Reduce(_))).op {
        r.input_val = Some(proto::ValStream::new(0, ""));
    }
    import_fails(&c, d, &["reduce", "reduce.input_val uses stream id 0"]);

    // A missing field.
    let mut c = c0.clone();
    if let Some(P::Reduce(r)) = &mut first_op(&mut c, |o| matches!(o, P::Reduce(_))).op {
        r.input_val = None;
    }
    import_fails(&c, d, &["reduce", "missing reduce.input_val"]);

    // Kind mismatches: a repeat from ref into val, a joiner payload ref in and val out.
    let mut c = c0.clone();
    if let Some(P::Repeat(r)) = &mut first_op(&mut c, |o| matches!(o, P::Repeat(_))).op {
        r.output_ref = Some(proto::repeat::OutputRef::OutVal(proto::ValStream::new(77, "")));
    }
    import_fails(&c, d, &["repeat", "repeats a ref stream into a val stream"]);
    let mut c = c0.clone();
    if let Some(P::Joiner(j)) = &mut first_op(&mut c, |o| matches!(o, P::Joiner(_))).op {
        j.output_refs[0] = proto::joiner::Payload {
            stream: Some(proto::joiner::payload::Stream::ValStream(proto::ValStream::new(77, ""))),
        };
    }
    import_fails(&c, d, &["joiner", "ref payload but a val output"]);

    // An ALU with three inputs.
    let mut c = c0.clone();
    let extra = ops(&mut c).len() as u64 + 100;
    if let Some(P::Alu(a)) = &mut first_op(&mut c, |o| matches!(o, P::Alu(_))).op {
        if let Some(proto::alu::Conn::Vals(v)) = &mut a.conn {
            v.inputs.push(proto::ValStream::new(extra, ""));
        }
    }
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: extra,
        op: Some(P::Array(proto::ArrayVals {
            tensor: "x".into(),
            input_ref: Some(proto::RefStream::new(extra, "")),
            output_val: Some(proto::ValStream::new(extra, "")),
            ..Default::default()
        })),
    });
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: extra + 1,
        op: Some(P::Root(proto::Generator {
            output_ref: Some(proto::RefStream::new(extra, "")),
            ..Default::default()
        })),
    });
    import_fails(&c, d, &["alu", "expects 2 inputs, found 3"]);

    // A cycle: a root-less scanner fed by its own output through a repeat.
    let mut c = c0.clone();
    ops(&mut c).retain(|_| false);
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: 1,
        op: Some(P::FiberLookup(proto::FiberLookup {
            input_ref: Some(proto::RefStream::new(1, "")),
            output_ref: Some(proto::RefStream::new(2, "")),
            tensor: "A".into(),
            ..Default::default()
        })),
    });
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: 2,
        op: Some(P::Broadcast(proto::Broadcast {
            label: String::new(),
            conn: Some(proto::broadcast::Conn::Ref(proto::broadcast::RefBundle {
                input: Some(proto::RefStream::new(2, "")),
                outputs: vec![proto::RefStream::new(3, ""), proto::RefStream::new(4, "")],
            })),
        })),
    });
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: 3,
        op: Some(P::Repeat(proto::Repeat {
            input_ref: Some(proto::repeat::InputRef::InRef(proto::RefStream::new(3, ""))),
            output_ref: Some(proto::repeat::OutputRef::OutRef(proto::RefStream::new(1, ""))),
            input_rep_sig: Some(proto::repeat::InputRepSig::RepRef(proto::RefStream::new(4, ""))),
            ..Default::default()
        })),
    });
    import_fails(&c, d, &["operation #", "part of a cycle"]);

    // A broadcast feeding itself.
    let mut c = c0.clone();
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: 500,
        op: Some(P::Broadcast(proto::Broadcast {
            label: String::new(),
            conn: Some(proto::broadcast::Conn::Crd(proto::broadcast::CrdBundle {
                input: Some(proto::CrdStream::new(500, "")),
                outputs: vec![proto::CrdStream::new(500, "")],
            })),
        })),
    });
    import_fails(&c, d, &["broadcast", "part of a cycle"]);
}

#[test]
fn unsupported_operations_and_bad_names() {
    let (_, _, dir, c0) = sddmm();
    let d = dir.path();
    for (op, what) in [
        (P::Join(Default::default()), "without our depth= metadata"),
        (
            P::Fork(proto::Fork {
                label: String::new(),
                conn: Some(proto::fork::Conn::Repsig(proto::fork::RepSigBundle {
                    input: Some(proto::RepSigStream::new(600, "")),
                    outputs: vec![proto::RepSigStream::new(601, ""), proto::RepSigStream::new(602, "")],
                })),
            }),
            "fork of a repeat-signal stream",
        ),
        (P::CoordHold(Default::default()), "coord_hold"),
        (P::CoordMask(Default::default()), "coord_mask"),
        (P::GenRef(Default::default()), "gen_ref"),
        (P::Concat(Default::default()), "concat"),
    ] {
        let mut c = c0.clone();
        ops(&mut c).push(proto::Operation { name: String::new(), id: 1000, op: Some(op) });
        import_fails(&c, d, &[what, "unsupported"]);
    }
    // A fork with no bundle, a fork with one lane, a join of depth 1 without its control.
    let mut c = c0.clone();
    ops(&mut c).push(proto::Operation { name: "fork".into(), id: 1000, op: Some(P::Fork(Default::default())) });
    import_fails(&c, d, &["fork", "missing fork.conn"]);
    let mut c = c0.clone();
    let one_lane = proto::fork::Conn::Crd(proto::fork::CrdBundle {
        input: Some(proto::CrdStream::new(600, "")),
        outputs: vec![proto::CrdStream::new(601, "")],
    });
    ops(&mut c).push(proto::Operation {
        name: "fork".into(),
        id: 1000,
        op: Some(P::Fork(proto::Fork { label: String::new(), conn: Some(one_lane) })),
    });
    import_fails(&c, d, &["fork", "at least 2 lanes"]);
    let mut c = c0.clone();
    let lanes = proto::join::Conn::Val(proto::join::ValBundle {
        output: Some(proto::ValStream::new(600, "")),
        inputs: vec![proto::ValStream::new(601, ""), proto::ValStream::new(602, "")],
    });
    ops(&mut c).push(proto::Operation {
        name: "gather;depth=1".into(),
        id: 1000,
        op: Some(P::Join(proto::Join { label: String::new(), conn: Some(lanes) })),
    });
    import_fails(&c, d, &["join", "needs ctl="]);
    let mut c = c0.clone();
    first_op(&mut c, |o| matches!(o, P::FiberLookup(_))).name = "fiberlookup;level=two".into();
    import_fails(&c, d, &["fiber_lookup", "bad name", "level=\"two\""]);
    let mut c = c0.clone();
    first_op(&mut c, |o| matches!(o, P::Alu(_))).name = "alu;op=cube".into();
    import_fails(&c, d, &["alu", "unknown ALU op"]);
    let mut c = c0.clone();
    first_op(&mut c, |o| matches!(o, P::Joiner(_))).name = "joiner;payloads=1".into();
    import_fails(&c, d, &["joiner", "payloads lists 1 operands"]);
    let mut c = c0.clone();
    if let Some(P::Alu(a)) = &mut first_op(&mut c, |o| matches!(o, P::Alu(_))).op {
        a.conn = Some(proto::alu::Conn::Crds(Default::default()));
    }
    import_fails(&c, d, &["alu", "ALU over crd streams"]);
}

#[test]
fn missing_tensor_files_and_contradicting_shapes() {
    let (g, _, dir, c) = spmv();
    let d = dir.path();
    let a = g.inputs.iter().find(|b| b.tensor == "A").unwrap();
    assert_eq!(a.shape, vec![80, 60]);

    // A missing values file.
    std::fs::rename(d.join("tensor_A_mode_vals"), d.join("moved")).unwrap();
    import_fails(&c, d, &["tensor_A_mode_vals: cannot read"]);
    std::fs::rename(d.join("moved"), d.join("tensor_A_mode_vals")).unwrap();
    from_comal(&c, d).unwrap();

    // A missing shape file.
    std::fs::rename(d.join("tensor_x_mode_shape"), d.join("moved")).unwrap();
    import_fails(&c, d, &["tensor_x_mode_shape: cannot read"]);
    std::fs::rename(d.join("moved"), d.join("tensor_x_mode_shape")).unwrap();

    // A shape too small for the stored coordinates.
    std::fs::write(d.join("tensor_A_mode_shape"), "80\n10\n").unwrap();
    import_fails(&c, d, &["tensor_A_mode_1_crd", "out of range for dimension 1 of size 10"]);
    // A rank the scanners contradict.
    std::fs::write(d.join("tensor_A_mode_shape"), "80\n").unwrap();
    import_fails(&c, d, &["tensor A", "rank 1"]);
    // A shape line that is not a number.
    std::fs::write(d.join("tensor_A_mode_shape"), "80\nsixty\n").unwrap();
    import_fails(&c, d, &["tensor A", "tensor_A_mode_shape:2", "\"sixty\""]);
    std::fs::write(d.join("tensor_A_mode_shape"), "80\n60\n").unwrap();

    // The dense vector's size contradicting the locate that reads it.
    std::fs::write(d.join("tensor_x_mode_shape"), "61\n").unwrap();
    let has_locate = g.nodes.iter().any(|n| matches!(n.op, Op::Locate { .. }));
    if has_locate {
        import_fails(&c, d, &["tensor x", "locates with size 60", "size 61"]);
    } else {
        import_fails(&c, d, &["tensor_x_mode_vals"]);
    }
    std::fs::write(d.join("tensor_x_mode_shape"), "60\n").unwrap();
    from_comal(&c, d).unwrap();
}

#[test]
fn range_shape_files() {
    // add.ff under the reference's union semantics needs no range, but a broadcast sum does.
    let src = "input A[4, 3] dcsr = random(density=0.5, seed=1)\ninput b[3] dcsr = random(density=0.5, seed=2)\noutput X[4, 3] dense\nX(i,j) = A(i,j) + b(j)\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "r.ff", &BTreeMap::new()).unwrap()).unwrap();
    let tensors = fuseflow_ir::load_inputs(&p, Path::new("."), 0).unwrap();
    let k = fuseflow_compiler::lower_statement(&p, 0, None, &Default::default()).unwrap();
    let sizes: Vec<u32> = k
        .graph
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Range { size, .. } => Some(size),
            _ => None,
        })
        .collect();
    assert!(!sizes.is_empty(), "expected a range scanner");
    let dir = TmpDir::new("range");
    fuseflow_comal::export_dir(&k.graph, &tensors, dir.path()).unwrap();
    let shape = dir.path().join(format!("tensor___range_{}_mode_shape", sizes[0]));
    assert_eq!(std::fs::read_to_string(&shape).unwrap(), format!("{}\n", sizes[0]));
    check_round_trip(&k.graph, &tensors, "range");
    let c = fuseflow_comal::to_comal(&k.graph).unwrap();
    std::fs::write(&shape, "99\n").unwrap();
    import_fails(&c, dir.path(), &["tensor __range_", "the shape file gives size 99"]);
    std::fs::remove_file(&shape).unwrap();
    import_fails(&c, dir.path(), &["_mode_shape: cannot read"]);
}

#[test]
fn export_errors() {
    let (g, tensors, dir, _) = spmv();
    // A graph that does not verify.
    let mut bad = g.clone();
    bad.nodes.swap(0, 3);
    let e = fuseflow_comal::to_comal(&bad).unwrap_err();
    assert!(matches!(e, ExportError::Verify { .. }), "{e}");
    assert!(e.to_string().contains("does not verify"));
    // Missing and mismatching data.
    let mut t = tensors.clone();
    t.remove("x");
    let e = fuseflow_comal::export_dir(&g, &t, &dir.path().join("o")).unwrap_err().to_string();
    assert!(e.contains("tensor x: no data supplied"), "{e}");
    let mut t = tensors.clone();
    let a = t["A"].convert(&fuseflow_tensor::Format::all_compressed(2)).unwrap();
    t.insert("A".into(), a);
    let e = fuseflow_comal::export_dir(&g, &t, &dir.path().join("o")).unwrap_err().to_string();
    assert!(e.contains("tensor A: data has shape"), "{e}");
    // Reserved names.
    let mut g2 = g.clone();
    for n in &mut g2.nodes {
        if let Op::Scan { tensor, .. } | Op::Array { tensor } | Op::Locate { tensor, .. } = &mut n.op {
            if tensor == "x" {
                *tensor = "__range_3".into();
            }
        }
    }
    for b in &mut g2.inputs {
        if b.tensor == "x" {
            b.tensor = "__range_3".into();
        }
    }
    let e = fuseflow_comal::export_dir(&g2, &tensors, &dir.path().join("o")).unwrap_err().to_string();
    assert!(e.contains("__range_3") && e.contains("reserved"), "{e}");
    // An unwritable directory.
    let file = dir.path().join("plain_file");
    std::fs::write(&file, "x").unwrap();
    let e = fuseflow_comal::export_dir(&g, &tensors, &file.join("sub")).unwrap_err().to_string();
    assert!(e.contains("plain_file") && !e.contains('\n'), "{e}");
}

#[test]
fn locate_pass_through_outputs_become_fan_out() {
    let (_, _, dir, mut c) = sddmm();
    // Route the locate's crd pass-through to an extra (structure-only) level writer.
    let Some(loc) = ops(&mut c).iter_mut().find(|o| matches!(o.op, Some(P::Locate(_)))) else {
        return; // no locate in this compilation
    };
    let Some(P::Locate(l)) = &mut loc.op else { unreachable!() };
    l.output_crd = Some(proto::CrdStream::new(4242, ""));
    let in_crd = l.input_crd.as_ref().unwrap().sid();
    ops(&mut c).push(proto::Operation {
        name: String::new(),
        id: 4242,
        op: Some(P::FiberWrite(proto::FiberWrite {
            input_crd: Some(proto::CrdStream::new(4242, "")),
            tensor: "J".into(),
            size: "60".into(),
            ..Default::default()
        })),
    });
    let _ = in_crd;
    let (g, _) = from_comal(&c, dir.path()).unwrap();
    let w = g.nodes.iter().position(|n| matches!(&n.op, Op::LevelWrite { tensor, .. } if tensor == "J")).unwrap();
    let s = g.nodes[w].ins[0];
    let loc = g.nodes.iter().position(|n| matches!(n.op, Op::Locate { .. })).unwrap();
    assert_eq!(g.nodes[loc].ins[0], s, "the pass-through is the locate's own crd input");
    assert!(g.stream(s).consumers.len() >= 2);
}

/// `X(i,j) = expsubnz(A(i,j), e(i))` exported: its ALU is a chain of five steps.
fn expsubnz() -> (TmpDir, ComalGraph) {
    let src = "input A[6, 5] dcsr = random(density=0.5)\ninput e[6] dense = random(density=1)\n\
               output X[6, 5] dcsr\nX(i,j) = expsubnz(A(i,j), e(i))\n";
    let p = fuseflow_ir::check(fuseflow_ir::parse(src, "t.ff", &BTreeMap::new()).unwrap()).unwrap();
    let tensors = fuseflow_ir::load_inputs(&p, Path::new("."), 0).unwrap();
    let k = fuseflow_compiler::lower_statement(&p, 0, None, &Default::default()).unwrap();
    let dir = TmpDir::new("chain");
    fuseflow_comal::export_dir(&k.graph, &tensors, dir.path()).unwrap();
    (dir, fuseflow_comal::to_comal(&k.graph).unwrap())
}

/// Position of step `k` of the ALU chain in the operation list.
fn step(c: &ComalGraph, k: usize) -> usize {
    c.graph.as_ref().unwrap().operators.iter().position(|o| o.name.ends_with(&format!(";part={k}"))).unwrap()
}

fn alu_io(o: &mut proto::Operation) -> &mut proto::alu::Val {
    match &mut o.op {
        Some(P::Alu(proto::Alu { conn: Some(proto::alu::Conn::Vals(v)), .. })) => v,
        _ => panic!("{}: not an ALU over values", o.name),
    }
}

#[test]
fn broken_alu_chains_are_errors() {
    let (dir, c0) = expsubnz();
    let d = dir.path();
    from_comal(&c0, d).unwrap();
    // Without its last step, the writer reads the exponential: the chain is incomplete.
    let mut c = c0.clone();
    let k = step(&c, 4);
    let last = ops(&mut c).remove(k);
    let Some(P::Alu(proto::Alu { conn: Some(proto::alu::Conn::Vals(v)), .. })) = &last.op else { panic!() };
    let (exp, out) = (v.inputs[0].clone(), v.output.clone().unwrap().sid());
    for o in ops(&mut c) {
        if let Some(P::ValWrite(w)) = &mut o.op {
            assert_eq!(w.input_val.as_ref().unwrap().sid(), out);
            w.input_val = Some(exp.clone());
        }
    }
    import_fails(&c, d, &["alu", "the expsubnz chain lacks step 4 of 5"]);
    let mut c = c0.clone();
    let k = step(&c, 1);
    let dup = ops(&mut c)[k].clone();
    ops(&mut c).push(dup);
    import_fails(&c, d, &["alu", "step 1 of ALU chain", "appears twice"]);
    let mut c = c0.clone();
    let k = step(&c, 0);
    ops(&mut c)[k].name = ops(&mut c)[k].name.replace("op=expsubnz", "op=expnz");
    import_fails(&c, d, &["alu", "disagree on its op"]);
    // The product reads the quotient and the difference, in that order.
    let mut c = c0.clone();
    let k = step(&c, 2);
    alu_io(&mut ops(&mut c)[k]).inputs.swap(0, 1);
    import_fails(&c, d, &["alu", "input 0 is not the output of step 1 of its ALU chain"]);
    // The difference reads e first: the quotient's reads of A are another stream.
    let mut c = c0.clone();
    let k = step(&c, 0);
    alu_io(&mut ops(&mut c)[k]).inputs.swap(0, 1);
    import_fails(&c, d, &["alu", "reads another stream than the chain's other reads of its input 0"]);
    let mut c = c0.clone();
    let k = step(&c, 1);
    alu_io(&mut ops(&mut c)[k]).output = Some(proto::ValStream::new(0, ""));
    import_fails(&c, d, &["alu", "step 1 of an ALU chain has a void output"]);
    let mut c = c0.clone();
    let k = step(&c, 2);
    alu_io(&mut ops(&mut c)[k]).inputs.pop();
    import_fails(&c, d, &["alu", "step 2 of the expsubnz chain reads 2 values, not 1"]);
    for (name, needle) in [
        ("alu;op=expsubnz;part=0", "a chain step needs group="),
        ("alu;op=expsubnz;group=1", "a chain step needs part="),
        ("alu;op=expsubnz;group=1;part=7", "part 7 of a chain of 5 steps"),
        ("alu;op=add;group=1;part=0", "add is not exported as a chain of ALU steps"),
        ("alu;group=1;part=0", "a chain step needs op="),
    ] {
        let mut c = c0.clone();
        let k = step(&c, 0);
        ops(&mut c)[k].name = name.into();
        import_fails(&c, d, &["alu", needle]);
    }
}
