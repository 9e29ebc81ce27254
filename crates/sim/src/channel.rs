//! Timed channels: ring buffers of `(ready time, token)` with optional capacity.
//!
//! Timing follows the DAM model: a token sent at cycle `t` by a producer with latency `L` is
//! visible to its consumer at `t + L`; with a finite capacity, the producer's `k`-th send may
//! not happen before the cycle after the consumer dequeued token `k - capacity`.

use crate::Token;

/// One single-producer single-consumer channel.
///
/// The buffer's length is a power of two and entries are addressed by the monotonic counters
/// `popped` and `pushed` (token `k` lives in slot `k & mask`), so no wrap-around bookkeeping is
/// needed. Buffers grow on demand (doubling), bounded or not: a bounded channel's buffer never
/// holds more slots than its capacity rounded up to a power of two, but it starts small, so a
/// channel with a huge capacity costs only what it holds.
///
/// A bounded channel remembers, for every popped token that a later send may still wait for,
/// the cycle at which it freed its place ([`Freed`]): the `k`-th send reads the free cycle of
/// token `k - capacity`. The channel itself is eight words, one cache line; the free cycles
/// sit behind one pointer that is null for an unbounded channel, so batch loops carry one
/// value for them, as they carried a "bounded" flag before.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Slots; the length is a power of two.
    buf: Box<[(u64, Token)]>,
    /// `buf.len() - 1`.
    mask: usize,
    /// Tokens ever popped: the head is token `popped`.
    popped: u64,
    /// Tokens ever pushed.
    pub pushed: u64,
    /// Capacity in tokens (`usize::MAX` = unbounded).
    cap: usize,
    /// Largest occupancy seen.
    pub peak: usize,
    /// Free cycles of popped tokens (bounded channels only).
    freed: Option<Box<Freed>>,
}

/// The free cycles of a bounded channel's popped tokens that later sends may wait for, in a
/// ring addressed by token number (token `k`'s record is entry `k & (len - 1)`). The ring holds
/// at least `min(capacity, tokens pushed)` entries before any pop (see [`Freed::reserve`]), so
/// a pop never overwrites a record that a later send needs: writing token `j`'s record replaces
/// token `j - len`'s, which is either not a token (`len` > `j`) or older than every token a
/// later send waits for (`len >= capacity`). It starts with `min(capacity, RECORDS)` entries,
/// so for the usual depths it is allocated once, and pops only store.
#[derive(Debug, Clone)]
pub(crate) struct Freed {
    ring: Box<[u64]>,
    /// The channel's capacity.
    cap: u64,
}

impl Freed {
    fn new(cap: usize) -> Freed {
        Freed { ring: vec![0; cap.min(RECORDS).next_power_of_two()].into_boxed_slice(), cap: cap as u64 }
    }

    /// The cycle send number `pushed` waits for: the free cycle of token `pushed - cap`, or 0
    /// while fewer than `cap` tokens were ever sent.
    #[inline(always)]
    fn cycle(&self, pushed: u64) -> u64 {
        let len = self.ring.len() as u64;
        if len >= self.cap || pushed >= self.cap {
            // With a ring of at least `cap` entries, a send before the `cap`-th reads an entry
            // no token wrote (0): token `pushed - cap + m·len` for `m >= 1` is not yet popped.
            self.ring[pushed.wrapping_sub(self.cap) as usize & (len as usize - 1)]
        } else {
            0
        }
    }

    /// Grows the ring before tokens up to `pushed` are popped (`popped` were already), so that
    /// the pops only store (see the type's documentation).
    #[inline(always)]
    fn reserve(&mut self, popped: u64, pushed: u64) {
        if (self.ring.len() as u64) < self.cap.min(pushed) {
            self.grow(popped, self.cap.min(pushed));
        }
    }

    /// Records that token `popped` frees its place after cycle `at` (after
    /// [`Freed::reserve`]).
    #[inline(always)]
    fn record(&mut self, popped: u64, at: u64) {
        self.ring[popped as usize & (self.ring.len() - 1)] = at + 1;
    }

    /// Grows the ring to at least `n` entries; its records cover the tokens before `popped`.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, popped: u64, n: u64) {
        let old = self.ring.len();
        let n = (n as usize).next_power_of_two();
        let mut next = vec![0; n].into_boxed_slice();
        for k in popped.saturating_sub(old as u64)..popped {
            next[k as usize & (n - 1)] = self.ring[k as usize & (old - 1)];
        }
        self.ring = next;
    }
}

