//! The fused filled intersection: an operand intersected with a union of whole fibers,
//! simulated as one node.
//!
//! Fully fused GNN layers recompute a row of the previous layer for every edge. To reach row
//! `k` of the adjacency for every `k` that row `i` names, the graph scans the adjacency's outer
//! level once per `i` and unions it with a range over all `N` rows (so that rows without
//! entries still get their bias), GraphSAGE's also with the features' dense outer level; the
//! result is intersected with row `i`. That is `N` coordinates through every one of those
//! nodes for every `i`: `N²` fires each, nearly all of them dropped by the intersection, and
//! nearly all of the simulation time of such a group on a large graph.
//!
//! [`Fill`] runs the scanners (leaves) and the unions in the intersection's slot, token by
//! token as the separate nodes would, through queues of its own that keep the records of
//! finite channels ([`Link`]), with the compressed scanners' memory ports: a node's fire times
//! depend only on its input tokens and its outputs' free cycles, so the order in which the
//! loop visits the nodes does not matter. A run of coordinates that the intersection drops is
//! taken in one step, in closed form ([`Fill::coast`]): the ranges and dense scanners make
//! every coordinate of it; a compressed scanner makes them too, or waits (a row its level
//! lacks), or skips the rows it lacks: it fires only for its own coordinates, in closed form
//! when its sends never wait, else one by one with the waits for room and for its lines of
//! coordinates that finite FIFOs and memory give it ([`Fill::skip_fires`]). Anything
//! it does not model (an `N` reference, streams that disagree) sets [`FusedShared::bailed`];
//! the engine then runs the graph again node by node, which also reports any malformed
//! stream.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::{Graph, JoinKind, NodeId, Op};

use super::dot::{clock, past_limit, FusedShared, Stage};
use super::link::{Deep, FusedEnv, Link};
use super::scan::ScanState as Walk;
use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token};

/// Most nodes a filled intersection absorbs (GraphSAGE's has six).
const MAX_NODES: usize = 16;

/// The nodes of a filled intersection, by graph node index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FillChain {
    /// The two-operand intersection; its slot runs the chain.
    pub join: usize,
    /// Which operand of the intersection the unions make (the other has one payload).
    pub filled_op: usize,
    /// The absorbed scanners, ranges and unions, each after the nodes it reads (the union
    /// that feeds the intersection last).
    pub nodes: Vec<usize>,
}

impl FillChain {
    /// The nodes the intersection's slot absorbs, in the order of [`FusedShared::stages`].
    pub fn absorbed(&self) -> Vec<usize> {
        self.nodes.clone()
    }

    /// The intersection's other operand.
    pub fn other_op(&self) -> usize {
        1 - self.filled_op
    }

    /// The intersection's input port of the other operand's coordinates (its payload is the
    /// next one).
    pub fn other_first(&self, graph: &Graph) -> usize {
        match &graph.nodes[self.join].op {
            Op::Join { payloads, .. } if self.filled_op == 0 => 1 + payloads[0] as usize,
            _ => 0,
        }
    }

    /// The absorbed nodes that read a stream from outside (scanners and ranges), in order.
    pub fn leaves<'a>(&'a self, graph: &'a Graph) -> impl Iterator<Item = usize> + 'a {
        self.nodes.iter().copied().filter(|&n| !is_union(graph, n))
    }
}

fn is_union(graph: &Graph, n: usize) -> bool {
    matches!(graph.nodes[n].op, Op::Join { kind: JoinKind::Union, .. })
}

/// Finds every filled intersection of `graph`: an intersection of two operands, one with a
/// single payload, the other made by a union over unions, scanners and ranges whose every
/// consumed output is read inside the chain.
pub(crate) fn find(graph: &Graph) -> Vec<FillChain> {
    (0..graph.nodes.len()).filter_map(|j| chain_at(graph, j)).collect()
}

fn chain_at(graph: &Graph, join: usize) -> Option<FillChain> {
    let node = |i: usize| &graph.nodes[i];
    let Op::Join { kind: JoinKind::Intersect, payloads, .. } = &node(join).op else { return None };
    if payloads.len() != 2 || node(join).ins.len() != 2 + payloads.iter().sum::<u32>() as usize {
        return None;
    }
    let producer = |s: fuseflow_graph::StreamId| graph.streams[s.0 as usize].producer.0 .0 as usize;
    (0..2).find_map(|filled_op| {
        if payloads[1 - filled_op] != 1 {
            return None;
        }
        let first = if filled_op == 0 { 0 } else { 2 };
        let ins = &node(join).ins[first..first + 1 + payloads[filled_op] as usize];
        let top = producer(ins[0]);
        if !is_union(graph, top) || ins.iter().any(|&s| producer(s) != top) {
            return None;
        }
        // Post-order from the top union: every node after what it reads.
        let mut nodes = Vec::new();
        let mut stack = vec![(top, false)];
        while let Some((n, expanded)) = stack.pop() {
            if nodes.contains(&n) {
                continue;
            }
            if expanded {
                nodes.push(n);
                continue;
            }
            let leaf = match &node(n).op {
                Op::Join { kind: JoinKind::Union, .. } => false,
                Op::Scan { .. } | Op::Range { .. } if node(n).ins.len() == 1 => true,
                _ => return None,
            };
            stack.push((n, true));
            if !leaf {
                stack.extend(node(n).ins.iter().map(|&s| (producer(s), false)));
            }
            if nodes.len() + stack.len() > 4 * MAX_NODES {
                return None;
            }
        }
        // Everything the chain's nodes send is read inside it, the top's outputs by the
        // intersection only.
        let inside = |c: NodeId| nodes.contains(&(c.0 as usize));
        let closed = nodes.iter().all(|&n| {
            node(n).outs.iter().flatten().all(|&s| {
                let consumers = &graph.streams[s.0 as usize].consumers;
                if n == top {
                    consumers.iter().all(|&(c, _)| c.0 as usize == join)
                } else {
                    consumers.iter().all(|&(c, _)| inside(c))
                }
            })
        });
        let top_outs_read = node(top).outs.iter().flatten().count() == ins.len();
        // Scanners read streams from outside, as does the intersection's other operand.
        let x_first = if filled_op == 0 { 1 + payloads[0] as usize } else { 0 };
        let outside = nodes
            .iter()
            .filter(|&&n| !is_union(graph, n))
            .map(|&n| node(n).ins[0])
            .chain(node(join).ins[x_first..x_first + 2].iter().copied())
            .all(|s| !nodes.contains(&producer(s)));
        (closed && top_outs_read && outside && nodes.len() <= MAX_NODES).then_some(FillChain { join, filled_op, nodes })
    })
}

