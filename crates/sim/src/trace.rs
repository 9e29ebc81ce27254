//! Optional activation tracing: which node was active when.
//!
//! With [`crate::SimConfig::trace`] set, every primitive is wrapped in a [`Traced`] recorder
//! that notes, for each activation in which the node fired, the span of simulated cycles it
//! covered. Nothing is wrapped when tracing is off, so an untraced run executes exactly the
//! code it executes without this module; a traced run gives the same cycles, counters and
//! outputs (the wrapper only observes).
//!
//! A span ends at the node's clock after its last fire of the activation (that fire's cycle
//! plus the initiation interval). It starts at the activation's first fire, which the engine
//! does not report, so the recorder infers it: the node stopped last time for lack of an input
//! token or of space on an output, and its first fire now waits for the earliest of those to
//! be available (the ready cycle of the new head token, the cycle the full channel frees a
//! slot). That is a lower bound on the first fire; it is exact unless the fire also waits for
//! memory or for another input. Stalls between the fires of an activation lie inside its span;
//! `Span::busy` says how many of its cycles were fires.

use std::cell::RefCell;
use std::rc::Rc;

use crate::io::{Io, Primitive};
use crate::{SimError, Written};

/// One activation of one node in which it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    /// Node index (as in the graph).
    pub node: u32,
    /// First cycle of the span.
    pub start: u64,
    /// Cycle after the span: the node's clock after its last fire.
    pub end: u64,
    /// Fires in the span.
    pub fires: u64,
    /// Cycles the fires occupied (fires × initiation interval); the rest of the span stalled.
    pub busy: u64,
}

/// The activation spans of one simulation, in the order the engine ran them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Trace {
    /// Recorded spans (at most `limit`).
    pub spans: Vec<Span>,
    /// Spans not recorded because the limit was reached.
    pub dropped: u64,
    /// The limit this run was given.
    pub limit: usize,
}

impl Trace {
    /// Whether spans were dropped.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }
}

/// Where the recorders of one network write.
pub(crate) type TraceLog = Rc<RefCell<Trace>>;

/// A primitive wrapped with an activation recorder.
pub(crate) struct Traced {
    inner: Box<dyn Primitive>,
    log: TraceLog,
    node: u32,
    ii: u64,
    /// Inputs that were empty when the node last stopped.
    starved: Vec<bool>,
    /// Output ports that had a full channel when the node last stopped.
    blocked: Vec<bool>,
}

impl Traced {
    pub(crate) fn new(
        inner: Box<dyn Primitive>,
        log: TraceLog,
        node: u32,
        (inputs, outputs): (usize, usize),
        ii: u64,
    ) -> Traced {
        Traced { inner, log, node, ii, starved: vec![true; inputs], blocked: vec![false; outputs] }
    }
}

impl Primitive for Traced {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let (t0, f0) = (io.t, io.fires);
        // The node last stopped for lack of an input token or of space on an output: its
        // first fire now waits for the earliest of those to become available.
        let inputs = (0..self.starved.len()).filter(|&p| self.starved[p]).filter_map(|p| io.head(p).map(|h| h.0));
        let outputs = (0..self.blocked.len()).filter(|&p| self.blocked[p]).filter_map(|p| io.out_free(p));
        let woke = inputs.chain(outputs).min().unwrap_or(0);
        let result = self.inner.run(io);
        for (p, s) in self.starved.iter_mut().enumerate() {
            *s = io.head(p).is_none();
        }
        for (p, b) in self.blocked.iter_mut().enumerate() {
            *b = io.out_free(p).is_none();
        }
        let fires = io.fires - f0;
        if fires > 0 {
            let end = io.t;
            let busy = fires.saturating_mul(self.ii);
            let start = t0.max(woke).min(end.saturating_sub(busy)).max(t0);
            let mut log = self.log.borrow_mut();
            if log.spans.len() < log.limit {
                log.spans.push(Span { node: self.node, start, end, fires, busy });
            } else {
                log.dropped += 1;
            }
        }
        result
    }
    fn done(&self) -> bool {
        self.inner.done()
    }
    fn written(&mut self) -> Option<Written> {
        self.inner.written()
    }
    fn ops(&self) -> u64 {
        self.inner.ops()
    }
    fn traffic(&self) -> (u64, u64) {
        self.inner.traffic()
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.inner.mem_stats()
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        self.inner.port_bytes(out)
    }
    fn footprint(&self) -> usize {
        self.inner.footprint()
    }
}
