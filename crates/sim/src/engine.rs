//! The engine: a network of primitives joined by timed channels, and the graph front door.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use fuseflow_graph::fifo::{self, DepthNeed};
use fuseflow_graph::{Graph, JoinKind, NodeId, Op};
use fuseflow_tensor::{Blocked, Format, LevelData, LevelFormat, Tensor};

use crate::control::{SimControl, SimProgress, PROGRESS_INTERVAL};
use crate::io::{Io, Primitive};
use crate::memory::{MemPort, MemoryConfig, Sharing};
use crate::prims::bcast::{Bcast, BcastChain, BcastTiming};
use crate::prims::dot::{Absorbed, Dot, DotChain, DotTiming, FusedShared};
use crate::prims::fill::{Fill, FillChain, FillKind};
use crate::prims::link::{Deep, FusedEnv, Inline, MAX_LINK_CAPACITY};
use crate::prims::{self, scan::LevelSource};
use crate::tile::{
    load_tiles, NodeTile, SharedArena, TileAcc, TileAlu, TileArena, TileArray, TilePlan, TileReduce, TileSpec,
    TileTiming, TileValWrite,
};
use crate::trace::{Trace, TraceLog, Traced};
use crate::{Channel, SimError, Written};

/// Default soft cap on unbounded channels (see [`Network::run_with_soft_cap`]).
pub const DEFAULT_SOFT_CAP: usize = 1024;

/// Default cycle limit ([`SimConfig::max_cycles`]): ten billion cycles, ten seconds of the
/// simulated machine at 1 GHz and, at the engine's ~10^8 tokens per second, minutes to hours of
/// simulation. A run that needs more is probably not the one intended; the limit is a budget
/// to raise deliberately.
pub const DEFAULT_MAX_CYCLES: u64 = 10_000_000_000;

/// Largest soft cap of a traced run (see [`SimConfig::trace`]).
pub const TRACE_SOFT_CAP: usize = 16;

/// Per-primitive timing: initiation interval and output latency, in cycles.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timing {
    /// Default initiation interval.
    pub ii: u64,
    /// Default latency (at least 1).
    pub latency: u64,
    /// Overrides by primitive kind name (`scan_compressed`, `intersect`, ...): `(ii, latency)`.
    pub per_kind: BTreeMap<String, (u64, u64)>,
    /// Comal's timing quirks (all off except in the `comal` preset).
    pub quirks: Quirks,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { ii: 1, latency: 1, per_kind: BTreeMap::new(), quirks: Quirks::default() }
    }
}

/// Timing quirks of the Comal simulator (`docs/hardware.md`, "Comal's timing quirks"), each
/// a separate option so that the `comal` preset reproduces Comal's cycle counts while `ideal`
/// and `rda` keep the pipelined model. They change when tokens move, never which tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Quirks {
    /// Sparse accumulators work like Comal's: every step waits for the next token of every
    /// input, a reduced (and middle) coordinate is taken without a fire of its own, and an
    /// accumulated fiber is drained in one fire (Comal emits it in zero simulated time).
    pub spacc_burst: bool,
    /// Coordinate droppers pass inner tokens without a fire: one fire per outer token, as in
    /// Comal, whose dropper forwards an inner fiber without advancing time.
    pub crddrop_free_inner: bool,
    /// A reducer sends a closing stop's value and the lowered stop by one fire, as Comal's
    /// does, instead of one fire each.
    pub reduce_stop_with_value: bool,
}

impl Quirks {
    /// Every quirk on: Comal's scalar-mode timing.
    pub fn comal() -> Quirks {
        Quirks { spacc_burst: true, crddrop_free_inner: true, reduce_stop_with_value: true }
    }
}

impl Timing {
    /// `(ii, latency)` for a primitive kind.
    pub fn of(&self, kind: &str) -> (u64, u64) {
        let (ii, lat) = self.per_kind.get(kind).copied().unwrap_or((self.ii, self.latency));
        (ii, lat.max(1))
    }
}

/// Simulation parameters. The default is the ideal machine: II 1 and latency 1 everywhere,
/// unbounded channels, ideal memory. [`crate::HwConfig`] builds one from a hardware
/// description (see `docs/hardware.md`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimConfig {
    /// Primitive timing.
    pub timing: Timing,
    /// Capacity of every channel, in tokens; `None` = unbounded.
    pub channel_capacity: Option<usize>,
    /// Capacity of the input channels of every node of a kind (by [`Op::kind_name`]),
    /// overriding `channel_capacity` for them; `None` = unbounded.
    pub input_capacity: BTreeMap<String, Option<usize>>,
    /// Raise bounded channels to the depth the graph needs so that it cannot deadlock
    /// ([`fuseflow_graph::fifo::min_depths`]: row buffers where a reduction is broadcast back
    /// over its row, look-ahead slack); the capacities configured above are then defaults.
    /// Off, every channel has exactly its configured capacity (to study deadlocks).
    pub fifo_sizing: bool,
    /// The off-chip memory model; `None` = ideal memory (accesses cost nothing).
    pub memory: Option<MemoryConfig>,
    /// Clock frequency in MHz; used only to report simulated time.
    pub clock_mhz: f64,
    /// Stop with an error once any node's clock passes this cycle.
    pub max_cycles: u64,
    /// Scheduling granularity: tokens an unbounded channel may hold before its producer
    /// yields to other nodes. Affects speed and memory only, never cycles or outputs.
    pub soft_cap: usize,
    /// Timing of the tile units of blocked runs (`[tile]`, see [`crate::tile::TileCosts`]).
    pub tile: crate::tile::TileCosts,
    /// Record activation spans (see [`crate::trace`]), at most this many; `None` = off.
    /// A traced run uses a soft cap of at most [`TRACE_SOFT_CAP`], so that activations, and
    /// with them spans, are short; cycles and outputs are the same.
    pub trace: Option<usize>,
    /// Run the hot chains of dense products as one fused node each where every channel is
    /// unbounded and memory is ideal: dot products (two dense scanners, intersection, two
    /// arrays, multiply, reducer) and broadcast products (dense scanner, repeat signal,
    /// repeater, two arrays, multiply); `docs/hardware.md`, "Fused products". Affects speed
    /// only: cycles, counters and outputs are those of the separate nodes (tests check this).
    /// Not serialized, like every other engine choice that cannot change a result.
    #[serde(skip)]
    pub fuse_products: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            timing: Timing::default(),
            channel_capacity: None,
            input_capacity: BTreeMap::new(),
            fifo_sizing: true,
            memory: None,
            clock_mhz: DEFAULT_CLOCK_MHZ,
            max_cycles: DEFAULT_MAX_CYCLES,
            soft_cap: DEFAULT_SOFT_CAP,
            tile: crate::tile::TileCosts::default(),
            trace: None,
            fuse_products: true,
        }
    }
}

/// Default clock frequency (MHz), used only to convert cycles to time.
pub const DEFAULT_CLOCK_MHZ: f64 = 1000.0;

/// Per-node counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct NodeStats {
    /// Node name (label).
    pub name: String,
    /// Primitive kind.
    pub kind: String,
    /// Fires.
    pub fires: u64,
    /// Cycles spent firing: fires × initiation interval.
    pub busy: u64,
    /// Cycles lost waiting for inputs.
    pub stall_in: u64,
    /// Cycles lost waiting for output space.
    pub stall_out: u64,
    /// Final local clock.
    pub finish: u64,
    /// Tokens received on all inputs.
    pub tokens_in: u64,
    /// Tokens sent on all outputs (counted once per consuming channel).
    pub tokens_out: u64,
    /// Arithmetic operations (ALUs, reducers, accumulators).
    pub ops: u64,
    /// Off-chip bytes read.
    pub bytes_read: u64,
    /// Off-chip bytes written.
    pub bytes_written: u64,
    /// Memory requests issued (0 with ideal memory).
    pub mem_requests: u64,
    /// Bytes those requests moved: whole lines for reads, the words written for writes.
    pub mem_bytes: u64,
}

struct Slot {
    prim: Box<dyn Primitive>,
    ins: Vec<u32>,
    outs: Vec<Vec<u32>>,
    ii: u64,
    latency: u64,
    t: u64,
    fires: u64,
    stall_in: u64,
    stall_out: u64,
    done: bool,
    name: String,
    kind: String,
    /// The node's own ports, where they differ from those it runs on (`ins`, `outs`): a
    /// fused inner product runs on its scanners' inputs, an absorbed node on none.
    stat_ports: Option<(Vec<u32>, Vec<Vec<u32>>)>,
}

/// The slots a sweep runs: a bit per slot, taken in slot order.
struct Awake {
    words: Vec<u64>,
    len: usize,
}

