//! The exported graphs follow the wiring Comal itself needs (shared/reference/comal-build.md,
//! "How Comal wires a graph"), for every example, statement and fusion group: repeats read a
//! ref or val stream (no standalone repeat-signal operation), every joiner pair has a payload,
//! every output slot names a stream, every id has one producer and one consumer, and a locate
//! below a tensor's top level (which Comal's iterate-locate gets wrong) is exported as a dense
//! scan and an intersection. The forms themselves round-trip exactly (roundtrip.rs).

mod common;

use std::collections::HashMap;

use common::*;
use fuseflow_comal::proto::{self, joiner, operation::Op as P};
use fuseflow_compiler::{lower_group, lower_statement, plan, Fusion, LowerOptions};
use fuseflow_graph::Graph;

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
