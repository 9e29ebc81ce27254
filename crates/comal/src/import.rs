//! Import: tortilla protobuf → our graph, plus the input tensors from a tensor directory.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;

use fuseflow_graph::{
    AluOp, Graph, JoinKind, Node, NodeId, Op, OutputBinding, ReduceKind, ScalarOp, Stream, StreamId, StreamKind,
    TensorBinding,
};
use fuseflow_tensor::{Format, LevelFormat, Tensor};
use prost::Message as _;

use crate::alu::{chain, Src, Step};
use crate::meta::Meta;
use crate::proto::{self, joiner, operation};
use crate::{path_name, ImportError, GRAPH_FILE, RANGE_PREFIX};

type Res<T> = Result<T, ImportError>;

/// Most payload streams one joiner may carry (fused graphs have hundreds).
const MAX_PAYLOADS: u64 = 1 << 16;

/// A stream-id namespace; `Internal` holds the repsig streams of folded repeat signals and
/// `InternalCrd` the crd streams such signals read when the export left them void.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Ns {
    Ref,
    Crd,
    Val,
    RepSig,
    Internal,
    InternalCrd,
    InternalRef,
}

impl Ns {
    fn name(self) -> &'static str {
        match self {
            Ns::Ref | Ns::InternalRef => "ref",
            Ns::Crd | Ns::InternalCrd => "crd",
            Ns::Val => "val",
            Ns::RepSig | Ns::Internal => "repsig",
        }
    }

    fn kind(self) -> StreamKind {
        match self {
            Ns::Ref | Ns::InternalRef => StreamKind::Ref,
            Ns::Crd | Ns::InternalCrd => StreamKind::Crd,
            Ns::Val => StreamKind::Val,
            Ns::RepSig | Ns::Internal => StreamKind::RepSig,
        }
    }
}

/// A stream end: namespace and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    ns: Ns,
    id: u64,
}

/// A produced stream: its key and name.
#[derive(Debug, Clone)]
struct End {
    key: Key,
    name: String,
}

/// A stream as read from a message: namespace, id and name.
type Sref<'a> = Option<(Ns, u64, &'a str)>;

fn s_ref(s: Option<&proto::RefStream>) -> Sref<'_> {
    s.map(|s| (Ns::Ref, s.sid(), s.name.as_str()))
}
fn s_crd(s: Option<&proto::CrdStream>) -> Sref<'_> {
    s.map(|s| (Ns::Crd, s.sid(), s.name.as_str()))
}
fn s_val(s: Option<&proto::ValStream>) -> Sref<'_> {
    s.map(|s| (Ns::Val, s.sid(), s.name.as_str()))
}
fn s_rep(s: Option<&proto::RepSigStream>) -> Sref<'_> {
    s.map(|s| (Ns::RepSig, s.sid(), s.name.as_str()))
}
/// A crd-typed field that carries an id of another namespace (our crd-drop convention).
fn s_as(ns: Ns, s: Option<&proto::CrdStream>) -> Sref<'_> {
    s.map(|s| (ns, s.sid(), s.name.as_str()))
}
fn s_pay(p: Option<&joiner::Payload>) -> Sref<'_> {
    match p.and_then(|p| p.stream.as_ref()) {
        Some(joiner::payload::Stream::RefStream(s)) => s_ref(Some(s)),
        Some(joiner::payload::Stream::ValStream(s)) => s_val(Some(s)),
        None => None,
    }
}

/// An operation, for messages: position in the list, id and oneof kind.
#[derive(Debug, Clone, Copy)]
struct Info {
    pos: usize,
    id: u64,
    kind: &'static str,
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "operation #{} (id {}, {})", self.pos, self.id, self.kind)
    }
}

fn op_kind(op: &operation::Op) -> &'static str {
    use operation::Op as P;
    match op {
        P::Root(_) => "root",
        P::Joiner(_) => "joiner",
        P::FiberLookup(_) => "fiber_lookup",
        P::FiberWrite(_) => "fiber_write",
        P::Repeat(_) => "repeat",
        P::Repeatsig(_) => "repeatsig",
        P::Alu(_) => "alu",
        P::Reduce(_) => "reduce",
        P::CoordHold(_) => "coord_hold",
        P::CoordMask(_) => "coord_mask",
        P::CoordDrop(_) => "coord_drop",
        P::Array(_) => "array",
        P::Spacc(_) => "spacc",
        P::ValWrite(_) => "val_write",
        P::Func(_) => "func",
        P::Broadcast(_) => "broadcast",
        P::Fork(_) => "fork",
        P::Join(_) => "join",
        P::GenRef(_) => "gen_ref",
        P::Locate(_) => "locate",
        P::Concat(_) => "concat",
    }
}

/// Who produces a stream end.
#[derive(Debug, Clone, Copy)]
enum Producer {
    /// Output port of an item.
    Item(usize, usize),
    /// A copy of another stream (broadcast output, locate pass-through).
    Alias(Key),
    /// An output of a helper operation our export added and the import drops (the dense scan
    /// of a rewritten locate); only that helper's partner may read it.
    Dropped,
}

/// Parameters needed after the graph is built.
#[derive(Debug, Clone)]
enum Extra {
    None,
    /// A scanner whose name gave no `level`.
    ScanLevel,
    /// A scanner of a compressed level our export stored densely (`stored=dense`).
    StoredDense,
    /// A range scanner: its size is line `mode` of the synthetic tensor's shape file.
    Range {
        tensor: String,
        mode: u64,
    },
    /// A locator: the logical dimension it locates, if known.
    Locate {
        dim: Option<u64>,
    },
    /// A level writer: `level` known?, `mode_val` and `size` strings.
    Write {
        level_known: bool,
        mode_val: String,
        size: String,
    },
}

/// Topological tie-break: (order id, 0 = synthetic predecessor / 1 = regular, position).
type OrderKey = (u64, u8, u64);

/// One of our nodes in the making.
struct Item {
    order: OrderKey,
    info: Info,
    op: Op,
    label: String,
    ins: Vec<Key>,
    outs: Vec<Option<End>>,
    extra: Extra,
}

/// A repeat whose signal generator is built from `rep_ref`/`rep_val`.
struct Folded {
    item: usize,
    src: Key,
    group: Option<u64>,
    sig_label: String,
    sig_name: String,
    /// Our export's form: the signal reads this crd output port of `src`'s producer (named
    /// `crd_name`), not `src` itself.
    sig_port: Option<(usize, String)>,
    /// Our export's form for a lane: the signal reads lane `lane` of a fork (node `fork`,
    /// labelled `label`) of that crd stream; the lane's stream is named `name`. `src` is then
    /// the same lane of the fork of the sibling.
    sig_lane: Option<SigLane>,
}

/// See [`Folded::sig_lane`].
struct SigLane {
    lane: usize,
    fork: u64,
    label: String,
    name: String,
}

/// One joiner message of a (possibly split) Join.
struct JoinPart {
    info: Info,
    part: usize,
    crds: Vec<Key>,
    /// Real payload input of each operand in this part (fillers are dropped).
    payloads: Vec<Option<Key>>,
}

/// A Join being reassembled from its parts.
struct JoinGroup {
    item: usize,
    counts: Vec<u32>,
    kind: JoinKind,
    parts: Vec<JoinPart>,
}

/// One `alu` operation of an exported chain (see the `alu` module).
struct ChainPart {
    info: Info,
    /// Its inputs, in the order of its step's operands.
    ins: Vec<Key>,
    /// Its output, for every step but the last (whose output is the node's).
    out: Option<Key>,
}

/// An ALU node being reassembled from the parts of its chain.
struct Chain {
    item: usize,
    op: AluOp,
    steps: &'static [Step],
    parts: Vec<Option<ChainPart>>,
}

#[derive(Default)]
struct Builder {
    items: Vec<Item>,
    produced: HashMap<Key, (Producer, Info)>,
    consumed: HashMap<Key, Info>,
    folded: Vec<Folded>,
    groups: Vec<JoinGroup>,
    group_index: HashMap<u64, usize>,
    internal: u64,
    /// Dense scans of rewritten locates, by locate id: their input (the parent references).
    loc_scans: HashMap<u64, Key>,
    /// Rewritten locates whose repeat was exported too: (locate item, repeat id).
    loc_kept: Vec<(usize, u64)>,
    /// ALU chains, and their index by `group=`.
    chains: Vec<Chain>,
    chain_index: HashMap<u64, usize>,
}

fn missing(info: Info, field: &str) -> ImportError {
    ImportError::MissingField { op: info.to_string(), field: field.to_string() }
}

fn unsupported(info: Info, message: impl Into<String>) -> ImportError {
    ImportError::Unsupported { op: info.to_string(), message: message.into() }
}

fn meta_err(info: Info, name: &str, message: impl Into<String>) -> ImportError {
    ImportError::Meta { op: info.to_string(), name: name.to_string(), message: message.into() }
}

fn to_u32(info: Info, field: &str, v: u64) -> Res<u32> {
    u32::try_from(v)
        .map_err(|_| ImportError::Kind { op: info.to_string(), message: format!("{field} {v} is too large") })
}

/// Rejects tensor names that would break one-line messages or file names.
fn check_tensor(info: Info, name: &str) -> Res<()> {
    if name.chars().any(char::is_control) {
        return Err(ImportError::Kind {
            op: info.to_string(),
            message: format!("tensor name {name:?} contains control characters"),
        });
    }
    Ok(())
}

impl Builder {
    /// Registers a consumption and returns its key.
    fn consume(&mut self, info: Info, field: &str, s: Sref) -> Res<Key> {
        let (ns, id, _) = s.ok_or_else(|| missing(info, field))?;
        if id == 0 {
            return Err(ImportError::VoidInput { op: info.to_string(), field: field.to_string() });
        }
        let key = Key { ns, id };
        if let Some(first) = self.consumed.insert(key, info) {
            return Err(ImportError::ConsumedTwice {
                kind: ns.name(),
                id,
                first: first.to_string(),
                second: info.to_string(),
            });
        }
        Ok(key)
    }

    /// Registers a production; a missing stream or id 0 is void.
    fn produce(&mut self, info: Info, s: Sref, by: Producer) -> Res<Option<End>> {
        let Some((ns, id, name)) = s else { return Ok(None) };
        if id == 0 {
            return Ok(None);
        }
        let key = Key { ns, id };
        if let Some((_, first)) = self.produced.insert(key, (by, info)) {
            return Err(ImportError::ProducedTwice {
                kind: ns.name(),
                id,
                first: first.to_string(),
                second: info.to_string(),
            });
        }
        Ok(Some(End { key, name: name.to_string() }))
    }

