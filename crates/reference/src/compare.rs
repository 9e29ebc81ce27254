//! Value comparison of two COO tensors, used to check simulator results against the oracle.

use std::cmp::Ordering;
use std::fmt;

use fuseflow_tensor::{Coo, LevelFormat, Tensor};

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
        res.check(e, a, rel_tol, abs_tol, || coords.to_vec(), name);
    }
    res.ok = res.mismatches == 0;
    res
}

/// [`compare_named`] of two tensors in any formats. Two tensors in the same dense format are
/// compared value by value where they lie, without a copy; any others through COO.
pub fn compare_tensors(name: &str, expected: &Tensor, actual: &Tensor, rel_tol: f64, abs_tol: f64) -> Comparison {
    let dense = |t: &Tensor| t.format.levels.iter().all(|l| *l == LevelFormat::Dense);
    let same_layout = expected.shape == actual.shape
        && expected.format == actual.format
        && dense(expected)
        && expected.validate().is_ok()
        && actual.validate().is_ok();
    if !same_layout {
        return compare_named(name, &expected.to_coo(), &actual.to_coo(), rel_tol, abs_tol);
    }
    // Storage level `l` holds dimension `order[l]`: a position's logical coordinates, for the
    // report of a mismatch.
    let order = &expected.format.mode_order;
    let coords = |mut pos: usize| {
        let mut c = vec![0u32; order.len()];
        for &d in order.iter().rev() {
            c[d] = (pos % expected.shape[d]) as u32;
            pos /= expected.shape[d];
        }
        c
    };
    let mut res = Comparison::agreeing();
    for (pos, (&e, &a)) in expected.vals.iter().zip(&actual.vals).enumerate() {
        res.check(e, a, rel_tol, abs_tol, || coords(pos), name);
    }
    res.ok = res.mismatches == 0;
    res
}

impl Comparison {
    fn agreeing() -> Comparison {
        Comparison { max_abs_error: 0.0, max_rel_error: 0.0, mismatches: 0, first_mismatch: None, ok: true }
    }

    /// Counts one coordinate whose values are `e` (expected) and `a` (actual).
    fn check(&mut self, e: f64, a: f64, rel_tol: f64, abs_tol: f64, coords: impl FnOnce() -> Vec<u32>, name: &str) {
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
