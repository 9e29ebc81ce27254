//! Block-sparse tensors (BCSR and its DCSR-style form, generalised to any format): the
//! fibertree indexes blocks, and each stored position holds a dense tile.
//!
//! A [`Blocked`] tensor keeps a *block tensor* whose shape is the original shape divided by the
//! block size along the blocked dimensions, in the original format, and one dense tile of
//! `B^k` values per stored position (`k` blocked dimensions), row-major over the blocked
//! dimensions in logical order. A block is stored when any of its elements is stored in the
//! source, so the blocked form holds the same values plus explicit zeros inside stored blocks;
//! [`Blocked::expand`] gives the values back at their original coordinates.

use std::collections::BTreeMap;

use crate::{Coo, Format, Tensor, TensorError};

/// A tensor stored as blocks of dense `B × … × B` tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// The block structure: shape divided by `block` along blocked dimensions, the source's
    /// format. Its `vals` are placeholders (1 for a stored block, 0 for dense padding); the
    /// values live in `tiles`.
    pub blocks: Tensor,
    /// Block size `B`.
    pub block: usize,
    /// Per logical dimension, whether it is blocked.
    pub dims: Vec<bool>,
    /// One tile of [`Blocked::tile_len`] values per stored position of `blocks`, row-major over
    /// the blocked dimensions in logical order.
    pub tiles: Vec<f64>,
}

/// Checks that `block` divides every blocked dimension of `shape` and that the blocked
/// dimensions are the innermost storage levels of `format` (a tile is the leaf of the block
/// fibertree, as in BCSR). Errors name the dimension and its size.
pub fn check_blockable(shape: &[usize], format: &Format, block: usize, dims: &[bool]) -> Result<(), TensorError> {
    if block == 0 {
        return Err(TensorError::Argument("block size 0: a block size must be at least 1".into()));
    }
    if dims.len() != shape.len() {
        return Err(TensorError::Rank(format!("{} blocked flags for a rank-{} tensor", dims.len(), shape.len())));
    }
    format.check_rank(shape.len())?;
    for (d, (&size, &b)) in shape.iter().zip(dims).enumerate() {
        if b && !size.is_multiple_of(block) {
            return Err(TensorError::Argument(format!(
                "block size {block} does not divide dimension {d} (size {size})"
            )));
        }
    }
    let k = dims.iter().filter(|&&b| b).count();
    let rank = shape.len();
    if let Some(l) = format.mode_order[..rank - k].iter().position(|&d| dims[d]) {
        return Err(TensorError::Argument(format!(
            "format {format} stores blocked dimension {} at level {l}, above the unblocked dimension {}: \
             blocked dimensions must be the innermost levels",
            format.mode_order[l],
            format.mode_order[rank - k..].iter().find(|&&d| !dims[d]).copied().unwrap_or(0)
        )));
    }
    Ok(())
}

impl Blocked {
    /// Values per tile: `B^k` for `k` blocked dimensions.
    pub fn tile_len(&self) -> usize {
        tile_len(self.block, &self.dims)
    }

    /// Blocks `coo` (the logical tensor) with `block × … × block` tiles along `dims`, storing the
    /// block structure in `format`. See [`check_blockable`] for the errors.
    pub fn from_coo(coo: &Coo, format: &Format, block: usize, dims: &[bool]) -> Result<Blocked, TensorError> {
        check_blockable(&coo.shape, format, block, dims)?;
        coo.validate()?;
        let rank = coo.shape.len();
        let bshape: Vec<usize> = coo.shape.iter().zip(dims).map(|(&s, &b)| if b { s / block } else { s }).collect();
        let tl = tile_len(block, dims);
        // Block coordinates → tile, in first-appearance order; duplicates are summed as
        // `Tensor::from_coo` sums them.
        let mut order: BTreeMap<Vec<u32>, usize> = BTreeMap::new();
        let mut data: Vec<f64> = Vec::new();
        for e in 0..coo.nnz() {
            let c = coo.coords(e);
            let mut bc = Vec::with_capacity(rank);
            let mut off = 0usize;
            for d in 0..rank {
                if dims[d] {
                    bc.push(c[d] / block as u32);
                    off = off * block + (c[d] as usize % block);
                } else {
                    bc.push(c[d]);
                }
            }
            let next = order.len();
            let k = *order.entry(bc).or_insert(next);
            if k == next {
                data.resize(data.len() + tl, 0.0);
            }
            data[k * tl + off] += coo.vals[e];
        }
        // The block structure, with each block's ordinal + 1 as its value, so that positions map
        // back to tiles after `from_coo` sorts them (dense padding reads 0: a zero tile).
        let mut bcoo = Coo::new(bshape);
        for (bc, &k) in &order {
            bcoo.push(bc, (k + 1) as f64);
        }
        let mut blocks = Tensor::from_coo(&bcoo, format)?;
        let mut tiles = vec![0.0; blocks.vals.len() * tl];
        for (p, v) in blocks.vals.iter_mut().enumerate() {
            if *v > 0.0 {
                let k = *v as usize - 1;
                tiles[p * tl..(p + 1) * tl].copy_from_slice(&data[k * tl..(k + 1) * tl]);
                *v = 1.0;
            }
        }
        Ok(Blocked { blocks, block, dims: dims.to_vec(), tiles })
    }