    /// Produces output `port` of the item about to be pushed.
    fn out(&mut self, info: Info, port: usize, s: Sref) -> Res<Option<End>> {
        let item = self.items.len();
        self.produce(info, s, Producer::Item(item, port))
    }

    fn push(&mut self, info: Info, op: Op, label: String, ins: Vec<Key>, outs: Vec<Option<End>>, extra: Extra) {
        self.items.push(Item { order: (info.id, 1, info.pos as u64), info, op, label, ins, outs, extra });
    }

    /// Gives a node merged from several exported operations the place, identity and label of
    /// its part 0 (the operation that carries the node's id).
    fn anchor(&mut self, item: usize, info: Info, label: &str) {
        let it = &mut self.items[item];
        it.order = (info.id, 1, info.pos as u64);
        it.info = info;
        it.label = label.to_string();
    }

    /// Follows aliases to the producing item port.
    fn resolve(&self, key: Key, consumer: Info) -> Res<(usize, usize)> {
        let mut k = key;
        for _ in 0..=self.produced.len() {
            match self.produced.get(&k) {
                None => return Err(ImportError::Dangling { kind: k.ns.name(), id: k.id, op: consumer.to_string() }),
                Some((Producer::Item(i, p), _)) => return Ok((*i, *p)),
                Some((Producer::Alias(src), _)) => k = *src,
                Some((Producer::Dropped, info)) => {
                    return Err(ImportError::Kind {
                        op: consumer.to_string(),
                        message: format!(
                            "reads {} stream {}, an output of the export helper {info}",
                            k.ns.name(),
                            k.id
                        ),
                    })
                }
            }
        }
        let info = self.produced.get(&key).map_or(consumer, |(_, i)| *i);
        Err(ImportError::Cycle { op: info.to_string() })
    }

