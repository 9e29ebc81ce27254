//! Sparse relations: sorted lists of (packed index tuple, value) with absent tuples meaning 0.
//! Tuples are bit-packed into a `u128` key (first variable in the highest bits), so there is no
//! per-point allocation and key order is row-major tuple order. Everything is done with sorts
//! and linear merges, which keeps memory access sequential and the results deterministic.

/// Largest number of points any single step may enumerate densely.
pub const MAX_DENSE_POINTS: u128 = 1 << 27;

/// A point of a relation: packed key and value.
pub type Point = (u128, f64);

/// Which index variables a relation has, their sizes, and where each sits in the packed key.
/// The first variable occupies the highest bits, so key order is row-major tuple order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Variable names, in tuple order.
    pub vars: Vec<String>,
    /// Size of each variable's range.
    pub sizes: Vec<usize>,
    shifts: Vec<u32>,
    masks: Vec<u128>,
}

/// Bits needed for coordinates `0..size`.
fn bits_for(size: usize) -> u32 {
    if size <= 1 {
        0
    } else {
        usize::BITS - (size - 1).leading_zeros()
    }
}

impl Layout {
    /// A layout for the given variables; `None` if the tuple does not fit in 128 bits.
    pub fn new(vars: Vec<String>, sizes: Vec<usize>) -> Option<Layout> {
        let bits: Vec<u32> = sizes.iter().map(|&s| bits_for(s)).collect();
        let total: u32 = bits.iter().sum();
        if total > 128 {
            return None;
        }
        let mut shifts = vec![0; bits.len()];
        let mut at = total;
        for (v, &b) in bits.iter().enumerate() {
            at -= b;
            shifts[v] = at;
        }
        let masks = bits.iter().map(|&b| if b == 0 { 0 } else { u128::MAX >> (128 - b) }).collect();
        Some(Layout { vars, sizes, shifts, masks })
    }

    /// Total bits of a packed key.
    pub fn key_bits(&self) -> u32 {
        self.masks.iter().map(|m| m.count_ones()).sum()
    }

    /// Bits of variable `v`'s field (fields are packed with no gaps, the last variable lowest).
    pub fn bits(&self, v: usize) -> u32 {
        self.masks[v].count_ones()
    }

    /// This layout's variables, then those only `other` has: the variables of a join or an
    /// elementwise operation of the two.
    pub fn joined_vars(&self, other: &Layout) -> Vec<String> {
        let mut vars = self.vars.clone();
        vars.extend(other.vars.iter().filter(|v| self.pos(v).is_none()).cloned());
        vars
    }

    /// Position of a variable.
    pub fn pos(&self, var: &str) -> Option<usize> {
        self.vars.iter().position(|v| v == var)
    }

    /// Coordinate of variable `v` in `key`.
    #[inline]
    pub fn get(&self, key: u128, v: usize) -> u32 {
        ((key >> self.shifts[v]) & self.masks[v]) as u32
    }

    /// Key with variable `v` set to `c` (the field must be zero in `key`).
    #[inline]
    pub fn with(&self, key: u128, v: usize, c: u32) -> u128 {
        key | (u128::from(c) << self.shifts[v])
    }

    /// Number of points of the full index space, if it is at most [`MAX_DENSE_POINTS`].
    pub fn dense_points(&self, vars: &[usize]) -> Option<u128> {
        let mut n: u128 = 1;
        for &v in vars {
            n = n.checked_mul(self.sizes[v] as u128)?;
            if n > MAX_DENSE_POINTS {
                return None;
            }
        }
        Some(n)
    }

    /// Calls `f` with the key of every point of the full range of `vars` (other fields zero), in
    /// row-major order.
    pub fn for_each_point(&self, vars: &[usize], mut f: impl FnMut(u128)) {
        if vars.iter().any(|&v| self.sizes[v] == 0) {
            return;
        }
        let mut coords = vec![0u32; vars.len()];
        loop {
            let mut key = 0u128;
            for (n, &v) in vars.iter().enumerate() {
                key = self.with(key, v, coords[n]);
            }
            f(key);
            let mut n = vars.len();
            loop {
                if n == 0 {
                    return;
                }
                n -= 1;
                coords[n] += 1;
                if (coords[n] as usize) < self.sizes[vars[n]] {
                    break;
                }
                coords[n] = 0;
            }
        }
    }
}