impl Awake {
    /// Every slot awake.
    fn new(len: usize) -> Awake {
        let mut a = Awake { words: vec![0; len.div_ceil(64)], len };
        a.all();
        a
    }

    fn all(&mut self) {
        self.words.fill(!0);
        let tail = self.len % 64;
        if let (Some(last), 1..) = (self.words.last_mut(), tail) {
            *last = (1u64 << tail) - 1;
        }
    }

    #[inline(always)]
    fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// The first awake slot at or after `from`, put to sleep.
    #[inline(always)]
    fn take_from(&mut self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = *self.words.get(w)? & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                let b = bits.trailing_zeros() as usize;
                self.words[w] &= !(1 << b);
                return Some(w * 64 + b);
            }
            w += 1;
            bits = *self.words.get(w)?;
        }
    }
}

/// A network of primitives and channels. [`simulate`] builds one from a graph; tests build
/// small ones by hand around [`prims::Source`] and [`prims::Sink`].
#[derive(Default)]
pub struct Network {
    slots: Vec<Slot>,
    chans: Vec<Channel>,
    /// Channel names for diagnostics (index = channel; missing = `c{index}`).
    labels: Vec<String>,
    /// The trace the nodes record into, if any (the soft cap is small while it fills).
    trace: Option<TraceLog>,
    /// Fused products: the nodes each absorbed, the channels inside it, what it leaves.
    fused: Vec<FusedRun>,
}

impl Network {
    /// An empty network.
    pub fn new() -> Network {
        Network::default()
    }

    /// Adds a channel and returns its index.
    pub fn channel(&mut self, capacity: Option<usize>) -> u32 {
        self.chans.push(Channel::new(capacity));
        (self.chans.len() - 1) as u32
    }

    /// Names channel `c` in diagnostics (e.g. the stream it carries).
    pub fn label_channel(&mut self, c: u32, label: impl Into<String>) {
        let c = c as usize;
        if self.labels.len() <= c {
            self.labels.resize(c + 1, String::new());
        }
        self.labels[c] = label.into();
    }

    fn channel_name(&self, c: u32) -> String {
        match self.labels.get(c as usize) {
            Some(l) if !l.is_empty() => format!("c{c} {l}"),
            _ => format!("c{c}"),
        }
    }

    /// The node reading channel `c`, and its port.
    fn consumer(&self, c: u32) -> Option<(usize, usize)> {
        self.slots.iter().enumerate().find_map(|(i, s)| s.ins.iter().position(|&x| x == c).map(|p| (i, p)))
    }

    /// Adds a node reading channels `ins` and writing each output port to the listed channels.
    pub fn add(
        &mut self,
        prim: Box<dyn Primitive>,
        ins: Vec<u32>,
        outs: Vec<Vec<u32>>,
        (ii, latency): (u64, u64),
        name: impl Into<String>,
        kind: impl Into<String>,
    ) -> usize {
        self.slots.push(Slot {
            prim,
            ins,
            outs,
            ii,
            latency: latency.max(1),
            t: 0,
            fires: 0,
            stall_in: 0,
            stall_out: 0,
            done: false,
            name: name.into(),
            kind: kind.into(),
            stat_ports: None,
        });
        self.slots.len() - 1
    }

    /// Whether a fused product gave up on a stream it does not model (the run must be repeated
    /// without fusion).
    fn bailed(&self) -> bool {
        self.fused.iter().any(|f| f.shared.borrow().bailed)
    }

    /// Gives the nodes that fused products absorbed their counters, and the channels inside
    /// them their token counts, once the run is over.
    fn finish_fused(&mut self) {
        for f in &self.fused {
            let Some(stages) = f.shared.borrow_mut().stages.take() else { continue };
            for (&node, st) in f.absorbed.iter().zip(stages) {
                let slot = &mut self.slots[node];
                slot.t = st.t;
                slot.fires = st.fires;
                slot.stall_in = st.stall_in;
                slot.stall_out = st.stall_out;
                slot.prim = Box::new(Absorbed { ops: st.ops, bytes_read: st.bytes_read, mem: st.mem });
                if let Some((_, outs)) = &slot.stat_ports {
                    for &c in outs.iter().flatten().filter(|c| f.internal.contains(c)) {
                        self.chans[c as usize].account(st.sent);
                    }
                }
            }
        }
    }

    /// Runs every node to completion; returns the total cycle count (largest local clock).
    pub fn run(&mut self, max_cycles: u64) -> Result<u64, SimError> {
        self.run_with_soft_cap(max_cycles, DEFAULT_SOFT_CAP)
    }

    /// [`Network::run`] with an explicit soft cap: producers yield once an unbounded channel
    /// holds `soft_cap` tokens. Results do not depend on it (tests check this); it only trades
    /// sweeps against buffer memory.
    pub fn run_with_soft_cap(&mut self, max_cycles: u64, soft_cap: usize) -> Result<u64, SimError> {
        self.run_controlled(max_cycles, soft_cap, &SimControl::default())
    }

    /// [`Network::run_with_soft_cap`] watched by `control` (cancellation, progress, memory
    /// limit; see [`crate::control`]), which is consulted once per sweep and never changes
    /// results.
    ///
    /// A sweep runs the awake nodes in slot order; a node that made no progress sleeps until a
    /// neighbour's progress wakes it (see [`Network::neighbours`]).
    ///
    /// A sweep without progress doubles the soft cap (back to `soft_cap` after the next
    /// progress), so a node that needs a long stretch of a stream before it can go on gets
    /// it, and buffers hold no more than that; only a sweep without progress and without any
    /// cap is a deadlock. While a trace is recording, the soft cap is at most
    /// [`TRACE_SOFT_CAP`] (short activations make short spans); once the trace is full it is
    /// `soft_cap` again.
    pub fn run_controlled(&mut self, max_cycles: u64, soft_cap: usize, control: &SimControl) -> Result<u64, SimError> {
        let soft_cap = soft_cap.max(1);
        let tracing = |net: &Network| net.trace.as_ref().is_some_and(|t| t.borrow().spans.len() < t.borrow().limit);
        let mut base = if tracing(self) { soft_cap.min(TRACE_SOFT_CAP) } else { soft_cap };
        let mut cap_now = base;
        let mut sweeps = 0u64;
        let mut last_check = std::time::Instant::now();
        let neighbours = self.neighbours();
        let mut awake = Awake::new(self.slots.len());
        let mut remaining = self.slots.iter().filter(|s| !s.done).count();
        loop {
            let mut progress = false;
            let mut next = 0;
            while let Some(i) = awake.take_from(next) {
                next = i + 1;
                let slot = &mut self.slots[i];
                if slot.done {
                    continue;
                }
                let mut io = Io {
                    chans: &mut self.chans,
                    ins: &slot.ins,
                    outs: &slot.outs,
                    t: slot.t,
                    ii: slot.ii,
                    latency: slot.latency,
                    fires: slot.fires,
                    stall_in: slot.stall_in,
                    stall_out: slot.stall_out,
                    node: i as u32,
                    soft_cap: cap_now,
                };
                let p = slot.prim.run(&mut io)?;
                slot.t = io.t;
                slot.fires = io.fires;
                slot.stall_in = io.stall_in;
                slot.stall_out = io.stall_out;
                if slot.t > max_cycles {
                    return Err(SimError::CycleLimit { limit: max_cycles, node: i as u32 });
                }
                if slot.prim.done() {
                    slot.done = true;
                    remaining -= 1;
                }
                if p {
                    // Only what this node pushed or popped can let another node move: wake the
                    // consumers of its outputs and the producers of its inputs (and itself, to
                    // go on where it yielded). A node left asleep would make no progress if
                    // run: its state, its channels and the soft cap are all as it left them.
                    progress = true;
                    if !slot.done {
                        awake.set(i);
                    }
                    for &j in &neighbours[i] {
                        awake.set(j as usize);
                    }
                }
            }
            if remaining == 0 {
                self.finish_fused();
                return Ok(self.cycles());
            }
            if control.cancelled() {
                return Err(SimError::Cancelled { cycle: self.cycles() });
            }
            sweeps += 1;
            if sweeps & 15 == 0 && last_check.elapsed() >= PROGRESS_INTERVAL {
                last_check = std::time::Instant::now();
                self.check_in(control)?;
                if base < soft_cap && !tracing(self) {
                    base = soft_cap;
                }
            }
            let cap_was = cap_now;
            if progress {
                cap_now = base;
            } else if cap_now == usize::MAX {
                return Err(self.deadlock());
            } else {
                // Past 2^40 tokens no buffer could be allocated anyway: lift the cap.
                cap_now = if cap_now >= 1 << 40 { usize::MAX } else { cap_now * 2 };
            }
            if cap_now != cap_was {
                // Another cap changes what every node may send (a sweep without progress
                // always changes it, or has returned a deadlock above).
                awake.all();
            }
        }
    }

