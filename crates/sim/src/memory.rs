//! The off-chip memory model (HBM-like). `docs/hardware.md` describes it in full.
//!
//! Every *access stream* (one array read or written by one primitive: a compressed scanner's
//! `seg` and `crd`, a value array's `vals`, a writer's `seg`/`crd` or `vals`) owns a
//! [`MemPort`], its own share of the memory. Streams between primitives never touch memory.
//!
//! # Why private ports
//!
//! The engine runs nodes out of simulated-time order (each node runs ahead as far as its
//! inputs and output space allow), so a shared resource whose state is updated in the order
//! requests are *simulated* would make cycles depend on scheduling. Instead, bandwidth and
//! request-queue slots are partitioned statically: with `R` access streams in the network,
//! each port gets `channels × bytes_per_cycle / R` bytes per cycle and
//! `max(1, channels × queue_depth / R)` request slots ([`Sharing::Partition`]), or the whole
//! memory ([`Sharing::Private`], an optimistic bound with no interference at all). A port's
//! state depends only on its own node's requests, made in that node's program order from its
//! own token times, so results are independent of scheduling, and adding channels or
//! bandwidth can only make requests finish earlier, never later.
//!
//! # One request
//!
//! Arrays are laid out line-aligned, 4 bytes per coordinate, segment entry or value; a line
//! is `granularity` bytes. A request whose address is known at cycle `want` is issued at
//! `max(want, previous issue, release of the request S earlier)`, S being the port's slots:
//! requests leave in order, and a slot frees when the requester has consumed a read's data, or when a write is
//! acknowledged. Its transfer starts when the port's pipe is free and takes
//! `bytes / port bandwidth` cycles (fractional cycles are carried exactly); the data is back
//! `latency` cycles after the transfer ends. No port transfers anything before cycle
//! `startup` (every channel warms up once, at the start of the run).
//!
//! Reads fetch whole lines into a one-line buffer per port, so consecutive words coalesce: a
//! fiber of `n` coordinates costs as many requests as the lines it touches, and a scan over
//! consecutive fibers reuses the line already fetched. Writes fill a one-line buffer and send
//! it when it is full (or, partially, at `D`).

/// How access streams share the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Each of the `R` access streams gets `1/R` of the bandwidth and request slots.
    Partition,
    /// Each access stream sees the whole memory (no interference; optimistic).
    Private,
    /// Each access stream gets a share of the bandwidth and request slots proportional to the
    /// bytes it moves over the whole run (measured by a first run with private ports), but at
    /// least an even share of all bytes moved, so that rarely used streams are not starved.
    Demand,
}

impl Sharing {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Sharing::Partition => "partition",
            Sharing::Private => "private",
            Sharing::Demand => "demand",
        }
    }
}

/// Off-chip memory parameters. See `docs/hardware.md` for units and defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryConfig {
    /// Independent channels (≥ 1).
    pub channels: u32,
    /// Peak bytes per cycle of one channel (≥ 1).
    pub bytes_per_cycle: u32,
    /// Cycles from the end of a request's transfer until its data is back (or its write is
    /// acknowledged).
    pub latency: u64,
    /// Cycles before any channel serves its first request (charged once, at the start).
    pub startup: u64,
    /// Outstanding requests one channel can hold (≥ 1).
    pub queue_depth: u32,
    /// Bytes per request (a line): a multiple of 4, at least 4.
    pub granularity: u32,
    /// How requesters share channels, bandwidth and queue slots.
    pub sharing: Sharing,
}

/// Bytes per coordinate, segment entry or value in memory.
pub const WORD_BYTES: u32 = 4;

impl MemoryConfig {
    /// Peak bandwidth of the whole memory, in bytes per cycle.
    pub fn peak_bytes_per_cycle(&self) -> u64 {
        self.channels.max(1) as u64 * self.bytes_per_cycle.max(1) as u64
    }

