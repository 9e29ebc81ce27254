//! The fused broadcast product: the inner loop of a Gustavson (row-wise) product over a dense
//! level, simulated as one node.
//!
//! A dense scanner walks a fiber of one operand; a repeat-signal generator and a repeater
//! broadcast the other operand over that fiber (its reference, which an array then loads, or
//! its value); an array loads the scanned operand's values and a multiply combines them. The products and the scanner's coordinates usually go on to a
//! sparse accumulator. As for [`super::dot`], with unbounded channels the six nodes' fire
//! times follow from their input tokens alone, so one loop gives their fires, stalls, clocks,
//! token counts and values, without queues between them. Anything the loop does not model
//! (an `N` reference, the two reference streams parting) sets [`FusedShared::bailed`] and the
//! engine runs the graph node by node.
//!
//! When the products and the scanner's coordinates feed nothing but an order-1 sparse
//! accumulator (the Gustavson row accumulation of a dense layer), the accumulator joins the
//! chain too ([`BcastChain::acc`]): the fused node then runs in the accumulator's slot, with
//! its reduced coordinate stream as an extra input and its outputs, and adds each product to
//! the accumulator as the separate node would, with the accumulator's clock; pairs that the
//! accumulator cannot take yet (it waits for its reduced stream, or is flushing) wait in a
//! local queue bounded like a channel by the soft cap.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::{AluOp, Graph, NodeId, Op, ReduceKind};
use fuseflow_tensor::LevelFormat;

use super::dot::{
    clock, coast, past_limit, shared_ii, sole_producer, stalls, step, FusedShared, ScanStage, ScanState, Stage,
};
use super::link::{array_fire, FusedEnv, Link, Records};
use super::spacc::{combine, flush, follows, stop_of, Flushed};
use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token};

/// The six nodes of a fused broadcast product, by graph node index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BcastChain {
    /// The dense scanner whose fiber the product walks.
    pub scan: usize,
    /// The repeat-signal generator on the scanner's coordinates.
    pub repsig: usize,
    /// The repeater of the broadcast operand's reference.
    pub repeat: usize,
    /// The array fed by the repeater; `None` when the repeater broadcasts a value straight to
    /// the multiply.
    pub rep_array: Option<usize>,
    /// The array fed by the scanner's references.
    pub scan_array: usize,
    /// The multiply; its slot runs the chain.
    pub mul: usize,
    /// Whether the multiply's first operand is the scanner's value (else the repeater's).
    pub scan_first: bool,
    /// The order-1 sparse accumulator that takes every product and every scanner coordinate
    /// (and nothing else does), when the chain absorbs it: it then runs in its slot.
    pub acc: Option<usize>,
}

impl BcastChain {
    /// The nodes the multiply's slot absorbs, in the order of [`FusedShared::stages`].
    pub fn absorbed(&self) -> Vec<usize> {
        let mut v = vec![self.scan, self.repsig, self.repeat];
        v.extend(self.rep_array);
        v.push(self.scan_array);
        if self.acc.is_some() {
            v.push(self.mul);
        }
        v
    }

    /// The multiply's result on the broadcast value `x` and the scanned value `y`, its
    /// operands in the graph's order.
    #[inline(always)]
    pub fn product(&self, x: f64, y: f64) -> f64 {
        if self.scan_first {
            AluOp::Mul.apply2(y, x)
        } else {
            AluOp::Mul.apply2(x, y)
        }
    }

    /// The node whose slot runs the chain: the accumulator if it joined, else the multiply.
    pub fn runner(&self) -> usize {
        self.acc.unwrap_or(self.mul)
    }
}

/// Finds every fused broadcast product of `graph`.
pub(crate) fn find(graph: &Graph) -> Vec<BcastChain> {
    (0..graph.nodes.len()).filter_map(|m| chain_at(graph, m)).collect()
}

fn chain_at(graph: &Graph, mul: usize) -> Option<BcastChain> {
    let node = |i: usize| &graph.nodes[i];
    if node(mul).op != (Op::Alu { op: AluOp::Mul }) || node(mul).ins.len() != 2 {
        return None;
    }
    // Per operand: the array in between (if any) and the node feeding it.
    let mut arrays = [None; 2];
    let mut feeders = [(0, 0); 2];
    for (k, (a, f)) in arrays.iter_mut().zip(&mut feeders).enumerate() {
        let (x, 0) = sole_producer(graph, node(mul).ins[k], mul, k as u32)? else { return None };
        match node(x).op {
            Op::Array { .. } if node(x).ins.len() == 1 => {
                *a = Some(x);
                *f = sole_producer(graph, node(x).ins[0], x, 0)?;
            }
            Op::Repeat { .. } => *f = (x, 0),
            _ => return None,
        }
    }
    let is_repeat = |(n, p): (usize, u32)| p == 0 && matches!(node(n).op, Op::Repeat { .. });
    let is_scan = |(n, p): (usize, u32)| p == 1 && matches!(node(n).op, Op::Scan { format: LevelFormat::Dense, .. });
    let scan_first = if is_scan(feeders[0]) && is_repeat(feeders[1]) {
        true
    } else if is_repeat(feeders[0]) && is_scan(feeders[1]) {
        false
    } else {
        return None;
    };
    let (s, r) = if scan_first { (0, 1) } else { (1, 0) };
    let (scan, repeat) = (feeders[s].0, feeders[r].0);
    let scan_array = arrays[s]?;
    if node(scan).ins.len() != 1 || node(repeat).ins.len() != 2 {
        return None;
    }
    // The repeater's signal comes from a repsig on the scanner's coordinates (which may also
    // go elsewhere: to an accumulator, a writer).
    let (repsig, 0) = sole_producer(graph, node(repeat).ins[1], repeat, 1)? else { return None };
    if node(repsig).op != Op::RepSig || node(repsig).ins.len() != 1 {
        return None;
    }
    let crd = node(repsig).ins[0];
    let crd_stream = &graph.streams[crd.0 as usize];
    let from_scan = crd_stream.producer == (NodeId(scan as u32), 0);
    let once = crd_stream.consumers.iter().filter(|c| c.0 .0 as usize == repsig).count() == 1;
    // The accumulator joins when it alone takes the products (its value input) and, besides
    // the repeat signal, the scanner's coordinates (its inner coordinate input).
    let acc = node(mul).outs.first().copied().flatten().and_then(|prod| {
        let (a, 2) = *graph.streams[prod.0 as usize].consumers.first()? else { return None };
        let a = a.0 as usize;
        let ok = graph.streams[prod.0 as usize].consumers.len() == 1
            && matches!(node(a).op, Op::Spacc { order: 1, .. })
            && node(a).ins.len() == 3
            && node(a).ins[1] == crd
            && crd_stream.consumers.len() == 2
            && crd_stream.consumers.contains(&(NodeId(a as u32), 1));
        ok.then_some(a)
    });
    (from_scan && once).then_some(BcastChain {
        scan,
        repsig,
        repeat,
        rep_array: arrays[r],
        scan_array,
        mul,
        scan_first,
        acc,
    })
}

