//! Dense relations: every point of a layout's index space, its values row-major (zeros
//! stored as +0.0, meaning absent). Fully populated values (dense layers' activations and
//! weights, a softmax's rows) take 8 bytes a point this way instead of a sparse point's 32, and
//! elementwise operations, broadcasts and reductions on them are strided loops. A dense
//! relation gives, point by point, the values its sparse form would (see `Rel`): the
//! evaluator picks the form for memory, never for a different result.
//!
//! Dense contractions: a product summed over an index whose operands are dense runs as a
//! batched matrix product instead of a join. It gives the join's result up to the order in
//! which each sum adds its terms.

use crate::relation::{Layout, Point, Relation};

/// Operands below this many products take the join path: the copies into dense buffers do not
/// pay off there, and small programs keep the join's summation order.
pub const MIN_PRODUCTS: u128 = 1 << 20;

/// A relation holding a value for every point of its layout's index space, row-major.
#[derive(Debug, Clone)]
pub struct DenseRel {
    /// Variables of the relation.
    pub layout: Layout,
    /// One value a point, row-major over the layout (the last variable fastest); +0.0 is absent.
    pub vals: Vec<f64>,
}

/// A relation in either form.
#[derive(Debug, Clone)]
pub enum Rel {
    /// Sorted nonzero points.
    Sparse(Relation),
    /// Every point.
    Dense(DenseRel),
}

impl Rel {
    /// The relation's variables.
    pub fn layout(&self) -> &Layout {
        match self {
            Rel::Sparse(r) => &r.layout,
            Rel::Dense(d) => &d.layout,
        }
    }

    /// Points this form stores (every point of the space for a dense relation).
    pub fn stored(&self) -> usize {
        match self {
            Rel::Sparse(r) => r.points.len(),
            Rel::Dense(d) => d.vals.len(),
        }
    }
}

/// Zero as the sparse form would read it: a dense relation never stores -0.0, whose sign an
/// absent point does not have.
#[inline]
pub fn canon(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// Points of the full index space of `vars` (positions in `layout`), if addressable.
pub fn space_of(layout: &Layout, vars: &[usize]) -> Option<usize> {
    vars.iter().try_fold(1usize, |n, &v| n.checked_mul(layout.sizes[v]))
}

/// Points of the layout's full index space, if addressable.
pub fn space(layout: &Layout) -> Option<usize> {
    layout.sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s))
}

/// Row-major strides of `from`'s variables, placed at the positions of `to`'s variables (0
/// where `from` lacks one: a broadcast).
fn strides_in(from: &Layout, to: &Layout) -> Vec<usize> {
    let mut own = vec![0usize; from.vars.len()];
    let mut stride = 1usize;
    for v in (0..from.vars.len()).rev() {
        own[v] = stride;
        stride = stride.saturating_mul(from.sizes[v]);
    }
    to.vars.iter().map(|name| from.pos(name).map_or(0, |v| own[v])).collect()
}

/// Calls `f` with the position in each of `K` arrays of every point of the index space `sizes`,
/// in row-major order, array `a` being laid out with `strides[a]` (one stride a variable).
pub fn walk<const K: usize>(sizes: &[usize], strides: [&[usize]; K], mut f: impl FnMut([usize; K])) {
    if sizes.contains(&0) {
        return;
    }
    let Some(last) = sizes.len().checked_sub(1) else {
        f([0; K]);
        return;
    };
    let mut coords = vec![0usize; last];
    let mut base = [0usize; K];
    loop {
        for c in 0..sizes[last] {
            f(std::array::from_fn(|a| base[a] + c * strides[a][last]));
        }
        let mut d = last;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            coords[d] += 1;
            if coords[d] < sizes[d] {
                for a in 0..K {
                    base[a] += strides[a][d];
                }
                break;
            }
            for a in 0..K {
                base[a] -= strides[a][d] * (sizes[d] - 1);
            }
            coords[d] = 0;
        }
    }
}

/// The values of `d` laid out row-major over `to`, whose variables include all of `d`'s (in
/// any order): those `d` lacks are broadcast.
pub fn gather(d: &DenseRel, to: &Layout) -> Vec<f64> {
    let strides = strides_in(&d.layout, to);
    let mut out = Vec::with_capacity(space(to).unwrap_or(0));
    walk(&to.sizes, [&strides], |[i]| out.push(d.vals[i]));
    out
}