/// What an absorbed node is.
pub(crate) enum FillKind {
    /// A compressed scanner over this level.
    Compressed { seg: Arc<Vec<u32>>, crd: Arc<Vec<u32>> },
    /// A dense scanner, or a range, of this size.
    Dense(u32),
    /// A union with these payload counts per operand.
    Union(Vec<usize>),
}

/// An absorbed node: what it is, its clock and state, and the queues it reads and feeds.
struct Node {
    kind: FillKind,
    clk: Clock,
    walk: Walk,
    /// Tokens sent on each output.
    sent: u64,
    /// Fibers looked up and coordinates read (compressed scanners' memory traffic).
    fibers: u64,
    coords: u64,
    /// Per input port, its queue (unions); per output port, the queues it feeds.
    ins: Vec<usize>,
    outs: Vec<Vec<usize>>,
    /// Input port of the fused node (scanners and ranges).
    ext: usize,
    /// A compressed scanner's memory ports (segments, coordinates), with the memory model,
    /// and the cycle its current fiber's bounds are known.
    mem: Option<(MemPort, MemPort)>,
    want: u64,
}

impl Node {
    fn is_leaf(&self) -> bool {
        !matches!(self.kind, FillKind::Union(_))
    }

    /// A compressed scanner's coordinates left in its fiber (none for other nodes).
    fn fiber(&self) -> &[u32] {
        match (&self.kind, self.walk) {
            (FillKind::Compressed { crd, .. }, Walk::Fiber { pos, end, .. }) => &crd[pos as usize..end as usize],
            _ => &[],
        }
    }
}

/// Most output queues of a skipping scanner whose fires are worked out one by one.
const MAX_SKIP_OUTS: usize = 8;

/// The nodes that fire in a run ([`Fill::plan_run`]): those that move, the skipping
/// scanners among them, the run's first coordinate and its longest length.
struct Run {
    moves: [bool; MAX_NODES],
    sparse: [bool; MAX_NODES],
    q: u32,
    n: u64,
}

/// A skipping scanner's fires in a run ([`Fill::skip_fires`]): its clock after them, how
/// many, and the cycle of the last.
#[derive(Clone, Copy)]
struct Skip {
    clk: Clock,
    fires: u64,
    last: u64,
}

/// Input ports of the fused node: the intersection's other operand (coordinates, payload),
/// then each scanner's and range's reference stream.
const X_CRD: usize = 0;
const X_REF: usize = 1;

/// A payload that lines up with a data coordinate.
fn payload(t: Token) -> bool {
    matches!(t, Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty)
}

/// Whether a payload token lines up with its operand's coordinate token (as `Join` checks).
fn aligned(crd: Token, tok: Token) -> bool {
    match (crd, tok) {
        (Token::Idx(_), t) => payload(t),
        (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) => a == b,
        (Token::Done, Token::Done) => true,
        _ => false,
    }
}

/// Marks the run as given up (it is repeated node by node) and says why.
fn give_up(shared: &Rc<RefCell<FusedShared>>, join: usize, why: &str) -> SimError {
    shared.borrow_mut().bailed = true;
    SimError::Protocol { node: join as u32, message: format!("fused filled intersection: {why}") }
}

/// The fused filled intersection (see the module documentation). Its own clock is the
/// intersection's; its outputs are the intersection's.
pub(crate) struct Fill {
    chain: FillChain,
    nodes: Vec<Node>,
    /// Every channel inside the chain: its tokens (ready, token), its timing with a finite
    /// capacity, the node (index into `nodes`) that feeds it and the one that reads it
    /// (`None`: the intersection), and that node's input port in the graph.
    queues: Vec<VecDeque<(u64, Token)>>,
    links: Vec<Link<Deep>>,
    feeder: Vec<usize>,
    reader: Vec<Option<usize>>,
    port_of: Vec<(usize, usize)>,
    /// The intersection's filled operand: its coordinate queue, then its payloads'.
    filled: Vec<usize>,
    /// First output port of the other operand's payload and of the filled operand's.
    out_other: usize,
    out_filled: usize,
    /// Output ports of the intersection.
    n_out: usize,
    /// The initiation interval every stage shares with the intersection, if they do: runs
    /// then coast in closed form.
    shared_ii: Option<u64>,
    /// Per node, whether it is a compressed scanner that may skip the coordinates its fiber
    /// lacks within a run ([`Fill::coast`]): one whose sends never wait (unbounded outputs,
    /// ideal memory), or the one whose fires are worked out one by one ([`Fill::exact`]).
    skips: Vec<bool>,
    /// The compressed scanner whose sends may wait (bounded outputs or memory) that skips
    /// ([`Fill::skip_fires`]): the first such one, read by unions only, when no other leaf
    /// reads memory (its fetches then come last in a run, after anything else that could
    /// end the run sooner).
    exact: Option<usize>,
    finished: bool,
    max_cycles: u64,
    shared: Rc<RefCell<FusedShared>>,
}