    /// Checks every parameter; the error names the offending field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=4096).contains(&self.channels) {
            return Err(("channels", "must be between 1 and 4096".into()));
        }
        if !(1..=65536).contains(&self.bytes_per_cycle) {
            return Err(("bytes_per_cycle", "must be between 1 and 65536".into()));
        }
        if !(1..=65536).contains(&self.queue_depth) {
            return Err(("queue_depth", "must be between 1 and 65536".into()));
        }
        if self.granularity < WORD_BYTES || !self.granularity.is_multiple_of(WORD_BYTES) || self.granularity > 1 << 20 {
            return Err(("granularity", "must be a multiple of 4 bytes between 4 and 1048576".into()));
        }
        if self.latency > 1 << 32 {
            return Err(("latency", "must be at most 2^32 cycles".into()));
        }
        if self.startup > 1 << 32 {
            return Err(("startup", "must be at most 2^32 cycles".into()));
        }
        Ok(())
    }

    /// The port of one of `requesters` access streams (parameters out of range are clamped).
    /// With [`Sharing::Demand`] this is the even partition; [`MemoryConfig::port_share`]
    /// sizes demand-weighted ports.
    pub fn port(&self, requesters: usize) -> MemPort {
        match self.sharing {
            Sharing::Partition | Sharing::Demand => self.port_share(1, requesters.max(1) as u64),
            Sharing::Private => self.port_share(1, 1),
        }
    }

    /// A port with `num / den` of the memory's bandwidth and request slots (at least one).
    pub fn port_share(&self, num: u64, den: u64) -> MemPort {
        let (num, den) = (num.max(1) as u128, den.max(1) as u128);
        let peak = self.peak_bytes_per_cycle() as u128;
        let slots = (self.channels.max(1) as u128 * self.queue_depth.max(1) as u128 * num / den).max(1);
        let line = (self.granularity.max(WORD_BYTES) / WORD_BYTES) * WORD_BYTES;
        MemPort {
            units: peak * num,
            share: den,
            latency: self.latency,
            line_bytes: line,
            words_per_line: line / WORD_BYTES,
            free: self.startup as u128 * peak * num,
            last_issue: 0,
            ring: vec![0; slots.min(1 << 16) as usize],
            next: 0,
            next_slot: 0,
            unconsumed: 0,
            unconsumed_slot: 0,
            last_done: 0,
            line: u32::MAX,
            line_done: 0,
            pending_words: 0,
            requests: 0,
            bytes: 0,
        }
    }
}

/// `i` back to 0 at `len`, for a ring index one past a valid one.
#[inline(always)]
fn wrap(i: usize, len: usize) -> usize {
    if i == len {
        0
    } else {
        i
    }
}

/// One access stream's share of the memory: the reads of one array by one primitive, or its
/// writes. Its state depends only on its own requests, in their program order.
#[derive(Debug, Clone)]
pub struct MemPort {
    /// Scaled time units per cycle (the whole memory's bytes per cycle).
    units: u128,
    /// Bytes cost `share` units each (the port has `units / share` bytes per cycle).
    share: u128,
    latency: u64,
    line_bytes: u32,
    words_per_line: u32,
    /// Scaled time at which the port's transfer pipe is free.
    free: u128,
    /// Cycle of the latest issue (requests leave in order).
    last_issue: u64,
    /// Release cycle of the last `ring.len()` requests, indexed by request number modulo.
    ring: Vec<u64>,
    /// Requests issued.
    next: u64,
    /// `next` modulo the ring's length (kept, not computed: a division per request is slow).
    next_slot: usize,
    /// First read whose consumption has not been recorded.
    unconsumed: u64,
    /// `unconsumed` modulo the ring's length.
    unconsumed_slot: usize,
    /// Latest completion of any request.
    last_done: u64,
    /// The line in the read buffer (`u32::MAX`: none) and the cycle its data is back.
    line: u32,
    line_done: u64,
    /// Words in the write buffer.
    pending_words: u32,
    /// Requests issued.
    pub requests: u64,
    /// Bytes moved.
    pub bytes: u64,
}

