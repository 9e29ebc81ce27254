//! How well the estimate ranks points, measured on simulated points: Spearman's rank
//! correlation between estimated and simulated cycles, whether the truly best point survives
//! pruning to the best 1 %, 5 % and 10 % by estimate, the regret of the estimate's pick
//! (its simulated cycles over the true best's) and the worst misses.

use crate::store::{PointRecord, Status};

/// Ranks from 1, ties sharing their average rank.
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut out = vec![0.0; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation (Pearson correlation of the ranks, ties averaged); `None` for
/// fewer than two points or a constant series.
pub fn spearman(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let (rx, ry) = (ranks(xs), ranks(ys));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in rx.iter().zip(&ry) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// A point the estimate ranked far from its simulated rank.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Miss {
    /// The point's configuration.
    pub key: String,
    /// Rank by estimate (1 = predicted fastest).
    pub estimated_rank: f64,
    /// Rank by simulation.
    pub simulated_rank: f64,
    /// Estimated cycles.
    pub estimated_cycles: f64,
    /// Simulated cycles.
    pub simulated_cycles: u64,
}

/// The estimate's quality over a set of simulated points.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Validation {
    /// Points compared (simulated without failure, with an estimate).
    pub points: usize,
    /// Spearman's rank correlation of estimated and simulated cycles.
    pub spearman: Option<f64>,
    /// For pruning to the best 1 %, 5 % and 10 % by estimate (at least one point): the
    /// fraction, the points kept, and whether the truly best point was among them.
    pub kept: Vec<(f64, usize, bool)>,
    /// The estimate's pick (fewest estimated cycles).
    pub pick: String,
    /// The truly best point (fewest simulated cycles).
    pub best: String,
    /// Simulated cycles of the pick over those of the best (1 = no regret).
    pub regret: f64,
    /// The five points with the largest rank differences, worst first.
    pub worst_misses: Vec<Miss>,
}

/// Measures the estimate on the records that simulated and have an estimate; `None` when
/// there are none.
pub fn validate(records: &[PointRecord]) -> Option<Validation> {
    let pts: Vec<(&PointRecord, f64, u64)> = records
        .iter()
        .filter(|r| r.status != Status::Failed)
        .filter_map(|r| Some((r, r.estimate.as_ref()?.cycles, r.cycles?)))
        .collect();
    if pts.is_empty() {
        return None;
    }
    let est: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let sim: Vec<f64> = pts.iter().map(|p| p.2 as f64).collect();
    // Ties broken by id, so the pick and the best are deterministic.
    let by = |v: &[f64]| {
        (0..pts.len()).min_by(|&a, &b| v[a].total_cmp(&v[b]).then(pts[a].0.id.cmp(&pts[b].0.id))).unwrap_or(0)
    };
    let (pick, best) = (by(&est), by(&sim));
    let mut order: Vec<usize> = (0..pts.len()).collect();
    order.sort_by(|&a, &b| est[a].total_cmp(&est[b]).then(pts[a].0.id.cmp(&pts[b].0.id)));
    let best_cycles = sim[best];
    let kept = [0.01, 0.05, 0.10]
        .iter()
        .map(|&f| {
            let k = ((pts.len() as f64 * f).ceil() as usize).max(1);
            // The best survives when a point with its simulated cycles is kept (ties count).
            let survived = order[..k].iter().any(|&i| sim[i] == best_cycles);
            (f, k, survived)
        })
        .collect();
    let (re, rs) = (ranks(&est), ranks(&sim));
    let mut misses: Vec<Miss> = (0..pts.len())
        .map(|i| Miss {
            key: pts[i].0.key.clone(),
            estimated_rank: re[i],
            simulated_rank: rs[i],
            estimated_cycles: est[i],
            simulated_cycles: pts[i].2,
        })
        .collect();
    misses.sort_by(|a, b| {
        let d = |m: &Miss| (m.estimated_rank - m.simulated_rank).abs();
        d(b).total_cmp(&d(a)).then(a.key.cmp(&b.key))
    });
    misses.truncate(5);
    Some(Validation {
        points: pts.len(),
        spearman: spearman(&est, &sim),
        kept,
        pick: pts[pick].0.key.clone(),
        best: pts[best].0.key.clone(),
        regret: sim[pick] / best_cycles.max(1.0),
        worst_misses: misses,
    })
}

/// [`validate`] on each slice of points that share a machine and an order choice (cycles
/// compare within a slice: what a user chooses between), by `machine order`, sorted.
pub fn validate_slices(records: &[PointRecord]) -> Vec<(String, Validation)> {
    let mut slices: std::collections::BTreeMap<String, Vec<PointRecord>> = std::collections::BTreeMap::new();
    for r in records {
        slices.entry(format!("{} order={}", r.machine, r.order)).or_default().push(r.clone());
    }
    slices.into_iter().filter_map(|(k, rs)| Some((k, validate(&rs)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spearman_known_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // Ranks 1,2,3,4 vs 2,1,4,3: d² = 4, rho = 1 - 6·4/(4·15) = 0.6.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]).unwrap();
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }

    proptest! {
        #[test]
        fn spearman_is_bounded_and_invariant_under_monotone_maps(xs in proptest::collection::vec(-1e6f64..1e6, 2..40), ys in proptest::collection::vec(-1e6f64..1e6, 2..40)) {
            let n = xs.len().min(ys.len());
            let (xs, ys) = (&xs[..n], &ys[..n]);
            if let Some(r) = spearman(xs, ys) {
                prop_assert!((-1.0 - 1e-9..=1.0 + 1e-9).contains(&r));
                let cubed: Vec<f64> = xs.iter().map(|x| x * x * x + 7.0).collect();
                let r2 = spearman(&cubed, ys).unwrap();
                prop_assert!((r - r2).abs() < 1e-9);
            }
        }
    }
}
