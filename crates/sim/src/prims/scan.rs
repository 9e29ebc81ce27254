//! Root generator and level scanners.

use std::sync::Arc;

use crate::channel::Writer;
use crate::io::{Clock, Io, Primitive};
use crate::memory::MemPort;
use crate::{SimError, Token};

/// Root generator: emits `[0, D]`.
#[derive(Default)]
pub struct Root {
    sent: u8,
}

impl Primitive for Root {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while self.sent < 2 {
            let Some(free) = io.out_free(0) else { break };
            let at = io.fire(0, free);
            io.push(0, at, if self.sent == 0 { Token::Idx(0) } else { Token::Done });
            self.sent += 1;
            progress = true;
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        self.sent == 2
    }
}

/// What a scanner reads.
pub enum LevelSource {
    /// A dense level (or a plain range) of this size.
    Dense(u32),
    /// A compressed level.
    Compressed {
        /// Segment array.
        seg: Arc<Vec<u32>>,
        /// Coordinate array.
        crd: Arc<Vec<u32>>,
    },
}

/// A scanner's state (also a filled intersection's scanners', [`super::fill`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ScanState {
    Idle,
    /// Emitting positions `pos..end` of the current fiber; `base` maps positions to dense refs.
    Fiber {
        pos: u32,
        end: u32,
        base: u64,
    },
    /// Fiber finished; the closing stop waits for the next input token (look-ahead).
    Closing,
    Finished,
}

/// A compressed scanner's memory interface: a port per array.
struct ScanMem {
    seg: MemPort,
    crd: MemPort,
    /// Cycle at which the current fiber's bounds (its `seg` entries) are known.
    want: u64,
}

/// Level scanner (compressed or dense): `ref → crd, ref`, with the stop-token increment rule.
///
/// With a memory port (compressed levels only), a fiber's two `seg` entries are requested
/// when its reference arrives, and its coordinates once those entries are back; the fiber
/// starts when its `seg` entries are back and each coordinate waits for its line.
pub struct Scan {
    src: LevelSource,
    state: ScanState,
    /// Fibers looked up (two segment entries each, compressed levels only).
    fibers: u64,
    /// Coordinates emitted.
    coords: u64,
    mem: Option<Box<ScanMem>>,
}

impl Scan {
    /// A scanner over the given level.
    pub fn new(src: LevelSource) -> Scan {
        Scan { src, state: ScanState::Idle, fibers: 0, coords: 0, mem: None }
    }

    /// Reads `seg` and `crd` through these memory ports (ignored for dense levels, which
    /// need no memory).
    pub fn with_memory(mut self, seg: MemPort, crd: MemPort) -> Scan {
        if matches!(self.src, LevelSource::Compressed { .. }) {
            self.mem = Some(Box::new(ScanMem { seg, crd, want: 0 }));
        }
        self
    }
}

