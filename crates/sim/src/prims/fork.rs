//! Parallel lanes: the fork (Comal `Scatter`) and the gather (Comal `Gather`, with exact stop
//! restoration). `docs/parallel.md` gives the semantics and `docs/hardware.md` the timing.

use crate::io::{Io, Primitive};
use crate::{SimError, Token};

/// Fork: `data → lane₀ … lane_{F−1}`. Data tokens (the elements of the parallelized level,
/// `N` included) go to the lanes round-robin, the lane index advancing across fibers; every
/// stop and `D` goes to every lane in one fire. One fire per input token.
pub struct Fork {
    lanes: usize,
    next: usize,
    finished: bool,
}

impl Fork {
    /// A fork over `lanes` lanes (≥ 1).
    pub fn new(lanes: u32) -> Fork {
        Fork { lanes: (lanes as usize).max(1), next: 0, finished: false }
    }
}

impl Primitive for Fork {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some((ready, tok)) = io.head(0) else { break };
            match tok {
                Token::Stop { .. } | Token::Done => {
                    let Some(free) = io.outs_free(0..self.lanes) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    for l in 0..self.lanes {
                        io.push(l, at, tok);
                    }
                    self.finished = tok == Token::Done;
                }
                Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => {
                    let Some(free) = io.out_free(self.next) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    io.push(self.next, at, tok);
                    self.next = (self.next + 1) % self.lanes;
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

/// Gather: `[control crd,] lane₀ … lane_{F−1} → data`, the inverse of a [`Fork`] for a stream
/// `depth` levels below the parallelized level. Elements are taken from the lanes in the
/// fork's round-robin order. At depth 0 an element is one token; deeper, it is the subtree up
/// to its closing stop (level ≥ depth − 1), and the control stream (the parallelized level's
/// crd stream) says when a fiber of that level ends: the last element's closing stop then
/// closes the fiber with the level the original stream had, and lanes with no element in the
/// fiber give up their lone stop. One fire per output token; stops read from lanes that are
/// dropped cost nothing.
pub struct Gather {
    lanes: usize,
    depth: u8,
    /// Lane of the next element.
    next: usize,
    /// Lane whose element is being copied (depth > 0).
    current: Option<usize>,
    /// The closing stop of the last element copied, not yet sent (depth > 0).
    pending: Option<Token>,
    /// Lanes that consumed the current fiber's closing stop with their last element.
    closed: Vec<bool>,
    /// Whether the current fiber has had an element.
    had: bool,
    finished: bool,
}

impl Gather {
    /// A gather over `lanes` lanes (≥ 1) of a stream `depth` levels below the parallelized
    /// level.
    pub fn new(lanes: u32, depth: u32) -> Gather {
        let lanes = (lanes as usize).max(1);
        Gather {
            lanes,
            depth: depth.min(u8::MAX as u32) as u8,
            next: 0,
            current: None,
            pending: None,
            closed: vec![false; lanes],
            had: false,
            finished: false,
        }
    }

    /// Input port of lane `l`.
    fn port(&self, l: usize) -> usize {
        l + usize::from(self.depth > 0)
    }

    /// When every lane's head is `want`-like (a stop, or `D`): the latest ready cycle.
    fn all_heads(&self, io: &Io<'_>, skip: &[bool], done: bool) -> Result<Option<u64>, SimError> {
        let mut ready = 0;
        for l in (0..self.lanes).filter(|&l| !skip[l]) {
            let Some((r, t)) = io.head(self.port(l)) else { return Ok(None) };
            let ok = if done { t == Token::Done } else { t.is_stop() };
            if !ok {
                let what = if done { "D" } else { "a stop" };
                return Err(io.err(format!("lane {l} has {t} where the fiber ends ({what} expected)")));
            }
            ready = ready.max(r);
        }
        Ok(Some(ready))
    }

    /// Depth 0: elements are single tokens, a stop at the next lane's head ends the fiber.
    fn run_flat(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some((ready, tok)) = io.head(self.port(self.next)) else { break };
            match tok {
                Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => {
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready, free);
                    io.pop(self.port(self.next), at);
                    io.push(0, at, tok);
                    self.next = (self.next + 1) % self.lanes;
                    self.had = true;
                }
                Token::Stop { .. } | Token::Done => {
                    let done = tok == Token::Done;
                    let none = vec![false; self.lanes];
                    let Some(ready) = self.all_heads(io, &none, done)? else { break };
                    let Some(free) = io.out_free(0) else { break };
                    // The stop of the lane that had the fiber's last element is the original's.
                    let from = if self.had { (self.next + self.lanes - 1) % self.lanes } else { self.next };
                    let out = io.head(self.port(from)).map_or(tok, |(_, t)| t);
                    let at = io.fire(ready, free);
                    for l in 0..self.lanes {
                        io.pop(self.port(l), at);
                    }
                    io.push(0, at, out);
                    self.had = false;
                    self.finished = done;
                }
            }
            progress = true;
        }
        Ok(progress)
    }

    /// Depth > 0: element subtrees, fiber ends from the control stream.
    fn run_nested(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let k = self.depth;
        let mut progress = false;
        while !self.finished {
            if let Some(l) = self.current {
                let p = self.port(l);
                let Some((ready, tok)) = io.head(p) else { break };
                match tok {
                    Token::Stop { level, .. } if level + 1 >= k => {
                        // The element's closing stop: held until the next control token says
                        // whether the fiber goes on.
                        let at = io.t.max(ready);
                        io.pop(p, at);
                        self.pending = Some(tok);
                        self.closed[l] = level >= k;
                        self.current = None;
                        self.next = (self.next + 1) % self.lanes;
                        self.had = true;
                    }
                    Token::Done => return Err(io.err(format!("lane {l} ended inside an element"))),
                    Token::Stop { .. } | Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => {
                        let Some(free) = io.out_free(0) else { break };
                        let at = io.fire(ready, free);
                        io.pop(p, at);
                        io.push(0, at, tok);
                    }
                }
                progress = true;
                continue;
            }
            let Some((ready, ctrl)) = io.head(0) else { break };
            match ctrl {
                Token::Idx(_) | Token::Val(_) | Token::Tile(_) | Token::Empty | Token::Rep => {
                    if let Some(Token::Stop { gap, .. }) = self.pending {
                        // The previous element of this fiber closes with its own level.
                        let Some(free) = io.out_free(0) else { break };
                        let at = io.fire(ready, free);
                        io.push(0, at, Token::Stop { level: k - 1, gap });
                        self.pending = None;
                    }
                    io.pop(0, io.t.max(ready));
                    if self.closed[self.next] {
                        return Err(io.err(format!("lane {} closed its fiber before its last element", self.next)));
                    }
                    self.current = Some(self.next);
                }
                Token::Stop { level: m, .. } => {
                    let skip = self.closed.clone();
                    let Some(lanes_ready) = self.all_heads(io, &skip, false)? else { break };
                    let Some(free) = io.out_free(0) else { break };
                    let want = m.saturating_add(k);
                    // The last element's closing stop, or (an empty fiber) the lanes' lone one.
                    let out = if let Some(Token::Stop { level, gap }) = self.pending {
                        if level != want {
                            return Err(io.err(format!(
                                "the fiber's last element closed with S{level}, the control stream ends it with S{m} (S{want} expected)"
                            )));
                        }
                        Token::Stop { level, gap }
                    } else {
                        io.head(self.port(0)).map_or(Token::stop(want), |(_, t)| t)
                    };
                    if self.had && self.pending.is_none() {
                        return Err(io.err("a fiber's elements left no closing stop"));
                    }
                    let at = io.fire(ready.max(lanes_ready), free);
                    io.pop(0, at);
                    for l in (0..self.lanes).filter(|&l| !skip[l]) {
                        io.pop(self.port(l), at);
                    }
                    io.push(0, at, out);
                    self.pending = None;
                    self.had = false;
                    self.closed.iter_mut().for_each(|c| *c = false);
                }
                Token::Done => {
                    let none = vec![false; self.lanes];
                    let Some(lanes_ready) = self.all_heads(io, &none, true)? else { break };
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready.max(lanes_ready), free);
                    io.pop(0, at);
                    for l in 0..self.lanes {
                        io.pop(self.port(l), at);
                    }
                    io.push(0, at, Token::Done);
                    self.finished = true;
                }
            }
            progress = true;
        }
        Ok(progress)
    }
}

impl Primitive for Gather {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        if self.depth == 0 {
            self.run_flat(io)
        } else {
            self.run_nested(io)
        }
    }
    fn done(&self) -> bool {
        self.finished
    }
}
