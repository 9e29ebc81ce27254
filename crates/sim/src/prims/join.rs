//! n-ary intersecter and unioner with any number of payload streams per operand.

use fuseflow_graph::JoinKind;

use crate::channel::{Reader, Writer};
use crate::io::{Io, Primitive};
use crate::{SimError, Token};

/// Most input or output ports a join's aligned batch path handles (more go the general way).
const MAX_PORTS: usize = 16;

/// Fewest tokens the aligned batch path is set up for.
const MIN_ALIGNED_BATCH: usize = 32;

/// Whether a payload token lines up with its operand's crd token: data (or `N`) with data (or
/// `N`), equal stop levels, done with done.
fn aligned(crd: Token, payload: Token) -> bool {
    match (crd, payload) {
        (Token::Idx(_) | Token::Empty, Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty) => true,
        (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) => a == b,
        (Token::Done, Token::Done) => true,
        _ => false,
    }
}

/// Joiner. Operand `p` reads its crd stream on input `base[p]` and its payloads on the inputs
/// after it; outputs are the joined crd stream then every operand's payloads in order.
pub struct Join {
    kind: JoinKind,
    /// First input port of each operand.
    base: Vec<usize>,
    /// First output port of each operand's payloads.
    out_base: Vec<usize>,
    payloads: Vec<usize>,
    n_out: usize,
    finished: bool,
    heads: Vec<(u64, Token)>,
    /// Two operands with one payload each, intersected: the hot case with its own fast step.
    binary_intersect: bool,
}

impl Join {
    /// A joiner with `payloads[p]` payload streams for operand `p`.
    pub fn new(kind: JoinKind, payloads: &[u32]) -> Join {
        let mut base = Vec::new();
        let mut out_base = Vec::new();
        let mut i = 0;
        let mut o = 1;
        for &p in payloads {
            base.push(i);
            out_base.push(o);
            i += 1 + p as usize;
            o += p as usize;
        }
        Join {
            kind,
            base,
            out_base,
            payloads: payloads.iter().map(|&p| p as usize).collect(),
            n_out: o,
            finished: false,
            heads: vec![(0, Token::Done); payloads.len()],
            binary_intersect: kind == JoinKind::Intersect && payloads == [1, 1],
        }
    }