/// Moves the fields of the variables two layouts share from a key of one into a key of the other.
#[derive(Debug, Clone)]
pub struct Projector {
    moves: Vec<(u32, u128, u32)>,
}

impl Projector {
    /// Projects keys of `from` onto the variables of `to` that `from` also has.
    pub fn new(from: &Layout, to: &Layout) -> Projector {
        let mut moves = Vec::new();
        for (tv, name) in to.vars.iter().enumerate() {
            if let Some(fv) = from.pos(name) {
                moves.push((from.shifts[fv], from.masks[fv], to.shifts[tv]));
            }
        }
        Projector { moves }
    }

    /// The projected key.
    #[inline]
    pub fn apply(&self, key: u128) -> u128 {
        let mut out = 0u128;
        for &(from, mask, to) in &self.moves {
            out |= ((key >> from) & mask) << to;
        }
        out
    }
}

/// A sparse relation: `layout` names the variables; `points` are sorted by key, unique, and
/// never zero.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Variables of the relation.
    pub layout: Layout,
    /// Present points, strictly increasing keys, no zero values.
    pub points: Vec<Point>,
}

impl Relation {
    /// An empty relation over a layout.
    pub fn empty(layout: Layout) -> Relation {
        Relation { layout, points: Vec::new() }
    }
}

/// Sorts points by key, sums the values of equal keys and drops zeros.
pub fn normalize_sum(points: &mut Vec<Point>) {
    points.sort_unstable_by_key(|p| p.0);
    let mut out = 0usize;
    let mut i = 0usize;
    while i < points.len() {
        let (key, mut v) = points[i];
        i += 1;
        while i < points.len() && points[i].0 == key {
            v += points[i].1;
            i += 1;
        }
        if v != 0.0 {
            points[out] = (key, v);
            out += 1;
        }
    }
    points.truncate(out);
}

/// Collects points whose keys may repeat and sums them. Small key spaces (at most
/// 2^[`SumAccumulator::DENSE_BITS`] keys) use a dense array indexed by key; larger ones a buffer
/// that is sorted and merged whenever it doubles, so memory stays proportional to the number of
/// distinct keys (plus a fixed buffer).
pub struct SumAccumulator {
    dense: Option<Vec<f64>>,
    points: Vec<Point>,
    compact_at: usize,
}

impl SumAccumulator {
    /// Key spaces up to this many bits are accumulated densely.
    pub const DENSE_BITS: u32 = 22;
    const MIN_BUFFER: usize = 1 << 22;

    /// An empty accumulator for keys of the given layout.
    pub fn new(layout: &Layout) -> SumAccumulator {
        let bits = layout.key_bits();
        let dense = (bits <= Self::DENSE_BITS).then(|| vec![0.0; 1usize << bits]);
        SumAccumulator { dense, points: Vec::new(), compact_at: Self::MIN_BUFFER }
    }

    /// Adds `v` at `key`.
    #[inline]
    pub fn push(&mut self, key: u128, v: f64) {
        if let Some(d) = &mut self.dense {
            d[key as usize] += v;
            return;
        }
        self.points.push((key, v));
        if self.points.len() >= self.compact_at {
            normalize_sum(&mut self.points);
            self.compact_at = (2 * self.points.len()).max(Self::MIN_BUFFER);
        }
    }

    /// The summed points: sorted, unique, no zeros.
    pub fn finish(mut self) -> Vec<Point> {
        if let Some(d) = self.dense {
            return d.into_iter().enumerate().filter(|p| p.1 != 0.0).map(|(k, v)| (k as u128, v)).collect();
        }
        normalize_sum(&mut self.points);
        self.points
    }
}

/// Sums a result one row at a time (Gustavson's workspace): the keys of a row share every bit
/// above the lowest `low_bits`, and rows arrive in key order, so each finished row is appended
/// to the result in order and nothing else is held. Equal keys are summed in arrival order.
pub struct RowAccumulator {
    /// The lowest `low_bits` bits.
    low_mask: u128,
    /// The row's key bits above `low_bits` (the dense workspace stores only the low bits).
    high: u128,
    /// A dense workspace for narrow rows: the sums, which slots hold one, and those slots.
    dense: Option<(Vec<f64>, Vec<bool>, Vec<u32>)>,
    /// The products of a wide row, summed whenever it doubles and when the row ends.
    buf: Vec<Point>,
    /// The length at which `buf` is summed next.
    combine_at: usize,
    /// The least `combine_at` ([`RowAccumulator::MIN_BUFFER`]; small in tests).
    min_buffer: usize,
}

