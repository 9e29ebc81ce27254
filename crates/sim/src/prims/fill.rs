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
//! token as the separate nodes would (with unbounded channels a node's fire times depend only
//! on its input tokens, so the order in which the loop visits the nodes does not matter), and
//! takes a run of coordinates that every leaf produces alike and the intersection drops in
//! one step, in closed form ([`Fill::coast`]). Anything it does not model (an `N` reference,
//! streams that disagree) sets [`FusedShared::bailed`]; the engine then runs the graph again
//! node by node, which also reports any malformed stream.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::{Graph, JoinKind, NodeId, Op};

use super::dot::{clock, past_limit, FusedShared, Stage};
use crate::io::{Clock, Io, Primitive};
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

/// A scanner's state (as [`super::scan::Scan`]'s).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Walk {
    Idle,
    /// Emitting positions `pos..end` of the current fiber; dense references are offset by
    /// `base`.
    Fiber {
        pos: u32,
        end: u32,
        base: u64,
    },
    Closing,
    Finished,
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
    /// Every channel inside the chain: (ready, token), and the node (index into `nodes`) that
    /// feeds it.
    queues: Vec<VecDeque<(u64, Token)>>,
    feeder: Vec<usize>,
    /// The intersection's filled operand: its coordinate queue, then its payloads'.
    filled: Vec<usize>,
    /// First output port of the other operand's payload and of the filled operand's.
    out_other: usize,
    out_filled: usize,
    /// Output ports of the intersection.
    n_out: usize,
    /// Every stage has the intersection's initiation interval: runs coast in closed form.
    shared_ii: bool,
    finished: bool,
    max_cycles: u64,
    shared: Rc<RefCell<FusedShared>>,
}

