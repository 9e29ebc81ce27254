//! The view a primitive has of its channels and its local clock during one activation.

use crate::{Channel, SimError, Token};

/// A node's ports and clock. Every fire goes through [`Io::fire`], which is where the timing
/// model lives: a fire happens at `max(local clock, inputs ready, output slots free)`, its
/// outputs are ready `latency` cycles later, and the clock advances by the initiation interval.
pub struct Io<'a> {
    pub(crate) chans: &'a mut [Channel],
    pub(crate) ins: &'a [u32],
    pub(crate) outs: &'a [Vec<u32>],
    /// Local clock: the earliest cycle of the next fire.
    pub t: u64,
    pub(crate) ii: u64,
    pub(crate) latency: u64,
    /// Fires so far.
    pub fires: u64,
    /// Cycles lost waiting for inputs.
    pub stall_in: u64,
    /// Cycles lost waiting for output space.
    pub stall_out: u64,
    pub(crate) node: u32,
    /// Occupancy at which an unbounded channel makes its producer yield. Purely a scheduling
    /// device to keep buffers small and cache-resident; timing is unaffected because tokens
    /// carry their own ready cycles.
    pub(crate) soft_cap: usize,
}

impl Io<'_> {
    /// Head of input `port`: `(ready cycle, token)`.
    #[inline]
    pub fn head(&self, port: usize) -> Option<(u64, Token)> {
        self.chans[self.ins[port] as usize].head()
    }

    /// Second token of input `port`.
    #[inline]
    pub fn second(&self, port: usize) -> Option<(u64, Token)> {
        self.chans[self.ins[port] as usize].second()
    }

    /// Earliest send cycle on output `port`, `None` if any of its channels is full.
    #[inline]
    pub fn out_free(&self, port: usize) -> Option<u64> {
        let mut t = 0;
        for &c in &self.outs[port] {
            let ch = &self.chans[c as usize];
            if ch.len() >= self.soft_cap {
                return None;
            }
            t = t.max(ch.free_at()?);
        }
        Some(t)
    }

    /// How many tokens every channel of `ports` can take right now without any timing
    /// constraint: 0 when a channel is bounded (callers then use [`Io::out_free`] per token).
    #[inline]
    pub fn room(&self, ports: std::ops::Range<usize>) -> usize {
        let mut room = usize::MAX;
        for p in ports {
            for &c in &self.outs[p] {
                let ch = &self.chans[c as usize];
                if !ch.is_unbounded() {
                    return 0;
                }
                room = room.min(self.soft_cap.saturating_sub(ch.len()));
            }
        }
        room
    }

    /// Earliest send cycle over several outputs, `None` if any is full.
    #[inline]
    pub fn outs_free(&self, ports: std::ops::Range<usize>) -> Option<u64> {
        let mut t = 0;
        for p in ports {
            t = t.max(self.out_free(p)?);
        }
        Some(t)
    }

    /// Starts a fire whose inputs are ready at `ready` and whose output slots free at `out`.
    /// Returns the fire cycle.
    #[inline]
    pub fn fire(&mut self, ready: u64, out: u64) -> u64 {
        let mut at = self.t;
        if ready > at {
            self.stall_in += ready - at;
            at = ready;
        }
        if out > at {
            self.stall_out += out - at;
            at = out;
        }
        self.t = at + self.ii;
        self.fires += 1;
        at
    }

    /// Consumes the head of input `port` at cycle `at`.
    #[inline]
    pub fn pop(&mut self, port: usize, at: u64) -> Token {
        self.chans[self.ins[port] as usize].pop(at)
    }

    /// Sends `tok` on output `port`, fired at cycle `at`.
    #[inline]
    pub fn push(&mut self, port: usize, at: u64, tok: Token) {
        let ready = at + self.latency;
        for &c in &self.outs[port] {
            self.chans[c as usize].push(ready, tok);
        }
    }

    /// A protocol error at this node.
    pub fn err(&self, msg: impl Into<String>) -> SimError {
        SimError::Protocol { node: self.node, message: msg.into() }
    }
}

/// A simulated primitive: a state machine that, on each activation, fires as often as its
/// inputs and output space allow.
pub trait Primitive {
    /// Fires until blocked or done; returns whether anything happened.
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError>;
    /// Whether the primitive has sent (or, for sinks, consumed) `D`.
    fn done(&self) -> bool;
    /// What the primitive wrote, for sinks.
    fn written(&mut self) -> Option<crate::Written> {
        None
    }
    /// Arithmetic operations performed so far (for FLOP counts).
    fn ops(&self) -> u64 {
        0
    }
    /// Off-chip bytes `(read, written)` so far: 4 bytes per coordinate, segment entry or value
    /// touched in memory. Streams between primitives cost nothing.
    fn traffic(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Memory requests issued and bytes they moved so far (0 with ideal memory).
    fn mem_stats(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Appends the bytes each of the primitive's memory ports moved, in port order.
    fn port_bytes(&self, _out: &mut Vec<u64>) {}
}