impl RowAccumulator {
    /// Rows up to 2^this many keys are summed in a dense workspace.
    pub const DENSE_BITS: u32 = 16;
    /// A wide row's buffer is first summed at this length; it never holds more than this or
    /// twice the row's distinct keys.
    pub const MIN_BUFFER: usize = 1 << 20;

    /// An accumulator for rows spanning the lowest `low_bits` bits of the key.
    pub fn new(low_bits: u32) -> RowAccumulator {
        let dense = (low_bits <= Self::DENSE_BITS)
            .then(|| (vec![0.0; 1usize << low_bits], vec![false; 1usize << low_bits], Vec::new()));
        let low_mask = if low_bits == 0 { 0 } else { u128::MAX >> (128 - low_bits.min(128)) };
        let min_buffer = Self::MIN_BUFFER;
        RowAccumulator { low_mask, high: 0, dense, buf: Vec::new(), combine_at: min_buffer, min_buffer }
    }

    #[cfg(test)]
    fn with_min_buffer(low_bits: u32, min_buffer: usize) -> RowAccumulator {
        RowAccumulator { combine_at: min_buffer, min_buffer, ..RowAccumulator::new(low_bits) }
    }

    /// Adds `v` at `key`, which lies in the current row.
    #[inline]
    pub fn push(&mut self, key: u128, v: f64) {
        match &mut self.dense {
            Some((sums, held, slots)) => {
                let low = key & self.low_mask;
                self.high = key ^ low;
                let i = low as usize;
                if held[i] {
                    sums[i] += v;
                } else {
                    held[i] = true;
                    sums[i] = v;
                    slots.push(i as u32);
                }
            }
            None => {
                self.buf.push((key, v));
                if self.buf.len() >= self.combine_at {
                    combine_in_order(&mut self.buf);
                    self.combine_at = (2 * self.buf.len()).max(self.min_buffer);
                }
            }
        }
    }

    /// Appends the row's nonzero sums to `out` in key order and starts the next row.
    pub fn finish_row(&mut self, out: &mut Vec<Point>) {
        match &mut self.dense {
            Some((sums, held, slots)) => {
                slots.sort_unstable();
                for &i in slots.iter() {
                    held[i as usize] = false;
                    let v = sums[i as usize];
                    if v != 0.0 {
                        out.push((self.high | u128::from(i), v));
                    }
                }
                slots.clear();
            }
            None => {
                combine_in_order(&mut self.buf);
                out.extend(self.buf.iter().filter(|p| p.1 != 0.0));
                self.buf.clear();
                self.combine_at = self.min_buffer;
            }
        }
    }
}

/// Sorts `points` by key and sums equal keys in their order in the slice (a stable sort), zeros
/// kept, so that summing again later continues each key's sum in arrival order.
fn combine_in_order(points: &mut Vec<Point>) {
    points.sort_by_key(|p| p.0);
    let mut out = 0usize;
    for i in 0..points.len() {
        if out > 0 && points[out - 1].0 == points[i].0 {
            points[out - 1].1 += points[i].1;
        } else {
            points[out] = points[i];
            out += 1;
        }
    }
    points.truncate(out);
}

