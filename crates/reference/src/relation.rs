//! Sparse relations: maps from a tuple of index-variable coordinates to an `f64`, with absent
//! tuples meaning 0. Tuples are bit-packed into a `u128` key, so no per-point allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Largest number of points any single step may enumerate densely.
pub const MAX_DENSE_POINTS: u128 = 1 << 27;

/// A fast, deterministic hasher for packed keys (splitmix64-style finalizer).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, v: u128) {
        let lo = v as u64;
        let hi = (v >> 64) as u64;
        self.0 = (self.0 ^ lo ^ hi.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x632B_E59B_D9B4_E019);
    }

    fn write_u64(&mut self, v: u64) {
        self.write_u128(u128::from(v));
    }
}

/// Hash map keyed by packed tuples.
pub type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;

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

/// A sparse relation: `layout` names the variables, `map` holds the nonzero points.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Variables of the relation.
    pub layout: Layout,
    /// Values at present points.
    pub map: KeyMap<f64>,
}

impl Relation {
    /// An empty relation over a layout.
    pub fn empty(layout: Layout) -> Relation {
        Relation { layout, map: KeyMap::default() }
    }

    /// Removes points whose value is zero (absent and zero are the same value).
    pub fn drop_zeros(&mut self) {
        self.map.retain(|_, v| *v != 0.0);
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
    fn projection_moves_shared_fields() {
        let a = Layout::new(vec!["i".into(), "k".into()], vec![10, 7]).unwrap();
        let b = Layout::new(vec!["k".into(), "j".into(), "i".into()], vec![7, 3, 10]).unwrap();
        let key = a.with(a.with(0, 0, 9), 1, 6);
        let p = Projector::new(&a, &b).apply(key);
        assert_eq!((b.get(p, 0), b.get(p, 1), b.get(p, 2)), (6, 0, 9));
    }
}
