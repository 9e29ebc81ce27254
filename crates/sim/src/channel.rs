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
/// the cycle at which it freed its place (`free`, a ring addressed by token number like the
/// buffer): the `k`-th send reads the free cycle of token `k - capacity`. The ring starts
/// with `min(capacity, RECORDS)` entries rounded up to a power of two; it grows only when a pop
/// would overwrite a record that a later send needs (a large capacity with a short occupancy),
/// so for the usual depths it is allocated once and behaves like the old in-slot scheme.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Slots; the length is a power of two (the index mask is `len - 1`).
    buf: Box<[(u64, Token)]>,
    /// Tokens ever popped: the head is token `popped`.
    popped: u64,
    /// Tokens ever pushed.
    pub pushed: u64,
    /// Capacity in tokens (`usize::MAX` = unbounded).
    cap: usize,
    /// Largest occupancy seen.
    pub peak: usize,
    /// Free cycles of popped tokens (bounded channels only; empty when unbounded): token `k`'s
    /// record is in entry `k & (len - 1)`. (Eight words in all: a channel is one cache line.)
    free: Box<[u64]>,
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
        let (slots, cap, records) = match capacity {
            Some(c) => {
                let c = c.max(1);
                (c.min(INITIAL).next_power_of_two(), c, c.min(RECORDS).next_power_of_two())
            }
            None => (INITIAL, usize::MAX, 0),
        };
        Channel {
            buf: vec![(0, Token::Empty); slots].into_boxed_slice(),
            popped: 0,
            pushed: 0,
            cap,
            peak: 0,
            free: vec![0; records].into_boxed_slice(),
        }
    }

    /// Slot of token `k`.
    #[inline(always)]
    fn slot(&self, k: u64) -> usize {
        k as usize & (self.buf.len() - 1)
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
        if self.cap == usize::MAX {
            Some(0)
        } else if self.len() >= self.cap {
            None
        } else {
            Some(free_cycle(&self.free, self.pushed, self.cap as u64))
        }
    }

    /// Removes the head, recording that its place frees up after cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) -> Token {
        assert!(self.popped != self.pushed, "pop from empty channel");
        let tok = self.buf[self.slot(self.popped)].1;
        if self.cap != usize::MAX {
            record_free(&mut self.free, self.popped, self.pushed, self.cap, at);
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
        Reader {
            mask: self.buf.len() - 1,
            buf: &self.buf,
            popped: self.popped,
            pushed: self.pushed,
            cap: self.cap,
            free: &mut self.free,
            back: &mut self.popped,
        }
    }

    /// The producer's side of the channel for a batch loop of at most `n` sends (see
    /// [`Writer`]): the channel first grows to hold them; a bounded one takes no more than its
    /// free places.
    #[inline(always)]
    pub(crate) fn writer(&mut self, n: usize) -> Writer<'_> {
        let (limit, cap) = if self.cap == usize::MAX {
            (self.pushed + n as u64, u64::MAX)
        } else {
            ((self.pushed + n as u64).min(self.popped + self.cap as u64), self.cap as u64)
        };
        self.reserve((limit - self.pushed) as usize);
        Writer {
            mask: self.buf.len() - 1,
            buf: &mut self.buf,
            pushed: self.pushed,
            popped: self.popped,
            limit,
            cap,
            free: &self.free,
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
    }

    /// Whether the channel has no capacity limit.
    #[inline(always)]
    pub fn is_unbounded(&self) -> bool {
        self.cap == usize::MAX
    }

    /// Current occupancy.
    #[inline(always)]
    pub fn len(&self) -> usize {
        (self.pushed - self.popped) as usize
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
        self.buf.len() * std::mem::size_of::<(u64, Token)>() + self.free.len() * std::mem::size_of::<u64>()
    }
}

/// The free cycle a bounded channel's send number `pushed` waits for: that of token
/// `pushed - cap`, or 0 when fewer than `cap` tokens were ever sent.
#[inline(always)]
fn free_cycle(free: &[u64], pushed: u64, cap: u64) -> u64 {
    match pushed.checked_sub(cap) {
        Some(k) => free[k as usize & (free.len() - 1)],
        None => 0,
    }
}

/// Records that token `popped` of a bounded channel frees its place after cycle `at`.
/// Overwriting the record of token `popped - len(free)` is safe unless a later send still needs
/// it (send numbers `>= pushed` read records `>= pushed - cap`); then the ring grows first.
#[inline(always)]
fn record_free(free: &mut Box<[u64]>, popped: u64, pushed: u64, cap: usize, at: u64) {
    if free.len() < cap {
        let len = free.len() as u64;
        if popped >= len && (popped - len) + cap as u64 >= pushed {
            grow_records(free, popped);
        }
    }
    free[popped as usize & (free.len() - 1)] = at + 1;
}

/// Doubles a ring of free cycles whose records cover tokens before `popped`.
#[cold]
#[inline(never)]
fn grow_records(free: &mut Box<[u64]>, popped: u64) {
    let old = free.len();
    let n = old * 2;
    let mut next = vec![0; n].into_boxed_slice();
    for k in popped.saturating_sub(old as u64)..popped {
        next[k as usize & (n - 1)] = free[k as usize & (old - 1)];
    }
    *free = next;
}

/// A consumer's view of a channel during a batch loop: the head counter lives in a local
/// (a register, not memory that stores into the buffer might alias) and is written back when
/// the reader is dropped.
pub(crate) struct Reader<'a> {
    buf: &'a [(u64, Token)],
    mask: usize,
    popped: u64,
    pushed: u64,
    /// Capacity (`usize::MAX` = unbounded).
    cap: usize,
    free: &'a mut Box<[u64]>,
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
        if self.cap != usize::MAX {
            record_free(self.free, self.popped, self.pushed, self.cap, at);
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
    /// Capacity (`u64::MAX` = unbounded).
    cap: u64,
    free: &'a [u64],
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
        } else if self.cap == u64::MAX {
            Some(0)
        } else {
            Some(free_cycle(self.free, self.pushed, self.cap))
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
