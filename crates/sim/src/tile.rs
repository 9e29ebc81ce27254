//! Blocked (tile-valued) simulation: value tokens that stand for dense `B × … × B` tiles.
//!
//! A blocked graph has the topology of the scalar graph on the block structure (one coordinate
//! token per nonzero block); its value streams carry [`Token::Tile`] references into a per-run
//! [`TileArena`], so tokens stay 16 bytes and `Copy` and no token owns heap memory. A tile is a
//! dense array over the *blocked index variables* its value depends on (a subset of the run's
//! blocked variables, at most [`MAX_TILE_AXES`]), identified by a bit mask; the axes are laid
//! out row-major in increasing bit order. Operands with fewer axes broadcast, so a per-row
//! scalar (a `B × 1` tile) meets a `B × B` tile as the scalar program's repeat does, and the
//! scalar `0` of an absent operand (`N`) is the one-element tile [`ZERO`].
//!
//! Tile primitives ([`TileArray`], [`TileAlu`], [`TileReduce`], the accumulators in tile mode
//! and [`TileValWrite`]) follow the token protocol of their scalar counterparts exactly; only
//! the values differ. An ALU multiplication whose only consumer is a sum over a blocked variable
//! both operands may carry contracts that variable's in-tile axis itself (a tile matmul); the
//! sum then adds tiles. Every other reduction over a blocked variable reduces the in-tile axis
//! when its result leaves (row sums and row maxima within tiles). [`TilePlan`] derives all of
//! this from the graph: which variable every value stream is nested over, which variable each
//! reducer removes, which multiplications contract.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use fuseflow_graph::{AluOp, Graph, Op, ReduceKind, StreamId};

use crate::io::{Io, Primitive};
use crate::memory::MemPort;
use crate::prims::spacc::{combine, reduce_init};
use crate::{SimError, Token, Written};

/// The tile holding the scalar 0 (no axes): what an absent operand (`N`) reads as.
pub const ZERO: u32 = 0;

/// Most in-tile axes a tile may have (`B³` values).
pub const MAX_TILE_AXES: u32 = 3;

/// Most blocked index variables a run may have (bits of a tile's axis mask).
pub const MAX_BLOCKED_VARS: usize = 8;

/// The per-run store of tiles. Append-only: a run's tiles live until the run ends (they are
/// counted against the memory limit by the primitives that made them).
#[derive(Debug, Clone)]
pub struct TileArena {
    block: usize,
    data: Vec<f64>,
    /// Offset in `data` and axis mask of every tile.
    tiles: Vec<(usize, u8)>,
}

/// Strides (per axis of an iteration mask) of up to three operand layouts.
struct Walk {
    n: usize,
    strides: [[usize; 8]; 3],
}

impl Walk {
    /// Iterating `full` (ascending bits, first outermost), the stride of each axis in each
    /// `subs` layout (0 where a layout lacks the axis: it broadcasts).
    fn new(block: usize, full: u8, subs: [u8; 3]) -> Walk {
        let mut strides = [[0usize; 8]; 3];
        let mut n = 0;
        for bit in 0..8u8 {
            if full & (1 << bit) == 0 {
                continue;
            }
            for (s, &sub) in subs.iter().enumerate() {
                if sub & (1 << bit) != 0 {
                    let inner = (sub as u32 >> (bit + 1)).count_ones();
                    strides[s][n] = block.pow(inner);
                }
            }
            n += 1;
        }
        Walk { n, strides }
    }

    /// Calls `f(a, b, c)` with the three layouts' offsets at every point of the iteration, in
    /// row-major order.
    #[inline]
    fn run(&self, block: usize, mut f: impl FnMut(usize, usize, usize)) {
        let total = block.pow(self.n as u32);
        let mut digits = [0usize; 8];
        let mut off = [0usize; 3];
        for _ in 0..total {
            f(off[0], off[1], off[2]);
            let mut j = self.n;
            while j > 0 {
                j -= 1;
                digits[j] += 1;
                for (s, o) in off.iter_mut().enumerate() {
                    *o += self.strides[s][j];
                }
                if digits[j] < block {
                    break;
                }
                for (s, o) in off.iter_mut().enumerate() {
                    *o -= self.strides[s][j] * block;
                }
                digits[j] = 0;
            }
        }
    }
}

impl TileArena {
    /// An arena for `block × … × block` tiles, holding [`ZERO`].
    pub fn new(block: usize) -> TileArena {
        TileArena { block: block.max(1), data: vec![0.0], tiles: vec![(0, 0)] }
    }

    /// The block size.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Values of a tile with this axis mask.
    pub fn len_of(&self, mask: u8) -> usize {
        self.block.pow(mask.count_ones())
    }

    /// Number of tiles held.
    pub fn tiles(&self) -> usize {
        self.tiles.len()
    }

    /// Bytes held by tile values.
    pub fn bytes(&self) -> usize {
        8 * self.data.len() + 16 * self.tiles.len()
    }

    /// The axis mask of tile `t`.
    pub fn mask(&self, t: u32) -> u8 {
        self.tiles[t as usize].1
    }

    /// The values of tile `t`, row-major over its axes in increasing bit order.
    pub fn values(&self, t: u32) -> &[f64] {
        let (off, mask) = self.tiles[t as usize];
        &self.data[off..off + self.len_of(mask)]
    }

    /// Whether `t` names a tile.
    pub fn contains(&self, t: u32) -> bool {
        (t as usize) < self.tiles.len()
    }

    fn check(&self, mask: u8) -> Result<(), String> {
        if mask.count_ones() > MAX_TILE_AXES {
            return Err(format!(
                "a tile would have {} blocked axes ({} values); at most {MAX_TILE_AXES} are supported",
                mask.count_ones(),
                self.len_of(mask)
            ));
        }
        Ok(())
    }

