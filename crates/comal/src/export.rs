//! Export: our graph → tortilla protobuf, and the data directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use fuseflow_graph::{AluOp, Graph, JoinKind, Node, NodeId, Op, ReduceKind, ScalarOp, StreamId, StreamKind};
use fuseflow_tensor::{LevelFormat, Tensor};
use prost::Message as _;

use crate::alu::{alu_form, AluForm, Src, Step};
use crate::meta::Meta;
use crate::proto::{self, joiner, operation, Operation};
use crate::{path_name, ExportError, CHANNEL_SIZE, GRAPH_FILE, RANGE_PREFIX};

/// How one of our streams is wired in Comal.
#[derive(Debug, Clone)]
enum Wire {
    /// Not yet touched.
    Unset,
    /// One producer and one consumer share this id.
    Direct(u64),
    /// The producer writes `input`; a broadcast copies it to `outputs`, handed out in order.
    Fanout { input: u64, outputs: Vec<u64>, next: usize },
}

/// Stream-id allocation, run twice: a counting pass records how many Comal consumers each of
/// our streams has, and the real pass hands out ids (and inserts broadcasts) accordingly.
///
/// Streams are indexed like the graph's, followed by *virtual* streams: output ports that are
/// void in our graph but that the export consumes (see [`Plan`]).
struct Alloc<'g> {
    g: &'g Graph,
    counting: bool,
    consumers: Vec<u32>,
    wires: Vec<Wire>,
    kinds: Vec<StreamKind>,
    names: Vec<String>,
    next_id: [u64; 4],
    next_op: u64,
    pending: Vec<Operation>,
}

fn ns(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Ref => 0,
        StreamKind::Crd => 1,
        StreamKind::Val => 2,
        StreamKind::RepSig => 3,
    }
}

impl<'g> Alloc<'g> {
    fn new(g: &'g Graph, virtuals: &[(StreamKind, String)]) -> Alloc<'g> {
        let n = g.streams.len() + virtuals.len();
        let mut kinds: Vec<StreamKind> = g.streams.iter().map(|s| s.kind).collect();
        let mut names: Vec<String> = g.streams.iter().map(|s| s.name.clone()).collect();
        for (k, name) in virtuals {
            kinds.push(*k);
            names.push(name.clone());
        }
        Alloc {
            g,
            counting: true,
            consumers: vec![0; n],
            wires: vec![Wire::Unset; n],
            kinds,
            names,
            next_id: [1; 4],
            next_op: g.nodes.len() as u64,
            pending: Vec::new(),
        }
    }

    /// Switches from the counting pass to the real pass.
    fn start_real_pass(&mut self) {
        self.counting = false;
        self.next_op = self.g.nodes.len() as u64;
    }

    fn fresh(&mut self, kind: StreamKind) -> u64 {
        let slot = &mut self.next_id[ns(kind)];
        let id = *slot;
        *slot += 1;
        id
    }

    /// A val id for a stream only the export has (inside a chain); 0 in the counting pass,
    /// which hands out no ids.
    fn inner_val(&mut self) -> u64 {
        if self.counting {
            0
        } else {
            self.fresh(StreamKind::Val)
        }
    }

    fn fresh_op(&mut self) -> u64 {
        let id = self.next_op;
        self.next_op += 1;
        id
    }

    fn kind(&self, s: StreamId) -> StreamKind {
        self.kinds[s.0 as usize]
    }

    fn name(&self, s: StreamId) -> String {
        self.names[s.0 as usize].clone()
    }

    /// Wires stream `s` on first use: a direct id, or a broadcast for several consumers.
    fn ensure(&mut self, s: StreamId) {
        let i = s.0 as usize;
        if !matches!(self.wires[i], Wire::Unset) {
            return;
        }
        let kind = self.kind(s);
        let n = self.consumers[i];
        if n <= 1 {
            let id = self.fresh(kind);
            self.wires[i] = Wire::Direct(id);
            return;
        }
        let input = self.fresh(kind);
        let outputs: Vec<u64> = (0..n).map(|_| self.fresh(kind)).collect();
        let name = self.name(s);
        let label = format!("{name}.broadcast");
        let conn = match kind {
            StreamKind::Ref => proto::broadcast::Conn::Ref(proto::broadcast::RefBundle {
                input: Some(proto::RefStream::new(input, &name)),
                outputs: outputs.iter().map(|&o| proto::RefStream::new(o, &name)).collect(),
            }),
            StreamKind::Crd => proto::broadcast::Conn::Crd(proto::broadcast::CrdBundle {
                input: Some(proto::CrdStream::new(input, &name)),
                outputs: outputs.iter().map(|&o| proto::CrdStream::new(o, &name)).collect(),
            }),
            StreamKind::Val => proto::broadcast::Conn::Val(proto::broadcast::ValBundle {
                input: Some(proto::ValStream::new(input, &name)),
                outputs: outputs.iter().map(|&o| proto::ValStream::new(o, &name)).collect(),
            }),
            StreamKind::RepSig => proto::broadcast::Conn::Repsig(proto::broadcast::RepSigBundle {
                input: Some(proto::RepSigStream::new(input, &name)),
                outputs: outputs.iter().map(|&o| proto::RepSigStream::new(o, &name)).collect(),
            }),
        };
        let id = self.fresh_op();
        self.pending.push(Operation {
            name: "broadcast".into(),
            id,
            op: Some(operation::Op::Broadcast(proto::Broadcast { label, conn: Some(conn) })),
        });
        self.wires[i] = Wire::Fanout { input, outputs, next: 0 };
    }

    /// The id a consumer of `s` uses.
    fn consume(&mut self, s: StreamId) -> u64 {
        if self.counting {
            self.consumers[s.0 as usize] += 1;
            return 0;
        }
        self.ensure(s);
        match &mut self.wires[s.0 as usize] {
            Wire::Direct(id) => *id,
            Wire::Fanout { outputs, next, .. } => {
                // The counting pass saw exactly as many consumptions, so this never runs out.
                let id = outputs.get(*next).copied().unwrap_or(0);
                *next += 1;
                id
            }
            Wire::Unset => 0,
        }
    }

    /// The id the producer of `s` writes (0 for a void output).
    fn produce(&mut self, s: Option<StreamId>) -> u64 {
        let Some(s) = s else { return 0 };
        if self.counting || self.consumers[s.0 as usize] == 0 {
            return 0;
        }
        self.ensure(s);
        match &self.wires[s.0 as usize] {
            Wire::Direct(id) => *id,
            Wire::Fanout { input, .. } => *input,
            Wire::Unset => 0,
        }
    }

    /// The id the producer of `s` writes, without adding a consumer (0 in the counting pass,
    /// or when nothing in Comal reads `s`).
    fn peek(&mut self, s: StreamId) -> u64 {
        self.produce(Some(s))
    }

    fn name_of(&self, s: Option<StreamId>) -> String {
        s.map(|s| self.name(s)).unwrap_or_default()
    }

    fn c_ref(&mut self, s: StreamId) -> Option<proto::RefStream> {
        let id = self.consume(s);
        Some(proto::RefStream::new(id, self.name(s)))
    }
    fn c_crd(&mut self, s: StreamId) -> Option<proto::CrdStream> {
        let id = self.consume(s);
        Some(proto::CrdStream::new(id, self.name(s)))
    }
    fn c_val(&mut self, s: StreamId) -> Option<proto::ValStream> {
        let id = self.consume(s);
        Some(proto::ValStream::new(id, self.name(s)))
    }
    fn p_ref(&mut self, s: Option<StreamId>) -> Option<proto::RefStream> {
        let id = self.produce(s);
        Some(proto::RefStream::new(id, self.name_of(s)))
    }
    fn p_crd(&mut self, s: Option<StreamId>) -> Option<proto::CrdStream> {
        let id = self.produce(s);
        Some(proto::CrdStream::new(id, self.name_of(s)))
    }
    fn p_val(&mut self, s: Option<StreamId>) -> Option<proto::ValStream> {
        let id = self.produce(s);
        Some(proto::ValStream::new(id, self.name_of(s)))
    }

    /// A consumed payload (ref or val).
    fn c_payload(&mut self, s: StreamId) -> joiner::Payload {
        let id = self.consume(s);
        payload(self.kind(s), id, self.name(s))
    }

    /// A produced payload of the given kind.
    fn p_payload(&mut self, kind: StreamKind, s: Option<StreamId>) -> joiner::Payload {
        let id = self.produce(s);
        payload(kind, id, self.name_of(s))
    }
}

fn payload(kind: StreamKind, id: u64, name: String) -> joiner::Payload {
    let stream = if kind == StreamKind::Val {
        joiner::payload::Stream::ValStream(proto::ValStream::new(id, name))
    } else {
        joiner::payload::Stream::RefStream(proto::RefStream::new(id, name))
    };
    joiner::Payload { stream: Some(stream) }
}

/// A same-shape stand-in for a crd stream: a ref or val stream produced next to it, which
/// Comal's repeat (and a joiner's payload slot) can read.
#[derive(Debug, Clone, Copy)]
struct Sibling {
    /// The ref or val stream (possibly virtual).
    stream: StreamId,
    /// Output port of the crd stream at its producer.
    crd_port: usize,
    /// For a lane of a crd stream's fork: `(fork node, lane)`. `stream` is then that lane of
    /// the fork of the sibling (the two forks deal alike) and `crd_port` the port of the forked
    /// crd stream at its producer (see [`Plan::lane_sibling`]).
    lane: Option<(usize, usize)>,
}

/// Export decisions taken before emission (identical in both passes of [`Alloc`]).
#[derive(Default)]
struct Plan {
    /// Virtual streams `(kind, name)`, numbered after the graph's streams.
    virtuals: Vec<(StreamKind, String)>,
    /// Void output ports `(node, port)` the export wires up, and their virtual streams.
    ports: HashMap<(usize, usize), StreamId>,
    /// Per node: for a RepSig over a crd stream, the sibling its repeats read in Comal's form.
    sig: Vec<Option<Sibling>>,
    /// `(joiner, operand)` → the payload given to an operand that has none (a range).
    pay: HashMap<(usize, usize), Sibling>,
    /// `(joiner, operand)` → the output of that synthesized payload, when a repeat reads it.
    pay_out: HashMap<(usize, usize), StreamId>,
    /// Per node: a locate below the top level, exported as a dense scan and an intersection.
    loc: Vec<Option<LocRewrite>>,
    /// Per node: a repeat read only by rewritten locates (not exported; the importer rebuilds it).
    skip: Vec<bool>,
    /// Coordinate droppers added before the level writers of each output tensor (see
    /// [`Plan::add_droppers`]), emitted before that tensor's first writer.
    drops: BTreeMap<String, Vec<CompatDrop>>,
    /// Level writer → the stream it reads instead of its input (a dropper's output).
    writer_in: HashMap<usize, StreamId>,
    /// Compressed input levels stored densely ([`densified_levels`]).
    dense: BTreeSet<(String, u32)>,
    /// Per node: a fork of a crd stream read only by RepSigs that fold into repeats reading a
    /// lane of the sibling's fork instead; not exported (the importer rebuilds it).
    skip_fork: Vec<bool>,
}

/// A coordinate dropper only the export has: `(outer, inner) → (outer', inner')`.
#[derive(Debug, Clone, Copy)]
struct CompatDrop {
    outer: StreamId,
    inner: StreamId,
    outer_out: StreamId,
    inner_out: StreamId,
}

/// A locate `ref = parent × size + crd` below a tensor's top level. Comal's iterate-locate
/// passes the coordinate through as the reference (right only when the parent position is 0),
/// so the export intersects the coordinates with a dense scan of the level under the
/// un-repeated parent references instead.
#[derive(Debug, Clone, Copy)]
struct LocRewrite {
    /// The repeat that gives the locate its parent reference per coordinate.
    rep: usize,
    /// The repeat's RepSig (over the locate's crd stream).
    sig: usize,
    /// The un-repeated parent references (the repeat's payload).
    parent: StreamId,
    /// The stream that rides along with the coordinates in the intersection.
    sib: Sibling,
    /// Logical dimension of the located level.
    dim: u32,
    /// Virtual crd and ref outputs of the dense scan.
    scan_crd: StreamId,
    scan_ref: StreamId,
}

impl Plan {
    fn new(g: &Graph) -> Plan {
        let mut plan = Plan {
            sig: vec![None; g.nodes.len()],
            loc: vec![None; g.nodes.len()],
            skip: vec![false; g.nodes.len()],
            skip_fork: vec![false; g.nodes.len()],
            ..Plan::default()
        };
        for (i, n) in g.nodes.iter().enumerate() {
            match &n.op {
                Op::Join { payloads, .. } => {
                    let mut ii = 0usize;
                    for (p, &np) in payloads.iter().enumerate() {
                        if np == 0 {
                            if let Some(sib) = plan.sibling(g, n.ins[ii]) {
                                plan.pay.insert((i, p), sib);
                            }
                        }
                        ii += 1 + np as usize;
                    }
                }
                Op::RepSig if g.stream(n.ins[0]).kind == StreamKind::Crd => {
                    plan.sig[i] = plan.sibling(g, n.ins[0]).or_else(|| plan.lane_sibling(g, n.ins[0]));
                }
                Op::Locate { tensor, level, .. } if *level > 0 => {
                    plan.loc[i] = plan.locate(g, i, tensor, *level);
                }
                _ => {}
            }
        }
        plan.add_droppers(g);
        plan.dense = densified_levels(g);
        // A crd fork whose every lane feeds only such RepSigs has no reader left in Comal.
        for (i, n) in g.nodes.iter().enumerate() {
            if matches!(n.op, Op::Fork { .. }) && g.stream(n.ins[0]).kind == StreamKind::Crd {
                plan.skip_fork[i] = n.outs.iter().all(|o| {
                    o.is_some_and(|o| {
                        g.stream(o).consumers.iter().all(|&(c, _)| {
                            matches!(g.nodes[c.0 as usize].op, Op::RepSig)
                                && plan.sig[c.0 as usize].is_some_and(|sib| sib.lane.is_some_and(|(f, _)| f == i))
                        })
                    })
                });
            }
        }
        // A repeat whose every consumer is a rewritten locate is not exported.
        for (i, n) in g.nodes.iter().enumerate() {
            if let (Op::Repeat { .. }, Some(out)) = (&n.op, n.outs.first().copied().flatten()) {
                plan.skip[i] = g
                    .stream(out)
                    .consumers
                    .iter()
                    .all(|&(c, port)| port == 1 && plan.loc[c.0 as usize].is_some_and(|l| l.rep == i));
            }
        }
        plan
    }

