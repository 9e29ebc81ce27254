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
use crate::memory::MemPort;

/// The largest inner capacity a fused chain models; the engine does not fuse chains with
/// deeper inner channels (one record per token of capacity, as [`crate::Channel`] keeps).
pub(crate) const MAX_LINK_CAPACITY: usize = 1 << 16;

/// The timing of one channel inside a fused chain: tokens sent, tokens taken, and the cycles
/// at which the last `capacity` taken tokens freed their places.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Cycle after which token `k` was taken, at `k & mask` (empty when unbounded).
    freed: Box<[u64]>,
    mask: u64,
    /// Capacity (`u64::MAX`: unbounded).
    cap: u64,
    pushed: u64,
    popped: u64,
}

impl Link {
    /// A channel of this capacity (`None`: unbounded; at most [`MAX_LINK_CAPACITY`]).
    pub fn new(capacity: Option<usize>) -> Link {
        let (freed, cap) = match capacity {
            Some(c) => {
                let c = c.clamp(1, MAX_LINK_CAPACITY);
                (vec![0; c.next_power_of_two()].into_boxed_slice(), c as u64)
            }
            None => (Box::default(), u64::MAX),
        };
        let mask = (freed.len() as u64).saturating_sub(1);
        Link { freed, mask, cap, pushed: 0, popped: 0 }
    }

    /// Whether sends never wait.
    pub fn is_unbounded(&self) -> bool {
        self.cap == u64::MAX
    }

    /// The earliest cycle of the next send: the cycle after its consumer took token
    /// `pushed - capacity` (0 before `capacity` sends). That token must have been taken.
    #[inline(always)]
    pub fn free(&self) -> u64 {
        if self.pushed < self.cap {
            0
        } else {
            debug_assert!(self.pushed - self.popped < self.cap, "send into a full link");
            self.freed[((self.pushed - self.cap) & self.mask) as usize]
        }
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
        if self.cap != u64::MAX {
            self.freed[(self.popped & self.mask) as usize] = at + 1;
        }
        self.popped += 1;
    }
}

/// What the engine gives a fused chain when it makes its node.
pub(crate) struct FusedEnv {
    /// Where the chain reports that it gave up, and its stages' counters.
    pub shared: Rc<RefCell<FusedShared>>,
    /// Capacity of the channel into `(node, input port)` of each absorbed node and the runner
    /// (`None`: unbounded).
    pub caps: BTreeMap<(usize, usize), Option<usize>>,
    /// The memory port of each absorbed array (none with ideal memory).
    pub ports: BTreeMap<usize, MemPort>,
}

impl FusedEnv {
    /// The link into input `port` of `node`.
    pub fn link(&self, node: usize, port: usize) -> Link {
        Link::new(self.caps.get(&(node, port)).copied().flatten())
    }

    /// The memory port of array `node`, if memory is modelled.
    pub fn port(&mut self, node: usize) -> Option<MemPort> {
        self.ports.remove(&node)
    }
}

/// An array stage's read of word `word` (`None`: a control token, no read) whose reference is
/// ready at `ready`, through its memory port if it has one: the cycle the data is there.
#[inline(always)]
pub(crate) fn load(mem: &mut Option<MemPort>, word: Option<u32>, ready: u64) -> u64 {
    match (mem, word) {
        (Some(m), Some(w)) => ready.max(m.fetch(w, ready)),
        _ => ready,
    }
}

/// Records that an array stage fired at `at` (its memory port's reads are consumed then).
#[inline(always)]
pub(crate) fn consumed(mem: &mut Option<MemPort>, at: u64) {
    if let Some(m) = mem {
        m.consume(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Channel;
    use crate::Token;

    #[test]
    fn a_link_waits_as_a_channel_of_its_capacity() {
        // The same sends and takes through a channel and a link give the same send cycles.
        for cap in [1usize, 2, 3, 16, 100] {
            let (mut ch, mut link) = (Channel::new(Some(cap)), Link::new(Some(cap)));
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
                } else {
                    assert!(!link.is_full() || cap == 0);
                }
                assert_eq!(ch.is_full(), link.is_full());
            }
        }
        let mut free = Link::new(None);
        for k in 0..100 {
            assert_eq!(free.free(), 0);
            free.push();
            if k % 3 == 0 {
                free.pop(k);
            }
        }
        assert!(!free.is_full() && free.is_unbounded());
    }
}