/// Output ports of the fused node without an accumulator: the products, then the scanner's
/// coordinates (to their consumers outside the chain). With one, its outputs are the
/// accumulator's. Input ports: the scanner's and the repeater's reference streams, after the
/// accumulator's reduced coordinates ([`REDUCED`]) when it joined.
const OUT_VAL: usize = 0;
const OUT_CRD: usize = 1;
/// The accumulator's reduced coordinate stream.
const REDUCED: usize = 0;

/// `(ii, latency)` of each stage kind.
pub(crate) struct BcastTiming {
    pub scan: (u64, u64),
    pub repsig: (u64, u64),
    pub repeat: (u64, u64),
    pub array: (u64, u64),
    pub alu: (u64, u64),
}

/// A coordinate and a product, each with its ready cycle, on their way to the accumulator.
type Pair = ((u64, Token), (u64, Token));

/// Accumulation over a dense level's coordinates: each value is combined into its
/// coordinate's slot in arrival order, which is what `Spacc1`'s merge gives (its stable sort
/// combines equal coordinates in arrival order), without storing the pairs. One slot per
/// coordinate of the level (which the scanned tensor already holds).
struct Slots {
    vals: Vec<f64>,
    seen: Vec<bool>,
    /// Coordinates with a value, in first-arrival order.
    touched: Vec<u32>,
}

impl Slots {
    /// A placeholder while the fiber loop holds the slots.
    const EMPTY: Slots = Slots { vals: Vec::new(), seen: Vec::new(), touched: Vec::new() };

    /// Empty slots for a level of `size` coordinates.
    fn new(size: usize) -> Slots {
        Slots { vals: vec![0.0; size], seen: vec![false; size], touched: Vec::new() }
    }

    /// The level's size.
    fn size(&self) -> usize {
        self.vals.len()
    }

    /// Adds `v` at coordinate `c` (below the level's size).
    #[inline(always)]
    fn add(&mut self, op: ReduceKind, c: u32, v: f64) {
        let i = c as usize;
        if self.seen[i] {
            self.vals[i] = combine(op, self.vals[i], v);
        } else {
            self.seen[i] = true;
            self.vals[i] = v;
            self.touched.push(c);
        }
    }

    /// Moves the sums, in coordinate order, to `out` and empties the slots.
    fn drain_sorted(&mut self, out: &mut Vec<(u32, f64)>) {
        self.touched.sort_unstable();
        for &c in &self.touched {
            out.push((c, self.vals[c as usize]));
            self.seen[c as usize] = false;
        }
        self.touched.clear();
    }
}

/// Phase of the absorbed accumulator (as [`super::spacc::Spacc1`]'s).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Outer,
    Inner,
    Flush { next: usize, stop: Token },
    Finished,
}

/// The absorbed order-1 accumulator: [`super::spacc::Spacc1`]'s state (without Comal's burst
/// timing or tiles, which switch fusion off), fed from the chain instead of two channels.
struct Acc {
    op: ReduceKind,
    phase: Phase,
    /// The current fiber's sums, one slot per coordinate of the scanned level.
    slots: Slots,
    /// The merged entries being flushed.
    vals: Vec<(u32, f64)>,
    fiber_data: bool,
    expect: Option<u8>,
    ops: u64,
    /// Pairs the chain made that the accumulator has not taken yet.
    queue: VecDeque<Pair>,
}

/// The channels inside a fused broadcast product (see [`Link`]).
struct BcastLinks<R> {
    /// Scanner → repeat-signal generator (coordinates), → its array (references), → the
    /// absorbed accumulator (coordinates; unbounded and unused without one).
    scan_sig: Link<R>,
    scan_array: Link<R>,
    scan_acc: Link<R>,
    /// Repeat-signal generator → repeater.
    sig: Link<R>,
    /// Repeater → its array, or → the multiply when it broadcasts values.
    repeat: Link<R>,
    /// The repeater's array → multiply (unused without one), the scanner's array → multiply.
    rep_mul: Link<R>,
    scan_mul: Link<R>,
    /// Multiply → the absorbed accumulator (unused without one).
    mul_acc: Link<R>,
}