    /// Our level writers record one segment per real fiber, empty ones included, because stops
    /// carry a `gap` (ARCHITECTURE.md). Comal's writers record a segment only at a stop that
    /// follows a coordinate, so an empty inner fiber under a kept outer coordinate loses its
    /// segment. The compiler drops outer coordinates with empty inner fibers only above
    /// compressed output levels; for Comal, every output level above a level whose fibers can
    /// be empty gets a dropper too (Comal writes every level compressed anyway). Innermost pair
    /// first, as the compiler does.
    fn add_droppers(&mut self, g: &Graph) {
        let mut writers: BTreeMap<&str, Vec<(u32, usize)>> = BTreeMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            if let Op::LevelWrite { tensor, level } = &n.op {
                writers.entry(tensor.as_str()).or_default().push((*level, i));
            }
        }
        for (tensor, mut ws) in writers {
            ws.sort_unstable();
            if ws.iter().enumerate().any(|(l, &(level, _))| level as usize != l) {
                continue;
            }
            let orig: Vec<StreamId> = ws.iter().map(|&(_, w)| g.nodes[w].ins[0]).collect();
            let mut crds = orig.clone();
            let mut drops = Vec::new();
            for l in (0..crds.len().saturating_sub(1)).rev() {
                let already =
                    matches!(g.stream(orig[l]).producer, (p, 0) if matches!(g.nodes[p.0 as usize].op, Op::CrdDrop));
                if already || !may_be_empty(g, orig[l + 1]) {
                    continue;
                }
                let name = |s: StreamId| g.stream(s).name.clone();
                let outer_out = self.virtual_stream(g, StreamKind::Crd, format!("{}.dropped", name(orig[l])));
                let inner_out = self.virtual_stream(g, StreamKind::Crd, format!("{}.dropped", name(orig[l + 1])));
                drops.push(CompatDrop { outer: crds[l], inner: crds[l + 1], outer_out, inner_out });
                crds[l] = outer_out;
                crds[l + 1] = inner_out;
            }
            if drops.is_empty() {
                continue;
            }
            for (k, &(_, w)) in ws.iter().enumerate() {
                if crds[k] != g.nodes[w].ins[0] {
                    self.writer_in.insert(w, crds[k]);
                }
            }
            self.drops.insert(tensor.to_string(), drops);
        }
    }

    /// The rewrite of locate `i`, when its reference input is a repeat of an un-repeated
    /// parent stream driven by the locate's own coordinates (the compiler's pattern).
    fn locate(&mut self, g: &Graph, i: usize, tensor: &str, level: u32) -> Option<LocRewrite> {
        let n = &g.nodes[i];
        let (x, r) = (n.ins[0], n.ins[1]);
        let rep = g.stream(r).producer.0 .0 as usize;
        let rn = &g.nodes[rep];
        if !matches!(rn.op, Op::Repeat { .. }) || g.stream(rn.ins[0]).kind != StreamKind::Ref {
            return None;
        }
        let sig = g.stream(rn.ins[1]).producer.0 .0 as usize;
        if !matches!(g.nodes[sig].op, Op::RepSig) || g.nodes[sig].ins[0] != x {
            return None;
        }
        let dim = *g.inputs.iter().find(|b| b.tensor == tensor)?.mode_order.get(level as usize)?;
        let sib = self.sibling(g, x)?;
        let scan_crd = self.virtual_stream(g, StreamKind::Crd, format!("{}.dense_crd", n.label));
        let scan_ref = self.virtual_stream(g, StreamKind::Ref, format!("{}.dense_ref", n.label));
        Some(LocRewrite { rep, sig, parent: rn.ins[0], sib, dim: dim as u32, scan_crd, scan_ref })
    }

    fn virtual_stream(&mut self, g: &Graph, kind: StreamKind, name: String) -> StreamId {
        self.virtuals.push((kind, name));
        StreamId((g.streams.len() + self.virtuals.len() - 1) as u32)
    }

