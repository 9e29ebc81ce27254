//! `fuseflow reproduce`: one command per experiment of the paper (benchmarks.md §2–§4).
//!
//! An experiment is a list of [`Config`]s (program, shapes, data, fusion, machine, lanes,
//! blocking, order), each simulated by the driver into one [`Record`] (JSON Lines under
//! `OUT/EXP/records.jsonl`). Tables (Markdown, CSV) and plots (SVG) are built **only** from
//! records ([`render`]): nothing here holds a simulated number, so a figure cannot be
//! "reproduced" without running it, and re-rendering stored records gives the same bytes. The
//! paper's numbers ([`paper`]) sit beside ours with an agreement verdict per row.
//!
//! Like the rest of this crate it prints nothing and knows nothing of the driver: the CLI runs
//! the configurations and hands back records.

pub mod paper;
pub mod plan;
pub mod records;
pub mod render;

pub use paper::PaperData;
pub use plan::{configs, Config, Program};
pub use records::{read_records, recorded_runs, same_run_record, GroupFigures, Record, RecordLog};
pub use render::{render, Rendered};

/// Version written into every record; records of another version are refused (never mixed).
pub const RECORD_TOOL: &str = concat!("fuseflow-reproduce ", env!("CARGO_PKG_VERSION"));

/// File names inside `OUT/EXP/`.
pub const RECORDS_FILE: &str = "records.jsonl";

/// One experiment of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Experiment {
    /// End-to-end cycles of the four models at three granularities (speedup over unfused).
    Fig12,
    /// GCN FLOPs and off-chip bytes of five fusion variants, normalised to unfused.
    Fig14,
    /// Parallel-lanes scaling of the fused attention kernel.
    Fig15,
    /// Blocked against scalar fused attention.
    Fig16,
    /// Dataflow orders of the nested matmul on the karate club graph.
    Fig17,
}

impl Experiment {
    /// Every experiment, in the order `all` runs them.
    pub const ALL: [Experiment; 5] =
        [Experiment::Fig12, Experiment::Fig14, Experiment::Fig15, Experiment::Fig16, Experiment::Fig17];

    /// The name on the command line and of the output directory.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Fig12 => "fig12",
            Experiment::Fig14 => "fig14",
            Experiment::Fig15 => "fig15",
            Experiment::Fig16 => "fig16",
            Experiment::Fig17 => "fig17",
        }
    }

    /// One line saying what it measures.
    pub fn title(self) -> &'static str {
        match self {
            Experiment::Fig12 => "End-to-end speedup over unfused of GCN, GraphSAGE, SAE and GPT-3 + BigBird",
            Experiment::Fig14 => "GCN FLOPs and off-chip bytes per fusion variant, normalised to unfused",
            Experiment::Fig15 => "Parallel-lanes scaling of fused BigBird attention (dense mask)",
            Experiment::Fig16 => "Blocked vs scalar fused BigBird attention",
            Experiment::Fig17 => "Dataflow orders of the nested matmul (A·B)·C on the karate club graph",
        }
    }

    /// `fig12` … `fig17`, or `all` for every experiment.
    pub fn parse(s: &str) -> Result<Vec<Experiment>, ReproduceError> {
        let s = s.trim();
        if s == "all" {
            return Ok(Experiment::ALL.to_vec());
        }
        Experiment::ALL.iter().find(|e| e.name() == s).map(|e| vec![*e]).ok_or_else(|| {
            ReproduceError::Invalid(format!(
                "unknown experiment {s:?} (expected one of fig12, fig14, fig15, fig16, fig17, all)"
            ))
        })
    }
}

/// Problem sizes of a reproduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The programs' default (small) shapes: the whole set in about two minutes.
    Small,
    /// The paper's shapes and datasets (synthetic graphs matched to the published statistics).
    Paper,
}

impl Scale {
    /// The name on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Paper => "paper",
        }
    }

    /// `small` or `paper`.
    pub fn parse(s: &str) -> Result<Scale, ReproduceError> {
        match s.trim() {
            "small" => Ok(Scale::Small),
            "paper" => Ok(Scale::Paper),
            other => Err(ReproduceError::Invalid(format!("unknown scale {other:?} (expected small or paper)"))),
        }
    }
}

/// Reproduction failures (a configuration that fails to simulate is not one: it is recorded).
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// An unknown experiment or scale, or an unusable option.
    #[error("{0}")]
    Invalid(String),
    /// Stored records that cannot be used: none, unreadable, another tool version, another
    /// scale.
    #[error("{0}")]
    Records(String),
    /// Reading or writing an output file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The plot file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The vendored paper data does not parse (a build defect, caught by a unit test).
    #[error("paper data: {0}")]
    Paper(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_and_scales_parse() {
        assert_eq!(Experiment::parse("all").unwrap().len(), 5);
        assert_eq!(Experiment::parse(" fig17 ").unwrap(), vec![Experiment::Fig17]);
        let e = Experiment::parse("fig13").unwrap_err().to_string();
        assert!(e.contains("unknown experiment \"fig13\""), "{e}");
        assert_eq!(Scale::parse("paper").unwrap(), Scale::Paper);
        assert!(Scale::parse("huge").unwrap_err().to_string().contains("expected small or paper"));
    }
}
