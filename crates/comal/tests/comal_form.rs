//! The exported graphs follow the wiring Comal itself needs (shared/reference/comal-build.md,
//! "How Comal wires a graph"), for every example, statement and fusion group: repeats read a
//! ref or val stream (no standalone repeat-signal operation), every joiner pair has a payload,
//! every output slot names a stream, every id has one producer and one consumer, every ALU has
//! the one stage Comal reads, and a locate below a tensor's top level (which Comal's
//! iterate-locate gets wrong) is exported as a dense scan and an intersection. The sparse
//! exponentials are exact chains of Comal ALU steps and a max over nonzeros exact for rows
//! whose largest nonzero is ≥ 0, computed as Comal's ALU and reducer compute. The forms
//! themselves round-trip exactly (roundtrip.rs).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use fuseflow_comal::proto::{self, alu::AluOp as C, joiner, operation::Op as P};
use fuseflow_compiler::{lower_group, lower_statement, plan, Fusion, LowerOptions};
use fuseflow_graph::{AluOp, Graph, Op, OutputBinding, TensorBinding};
use fuseflow_tensor::{Coo, Format, LevelFormat, Tensor};

/// (namespace, id) → (producers, consumers).
type Uses = HashMap<(&'static str, u64), (u32, u32)>;

fn pay(p: &joiner::Payload) -> Option<(&'static str, u64)> {
    match p.stream.as_ref()? {
        joiner::payload::Stream::RefStream(s) => Some(("ref", s.sid())),
        joiner::payload::Stream::ValStream(s) => Some(("val", s.sid())),
    }
}

/// Checks Comal's wiring rules on an export; `what` names it in failures.
fn check_runnable(c: &proto::ComalGraph, what: &str) {
    let mut uses: Uses = HashMap::new();
    let mut prod = |k: (&'static str, u64)| {
        if k.1 != 0 {
            uses.entry(k).or_default().0 += 1;
        }
    };
    let mut cons: Vec<(&'static str, u64)> = Vec::new();
    for o in &c.graph.as_ref().unwrap().operators {
        let name = &o.name;
        match o.op.as_ref().unwrap_or_else(|| panic!("{what}: {name}: no op")) {
            P::Repeatsig(_) => panic!("{what}: a standalone repeatsig ({name}); Comal's repeat builds its own"),
            P::Repeat(r) => {
                match r.input_rep_sig.as_ref().unwrap() {
                    proto::repeat::InputRepSig::RepRef(s) => cons.push(("ref", s.sid())),
                    proto::repeat::InputRepSig::RepVal(s) => cons.push(("val", s.sid())),
                }
                match r.input_ref.as_ref().unwrap() {
                    proto::repeat::InputRef::InRef(s) => cons.push(("ref", s.sid())),
                    proto::repeat::InputRef::InVal(s) => cons.push(("val", s.sid())),
                }
                match r.output_ref.as_ref().unwrap() {
                    proto::repeat::OutputRef::OutRef(s) => prod(("ref", s.sid())),
                    proto::repeat::OutputRef::OutVal(s) => prod(("val", s.sid())),
                }
            }
            P::Joiner(j) => {
                assert_eq!(j.input_pairs.len(), j.output_refs.len(), "{what}: {name}");
                for (k, b) in j.input_pairs.iter().enumerate() {
                    cons.push(("crd", b.crd.as_ref().unwrap().sid()));
                    let p = b.in_ref.as_ref().and_then(pay);
                    let p = p.unwrap_or_else(|| panic!("{what}: {name}: pair {k} has no payload"));
                    cons.push(p);
                    let out = pay(&j.output_refs[k]).unwrap_or_else(|| panic!("{what}: {name}: output {k} unset"));
                    prod(out);
                }
                prod(("crd", j.output_crd.as_ref().map_or(0, |s| s.sid())));
            }
            P::Locate(l) => {
                let level = name.split(';').find_map(|kv| kv.strip_prefix("level=")).unwrap_or("0");
                assert_eq!(level, "0", "{what}: {name}: Comal's iterate-locate is right only at level 0");
                cons.push(("crd", l.input_crd.as_ref().unwrap().sid()));
                cons.push(("ref", l.input_ref.as_ref().unwrap().sid()));
                prod(("ref", l.output_ref1.as_ref().unwrap().sid()));
            }
            P::Root(g) => prod(("ref", g.output_ref.as_ref().unwrap().sid())),
            P::FiberLookup(f) => {
                cons.push(("ref", f.input_ref.as_ref().unwrap().sid()));
                prod(("ref", f.output_ref.as_ref().unwrap().sid()));
                prod(("crd", f.output_crd.as_ref().unwrap().sid()));
            }
            P::Array(a) => {
                cons.push(("ref", a.input_ref.as_ref().unwrap().sid()));
                prod(("val", a.output_val.as_ref().unwrap().sid()));
            }
            P::Alu(a) => {
                // Comal builds an ALU from stage 0 (and rejects one without): every ALU of the
                // examples has one, the sparse exponentials as chains of one-stage ALUs.
                assert_eq!(a.stages.len(), 1, "{what}: {name}: an ALU Comal cannot build");
                let Some(proto::alu::Conn::Vals(v)) = &a.conn else { panic!("{what}: {name}") };
                cons.extend(v.inputs.iter().map(|s| ("val", s.sid())));
                prod(("val", v.output.as_ref().unwrap().sid()));
            }
            P::Reduce(r) => {
                cons.push(("val", r.input_val.as_ref().unwrap().sid()));
                prod(("val", r.output_val.as_ref().unwrap().sid()));
            }
            P::Spacc(s) => {
                cons.push(("crd", s.input_inner_crd.as_ref().unwrap().sid()));
                cons.extend(s.input_outer_crds.iter().map(|c| ("crd", c.sid())));
                cons.push(("val", s.input_val.as_ref().unwrap().sid()));
                prod(("crd", s.output_inner_crd.as_ref().unwrap().sid()));
                s.output_outer_crds.iter().for_each(|c| prod(("crd", c.sid())));
                prod(("val", s.output_val.as_ref().unwrap().sid()));
            }
            P::CoordDrop(d) => {
                let inner = if name.contains("inner=val") { "val" } else { "crd" };
                cons.push(("crd", d.input_outer_crd.as_ref().unwrap().sid()));
                cons.push((inner, d.input_inner_crd.as_ref().unwrap().sid()));
                prod(("crd", d.output_outer_crd.as_ref().unwrap().sid()));
                prod((inner, d.output_inner_crd.as_ref().unwrap().sid()));
            }
            P::FiberWrite(f) => cons.push(("crd", f.input_crd.as_ref().unwrap().sid())),
            P::ValWrite(v) => cons.push(("val", v.input_val.as_ref().unwrap().sid())),
            P::Broadcast(b) => match b.conn.as_ref().unwrap() {
                proto::broadcast::Conn::Ref(x) => {
                    cons.push(("ref", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("ref", s.sid())));
                }
                proto::broadcast::Conn::Crd(x) => {
                    cons.push(("crd", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("crd", s.sid())));
                }
                proto::broadcast::Conn::Val(x) => {
                    cons.push(("val", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("val", s.sid())));
                }
                proto::broadcast::Conn::Repsig(_) => panic!("{what}: {name}: a repsig broadcast"),
            },
            P::Fork(f) => match f.conn.as_ref().unwrap() {
                proto::fork::Conn::Ref(x) => {
                    cons.push(("ref", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("ref", s.sid())));
                }
                proto::fork::Conn::Crd(x) => {
                    cons.push(("crd", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("crd", s.sid())));
                }
                proto::fork::Conn::Val(x) => {
                    cons.push(("val", x.input.as_ref().unwrap().sid()));
                    x.outputs.iter().for_each(|s| prod(("val", s.sid())));
                }
                proto::fork::Conn::Repsig(_) => panic!("{what}: {name}: Comal's Scatter panics on a repsig fork"),
            },
            P::Join(j) => match j.conn.as_ref().unwrap() {
                proto::join::Conn::Ref(x) => {
                    x.inputs.iter().for_each(|s| cons.push(("ref", s.sid())));
                    prod(("ref", x.output.as_ref().unwrap().sid()));
                }
                proto::join::Conn::Crd(x) => {
                    x.inputs.iter().for_each(|s| cons.push(("crd", s.sid())));
                    prod(("crd", x.output.as_ref().unwrap().sid()));
                }
                proto::join::Conn::Val(x) => {
                    x.inputs.iter().for_each(|s| cons.push(("val", s.sid())));
                    prod(("val", x.output.as_ref().unwrap().sid()));
                }
                proto::join::Conn::Repsig(_) => panic!("{what}: {name}: Comal's Gather panics on a repsig join"),
            },
            other => panic!("{what}: {name}: unexpected operation {other:?}"),
        }
    }
    for k in cons {
        assert_ne!(k.1, 0, "{what}: a consumer reads the void id in the {} namespace", k.0);
        uses.entry(k).or_default().1 += 1;
    }
    for ((ns, id), (p, c)) in &uses {
        assert_eq!((*p, *c), (1, 1), "{what}: {ns} stream {id} has {p} producers and {c} consumers");
    }
}

/// Every statement and every fusion group of every example, as compiled by default.
fn every_graph() -> Vec<(String, Graph)> {
    let mut out = Vec::new();
    for path in example_programs() {
        let p = load(&path);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for stmt in 0..p.stmts.len() {
            let k = lower_statement(&p, stmt, None, &LowerOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            out.push((format!("{name} stmt {stmt}"), k.graph));
        }
        for fusion in [Fusion::Partial, Fusion::Full] {
            let Ok(groups) = plan(&p, &fusion) else { continue };
            for g in groups {
                let k = lower_group(&p, &g, None, &LowerOptions::default()).unwrap_or_else(|e| panic!("{e}"));
                out.push((format!("{name} {fusion:?} {g:?}"), k.graph));
            }
        }
    }
    out
}

#[test]
fn every_export_follows_comals_wiring() {
    let graphs = every_graph();
    assert!(graphs.len() >= 60, "only {} graphs", graphs.len());
    for (what, g) in &graphs {
        let c = fuseflow_comal::to_comal(g).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_runnable(&c, what);
    }
}

/// Compiles statement `stmt` of `src`, exports it, and checks that the export round-trips
/// (same graph, cycles, tokens and outputs after import).
fn export_of(src: &str, stmt: usize) -> (Graph, proto::ComalGraph) {
    let p = fuseflow_ir::parse(src, "test.ff", &std::collections::BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let p = fuseflow_ir::check(p).unwrap_or_else(|e| panic!("{e}"));
    let g = lower_statement(&p, stmt, None, &LowerOptions::default()).unwrap_or_else(|e| panic!("{e}")).graph;
    let c = fuseflow_comal::to_comal(&g).unwrap_or_else(|e| panic!("{e}"));
    let tensors = fuseflow_ir::load_inputs(&p, &examples_dir(), 0).unwrap_or_else(|e| panic!("{e}"));
    check_round_trip(&g, &tensors, &g.name);
    (g, c)
}

fn ops(c: &proto::ComalGraph) -> &[proto::Operation] {
    &c.graph.as_ref().unwrap().operators
}

#[test]
fn repeats_read_a_reference_stream_of_the_same_operand() {
    let (g, c) = export_of(&std::fs::read_to_string(examples_dir().join("spmm_gustavson.ff")).unwrap(), 0);
    let repsigs = g.nodes.iter().filter(|n| matches!(n.op, fuseflow_graph::Op::RepSig)).count();
    assert!(repsigs > 0);
    // Producer of every ref stream id.
    let mut lookups = HashMap::new();
    for o in ops(&c) {
        if let Some(P::FiberLookup(f)) = &o.op {
            lookups.insert(f.output_ref.as_ref().unwrap().sid(), f.tensor.clone());
        }
        if let Some(P::Broadcast(b)) = &o.op {
            if let Some(proto::broadcast::Conn::Ref(x)) = &b.conn {
                let t = lookups.get(&x.input.as_ref().unwrap().sid()).cloned();
                for s in &x.outputs {
                    if let Some(t) = &t {
                        lookups.insert(s.sid(), t.clone());
                    }
                }
            }
        }
    }
    let mut repeats = 0;
    for o in ops(&c) {
        if let Some(P::Repeat(r)) = &o.op {
            let Some(proto::repeat::InputRepSig::RepRef(s)) = &r.input_rep_sig else { panic!("{}", o.name) };
            // Gustavson's signals come from scanners: the repeat reads a scanner's references.
            assert!(lookups.contains_key(&s.sid()), "{}: rep_ref {} is no scanner's reference stream", o.name, s.sid());
            assert!(o.name.contains("sig_port=0"), "{}", o.name);
            repeats += 1;
        }
    }
    assert_eq!(repeats, repsigs);
}

#[test]
fn a_range_operand_rides_with_its_reference_stream() {
    let src = "input A[6, 5] dcsr = random(density=0.3)\ninput b[5] dense = random(density=1)\n\
               output X[6, 5] dense\nX(i,j) = A(i,j) + b(j)\n";
    let (g, c) = export_of(src, 0);
    assert!(g
        .nodes
        .iter()
        .any(|n| matches!(&n.op, fuseflow_graph::Op::Join { payloads, .. } if payloads.contains(&0))));
    // The range scanners' reference streams.
    let ranges: Vec<u64> = ops(&c)
        .iter()
        .filter_map(|o| match &o.op {
            Some(P::FiberLookup(f)) if f.tensor.starts_with("__range_") => Some(f.output_ref.as_ref().unwrap().sid()),
            _ => None,
        })
        .collect();
    assert!(!ranges.is_empty());
    let mut seen = 0;
    for o in ops(&c) {
        let Some(P::Joiner(j)) = &o.op else { continue };
        for (k, b) in j.input_pairs.iter().enumerate() {
            if let Some(("ref", id)) = b.in_ref.as_ref().and_then(pay) {
                if ranges.contains(&id) {
                    // The range's payload goes nowhere: a void output.
                    assert_eq!(pay(&j.output_refs[k]).map(|p| p.1), Some(0), "{}", o.name);
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 0, "no joiner pair carries a range's references");
}

#[test]
fn writers_of_a_dense_outer_level_get_droppers() {
    // CSR output: the compiler drops nothing above a dense level, but Comal's writers need it.
    let src = "input B[6, 5] csr = random(density=0.3)\ninput C[6, 5] csr = random(density=0.3, seed=3)\n\
               output X[6, 5] csr\nX(i,j) = B(i,j) * C(i,j)\n";
    let (g, c) = export_of(src, 0);
    assert!(!g.nodes.iter().any(|n| matches!(n.op, fuseflow_graph::Op::CrdDrop)));
    let drop = ops(&c)
        .iter()
        .find_map(|o| match &o.op {
            Some(P::CoordDrop(d)) if o.name.contains("compat=1") => Some(d.clone()),
            _ => None,
        })
        .expect("a dropper before the writers");
    let mut writer_inputs: Vec<u64> = ops(&c)
        .iter()
        .filter_map(|o| match &o.op {
            Some(P::FiberWrite(f)) => Some(f.input_crd.as_ref().unwrap().sid()),
            _ => None,
        })
        .collect();
    writer_inputs.sort_unstable();
    let mut outs = vec![drop.output_outer_crd.unwrap().sid(), drop.output_inner_crd.unwrap().sid()];
    outs.sort_unstable();
    assert_eq!(writer_inputs, outs, "both writers read the dropper");
    // A dense inner level can hold no empty fiber: a (compressed, dense) output needs none.
    let src = "input B[6, 5] dcsr = random(density=0.3)\ninput b[5] dense = random(density=1)\n\
               output X[6, 5] dense\nX(i,j) = B(i,j) + b(j)\n";
    let (_, c) = export_of(src, 0);
    assert!(!ops(&c).iter().any(|o| o.name.contains("compat=1")));
}

#[test]
fn deep_locates_become_a_dense_scan_and_an_intersection() {
    let (g, c) = export_of(&std::fs::read_to_string(examples_dir().join("ttm.ff")).unwrap(), 0);
    let deep = g.nodes.iter().filter(|n| matches!(n.op, fuseflow_graph::Op::Locate { level: 1.., .. })).count();
    assert!(deep > 0);
    let scans = ops(&c)
        .iter()
        .filter(|o| matches!(&o.op, Some(P::FiberLookup(f)) if f.format == "dense" && o.name.contains("locate=")))
        .count();
    let joins = ops(&c)
        .iter()
        .filter(|o| {
            matches!(&o.op, Some(P::Joiner(j)) if j.join_type == proto::joiner::Type::Intersect as i32)
                && o.name.contains("locate=")
        })
        .count();
    assert_eq!((scans, joins), (deep, deep));
}

#[test]
fn a_sparse_union_that_drives_scanners_reads_a_dense_top_level() {
    // B + C, both DCSR: the union over i gives B an N reference where B lacks a row; Comal's
    // scanner would pass it on as an N coordinate that its union at j rejects. The export
    // stores both top levels densely (empty rows as empty fibers), so no N arises.
    let (g, c) = export_of(&std::fs::read_to_string(examples_dir().join("add.ff")).unwrap(), 0);
    let dense_tops: Vec<&str> = ops(&c)
        .iter()
        .filter_map(|o| match &o.op {
            Some(P::FiberLookup(f)) if o.name.contains("stored=dense") => {
                assert_eq!((f.format.as_str(), o.name.contains("level=0")), ("dense", true), "{}", o.name);
                Some(f.tensor.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(dense_tops, ["B", "C"]);
    assert!(fuseflow_comal::comal_gaps(&g).is_empty(), "{:?}", fuseflow_comal::comal_gaps(&g));
    // The tensor directory stores the dense level as such: no seg/crd files for dimension 0.
    let p = load(&examples_dir().join("add.ff"));
    let tensors = fuseflow_ir::load_inputs(&p, &examples_dir(), 0).unwrap();
    let dir = TmpDir::new("dense-top");
    fuseflow_comal::export_dir(&g, &tensors, dir.path()).unwrap();
    assert!(!dir.path().join("tensor_B_mode_0_crd").exists());
    assert!(dir.path().join("tensor_B_mode_1_crd").exists());
}

/// Comal's f32 ALU as its proto driver builds it from stage 0 (one input: `EXP`, `MAX` against
/// `scalar` via `f32::max`, the `SCALAR*` ops, `RSQRT`, `SIGMOID`; two: `ADD`, `SUB`, `MUL`,
/// `DIV`, `ELEMMUL`).
fn comal_alu(a: &proto::Alu, ins: &[f32]) -> f32 {
    use proto::alu::AluOp as C;
    assert_eq!(a.stages.len(), 1, "Comal reads stage 0 and rejects an ALU without one");
    let op = C::try_from(a.stages[0].op).unwrap();
    let s = a.scalar as f32;
    match (op, ins) {
        (C::Add, [x, y]) => x + y,
        (C::Sub, [x, y]) => x - y,
        (C::Mul | C::Elemmul, [x, y]) => x * y,
        (C::Div, [x, y]) => x / y,
        (C::Exp, [x]) => x.exp(),
        (C::Max, [x]) => x.max(s),
        (C::Scalaradd, [x]) => x + s,
        (C::Scalarmul, [x]) => x * s,
        (C::Scalardiv, [x]) => x / s,
        (C::Rsqrt, [x]) => 1.0 / x.sqrt(),
        (C::Sigmoid, [x]) => 1.0 / (1.0 + (-x).exp()),
        (op, ins) => panic!("Comal has no {op:?} over {} inputs", ins.len()),
    }
}

/// The value the value writer of `c` receives when every array of tensor `T` reads `vals[T]`:
/// broadcasts copy, ALUs compute as Comal does.
fn comal_value(c: &proto::ComalGraph, vals: &HashMap<&str, f32>) -> f32 {
    let mut v: HashMap<u64, f32> = HashMap::new();
    loop {
        let mut progress = false;
        for o in ops(c) {
            match o.op.as_ref().unwrap() {
                P::Array(a) => {
                    let id = a.output_val.as_ref().unwrap().sid();
                    progress |= v.insert(id, vals[a.tensor.as_str()]).is_none();
                }
                P::Broadcast(b) => {
                    if let Some(proto::broadcast::Conn::Val(x)) = &b.conn {
                        if let Some(&y) = v.get(&x.input.as_ref().unwrap().sid()) {
                            for out in &x.outputs {
                                progress |= v.insert(out.sid(), y).is_none();
                            }
                        }
                    }
                }
                P::Alu(a) => {
                    let Some(proto::alu::Conn::Vals(io)) = &a.conn else { panic!("{}", o.name) };
                    let ins: Option<Vec<f32>> = io.inputs.iter().map(|s| v.get(&s.sid()).copied()).collect();
                    let id = io.output.as_ref().unwrap().sid();
                    if let (Some(ins), false) = (ins, v.contains_key(&id)) {
                        v.insert(id, comal_alu(a, &ins));
                        progress = true;
                    }
                }
                P::ValWrite(w) => {
                    if let Some(&y) = v.get(&w.input_val.as_ref().unwrap().sid()) {
                        return y;
                    }
                }
                _ => {}
            }
        }
        assert!(progress, "the value writer's input is never computed");
    }
}

/// `X(i) = op(A(i)[, B(i)])` over dense vectors: one ALU node between arrays and a writer,
/// with the data `a` (and `b`).
fn one_alu(op: AluOp, a: &[f64], b: &[f64]) -> (Graph, BTreeMap<String, Tensor>) {
    let n = a.len();
    let mut g = Graph::new("one_alu");
    let r = g.add(Op::Root, &[], "root")[0];
    let scan = |t: &str| Op::Scan { tensor: t.into(), level: 0, dim: 0, format: LevelFormat::Dense, index: "i".into() };
    let sa = g.add(scan("A"), &[r], "A_i");
    let mut ins = vec![g.add(Op::Array { tensor: "A".into() }, &[sa[1]], "A_vals")[0]];
    let mut tensors = BTreeMap::new();
    let dense = |data: &[f64]| Tensor::from_coo(&Coo::from_dense(&[n], data).unwrap(), &Format::dense(1)).unwrap();
    let binding = |t: &str| TensorBinding {
        tensor: t.into(),
        shape: vec![n],
        levels: vec![LevelFormat::Dense],
        mode_order: vec![0],
    };
    tensors.insert("A".to_string(), dense(a));
    g.inputs.push(binding("A"));
    if op.arity() == 2 {
        let rb = g.add(Op::Root, &[], "B_root")[0];
        let sb = g.add(scan("B"), &[rb], "B_i");
        ins.push(g.add(Op::Array { tensor: "B".into() }, &[sb[1]], "B_vals")[0]);
        tensors.insert("B".to_string(), dense(b));
        g.inputs.push(binding("B"));
    }
    let x = g.add(Op::Alu { op }, &ins, "f")[0];
    g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[sa[0]], "X_w0");
    g.add(Op::ValWrite { tensor: "X".into() }, &[x], "X_vals");
    g.prune();
    g.outputs.push(OutputBinding { tensor: "X".into(), shape: vec![n], dims: vec![0] });
    g.verify().unwrap();
    (g, tensors)
}

/// Values where the sparse exponentials are delicate in f32: signed zeros, subnormals, values
/// whose exponential over- or underflows, and ordinary ones.
const EDGES: &[f32] = &[0.0, -0.0, 1e-40, -1e-40, 1e-30, 0.5, -3.25, 80.0, 100.0, -100.0, 1e30, -1e30];

#[test]
fn sparse_exponentials_become_exact_alu_chains() {
    for (op, code, stages) in [
        (AluOp::ExpSubNz, "expsubnz", vec![C::Sub, C::Div, C::Mul, C::Exp, C::Max]),
        (AluOp::ExpNz, "expnz", vec![C::Div, C::Mul, C::Exp, C::Max]),
    ] {
        let a: Vec<f64> = EDGES.iter().map(|&x| f64::from(x)).collect();
        let (g, tensors) = one_alu(op, &a, &a.iter().rev().copied().collect::<Vec<_>>());
        check_round_trip(&g, &tensors, code);
        let c = fuseflow_comal::to_comal(&g).unwrap();
        check_runnable(&c, code);
        // One `alu` per step, named `alu;group=N;op=...;part=K`; step 0 has the node's id,
        // the others ids after the last node.
        let node = g.nodes.iter().position(|n| matches!(n.op, Op::Alu { .. })).unwrap() as u64;
        let chain: Vec<&proto::Operation> = ops(&c).iter().filter(|o| matches!(o.op, Some(P::Alu(_)))).collect();
        assert_eq!(chain.len(), stages.len(), "{code}");
        for (k, (o, want)) in chain.iter().zip(&stages).enumerate() {
            assert_eq!(o.name, format!("alu;group={node};op={code};part={k}"));
            assert!(if k == 0 { o.id == node } else { o.id >= g.nodes.len() as u64 }, "{} has id {}", o.name, o.id);
            let Some(P::Alu(alu)) = &o.op else { unreachable!() };
            assert_eq!((alu.stages.len(), alu.stages[0].op, alu.scalar), (1, *want as i32, 0.0), "{}", o.name);
        }
        // Computed as Comal does, the chain gives f32's definition exactly, for every pair.
        for &x in EDGES {
            for &y in EDGES {
                let want = if x == 0.0 { 0.0 } else { (x - if op == AluOp::ExpNz { 0.0 } else { y }).exp() };
                let got = comal_value(&c, &HashMap::from([("A", x), ("B", y)]));
                assert_eq!(got.to_bits(), want.to_bits(), "{code}({x:e}, {y:e}): Comal {got:e}, f32 {want:e}");
                // And ours (f64) agrees to f32's rounding.
                let ours = op.apply2(f64::from(x), f64::from(y)) as f32;
                assert!(ours == got || (ours - got).abs() <= 1e-6 * got.abs(), "{code}({x:e}, {y:e}): ours {ours:e}");
            }
        }
    }
}

#[test]
fn a_max_over_nonzeros_exports_stand_ins_exact_for_nonnegative_maxima() {
    let src = "input A[4, 5] dcsr = random(density=0.5)\noutput y[4] dense\ny(i) = maxnz(j, A(i,j))\n";
    let (g, c) = export_of(src, 0);
    // The conversions are one stage each: the identity and max(x, 0).
    let stage_of = |code: &str| {
        let o = ops(&c).iter().find(|o| o.name == format!("alu;op={code}")).unwrap_or_else(|| panic!("{code}"));
        let Some(P::Alu(a)) = &o.op else { panic!("{code}") };
        assert_eq!(a.stages.len(), 1, "{code}");
        a.clone()
    };
    let (to_neg, to_zero) = (stage_of("zero_to_neginf"), stage_of("neginf_to_zero"));
    assert_eq!((to_neg.stages[0].op, to_neg.scalar), (C::Scalaradd as i32, 0.0));
    assert_eq!((to_zero.stages[0].op, to_zero.scalar), (C::Max as i32, 0.0));
    // The only note is the reducer's, with the exactness condition.
    let gaps = fuseflow_comal::comal_gaps(&g);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].contains("a max over nonzeros") && gaps[0].contains("largest nonzero is ≥ 0"), "{gaps:?}");
    // Comal's max reducer starts from f32::MIN in the first group and from 0 after it.
    let comal = |groups: &[&[f32]]| -> Vec<f32> {
        let mut init = f32::MIN;
        let mut out = Vec::new();
        for gr in groups {
            let mut m = init;
            for &x in *gr {
                let x = comal_alu(&to_neg, &[x]);
                // Comal's test: a value not below the running maximum (NaN too) replaces it.
                if x.partial_cmp(&m) != Some(std::cmp::Ordering::Less) {
                    m = x;
                }
            }
            out.push(comal_alu(&to_zero, &[m]));
            init = 0.0;
        }
        out
    };
    let ours = |gr: &[f32]| -> f32 {
        let m = gr.iter().map(|&x| AluOp::ZeroToNegInf.apply1(f64::from(x))).fold(f64::NEG_INFINITY, f64::max);
        AluOp::NegInfToZero.apply1(if gr.is_empty() { 0.0 } else { m }) as f32
    };
    let groups: &[&[f32]] = &[
        &[],
        &[0.0, 0.0],
        &[3.0, -1.0, 0.0],
        &[-1.0, 0.0, 2.5],
        &[],
        &[0.0, 1e-30],
        &[7.0],
        &[-2.0, -5.0],
        &[0.0, -1.0],
    ];
    for first in 0..groups.len() {
        let order: Vec<&[f32]> = groups[first..].iter().chain(&groups[..first]).copied().collect();
        for (gr, got) in order.iter().zip(comal(&order)) {
            let nonzero_max = gr.iter().copied().filter(|&x| x != 0.0).reduce(f32::max);
            let exact = nonzero_max.is_none_or(|m| m >= 0.0);
            assert_eq!(got == ours(gr), exact, "group {gr:?} (first {first}): Comal {got}, ours {}", ours(gr));
        }
    }
}

/// The lane test program (a dense row level: Comal's Gather can rebuild its lanes).
fn lanes_program() -> fuseflow_ir::CheckedProgram {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lanes_spmm_csr.ff");
    load(&path)
}

/// One line per operation: id, name (kind and our metadata) and, for forks and joins, the
/// stream ids they read and write.
fn render(c: &proto::ComalGraph) -> String {
    let ids = |v: Vec<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut out = String::new();
    for o in ops(c) {
        let wiring = match o.op.as_ref().unwrap() {
            P::Fork(f) => match f.conn.as_ref().unwrap() {
                proto::fork::Conn::Crd(x) => {
                    format!(
                        " crd {} -> {}",
                        x.input.as_ref().unwrap().sid(),
                        ids(x.outputs.iter().map(|s| s.sid()).collect())
                    )
                }
                proto::fork::Conn::Ref(x) => {
                    format!(
                        " ref {} -> {}",
                        x.input.as_ref().unwrap().sid(),
                        ids(x.outputs.iter().map(|s| s.sid()).collect())
                    )
                }
                proto::fork::Conn::Val(x) => {
                    format!(
                        " val {} -> {}",
                        x.input.as_ref().unwrap().sid(),
                        ids(x.outputs.iter().map(|s| s.sid()).collect())
                    )
                }
                proto::fork::Conn::Repsig(_) => " repsig".into(),
            },
            P::Join(j) => match j.conn.as_ref().unwrap() {
                proto::join::Conn::Crd(x) => {
                    format!(
                        " crd {} -> {}",
                        ids(x.inputs.iter().map(|s| s.sid()).collect()),
                        x.output.as_ref().unwrap().sid()
                    )
                }
                proto::join::Conn::Ref(x) => {
                    format!(
                        " ref {} -> {}",
                        ids(x.inputs.iter().map(|s| s.sid()).collect()),
                        x.output.as_ref().unwrap().sid()
                    )
                }
                proto::join::Conn::Val(x) => {
                    format!(
                        " val {} -> {}",
                        ids(x.inputs.iter().map(|s| s.sid()).collect()),
                        x.output.as_ref().unwrap().sid()
                    )
                }
                proto::join::Conn::Repsig(_) => " repsig".into(),
            },
            _ => String::new(),
        };
        out.push_str(&format!("{} {}{wiring}\n", o.id, o.name));
    }
    out
}

/// Lanes over a densely iterated level whose size the lane count divides export as Comal's
/// Scatter and Gather, follow Comal's wiring, round-trip exactly (same graph, cycles, tokens
/// and outputs after import), and compute what the graph without lanes computes.
#[test]
fn lanes_export_as_scatter_and_gather_and_round_trip() {
    let p = lanes_program();
    let tensors =
        inputs(&p, std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lanes_spmm_csr.ff").as_path());
    let g = lower_statement(&p, 0, None, &LowerOptions::default()).unwrap().graph;
    let cfg = fuseflow_sim::SimConfig::default();
    let plain = fuseflow_sim::simulate(&g, &tensors, &cfg).unwrap();
    for lanes in [2, 4, 8] {
        let what = format!("lanes_spmm_csr par i={lanes}");
        let par = fuseflow_compiler::par::parallelize(&g, "i", lanes).unwrap_or_else(|e| panic!("{what}: {e}"));
        let c = fuseflow_comal::to_comal(&par).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_runnable(&c, &what);
        let forks = ops(&c).iter().filter(|o| matches!(o.op, Some(P::Fork(_)))).count();
        let joins = ops(&c).iter().filter(|o| matches!(o.op, Some(P::Join(_)))).count();
        assert!(forks >= 1 && joins >= 2, "{what}: {forks} forks, {joins} joins");
        check_round_trip(&par, &tensors, &what);
        let r = fuseflow_sim::simulate(&par, &tensors, &cfg).unwrap();
        assert_eq!(r.outputs, plain.outputs, "{what}: outputs differ from one lane");
        if lanes == 2 {
            insta::assert_snapshot!("lanes_spmm_csr_par_i2", render(&c));
        }
    }
}

/// Every gather Comal's Gather cannot rebuild is refused, naming the node and the reason.
#[test]
fn gathers_comal_cannot_rebuild_are_refused() {
    let refused = |g: &Graph, index: &str, lanes: u32| -> String {
        let par = fuseflow_compiler::par::parallelize(g, index, lanes).unwrap();
        let e = fuseflow_comal::to_comal(&par).expect_err("a refused gather").to_string();
        assert!(e.contains("(gather)") && !e.contains('\n'), "{e}");
        e
    };
    // A lane count that does not divide the level's size.
    let g = lower_statement(&lanes_program(), 0, None, &LowerOptions::default()).unwrap().graph;
    assert!(refused(&g, "i", 3).contains("i has 32 elements per fiber, not a nonzero multiple of 3 lanes"));
    // A compressed level: fibers of any length.
    let src = std::fs::read_to_string(examples_dir().join("spmm_gustavson.ff")).unwrap();
    let (g, _) = export_of(&src, 0);
    assert!(refused(&g, "i", 2).contains("i is not iterated densely"));
    // One token per element (a reduction's result per row).
    let src = std::fs::read_to_string(examples_dir().join("spmv.ff")).unwrap();
    let (g, _) = export_of(&src, 0);
    assert!(refused(&g, "i", 2).contains("depth 0"));
    // Two levels below the parallelized one (heads over query rows and features).
    let p = load(&examples_dir().join("bigbird_attention.ff"));
    let groups = plan(&p, &Fusion::Full).unwrap();
    let g = lower_group(&p, &groups[0], None, &LowerOptions::default()).unwrap().graph;
    assert!(refused(&g, "h", 2).contains("depth 2"));
}

/// A join without our metadata has Comal's Gather semantics, which no primitive of ours has.
#[test]
fn a_foreign_join_is_refused_on_import() {
    let p = lanes_program();
    let g = lower_statement(&p, 0, None, &LowerOptions::default()).unwrap().graph;
    let par = fuseflow_compiler::par::parallelize(&g, "i", 2).unwrap();
    let mut c = fuseflow_comal::to_comal(&par).unwrap();
    for o in &mut c.graph.as_mut().unwrap().operators {
        if matches!(o.op, Some(P::Join(_))) {
            o.name = "join".into();
        }
    }
    let dir = std::env::temp_dir();
    let e = fuseflow_comal::from_comal(&c, &dir).expect_err("a foreign join").to_string();
    assert!(e.contains("without our depth= metadata"), "{e}");
}