impl<R: Records> BcastLinks<R> {
    fn new(chain: &BcastChain, env: &FusedEnv) -> BcastLinks<R> {
        let (s, r) = if chain.scan_first { (0, 1) } else { (1, 0) };
        let none = || Link::new(None);
        BcastLinks {
            scan_sig: env.link(chain.repsig, 0),
            scan_array: env.link(chain.scan_array, 0),
            scan_acc: chain.acc.map_or_else(none, |a| env.link(a, 1)),
            sig: env.link(chain.repeat, 1),
            repeat: match chain.rep_array {
                Some(a) => env.link(a, 0),
                None => env.link(chain.mul, r),
            },
            rep_mul: chain.rep_array.map_or_else(none, |_| env.link(chain.mul, r)),
            scan_mul: env.link(chain.mul, s),
            mul_acc: chain.acc.map_or_else(none, |a| env.link(a, 2)),
        }
    }

    /// Whether every link is unbounded.
    fn unbounded(&self) -> bool {
        [
            &self.scan_sig,
            &self.scan_array,
            &self.scan_acc,
            &self.sig,
            &self.repeat,
            &self.rep_mul,
            &self.scan_mul,
            &self.mul_acc,
        ]
        .iter()
        .all(|l| l.is_unbounded())
    }

    /// The accumulator took the oldest pair at `at`.
    fn acc_took(&mut self, at: u64) {
        self.scan_acc.pop(at);
        self.mul_acc.pop(at);
    }
}

/// The fused broadcast product (see the module documentation). Without an accumulator, its
/// own clock is the multiply's; with one, the accumulator's.
pub(crate) struct Bcast<R> {
    chain: BcastChain,
    size: u32,
    /// Values of the repeater's array (`None`: the repeater broadcasts values) and of the
    /// scanner's array.
    rep_vals: Option<Arc<Vec<f64>>>,
    scan_vals: Arc<Vec<f64>>,
    scan: ScanStage,
    repsig: Clock,
    repsig_sent: u64,
    repeat: Clock,
    repeat_sent: u64,
    /// The repeater's array (absent when it broadcasts values) and the scanner's array.
    rep_array: Option<Clock>,
    scan_array: Clock,
    /// Their memory ports (none with ideal memory).
    rep_mem: Option<MemPort>,
    scan_mem: Option<MemPort>,
    /// The multiply (the slot's clock, copied in and out, when no accumulator joined).
    mul: Clock,
    mul_sent: u64,
    loads: [u64; 2],
    ops: u64,
    links: BcastLinks<R>,
    /// Every link unbounded and memory ideal: fibers take the loops without waits or reads.
    plain: bool,
    /// Input ports of the scanner's and the repeater's references.
    ref_scan: usize,
    ref_rep: usize,
    /// The chain sent `D`.
    finished: bool,
    acc: Option<Acc>,
    max_cycles: u64,
    shared: Rc<RefCell<FusedShared>>,
}

/// Where a coordinate's two tokens may be sent: the earliest send cycles of the outputs
/// (the scanner's coordinates, the products) outside the chain, 0 for an absorbed
/// accumulator (whose links say when).
#[derive(Clone, Copy)]
struct Room {
    crd: u64,
    val: u64,
}

impl<R: Records> Bcast<R> {
    /// The chain over a dense level of `size` coordinates; `vals` are the repeater's array's
    /// (if it has one) and the scanner's array's values; `acc` the absorbed accumulator's
    /// operation, when [`BcastChain::acc`] is set. Channels and memory ports come from `env`.
    pub fn new(
        chain: BcastChain,
        size: u32,
        vals: (Option<Arc<Vec<f64>>>, Arc<Vec<f64>>),
        acc: Option<ReduceKind>,
        timing: &BcastTiming,
        max_cycles: u64,
        mut env: FusedEnv,
    ) -> Bcast<R> {
        let (rep_vals, scan_vals) = vals;
        let acc = acc.filter(|_| chain.acc.is_some()).map(|op| Acc {
            op,
            phase: Phase::Outer,
            slots: Slots::new(size as usize),
            vals: Vec::new(),
            fiber_data: false,
            expect: None,
            ops: 0,
            queue: VecDeque::new(),
        });
        let first_ref = if acc.is_some() { REDUCED + 1 } else { 0 };
        let links = BcastLinks::new(&chain, &env);
        let rep_mem = chain.rep_array.and_then(|a| env.port(a));
        let scan_mem = env.port(chain.scan_array);
        let plain = links.unbounded() && rep_mem.is_none() && scan_mem.is_none();
        Bcast {
            chain,
            size,
            rep_vals,
            scan_vals,
            scan: ScanStage::new(timing.scan),
            repsig: clock(timing.repsig),
            repsig_sent: 0,
            repeat: clock(timing.repeat),
            repeat_sent: 0,
            rep_array: chain.rep_array.map(|_| clock(timing.array)),
            scan_array: clock(timing.array),
            rep_mem,
            scan_mem,
            mul: clock(timing.alu),
            mul_sent: 0,
            loads: [0; 2],
            ops: 0,
            links,
            plain,
            ref_scan: first_ref,
            ref_rep: first_ref + 1,
            finished: false,
            acc,
            max_cycles,
            shared: env.shared,
        }
    }

