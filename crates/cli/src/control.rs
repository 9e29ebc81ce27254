//! Watching and stopping a run: the hook between the driver and whoever drives it.
//!
//! [`RunControl`] is passed beside a [`crate::RunConfig`] to [`crate::run_with`]. It carries
//! a cancellation flag and an optional observer; the driver tells the observer which phase it
//! is in (loading, reference, compiling, simulating group k of n), forwards the flag to the
//! reference evaluator ([`fuseflow_reference::EvalControl`]) and the simulator
//! ([`fuseflow_sim::SimControl`]), which check it cheaply (between statements, every 2^16
//! points, once per scheduling sweep), and turns their progress into [`RunProgress`] events.
//! Neither the flag nor the observer ever changes a result: a run either returns the report
//! that [`crate::run`] returns or stops with [`crate::DriverError::Cancelled`]. The library
//! prints nothing; the `fuseflow` command draws a progress bar from the events and sets the
//! flag on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuseflow_sim::{SimControl, SimProgress};
use fuseflow_tensor::Budget;

use crate::DriverError;

/// Default [`crate::RunConfig::max_work`] of the `fuseflow` command: 2^34 (about 1.7·10^10)
/// products in one step of the reference evaluator, a few minutes of it.
pub const DEFAULT_MAX_WORK: u64 = 1 << 34;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Generating and reading inputs.
    Loading,
    /// The reference evaluator, at a statement.
    Reference {
        /// The statement being evaluated.
        statement: usize,
        /// Statements in all.
        statements: usize,
    },
    /// Planning and lowering the fusion groups.
    Compiling,
    /// Simulating a group's graph.
    Simulating {
        /// Group index.
        group: usize,
        /// Groups in all.
        groups: usize,
    },
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Loading => write!(f, "loading inputs"),
            Phase::Reference { statement, statements } => {
                write!(f, "evaluating the reference (statement {} of {statements})", statement + 1)
            }
            Phase::Compiling => write!(f, "compiling"),
            Phase::Simulating { group, groups } => write!(f, "simulating group {} of {groups}", group + 1),
        }
    }
}

/// One progress event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// The current phase.
    pub phase: Phase,
    /// The simulator's counters, while simulating (reported about every 100 ms).
    pub sim: Option<SimProgress>,
}

/// A progress callback; it runs on the thread doing the work, so it should be quick.
pub type RunObserver = Arc<dyn Fn(&RunProgress) + Send + Sync>;

/// Cancellation and progress hooks of a run (see the module documentation). The default
/// has neither.
#[derive(Clone, Default)]
pub struct RunControl {
    /// Set to stop the run as soon as possible.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Told about phases and simulation progress.
    pub observer: Option<RunObserver>,
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("cancel", &self.cancel)
            .field("observer", &self.observer.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl RunControl {
    /// Whether a stop was requested.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Tells the observer that `phase` starts.
    pub(crate) fn phase(&self, phase: Phase) {
        if let Some(o) = &self.observer {
            o(&RunProgress { phase, sim: None });
        }
    }

    /// [`DriverError::Cancelled`] if a stop was requested during `phase`.
    pub(crate) fn check(&self, phase: Phase, finished: impl FnOnce() -> String) -> Result<(), DriverError> {
        if self.cancelled() {
            Err(self.cancelled_error(phase, finished()))
        } else {
            Ok(())
        }
    }

    /// The error of a run stopped during `phase`.
    pub(crate) fn cancelled_error(&self, phase: Phase, finished: String) -> DriverError {
        DriverError::Cancelled { phase: phase.to_string(), finished }
    }

    /// The reference evaluator's hooks: the flag, statement progress and limits.
    pub(crate) fn eval_control(&self, budget: Budget, max_work: Option<u64>) -> fuseflow_reference::EvalControl {
        let observer = self.observer.clone();
        fuseflow_reference::EvalControl {
            budget,
            max_work,
            cancel: self.cancel.clone(),
            on_statement: observer.map(|o| -> fuseflow_reference::StatementObserver {
                Arc::new(move |statement, statements| {
                    o(&RunProgress { phase: Phase::Reference { statement, statements }, sim: None })
                })
            }),
        }
    }

    /// The simulator's hooks for `phase`: the flag, progress and the memory left.
    pub(crate) fn sim_control(&self, phase: Phase, budget: Budget) -> SimControl {
        let observer = self.observer.clone();
        SimControl {
            cancel: self.cancel.clone(),
            observer: observer.map(|o| -> fuseflow_sim::Observer {
                Arc::new(move |p: &SimProgress| o(&RunProgress { phase, sim: Some(*p) }))
            }),
            mem_limit: (budget.limit != u64::MAX).then(|| budget.left()),
        }
    }
}

/// The default memory limit: half of the smallest of the physical memory
/// (`/proc/meminfo` `MemTotal`), the cgroup's memory limit (`/sys/fs/cgroup/memory.max`) and
/// the process's address-space limit (`ulimit -v`, from `/proc/self/limits`). Half, because
/// the estimates bound single steps and the allocator, the program and the steps' neighbours
/// need room too. `None` where none of these can be read (no limit then).
pub fn default_mem_limit() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|t| t.trim().parse::<u64>().ok());
    let rlimit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("Max address space"))?;
        // "Max address space   <soft>   <hard>   bytes": the soft limit, or "unlimited".
        line.trim_start_matches("Max address space").split_whitespace().next()?.parse::<u64>().ok()
    });
    [meminfo, cgroup, rlimit].into_iter().flatten().min().map(|b| b / 2)
}
