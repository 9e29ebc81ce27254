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

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::{AluOp, Graph, NodeId, Op};
use fuseflow_tensor::LevelFormat;

use super::dot::{clock, past_limit, sole_producer, step, FusedShared, ScanStage, ScanState, Stage};
use crate::io::{Clock, Io, Primitive};
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
}

impl BcastChain {
    /// The nodes the multiply's slot absorbs, in the order of [`FusedShared::stages`].
    pub fn absorbed(&self) -> Vec<usize> {
        let mut v = vec![self.scan, self.repsig, self.repeat];
        v.extend(self.rep_array);
        v.push(self.scan_array);
        v
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
    (from_scan && once).then_some(BcastChain {
        scan,
        repsig,
        repeat,
        rep_array: arrays[r],
        scan_array,
        mul,
        scan_first,
    })
}

/// Input ports of the fused node.
const REF_SCAN: usize = 0;
const REF_REP: usize = 1;
/// Output ports of the fused node: the products, then the scanner's coordinates (to their
/// consumers outside the chain).
const OUT_VAL: usize = 0;
const OUT_CRD: usize = 1;

/// `(ii, latency)` of each stage kind.
pub(crate) struct BcastTiming {
    pub scan: (u64, u64),
    pub repsig: (u64, u64),
    pub repeat: (u64, u64),
    pub array: (u64, u64),
}

/// The fused broadcast product (see the module documentation). Inputs: the scanner's and the
/// repeater's reference streams; outputs: the products and the scanner's coordinates. Its own
/// clock is the multiply's.
pub(crate) struct Bcast {
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
    loads: [u64; 2],
    ops: u64,
    finished: bool,
    max_cycles: u64,
    shared: Rc<RefCell<FusedShared>>,
}

impl Bcast {
    /// The chain over a dense level of `size` coordinates; `vals` are the repeater's array's
    /// (if it has one) and the scanner's array's values.
    pub fn new(
        chain: BcastChain,
        size: u32,
        vals: (Option<Arc<Vec<f64>>>, Arc<Vec<f64>>),
        timing: &BcastTiming,
        max_cycles: u64,
        shared: Rc<RefCell<FusedShared>>,
    ) -> Bcast {
        let (rep_vals, scan_vals) = vals;
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
            loads: [0; 2],
            ops: 0,
            finished: false,
            max_cycles,
            shared,
        }
    }

    fn bail(&self, why: &str) -> SimError {
        self.shared.borrow_mut().bailed = true;
        SimError::Protocol { node: self.chain.mul as u32, message: format!("fused broadcast product: {why}") }
    }

    /// The multiply's fire on the two value paths' tokens (repeater's, scanner's) and their
    /// ready cycles; sends the result on the products' output.
    fn multiply(&mut self, io: &mut Io<'_>, rep: (u64, Token), scan: (u64, Token), free: u64) -> Result<(), SimError> {
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
        let at = io.fire(a.0.max(b.0), free);
        io.push(OUT_VAL, at, out);
        Ok(())
    }

