//! The fused inner product: a dense · dense dot-product chain simulated as one node.
//!
//! Dense layers spend nearly every fire in seven nodes that each fire once per
//! multiply-accumulate: two dense scanners under an intersection, two arrays, a multiply and a
//! reducer. With unbounded channels a node's fire times depend only on its input tokens and
//! their ready cycles, so the chain can be run token by token in one loop, without queues, and
//! gives the fires, stalls, clocks, token counts and values the seven nodes would give. [`find`]
//! recognises the chain in a graph; [`Dot`] runs it in the reducer's slot; the engine hands
//! each absorbed node its counters back when the run ends ([`FusedShared::stages`]).
//!
//! The chain assumes its two operands arrive with the same stream structure (the usual case:
//! both are driven by one iteration). A stream the loop does not model (an `N` reference, or
//! the operands' structures parting) sets [`FusedShared::bailed`] and stops the run; the engine
//! then runs the graph again without fusion, so results never depend on the fusion.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::{AluOp, Graph, JoinKind, Op, ReduceKind, StreamId};
use fuseflow_tensor::LevelFormat;

use super::link::{array_fire, FusedEnv, Link, Records};
use super::spacc::{combine, reduce_init};
use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token};

/// The seven nodes of a fused inner product, by graph node index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DotChain {
    /// The dense scanners of the two operands (each feeds the intersection's crd and payload).
    pub scan: [usize; 2],
    /// The two-operand intersection (its coordinate output unused).
    pub join: usize,
    /// The value arrays fed by the intersection's payloads 1 and 2.
    pub array: [usize; 2],
    /// The multiplication of the two arrays' values.
    pub mul: usize,
    /// The reducer of the products; its slot runs the chain.
    pub reduce: usize,
}

impl DotChain {
    /// The nodes the reducer's slot absorbs, in the order of [`FusedShared::stages`].
    pub fn absorbed(&self) -> Vec<usize> {
        vec![self.scan[0], self.scan[1], self.join, self.array[0], self.array[1], self.mul]
    }
}

/// Finds every fused inner product of `graph`: nodes wired exactly as the chain, each internal
/// stream read by one consumer, the intersection's coordinates read by none.
pub(crate) fn find(graph: &Graph) -> Vec<DotChain> {
    (0..graph.nodes.len()).filter_map(|r| chain_at(graph, r)).collect()
}

/// The producer of stream `s` if `(node, port)` is its only consumer.
pub(crate) fn sole_producer(graph: &Graph, s: StreamId, node: usize, port: u32) -> Option<(usize, u32)> {
    let st = &graph.streams[s.0 as usize];
    (st.consumers.len() == 1 && st.consumers[0] == (fuseflow_graph::NodeId(node as u32), port))
        .then_some((st.producer.0 .0 as usize, st.producer.1))
}

fn chain_at(graph: &Graph, reduce: usize) -> Option<DotChain> {
    let node = |i: usize| &graph.nodes[i];
    let Op::Reduce { .. } = node(reduce).op else { return None };
    let (mul, 0) = sole_producer(graph, *node(reduce).ins.first()?, reduce, 0)? else { return None };
    if node(mul).op != (Op::Alu { op: AluOp::Mul }) || node(mul).ins.len() != 2 {
        return None;
    }
    let mut array = [0; 2];
    let mut join = None;
    for (k, slot) in array.iter_mut().enumerate() {
        let (a, 0) = sole_producer(graph, node(mul).ins[k], mul, k as u32)? else { return None };
        if !matches!(node(a).op, Op::Array { .. }) || node(a).ins.len() != 1 {
            return None;
        }
        let (j, port) = sole_producer(graph, node(a).ins[0], a, 0)?;
        if port != k as u32 + 1 || join.is_some_and(|x| x != j) {
            return None;
        }
        *slot = a;
        join = Some(j);
    }
    let join = join?;
    let j = node(join);
    match &j.op {
        Op::Join { kind: JoinKind::Intersect, payloads, .. } if payloads[..] == [1, 1] => {}
        _ => return None,
    }
    let crd_unused = match j.outs.first()? {
        None => true,
        Some(s) => graph.streams[s.0 as usize].consumers.is_empty(),
    };
    if !crd_unused || j.ins.len() != 4 {
        return None;
    }
    let mut scan = [0; 2];
    for (k, slot) in scan.iter_mut().enumerate() {
        let (s, 0) = sole_producer(graph, j.ins[2 * k], join, 2 * k as u32)? else { return None };
        let (s2, 1) = sole_producer(graph, j.ins[2 * k + 1], join, 2 * k as u32 + 1)? else { return None };
        if s != s2 || node(s).ins.len() != 1 {
            return None;
        }
        let Op::Scan { format: LevelFormat::Dense, .. } = node(s).op else { return None };
        *slot = s;
    }
    (scan[0] != scan[1] && array[0] != array[1]).then_some(DotChain { scan, join, array, mul, reduce })
}