impl Fill {
    /// The chain of `graph` with its nodes' kinds (in [`FillChain::nodes`] order) and
    /// `(ii, latency)`, and the intersection's initiation interval. It reports to a
    /// [`FusedShared`] of its own until [`Fill::in_env`] gives it the engine's.
    pub fn new(
        graph: &Graph,
        chain: FillChain,
        kinds: Vec<(FillKind, (u64, u64))>,
        join_ii: u64,
        max_cycles: u64,
    ) -> Fill {
        let mut queues = Vec::new();
        let (mut feeder, mut reader, mut port_of) = (Vec::new(), Vec::new(), Vec::new());
        // One queue per (stream, consumer inside the chain), as the engine's channels.
        let mut queue_of = std::collections::BTreeMap::new();
        for (i, &n) in chain.nodes.iter().enumerate() {
            for s in graph.nodes[n].outs.iter().flatten() {
                for &(c, port) in &graph.streams[s.0 as usize].consumers {
                    let key = (c.0 as usize, port as usize);
                    queue_of.insert(key, queues.len());
                    queues.push(VecDeque::new());
                    feeder.push(i);
                    reader.push(chain.nodes.iter().position(|&m| m == key.0));
                    port_of.push(key);
                }
            }
        }
        let mut ext = X_REF + 1;
        let nodes = chain
            .nodes
            .iter()
            .zip(kinds)
            .map(|(&n, (kind, timing))| {
                let g = &graph.nodes[n];
                let outs = g
                    .outs
                    .iter()
                    .map(|s| {
                        s.iter()
                            .flat_map(|s| &graph.streams[s.0 as usize].consumers)
                            .map(|&(c, port)| queue_of[&(c.0 as usize, port as usize)])
                            .collect()
                    })
                    .collect();
                let leaf = !matches!(kind, FillKind::Union(_));
                let ins = if leaf { Vec::new() } else { (0..g.ins.len()).map(|p| queue_of[&(n, p)]).collect() };
                ext += usize::from(leaf);
                Node {
                    kind,
                    clk: clock(timing),
                    walk: Walk::Idle,
                    sent: 0,
                    fibers: 0,
                    coords: 0,
                    ins,
                    outs,
                    ext: ext - 1,
                    mem: None,
                    want: 0,
                }
            })
            .collect::<Vec<_>>();
        let Op::Join { payloads, .. } = &graph.nodes[chain.join].op else { unreachable!("checked by `find`") };
        let first = if chain.filled_op == 0 { 0 } else { 2 };
        let filled = (0..=payloads[chain.filled_op] as usize).map(|k| queue_of[&(chain.join, first + k)]).collect();
        let out_base = |op: usize| 1 + payloads[..op].iter().sum::<u32>() as usize;
        let shared_ii = nodes.iter().all(|n| n.clk.ii == join_ii).then_some(join_ii);
        Fill {
            links: Vec::new(),
            reader,
            port_of,
            n_out: out_base(2),
            skips: Vec::new(),
            exact: None,
            out_other: out_base(chain.other_op()),
            out_filled: out_base(chain.filled_op),
            chain,
            nodes,
            queues,
            feeder,
            filled,
            shared_ii,
            finished: false,
            max_cycles,
            shared: Rc::default(),
        }
    }

    /// The chain in the engine's environment: its reports, the capacities of the channels
    /// inside it and its compressed scanners' memory ports.
    pub fn in_env(mut self, mut env: FusedEnv) -> Fill {
        self.links = self.port_of.iter().map(|&(n, p)| env.link(n, p)).collect();
        for (node, &n) in self.nodes.iter_mut().zip(&self.chain.nodes) {
            node.mem = env.scan_ports.remove(&n);
        }
        self.shared = env.shared;
        let compressed = |n: &Node| matches!(n.kind, FillKind::Compressed { .. });
        let free = |n: &Node| n.mem.is_none() && n.outs.iter().flatten().all(|&k| self.links[k].bound().is_none());
        let with_memory = self.nodes.iter().filter(|n| n.mem.is_some()).count();
        self.exact = self.nodes.iter().position(|n| {
            let outs = n.outs.iter().flatten();
            compressed(n)
                && !free(n)
                && with_memory <= usize::from(n.mem.is_some())
                && outs.clone().count() <= MAX_SKIP_OUTS
                && outs.clone().all(|&k| self.reader[k].is_some())
        });
        self.skips =
            self.nodes.iter().enumerate().map(|(i, n)| compressed(n) && (free(n) || self.exact == Some(i))).collect();
        self
    }

    fn bail(&self, why: &str) -> SimError {
        give_up(&self.shared, self.chain.join, why)
    }

    /// Sends `tok` (ready at `ready`) on output `port` of node `i`.
    fn send(&mut self, i: usize, port: usize, ready: u64, tok: Token) {
        for k in 0..self.nodes[i].outs[port].len() {
            let q = self.nodes[i].outs[port][k];
            self.queues[q].push_back((ready, tok));
            self.links[q].push();
        }
    }

    /// Takes the head of queue `q` at cycle `at`.
    fn take(&mut self, q: usize, at: u64) -> Token {
        self.links[q].pop(at);
        self.queues[q].pop_front().expect("a token to take").1
    }

    /// The earliest cycle node `i` may send on all its outputs, `None` while one is full.
    fn out_free(&self, i: usize) -> Option<u64> {
        let mut t = 0;
        for &q in self.nodes[i].outs.iter().flatten() {
            if self.links[q].is_full() {
                return None;
            }
            t = t.max(self.links[q].free());
        }
        Some(t)
    }

    /// One step of node `i`, or of what it waits for; returns whether anything moved.
    fn step(&mut self, io: &mut Io<'_>, i: usize) -> Result<bool, SimError> {
        match self.nodes[i].kind {
            FillKind::Union(_) => self.union_step(io, i),
            FillKind::Compressed { .. } | FillKind::Dense(_) => self.scan_step(io, i),
        }
    }

