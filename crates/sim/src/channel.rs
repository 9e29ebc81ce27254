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
/// needed. A bounded channel's buffer never grows, and a popped slot keeps the cycle at which
/// it became free in place of its ready cycle: the `k`-th send reads the free cycle of token
/// `k - capacity` from its slot, which no later token can have overwritten because the buffer
/// holds at least `capacity` slots (slots never written read 0: free from the start).
#[derive(Debug, Clone)]
pub struct Channel {
    buf: Vec<(u64, Token)>,
    mask: usize,
    /// Tokens ever popped: the head is token `popped`.
    popped: u64,
    /// Tokens ever pushed.
    pub pushed: u64,
    /// Capacity in tokens (`usize::MAX` = unbounded).
    cap: usize,
    /// Largest occupancy seen.
    pub peak: usize,
}

/// Initial buffer length of an unbounded channel (it doubles when full).
const INITIAL: usize = 16;

impl Channel {
    /// A channel with the given capacity (`None` = unbounded).
    pub fn new(capacity: Option<usize>) -> Channel {
        let (slots, cap) = match capacity {
            Some(c) => (c.max(1).next_power_of_two(), c),
            None => (INITIAL, usize::MAX),
        };
        Channel { buf: vec![(0, Token::Empty); slots], mask: slots - 1, popped: 0, pushed: 0, cap, peak: 0 }
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
        if self.cap == usize::MAX {
            Some(0)
        } else if self.len() >= self.cap {
            None
        } else {
            Some(self.buf[self.slot(self.pushed.wrapping_sub(self.cap as u64))].0)
        }
    }

    /// Removes the head, recording that its slot frees up after cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) -> Token {
        assert!(self.popped != self.pushed, "pop from empty channel");
        let s = self.slot(self.popped);
        let tok = self.buf[s].1;
        if self.cap != usize::MAX {
            self.buf[s].0 = at + 1;
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
            buf: &mut self.buf,
            mask: self.mask,
            popped: self.popped,
            pushed: self.pushed,
            bounded: self.cap != usize::MAX,
            back: &mut self.popped,
        }
    }

    /// The producer's side of the channel for a batch loop of at most `n` sends (see
    /// [`Writer`]): an unbounded channel first grows to hold them; a bounded one takes no
    /// more than its free slots.
    #[inline(always)]
    pub(crate) fn writer(&mut self, n: usize) -> Writer<'_> {
        let (limit, cap) = if self.cap == usize::MAX {
            self.reserve(n);
            (self.pushed + n as u64, u64::MAX)
        } else {
            ((self.pushed + n as u64).min(self.popped + self.cap as u64), self.cap as u64)
        };
        Writer {
            buf: &mut self.buf,
            mask: self.mask,
            pushed: self.pushed,
            popped: self.popped,
            limit,
            cap,
            back: &mut self.pushed,
            peak: &mut self.peak,
        }
    }

    /// Makes room for `n` more tokens in an unbounded channel's buffer.
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

    /// Doubles the buffer of a full unbounded channel (a bounded one is never pushed when
    /// full).
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.grow_to(self.buf.len() * 2);
    }

    /// Grows an unbounded channel's buffer to at least `n` slots.
    #[cold]
    #[inline(never)]
    fn grow_to(&mut self, n: usize) {
        assert!(self.cap == usize::MAX, "push to a full channel");
        let n = n.next_power_of_two();
        let mut buf = vec![(0, Token::Empty); n];
        for k in self.popped..self.pushed {
            buf[k as usize & (n - 1)] = self.buf[self.slot(k)];
        }
        self.buf = buf;
        self.mask = n - 1;
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
}

/// A consumer's view of a channel during a batch loop: the head counter lives in a local
/// (a register, not memory that stores into the buffer might alias) and is written back when
/// the reader is dropped.
pub(crate) struct Reader<'a> {
    buf: &'a mut [(u64, Token)],
    mask: usize,
    popped: u64,
    pushed: u64,
    bounded: bool,
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

    /// Removes the head, recording that its slot frees up after cycle `at`.
    #[inline(always)]
    pub fn pop(&mut self, at: u64) {
        assert!(self.popped != self.pushed, "pop from empty channel");
        if self.bounded {
            self.buf[self.popped as usize & self.mask].0 = at + 1;
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
            Some(self.buf[self.pushed.wrapping_sub(self.cap) as usize & self.mask].0)
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
}