    fn operation(&mut self, pos: usize, o: &proto::Operation) -> Res<()> {
        use operation::Op as P;
        let Some(op) = &o.op else {
            return Err(ImportError::NoOp { op: Info { pos, id: o.id, kind: "none" }.to_string() });
        };
        let info = Info { pos, id: o.id, kind: op_kind(op) };
        let meta = Meta::parse(&o.name).map_err(|m| meta_err(info, &o.name, m))?;
        let tensor = match op {
            P::Root(g) => g.tensor.as_str(),
            P::FiberLookup(f) => f.tensor.as_str(),
            P::Array(a) => a.tensor.as_str(),
            P::FiberWrite(f) => f.tensor.as_str(),
            P::ValWrite(v) => v.tensor.as_str(),
            P::Repeat(r) => r.tensor.as_str(),
            _ => meta.get("tensor").unwrap_or(""),
        };
        check_tensor(info, tensor)?;
        let bad = |m: String| meta_err(info, &o.name, m);
        match op {
            P::Root(g) => {
                let out = self.out(info, 0, s_ref(g.output_ref.as_ref()))?;
                self.push(info, Op::Root, g.label.clone(), vec![], vec![out], Extra::None);
            }
            P::FiberLookup(f) if meta.get("locate").is_some() => {
                // The dense scan of a rewritten locate (see `locate_joiner`).
                let l = meta.parse_key::<u64>("locate").map_err(bad)?.unwrap_or(0);
                let input = self.consume(info, "fiber_lookup.input_ref", s_ref(f.input_ref.as_ref()))?;
                self.produce(info, s_crd(f.output_crd.as_ref()), Producer::Dropped)?;
                self.produce(info, s_ref(f.output_ref.as_ref()), Producer::Dropped)?;
                if self.loc_scans.insert(l, input).is_some() {
                    return Err(bad(format!("a second dense scan for locate {l}")));
                }
            }
            P::FiberLookup(f) => {
                let input = self.consume(info, "fiber_lookup.input_ref", s_ref(f.input_ref.as_ref()))?;
                let crd = self.out(info, 0, s_crd(f.output_crd.as_ref()))?;
                let rf = self.out(info, 1, s_ref(f.output_ref.as_ref()))?;
                let (op, extra) = if f.tensor.starts_with(RANGE_PREFIX) {
                    (
                        Op::Range { size: 0, index: f.index.clone() },
                        Extra::Range { tensor: f.tensor.clone(), mode: f.mode },
                    )
                } else {
                    let level = meta.parse_key::<u32>("level").map_err(bad)?;
                    let stored_dense = match meta.get("stored") {
                        None => false,
                        Some("dense") if level.is_some() => true,
                        Some(other) => return Err(bad(format!("stored={other:?} needs level= and must be dense"))),
                    };
                    let format = if f.format == "compressed" || stored_dense {
                        LevelFormat::Compressed
                    } else {
                        LevelFormat::Dense
                    };
                    let op = Op::Scan {
                        tensor: f.tensor.clone(),
                        level: level.unwrap_or(0),
                        dim: to_u32(info, "mode", f.mode)?,
                        format,
                        index: f.index.clone(),
                    };
                    let extra = match (level, stored_dense) {
                        (None, _) => Extra::ScanLevel,
                        (Some(_), true) => Extra::StoredDense,
                        (Some(_), false) => Extra::None,
                    };
                    (op, extra)
                };
                self.push(info, op, f.label.clone(), vec![input], vec![crd, rf], extra);
            }
            P::Repeatsig(r) => {
                let input = self.consume(info, "repeatsig.input_crd", s_crd(r.input_crd.as_ref()))?;
                let out = self.out(info, 0, s_rep(r.output_rep_sig.as_ref()))?;
                self.push(info, Op::RepSig, r.label.clone(), vec![input], vec![out], Extra::None);
            }
            P::Repeat(r) => self.repeat(info, &meta, &o.name, r)?,
            P::Joiner(j) if meta.get("locate").is_some() => self.locate_joiner(info, &meta, &o.name, j)?,
            P::Joiner(j) => self.joiner(info, &meta, &o.name, j)?,
            P::Locate(l) => {
                let crd = self.consume(info, "locate.input_crd", s_crd(l.input_crd.as_ref()))?;
                let rf = self.consume(info, "locate.input_ref", s_ref(l.input_ref.as_ref()))?;
                let out = self.out(info, 0, s_ref(l.output_ref1.as_ref()))?;
                // Comal's pass-through outputs are copies of the inputs.
                self.produce(info, s_ref(l.output_ref2.as_ref()), Producer::Alias(rf))?;
                self.produce(info, s_crd(l.output_crd.as_ref()), Producer::Alias(crd))?;
                let op = Op::Locate {
                    tensor: meta.get("tensor").unwrap_or("").to_string(),
                    level: meta.parse_key::<u32>("level").map_err(bad)?.unwrap_or(0),
                    size: meta.parse_key::<u32>("size").map_err(bad)?.unwrap_or(0),
                    index: meta.get("index").unwrap_or("").to_string(),
                };
                let dim = meta.parse_key::<u64>("dim").map_err(bad)?;
                self.push(info, op, l.label.clone(), vec![crd, rf], vec![out], Extra::Locate { dim });
            }
            P::Array(a) => {
                let input = self.consume(info, "array.input_ref", s_ref(a.input_ref.as_ref()))?;
                let out = self.out(info, 0, s_val(a.output_val.as_ref()))?;
                self.push(
                    info,
                    Op::Array { tensor: a.tensor.clone() },
                    a.label.clone(),
                    vec![input],
                    vec![out],
                    Extra::None,
                );
            }
            P::Alu(a) => {
                let v = match &a.conn {
                    Some(proto::alu::Conn::Vals(v)) => v,
                    Some(proto::alu::Conn::Crds(_)) => return Err(unsupported(info, "ALU over crd streams")),
                    None => return Err(missing(info, "alu.conn")),
                };
                if meta.get("group").is_some() || meta.get("part").is_some() {
                    return self.alu_part(info, &meta, &o.name, a, v);
                }
                let mut ins = Vec::with_capacity(v.inputs.len());
                for (k, s) in v.inputs.iter().enumerate() {
                    ins.push(self.consume(info, &format!("alu.vals.inputs[{k}]"), s_val(Some(s)))?);
                }
                let out = self.out(info, 0, s_val(v.output.as_ref()))?;
                let op = match alu_from_meta(&meta, a.scalar).map_err(bad)? {
                    Some(op) => op,
                    None => alu_from_stage(info, a, ins.len())?,
                };
                self.push(info, Op::Alu { op }, a.label.clone(), ins, vec![out], Extra::None);
            }
            P::Func(f) => {
                if !f.inputs.is_empty() || !f.outputs.is_empty() {
                    return Err(unsupported(info, "intrinsic functions over crd streams"));
                }
                let input = self.consume(info, "func.input_val", s_val(f.input_val.as_ref()))?;
                let out = self.out(info, 0, s_val(f.output_val.as_ref()))?;
                let scalar = meta.parse_key::<f64>("scalar").map_err(bad)?.unwrap_or(0.0);
                let op = match alu_from_meta(&meta, scalar).map_err(bad)? {
                    Some(op) => op,
                    None => alu_from_code(&f.name, scalar, false)
                        .map_err(|_| unsupported(info, format!("intrinsic function {:?}", f.name)))?,
                };
                self.push(info, Op::Alu { op }, String::new(), vec![input], vec![out], Extra::None);
            }
            P::Reduce(r) => {
                let op = match proto::reduce::Type::try_from(r.reduce_type) {
                    Ok(proto::reduce::Type::Add | proto::reduce::Type::Addsum) => ReduceKind::Sum,
                    Ok(proto::reduce::Type::Max) => ReduceKind::Max,
                    Err(_) => return Err(unsupported(info, format!("reduce type {}", r.reduce_type))),
                };
                let input = self.consume(info, "reduce.input_val", s_val(r.input_val.as_ref()))?;
                let out = self.out(info, 0, s_val(r.output_val.as_ref()))?;
                self.push(info, Op::Reduce { op }, r.label.clone(), vec![input], vec![out], Extra::None);
            }
            P::Spacc(s) => {
                let op = match meta.get("op") {
                    None | Some("sum") => ReduceKind::Sum,
                    Some("max") => ReduceKind::Max,
                    Some(other) => return Err(bad(format!("unknown accumulator op {other:?}"))),
                };
                let index = s.outer_crds.last().cloned().unwrap_or_default();
                let outer = |k: usize| s_crd(s.input_outer_crds.get(k));
                let (ins, outs, order) = match s.order {
                    1 => {
                        if s.input_outer_crds.len() != 1 {
                            return Err(ImportError::Kind {
                                op: info.to_string(),
                                message: format!("order 1 needs 1 outer crd, found {}", s.input_outer_crds.len()),
                            });
                        }
                        let ins = vec![
                            self.consume(info, "spacc.input_outer_crds[0]", outer(0))?,
                            self.consume(info, "spacc.input_inner_crd", s_crd(s.input_inner_crd.as_ref()))?,
                            self.consume(info, "spacc.input_val", s_val(s.input_val.as_ref()))?,
                        ];
                        let outs = vec![
                            self.out(info, 0, s_crd(s.output_inner_crd.as_ref()))?,
                            self.out(info, 1, s_val(s.output_val.as_ref()))?,
                        ];
                        (ins, outs, 1)
                    }
                    2 => {
                        if s.input_outer_crds.len() != 2 || s.output_outer_crds.len() > 1 {
                            return Err(ImportError::Kind {
                                op: info.to_string(),
                                message: format!(
                                    "order 2 needs 2 input and at most 1 output outer crds, found {} and {}",
                                    s.input_outer_crds.len(),
                                    s.output_outer_crds.len()
                                ),
                            });
                        }
                        let ins = vec![
                            self.consume(info, "spacc.input_outer_crds[1]", outer(1))?,
                            self.consume(info, "spacc.input_outer_crds[0]", outer(0))?,
                            self.consume(info, "spacc.input_inner_crd", s_crd(s.input_inner_crd.as_ref()))?,
                            self.consume(info, "spacc.input_val", s_val(s.input_val.as_ref()))?,
                        ];
                        let outs = vec![
                            self.out(info, 0, s_crd(s.output_outer_crds.first()))?,
                            self.out(info, 1, s_crd(s.output_inner_crd.as_ref()))?,
                            self.out(info, 2, s_val(s.output_val.as_ref()))?,
                        ];
                        (ins, outs, 2)
                    }
                    o => return Err(unsupported(info, format!("sparse accumulator of order {o}"))),
                };
                self.push(info, Op::Spacc { order, op, index }, s.label.clone(), ins, outs, Extra::None);
            }
            P::CoordDrop(c) if meta.get("compat").is_some() => {
                // A dropper only the export has (our writers need none): its outputs are its
                // inputs.
                let outer = self.consume(info, "coord_drop.input_outer_crd", s_crd(c.input_outer_crd.as_ref()))?;
                let inner = self.consume(info, "coord_drop.input_inner_crd", s_crd(c.input_inner_crd.as_ref()))?;
                self.produce(info, s_crd(c.output_outer_crd.as_ref()), Producer::Alias(outer))?;
                self.produce(info, s_crd(c.output_inner_crd.as_ref()), Producer::Alias(inner))?;
            }
            P::CoordDrop(c) => {
                let inner_ns = match meta.get("inner") {
                    None | Some("crd") => Ns::Crd,
                    Some("val") => Ns::Val,
                    Some("ref") => Ns::Ref,
                    Some(other) => return Err(bad(format!("unknown inner stream kind {other:?}"))),
                };
                let outer = self.consume(info, "coord_drop.input_outer_crd", s_crd(c.input_outer_crd.as_ref()))?;
                let inner =
                    self.consume(info, "coord_drop.input_inner_crd", s_as(inner_ns, c.input_inner_crd.as_ref()))?;
                let o0 = self.out(info, 0, s_crd(c.output_outer_crd.as_ref()))?;
                let o1 = self.out(info, 1, s_as(inner_ns, c.output_inner_crd.as_ref()))?;
                self.push(info, Op::CrdDrop, c.label.clone(), vec![outer, inner], vec![o0, o1], Extra::None);
            }
            P::FiberWrite(f) => {
                let level = meta.parse_key::<u32>("level").map_err(bad)?;
                let input = self.consume(info, "fiber_write.input_crd", s_crd(f.input_crd.as_ref()))?;
                let op = Op::LevelWrite { tensor: f.tensor.clone(), level: level.unwrap_or(0) };
                let extra =
                    Extra::Write { level_known: level.is_some(), mode_val: f.mode_val.clone(), size: f.size.clone() };
                self.push(info, op, f.label.clone(), vec![input], vec![], extra);
            }
            P::ValWrite(v) => {
                let input = self.consume(info, "val_write.input_val", s_val(v.input_val.as_ref()))?;
                self.push(
                    info,
                    Op::ValWrite { tensor: v.tensor.clone() },
                    v.label.clone(),
                    vec![input],
                    vec![],
                    Extra::None,
                );
            }
            P::Broadcast(b) => {
                use proto::broadcast::Conn;
                let (input, outputs): (Sref, Vec<Sref>) = match &b.conn {
                    Some(Conn::Crd(x)) => (s_crd(x.input.as_ref()), x.outputs.iter().map(|s| s_crd(Some(s))).collect()),
                    Some(Conn::Ref(x)) => (s_ref(x.input.as_ref()), x.outputs.iter().map(|s| s_ref(Some(s))).collect()),
                    Some(Conn::Val(x)) => (s_val(x.input.as_ref()), x.outputs.iter().map(|s| s_val(Some(s))).collect()),
                    Some(Conn::Repsig(x)) => {
                        (s_rep(x.input.as_ref()), x.outputs.iter().map(|s| s_rep(Some(s))).collect())
                    }
                    None => return Err(missing(info, "broadcast.conn")),
                };
                let input = self.consume(info, "broadcast input", input)?;
                for o in outputs {
                    self.produce(info, o, Producer::Alias(input))?;
                }
            }
            P::Fork(f) => {
                use proto::fork::Conn;
                let (input, outputs): (Sref, Vec<Sref>) = match &f.conn {
                    Some(Conn::Crd(x)) => (s_crd(x.input.as_ref()), x.outputs.iter().map(|s| s_crd(Some(s))).collect()),
                    Some(Conn::Ref(x)) => (s_ref(x.input.as_ref()), x.outputs.iter().map(|s| s_ref(Some(s))).collect()),
                    Some(Conn::Val(x)) => (s_val(x.input.as_ref()), x.outputs.iter().map(|s| s_val(Some(s))).collect()),
                    Some(Conn::Repsig(_)) => return Err(unsupported(info, "fork of a repeat-signal stream")),
                    None => return Err(missing(info, "fork.conn")),
                };
                if outputs.len() < 2 {
                    return Err(bad(format!("a fork needs at least 2 lanes, found {}", outputs.len())));
                }
                let input = self.consume(info, "fork input", input)?;
                let mut outs = Vec::with_capacity(outputs.len());
                for (l, o) in outputs.into_iter().enumerate() {
                    outs.push(self.out(info, l, o)?);
                }
                let op = Op::Fork {
                    lanes: outs.len() as u32,
                    index: meta.get("index").unwrap_or("").to_string(),
                    region: meta.parse_key::<u32>("region").map_err(bad)?.unwrap_or(0),
                };
                self.push(info, op, f.label.clone(), vec![input], outs, Extra::None);
            }
            P::Join(j) => {
                use proto::join::Conn;
                // Comal's own Gather restores stop levels only in special cases; our gather is
                // exact, so only a join our export wrote (with its depth and control) maps to it.
                let depth = meta.parse_key::<u32>("depth").map_err(bad)?.ok_or_else(|| {
                    unsupported(info, "join (gather) without our depth= metadata: Comal's Gather semantics have no equivalent primitive")
                })?;
                let (output, inputs): (Sref, Vec<Sref>) = match &j.conn {
                    Some(Conn::Crd(x)) => (s_crd(x.output.as_ref()), x.inputs.iter().map(|s| s_crd(Some(s))).collect()),
                    Some(Conn::Ref(x)) => (s_ref(x.output.as_ref()), x.inputs.iter().map(|s| s_ref(Some(s))).collect()),
                    Some(Conn::Val(x)) => (s_val(x.output.as_ref()), x.inputs.iter().map(|s| s_val(Some(s))).collect()),
                    Some(Conn::Repsig(_)) => return Err(unsupported(info, "join of repeat-signal streams")),
                    None => return Err(missing(info, "join.conn")),
                };
                if inputs.len() < 2 {
                    return Err(bad(format!("a join needs at least 2 lanes, found {}", inputs.len())));
                }
                let mut ins = Vec::with_capacity(inputs.len() + 1);
                if depth > 0 {
                    // The control (the parallelized level's crd stream) has no Comal wire: it
                    // is named by the id its producer writes, and read without consuming it.
                    let ctl = meta.parse_key::<u64>("ctl").map_err(bad)?.unwrap_or(0);
                    let ctl_op = meta.parse_key::<u64>("ctl_op").map_err(bad)?;
                    let ctl_port = meta.parse_key::<usize>("ctl_port").map_err(bad)?;
                    match (ctl, ctl_op, ctl_port) {
                        (0, Some(op), Some(port)) => {
                            // Nothing in Comal reads the control: its producer's port.
                            let item = (0..self.items.len()).find(|&k| self.items[k].info.id == op).ok_or_else(|| {
                                bad(format!("ctl_op={op}: no operation with that id before this join"))
                            })?;
                            let name = meta.get("ctl_name").unwrap_or("").to_string();
                            ins.push(self.port_key(info, item, port, &name)?);
                        }
                        (0, _, _) => {
                            return Err(bad(format!(
                                "a join of depth {depth} needs ctl= (the crd id of its control stream) or ctl_op= and ctl_port="
                            )))
                        }
                        (id, _, _) => ins.push(Key { ns: Ns::Crd, id }),
                    }
                }
                for (k, s) in inputs.into_iter().enumerate() {
                    ins.push(self.consume(info, &format!("join.inputs[{k}]"), s)?);
                }
                let out = self.out(info, 0, output)?;
                let op = Op::Gather {
                    lanes: (ins.len() - usize::from(depth > 0)) as u32,
                    depth,
                    index: meta.get("index").unwrap_or("").to_string(),
                    region: meta.parse_key::<u32>("region").map_err(bad)?.unwrap_or(0),
                };
                self.push(info, op, j.label.clone(), ins, vec![out], Extra::None);
            }
            P::CoordHold(_) => return Err(unsupported(info, "coord_hold has no equivalent primitive")),
            P::CoordMask(_) => return Err(unsupported(info, "coord_mask is not implemented")),
            P::GenRef(_) => return Err(unsupported(info, "gen_ref is not implemented")),
            P::Concat(_) => return Err(unsupported(info, "concat is not implemented")),
        }
        Ok(())
    }

