//! Repeat-signal generator, repeater and coordinate dropper.

use crate::io::{Io, Primitive};
use crate::{SimError, Token};

/// Repeat-signal generator: data and `N` → `R`, any stop → `S` (level dropped), `D` → `D`.
#[derive(Default)]
pub struct RepSig {
    finished: bool,
}

impl Primitive for RepSig {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            // Batch path (unbounded output), with the same fires as the per-token path below.
            let finished = &mut self.finished;
            let moved = io.map1(0, 0, |clk, ready, free, tok| {
                let out = match tok {
                    Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => Token::Rep,
                    Token::Stop { .. } => Token::stop(0),
                    Token::Done => {
                        *finished = true;
                        Token::Done
                    }
                };
                Some((clk.fire(ready, free), out))
            });
            if moved > 0 {
                progress = true;
                continue;
            }
            let Some((ready, tok)) = io.head(0) else { break };
            let Some(free) = io.out_free(0) else { break };
            let at = io.fire(ready, free);
            io.pop(0, at);
            let out = match tok {
                Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => Token::Rep,
                Token::Stop { .. } => Token::stop(0),
                Token::Done => {
                    self.finished = true;
                    Token::Done
                }
            };
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// Repeater: `payload, repsig → payload`. Emits the held payload token on each `R`; on `S`
/// consumes it and closes the fiber with the stop-token increment rule.
#[derive(Default)]
pub struct Repeat {
    /// An `S` consumed a data (or `N`) head; the fiber's closing stop waits for the next payload
    /// token (look-ahead). Kept as a state so the look-ahead needs only one buffered token.
    closing: bool,
    finished: bool,
}

impl Primitive for Repeat {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            if self.closing {
                let Some((ready, next)) = io.head(0) else { break };
                let Some(free) = io.out_free(0) else { break };
                let at = io.fire(ready, free);
                let out = match next {
                    Token::Stop { level, .. } => {
                        io.pop(0, at);
                        Token::stop(level + 1)
                    }
                    _ => Token::stop(0),
                };
                io.push(0, at, out);
                self.closing = false;
                progress = true;
                continue;
            }
            let Some((sig_ready, sig)) = io.head(1) else { break };
            let Some((in_ready, head)) = io.head(0) else { break };
            // Batch path: a run of `R` repeats the held data token.
            if sig == Token::Rep && !head.is_stop() && head != Token::Done {
                let n = io.batch_room(0..1).min(io.in_len(1));
                if n > 0 {
                    let mut clk = io.clock();
                    let [s, o] = io.channels([io.in_chan(1), io.out_chan(0)]);
                    let (mut s, mut o) = (s.reader(), o.writer(n));
                    let mut k = 0;
                    while let (true, Some((r, Token::Rep))) = (k < n, s.head()) {
                        let Some(free) = o.free_at() else { break };
                        let at = clk.fire(r.max(in_ready), free);
                        s.pop(at);
                        o.push(clk.ready(at), head);
                        k += 1;
                    }
                    drop((s, o));
                    io.set_clock(clk);
                    io.replicate(0, k);
                    if k > 0 {
                        progress = true;
                        continue;
                    }
                }
            }
            let Some(free) = io.out_free(0) else { break };
            match sig {
                Token::Rep => {
                    if head.is_stop() || head == Token::Done {
                        return Err(io.err(format!("repeat signal R but the input holds {head}")));
                    }
                    let at = io.fire(sig_ready.max(in_ready), free);
                    io.pop(1, at);
                    io.push(0, at, head);
                }
                Token::Stop { .. } => match head {
                    Token::Stop { level, gap } => {
                        let at = io.fire(sig_ready.max(in_ready), free);
                        io.pop(1, at);
                        io.pop(0, at);
                        io.push(0, at, Token::Stop { level: level + 1, gap: gap + 1 });
                    }
                    Token::Done => return Err(io.err("repeat signal S but the input is done")),
                    _ => {
                        // Consume the signal and the head now (this costs no cycle of its own;
                        // the closing stop's fire accounts for it).
                        let ready = sig_ready.max(in_ready);
                        if ready > io.t {
                            io.stall_in += ready - io.t;
                            io.t = ready;
                        }
                        io.pop(1, io.t);
                        io.pop(0, io.t);
                        self.closing = true;
                    }
                },
                Token::Done => {
                    if head != Token::Done {
                        return Err(io.err(format!("repeat signal done but the input holds {head}")));
                    }
                    let at = io.fire(sig_ready.max(in_ready), free);
                    io.pop(1, at);
                    io.pop(0, at);
                    io.push(0, at, Token::Done);
                    self.finished = true;
                }
                other => return Err(io.err(format!("unexpected token {other} on a repeat-signal stream"))),
            }
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// Coordinate dropper: `outer crd, inner → outer crd, inner`. Drops outer coordinates whose
/// inner fiber is empty. The inner stream keeps SAM-simulator shape (its tokens are passed
/// through), but the stop of a dropped fiber is marked as a non-fiber (`gap ≥ 1`) so that
/// writers and reducers downstream skip it.
pub struct CrdDrop {
    /// The outer coordinate whose inner fiber is being read, until its emptiness is known.
    pending: Option<Token>,
    /// Whether an inner fiber is being passed through.
    in_fiber: bool,
    /// Whether the previous outer token was a stop (or none was read yet).
    outer_after_stop: bool,
    /// Level of the stop that closed the last inner fiber, until the outer stream confirms it:
    /// `S0` must be followed by another outer coordinate, `S_l` (l ≥ 1) by the outer `S_{l-1}`.
    expect: Option<u8>,
    finished: bool,
    /// Comal's timing ([`crate::Quirks::crddrop_free_inner`]): inner data tokens pass without
    /// a fire, so a kept outer coordinate and its fiber cost one fire, and the coordinate
    /// leaves with the fiber's stop.
    free_inner: bool,
    /// With `free_inner`: whether the current inner fiber has held a token.
    kept: bool,
}

impl Default for CrdDrop {
    fn default() -> Self {
        CrdDrop {
            pending: None,
            in_fiber: false,
            outer_after_stop: true,
            expect: None,
            finished: false,
            free_inner: false,
            kept: false,
        }
    }
}

impl CrdDrop {
    /// With `free`, inner data tokens pass without a fire ([`crate::Quirks::crddrop_free_inner`]).
    pub fn with_free_inner(mut self, free: bool) -> CrdDrop {
        self.free_inner = free;
        self
    }
}

impl Primitive for CrdDrop {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some(free) = io.outs_free(0..2) else { break };
            if !self.in_fiber {
                let Some((ready, outer)) = io.head(0) else { break };
                if let Some(l) = self.expect {
                    let ok = match outer {
                        Token::Idx(_) | Token::Empty => l == 0,
                        Token::Stop { level, .. } => l > 0 && level == l - 1,
                        _ => false,
                    };
                    if !ok {
                        return Err(io.err(format!("inner fiber closed by S{l} but the outer stream holds {outer}")));
                    }
                }
                match outer {
                    Token::Idx(_) | Token::Empty => {
                        if self.free_inner {
                            // Comal peeks the outer coordinate; its fire is the fiber's stop.
                            let at = ready.max(io.t);
                            io.pop(0, at);
                            io.t = at;
                        } else {
                            let at = io.fire(ready, free);
                            io.pop(0, at);
                        }
                        self.pending = Some(outer);
                        self.in_fiber = true;
                        self.expect = None;
                        self.outer_after_stop = false;
                    }
                    Token::Stop { level, .. } => {
                        if self.outer_after_stop {
                            // Empty outer fiber: the inner stream holds the matching bare stop.
                            let Some((iready, inner)) = io.head(1) else { break };
                            if !matches!(inner, Token::Stop { level: il, .. } if il == level + 1) {
                                return Err(
                                    io.err(format!("empty outer fiber closed by S{level} but inner holds {inner}"))
                                );
                            }
                            let at = io.fire(ready.max(iready), free);
                            io.pop(0, at);
                            io.pop(1, at);
                            io.push(0, at, outer);
                            io.push(1, at, inner);
                        } else {
                            let at = io.fire(ready, free);
                            io.pop(0, at);
                            io.push(0, at, outer);
                        }
                        self.outer_after_stop = true;
                        self.expect = None;
                    }
                    Token::Done => {
                        let Some((iready, inner)) = io.head(1) else { break };
                        if inner != Token::Done {
                            return Err(io.err(format!("outer stream done but inner holds {inner}")));
                        }
                        let at = io.fire(ready.max(iready), free);
                        io.pop(0, at);
                        io.pop(1, at);
                        io.push(0, at, Token::Done);
                        io.push(1, at, Token::Done);
                        self.finished = true;
                    }
                    other => return Err(io.err(format!("unexpected outer token {other}"))),
                }
                progress = true;
                continue;
            }
            if self.free_inner {
                let Some((ready, inner)) = io.head(1) else { break };
                if !matches!(inner, Token::Stop { .. } | Token::Done) {
                    // A data token passes without a fire, once it is there.
                    let at = ready.max(io.t).max(free);
                    io.pop(1, at);
                    io.push(1, at, inner);
                    io.t = at;
                    self.kept = true;
                    progress = true;
                    continue;
                }
            } else if self.pending.is_none() {
                // Batch path: the rest of a fiber's data passes through (unbounded outputs).
                // Output 0 gets nothing here, so its free cycle stays `free0` throughout.
                let free0 = io.out_free(0).unwrap_or(0);
                let moved = io.map1(1, 1, |clk, ready, free, tok| match tok {
                    Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => {
                        Some((clk.fire(ready, free.max(free0)), tok))
                    }
                    _ => None,
                });
                if moved > 0 {
                    progress = true;
                    continue;
                }
            }
            let Some((ready, inner)) = io.head(1) else { break };
            let at = io.fire(ready, free);
            io.pop(1, at);
            match inner {
                Token::Stop { level, gap } => {
                    if std::mem::take(&mut self.kept) {
                        // `free_inner`: the kept coordinate leaves with its fiber's stop.
                        if let Some(c) = self.pending.take() {
                            io.push(0, at, c);
                        }
                        io.push(1, at, inner);
                    } else if self.pending.take().is_some() {
                        io.push(1, at, Token::Stop { level, gap: gap.max(1) });
                    } else {
                        io.push(1, at, inner);
                    }
                    self.in_fiber = false;
                    self.expect = Some(level);
                }
                Token::Done => return Err(io.err("inner stream done inside a fiber")),
                _ => {
                    if let Some(c) = self.pending.take() {
                        io.push(0, at, c);
                    }
                    io.push(1, at, inner);
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