    /// For each slot, the other slots its progress can unblock: the consumers of its output
    /// channels and the producers of its input channels.
    fn neighbours(&self) -> Vec<Vec<u32>> {
        let mut producer = vec![u32::MAX; self.chans.len()];
        let mut consumer = vec![u32::MAX; self.chans.len()];
        for (i, s) in self.slots.iter().enumerate() {
            for &c in s.outs.iter().flatten() {
                producer[c as usize] = i as u32;
            }
            for &c in &s.ins {
                consumer[c as usize] = i as u32;
            }
        }
        let mut out: Vec<Vec<u32>> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let downstream = s.outs.iter().flatten().map(|&c| consumer[c as usize]);
                let upstream = s.ins.iter().map(|&c| producer[c as usize]);
                downstream.chain(upstream).filter(|&j| j != u32::MAX && j != i as u32).collect()
            })
            .collect();
        for n in &mut out {
            n.sort_unstable();
            n.dedup();
        }
        out
    }

    /// Largest local clock so far.
    fn cycles(&self) -> u64 {
        self.slots.iter().map(|s| s.t).max().unwrap_or(0)
    }

    /// Reports progress and enforces the memory limit.
    #[cold]
    #[inline(never)]
    fn check_in(&self, control: &SimControl) -> Result<(), SimError> {
        if control.observer.is_none() && control.mem_limit.is_none() {
            return Ok(());
        }
        let chans = self.chans.iter().map(|c| c.footprint() as u64);
        let nodes = self.slots.iter().map(|s| s.prim.footprint() as u64);
        let bytes = chans.clone().sum::<u64>() + nodes.clone().sum::<u64>();
        control.report(&SimProgress { cycles: self.cycles(), tokens: self.tokens(), bytes });
        match control.mem_limit {
            Some(limit) if bytes > limit => {
                let (c, cb) = chans.enumerate().max_by_key(|&(_, b)| b).unwrap_or((0, 0));
                let (n, nb) = nodes.enumerate().max_by_key(|&(_, b)| b).unwrap_or((0, 0));
                let what = if cb >= nb {
                    format!("channel {}", self.channel_name(c as u32))
                } else {
                    format!("node n{n} {} ({})", self.slots[n].kind, self.slots[n].name)
                };
                Err(SimError::Memory { bytes, limit, largest: format!("{what}: {}", crate::human_bytes(cb.max(nb))) })
            }
            _ => Ok(()),
        }
    }

    fn deadlock(&self) -> SimError {
        // Nodes blocked on a full output are where the cycle of full channels shows: name each
        // full channel, its consumer, and the empty inputs that consumer is waiting on. The
        // other nodes are waiting for input and are summarised by count.
        let mut blocked = Vec::new();
        let mut waiting = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.done {
                continue;
            }
            let full: Vec<String> = s
                .outs
                .iter()
                .enumerate()
                .flat_map(|(p, cs)| cs.iter().map(move |&c| (p, c)))
                .filter(|&(_, c)| self.chans[c as usize].is_full())
                .map(|(p, c)| {
                    let to = match self.consumer(c) {
                        Some((j, port)) => {
                            let empty: Vec<String> = self.slots[j]
                                .ins
                                .iter()
                                .filter(|&&e| self.chans[e as usize].is_empty())
                                .map(|&e| self.channel_name(e))
                                .collect();
                            let waits = if empty.is_empty() {
                                String::new()
                            } else {
                                format!(", waiting on {}", empty.join(" + "))
                            };
                            format!(" -> n{j} {} in{port}{waits}", self.slots[j].kind)
                        }
                        None => String::new(),
                    };
                    format!("out{p}={}{to}", self.channel_name(c))
                })
                .collect();
            if full.is_empty() {
                waiting += 1;
            } else {
                blocked.push(format!("n{i} {} ({}) full [{}]", s.kind, s.name, full.join("; ")));
            }
        }
        let cycle = self.slots.iter().map(|s| s.t).max().unwrap_or(0);
        let chain = match self.wait_cycle() {
            Some(edges) => {
                let node = |i: usize| match self.slots[i].name.as_str() {
                    "" => format!("n{i} {}", self.slots[i].kind),
                    name => format!("n{i} {} ({name})", self.slots[i].kind),
                };
                let mut text = node(edges[0].0);
                for &(_, c, full, to) in &edges {
                    let state = if full { "full" } else { "empty" };
                    text.push_str(&format!(" -[{} {state}]-> {}", self.channel_name(c), node(to)));
                }
                format!("cycle of channels: {text}")
            }
            None => "no cycle of waiting nodes found".to_string(),
        };
        let detail = format!(
            "{chain}; blocked on full channels: {}; {waiting} more nodes waiting for input",
            if blocked.is_empty() { "none".to_string() } else { blocked.join(", ") }
        );
        SimError::Deadlock { cycle, detail }
    }

    /// The shortest cycle of the wait-for graph of a stuck network, as edges
    /// `(from, channel, full, to)`: a node blocked on a full output channel waits for the
    /// channel's consumer (`full`), a node with an empty input channel waits for its producer.
    /// Finished nodes wait for nothing and are not waited for. Ties go to the lowest node index.
    fn wait_cycle(&self) -> Option<Vec<(usize, u32, bool, usize)>> {
        let n = self.slots.len();
        let mut producer = vec![usize::MAX; self.chans.len()];
        let mut consumer = vec![usize::MAX; self.chans.len()];
        for (i, s) in self.slots.iter().enumerate() {
            for &c in s.outs.iter().flatten() {
                producer[c as usize] = i;
            }
            for &c in &s.ins {
                consumer[c as usize] = i;
            }
        }
        let live = |i: usize| i < n && !self.slots[i].done;
        let edges: Vec<Vec<(u32, bool, usize)>> = (0..n)
            .map(|i| {
                if !live(i) {
                    return Vec::new();
                }
                let s = &self.slots[i];
                let full = s
                    .outs
                    .iter()
                    .flatten()
                    .filter(|&&c| self.chans[c as usize].is_full())
                    .map(|&c| (c, true, consumer[c as usize]));
                let empty = s
                    .ins
                    .iter()
                    .filter(|&&c| self.chans[c as usize].is_empty())
                    .map(|&c| (c, false, producer[c as usize]));
                full.chain(empty).filter(|&(_, _, to)| live(to)).collect()
            })
            .collect();
        let mut best: Option<Vec<(usize, u32, bool, usize)>> = None;
        for start in 0..n {
            // Breadth-first search for the shortest path from `start` back to itself.
            let mut from: Vec<Option<(usize, u32, bool)>> = vec![None; n];
            let mut queue = std::collections::VecDeque::from([start]);
            let mut seen = vec![false; n];
            seen[start] = true;
            let mut closing = None;
            'search: while let Some(u) = queue.pop_front() {
                for &(c, full, v) in &edges[u] {
                    if v == start {
                        closing = Some((u, c, full));
                        break 'search;
                    }
                    if !seen[v] {
                        seen[v] = true;
                        from[v] = Some((u, c, full));
                        queue.push_back(v);
                    }
                }
            }
            let Some((last, c, full)) = closing else { continue };
            let mut path = vec![(last, c, full, start)];
            let mut v = last;
            while v != start {
                let (u, c, full) = from[v].expect("BFS predecessor");
                path.push((u, c, full, v));
                v = u;
            }
            path.reverse();
            if best.as_ref().is_none_or(|b| path.len() < b.len()) {
                best = Some(path);
            }
        }
        best
    }

    /// What node `i` wrote (sinks only); takes the data out.
    pub fn written(&mut self, i: usize) -> Option<Written> {
        self.slots[i].prim.written()
    }

    /// Counters of every node.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.slots
            .iter()
            .map(|s| {
                let (ins, outs) = s.stat_ports.as_ref().map_or((&s.ins, &s.outs), |(i, o)| (i, o));
                NodeStats {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    fires: s.fires,
                    busy: s.fires.saturating_mul(s.ii),
                    stall_in: s.stall_in,
                    stall_out: s.stall_out,
                    finish: s.t,
                    tokens_in: ins.iter().map(|&c| self.chans[c as usize].pushed).sum(),
                    tokens_out: outs.iter().flatten().map(|&c| self.chans[c as usize].pushed).sum(),
                    ops: s.prim.ops(),
                    bytes_read: s.prim.traffic().0,
                    bytes_written: s.prim.traffic().1,
                    mem_requests: s.prim.mem_stats().0,
                    mem_bytes: s.prim.mem_stats().1,
                }
            })
            .collect()
    }

    /// Bytes moved by every memory port, in port creation order (node order, then each
    /// primitive's ports in order).
    pub fn port_bytes(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for s in &self.slots {
            s.prim.port_bytes(&mut out);
        }
        out
    }

    /// Tokens sent over all channels.
    pub fn tokens(&self) -> u64 {
        self.chans.iter().map(|c| c.pushed).sum()
    }
}