/// The scanner's batch path: sends coordinates `pos..pos + n` of the current fiber (dense
/// references are offset by `base`) through the two writers, one fire each as on the per-token
/// path, and returns how many were sent (fewer if a bounded output fills up).
#[inline(always)]
fn emit<const BOUNDED: bool>(
    src: &LevelSource,
    mem: &mut Option<Box<ScanMem>>,
    clk: &mut Clock,
    [o0, o1]: [&mut Writer<'_>; 2],
    (pos, n, base): (u32, u32, u64),
) -> u32 {
    let mut sent = 0;
    match src {
        LevelSource::Dense(_) => {
            for q in pos..pos + n {
                let (Some(f0), Some(f1)) = (o0.free::<BOUNDED>(), o1.free::<BOUNDED>()) else { break };
                let at = clk.fire(0, f0.max(f1));
                o0.push(clk.ready(at), Token::Idx(q));
                o1.push(clk.ready(at), Token::Idx((base + q as u64) as u32));
                sent += 1;
            }
        }
        LevelSource::Compressed { crd, .. } => {
            let crds = &crd[pos as usize..(pos + n) as usize];
            match mem {
                None => {
                    for (q, &c) in (pos..pos + n).zip(crds) {
                        let (Some(f0), Some(f1)) = (o0.free::<BOUNDED>(), o1.free::<BOUNDED>()) else { break };
                        let at = clk.fire(0, f0.max(f1));
                        o0.push(clk.ready(at), Token::Idx(c));
                        o1.push(clk.ready(at), Token::Idx(q));
                        sent += 1;
                    }
                }
                Some(m) => {
                    for (q, &c) in (pos..pos + n).zip(crds) {
                        let (Some(f0), Some(f1)) = (o0.free::<BOUNDED>(), o1.free::<BOUNDED>()) else { break };
                        let at = clk.fire(m.crd.fetch(q, m.want), f0.max(f1));
                        m.crd.consume(at);
                        o0.push(clk.ready(at), Token::Idx(c));
                        o1.push(clk.ready(at), Token::Idx(q));
                        sent += 1;
                    }
                }
            }
        }
    }
    sent
}

impl Primitive for Scan {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        loop {
            match self.state {
                ScanState::Finished => break,
                ScanState::Idle => {
                    let Some((ready, tok)) = io.head(0) else { break };
                    match tok {
                        Token::Idx(p) => {
                            // Taking the reference costs no cycle of its own; the first
                            // coordinate's fire accounts for it.
                            if ready > io.t {
                                io.stall_in += ready - io.t;
                                io.t = ready;
                            }
                            io.pop(0, io.t);
                            self.state = match &self.src {
                                LevelSource::Dense(n) => {
                                    let base = p as u64 * *n as u64;
                                    if base + *n as u64 > u32::MAX as u64 {
                                        return Err(io.err(format!("dense position {base} overflows u32")));
                                    }
                                    ScanState::Fiber { pos: 0, end: *n, base }
                                }
                                LevelSource::Compressed { seg, crd } => {
                                    let p = p as usize;
                                    if p + 1 >= seg.len() {
                                        return Err(io.err(format!(
                                            "reference {p} out of range for a level with {} fibers",
                                            seg.len().saturating_sub(1)
                                        )));
                                    }
                                    let (pos, end) = (seg[p], seg[p + 1]);
                                    if pos > end || end as usize > crd.len() {
                                        return Err(io.err(format!(
                                            "malformed level: segment {p} is {pos}..{end} with {} coordinates",
                                            crd.len()
                                        )));
                                    }
                                    self.fibers += 1;
                                    self.coords += (end - pos) as u64;
                                    if let Some(m) = &mut self.mem {
                                        // The bounds are requested when the reference arrives;
                                        // the fiber cannot start before they are back.
                                        let a = m.seg.fetch(p as u32, ready);
                                        let b = m.seg.fetch(p as u32 + 1, ready);
                                        m.want = a.max(b);
                                        if m.want > io.t {
                                            io.stall_in += m.want - io.t;
                                            io.t = m.want;
                                        }
                                        m.seg.consume(io.t);
                                    }
                                    ScanState::Fiber { pos, end, base: 0 }
                                }
                            };
                            progress = true;
                        }
                        Token::Stop { level, gap } => {
                            let Some(free) = io.outs_free(0..2) else { break };
                            let at = io.fire(ready, free);
                            io.pop(0, at);
                            let out = Token::Stop { level: level + 1, gap: gap + 1 };
                            io.push(0, at, out);
                            io.push(1, at, out);
                            progress = true;
                        }
                        Token::Empty => {
                            let Some(free) = io.outs_free(0..2) else { break };
                            let at = io.fire(ready, free);
                            io.pop(0, at);
                            io.push(0, at, Token::Empty);
                            io.push(1, at, Token::Empty);
                            self.state = ScanState::Closing;
                            progress = true;
                        }
                        Token::Done => {
                            let Some(free) = io.outs_free(0..2) else { break };
                            let at = io.fire(ready, free);
                            io.pop(0, at);
                            io.push(0, at, Token::Done);
                            io.push(1, at, Token::Done);
                            self.state = ScanState::Finished;
                            progress = true;
                        }
                        other => return Err(io.err(format!("unexpected token {other} on a reference stream"))),
                    }
                }
                ScanState::Fiber { ref mut pos, end, base } => {
                    if *pos >= end {
                        self.state = ScanState::Closing;
                        continue;
                    }
                    // Batch path: a run of coordinates goes straight into the output channels'
                    // writers, one fire per coordinate as on the per-token path below.
                    let room = io.batch_room(0..2);
                    if room > 1 {
                        let n = room.min((end - *pos) as usize);
                        let mut clk = io.clock();
                        let bounded = io.bounded(0) || io.bounded(1);
                        let [o0, o1] = io.channels([io.out_chan(0), io.out_chan(1)]);
                        let (mut o0, mut o1) = (o0.writer(n), o1.writer(n));
                        let run = (*pos, n as u32, base);
                        let sent = if bounded {
                            emit::<true>(&self.src, &mut self.mem, &mut clk, [&mut o0, &mut o1], run)
                        } else {
                            emit::<false>(&self.src, &mut self.mem, &mut clk, [&mut o0, &mut o1], run)
                        };
                        let q = *pos + sent;
                        drop((o0, o1));
                        io.set_clock(clk);
                        let moved = (q - *pos) as usize;
                        io.replicate(0, moved);
                        io.replicate(1, moved);
                        *pos = q;
                        if moved > 0 {
                            progress = true;
                            continue;
                        }
                    }
                    let Some(free) = io.outs_free(0..2) else { break };
                    let ready = match &mut self.mem {
                        Some(m) => m.crd.fetch(*pos, m.want),
                        None => 0,
                    };
                    let at = io.fire(ready, free);
                    if let Some(m) = &mut self.mem {
                        m.crd.consume(at);
                    }
                    let (crd, r) = match &self.src {
                        LevelSource::Dense(_) => (*pos, (base + *pos as u64) as u32),
                        LevelSource::Compressed { crd, .. } => (crd[*pos as usize], *pos),
                    };
                    io.push(0, at, Token::Idx(crd));
                    io.push(1, at, Token::Idx(r));
                    *pos += 1;
                    progress = true;
                }
                ScanState::Closing => {
                    let Some((ready, tok)) = io.head(0) else { break };
                    let Some(free) = io.outs_free(0..2) else { break };
                    let at = io.fire(ready, free);
                    let out = match tok {
                        Token::Stop { level, .. } => {
                            io.pop(0, at);
                            Token::stop(level + 1)
                        }
                        _ => Token::stop(0),
                    };
                    io.push(0, at, out);
                    io.push(1, at, out);
                    self.state = ScanState::Idle;
                    progress = true;
                }
            }
        }
        Ok(progress)
    }
    fn done(&self) -> bool {
        matches!(self.state, ScanState::Finished)
    }
    fn traffic(&self) -> (u64, u64) {
        match self.src {
            LevelSource::Dense(_) => (0, 0),
            LevelSource::Compressed { .. } => (8 * self.fibers + 4 * self.coords, 0),
        }
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m.seg.requests + m.crd.requests, m.seg.bytes + m.crd.bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        if let Some(m) = &self.mem {
            out.extend([m.seg.bytes, m.crd.bytes]);
        }
    }
}