    /// Output `port` of `node`: its stream, or a virtual one if the port is void.
    fn port(&mut self, g: &Graph, node: usize, port: usize, kind: StreamKind) -> StreamId {
        if let Some(s) = g.nodes[node].outs.get(port).copied().flatten() {
            return s;
        }
        if let Some(&s) = self.ports.get(&(node, port)) {
            return s;
        }
        let name = format!("{}.out{port}", g.nodes[node].label);
        let s = self.virtual_stream(g, kind, name);
        self.ports.insert((node, port), s);
        s
    }

    /// The ref or val stream produced in step with crd stream `c`, if its producer has one.
    fn sibling(&mut self, g: &Graph, c: StreamId) -> Option<Sibling> {
        let (NodeId(p), port) = g.stream(c).producer;
        let (p, port) = (p as usize, port as usize);
        let n = &g.nodes[p];
        let stream = match &n.op {
            Op::Scan { .. } | Op::Range { .. } if port == 0 => self.port(g, p, 1, StreamKind::Ref),
            Op::Spacc { order, .. } if port + 1 == *order as usize => self.port(g, p, port + 1, StreamKind::Val),
            Op::Join { .. } if port == 0 => {
                let in_kinds: Vec<StreamKind> = n.ins.iter().map(|&s| g.stream(s).kind).collect();
                let out_kinds = n.op.output_kinds(&in_kinds);
                if let Some(k) = (1..n.outs.len()).find(|&k| n.outs[k].is_some()) {
                    n.outs[k]?
                } else if out_kinds.len() > 1 {
                    self.port(g, p, 1, out_kinds[1])
                } else {
                    // No payload at all: the synthesized payload of operand 0 carries it.
                    let src = *self.pay.get(&(p, 0))?;
                    match self.pay_out.get(&(p, 0)) {
                        Some(&s) => s,
                        None => {
                            let kind = self.kinds_of(g, src.stream);
                            let s = self.virtual_stream(g, kind, format!("{}.out0", n.label));
                            self.pay_out.insert((p, 0), s);
                            s
                        }
                    }
                }
            }
            _ => return None,
        };
        Some(Sibling { stream, crd_port: port, lane: None })
    }

    /// The sibling of lane `l` of a fork of crd stream `c`: lane `l` of the fork (same region)
    /// of `c`'s own sibling. Both forks deal their streams' elements alike, so the two lanes
    /// have one shape, and Comal's repeat can read the ref/val lane.
    fn lane_sibling(&mut self, g: &Graph, c: StreamId) -> Option<Sibling> {
        let (NodeId(f), port) = g.stream(c).producer;
        let (f, l) = (f as usize, port as usize);
        let Op::Fork { region, .. } = &g.nodes[f].op else { return None };
        let base = self.sibling(g, g.nodes[f].ins[0])?;
        let twin = g.nodes.iter().position(|m| {
            matches!(&m.op, Op::Fork { region: r, .. } if r == region) && m.ins.first() == Some(&base.stream)
        })?;
        let stream = g.nodes[twin].outs.get(l).copied().flatten()?;
        Some(Sibling { stream, crd_port: base.crd_port, lane: Some((f, l)) })
    }

    fn kinds_of(&self, g: &Graph, s: StreamId) -> StreamKind {
        let i = s.0 as usize;
        match g.streams.get(i) {
            Some(st) => st.kind,
            None => self.virtuals[i - g.streams.len()].0,
        }
    }
}

/// Compressed levels `(tensor, level)` the export stores densely (every coordinate, with
/// empty fibers below the ones without entries): those a union co-iterates with another
/// operand while the union's references for it drive a scanner. A union gives an operand
/// that lacks a coordinate an `N` reference; our scanner turns it into an empty fiber, Comal's
/// into an `N` coordinate its joiners cannot take. Stored densely, the operand lacks nothing.
pub(crate) fn densified_levels(g: &Graph) -> BTreeSet<(String, u32)> {
    let mut out = BTreeSet::new();
    for n in &g.nodes {
        let Op::Join { kind: JoinKind::Union, payloads, .. } = &n.op else { continue };
        if payloads.len() < 2 {
            continue;
        }
        let (mut ii, mut oi) = (0usize, 1usize);
        for &np in payloads {
            let (NodeId(p), _) = g.stream(n.ins[ii]).producer;
            if let Op::Scan { tensor, level, format: LevelFormat::Compressed, .. } = &g.nodes[p as usize].op {
                let last =
                    g.inputs.iter().find(|b| b.tensor == *tensor).is_none_or(|b| *level as usize + 1 >= b.levels.len());
                let feeds_scan = (oi..oi + np as usize)
                    .any(|k| n.outs.get(k).copied().flatten().is_some_and(|s| reaches_scan(g, s)));
                if !last && feeds_scan {
                    out.insert((tensor.clone(), *level));
                }
            }
            ii += 1 + np as usize;
            oi += np as usize;
        }
    }
    out
}

/// Whether ref stream `s` drives a scanner, directly or through repeats.
fn reaches_scan(g: &Graph, s: StreamId) -> bool {
    let mut work = vec![s];
    let mut steps = 0;
    while let Some(s) = work.pop() {
        steps += 1;
        if steps > g.streams.len() + 1 {
            break;
        }
        for &(c, port) in &g.stream(s).consumers {
            let n = &g.nodes[c.0 as usize];
            match &n.op {
                Op::Scan { .. } | Op::Range { .. } => return true,
                Op::Repeat { .. } if port == 0 => work.extend(n.outs.first().copied().flatten()),
                _ => {}
            }
        }
    }
    false
}

/// Whether crd stream `s` can hold an empty fiber: false for dense scans and ranges, unions
/// with such an operand, intersections of such operands, and droppers passing them on.
fn may_be_empty(g: &Graph, s: StreamId) -> bool {
    let mut s = s;
    for _ in 0..=g.nodes.len() {
        let (NodeId(p), port) = g.stream(s).producer;
        let n = &g.nodes[p as usize];
        match &n.op {
            Op::Scan { format: LevelFormat::Dense, .. } => return false,
            Op::Range { size, .. } => return *size == 0,
            Op::CrdDrop => s = n.ins[port as usize],
            // A lane holds a subset of a fiber's elements; a gather gives back the whole stream.
            Op::Fork { .. } => return true,
            Op::Gather { depth, .. } => s = n.ins[usize::from(*depth > 0)],
            Op::Join { kind, payloads, .. } => {
                let mut ii = 0usize;
                let mut crds = Vec::with_capacity(payloads.len());
                for &np in payloads {
                    crds.push(n.ins[ii]);
                    ii += 1 + np as usize;
                }
                return match kind {
                    JoinKind::Union => crds.iter().all(|&c| may_be_empty(g, c)),
                    JoinKind::Intersect => crds.iter().any(|&c| may_be_empty(g, c)),
                };
            }
            Op::Scan { format: LevelFormat::Compressed, .. }
            | Op::Root
            | Op::RepSig
            | Op::Repeat { .. }
            | Op::Locate { .. }
            | Op::Array { .. }
            | Op::Alu { .. }
            | Op::Reduce { .. }
            | Op::Spacc { .. }
            | Op::LevelWrite { .. }
            | Op::ValWrite { .. } => return true,
        }
    }
    true
}

fn unsupported(i: usize, node: &Node, message: impl Into<String>) -> ExportError {
    ExportError::Unsupported { node: NodeId(i as u32), kind: node.op.kind_name(), message: message.into() }
}

/// A one-stage stage list over `inputs` values.
fn stage(inputs: usize, op: proto::alu::AluOp) -> proto::alu::Stage {
    let k = inputs as u64;
    proto::alu::Stage { inputs: (0..k).collect(), output: k, op: op as i32 }
}

/// ALU node `i` as one `alu` operation: one stage (exact, or a stand-in), or none for an op
/// Comal's ALU cannot compute (Comal then rejects the graph instead of computing something
/// else). The name carries the op exactly either way.
fn alu_single(
    i: usize,
    n: &Node,
    alu: AluOp,
    code: &str,
    form: AluForm,
    out: Option<StreamId>,
    a: &mut Alloc,
) -> Operation {
    let mut meta = Meta::new("alu").with("op", code);
    if matches!(alu, AluOp::Scalar { scalar_first: true, .. }) {
        meta.set("first", 1);
    }
    let mut inputs = Vec::with_capacity(n.ins.len());
    for &s in &n.ins {
        inputs.extend(a.c_val(s));
    }
    let output = a.p_val(out);
    let (stages, scalar) = match form {
        AluForm::Exact(stage_op, scalar) | AluForm::StandIn(stage_op, scalar) => {
            (vec![stage(inputs.len(), stage_op)], scalar)
        }
        AluForm::Chain(_) | AluForm::Unsupported => {
            let c = if let AluOp::Scalar { scalar, .. } = alu { scalar } else { 0.0 };
            (Vec::new(), c)
        }
    };
    op(
        meta,
        i,
        operation::Op::Alu(proto::Alu {
            conn: Some(proto::alu::Conn::Vals(proto::alu::Val { inputs, output })),
            stages,
            output_val: 0,
            label: n.label.clone(),
            stream_shape: 0,
            blocked: false,
            scalar,
        }),
    )
}