    fn bail(&self, why: &str) -> SimError {
        self.shared.borrow_mut().bailed = true;
        let node = self.chain.runner() as u32;
        SimError::Protocol { node, message: format!("fused broadcast product: {why}") }
    }

    /// The multiply's fire on the two value paths' tokens (repeater's, scanner's) and their
    /// ready cycles: the product and its ready cycle.
    fn multiply(&mut self, rep: (u64, Token), scan: (u64, Token), room: Room) -> Result<(u64, Token), SimError> {
        let (a, b) = if self.chain.scan_first { (scan, rep) } else { (rep, scan) };
        let out = match (a.1, b.1) {
            (Token::Val(x), Token::Val(y)) => {
                self.ops += 1;
                Token::Val(AluOp::Mul.apply2(x, y))
            }
            (Token::Stop { level: la, .. }, Token::Stop { level: lb, .. }) if la == lb => a.1,
            (Token::Done, Token::Done) => Token::Done,
            _ => return Err(self.bail("value streams that part")),
        };
        self.mul_sent += 1;
        Ok((self.mul_fire(a.0.max(b.0), room), out))
    }

    /// The multiply's fire on operands ready at `ready`, taking them from its two links and
    /// sending to the accumulator (or the outputs, `room`): its output's ready cycle.
    #[inline(always)]
    fn mul_fire(&mut self, ready: u64, room: Room) -> u64 {
        let l = &mut self.links;
        let at = self.mul.fire(ready, room.val.max(l.mul_acc.free()));
        if self.chain.rep_array.is_some() { &mut l.rep_mul } else { &mut l.repeat }.pop(at);
        l.scan_mul.pop(at);
        l.mul_acc.push();
        self.mul.ready(at)
    }

    /// A scanner fire on an input ready at `ready` (0 inside a fiber): its cycle. Its token
    /// goes to the signal generator, the array and the accumulator (or the outputs, `room`).
    #[inline(always)]
    fn scan_fire(&mut self, ready: u64, room: Room) -> u64 {
        let l = &mut self.links;
        let at =
            self.scan.clk.fire(ready, room.crd.max(l.scan_sig.free()).max(l.scan_array.free()).max(l.scan_acc.free()));
        l.scan_sig.push();
        l.scan_array.push();
        l.scan_acc.push();
        at
    }

    /// The scanner's token, ready at `ready`, through the repeat-signal generator: the
    /// signal's ready cycle. (The token itself leaves with its product, in [`Bcast::emit`].)
    fn send_crd(&mut self, ready: u64) -> u64 {
        self.scan.sent += 1;
        self.repsig_sent += 1;
        self.repsig_fire(ready)
    }

    /// The repeat-signal generator's fire on a coordinate ready at `ready`: its signal's ready
    /// cycle.
    #[inline(always)]
    fn repsig_fire(&mut self, ready: u64) -> u64 {
        let l = &mut self.links;
        let at = self.repsig.fire(ready, l.sig.free());
        l.scan_sig.pop(at);
        l.sig.push();
        self.repsig.ready(at)
    }

    /// The scanner's array on a control token whose reference is ready at `ready`: the ready
    /// cycle of what it sends to the multiply.
    fn scan_array_control(&mut self, ready: u64) -> u64 {
        let l = &mut self.links;
        array_fire(&mut self.scan_array, &mut self.scan_mem, (None, ready), &mut l.scan_array, &mut l.scan_mul)
    }

    /// A repeater fire at `ready` on a signal and, when it closes a fiber, the next payload
    /// token: the fire's cycle, with the signal taken then and the output sent.
    fn repeat_fire(&mut self, ready: u64) -> u64 {
        let l = &mut self.links;
        let at = self.repeat.fire(ready, l.repeat.free());
        l.repeat.push();
        self.repeat_sent += 1;
        at
    }

    /// Sends a scanner token and its product: on the outputs, or to the accumulator's queue.
    fn emit(&mut self, io: &mut Io<'_>, crd: (u64, Token), val: (u64, Token)) {
        match &mut self.acc {
            Some(acc) => acc.queue.push_back((crd, val)),
            None => {
                io.push_ready(OUT_CRD, crd.0, crd.1);
                io.push_ready(OUT_VAL, val.0, val.1);
            }
        }
    }

    /// A token the repeater holds (and repeats over a fiber) that the loop models: a
    /// reference into its array, or a value when it has none.
    fn held_ok(&self, tok: Token) -> bool {
        match tok {
            Token::Idx(_) => self.rep_vals.is_some(),
            Token::Val(_) => self.rep_vals.is_none(),
            _ => false,
        }
    }

    /// The repeater's control token `tok`, ready at `ready`, through its array if it has one:
    /// the token and ready cycle the multiply sees.
    fn rep_value(&mut self, ready: u64, tok: Token) -> (u64, Token) {
        match &mut self.rep_array {
            Some(c) => {
                let l = &mut self.links;
                (array_fire(c, &mut self.rep_mem, (None, ready), &mut l.repeat, &mut l.rep_mul), tok)
            }
            None => (ready, tok),
        }
    }

    /// The value the repeater broadcasts: its token `held`, through its array if it has one.
    fn broadcast(&self, held: Token) -> Result<f64, SimError> {
        match (held, &self.rep_vals) {
            (Token::Idx(p), Some(vals)) => vals.get(p as usize).copied(),
            (Token::Val(x), None) => Some(x),
            _ => None,
        }
        .ok_or_else(|| self.bail("a broadcast token the fused loop does not model"))
    }