/// What a fused node ([`Dot`], [`super::bcast::Bcast`]) leaves for the engine: whether it gave
/// up on a stream it does not model, and at the end of the run, the absorbed nodes' counters.
#[derive(Debug, Default)]
pub(crate) struct FusedShared {
    /// The chain met a stream it does not model; the run must be repeated without fusion.
    pub bailed: bool,
    /// The absorbed nodes' counters (in the chain's `absorbed` order), set when the chain sent
    /// `D`.
    pub stages: Option<Vec<Stage>>,
}

/// The counters of one absorbed node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stage {
    /// Final local clock.
    pub t: u64,
    /// Fires.
    pub fires: u64,
    /// Cycles lost waiting for inputs.
    pub stall_in: u64,
    /// Cycles lost waiting for output space.
    pub stall_out: u64,
    /// Tokens sent on each connected output port (each feeds one channel).
    pub sent: u64,
    /// Arithmetic operations.
    pub ops: u64,
    /// Off-chip bytes read.
    pub bytes_read: u64,
    /// Memory requests and the bytes they moved, for an array with a memory port.
    pub mem: Option<(u64, u64)>,
}

impl Stage {
    /// The counters of a stage with this clock that sent `sent` tokens on each output, and
    /// neither computed nor read anything.
    pub fn of(c: &Clock, sent: u64) -> Stage {
        Stage {
            t: c.t,
            fires: c.fires,
            stall_in: c.stall_in,
            stall_out: c.stall_out,
            sent,
            ops: 0,
            bytes_read: 0,
            mem: None,
        }
    }
}

/// A dense scanner's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ScanState {
    Idle,
    Fiber { pos: u32, base: u32 },
    Closing,
    Finished,
}

/// A dense scanner stage.
pub(crate) struct ScanStage {
    pub clk: Clock,
    pub state: ScanState,
    /// Tokens sent on each output.
    pub sent: u64,
}

impl ScanStage {
    /// An idle scanner with this `(ii, latency)`.
    pub fn new(timing: (u64, u64)) -> ScanStage {
        ScanStage { clk: clock(timing), state: ScanState::Idle, sent: 0 }
    }
}

/// The channels inside a fused inner product (see [`Link`]).
struct DotLinks<R> {
    /// Scanner `k` → intersection: its coordinates and its references.
    scan: [[Link<R>; 2]; 2],
    /// Intersection → array `k`.
    array: [Link<R>; 2],
    /// Array `k` → multiply.
    mul: [Link<R>; 2],
    /// Multiply → reducer.
    reduce: Link<R>,
}

impl<R: Records> DotLinks<R> {
    fn new(chain: &DotChain, env: &FusedEnv) -> DotLinks<R> {
        DotLinks {
            scan: [0, 1].map(|k| [env.link(chain.join, 2 * k), env.link(chain.join, 2 * k + 1)]),
            array: [0, 1].map(|k| env.link(chain.array[k], 0)),
            mul: [0, 1].map(|k| env.link(chain.mul, k)),
            reduce: env.link(chain.reduce, 0),
        }
    }

    /// Whether every link is unbounded.
    fn unbounded(&self) -> bool {
        self.scan.iter().flatten().chain(&self.array).chain(&self.mul).chain([&self.reduce]).all(Link::is_unbounded)
    }
}

