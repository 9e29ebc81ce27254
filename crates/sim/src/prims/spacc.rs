//! Sparse accumulators of order 1 and 2 (hierarchical form, sam-semantics.md §4.11).

use std::collections::BTreeMap;

use fuseflow_graph::ReduceKind;

use crate::io::{Io, Primitive};
use crate::tile::TileAcc;
use crate::{SimError, Token};

/// What a reduction starts from: the identity of `op`.
pub(crate) fn reduce_init(op: ReduceKind) -> f64 {
    match op {
        ReduceKind::Sum => 0.0,
        ReduceKind::Max => f64::NEG_INFINITY,
    }
}

/// `a` and `b` reduced by `op`.
#[inline(always)]
pub(crate) fn combine(op: ReduceKind, a: f64, b: f64) -> f64 {
    match op {
        ReduceKind::Sum => a + b,
        ReduceKind::Max => a.max(b),
    }
}

/// Sorts `(crd, val)` pairs by coordinate, stably: equal coordinates keep their arrival order,
/// so that [`merge`] combines them in that order (floating-point results depend on it). Long
/// lists use a least-significant-digit radix sort over the bytes in which coordinates differ,
/// with `scratch` as its second buffer.
fn sort_stable(pairs: &mut Vec<(u32, f64)>, scratch: &mut Vec<(u32, f64)>) {
    if pairs.len() < 64 {
        pairs.sort_by_key(|p| p.0);
        return;
    }
    let (mut all, mut any) = (u32::MAX, 0);
    for p in pairs.iter() {
        all &= p.0;
        any |= p.0;
    }
    let differ = all ^ any;
    scratch.clear();
    scratch.resize(pairs.len(), (0, 0.0));
    for shift in [0, 8, 16, 24] {
        if (differ >> shift) & 0xff == 0 {
            continue;
        }
        let mut start = [0usize; 256];
        for p in pairs.iter() {
            start[(p.0 >> shift) as usize & 0xff] += 1;
        }
        let mut sum = 0;
        for s in start.iter_mut() {
            let n = *s;
            *s = sum;
            sum += n;
        }
        for &p in pairs.iter() {
            let d = (p.0 >> shift) as usize & 0xff;
            scratch[start[d]] = p;
            start[d] += 1;
        }
        std::mem::swap(pairs, scratch);
    }
}

/// Sorts `(crd, val)` pairs and merges equal coordinates.
/// In tile mode (`tiles`), values are tile ids: they combine in the arena, and each merged
/// result has the reduced variable's in-tile axis removed.
pub(crate) fn merge(
    op: ReduceKind,
    tiles: Option<&TileAcc>,
    pairs: &mut Vec<(u32, f64)>,
    scratch: &mut Vec<(u32, f64)>,
) -> Result<(), String> {
    if tiles.is_none() && merge_dense(op, pairs, scratch) {
        return Ok(());
    }
    sort_stable(pairs, scratch);
    let mut w = 0;
    for r in 0..pairs.len() {
        if w > 0 && pairs[w - 1].0 == pairs[r].0 {
            pairs[w - 1].1 = match tiles {
                Some(t) => t.combine(op, pairs[w - 1].1, pairs[r].1)?,
                None => combine(op, pairs[w - 1].1, pairs[r].1),
            };
        } else {
            pairs[w] = pairs[r];
            w += 1;
        }
    }
    pairs.truncate(w);
    if let Some(t) = tiles {
        for p in pairs.iter_mut() {
            p.1 = t.finish(op, p.1)?;
        }
    }
    Ok(())
}