    /// One step of scanner or range `i` (as [`super::scan::Scan`] without memory).
    fn scan_step(&mut self, io: &mut Io<'_>, i: usize) -> Result<bool, SimError> {
        // Where it sends, the earliest cycle it may (`None`: an output is full).
        let free = self.out_free(i);
        let node = &mut self.nodes[i];
        let (crd, r) = match node.walk {
            Walk::Finished => return Ok(false),
            Walk::Fiber { pos, end, base } if pos < end => {
                let Some(free) = free else { return Ok(false) };
                let ready = match &mut node.mem {
                    Some((_, crd)) => crd.fetch(pos, node.want),
                    None => 0,
                };
                let at = node.clk.fire(ready, free);
                if let Some((_, crd)) = &mut node.mem {
                    crd.consume(at);
                }
                node.walk = Walk::Fiber { pos: pos + 1, end, base };
                let toks = match &node.kind {
                    FillKind::Compressed { crd, .. } => (Token::Idx(crd[pos as usize]), Token::Idx(pos)),
                    FillKind::Dense(_) | FillKind::Union(_) => {
                        (Token::Idx(pos), Token::Idx((base + pos as u64) as u32))
                    }
                };
                (toks, node.clk.ready(at))
            }
            Walk::Fiber { .. } => {
                node.walk = Walk::Closing;
                return Ok(true);
            }
            Walk::Idle => {
                let Some((ready, tok)) = io.head(node.ext) else { return Ok(false) };
                match tok {
                    Token::Idx(p) => {
                        let walk = match &node.kind {
                            FillKind::Compressed { seg, crd } => {
                                let (Some(&pos), Some(&end)) = (seg.get(p as usize), seg.get(p as usize + 1)) else {
                                    return Err(give_up(&self.shared, self.chain.join, "a reference past the level"));
                                };
                                if pos > end || end as usize > crd.len() {
                                    return Err(give_up(&self.shared, self.chain.join, "a malformed level"));
                                }
                                node.fibers += 1;
                                node.coords += (end - pos) as u64;
                                Walk::Fiber { pos, end, base: 0 }
                            }
                            FillKind::Dense(size) => {
                                let base = p as u64 * *size as u64;
                                if base + *size as u64 > u32::MAX as u64 {
                                    return Err(give_up(&self.shared, self.chain.join, "a dense position past u32"));
                                }
                                Walk::Fiber { pos: 0, end: *size, base }
                            }
                            FillKind::Union(_) => unreachable!("a scanner"),
                        };
                        // Taking the reference costs no fire (as `Scan`).
                        let clk = &mut node.clk;
                        if ready > clk.t {
                            clk.stall_in += ready - clk.t;
                            clk.t = ready;
                        }
                        io.pop(node.ext, clk.t);
                        if let Some((seg, _)) = &mut node.mem {
                            // The bounds are requested when the reference arrives; the fiber
                            // cannot start before they are back.
                            let want = seg.fetch(p, ready).max(seg.fetch(p + 1, ready));
                            if want > clk.t {
                                clk.stall_in += want - clk.t;
                                clk.t = want;
                            }
                            seg.consume(clk.t);
                            node.want = want;
                        }
                        node.walk = walk;
                        return Ok(true);
                    }
                    Token::Stop { level, gap } => {
                        let Some(free) = free else { return Ok(false) };
                        let at = node.clk.fire(ready, free);
                        io.pop(node.ext, at);
                        let out = Token::Stop { level: level + 1, gap: gap + 1 };
                        ((out, out), node.clk.ready(at))
                    }
                    Token::Done => {
                        let Some(free) = free else { return Ok(false) };
                        let at = node.clk.fire(ready, free);
                        io.pop(node.ext, at);
                        node.walk = Walk::Finished;
                        ((Token::Done, Token::Done), node.clk.ready(at))
                    }
                    _ => {
                        return Err(give_up(&self.shared, self.chain.join, "a reference the fused loop does not model"))
                    }
                }
            }
            Walk::Closing => {
                let (Some((ready, tok)), Some(free)) = (io.head(node.ext), free) else { return Ok(false) };
                let at = node.clk.fire(ready, free);
                let out = match tok {
                    Token::Stop { level, .. } => {
                        io.pop(node.ext, at);
                        Token::stop(level + 1)
                    }
                    _ => Token::stop(0),
                };
                node.walk = Walk::Idle;
                ((out, out), node.clk.ready(at))
            }
        };
        self.nodes[i].sent += 1;
        self.send(i, 0, r, crd.0);
        if self.nodes[i].outs.len() > 1 {
            self.send(i, 1, r, crd.1);
        }
        Ok(true)
    }