/// ALU node `i` as a chain of one-stage `alu` operations (see the `alu` module), named
/// `alu;op=<code>;group=<i>;part=<k>`. Step 0 has the node's id, the others ids after the last
/// node; the steps' inner streams are fresh val ids, and the last step writes the node's output.
fn alu_chain(
    i: usize,
    n: &Node,
    code: &str,
    steps: &[Step],
    out: Option<StreamId>,
    a: &mut Alloc,
) -> Result<Vec<Operation>, ExportError> {
    let out_name = a.name_of(out);
    let mut made: Vec<(u64, String)> = Vec::with_capacity(steps.len());
    let mut ops = Vec::with_capacity(steps.len());
    for (k, st) in steps.iter().enumerate() {
        let mut inputs = Vec::with_capacity(st.ins.len());
        for src in st.ins {
            let v = match *src {
                Src::In(x) => {
                    let s = *n.ins.get(x).ok_or_else(|| unsupported(i, n, format!("ALU input {x} is missing")))?;
                    a.c_val(s).unwrap_or_default()
                }
                Src::Step(j) => {
                    let (id, name) = made.get(j).ok_or_else(|| {
                        unsupported(i, n, format!("chain step {k} reads step {j}, not an earlier one"))
                    })?;
                    proto::ValStream::new(*id, name.clone())
                }
            };
            inputs.push(v);
        }
        let output = if k + 1 == steps.len() {
            a.p_val(out).unwrap_or_default()
        } else {
            let name = format!("{out_name}.{}", st.name);
            made.push((a.inner_val(), name.clone()));
            proto::ValStream::new(made[k].0, name)
        };
        let meta = Meta::new("alu").with("op", code).with("group", i).with("part", k);
        let id = if k == 0 { i as u64 } else { a.fresh_op() };
        ops.push(Operation {
            name: meta.render(),
            id,
            op: Some(operation::Op::Alu(proto::Alu {
                stages: vec![stage(inputs.len(), st.op)],
                conn: Some(proto::alu::Conn::Vals(proto::alu::Val { inputs, output: Some(output) })),
                output_val: 0,
                label: n.label.clone(),
                stream_shape: 0,
                blocked: false,
                scalar: st.scalar,
            })),
        });
    }
    Ok(ops)
}

