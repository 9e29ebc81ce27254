//! n-ary intersecter and unioner with any number of payload streams per operand.

use fuseflow_graph::JoinKind;

use crate::io::{Io, Primitive};
use crate::{SimError, Token};

/// Whether a payload token lines up with its operand's crd token: data (or `N`) with data (or
/// `N`), equal stop levels, done with done.
fn aligned(crd: Token, payload: Token) -> bool {
    match (crd, payload) {
        (Token::Idx(_) | Token::Empty, Token::Idx(_) | Token::Val(_) | Token::Empty) => true,
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

    /// One step of a two-operand, one-payload-each intersection when both heads are
    /// coordinates (the hot case), with the same timing as the general path. `Some(true)`: a
    /// step was taken; `Some(false)`: blocked; `None`: not applicable, use the general path.
    #[inline]
    fn step_binary(&mut self, io: &mut Io<'_>) -> Result<Option<bool>, SimError> {
        let (Some((r0, t0)), Some((r1, t1))) = (io.head(0), io.head(2)) else { return Ok(Some(false)) };
        let ready = r0.max(r1);
        let (p, target) = match (t0, t1) {
            (Token::Idx(c0), Token::Idx(c1)) if c0 == c1 => {
                let (Some((p0, _)), Some((p1, _))) = (io.head(1), io.head(3)) else { return Ok(Some(false)) };
                let Some(free) = io.outs_free(0..3) else { return Ok(Some(false)) };
                let at = io.fire(ready.max(p0).max(p1), free);
                io.push(0, at, Token::Idx(c0));
                for p in 0..2 {
                    io.pop(2 * p, at);
                    let tok = io.pop(2 * p + 1, at);
                    if !matches!(tok, Token::Idx(_) | Token::Val(_) | Token::Empty) {
                        return Err(io.err(format!("operand {p}: payload holds {tok} against a coordinate")));
                    }
                    io.push(1 + p, at, tok);
                }
                return Ok(Some(true));
            }
            // Drop the lagging operand's coordinates while they stay below the other head.
            (Token::Idx(c0), Token::Idx(c1)) => {
                if c0 < c1 {
                    (0, c1)
                } else {
                    (1, c0)
                }
            }
            // The other operand's fiber is over: drop every coordinate left in this one.
            (Token::Idx(_), Token::Stop { .. }) => (0, u32::MAX),
            (Token::Stop { .. }, Token::Idx(_)) => (1, u32::MAX),
            _ => return Ok(None),
        };
        let (crd_port, pay_port) = (2 * p, 2 * p + 1);
        let Some((pr, _)) = io.head(pay_port) else { return Ok(Some(false)) };
        // The run of drops works on the two channels directly.
        let mut clk = io.clock();
        let [crd, pay] = io.channels([io.in_chan(crd_port), io.in_chan(pay_port)]);
        let mut at = clk.fire(ready.max(pr), 0);
        let bad = loop {
            crd.pop(at);
            let tok = pay.pop(at);
            if !matches!(tok, Token::Idx(_) | Token::Val(_) | Token::Empty) {
                break Some(tok);
            }
            let Some((r, Token::Idx(c))) = crd.head() else { break None };
            if c >= target {
                break None;
            }
            let Some((pr, _)) = pay.head() else { break None };
            at = clk.fire(r.max(pr), 0);
        };
        io.set_clock(clk);
        if let Some(tok) = bad {
            return Err(io.err(format!("operand {p}: payload holds {tok} against a coordinate")));
        }
        Ok(Some(true))
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
        'outer: while !self.finished {
            if self.binary_intersect {
                match self.step_binary(io)? {
                    Some(true) => {
                        progress = true;
                        continue;
                    }
                    Some(false) => break,
                    None => {}
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