/// `a` row-major over `to` without a copy when its variables already come in that order.
pub fn into_layout(a: DenseRel, to: &Layout) -> Vec<f64> {
    if a.layout.vars == to.vars {
        a.vals
    } else {
        gather(&a, to)
    }
}

/// `f(a, b)` at every point of `to`, row-major; `to`'s variables include all of `a`'s and
/// `b`'s, each operand broadcast over those it lacks (`a`'s buffer is reused when it is already
/// laid out over `to`). Results are [`canon`]ical.
pub fn combine(a: DenseRel, b: &DenseRel, to: &Layout, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out = into_layout(a, to);
    let (so, sb) = (strides_in(to, to), strides_in(&b.layout, to));
    walk(&to.sizes, [&so, &sb], |[o, i]| out[o] = canon(f(out[o], b.vals[i])));
    out
}

/// The dense form of a sparse relation (`None` if its space is not addressable).
pub fn densify(r: &Relation) -> Option<DenseRel> {
    let all: Vec<usize> = (0..r.layout.vars.len()).collect();
    let mut vals = vec![0.0; space(&r.layout)?];
    for &(key, v) in &r.points {
        vals[index(&r.layout, key, &all)] = v;
    }
    Some(DenseRel { layout: r.layout.clone(), vals })
}

/// The sparse form of a dense relation: its nonzero points, in key order.
pub fn sparsify(d: &DenseRel) -> Relation {
    let all: Vec<usize> = (0..d.layout.vars.len()).collect();
    let mut points: Vec<Point> = Vec::with_capacity(d.vals.iter().filter(|&&v| v != 0.0).count());
    let mut i = 0usize;
    d.layout.for_each_point(&all, |key| {
        let v = d.vals[i];
        i += 1;
        if v != 0.0 {
            points.push((key, v));
        }
    });
    Relation { layout: d.layout.clone(), points }
}

/// Whether the relation stores every point of its space and none is zero (as a sparse one with
/// every point present): such operands contract as matrices with the join's result.
pub fn is_full(r: &Rel) -> bool {
    match r {
        Rel::Sparse(r) => space(&r.layout) == Some(r.points.len()),
        Rel::Dense(d) => d.vals.iter().all(|&v| v != 0.0),
    }
}

/// Whether every value is finite (so multiplying it by a stored zero gives zero, as the join,
/// which never multiplies by an absent point, does).
pub fn is_finite(r: &Rel) -> bool {
    match r {
        Rel::Sparse(r) => r.points.iter().all(|p| p.1.is_finite()),
        Rel::Dense(d) => d.vals.iter().all(|v| v.is_finite()),
    }
}

/// Mixed-radix position of the coordinates of `vars` (outermost first) in `key`.
pub fn index(layout: &Layout, key: u128, vars: &[usize]) -> usize {
    vars.iter().fold(0usize, |i, &v| i * layout.sizes[v] + layout.get(key, v) as usize)
}

/// The layout of some of `l`'s variables, in the order given.
fn sub_layout(l: &Layout, vars: &[usize]) -> Layout {
    Layout::new(vars.iter().map(|&v| l.vars[v].clone()).collect(), vars.iter().map(|&v| l.sizes[v]).collect())
        .expect("a subset of a layout's variables fits its key")
}