    /// Stores a tile with these values (row-major over `mask`'s axes in increasing bit order).
    pub fn push(&mut self, mask: u8, vals: &[f64]) -> Result<u32, String> {
        self.check(mask)?;
        if vals.len() != self.len_of(mask) {
            return Err(format!("a tile of mask {mask:#b} needs {} values, got {}", self.len_of(mask), vals.len()));
        }
        let id = self.next_id()?;
        self.tiles.push((self.data.len(), mask));
        self.data.extend_from_slice(vals);
        Ok(id)
    }

    fn next_id(&self) -> Result<u32, String> {
        u32::try_from(self.tiles.len()).map_err(|_| "more than 2^32 tiles in one run".to_string())
    }

    /// A new tile of mask `out` computed point by point over `full` (⊇ `out`, ⊇ the operands'
    /// masks): `init` everywhere, then `f(acc, a, b)` at every point of `full`.
    fn build(
        &mut self,
        a: u32,
        b: u32,
        full: u8,
        out: u8,
        init: f64,
        mut f: impl FnMut(f64, f64, f64) -> f64,
    ) -> Result<u32, String> {
        self.check(full)?;
        let (oa, ma) = self.tiles[a as usize];
        let (ob, mb) = self.tiles[b as usize];
        let id = self.next_id()?;
        let start = self.data.len();
        let len = self.len_of(out);
        self.data.resize(start + len, init);
        let (old, new) = self.data.split_at_mut(start);
        Walk::new(self.block, full, [ma, mb, out]).run(self.block, |ia, ib, io| {
            new[io] = f(new[io], old[oa + ia], old[ob + ib]);
        });
        self.tiles.push((start, out));
        Ok(id)
    }

    /// Element-wise binary operation with broadcasting: the result has the union of the axes.
    pub fn binary(&mut self, a: u32, b: u32, f: impl Fn(f64, f64) -> f64) -> Result<u32, String> {
        let m = self.mask(a) | self.mask(b);
        self.build(a, b, m, m, 0.0, |_, x, y| f(x, y))
    }

    /// Element-wise unary operation.
    pub fn unary(&mut self, a: u32, f: impl Fn(f64) -> f64) -> Result<u32, String> {
        let m = self.mask(a);
        self.build(a, ZERO, m, m, 0.0, |_, x, _| f(x))
    }

    /// Product summed over the axis `bit` (a tile matmul when both operands carry it); the
    /// result has the union of the axes without `bit`. Products use the zero-absorbing
    /// multiplication of the scalar ALU. A product constant along `bit` (neither operand has
    /// it) sums to `B` times itself.
    pub fn contract(&mut self, a: u32, b: u32, bit: u8) -> Result<u32, String> {
        let full = self.mask(a) | self.mask(b);
        if full & (1 << bit) == 0 {
            let k = self.block as f64;
            return self.binary(a, b, |x, y| mul(x, y) * k);
        }
        self.build(a, b, full, full & !(1 << bit), 0.0, |acc, x, y| acc + mul(x, y))
    }

    /// Element-wise sum or maximum of two tiles (broadcasting), as reducers and accumulators
    /// combine values.
    pub fn combine(&mut self, op: ReduceKind, a: u32, b: u32) -> Result<u32, String> {
        match op {
            ReduceKind::Sum => self.binary(a, b, |x, y| x + y),
            ReduceKind::Max => self.binary(a, b, f64::max),
        }
    }

    /// Reduces axis `bit` of tile `a` (sum or max over the block). A tile that lacks the axis is
    /// constant along it: a sum counts each of its `B` equal values, a max keeps it.
    pub fn reduce_axis(&mut self, op: ReduceKind, a: u32, bit: u8) -> Result<u32, String> {
        let m = self.mask(a);
        if m & (1 << bit) == 0 {
            return match op {
                ReduceKind::Sum => {
                    let k = self.block as f64;
                    self.unary(a, |x| x * k)
                }
                ReduceKind::Max => Ok(a),
            };
        }
        self.build(a, ZERO, m, m & !(1 << bit), reduce_init(op), |acc, x, _| combine(op, acc, x))
    }

    /// Appends tile `t`'s values to `out` in the layout of `axes` (bits, outermost first),
    /// broadcasting axes the tile lacks.
    pub fn write_as(&self, t: u32, axes: &[u8], out: &mut Vec<f64>) {
        let (off, mask) = self.tiles[t as usize];
        permute(self.block, axes, |bit| axis_stride(self.block, mask, bit), &self.data[off..], out);
    }
}

/// The scalar ALU's multiplication (zero absorbing).
fn mul(x: f64, y: f64) -> f64 {
    AluOp::Mul.apply2(x, y)
}

/// Stride of axis `bit` in the layout of `mask` (ascending bits, first outermost); 0 if absent.
fn axis_stride(block: usize, mask: u8, bit: u8) -> usize {
    if mask & (1 << bit) == 0 {
        0
    } else {
        block.pow((mask as u32 >> (bit + 1)).count_ones())
    }
}

/// Appends `src` re-laid out row-major over `axes` (bits, outermost first), where
/// `stride(bit)` is the source stride of each axis.
fn permute(block: usize, axes: &[u8], stride: impl Fn(u8) -> usize, src: &[f64], out: &mut Vec<f64>) {
    let strides: Vec<usize> = axes.iter().map(|&b| stride(b)).collect();
    let n = axes.len();
    let total = block.pow(n as u32);
    let mut digits = vec![0usize; n];
    let mut off = 0usize;
    out.reserve(total);
    for _ in 0..total {
        out.push(src[off]);
        let mut j = n;
        while j > 0 {
            j -= 1;
            digits[j] += 1;
            off += strides[j];
            if digits[j] < block {
                break;
            }
            off -= strides[j] * block;
            digits[j] = 0;
        }
    }
}

/// The blocking of one run: the block size and the blocked index variables (by name, as the
/// graph's scanners, joiners and repeaters name them).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TileSpec {
    /// Block size `B`.
    pub block: usize,
    /// Blocked index variables; a variable's position is its axis bit.
    pub vars: Vec<String>,
}