    /// Coordinates `pos..end` of the open fiber at `base`, each through every stage, with the
    /// broadcast value `x` (its token ready at `rp`): `sink(coordinate ready, coordinate,
    /// product ready, product)` takes each. Every link unbounded and memory ideal.
    #[inline(always)]
    fn fiber_run(
        &mut self,
        (pos, end, base): (u32, u32, u32),
        (rp, x): (u64, f64),
        mut sink: impl FnMut(u64, u32, u64, f64),
    ) -> Result<(), SimError> {
        debug_assert!(self.plain);
        let (lo, hi) = (base as usize + pos as usize, base as usize + end as usize);
        let Some(ys) = self.scan_vals.get(lo..hi) else {
            return Err(self.bail("a broadcast token the fused loop does not model"));
        };
        let chain = self.chain;
        // A missing array clock is the repeater's again (same interval, never stalls twice).
        let ii = shared_ii(&[&self.scan.clk, &self.repsig, &self.repeat, &self.scan_array, &self.mul])
            .filter(|&ii| self.rep_array.as_ref().is_none_or(|c| c.ii == ii));
        for (k, (q, &y)) in (pos..end).zip(ys).enumerate() {
            let before = ii.map(|_| self.stalls());
            let at = self.scan.clk.fire(0, 0);
            let rc = self.scan.clk.ready(at);
            let rs = step(&mut self.repsig, rc);
            let rr = step(&mut self.repeat, rs.max(rp));
            let vr = match &mut self.rep_array {
                Some(c) => step(c, rr),
                None => rr,
            };
            let vs = step(&mut self.scan_array, rc);
            let at = self.mul.fire(vr.max(vs), 0);
            let rv = self.mul.ready(at);
            sink(rc, q, rv, chain.product(x, y));
            if let (Some(ii), Some(before)) = (ii, before) {
                if before == self.stalls() {
                    // Settled (see `shared_ii`): coordinates and products leave `ii` apart.
                    let mut n = 0;
                    for (q, &y) in (q + 1..end).zip(&ys[k + 1..]) {
                        n += 1;
                        sink(rc + n * ii, q, rv + n * ii, chain.product(x, y));
                    }
                    let rep_array = self.rep_array.as_mut();
                    let mut spare = self.repeat;
                    coast(
                        [
                            &mut self.scan.clk,
                            &mut self.repsig,
                            &mut self.repeat,
                            rep_array.unwrap_or(&mut spare),
                            &mut self.scan_array,
                            &mut self.mul,
                        ],
                        n,
                    );
                    break;
                }
            }
        }
        self.fiber_count(pos, end, base);
        Ok(())
    }

    /// Cycles the chain's stages have waited for their inputs.
    #[inline(always)]
    fn stalls(&self) -> u64 {
        let rep_array = self.rep_array.as_ref().map_or(0, |c| c.stall_in);
        stalls(&[&self.scan.clk, &self.repsig, &self.repeat, &self.scan_array, &self.mul]) + rep_array
    }

    /// Coordinate `q` of the open fiber at `base` through every stage, each waiting for room
    /// on its links (and the outputs outside the chain, `room`) and each array for its memory
    /// port, with the broadcast token `held` (ready at `rp`, value `x`): the coordinate's
    /// ready cycle, the product's, and the product.
    #[inline(always)]
    fn coordinate(
        &mut self,
        q: u32,
        base: u32,
        (rp, held, x): (u64, Token, f64),
        room: Room,
    ) -> Option<(u64, u64, f64)> {
        let y = *self.scan_vals.get(base as usize + q as usize)?;
        let at = self.scan_fire(0, room);
        let rc = self.scan.clk.ready(at);
        let rs = self.repsig_fire(rc);
        let l = &mut self.links;
        let at = self.repeat.fire(rs.max(rp), l.repeat.free());
        l.sig.pop(at);
        l.repeat.push();
        let rr = self.repeat.ready(at);
        let vr = match &mut self.rep_array {
            Some(c) => {
                let word = match held {
                    Token::Idx(p) => Some(p),
                    _ => None,
                };
                array_fire(c, &mut self.rep_mem, (word, rr), &mut l.repeat, &mut l.rep_mul)
            }
            None => rr,
        };
        let vs = array_fire(
            &mut self.scan_array,
            &mut self.scan_mem,
            (Some(base + q), rc),
            &mut l.scan_array,
            &mut l.scan_mul,
        );
        let rv = self.mul_fire(vr.max(vs), room);
        Some((rc, rv, self.chain.product(x, y)))
    }

    /// Counts coordinates `pos..end` of the fiber at `base` as sent by every stage and moves
    /// the scanner on.
    fn fiber_count(&mut self, pos: u32, end: u32, base: u32) {
        let n = (end - pos) as u64;
        self.scan.sent += n;
        self.repsig_sent += n;
        self.repeat_sent += n;
        self.mul_sent += n;
        self.loads[0] += if self.rep_vals.is_some() { n } else { 0 };
        self.loads[1] += n;
        self.ops += n;
        self.scan.state = if end == self.size { ScanState::Closing } else { ScanState::Fiber { pos: end, base } };
    }