    fn repeat(&mut self, info: Info, meta: &Meta, name: &str, r: &proto::Repeat) -> Res<()> {
        use proto::repeat::{InputRef, InputRepSig, OutputRef};
        let input = match &r.input_ref {
            Some(InputRef::InRef(s)) => s_ref(Some(s)),
            Some(InputRef::InVal(s)) => s_val(Some(s)),
            None => return Err(missing(info, "repeat.input_ref")),
        };
        let output = match &r.output_ref {
            Some(OutputRef::OutRef(s)) => s_ref(Some(s)),
            Some(OutputRef::OutVal(s)) => s_val(Some(s)),
            None => return Err(missing(info, "repeat.output_ref")),
        };
        if let (Some(i), Some(o)) = (input, output) {
            if i.0 != o.0 {
                return Err(ImportError::Kind {
                    op: info.to_string(),
                    message: format!("repeats a {} stream into a {} stream", i.0.name(), o.0.name()),
                });
            }
        }
        let payload = self.consume(info, "repeat.input_ref", input)?;
        let sig = match (&r.input_rep_sig, meta.get("sig")) {
            (None, _) => return Err(missing(info, "repeat.input_rep_sig")),
            (Some(InputRepSig::RepRef(s)), Some("repsig")) => {
                self.consume(info, "repeat.rep_ref (repsig)", Some((Ns::RepSig, s.sid(), &s.name)))?
            }
            (Some(_), Some("repsig")) => {
                return Err(meta_err(info, name, "sig=repsig needs the repsig id in rep_ref"));
            }
            (Some(_), Some(other)) => return Err(meta_err(info, name, format!("unknown sig={other:?}"))),
            (Some(rep), None) => {
                let s = match rep {
                    InputRepSig::RepRef(s) => s_ref(Some(s)),
                    InputRepSig::RepVal(s) => s_val(Some(s)),
                };
                let src = self.consume(info, "repeat.rep_ref", s)?;
                let group = meta.parse_key::<u64>("repsig").map_err(|m| meta_err(info, name, m))?;
                let sig_port = meta.parse_key::<usize>("sig_port").map_err(|m| meta_err(info, name, m))?;
                self.folded.push(Folded {
                    item: self.items.len(),
                    src,
                    group,
                    sig_label: meta.get("sig_label").unwrap_or("").to_string(),
                    sig_name: meta.get("sig_name").unwrap_or("repsig").to_string(),
                    sig_port: sig_port.map(|p| (p, meta.get("crd_name").unwrap_or("").to_string())),
                    sig_lane: match meta.parse_key::<usize>("sig_lane").map_err(|m| meta_err(info, name, m))? {
                        None => None,
                        Some(lane) => Some(SigLane {
                            lane,
                            fork: meta
                                .parse_key::<u64>("sig_fork")
                                .map_err(|m| meta_err(info, name, m))?
                                .ok_or_else(|| meta_err(info, name, "sig_lane= needs sig_fork="))?,
                            label: meta.get("fork_label").unwrap_or("").to_string(),
                            name: meta.get("lane_name").unwrap_or("").to_string(),
                        }),
                    },
                });
                // Placeholder, replaced by the folded RepSig's output.
                Key { ns: Ns::Internal, id: 0 }
            }
        };
        let out = self.out(info, 0, output)?;
        let op = Op::Repeat { index: r.index.clone() };
        self.push(info, op, r.label.clone(), vec![payload, sig], vec![out], Extra::None);
        Ok(())
    }

    /// The intersection of a rewritten locate: the located coordinates (pair 0, with a
    /// same-shape payload that is dropped) against the dense scan of the located level (pair 1),
    /// whose references (output 1) are the locate's output. Rebuilds the locate, and the
    /// repeat (with its signal) that fed it the parent reference per coordinate unless that
    /// repeat was exported as well (`rep_kept`).
    fn locate_joiner(&mut self, info: Info, meta: &Meta, name: &str, j: &proto::Joiner) -> Res<()> {
        let bad = |m: String| meta_err(info, name, m);
        let num = |key: &str| -> Res<u64> {
            meta.parse_key::<u64>(key).map_err(bad)?.ok_or_else(|| bad(format!("a rewritten locate needs {key}=")))
        };
        let l = num("locate")?;
        let parent = self.loc_scans.remove(&l).ok_or_else(|| bad(format!("no dense scan for locate {l} before it")))?;
        if j.input_pairs.len() != 2 || j.output_refs.len() != 2 {
            return Err(bad("a rewritten locate joins exactly two operands".into()));
        }
        let x = self.consume(info, "joiner.input_pairs[0].crd", s_crd(j.input_pairs[0].crd.as_ref()))?;
        self.consume(info, "joiner.input_pairs[0].in_ref", s_pay(j.input_pairs[0].in_ref.as_ref()))?;
        for (field, s) in [
            ("joiner.input_pairs[1].crd", s_crd(j.input_pairs[1].crd.as_ref())),
            ("joiner.input_pairs[1].in_ref", s_pay(j.input_pairs[1].in_ref.as_ref())),
        ] {
            let k = self.consume(info, field, s)?;
            if !matches!(self.produced.get(&k), Some((Producer::Dropped, _))) {
                return Err(bad(format!("{field} is not an output of the dense scan for locate {l}")));
            }
        }
        let out = self.out(info, 0, s_pay(j.output_refs.get(1)))?;
        let op = Op::Locate {
            tensor: meta.get("tensor").unwrap_or("").to_string(),
            level: num("level")? as u32,
            size: to_u32(info, "size", num("size")?)?,
            index: meta.get("index").unwrap_or("").to_string(),
        };
        let dim = Some(num("dim")?);
        let rep = num("rep")?;
        let loc_item = self.items.len();
        if meta.get("rep_kept").is_some() {
            self.push(
                info,
                op,
                j.label.clone(),
                vec![x, Key { ns: Ns::InternalRef, id: 0 }],
                vec![out],
                Extra::Locate { dim },
            );
            self.loc_kept.push((loc_item, rep));
            return Ok(());
        }
        self.internal += 1;
        let r_key = Key { ns: Ns::InternalRef, id: self.internal };
        self.push(info, op, j.label.clone(), vec![x, r_key], vec![out], Extra::Locate { dim });
        // The repeat, at its own position.
        let rep_item = self.items.len();
        self.produced.insert(r_key, (Producer::Item(rep_item, 0), info));
        self.items.push(Item {
            order: (rep, 1, info.pos as u64),
            info,
            op: Op::Repeat { index: meta.get("rep_index").unwrap_or("").to_string() },
            label: meta.get("rep_label").unwrap_or("").to_string(),
            ins: vec![parent, Key { ns: Ns::Internal, id: 0 }],
            outs: vec![Some(End { key: r_key, name: meta.get("rep_name").unwrap_or("").to_string() })],
            extra: Extra::None,
        });
        self.folded.push(Folded {
            item: rep_item,
            src: x,
            group: Some(num("repsig")?),
            sig_label: meta.get("sig_label").unwrap_or("").to_string(),
            sig_name: meta.get("sig_name").unwrap_or("repsig").to_string(),
            sig_port: None,
            sig_lane: None,
        });
        Ok(())
    }

    /// Points each rewritten locate whose repeat was exported at that repeat's output.
    fn link_kept_locates(&mut self) -> Res<()> {
        for (loc, rep) in std::mem::take(&mut self.loc_kept) {
            let info = self.items[loc].info;
            let r =
                self.items.iter().position(|it| it.info.id == rep && matches!(it.op, Op::Repeat { .. })).ok_or_else(
                    || ImportError::Kind { op: info.to_string(), message: format!("no repeat with id {rep}") },
                )?;
            let key = match &self.items[r].outs[0] {
                Some(end) => end.key,
                None => {
                    self.internal += 1;
                    let key = Key { ns: Ns::InternalRef, id: self.internal };
                    self.produced.insert(key, (Producer::Item(r, 0), info));
                    self.items[r].outs[0] = Some(End { key, name: String::new() });
                    key
                }
            };
            self.items[loc].ins[1] = key;
        }
        Ok(())
    }

    fn joiner(&mut self, info: Info, meta: &Meta, name: &str, j: &proto::Joiner) -> Res<()> {
        let bad = |m: String| meta_err(info, name, m);
        let kind = match proto::joiner::Type::try_from(j.join_type) {
            Ok(proto::joiner::Type::Intersect) => JoinKind::Intersect,
            Ok(proto::joiner::Type::Union) => JoinKind::Union,
            Err(_) => return Err(unsupported(info, format!("joiner type {}", j.join_type))),
        };
        let n = j.input_pairs.len();
        if n == 0 {
            return Err(missing(info, "joiner.input_pairs"));
        }
        let counts: Vec<u32> = match meta.get("payloads") {
            Some(list) => {
                let c: Vec<u32> = list
                    .split(',')
                    .map(|x| x.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad(format!("payloads={list:?} is not a list of counts")))?;
                if c.len() != n {
                    return Err(bad(format!("payloads lists {} operands, the joiner has {n}", c.len())));
                }
                c
            }
            None => j.input_pairs.iter().map(|b| u32::from(s_pay(b.in_ref.as_ref()).is_some())).collect(),
        };
        // A sanity bound that keeps a corrupt count from allocating without limit.
        if counts.iter().map(|&c| c as u64).sum::<u64>() > MAX_PAYLOADS {
            return Err(unsupported(info, format!("more than {MAX_PAYLOADS} payloads")));
        }
        let group = meta.parse_key::<u64>("group").map_err(bad)?;
        let part = meta.parse_key::<usize>("part").map_err(bad)?.unwrap_or(0);
        let max = counts.iter().copied().max().unwrap_or(0).max(1) as usize;
        if part >= max || (group.is_none() && max > 1) {
            return Err(bad(format!("part {part} of a joiner group with {max} parts")));
        }
        // The merged item: created with the first part seen.
        let gi = match group.and_then(|g| self.group_index.get(&g).copied()) {
            Some(gi) => {
                let g = &self.groups[gi];
                if g.counts != counts || g.kind != kind {
                    return Err(bad("parts of one joiner group disagree on operands or type".into()));
                }
                gi
            }
            None => {
                let item = self.items.len();
                let nouts = 1 + counts.iter().map(|&c| c as usize).sum::<usize>();
                self.items.push(Item {
                    order: (info.id, 1, info.pos as u64),
                    info,
                    op: Op::Join { kind, payloads: counts.clone(), index: j.index.clone() },
                    label: j.label.clone(),
                    ins: Vec::new(),
                    outs: vec![None; nouts],
                    extra: Extra::None,
                });
                self.groups.push(JoinGroup { item, counts: counts.clone(), kind, parts: Vec::new() });
                if let Some(g) = group {
                    self.group_index.insert(g, self.groups.len() - 1);
                }
                self.groups.len() - 1
            }
        };
        let item = self.groups[gi].item;
        if part == 0 {
            // Part 0 gives the merged node its place, label and index.
            self.anchor(item, info, &j.label);
            self.items[item].op = Op::Join { kind, payloads: counts.clone(), index: j.index.clone() };
        }
        let mut crds = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut port = 1usize;
        for (p, b) in j.input_pairs.iter().enumerate() {
            crds.push(self.consume(info, &format!("joiner.input_pairs[{p}].crd"), s_crd(b.crd.as_ref()))?);
            let pay = s_pay(b.in_ref.as_ref());
            let out = s_pay(j.output_refs.get(p));
            if part < counts[p] as usize {
                let key = self.consume(info, &format!("joiner.input_pairs[{p}].in_ref"), pay)?;
                if let Some(o) = out {
                    if o.0 != key.ns {
                        return Err(ImportError::Kind {
                            op: info.to_string(),
                            message: format!("operand {p} has a {} payload but a {} output", key.ns.name(), o.0.name()),
                        });
                    }
                }
                let end = self.produce(info, out, Producer::Item(item, port + part))?;
                self.items[item].outs[port + part] = end;
                payloads.push(Some(key));
            } else {
                if pay.is_some() {
                    // A filler copy: consumed (for the wiring checks) and dropped.
                    self.consume(info, &format!("joiner.input_pairs[{p}].in_ref"), pay)?;
                }
                if out.is_some_and(|o| o.1 != 0) {
                    if counts[p] != 0 || part != 0 {
                        return Err(bad(format!("operand {p} has no payload {part}, but its output is not void")));
                    }
                    // The payload our export gives an operand that has none (a range) feeds a
                    // repeat signal: it stands for the joined crd stream.
                    self.produce(info, out, Producer::Item(item, 0))?;
                }
                payloads.push(None);
            }
            port += counts[p] as usize;
        }
        let out_crd = s_crd(j.output_crd.as_ref());
        if part == 0 {
            let end = self.produce(info, out_crd, Producer::Item(item, 0))?;
            self.items[item].outs[0] = end;
        } else if out_crd.is_some_and(|o| o.1 != 0) {
            return Err(unsupported(info, "only part 0 of a split joiner may produce the joined crd stream"));
        }
        self.groups[gi].parts.push(JoinPart { info, part, crds, payloads });
        Ok(())
    }

