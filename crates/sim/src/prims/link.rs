//! What a fused chain ([`super::dot`], [`super::bcast`]) keeps of the channels inside it, and
//! what the engine hands it about them.
//!
//! A fused chain runs its stages token by token in one loop, so the channels between them
//! hold no tokens. With finite capacities their timing still matters: a stage's `k`-th send
//! waits for the cycle after its consumer took token `k - capacity` (`crate::channel`). A
//! [`Link`] remembers exactly those cycles, so the chain's fires and stalls stay those of the
//! separate nodes with bounded channels too. The arrays' memory ports travel in
//! [`FusedEnv`], created in node order like every other node's, so that each port gets the
//! share of the memory the unfused network gives it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::dot::FusedShared;
use crate::io::Clock;
use crate::memory::MemPort;

/// The largest inner capacity a fused chain models; the engine does not fuse chains with
/// deeper inner channels (one record per token of capacity, as [`crate::Channel`] keeps).
pub(crate) const MAX_LINK_CAPACITY: usize = 1 << 16;

/// Where a link keeps the free cycles of its last `capacity` taken tokens, by token number.
pub(crate) trait Records: Sized {
    /// Records for a channel of capacity `cap` (at most what the kind holds).
    fn for_capacity(cap: usize) -> Self;
    /// The record of token `k`.
    fn get(&self, k: u64) -> u64;
    /// Sets the record of token `k`.
    fn set(&mut self, k: u64, at: u64);
}

/// Records of channels up to [`Inline::CAPACITY`] deep (`rda`'s are 16), inline and indexed
/// without a bounds check: the hot case, about 20 % faster than [`Deep`].
pub(crate) struct Inline([u64; Inline::CAPACITY]);

impl Inline {
    /// The deepest channel whose records fit.
    pub const CAPACITY: usize = 64;
}

impl Records for Inline {
    fn for_capacity(cap: usize) -> Inline {
        debug_assert!(cap <= Inline::CAPACITY, "{cap} records do not fit inline");
        Inline([0; Inline::CAPACITY])
    }
    #[inline(always)]
    fn get(&self, k: u64) -> u64 {
        self.0[k as usize % Inline::CAPACITY]
    }
    #[inline(always)]
    fn set(&mut self, k: u64, at: u64) {
        self.0[k as usize % Inline::CAPACITY] = at;
    }
}

/// Records of deeper channels (raised by FIFO sizing, up to [`MAX_LINK_CAPACITY`]): a ring of
/// a power-of-two length.
pub(crate) struct Deep {
    ring: Box<[u64]>,
    mask: u64,
}

impl Records for Deep {
    fn for_capacity(cap: usize) -> Deep {
        let n = cap.clamp(1, MAX_LINK_CAPACITY).next_power_of_two();
        Deep { ring: vec![0; n].into(), mask: n as u64 - 1 }
    }
    #[inline(always)]
    fn get(&self, k: u64) -> u64 {
        self.ring[(k & self.mask) as usize]
    }
    #[inline(always)]
    fn set(&mut self, k: u64, at: u64) {
        self.ring[(k & self.mask) as usize] = at;
    }
}

/// The timing of one channel inside a fused chain: tokens sent, tokens taken, and the cycles
/// at which the last `capacity` taken tokens freed their places (in `R`).
pub(crate) struct Link<R> {
    freed: R,
    /// Capacity (`u64::MAX`: unbounded).
    cap: u64,
    pushed: u64,
    popped: u64,
}

impl<R: Records> Link<R> {
    /// A channel of this capacity (`None`: unbounded), which `R` must hold.
    pub fn new(capacity: Option<usize>) -> Link<R> {
        let cap = capacity.map_or(u64::MAX, |c| c.clamp(1, MAX_LINK_CAPACITY) as u64);
        Link { freed: R::for_capacity(capacity.unwrap_or(1)), cap, pushed: 0, popped: 0 }
    }

    /// Whether sends never wait.
    pub fn is_unbounded(&self) -> bool {
        self.cap == u64::MAX
    }

    /// The earliest cycle of the next send: the cycle after its consumer took token
    /// `pushed - capacity` (0 before `capacity` sends). That token must have been taken.
    #[inline(always)]
    pub fn free(&self) -> u64 {
        self.free_after(0)
    }

    /// Whether the channel holds as many tokens as it can (never, unbounded: a plain chain
    /// does not count what crosses its unbounded links).
    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.cap != u64::MAX && self.pushed - self.popped >= self.cap
    }

    /// Records a send.
    #[inline(always)]
    pub fn push(&mut self) {
        self.pushed += 1;
    }

    /// Records that the consumer took the oldest token at cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) {
        self.freed.set(self.popped, at + 1);
        self.popped += 1;
    }

    /// Whether the `l`-th send from now (0: the next) may go at cycle `at`, as far as the
    /// tokens already taken say (the send `capacity` before it must have been taken).
    #[inline]
    pub fn free_by(&self, l: u64, at: u64) -> bool {
        let k = self.pushed + l;
        k < self.cap || (k - self.cap < self.popped && self.freed.get(k - self.cap) <= at)
    }

    /// The earliest cycle of the `l`-th send from now (0: the next) as far as the tokens
    /// already taken say, for `l` below the capacity (the token it waits for was taken).
    #[inline(always)]
    pub fn free_after(&self, l: u64) -> u64 {
        let k = self.pushed + l;
        if k < self.cap {
            0
        } else {
            debug_assert!(k - self.cap < self.popped, "a send that waits for a token not yet taken");
            self.freed.get(k - self.cap)
        }
    }

    /// `n` tokens through an empty link, the consumer taking them `ii` apart from cycle
    /// `first`: only the last `capacity` of them are remembered.
    pub fn run(&mut self, n: u64, first: u64, ii: u64) {
        self.run_at(n, |m| first + m * ii);
    }

    /// `n` tokens through an empty link, the consumer taking the `m`-th at cycle `taken(m)`
    /// (non-decreasing): only the last `capacity` of them are remembered.
    pub fn run_at(&mut self, n: u64, taken: impl Fn(u64) -> u64) {
        debug_assert_eq!(self.pushed, self.popped, "a run through a link that holds tokens");
        if self.cap != u64::MAX {
            for m in n.saturating_sub(self.cap)..n {
                self.freed.set(self.popped + m, taken(m) + 1);
            }
        }
        self.pushed += n;
        self.popped += n;
    }

    /// The link's capacity (`None`: unbounded).
    pub fn bound(&self) -> Option<u64> {
        (self.cap != u64::MAX).then_some(self.cap)
    }
}