/// The fused inner product (see the module documentation). Its inputs are the two scanners'
/// reference streams; its output is the reducer's; its own clock is the reducer's.
pub(crate) struct Dot<R> {
    chain: DotChain,
    size: u32,
    vals: [Arc<Vec<f64>>; 2],
    op: ReduceKind,
    scans: [ScanStage; 2],
    join: Clock,
    join_sent: u64,
    arrays: [Clock; 2],
    loads: [u64; 2],
    /// The arrays' memory ports (none with ideal memory).
    mem: [Option<MemPort>; 2],
    mul: Clock,
    mul_ops: u64,
    links: DotLinks<R>,
    /// Every link unbounded and memory ideal: fibers take the loop without waits or reads.
    plain: bool,
    acc: f64,
    any: bool,
    pending: Option<Token>,
    finished: bool,
    reduce_ops: u64,
    max_cycles: u64,
    shared: Rc<RefCell<FusedShared>>,
}

/// `(ii, latency)` of each stage kind: dense scanner, intersection, array, ALU.
pub(crate) struct DotTiming {
    pub scan: (u64, u64),
    pub join: (u64, u64),
    pub array: (u64, u64),
    pub alu: (u64, u64),
}

/// One fire of a stage whose outputs have room, on an input ready at `ready`: the cycle its
/// output is ready.
#[inline(always)]
pub(crate) fn step(c: &mut Clock, ready: u64) -> u64 {
    let at = c.fire(ready, 0);
    c.ready(at)
}

/// The cycle-limit error for the first absorbed node (`nodes`, in the order of `clocks`)
/// whose clock passed `max_cycles`.
pub(crate) fn past_limit(clocks: &[&Clock], nodes: &[usize], max_cycles: u64) -> Result<(), SimError> {
    match clocks.iter().zip(nodes).find(|(c, _)| c.t > max_cycles) {
        Some((_, &node)) => Err(SimError::CycleLimit { limit: max_cycles, node: node as u32 }),
        None => Ok(()),
    }
}

/// A stage's clock with this `(ii, latency)`.
pub(crate) fn clock((ii, latency): (u64, u64)) -> Clock {
    Clock { t: 0, ii, latency: latency.max(1), fires: 0, stall_in: 0, stall_out: 0 }
}

/// The initiation interval the stages of a chain share, if they all have the same one.
///
/// Such a chain (unbounded links, ideal memory) settles: once a coordinate of a fiber passes
/// without any stage waiting for its input (each fires at its own clock), every later one of
/// the fiber does too, each stage `ii` cycles after its previous fire. By induction: a stage's
/// input is ready `ii` cycles after it was for the previous coordinate (or earlier, for an
/// input held constant), and its clock has moved on by `ii`. [`coast`] then takes the rest of
/// the fiber in one step.
pub(crate) fn shared_ii(clocks: &[&Clock]) -> Option<u64> {
    let ii = clocks.first()?.ii;
    clocks.iter().all(|c| c.ii == ii).then_some(ii)
}

/// Cycles the clocks have waited for their inputs (to tell whether a coordinate passed
/// without a stall).
#[inline(always)]
pub(crate) fn stalls(clocks: &[&Clock]) -> u64 {
    clocks.iter().map(|c| c.stall_in).sum()
}

/// `m` more fires of each settled clock (see [`shared_ii`]), each `ii` after the last.
pub(crate) fn coast(clocks: [&mut Clock; 6], m: u64) {
    for c in clocks {
        c.t += m * c.ii;
        c.fires += m;
    }
}

impl<R: Records> Dot<R> {
    /// The chain over dense levels of `size` coordinates and the arrays' values `vals`, in
    /// the channels and with the memory ports of `env`.
    pub fn new(
        chain: DotChain,
        size: u32,
        vals: [Arc<Vec<f64>>; 2],
        op: ReduceKind,
        timing: &DotTiming,
        max_cycles: u64,
        mut env: FusedEnv,
    ) -> Dot<R> {
        let scan = || ScanStage::new(timing.scan);
        let links = DotLinks::new(&chain, &env);
        let mem = [env.port(chain.array[0]), env.port(chain.array[1])];
        let plain = links.unbounded() && mem.iter().all(Option::is_none);
        Dot {
            chain,
            size,
            vals,
            op,
            scans: [scan(), scan()],
            join: clock(timing.join),
            join_sent: 0,
            arrays: [clock(timing.array), clock(timing.array)],
            loads: [0; 2],
            mem,
            mul: clock(timing.alu),
            mul_ops: 0,
            links,
            plain,
            acc: reduce_init(op),
            any: false,
            pending: None,
            finished: false,
            reduce_ops: 0,
            max_cycles,
            shared: env.shared,
        }
    }