    /// One step of an ALU chain (`alu;op=<code>;group=<node>;part=<k>`): its inputs are
    /// consumed, an inner output is kept for the next steps only (`Producer::Dropped`), and the
    /// last step's output becomes the node's. The node is created with the first part seen;
    /// `merge_chains` checks the wiring and sets its inputs.
    fn alu_part(&mut self, info: Info, meta: &Meta, name: &str, a: &proto::Alu, v: &proto::alu::Val) -> Res<()> {
        let bad = |m: String| meta_err(info, name, m);
        let op = alu_from_meta(meta, a.scalar).map_err(bad)?.ok_or_else(|| bad("a chain step needs op=".into()))?;
        let steps = chain(op).ok_or_else(|| bad(format!("{} is not exported as a chain of ALU steps", op.name())))?;
        let group =
            meta.parse_key::<u64>("group").map_err(bad)?.ok_or_else(|| bad("a chain step needs group=".into()))?;
        let part =
            meta.parse_key::<usize>("part").map_err(bad)?.ok_or_else(|| bad("a chain step needs part=".into()))?;
        let step = steps.get(part).ok_or_else(|| bad(format!("part {part} of a chain of {} steps", steps.len())))?;
        if v.inputs.len() != step.ins.len() {
            return Err(ImportError::Kind {
                op: info.to_string(),
                message: format!(
                    "step {part} of the {} chain reads {} values, not {}",
                    op.name(),
                    step.ins.len(),
                    v.inputs.len()
                ),
            });
        }
        let ci = match self.chain_index.get(&group).copied() {
            Some(ci) => {
                if self.chains[ci].op != op {
                    return Err(bad(format!("steps of ALU chain {group} disagree on its op")));
                }
                ci
            }
            None => {
                let item = self.items.len();
                self.push(info, Op::Alu { op }, a.label.clone(), Vec::new(), vec![None], Extra::None);
                self.chains.push(Chain { item, op, steps, parts: (0..steps.len()).map(|_| None).collect() });
                self.chain_index.insert(group, self.chains.len() - 1);
                self.chains.len() - 1
            }
        };
        let item = self.chains[ci].item;
        if part == 0 {
            // Step 0 gives the node its place and label.
            self.anchor(item, info, &a.label);
        }
        if self.chains[ci].parts[part].is_some() {
            return Err(bad(format!("step {part} of ALU chain {group} appears twice")));
        }
        let mut ins = Vec::with_capacity(v.inputs.len());
        for (k, s) in v.inputs.iter().enumerate() {
            ins.push(self.consume(info, &format!("alu.vals.inputs[{k}]"), s_val(Some(s)))?);
        }
        let output = s_val(v.output.as_ref());
        let out = if part + 1 == steps.len() {
            let end = self.produce(info, output, Producer::Item(item, 0))?;
            self.items[item].outs[0] = end;
            None
        } else {
            let end = self.produce(info, output, Producer::Dropped)?;
            Some(end.ok_or_else(|| bad(format!("step {part} of an ALU chain has a void output")))?.key)
        };
        self.chains[ci].parts[part] = Some(ChainPart { info, ins, out });
        Ok(())
    }

    /// Checks that every ALU chain is complete and wired as its steps say (each step reads
    /// the inner outputs of the steps it names, and every read of one of the node's inputs
    /// resolves to the same stream), and gives each chain's node its inputs.
    fn merge_chains(&mut self) -> Res<()> {
        let chains = std::mem::take(&mut self.chains);
        for c in &chains {
            let head = self.items[c.item].info;
            let mut parts = Vec::with_capacity(c.parts.len());
            for (k, p) in c.parts.iter().enumerate() {
                let p = p.as_ref().ok_or_else(|| {
                    unsupported(head, format!("the {} chain lacks step {k} of {}", c.op.name(), c.parts.len()))
                })?;
                parts.push(p);
            }
            let mut node_ins: Vec<Option<(Key, (usize, usize))>> = vec![None; c.op.arity()];
            for (k, p) in parts.iter().enumerate() {
                for (m, (&key, src)) in p.ins.iter().zip(c.steps[k].ins).enumerate() {
                    let wrong = |message: String| ImportError::Kind { op: p.info.to_string(), message };
                    match *src {
                        Src::Step(j) => {
                            if parts.get(j).and_then(|q| q.out) != Some(key) {
                                return Err(wrong(format!("input {m} is not the output of step {j} of its ALU chain")));
                            }
                        }
                        Src::In(x) => {
                            let r = self.resolve(key, p.info)?;
                            let slot = node_ins
                                .get_mut(x)
                                .ok_or_else(|| wrong(format!("input {m} names ALU input {x}, beyond its arity")))?;
                            match slot {
                                None => *slot = Some((key, r)),
                                Some((_, r0)) if *r0 != r => {
                                    return Err(wrong(format!(
                                        "input {m} reads another stream than the chain's other reads of its input {x}"
                                    )))
                                }
                                Some(_) => {}
                            }
                        }
                    }
                }
            }
            let mut ins = Vec::with_capacity(node_ins.len());
            for (x, slot) in node_ins.iter().enumerate() {
                let (key, _) =
                    slot.ok_or_else(|| unsupported(head, format!("no step of the chain reads input {x}")))?;
                ins.push(key);
            }
            self.items[c.item].ins = ins;
        }
        Ok(())
    }

    /// Creates the RepSig nodes of folded repeats: one per `repsig=` group (and source stream),
    /// or one per repeat without it.
    fn fold_repsigs(&mut self) -> Res<()> {
        let mut made: HashMap<(u64, (usize, usize)), Key> = HashMap::new();
        let folded = std::mem::take(&mut self.folded);
        for f in folded {
            let info = self.items[f.item].info;
            let mut src_key = f.src;
            let mut src = self.resolve(f.src, info)?;
            if let (Some((port, crd_name)), Some(lane)) = (&f.sig_port, &f.sig_lane) {
                (src_key, src) = self.fork_lane(info, src, *port, crd_name, lane)?;
            } else if let Some((port, crd_name)) = &f.sig_port {
                // The signal reads the crd stream at `port` of the producer.
                let (item, _) = src;
                let outs = self.items[item].outs.len();
                let slot = self.items[item].outs.get_mut(*port).ok_or_else(|| ImportError::Kind {
                    op: info.to_string(),
                    message: format!("sig_port={port}, but its producer has {outs} outputs"),
                })?;
                src_key = match slot {
                    Some(end) if end.key.ns == Ns::Crd || end.key.ns == Ns::InternalCrd => end.key,
                    Some(end) => {
                        return Err(ImportError::Kind {
                            op: info.to_string(),
                            message: format!("sig_port={port} is a {} stream, not crd", end.key.ns.name()),
                        })
                    }
                    None => {
                        self.internal += 1;
                        let key = Key { ns: Ns::InternalCrd, id: self.internal };
                        *slot = Some(End { key, name: crd_name.clone() });
                        self.produced.insert(key, (Producer::Item(item, *port), info));
                        key
                    }
                };
                src = (item, *port);
            }
            let existing = f.group.and_then(|g| made.get(&(g, src)).copied());
            let key = match existing {
                Some(k) => k,
                None => {
                    self.internal += 1;
                    let key = Key { ns: Ns::Internal, id: self.internal };
                    let idx = self.items.len();
                    self.produced.insert(key, (Producer::Item(idx, 0), info));
                    let order = match f.group {
                        Some(g) => (g, 1, info.pos as u64),
                        None => (info.id, 0, info.pos as u64),
                    };
                    self.items.push(Item {
                        order,
                        info,
                        op: Op::RepSig,
                        label: f.sig_label.clone(),
                        ins: vec![src_key],
                        outs: vec![Some(End { key, name: f.sig_name.clone() })],
                        extra: Extra::None,
                    });
                    if let Some(g) = f.group {
                        made.insert((g, src), key);
                    }
                    key
                }
            };
            if let Some(slot) = self.items[f.item].ins.get_mut(1) {
                *slot = key;
            }
        }
        Ok(())
    }

    /// The key of output `port` of item `item`, made (internal, named `name`) if the export
    /// left that port void.
    fn port_key(&mut self, info: Info, item: usize, port: usize, name: &str) -> Res<Key> {
        let (outs, of) = (self.items[item].outs.len(), self.items[item].info);
        let slot = self.items[item].outs.get_mut(port).ok_or_else(|| ImportError::Kind {
            op: info.to_string(),
            message: format!("port {port} of {of}, which has {outs} outputs"),
        })?;
        if let Some(end) = slot {
            return Ok(end.key);
        }
        self.internal += 1;
        let key = Key { ns: Ns::InternalCrd, id: self.internal };
        *slot = Some(End { key, name: name.to_string() });
        self.produced.insert(key, (Producer::Item(item, port), info));
        Ok(key)
    }

