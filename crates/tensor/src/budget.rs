//! Memory budgets: every allocation whose size user input decides is estimated first and
//! refused, with one line naming what asked, how much and the limit, before anything is
//! allocated.
//!
//! A [`Budget`] is a limit in bytes plus what the caller already holds. The estimates here
//! ([`coo_bytes`], [`tensor_bytes`], [`from_coo_bytes`], [`random_coo_bytes`]) are upper
//! bounds of the peak memory of the operations of this crate, computed in saturating
//! arithmetic so that absurd shapes give absurd (never wrapped) sizes.

use crate::{Format, LevelFormat};

/// A memory limit and the bytes already held against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit in bytes (`u64::MAX` = none).
    pub limit: u64,
    /// Bytes already held (inputs loaded so far, ...).
    pub held: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::UNLIMITED
    }
}

/// A step that would need more memory than its budget leaves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} needs {} {}", human_bytes(*asked), self.limit_text())]
pub struct OverBudget {
    /// What asked for the memory (a tensor, a channel, a file, a step), with its size.
    pub what: String,
    /// Bytes asked for.
    pub asked: u64,
    /// The limit.
    pub limit: u64,
    /// Bytes held already.
    pub held: u64,
}

impl OverBudget {
    fn limit_text(&self) -> String {
        if self.held == 0 {
            format!("but the memory limit is {}", human_bytes(self.limit))
        } else {
            format!(
                "but only {} of the memory limit of {} is left ({} held)",
                human_bytes(self.limit.saturating_sub(self.held)),
                human_bytes(self.limit),
                human_bytes(self.held)
            )
        }
    }
}

impl Budget {
    /// No limit.
    pub const UNLIMITED: Budget = Budget { limit: u64::MAX, held: 0 };

    /// A limit of `bytes`, nothing held.
    pub fn new(bytes: u64) -> Budget {
        Budget { limit: bytes, held: 0 }
    }

    /// Bytes still available.
    pub fn left(&self) -> u64 {
        self.limit.saturating_sub(self.held)
    }

    /// `Ok` if `asked` more bytes fit; else the error, naming `what()`.
    pub fn check(&self, asked: u64, what: impl FnOnce() -> String) -> Result<(), OverBudget> {
        if asked <= self.left() {
            Ok(())
        } else {
            Err(OverBudget { what: what(), asked, limit: self.limit, held: self.held })
        }
    }

    /// Counts `bytes` as held from now on.
    pub fn hold(&mut self, bytes: u64) {
        self.held = self.held.saturating_add(bytes);
    }

    /// Stops counting `bytes` that were held (they were freed).
    pub fn release(&mut self, bytes: u64) {
        self.held = self.held.saturating_sub(bytes);
    }
}

/// `1.5 GiB`, `512 MiB`, `100 B`: binary units, as `--mem-limit` reads them.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b == u64::MAX {
        // Estimates saturate: the size does not even fit 64 bits.
        return "more than 16 EiB".to_string();
    }
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Parses a size: a number of bytes with an optional binary unit `K`, `M`, `G`, `T` (also
/// written `KB`/`KiB`, any case), e.g. `8G`, `512M`, `1.5G`, `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("{s}: unknown unit {other:?} (use K, M, G or T)")),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s}: not a size (e.g. 8G, 512M, 4096)"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{s}: a size must be at least 1 byte and below 16 EiB"));
    }
    Ok(bytes as u64)
}

/// Product of `sizes`, saturating.
fn product(sizes: impl IntoIterator<Item = usize>) -> u64 {
    sizes.into_iter().fold(1u64, |p, n| p.saturating_mul(n as u64))
}

/// Bytes of a COO tensor of `rank` with `nnz` points (`u32` coordinates, `f64` values).
pub fn coo_bytes(rank: usize, nnz: u64) -> u64 {
    nnz.saturating_mul(4 * rank as u64 + 8)
}

/// Positions of every storage level of a tensor of `shape` in `format` holding at most `nnz`
/// distinct points: dense levels multiply, compressed levels hold at most `nnz`.
fn positions(shape: &[usize], format: &Format, nnz: u64) -> Vec<u64> {
    let mut parents = 1u64;
    let mut out = Vec::with_capacity(format.levels.len());
    for (l, lf) in format.levels.iter().enumerate() {
        let size = format.mode_order.get(l).and_then(|&d| shape.get(d)).copied().unwrap_or(0) as u64;
        parents = match lf {
            LevelFormat::Dense => parents.saturating_mul(size),
            LevelFormat::Compressed => parents.saturating_mul(size).min(nnz),
        };
        out.push(parents);
    }
    out
}