    /// Blocks a stored tensor (e.g. a CSR or DCSR input) in its own format.
    pub fn from_tensor(t: &Tensor, block: usize, dims: &[bool]) -> Result<Blocked, TensorError> {
        Blocked::from_coo(&t.to_coo(), &t.format, block, dims)
    }

    /// The logical (un-blocked) shape.
    pub fn shape(&self) -> Vec<usize> {
        self.blocks.shape.iter().zip(&self.dims).map(|(&s, &b)| if b { s * self.block } else { s }).collect()
    }

    /// Number of stored blocks (positions of the block structure, dense padding included).
    pub fn stored_blocks(&self) -> usize {
        self.blocks.vals.len()
    }

    /// The values at their original coordinates, every element of every stored tile included
    /// (explicit zeros inside stored blocks), in the block structure's storage order.
    pub fn expand(&self) -> Coo {
        let shape = self.shape();
        let rank = shape.len();
        let tl = self.tile_len();
        let bd: Vec<usize> = (0..rank).filter(|&d| self.dims[d]).collect();
        let bcoo = self.blocks.to_coo_positions();
        let mut out = Coo::new(shape);
        let mut c = vec![0u32; rank];
        for (bc, p) in bcoo {
            for off in 0..tl {
                let mut rest = off;
                for &d in bd.iter().rev() {
                    c[d] = bc[d] * self.block as u32 + (rest % self.block) as u32;
                    rest /= self.block;
                }
                for d in (0..rank).filter(|&d| !self.dims[d]) {
                    c[d] = bc[d];
                }
                out.push(&c, self.tiles[p * tl + off]);
            }
        }
        out
    }
}

/// Values per tile: `block^k` for `k` blocked dimensions.
pub fn tile_len(block: usize, dims: &[bool]) -> usize {
    dims.iter().filter(|&&b| b).fold(1usize, |n, _| n.saturating_mul(block))
}

impl Tensor {
    /// Every stored position's coordinates with its position in `vals`, in storage order.
    pub fn to_coo_positions(&self) -> Vec<(Vec<u32>, usize)> {
        let rank = self.rank();
        let mut out = Vec::with_capacity(self.vals.len());
        if rank == 0 {
            out.push((vec![], 0));
            return out;
        }
        let mut coords = vec![0u32; rank];
        self.walk_positions(0, 0, &mut coords, &mut out);
        out
    }