/// [`merge`] through a dense accumulator over the coordinates' range, when the range is not
/// much larger than the list (rows of dense results, the usual case): every value is combined
/// into its coordinate's slot in arrival order, exactly the order the stable sort would give,
/// so results are bit for bit those of sorting. `scratch` holds the slots (`.0` = whether the
/// slot has a value). Returns false, leaving `pairs` alone, when the range is too sparse.
fn merge_dense(op: ReduceKind, pairs: &mut Vec<(u32, f64)>, scratch: &mut Vec<(u32, f64)>) -> bool {
    let Some(&(first, _)) = pairs.first() else { return true };
    let (lo, hi) = pairs.iter().fold((first, first), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let range = (hi - lo) as usize + 1;
    if pairs.len() < 64 || range > 2 * pairs.len() {
        return false;
    }
    scratch.clear();
    scratch.resize(range, (0, 0.0));
    for &(c, v) in pairs.iter() {
        let slot = &mut scratch[(c - lo) as usize];
        slot.1 = if slot.0 == 0 { v } else { combine(op, slot.1, v) };
        slot.0 = 1;
    }
    pairs.clear();
    pairs.extend(scratch.iter().enumerate().filter(|(_, s)| s.0 != 0).map(|(i, s)| (lo + i as u32, s.1)));
    true
}

/// The value token of an accumulated value: a tile id in tile mode.
#[inline]
fn val_token(tiles: bool, v: f64) -> Token {
    if tiles {
        Token::Tile(v as u32)
    } else {
        Token::Val(v)
    }
}

/// Checks the token that follows a fiber closed by `S_l` one stream further in: `S0` must be
/// followed by another coordinate, `S_l` (l ≥ 1) by `S_{l-1}`. `None` = no constraint.
pub(crate) fn follows(expect: Option<u8>, tok: Token) -> bool {
    match expect {
        None => true,
        Some(l) => match tok {
            Token::Idx(_) | Token::Empty => l == 0,
            Token::Stop { level, .. } => l > 0 && level == l - 1,
            _ => false,
        },
    }
}

/// Whether `tok` is a stop of this level.
pub(crate) fn stop_of(tok: Token, level: u8) -> bool {
    matches!(tok, Token::Stop { level: l, .. } if l == level)
}

/// What a step of [`flush`] did.
pub(crate) enum Flushed {
    /// Nothing: an output is full.
    Blocked,
    /// Sent entries; more (or the stop) to come.
    Progress,
    /// Sent the closing stop: the accumulator is drained.
    Done,
}

/// Sends an order-1 accumulator's merged entries `acc[*next..]` (coordinates on output 0,
/// values on output 1), one fire each, then `stop` on both outputs.
pub(crate) fn flush(io: &mut Io<'_>, acc: &[(u32, f64)], next: &mut usize, stop: Token, tiles: bool) -> Flushed {
    // Batch path: a run of accumulated entries.
    let room = io.batch_room(0..2);
    if room > 0 && *next < acc.len() {
        let n = room.min(acc.len() - *next);
        let mut clk = io.clock();
        let [o0, o1] = io.channels([io.out_chan(0), io.out_chan(1)]);
        let (mut o0, mut o1) = (o0.writer(n), o1.writer(n));
        let mut k = 0;
        for &(c, v) in &acc[*next..*next + n] {
            let (Some(f0), Some(f1)) = (o0.free_at(), o1.free_at()) else { break };
            let at = clk.fire(0, f0.max(f1));
            o0.push(clk.ready(at), Token::Idx(c));
            o1.push(clk.ready(at), val_token(tiles, v));
            k += 1;
        }
        drop((o0, o1));
        io.set_clock(clk);
        io.replicate(0, k);
        io.replicate(1, k);
        *next += k;
        if k > 0 {
            return Flushed::Progress;
        }
    }
    let Some(free) = io.outs_free(0..2) else { return Flushed::Blocked };
    let at = io.fire(0, free);
    if *next < acc.len() {
        let (c, v) = acc[*next];
        io.push(0, at, Token::Idx(c));
        io.push(1, at, val_token(tiles, v));
        *next += 1;
        Flushed::Progress
    } else {
        io.push(0, at, stop);
        io.push(1, at, stop);
        Flushed::Done
    }
}

enum S1 {
    Outer,
    Inner,
    Flush { next: usize, stop: Token },
    Finished,
}

/// Order-1 accumulator: `reduced crd, inner crd, val → inner crd, val`.
pub struct Spacc1 {
    op: ReduceKind,
    state: S1,
    acc: Vec<(u32, f64)>,
    /// Second buffer of the sort.
    scratch: Vec<(u32, f64)>,
    /// Whether the current reduced fiber has held a coordinate.
    fiber_data: bool,
    /// Level of the stop that closed the last inner fiber (checked against the reduced stream).
    expect: Option<u8>,
    /// Comal's timing ([`crate::Quirks::spacc_burst`]).
    burst: bool,
    /// With `burst`: ready cycle of the reduced coordinate taken without a fire.
    hold: u64,
    /// Operations performed (FLOPs).
    pub ops: u64,
    /// Tile mode: values are tiles of a blocked run.
    tiles: Option<TileAcc>,
}

impl Spacc1 {
    /// An accumulator for this operation.
    pub fn new(op: ReduceKind) -> Spacc1 {
        Spacc1 {
            op,
            state: S1::Outer,
            acc: Vec::new(),
            scratch: Vec::new(),
            fiber_data: false,
            expect: None,
            burst: false,
            hold: 0,
            ops: 0,
            tiles: None,
        }
    }

    /// With `burst`, times the accumulator like Comal's ([`crate::Quirks::spacc_burst`]).
    pub fn with_burst(mut self, burst: bool) -> Spacc1 {
        self.burst = burst;
        self
    }

    /// Accumulates tiles (a blocked run): values are [`Token::Tile`]s.
    pub fn with_tiles(mut self, tiles: TileAcc) -> Spacc1 {
        self.tiles = Some(tiles);
        self
    }
}

/// Comal's drain: every pending token of `out` (per output port) is sent by one fire at `at`
/// on unbounded outputs. Returns false, sending nothing, when an output is bounded (the drain
/// then goes one token per fire).
fn burst_send(io: &mut Io<'_>, at: u64, ports: usize, out: &mut dyn Iterator<Item = (usize, Token)>) -> bool {
    if (0..ports).any(|p| io.bounded(p)) {
        return false;
    }
    for (p, t) in out {
        io.push(p, at, t);
    }
    true
}

impl Primitive for Spacc1 {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        loop {
            match self.state {
                S1::Finished => break,
                S1::Outer => {
                    let Some((ready, tok)) = io.head(0) else { break };
                    if !follows(self.expect, tok) {
                        let l = self.expect.unwrap_or(0);
                        return Err(io.err(format!("inner fiber closed by S{l} but the reduced stream holds {tok}")));
                    }
                    match tok {
                        Token::Idx(_) | Token::Empty => {
                            if self.burst {
                                // Comal peeks the reduced coordinate while it reads the fiber.
                                io.pop(0, ready.max(io.t));
                                self.hold = ready;
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(0, at);
                            }
                            self.fiber_data = true;
                            self.expect = None;
                            self.state = S1::Inner;
                        }
                        Token::Stop { level, .. } => {
                            let at = if !self.fiber_data {
                                // Empty reduced fiber: the inner streams hold a bare stop.
                                let Some((r1, t1)) = io.head(1) else { break };
                                let Some((r2, t2)) = io.head(2) else { break };
                                if !stop_of(t1, level + 1) || !stop_of(t2, level + 1) {
                                    return Err(io.err(format!(
                                        "empty reduced fiber closed by {tok} but the inner streams hold {t1}, {t2}"
                                    )));
                                }
                                let at = io.fire(ready.max(r1).max(r2), 0);
                                io.pop(0, at);
                                io.pop(1, at);
                                io.pop(2, at);
                                at
                            } else if self.burst {
                                // Comal drains once the next token of every input is there.
                                let Some((r1, _)) = io.head(1) else { break };
                                let Some((r2, _)) = io.head(2) else { break };
                                let at = io.fire(ready.max(r1).max(r2), 0);
                                io.pop(0, at);
                                at
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(0, at);
                                at
                            };
                            merge(self.op, self.tiles.as_ref(), &mut self.acc, &mut self.scratch)
                                .map_err(|e| io.err(e))?;
                            let tiles = self.tiles.is_some();
                            self.fiber_data = false;
                            self.expect = None;
                            self.state = S1::Flush { next: 0, stop: tok };
                            if self.burst {
                                let acc = &self.acc;
                                let mut out = acc
                                    .iter()
                                    .flat_map(|&(c, v)| [(0, Token::Idx(c)), (1, val_token(tiles, v))])
                                    .chain([(0, tok), (1, tok)]);
                                if burst_send(io, at, 2, &mut out) {
                                    self.acc.clear();
                                    self.state = S1::Outer;
                                }
                            }
                        }
                        Token::Done => {
                            let Some((r1, t1)) = io.head(1) else { break };
                            let Some((r2, t2)) = io.head(2) else { break };
                            let Some(free) = io.outs_free(0..2) else { break };
                            if t1 != Token::Done || t2 != Token::Done {
                                return Err(io.err(format!("reduced stream done but inner holds {t1}, {t2}")));
                            }
                            let at = io.fire(ready.max(r1).max(r2), free);
                            io.pop(0, at);
                            io.pop(1, at);
                            io.pop(2, at);
                            io.push(0, at, Token::Done);
                            io.push(1, at, Token::Done);
                            self.state = S1::Finished;
                        }
                        other => return Err(io.err(format!("unexpected token {other} on the reduced stream"))),
                    }
                    progress = true;
                }
                S1::Inner => {
                    // With `burst`, the reduced coordinate (taken without a fire) bounds every
                    // step of its fiber, as Comal keeps peeking it.
                    let hold = if self.burst { self.hold } else { 0 };
                    // Batch path: a run of coordinate-value pairs is accumulated with the
                    // channels in hand (no outputs); anything else goes the per-token way.
                    if let (Some((_, Token::Idx(_))), Some((_, Token::Val(_)))) = (io.head(1), io.head(2)) {
                        let mut clk = io.clock();
                        let [ci, vi] = io.channels([io.in_chan(1), io.in_chan(2)]);
                        let (mut ci, mut vi) = (ci.reader(), vi.reader());
                        while let (Some((r1, Token::Idx(c))), Some((r2, Token::Val(v)))) = (ci.head(), vi.head()) {
                            let at = clk.fire(r1.max(r2).max(hold), 0);
                            ci.pop(at);
                            vi.pop(at);
                            self.acc.push((c, v));
                            self.ops += 1;
                        }
                        drop((ci, vi));
                        io.set_clock(clk);
                        progress = true;
                        continue;
                    }
                    let Some((r1, c)) = io.head(1) else { break };
                    let Some((r2, v)) = io.head(2) else { break };
                    let at = io.fire(r1.max(r2).max(hold), 0);
                    io.pop(1, at);
                    io.pop(2, at);
                    match (c, v) {
                        (Token::Idx(c), Token::Val(v)) => {
                            self.acc.push((c, v));
                            self.ops += 1;
                        }
                        // A tile id, exact as an f64.
                        (Token::Idx(c), Token::Tile(t)) if self.tiles.is_some() => {
                            self.acc.push((c, t as f64));
                            self.ops += 1;
                        }
                        // An absent value is an implicit 0: nothing to a sum, but a max at
                        // that coordinate takes it into account.
                        (Token::Idx(c), Token::Empty) => {
                            if self.op == ReduceKind::Max {
                                self.acc.push((c, 0.0));
                            }
                        }
                        // An absent coordinate contributes nothing.
                        (Token::Empty, Token::Val(_) | Token::Tile(_) | Token::Empty) => {}
                        (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) if a == b => {
                            self.expect = Some(a);
                            self.state = S1::Outer;
                        }
                        (a, b) => return Err(io.err(format!("misaligned inner streams {a} and {b}"))),
                    }
                    progress = true;
                }
                S1::Flush { ref mut next, stop } => match flush(io, &self.acc, next, stop, self.tiles.is_some()) {
                    Flushed::Blocked => break,
                    Flushed::Progress => progress = true,
                    Flushed::Done => {
                        self.acc.clear();
                        self.state = S1::Outer;
                        progress = true;
                    }
                },
            }
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        matches!(self.state, S1::Finished)
    }
}

enum S2 {
    Outer,
    Middle,
    Inner,
    Flush,
    Finished,
}

/// Order-2 accumulator: `reduced crd, middle crd, inner crd, val → middle crd, inner crd, val`.
pub struct Spacc2 {
    op: ReduceKind,
    state: S2,
    acc: BTreeMap<u32, Vec<(u32, f64)>>,
    /// Second buffer of the sort.
    scratch: Vec<(u32, f64)>,
    cur_mid: Option<u32>,
    fiber_data: bool,
    middle_data: bool,
    /// Level of the stop that closed the last middle fiber (checked against the reduced stream).
    expect_outer: Option<u8>,
    /// Level of the stop that closed the last inner fiber (checked against the middle stream).
    expect_mid: Option<u8>,
    /// Pending output tokens of a flush: (port, token), sent one fire per middle/inner step.
    out: std::collections::VecDeque<[Option<Token>; 3]>,
    /// Comal's timing ([`crate::Quirks::spacc_burst`]).
    burst: bool,
    /// With `burst`: ready cycles of the reduced and middle coordinates taken without a fire.
    hold: [u64; 2],
    /// Operations performed (FLOPs).
    pub ops: u64,
    /// Tile mode: values are tiles of a blocked run.
    tiles: Option<TileAcc>,
}

impl Spacc2 {
    /// An accumulator for this operation.
    pub fn new(op: ReduceKind) -> Spacc2 {
        Spacc2 {
            op,
            state: S2::Outer,
            acc: BTreeMap::new(),
            scratch: Vec::new(),
            cur_mid: None,
            fiber_data: false,
            middle_data: false,
            expect_outer: None,
            expect_mid: None,
            out: Default::default(),
            burst: false,
            hold: [0; 2],
            ops: 0,
            tiles: None,
        }
    }

    /// With `burst`, times the accumulator like Comal's ([`crate::Quirks::spacc_burst`]).
    pub fn with_burst(mut self, burst: bool) -> Spacc2 {
        self.burst = burst;
        self
    }

    /// Accumulates tiles (a blocked run): values are [`Token::Tile`]s.
    pub fn with_tiles(mut self, tiles: TileAcc) -> Spacc2 {
        self.tiles = Some(tiles);
        self
    }

    /// With `burst`, sends the whole planned flush by the fire at `at` (unbounded outputs).
    fn burst_flush(&mut self, io: &mut Io<'_>, at: u64) {
        if !self.burst {
            return;
        }
        let out = &self.out;
        let mut toks = out.iter().flat_map(|step| step.iter().enumerate().filter_map(|(p, t)| t.map(|t| (p, t))));
        if burst_send(io, at, 3, &mut toks) {
            self.out.clear();
            self.state = S2::Outer;
        }
    }

    /// Queues the flush of the accumulated matrix, closed by the reduced stream's stop.
    fn plan_flush(&mut self, stop: Token) -> Result<(), String> {
        let Token::Stop { level, gap } = stop else { return Ok(()) };
        let acc = std::mem::take(&mut self.acc);
        let n = acc.len();
        if n == 0 {
            let inner = Token::Stop { level: level + 1, gap: gap + 1 };
            self.out.push_back([Some(stop), Some(inner), Some(inner)]);
            return Ok(());
        }
        for (i, (mid, mut pairs)) in acc.into_iter().enumerate() {
            merge(self.op, self.tiles.as_ref(), &mut pairs, &mut self.scratch)?;
            self.out.push_back([Some(Token::Idx(mid)), None, None]);
            for (c, v) in pairs {
                self.out.push_back([None, Some(Token::Idx(c)), Some(val_token(self.tiles.is_some(), v))]);
            }
            let s = if i + 1 == n { Token::stop(level + 1) } else { Token::stop(0) };
            self.out.push_back([None, Some(s), Some(s)]);
        }
        self.out.push_back([Some(stop), None, None]);
        Ok(())
    }
}

impl Primitive for Spacc2 {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        loop {
            match self.state {
                S2::Finished => break,
                S2::Outer => {
                    let Some((ready, tok)) = io.head(0) else { break };
                    if !follows(self.expect_outer, tok) {
                        let l = self.expect_outer.unwrap_or(0);
                        return Err(io.err(format!("middle fiber closed by S{l} but the reduced stream holds {tok}")));
                    }
                    match tok {
                        Token::Idx(_) | Token::Empty => {
                            if self.burst {
                                io.pop(0, ready.max(io.t));
                                self.hold[0] = ready;
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(0, at);
                            }
                            self.fiber_data = true;
                            self.middle_data = false;
                            self.expect_outer = None;
                            self.expect_mid = None;
                            self.state = S2::Middle;
                        }
                        Token::Stop { level, .. } => {
                            let at = if !self.fiber_data {
                                // Empty reduced fiber: bare stops one and two levels up follow.
                                let Some((r1, t1)) = io.head(1) else { break };
                                let Some((r2, t2)) = io.head(2) else { break };
                                let Some((r3, t3)) = io.head(3) else { break };
                                if !stop_of(t1, level + 1) || !stop_of(t2, level + 2) || !stop_of(t3, level + 2) {
                                    return Err(io.err(format!(
                                        "empty reduced fiber closed by {tok} but the middle, inner and value \
                                         streams hold {t1}, {t2}, {t3}"
                                    )));
                                }
                                let at = io.fire(ready.max(r1).max(r2).max(r3), 0);
                                io.pop(0, at);
                                io.pop(1, at);
                                io.pop(2, at);
                                io.pop(3, at);
                                at
                            } else if self.burst {
                                let mut r = ready;
                                for p in 1..4 {
                                    let Some((rp, _)) = io.head(p) else { return Ok(progress) };
                                    r = r.max(rp);
                                }
                                let at = io.fire(r, 0);
                                io.pop(0, at);
                                at
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(0, at);
                                at
                            };
                            self.fiber_data = false;
                            self.expect_outer = None;
                            self.plan_flush(tok).map_err(|e| io.err(e))?;
                            self.state = S2::Flush;
                            self.burst_flush(io, at);
                        }
                        Token::Done => {
                            let mut r = ready;
                            for p in 1..4 {
                                let Some((rp, tp)) = io.head(p) else { return Ok(progress) };
                                if tp != Token::Done {
                                    return Err(io.err(format!("reduced stream done but input {p} holds {tp}")));
                                }
                                r = r.max(rp);
                            }
                            let Some(free) = io.outs_free(0..3) else { break };
                            let at = io.fire(r, free);
                            for p in 0..4 {
                                io.pop(p, at);
                            }
                            for p in 0..3 {
                                io.push(p, at, Token::Done);
                            }
                            self.state = S2::Finished;
                        }
                        other => return Err(io.err(format!("unexpected token {other} on the reduced stream"))),
                    }
                    progress = true;
                }
                S2::Middle => {
                    let Some((ready, tok)) = io.head(1) else { break };
                    if !follows(self.expect_mid, tok) {
                        let l = self.expect_mid.unwrap_or(0);
                        return Err(io.err(format!("inner fiber closed by S{l} but the middle stream holds {tok}")));
                    }
                    self.expect_mid = None;
                    match tok {
                        Token::Idx(_) | Token::Empty => {
                            if self.burst {
                                io.pop(1, ready.max(io.t));
                                self.hold[1] = ready;
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(1, at);
                            }
                            self.cur_mid = if let Token::Idx(c) = tok { Some(c) } else { None };
                            self.middle_data = true;
                            self.state = S2::Inner;
                        }
                        Token::Stop { level, .. } => {
                            if !self.middle_data {
                                let Some((r2, t2)) = io.head(2) else { break };
                                let Some((r3, t3)) = io.head(3) else { break };
                                if !stop_of(t2, level + 1) || !stop_of(t3, level + 1) {
                                    return Err(io.err(format!(
                                        "empty middle fiber closed by {tok} but the inner streams hold {t2}, {t3}"
                                    )));
                                }
                                let at = io.fire(ready.max(r2).max(r3), 0);
                                io.pop(1, at);
                                io.pop(2, at);
                                io.pop(3, at);
                            } else if self.burst {
                                // Comal ends the reduced coordinate once the next inner token
                                // and value are there.
                                let Some((r2, _)) = io.head(2) else { break };
                                let Some((r3, _)) = io.head(3) else { break };
                                let at = io.fire(ready.max(r2).max(r3).max(self.hold[0]), 0);
                                io.pop(1, at);
                            } else {
                                let at = io.fire(ready, 0);
                                io.pop(1, at);
                            }
                            self.expect_outer = Some(level);
                            self.state = S2::Outer;
                        }
                        other => return Err(io.err(format!("unexpected token {other} on the middle stream"))),
                    }
                    progress = true;
                }
                S2::Inner => {
                    let Some((r2, c)) = io.head(2) else { break };
                    let Some((r3, v)) = io.head(3) else { break };
                    let hold = if self.burst { self.hold[0].max(self.hold[1]) } else { 0 };
                    let at = io.fire(r2.max(r3).max(hold), 0);
                    io.pop(2, at);
                    io.pop(3, at);
                    match (c, v) {
                        (Token::Idx(c), Token::Val(v)) => {
                            if let Some(m) = self.cur_mid {
                                self.acc.entry(m).or_default().push((c, v));
                                self.ops += 1;
                            }
                        }
                        (Token::Idx(c), Token::Tile(t)) if self.tiles.is_some() => {
                            if let Some(m) = self.cur_mid {
                                self.acc.entry(m).or_default().push((c, t as f64));
                                self.ops += 1;
                            }
                        }
                        // An absent value is an implicit 0: nothing to a sum, but a max at
                        // that coordinate takes it into account.
                        (Token::Idx(c), Token::Empty) => {
                            if let (Some(m), ReduceKind::Max) = (self.cur_mid, self.op) {
                                self.acc.entry(m).or_default().push((c, 0.0));
                            }
                        }
                        // An absent coordinate contributes nothing.
                        (Token::Empty, Token::Val(_) | Token::Tile(_) | Token::Empty) => {}
                        (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) if a == b => {
                            // S0 ends this middle coordinate's fiber; a higher stop also ends the
                            // middle fiber, whose own (absorbed) stop follows on the middle stream.
                            self.expect_mid = Some(a);
                            self.state = S2::Middle;
                        }
                        (a, b) => return Err(io.err(format!("misaligned inner streams {a} and {b}"))),
                    }
                    progress = true;
                }
                S2::Flush => {
                    let Some(step) = self.out.front().copied() else {
                        self.state = S2::Outer;
                        continue;
                    };
                    let mut free = 0;
                    for (p, t) in step.iter().enumerate() {
                        if t.is_some() {
                            let Some(f) = io.out_free(p) else { return Ok(progress) };
                            free = free.max(f);
                        }
                    }
                    let at = io.fire(0, free);
                    for (p, t) in step.iter().enumerate() {
                        if let Some(t) = t {
                            io.push(p, at, *t);
                        }
                    }
                    self.out.pop_front();
                    progress = true;
                }
            }
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        matches!(self.state, S2::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_is_stable_and_matches_the_standard_sort() {
        let mut seed = 7u64;
        for len in [0, 1, 63, 64, 65, 500, 3000] {
            for spread in [1u32, 300, 70_000, u32::MAX] {
                let mut pairs: Vec<(u32, f64)> = (0..len)
                    .map(|i| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((seed >> 33) as u32 % spread.max(1), i as f64)
                    })
                    .collect();
                let mut expected = pairs.clone();
                expected.sort_by_key(|p| p.0);
                sort_stable(&mut pairs, &mut Vec::new());
                assert_eq!(pairs, expected, "len {len} spread {spread}");
            }
        }
    }

    #[test]
    fn the_dense_merge_gives_the_sorted_merge_bit_for_bit() {
        // Values of mixed magnitude make the sum depend on the order of additions.
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut dense_used = 0;
        for len in [0, 1, 63, 64, 65, 500, 3000] {
            for spread in [1u32, 40, 300, 2000, 70_000] {
                for op in [ReduceKind::Sum, ReduceKind::Max] {
                    let base = (next() % 1000) as u32;
                    let pairs: Vec<(u32, f64)> = (0..len)
                        .map(|_| {
                            let v = (next() % 2001) as f64 - 1000.0;
                            (base + (next() as u32 % spread), v * 10f64.powi((next() % 17) as i32 - 8))
                        })
                        .collect();
                    let mut sorted = pairs.clone();
                    let mut scratch = Vec::new();
                    sort_stable(&mut sorted, &mut scratch);
                    let mut expected: Vec<(u32, f64)> = Vec::new();
                    for (c, v) in sorted {
                        match expected.last_mut() {
                            Some(last) if last.0 == c => last.1 = combine(op, last.1, v),
                            _ => expected.push((c, v)),
                        }
                    }
                    let mut got = pairs.clone();
                    if merge_dense(op, &mut got, &mut scratch) {
                        dense_used += 1;
                    } else {
                        merge(op, None, &mut got, &mut scratch).unwrap();
                    }
                    let bits = |v: &[(u32, f64)]| v.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&expected), "len {len} spread {spread} {op:?}");
                }
            }
        }
        assert!(dense_used >= 10, "the dense path ran {dense_used} times");
    }
}