    /// Batch path of a two-operand, one-payload-each intersection (the hot case): matches,
    /// runs of dropped coordinates (also against an operand whose fiber is over) and aligned
    /// stops, worked on the seven channels directly, with the general path's timing. Stops at
    /// anything else (`N`, `D`, malformed streams), which the general path then handles.
    /// Needs every output port to feed one channel, or all of them to be unbounded (fan-out
    /// copies are made at the end). Returns whether anything moved.
    fn binary_batch(&mut self, io: &mut Io<'_>) -> bool {
        // Every send consumes a token of both crd inputs, so they bound the sends too.
        let most = io.in_len(0).min(io.in_len(2));
        // At most as many sends as the outputs' soft room; bounded outputs (each feeding one
        // channel) are also checked per send by the writers' `free_at`. Fan-out copies are
        // made at the end, so a bounded port must not fan out. Ports without a channel take
        // anything.
        let connected = || (0..3).filter(|&p| io.fanout(p) > 0);
        if connected().any(|p| io.fanout(p) > 1 && io.bounded(p)) {
            return false;
        }
        let n = connected().map(|p| io.soft_room(p)).min().unwrap_or(usize::MAX).min(most);
        let mut clk = io.clock();
        let [c0, p0, c1, p1, o0, o1, o2] = io.channels_opt([
            Some(io.in_chan(0)),
            Some(io.in_chan(1)),
            Some(io.in_chan(2)),
            Some(io.in_chan(3)),
            io.out_first(0),
            io.out_first(1),
            io.out_first(2),
        ]);
        let (Some(c0), Some(p0), Some(c1), Some(p1)) = (c0, p0, c1, p1) else { unreachable!() };
        let (mut c0, mut p0, mut c1, mut p1) = (c0.reader(), p0.reader(), c1.reader(), p1.reader());
        let mut outs = [o0, o1, o2].map(|o| o.map(|o| o.writer(n)));
        // Earliest send cycle on the outputs (as `Io::outs_free`), `None` when one is full.
        let free = |outs: &[Option<Writer<'_>>; 3]| {
            let mut t = 0;
            for w in outs.iter().flatten() {
                t = t.max(w.free_at()?);
            }
            Some(t)
        };
        let send = |outs: &mut [Option<Writer<'_>>; 3], at: u64, toks: [Token; 3]| {
            for (w, t) in outs.iter_mut().zip(toks) {
                if let Some(w) = w {
                    w.push(at, t);
                }
            }
        };
        let payload = |t: Token| matches!(t, Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty);
        let mut sent = 0;
        let mut moved = false;
        while let (Some((r0, t0)), Some((r1, t1))) = (c0.head(), c1.head()) {
            let ready = r0.max(r1);
            let (lag, target) = match (t0, t1) {
                (Token::Idx(a), Token::Idx(b)) if a == b => {
                    let (Some((q0, x)), Some((q1, y))) = (p0.head(), p1.head()) else { break };
                    if !payload(x) || !payload(y) {
                        break;
                    }
                    let Some(f) = free(&outs) else { break };
                    let at = clk.fire(ready.max(q0).max(q1), f);
                    for c in [&mut c0, &mut p0, &mut c1, &mut p1] {
                        c.pop(at);
                    }
                    send(&mut outs, clk.ready(at), [Token::Idx(a), x, y]);
                    sent += 1;
                    moved = true;
                    continue;
                }
                (Token::Stop { level: l0, gap: g0 }, Token::Stop { level: l1, gap: g1 }) if l0 == l1 => {
                    let (Some((q0, x)), Some((q1, y))) = (p0.head(), p1.head()) else { break };
                    if !aligned(t0, x) || !aligned(t1, y) {
                        break;
                    }
                    let Some(f) = free(&outs) else { break };
                    let at = clk.fire(ready.max(q0).max(q1), f);
                    for c in [&mut c0, &mut p0, &mut c1, &mut p1] {
                        c.pop(at);
                    }
                    send(&mut outs, clk.ready(at), [Token::Stop { level: l0, gap: g0.max(g1) }, x, y]);
                    sent += 1;
                    moved = true;
                    continue;
                }
                // Drop the lagging operand's coordinates while they stay below the other head.
                (Token::Idx(a), Token::Idx(b)) => {
                    if a < b {
                        (0, b)
                    } else {
                        (1, a)
                    }
                }
                // The other operand's fiber is over: drop every coordinate left in this one.
                (Token::Idx(_), Token::Stop { .. }) => (0, u32::MAX),
                (Token::Stop { .. }, Token::Idx(_)) => (1, u32::MAX),
                _ => break,
            };
            let (crd, pay) = if lag == 0 { (&mut c0, &mut p0) } else { (&mut c1, &mut p1) };
            // The first drop needs its payload (else this batch is over); later ones end the
            // run without it. Dropping emits nothing, so it does not wait for output space.
            if !matches!(pay.head(), Some((_, x)) if payload(x)) {
                break;
            }
            let mut ready = ready;
            while let Some((pr, x)) = pay.head() {
                if !payload(x) {
                    break;
                }
                let at = clk.fire(ready.max(pr), 0);
                crd.pop(at);
                pay.pop(at);
                moved = true;
                match crd.head() {
                    Some((r, Token::Idx(c))) if c < target => ready = r,
                    _ => break,
                }
            }
        }
        drop((c0, p0, c1, p1, outs));
        io.set_clock(clk);
        for p in 0..3 {
            io.replicate(p, sent);
        }
        moved
    }

