//! Prints node, entry and degree statistics and the build or load time of datasets: every
//! built-in one, or the names and paths given after the seed.
//!
//! `gamma` is the maximum-likelihood power-law exponent of the out-degrees at or above
//! `D_MIN` (Clauset, Shalizi and Newman's discrete approximation).
//!
//! Run with `cargo run --release -p fuseflow-datasets --example dataset_stats [seed [spec...]]`.

use std::io::Write;

/// Smallest degree included in the exponent fit.
const D_MIN: usize = 5;

/// Discrete power-law exponent estimate over degrees `>= D_MIN`.
fn gamma_hat(degrees: &[usize]) -> f64 {
    let tail: Vec<f64> = degrees.iter().filter(|&&d| d >= D_MIN).map(|&d| d as f64).collect();
    let sum: f64 = tail.iter().map(|d| (d / (D_MIN as f64 - 0.5)).ln()).sum();
    1.0 + tail.len() as f64 / sum
}

fn main() -> Result<(), fuseflow_datasets::DatasetError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = args.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    let specs: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        fuseflow_datasets::list().into_iter().map(|(n, _)| n.to_string()).collect()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>9} {:>6} {:>7} {:>7} {:>6} {:>8} {:>6} {:>9}",
        "name", "nodes", "entries", "mean", "max", "max_in", "isol", "max/mean", "gamma", "time"
    );
    for spec in &specs {
        let t = std::time::Instant::now();
        let g = fuseflow_datasets::load(spec, seed)?;
        let dt = t.elapsed();
        let s = g.degree_stats();
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>9} {:>6.2} {:>7} {:>7} {:>6} {:>8.1} {:>6.2} {:>8.2?}",
            g.name,
            g.num_nodes,
            g.num_edges(),
            s.mean,
            s.max,
            s.max_in,
            s.isolated,
            s.max as f64 / s.mean.max(f64::MIN_POSITIVE),
            gamma_hat(&g.out_degrees()),
            dt
        );
    }
    Ok(())
}
