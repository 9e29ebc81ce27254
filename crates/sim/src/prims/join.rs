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
        }
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
                    let mut pr_all = 0;
                    for p in 0..n {
                        if matches!(self.heads[p].1, Token::Idx(_)) {
                            let Some(pr) = self.payload_ready(io, p) else { break 'outer };
                            pr_all = pr_all.max(pr);
                        }
                    }
                    let at = io.fire(ready.max(pr_all), free);
                    if all_match {
                        io.push(0, at, Token::Idx(min));
                        for p in 0..n {
                            self.take(io, p, at, true)?;
                        }
                    } else {
                        let target = if n_data == n { max } else { u32::MAX };
                        for p in 0..n {
                            if let Token::Idx(c) = self.heads[p].1 {
                                if c < target {
                                    self.take(io, p, at, false)?;
                                }
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
