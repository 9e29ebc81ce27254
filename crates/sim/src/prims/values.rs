//! Value-side primitives: array loads, locators, ALUs and reducers.

use std::sync::Arc;

use fuseflow_graph::{AluOp, ReduceKind, ScalarOp};

use super::spacc::{combine, reduce_init};
use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token};

/// Value array: `ref → val`; `N` loads 0.
///
/// With a memory port, a value's line is requested when its reference arrives, and the value
/// leaves once the line is back (consecutive references into one line share a request).
pub struct Array {
    vals: Arc<Vec<f64>>,
    finished: bool,
    loads: u64,
    mem: Option<Box<MemPort>>,
}

impl Array {
    /// An array over these values.
    pub fn new(vals: Arc<Vec<f64>>) -> Array {
        Array { vals, finished: false, loads: 0, mem: None }
    }

    /// Reads through this memory port.
    pub fn with_memory(mut self, port: MemPort) -> Array {
        self.mem = Some(Box::new(port));
        self
    }
}

impl Primitive for Array {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            // Batch path for loads and stops, with the per-token path's fires; separate
            // closures with and without a memory port keep the ideal one small enough to inline.
            // The memory one is inlined by force: called, it handed its token back through the
            // stack, and reading that back stalled the loop (9 % of a GPT-3 decoder on `rda`).
            let (vals, loads) = (&self.vals, &mut self.loads);
            let load = |tok| match tok {
                Token::Idx(r) => vals.get(r as usize).map(|&v| (Some(r), Token::Val(v))),
                Token::Empty => Some((None, Token::Val(0.0))),
                Token::Stop { .. } => Some((None, tok)),
                _ => None,
            };
            let moved = match &mut self.mem {
                None => io.map1(0, 0, |clk, ready, free, tok| {
                    let (r, out) = load(tok)?;
                    *loads += r.is_some() as u64;
                    Some((clk.fire(ready, free), out))
                }),
                Some(m) => io.map1(
                    0,
                    0,
                    #[inline(always)]
                    |clk, ready, free, tok| {
                        let (r, out) = load(tok)?;
                        let data = match r {
                            Some(r) => {
                                *loads += 1;
                                ready.max(m.fetch(r, ready))
                            }
                            None => ready,
                        };
                        let at = clk.fire(data, free);
                        m.consume(at);
                        Some((at, out))
                    },
                ),
            };
            if moved > 0 {
                progress = true;
                continue;
            }
            let Some((ready, tok)) = io.head(0) else { break };
            let Some(free) = io.out_free(0) else { break };
            let mut data = ready;
            let out = match tok {
                Token::Idx(r) => match self.vals.get(r as usize) {
                    Some(&v) => {
                        self.loads += 1;
                        if let Some(m) = &mut self.mem {
                            data = data.max(m.fetch(r, ready));
                        }
                        Token::Val(v)
                    }
                    None => return Err(io.err(format!("reference {r} out of range for {} values", self.vals.len()))),
                },
                Token::Empty => Token::Val(0.0),
                Token::Stop { .. } => tok,
                Token::Done => {
                    self.finished = true;
                    tok
                }
                other => return Err(io.err(format!("unexpected token {other} on a reference stream"))),
            };
            let at = io.fire(data, free);
            if let Some(m) = &mut self.mem {
                m.consume(at);
            }
            io.pop(0, at);
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn traffic(&self) -> (u64, u64) {
        (4 * self.loads, 0)
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m.requests, m.bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        out.extend(self.mem.as_ref().map(|m| m.bytes));
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// Dense locator: `crd, parent ref → ref` computing `parent * size + crd`.
pub struct Locate {
    size: u32,
    finished: bool,
}

impl Locate {
    /// A locator into a dense level of this size.
    pub fn new(size: u32) -> Locate {
        Locate { size, finished: false }
    }
}

impl Primitive for Locate {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            // Batch path for in-range coordinates, as the per-token path.
            let size = self.size;
            let moved = io.map2(|clk, ready, free, crd, parent| match (crd, parent) {
                (Token::Idx(c), Token::Idx(p)) if c < size => {
                    let pos = p as u64 * size as u64 + c as u64;
                    (pos <= u32::MAX as u64).then(|| (clk.fire(ready, free), Token::Idx(pos as u32)))
                }
                _ => None,
            });
            if moved > 0 {
                progress = true;
                continue;
            }
            let Some((r0, crd)) = io.head(0) else { break };
            let Some((r1, parent)) = io.head(1) else { break };
            let Some(free) = io.out_free(0) else { break };
            let out = match (crd, parent) {
                (Token::Idx(c), Token::Idx(p)) => {
                    if c >= self.size {
                        return Err(
                            io.err(format!("coordinate {c} out of range for a dense level of size {}", self.size))
                        );
                    }
                    let pos = p as u64 * self.size as u64 + c as u64;
                    if pos > u32::MAX as u64 {
                        return Err(io.err(format!("dense position {pos} overflows u32")));
                    }
                    Token::Idx(pos as u32)
                }
                (Token::Empty, Token::Idx(_) | Token::Empty) | (Token::Idx(_), Token::Empty) => Token::Empty,
                (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) if a == b => crd,
                (Token::Done, Token::Done) => {
                    self.finished = true;
                    Token::Done
                }
                (a, b) => return Err(io.err(format!("misaligned inputs {a} and {b}"))),
            };
            let at = io.fire(r0.max(r1), free);
            io.pop(0, at);
            io.pop(1, at);
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// ALU: unary or binary on aligned value streams; stops must agree.
///
/// `N` (an absent operand) counts as 0 (sam-semantics.md §4.9). Unary and scalar operations
/// compute f(0) for it: the compiler iterates an f(0) ≠ 0 operation densely (a union with a
/// range), and an accumulator's value stream then reaches the ALU with `N` where it has no
/// entry.
///
/// Division (binary or with a scalar) is 0 when either operand is 0 or absent, the project's
/// reference semantics: the compiler iterates a quotient as an intersection, so an absent
/// operand means an absent quotient. Under an enclosing union the operands reach the ALU as `N`
/// or as the 0 an array loaded for `N`, and a plain IEEE division would give NaN or ±inf
/// there. (sam-semantics.md §4.9 [rec] suggests an error for a division by `N`; that would
/// reject valid kernels such as `C(i,j) / T(i,j) + C(i,j)` with `T` accumulated.)
pub struct Alu {
    op: AluOp,
    finished: bool,
    /// Operations performed (FLOPs).
    pub ops: u64,
}

impl Alu {
    /// An ALU for this operation.
    pub fn new(op: AluOp) -> Alu {
        Alu { op, finished: false, ops: 0 }
    }
}

/// Division with the reference semantics: 0 when either operand is 0 (or absent).
fn div(x: f64, y: f64) -> f64 {
    if x == 0.0 || y == 0.0 {
        0.0
    } else {
        x / y
    }
}

fn num(t: Token) -> Option<f64> {
    match t {
        Token::Val(v) => Some(v),
        Token::Empty => Some(0.0),
        _ => None,
    }
}

/// The ALU's result on numeric operands (`y` is ignored by unary operations).
#[inline(always)]
fn apply(op: AluOp, binary: bool, x: f64, y: f64) -> f64 {
    match op {
        AluOp::Div => div(x, y),
        AluOp::Scalar { op: ScalarOp::Div, scalar, scalar_first: true } => div(scalar, x),
        AluOp::Scalar { op: ScalarOp::Div, scalar, scalar_first: false } => div(x, scalar),
        op if binary => op.apply2(x, y),
        op => op.apply1(x),
    }
}

/// The ALU's batch path with `f` on numeric operands: values and aligned stops move, anything
/// else is left to the per-token path (which reports it). Returns the tokens moved.
#[inline(always)]
fn batch(io: &mut Io<'_>, binary: bool, ops: &mut u64, f: impl Fn(f64, f64) -> f64) -> usize {
    let mut step = |clk: &mut Clock, ready, free, a, b| {
        let out = match (num(a), num(b)) {
            (Some(x), Some(y)) => {
                *ops += 1;
                Token::Val(f(x, y))
            }
            _ => match (a, b) {
                (Token::Stop { level: la, .. }, Token::Stop { level: lb, .. }) if la == lb => a,
                _ => return None,
            },
        };
        Some((clk.fire(ready, free), out))
    };
    if binary {
        io.map2(&mut step)
    } else {
        io.map1(0, 0, |clk, ready, free, a| step(clk, ready, free, a, a))
    }
}

impl Primitive for Alu {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        let binary = self.op.arity() == 2;
        while !self.finished {
            // Batch path for values and aligned stops, as the per-token path. The hot
            // operations get a loop of their own, so that the per-token work is inlined.
            let moved = match self.op {
                AluOp::Mul => batch(io, true, &mut self.ops, |x, y| AluOp::Mul.apply2(x, y)),
                AluOp::Add => batch(io, true, &mut self.ops, |x, y| AluOp::Add.apply2(x, y)),
                AluOp::Sub => batch(io, true, &mut self.ops, |x, y| AluOp::Sub.apply2(x, y)),
                op => batch(io, binary, &mut self.ops, |x, y| apply(op, binary, x, y)),
            };
            if moved > 0 {
                progress = true;
                continue;
            }
            let Some((r0, a)) = io.head(0) else { break };
            let (r1, b) = if binary {
                let Some(h) = io.head(1) else { break };
                h
            } else {
                (0, a)
            };
            let Some(free) = io.out_free(0) else { break };
            let out = match (num(a), num(b)) {
                (Some(x), Some(y)) => {
                    self.ops += 1;
                    Token::Val(apply(self.op, binary, x, y))
                }
                _ => match (a, b) {
                    (Token::Stop { level: la, .. }, Token::Stop { level: lb, .. }) if la == lb => a,
                    (Token::Done, Token::Done) => {
                        self.finished = true;
                        Token::Done
                    }
                    (Token::Idx(_) | Token::Rep, _) | (_, Token::Idx(_) | Token::Rep) => {
                        let t = if matches!(a, Token::Idx(_) | Token::Rep) { a } else { b };
                        return Err(io.err(format!("unexpected token {t} on a value stream")));
                    }
                    _ => return Err(io.err(format!("misaligned operands {a} and {b}"))),
                },
            };
            let at = io.fire(r0.max(r1), free);
            io.pop(0, at);
            if binary {
                io.pop(1, at);
            }
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// Reducer over the innermost level. A real fiber (stop gap 0) yields its sum (an explicit 0
/// when empty); a stop that only marks an empty outer fiber yields no value.
pub struct Reduce {
    op: ReduceKind,
    acc: f64,
    any: bool,
    /// A stop still to send after the value (when the output was full).
    pending: Option<Token>,
    finished: bool,
    /// Comal's timing ([`crate::Quirks::reduce_stop_with_value`]): the lowered stop leaves
    /// with the value, by the same fire.
    stop_with_value: bool,
    /// Operations performed (FLOPs).
    pub ops: u64,
}

impl Reduce {
    /// A reducer for this operation.
    pub fn new(op: ReduceKind) -> Reduce {
        Reduce { op, acc: reduce_init(op), any: false, pending: None, finished: false, stop_with_value: false, ops: 0 }
    }

    /// With `on`, a closing stop's value and lowered stop leave by one fire
    /// ([`crate::Quirks::reduce_stop_with_value`]).
    pub fn with_stop_with_value(mut self, on: bool) -> Reduce {
        self.stop_with_value = on;
        self
    }
}

impl Primitive for Reduce {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            if let Some(tok) = self.pending {
                let Some(free) = io.out_free(0) else { break };
                let at = io.fire(0, free);
                io.push(0, at, tok);
                self.pending = None;
                self.finished = tok == Token::Done;
                progress = true;
                continue;
            }
            // Batch path: a run of values accumulates without output.
            if let Some((_, Token::Val(_))) = io.head(0) {
                let (op, mut acc) = (self.op, self.acc);
                let mut clk = io.clock();
                let [i] = io.channels([io.in_chan(0)]);
                let mut i = i.reader();
                while let Some((ready, Token::Val(v))) = i.head() {
                    let at = clk.fire(ready, 0);
                    i.pop(at);
                    acc = combine(op, acc, v);
                    self.ops += 1;
                }
                drop(i);
                io.set_clock(clk);
                self.acc = acc;
                self.any = true;
                progress = true;
                continue;
            }
            let Some((ready, tok)) = io.head(0) else { break };
            match tok {
                Token::Val(v) => {
                    let at = io.fire(ready, 0);
                    io.pop(0, at);
                    self.acc = combine(self.op, self.acc, v);
                    self.any = true;
                    self.ops += 1;
                }
                Token::Empty => {
                    // An absent operand's value is an implicit 0 (as ALUs and arrays read `N`):
                    // it changes a sum by nothing but takes part in a max. No fire, but not
                    // before it has arrived.
                    io.pop(0, ready.max(io.t));
                    match self.op {
                        ReduceKind::Sum => {}
                        ReduceKind::Max => {
                            self.acc = self.acc.max(0.0);
                            self.any = true;
                        }
                    }
                }
                Token::Stop { level, gap } => {
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    if gap == 0 {
                        let v = if self.any { self.acc } else { 0.0 };
                        io.push(0, at, Token::Val(v));
                        self.acc = reduce_init(self.op);
                        self.any = false;
                        if level > 0 && self.stop_with_value && !io.bounded(0) {
                            io.push(0, at, Token::stop(level - 1));
                        } else if level > 0 {
                            self.pending = Some(Token::stop(level - 1));
                        }
                    } else if level > 0 {
                        io.push(0, at, Token::Stop { level: level - 1, gap: gap - 1 });
                    }
                }
                Token::Done => {
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    io.push(0, at, Token::Done);
                    self.finished = true;
                }
                other => return Err(io.err(format!("unexpected token {other} on a value stream"))),
            }
            progress = true;
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        self.finished
    }
}