    /// The scanner's token `tok` at `ready` goes out on the coordinate output and through the
    /// repeat-signal generator: the signal's ready cycle.
    fn send_crd(&mut self, io: &mut Io<'_>, ready: u64, tok: Token) -> u64 {
        io.push_ready(OUT_CRD, ready, tok);
        self.scan.sent += 1;
        self.repsig_sent += 1;
        let at = self.repsig.fire(ready, 0);
        self.repsig.ready(at)
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

    /// The repeater's token `tok`, ready at `ready`, through its array if it has one: the
    /// token and ready cycle the multiply sees.
    fn rep_value(&mut self, ready: u64, tok: Token) -> (u64, Token) {
        match &mut self.rep_array {
            Some(c) => (step(c, ready), tok),
            None => (ready, tok),
        }
    }

    /// More of the open fiber (from position `pos` at `base`), each coordinate through every
    /// stage, with the broadcast token `held` (ready at `rp`): as many coordinates as the
    /// outputs take below the soft cap (at least one), so that a long dense fiber does not
    /// fill a channel at once.
    fn fiber(&mut self, io: &mut Io<'_>, pos: u32, base: u32, (rp, held): (u64, Token)) -> Result<(), SimError> {
        let room = io.soft_room(OUT_VAL).min(io.soft_room(OUT_CRD)).max(1);
        let end = (pos as usize).saturating_add(room).min(self.size as usize) as u32;
        let (lo, hi) = (base as usize + pos as usize, base as usize + end as usize);
        let x = match (held, &self.rep_vals) {
            (Token::Idx(p), Some(vals)) => vals.get(p as usize).copied(),
            (Token::Val(x), None) => Some(x),
            _ => None,
        };
        let (Some(x), Some(ys)) = (x, self.scan_vals.get(lo..hi)) else {
            return Err(self.bail("a broadcast token the fused loop does not model"));
        };
        let mut mul = io.clock();
        for (q, &y) in (pos..end).zip(ys) {
            let at = self.scan.clk.fire(0, 0);
            let rc = self.scan.clk.ready(at);
            io.push_ready(OUT_CRD, rc, Token::Idx(q));
            let rs = step(&mut self.repsig, rc);
            let rr = step(&mut self.repeat, rs.max(rp));
            let vr = match &mut self.rep_array {
                Some(c) => step(c, rr),
                None => rr,
            };
            let vs = step(&mut self.scan_array, rc);
            let (a, b) = if self.chain.scan_first { (y, x) } else { (x, y) };
            let at = mul.fire(vr.max(vs), 0);
            io.push_ready(OUT_VAL, mul.ready(at), Token::Val(AluOp::Mul.apply2(a, b)));
        }
        io.set_clock(mul);
        let n = (end - pos) as u64;
        self.scan.sent += n;
        self.repsig_sent += n;
        self.repeat_sent += n;
        self.loads[0] += if self.rep_vals.is_some() { n } else { 0 };
        self.loads[1] += n;
        self.ops += n;
        self.scan.state = if end == self.size { ScanState::Closing } else { ScanState::Fiber { pos: end, base } };
        Ok(())
    }

    fn publish(&self) {
        let stage = |c: &Clock, sent: u64, bytes_read: u64| Stage {
            t: c.t,
            fires: c.fires,
            stall_in: c.stall_in,
            stall_out: c.stall_out,
            sent,
            ops: 0,
            bytes_read,
        };
        let mut stages = vec![
            stage(&self.scan.clk, self.scan.sent, 0),
            stage(&self.repsig, self.repsig_sent, 0),
            stage(&self.repeat, self.repeat_sent, 0),
        ];
        stages.extend(self.rep_array.as_ref().map(|c| stage(c, self.repeat_sent, 4 * self.loads[0])));
        stages.push(stage(&self.scan_array, self.scan.sent, 4 * self.loads[1]));
        self.shared.borrow_mut().stages = Some(stages);
    }

    /// The absorbed stages' clocks, in [`BcastChain::absorbed`] order.
    fn clocks(&self) -> Vec<&Clock> {
        let mut clocks = vec![&self.scan.clk, &self.repsig, &self.repeat];
        clocks.extend(self.rep_array.as_ref());
        clocks.push(&self.scan_array);
        clocks
    }
}

impl Primitive for Bcast {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let (Some(free), Some(_)) = (io.out_free(OUT_VAL), io.out_free(OUT_CRD)) else { break };
            match self.scan.state {
                ScanState::Fiber { pos, base } => {
                    // The repeater holds the broadcast token until the fiber's stop.
                    let Some(held) = io.head(REF_REP) else {
                        return Err(self.bail("a broadcast token the fused loop does not model"));
                    };
                    self.fiber(io, pos, base, held)?;
                }
                ScanState::Closing => {
                    // Look-ahead: the scanner's next reference, and the repeater's next after
                    // the one it holds.
                    let (Some((rw, next_w)), Some((rp, held)), Some((rn, next_r))) =
                        (io.head(REF_SCAN), io.head(REF_REP), io.second(REF_REP))
                    else {
                        break;
                    };
                    if !self.held_ok(held) {
                        return Err(self.bail("a broadcast token the fused loop does not model"));
                    }
                    let at = self.scan.clk.fire(rw, 0);
                    let crd = match next_w {
                        Token::Stop { level, .. } => {
                            io.pop(REF_SCAN, at);
                            Token::stop(level + 1)
                        }
                        _ => Token::stop(0),
                    };
                    self.scan.state = ScanState::Idle;
                    let rc = self.scan.clk.ready(at);
                    let rs = self.send_crd(io, rc, crd);
                    // The signal's `S` takes the held reference without a fire; the closing
                    // stop waits for the next one.
                    let ready = rs.max(rp);
                    let rep = &mut self.repeat;
                    if ready > rep.t {
                        rep.stall_in += ready - rep.t;
                        rep.t = ready;
                    }
                    io.pop(REF_REP, rep.t);
                    let at = rep.fire(rn, 0);
                    let out = match next_r {
                        Token::Stop { level, .. } => {
                            io.pop(REF_REP, at);
                            Token::stop(level + 1)
                        }
                        _ => Token::stop(0),
                    };
                    self.repeat_sent += 1;
                    let rr = rep.ready(at);
                    let rep = self.rep_value(rr, out);
                    let vs = step(&mut self.scan_array, rc);
                    self.multiply(io, rep, (vs, crd), free)?;
                }
                ScanState::Idle => {
                    let (Some((rw, w)), Some((rp, r))) = (io.head(REF_SCAN), io.head(REF_REP)) else { break };
                    match (w, r) {
                        (Token::Idx(p), held) if self.held_ok(held) => {
                            // Taking a reference costs the scanner no fire (as `Scan`).
                            let clk = &mut self.scan.clk;
                            if rw > clk.t {
                                clk.stall_in += rw - clk.t;
                                clk.t = rw;
                            }
                            io.pop(REF_SCAN, clk.t);
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
                            let at = self.scan.clk.fire(rw, 0);
                            io.pop(REF_SCAN, at);
                            let crd = Token::Stop { level: level + 1, gap: gap + 1 };
                            let rc = self.scan.clk.ready(at);
                            let rs = self.send_crd(io, rc, crd);
                            let at = self.repeat.fire(rs.max(rp), 0);
                            io.pop(REF_REP, at);
                            self.repeat_sent += 1;
                            let rr = self.repeat.ready(at);
                            let out = Token::Stop { level: lr + 1, gap: gr + 1 };
                            let rep = self.rep_value(rr, out);
                            let vs = step(&mut self.scan_array, rc);
                            self.multiply(io, rep, (vs, crd), free)?;
                        }
                        (Token::Done, Token::Done) => {
                            let at = self.scan.clk.fire(rw, 0);
                            io.pop(REF_SCAN, at);
                            self.scan.state = ScanState::Finished;
                            let rc = self.scan.clk.ready(at);
                            let rs = self.send_crd(io, rc, Token::Done);
                            let at = self.repeat.fire(rs.max(rp), 0);
                            io.pop(REF_REP, at);
                            self.repeat_sent += 1;
                            let rr = self.repeat.ready(at);
                            let rep = self.rep_value(rr, Token::Done);
                            let vs = step(&mut self.scan_array, rc);
                            self.multiply(io, rep, (vs, Token::Done), free)?;
                            self.finished = true;
                            self.publish();
                        }
                        _ => return Err(self.bail("reference streams the fused loop does not model")),
                    }
                }
                ScanState::Finished => return Err(self.bail("input after the end")),
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
        self.ops
    }
}