/// Off-chip traffic of one tensor.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TensorTraffic {
    /// Bytes read: 4 per coordinate, segment entry or value touched.
    pub bytes_read: u64,
    /// Bytes written: 4 per coordinate, segment entry or value written.
    pub bytes_written: u64,
    /// Memory requests issued (0 with ideal memory).
    pub mem_requests: u64,
    /// Bytes those requests moved (whole lines for reads), 0 with ideal memory.
    pub mem_bytes: u64,
}

/// A channel whose capacity FIFO sizing raised above its configured depth.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnlargedChannel {
    /// The stream (graph stream id).
    pub stream: u32,
    /// The stream's name.
    pub name: String,
    /// The consuming node.
    pub consumer: u32,
    /// The depth configured for it.
    pub configured: u64,
    /// The depth it got.
    pub depth: u64,
    /// The reducer whose fibers it buffers (`None`: look-ahead slack).
    pub reducer: Option<u32>,
}

/// The FIFO storage of a run with bounded channels.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FifoReport {
    /// Bounded channels.
    pub bounded_channels: usize,
    /// Their total capacity in tokens: the FIFO storage the machine needs, enlarged channels
    /// included.
    pub total_capacity: u64,
    /// Channels that [`SimConfig::fifo_sizing`] enlarged, by stream.
    pub enlarged: Vec<EnlargedChannel>,
}

/// The result of simulating a graph.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// Total cycles (largest local clock of any node).
    pub cycles: u64,
    /// Tokens sent over all channels.
    pub tokens: u64,
    /// Arithmetic operations (ALU, reducer and accumulator operations).
    pub ops: u64,
    /// Off-chip bytes read (scanners and arrays): 4 per word touched.
    pub bytes_read: u64,
    /// Off-chip bytes written (writers): 4 per word written.
    pub bytes_written: u64,
    /// Traffic per tensor (inputs and outputs), by name.
    pub tensors: BTreeMap<String, TensorTraffic>,
    /// Memory requests issued (0 with ideal memory).
    pub mem_requests: u64,
    /// Bytes moved by memory requests (0 with ideal memory).
    pub mem_bytes: u64,
    /// Peak memory bandwidth in bytes per cycle (`None` = ideal memory).
    pub peak_bytes_per_cycle: Option<u64>,
    /// `mem_bytes / (cycles × peak_bytes_per_cycle)` (`None` = ideal memory).
    pub bandwidth_utilisation: Option<f64>,
    /// Clock frequency (MHz) used for [`SimReport::seconds`].
    pub clock_mhz: f64,
    /// Per-node counters, indexed like the graph's nodes.
    pub nodes: Vec<NodeStats>,
    /// Output tensors as written (every level compressed, mode order = written dims).
    pub outputs: BTreeMap<String, Tensor>,
    /// Activation spans, when [`SimConfig::trace`] asked for them.
    pub trace: Option<Trace>,
    /// Channel capacities; `None` when every channel is unbounded.
    pub fifo: Option<FifoReport>,
    /// Chains that ran as fused products ([`SimConfig::fuse_products`]); 0 when fusion was off
    /// or a chain met a stream it does not model and the run was repeated node by node. Speed
    /// only: nothing else in the report depends on it.
    pub fused_products: usize,
    /// How many of those chains also absorbed the sparse accumulator they feed (Gustavson
    /// rows of dense layers); speed only, as `fused_products`.
    pub fused_accumulators: usize,
    /// Filled intersections that ran fused (also under [`SimConfig::fuse_products`]; speed
    /// only, as `fused_products`).
    pub fused_fills: usize,
}

impl SimReport {
    /// Simulated time in seconds at the configured clock.
    pub fn seconds(&self) -> f64 {
        self.cycles as f64 / (self.clock_mhz * 1e6)
    }
}

/// A bound level: its format, dense size, and `seg`/`crd` arrays when compressed.
type LevelArrays = (LevelFormat, usize, Option<(Arc<Vec<u32>>, Arc<Vec<u32>>)>);

struct TensorArrays {
    levels: Vec<LevelArrays>,
    vals: Arc<Vec<f64>>,
}

/// Simulates `graph` on `tensors` (every input binding must be present, in its format).
///
/// With [`Sharing::Demand`] memory the graph runs twice: once with private memory ports to
/// count the bytes each access stream moves (a count that does not depend on timing), then
/// with each stream's share of the memory proportional to its count.
pub fn simulate(graph: &Graph, tensors: &BTreeMap<String, Tensor>, config: &SimConfig) -> Result<SimReport, SimError> {
    simulate_with(graph, tensors, config, &SimControl::default())
}

/// [`simulate`] watched by `control`: cancellation, progress reports and a memory limit (see
/// [`crate::control`]). The results are those of [`simulate`] whenever it returns `Ok`.
pub fn simulate_with(
    graph: &Graph,
    tensors: &BTreeMap<String, Tensor>,
    config: &SimConfig,
    control: &SimControl,
) -> Result<SimReport, SimError> {
    graph.verify()?;
    let arrays = bind(graph, tensors)?;
    let mut shares = Shares::Even;
    if let Some(m) = config.memory.as_ref().filter(|m| m.sharing == Sharing::Demand) {
        let probe =
            SimConfig { memory: Some(MemoryConfig { sharing: Sharing::Private, ..m.clone() }), ..config.clone() };
        let (mut net, _) = build(graph, &arrays, &probe, &Shares::Even, None, None, false)?;
        net.run_controlled(config.max_cycles, config.soft_cap, control)?;
        shares = Shares::Weighted(net.port_bytes());
    }
    let log = config.trace.map(|limit| TraceLog::new(Trace { limit, ..Trace::default() }.into()));
    let (mut net, mut fifo) = build(graph, &arrays, config, &shares, log.as_ref(), None, true)?;
    net.trace = log.clone();
    let cycles = match net.run_controlled(config.max_cycles, config.soft_cap, control) {
        // A fused product met a stream it does not model, or, with finite channels, a fused
        // chain, which sends a token's outputs together, waited on a consumer that the
        // separate nodes would have fed first: run the nodes one by one.
        Err(e) if net.bailed() || (matches!(e, SimError::Deadlock { .. }) && !net.fused.is_empty()) => {
            (net, fifo) = build(graph, &arrays, config, &shares, log.as_ref(), None, false)?;
            net.run_controlled(config.max_cycles, config.soft_cap, control)?
        }
        r => r?,
    };
    net.trace = None;
    let mut r = report(graph, config, net, cycles, None)?;
    r.trace = log.map(|l| l.take());
    r.fifo = fifo;
    Ok(r)
}

/// [`simulate_with`] for a blocked run (see [`crate::tile`]): `graph` is the graph of the
/// block structure, `tensors` its inputs as [`Blocked`] tensors whose blocked dimensions are
/// those of the variables in `spec`, and value streams carry tiles. Outputs are expanded back
/// to their logical shape (every element of every written tile, explicit zeros included), so
/// they compare with the scalar program's results.
pub fn simulate_blocked(
    graph: &Graph,
    tensors: &BTreeMap<String, Blocked>,
    spec: &TileSpec,
    config: &SimConfig,
    control: &SimControl,
) -> Result<SimReport, SimError> {
    graph.verify()?;
    let plan = TilePlan::new(graph, spec)?;
    let mut structure = BTreeMap::new();
    for b in &graph.inputs {
        let t = tensors
            .get(&b.tensor)
            .ok_or_else(|| SimError::Tensor { tensor: b.tensor.clone(), message: "no data supplied".into() })?;
        let want = plan.dims.get(&b.tensor).cloned().unwrap_or_default();
        if t.block != spec.block || t.dims != want {
            return Err(SimError::Tensor {
                tensor: b.tensor.clone(),
                message: format!(
                    "blocked {}x along dimensions {:?}, the graph blocks {}x along {:?}",
                    t.block, t.dims, spec.block, want
                ),
            });
        }
        structure.insert(b.tensor.clone(), t.blocks.clone());
    }
    let arrays = bind(graph, &structure)?;
    let ctx = || TileCtx::new(graph, tensors, &plan, config);
    let mut shares = Shares::Even;
    if let Some(m) = config.memory.as_ref().filter(|m| m.sharing == Sharing::Demand) {
        let probe =
            SimConfig { memory: Some(MemoryConfig { sharing: Sharing::Private, ..m.clone() }), ..config.clone() };
        let (mut net, _) = build(graph, &arrays, &probe, &Shares::Even, None, Some(&ctx()?), false)?;
        net.run_controlled(config.max_cycles, config.soft_cap, control)?;
        shares = Shares::Weighted(net.port_bytes());
    }
    let log = config.trace.map(|limit| TraceLog::new(Trace { limit, ..Trace::default() }.into()));
    let tiles = ctx()?;
    let (mut net, fifo) = build(graph, &arrays, config, &shares, log.as_ref(), Some(&tiles), false)?;
    net.trace = log.clone();
    let cycles = net.run_controlled(config.max_cycles, config.soft_cap, control)?;
    net.trace = None;
    let mut r = report(graph, config, net, cycles, Some(&tiles))?;
    r.trace = log.map(|l| l.take());
    r.fifo = fifo;
    Ok(r)
}

