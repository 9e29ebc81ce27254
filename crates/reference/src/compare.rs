//! Value comparison of two COO tensors, used to check simulator results against the oracle.

use std::cmp::Ordering;
use std::fmt;

use fuseflow_tensor::{Coo, Tensor};

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Largest `|expected - actual|` over all coordinates (infinite where exactly one side is
    /// NaN or the infinities differ).
    pub max_abs_error: f64,
    /// Largest `|expected - actual| / |expected|` over coordinates where `expected != 0`.
    pub max_rel_error: f64,
    /// Number of coordinates outside tolerance.
    pub mismatches: usize,
    /// The first mismatch in row-major order, e.g. `X(3,4): expected 1.25, got 0`, or why the
    /// tensors cannot be compared.
    pub first_mismatch: Option<String>,
    /// Whether the tensors agree within tolerance.
    pub ok: bool,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok { "match" } else { "MISMATCH" };
        write!(
            f,
            "{verdict}: {} mismatches, max abs error {:e}, max rel error {:e}",
            self.mismatches, self.max_abs_error, self.max_rel_error
        )?;
        if let Some(m) = &self.first_mismatch {
            write!(f, "; first: {m}")?;
        }
        Ok(())
    }
}

/// Compares two tensors value by value at every coordinate present in either. Explicit zeros
/// equal absent entries, duplicates are summed, NaN equals NaN and equal infinities are equal.
/// A coordinate passes if `|e - a| <= abs_tol + rel_tol * |e|`. Shapes must match.
pub fn compare(expected: &Coo, actual: &Coo, rel_tol: f64, abs_tol: f64) -> Comparison {
    compare_named("", expected, actual, rel_tol, abs_tol)
}