impl MemPort {
    /// Latest completion cycle of any request so far.
    #[inline]
    pub fn last_done(&self) -> u64 {
        self.last_done
    }

    /// Issues a request of `bytes` whose address is known at `want`; returns `(issue, done)`.
    /// The slot is released at `done` unless [`MemPort::consume`] records a later use.
    #[inline]
    fn request(&mut self, want: u64, bytes: u32) -> (u64, u64) {
        let (slot, issue, free, done) = self.plan(want, bytes);
        self.last_issue = issue;
        self.free = free;
        self.ring[slot] = done;
        self.next += 1;
        self.next_slot = wrap(slot + 1, self.ring.len());
        self.requests += 1;
        self.bytes += bytes as u64;
        self.last_done = self.last_done.max(done);
        (issue, done)
    }

    /// What a request of `bytes` known at `want` would do, without issuing it: its slot,
    /// issue cycle, the transfer pipe's next free (scaled) time and its completion cycle.
    #[inline]
    fn plan(&self, want: u64, bytes: u32) -> (usize, u64, u128, u64) {
        let slot = self.next_slot;
        let issue = want.max(self.last_issue).max(self.ring[slot]);
        let start = self.free.max(issue as u128 * self.units);
        let free = start + bytes as u128 * self.share;
        // 128-bit division is slow; the scaled times almost always fit 64 bits.
        let done = match (u64::try_from(free), u64::try_from(self.units)) {
            (Ok(f), Ok(u)) => f.div_ceil(u),
            _ => free.div_ceil(self.units) as u64,
        } + self.latency;
        (slot, issue, free, done)
    }

    /// The cycle [`MemPort::fetch`] would return for `word` (address known at `want`),
    /// without fetching anything.
    #[inline]
    pub fn peek_fetch(&self, word: u32, want: u64) -> u64 {
        if word / self.words_per_line == self.line {
            self.line_done
        } else {
            self.plan(want, self.line_bytes).3
        }
    }

    /// The first word of the line after `word`'s.
    #[inline]
    pub fn next_line(&self, word: u32) -> u64 {
        (word / self.words_per_line + 1) as u64 * self.words_per_line as u64
    }

    /// Whether word `word` starts a line (reading it may fetch one).
    #[inline]
    pub fn starts_line(&self, word: u32) -> bool {
        word.is_multiple_of(self.words_per_line)
    }

    /// Whether every read so far has been consumed ([`MemPort::consume`] would change
    /// nothing).
    #[inline]
    pub fn settled(&self) -> bool {
        self.unconsumed == self.next
    }

    /// The cycle word `word` of the array is available to the reader: its line is fetched
    /// (address known at `want`) unless the one-line buffer holds it. A fetched line's slot
    /// stays taken until the next [`MemPort::consume`].
    #[inline]
    pub fn fetch(&mut self, word: u32, want: u64) -> u64 {
        let line = word / self.words_per_line;
        if line != self.line {
            self.line = line;
            self.line_done = self.request(want, self.line_bytes).1;
        }
        self.line_done
    }

    /// Records that the data of every read so far has been consumed by cycle `at`: their
    /// slots free then.
    #[inline]
    pub fn consume(&mut self, at: u64) {
        while self.unconsumed < self.next {
            let slot = self.unconsumed_slot;
            self.ring[slot] = self.ring[slot].max(at);
            self.unconsumed += 1;
            self.unconsumed_slot = wrap(slot + 1, self.ring.len());
        }
    }

    /// Writes `words` words now known at `want`; returns the issue cycle. The slot frees when
    /// the write is acknowledged.
    #[inline]
    fn write(&mut self, want: u64, words: u32) -> u64 {
        let issue = self.request(want, words * WORD_BYTES).0;
        self.unconsumed = self.next;
        self.unconsumed_slot = self.next_slot;
        issue
    }