/// Merges two sorted, unique point lists: calls `f(key, a_value, b_value)` for every key in
/// either, in order, with `None` for a side that lacks the key.
pub fn merge_union(a: &[Point], b: &[Point], mut f: impl FnMut(u128, Option<f64>, Option<f64>)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(ka, va)), Some(&(kb, vb))) if ka == kb => {
                f(ka, Some(va), Some(vb));
                i += 1;
                j += 1;
            }
            (Some(&(ka, va)), Some(&(kb, _))) if ka < kb => {
                f(ka, Some(va), None);
                i += 1;
            }
            (Some(&(ka, va)), None) => {
                f(ka, Some(va), None);
                i += 1;
            }
            (_, Some(&(kb, vb))) => {
                f(kb, None, Some(vb));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(sizes: &[usize]) -> Layout {
        let vars = (0..sizes.len()).map(|v| format!("v{v}")).collect();
        Layout::new(vars, sizes.to_vec()).unwrap()
    }

    #[test]
    fn packing_round_trips_and_orders_row_major() {
        let l = layout(&[5, 1, 1 << 20, 3]);
        let k = l.with(l.with(l.with(0, 0, 4), 2, 12345), 3, 2);
        assert_eq!((l.get(k, 0), l.get(k, 1), l.get(k, 2), l.get(k, 3)), (4, 0, 12345, 2));
        let small = l.with(l.with(0, 0, 3), 2, (1 << 20) - 1);
        let big = l.with(0, 0, 4);
        assert!(small < big);
        assert!(Layout::new(vec!["a".into(); 5], vec![1 << 31; 5]).is_none());
        assert!(Layout::new(vec!["a".into(); 4], vec![1 << 32; 4]).is_some());
    }

    #[test]
    fn enumerates_dense_points() {
        let l = layout(&[2, 3, 2]);
        let mut pts = Vec::new();
        l.for_each_point(&[0, 2], |k| pts.push((l.get(k, 0), l.get(k, 1), l.get(k, 2))));
        assert_eq!(pts, vec![(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1)]);
        let mut n = 0;
        l.for_each_point(&[], |_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(l.dense_points(&[0, 1, 2]), Some(12));
    }

    #[test]
    fn normalize_and_accumulate() {
        let mut p = vec![(5, 1.0), (2, 2.0), (5, -1.0), (2, 0.5), (9, 0.0)];
        normalize_sum(&mut p);
        assert_eq!(p, vec![(2, 2.5)]);
        // Dense (3 bits) and buffered (40 bits) accumulation agree.
        for sizes in [vec![7], vec![7, 1 << 20, 1 << 17]] {
            let l = layout(&sizes);
            let mut acc = SumAccumulator::new(&l);
            let n = 3 * SumAccumulator::MIN_BUFFER as u128;
            for i in 0..n {
                acc.push(i % 7, if i % 7 == 3 { 0.0 } else { 1.0 });
            }
            let got = acc.finish();
            let keys: Vec<u128> = got.iter().map(|p| p.0).collect();
            assert_eq!(keys, vec![0, 1, 2, 4, 5, 6]);
            assert!(got.iter().all(|&(k, v)| v == ((n - 1 - k) / 7 + 1) as f64));
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Row by row, narrow (dense workspace) or wide (sorted buffer, summed whenever it
        /// doubles), the accumulator gives the in-order sum of each key, without zeros, in key
        /// order.
        #[test]
        fn row_accumulator_sums_each_row_in_arrival_order(
            low_bits in prop::sample::select(vec![0u32, 3, 16, 17, 40]),
            min_buffer in 1usize..8,
            rows in prop::collection::vec(
                prop::collection::vec((0u64..12, -3i8..4), 0..40), 1..6),
        ) {
            let mut acc = RowAccumulator::with_min_buffer(low_bits, min_buffer);
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for (r, row) in rows.iter().enumerate() {
                let high = (r as u128 * 3 + 1) << low_bits;
                // Spread low keys over the row's whole span, wide rows included.
                let w = low_bits.min(4);
                let low = |c: u64| u128::from(c & ((1 << w) - 1)) << (low_bits - w);
                let mut sums: std::collections::BTreeMap<u128, f64> = std::collections::BTreeMap::new();
                for &(c, v) in row {
                    let v = f64::from(v) * 0.1;
                    acc.push(high | low(c), v);
                    sums.entry(high | low(c)).and_modify(|s| *s += v).or_insert(v);
                }
                acc.finish_row(&mut got);
                want.extend(sums.into_iter().filter(|p| p.1 != 0.0));
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn merge_union_visits_every_key_once() {
        let mut seen = Vec::new();
        merge_union(&[(1, 1.0), (3, 3.0)], &[(2, 20.0), (3, 30.0), (4, 40.0)], |k, a, b| seen.push((k, a, b)));
        assert_eq!(
            seen,
            vec![(1, Some(1.0), None), (2, None, Some(20.0)), (3, Some(3.0), Some(30.0)), (4, None, Some(40.0))]
        );
    }

    #[test]
    fn projection_moves_shared_fields() {
        let a = Layout::new(vec!["i".into(), "k".into()], vec![10, 7]).unwrap();
        let b = Layout::new(vec!["k".into(), "j".into(), "i".into()], vec![7, 3, 10]).unwrap();
        let key = a.with(a.with(0, 0, 9), 1, 6);
        let p = Projector::new(&a, &b).apply(key);
        assert_eq!((b.get(p, 0), b.get(p, 1), b.get(p, 2)), (6, 0, 9));
    }
}