    /// More of the open fiber (from position `pos` at `base`), with the broadcast token
    /// `held` (ready at `rp`). Without an accumulator: as many coordinates as the outputs take
    /// below the soft cap (at least one), so that a long dense fiber does not fill a channel at
    /// once. With one: the rest of the fiber straight into it when it is taking a fiber and
    /// nothing waits before; else into its queue, up to the soft cap (and the links' room).
    fn fiber(&mut self, io: &mut Io<'_>, pos: u32, base: u32, (rp, held): (u64, Token)) -> Result<(), SimError> {
        if !self.plain {
            return self.fiber_timed(io, pos, base, (rp, held));
        }
        let x = self.broadcast(held)?;
        let end_at = |room: usize| (pos as usize).saturating_add(room.max(1)).min(self.size as usize) as u32;
        match self.acc.as_mut() {
            None => {
                let end = end_at(io.soft_room(OUT_VAL).min(io.soft_room(OUT_CRD)));
                let n = (end - pos) as usize;
                // The outputs are unbounded (the chain is plain: its outputs feed the same
                // channels as its inner ones): write the run to each port's first channel
                // through a writer sized for it, then copy it to the port's other channels.
                let [vw, cw] = io.channels_opt([io.out_first(OUT_VAL), io.out_first(OUT_CRD)]);
                let (mut vw, mut cw) = (vw.map(|c| c.writer(n)), cw.map(|c| c.writer(n)));
                self.fiber_run(
                    (pos, end, base),
                    (rp, x),
                    #[inline(always)]
                    |rc, q, rv, v| {
                        if let Some(w) = &mut cw {
                            w.push(rc, Token::Idx(q));
                        }
                        if let Some(w) = &mut vw {
                            w.push(rv, Token::Val(v));
                        }
                    },
                )?;
                drop((vw, cw));
                io.replicate(OUT_VAL, n);
                io.replicate(OUT_CRD, n);
            }
            Some(acc) if acc.phase == Phase::Inner && acc.queue.is_empty() => {
                // The accumulator's inner step, per pair (as `Spacc1`): one fire when both
                // tokens are ready, the pair appended.
                let (op, mut slots) = (acc.op, std::mem::replace(&mut acc.slots, Slots::EMPTY));
                let mut clk = io.clock();
                let end = self.size;
                self.fiber_run(
                    (pos, end, base),
                    (rp, x),
                    #[inline(always)]
                    |rc, q, rv, v| {
                        clk.fire(rc.max(rv), 0);
                        slots.add(op, q, v);
                    },
                )?;
                io.set_clock(clk);
                let acc = self.acc.as_mut().expect("checked above");
                acc.slots = slots;
                acc.ops += (end - pos) as u64;
            }
            Some(acc) => {
                let end = end_at(io.soft_cap.saturating_sub(acc.queue.len()));
                let mut queue = std::mem::take(&mut acc.queue);
                self.fiber_run(
                    (pos, end, base),
                    (rp, x),
                    #[inline(always)]
                    |rc, q, rv, v| {
                        queue.push_back(((rc, Token::Idx(q)), (rv, Token::Val(v))));
                    },
                )?;
                self.acc.as_mut().expect("checked above").queue = queue;
            }
        }
        Ok(())
    }

    /// [`Bcast::fiber`] where a link is bounded or memory is modelled: one coordinate at a
    /// time, while the outputs (or the accumulator's links) have room.
    fn fiber_timed(&mut self, io: &mut Io<'_>, pos: u32, base: u32, (rp, held): (u64, Token)) -> Result<(), SimError> {
        let x = self.broadcast(held)?;
        let bad = |b: &Self| b.bail("a broadcast token the fused loop does not model");
        let mut q = pos;
        let direct = self.acc.as_ref().is_some_and(|a| a.phase == Phase::Inner && a.queue.is_empty());
        let mut clk = io.clock();
        while q < self.size {
            let room = match &self.acc {
                None => match (io.out_free(OUT_CRD), io.out_free(OUT_VAL)) {
                    (Some(crd), Some(val)) => Room { crd, val },
                    _ => break,
                },
                Some(acc) if direct || self.acc_room(acc, io) => Room { crd: 0, val: 0 },
                Some(_) => break,
            };
            let Some((rc, rv, v)) = self.coordinate(q, base, (rp, held, x), room) else { return Err(bad(self)) };
            match self.acc.as_mut() {
                None => {
                    io.push_ready(OUT_CRD, rc, Token::Idx(q));
                    io.push_ready(OUT_VAL, rv, Token::Val(v));
                }
                Some(acc) if direct => {
                    let at = clk.fire(rc.max(rv), 0);
                    self.links.acc_took(at);
                    acc.slots.add(acc.op, q, v);
                    acc.ops += 1;
                }
                Some(acc) => acc.queue.push_back(((rc, Token::Idx(q)), (rv, Token::Val(v)))),
            }
            q += 1;
        }
        if direct {
            io.set_clock(clk);
        }
        self.fiber_count(pos, q, base);
        Ok(())
    }

    /// Whether the accumulator's queue (the two links into it) can take another pair.
    fn acc_room(&self, acc: &Acc, io: &Io<'_>) -> bool {
        acc.queue.len() < io.soft_cap && !self.links.scan_acc.is_full() && !self.links.mul_acc.is_full()
    }