    /// Gives up: the engine repeats the run without fusion (the error is never reported).
    fn bail(&self, why: &str) -> SimError {
        self.shared.borrow_mut().bailed = true;
        SimError::Protocol { node: self.chain.reduce as u32, message: format!("fused inner product: {why}") }
    }

    /// Whether scanner `k` can take its next step (it has the input it needs).
    fn can_step(&self, k: usize, io: &Io<'_>) -> bool {
        match self.scans[k].state {
            ScanState::Fiber { .. } => true,
            ScanState::Idle | ScanState::Closing => io.head(k).is_some(),
            ScanState::Finished => false,
        }
    }

    /// One step of scanner `k` outside a fiber: the token it sends (same on its crd and ref
    /// outputs) and its ready cycle, or `None` when it only took a reference and opened a fiber.
    fn scan_step(&mut self, k: usize, io: &mut Io<'_>) -> Result<Option<(u64, Token)>, SimError> {
        let size = self.size;
        let node = self.chain.scan[k] as u32;
        let Some((ready, tok)) = io.head(k) else { return Err(self.bail("scanner without input")) };
        let [crd, refs] = &mut self.links.scan[k];
        let free = crd.free().max(refs.free());
        let s = &mut self.scans[k];
        let out = match (s.state, tok) {
            (ScanState::Idle, Token::Idx(p)) => {
                // Taking a reference costs no fire (as `Scan`).
                if ready > s.clk.t {
                    s.clk.stall_in += ready - s.clk.t;
                    s.clk.t = ready;
                }
                io.pop(k, s.clk.t);
                let base = p as u64 * size as u64;
                if base + size as u64 > u32::MAX as u64 {
                    return Err(SimError::Protocol { node, message: format!("dense position {base} overflows u32") });
                }
                s.state = ScanState::Fiber { pos: 0, base: base as u32 };
                return Ok(None);
            }
            (ScanState::Idle, Token::Stop { level, gap }) => {
                let at = s.clk.fire(ready, free);
                io.pop(k, at);
                (s.clk.ready(at), Token::Stop { level: level + 1, gap: gap + 1 })
            }
            (ScanState::Idle, Token::Done) => {
                let at = s.clk.fire(ready, free);
                io.pop(k, at);
                s.state = ScanState::Finished;
                (s.clk.ready(at), Token::Done)
            }
            (ScanState::Closing, Token::Stop { level, .. }) => {
                let at = s.clk.fire(ready, free);
                io.pop(k, at);
                s.state = ScanState::Idle;
                (s.clk.ready(at), Token::stop(level + 1))
            }
            (ScanState::Closing, _) => {
                let at = s.clk.fire(ready, free);
                s.state = ScanState::Idle;
                (s.clk.ready(at), Token::stop(0))
            }
            _ => return Err(self.bail("a reference stream the fused loop does not model")),
        };
        s.sent += 1;
        crd.push();
        refs.push();
        Ok(Some(out))
    }