    /// Adds a word (written at `at`) to the one-line write buffer; when the line is full, sends
    /// it and returns the cycle the buffer is free again (the request's issue).
    #[inline]
    pub fn push_word(&mut self, at: u64) -> Option<u64> {
        self.pending_words += 1;
        if self.pending_words == self.words_per_line {
            self.pending_words = 0;
            Some(self.write(at, self.words_per_line))
        } else {
            None
        }
    }

    /// Sends a partly filled write buffer at `at`, if any.
    #[inline]
    pub fn flush(&mut self, at: u64) {
        if self.pending_words > 0 {
            self.write(at, self.pending_words);
            self.pending_words = 0;
        }
    }

    /// Starts the write buffer with `words` words already in it (e.g. the leading 0 of a
    /// segment array).
    pub fn preload(mut self, words: u32) -> MemPort {
        for _ in 0..words / self.words_per_line {
            self.write(0, self.words_per_line);
        }
        self.pending_words = words % self.words_per_line;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MemoryConfig {
        MemoryConfig {
            channels: 2,
            bytes_per_cycle: 4,
            latency: 10,
            startup: 0,
            queue_depth: 1,
            granularity: 16,
            sharing: Sharing::Private,
        }
    }

    #[test]
    fn a_lone_read_costs_transfer_plus_latency() {
        let mut p = cfg().port(1);
        // 16 bytes at 8 bytes/cycle: 2 cycles, then 10 of latency.
        assert_eq!(p.fetch(0, 5), 17);
        assert_eq!(p.requests, 1);
        assert_eq!(p.bytes, 16);
    }

    #[test]
    fn slots_bound_outstanding_reads_until_consumed() {
        // Two slots: the third read waits for the first to be consumed.
        let mut p = cfg().port(1);
        assert_eq!(p.fetch(0, 0), 12);
        assert_eq!(p.fetch(4, 0), 14);
        p.consume(20);
        assert_eq!(p.fetch(8, 0), 20 + 2 + 10);
    }

    #[test]
    fn partition_divides_bandwidth_and_slots() {
        let c = MemoryConfig { sharing: Sharing::Partition, ..cfg() };
        let mut p = c.port(4);
        // 2 bytes per cycle: 8 cycles per line; 2*1/4 -> 1 slot, so the second read waits
        // for the first one's data.
        assert_eq!(p.fetch(0, 0), 18);
        assert_eq!(p.fetch(4, 0), 18 + 8 + 10);
    }

    #[test]
    fn fractional_bandwidth_is_carried_exactly() {
        let c = MemoryConfig { channels: 3, bytes_per_cycle: 1, granularity: 4, sharing: Sharing::Partition, ..cfg() };
        // 3 bytes per cycle over 2 requesters: 1.5 bytes per cycle, a word every 8/3 cycles.
        let mut p = c.port(2);
        p.ring = vec![0; 8];
        let done: Vec<u64> = (0..3).map(|w| p.fetch(w, 0) - 10).collect();
        assert_eq!(done, vec![3, 6, 8]);
    }

    #[test]
    fn startup_is_charged_once() {
        let c = MemoryConfig { startup: 14, ..cfg() };
        let mut p = c.port(1);
        assert_eq!(p.fetch(0, 0), 14 + 2 + 10);
        p.consume(30);
        assert_eq!(p.fetch(4, 40), 40 + 2 + 10);
    }

    #[test]
    fn line_buffers_coalesce_consecutive_words() {
        let mut p = cfg().port(1);
        for w in 0..8 {
            p.fetch(w, 0);
        }
        assert_eq!(p.requests, 2);
        let mut w = cfg().port(1).preload(1);
        let sent: Vec<bool> = (0..5).map(|t| w.push_word(t).is_some()).collect();
        assert_eq!(sent, vec![false, false, true, false, false]);
        w.flush(9);
        assert_eq!(w.requests, 2);
        assert_eq!(w.bytes, 16 + 8);
    }
}