    /// Runs the absorbed accumulator as far as its inputs (the queue, the reduced stream) and
    /// outputs allow; returns whether it did anything. Streams that `Spacc1` would reject make
    /// the chain give up, so that the node-by-node run reports them.
    fn drain(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        loop {
            let Some(acc) = self.acc.as_mut() else { return Ok(progress) };
            match acc.phase {
                Phase::Finished => break,
                Phase::Outer => {
                    let Some((ready, tok)) = io.head(REDUCED) else { break };
                    if !follows(acc.expect, tok) {
                        return Err(self.bail("an accumulator stream the fused loop does not model"));
                    }
                    match tok {
                        Token::Idx(_) | Token::Empty => {
                            let at = io.fire(ready, 0);
                            io.pop(REDUCED, at);
                            acc.fiber_data = true;
                            acc.expect = None;
                            acc.phase = Phase::Inner;
                        }
                        Token::Stop { level, .. } => {
                            if !acc.fiber_data {
                                // Empty reduced fiber: the inner streams hold a bare stop.
                                let Some(&((r1, t1), (r2, t2))) = acc.queue.front() else { break };
                                if !stop_of(t1, level + 1) || !stop_of(t2, level + 1) {
                                    return Err(self.bail("an accumulator stream the fused loop does not model"));
                                }
                                let at = io.fire(ready.max(r1).max(r2), 0);
                                io.pop(REDUCED, at);
                                acc.queue.pop_front();
                                self.links.acc_took(at);
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(REDUCED, at);
                            }
                            acc.vals.clear();
                            acc.slots.drain_sorted(&mut acc.vals);
                            acc.fiber_data = false;
                            acc.expect = None;
                            acc.phase = Phase::Flush { next: 0, stop: tok };
                        }
                        Token::Done => {
                            let Some(&((r1, t1), (r2, t2))) = acc.queue.front() else { break };
                            let Some(free) = io.outs_free(0..2) else { break };
                            if t1 != Token::Done || t2 != Token::Done {
                                return Err(self.bail("an accumulator stream the fused loop does not model"));
                            }
                            let at = io.fire(ready.max(r1).max(r2), free);
                            io.pop(REDUCED, at);
                            acc.queue.pop_front();
                            self.links.acc_took(at);
                            io.push(0, at, Token::Done);
                            io.push(1, at, Token::Done);
                            acc.phase = Phase::Finished;
                        }
                        _ => return Err(self.bail("an accumulator stream the fused loop does not model")),
                    }
                    progress = true;
                    if self.acc.as_ref().is_some_and(|a| a.phase == Phase::Finished) {
                        self.publish();
                    }
                }
                Phase::Inner => {
                    let Some(((r1, c), (r2, v))) = acc.queue.pop_front() else { break };
                    let at = io.fire(r1.max(r2), 0);
                    self.links.acc_took(at);
                    match (c, v) {
                        (Token::Idx(c), Token::Val(v)) if (c as usize) < acc.slots.size() => {
                            acc.slots.add(acc.op, c, v);
                            acc.ops += 1;
                        }
                        (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) if a == b => {
                            acc.expect = Some(a);
                            acc.phase = Phase::Outer;
                        }
                        _ => return Err(self.bail("an accumulator stream the fused loop does not model")),
                    }
                    progress = true;
                }
                Phase::Flush { mut next, stop } => {
                    let done = flush(io, &acc.vals, &mut next, stop, false);
                    acc.phase = Phase::Flush { next, stop };
                    match done {
                        Flushed::Blocked => break,
                        Flushed::Progress => {}
                        Flushed::Done => {
                            acc.vals.clear();
                            acc.phase = Phase::Outer;
                        }
                    }
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    fn publish(&self) {
        let mem = |m: &Option<MemPort>| m.as_ref().map(|m| (m.requests, m.bytes));
        let mut stages = vec![
            Stage::of(&self.scan.clk, self.scan.sent),
            Stage::of(&self.repsig, self.repsig_sent),
            Stage::of(&self.repeat, self.repeat_sent),
        ];
        stages.extend(self.rep_array.as_ref().map(|c| Stage {
            bytes_read: 4 * self.loads[0],
            mem: mem(&self.rep_mem),
            ..Stage::of(c, self.repeat_sent)
        }));
        stages.push(Stage {
            bytes_read: 4 * self.loads[1],
            mem: mem(&self.scan_mem),
            ..Stage::of(&self.scan_array, self.scan.sent)
        });
        if self.acc.is_some() {
            stages.push(Stage { ops: self.ops, ..Stage::of(&self.mul, self.mul_sent) });
        }
        self.shared.borrow_mut().stages = Some(stages);
    }

    /// The absorbed stages' clocks, in [`BcastChain::absorbed`] order.
    fn clocks(&self) -> Vec<&Clock> {
        let mut clocks = vec![&self.scan.clk, &self.repsig, &self.repeat];
        clocks.extend(self.rep_array.as_ref());
        clocks.push(&self.scan_array);
        if self.acc.is_some() {
            clocks.push(&self.mul);
        }
        clocks
    }

    /// Whether the chain may make another pair now, and the earliest send cycles of its
    /// outputs: the outputs have room (below the soft cap when unbounded), or the
    /// accumulator's queue does.
    fn room(&self, io: &Io<'_>) -> Option<Room> {
        match &self.acc {
            None => Some(Room { crd: io.out_free(OUT_CRD)?, val: io.out_free(OUT_VAL)? }),
            Some(acc) => self.acc_room(acc, io).then_some(Room { crd: 0, val: 0 }),
        }
    }

    /// Runs the chain (and the accumulator, if it joined) until blocked.
    fn steps(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        loop {
            progress |= self.drain(io)?;
            if self.finished {
                break;
            }
            let Some(room) = self.room(io) else { break };
            let (r_scan, r_rep) = (self.ref_scan, self.ref_rep);
            match self.scan.state {
                ScanState::Fiber { pos, base } => {
                    // The repeater holds the broadcast token until the fiber's stop.
                    let Some(held) = io.head(r_rep) else {
                        return Err(self.bail("a broadcast token the fused loop does not model"));
                    };
                    self.fiber(io, pos, base, held)?;
                }
                ScanState::Closing => {
                    // Look-ahead: the scanner's next reference, and the repeater's next after
                    // the one it holds.
                    let (Some((rw, next_w)), Some((rp, held)), Some((rn, next_r))) =
                        (io.head(r_scan), io.head(r_rep), io.second(r_rep))
                    else {
                        break;
                    };
                    if !self.held_ok(held) {
                        return Err(self.bail("a broadcast token the fused loop does not model"));
                    }
                    let at = self.scan_fire(rw, room);
                    let crd = match next_w {
                        Token::Stop { level, .. } => {
                            io.pop(r_scan, at);
                            Token::stop(level + 1)
                        }
                        _ => Token::stop(0),
                    };
                    self.scan.state = ScanState::Idle;
                    let rc = self.scan.clk.ready(at);
                    let rs = self.send_crd(rc);
                    // The signal's `S` takes the held reference without a fire; the closing
                    // stop waits for the next one.
                    let ready = rs.max(rp);
                    let rep = &mut self.repeat;
                    if ready > rep.t {
                        rep.stall_in += ready - rep.t;
                        rep.t = ready;
                    }
                    io.pop(r_rep, rep.t);
                    self.links.sig.pop(rep.t);
                    let at = self.repeat_fire(rn);
                    let out = match next_r {
                        Token::Stop { level, .. } => {
                            io.pop(r_rep, at);
                            Token::stop(level + 1)
                        }
                        _ => Token::stop(0),
                    };
                    let rr = self.repeat.ready(at);
                    let rep = self.rep_value(rr, out);
                    let vs = self.scan_array_control(rc);
                    let val = self.multiply(rep, (vs, crd), room)?;
                    self.emit(io, (rc, crd), val);
                }
                ScanState::Idle => {
                    let (Some((rw, w)), Some((rp, r))) = (io.head(r_scan), io.head(r_rep)) else { break };
                    match (w, r) {
                        (Token::Idx(p), held) if self.held_ok(held) => {
                            // Taking a reference costs the scanner no fire (as `Scan`).
                            let clk = &mut self.scan.clk;
                            if rw > clk.t {
                                clk.stall_in += rw - clk.t;
                                clk.t = rw;
                            }
                            io.pop(r_scan, clk.t);
                            let base = p as u64 * self.size as u64;
                            if base + self.size as u64 > u32::MAX as u64 {
                                return Err(SimError::Protocol {
                                    node: self.chain.scan as u32,
                                    message: format!("dense position {base} overflows u32"),
                                });
                            }
                            self.scan.state = ScanState::Fiber { pos: 0, base: base as u32 };
                        }
                        (Token::Stop { level, gap }, Token::Stop { level: lr, gap: gr }) => {
                            let at = self.scan_fire(rw, room);
                            io.pop(r_scan, at);
                            let crd = Token::Stop { level: level + 1, gap: gap + 1 };
                            let rc = self.scan.clk.ready(at);
                            let rs = self.send_crd(rc);
                            let at = self.repeat_fire(rs.max(rp));
                            io.pop(r_rep, at);
                            self.links.sig.pop(at);
                            let rr = self.repeat.ready(at);
                            let out = Token::Stop { level: lr + 1, gap: gr + 1 };
                            let rep = self.rep_value(rr, out);
                            let vs = self.scan_array_control(rc);
                            let val = self.multiply(rep, (vs, crd), room)?;
                            self.emit(io, (rc, crd), val);
                        }
                        (Token::Done, Token::Done) => {
                            let at = self.scan_fire(rw, room);
                            io.pop(r_scan, at);
                            self.scan.state = ScanState::Finished;
                            let rc = self.scan.clk.ready(at);
                            let rs = self.send_crd(rc);
                            let at = self.repeat_fire(rs.max(rp));
                            io.pop(r_rep, at);
                            self.links.sig.pop(at);
                            let rr = self.repeat.ready(at);
                            let rep = self.rep_value(rr, Token::Done);
                            let vs = self.scan_array_control(rc);
                            let val = self.multiply(rep, (vs, Token::Done), room)?;
                            self.emit(io, (rc, Token::Done), val);
                            self.finished = true;
                            if self.acc.is_none() {
                                self.publish();
                            }
                        }
                        _ => return Err(self.bail("reference streams the fused loop does not model")),
                    }
                }
                ScanState::Finished => return Err(self.bail("input after the end")),
            }
            progress = true;
        }
        Ok(progress)
    }
}

impl<R: Records> Primitive for Bcast<R> {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        // Without an accumulator the slot is the multiply's: its clock is the slot's.
        let own = self.acc.is_none();
        if own {
            self.mul = io.clock();
        }
        let progress = self.steps(io);
        if own {
            io.set_clock(self.mul);
        }
        let progress = progress?;
        past_limit(&self.clocks(), &self.chain.absorbed(), self.max_cycles)?;
        Ok(progress)
    }
    fn done(&self) -> bool {
        match &self.acc {
            None => self.finished,
            Some(acc) => acc.phase == Phase::Finished,
        }
    }
    fn ops(&self) -> u64 {
        match &self.acc {
            None => self.ops,
            Some(acc) => acc.ops,
        }
    }
}