/// Initial buffer length of a channel (it doubles when full, up to a bounded channel's
/// capacity).
const INITIAL: usize = 16;

/// Initial length of a bounded channel's ring of free cycles, when the capacity is larger.
const RECORDS: usize = 1024;

impl Channel {
    /// A channel with the given capacity (`None` = unbounded). Allocates a few slots, whatever
    /// the capacity: buffers grow with what the channel holds.
    pub fn new(capacity: Option<usize>) -> Channel {
        let (slots, cap) = match capacity {
            Some(c) => (c.clamp(1, INITIAL).next_power_of_two(), c.max(1)),
            None => (INITIAL, usize::MAX),
        };
        Channel {
            buf: vec![(0, Token::Empty); slots].into_boxed_slice(),
            mask: slots - 1,
            popped: 0,
            pushed: 0,
            cap,
            peak: 0,
            freed: capacity.map(|_| Box::new(Freed::new(cap))),
        }
    }

    /// Slot of token `k`.
    #[inline(always)]
    fn slot(&self, k: u64) -> usize {
        k as usize & self.mask
    }

    /// The head token and its ready time.
    #[inline(always)]
    pub fn head(&self) -> Option<(u64, Token)> {
        if self.popped == self.pushed {
            None
        } else {
            Some(self.buf[self.slot(self.popped)])
        }
    }

    /// The token after the head.
    #[inline]
    pub fn second(&self) -> Option<(u64, Token)> {
        if self.len() < 2 {
            None
        } else {
            Some(self.buf[self.slot(self.popped + 1)])
        }
    }

    /// Earliest cycle at which a token may be sent, or `None` while the channel is full.
    #[inline(always)]
    pub fn free_at(&self) -> Option<u64> {
        match &self.freed {
            None => Some(0),
            Some(_) if self.len() >= self.cap => None,
            Some(f) => Some(f.cycle(self.pushed)),
        }
    }

    /// Removes the head, recording that its place frees up after cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) -> Token {
        assert!(self.popped != self.pushed, "pop from empty channel");
        let tok = self.buf[self.slot(self.popped)].1;
        if let Some(f) = &mut self.freed {
            f.reserve(self.popped, self.pushed);
            f.record(self.popped, at);
        }
        self.popped += 1;
        tok
    }

    /// Appends a token that becomes visible at `ready`.
    #[inline(always)]
    pub fn push(&mut self, ready: u64, tok: Token) {
        let len = self.len();
        if len == self.buf.len() {
            self.grow();
        }
        let s = self.slot(self.pushed);
        self.buf[s] = (ready, tok);
        self.pushed += 1;
        if len >= self.peak {
            self.peak = len + 1;
        }
    }

    /// The consumer's side of the channel for a batch loop (see [`Reader`]).
    #[inline(always)]
    pub(crate) fn reader(&mut self) -> Reader<'_> {
        if let Some(f) = &mut self.freed {
            f.reserve(self.popped, self.pushed);
        }
        Reader {
            buf: &mut self.buf,
            mask: self.mask,
            popped: self.popped,
            pushed: self.pushed,
            freed: self.freed.as_deref_mut(),
            back: &mut self.popped,
        }
    }

    /// The producer's side of the channel for a batch loop of at most `n` sends (see
    /// [`Writer`]): the channel first grows to hold them; a bounded one takes no more than its
    /// free places.
    #[inline(always)]
    pub(crate) fn writer(&mut self, n: usize) -> Writer<'_> {
        let limit = if self.freed.is_none() {
            self.pushed + n as u64
        } else {
            (self.pushed + n as u64).min(self.popped + self.cap as u64)
        };
        self.reserve((limit - self.pushed) as usize);
        Writer {
            buf: &mut self.buf,
            mask: self.mask,
            pushed: self.pushed,
            popped: self.popped,
            limit,
            freed: self.freed.as_deref(),
            back: &mut self.pushed,
            peak: &mut self.peak,
        }
    }

    /// Makes room for `n` more tokens in the buffer (at most up to a bounded channel's
    /// capacity: callers never push more).
    #[inline(always)]
    fn reserve(&mut self, n: usize) {
        if self.len() + n > self.buf.len() {
            self.grow_to(self.len() + n);
        }
    }

    /// Pushes the last `n` tokens pushed on `src` (fan-out of a batch).
    #[inline]
    pub(crate) fn copy_last(&mut self, src: &Channel, n: usize) {
        for k in src.pushed - n as u64..src.pushed {
            let (ready, tok) = src.buf[src.slot(k)];
            self.push(ready, tok);
        }
    }

    /// Doubles the buffer of a full channel (a bounded one is never pushed when at capacity).
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.grow_to(self.buf.len() + 1);
    }

    /// Grows the buffer to at least `n` slots (at most a bounded channel's capacity), rounded
    /// up to a power of two.
    #[cold]
    #[inline(never)]
    fn grow_to(&mut self, n: usize) {
        assert!(self.cap == usize::MAX || n <= self.cap, "push to a full channel");
        let n = n.next_power_of_two();
        let mut buf = vec![(0, Token::Empty); n].into_boxed_slice();
        for k in self.popped..self.pushed {
            buf[k as usize & (n - 1)] = self.buf[self.slot(k)];
        }
        self.buf = buf;
        self.mask = n - 1;
    }

    /// Whether the channel has no capacity limit.
    #[inline(always)]
    pub fn is_unbounded(&self) -> bool {
        self.freed.is_none()
    }

    /// Capacity in tokens (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        (!self.is_unbounded()).then_some(self.cap)
    }

    /// Current occupancy.
    #[inline(always)]
    pub fn len(&self) -> usize {
        (self.pushed - self.popped) as usize
    }

    /// Records that `n` tokens crossed a channel that nothing ran on (inside a fused chain,
    /// whose [`crate::prims::link::Link`]s kept its timing), so that token counts are those of
    /// the unfused network.
    pub(crate) fn account(&mut self, n: u64) {
        debug_assert!(self.is_empty());
        self.pushed = n;
        self.popped = n;
    }

    /// Whether the channel holds no token.
    pub fn is_empty(&self) -> bool {
        self.popped == self.pushed
    }

    /// Whether the channel is at capacity.
    pub fn is_full(&self) -> bool {
        self.free_at().is_none()
    }

    /// Bytes the channel's buffers occupy (for memory accounting).
    pub fn footprint(&self) -> usize {
        let records = self.freed.as_ref().map_or(0, |f| f.ring.len());
        self.buf.len() * std::mem::size_of::<(u64, Token)>() + records * std::mem::size_of::<u64>()
    }
}