    /// One step of union `i` (as [`super::join::Join`]'s general path), first pulling a token
    /// into any empty input from the node that feeds it.
    fn union_step(&mut self, io: &mut Io<'_>, i: usize) -> Result<bool, SimError> {
        if let Some(&q) = self.nodes[i].ins.iter().find(|&&q| self.queues[q].is_empty()) {
            return self.step(io, self.feeder[q]);
        }
        let node = &self.nodes[i];
        let FillKind::Union(payloads) = &node.kind else { unreachable!("a union") };
        let head = |k: usize| self.queues[node.ins[k]].front().copied().expect("every input holds a token");
        // Operand `p`'s coordinate is input `base[p]`, its payloads the inputs after it.
        let n_ops = payloads.len();
        let mut base = [0usize; MAX_NODES];
        for p in 1..n_ops {
            base[p] = base[p - 1] + 1 + payloads[p - 1];
        }
        let (mut ready, mut min, mut n_data, mut n_done) = (0, u32::MAX, 0, 0);
        let mut stop: Option<(u8, u8)> = None;
        for &b in &base[..n_ops] {
            let (r, c) = head(b);
            ready = ready.max(r);
            match c {
                Token::Idx(c) => {
                    n_data += 1;
                    min = min.min(c);
                }
                Token::Stop { level, gap } => match stop {
                    Some((l, _)) if l != level => return Err(self.bail("union operands at different stop levels")),
                    Some((l, g)) => stop = Some((l, g.min(gap))),
                    None => stop = Some((level, gap)),
                },
                Token::Done => n_done += 1,
                _ => return Err(self.bail("a union coordinate the fused loop does not model")),
            }
        }
        let out = if n_done == n_ops {
            Token::Done
        } else if n_done > 0 {
            return Err(self.bail("a union operand finished before another"));
        } else if n_data == 0 {
            let (level, gap) = stop.expect("every operand at a stop");
            Token::Stop { level, gap }
        } else {
            Token::Idx(min)
        };
        // The operands taken: all, or those at `min`; their payloads must be here and line up.
        let mut taken = [false; MAX_NODES];
        for p in 0..n_ops {
            let crd = head(base[p]).1;
            taken[p] = out != Token::Idx(min) || crd == Token::Idx(min);
            for k in 1..=payloads[p] {
                let (r, tok) = head(base[p] + k);
                if taken[p] && !aligned(crd, tok) {
                    return Err(self.bail("a union payload out of line with its coordinate"));
                }
                ready = ready.max(if taken[p] { r } else { 0 });
            }
        }
        if node.ins.len() > 2 * MAX_NODES {
            return Err(self.bail("a union with too many inputs"));
        }
        let Some(free) = self.out_free(i) else { return Ok(false) };
        let node = &mut self.nodes[i];
        let at = node.clk.fire(ready, free);
        let r = node.clk.ready(at);
        node.sent += 1;
        // Each output port's token: the coordinate, then every operand's payloads (`N` for an
        // operand not taken).
        let mut sends = [(0usize, Token::Done); 2 * MAX_NODES];
        sends[0] = (0, out);
        let mut n_sends = 1;
        for p in 0..n_ops {
            let FillKind::Union(payloads) = &self.nodes[i].kind else { unreachable!("a union") };
            let (first, count) = (self.nodes[i].ins[base[p]], payloads[p]);
            if taken[p] {
                self.take(first, at);
            }
            for k in 1..=count {
                let q = self.nodes[i].ins[base[p] + k];
                sends[n_sends] = (n_sends, if taken[p] { self.take(q, at) } else { Token::Empty });
                n_sends += 1;
            }
        }
        for &(port, tok) in &sends[..n_sends] {
            self.send(i, port, r, tok);
        }
        Ok(true)
    }