    /// Batch path of the aligned case, any number of operands and payloads: while every
    /// operand's coordinate head is the same coordinate (a union of dense levels, an
    /// intersection that matches), or every one is a stop of one level, each step is one fire
    /// that forwards the coordinate (or stop) and every payload, worked on the channels
    /// directly with the general path's timing. Stops at anything else (a mismatch, `N`, `D`,
    /// a misaligned payload), which the general path then handles or reports. Same output
    /// conditions as [`Join::binary_batch`]. Returns whether anything moved, or `None` when
    /// the inputs hold too few tokens (they only shrink until the activation ends, so the
    /// caller need not try again before then).
    fn aligned_batch(&mut self, io: &mut Io<'_>) -> Option<bool> {
        // Setting up the readers and writers costs more than the general path saves on a few
        // tokens (bounded FIFOs of the usual depths hold fewer than this): check the inputs
        // first, the cheapest test.
        let n_in = io.n_ins();
        let most = (0..n_in).map(|p| io.in_len(p)).min().unwrap_or(0);
        if most < MIN_ALIGNED_BATCH {
            return None;
        }
        let connected = || (0..self.n_out).filter(|&p| io.fanout(p) > 0);
        if connected().any(|p| io.fanout(p) > 1 && io.bounded(p)) {
            return None;
        }
        let n = connected().map(|p| io.soft_room(p)).min().unwrap_or(usize::MAX).min(most);
        if n < MIN_ALIGNED_BATCH {
            return Some(false);
        }
        // Cheap early exit before the readers and writers are set up: the heads must line up.
        let first = io.head(self.base[0]).map(|h| h.1);
        let lined_up = |t: Option<Token>| match (first, t) {
            (Some(Token::Idx(a)), Some(Token::Idx(b))) => a == b,
            (Some(Token::Stop { level: a, .. }), Some(Token::Stop { level: b, .. })) => a == b,
            _ => false,
        };
        if n_in > MAX_PORTS || self.n_out > MAX_PORTS {
            return None;
        }
        if !self.base.iter().all(|&b| lined_up(io.head(b).map(|h| h.1))) {
            return Some(false);
        }
        let mut idx = [None; 2 * MAX_PORTS];
        for (p, slot) in idx[..n_in].iter_mut().enumerate() {
            *slot = Some(io.in_chan(p));
        }
        for (p, slot) in idx[n_in..n_in + self.n_out].iter_mut().enumerate() {
            *slot = io.out_first(p);
        }
        let mut clk = io.clock();
        let mut chans = io.channels_up_to::<{ 2 * MAX_PORTS }>(&idx[..n_in + self.n_out]);
        let mut ins: [Option<Reader<'_>>; MAX_PORTS] =
            std::array::from_fn(|k| if k < n_in { chans[k].take().map(|c| c.reader()) } else { None });
        let mut outs: [Option<Writer<'_>>; MAX_PORTS] =
            std::array::from_fn(|k| if k < self.n_out { chans[n_in + k].take().map(|c| c.writer(n)) } else { None });
        let head = |ins: &[Option<Reader<'_>>], k: usize| ins[k].as_ref().and_then(|r| r.head());
        let union = self.kind == JoinKind::Union;
        let mut sent = 0;
        'batch: while sent < n {
            let Some((_, first)) = head(&ins, self.base[0]) else { break };
            let mut ready = 0;
            let mut out = first;
            for (p, &b) in self.base.iter().enumerate() {
                let Some((r, t)) = head(&ins, b) else { break 'batch };
                match (first, t) {
                    (Token::Idx(a), Token::Idx(c)) if a == c => {}
                    (Token::Stop { level: l0, .. }, Token::Stop { level, gap }) if level == l0 => {
                        // A union's fiber is real if any operand's is; an intersection's only
                        // if every operand's is (as the general path).
                        if let Token::Stop { gap: g, .. } = out {
                            out = Token::Stop { level, gap: if union { g.min(gap) } else { g.max(gap) } };
                        }
                    }
                    _ => break 'batch,
                }
                ready = ready.max(r);
                for k in 0..self.payloads[p] {
                    let Some((q, x)) = head(&ins, b + 1 + k) else { break 'batch };
                    if !aligned(t, x) {
                        break 'batch;
                    }
                    ready = ready.max(q);
                }
            }
            let mut free = 0;
            for w in outs.iter().flatten() {
                let Some(f) = w.free_at() else { break 'batch };
                free = free.max(f);
            }
            let at = clk.fire(ready, free);
            let r = clk.ready(at);
            if let Some(w) = &mut outs[0] {
                w.push(r, out);
            }
            for (p, &b) in self.base.iter().enumerate() {
                for k in b..=b + self.payloads[p] {
                    let Some(rd) = &mut ins[k] else { unreachable!("every input has a channel") };
                    let (_, x) = rd.head().expect("checked above");
                    rd.pop(at);
                    // The coordinate's own token is not forwarded (the joined one is).
                    if k > b {
                        if let Some(w) = &mut outs[self.out_base[p] + k - b - 1] {
                            w.push(r, x);
                        }
                    }
                }
            }
            sent += 1;
        }
        drop((ins, outs));
        io.set_clock(clk);
        for p in 0..self.n_out {
            io.replicate(p, sent);
        }
        Some(sent > 0)
    }

    /// Ready time of operand `p`'s payload heads, or `None` if one is missing.
    fn payload_ready(&self, io: &Io<'_>, p: usize) -> Option<u64> {
        let mut t = 0;
        for k in 0..self.payloads[p] {
            t = t.max(io.head(self.base[p] + 1 + k)?.0);
        }
        Some(t)
    }

    /// Consumes operand `p`'s head (crd and payloads); forwards payloads if `emit`. The payload
    /// heads must be present (see [`Join::payload_ready`]) and aligned with the crd head.
    fn take(&self, io: &mut Io<'_>, p: usize, at: u64, emit: bool) -> Result<(), SimError> {
        let crd = io.pop(self.base[p], at);
        for k in 0..self.payloads[p] {
            let tok = io.pop(self.base[p] + 1 + k, at);
            if !aligned(crd, tok) {
                return Err(io.err(format!("operand {p}: payload {k} holds {tok} against coordinate token {crd}")));
            }
            if emit {
                io.push(self.out_base[p] + k, at, tok);
            }
        }
        Ok(())
    }
}

impl Primitive for Join {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        let n = self.base.len();
        let mut aligned = true;
        'outer: while !self.finished {
            // The batch path takes what it can; the general path below handles the rest.
            if self.binary_intersect && self.binary_batch(io) {
                progress = true;
            }
            if aligned {
                match self.aligned_batch(io) {
                    Some(moved) => progress |= moved,
                    None => aligned = false,
                }
            }
            let Some(free) = io.outs_free(0..self.n_out) else { break };
            let mut ready = 0;
            for p in 0..n {
                let Some(h) = io.head(self.base[p]) else { break 'outer };
                self.heads[p] = h;
                ready = ready.max(h.0);
            }
            // An `N` coordinate is an operand with nothing here: drop it (and its payloads).
            if let Some(p) = (0..n).find(|&p| self.heads[p].1 == Token::Empty) {
                let Some(pr) = self.payload_ready(io, p) else { break };
                let at = io.fire(self.heads[p].0.max(pr), free);
                self.take(io, p, at, false)?;
                progress = true;
                continue;
            }
            let mut min = u32::MAX;
            let mut max = 0u32;
            let mut n_data = 0;
            let mut stop: Option<(u8, u8)> = None;
            let mut n_done = 0;
            for p in 0..n {
                match self.heads[p].1 {
                    Token::Idx(c) => {
                        n_data += 1;
                        min = min.min(c);
                        max = max.max(c);
                    }
                    Token::Stop { level, gap } => match stop {
                        None => stop = Some((level, gap)),
                        Some((l, _)) if l != level => {
                            return Err(io.err(format!("operands disagree on stop level: S{l} and S{level}")))
                        }
                        // Gaps can only differ in unusual graphs. A union's fiber is real if any
                        // operand's is; an intersection's only if every operand's is.
                        Some((l, g)) => {
                            let g = if self.kind == JoinKind::Union { g.min(gap) } else { g.max(gap) };
                            stop = Some((l, g));
                        }
                    },
                    Token::Done => n_done += 1,
                    other => return Err(io.err(format!("unexpected token {other} on a coordinate stream"))),
                }
            }
            if n_done == n {
                for p in 0..n {
                    let Some(pr) = self.payload_ready(io, p) else { break 'outer };
                    ready = ready.max(pr);
                }
                let at = io.fire(ready, free);
                for p in 0..n {
                    self.take(io, p, at, true)?;
                }
                io.push(0, at, Token::Done);
                self.finished = true;
                progress = true;
                continue;
            }
            if n_done > 0 {
                return Err(io.err("an operand finished while another still has tokens"));
            }
            if n_data == 0 {
                let (level, gap) = stop.expect("all operands at a stop");
                for p in 0..n {
                    let Some(pr) = self.payload_ready(io, p) else { break 'outer };
                    ready = ready.max(pr);
                }
                let at = io.fire(ready, free);
                for p in 0..n {
                    self.take(io, p, at, true)?;
                }
                io.push(0, at, Token::Stop { level, gap });
                progress = true;
                continue;
            }
            match self.kind {
                JoinKind::Intersect => {
                    // Drain operands that are behind: data heads below the largest coordinate,
                    // or all data heads when another operand has finished its fiber.
                    let all_match = n_data == n && min == max;
                    let target = if n_data == n { max } else { u32::MAX };
                    // A match needs every payload; a drop only the dropped operands' payloads.
                    let mut pr_all = 0;
                    for p in 0..n {
                        if let Token::Idx(c) = self.heads[p].1 {
                            if all_match || c < target {
                                let Some(pr) = self.payload_ready(io, p) else { break 'outer };
                                pr_all = pr_all.max(pr);
                            }
                        }
                    }
                    if all_match {
                        let at = io.fire(ready.max(pr_all), free);
                        io.push(0, at, Token::Idx(min));
                        for p in 0..n {
                            self.take(io, p, at, true)?;
                        }
                    } else {
                        // Dropping emits nothing, so it does not wait for output space.
                        let at = io.fire(ready.max(pr_all), 0);
                        let mut behind = None;
                        let mut n_behind = 0;
                        for p in 0..n {
                            if let Token::Idx(c) = self.heads[p].1 {
                                if c < target {
                                    self.take(io, p, at, false)?;
                                    behind = Some(p);
                                    n_behind += 1;
                                }
                            }
                        }
                        // Fast path: a single lagging operand keeps dropping, one per fire,
                        // exactly as further iterations of this loop would.
                        if let (1, Some(p)) = (n_behind, behind) {
                            while let Some((r, Token::Idx(c))) = io.head(self.base[p]) {
                                if c >= target {
                                    break;
                                }
                                let Some(pr) = self.payload_ready(io, p) else { break };
                                let at = io.fire(r.max(pr), 0);
                                self.take(io, p, at, false)?;
                            }
                        }
                    }
                }
                JoinKind::Union => {
                    let mut pr_all = 0;
                    for p in 0..n {
                        if self.heads[p].1 == Token::Idx(min) {
                            let Some(pr) = self.payload_ready(io, p) else { break 'outer };
                            pr_all = pr_all.max(pr);
                        }
                    }
                    let at = io.fire(ready.max(pr_all), free);
                    io.push(0, at, Token::Idx(min));
                    for p in 0..n {
                        if self.heads[p].1 == Token::Idx(min) {
                            self.take(io, p, at, true)?;
                        } else {
                            for k in 0..self.payloads[p] {
                                io.push(self.out_base[p] + k, at, Token::Empty);
                            }
                        }
                    }
                }
            }
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
}