impl TileSpec {
    /// The spec of a graph whose tensors are blocked along `dims` (per tensor, per logical
    /// dimension): its blocked variables are those that scan or locate a blocked dimension.
    pub fn from_graph(graph: &Graph, block: usize, dims: &BTreeMap<String, Vec<bool>>) -> TileSpec {
        let blocked = |t: &str, d: usize| dims.get(t).and_then(|v| v.get(d)).copied().unwrap_or(false);
        let mut vars: Vec<String> = Vec::new();
        for node in &graph.nodes {
            let (tensor, dim, index) = match &node.op {
                Op::Scan { tensor, dim, index, .. } => (tensor, *dim as usize, index),
                Op::Locate { tensor, level, index, .. } => {
                    let dim = graph
                        .inputs
                        .iter()
                        .find(|b| b.tensor == *tensor)
                        .and_then(|b| b.mode_order.get(*level as usize));
                    match dim {
                        Some(&d) => (tensor, d, index),
                        None => continue,
                    }
                }
                _ => continue,
            };
            if blocked(tensor, dim) && !vars.contains(index) {
                vars.push(index.clone());
            }
        }
        vars.sort();
        TileSpec { block, vars }
    }
}

/// Initiation interval and latency of one class of tile unit, resolved for a block size.
pub type UnitTiming = (u64, u64);

/// A cycle count that depends on the block size: `c0 + c1·B + c2·B²` (at least 1), written
/// `"2B-1"`, `"B^2"`, `"B"`, `"3"` or a TOML integer in the hardware description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Constant term.
    pub c0: i64,
    /// Coefficient of `B`.
    pub c1: i64,
    /// Coefficient of `B²`.
    pub c2: i64,
}

impl Cost {
    /// A constant.
    pub const fn constant(c: i64) -> Cost {
        Cost { c0: c, c1: 0, c2: 0 }
    }

    /// Cycles for block size `b` (at least 1).
    pub fn at(self, b: usize) -> u64 {
        let b = b as i64;
        let v = self
            .c0
            .saturating_add(self.c1.saturating_mul(b))
            .saturating_add(self.c2.saturating_mul(b).saturating_mul(b));
        v.max(1) as u64
    }

    /// Parses `c0 + c1·B + c2·B²` written as a sum of terms `[k]`, `[k]B`, `[k]B^2` (or
    /// `[k]B*B`, `[k]B²`), e.g. `2B-1` or `B^2 + 4`.
    pub fn parse(text: &str) -> Result<Cost, String> {
        let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if t.is_empty() {
            return Err("an empty cost (expected e.g. \"2B-1\", \"B^2\" or an integer)".into());
        }
        let mut cost = Cost::constant(0);
        let mut rest = t.as_str();
        while !rest.is_empty() {
            let (sign, body) = match rest.as_bytes()[0] {
                b'-' => (-1, &rest[1..]),
                b'+' => (1, &rest[1..]),
                _ if rest.len() == t.len() => (1, rest),
                _ => return Err(format!("cannot read `{text}` as a cost in B")),
            };
            let end = body[1.min(body.len())..].find(['+', '-']).map_or(body.len(), |p| p + 1);
            let term = &body[..end];
            rest = &body[end..];
            let digits = term.chars().take_while(|c| c.is_ascii_digit()).count();
            let k: i64 = if digits == 0 {
                1
            } else {
                term[..digits].parse().map_err(|_| format!("cannot read `{text}` as a cost in B"))?
            };
            match &term[digits..] {
                "" if digits > 0 => cost.c0 += sign * k,
                "B" | "*B" => cost.c1 += sign * k,
                "B^2" | "B*B" | "B²" | "*B^2" | "*B*B" => cost.c2 += sign * k,
                _ => return Err(format!("cannot read `{text}` as a cost in B (terms like 2B, B^2, 1)")),
            }
        }
        Ok(cost)
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (k, unit) in [(self.c2, "B^2"), (self.c1, "B"), (self.c0, "")] {
            if k == 0 {
                continue;
            }
            let sign = if k < 0 {
                "-"
            } else if parts.is_empty() {
                ""
            } else {
                "+"
            };
            let mag = k.unsigned_abs();
            let body = match (mag, unit) {
                (1, u) if !u.is_empty() => u.to_string(),
                (m, u) => format!("{m}{u}"),
            };
            parts.push(format!("{sign}{body}"));
        }
        if parts.is_empty() {
            return write!(f, "0");
        }
        write!(f, "{}", parts.concat())
    }
}

