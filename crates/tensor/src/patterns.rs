//! Structured sparsity patterns: the BigBird block-sparse attention mask.

use std::collections::BTreeSet;

use crate::random::Rng;
use crate::{Coo, TensorError};

/// Parameters of a BigBird mask (benchmarks.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BigBird {
    /// Block size b (the mask is defined on b×b blocks).
    pub block: usize,
    /// Number of leading global block rows and columns (dense).
    pub global: usize,
    /// Band half-width in blocks: the diagonal block and `window` blocks either side.
    pub window: usize,
    /// Random block columns per block row (without replacement, among those not yet set).
    pub random: usize,
}

impl Default for BigBird {
    fn default() -> Self {
        BigBird { block: 16, global: 2, window: 1, random: 2 }
    }
}

/// The set of nonzero blocks `(block row, block column)` of an `n×n` BigBird mask.
pub fn bigbird_blocks(n: usize, p: &BigBird, seed: u64) -> Result<BTreeSet<(usize, usize)>, TensorError> {
    if p.block == 0 || !n.is_multiple_of(p.block) {
        return Err(TensorError::Argument(format!(
            "BigBird block size {} must divide the sequence length {n}",
            p.block
        )));
    }
    let nb = n / p.block;
    let mut rng = Rng::new(seed);
    let mut blocks = BTreeSet::new();
    for r in 0..nb {
        for c in r.saturating_sub(p.window)..(r + p.window + 1).min(nb) {
            blocks.insert((r, c));
        }
        for g in 0..p.global.min(nb) {
            blocks.insert((r, g));
            blocks.insert((g, r));
        }
    }
    for r in 0..nb {
        let free: Vec<usize> = (0..nb).filter(|c| !blocks.contains(&(r, *c))).collect();
        let mut free = free;
        for _ in 0..p.random.min(free.len()) {
            let k = rng.below(free.len() as u64) as usize;
            blocks.insert((r, free.swap_remove(k)));
        }
    }
    Ok(blocks)
}

/// An `n×n` BigBird mask with value 1.0 at every element of every nonzero block.
pub fn bigbird_mask(n: usize, p: &BigBird, seed: u64) -> Result<Coo, TensorError> {
    let blocks = bigbird_blocks(n, p, seed)?;
    let mut coo = Coo::new(vec![n, n]);
    // Row-major element order.
    let b = p.block;
    for i in 0..n {
        let br = i / b;
        for &(r, c) in blocks.range((br, 0)..(br + 1, 0)) {
            debug_assert_eq!(r, br);
            for j in c * b..(c + 1) * b {
                coo.push(&[i as u32, j as u32], 1.0);
            }
        }
    }
    Ok(coo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densities_match_the_published_pattern() {
        // benchmarks.md §2.4: about 13 %, 26 % and 48 % of blocks for b = 16, 32, 64 at n = 1024.
        for (b, lo, hi) in [(16, 0.11, 0.15), (32, 0.23, 0.29), (64, 0.44, 0.52)] {
            let p = BigBird { block: b, ..BigBird::default() };
            let nb = 1024 / b;
            let frac = bigbird_blocks(1024, &p, 0).unwrap().len() as f64 / (nb * nb) as f64;
            assert!(frac > lo && frac < hi, "b={b}: {frac}");
        }
    }

    #[test]
    fn mask_is_block_structured_and_deterministic() {
        let p = BigBird { block: 4, ..BigBird::default() };
        let a = bigbird_mask(32, &p, 7).unwrap();
        assert_eq!(a, bigbird_mask(32, &p, 7).unwrap());
        assert_eq!(a.nnz() % 16, 0);
        a.validate().unwrap();
        // Global rows and the diagonal are present.
        let dense = a.to_dense();
        assert_eq!(dense[0], 1.0);
        assert_eq!(dense[31 * 32 + 31], 1.0);
        assert!(bigbird_mask(30, &p, 7).is_err());
    }
}