    /// A folded repeat signal of a lane: `src` is lane `l` of the fork of a sibling stream; the
    /// signal reads lane `l` of the fork of the crd stream at `port` of the sibling's producer.
    /// That fork is the exported one over the same crd stream, or is rebuilt when the export
    /// left it out (its lanes had no other reader). Returns the lane's key and producer port.
    fn fork_lane(
        &mut self,
        info: Info,
        src: (usize, usize),
        port: usize,
        crd_name: &str,
        lane: &SigLane,
    ) -> Res<(Key, (usize, usize))> {
        let wrong = |m: String| ImportError::Kind { op: info.to_string(), message: m };
        let (twin, l) = src;
        let Op::Fork { lanes, index, region } = self.items[twin].op.clone() else {
            return Err(wrong(format!(
                "sig_lane= but the repeat's rep_ref is not a fork lane ({})",
                self.items[twin].info
            )));
        };
        if l != lane.lane {
            return Err(wrong(format!("sig_lane={} but rep_ref is lane {l}", lane.lane)));
        }
        let twin_in = *self.items[twin].ins.first().ok_or_else(|| wrong("a fork without input".into()))?;
        let (anchor, _) = self.resolve(twin_in, info)?;
        let crd = self.port_key(info, anchor, port, crd_name)?;
        let existing = (0..self.items.len()).find(|&k| {
            matches!(self.items[k].op, Op::Fork { .. })
                && self.items[k].ins.first().is_some_and(|&i| self.resolve(i, info).ok() == Some((anchor, port)))
        });
        let fork = match existing {
            Some(k) => k,
            None => {
                let k = self.items.len();
                self.items.push(Item {
                    order: (lane.fork, 1, info.pos as u64),
                    info: Info { pos: info.pos, id: lane.fork, kind: "fork" },
                    op: Op::Fork { lanes, index, region },
                    label: lane.label.clone(),
                    ins: vec![crd],
                    outs: vec![None; lanes as usize],
                    extra: Extra::None,
                });
                k
            }
        };
        let key = self.port_key(info, fork, l, &lane.name)?;
        Ok((key, (fork, l)))
    }

    /// Fills the inputs of every Join from its parts.
    fn merge_joins(&mut self) -> Res<()> {
        let groups = std::mem::take(&mut self.groups);
        for g in groups {
            let nparts = g.counts.iter().copied().max().unwrap_or(0).max(1) as usize;
            let mut parts: Vec<Option<&JoinPart>> = vec![None; nparts];
            for p in &g.parts {
                if parts[p.part].replace(p).is_some() {
                    return Err(meta_err(p.info, "", format!("joiner part {} appears twice", p.part)));
                }
            }
            let head = self.items[g.item].info;
            let mut ins = Vec::new();
            for (p, &c) in g.counts.iter().enumerate() {
                let mut crd: Option<(Key, (usize, usize))> = None;
                for part in parts.iter() {
                    let Some(part) = part else {
                        return Err(unsupported(head, format!("split joiner lacks some of its {nparts} parts")));
                    };
                    let k = part.crds[p];
                    let r = self.resolve(k, part.info)?;
                    match crd {
                        None => crd = Some((k, r)),
                        Some((_, r0)) if r0 != r => {
                            return Err(ImportError::Kind {
                                op: part.info.to_string(),
                                message: format!("operand {p} joins another crd stream than part 0"),
                            })
                        }
                        _ => {}
                    }
                }
                if let Some((k, _)) = crd {
                    ins.push(k);
                }
                for part in parts.iter().take(c as usize).flatten() {
                    if let Some(k) = part.payloads[p] {
                        ins.push(k);
                    }
                }
            }
            self.items[g.item].ins = ins;
        }
        Ok(())
    }
}

/// Our ALU op from `op=` metadata, with `scalar` the constant (`ALU.scalar` or `scalar=`).
fn alu_from_meta(meta: &Meta, scalar: f64) -> Result<Option<AluOp>, String> {
    let Some(code) = meta.get("op") else { return Ok(None) };
    let first = match meta.get("first") {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(format!("first={other:?} is not 0 or 1")),
    };
    alu_from_code(code, scalar, first).map(Some)
}

/// Our ALU op from its `op=` code.
fn alu_from_code(code: &str, scalar: f64, first: bool) -> Result<AluOp, String> {
    let s = |op| AluOp::Scalar { op, scalar, scalar_first: first };
    Ok(match code {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "max" => AluOp::Max,
        "neg" => AluOp::Neg,
        "relu" => AluOp::Relu,
        "exp" => AluOp::Exp,
        "rsqrt" => AluOp::Rsqrt,
        "sigmoid" => AluOp::Sigmoid,
        "gelu" => AluOp::Gelu,
        "erf" => AluOp::Erf,
        "expnz" => AluOp::ExpNz,
        "expsubnz" => AluOp::ExpSubNz,
        "zero_to_neginf" => AluOp::ZeroToNegInf,
        "neginf_to_zero" => AluOp::NegInfToZero,
        "sadd" => s(ScalarOp::Add),
        "smul" => s(ScalarOp::Mul),
        "smax" => s(ScalarOp::Max),
        // a − c travels as SCALARADD with scalar −c; c − a has no stage and keeps c.
        "ssub" if first => s(ScalarOp::Sub),
        "ssub" => AluOp::Scalar { op: ScalarOp::Sub, scalar: -scalar, scalar_first: false },
        "sdiv" => s(ScalarOp::Div),
        "sexpsubnz" => s(ScalarOp::ExpSubNz),
        other => return Err(format!("unknown ALU op {other:?}")),
    })
}

/// Our ALU op from Comal's stage 0 and the number of inputs.
fn alu_from_stage(info: Info, a: &proto::Alu, inputs: usize) -> Res<AluOp> {
    use proto::alu::AluOp as P;
    let stage = a.stages.first().ok_or_else(|| missing(info, "alu.stages"))?;
    let op = P::try_from(stage.op).map_err(|_| unsupported(info, format!("ALU op {}", stage.op)))?;
    let c = a.scalar;
    let scalar = |op| AluOp::Scalar { op, scalar: c, scalar_first: false };
    Ok(match (op, inputs) {
        (P::Add, 2) => AluOp::Add,
        (P::Sub, 2) => AluOp::Sub,
        (P::Mul | P::Elemmul, 2) => AluOp::Mul,
        (P::Div, 2) => AluOp::Div,
        (P::Max, 2) => AluOp::Max,
        (P::Exp, 1) => AluOp::Exp,
        (P::Rsqrt, 1) => AluOp::Rsqrt,
        (P::Sigmoid, 1) => AluOp::Sigmoid,
        (P::Max, 1) if c == 0.0 => AluOp::Relu,
        (P::Max, 1) => scalar(ScalarOp::Max),
        (P::Scalaradd, 1) => scalar(ScalarOp::Add),
        (P::Scalarmul, 1) => scalar(ScalarOp::Mul),
        (P::Scalardiv, 1) => scalar(ScalarOp::Div),
        (op, n) => return Err(unsupported(info, format!("ALU op {op:?} with {n} inputs"))),
    })
}

/// Reads `tensor_<T>_mode_shape`: one size per line (trailing blank lines allowed).
fn read_shape(dir: &Path, tensor: &str) -> Res<Vec<usize>> {
    if tensor.is_empty() || tensor.contains(['/', '\\', '\0']) || tensor == "." || tensor == ".." {
        return Err(ImportError::Tensor {
            tensor: tensor.to_string(),
            message: "tensor names must be non-empty and contain no path separators".into(),
        });
    }
    let path = dir.join(fuseflow_tensor::tensor_dir::shape_file(tensor));
    let file = path_name(&path);
    let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Read { file: file.clone(), source })?;
    let lines: Vec<&str> = text.lines().collect();
    let used = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |p| p + 1);
    lines[..used]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.trim().parse::<u32>().map(|v| v as usize).map_err(|_| ImportError::Tensor {
                tensor: tensor.to_string(),
                message: format!("{file}:{}: expected a dimension size, found {:?}", i + 1, l.trim()),
            })
        })
        .collect()
}

/// Decodes a binary tortilla `ComalGraph`; `origin` names the bytes in errors.
pub fn decode_comal(bytes: &[u8], origin: &str) -> Result<proto::ComalGraph, ImportError> {
    proto::ComalGraph::decode(bytes)
        .map_err(|e| ImportError::Decode { origin: origin.to_string(), message: e.to_string().replace('\n', " ") })
}

/// Reads and imports the graph file `file` with its tensors from `data_dir`.
pub fn import_file(file: &Path, data_dir: &Path) -> Result<(Graph, BTreeMap<String, Tensor>), ImportError> {
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read { file: path_name(file), source })?;
    let c = decode_comal(&bytes, &path_name(file))?;
    from_comal(&c, data_dir)
}

/// Imports a directory written by [`crate::export_dir`]: `dir/graph.bin` and its tensors.
pub fn import_dir(dir: &Path) -> Result<(Graph, BTreeMap<String, Tensor>), ImportError> {
    import_file(&dir.join(GRAPH_FILE), dir)
}

