//! The paper's numbers and claims (`data/paper-results.toml`, which names its sources), and
//! the agreement verdict of a row of ours against them.

use super::ReproduceError;

const PAPER_TOML: &str = include_str!("../../data/paper-results.toml");

/// A fig12 row of the paper: speedups over unfused and the winning granularity.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig12Row {
    /// Model (`gcn`, `graphsage`, `sae`, `gpt3`).
    pub model: String,
    /// The paper's data set (`cora`, `imagenet`, `B=16`, …).
    pub dataset: String,
    /// Partial fusion's speedup over unfused, where the paper gives one.
    pub partial: Option<f64>,
    /// Full fusion's speedup over unfused, where the paper gives one.
    pub full: Option<f64>,
    /// The fastest granularity.
    pub best: String,
}

/// A fig14 claim: bounds on FLOPs and bytes over unfused for a GCN variant.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig14Row {
    /// `layer1`, `layer2`, `both` or `full`.
    pub variant: String,
    /// FLOPs over unfused: `[min, max]`.
    pub flops: [f64; 2],
    /// Off-chip bytes over unfused: `[min, max]`.
    pub bytes: [f64; 2],
}

/// fig15's claim: near-linear scaling.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig15Claim {
    /// Least speedup per lane that counts as near-linear.
    pub min_efficiency: f64,
}

/// fig16's claim: a large gain from blocking.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig16Claim {
    /// Least scalar/blocked cycle ratio that agrees.
    pub min_speedup: f64,
}

/// fig17's claim: the spread between the best and the worst order.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig17Claim {
    /// The paper's best-over-worst cycle ratio.
    pub best_over_worst: f64,
    /// Least ratio that shows the same trend (order matters a lot).
    pub trend_at_least: f64,
}

/// Everything vendored from the paper.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperData {
    /// Relative distance within which a number agrees.
    pub tolerance: f64,
    /// fig12 rows.
    pub fig12: Vec<Fig12Row>,
    /// fig14 claims.
    pub fig14: Vec<Fig14Row>,
    /// fig15 claim.
    pub fig15: Fig15Claim,
    /// fig16 claim.
    pub fig16: Fig16Claim,
    /// fig17 claim.
    pub fig17: Fig17Claim,
}

impl PaperData {
    /// The vendored data.
    pub fn load() -> Result<PaperData, ReproduceError> {
        toml::from_str(PAPER_TOML).map_err(|e| ReproduceError::Paper(e.to_string()))
    }

    /// The fig12 row of `model` on the paper's data set `dataset`.
    pub fn fig12_row(&self, model: &str, dataset: &str) -> Option<&Fig12Row> {
        self.fig12.iter().find(|r| r.model == model && r.dataset == dataset)
    }

    /// Whether `ours` is within the tolerance of `paper`.
    pub fn close(&self, ours: f64, paper: f64) -> bool {
        paper != 0.0 && ((ours - paper) / paper).abs() <= self.tolerance
    }
}

/// How a row of ours compares with the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// Every paper number within the tolerance (and the same winner, or inside the claim's
    /// bounds).
    Agrees,
    /// The same winner or direction, a number outside the tolerance.
    SameTrend,
    /// Another winner, or outside the claim's bounds.
    Differs,
    /// The paper has nothing to compare this row with.
    NoPaperValue,
    /// A record this row needs is missing, failed or not verified.
    Missing,
}

impl Agreement {
    /// The table's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Agreement::Agrees => "agrees",
            Agreement::SameTrend => "same trend",
            Agreement::Differs => "differs",
            Agreement::NoPaperValue => "no paper value",
            Agreement::Missing => "missing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_data_parses_and_covers_every_fig12_model() {
        let p = PaperData::load().unwrap();
        assert!(p.tolerance > 0.0 && p.tolerance < 1.0);
        for (m, d) in [("gcn", "cora"), ("graphsage", "mag"), ("sae", "imagenet"), ("gpt3", "B=64")] {
            assert!(p.fig12_row(m, d).is_some(), "{m} {d}");
        }
        assert!(p.close(1.7, 1.63) && !p.close(1.28, 1.63));
        assert_eq!(p.fig14.len(), 4);
    }
}
