//! The terminal side of the `fuseflow` command (part of the binary, with `main.rs`): the
//! progress display, Ctrl-C, and files written whole or not at all.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuseflow::{Phase, RunObserver, RunProgress};
use fuseflow_tensor::human_bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// Temporary files being written, removed if a second Ctrl-C ends the process at once.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs the Ctrl-C handler and returns the flag it sets. The first Ctrl-C asks the run to
/// stop (it does within one scheduling sweep and reports what finished); a second one ends
/// the process at once, removing any temporary file being written.
pub fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            if let Ok(files) = PENDING.lock() {
                for f in files.iter() {
                    let _ = std::fs::remove_file(f);
                }
            }
            let _ = writeln!(std::io::stderr(), "\ninterrupted twice: stopped at once, nothing written");
            std::process::exit(INTERRUPTED.into());
        }
    });
    // Without a handler (one is installed already) Ctrl-C keeps its default effect.
    drop(installed);
    flag
}

/// Writes `path` through `fill`, into a temporary file in the same directory that is renamed
/// over `path` only once complete: an interrupted or failed write leaves no partial file.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if let Ok(mut p) = PENDING.lock() {
        p.push(tmp.clone());
    }
    let result = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    if let Ok(mut p) = PENDING.lock() {
        p.retain(|f| f != &tmp);
    }
    result
}

/// A progress line on stderr while a run goes on, when stderr is a terminal: the phase, and
/// while simulating the simulated cycles, tokens per second and memory held.
pub struct Progress {
    bar: ProgressBar,
}

/// What the last simulation event said, for rates.
struct Last {
    at: Instant,
    tokens: u64,
    rate: f64,
}

impl Progress {
    /// A progress display, drawn only if stderr is a terminal.
    pub fn new() -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// The observer to pass in [`fuseflow::RunControl::observer`]; `None` when nothing is
    /// drawn.
    pub fn observer(&self) -> Option<RunObserver> {
        if self.bar.is_hidden() {
            return None;
        }
        let bar = self.bar.clone();
        let last = Mutex::new(None::<Last>);
        Some(Arc::new(move |p: &RunProgress| {
            let msg = match (&p.phase, &p.sim) {
                (Phase::Simulating { .. }, Some(s)) => {
                    let now = Instant::now();
                    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                    let rate = match last.as_ref() {
                        Some(l) if s.tokens >= l.tokens && now > l.at => {
                            (s.tokens - l.tokens) as f64 / (now - l.at).as_secs_f64()
                        }
                        Some(l) => l.rate,
                        None => 0.0,
                    };
                    *last = Some(Last { at: now, tokens: s.tokens, rate });
                    format!(
                        "{}: cycle {}, {} tokens, {:.1} M tokens/s, {} held",
                        p.phase,
                        s.cycles,
                        s.tokens,
                        rate / 1e6,
                        human_bytes(s.bytes)
                    )
                }
                (phase, _) => {
                    if let Ok(mut l) = last.lock() {
                        *l = None;
                    }
                    phase.to_string()
                }
            };
            bar.set_message(msg);
        }))
    }

    /// Removes the line (before the report is printed).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