/// Imports a tortilla graph (ours or another emitter's) and reads its input tensors from the
/// tensor directory `data_dir`. Broadcasts become fan-out, operations are sorted
/// topologically (ties by `Operation.id`), bindings are rebuilt from the operations and the
/// directory's files, and the result passes [`Graph::verify`]. See the crate documentation for
/// the conventions.
pub fn from_comal(c: &proto::ComalGraph, data_dir: &Path) -> Result<(Graph, BTreeMap<String, Tensor>), ImportError> {
    let pg = c.graph.as_ref().ok_or_else(|| ImportError::NoGraph { name: c.name.clone() })?;
    let mut b = Builder::default();
    for (pos, o) in pg.operators.iter().enumerate() {
        b.operation(pos, o)?;
    }
    // Every consumed id must be produced (aliases included).
    let mut consumed: Vec<(&Key, &Info)> = b.consumed.iter().collect();
    consumed.sort_by_key(|(k, i)| (i.pos, **k));
    for (k, info) in consumed {
        if !b.produced.contains_key(k) {
            return Err(ImportError::Dangling { kind: k.ns.name(), id: k.id, op: info.to_string() });
        }
    }
    // Every copy (broadcast output, locate pass-through) must lead back to a real producer.
    let mut aliases: Vec<(Key, Info)> =
        b.produced.iter().filter(|(_, (p, _))| matches!(p, Producer::Alias(_))).map(|(k, (_, i))| (*k, *i)).collect();
    aliases.sort_by_key(|(k, i)| (i.pos, *k));
    for (k, info) in aliases {
        b.resolve(k, info)?;
    }
    if let Some((l, _)) = b.loc_scans.iter().next() {
        return Err(ImportError::Kind {
            op: format!("dense scan for locate {l}"),
            message: "no joiner of that locate follows it".into(),
        });
    }
    b.link_kept_locates()?;
    b.fold_repsigs()?;
    b.merge_joins()?;
    b.merge_chains()?;

    // Resolve every input to its producing item port.
    let n = b.items.len();
    let mut srcs: Vec<Vec<(usize, usize)>> = Vec::with_capacity(n);
    for it in &b.items {
        let mut v = Vec::with_capacity(it.ins.len());
        for &k in &it.ins {
            v.push(b.resolve(k, it.info)?);
        }
        srcs.push(v);
    }

    // Topological order, ties broken by (id, position).
    let mut indeg = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in srcs.iter().enumerate() {
        for &(p, _) in s {
            indeg[i] += 1;
            users[p].push(i);
        }
    }
    let mut heap: BinaryHeap<std::cmp::Reverse<(OrderKey, usize)>> = BinaryHeap::new();
    for (i, &d) in indeg.iter().enumerate() {
        if d == 0 {
            heap.push(std::cmp::Reverse((b.items[i].order, i)));
        }
    }
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                heap.push(std::cmp::Reverse((b.items[u].order, u)));
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n).filter(|&i| indeg[i] > 0).min_by_key(|&i| b.items[i].order).unwrap_or(0);
        return Err(ImportError::Cycle { op: b.items[stuck].info.to_string() });
    }
    let mut node_of = vec![0u32; n];
    for (k, &i) in order.iter().enumerate() {
        node_of[i] = k as u32;
    }

    // Streams: one per item output with consumers, consumers in node order.
    let too_many = |i: usize| ImportError::Kind { op: b.items[i].info.to_string(), message: "too many ports".into() };
    let mut consumers: HashMap<(usize, usize), Vec<_>> = HashMap::new();
    for (i, s) in srcs.iter().enumerate() {
        for (port, &src) in s.iter().enumerate() {
            let port = port.try_into().map_err(|_| too_many(i))?;
            consumers.entry(src).or_default().push((NodeId(node_of[i]), port));
        }
    }
    let mut g = Graph::new(if pg.name.is_empty() { c.name.clone() } else { pg.name.clone() });
    let mut stream_of: HashMap<(usize, usize), StreamId> = HashMap::new();
    let mut infos = Vec::with_capacity(n);
    let mut extras = Vec::with_capacity(n);
    for (k, &i) in order.iter().enumerate() {
        let it = &b.items[i];
        let mut outs = Vec::with_capacity(it.outs.len());
        for (port, end) in it.outs.iter().enumerate() {
            let users = consumers.remove(&(i, port));
            match (end, users) {
                (Some(end), Some(mut users)) => {
                    users.sort();
                    let sid = StreamId(g.streams.len() as u32);
                    g.streams.push(Stream {
                        kind: end.key.ns.kind(),
                        name: end.name.clone(),
                        producer: (NodeId(k as u32), port.try_into().map_err(|_| too_many(i))?),
                        consumers: users,
                    });
                    stream_of.insert((i, port), sid);
                    outs.push(Some(sid));
                }
                _ => outs.push(None),
            }
        }
        let ins = srcs[i].iter().map(|src| stream_of.get(src).copied().unwrap_or(StreamId(u32::MAX))).collect();
        g.nodes.push(Node { op: it.op.clone(), ins, outs, label: it.label.clone() });
        infos.push(it.info);
        extras.push(it.extra.clone());
    }
    check_kinds(&g, &infos)?;
    let foreign_locates = fix_levels(&mut g, &infos, &extras)?;
    let tensors = bind(&mut g, &infos, &extras, &foreign_locates, data_dir)?;
    g.verify()?;
    Ok((g, tensors))
}

/// Checks arity and stream kinds per node, naming the operation.
fn check_kinds(g: &Graph, infos: &[Info]) -> Res<()> {
    for (i, node) in g.nodes.iter().enumerate() {
        let info = infos[i];
        let err = |message: String| ImportError::Kind { op: info.to_string(), message };
        let expected = node.op.input_kinds();
        if expected.len() != node.ins.len() {
            return Err(err(format!(
                "{} expects {} inputs, found {}",
                node.op.kind_name(),
                expected.len(),
                node.ins.len()
            )));
        }
        let mut in_kinds = Vec::with_capacity(node.ins.len());
        for (port, (&s, exp)) in node.ins.iter().zip(&expected).enumerate() {
            let kind =
                g.streams.get(s.0 as usize).map(|s| s.kind).ok_or_else(|| err(format!("input {port} is void")))?;
            match exp {
                Some(k) if *k != kind => {
                    return Err(err(format!("input {port} is a {} stream, expected {}", kind.name(), k.name())))
                }
                None if kind == StreamKind::RepSig => {
                    return Err(err(format!("input {port} is a repsig stream, expected a ref or val payload")))
                }
                _ => {}
            }
            in_kinds.push(kind);
        }
        let out_kinds = node.op.output_kinds(&in_kinds);
        if out_kinds.len() != node.outs.len() {
            return Err(err(format!("expected {} outputs, found {}", out_kinds.len(), node.outs.len())));
        }
        for (port, (out, k)) in node.outs.iter().zip(&out_kinds).enumerate() {
            if let Some(s) = out {
                let found = g.streams[s.0 as usize].kind;
                if found != *k {
                    return Err(err(format!("output {port} is a {} stream, expected {}", found.name(), k.name())));
                }
            }
        }
    }
    Ok(())
}

/// Fills in scanner levels (from the reference chain) and writer levels (by position in the
/// operation list) that the operation names did not give.
///
/// A locator without `tensor=` (other emitters) gets the tensor whose array or scanner reads
/// its output, and the level below its parent reference; those nodes are returned so that
/// [`bind`] can set their size from the tensor's shape.
fn fix_levels(g: &mut Graph, infos: &[Info], extras: &[Extra]) -> Res<Vec<usize>> {
    // Levels above each ref stream: root 0, +1 per scanner/locator, unchanged through repeats
    // and joiners.
    let mut depth: Vec<Option<u32>> = vec![None; g.streams.len()];
    let mut unknown_writers: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    let mut foreign: Vec<(usize, String, u32)> = Vec::new();
    for i in 0..g.nodes.len() {
        let d = |k: usize| g.nodes[i].ins.get(k).and_then(|s| depth.get(s.0 as usize).copied().flatten());
        let node = &g.nodes[i];
        let mut set: Vec<(usize, Option<u32>)> = Vec::new();
        let mut new_level = None;
        match &node.op {
            Op::Root => set.push((0, Some(0))),
            Op::Scan { .. } | Op::Range { .. } => {
                set.push((1, d(0).map(|x| x + 1)));
                if matches!(extras[i], Extra::ScanLevel) {
                    new_level = Some(d(0).ok_or_else(|| ImportError::Tensor {
                        tensor: match &node.op {
                            Op::Scan { tensor, .. } => tensor.clone(),
                            _ => String::new(),
                        },
                        message: format!("{}: no level= in its name and no root above it to count levels", infos[i]),
                    })?);
                }
            }
            Op::Locate { tensor, .. } => {
                set.push((0, d(1).map(|x| x + 1)));
                if tensor.is_empty() {
                    let level = d(1).ok_or_else(|| ImportError::Kind {
                        op: infos[i].to_string(),
                        message: "locates from a reference with no root above it".into(),
                    })?;
                    let t = located_tensor(g, i).ok_or_else(|| ImportError::Kind {
                        op: infos[i].to_string(),
                        message: "no array or scanner reads what it locates, so its tensor is unknown".into(),
                    })?;
                    foreign.push((i, t, level));
                }
            }
            Op::Repeat { .. } => set.push((0, d(0))),
            Op::Join { payloads, .. } => {
                let (mut ii, mut oi) = (0usize, 1usize);
                for &p in payloads {
                    ii += 1;
                    for _ in 0..p {
                        set.push((oi, d(ii)));
                        ii += 1;
                        oi += 1;
                    }
                }
            }
            Op::LevelWrite { tensor, .. } => {
                if let Extra::Write { level_known: false, .. } = extras[i] {
                    unknown_writers.entry(tensor.clone()).or_default().push((infos[i].pos, i));
                }
            }
            _ => {}
        }
        for (port, v) in set {
            if let Some(Some(s)) = g.nodes[i].outs.get(port) {
                if g.streams[s.0 as usize].kind == StreamKind::Ref {
                    depth[s.0 as usize] = v;
                }
            }
        }
        if let Some(l) = new_level {
            if let Op::Scan { level, .. } = &mut g.nodes[i].op {
                *level = l;
            }
        }
    }
    let mut located = Vec::with_capacity(foreign.len());
    for (i, t, l) in foreign {
        if let Op::Locate { tensor, level, .. } = &mut g.nodes[i].op {
            *tensor = t;
            *level = l;
        }
        located.push(i);
    }
    // Level writers without a level: outermost first in the order of the operation list.
    for (_, mut ws) in unknown_writers {
        ws.sort_unstable();
        for (l, (_, i)) in ws.into_iter().enumerate() {
            if let Op::LevelWrite { level, .. } = &mut g.nodes[i].op {
                *level = l as u32;
            }
        }
    }
    Ok(located)
}