    /// The nodes that fire in a run of coordinates that every leaf produces alike and the
    /// intersection drops (all below `below`), the run's first coordinate and how long it may
    /// be before any timing is known; `None` if no run can coast.
    fn plan_run(&self, below: u32) -> Option<Run> {
        // The nodes that fire in the run (`moves`): scanners and ranges whose outputs are
        // empty, inside a fiber, whose next coordinates all equal the run's first `q`, and
        // every union. A scanner whose outputs each hold one token (a coordinate past the
        // run, or a stop: a row the level does not hold, or its fiber's end) waits: the
        // unions take nothing from it and send `N` in its place, its token's ready cycle
        // counting towards their fires as it would. A compressed scanner that may skip
        // (`sparse`, [`Fill::skips`]) fires for its own coordinates in the run only.
        let mut run = Run { moves: [false; MAX_NODES], sparse: [false; MAX_NODES], q: 0, n: u64::MAX };
        let mut q = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let held = node.outs.iter().flatten().map(|&k| self.queues[k].len());
            if !node.is_leaf() {
                if held.max().unwrap_or(0) > 0 {
                    return None;
                }
                run.moves[i] = true;
                continue;
            }
            let empty = held.clone().all(|l| l == 0);
            if !empty {
                if held.clone().any(|l| l != 1) {
                    return None;
                }
                continue;
            }
            let Walk::Fiber { pos, end, .. } = node.walk else { return None };
            if self.skips[i] && pos < end {
                // Bounded below, once the run's coordinates are known.
                (run.moves[i], run.sparse[i]) = (true, true);
                continue;
            }
            let next = match &node.kind {
                FillKind::Compressed { crd, .. } => crd.get(pos as usize).copied(),
                FillKind::Dense(_) | FillKind::Union(_) => Some(pos),
            };
            let (Some(next), true) = (next, pos < end) else { return None };
            if *q.get_or_insert(next) != next || next >= below || node.mem.as_ref().is_some_and(|m| !m.1.settled()) {
                return None;
            }
            let most = ((end - pos) as u64).min((below - next) as u64);
            let alike = match &node.kind {
                FillKind::Compressed { crd, .. } => {
                    crd[pos as usize..].iter().take(most as usize).zip(next..).take_while(|(&c, k)| c == *k).count()
                        as u64
                }
                FillKind::Dense(_) | FillKind::Union(_) => most,
            };
            run.n = run.n.min(alike);
            run.moves[i] = true;
        }
        run.q = q?;
        // A waiting scanner's coordinate must lie past the run.
        for (node, _) in self.nodes.iter().zip(run.moves).filter(|(n, m)| n.is_leaf() && !m) {
            for &k in node.outs.first().into_iter().flatten() {
                match self.queues[k].front().map(|h| h.1) {
                    Some(Token::Idx(c)) if c > run.q => run.n = run.n.min((c - run.q) as u64),
                    Some(Token::Stop { .. }) => {}
                    _ => return None,
                }
            }
        }
        // A skipping scanner's fiber ends the run with its last coordinate (its stop takes
        // the token-by-token path); its next coordinate must not lie before the run.
        for (node, _) in self.nodes.iter().zip(run.sparse).filter(|(_, s)| *s) {
            let fiber = node.fiber();
            if fiber[0] < run.q {
                return None;
            }
            run.n = run.n.min((fiber[fiber.len() - 1] - run.q) as u64 + 1);
        }
        (run.n != 0 && run.n != u64::MAX).then_some(run)
    }

    /// Takes a run of coordinates that every leaf produces alike and the intersection drops
    /// (all below `below`, the other operand's head coordinate, ready at `rx`) in one step.
    /// Returns whether it took any.
    ///
    /// With one initiation interval `ii` everywhere, the `l`-th coordinate of the run leaves
    /// each leaf at its clock plus `(l - 1)·ii` (a leaf waits for nothing inside a fiber once
    /// its line of coordinates is back); a union's inputs are then ready `ii` later for each
    /// coordinate than for the one before, so it fires at `(l - 1)·ii` after the later of
    /// its clock and their first ready cycle, and so on down to the intersection: only the
    /// first fire of each node can wait for its inputs. The run stops short of any send that
    /// would wait for room (a finite channel's consumer took the token `capacity` before it
    /// too late) and of any line of coordinates that would not be back in time; those take
    /// the token-by-token path. A skipping scanner fires once per coordinate of its own; its
    /// fires are worked out one by one where they may wait ([`Fill::skip_fires`]).
    fn coast(&mut self, io: &mut Io<'_>, (rx, below): (u64, u32)) -> bool {
        let Some(ii) = self.shared_ii else { return false };
        let Some(Run { moves, sparse, q, mut n }) = self.plan_run(below) else { return false };
        // Each node's first fire in the run (feeders come first in chain order): after its
        // clock, its moving inputs' first tokens and its waiting operands' coordinates.
        let mut first = [0u64; MAX_NODES];
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let mut ready = 0;
            if let FillKind::Union(payloads) = &node.kind {
                let mut k = 0;
                let mut any = false;
                for &count in payloads {
                    let f = self.feeder[node.ins[k]];
                    if moves[f] {
                        any = true;
                        for &qk in &node.ins[k..=k + count] {
                            let f = self.feeder[qk];
                            if !moves[f] {
                                return false;
                            }
                            ready = ready.max(self.nodes[f].clk.ready(first[f]));
                        }
                    } else {
                        ready = ready.max(self.queues[node.ins[k]].front().map_or(0, |h| h.0));
                    }
                    k += 1 + count;
                }
                if !any {
                    return false;
                }
            } else if sparse[i] && Some(i) == self.exact {
                // Its first fire may wait for its line or for room (as in `skip_fires`).
                let Walk::Fiber { pos, .. } = node.walk else { unreachable!("a skipping scanner inside a fiber") };
                let line = node.mem.as_ref().map_or(0, |m| m.1.peek_fetch(pos, node.want));
                let room = node.outs.iter().flatten().map(|&k| self.links[k].free_after(0)).max().unwrap_or(0);
                let mut clk = node.clk;
                first[i] = clk.fire(line, room);
                continue;
            }
            first[i] = node.clk.t.max(ready);
        }
        let top = self.feeder[self.filled[0]];
        let join_first = io.clock().t.max(rx).max(self.nodes[top].clk.ready(first[top]));
        // No send may wait for room: through a finite channel, the consumer must have taken
        // the token `capacity` sends back by then, first from what it took before the run,
        // then from the run itself, `ii` apart like the sends. (A skipping scanner's sends
        // are worked out with their waits.)
        for q in (0..self.queues.len()).filter(|&k| moves[self.feeder[k]] && !sparse[self.feeder[k]]) {
            let Some(cap) = self.links[q].bound() else { continue };
            let (p, c) = (first[self.feeder[q]], self.reader[q].map_or(join_first, |r| first[r]));
            let early = (0..n.min(cap)).find(|&l| !self.links[q].free_by(l, p + l * ii)).unwrap_or(n);
            n = n.min(early);
            if c + 1 > p + cap * ii {
                n = n.min(cap);
            }
        }
        n = self.lines(&moves, &sparse, &first, n, ii);
        if n == 0 {
            return false;
        }
        // The exact skipping scanner fires last: it fetches its lines as it goes and may end
        // the run sooner still (nothing before it fetched anything when it is there).
        let exact = self.exact.filter(|&i| sparse[i]).map(|i| (i, self.skip_fires(i, q, &mut n, &first, ii)));
        // A skipping scanner that never waits (unbounded outputs, ideal memory) fires once for
        // each of its coordinates in the run, and once more for the next one when its fiber
        // goes on (the union compares against it before taking it). Its `j`-th token is ready
        // `j·ii` after its first, no later than the union needs it (it needs the token at or
        // after coordinate `q + l` at its `l`-th fire, and at most `l` coordinates of the
        // fiber come before).
        let mut fires = [0u64; MAX_NODES];
        for (i, node) in self.nodes.iter().enumerate().filter(|&(i, _)| sparse[i]) {
            fires[i] = match exact {
                Some((e, skip)) if e == i => skip.fires,
                _ => {
                    let fiber = node.fiber();
                    let m = fiber.partition_point(|&c| (c as u64) < q as u64 + n) as u64;
                    m + u64::from((m as usize) < fiber.len())
                }
            };
        }
        let mut held = [None; MAX_NODES];
        let mut taken = [0u64; MAX_NODES];
        for (i, node) in self.nodes.iter_mut().enumerate().filter(|(i, _)| moves[*i]) {
            let f = if sparse[i] { fires[i] } else { n };
            // The cycle of its last fire in the run.
            let last = match exact {
                Some((e, skip)) if e == i => {
                    node.clk = skip.clk;
                    skip.last
                }
                _ => {
                    let clk = &mut node.clk;
                    clk.stall_in += first[i] - clk.t;
                    clk.t = first[i] + f * ii;
                    clk.fires += f;
                    first[i] + (f - 1) * ii
                }
            };
            node.sent += f;
            taken[i] = f;
            if let Walk::Fiber { pos, end, base } = node.walk {
                node.walk = Walk::Fiber { pos: pos + f as u32, end, base };
                // The token past the run that the union compares against waits for it.
                if let (true, FillKind::Compressed { crd, .. }) = (sparse[i], &node.kind) {
                    let p = pos + f as u32 - 1;
                    if crd[p as usize] as u64 >= q as u64 + n {
                        held[i] = Some((node.clk.ready(last), Token::Idx(crd[p as usize]), p));
                        taken[i] -= 1;
                    }
                }
            }
        }
        let mut j = io.clock();
        j.stall_in += join_first - j.t;
        j.t = join_first + n * ii;
        j.fires += n;
        io.set_clock(j);
        for k in (0..self.queues.len()).filter(|&k| moves[self.feeder[k]]) {
            let c = self.reader[k].map_or(join_first, |r| first[r]);
            let f = self.feeder[k];
            if sparse[f] {
                // The union takes a skipping scanner's token at its fire for the token's
                // coordinate.
                let Walk::Fiber { pos, .. } = self.nodes[f].walk else { unreachable!("inside a fiber") };
                let FillKind::Compressed { crd, .. } = &self.nodes[f].kind else { unreachable!("compressed") };
                let from = pos as usize - fires[f] as usize;
                let crd = &crd[from..];
                self.links[k].run_at(taken[f], |m| c + (crd[m as usize] - q) as u64 * ii);
            } else {
                self.links[k].run(n, c, ii);
            }
        }
        for (i, h) in held.into_iter().enumerate() {
            if let Some((ready, crd, p)) = h {
                self.send(i, 0, ready, crd);
                if self.nodes[i].outs.len() > 1 {
                    self.send(i, 1, ready, Token::Idx(p));
                }
            }
        }
        true
    }

    /// Lines of coordinates of the leaves that make every coordinate of the run: each line
    /// the run enters is fetched when its first coordinate is read and must be back by then;
    /// the ports are independent, so lines are taken in the order of the coordinates that
    /// start them. Returns the run's length, ended before the first line that would be late.
    fn lines(
        &mut self,
        moves: &[bool; MAX_NODES],
        sparse: &[bool; MAX_NODES],
        first: &[u64; MAX_NODES],
        n: u64,
        ii: u64,
    ) -> u64 {
        let mut o = 0;
        while o < n {
            // A leaf reads a line at `o` when `o` starts the run or a line.
            let reads = |i: usize, node: &Node| match (&node.mem, node.walk) {
                (Some((_, port)), Walk::Fiber { pos, .. }) if moves[i] && !sparse[i] => {
                    let word = pos + o as u32;
                    (o == 0 || port.starts_line(word)).then_some((word, node.want))
                }
                _ => None,
            };
            let late = self.nodes.iter().enumerate().any(|(i, node)| {
                reads(i, node).is_some_and(|(word, want)| {
                    node.mem.as_ref().is_some_and(|m| m.1.peek_fetch(word, want) > first[i] + o * ii)
                })
            });
            if late {
                return o;
            }
            let mut next = n;
            for (i, node) in self.nodes.iter_mut().enumerate().filter(|(i, _)| moves[*i] && !sparse[*i]) {
                let read = reads(i, node);
                let (Some((_, port)), Walk::Fiber { pos, .. }) = (&mut node.mem, node.walk) else { continue };
                if let Some((word, want)) = read {
                    port.fetch(word, want);
                    port.consume(first[i] + o * ii);
                }
                // The next coordinate of this leaf that starts a line.
                let word = pos + o as u32;
                next = next.min(o + (port.next_line(word) - word as u64).min(n - o));
            }
            o = next;
        }
        n
    }

    /// The fires in a run from coordinate `q` of the skipping scanner `i` whose sends may
    /// wait ([`Fill::exact`]), one by one as the scanner would make them: each at the later
    /// of its clock, its line of coordinates (fetched here) and room in its outputs (the
    /// token `capacity` before it taken before the run, or by its reader at the reader's
    /// fire for that token's coordinate: the readers, unions, fire from `first` on, `ii`
    /// apart, once per coordinate). They end with the token a reader compares against after
    /// the run, or the fiber's last; a token that would keep a reader waiting ends the run
    /// (`n`) before the reader's fire that first compares against it.
    fn skip_fires(&mut self, i: usize, q: u32, n: &mut u64, first: &[u64; MAX_NODES], ii: u64) -> Skip {
        let Fill { nodes, links, reader, .. } = self;
        let node = &mut nodes[i];
        let (FillKind::Compressed { crd, .. }, Walk::Fiber { pos, end, .. }) = (&node.kind, node.walk) else {
            unreachable!("a compressed scanner inside a fiber")
        };
        let fiber = &crd[pos as usize..end as usize];
        // Each output queue: its capacity and its reader's first fire.
        let mut outs = [(0usize, u64::MAX, 0u64); MAX_SKIP_OUTS];
        let mut n_outs = 0;
        let mut need = u64::MAX;
        for &k in node.outs.iter().flatten() {
            let r = first[reader[k].expect("a skipping scanner feeds unions")];
            outs[n_outs] = (k, links[k].bound().unwrap_or(u64::MAX), r);
            n_outs += 1;
            need = need.min(r);
        }
        let outs = &outs[..n_outs];
        let mut clk = node.clk;
        // With one capacity `cap` on every output, a send that waited for room (the token
        // `cap` before it, taken in the run at `r + d·ii`, `r` the latest reader's first fire)
        // makes every later one wait for room too, up to its next line: each coordinate lies
        // at least one past the one before, so the room comes at least `ii` later. None of
        // them keeps a reader waiting when `cap·ii` covers the latency (each reader compares
        // against token `j` at a fire at least `cap` coordinates after the one that took
        // token `j - cap`). Such stretches are taken in one step.
        let steady = match outs.split_first() {
            Some((&(_, cap, _), rest)) if cap != u64::MAX && rest.iter().all(|o| o.1 == cap) => {
                let r = outs.iter().map(|o| o.2).max().unwrap_or(0);
                (need + cap * ii >= r + 1 + clk.latency).then_some((cap as usize, r))
            }
            _ => None,
        };
        // The first token past the run.
        let past = fiber.partition_point(|&c| ((c - q) as u64) < *n);
        let (mut j, mut last) = (0usize, 0);
        let held = loop {
            let Some(&c) = fiber.get(j) else { break false };
            let word = pos + j as u32;
            let ready = match &mut node.mem {
                Some((_, port)) if j == 0 || port.starts_line(word) => port.fetch(word, node.want),
                _ => 0,
            };
            let mut room = 0;
            for &(k, cap, r) in outs {
                let l = j as u64;
                room = room.max(if l >= cap {
                    r + (fiber[j - cap as usize] - q) as u64 * ii + 1
                } else {
                    links[k].free_after(l)
                });
            }
            last = clk.fire(ready, room);
            if let Some((_, port)) = &mut node.mem {
                port.consume(last);
            }
            if j > 0 {
                // The readers' first fire that compares against this token.
                let at = (fiber[j - 1] - q) as u64 + 1;
                if at < *n && clk.ready(last) > need + at * ii {
                    *n = at;
                    break true;
                }
            }
            if (c - q) as u64 >= *n {
                break true;
            }
            if let Some((cap, r)) = steady.filter(|&(cap, _)| j >= cap) {
                let room = |j: usize| r + (fiber[j - cap] - q) as u64 * ii + 1;
                // Up to the token before the next line, the token past the run or the fiber's
                // end, which take the loop again.
                let line_end = node.mem.as_ref().map_or(fiber.len(), |m| (m.1.next_line(word) - pos as u64) as usize);
                let end = past.min(line_end).min(fiber.len()) - 1;
                if last == room(j) && end > j {
                    let at = room(end);
                    clk.stall_out += at - (last + (end - j) as u64 * ii);
                    clk.fires += (end - j) as u64;
                    clk.t = at + ii;
                    (last, j) = (at, end);
                }
            }
            j += 1;
        };
        Skip { clk, fires: j as u64 + u64::from(held), last }
    }

    /// One step of the intersection (as [`super::join::Join`]'s general path), pulling a
    /// token of the filled operand when none waits; returns whether anything moved.
    fn join_step(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let Some((rx, cx)) = io.head(X_CRD) else {
            // The other operand is not here yet: nothing the intersection can do.
            return Ok(false);
        };
        if let Some(&q) = self.filled.iter().find(|&&q| self.queues[q].is_empty()) {
            let below = match cx {
                Token::Idx(k) => Some(k),
                Token::Stop { .. } => Some(u32::MAX),
                _ => None,
            };
            if below.is_some_and(|b| self.coast(io, (rx, b))) {
                return Ok(true);
            }
            return self.step(io, self.feeder[q]);
        }
        let head = |k: usize| self.queues[self.filled[k]].front().copied().expect("checked above");
        let (rf, cf) = head(0);
        let mut rf_all = rf;
        for k in 1..self.filled.len() {
            let (r, tok) = head(k);
            if !aligned(cf, tok) {
                return Err(self.bail("a payload out of line with its coordinate"));
            }
            rf_all = rf_all.max(r);
        }
        let ready = rx.max(rf);
        // What happens: emit (the token sent), or drop the filled operand's or the other's
        // head.
        enum Move {
            Emit(Token),
            DropFilled,
            DropOther,
            DropEmpty,
        }
        let mv = match (cx, cf) {
            (Token::Done, Token::Done) => Move::Emit(Token::Done),
            (Token::Stop { level, gap }, Token::Stop { level: l, gap: g }) if level == l => {
                Move::Emit(Token::Stop { level, gap: gap.max(g) })
            }
            (Token::Idx(a), Token::Idx(b)) if a == b => Move::Emit(Token::Idx(a)),
            (Token::Idx(a), Token::Idx(b)) if a < b => Move::DropOther,
            (Token::Idx(_), Token::Idx(_)) | (Token::Stop { .. }, Token::Idx(_)) => Move::DropFilled,
            (Token::Idx(_), Token::Stop { .. }) => Move::DropOther,
            // An `N` coordinate (the other operand has nothing here) is dropped once the
            // filled operand's head is here too, at its own ready cycle, waiting for output
            // room (as `Join`).
            (Token::Empty, _) => Move::DropEmpty,
            _ => return Err(self.bail("intersection streams the fused loop does not model")),
        };
        if let Move::DropFilled = mv {
            let at = io.fire(ready.max(rf_all), 0);
            for k in 0..self.filled.len() {
                self.take(self.filled[k], at);
            }
            return Ok(true);
        }
        let Some((qx, px)) = io.head(X_REF) else { return Ok(false) };
        let lined_up = match mv {
            Move::Emit(tok) => aligned(tok, px),
            Move::DropFilled | Move::DropOther | Move::DropEmpty => payload(px),
        };
        if !lined_up {
            return Err(self.bail("a payload out of line with its coordinate"));
        }
        match mv {
            Move::DropFilled => unreachable!("handled above"),
            Move::DropOther => {
                let at = io.fire(ready.max(qx), 0);
                io.pop(X_CRD, at);
                io.pop(X_REF, at);
            }
            Move::DropEmpty => {
                let Some(free) = io.outs_free(0..self.n_out) else { return Ok(false) };
                let at = io.fire(rx.max(qx), free);
                io.pop(X_CRD, at);
                io.pop(X_REF, at);
            }
            Move::Emit(tok) => {
                let Some(free) = io.outs_free(0..self.n_out) else { return Ok(false) };
                let at = io.fire(ready.max(qx).max(rf_all), free);
                io.pop(X_CRD, at);
                io.pop(X_REF, at);
                io.push(0, at, tok);
                io.push(self.out_other, at, px);
                self.take(self.filled[0], at);
                for k in 1..self.filled.len() {
                    let tok = self.take(self.filled[k], at);
                    io.push(self.out_filled + k - 1, at, tok);
                }
                if tok == Token::Done {
                    self.finished = true;
                    self.publish();
                }
            }
        }
        Ok(true)
    }

    fn publish(&self) {
        let stages = self
            .nodes
            .iter()
            .map(|n| Stage {
                bytes_read: 8 * n.fibers + 4 * n.coords,
                mem: n.mem.as_ref().map(|(seg, crd)| (seg.requests + crd.requests, seg.bytes + crd.bytes)),
                ..Stage::of(&n.clk, n.sent)
            })
            .collect();
        self.shared.borrow_mut().stages = Some(stages);
    }
}

impl Primitive for Fill {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished && self.join_step(io)? {
            progress = true;
        }
        let clocks: Vec<&Clock> = self.nodes.iter().map(|n| &n.clk).collect();
        past_limit(&clocks, &self.chain.nodes, self.max_cycles)?;
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
}
