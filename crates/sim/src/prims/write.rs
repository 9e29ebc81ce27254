//! Writers (output sinks) and the token sources/sinks used to drive primitives in tests.

use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token, Written};

/// Adds a word written at `at` to `port`'s line buffer; a writer whose full buffer was sent
/// cannot take another word before the send.
#[inline]
fn write_word(port: &mut MemPort, clk: &mut Clock, at: u64) {
    if let Some(issue) = port.push_word(at) {
        if issue > clk.t {
            clk.stall_out += issue - clk.t;
            clk.t = issue;
        }
    }
}

/// Sends partly filled buffers at `at`; a writer finishes when every write is acknowledged.
fn finish_writes(ports: &mut [MemPort], clk: &mut Clock, at: u64) {
    for p in ports.iter_mut() {
        p.flush(at);
    }
    for p in ports.iter() {
        if p.last_done() > clk.t {
            clk.stall_out += p.last_done() - clk.t;
            clk.t = p.last_done();
        }
    }
}

/// What a writer does with a token other than `D`.
enum Record {
    /// The token was recorded: one fire, and a word written through memory port `port`.
    Word(usize),
    /// Skipped at no cost, but not before it has arrived.
    Skip,
}

/// The consume loop shared by the writers. `record` handles every token but `D` (or rejects
/// it with a message); `D` costs a fire and finishes the writer once its writes (through
/// `mem`, if any) are acknowledged. Works on the input channel directly: a writer has no
/// outputs, so nothing bounds a run but the input.
fn consume(
    io: &mut Io<'_>,
    mut mem: Option<&mut [MemPort]>,
    finished: &mut bool,
    mut record: impl FnMut(Token) -> Result<Record, String>,
) -> Result<bool, SimError> {
    let mut progress = false;
    let mut error = None;
    let mut clk = io.clock();
    let [inp] = io.channels([io.in_chan(0)]);
    let mut inp = inp.reader();
    while let Some((ready, tok)) = inp.head() {
        if tok == Token::Done {
            let at = clk.fire(ready, 0);
            inp.pop(at);
            if let Some(m) = mem {
                finish_writes(m, &mut clk, at);
            }
            *finished = true;
            progress = true;
            break;
        }
        match record(tok) {
            Ok(Record::Word(port)) => {
                let at = clk.fire(ready, 0);
                inp.pop(at);
                if let Some(m) = mem.as_deref_mut() {
                    write_word(&mut m[port], &mut clk, at);
                }
            }
            Ok(Record::Skip) => {
                inp.pop(ready.max(clk.t));
            }
            Err(message) => {
                error = Some(message);
                break;
            }
        }
        progress = true;
    }
    drop(inp);
    io.set_clock(clk);
    match error {
        Some(message) => Err(io.err(message)),
        None => Ok(progress),
    }
}

/// Level writer: appends coordinates to `crd` and, at every stop that ends a fiber of its
/// level (`gap` 0, empty fibers included), the running count to `seg`. Stops that only mark
/// empty outer fibers are skipped, so `seg` has one entry per parent position.
///
/// With memory ports, `crd` and `seg` words are written a line at a time (`seg` starting with
/// its leading 0).
pub struct LevelWrite {
    seg: Vec<u32>,
    crd: Vec<u32>,
    finished: bool,
    /// Memory ports: `[seg, crd]`.
    mem: Option<Box<[MemPort; 2]>>,
}

impl Default for LevelWrite {
    fn default() -> Self {
        LevelWrite { seg: vec![0], crd: Vec::new(), finished: false, mem: None }
    }
}

impl LevelWrite {
    /// Writes `seg` and `crd` through these memory ports.
    pub fn with_memory(mut self, seg: MemPort, crd: MemPort) -> LevelWrite {
        self.mem = Some(Box::new([seg.preload(1), crd]));
        self
    }
}

impl Primitive for LevelWrite {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        if self.finished {
            return Ok(false);
        }
        let (seg, crd) = (&mut self.seg, &mut self.crd);
        consume(io, self.mem.as_deref_mut().map(|m| &mut m[..]), &mut self.finished, |tok| match tok {
            Token::Idx(c) => {
                crd.push(c);
                Ok(Record::Word(1))
            }
            Token::Stop { gap: 0, .. } => {
                seg.push(crd.len() as u32);
                Ok(Record::Word(0))
            }
            Token::Stop { .. } => Ok(Record::Skip),
            other => Err(format!("level writer received {other}")),
        })
    }
    fn traffic(&self) -> (u64, u64) {
        (0, 4 * (self.seg.len() as u64 - 1 + self.crd.len() as u64))
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m[0].requests + m[1].requests, m[0].bytes + m[1].bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        if let Some(m) = &self.mem {
            out.extend(m.iter().map(|p| p.bytes));
        }
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn written(&mut self) -> Option<Written> {
        Some(Written::Level { seg: std::mem::take(&mut self.seg), crd: std::mem::take(&mut self.crd) })
    }
    fn footprint(&self) -> usize {
        4 * (self.seg.capacity() + self.crd.capacity())
    }
}

/// Value writer: appends values in order; stops are ignored. With a memory port, values are
/// written a line at a time.
#[derive(Default)]
pub struct ValWrite {
    vals: Vec<f64>,
    finished: bool,
    mem: Option<Box<[MemPort; 1]>>,
}

impl ValWrite {
    /// Writes through this memory port.
    pub fn with_memory(mut self, port: MemPort) -> ValWrite {
        self.mem = Some(Box::new([port]));
        self
    }
}

impl Primitive for ValWrite {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        if self.finished {
            return Ok(false);
        }
        let vals = &mut self.vals;
        consume(io, self.mem.as_deref_mut().map(|m| &mut m[..]), &mut self.finished, |tok| match tok {
            Token::Val(v) => {
                vals.push(v);
                Ok(Record::Word(0))
            }
            Token::Stop { .. } => Ok(Record::Skip),
            other => Err(format!("value writer received {other}")),
        })
    }
    fn traffic(&self) -> (u64, u64) {
        (0, 4 * self.vals.len() as u64)
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m[0].requests, m[0].bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        if let Some(m) = &self.mem {
            out.extend(m.iter().map(|p| p.bytes));
        }
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn written(&mut self) -> Option<Written> {
        Some(Written::Vals(std::mem::take(&mut self.vals)))
    }
    fn footprint(&self) -> usize {
        8 * self.vals.capacity()
    }
}

/// Emits a fixed token list (test driver).
pub struct Source {
    tokens: Vec<Token>,
    next: usize,
}

impl Source {
    /// A source of these tokens (which should end with `D`).
    pub fn new(tokens: Vec<Token>) -> Source {
        Source { tokens, next: 0 }
    }
}

impl Primitive for Source {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while self.next < self.tokens.len() {
            let Some(free) = io.out_free(0) else { break };
            let at = io.fire(0, free);
            io.push(0, at, self.tokens[self.next]);
            self.next += 1;
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.next == self.tokens.len()
    }
}

/// Records every token it receives (test driver).
#[derive(Default)]
pub struct Sink {
    tokens: Vec<Token>,
    finished: bool,
}

impl Primitive for Sink {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some((ready, tok)) = io.head(0) else { break };
            let at = io.fire(ready, 0);
            io.pop(0, at);
            self.tokens.push(tok);
            self.finished = tok == Token::Done;
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn written(&mut self) -> Option<Written> {
        Some(Written::Tokens(std::mem::take(&mut self.tokens)))
    }
}