/// What building a blocked run's primitives needs: its arena (input tiles loaded), the plan and
/// the tile units' timing.
struct TileCtx<'a> {
    arena: SharedArena,
    plan: &'a TilePlan,
    /// Per input tensor: first tile id, tiles, values per tile.
    bases: BTreeMap<String, (u32, u32, u32)>,
    timing: TileTiming,
}

impl<'a> TileCtx<'a> {
    fn new(
        graph: &Graph,
        tensors: &BTreeMap<String, Blocked>,
        plan: &'a TilePlan,
        config: &SimConfig,
    ) -> Result<TileCtx<'a>, SimError> {
        let mut arena = TileArena::new(plan.spec.block);
        let mut bases = BTreeMap::new();
        for b in &graph.inputs {
            let Some(t) = tensors.get(&b.tensor) else { continue };
            let axes = plan.axes.get(&b.tensor).cloned().unwrap_or_default();
            let bad = |message: String| SimError::Tensor { tensor: b.tensor.clone(), message };
            let base = load_tiles(&mut arena, &axes, &t.tiles).map_err(bad)?;
            let count = u32::try_from(t.stored_blocks()).map_err(|_| bad("more than 2^32 blocks".into()))?;
            bases.insert(b.tensor.clone(), (base, count, t.tile_len() as u32));
        }
        Ok(TileCtx { arena: Rc::new(RefCell::new(arena)), plan, bases, timing: config.tile.at(plan.spec.block) })
    }

    /// The tile primitive of node `i` and its timing, or `None` for primitives that blocking
    /// does not change.
    #[allow(clippy::type_complexity)]
    fn prim(
        &self,
        i: usize,
        op: &Op,
        config: &SimConfig,
        port: &mut dyn FnMut() -> Option<crate::memory::MemPort>,
    ) -> Result<Option<(Box<dyn Primitive>, (u64, u64))>, SimError> {
        let t = &self.timing;
        let arena = || self.arena.clone();
        let axis = || match self.plan.nodes[i] {
            NodeTile::Reduce { axis } => axis,
            _ => None,
        };
        Ok(Some(match op {
            Op::Array { tensor } => {
                let &(base, count, tl) = self.bases.get(tensor).ok_or_else(|| SimError::Tensor {
                    tensor: tensor.clone(),
                    message: "not bound by the graph".into(),
                })?;
                let array = TileArray::new(base, count, tl);
                let array = match port() {
                    Some(p) => array.with_memory(p),
                    None => array,
                };
                (Box::new(array), t.array)
            }
            Op::Alu { op } => {
                let contract = match self.plan.nodes[i] {
                    NodeTile::Alu { contract } => contract,
                    _ => None,
                };
                let timing = match (contract, op.arity()) {
                    (Some(_), _) => t.matmul,
                    (None, 2) => t.elementwise,
                    _ => t.unary,
                };
                (Box::new(TileAlu::new(arena(), *op, contract)), timing)
            }
            Op::Reduce { op } => (Box::new(TileReduce::new(arena(), *op, axis())), t.reduce),
            Op::Spacc { order, op, .. } => {
                let acc = TileAcc { arena: arena(), axis: axis() };
                let burst = config.timing.quirks.spacc_burst;
                let prim: Box<dyn Primitive> = match order {
                    1 => Box::new(prims::Spacc1::new(*op).with_burst(burst).with_tiles(acc)),
                    2 => Box::new(prims::Spacc2::new(*op).with_burst(burst).with_tiles(acc)),
                    _ => return Ok(None),
                };
                (prim, t.spacc)
            }
            Op::ValWrite { tensor } => {
                let axes = self.plan.axes.get(tensor).cloned().unwrap_or_default();
                let w = TileValWrite::new(arena(), axes);
                let w = match port() {
                    Some(p) => w.with_memory(p),
                    None => w,
                };
                (Box::new(w), config.timing.of(op.kind_name()))
            }
            Op::Root
            | Op::Scan { .. }
            | Op::Range { .. }
            | Op::RepSig
            | Op::Repeat { .. }
            | Op::Join { .. }
            | Op::Locate { .. }
            | Op::CrdDrop
            | Op::Fork { .. }
            | Op::Gather { .. }
            | Op::LevelWrite { .. } => return Ok(None),
        }))
    }
}

/// How memory ports are sized.
enum Shares {
    /// By `config.memory.sharing` alone.
    Even,
    /// By the bytes each port moved in a probe run, in port creation order.
    Weighted(Vec<u64>),
}

/// Checks and binds the graph's input tensors.
fn bind<'a>(graph: &'a Graph, tensors: &BTreeMap<String, Tensor>) -> Result<BTreeMap<&'a str, TensorArrays>, SimError> {
    let mut arrays: BTreeMap<&str, TensorArrays> = BTreeMap::new();
    for b in &graph.inputs {
        let t = tensors
            .get(&b.tensor)
            .ok_or_else(|| SimError::Tensor { tensor: b.tensor.clone(), message: "no data supplied".into() })?;
        if t.shape != b.shape || t.format.levels != b.levels || t.format.mode_order != b.mode_order {
            return Err(SimError::Tensor {
                tensor: b.tensor.clone(),
                message: format!(
                    "data has shape {:?} format {}, graph expects shape {:?} format {}",
                    t.shape,
                    t.format,
                    b.shape,
                    Format { levels: b.levels.clone(), mode_order: b.mode_order.clone() }
                ),
            });
        }
        t.validate().map_err(|e| SimError::Tensor { tensor: b.tensor.clone(), message: e.to_string() })?;
        let levels = t
            .levels
            .iter()
            .map(|l| match l {
                LevelData::Dense { size } => (LevelFormat::Dense, *size, None),
                LevelData::Compressed { seg, crd } => {
                    (LevelFormat::Compressed, 0, Some((Arc::new(seg.clone()), Arc::new(crd.clone()))))
                }
            })
            .collect();
        arrays.insert(&b.tensor, TensorArrays { levels, vals: Arc::new(t.vals.clone()) });
    }
    Ok(arrays)
}