/// `Σ_k a·b` for dense operands sharing `k`, over `out` (the join's output layout: `a`'s
/// variables then `b`'s own, without `k`). Each sum adds in the order of the matrix product,
/// and a zero of one operand times a value of the other counts as 0 (so the caller must see
/// that no zero meets an infinity or a NaN, as the join never multiplies absent points). `None`
/// when `k` is not shared or the buffers would not be addressable.
pub fn contract(a: &DenseRel, b: &DenseRel, k: &str, out: &Layout) -> Option<DenseRel> {
    let (ka, kb) = (a.layout.pos(k)?, b.layout.pos(k)?);
    // Batch variables: shared ones other than k, in a's order (b's positions alongside).
    let batch_a: Vec<usize> =
        (0..a.layout.vars.len()).filter(|&v| v != ka && b.layout.pos(&a.layout.vars[v]).is_some()).collect();
    let batch_b: Vec<usize> = batch_a.iter().map(|&v| b.layout.pos(&a.layout.vars[v]).expect("shared")).collect();
    let m_vars: Vec<usize> = (0..a.layout.vars.len()).filter(|&v| b.layout.pos(&a.layout.vars[v]).is_none()).collect();
    let n_vars: Vec<usize> = (0..b.layout.vars.len()).filter(|&v| a.layout.pos(&b.layout.vars[v]).is_none()).collect();
    let (nb, m, n, kk) = (
        space_of(&a.layout, &batch_a)?,
        space_of(&a.layout, &m_vars)?,
        space_of(&b.layout, &n_vars)?,
        a.layout.sizes[ka],
    );
    // The operands' matrix buffers must be addressable too.
    nb.checked_mul(m)?.checked_mul(kk)?;
    nb.checked_mul(kk)?.checked_mul(n)?;
    let len_c = nb.checked_mul(m)?.checked_mul(n)?;
    // Row-major buffers: A[batch][m][k], B[batch][k][n], C[batch][m][n].
    let a_order: Vec<usize> = batch_a.iter().chain(&m_vars).copied().chain([ka]).collect();
    let b_order: Vec<usize> = batch_b.iter().copied().chain([kb]).chain(n_vars.iter().copied()).collect();
    let abuf = gather(a, &sub_layout(&a.layout, &a_order));
    let bbuf = gather(b, &sub_layout(&b.layout, &b_order));
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
    drop((abuf, bbuf));
    for v in &mut cbuf {
        *v = canon(*v);
    }
    // C's variables: the batch ones, then a's own, then b's own.
    let c_vars: Vec<String> = batch_a
        .iter()
        .chain(&m_vars)
        .map(|&v| a.layout.vars[v].clone())
        .chain(n_vars.iter().map(|&v| b.layout.vars[v].clone()))
        .collect();
    let c_sizes = c_vars.iter().map(|v| out.pos(v).map(|p| out.sizes[p])).collect::<Option<Vec<usize>>>()?;
    let c_layout = Layout::new(c_vars, c_sizes)?;
    let c = DenseRel { layout: c_layout, vals: cbuf };
    Some(DenseRel { layout: out.clone(), vals: into_layout(c, out) })
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
        // The output in an order of its own: j first.
        let out = layout(&["j", "h", "i"], &[j, h, i]);
        let got = contract(&densify(&a).unwrap(), &densify(&b).unwrap(), "k", &out).unwrap();
        let mut want = Vec::new();
        for jj in 0..j as u32 {
            for hh in 0..h as u32 {
                for ii in 0..i as u32 {
                    let mut s = 0.0;
                    for kk in 0..k as u32 {
                        let va = 1.0 + hh as f64 * 0.5 + ii as f64 - kk as f64 * 0.25;
                        let vb = 0.75 + kk as f64 * jj as f64 - hh as f64;
                        s += va * vb;
                    }
                    want.push(s);
                }
            }
        }
        assert_eq!(got.vals.len(), want.len());
        for (g, w) in got.vals.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn forms_convert_both_ways_and_broadcast() {
        let l = layout(&["i", "j"], &[3, 5]);
        let mut r = full(l.clone(), |c| c[0] as f64 - c[1] as f64);
        r.points.retain(|p| p.1 != 0.0);
        let d = densify(&r).unwrap();
        assert_eq!(d.vals.len(), 15);
        assert_eq!(d.vals[5 + 1].to_bits(), 0.0f64.to_bits()); // (1,1): absent, +0.0
        assert_eq!(d.vals[2 * 5], 2.0);
        assert_eq!(sparsify(&d).points, r.points);
        assert!(!is_full(&Rel::Dense(d.clone())) && !is_full(&Rel::Sparse(r)));
        // Transposed and broadcast over a new innermost k of size 2.
        let to = layout(&["j", "i", "k"], &[5, 3, 2]);
        let g = gather(&d, &to);
        for (n, &v) in g.iter().enumerate() {
            let (jj, ii) = (n / 6, (n / 2) % 3);
            assert_eq!(v, ii as f64 - jj as f64 + 0.0, "at {n}");
        }
    }

    #[test]
    fn walks_visit_every_point_with_each_arrays_position() {
        let mut seen = Vec::new();
        walk(&[2, 3], [&[3, 1], &[1, 0]], |[a, b]| seen.push((a, b)));
        assert_eq!(seen, vec![(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]);
        let mut n = 0;
        walk(&[], [&[]], |_| n += 1);
        walk(&[4, 0], [&[0, 0]], |_| n += 10);
        assert_eq!(n, 1);
    }
}