/// The tensor read (by an array or scanner, through repeaters and joiners) with the references
/// node `i` produces.
fn located_tensor(g: &Graph, i: usize) -> Option<String> {
    let mut work: Vec<StreamId> = g.nodes[i].outs.iter().flatten().copied().collect();
    let mut steps = 0;
    while let Some(s) = work.pop() {
        steps += 1;
        if steps > g.streams.len() + 1 {
            return None;
        }
        for &(n, port) in &g.streams.get(s.0 as usize)?.consumers {
            let node = &g.nodes[n.0 as usize];
            match &node.op {
                Op::Array { tensor } | Op::Scan { tensor, .. } => return Some(tensor.clone()),
                Op::Repeat { .. } if port == 0 => work.extend(node.outs.first().copied().flatten()),
                Op::Join { payloads, .. } => {
                    // Input port of each payload → its output port.
                    let (mut ii, mut oi) = (0usize, 1usize);
                    for &p in payloads {
                        ii += 1;
                        for _ in 0..p {
                            if ii == port as usize {
                                work.extend(node.outs.get(oi).copied().flatten());
                            }
                            ii += 1;
                            oi += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// The size of the dimension whose coordinates crd stream `s` carries: that of the input
/// level (or range) they come from, through joiners (the largest operand), droppers and sparse
/// accumulators; `None` when no input determines it.
fn crd_size(g: &Graph, s: StreamId) -> Option<usize> {
    let mut work = vec![s];
    let mut best: Option<usize> = None;
    let mut steps = 0;
    while let Some(s) = work.pop() {
        steps += 1;
        if steps > 4 * g.streams.len() + 4 {
            break;
        }
        let Some(st) = g.streams.get(s.0 as usize) else { continue };
        let (NodeId(p), port) = st.producer;
        let Some(n) = g.nodes.get(p as usize) else { continue };
        let found = match &n.op {
            Op::Scan { tensor, dim, .. } => {
                g.inputs.iter().find(|b| b.tensor == *tensor).and_then(|b| b.shape.get(*dim as usize).copied())
            }
            Op::Range { size, .. } => Some(*size as usize),
            Op::Join { payloads, .. } if port == 0 => {
                let mut ii = 0usize;
                for &np in payloads {
                    work.extend(n.ins.get(ii).copied());
                    ii += 1 + np as usize;
                }
                None
            }
            Op::CrdDrop => {
                work.extend(n.ins.get(port as usize).copied());
                None
            }
            Op::Spacc { order, .. } if port < u32::from(*order) => {
                work.extend(n.ins.get(port as usize + 1).copied());
                None
            }
            _ => None,
        };
        if let Some(f) = found {
            best = Some(best.map_or(f, |b| b.max(f)));
        }
    }
    best
}

/// A level writer of an output: (node, level, `mode_val`, `size`).
type Write = (usize, u32, String, String);

/// A claim on a level of an input tensor: (node, level, claim, located size).
type Claim = (usize, usize, LevelClaim, Option<u32>);

/// What the operations say about one level of an input tensor.
#[derive(Default, Clone, Copy)]
struct LevelClaim {
    dim: Option<usize>,
    format: Option<LevelFormat>,
}

/// Rebuilds input and output bindings, range sizes, and reads the input tensors.
fn bind(
    g: &mut Graph,
    infos: &[Info],
    extras: &[Extra],
    foreign_locates: &[usize],
    dir: &Path,
) -> Res<BTreeMap<String, Tensor>> {
    // Range sizes from the synthetic shape files.
    for (i, node) in g.nodes.iter_mut().enumerate() {
        if let (Op::Range { size, .. }, Extra::Range { tensor, mode }) = (&mut node.op, &extras[i]) {
            let shape = read_shape(dir, tensor)?;
            let s =
                usize::try_from(*mode).ok().and_then(|m| shape.get(m)).copied().ok_or_else(|| ImportError::Tensor {
                    tensor: tensor.clone(),
                    message: format!("{}: mode {mode} is beyond the {} sizes of the shape file", infos[i], shape.len()),
                })?;
            if let Some(named) = tensor.strip_prefix(RANGE_PREFIX).and_then(|x| x.parse::<usize>().ok()) {
                if named != s {
                    return Err(ImportError::Tensor {
                        tensor: tensor.clone(),
                        message: format!("the shape file gives size {s}, the name says {named}"),
                    });
                }
            }
            *size = to_u32(infos[i], "range size", s as u64)?;
        }
    }

    // Input tensors, in order of first use.
    let mut order: Vec<String> = Vec::new();
    let mut claims: HashMap<String, Vec<Claim>> = HashMap::new();
    let mut restore: HashMap<String, Vec<usize>> = HashMap::new();
    let note = |t: &str, order: &mut Vec<String>| {
        if !order.iter().any(|x| x == t) {
            order.push(t.to_string());
        }
    };
    for (i, node) in g.nodes.iter().enumerate() {
        match &node.op {
            Op::Scan { tensor, level, dim, format, .. } => {
                note(tensor, &mut order);
                // A level our export stored densely is read as written, then made compressed.
                let (format, stored_dense) = match extras[i] {
                    Extra::StoredDense => (LevelFormat::Dense, true),
                    _ => (*format, false),
                };
                if stored_dense {
                    restore.entry(tensor.clone()).or_default().push(*level as usize);
                }
                let c = LevelClaim { dim: Some(*dim as usize), format: Some(format) };
                claims.entry(tensor.clone()).or_default().push((i, *level as usize, c, None));
            }
            Op::Locate { tensor, level, size, .. } if !tensor.is_empty() => {
                note(tensor, &mut order);
                let dim = match extras[i] {
                    Extra::Locate { dim } => dim.and_then(|d| usize::try_from(d).ok()),
                    _ => None,
                };
                let c = LevelClaim { dim, format: Some(LevelFormat::Dense) };
                claims.entry(tensor.clone()).or_default().push((i, *level as usize, c, Some(*size)));
            }
            Op::Array { tensor } => note(tensor, &mut order),
            _ => {}
        }
    }
    let mut tensors = BTreeMap::new();
    for t in order {
        let shape = read_shape(dir, &t)?;
        let rank = shape.len();
        let terr = |message: String| ImportError::Tensor { tensor: t.clone(), message };
        let mut levels = vec![LevelClaim::default(); rank];
        for &(i, level, c, size) in claims.get(&t).map(Vec::as_slice).unwrap_or(&[]) {
            let slot = levels.get_mut(level).ok_or_else(|| {
                terr(format!("{} reads level {level}, but the shape file gives rank {rank}", infos[i]))
            })?;
            if let Some(d) = c.dim {
                if d >= rank {
                    return Err(terr(format!(
                        "{} reads dimension {d}, but the shape file gives rank {rank}",
                        infos[i]
                    )));
                }
                if let Some(s) = size.filter(|&s| s != 0) {
                    if s as usize != shape[d] {
                        return Err(terr(format!(
                            "{} locates with size {s}, but dimension {d} has size {} in the shape file",
                            infos[i], shape[d]
                        )));
                    }
                }
            }
            match (slot.dim, c.dim) {
                (Some(a), Some(b)) if a != b => {
                    return Err(terr(format!(
                        "{} says level {level} is dimension {b}, another operation {a}",
                        infos[i]
                    )))
                }
                (None, Some(b)) => slot.dim = Some(b),
                _ => {}
            }
            match (slot.format, c.format) {
                (Some(a), Some(b)) if a != b => {
                    return Err(terr(format!(
                        "{} reads level {level} as {}, another operation as {}",
                        infos[i],
                        b.name(),
                        a.name()
                    )))
                }
                (None, Some(b)) => slot.format = Some(b),
                _ => {}
            }
        }
        // Unclaimed dimensions go to unclaimed levels in ascending order.
        let mut used = vec![false; rank];
        for l in &levels {
            if let Some(d) = l.dim {
                if std::mem::replace(&mut used[d], true) {
                    return Err(terr(format!("two levels store dimension {d}")));
                }
            }
        }
        let mut free = (0..rank).filter(|&d| !used[d]);
        let mut mode_order = Vec::with_capacity(rank);
        let mut formats = Vec::with_capacity(rank);
        for l in &levels {
            let d = l.dim.or_else(|| free.next()).unwrap_or(0);
            mode_order.push(d);
            formats.push(l.format.unwrap_or_else(|| {
                if dir.join(fuseflow_tensor::tensor_dir::seg_file(&t, d)).exists() {
                    LevelFormat::Compressed
                } else {
                    LevelFormat::Dense
                }
            }));
        }
        let format = Format::new(formats, mode_order).map_err(|e| terr(e.to_string()))?;
        let mut data = fuseflow_tensor::read_tensor_dir(dir, &t, &format)?;
        let format = match restore.get(&t) {
            None => format,
            Some(levels) => {
                let mut f = format.levels.clone();
                for &l in levels {
                    f[l] = LevelFormat::Compressed;
                }
                let f = Format::new(f, format.mode_order.clone()).map_err(|e| terr(e.to_string()))?;
                data = data.convert(&f).map_err(|e| terr(e.to_string()))?;
                f
            }
        };
        for &i in foreign_locates {
            if let Op::Locate { tensor, level, size, .. } = &mut g.nodes[i].op {
                if *tensor == t {
                    let d = format.mode_order[*level as usize];
                    *size = to_u32(infos[i], "located size", data.shape[d] as u64)?;
                }
            }
        }
        g.inputs.push(TensorBinding {
            tensor: t.clone(),
            shape: data.shape.clone(),
            levels: format.levels.clone(),
            mode_order: format.mode_order.clone(),
        });
        tensors.insert(t, data);
    }

    // Output bindings, in order of first writer.
    let mut outs: Vec<(String, Vec<Write>)> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let (tensor, write) = match (&node.op, &extras[i]) {
            (Op::LevelWrite { tensor, level }, Extra::Write { mode_val, size, .. }) => {
                (tensor, Some((i, *level, mode_val.clone(), size.clone())))
            }
            (Op::ValWrite { tensor }, _) => (tensor, None),
            _ => continue,
        };
        let pos = match outs.iter().position(|(t, _)| t == tensor) {
            Some(p) => p,
            None => {
                outs.push((tensor.clone(), Vec::new()));
                outs.len() - 1
            }
        };
        outs[pos].1.extend(write);
    }
    for (t, writes) in outs {
        let rank = writes.len();
        let terr = |message: String| ImportError::Tensor { tensor: t.clone(), message };
        let mut dims = vec![usize::MAX; rank];
        let mut shape = vec![None; rank];
        for (i, level, mode_val, size) in &writes {
            let level = *level as usize;
            let dim = mode_val.trim().parse::<usize>().unwrap_or(level);
            if level >= rank || dims[level] != usize::MAX {
                return Err(terr(format!("{} writes level {level}; the output has {rank} level writers", infos[*i])));
            }
            if dim >= rank {
                return Err(terr(format!("{} writes dimension {dim} of a rank-{rank} output", infos[*i])));
            }
            dims[level] = dim;
            if shape[dim].is_some() {
                return Err(terr(format!("two level writers write dimension {dim}")));
            }
            shape[dim] = Some(size.trim().parse::<usize>().ok());
        }
        // A size that is not a number (the FuseFlow compiler writes none) comes from the data:
        // the size of the input dimension (or range) whose coordinates reach the writer. Only
        // if no input determines it does an output shape file help.
        for (i, level, _, _) in &writes {
            let dim = dims[*level as usize];
            if !matches!(shape[dim], Some(Some(_))) {
                shape[dim] = Some(crd_size(g, g.nodes[*i].ins[0]));
            }
        }
        let shape: Vec<usize> = if shape.iter().all(|s| matches!(s, Some(Some(_)))) {
            shape.into_iter().map(|s| s.flatten().unwrap_or(0)).collect()
        } else {
            let file = read_shape(dir, &t).map_err(|e| {
                terr(format!("no input dimension reaches a level writer without a size, and no shape file helps: {e}"))
            })?;
            if file.len() != rank {
                return Err(terr(format!("the shape file gives rank {}, the writers {rank}", file.len())));
            }
            file
        };
        g.outputs.push(OutputBinding { tensor: t, shape, dims });
    }
    Ok(tensors)
}