/// Builds the network of `graph` over bound arrays.
///
/// With `fuse`, product chains run fused where the configuration allows
/// ([`SimConfig::fuse_products`]).
fn build(
    graph: &Graph,
    arrays: &BTreeMap<&str, TensorArrays>,
    config: &SimConfig,
    shares: &Shares,
    trace: Option<&TraceLog>,
    tiles: Option<&TileCtx>,
    fuse: bool,
) -> Result<(Network, Option<FifoReport>), SimError> {
    let lookup = |name: &str| {
        arrays
            .get(name)
            .ok_or_else(|| SimError::Tensor { tensor: name.into(), message: "not bound by the graph".into() })
    };

    let mut net = Network::new();
    // One channel per (stream, consumer); its capacity is the consumer kind's input capacity,
    // raised where the graph needs deeper channels (see `SimConfig::fifo_sizing`).
    let configured = |c: NodeId| {
        let kind = graph.nodes[c.0 as usize].op.kind_name();
        config.input_capacity.get(kind).copied().unwrap_or(config.channel_capacity)
    };
    let bounded = graph.streams.iter().flat_map(|s| &s.consumers).any(|&(c, _)| configured(c).is_some());
    let needs: BTreeMap<(u32, u32, u32), DepthNeed> = if bounded && config.fifo_sizing {
        fifo::min_depths(graph).into_iter().map(|d| ((d.stream.0, d.consumer.0, d.port), d)).collect()
    } else {
        BTreeMap::new()
    };
    let mut fifo = bounded.then(FifoReport::default);
    let mut in_chans: Vec<Vec<u32>> = graph.nodes.iter().map(|n| vec![0; n.ins.len()]).collect();
    let mut out_chans: Vec<Vec<Vec<u32>>> = graph.nodes.iter().map(|n| vec![Vec::new(); n.outs.len()]).collect();
    for (sid, s) in graph.streams.iter().enumerate() {
        for &(c, port) in &s.consumers {
            let mut capacity = configured(c);
            if let (Some(cap), Some(report)) = (capacity, fifo.as_mut()) {
                let mut cap = cap as u64;
                if let Some(need) = needs.get(&(sid as u32, c.0, port)).filter(|d| d.depth > cap) {
                    report.enlarged.push(EnlargedChannel {
                        stream: sid as u32,
                        name: s.name.clone(),
                        consumer: c.0,
                        configured: cap,
                        depth: need.depth,
                        reducer: need.reducer.map(|r| r.0),
                    });
                    cap = need.depth;
                    capacity = Some(usize::try_from(cap).unwrap_or(usize::MAX));
                }
                report.bounded_channels += 1;
                report.total_capacity = report.total_capacity.saturating_add(cap);
            }
            let ch = net.channel(capacity);
            net.label_channel(ch, format!("s{sid} {}", s.name));
            in_chans[c.0 as usize][port as usize] = ch;
            out_chans[s.producer.0 .0 as usize][s.producer.1 as usize].push(ch);
        }
    }
    // Fused products model their inner channels (`prims::link`) and their arrays' memory
    // ports; they need the pipelined reducer, and no per-node trace or tiles.
    let fusable = fuse
        && config.fuse_products
        && trace.is_none()
        && tiles.is_none()
        && !config.timing.quirks.reduce_stop_with_value;
    let mut plans: Vec<Option<FusedPlan>> = Vec::new();
    // Per node: `Some(k)` when plan `k` absorbs it (or runs in its slot).
    let mut in_plan: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    if fusable {
        let dots = prims::dot::find(graph).into_iter().filter_map(|c| plan_dot(graph, arrays, config, c));
        // A broadcast product with its accumulator first; if that does not fit, without it.
        let bcasts = prims::bcast::find(graph)
            .into_iter()
            .flat_map(|c| [c, BcastChain { acc: None, ..c }])
            .filter_map(|c| plan_bcast(graph, arrays, config, c));
        let fills = prims::fill::find(graph).into_iter().filter_map(|c| plan_fill(graph, arrays, config, c));
        for mut plan in dots.chain(bcasts).chain(fills) {
            let nodes: Vec<usize> = plan.absorbed.iter().copied().chain([plan.runner]).collect();
            // The runner's slot is made when the build reaches it, with the memory ports of the
            // nodes before it: every absorbed node must come first.
            if nodes.iter().any(|&n| in_plan[n].is_some() || n > plan.runner)
                || !plan.wire(&nodes, &in_chans, &out_chans)
            {
                continue;
            }
            // The capacity of every channel inside the chain (its inputs from outside keep
            // their channels); chains with inner channels deeper than a link models run node
            // by node.
            plan.caps = nodes
                .iter()
                .flat_map(|&n| in_chans[n].iter().enumerate().map(move |(p, &c)| ((n, p), c)))
                .filter(|(_, c)| plan.internal.contains(c))
                .map(|(key, c)| (key, net.chans[c as usize].capacity()))
                .collect();
            if plan.caps.values().flatten().any(|&c| c > MAX_LINK_CAPACITY) {
                continue;
            }
            for n in nodes {
                in_plan[n] = Some(plans.len());
            }
            plans.push(Some(plan));
        }
    }
    // Every memory access stream (one per array a primitive reads or writes) gets its own
    // port (see `memory`).
    let streams = |op: &Op| match op {
        Op::Scan { format: LevelFormat::Compressed, .. } | Op::LevelWrite { .. } => 2,
        Op::Array { .. } | Op::ValWrite { .. } => 1,
        _ => 0,
    };
    let requesters: usize = graph.nodes.iter().map(|n| streams(&n.op)).sum();
    // Demand weights: a stream's bytes, but at least an even share of all bytes, so that a
    // stream with few requests is not starved; shares are normalised to the whole memory.
    let (floor, total) = match shares {
        Shares::Weighted(w) => {
            let floor = (w.iter().sum::<u64>() / requesters.max(1) as u64).max(1);
            (floor, w.iter().map(|&b| b.max(floor)).sum::<u64>())
        }
        Shares::Even => (1, 1),
    };
    let mut next_port = 0;
    let mut port = || {
        let k = next_port;
        next_port += 1;
        config.memory.as_ref().map(|m| match shares {
            Shares::Weighted(w) => m.port_share(w.get(k).copied().unwrap_or(0).max(floor), total),
            Shares::Even => m.port(requesters),
        })
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        let kind = node.op.kind_name();
        if let Some(k) = in_plan[i] {
            let (ins, outs) = (std::mem::take(&mut in_chans[i]), std::mem::take(&mut out_chans[i]));
            let timing = config.timing.of(kind);
            let runs_here = plans[k].as_ref().is_some_and(|p| p.runner == i);
            // Ports go to nodes in node order, absorbed or not, so each gets its share.
            if let Some(plan) = plans[k].as_mut() {
                if let Op::Array { .. } = node.op {
                    plan.ports.extend(port().map(|p| (i, p)));
                } else if let Op::Scan { format: LevelFormat::Compressed, .. } = node.op {
                    if let (Some(seg), Some(crd)) = (port(), port()) {
                        plan.scan_ports.insert(i, (seg, crd));
                    }
                }
            }
            let slot = if let Some(plan) = plans[k].take_if(|_| runs_here) {
                let shared = Rc::new(RefCell::new(FusedShared::default()));
                let run_outs = outs.iter().cloned().chain(plan.extra_outs).collect();
                let env = FusedEnv {
                    shared: shared.clone(),
                    caps: plan.caps,
                    ports: plan.ports,
                    scan_ports: plan.scan_ports,
                };
                let prim = (plan.make)(env);
                let slot = net.add(prim, plan.ins, run_outs, timing, node.label.clone(), kind);
                let accumulates = matches!(node.op, Op::Spacc { .. });
                let fill = plan.fill;
                net.fused.push(FusedRun {
                    absorbed: plan.absorbed,
                    internal: plan.internal,
                    accumulates,
                    fill,
                    shared,
                });
                slot
            } else {
                net.add(Box::<Absorbed>::default(), Vec::new(), Vec::new(), timing, node.label.clone(), kind)
            };
            net.slots[slot].stat_ports = Some((ins, outs));
            continue;
        }
        let tiled = match tiles {
            Some(tc) => tc.prim(i, &node.op, config, &mut port)?,
            None => None,
        };
        let (prim, timing): (Box<dyn Primitive>, _) = if let Some(t) = tiled {
            t
        } else {
            let prim: Box<dyn Primitive> = match &node.op {
                Op::Root => Box::new(prims::Root::default()),
                Op::Scan { tensor, level, format, .. } => {
                    let t = lookup(tensor)?;
                    let Some((f, size, arrs)) = t.levels.get(*level as usize) else {
                        return Err(SimError::Tensor {
                            tensor: tensor.clone(),
                            message: format!("has no level {level}"),
                        });
                    };
                    if f != format {
                        return Err(SimError::Tensor {
                            tensor: tensor.clone(),
                            message: format!("level {level} is {}, scanner n{i} expects {}", f.name(), format.name()),
                        });
                    }
                    let src = match arrs {
                        None => LevelSource::Dense(*size as u32),
                        Some((seg, crd)) => LevelSource::Compressed { seg: seg.clone(), crd: crd.clone() },
                    };
                    let compressed = matches!(src, LevelSource::Compressed { .. });
                    let scan = prims::Scan::new(src);
                    Box::new(match if compressed { (port(), port()) } else { (None, None) } {
                        (Some(seg), Some(crd)) => scan.with_memory(seg, crd),
                        _ => scan,
                    })
                }
                Op::Range { size, .. } => Box::new(prims::Scan::new(LevelSource::Dense(*size))),
                Op::RepSig => Box::new(prims::RepSig::default()),
                Op::Repeat { .. } => Box::new(prims::Repeat::default()),
                Op::Join { kind, payloads, .. } => Box::new(prims::Join::new(*kind, payloads)),
                Op::Locate { size, .. } => Box::new(prims::Locate::new(*size)),
                Op::Array { tensor } => {
                    let array = prims::Array::new(lookup(tensor)?.vals.clone());
                    Box::new(match port() {
                        Some(p) => array.with_memory(p),
                        None => array,
                    })
                }
                Op::Alu { op } => Box::new(prims::Alu::new(*op)),
                Op::Reduce { op } => {
                    Box::new(prims::Reduce::new(*op).with_stop_with_value(config.timing.quirks.reduce_stop_with_value))
                }
                Op::Spacc { order: 1, op, .. } => {
                    Box::new(prims::Spacc1::new(*op).with_burst(config.timing.quirks.spacc_burst))
                }
                Op::Spacc { order: 2, op, .. } => {
                    Box::new(prims::Spacc2::new(*op).with_burst(config.timing.quirks.spacc_burst))
                }
                Op::Spacc { order, .. } => {
                    return Err(SimError::Protocol {
                        node: i as u32,
                        message: format!("no sparse accumulator of order {order}"),
                    })
                }
                Op::CrdDrop => {
                    Box::new(prims::CrdDrop::default().with_free_inner(config.timing.quirks.crddrop_free_inner))
                }
                Op::Fork { lanes, .. } => Box::new(prims::Fork::new(*lanes)),
                Op::Gather { lanes, depth, .. } => Box::new(prims::Gather::new(*lanes, *depth)),
                Op::LevelWrite { .. } => Box::new(match (port(), port()) {
                    (Some(seg), Some(crd)) => prims::LevelWrite::default().with_memory(seg, crd),
                    _ => prims::LevelWrite::default(),
                }),
                Op::ValWrite { .. } => Box::new(match port() {
                    Some(p) => prims::ValWrite::default().with_memory(p),
                    None => prims::ValWrite::default(),
                }),
            };
            (prim, config.timing.of(kind))
        };
        let prim = match trace {
            Some(log) => {
                let ports = (node.ins.len(), node.outs.len());
                Box::new(Traced::new(prim, log.clone(), i as u32, ports, timing.0))
            }
            None => prim,
        };
        net.add(
            prim,
            std::mem::take(&mut in_chans[i]),
            std::mem::take(&mut out_chans[i]),
            timing,
            node.label.clone(),
            kind,
        );
    }
    Ok((net, fifo))
}