impl serde::Serialize for Cost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Initiation interval and latency of one class of tile unit, as functions of `B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UnitCost {
    /// Initiation interval.
    pub ii: Cost,
    /// Output latency.
    pub latency: Cost,
}

impl UnitCost {
    const fn new(ii: Cost, latency: Cost) -> UnitCost {
        UnitCost { ii, latency }
    }

    /// Resolved for block size `b`.
    pub fn at(self, b: usize) -> UnitTiming {
        (self.ii.at(b), self.latency.at(b))
    }
}

/// Timing of the tile units as functions of the block size (`[tile]` in the hardware
/// description, `docs/hardware.md`). The default is Comal's true-block mode
/// (comal-interop.md §3): a `B×B` matmul with latency `2B−1` and initiation interval `B`,
/// element-wise tile operations, tile loads, reducers and accumulators with latency `B²`, unary
/// and scalar operations with latency `B`; every other initiation interval is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TileCosts {
    /// A multiplication that contracts an in-tile axis (tile matmul).
    pub matmul: UnitCost,
    /// Element-wise binary operations.
    pub elementwise: UnitCost,
    /// Unary and scalar-constant operations.
    pub unary: UnitCost,
    /// Tile loads.
    pub array: UnitCost,
    /// Reducers.
    pub reduce: UnitCost,
    /// Sparse accumulators.
    pub spacc: UnitCost,
}

/// Keys of the `[tile]` table.
pub const TILE_UNITS: [&str; 6] = ["matmul", "elementwise", "unary", "array", "reduce", "spacc"];

impl Default for TileCosts {
    fn default() -> Self {
        let one = Cost::constant(1);
        let b = Cost { c0: 0, c1: 1, c2: 0 };
        let b2 = Cost { c0: 0, c1: 0, c2: 1 };
        TileCosts {
            matmul: UnitCost::new(b, Cost { c0: -1, c1: 2, c2: 0 }),
            elementwise: UnitCost::new(one, b2),
            unary: UnitCost::new(one, b),
            array: UnitCost::new(one, b2),
            reduce: UnitCost::new(one, b2),
            spacc: UnitCost::new(one, b2),
        }
    }
}

impl TileCosts {
    /// The unit of a `[tile]` key.
    pub fn unit_mut(&mut self, name: &str) -> Option<&mut UnitCost> {
        Some(match name {
            "matmul" => &mut self.matmul,
            "elementwise" => &mut self.elementwise,
            "unary" => &mut self.unary,
            "array" => &mut self.array,
            "reduce" => &mut self.reduce,
            "spacc" => &mut self.spacc,
            _ => return None,
        })
    }

    /// Resolved for block size `b`.
    pub fn at(&self, b: usize) -> TileTiming {
        TileTiming {
            matmul: self.matmul.at(b),
            elementwise: self.elementwise.at(b),
            unary: self.unary.at(b),
            array: self.array.at(b),
            reduce: self.reduce.at(b),
            spacc: self.spacc.at(b),
        }
    }
}

/// Timing of the tile units for one block size (`[tile]` in the hardware description).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TileTiming {
    /// A multiplication that contracts an in-tile axis (tile matmul).
    pub matmul: UnitTiming,
    /// Element-wise binary operations on tiles.
    pub elementwise: UnitTiming,
    /// Unary and scalar-constant operations on tiles.
    pub unary: UnitTiming,
    /// Tile loads (arrays).
    pub array: UnitTiming,
    /// Reducers adding (or taking the max of) tiles.
    pub reduce: UnitTiming,
    /// Sparse accumulators of tiles.
    pub spacc: UnitTiming,
}

/// What a tile primitive needs to know about one node, from [`TilePlan`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeTile {
    /// Not a value primitive (or not changed by blocking).
    Other,
    /// A tile array over tensor values whose tiles have this axis mask, laid out in the
    /// tensor's logical order of these axes.
    Array {
        /// Axis bits in the tensor's logical dimension order.
        axes: Vec<u8>,
    },
    /// An ALU; `contract` is the in-tile axis a multiplication sums over.
    Alu {
        /// Contracted axis bit.
        contract: Option<u8>,
    },
    /// A reducer or accumulator; `axis` is the in-tile axis it removes (`None` when the
    /// reduced variable is not blocked or its producer already contracted it).
    Reduce {
        /// Reduced axis bit.
        axis: Option<u8>,
    },
    /// A value writer laying tiles out over these axes (output logical dimension order).
    Write {
        /// Axis bits in the output's logical dimension order.
        axes: Vec<u8>,
    },
}

/// Per-node tile roles of a graph under a [`TileSpec`], and the blocked dimensions of every
/// tensor it reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct TilePlan {
    /// The spec.
    pub spec: TileSpec,
    /// Role of every node, indexed like the graph's nodes.
    pub nodes: Vec<NodeTile>,
    /// Per input and output tensor, which logical dimensions are blocked.
    pub dims: BTreeMap<String, Vec<bool>>,
    /// Per input and output tensor, the axis bits of its blocked dimensions in logical order.
    pub axes: BTreeMap<String, Vec<u8>>,
}

impl TilePlan {
    /// Analyses `graph`: the variables every stream is nested over (scanners, locators,
    /// ranges, repeaters and joiners add their index; reducers remove the innermost), the
    /// variable of every tensor dimension, and from those each value primitive's role.
    pub fn new(graph: &Graph, spec: &TileSpec) -> Result<TilePlan, SimError> {
        let bad = |message: String| SimError::Tensor { tensor: graph.name.clone(), message };
        if spec.block < 2 {
            return Err(bad(format!("block size {} (a blocked run needs B ≥ 2)", spec.block)));
        }
        if spec.vars.len() > MAX_BLOCKED_VARS {
            return Err(bad(format!("{} blocked index variables (at most {MAX_BLOCKED_VARS})", spec.vars.len())));
        }
        let bit = |name: &str| spec.vars.iter().position(|v| v == name).map(|p| p as u8);
        let mut space: Vec<Vec<String>> = vec![Vec::new(); graph.streams.len()];
        let sp = |space: &Vec<Vec<String>>, s: StreamId| space[s.0 as usize].clone();
        let mut dim_vars: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for b in &graph.inputs {
            dim_vars.insert(b.tensor.clone(), vec![None; b.shape.len()]);
        }
        for node in &graph.nodes {
            let outs: Vec<Vec<String>> = match &node.op {
                Op::Root => vec![vec![]],
                Op::Scan { tensor, dim, index, .. } => {
                    if let Some(d) = dim_vars.get_mut(tensor).and_then(|d| d.get_mut(*dim as usize)) {
                        *d = Some(index.clone());
                    }
                    let mut s = sp(&space, node.ins[0]);
                    s.push(index.clone());
                    vec![s.clone(), s]
                }
                Op::Range { index, .. } => {
                    let mut s = sp(&space, node.ins[0]);
                    s.push(index.clone());
                    vec![s.clone(), s]
                }
                Op::Locate { tensor, level, index, .. } => {
                    let dim = graph
                        .inputs
                        .iter()
                        .find(|b| b.tensor == *tensor)
                        .and_then(|b| b.mode_order.get(*level as usize));
                    if let (Some(&dim), Some(d)) = (dim, dim_vars.get_mut(tensor)) {
                        if let Some(slot) = d.get_mut(dim) {
                            *slot = Some(index.clone());
                        }
                    }
                    let mut s = sp(&space, node.ins[1]);
                    s.push(index.clone());
                    vec![s]
                }
                Op::RepSig => vec![sp(&space, node.ins[0])],
                Op::Repeat { index } => {
                    let mut s = sp(&space, node.ins[0]);
                    s.push(index.clone());
                    vec![s]
                }
                Op::Join { .. } => vec![sp(&space, node.ins[0]); node.outs.len()],
                Op::Array { .. } | Op::Alu { .. } => vec![sp(&space, node.ins[0])],
                Op::Reduce { .. } => {
                    let mut s = sp(&space, node.ins[0]);
                    s.pop();
                    vec![s]
                }
                Op::Spacc { order, index, .. } => {
                    let mut v: Vec<Vec<String>> = (0..*order as usize).map(|k| sp(&space, node.ins[k + 1])).collect();
                    let mut s = sp(&space, node.ins[*order as usize + 1]);
                    s.retain(|x| x != index);
                    v.push(s);
                    v
                }
                Op::CrdDrop => vec![sp(&space, node.ins[0]), sp(&space, node.ins[1])],
                // Lanes carry the stream they split or put back together unchanged.
                Op::Fork { .. } => vec![sp(&space, node.ins[0]); node.outs.len()],
                Op::Gather { depth, .. } => vec![sp(&space, node.ins[usize::from(*depth > 0)])],
                Op::LevelWrite { .. } | Op::ValWrite { .. } => vec![],
            };
            for (o, s) in node.outs.iter().zip(outs) {
                if let Some(o) = o {
                    space[o.0 as usize] = s;
                }
            }
        }
        // Output dimensions: the variable of each level writer's coordinate stream.
        let mut out_vars: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for b in &graph.outputs {
            out_vars.insert(b.tensor.clone(), vec![None; b.shape.len()]);
        }
        for node in &graph.nodes {
            if let Op::LevelWrite { tensor, level } = &node.op {
                let var = space[node.ins[0].0 as usize].last().cloned();
                let dim = graph.outputs.iter().find(|b| b.tensor == *tensor).and_then(|b| b.dims.get(*level as usize));
                if let (Some(&d), Some(v)) = (dim, out_vars.get_mut(tensor)) {
                    if let Some(slot) = v.get_mut(d) {
                        *slot = var;
                    }
                }
            }
        }
        let axes_of = |vars: &[Option<String>]| -> Vec<u8> { vars.iter().flatten().filter_map(|v| bit(v)).collect() };
        let mut dims = BTreeMap::new();
        let mut axes = BTreeMap::new();
        for (t, vars) in dim_vars.iter().chain(out_vars.iter()) {
            dims.insert(t.clone(), vars.iter().map(|v| v.as_deref().and_then(bit).is_some()).collect());
            axes.insert(t.clone(), axes_of(vars));
        }
        // What a reducer removes, and which multiplications contract for their reducer.
        let reduced = |node: &fuseflow_graph::Node| -> Option<(ReduceKind, Option<u8>)> {
            match &node.op {
                Op::Reduce { op } => Some((*op, space[node.ins[0].0 as usize].last().and_then(|v| bit(v)))),
                Op::Spacc { op, index, .. } => Some((*op, bit(index))),
                _ => None,
            }
        };
        let mut nodes = vec![NodeTile::Other; graph.nodes.len()];
        let mut contracted = vec![false; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            if let Op::Alu { .. } = node.op {
                nodes[i] = NodeTile::Alu { contract: None };
            }
            if let Op::Alu { op: AluOp::Mul } = node.op {
                let out = node.outs[0].map(|s| graph.stream(s));
                let mut contract = None;
                if let Some(s) = out.filter(|s| s.consumers.len() == 1) {
                    let (c, port) = s.consumers[0];
                    let consumer = graph.node(c);
                    let val_port = match consumer.op {
                        Op::Reduce { .. } => 0,
                        Op::Spacc { order, .. } => order as u32 + 1,
                        _ => u32::MAX,
                    };
                    if let Some((ReduceKind::Sum, Some(axis))) = reduced(consumer).filter(|_| port == val_port) {
                        contract = Some(axis);
                        contracted[c.0 as usize] = true;
                    }
                }
                nodes[i] = NodeTile::Alu { contract };
            }
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            nodes[i] = match &node.op {
                Op::Array { tensor } => {
                    NodeTile::Array { axes: dim_vars.get(tensor).map(|v| axes_of(v)).unwrap_or_default() }
                }
                Op::Alu { .. } => nodes[i].clone(),
                Op::Reduce { .. } | Op::Spacc { .. } => {
                    NodeTile::Reduce { axis: if contracted[i] { None } else { reduced(node).and_then(|r| r.1) } }
                }
                Op::ValWrite { tensor } => {
                    NodeTile::Write { axes: out_vars.get(tensor).map(|v| axes_of(v)).unwrap_or_default() }
                }
                _ => NodeTile::Other,
            };
        }
        Ok(TilePlan { spec: spec.clone(), nodes, dims, axes })
    }
}

impl TilePlan {
    /// What blocking does to each value primitive, one line each (for `fuseflow graph`):
    /// which axes a tile array loads, which ALUs are tile matmuls, what each reducer removes.
    pub fn describe(&self, graph: &Graph) -> String {
        let names = |axes: &[u8]| -> String {
            let v: Vec<&str> = axes.iter().map(|&b| self.spec.vars[b as usize].as_str()).collect();
            if v.is_empty() {
                "scalars".into()
            } else {
                format!("tiles over ({})", v.join(", "))
            }
        };
        let b = self.spec.block;
        let mut out = format!("tiles {b}x{b}: blocked indices {}\n", self.spec.vars.join(", "));
        for (i, (node, role)) in graph.nodes.iter().zip(&self.nodes).enumerate() {
            let what = match (role, &node.op) {
                (NodeTile::Array { axes }, _) => format!("loads {}", names(axes)),
                (NodeTile::Alu { contract: Some(bit) }, _) => {
                    format!("tile matmul contracting {}", self.spec.vars[*bit as usize])
                }
                (NodeTile::Alu { contract: None }, Op::Alu { op }) if op.arity() == 2 => {
                    "element-wise, broadcasting".into()
                }
                (NodeTile::Alu { contract: None }, _) => "element-wise".into(),
                (NodeTile::Reduce { axis: Some(bit) }, _) => {
                    format!("combines tiles, then reduces in-tile {}", self.spec.vars[*bit as usize])
                }
                (NodeTile::Reduce { axis: None }, _) => "combines tiles".into(),
                (NodeTile::Write { axes }, _) => format!("writes {}", names(axes)),
                (NodeTile::Other, _) => continue,
            };
            out.push_str(&format!("  n{i} {}: {what}\n", node.op.describe()));
        }
        out
    }
}

/// The arena shared by one run's tile primitives.
pub type SharedArena = Rc<RefCell<TileArena>>;

fn tile_of(t: Token) -> Option<u32> {
    match t {
        Token::Tile(x) => Some(x),
        Token::Empty => Some(ZERO),
        _ => None,
    }
}

/// Tile array: `ref → tile`; position `p` of the block structure is tile `base + p`, `N` loads
/// [`ZERO`]. With a memory port, every line of the tile is fetched.
pub struct TileArray {
    base: u32,
    count: u32,
    tile_len: u32,
    finished: bool,
    loads: u64,
    mem: Option<Box<MemPort>>,
}

impl TileArray {
    /// An array over `count` tiles of `tile_len` values stored in the arena from `base` on.
    pub fn new(base: u32, count: u32, tile_len: u32) -> TileArray {
        TileArray { base, count, tile_len, finished: false, loads: 0, mem: None }
    }

    /// Reads through this memory port.
    pub fn with_memory(mut self, port: MemPort) -> TileArray {
        self.mem = Some(Box::new(port));
        self
    }
}

impl Primitive for TileArray {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some((ready, tok)) = io.head(0) else { break };
            let Some(free) = io.out_free(0) else { break };
            let mut data = ready;
            let out = match tok {
                Token::Idx(r) if r < self.count => {
                    self.loads += 1;
                    if let Some(m) = &mut self.mem {
                        let first = r as u64 * self.tile_len as u64;
                        for w in first..first + self.tile_len as u64 {
                            let w = u32::try_from(w).map_err(|_| io.err("tile address past 2^32 words"))?;
                            data = data.max(m.fetch(w, ready));
                        }
                    }
                    Token::Tile(self.base + r)
                }
                Token::Idx(r) => return Err(io.err(format!("reference {r} out of range for {} tiles", self.count))),
                Token::Empty => Token::Tile(ZERO),
                Token::Stop { .. } => tok,
                Token::Done => {
                    self.finished = true;
                    tok
                }
                other => return Err(io.err(format!("unexpected token {other} on a reference stream"))),
            };
            let at = io.fire(data, free);
            if let Some(m) = &mut self.mem {
                m.consume(at);
            }
            io.pop(0, at);
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn traffic(&self) -> (u64, u64) {
        (4 * self.loads * self.tile_len as u64, 0)
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m.requests, m.bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        out.extend(self.mem.as_ref().map(|m| m.bytes));
    }
    fn done(&self) -> bool {
        self.finished
    }
}

/// Tile ALU: the scalar ALU's operation on every element (broadcasting operands with fewer
/// axes), or, for a contracting multiplication, a tile matmul over the contracted axis.
pub struct TileAlu {
    arena: SharedArena,
    op: AluOp,
    contract: Option<u8>,
    finished: bool,
    ops: u64,
    bytes: usize,
}

impl TileAlu {
    /// An ALU for `op`; `contract` is the axis a multiplication sums over.
    pub fn new(arena: SharedArena, op: AluOp, contract: Option<u8>) -> TileAlu {
        TileAlu { arena, op, contract, finished: false, ops: 0, bytes: 0 }
    }
}

impl Primitive for TileAlu {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        let binary = self.op.arity() == 2;
        while !self.finished {
            let Some((r0, a)) = io.head(0) else { break };
            let (r1, b) = if binary {
                let Some(h) = io.head(1) else { break };
                h
            } else {
                (0, a)
            };
            let Some(free) = io.out_free(0) else { break };
            let out = match (tile_of(a), tile_of(b)) {
                (Some(x), Some(y)) => {
                    let mut arena = self.arena.borrow_mut();
                    let before = arena.bytes();
                    let op = self.op;
                    let t = match (self.contract, binary) {
                        (Some(bit), true) => arena.contract(x, y, bit),
                        (None, true) => arena.binary(x, y, |p, q| op.apply2(p, q)),
                        (_, false) => arena.unary(x, |p| op.apply1(p)),
                    }
                    .map_err(|e| io.err(e))?;
                    let n = arena.len_of(arena.mask(t)) as u64;
                    self.ops += if self.contract.is_some() { n * arena.block() as u64 } else { n };
                    self.bytes += arena.bytes() - before;
                    Token::Tile(t)
                }
                _ => match (a, b) {
                    (Token::Stop { level: la, .. }, Token::Stop { level: lb, .. }) if la == lb => a,
                    (Token::Done, Token::Done) => {
                        self.finished = true;
                        Token::Done
                    }
                    _ => return Err(io.err(format!("misaligned or non-tile operands {a} and {b}"))),
                },
            };
            let at = io.fire(r0.max(r1), free);
            io.pop(0, at);
            if binary {
                io.pop(1, at);
            }
            io.push(0, at, out);
            progress = true;
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn footprint(&self) -> usize {
        self.bytes
    }
}

/// Tile reducer over the innermost level: adds (or takes the max of) a fiber's tiles, then
/// reduces the reduced variable's in-tile axis; the stop rules are the scalar reducer's (an
/// empty real fiber gives [`ZERO`], a gap stop gives nothing).
pub struct TileReduce {
    arena: SharedArena,
    op: ReduceKind,
    axis: Option<u8>,
    acc: Option<u32>,
    pending: Option<Token>,
    finished: bool,
    ops: u64,
    bytes: usize,
}

impl TileReduce {
    /// A reducer for `op` removing in-tile axis `axis`.
    pub fn new(arena: SharedArena, op: ReduceKind, axis: Option<u8>) -> TileReduce {
        TileReduce { arena, op, axis, acc: None, pending: None, finished: false, ops: 0, bytes: 0 }
    }

    fn add(&mut self, t: u32) -> Result<(), String> {
        let mut arena = self.arena.borrow_mut();
        let before = arena.bytes();
        self.acc = Some(match self.acc {
            None => t,
            Some(x) => {
                let r = arena.combine(self.op, x, t)?;
                self.ops += arena.len_of(arena.mask(r)) as u64;
                r
            }
        });
        self.bytes += arena.bytes() - before;
        Ok(())
    }

    fn result(&mut self) -> Result<u32, String> {
        let Some(x) = self.acc.take() else { return Ok(ZERO) };
        let Some(bit) = self.axis else { return Ok(x) };
        let mut arena = self.arena.borrow_mut();
        let before = arena.bytes();
        let r = arena.reduce_axis(self.op, x, bit)?;
        self.ops += arena.len_of(arena.mask(x)) as u64;
        self.bytes += arena.bytes() - before;
        Ok(r)
    }
}

impl Primitive for TileReduce {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            if let Some(tok) = self.pending {
                let Some(free) = io.out_free(0) else { break };
                let at = io.fire(0, free);
                io.push(0, at, tok);
                self.pending = None;
                self.finished = tok == Token::Done;
                progress = true;
                continue;
            }
            let Some((ready, tok)) = io.head(0) else { break };
            match tok {
                Token::Tile(t) => {
                    let at = io.fire(ready, 0);
                    io.pop(0, at);
                    self.add(t).map_err(|e| io.err(e))?;
                }
                Token::Empty => {
                    // An absent operand is an implicit 0: nothing to a sum, part of a max.
                    io.pop(0, ready.max(io.t));
                    if self.op == ReduceKind::Max {
                        self.add(ZERO).map_err(|e| io.err(e))?;
                    }
                }
                Token::Stop { level, gap } => {
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    if gap == 0 {
                        let v = self.result().map_err(|e| io.err(e))?;
                        io.push(0, at, Token::Tile(v));
                        if level > 0 {
                            self.pending = Some(Token::stop(level - 1));
                        }
                    } else if level > 0 {
                        io.push(0, at, Token::Stop { level: level - 1, gap: gap - 1 });
                    }
                }
                Token::Done => {
                    let Some(free) = io.out_free(0) else { break };
                    let at = io.fire(ready, free);
                    io.pop(0, at);
                    io.push(0, at, Token::Done);
                    self.finished = true;
                }
                other => return Err(io.err(format!("unexpected token {other} on a tile stream"))),
            }
            progress = true;
        }
        Ok(progress)
    }
    fn ops(&self) -> u64 {
        self.ops
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn footprint(&self) -> usize {
        self.bytes
    }
}

/// The tile side of a sparse accumulator: combines accumulated tiles and reduces the reduced
/// variable's in-tile axis of each result (see [`crate::prims::Spacc1::with_tiles`]).
#[derive(Clone)]
pub struct TileAcc {
    /// The run's arena.
    pub arena: SharedArena,
    /// In-tile axis of the reduced variable (`None`: unblocked or contracted upstream).
    pub axis: Option<u8>,
}

impl TileAcc {
    /// `a` combined with `b` (tile ids carried as `f64`, exact below 2^53).
    pub fn combine(&self, op: ReduceKind, a: f64, b: f64) -> Result<f64, String> {
        Ok(self.arena.borrow_mut().combine(op, a as u32, b as u32)? as f64)
    }

    /// A merged result with the reduced axis removed.
    pub fn finish(&self, op: ReduceKind, a: f64) -> Result<f64, String> {
        match self.axis {
            Some(bit) => Ok(self.arena.borrow_mut().reduce_axis(op, a as u32, bit)? as f64),
            None => Ok(a),
        }
    }
}

/// Tile value writer: appends every tile's values, laid out over the output's blocked axes in
/// its logical dimension order (broadcasting axes a tile lacks); stops are ignored. Writes
/// every value to memory, a line at a time.
pub struct TileValWrite {
    arena: SharedArena,
    axes: Vec<u8>,
    vals: Vec<f64>,
    finished: bool,
    mem: Option<Box<MemPort>>,
}

impl TileValWrite {
    /// A writer laying tiles out over `axes`.
    pub fn new(arena: SharedArena, axes: Vec<u8>) -> TileValWrite {
        TileValWrite { arena, axes, vals: Vec::new(), finished: false, mem: None }
    }

    /// Writes through this memory port.
    pub fn with_memory(mut self, port: MemPort) -> TileValWrite {
        self.mem = Some(Box::new(port));
        self
    }
}

impl Primitive for TileValWrite {
    fn run(&mut self, io: &mut Io<'_>) -> Result<bool, SimError> {
        let mut progress = false;
        while !self.finished {
            let Some((ready, tok)) = io.head(0) else { break };
            let mut at = io.fire(ready, 0);
            match tok {
                Token::Tile(t) => {
                    let arena = self.arena.borrow();
                    if self.axes.iter().fold(arena.mask(t), |m, &b| m & !(1 << b)) != 0 {
                        return Err(io.err(format!("tile with axes {:#b} outside the output's", arena.mask(t))));
                    }
                    let before = self.vals.len();
                    arena.write_as(t, &self.axes, &mut self.vals);
                    if let Some(m) = &mut self.mem {
                        for _ in before..self.vals.len() {
                            if let Some(free) = m.push_word(at) {
                                at = at.max(free);
                            }
                        }
                    }
                }
                Token::Stop { .. } => {}
                Token::Done => {
                    if let Some(m) = &mut self.mem {
                        m.flush(at);
                    }
                    self.finished = true;
                }
                other => return Err(io.err(format!("value writer received {other}"))),
            }
            io.pop(0, at);
            progress = true;
        }
        Ok(progress)
    }
    fn traffic(&self) -> (u64, u64) {
        (0, 4 * self.vals.len() as u64)
    }
    fn mem_stats(&self) -> (u64, u64) {
        self.mem.as_ref().map_or((0, 0), |m| (m.requests, m.bytes))
    }
    fn port_bytes(&self, out: &mut Vec<u64>) {
        out.extend(self.mem.as_ref().map(|m| m.bytes));
    }
    fn done(&self) -> bool {
        self.finished
    }
    fn written(&mut self) -> Option<Written> {
        Some(Written::Vals(std::mem::take(&mut self.vals)))
    }
    fn footprint(&self) -> usize {
        8 * self.vals.capacity()
    }
}

/// Lays a tensor's tiles (row-major over its blocked dimensions in logical order, whose axis
/// bits are `axes`) into the arena's layout (ascending bits); returns the first tile's id.
pub fn load_tiles(arena: &mut TileArena, axes: &[u8], tiles: &[f64]) -> Result<u32, String> {
    let block = arena.block();
    let tl = block.pow(axes.len() as u32);
    let mask = axes.iter().fold(0u8, |m, &b| m | (1 << b));
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    let src_stride = |bit: u8| {
        let pos = axes.iter().position(|&b| b == bit).unwrap_or(0);
        block.pow((axes.len() - 1 - pos) as u32)
    };
    let first = arena.tiles() as u32;
    let mut buf = Vec::with_capacity(tl);
    for t in tiles.chunks(tl.max(1)) {
        buf.clear();
        permute(block, &sorted, src_stride, t, &mut buf);
        arena.push(mask, &buf)?;
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_parse_and_print() {
        for (text, at16) in [("2B-1", 31), ("B^2", 256), ("B", 16), ("3", 3), ("B*B + 4", 260), ("-B", 1)] {
            let c = Cost::parse(text).unwrap();
            assert_eq!(c.at(16), at16, "{text}");
            assert_eq!(Cost::parse(&c.to_string()).unwrap(), c, "{text} prints as {c}");
        }
        for bad in ["", "2C", "B^3", "1+"] {
            assert!(Cost::parse(bad).is_err(), "{bad}");
        }
        let t = TileCosts::default().at(16);
        assert_eq!((t.matmul, t.elementwise, t.unary), ((16, 31), (1, 256), (1, 16)));
    }

    #[test]
    fn matmul_contracts_the_shared_axis() {
        let mut a = TileArena::new(2);
        // Axes: bit 0 = i, bit 1 = j, bit 2 = k. A(i,k) = [[1,2],[3,4]], B(k,j) stored as (j,k).
        let x = a.push(0b101, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = a.push(0b110, &[5.0, 7.0, 6.0, 8.0]).unwrap(); // (j,k): B(k=0,j=0)=5, B(1,0)=7, ...
        let z = a.contract(x, y, 2).unwrap();
        assert_eq!(a.mask(z), 0b011);
        // Summing over an axis neither operand has counts each product B times.
        let row = a.push(0b001, &[1.0, 2.0]).unwrap();
        let w = a.contract(row, row, 2).unwrap();
        assert_eq!((a.mask(w), a.values(w)), (0b001, &[2.0, 8.0][..]));
        // C = A·B with B = [[5,6],[7,8]]: [[19,22],[43,50]].
        assert_eq!(a.values(z), &[19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn broadcast_and_row_reductions() {
        let mut a = TileArena::new(2);
        let m = a.push(0b11, &[1.0, 5.0, -2.0, 0.0]).unwrap();
        let rowmax = a.reduce_axis(ReduceKind::Max, m, 1).unwrap();
        assert_eq!((a.mask(rowmax), a.values(rowmax)), (0b01, &[5.0, 0.0][..]));
        let shifted = a.binary(m, rowmax, |x, y| x - y).unwrap();
        assert_eq!(a.values(shifted), &[-4.0, 0.0, -2.0, 0.0]);
        let rowsum = a.reduce_axis(ReduceKind::Sum, m, 1).unwrap();
        assert_eq!(a.values(rowsum), &[6.0, -2.0]);
        // A value constant along the reduced axis counts once per element of the block.
        let s = a.reduce_axis(ReduceKind::Sum, rowsum, 1).unwrap();
        assert_eq!(a.values(s), &[12.0, -4.0]);
        // ZERO broadcasts as the scalar 0.
        let z = a.binary(m, ZERO, |x, y| x + y).unwrap();
        assert_eq!(a.values(z), a.values(m).to_vec().as_slice());
    }

    #[test]
    fn layouts_round_trip_through_the_arena() {
        let mut a = TileArena::new(2);
        // A tensor whose blocked dims are (k, i) in logical order: bits 2 then 0.
        let first = load_tiles(&mut a, &[2, 0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        // Arena layout is (i, k): element (k=0,i=1) = 2 sits at (i=1,k=0).
        assert_eq!(a.values(first), &[1.0, 3.0, 2.0, 4.0]);
        let mut out = Vec::new();
        a.write_as(first, &[2, 0], &mut out);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(a.push(0b1111, &[0.0; 16]).is_err(), "four axes are refused");
    }
}
