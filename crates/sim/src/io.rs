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
    #[inline(always)]
    pub fn head(&self, port: usize) -> Option<(u64, Token)> {
        self.chans[self.ins[port] as usize].head()
    }

    /// Second token of input `port`.
    #[inline]
    pub fn second(&self, port: usize) -> Option<(u64, Token)> {
        self.chans[self.ins[port] as usize].second()
    }

    /// Earliest send cycle on output `port`, `None` if any of its channels is full.
    #[inline(always)]
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
    /// constraint: 0 when a channel is bounded (callers then use [`Io::out_free`] per token),
    /// and 0 for a port without channels (batch paths write to a port's first channel).
    #[inline]
    pub fn room(&self, ports: std::ops::Range<usize>) -> usize {
        let mut room = usize::MAX;
        for p in ports {
            if self.outs[p].is_empty() {
                return 0;
            }
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

    /// How many sends a batch loop may make on `ports` (through [`Channel::writer`], whose
    /// `free_at` also enforces a bounded channel's capacity and timing): the ports' room below
    /// the soft cap, or 0 when a port cannot be batched: it feeds no channel, or it fans out
    /// to a bounded one ([`Io::replicate`] copies fan-out after the batch, without timing).
    #[inline(always)]
    pub(crate) fn batch_room(&self, ports: std::ops::Range<usize>) -> usize {
        let mut room = usize::MAX;
        for p in ports {
            let outs = &self.outs[p];
            if outs.is_empty() || (outs.len() > 1 && self.bounded(p)) {
                return 0;
            }
            room = room.min(self.soft_room(p));
        }
        room
    }

    /// How many tokens every channel of output `port` can take before reaching the soft cap
    /// (bounded or not).
    #[inline]
    pub(crate) fn soft_room(&self, port: usize) -> usize {
        self.outs[port]
            .iter()
            .map(|&c| self.soft_cap.saturating_sub(self.chans[c as usize].len()))
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Whether a channel of output `port` is bounded.
    #[inline]
    pub(crate) fn bounded(&self, port: usize) -> bool {
        self.outs[port].iter().any(|&c| !self.chans[c as usize].is_unbounded())
    }

    /// Earliest send cycle over several outputs, `None` if any is full.
    #[inline(always)]
    pub fn outs_free(&self, ports: std::ops::Range<usize>) -> Option<u64> {
        let mut t = 0;
        for p in ports {
            t = t.max(self.out_free(p)?);
        }
        Some(t)
    }

    /// Starts a fire whose inputs are ready at `ready` and whose output slots free at `out`.
    /// Returns the fire cycle.
    #[inline(always)]
    pub fn fire(&mut self, ready: u64, out: u64) -> u64 {
        let mut c = self.clock();
        let at = c.fire(ready, out);
        self.set_clock(c);
        at
    }

    /// Consumes the head of input `port` at cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, port: usize, at: u64) -> Token {
        self.chans[self.ins[port] as usize].pop(at)
    }

    /// Sends `tok` on output `port`, fired at cycle `at`.
    #[inline(always)]
    pub fn push(&mut self, port: usize, at: u64, tok: Token) {
        let ready = at + self.latency;
        for &c in &self.outs[port] {
            self.chans[c as usize].push(ready, tok);
        }
    }

    /// Sends `tok` on output `port`, ready at cycle `ready` (for a fused node whose outputs
    /// leave different stages, each with its own latency).
    #[inline(always)]
    pub(crate) fn push_ready(&mut self, port: usize, ready: u64, tok: Token) {
        for &c in &self.outs[port] {
            self.chans[c as usize].push(ready, tok);
        }
    }

    /// Channel index of input `port`.
    #[inline(always)]
    pub(crate) fn in_chan(&self, port: usize) -> u32 {
        self.ins[port]
    }

    /// Tokens queued on input `port`.
    #[inline(always)]
    pub(crate) fn in_len(&self, port: usize) -> usize {
        self.chans[self.ins[port] as usize].len()
    }

    /// The first channel of output `port`. Batch loops push to it directly and then copy what
    /// they pushed to the port's other channels with [`Io::replicate`].
    #[inline(always)]
    pub(crate) fn out_chan(&self, port: usize) -> u32 {
        self.outs[port][0]
    }

    /// The first channel of output `port`, `None` if it feeds none.
    #[inline(always)]
    pub(crate) fn out_first(&self, port: usize) -> Option<u32> {
        self.outs[port].first().copied()
    }

    /// Number of channels output `port` feeds.
    #[inline(always)]
    pub(crate) fn fanout(&self, port: usize) -> usize {
        self.outs[port].len()
    }

    /// Copies the last `n` tokens pushed on output `port`'s first channel to its other
    /// channels (fan-out).
    #[inline]
    pub(crate) fn replicate(&mut self, port: usize, n: usize) {
        let outs: &[Vec<u32>] = self.outs;
        if let [first, rest @ ..] = &outs[port][..] {
            for &c in rest {
                let [src, dst] = self.channels([*first, c]);
                dst.copy_last(src, n);
            }
        }
    }

    /// The node's timing state, for batch loops that hold channel references (write it back
    /// with [`Io::set_clock`]).
    #[inline(always)]
    pub(crate) fn clock(&self) -> Clock {
        Clock {
            t: self.t,
            ii: self.ii,
            latency: self.latency,
            fires: self.fires,
            stall_in: self.stall_in,
            stall_out: self.stall_out,
        }
    }

    /// Stores the timing state of a batch loop.
    #[inline(always)]
    pub(crate) fn set_clock(&mut self, c: Clock) {
        self.t = c.t;
        self.fires = c.fires;
        self.stall_in = c.stall_in;
        self.stall_out = c.stall_out;
    }

    /// Mutable references to `N` distinct channels (by channel index), for batch loops that
    /// move tokens between channels without going through port lookups per token.
    ///
    /// # Panics
    /// If two indices are equal or one is out of range (the engine never wires a node's port
    /// twice to one channel).
    #[inline(always)]
    pub(crate) fn channels<const N: usize>(&mut self, idx: [u32; N]) -> [&mut Channel; N] {
        self.channels_opt(idx.map(Some)).map(|c| c.expect("every channel assigned"))
    }

    /// [`Io::channels`] where some indices may be missing (`None` in, `None` out).
    #[inline(always)]
    pub(crate) fn channels_opt<const N: usize>(&mut self, idx: [Option<u32>; N]) -> [Option<&mut Channel>; N] {
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| idx[i]);
        let mut out: [Option<&mut Channel>; N] = std::array::from_fn(|_| None);
        pick(self.chans, &idx, &order, &mut out);
        out
    }

    /// [`Io::channels_opt`] for at most `N` channels, their number known only at run time:
    /// `out[k]` is channel `idx[k]` (`idx.len() <= N`; the rest is `None`). No allocation,
    /// for batch loops of primitives with many ports.
    pub(crate) fn channels_up_to<const N: usize>(&mut self, idx: &[Option<u32>]) -> [Option<&mut Channel>; N] {
        assert!(idx.len() <= N, "{} channels asked of at most {N}", idx.len());
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        let order = &mut order[..idx.len()];
        order.sort_unstable_by_key(|&i| idx[i]);
        let mut out: [Option<&mut Channel>; N] = std::array::from_fn(|_| None);
        pick(self.chans, idx, order, &mut out);
        out
    }

    /// Number of input ports.
    #[inline(always)]
    pub(crate) fn n_ins(&self) -> usize {
        self.ins.len()
    }

    /// Batch path of a primitive that turns each token of input `inp` into one token of
    /// output `out`: while the output has room (see [`Io::batch_room`]),
    /// `f(clock, ready, free, token)` fires (on `clock`, with the output slot free at `free`)
    /// and returns the fire cycle and the output token, or returns `None` without firing to
    /// leave the token to the per-token path. Stops after sending `D`. Returns the number of
    /// tokens moved.
    #[inline(always)]
    pub(crate) fn map1(
        &mut self,
        inp: usize,
        out: usize,
        f: impl FnMut(&mut Clock, u64, u64, Token) -> Option<(u64, Token)>,
    ) -> usize {
        let n = self.batch_room(out..out + 1).min(self.in_len(inp));
        if n == 0 {
            0
        } else if self.bounded(out) {
            self.map1_with::<true>(inp, out, n, f)
        } else {
            self.map1_with::<false>(inp, out, n, f)
        }
    }

    /// [`Io::map1`] for `n > 0` tokens, specialised for a bounded or unbounded output.
    #[inline(always)]
    fn map1_with<const BOUNDED: bool>(
        &mut self,
        inp: usize,
        out: usize,
        n: usize,
        mut f: impl FnMut(&mut Clock, u64, u64, Token) -> Option<(u64, Token)>,
    ) -> usize {
        let mut clk = self.clock();
        let [i, o] = self.channels([self.in_chan(inp), self.out_chan(out)]);
        let (mut i, mut o) = (i.reader(), o.writer(n));
        let mut k = 0;
        while let (Some((ready, tok)), Some(free)) = (i.head(), o.free::<BOUNDED>()) {
            let Some((at, res)) = f(&mut clk, ready, free, tok) else { break };
            i.pop(at);
            o.push(clk.ready(at), res);
            k += 1;
            if k == n || res == Token::Done {
                break;
            }
        }
        drop((i, o));
        self.set_clock(clk);
        self.replicate(out, k);
        k
    }

    /// [`Io::map1`] for two aligned inputs (0 and 1) consumed together into output 0.
    #[inline(always)]
    pub(crate) fn map2(&mut self, f: impl FnMut(&mut Clock, u64, u64, Token, Token) -> Option<(u64, Token)>) -> usize {
        let n = self.batch_room(0..1).min(self.in_len(0)).min(self.in_len(1));
        if n == 0 {
            0
        } else if self.bounded(0) {
            self.map2_with::<true>(n, f)
        } else {
            self.map2_with::<false>(n, f)
        }
    }

    /// [`Io::map2`] for `n > 0` tokens, specialised for a bounded or unbounded output.
    #[inline(always)]
    fn map2_with<const BOUNDED: bool>(
        &mut self,
        n: usize,
        mut f: impl FnMut(&mut Clock, u64, u64, Token, Token) -> Option<(u64, Token)>,
    ) -> usize {
        let mut clk = self.clock();
        let [a, b, o] = self.channels([self.in_chan(0), self.in_chan(1), self.out_chan(0)]);
        let (mut a, mut b, mut o) = (a.reader(), b.reader(), o.writer(n));
        let mut k = 0;
        while let (Some((ra, ta)), Some((rb, tb)), Some(free)) = (a.head(), b.head(), o.free::<BOUNDED>()) {
            let Some((at, res)) = f(&mut clk, ra.max(rb), free, ta, tb) else { break };
            a.pop(at);
            b.pop(at);
            o.push(clk.ready(at), res);
            k += 1;
            if k == n || res == Token::Done {
                break;
            }
        }
        drop((a, b, o));
        self.set_clock(clk);
        self.replicate(0, k);
        k
    }

    /// A protocol error at this node.
    pub fn err(&self, msg: impl Into<String>) -> SimError {
        SimError::Protocol { node: self.node, message: msg.into() }
    }
}