/// [`compare`], naming the tensor in `first_mismatch` (`X(3,4): expected 1.25, got 0`).
pub fn compare_named(name: &str, expected: &Coo, actual: &Coo, rel_tol: f64, abs_tol: f64) -> Comparison {
    let fail = |msg: String| Comparison {
        max_abs_error: f64::INFINITY,
        max_rel_error: f64::INFINITY,
        mismatches: 1,
        first_mismatch: Some(msg),
        ok: false,
    };
    if expected.shape != actual.shape {
        return fail(format!("{name}: shape mismatch: expected {:?}, got {:?}", expected.shape, actual.shape));
    }
    if let Err(e) = expected.validate() {
        return fail(format!("{name}: expected tensor is malformed: {e}"));
    }
    if let Err(e) = actual.validate() {
        return fail(format!("{name}: actual tensor is malformed: {e}"));
    }
    let e_pts = merged(expected);
    let a_pts = merged(actual);
    let mut res = Comparison::agreeing();
    let (mut i, mut j) = (0, 0);
    while i < e_pts.len() || j < a_pts.len() {
        let ord = match (e_pts.get(i), a_pts.get(j)) {
            (Some(e), Some(a)) => expected.coords(e.0).cmp(actual.coords(a.0)),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (coords, e, a) = match ord {
            Ordering::Less => {
                i += 1;
                (expected.coords(e_pts[i - 1].0), e_pts[i - 1].1, 0.0)
            }
            Ordering::Greater => {
                j += 1;
                (actual.coords(a_pts[j - 1].0), 0.0, a_pts[j - 1].1)
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                (expected.coords(e_pts[i - 1].0), e_pts[i - 1].1, a_pts[j - 1].1)
            }
        };
        res.check(e, a, rel_tol, abs_tol, &|| coords.to_vec(), name);
    }
    res.ok = res.mismatches == 0;
    res
}

/// [`compare_named`] of two tensors in any formats. Against an expected tensor in a dense
/// format, the actual one is walked where it lies and every other point read as 0, with no
/// copy of either (a bit a point marks those seen); any others go through COO.
pub fn compare_tensors(name: &str, expected: &Tensor, actual: &Tensor, rel_tol: f64, abs_tol: f64) -> Comparison {
    let comparable = expected.format.is_all_dense()
        && expected.shape == actual.shape
        && expected.rank() > 0
        && expected.validate().is_ok()
        && actual.validate().is_ok();
    if !comparable {
        return compare_named(name, &expected.to_coo(), &actual.to_coo(), rel_tol, abs_tol);
    }
    // Position in the expected tensor's storage of logical coordinates, and back; and the
    // row-major rank of coordinates, by which the first mismatch is the one reported.
    let shape = &expected.shape;
    let order = &expected.format.mode_order;
    let strides = expected.format.dense_strides(shape);
    let coords_at = |mut pos: usize| {
        let mut c = vec![0u32; order.len()];
        for &d in order.iter().rev() {
            c[d] = (pos % shape[d]) as u32;
            pos /= shape[d];
        }
        c
    };
    let row_major = |c: &[u32]| c.iter().zip(shape).fold(0usize, |i, (&c, &s)| i * s + c as usize);
    let mut res = Comparison::agreeing();
    let mut first: Option<(usize, String)> = None;
    let mut tally = |res: &mut Comparison, e: f64, a: f64, coords: &dyn Fn() -> Vec<u32>| {
        let before = res.mismatches;
        res.check(e, a, rel_tol, abs_tol, coords, name);
        if res.mismatches > before {
            let c = coords();
            let at = row_major(&c);
            if first.as_ref().is_none_or(|f| at < f.0) {
                let text: Vec<String> = c.iter().map(|c| c.to_string()).collect();
                first = Some((at, format!("{name}({}): expected {e}, got {a}", text.join(","))));
            }
        }
    };
    let mut seen = vec![0u64; expected.vals.len().div_ceil(64)];
    actual.for_each_stored(|c, a| {
        let pos: usize = c.iter().zip(&strides).map(|(&c, &s)| c as usize * s).sum();
        seen[pos / 64] |= 1 << (pos % 64);
        tally(&mut res, expected.vals[pos], a, &|| c.to_vec());
    });
    for (pos, &e) in expected.vals.iter().enumerate() {
        if seen[pos / 64] & (1 << (pos % 64)) == 0 {
            tally(&mut res, e, 0.0, &|| coords_at(pos));
        }
    }
    res.first_mismatch = first.map(|f| f.1);
    res.ok = res.mismatches == 0;
    res
}

impl Comparison {
    fn agreeing() -> Comparison {
        Comparison { max_abs_error: 0.0, max_rel_error: 0.0, mismatches: 0, first_mismatch: None, ok: true }
    }

    /// Counts one coordinate whose values are `e` (expected) and `a` (actual).
    fn check(&mut self, e: f64, a: f64, rel_tol: f64, abs_tol: f64, coords: &dyn Fn() -> Vec<u32>, name: &str) {
        let same = (e.is_nan() && a.is_nan()) || e == a;
        let diff = if same {
            0.0
        } else {
            let d = (e - a).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        };
        self.max_abs_error = self.max_abs_error.max(diff);
        if e != 0.0 && !e.is_nan() {
            self.max_rel_error = self.max_rel_error.max(diff / e.abs());
        }
        // Values that are not identical never pass when the expected one is infinite or NaN.
        let within = e.is_finite() && diff <= abs_tol + rel_tol * e.abs();
        if !same && !within {
            self.mismatches += 1;
            if self.first_mismatch.is_none() {
                let c: Vec<String> = coords().iter().map(|c| c.to_string()).collect();
                self.first_mismatch = Some(format!("{name}({}): expected {e}, got {a}", c.join(",")));
            }
        }
    }
}

/// Point indices sorted by coordinates, duplicates merged: `(first point index, summed value)`.
fn merged(c: &Coo) -> Vec<(usize, f64)> {
    let mut idx: Vec<usize> = (0..c.nnz()).collect();
    idx.sort_by(|&a, &b| c.coords(a).cmp(c.coords(b)));
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(idx.len());
    for p in idx {
        match out.last_mut() {
            Some(last) if c.coords(last.0) == c.coords(p) => last.1 += c.vals[p],
            _ => out.push((p, c.vals[p])),
        }
    }
    out
}
