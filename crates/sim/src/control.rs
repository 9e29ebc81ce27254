//! Watching and stopping a run from outside: cancellation, progress, and a memory budget.
//!
//! A [`SimControl`] travels beside a [`crate::SimConfig`] (it is not part of it: it never
//! changes what a run computes, only whether it goes on). The engine looks at it once per
//! scheduling sweep, a pass over every node that moves at most a soft cap of tokens per
//! channel, so checks cost nothing measurable and a request to stop is honoured within a
//! sweep:
//! - `cancel`: once set (e.g. by a Ctrl-C handler), the run ends with
//!   [`crate::SimError::Cancelled`].
//! - `observer`: called with a [`SimProgress`] about every [`PROGRESS_INTERVAL`] of wall time,
//!   for progress displays.
//! - `mem_limit`: the bytes that channel buffers and writers' outputs may hold together; a run
//!   that would go past it ends with [`crate::SimError::Memory`] naming the largest holder.
//!   Checked at the same moments as the observer, so a run may overshoot by what one interval
//!   adds (writers append at most 8 bytes per token).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often (wall time) the engine reports progress and checks its memory.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Where a running simulation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimProgress {
    /// Largest local clock of any node so far.
    pub cycles: u64,
    /// Tokens sent over all channels so far.
    pub tokens: u64,
    /// Bytes held by channel buffers and writers' outputs.
    pub bytes: u64,
}

/// A progress callback. It runs on the simulating thread, so it should be quick.
pub type Observer = Arc<dyn Fn(&SimProgress) + Send + Sync>;

/// Hooks and limits of a run that never change its results (see the module documentation).
#[derive(Clone, Default)]
pub struct SimControl {
    /// Set to stop the run.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called with progress about every [`PROGRESS_INTERVAL`].
    pub observer: Option<Observer>,
    /// Bytes channel buffers and output writers may hold; `None` = no limit.
    pub mem_limit: Option<u64>,
}

impl std::fmt::Debug for SimControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl")
            .field("cancel", &self.cancel)
            .field("observer", &self.observer.as_ref().map(|_| "Fn"))
            .field("mem_limit", &self.mem_limit)
            .finish()
    }
}

impl SimControl {
    /// Whether a stop was requested.
    #[inline]
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Reports progress to the observer, if any.
    pub fn report(&self, p: &SimProgress) {
        if let Some(o) = &self.observer {
            o(p);
        }
    }
}