/// A consumer's view of a channel during a batch loop: the head counter lives in a local
/// (a register, not memory that stores into the buffer might alias) and is written back when
/// the reader is dropped.
pub(crate) struct Reader<'a> {
    buf: &'a mut [(u64, Token)],
    mask: usize,
    popped: u64,
    pushed: u64,
    /// The free cycles of a bounded channel (`None` = unbounded).
    freed: Option<&'a mut Freed>,
    back: &'a mut u64,
}

impl Reader<'_> {
    /// The head token and its ready time.
    #[inline(always)]
    pub fn head(&self) -> Option<(u64, Token)> {
        if self.popped == self.pushed {
            None
        } else {
            Some(self.buf[self.popped as usize & self.mask])
        }
    }

    /// Removes the head, recording that its place frees up after cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) {
        assert!(self.popped != self.pushed, "pop from empty channel");
        if let Some(f) = self.freed.as_deref_mut() {
            f.record(self.popped, at);
        }
        self.popped += 1;
    }
}

impl Drop for Reader<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.back = self.popped;
    }
}

/// A producer's view of a channel during a batch loop (the consumer does not run meanwhile,
/// so occupancy only grows): the tail counter lives in a local and is written back, with the
/// peak occupancy, when the writer is dropped.
pub(crate) struct Writer<'a> {
    buf: &'a mut [(u64, Token)],
    mask: usize,
    pushed: u64,
    popped: u64,
    /// Sends allowed up to this count (the reserved room, or a bounded channel's capacity).
    limit: u64,
    /// The free cycles of a bounded channel (`None` = unbounded).
    freed: Option<&'a Freed>,
    back: &'a mut u64,
    peak: &'a mut usize,
}

impl Writer<'_> {
    /// Earliest cycle at which a token may be sent, or `None` once the writer's room is used
    /// up ([`Channel::free_at`] within the room).
    #[inline(always)]
    pub fn free_at(&self) -> Option<u64> {
        if self.pushed == self.limit {
            None
        } else if let Some(f) = self.freed {
            Some(f.cycle(self.pushed))
        } else {
            Some(0)
        }
    }

    /// [`Writer::free_at`] for a writer statically known to be bounded or not: an unbounded
    /// one is always free (the caller's loop stays within the writer's room).
    #[inline(always)]
    pub fn free<const BOUNDED: bool>(&self) -> Option<u64> {
        if BOUNDED {
            self.free_at()
        } else {
            Some(0)
        }
    }

    /// Appends a token that becomes visible at `ready`.
    #[inline(always)]
    pub fn push(&mut self, ready: u64, tok: Token) {
        assert!(self.pushed < self.limit, "push beyond the writer's room");
        self.buf[self.pushed as usize & self.mask] = (ready, tok);
        self.pushed += 1;
    }
}