    fn walk_positions(&self, level: usize, parent: usize, coords: &mut Vec<u32>, out: &mut Vec<(Vec<u32>, usize)>) {
        let d = self.format.mode_order[level];
        let last = level + 1 == self.rank();
        let visit = |c: u32, p: usize, coords: &mut Vec<u32>, out: &mut Vec<(Vec<u32>, usize)>| {
            coords[d] = c;
            if last {
                out.push((coords.clone(), p));
            } else {
                self.walk_positions(level + 1, p, coords, out);
            }
        };
        match &self.levels[level] {
            crate::LevelData::Dense { size } => {
                for c in 0..*size {
                    visit(c as u32, parent * size + c, coords, out);
                }
            }
            crate::LevelData::Compressed { seg, crd } => {
                let start = seg[parent] as usize;
                for (k, &c) in crd[start..seg[parent + 1] as usize].iter().enumerate() {
                    visit(c, start + k, coords, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LevelFormat;

    fn csr() -> Format {
        Format { levels: vec![LevelFormat::Dense, LevelFormat::Compressed], mode_order: vec![0, 1] }
    }

    fn dcsr() -> Format {
        Format { levels: vec![LevelFormat::Compressed, LevelFormat::Compressed], mode_order: vec![0, 1] }
    }

    fn sample() -> Coo {
        let mut c = Coo::new(vec![4, 6]);
        c.push(&[0, 1], 1.0);
        c.push(&[1, 0], 2.0);
        c.push(&[3, 5], 3.0);
        c.push(&[2, 4], 4.0);
        c
    }

    #[test]
    fn bcsr_round_trip_keeps_every_value() {
        for format in [csr(), dcsr()] {
            let b = Blocked::from_coo(&sample(), &format, 2, &[true, true]).unwrap();
            assert_eq!(b.blocks.shape, vec![2, 3]);
            assert_eq!(b.tile_len(), 4);
            // Blocks (0,0) and (1,2): block rows are dense in CSR, but each holds only its
            // nonzero block columns.
            assert_eq!(b.stored_blocks(), 2);
            // Tile (0,0) holds A(0,1) at in-tile (0,1) and A(1,0) at (1,0).
            assert_eq!(&b.tiles[..4], &[0.0, 1.0, 2.0, 0.0]);
            assert_eq!(&b.tiles[4..], &[4.0, 0.0, 0.0, 3.0]);
            let back = b.expand();
            assert_eq!(back.to_dense(), sample().to_dense());
            assert_eq!(back.nnz(), 8, "explicit zeros inside stored blocks are kept");
        }
    }

    #[test]
    fn block_size_must_divide_the_shape() {
        let e = Blocked::from_coo(&sample(), &csr(), 4, &[true, true]).unwrap_err();
        assert_eq!(e.to_string(), "invalid argument: block size 4 does not divide dimension 1 (size 6)");
        assert!(Blocked::from_coo(&sample(), &csr(), 0, &[true, true]).is_err());
    }

    #[test]
    fn blocked_dimensions_must_be_innermost() {
        let mut c = Coo::new(vec![2, 4, 4]);
        c.push(&[1, 2, 3], 5.0);
        let f = Format { levels: vec![LevelFormat::Dense; 3], mode_order: vec![1, 0, 2] };
        let e = Blocked::from_coo(&c, &f, 2, &[false, true, true]).unwrap_err();
        assert!(e.to_string().contains("blocked dimensions must be the innermost levels"), "{e}");
        let f = Format { levels: vec![LevelFormat::Dense; 3], mode_order: vec![0, 2, 1] };
        let b = Blocked::from_coo(&c, &f, 2, &[false, true, true]).unwrap();
        assert_eq!(b.expand().to_dense(), c.to_dense());
    }

    #[test]
    fn unblocked_leading_dimensions_index_tiles() {
        let mut c = Coo::new(vec![3, 4, 2]);
        c.push(&[2, 3, 1], 7.0);
        c.push(&[0, 0, 0], 1.0);
        let f = Format { levels: vec![LevelFormat::Dense; 3], mode_order: vec![0, 1, 2] };
        let b = Blocked::from_coo(&c, &f, 2, &[false, true, true]).unwrap();
        assert_eq!(b.blocks.shape, vec![3, 2, 1]);
        assert_eq!(b.stored_blocks(), 6, "dense levels store every block");
        assert_eq!(b.expand().to_dense(), c.to_dense());
    }

    #[test]
    fn bigbird_masks_block_exactly() {
        let p = crate::patterns::BigBird { block: 4, global: 1, window: 1, random: 1 };
        let m = crate::patterns::bigbird_mask(16, &p, 3).unwrap();
        let b = Blocked::from_coo(&m, &dcsr(), 4, &[true, true]).unwrap();
        let blocks = crate::patterns::bigbird_blocks(16, &p, 3).unwrap();
        assert_eq!(b.stored_blocks(), blocks.len());
        assert!(b.tiles.iter().all(|&v| v == 1.0), "a BigBird block is full");
        // Blocking at twice the mask's block gives tiles with zeros, and the same values.
        let b8 = Blocked::from_coo(&m, &dcsr(), 8, &[true, true]).unwrap();
        assert_eq!(b8.expand().to_dense(), m.to_dense());
    }
}