/// The `op=` code of an ALU op (the importer's `alu_from_meta` reads it back), or `None` for
/// an op this crate does not know.
fn alu_code(op: AluOp) -> Option<&'static str> {
    Some(match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Mul => "mul",
        AluOp::Div => "div",
        AluOp::Max => "max",
        AluOp::Neg => "neg",
        AluOp::Relu => "relu",
        AluOp::Exp => "exp",
        AluOp::Rsqrt => "rsqrt",
        AluOp::Sigmoid => "sigmoid",
        AluOp::Gelu => "gelu",
        AluOp::Erf => "erf",
        AluOp::ExpNz => "expnz",
        AluOp::ExpSubNz => "expsubnz",
        AluOp::ZeroToNegInf => "zero_to_neginf",
        AluOp::NegInfToZero => "neginf_to_zero",
        AluOp::Scalar { op, .. } => match op {
            ScalarOp::Add => "sadd",
            ScalarOp::Sub => "ssub",
            ScalarOp::Mul => "smul",
            ScalarOp::Div => "sdiv",
            ScalarOp::Max => "smax",
            ScalarOp::ExpSubNz => "sexpsubnz",
            #[allow(unreachable_patterns)]
            _ => return None,
        },
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn op(name: Meta, id: usize, op: operation::Op) -> Operation {
    Operation { name: name.render(), id: id as u64, op: Some(op) }
}

/// Emits every node once; run in the counting pass and again in the real pass.
fn emit(g: &Graph, plan: &Plan, a: &mut Alloc) -> Result<Vec<Operation>, ExportError> {
    use operation::Op as P;
    // RepSigs over ref/val streams fold into the repeats they drive.
    let folded: Vec<bool> = g
        .nodes
        .iter()
        .map(|n| matches!(n.op, Op::RepSig) && n.ins.first().is_some_and(|&s| g.stream(s).kind != StreamKind::Crd))
        .collect();
    let mut ops = Vec::with_capacity(g.nodes.len() * 2);
    for (i, n) in g.nodes.iter().enumerate() {
        // An output port: its stream, or the virtual stream the plan gave a void port.
        let out = |p: usize| n.outs.get(p).copied().flatten().or_else(|| plan.ports.get(&(i, p)).copied());
        let label = n.label.clone();
        match &n.op {
            Op::Root => {
                let output_ref = a.p_ref(out(0));
                ops.push(op(
                    Meta::new("root"),
                    i,
                    P::Root(proto::Generator { label, tensor: String::new(), output_ref }),
                ));
            }
            Op::Scan { tensor, level, dim, format, index } => {
                if tensor.starts_with(RANGE_PREFIX) {
                    return Err(ExportError::Tensor {
                        tensor: tensor.clone(),
                        message: format!("names starting with {RANGE_PREFIX} are reserved for range scanners"),
                    });
                }
                let input_ref = a.c_ref(n.ins[0]);
                let output_crd = a.p_crd(out(0));
                let output_ref = a.p_ref(out(1));
                let mut meta = Meta::new("fiberlookup").with("level", level);
                let mut format = *format;
                if plan.dense.contains(&(tensor.clone(), *level)) {
                    // Stored densely for Comal; the importer restores the compressed level.
                    meta.set("stored", "dense");
                    format = LevelFormat::Dense;
                }
                ops.push(op(
                    meta,
                    i,
                    P::FiberLookup(proto::FiberLookup {
                        input_ref,
                        output_ref,
                        output_crd,
                        index: index.clone(),
                        tensor: tensor.clone(),
                        mode: u64::from(*dim),
                        format: format.name().to_string(),
                        src: true,
                        root: *level == 0,
                        label,
                    }),
                ));
            }
            Op::Range { size, index } => {
                let input_ref = a.c_ref(n.ins[0]);
                let output_crd = a.p_crd(out(0));
                let output_ref = a.p_ref(out(1));
                ops.push(op(
                    Meta::new("fiberlookup").with("range", size),
                    i,
                    P::FiberLookup(proto::FiberLookup {
                        input_ref,
                        output_ref,
                        output_crd,
                        index: index.clone(),
                        tensor: format!("{RANGE_PREFIX}{size}"),
                        mode: 0,
                        format: "dense".into(),
                        src: true,
                        root: false,
                        label,
                    }),
                ));
            }
            Op::RepSig if folded[i] || plan.sig[i].is_some() => {}
            Op::RepSig => {
                let input_crd = a.c_crd(n.ins[0]);
                let output_rep_sig = {
                    let id = a.produce(out(0));
                    Some(proto::RepSigStream::new(id, a.name_of(out(0))))
                };
                ops.push(op(
                    Meta::new("repeatsig"),
                    i,
                    P::Repeatsig(proto::RepeatSig { input_crd, output_rep_sig, label, index: String::new() }),
                ));
            }
            Op::Repeat { .. } if plan.skip[i] => {}
            Op::Repeat { index } => {
                let (payload_in, sig) = (n.ins[0], n.ins[1]);
                let kind = g.stream(payload_in).kind;
                let r = g.stream(sig).producer.0 .0 as usize;
                let mut meta = Meta::new("repeat");
                let input_ref = Some(if kind == StreamKind::Val {
                    proto::repeat::InputRef::InVal(a.c_val(payload_in).unwrap_or_default())
                } else {
                    proto::repeat::InputRef::InRef(a.c_ref(payload_in).unwrap_or_default())
                });
                let sibling = plan.sig.get(r).copied().flatten();
                let rep = if folded.get(r).copied().unwrap_or(false) {
                    let rn = &g.nodes[r];
                    let src = rn.ins[0];
                    meta.set("repsig", r);
                    meta.set("sig_label", &rn.label);
                    meta.set("sig_name", a.name(sig));
                    if a.kind(src) == StreamKind::Val {
                        proto::repeat::InputRepSig::RepVal(a.c_val(src).unwrap_or_default())
                    } else {
                        proto::repeat::InputRepSig::RepRef(a.c_ref(src).unwrap_or_default())
                    }
                } else if let Some(sib) = sibling {
                    // Comal's form: the repeat reads a ref/val stream produced in step with
                    // the RepSig's crd stream; the importer rebuilds the RepSig on that crd.
                    let rn = &g.nodes[r];
                    meta.set("repsig", r);
                    meta.set("sig_label", &rn.label);
                    meta.set("sig_name", a.name(sig));
                    meta.set("sig_port", sib.crd_port);
                    if let Some((f, l)) = sib.lane {
                        // The signal reads lane `l` of fork `f` of that crd stream.
                        let fork = &g.nodes[f];
                        meta.set("sig_lane", l);
                        meta.set("sig_fork", f);
                        meta.set("crd_name", a.name(fork.ins[0]));
                        meta.set("lane_name", a.name(rn.ins[0]));
                        meta.set("fork_label", &fork.label);
                    } else {
                        meta.set("crd_name", a.name(rn.ins[0]));
                    }
                    if a.kind(sib.stream) == StreamKind::Val {
                        proto::repeat::InputRepSig::RepVal(a.c_val(sib.stream).unwrap_or_default())
                    } else {
                        proto::repeat::InputRepSig::RepRef(a.c_ref(sib.stream).unwrap_or_default())
                    }
                } else {
                    meta.set("sig", "repsig");
                    let id = a.consume(sig);
                    proto::repeat::InputRepSig::RepRef(proto::RefStream::new(id, a.name(sig)))
                };
                let output_ref = Some(if kind == StreamKind::Val {
                    proto::repeat::OutputRef::OutVal(a.p_val(out(0)).unwrap_or_default())
                } else {
                    proto::repeat::OutputRef::OutRef(a.p_ref(out(0)).unwrap_or_default())
                });
                ops.push(op(
                    meta,
                    i,
                    P::Repeat(proto::Repeat {
                        input_ref,
                        output_ref,
                        input_rep_sig: Some(rep),
                        label,
                        index: index.clone(),
                        root: false,
                        tensor: String::new(),
                    }),
                ));
            }
            Op::Join { kind, payloads, index } => {
                if payloads.is_empty() {
                    return Err(unsupported(i, n, "a joiner needs at least one operand"));
                }
                // Input and output positions of each operand's crd and payloads.
                let mut crd_in = Vec::with_capacity(payloads.len());
                let mut pay_in: Vec<Vec<StreamId>> = Vec::with_capacity(payloads.len());
                let mut pay_out: Vec<Vec<Option<StreamId>>> = Vec::with_capacity(payloads.len());
                let (mut ii, mut oi) = (0usize, 1usize);
                for &p in payloads {
                    crd_in.push(n.ins[ii]);
                    ii += 1;
                    pay_in.push(n.ins[ii..ii + p as usize].to_vec());
                    pay_out.push((0..p as usize).map(|k| out(oi + k)).collect());
                    ii += p as usize;
                    oi += p as usize;
                }
                let parts = payloads.iter().copied().max().unwrap_or(0).max(1) as usize;
                let simple = payloads.iter().all(|&p| p == 1);
                let join_type = match kind {
                    JoinKind::Intersect => proto::joiner::Type::Intersect,
                    JoinKind::Union => proto::joiner::Type::Union,
                    #[allow(unreachable_patterns)]
                    _ => return Err(unsupported(i, n, format!("joiner kind {kind:?} has no tortilla encoding"))),
                } as i32;
                let plist: Vec<String> = payloads.iter().map(|p| p.to_string()).collect();
                for j in 0..parts {
                    let mut input_pairs = Vec::with_capacity(payloads.len());
                    let mut output_refs = Vec::with_capacity(payloads.len());
                    for (p, &np) in payloads.iter().enumerate() {
                        let crd = a.c_crd(crd_in[p]);
                        let (in_ref, out_ref) = if j < np as usize {
                            let s = pay_in[p][j];
                            let inp = a.c_payload(s);
                            (Some(inp), a.p_payload(a.kind(s), pay_out[p][j]))
                        } else if np >= 1 {
                            // Filler: a copy of payload 0 whose output is void.
                            let s = pay_in[p][0];
                            let inp = a.c_payload(s);
                            (Some(inp), payload(a.kind(s), 0, String::new()))
                        } else if let Some(sib) = plan.pay.get(&(i, p)) {
                            // No payload (a range operand): Comal needs one in every pair. The
                            // range's reference stream rides along; its output is void unless
                            // a repeat reads it (part 0 only).
                            let inp = a.c_payload(sib.stream);
                            let o = if j == 0 { plan.pay_out.get(&(i, p)).copied() } else { None };
                            (Some(inp), a.p_payload(a.kind(sib.stream), o))
                        } else {
                            // An accumulator's output co-iterated at a non-final level carries
                            // no stream of its crd's shape: Comal's driver would panic on it.
                            return Err(unsupported(
                                i,
                                n,
                                format!(
                                    "operand {p} has no reference stream (a sparse accumulator's output joined before its inner levels), and Comal's joiners need one per operand"
                                ),
                            ));
                        };
                        input_pairs.push(joiner::JoinBundle { crd, in_ref });
                        output_refs.push(out_ref);
                    }
                    let output_crd = if j == 0 { a.p_crd(out(0)) } else { Some(proto::CrdStream::new(0, "")) };
                    let mut meta = Meta::new("joiner");
                    if !simple {
                        meta.set("payloads", plist.join(","));
                    }
                    if parts > 1 {
                        meta.set("group", i);
                        meta.set("part", j);
                    }
                    let id = if j == 0 { i } else { a.fresh_op() as usize };
                    ops.push(op(
                        meta,
                        id,
                        P::Joiner(proto::Joiner {
                            join_type,
                            input_pairs,
                            index: index.clone(),
                            label: label.clone(),
                            output_refs,
                            output_crd,
                        }),
                    ));
                }
            }
            Op::Locate { tensor, level, size, index } if plan.loc[i].is_some() => {
                let Some(lr) = plan.loc[i] else { continue };
                // A dense scan of the located level under the un-repeated parent references ...
                let scan_id = a.fresh_op();
                let input_ref = a.c_ref(lr.parent);
                let output_crd = a.p_crd(Some(lr.scan_crd));
                let output_ref = a.p_ref(Some(lr.scan_ref));
                ops.push(Operation {
                    name: Meta::new("fiberlookup").with("locate", i).render(),
                    id: scan_id,
                    op: Some(P::FiberLookup(proto::FiberLookup {
                        input_ref,
                        output_ref,
                        output_crd,
                        index: index.clone(),
                        tensor: tensor.clone(),
                        mode: u64::from(lr.dim),
                        format: LevelFormat::Dense.name().to_string(),
                        src: true,
                        root: false,
                        label: format!("{label}.dense"),
                    })),
                });
                // ... intersected with the coordinates: the dense side's references are the
                // located ones. The name carries the locate, its repeat and the repeat's signal.
                let rn = &g.nodes[lr.rep];
                let mut meta = Meta::new("joiner")
                    .with("locate", i)
                    .with("tensor", tensor)
                    .with("level", level)
                    .with("size", size)
                    .with("dim", lr.dim)
                    .with("index", index)
                    .with("rep", lr.rep)
                    .with("repsig", lr.sig)
                    .with("sig_label", &g.nodes[lr.sig].label)
                    .with("sig_name", a.name(rn.ins[1]));
                if plan.skip[lr.rep] {
                    let rep_index = match &rn.op {
                        Op::Repeat { index } => index.clone(),
                        _ => String::new(),
                    };
                    meta.set("rep_label", &rn.label);
                    meta.set("rep_name", a.name(n.ins[1]));
                    meta.set("rep_index", rep_index);
                } else {
                    meta.set("rep_kept", 1);
                }
                let input_pairs = vec![
                    joiner::JoinBundle { crd: a.c_crd(n.ins[0]), in_ref: Some(a.c_payload(lr.sib.stream)) },
                    joiner::JoinBundle { crd: a.c_crd(lr.scan_crd), in_ref: Some(a.c_payload(lr.scan_ref)) },
                ];
                let output_refs = vec![payload(a.kind(lr.sib.stream), 0, String::new()), {
                    let id = a.produce(out(0));
                    payload(StreamKind::Ref, id, a.name_of(out(0)))
                }];
                ops.push(op(
                    meta,
                    i,
                    P::Joiner(proto::Joiner {
                        join_type: proto::joiner::Type::Intersect as i32,
                        input_pairs,
                        index: index.clone(),
                        label,
                        output_refs,
                        output_crd: Some(proto::CrdStream::new(0, "")),
                    }),
                ));
            }
            Op::Locate { tensor, level, size, index } => {
                let mut meta = Meta::new("locate")
                    .with("tensor", tensor)
                    .with("level", level)
                    .with("size", size)
                    .with("index", index);
                if let Some(b) = g.inputs.iter().find(|b| b.tensor == *tensor) {
                    if let Some(&d) = b.mode_order.get(*level as usize) {
                        meta.set("dim", d);
                    }
                }
                let input_crd = a.c_crd(n.ins[0]);
                let input_ref = a.c_ref(n.ins[1]);
                let output_ref1 = a.p_ref(out(0));
                ops.push(op(
                    meta,
                    i,
                    P::Locate(proto::Locate {
                        input_crd,
                        input_ref,
                        output_ref1,
                        output_ref2: Some(proto::RefStream::new(0, "")),
                        output_crd: Some(proto::CrdStream::new(0, "")),
                        label,
                    }),
                ));
            }
            Op::Array { tensor } => {
                let input_ref = a.c_ref(n.ins[0]);
                let output_val = a.p_val(out(0));
                ops.push(op(
                    Meta::new("arrayvals"),
                    i,
                    P::Array(proto::ArrayVals {
                        tensor: tensor.clone(),
                        input_ref,
                        output_val,
                        label,
                        stream_shape: 0,
                        blocked: false,
                    }),
                ));
            }
            Op::Alu { op: alu } => {
                let code = alu_code(*alu)
                    .ok_or_else(|| unsupported(i, n, format!("ALU op {} has no tortilla encoding", alu.name())))?;
                match alu_form(*alu) {
                    AluForm::Chain(steps) => ops.extend(alu_chain(i, n, code, steps, out(0), a)?),
                    form @ (AluForm::Exact(..) | AluForm::StandIn(..) | AluForm::Unsupported) => {
                        ops.push(alu_single(i, n, *alu, code, form, out(0), a));
                    }
                }
            }
            Op::Reduce { op: r } => {
                let input_val = a.c_val(n.ins[0]);
                let output_val = a.p_val(out(0));
                let reduce_type = match r {
                    ReduceKind::Sum => proto::reduce::Type::Add,
                    ReduceKind::Max => proto::reduce::Type::Max,
                    #[allow(unreachable_patterns)]
                    _ => return Err(unsupported(i, n, format!("reduction {r:?} has no tortilla encoding"))),
                } as i32;
                ops.push(op(
                    Meta::new("reduce"),
                    i,
                    P::Reduce(proto::Reduce {
                        input_val,
                        output_val,
                        label,
                        stream_shape: 0,
                        blocked: false,
                        reduce_type,
                    }),
                ));
            }
            Op::Spacc { order, op: r, index } => {
                let mut meta = Meta::new("spacc");
                match r {
                    ReduceKind::Sum => {}
                    ReduceKind::Max => meta.set("op", "max"),
                    #[allow(unreachable_patterns)]
                    _ => return Err(unsupported(i, n, format!("accumulation {r:?} has no tortilla encoding"))),
                }
                let spacc = match order {
                    1 => {
                        let reduced = a.c_crd(n.ins[0]);
                        let input_inner_crd = a.c_crd(n.ins[1]);
                        let input_val = a.c_val(n.ins[2]);
                        let output_inner_crd = a.p_crd(out(0));
                        let output_val = a.p_val(out(1));
                        proto::SparseAccumulator {
                            input_inner_crd,
                            output_inner_crd,
                            input_outer_crds: reduced.into_iter().collect(),
                            input_val,
                            output_val,
                            order: 1,
                            inner_crd: String::new(),
                            outer_crds: vec![index.clone()],
                            label,
                            output_outer_crds: Vec::new(),
                            stream_shape: 0,
                            blocked: false,
                        }
                    }
                    2 => {
                        let reduced = a.c_crd(n.ins[0]);
                        let middle = a.c_crd(n.ins[1]);
                        let input_inner_crd = a.c_crd(n.ins[2]);
                        let input_val = a.c_val(n.ins[3]);
                        let middle_out = a.p_crd(out(0));
                        let output_inner_crd = a.p_crd(out(1));
                        let output_val = a.p_val(out(2));
                        proto::SparseAccumulator {
                            input_inner_crd,
                            output_inner_crd,
                            input_outer_crds: middle.into_iter().chain(reduced).collect(),
                            input_val,
                            output_val,
                            order: 2,
                            inner_crd: String::new(),
                            outer_crds: vec![String::new(), index.clone()],
                            label,
                            output_outer_crds: middle_out.into_iter().collect(),
                            stream_shape: 0,
                            blocked: false,
                        }
                    }
                    _ => return Err(unsupported(i, n, format!("no sparse accumulator of order {order}"))),
                };
                ops.push(op(meta, i, P::Spacc(spacc)));
            }
            Op::CrdDrop => {
                let inner_kind = g.stream(n.ins[1]).kind;
                let mut meta = Meta::new("crddrop");
                let input_outer_crd = a.c_crd(n.ins[0]);
                let (input_inner_crd, output_outer_crd, output_inner_crd);
                if inner_kind == StreamKind::Crd {
                    input_inner_crd = a.c_crd(n.ins[1]);
                    output_outer_crd = a.p_crd(out(0));
                    output_inner_crd = a.p_crd(out(1));
                } else {
                    // The schema's inner fields are crd-typed: carry value ids, marked.
                    meta.set("inner", inner_kind.name());
                    let id = a.consume(n.ins[1]);
                    input_inner_crd = Some(proto::CrdStream::new(id, a.name(n.ins[1])));
                    output_outer_crd = a.p_crd(out(0));
                    let id = a.produce(out(1));
                    output_inner_crd = Some(proto::CrdStream::new(id, a.name_of(out(1))));
                }
                ops.push(op(
                    meta,
                    i,
                    P::CoordDrop(proto::CoordDrop {
                        input_inner_crd,
                        input_outer_crd,
                        output_inner_crd,
                        output_outer_crd,
                        inner_crd: String::new(),
                        outer_crd: String::new(),
                        label,
                    }),
                ));
            }
            Op::LevelWrite { tensor, level } => {
                let b = g
                    .outputs
                    .iter()
                    .find(|b| b.tensor == *tensor)
                    .ok_or_else(|| unsupported(i, n, format!("output tensor {tensor} has no output binding")))?;
                let dim = *b.dims.get(*level as usize).ok_or_else(|| {
                    unsupported(i, n, format!("output {tensor} has {} levels, no level {level}", b.dims.len()))
                })?;
                let size = *b.shape.get(dim).ok_or_else(|| {
                    unsupported(i, n, format!("output {tensor} has rank {}, no dimension {dim}", b.shape.len()))
                })?;
                if let Some(drops) = plan.drops.get(tensor).filter(|_| first_writer(g, i, tensor)) {
                    for d in drops {
                        let input_outer_crd = a.c_crd(d.outer);
                        let input_inner_crd = a.c_crd(d.inner);
                        let output_outer_crd = a.p_crd(Some(d.outer_out));
                        let output_inner_crd = a.p_crd(Some(d.inner_out));
                        let id = a.fresh_op();
                        ops.push(Operation {
                            name: Meta::new("crddrop").with("compat", 1).render(),
                            id,
                            op: Some(P::CoordDrop(proto::CoordDrop {
                                input_inner_crd,
                                input_outer_crd,
                                output_inner_crd,
                                output_outer_crd,
                                inner_crd: String::new(),
                                outer_crd: String::new(),
                                label: format!("{tensor}.crddrop"),
                            })),
                        });
                    }
                }
                let input_crd = a.c_crd(plan.writer_in.get(&i).copied().unwrap_or(n.ins[0]));
                ops.push(op(
                    Meta::new("fiberwrite").with("level", level),
                    i,
                    P::FiberWrite(proto::FiberWrite {
                        r#ref: false,
                        input_crd,
                        index: String::new(),
                        tensor: tensor.clone(),
                        mode_val: dim.to_string(),
                        format: LevelFormat::Compressed.name().into(),
                        segsize: String::new(),
                        crdsize: String::new(),
                        size: size.to_string(),
                        sink: true,
                        label,
                    }),
                ));
            }
            Op::ValWrite { tensor } => {
                let input_val = a.c_val(n.ins[0]);
                ops.push(op(
                    Meta::new("valwrite"),
                    i,
                    P::ValWrite(proto::ValWrite {
                        input_val,
                        label,
                        crdsize: String::new(),
                        segsize: String::new(),
                        tensor: tensor.clone(),
                        sink: true,
                    }),
                ));
            }
            // Comal's Scatter is our fork token for token (docs/comal.md, "Parallel lanes").
            Op::Fork { .. } if plan.skip_fork[i] => {}
            Op::Fork { lanes, index, region } => {
                let input = n.ins[0];
                if (0..*lanes as usize).any(|l| out(l).is_none()) {
                    return Err(unsupported(
                        i,
                        n,
                        "a lane output is void: Comal's Scatter needs a reader on every lane",
                    ));
                }
                let name = a.name(input);
                let ids: Vec<(u64, String)> =
                    (0..*lanes as usize).map(|l| (a.produce(out(l)), a.name_of(out(l)))).collect();
                if !a.counting && ids.iter().any(|&(id, _)| id == 0) {
                    return Err(unsupported(
                        i,
                        n,
                        "a lane has no reader in Comal: Comal's Scatter needs one on every lane",
                    ));
                }
                let conn = match a.kind(input) {
                    StreamKind::Ref => proto::fork::Conn::Ref(proto::fork::RefBundle {
                        input: a.c_ref(input),
                        outputs: ids.into_iter().map(|(id, nm)| proto::RefStream::new(id, nm)).collect(),
                    }),
                    StreamKind::Crd => proto::fork::Conn::Crd(proto::fork::CrdBundle {
                        input: a.c_crd(input),
                        outputs: ids.into_iter().map(|(id, nm)| proto::CrdStream::new(id, nm)).collect(),
                    }),
                    StreamKind::Val => proto::fork::Conn::Val(proto::fork::ValBundle {
                        input: a.c_val(input),
                        outputs: ids.into_iter().map(|(id, nm)| proto::ValStream::new(id, nm)).collect(),
                    }),
                    StreamKind::RepSig => {
                        return Err(unsupported(
                            i,
                            n,
                            format!("fork of repeat-signal stream {name}: Comal's Scatter panics on one"),
                        ))
                    }
                };
                ops.push(op(
                    Meta::new("fork").with("index", index).with("region", region),
                    i,
                    P::Fork(proto::Fork { label, conn: Some(conn) }),
                ));
            }
            // Comal's Gather has no control input: it copies one lane up to its next stop, then
            // the next lane, and turns the stops of all lanes but the last into S0. That is our
            // gather exactly when `comal_gather_exact` holds; anything else is refused.
            Op::Gather { lanes, depth, index, region } => {
                if let Err(why) = comal_gather_exact(g, &plan.dense, i) {
                    return Err(unsupported(i, n, why));
                }
                let ctl = n.ins[0];
                let lane_ins: Vec<StreamId> = n.ins[usize::from(*depth > 0)..].to_vec();
                if lane_ins.len() != *lanes as usize {
                    return Err(unsupported(i, n, format!("{} lane inputs for {lanes} lanes", lane_ins.len())));
                }
                let output = out(0);
                let kind = a.kind(lane_ins[0]);
                // The control stream is not wired in Comal; the importer gets it back from its
                // producer-side id (`ctl=`), read without adding a Comal consumer.
                let ctl_id = a.peek(ctl);
                let conn = match kind {
                    StreamKind::Ref => proto::join::Conn::Ref(proto::join::RefBundle {
                        output: a.p_ref(output),
                        inputs: lane_ins.iter().filter_map(|&s| a.c_ref(s)).collect(),
                    }),
                    StreamKind::Crd => proto::join::Conn::Crd(proto::join::CrdBundle {
                        output: a.p_crd(output),
                        inputs: lane_ins.iter().filter_map(|&s| a.c_crd(s)).collect(),
                    }),
                    StreamKind::Val => proto::join::Conn::Val(proto::join::ValBundle {
                        output: a.p_val(output),
                        inputs: lane_ins.iter().filter_map(|&s| a.c_val(s)).collect(),
                    }),
                    StreamKind::RepSig => {
                        return Err(unsupported(i, n, "gather of a repeat-signal stream: Comal's Gather panics on one"))
                    }
                };
                let mut meta = Meta::new("gather").with("depth", depth).with("index", index).with("region", region);
                if ctl_id != 0 {
                    meta.set("ctl", ctl_id);
                } else {
                    // Nothing in Comal reads the control: name its producer's port instead.
                    let (NodeId(p), port) = g.stream(ctl).producer;
                    meta.set("ctl_op", p);
                    meta.set("ctl_port", port);
                    meta.set("ctl_name", a.name(ctl));
                }
                ops.push(op(meta, i, P::Join(proto::Join { label, conn: Some(conn) })));
            }
            #[allow(unreachable_patterns)]
            _ => return Err(unsupported(i, n, "no tortilla mapping for this primitive")),
        }
        // Broadcasts created while wiring this node's outputs come right after it.
        ops.append(&mut a.pending);
    }
    Ok(ops)
}

/// Whether node `i` is the first level writer of `tensor` in node order.
fn first_writer(g: &Graph, i: usize, tensor: &str) -> bool {
    !g.nodes[..i].iter().any(|n| matches!(&n.op, Op::LevelWrite { tensor: t, .. } if t == tensor))
}

/// Whether Comal's `Gather` rebuilds gather node `i`'s stream token for token, and why not.
///
/// Comal's Gather starts at lane 0, copies the current lane's tokens up to and including its
/// next stop (emitted as `S0` unless the lane is the last one, whose stop passes unchanged),
/// then moves to the next lane; a `D` from a lane other than the last is dropped. Our fork
/// deals a fiber's elements round-robin, so that is our gather exactly when
/// - each element of the lanes' streams ends with exactly one stop: the stream lies one level
///   below the parallelized one (depth 1), and
/// - every fiber of the parallelized level holds the same nonzero multiple of the lane count
///   (so each lane has an element in every fiber, no lane ends a fiber with a lone stop, and
///   each fiber starts again at lane 0): the level is iterated densely over a dimension whose
///   size the lane count divides.
///
/// Then the stop closing element `k` comes from lane `k mod F`: an `S0` separator, and for the
/// fiber's last element (lane `F − 1`) the fiber's own closing stop, unchanged.
pub(crate) fn comal_gather_exact(g: &Graph, dense: &BTreeSet<(String, u32)>, i: usize) -> Result<(), String> {
    let n = &g.nodes[i];
    let Op::Gather { lanes, depth, index, .. } = &n.op else { return Ok(()) };
    match depth {
        0 => {
            return Err(format!(
                "depth 0 (one token per element of {index}): Comal's Gather copies a lane up to its next stop, so it would group each fiber's elements by lane and add S0 stops between lanes"
            ))
        }
        1 => {}
        d => {
            return Err(format!(
                "depth {d} (the stream lies {d} levels below {index}): an element's subtree holds inner stops and Comal's Gather switches lanes at the first one"
            ))
        }
    }
    match full_size(g, dense, n.ins[0]) {
        Some(size) if size > 0 && size % lanes == 0 => Ok(()),
        Some(size) => Err(format!(
            "{index} has {size} elements per fiber, not a nonzero multiple of {lanes} lanes: Comal's Gather would take lone stops from lanes without an element or leave the lanes out of step"
        )),
        None => Err(format!(
            "{index} is not iterated densely (fibers can hold any number of elements): Comal's Gather restores the stops only when every fiber holds a multiple of {lanes} elements"
        )),
    }
}

/// The number of elements in every fiber of crd stream `s`, when all its fibers hold every
/// coordinate of one dimension (see [`full`]).
fn full_size(g: &Graph, dense: &BTreeSet<(String, u32)>, s: StreamId) -> Option<u32> {
    let (NodeId(p), _) = g.stream(s).producer;
    let n = &g.nodes[p as usize];
    match &n.op {
        Op::Range { size, .. } => Some(*size),
        Op::Scan { tensor, level, dim, format, .. }
            if *format == LevelFormat::Dense || dense.contains(&(tensor.clone(), *level)) =>
        {
            let b = g.inputs.iter().find(|b| b.tensor == *tensor)?;
            b.shape.get(*dim as usize).and_then(|&d| u32::try_from(d).ok())
        }
        Op::Join { kind, payloads, .. } => {
            let mut ii = 0usize;
            let mut sizes = Vec::with_capacity(payloads.len());
            for &np in payloads {
                sizes.push(full_size(g, dense, n.ins[ii]));
                ii += 1 + np as usize;
            }
            match kind {
                // A union of a full operand holds every coordinate of it.
                JoinKind::Union => sizes.into_iter().flatten().next(),
                // An intersection of full operands (of one dimension) holds all of them.
                JoinKind::Intersect => {
                    let first = (*sizes.first()?)?;
                    sizes.iter().all(|&z| z == Some(first)).then_some(first)
                }
            }
        }
        Op::Gather { depth, .. } => full_size(g, dense, n.ins[usize::from(*depth > 0)]),
        Op::Scan { .. }
        | Op::Fork { .. }
        | Op::Root
        | Op::RepSig
        | Op::Repeat { .. }
        | Op::Locate { .. }
        | Op::Array { .. }
        | Op::Alu { .. }
        | Op::Reduce { .. }
        | Op::Spacc { .. }
        | Op::CrdDrop
        | Op::LevelWrite { .. }
        | Op::ValWrite { .. } => None,
    }
}

/// What in `g` the Comal simulator cannot run as exported, or runs with other results, one
/// line per node (empty when Comal should run it and write our outputs). Export still works:
/// these are limits of Comal, listed so that a user need not find them by its panics.
pub fn comal_gaps(g: &Graph) -> Vec<String> {
    let mut gaps = Vec::new();
    // Reference streams that can carry `N`: a union's payload outputs for an operand that can
    // lack a coordinate the others have, and repeats of them.
    let dense = densified_levels(g);
    let mut may_n = vec![false; g.streams.len()];
    for n in &g.nodes {
        match &n.op {
            Op::Join { kind: JoinKind::Union, payloads, .. } => {
                let (mut ii, mut oi) = (0usize, 1usize);
                for &np in payloads {
                    let lacks = !full(g, &dense, n.ins[ii]);
                    for k in 0..np as usize {
                        if let Some(Some(s)) = n.outs.get(oi + k) {
                            may_n[s.0 as usize] = lacks;
                        }
                    }
                    ii += 1 + np as usize;
                    oi += np as usize;
                }
            }
            Op::Repeat { .. } => {
                if let Some(out) = n.outs.first().copied().flatten() {
                    may_n[out.0 as usize] = may_n[n.ins[0].0 as usize];
                }
            }
            // A lane carries the `N`s of its input.
            Op::Fork { .. } => {
                for out in n.outs.iter().flatten() {
                    may_n[out.0 as usize] = may_n[n.ins[0].0 as usize];
                }
            }
            _ => {}
        }
    }
    let producer = |s: StreamId| &g.nodes[g.stream(s).producer.0 .0 as usize];
    for (i, n) in g.nodes.iter().enumerate() {
        let what = |m: String| format!("node n{i} ({}{}): {m}", n.op.kind_name(), label_of(n));
        match &n.op {
            Op::Alu { op: AluOp::Max } => {
                gaps.push(what("Comal's binary ALU has no MAX (it stops at a todo!)".into()));
            }
            Op::Alu { op } => match alu_form(*op) {
                AluForm::Exact(..) | AluForm::Chain(_) => {}
                AluForm::Unsupported => {
                    gaps.push(what(format!("Comal's ALU has no stage for {}; it rejects the graph", op.name())));
                }
                AluForm::StandIn(..) => {
                    // The stand-ins are right around a max reduction; the reducer's note says
                    // when the whole is.
                    let out = n.outs.first().copied().flatten();
                    let feeds_max = out.is_none_or(|s| {
                        g.stream(s).consumers.iter().all(|&(NodeId(c), _)| is_max_reduction(&g.nodes[c as usize].op))
                    });
                    let after_max = n.ins.first().is_some_and(|&s| is_max_reduction(&producer(s).op));
                    if *op == AluOp::ZeroToNegInf && !feeds_max {
                        gaps.push(what(
                            "Comal has no zero_to_neginf; the export passes the value through (0 stays 0, \
                             where we give −∞), which is right only ahead of a max reduction"
                                .into(),
                        ));
                    } else if *op == AluOp::NegInfToZero && !after_max {
                        gaps.push(what(
                            "Comal has no neginf_to_zero; the export computes max(x, 0), which also turns \
                             negative values into 0 (right only after a max over nonzeros)"
                                .into(),
                        ));
                    } else if *op != AluOp::ZeroToNegInf && *op != AluOp::NegInfToZero {
                        gaps.push(what(format!("Comal has no {}; the export computes something else", op.name())));
                    }
                }
            },
            Op::Reduce { op: ReduceKind::Max } => {
                let from_nz =
                    n.ins.first().is_some_and(|&s| matches!(producer(s).op, Op::Alu { op: AluOp::ZeroToNegInf }));
                let out = n.outs.first().copied().flatten();
                let to_nz = out.is_some_and(|s| {
                    g.stream(s)
                        .consumers
                        .iter()
                        .all(|&(NodeId(c), _)| matches!(g.nodes[c as usize].op, Op::Alu { op: AluOp::NegInfToZero }))
                });
                gaps.push(what(if from_nz && to_nz {
                    "a max over nonzeros (zero_to_neginf, max, neginf_to_zero): Comal has no −∞ \
                     conversions, and its max reducer restarts from 0 after the first group, so the export \
                     computes max(0, every entry) per group; that is our result wherever a group's largest \
                     nonzero is ≥ 0 or it has no nonzero, and 0 instead of the largest nonzero where all of a \
                     group's nonzeros are negative"
                        .into()
                } else {
                    "Comal's max reducer restarts from 0 after the first fiber; a fiber whose maximum is \
                     negative gives another value"
                        .into()
                }));
            }
            Op::Fork { .. } if may_n[n.ins[0].0 as usize] => gaps.push(what(format!(
                "its input {} comes from a union and can be N; Comal's Scatter panics on N",
                g.stream(n.ins[0]).name
            ))),
            Op::Spacc { op: ReduceKind::Max, .. } => gaps.push(what(
                "Comal's sparse accumulator has no max (the schema has no field for its operator): it sums".into(),
            )),
            Op::Join { kind, payloads, .. } => {
                let mut ii = 0usize;
                for &np in payloads {
                    let c = n.ins[ii];
                    ii += 1 + np as usize;
                    let (NodeId(p), _) = g.stream(c).producer;
                    let pn = &g.nodes[p as usize];
                    if matches!(pn.op, Op::Scan { .. } | Op::Range { .. }) && may_n[pn.ins[0].0 as usize] {
                        let how = match kind {
                            JoinKind::Union => "panics (\"Coord should never be empty\")",
                            JoinKind::Intersect => "can hang",
                        };
                        gaps.push(what(format!(
                            "operand {} comes from scanner n{p}, whose references come from a union and can be \
                             N; Comal's scanner then emits an N coordinate, on which its joiner {how}",
                            g.stream(c).name
                        )));
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    gaps
}

/// Whether `op` is a max reduction (reducer or sparse accumulator).
fn is_max_reduction(op: &Op) -> bool {
    matches!(op, Op::Reduce { op: ReduceKind::Max } | Op::Spacc { op: ReduceKind::Max, .. })
}

/// Whether crd stream `s` holds every coordinate of its dimension in each fiber (a dense
/// scan or range, a union with one, an intersection of them).
fn full(g: &Graph, dense: &BTreeSet<(String, u32)>, s: StreamId) -> bool {
    let (NodeId(p), _) = g.stream(s).producer;
    let n = &g.nodes[p as usize];
    match &n.op {
        Op::Scan { format: LevelFormat::Dense, .. } | Op::Range { .. } => true,
        Op::Scan { tensor, level, .. } if dense.contains(&(tensor.clone(), *level)) => true,
        Op::Join { kind, payloads, .. } => {
            let mut ii = 0usize;
            let mut crds = Vec::with_capacity(payloads.len());
            for &np in payloads {
                crds.push(n.ins[ii]);
                ii += 1 + np as usize;
            }
            match kind {
                JoinKind::Union => crds.iter().any(|&c| full(g, dense, c)),
                JoinKind::Intersect => crds.iter().all(|&c| full(g, dense, c)),
            }
        }
        Op::Fork { .. } => false,
        Op::Gather { depth, .. } => full(g, dense, n.ins[usize::from(*depth > 0)]),
        Op::Scan { format: LevelFormat::Compressed, .. }
        | Op::Root
        | Op::RepSig
        | Op::Repeat { .. }
        | Op::Locate { .. }
        | Op::Array { .. }
        | Op::Alu { .. }
        | Op::Reduce { .. }
        | Op::Spacc { .. }
        | Op::CrdDrop
        | Op::LevelWrite { .. }
        | Op::ValWrite { .. } => false,
    }
}

fn label_of(n: &Node) -> String {
    if n.label.is_empty() {
        String::new()
    } else {
        format!(" {}", n.label)
    }
}

/// Exports `g` as a tortilla graph (see the crate documentation for the mapping).
///
/// The graph must verify. Stream ids start at 1 in each namespace, every id has one producer
/// and one consumer (broadcasts are inserted for fan-out), and void outputs get id 0.
pub fn to_comal(g: &Graph) -> Result<proto::ComalGraph, ExportError> {
    g.verify().map_err(|source| ExportError::Verify { graph: g.name.clone(), source })?;
    let plan = Plan::new(g);
    let mut a = Alloc::new(g, &plan.virtuals);
    emit(g, &plan, &mut a)?;
    a.start_real_pass();
    let operators = emit(g, &plan, &mut a)?;
    Ok(proto::ComalGraph {
        name: g.name.clone(),
        channel_size: CHANNEL_SIZE,
        graph: Some(proto::ProgramGraph { name: g.name.clone(), operators }),
    })
}

/// Sizes of the range scanners of `g`, each needing a synthetic shape file.
fn range_sizes(g: &Graph) -> Vec<u32> {
    let mut v: Vec<u32> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Range { size, .. } => Some(size),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Writes `dir/graph.bin` (the binary protobuf of [`to_comal`]) and every input tensor of `g`
/// as a SAM tensor directory in `dir`, plus a shape file for each range scanner's synthetic
/// tensor. `tensors` must hold every input binding's tensor in the bound shape and format.
pub fn export_dir(g: &Graph, tensors: &BTreeMap<String, Tensor>, dir: &Path) -> Result<(), ExportError> {
    let c = to_comal(g)?;
    for b in &g.inputs {
        if b.tensor.starts_with(RANGE_PREFIX) {
            return Err(ExportError::Tensor {
                tensor: b.tensor.clone(),
                message: format!("names starting with {RANGE_PREFIX} are reserved for range scanners"),
            });
        }
        let t = tensors
            .get(&b.tensor)
            .ok_or_else(|| ExportError::Tensor { tensor: b.tensor.clone(), message: "no data supplied".into() })?;
        if t.shape != b.shape || t.format.levels != b.levels || t.format.mode_order != b.mode_order {
            return Err(ExportError::Tensor {
                tensor: b.tensor.clone(),
                message: format!(
                    "data has shape {:?} format {}, the graph expects shape {:?} format {}",
                    t.shape,
                    t.format,
                    b.shape,
                    fuseflow_tensor::Format { levels: b.levels.clone(), mode_order: b.mode_order.clone() }
                ),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        file: path_name(dir),
        action: "create directory",
        source,
    })?;
    let dense = densified_levels(g);
    for b in &g.inputs {
        if let Some(t) = tensors.get(&b.tensor) {
            let mut levels = b.levels.clone();
            for (l, lf) in levels.iter_mut().enumerate() {
                if dense.contains(&(b.tensor.clone(), l as u32)) {
                    *lf = LevelFormat::Dense;
                }
            }
            if levels == b.levels {
                fuseflow_tensor::write_tensor_dir(dir, &b.tensor, t)?;
            } else {
                let terr = |e: fuseflow_tensor::TensorError| ExportError::Tensor {
                    tensor: b.tensor.clone(),
                    message: format!("cannot store it with dense levels for Comal: {e}"),
                };
                let f = fuseflow_tensor::Format::new(levels, b.mode_order.clone()).map_err(terr)?;
                fuseflow_tensor::write_tensor_dir(dir, &b.tensor, &t.convert(&f).map_err(terr)?)?;
            }
        }
    }
    for size in range_sizes(g) {
        let name = format!("{RANGE_PREFIX}{size}");
        let path = dir.join(fuseflow_tensor::tensor_dir::shape_file(&name));
        std::fs::write(&path, format!("{size}\n")).map_err(|source| ExportError::Io {
            file: path_name(&path),
            action: "write",
            source,
        })?;
    }
    let path = dir.join(GRAPH_FILE);
    std::fs::write(&path, c.encode_to_vec()).map_err(|source| ExportError::Io {
        file: path_name(&path),
        action: "write",
        source,
    })?;
    Ok(())
}