/// A fused product in a built network: the nodes it absorbed (in its `stages` order), the
/// channels inside it, and what its node leaves.
struct FusedRun {
    absorbed: Vec<usize>,
    /// The chain runs in a sparse accumulator's slot (it absorbed the accumulator).
    accumulates: bool,
    /// A filled intersection ([`prims::fill`]), not a product.
    fill: bool,
    internal: Vec<u32>,
    shared: Rc<RefCell<FusedShared>>,
}

/// Makes a fused node that reports to the given shared state.
type MakeFused = Box<dyn FnOnce(FusedEnv) -> Box<dyn Primitive>>;

/// A chain that can run fused, before its node is made.
struct FusedPlan {
    /// The node whose slot runs the chain (its own counters are the fused node's).
    runner: usize,
    /// The other nodes, in the order of the fused node's stages.
    absorbed: Vec<usize>,
    /// Input ports of the fused node: `(absorbed node, its input port)`.
    inputs: Vec<(usize, usize)>,
    /// Output ports after the runner's own: `(absorbed node, its output port)`, to the
    /// consumers outside the chain.
    outputs: Vec<(usize, usize)>,
    /// Set by [`FusedPlan::wire`]: input channels, extra output channels, inner channels.
    ins: Vec<u32>,
    extra_outs: Vec<Vec<u32>>,
    internal: Vec<u32>,
    /// Capacity of each channel inside the chain, by `(consumer node, input port)`.
    caps: BTreeMap<(usize, usize), Option<usize>>,
    /// Memory ports of the absorbed arrays and compressed scanners, made as the build reaches
    /// them.
    ports: BTreeMap<usize, MemPort>,
    scan_ports: BTreeMap<usize, (MemPort, MemPort)>,
    /// A filled intersection ([`prims::fill`]), not a product.
    fill: bool,
    /// Makes the fused node.
    make: MakeFused,
}

impl FusedPlan {
    /// A plan whose channels [`FusedPlan::wire`] will find.
    fn new(
        runner: usize,
        absorbed: Vec<usize>,
        inputs: Vec<(usize, usize)>,
        outputs: Vec<(usize, usize)>,
        make: MakeFused,
    ) -> FusedPlan {
        FusedPlan {
            runner,
            absorbed,
            inputs,
            outputs,
            ins: Vec::new(),
            extra_outs: Vec::new(),
            internal: Vec::new(),
            caps: BTreeMap::new(),
            ports: BTreeMap::new(),
            scan_ports: BTreeMap::new(),
            fill: false,
            make,
        }
    }

    /// Finds the chain's channels; false if an absorbed node's output leaves the chain other
    /// than through the fused node's outputs.
    fn wire(&mut self, nodes: &[usize], in_chans: &[Vec<u32>], out_chans: &[Vec<Vec<u32>>]) -> bool {
        let consumed: Vec<u32> = nodes.iter().flat_map(|&n| in_chans[n].iter().copied()).collect();
        self.internal = self
            .absorbed
            .iter()
            .flat_map(|&n| out_chans[n].iter().flatten().copied())
            .filter(|c| consumed.contains(c))
            .collect();
        self.ins = self.inputs.iter().map(|&(n, p)| in_chans[n][p]).collect();
        self.extra_outs = self
            .outputs
            .iter()
            .map(|&(n, p)| out_chans[n][p].iter().copied().filter(|c| !self.internal.contains(c)).collect())
            .collect();
        let leaving = self
            .absorbed
            .iter()
            .flat_map(|&n| out_chans[n].iter().enumerate().flat_map(move |(p, cs)| cs.iter().map(move |&c| (n, p, c))));
        let ok = leaving.filter(|(_, _, c)| !self.internal.contains(c)).all(|(n, p, _)| self.outputs.contains(&(n, p)));
        ok && !self.ins.iter().any(|c| self.internal.contains(c))
    }
}

