//! Dense contractions: a product summed over an index whose operands are both fully
//! populated (every point of their index spaces stored, as dense layers' weights and
//! activations are) runs as a batched matrix product instead of a join. It gives the join's
//! result up to the order in which each sum adds its terms.

use crate::relation::{Layout, Point, Relation};

/// Operands below this many products take the join path: the copies into dense buffers do not
/// pay off there, and small programs keep the join's summation order.
pub const MIN_PRODUCTS: u128 = 1 << 20;

/// Whether every point of the relation's index space is present.
pub fn is_full(r: &Relation) -> bool {
    let points = r.layout.sizes.iter().try_fold(1u128, |n, &s| n.checked_mul(s as u128));
    points == Some(r.points.len() as u128)
}

/// Mixed-radix position of the coordinates of `vars` (outermost first) in `key`.
fn index(layout: &Layout, key: u128, vars: &[usize]) -> usize {
    vars.iter().fold(0usize, |i, &v| i * layout.sizes[v] + layout.get(key, v) as usize)
}

/// `Σ_k a·b` for full operands `a` and `b` sharing `k`, as points of `out` (the join's output
/// layout: `a`'s variables then `b`'s own, without `k`), sorted, without zeros. `None` when an
/// operand is not full, `k` is not shared, or the buffers would not be addressable.
pub fn contract(a: &Relation, b: &Relation, k: &str, out: &Layout) -> Option<Vec<Point>> {
    if !is_full(a) || !is_full(b) {
        return None;
    }
    let (ka, kb) = (a.layout.pos(k)?, b.layout.pos(k)?);
    let size = |l: &Layout, vars: &[usize]| vars.iter().try_fold(1usize, |n, &v| n.checked_mul(l.sizes[v]));
    // Batch variables: shared ones other than k, in a's order (b's positions alongside).
    let batch_a: Vec<usize> =
        (0..a.layout.vars.len()).filter(|&v| v != ka && b.layout.pos(&a.layout.vars[v]).is_some()).collect();
    let batch_b: Vec<usize> = batch_a.iter().map(|&v| b.layout.pos(&a.layout.vars[v]).expect("shared")).collect();
    let m_vars: Vec<usize> = (0..a.layout.vars.len()).filter(|&v| b.layout.pos(&a.layout.vars[v]).is_none()).collect();
    let n_vars: Vec<usize> = (0..b.layout.vars.len()).filter(|&v| a.layout.pos(&b.layout.vars[v]).is_none()).collect();
    let (nb, m, n, kk) =
        (size(&a.layout, &batch_a)?, size(&a.layout, &m_vars)?, size(&b.layout, &n_vars)?, a.layout.sizes[ka]);
    let (len_a, len_b, len_c) =
        (nb.checked_mul(m)?.checked_mul(kk)?, nb.checked_mul(kk)?.checked_mul(n)?, nb.checked_mul(m)?.checked_mul(n)?);
    // Row-major buffers: A[batch][m][k], B[batch][k][n], C[batch][m][n].
    let mut abuf = vec![0.0f64; len_a];
    for &(key, v) in &a.points {
        let i = (index(&a.layout, key, &batch_a) * m + index(&a.layout, key, &m_vars)) * kk
            + a.layout.get(key, ka) as usize;
        abuf[i] = v;
    }
    let mut bbuf = vec![0.0f64; len_b];
    for &(key, v) in &b.points {
        let i = (index(&b.layout, key, &batch_b) * kk + b.layout.get(key, kb) as usize) * n
            + index(&b.layout, key, &n_vars);
        bbuf[i] = v;
    }
    let mut cbuf = vec![0.0f64; len_c];
    for bt in 0..nb {
        let (pa, pb, pc) = (&abuf[bt * m * kk..], &bbuf[bt * kk * n..], &mut cbuf[bt * m * n..]);
        // SAFETY: the three slices hold at least m·k, k·n and m·n elements from their starts,
        // with the row-major strides given; `pc` is exclusively borrowed.
        unsafe {
            matrixmultiply::dgemm(
                m,
                kk,
                n,
                1.0,
                pa.as_ptr(),
                kk as isize,
                1,
                pb.as_ptr(),
                n as isize,
                1,
                0.0,
                pc.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    // Output coordinates by variable: where each of `out`'s variables comes from.
    enum From {
        Batch(usize),
        M(usize),
        N(usize),
    }
    let from: Vec<From> = out
        .vars
        .iter()
        .map(|name| {
            if let Some(p) = batch_a.iter().position(|&v| a.layout.vars[v] == *name) {
                From::Batch(p)
            } else if let Some(p) = m_vars.iter().position(|&v| a.layout.vars[v] == *name) {
                From::M(p)
            } else {
                From::N(n_vars.iter().position(|&v| b.layout.vars[v] == *name).expect("output variable of b"))
            }
        })
        .collect();
    let digits = |mut i: usize, vars: &[usize], l: &Layout, into: &mut [u32]| {
        for (p, &v) in vars.iter().enumerate().rev() {
            into[p] = (i % l.sizes[v]) as u32;
            i /= l.sizes[v];
        }
    };
    let (mut cb, mut cm, mut cn) = (vec![0u32; batch_a.len()], vec![0u32; m_vars.len()], vec![0u32; n_vars.len()]);
    let mut points = Vec::with_capacity(len_c);
    for bt in 0..nb {
        digits(bt, &batch_a, &a.layout, &mut cb);
        for mi in 0..m {
            digits(mi, &m_vars, &a.layout, &mut cm);
            for ni in 0..n {
                let v = cbuf[(bt * m + mi) * n + ni];
                if v == 0.0 {
                    continue;
                }
                digits(ni, &n_vars, &b.layout, &mut cn);
                let mut key = 0u128;
                for (o, f) in from.iter().enumerate() {
                    let c = match f {
                        From::Batch(p) => cb[*p],
                        From::M(p) => cm[*p],
                        From::N(p) => cn[*p],
                    };
                    key = out.with(key, o, c);
                }
                points.push((key, v));
            }
        }
    }
    points.sort_unstable_by_key(|p| p.0);
    Some(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(vars: &[&str], sizes: &[usize]) -> Layout {
        Layout::new(vars.iter().map(|v| v.to_string()).collect(), sizes.to_vec()).unwrap()
    }

    /// A full relation whose value at each point is a deterministic function of its
    /// coordinates (never zero).
    fn full(l: Layout, f: impl Fn(&[u32]) -> f64) -> Relation {
        let vars: Vec<usize> = (0..l.vars.len()).collect();
        let mut points = Vec::new();
        l.for_each_point(&vars, |key| {
            let c: Vec<u32> = vars.iter().map(|&v| l.get(key, v)).collect();
            points.push((key, f(&c)));
        });
        points.sort_unstable_by_key(|p| p.0);
        Relation { layout: l, points }
    }

    #[test]
    fn batched_contraction_matches_the_definition() {
        // a(h, i, k) · b(k, h, j) summed over k: h is a batch variable, in different places.
        let (h, i, k, j) = (3usize, 5usize, 7usize, 6usize);
        let a =
            full(layout(&["h", "i", "k"], &[h, i, k]), |c| 1.0 + c[0] as f64 * 0.5 + c[1] as f64 - c[2] as f64 * 0.25);
        let b = full(layout(&["k", "h", "j"], &[k, h, j]), |c| 0.75 + c[0] as f64 * c[2] as f64 - c[1] as f64);
        let out = layout(&["h", "i", "j"], &[h, i, j]);
        let got = contract(&a, &b, "k", &out).unwrap();
        let mut want = Vec::new();
        for hh in 0..h as u32 {
            for ii in 0..i as u32 {
                for jj in 0..j as u32 {
                    let mut s = 0.0;
                    for kk in 0..k as u32 {
                        let va = 1.0 + hh as f64 * 0.5 + ii as f64 - kk as f64 * 0.25;
                        let vb = 0.75 + kk as f64 * jj as f64 - hh as f64;
                        s += va * vb;
                    }
                    if s != 0.0 {
                        want.push((out.with(out.with(out.with(0, 0, hh), 1, ii), 2, jj), s));
                    }
                }
            }
        }
        want.sort_unstable_by_key(|p| p.0);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0);
            assert!((g.1 - w.1).abs() <= 1e-12 * w.1.abs().max(1.0), "{g:?} vs {w:?}");
        }
    }

    #[test]
    fn operands_with_missing_points_take_the_join_path() {
        let mut a = full(layout(&["i", "k"], &[3, 4]), |c| 1.0 + c[0] as f64 + c[1] as f64);
        let b = full(layout(&["k", "j"], &[4, 2]), |c| 2.0 + c[0] as f64);
        a.points.remove(3);
        assert!(contract(&a, &b, "k", &layout(&["i", "j"], &[3, 2])).is_none());
    }
}