/// What the engine gives a fused chain when it makes its node.
pub(crate) struct FusedEnv {
    /// Where the chain reports that it gave up, and its stages' counters.
    pub shared: Rc<RefCell<FusedShared>>,
    /// Capacity of each channel inside the chain, by `(consumer node, input port)` (`None`:
    /// unbounded).
    pub caps: BTreeMap<(usize, usize), Option<usize>>,
    /// The memory port of each absorbed array (none with ideal memory).
    pub ports: BTreeMap<usize, MemPort>,
    /// The memory ports (segments, coordinates) of each absorbed compressed scanner.
    pub scan_ports: BTreeMap<usize, (MemPort, MemPort)>,
}

impl FusedEnv {
    /// The link into input `port` of `node`.
    pub fn link<R: Records>(&self, node: usize, port: usize) -> Link<R> {
        Link::new(self.caps.get(&(node, port)).copied().flatten())
    }

    /// Whether every channel inside the chain is unbounded or fits [`Inline`] records.
    pub fn inline(&self) -> bool {
        self.caps.values().flatten().all(|&c| c <= Inline::CAPACITY)
    }

    /// The memory port of array `node`, if memory is modelled.
    pub fn port(&mut self, node: usize) -> Option<MemPort> {
        self.ports.remove(&node)
    }
}

/// One fire of an array stage of a chain: its reference (word `word` of the array, or `None`
/// for a control token) ready at `ready`, taken from `input`; its value sent on `out`, read
/// through its memory port if it has one (the port's reads are consumed when it fires).
/// Returns the value's ready cycle.
#[inline(always)]
pub(crate) fn array_fire<R: Records>(
    c: &mut Clock,
    mem: &mut Option<MemPort>,
    (word, ready): (Option<u32>, u64),
    input: &mut Link<R>,
    out: &mut Link<R>,
) -> u64 {
    let data = match (mem.as_mut(), word) {
        (Some(m), Some(w)) => ready.max(m.fetch(w, ready)),
        _ => ready,
    };
    let at = c.fire(data, out.free());
    if let Some(m) = mem {
        m.consume(at);
    }
    input.pop(at);
    out.push();
    c.ready(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Channel;
    use crate::Token;

    #[test]
    fn a_link_waits_as_a_channel_of_its_capacity() {
        for cap in [1usize, 2, 3, 16, 63, 64] {
            same_as_a_channel::<Inline>(cap);
        }
        for cap in [1usize, 3, 64, 65, 100, 1436] {
            same_as_a_channel::<Deep>(cap);
        }
        let mut free = Link::<Inline>::new(None);
        for k in 0..100 {
            assert_eq!(free.free(), 0);
            free.push();
            if k % 3 == 0 {
                free.pop(k);
            }
        }
        assert!(!free.is_full() && free.is_unbounded());
    }

    #[test]
    fn a_run_remembers_when_its_last_tokens_were_taken() {
        for cap in [1usize, 3, 16] {
            for n in [0u64, 1, 2, 5, 40] {
                let taken = |m: u64| 10 + 3 * m + m % 2;
                let (mut ch, mut link) = (Channel::new(Some(cap)), Link::<Deep>::new(Some(cap)));
                // Some tokens before the run, taken at once.
                for k in 0..3 {
                    ch.push(0, Token::Empty);
                    ch.pop(k);
                    link.push();
                    link.pop(k);
                }
                let mut popped = 0;
                for _ in 0..n {
                    if ch.is_full() {
                        ch.pop(taken(popped));
                        popped += 1;
                    }
                    ch.push(0, Token::Empty);
                }
                while popped < n {
                    ch.pop(taken(popped));
                    popped += 1;
                }
                link.run_at(n, taken);
                // The sends after the run wait as the channel's would.
                for l in 0..cap as u64 {
                    assert_eq!(ch.free_at(), Some(link.free_after(l)), "capacity {cap}, {n} tokens, send {l}");
                    ch.push(0, Token::Empty);
                }
                assert_eq!(link.free(), link.free_after(0));
            }
        }
    }

    /// The same sends and takes through a channel and a link give the same send cycles.
    fn same_as_a_channel<R: Records>(cap: usize) {
        let (mut ch, mut link) = (Channel::new(Some(cap)), Link::<R>::new(Some(cap)));
        let mut state = 99u64 + cap as u64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut t = 0;
        for _ in 0..5000 {
            if !ch.is_full() && next(2) == 0 {
                assert!(!link.is_full());
                assert_eq!(ch.free_at(), Some(link.free()), "capacity {cap}");
                ch.push(t, Token::Empty);
                link.push();
            } else if !ch.is_empty() {
                t += next(5);
                ch.pop(t);
                link.pop(t);
            }
            assert_eq!(ch.is_full(), link.is_full());
        }
    }
}
