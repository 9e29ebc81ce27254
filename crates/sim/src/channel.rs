//! Timed channels: ring buffers of `(ready time, token)` with optional capacity.
//!
//! Timing follows the DAM model: a token sent at cycle `t` by a producer with latency `L` is
//! visible to its consumer at `t + L`; with a finite capacity, the producer's `k`-th send may
//! not happen before the cycle after the consumer dequeued token `k - capacity`.

use std::collections::VecDeque;

use crate::Token;

/// One single-producer single-consumer channel.
#[derive(Debug, Clone)]
pub struct Channel {
    buf: VecDeque<(u64, Token)>,
    /// Cycles at which free slots became available (bounded channels only).
    free: VecDeque<u64>,
    capacity: Option<usize>,
    /// Tokens ever pushed.
    pub pushed: u64,
    /// Largest occupancy seen.
    pub peak: usize,
}

impl Channel {
    /// A channel with the given capacity (`None` = unbounded).
    pub fn new(capacity: Option<usize>) -> Channel {
        let free = match capacity {
            Some(c) => std::iter::repeat_n(0, c).collect(),
            None => VecDeque::new(),
        };
        Channel { buf: VecDeque::new(), free, capacity, pushed: 0, peak: 0 }
    }

    /// The head token and its ready time.
    #[inline]
    pub fn head(&self) -> Option<(u64, Token)> {
        self.buf.front().copied()
    }

    /// The token after the head.
    #[inline]
    pub fn second(&self) -> Option<(u64, Token)> {
        self.buf.get(1).copied()
    }

    /// Earliest cycle at which a token may be sent, or `None` while the channel is full.
    #[inline]
    pub fn free_at(&self) -> Option<u64> {
        match self.capacity {
            None => Some(0),
            Some(_) => self.free.front().copied(),
        }
    }

    /// Removes the head, recording that its slot frees up after cycle `at`.
    #[inline]
    pub fn pop(&mut self, at: u64) -> Token {
        let (_, tok) = self.buf.pop_front().expect("pop from empty channel");
        if self.capacity.is_some() {
            self.free.push_back(at + 1);
        }
        tok
    }

    /// Appends a token that becomes visible at `ready`.
    #[inline]
    pub fn push(&mut self, ready: u64, tok: Token) {
        if self.capacity.is_some() {
            self.free.pop_front();
        }
        self.buf.push_back((ready, tok));
        self.pushed += 1;
        if self.buf.len() > self.peak {
            self.peak = self.buf.len();
        }
    }

    /// Whether the channel has no capacity limit.
    #[inline]
    pub fn is_unbounded(&self) -> bool {
        self.capacity.is_none()
    }

    /// Current occupancy.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the channel holds no token.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether the channel is at capacity.
    pub fn is_full(&self) -> bool {
        self.free_at().is_none()
    }
}