/// The size of dense scanner `n`'s level, when the tensor is bound with that level dense.
fn dense_size(graph: &Graph, arrays: &BTreeMap<&str, TensorArrays>, n: usize) -> Option<u32> {
    match &graph.nodes[n].op {
        Op::Scan { tensor, level, format: LevelFormat::Dense, .. } => {
            match arrays.get(tensor.as_str())?.levels.get(*level as usize)? {
                (LevelFormat::Dense, size, None) => u32::try_from(*size).ok().filter(|&s| s > 0),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The values array `n` reads.
fn array_vals(graph: &Graph, arrays: &BTreeMap<&str, TensorArrays>, n: usize) -> Option<Arc<Vec<f64>>> {
    match &graph.nodes[n].op {
        Op::Array { tensor } => Some(arrays.get(tensor.as_str())?.vals.clone()),
        _ => None,
    }
}

/// The fused form of a dot product, when its operands' levels are dense, of one size, and
/// bound as the graph says (otherwise the nodes are built one by one, which reports any
/// mismatch).
fn plan_dot(
    graph: &Graph,
    arrays: &BTreeMap<&str, TensorArrays>,
    config: &SimConfig,
    chain: DotChain,
) -> Option<FusedPlan> {
    let op = match graph.nodes[chain.reduce].op {
        Op::Reduce { op } => op,
        _ => return None,
    };
    let size = dense_size(graph, arrays, chain.scan[0])?;
    (dense_size(graph, arrays, chain.scan[1])? == size).then_some(())?;
    let vals = [array_vals(graph, arrays, chain.array[0])?, array_vals(graph, arrays, chain.array[1])?];
    let timing = DotTiming {
        scan: config.timing.of("scan_dense"),
        join: config.timing.of("intersect"),
        array: config.timing.of("array"),
        alu: config.timing.of("alu"),
    };
    let max_cycles = config.max_cycles;
    let make: MakeFused = Box::new(move |env| {
        if env.inline() {
            Box::new(Dot::<Inline>::new(chain, size, vals, op, &timing, max_cycles, env))
        } else {
            Box::new(Dot::<Deep>::new(chain, size, vals, op, &timing, max_cycles, env))
        }
    });
    Some(FusedPlan::new(chain.reduce, chain.absorbed(), vec![(chain.scan[0], 0), (chain.scan[1], 0)], Vec::new(), make))
}

/// The fused form of a broadcast product over a dense level, with its accumulator when
/// [`BcastChain::acc`] is set (not with Comal's burst timing, which the fused accumulator
/// does not model).
fn plan_bcast(
    graph: &Graph,
    arrays: &BTreeMap<&str, TensorArrays>,
    config: &SimConfig,
    chain: BcastChain,
) -> Option<FusedPlan> {
    let size = dense_size(graph, arrays, chain.scan)?;
    let rep_vals = match chain.rep_array {
        Some(a) => Some(array_vals(graph, arrays, a)?),
        None => None,
    };
    let vals = (rep_vals, array_vals(graph, arrays, chain.scan_array)?);
    let acc_op = match chain.acc.map(|a| &graph.nodes[a].op) {
        None => None,
        Some(Op::Spacc { order: 1, op, .. }) if !config.timing.quirks.spacc_burst => Some(*op),
        Some(_) => return None,
    };
    let timing = BcastTiming {
        scan: config.timing.of("scan_dense"),
        repsig: config.timing.of("repsig"),
        repeat: config.timing.of("repeat"),
        array: config.timing.of("array"),
        alu: config.timing.of("alu"),
    };
    let max_cycles = config.max_cycles;
    let make: MakeFused = Box::new(move |env| {
        if env.inline() {
            Box::new(Bcast::<Inline>::new(chain, size, vals, acc_op, &timing, max_cycles, env))
        } else {
            Box::new(Bcast::<Deep>::new(chain, size, vals, acc_op, &timing, max_cycles, env))
        }
    });
    let refs = [(chain.scan, 0), (chain.repeat, 0)];
    Some(match chain.acc {
        Some(acc) => {
            FusedPlan::new(acc, chain.absorbed(), [(acc, 0)].into_iter().chain(refs).collect(), Vec::new(), make)
        }
        None => FusedPlan::new(chain.mul, chain.absorbed(), refs.to_vec(), vec![(chain.scan, 0)], make),
    })
}

/// The fused form of a filled intersection ([`prims::fill`]), when its levels are bound as the
/// graph says.
fn plan_fill(
    graph: &Graph,
    arrays: &BTreeMap<&str, TensorArrays>,
    config: &SimConfig,
    chain: FillChain,
) -> Option<FusedPlan> {
    let mut kinds = Vec::new();
    for &n in &chain.nodes {
        let op = &graph.nodes[n].op;
        let kind = match op {
            Op::Scan { tensor, level, format: LevelFormat::Compressed, .. } => {
                match arrays.get(tensor.as_str())?.levels.get(*level as usize)? {
                    (LevelFormat::Compressed, _, Some((seg, crd))) => {
                        FillKind::Compressed { seg: seg.clone(), crd: crd.clone() }
                    }
                    _ => return None,
                }
            }
            Op::Scan { format: LevelFormat::Dense, .. } => FillKind::Dense(dense_size(graph, arrays, n)?),
            Op::Range { size, .. } => FillKind::Dense(*size),
            Op::Join { kind: JoinKind::Union, payloads, .. } => {
                FillKind::Union(payloads.iter().map(|&p| p as usize).collect())
            }
            _ => return None,
        };
        kinds.push((kind, config.timing.of(op.kind_name())));
    }
    let x = chain.other_first(graph);
    let inputs =
        [(chain.join, x), (chain.join, x + 1)].into_iter().chain(chain.leaves(graph).map(|n| (n, 0))).collect();
    let (join, absorbed) = (chain.join, chain.absorbed());
    let fill = Fill::new(graph, chain, kinds, config.timing.of("intersect").0, config.max_cycles);
    let make: MakeFused = Box::new(move |env| Box::new(fill.in_env(env)));
    let mut plan = FusedPlan::new(join, absorbed, inputs, Vec::new(), make);
    plan.fill = true;
    Some(plan)
}

/// Assembles the report (and output tensors) of a finished run.
fn report(
    graph: &Graph,
    config: &SimConfig,
    mut net: Network,
    cycles: u64,
    tiles: Option<&TileCtx>,
) -> Result<SimReport, SimError> {
    let nodes = net.stats();
    let mut outputs = BTreeMap::new();
    for b in &graph.outputs {
        let rank = b.dims.len();
        let mut levels: Vec<Option<LevelData>> = vec![None; rank];
        let mut vals = None;
        for (i, node) in graph.nodes.iter().enumerate() {
            match &node.op {
                Op::LevelWrite { tensor, level } if *tensor == b.tensor => {
                    if let Some(Written::Level { seg, crd }) = net.written(i) {
                        if let Some(slot) = levels.get_mut(*level as usize) {
                            *slot = Some(LevelData::Compressed { seg, crd });
                        }
                    }
                }
                Op::ValWrite { tensor } if *tensor == b.tensor => {
                    if let Some(Written::Vals(v)) = net.written(i) {
                        vals = Some(v);
                    }
                }
                _ => {}
            }
        }
        let missing =
            |what: String| SimError::Output { tensor: b.tensor.clone(), message: format!("no writer for {what}") };
        let levels: Vec<LevelData> = levels
            .into_iter()
            .enumerate()
            .map(|(l, d)| d.ok_or_else(|| missing(format!("level {l}"))))
            .collect::<Result<_, _>>()?;
        let vals = vals.ok_or_else(|| missing("values".into()))?;
        let format = Format { levels: vec![LevelFormat::Compressed; rank], mode_order: b.dims.clone() };
        let bad =
            |e: fuseflow_tensor::TensorError| SimError::Output { tensor: b.tensor.clone(), message: e.to_string() };
        let t = match tiles {
            None => Tensor { shape: b.shape.clone(), format, levels, vals },
            Some(tc) => {
                // The writers stored the block structure and every tile's values: expand them.
                let dims = tc.plan.dims.get(&b.tensor).cloned().unwrap_or_else(|| vec![false; rank]);
                let tl = fuseflow_tensor::block::tile_len(tc.plan.spec.block, &dims);
                let blocks =
                    Tensor { shape: b.shape.clone(), format: format.clone(), levels, vals: vec![1.0; vals.len() / tl] };
                blocks.validate().map_err(bad)?;
                if blocks.vals.len() * tl != vals.len() {
                    return Err(SimError::Output {
                        tensor: b.tensor.clone(),
                        message: format!("{} values written for {} tiles of {tl}", vals.len(), blocks.vals.len()),
                    });
                }
                let blocked = Blocked { blocks, block: tc.plan.spec.block, dims, tiles: vals };
                Tensor::from_coo(&blocked.expand(), &format).map_err(bad)?
            }
        };
        t.validate().map_err(bad)?;
        outputs.insert(b.tensor.clone(), t);
    }
    let mut traffic: BTreeMap<String, TensorTraffic> = BTreeMap::new();
    for (node, stats) in graph.nodes.iter().zip(&nodes) {
        let tensor = match &node.op {
            Op::Scan { tensor, format: LevelFormat::Compressed, .. }
            | Op::Array { tensor }
            | Op::LevelWrite { tensor, .. }
            | Op::ValWrite { tensor } => tensor,
            _ => continue,
        };
        let t = traffic.entry(tensor.clone()).or_default();
        t.bytes_read += stats.bytes_read;
        t.bytes_written += stats.bytes_written;
        t.mem_requests += stats.mem_requests;
        t.mem_bytes += stats.mem_bytes;
    }
    let mem_bytes = nodes.iter().map(|n| n.mem_bytes).sum();
    let peak = config.memory.as_ref().map(MemoryConfig::peak_bytes_per_cycle);
    Ok(SimReport {
        cycles,
        tokens: net.tokens(),
        ops: nodes.iter().map(|n| n.ops).sum(),
        bytes_read: nodes.iter().map(|n| n.bytes_read).sum(),
        bytes_written: nodes.iter().map(|n| n.bytes_written).sum(),
        tensors: traffic,
        mem_requests: nodes.iter().map(|n| n.mem_requests).sum(),
        mem_bytes,
        peak_bytes_per_cycle: peak,
        bandwidth_utilisation: peak.map(|p| mem_bytes as f64 / (cycles.max(1) as f64 * p as f64)),
        clock_mhz: config.clock_mhz,
        nodes,
        outputs,
        trace: None,
        fifo: None,
        fused_products: net.fused.iter().filter(|f| !f.fill).count(),
        fused_accumulators: net.fused.iter().filter(|f| f.accumulates).count(),
        fused_fills: net.fused.iter().filter(|f| f.fill).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::Awake;

    fn drain(a: &mut Awake) -> Vec<usize> {
        let mut v = Vec::new();
        let mut next = 0;
        while let Some(i) = a.take_from(next) {
            v.push(i);
            next = i + 1;
        }
        v
    }

    #[test]
    fn awake_slots_are_taken_in_order_once_per_sweep() {
        let mut a = Awake::new(130);
        assert_eq!(drain(&mut a), (0..130).collect::<Vec<_>>(), "all awake at first, none past the end");
        assert_eq!(drain(&mut a), Vec::<usize>::new(), "taking puts to sleep");
        for i in [129, 3, 64, 63] {
            a.set(i);
        }
        // A slot woken behind the sweep's position waits for the next sweep.
        let mut sweep = Vec::new();
        let mut next = 0;
        while let Some(i) = a.take_from(next) {
            sweep.push(i);
            if i == 64 {
                a.set(5);
                a.set(100);
            }
            next = i + 1;
        }
        assert_eq!(sweep, vec![3, 63, 64, 100, 129]);
        assert_eq!(drain(&mut a), vec![5]);
        a.all();
        assert_eq!(drain(&mut a).len(), 130);
        let mut exact = Awake::new(128);
        assert_eq!(drain(&mut exact).len(), 128);
    }
}