/// Sets `out[k]` to channel `idx[k]` of `chans` (distinct indices; `None` stays `None`),
/// visiting the indices in increasing order (`order`), so that one slice can be split into
/// several mutable references.
#[inline(always)]
fn pick<'c>(chans: &'c mut [Channel], idx: &[Option<u32>], order: &[usize], out: &mut [Option<&'c mut Channel>]) {
    let mut rest: &mut [Channel] = chans;
    let mut base = 0usize;
    for &k in order {
        let Some(c) = idx[k] else { continue };
        let i = (c as usize).checked_sub(base).expect("channel used twice");
        let (ch, tail) = std::mem::take(&mut rest)[i..].split_first_mut().expect("channel index out of range");
        out[k] = Some(ch);
        rest = tail;
        base = c as usize + 1;
    }
}

/// A node's timing state ([`Io::fire`] on a local copy), used by batch loops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub t: u64,
    pub ii: u64,
    pub latency: u64,
    pub fires: u64,
    pub stall_in: u64,
    pub stall_out: u64,
}

impl Clock {
    /// The timing model of one fire; [`Io::fire`] runs it on the node's clock.
    #[inline(always)]
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

    /// Ready cycle of an output sent by a fire at `at`.
    #[inline(always)]
    pub fn ready(&self, at: u64) -> u64 {
        at + self.latency
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
    /// Bytes of state that grows with the data (a writer's output arrays), for the memory
    /// limit of [`crate::SimControl`]; fixed-size state need not be counted.
    fn footprint(&self) -> usize {
        0
    }
}