impl Fill {
    /// The chain of `graph` with its nodes' kinds (in [`FillChain::nodes`] order) and
    /// `(ii, latency)`, and the intersection's initiation interval. It reports to a
    /// [`FusedShared`] of its own until [`Fill::report_to`] gives it the engine's.
    pub fn new(
        graph: &Graph,
        chain: FillChain,
        kinds: Vec<(FillKind, (u64, u64))>,
        join_ii: u64,
        max_cycles: u64,
    ) -> Fill {
        let mut queues = Vec::new();
        let mut feeder = Vec::new();
        // One queue per (stream, consumer inside the chain), as the engine's channels.
        let mut queue_of = std::collections::BTreeMap::new();
        for (i, &n) in chain.nodes.iter().enumerate() {
            for s in graph.nodes[n].outs.iter().flatten() {
                for &(c, port) in &graph.streams[s.0 as usize].consumers {
                    queue_of.insert((c.0 as usize, port as usize), queues.len());
                    queues.push(VecDeque::new());
                    feeder.push(i);
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
                }
            })
            .collect::<Vec<_>>();
        let Op::Join { payloads, .. } = &graph.nodes[chain.join].op else { unreachable!("checked by `find`") };
        let first = if chain.filled_op == 0 { 0 } else { 2 };
        let filled = (0..=payloads[chain.filled_op] as usize).map(|k| queue_of[&(chain.join, first + k)]).collect();
        let out_base = |op: usize| 1 + payloads[..op].iter().sum::<u32>() as usize;
        let shared_ii = nodes.iter().all(|n| n.clk.ii == join_ii);
        Fill {
            n_out: out_base(2),
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

    /// Reports to `shared` (the engine's).
    pub fn report_to(mut self, shared: Rc<RefCell<FusedShared>>) -> Fill {
        self.shared = shared;
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
        }
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
        let node = &mut self.nodes[i];
        let (crd, r) = match node.walk {
            Walk::Finished => return Ok(false),
            Walk::Fiber { pos, end, base } if pos < end => {
                let at = node.clk.fire(0, 0);
                node.walk = Walk::Fiber { pos: pos + 1, end, base };
                let toks = match &node.kind {
                    FillKind::Compressed { crd, .. } => (Token::Idx(crd[pos as usize]), Token::Idx(pos)),
                    _ => (Token::Idx(pos), Token::Idx((base + pos as u64) as u32)),
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
                        if ready > node.clk.t {
                            node.clk.stall_in += ready - node.clk.t;
                            node.clk.t = ready;
                        }
                        io.pop(node.ext, node.clk.t);
                        node.walk = walk;
                        return Ok(true);
                    }
                    Token::Stop { level, gap } => {
                        let at = node.clk.fire(ready, 0);
                        io.pop(node.ext, at);
                        let out = Token::Stop { level: level + 1, gap: gap + 1 };
                        ((out, out), node.clk.ready(at))
                    }
                    Token::Done => {
                        let at = node.clk.fire(ready, 0);
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
                let Some((ready, tok)) = io.head(node.ext) else { return Ok(false) };
                let at = node.clk.fire(ready, 0);
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
        let FillKind::Union(payloads) = &self.nodes[i].kind else { unreachable!("a union") };
        let node = &self.nodes[i];
        let head = |q: usize| self.queues[node.ins[q]].front().copied().expect("every input holds a token");
        // Operand `p`'s coordinate is input `base[p]`, its payloads the inputs after it.
        let mut base = [0usize; MAX_NODES];
        let mut next = 0;
        for (p, &n) in payloads.iter().enumerate() {
            base[p] = next;
            next += 1 + n;
        }
        let n_ops = payloads.len();
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
        // Operands taken (all of them but those past `min`), and their payloads' readiness.
        let taken = |p: usize| out != Token::Idx(min) || head(base[p]).1 == Token::Idx(min);
        for p in (0..n_ops).filter(|&p| taken(p)) {
            let crd = head(base[p]).1;
            for k in 1..=payloads[p] {
                let (r, tok) = head(base[p] + k);
                if !aligned(crd, tok) {
                    return Err(self.bail("a union payload out of line with its coordinate"));
                }
                ready = ready.max(r);
            }
        }
        let node = &mut self.nodes[i];
        let at = node.clk.fire(ready, 0);
        let r = node.clk.ready(at);
        node.sent += 1;
        let mut sends = [(0, Token::Done); 2 * MAX_NODES];
        let mut n_sends = 0;
        let (ins, payloads) = match &node.kind {
            FillKind::Union(p) => (&node.ins, p),
            _ => unreachable!("a union"),
        };
        let mut out_port = 1;
        for p in 0..n_ops {
            let take =
                out != Token::Idx(min) || self.queues[ins[base[p]]].front().map(|h| h.1) == Some(Token::Idx(min));
            if take {
                self.queues[ins[base[p]]].pop_front();
            }
            for k in 1..=payloads[p] {
                let tok = if take {
                    self.queues[ins[base[p] + k]].pop_front().expect("checked above").1
                } else {
                    Token::Empty
                };
                if n_sends < sends.len() {
                    sends[n_sends] = (out_port, tok);
                    n_sends += 1;
                }
                out_port += 1;
            }
        }
        if n_sends == sends.len() {
            return Err(self.bail("a union with too many payloads"));
        }
        self.send(i, 0, r, out);
        for &(port, tok) in &sends[..n_sends] {
            self.send(i, port, r, tok);
        }
        Ok(true)
    }

    /// Takes a run of coordinates that every leaf produces alike and the intersection drops
    /// (all below `below`, the other operand's head coordinate, ready at `rx`) in one step.
    /// Returns whether it took any.
    ///
    /// With one initiation interval `ii` everywhere, the `l`-th coordinate of the run leaves
    /// each leaf at its clock plus `(l - 1)·ii` (a leaf waits for nothing inside a fiber); a
    /// union's inputs are then ready `ii` later for each coordinate than for the one before,
    /// so it fires at `max(its clock, their first ready) + (l - 1)·ii`, and so on down to the
    /// intersection: only the first fire of each node can wait.
    fn coast(&mut self, io: &mut Io<'_>, (rx, below): (u64, u32)) -> bool {
        if !self.shared_ii || self.queues.iter().any(|q| !q.is_empty()) {
            return false;
        }
        // The run: the leaves' next coordinate `q` and how far they all go on alike.
        let mut q = None;
        let mut n = u64::MAX;
        for node in &self.nodes {
            let Walk::Fiber { pos, end, .. } = node.walk else {
                if matches!(node.kind, FillKind::Union(_)) {
                    continue;
                }
                return false;
            };
            let next = match &node.kind {
                FillKind::Compressed { crd, .. } => crd.get(pos as usize).copied(),
                _ => Some(pos),
            };
            let (Some(next), true) = (next, pos < end) else { return false };
            if *q.get_or_insert(next) != next || next >= below {
                return false;
            }
            let most = ((end - pos) as u64).min((below - next) as u64);
            let alike = match &node.kind {
                FillKind::Compressed { crd, .. } => {
                    crd[pos as usize..].iter().take(most as usize).zip(next..).take_while(|(&c, k)| c == *k).count()
                        as u64
                }
                _ => most,
            };
            n = n.min(alike);
        }
        if q.is_none() || n == 0 || n == u64::MAX {
            return false;
        }
        let ii = self.nodes[0].clk.ii;
        // Each node's first output's ready cycle, in chain order (feeders first).
        let mut first = [0u64; MAX_NODES];
        for i in 0..self.nodes.len() {
            let ready = self.nodes[i].ins.iter().map(|&q| first[self.feeder[q]]).max();
            let node = &mut self.nodes[i];
            let at = match ready {
                Some(ready) => node.clk.fire(ready, 0),
                None => node.clk.fire(0, 0),
            };
            first[i] = node.clk.ready(at);
            node.clk.t += (n - 1) * ii;
            node.clk.fires += n - 1;
            node.sent += n;
            if let Walk::Fiber { pos, end, base } = node.walk {
                node.walk = Walk::Fiber { pos: pos + n as u32, end, base };
            }
        }
        let top = self.feeder[self.filled[0]];
        let mut j = io.clock();
        j.fire(rx.max(first[top]), 0);
        j.t += (n - 1) * ii;
        j.fires += n - 1;
        io.set_clock(j);
        true
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
            io.fire(ready.max(rf_all), 0);
            for &q in &self.filled {
                self.queues[q].pop_front();
            }
            return Ok(true);
        }
        let Some((qx, px)) = io.head(X_REF) else { return Ok(false) };
        let lined_up = match mv {
            Move::Emit(tok) => aligned(tok, px),
            _ => payload(px),
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
                for k in 1..self.filled.len() {
                    let tok = self.queues[self.filled[k]].pop_front().expect("checked above").1;
                    io.push(self.out_filled + k - 1, at, tok);
                }
                self.queues[self.filled[0]].pop_front();
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
            .map(|n| Stage { bytes_read: 8 * n.fibers + 4 * n.coords, ..Stage::of(&n.clk, n.sent) })
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