    /// Both scanners inside a fiber at position `pos`: the rest of the fiber, every stage per
    /// coordinate, straight into the reducer's accumulator.
    fn fiber(&mut self, io: &mut Io<'_>, pos: u32, base: [u32; 2]) -> Result<(), SimError> {
        let (size, op) = (self.size, self.op);
        let n = (size - pos) as u64;
        let (lo, hi) = (pos as usize, size as usize);
        let (Some(va), Some(vb)) = (
            self.vals[0].get(base[0] as usize + lo..base[0] as usize + hi),
            self.vals[1].get(base[1] as usize + lo..base[1] as usize + hi),
        ) else {
            return Err(self.bail("a reference past the end of an array"));
        };
        let [s0, s1] = &mut self.scans;
        let (c0, c1) = (&mut s0.clk, &mut s1.clk);
        let [x0, x1] = &mut self.arrays;
        let (join, mul) = (&mut self.join, &mut self.mul);
        let mut red = io.clock();
        let mut acc = self.acc;
        if self.plain {
            let ii = shared_ii(&[c0, c1, join, x0, x1, mul]);
            for (k, (&a, &b)) in va.iter().zip(vb).enumerate() {
                let before = ii.map(|_| stalls(&[c0, c1, join, x0, x1, mul]));
                let r0 = step(c0, 0);
                let r1 = step(c1, 0);
                let r = step(join, r0.max(r1));
                let m = step(x0, r).max(step(x1, r));
                let v = AluOp::Mul.apply2(a, b);
                let rm = step(mul, m);
                red.fire(rm, 0);
                acc = combine(op, acc, v);
                if let (Some(ii), Some(before)) = (ii, before) {
                    if before == stalls(&[c0, c1, join, x0, x1, mul]) {
                        // Settled (see `shared_ii`): the products reach the reducer `ii` apart.
                        let rest = va[k + 1..].iter().zip(&vb[k + 1..]);
                        let mut ready = rm;
                        for (&a, &b) in rest {
                            ready += ii;
                            red.fire(ready, 0);
                            let v = AluOp::Mul.apply2(a, b);
                            acc = combine(op, acc, v);
                        }
                        coast([c0, c1, join, x0, x1, mul], (va.len() - k - 1) as u64);
                        break;
                    }
                }
            }
        } else {
            // Every stage waits for room on its links and each array for its memory port, as
            // the separate nodes do; tokens cross each link one at a time.
            let l = &mut self.links;
            let [m0, m1] = &mut self.mem;
            for (q, (&a, &b)) in (pos..size).zip(va.iter().zip(vb)) {
                let [[k0, r0], [k1, r1]] = &mut l.scan;
                let at0 = c0.fire(0, k0.free().max(r0.free()));
                let at1 = c1.fire(0, k1.free().max(r1.free()));
                for link in [&mut *k0, r0, k1, r1] {
                    link.push();
                }
                let [a0, a1] = &mut l.array;
                let atj = join.fire(c0.ready(at0).max(c1.ready(at1)), a0.free().max(a1.free()));
                for link in [k0, r0, k1, r1] {
                    link.pop(atj);
                }
                a0.push();
                a1.push();
                let rj = join.ready(atj);
                let [l0, l1] = &mut l.mul;
                let v0 = array_fire(x0, m0, (Some(base[0] + q), rj), a0, l0);
                let v1 = array_fire(x1, m1, (Some(base[1] + q), rj), a1, l1);
                let at = mul.fire(v0.max(v1), l.reduce.free());
                l0.pop(at);
                l1.pop(at);
                l.reduce.push();
                let at = red.fire(mul.ready(at), 0);
                l.reduce.pop(at);
                let v = AluOp::Mul.apply2(a, b);
                acc = combine(op, acc, v);
            }
        }
        io.set_clock(red);
        self.acc = acc;
        self.any |= n > 0;
        s0.sent += n;
        s1.sent += n;
        self.join_sent += n;
        self.loads[0] += n;
        self.loads[1] += n;
        self.mul_ops += n;
        self.reduce_ops += n;
        s0.state = ScanState::Closing;
        s1.state = ScanState::Closing;
        Ok(())
    }