/// Upper bound of the bytes a tensor of `shape` in `format` with at most `nnz` distinct points
/// stores: `seg` and `crd` of compressed levels (4 bytes an entry) and the values (8 bytes
/// each, one per position of the last level, dense padding included).
pub fn tensor_bytes(shape: &[usize], format: &Format, nnz: u64) -> u64 {
    let pos = positions(shape, format, nnz);
    let mut bytes = 0u64;
    let mut parents = 1u64;
    for (lf, &p) in format.levels.iter().zip(&pos) {
        if *lf == LevelFormat::Compressed {
            bytes =
                bytes.saturating_add(parents.saturating_add(1).saturating_mul(4)).saturating_add(p.saturating_mul(4));
        }
        parents = p;
    }
    bytes.saturating_add(parents.saturating_mul(8))
}

/// Upper bound of the peak bytes of [`crate::Tensor::convert`] of `t` to `format` (the source
/// not included): the dense result where the values are placed straight into it, else the
/// COO and the conversion.
pub fn convert_bytes(t: &crate::Tensor, format: &Format) -> u64 {
    let nnz = t.vals.len() as u64;
    if t.converts_in_place_to(format) {
        tensor_bytes(&t.shape, format, nnz)
    } else {
        coo_bytes(t.rank(), nnz).saturating_add(from_coo_bytes(&t.shape, format, nnz))
    }
}

/// Upper bound of the peak bytes of [`crate::Tensor::from_coo`] on `nnz` points (the input COO
/// not included): the sorted points, the per-level position ranges and the result.
pub fn from_coo_bytes(shape: &[usize], format: &Format, nnz: u64) -> u64 {
    let sorted = nnz.saturating_mul(8).saturating_add(coo_bytes(shape.len(), nnz));
    let widest = positions(shape, format, nnz).into_iter().max().unwrap_or(1);
    sorted.saturating_add(widest.saturating_mul(32)).saturating_add(tensor_bytes(shape, format, nnz))
}

/// Entries [`crate::random_coo`] generates for `shape` at `density` (saturating).
pub fn random_nnz(shape: &[usize], density: f64) -> u64 {
    let total = product(shape.iter().copied());
    if density.is_nan() || density <= 0.0 {
        0
    } else {
        ((density.min(1.0) * total as f64).round() as u64).min(total)
    }
}

/// Upper bound of the peak bytes of [`crate::random_coo`] for `shape` at `density`: the chosen
/// positions (a bitmap of the whole index space or a hash set), then the COO result.
pub fn random_coo_bytes(shape: &[usize], density: f64) -> u64 {
    let total = product(shape.iter().copied());
    let k = random_nnz(shape, density);
    let set = if total / 32 <= k { total / 8 } else { k.saturating_mul(48) };
    set.saturating_add(k.saturating_mul(8)).saturating_add(coo_bytes(shape.len(), k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("1e30").is_err());
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn estimates_bound_real_tensors() {
        use crate::{random_coo, Tensor};
        for (shape, format) in [
            (vec![60, 50], Format::csr()),
            (vec![60, 50], Format::dense(2)),
            (vec![7, 9, 4], Format::all_compressed(3)),
        ] {
            let coo = random_coo(&shape, 0.2, 1).unwrap();
            let t = Tensor::from_coo(&coo, &format).unwrap();
            let stored: u64 = t
                .levels
                .iter()
                .map(|l| match l {
                    crate::LevelData::Dense { .. } => 0,
                    crate::LevelData::Compressed { seg, crd } => 4 * (seg.len() + crd.len()) as u64,
                })
                .sum::<u64>()
                + 8 * t.vals.len() as u64;
            assert!(tensor_bytes(&shape, &format, coo.nnz() as u64) >= stored, "{shape:?} {format:?}");
            assert_eq!(random_nnz(&shape, 0.2), coo.nnz() as u64);
        }
        let huge = [4_000_000_000usize, 4_000_000_000];
        assert!(random_coo_bytes(&huge, 0.1) > 1 << 60);
        assert_eq!(tensor_bytes(&huge, &Format::dense(2), 0), u64::MAX);
    }

    #[test]
    fn budget_counts_what_is_held() {
        let mut b = Budget::new(1000);
        assert!(b.check(1000, || "x".into()).is_ok());
        b.hold(600);
        let e = b.check(500, || "input A".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input A needs 500 B but only 400 B of the memory limit of 1000 B is left (600 B held)"
        );
        b.release(200);
        assert!(b.check(600, || "x".into()).is_ok() && b.check(601, || "x".into()).is_err());
        b.release(10_000);
        assert_eq!(b.left(), 1000);
        assert!(Budget::UNLIMITED.check(u64::MAX, || unreachable!()).is_ok());
    }
}
