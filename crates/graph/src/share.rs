//! Sharing of identical operations (hash-consing), FuseFlow's "identical sub-streams are built
//! once": the same primitive applied to the same input streams is built once and its outputs fan
//! out. Roots are shared per label (one generator per tensor), and a joiner that receives the
//! same coordinate stream from several operands co-iterates it once.

use std::collections::HashMap;

use crate::{Graph, Op, StreamId};

impl Graph {
    /// Returns an equivalent graph in which no two nodes apply the same primitive to the same
    /// inputs. Sinks are never merged. The result is pruned and keeps the arena order
    /// (a topological order).
    pub fn share(&self) -> Graph {
        let mut out = Graph::new(self.name.clone());
        out.inputs = self.inputs.clone();
        out.outputs = self.outputs.clone();
        // Old stream -> new stream.
        let mut map: Vec<Option<StreamId>> = vec![None; self.streams.len()];
        let mut seen: HashMap<String, Vec<StreamId>> = HashMap::new();
        for node in &self.nodes {
            let ins: Vec<StreamId> =
                node.ins.iter().map(|s| map[s.0 as usize].expect("inputs precede consumers")).collect();
            // For a joiner: merged operands and, per old output port, the new output port.
            let (op, ins, port_map) = match &node.op {
                Op::Join { kind, payloads, index } => {
                    let (payloads, ins, port_map) = dedupe_join(payloads, &ins);
                    (Op::Join { kind: *kind, payloads, index: index.clone() }, ins, port_map)
                }
                op => (op.clone(), ins, (0..node.outs.len()).collect()),
            };
            let key = match &op {
                Op::LevelWrite { .. } | Op::ValWrite { .. } => None,
                Op::Root => Some(format!("root {}", node.label)),
                op => Some(format!("{op:?} {ins:?}")),
            };
            let new_outs = match key.as_ref().and_then(|k| seen.get(k)) {
                Some(outs) => outs.clone(),
                None => {
                    let outs = out.add(op, &ins, node.label.clone());
                    if let Some(k) = key {
                        seen.insert(k, outs.clone());
                    }
                    outs
                }
            };
            for (port, s) in node.outs.iter().enumerate() {
                if let Some(s) = s {
                    map[s.0 as usize] = Some(new_outs[port_map[port]]);
                }
            }
        }
        out.prune();
        out
    }
}

/// Merges a joiner's operands that share a coordinate stream (co-iterating a stream with itself
/// is the identity), and within an operand drops repeated payload streams. Returns the new
/// payload counts, the new inputs and, for every old output port, its new output port.
fn dedupe_join(payloads: &[u32], ins: &[StreamId]) -> (Vec<u32>, Vec<StreamId>, Vec<usize>) {
    // Operands as (crd, payload streams), merged by crd in first-appearance order.
    let mut ops: Vec<(StreamId, Vec<StreamId>)> = Vec::new();
    // Per old payload (in old output order): (operand index, payload index) in the new layout.
    let mut where_: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    for &p in payloads {
        let crd = ins[i];
        i += 1;
        let o = match ops.iter().position(|(c, _)| *c == crd) {
            Some(o) => o,
            None => {
                ops.push((crd, Vec::new()));
                ops.len() - 1
            }
        };
        for _ in 0..p {
            let s = ins[i];
            i += 1;
            let k = match ops[o].1.iter().position(|&x| x == s) {
                Some(k) => k,
                None => {
                    ops[o].1.push(s);
                    ops[o].1.len() - 1
                }
            };
            where_.push((o, k));
        }
    }
    // New output port of each (operand, payload): 1 + payloads of earlier operands + k.
    let mut base = Vec::with_capacity(ops.len());
    let mut acc = 1;
    for (_, ps) in &ops {
        base.push(acc);
        acc += ps.len();
    }
    let mut port_map = vec![0];
    port_map.extend(where_.iter().map(|&(o, k)| base[o] + k));
    let new_payloads = ops.iter().map(|(_, ps)| ps.len() as u32).collect();
    let mut new_ins = Vec::new();
    for (c, ps) in ops {
        new_ins.push(c);
        new_ins.extend(ps);
    }
    (new_payloads, new_ins, port_map)
}

#[cfg(test)]
mod tests {
    use crate::{Graph, JoinKind, Op};
    use fuseflow_tensor::LevelFormat;

    fn scan(g: &mut Graph, root: crate::StreamId, t: &str) -> Vec<crate::StreamId> {
        let op = Op::Scan { tensor: t.into(), level: 0, dim: 0, format: LevelFormat::Compressed, index: "i".into() };
        g.add(op, &[root], format!("{t}_i"))
    }

    #[test]
    fn duplicate_scans_and_join_operands_are_shared() {
        let mut g = Graph::new("dup");
        let r1 = g.add(Op::Root, &[], "A_root")[0];
        let r2 = g.add(Op::Root, &[], "A_root")[0];
        let rb = g.add(Op::Root, &[], "B_root")[0];
        let a1 = scan(&mut g, r1, "A");
        let a2 = scan(&mut g, r2, "A");
        let b = scan(&mut g, rb, "B");
        let j = g.add(
            Op::Join { kind: JoinKind::Intersect, payloads: vec![1, 1, 1], index: "i".into() },
            &[a1[0], a1[1], a2[0], a2[1], b[0], b[1]],
            "x",
        );
        let va = g.add(Op::Array { tensor: "A".into() }, &[j[1]], "A_vals")[0];
        let va2 = g.add(Op::Array { tensor: "A".into() }, &[j[2]], "A_vals")[0];
        let vb = g.add(Op::Array { tensor: "B".into() }, &[j[3]], "B_vals")[0];
        let m = g.add(Op::Alu { op: crate::AluOp::Mul }, &[va, vb], "")[0];
        let m2 = g.add(Op::Alu { op: crate::AluOp::Mul }, &[va2, vb], "")[0];
        let s = g.add(Op::Alu { op: crate::AluOp::Add }, &[m, m2], "")[0];
        g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[j[0]], "w0");
        g.add(Op::ValWrite { tensor: "X".into() }, &[s], "wv");
        g.verify().unwrap();
        let h = g.share();
        h.verify().unwrap();
        let counts: std::collections::BTreeMap<_, _> = h.kind_counts().into_iter().collect();
        assert_eq!(counts["root"], 2, "{}", h.to_text());
        assert_eq!(counts["scan_compressed"], 2);
        assert_eq!(counts["array"], 2);
        assert_eq!(counts["alu"], 2, "the two products are one");
        let join = h.nodes.iter().find(|n| matches!(n.op, Op::Join { .. })).unwrap();
        assert_eq!(join.op, Op::Join { kind: JoinKind::Intersect, payloads: vec![1, 1], index: "i".into() });
        // Sharing is idempotent.
        assert_eq!(h.share(), h);
    }

    #[test]
    fn sinks_are_never_merged() {
        let mut g = Graph::new("sinks");
        let r = g.add(Op::Root, &[], "A_root")[0];
        let a = scan(&mut g, r, "A");
        g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[a[0]], "w");
        g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[a[0]], "w");
        assert_eq!(g.share().nodes.len(), 4);
    }
}