    /// A stop or `D` from both scanners, through the intersection, the arrays and the multiply
    /// into the reducer, which may send on the output (free at `free`).
    fn control(&mut self, io: &mut Io<'_>, a: (u64, Token), b: (u64, Token), free: u64) -> Result<(), SimError> {
        let tok = match (a.1, b.1) {
            (Token::Stop { level: la, .. }, Token::Stop { level: lb, .. }) if la == lb => a.1,
            (Token::Done, Token::Done) => Token::Done,
            _ => return Err(self.bail("operand streams that part")),
        };
        // The intersection forwards each operand's payload token; the arrays pass stops and `D`
        // on; the multiply sends its first operand's.
        let l = &mut self.links;
        let at = self.join.fire(a.0.max(b.0), l.array[0].free().max(l.array[1].free()));
        for link in l.scan.iter_mut().flatten() {
            link.pop(at);
        }
        let r = self.join.ready(at);
        self.join_sent += 1;
        let mut m = 0;
        for k in 0..2 {
            l.array[k].push();
            m = m.max(array_fire(&mut self.arrays[k], &mut self.mem[k], (None, r), &mut l.array[k], &mut l.mul[k]));
        }
        let at = self.mul.fire(m, l.reduce.free());
        l.mul[0].pop(at);
        l.mul[1].pop(at);
        l.reduce.push();
        let ready = self.mul.ready(at);
        let at = io.fire(ready, free);
        l.reduce.pop(at);
        match tok {
            Token::Stop { level, gap } => {
                if gap == 0 {
                    io.push(0, at, Token::Val(if self.any { self.acc } else { 0.0 }));
                    self.acc = reduce_init(self.op);
                    self.any = false;
                    if level > 0 {
                        self.pending = Some(Token::stop(level - 1));
                    }
                } else if level > 0 {
                    io.push(0, at, Token::Stop { level: level - 1, gap: gap - 1 });
                }
            }
            _ => {
                io.push(0, at, Token::Done);
                self.finished = true;
                self.publish();
            }
        }
        Ok(())
    }

    /// Hands the absorbed nodes' counters to the engine.
    fn publish(&self) {
        let [s0, s1] = &self.scans;
        let mem = |k: usize| self.mem[k].as_ref().map(|m| (m.requests, m.bytes));
        self.shared.borrow_mut().stages = Some(vec![
            Stage::of(&s0.clk, s0.sent),
            Stage::of(&s1.clk, s1.sent),
            Stage::of(&self.join, self.join_sent),
            Stage { bytes_read: 4 * self.loads[0], mem: mem(0), ..Stage::of(&self.arrays[0], self.join_sent) },
            Stage { bytes_read: 4 * self.loads[1], mem: mem(1), ..Stage::of(&self.arrays[1], self.join_sent) },
            Stage { ops: self.mul_ops, ..Stage::of(&self.mul, self.join_sent) },
        ]);
    }

    /// The absorbed stages' clocks, in [`DotChain::absorbed`] order.
    fn clocks(&self) -> [&Clock; 6] {
        [&self.scans[0].clk, &self.scans[1].clk, &self.join, &self.arrays[0], &self.arrays[1], &self.mul]
    }
}

impl<R: Records> Primitive for Dot<R> {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some(free) = io.out_free(0) else { break };
            if let Some(tok) = self.pending.take() {
                let at = io.fire(0, free);
                io.push(0, at, tok);
                progress = true;
                continue;
            }
            match (self.scans[0].state, self.scans[1].state) {
                (ScanState::Fiber { pos: p0, base: b0 }, ScanState::Fiber { pos: p1, base: b1 }) if p0 == p1 => {
                    self.fiber(io, p0, [b0, b1])?;
                    progress = true;
                    continue;
                }
                (ScanState::Fiber { .. }, _) | (_, ScanState::Fiber { .. }) => {
                    return Err(self.bail("operand fibers out of step"))
                }
                _ => {}
            }
            if !self.can_step(0, io) || !self.can_step(1, io) {
                break;
            }
            let a = self.scan_step(0, io)?;
            let b = self.scan_step(1, io)?;
            match (a, b) {
                (None, None) => {}
                (Some(a), Some(b)) => self.control(io, a, b, free)?,
                _ => return Err(self.bail("operand streams that part")),
            }
            progress = true;
        }
        past_limit(&self.clocks(), &self.chain.absorbed(), self.max_cycles)?;
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn ops(&self) -> u64 {
        self.reduce_ops
    }
}

/// The slot of a node a [`Dot`] absorbed: never runs; after the run it holds the node's
/// operation, read and memory counts for the report.
#[derive(Default)]
pub(crate) struct Absorbed {
    pub ops: u64,
    pub bytes_read: u64,
    /// Requests and bytes of the node's memory port, if it had one.
    pub mem: Option<(u64, u64)>,
}

impl Primitive for Absorbed {
    fn run(&mut self, _io: &mut Io<'_>) -> Result<bool, SimError> {
        Ok(false)
    }
    fn done(&self) -> bool {
        true
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn traffic(&self) -> (u64, u64) {
        (self.bytes_read, 0)
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.unwrap_or_default()
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        out.extend(self.mem.map(|m| m.1));
    }
}