impl Drop for Writer<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        *self.back = self.pushed;
        *self.peak = (*self.peak).max((self.pushed - self.popped) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Channel>(), 64);
    }

    #[test]
    fn bounded_send_waits_for_the_pop_capacity_tokens_earlier() {
        let mut c = Channel::new(Some(3));
        for k in 0..3 {
            assert_eq!(c.free_at(), Some(0));
            c.push(k, Token::Idx(k as u32));
        }
        assert!(c.is_full());
        assert_eq!(c.pop(10), Token::Idx(0));
        assert_eq!(c.free_at(), Some(11));
        c.push(12, Token::Idx(3));
        assert!(c.is_full());
        assert_eq!(c.pop(20), Token::Idx(1));
        assert_eq!(c.pop(21), Token::Idx(2));
        assert_eq!(c.free_at(), Some(21));
        c.push(22, Token::Idx(4));
        assert_eq!(c.free_at(), Some(22));
        assert_eq!(c.head(), Some((12, Token::Idx(3))));
        assert_eq!(c.second(), Some((22, Token::Idx(4))));
        assert_eq!(c.peak, 3);
    }

    #[test]
    fn unbounded_grows_and_keeps_order() {
        let mut c = Channel::new(None);
        let mut next = 0;
        for k in 0..1000u32 {
            c.push(k as u64, Token::Idx(k));
            if k % 3 == 0 {
                assert_eq!(c.pop(0), Token::Idx(next));
                next += 1;
            }
        }
        while let Some((r, t)) = c.head() {
            assert_eq!((r, t), (next as u64, Token::Idx(next)));
            c.pop(0);
            next += 1;
        }
        assert_eq!((next, c.pushed), (1000, 1000));
    }

    /// A model of the timing rule with every free cycle kept: send `k` waits for the pop of
    /// token `k - cap`.
    struct Model {
        cap: usize,
        popped_at: Vec<u64>,
        pushed: usize,
    }

    impl Model {
        fn free_at(&self) -> Option<u64> {
            if self.pushed - self.popped_at.len() >= self.cap {
                None
            } else if self.pushed < self.cap {
                Some(0)
            } else {
                Some(self.popped_at[self.pushed - self.cap] + 1)
            }
        }
    }

    #[test]
    fn large_capacity_grows_on_demand_with_the_same_timing() {
        // Capacities around and far above the initial buffer and record ring, with bursts of
        // pushes and pops of varying length, through the plain and the batch interfaces.
        for cap in [1, 3, 16, 17, 1000, 1024, 1025, 5000, 1 << 30] {
            let mut c = Channel::new(Some(cap));
            let mut m = Model { cap, popped_at: Vec::new(), pushed: 0 };
            let mut clock = 0u64;
            let mut state = 12345u64;
            let mut next = |n: u64| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) % n
            };
            for round in 0..400 {
                let burst = 1 + next(3000) as usize;
                for _ in 0..burst {
                    assert_eq!(c.free_at(), m.free_at(), "cap {cap} round {round}");
                    let Some(f) = c.free_at() else { break };
                    clock = clock.max(f) + next(3);
                    if round % 2 == 0 {
                        c.push(clock, Token::Idx(m.pushed as u32));
                    } else {
                        let mut w = c.writer(1);
                        assert_eq!(w.free_at(), Some(f));
                        w.push(clock, Token::Idx(m.pushed as u32));
                    }
                    m.pushed += 1;
                }
                let pops = next(3000) as usize;
                for _ in 0..pops {
                    let Some((ready, tok)) = c.head() else { break };
                    assert_eq!(tok, Token::Idx(m.popped_at.len() as u32));
                    clock = clock.max(ready) + next(4);
                    if round % 3 == 0 {
                        c.pop(clock);
                    } else {
                        c.reader().pop(clock);
                    }
                    m.popped_at.push(clock);
                }
            }
            // Memory follows what the channel held and carried, not its capacity.
            let bound =
                24 * c.peak.max(INITIAL).next_power_of_two() + 8 * (c.pushed as usize).max(RECORDS).next_power_of_two();
            assert!(c.footprint() <= bound, "cap {cap}: {} bytes", c.footprint());
        }
    }
}
