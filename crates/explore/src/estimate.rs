//! The analytic estimate: a group's cycles, FLOPs and off-chip bytes, without simulating it,
//! from its compiled graph and statistics measured on the data.
//!
//! The graph already encodes everything the fusion and the order decide: which loops are
//! nested in which, where an inlined producer is recomputed under a consumer's loop (its
//! scanners sit under a repeat), which operands are intersected or unioned, where reductions
//! and accumulators remove a level. The estimate therefore walks the graph once, in its arena
//! (topological) order, and gives every stream a *shape*: the expected number of points at
//! each nesting depth, from the root (1) to the stream's own level. Scanners multiply the
//! parent's points by the measured mean fiber length of their tensor's level; joiners combine
//! their operands' fibers as independent random subsets of the index range (intersection:
//! product of densities, union: complement of the product of complements); reducers drop a
//! level; sparse accumulators replace the reduced level by the union of the inner fibers it
//! merges; repeaters take the shape of their repeat signal.
//!
//! From the shapes: FLOPs are the values ALUs, reducers and accumulators see (the simulator
//! counts one operation per value); bytes follow the simulator's accounting (compressed
//! scanners read 8 bytes per fiber and 4 per coordinate, value arrays 4 per load, writers 4
//! per coordinate, segment entry and value); cycles are those of the busiest primitive
//! (tokens, data plus one stop per fiber, through a pipeline of initiation interval 1), or the
//! time to move the bytes at the machine's peak bandwidth when memory is modelled, whichever
//! is larger. Statistics come from the actual inputs and from the intermediates each group
//! reads (the reference evaluator's results in their declared formats): for each storage
//! level, the positions stored, hence the mean fiber length, and the coefficient of variation
//! of fiber lengths.
//!
//! Parallel lanes: a fork hands each lane its share of the parallelized level, so the lanes'
//! primitives see that share and the busiest lane's primitive bounds the cycles; each lane's
//! scanners, arrays and writers are memory access streams of their own, and a gather puts the
//! lanes' points back together.
//!
//! Blocked groups ([`TileModel`]): streams count tiles, not values, and are shaped by the
//! statistics of the block structure (one stored position per nonzero block). Every value
//! primitive fires once per tile at its unit's initiation interval (the machine's `[tile]`
//! table: [`TileTiming`]); a tile over `k` blocked axes holds `B^k` values, which is what
//! arrays load and writers store, and what element-wise units, reducers and accumulators
//! operate on (`B^(k+1)` multiply-adds for a tile matmul). The cycles are the busiest
//! primitive's, plus the latencies along the longest chain of tile units (at the tile sizes
//! of the paper, a few chained `B²` latencies are a large share of a blocked kernel's time).
//!
//! One pass over a few dozen nodes: microseconds per group, so ranking a whole space is cheap
//! (`fuseflow estimate --bench` measures it).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use fuseflow_graph::{Graph, JoinKind, Op, StreamId};
use fuseflow_tensor::{LevelData, Tensor};

/// Statistics of one stored tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TensorStats {
    /// Positions stored at each storage level, outermost first (a dense level of size d under
    /// p parent positions stores p·d).
    pub positions: Vec<f64>,
    /// Coefficient of variation (standard deviation over mean) of fiber lengths at each level
    /// (0 for dense levels).
    pub fiber_cv: Vec<f64>,
    /// For a square matrix: the mean length of its inner fibers when they are chosen by its own
    /// inner coordinates (each row weighted by how often it appears as a column), which is
    /// what a row recomputed per entry scans (`Σ_k count(k)·len(k) / Σ_k count(k)`). On a
    /// skewed graph it is several times the plain mean; `None` for other tensors.
    #[serde(default)]
    pub self_selected: Option<f64>,
}

impl TensorStats {
    /// Measures a tensor.
    pub fn measure(t: &Tensor) -> TensorStats {
        let mut positions = Vec::with_capacity(t.levels.len());
        let mut fiber_cv = Vec::with_capacity(t.levels.len());
        let mut parent = 1usize;
        for l in &t.levels {
            match l {
                LevelData::Dense { size } => {
                    parent = parent.saturating_mul(*size);
                    fiber_cv.push(0.0);
                }
                LevelData::Compressed { seg, crd } => {
                    let n = seg.len().saturating_sub(1).max(1) as f64;
                    let mean = crd.len() as f64 / n;
                    let var = seg.windows(2).map(|w| (w[1] as f64 - w[0] as f64 - mean).powi(2)).sum::<f64>() / n;
                    fiber_cv.push(if mean > 0.0 { var.sqrt() / mean } else { 0.0 });
                    parent = crd.len();
                }
            }
            positions.push(parent as f64);
        }
        TensorStats { positions, fiber_cv, self_selected: self_selected(t) }
    }

    /// Mean fiber length at storage level `level` (positions per parent position).
    pub fn mean_fiber(&self, level: usize) -> Option<f64> {
        let here = *self.positions.get(level)?;
        let parent = if level == 0 { 1.0 } else { self.positions[level - 1] };
        Some(if parent > 0.0 { here / parent } else { 0.0 })
    }
}

/// [`TensorStats::self_selected`]: each outer position's inner fiber length, weighted by how
/// often the position's coordinate appears among the inner coordinates.
fn self_selected(t: &Tensor) -> Option<f64> {
    let [outer, LevelData::Compressed { seg, crd }] = t.levels.as_slice() else { return None };
    if t.shape.len() != 2 || t.shape[0] != t.shape[1] {
        return None;
    }
    let mut count = vec![0u32; t.shape[0]];
    for &c in crd {
        *count.get_mut(c as usize)? += 1;
    }
    let coord = |p: usize| match outer {
        LevelData::Dense { .. } => Some(p),
        LevelData::Compressed { crd, .. } => crd.get(p).map(|&c| c as usize),
    };
    let (mut weight, mut total) = (0f64, 0f64);
    for (p, w) in seg.windows(2).enumerate() {
        let k = count.get(coord(p)?).copied()? as f64;
        weight += k;
        total += k * (w[1] as f64 - w[0] as f64);
    }
    (weight > 0.0).then(|| total / weight)
}

/// Statistics of every tensor groups read, by name.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataStats {
    /// Per tensor.
    pub tensors: BTreeMap<String, TensorStats>,
}

impl DataStats {
    /// Measures every tensor of `tensors`.
    pub fn measure<'a>(tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>) -> DataStats {
        DataStats { tensors: tensors.into_iter().map(|(n, t)| (n.clone(), TensorStats::measure(t))).collect() }
    }
}

/// Estimated figures of a group or a point (sums over groups).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Cycles.
    pub cycles: f64,
    /// Arithmetic operations.
    pub flops: f64,
    /// Off-chip bytes read and written.
    pub bytes: f64,
}

impl std::ops::Add for Estimate {
    type Output = Estimate;
    fn add(self, o: Estimate) -> Estimate {
        Estimate { cycles: self.cycles + o.cycles, flops: self.flops + o.flops, bytes: self.bytes + o.bytes }
    }
}

/// A stream's expected points per nesting depth (root first) and its index, if known.
/// Shared and borrowed, so that passing a shape along a stream costs no allocation.
#[derive(Debug, Clone)]
struct Shape<'g> {
    points: Rc<[f64]>,
    index: Option<&'g str>,
}

impl Default for Shape<'_> {
    fn default() -> Self {
        Shape { points: Rc::from(Vec::new()), index: None }
    }
}

impl<'g> Shape<'g> {
    fn len(&self) -> f64 {
        self.points.last().copied().unwrap_or(0.0)
    }
    fn parent(&self) -> f64 {
        if self.points.len() >= 2 {
            self.points[self.points.len() - 2]
        } else {
            1.0
        }
    }
    /// Data tokens plus one stop per fiber.
    fn tokens(&self) -> f64 {
        self.len() + self.parent()
    }
    fn child(&self, len: f64, index: Option<&'g str>) -> Shape<'g> {
        let mut points = self.points.to_vec();
        points.push(len);
        Shape { points: points.into(), index }
    }
    /// The same points, no index.
    fn values(&self) -> Shape<'g> {
        Shape { points: self.points.clone(), index: None }
    }
    /// One level less.
    fn dropped(&self) -> Shape<'g> {
        let n = self.points.len().saturating_sub(1);
        Shape { points: self.points[..n].into(), index: None }
    }
}

/// The off-chip memory as the estimate sees it (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryModel {
    /// Peak bandwidth of the whole memory, bytes per cycle.
    pub peak_bytes_per_cycle: f64,
    /// Outstanding requests the whole memory holds (channels × queue depth).
    pub slots: f64,
    /// Bytes per request (a line).
    pub line_bytes: f64,
    /// Cycles from a request to its data.
    pub latency: f64,
    /// Whether access streams split bandwidth and slots evenly (`false`: each has all of
    /// them).
    pub partitioned: bool,
}

impl MemoryModel {
    /// Cycles for the busiest of `ports` access streams moving `bytes` each: lines at the
    /// port's share of the bandwidth, or at most its share of the request slots per latency,
    /// whichever is slower.
    fn cycles(&self, ports: &[f64]) -> f64 {
        let n = if self.partitioned { ports.len().max(1) as f64 } else { 1.0 };
        let (bw, slots) = (self.peak_bytes_per_cycle.max(1e-9) / n, (self.slots / n).max(1.0));
        let line = self.line_bytes.max(4.0);
        let per_line = (line / bw).max(self.latency / slots);
        ports.iter().map(|b| (b / line).ceil() * per_line).fold(0.0, f64::max)
    }
}

/// What blocking makes of one node, for the estimate (the driver derives it from the
/// simulator's tile plan). Axis masks have one bit per blocked index variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TileRole {
    /// Not a value primitive: blocking does not change what it does per token.
    Other,
    /// A tile array loading tiles over these axes.
    Array {
        /// Axis mask of the tiles it loads.
        axes: u8,
    },
    /// An ALU; `contract` is the axis bit a tile matmul sums over.
    Alu {
        /// Contracted axis bit, for a multiplication feeding a sum over an in-tile index.
        contract: Option<u8>,
        /// Whether it has two operands (element-wise) or one (unary, scalar constant).
        binary: bool,
    },
    /// A reducer or sparse accumulator; `axis` is the in-tile axis bit it removes.
    Reduce {
        /// Removed axis bit (`None`: the reduced index is not blocked or was contracted).
        axis: Option<u8>,
        /// Whether it is a sparse accumulator (timed as one) rather than a reducer.
        spacc: bool,
    },
    /// A value writer storing tiles over these axes.
    Write {
        /// Axis mask of the tiles it stores.
        axes: u8,
    },
}

/// Initiation interval and latency, in cycles, of each class of tile unit at one block size
/// (the machine's `[tile]` table resolved for `block`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TileTiming {
    /// Block size `B`.
    pub block: f64,
    /// Tile matmul (a multiplication contracting an in-tile axis).
    pub matmul: (f64, f64),
    /// Element-wise binary operations.
    pub elementwise: (f64, f64),
    /// Unary and scalar-constant operations.
    pub unary: (f64, f64),
    /// Tile loads.
    pub array: (f64, f64),
    /// Reducers.
    pub reduce: (f64, f64),
    /// Sparse accumulators.
    pub spacc: (f64, f64),
}

impl TileTiming {
    /// The simulator's default `[tile]` table (Comal's true-block mode) at block size `b`:
    /// matmul interval `B`, latency `2B−1`; element-wise, loads, reducers and accumulators
    /// latency `B²`; unary latency `B`; every other interval 1.
    pub fn comal(b: usize) -> TileTiming {
        let b = b as f64;
        TileTiming {
            block: b,
            matmul: (b, 2.0 * b - 1.0),
            elementwise: (1.0, b * b),
            unary: (1.0, b),
            array: (1.0, b * b),
            reduce: (1.0, b * b),
            spacc: (1.0, b * b),
        }
    }
}

/// A blocked group's graph as the estimate needs it: each node's tile role (indexed like the
/// graph's nodes) and the statistics of the block structures its scanners read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TileModel {
    /// Role of every node.
    pub roles: Vec<TileRole>,
    /// Statistics of what the blocked graph scans: the block structure of every blocked
    /// tensor (and the tensor itself for those it reads unblocked).
    pub stats: DataStats,
}

/// Per-fiber density `len / size` clamped to [0, 1].
fn density(len: f64, size: f64) -> f64 {
    if size > 0.0 {
        (len / size).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// Estimates one group's graph on the data described by `stats` on a machine with `memory`
/// (`None`: ideal memory).
pub fn estimate_graph(g: &Graph, stats: &DataStats, memory: Option<&MemoryModel>) -> Estimate {
    estimate_walk(g, stats, memory, None)
}

/// Estimates a blocked group's graph: `tiles` says what each node does to tiles (and replaces
/// `stats` by the statistics of the block structure), `timing` is the machine's tile units.
pub fn estimate_blocked(g: &Graph, tiles: &TileModel, timing: &TileTiming, memory: Option<&MemoryModel>) -> Estimate {
    estimate_walk(g, &tiles.stats, memory, Some((&tiles.roles, timing)))
}

/// Estimates a compiled group: scalar ([`estimate_graph`] on `stats`) or blocked
/// ([`estimate_blocked`] with the tile units `timing` gives for its block size).
pub fn estimate_compiled(
    c: &crate::Compiled,
    stats: &DataStats,
    memory: Option<&MemoryModel>,
    timing: impl FnOnce(usize) -> TileTiming,
) -> Estimate {
    match &c.block {
        Some(b) => estimate_blocked(&c.graph, &b.tiles, &timing(b.block), memory),
        None => estimate_graph(&c.graph, stats, memory),
    }
}

fn estimate_walk(
    g: &Graph,
    stats: &DataStats,
    memory: Option<&MemoryModel>,
    tiles: Option<(&[TileRole], &TileTiming)>,
) -> Estimate {
    let bindings: HashMap<&str, &fuseflow_graph::TensorBinding> =
        g.inputs.iter().map(|b| (b.tensor.as_str(), b)).collect();
    // Index sizes, from every primitive that knows one.
    let mut sizes: HashMap<&str, f64> = HashMap::new();
    for n in &g.nodes {
        match &n.op {
            Op::Scan { tensor, dim, index, .. } => {
                if let Some(b) = bindings.get(tensor.as_str()) {
                    sizes.insert(index, b.shape.get(*dim as usize).copied().unwrap_or(1) as f64);
                }
            }
            Op::Range { size, index } | Op::Locate { size, index, .. } => {
                sizes.insert(index, *size as f64);
            }
            Op::Root
            | Op::RepSig
            | Op::Repeat { .. }
            | Op::Join { .. }
            | Op::Array { .. }
            | Op::Alu { .. }
            | Op::Reduce { .. }
            | Op::Spacc { .. }
            | Op::CrdDrop
            | Op::LevelWrite { .. }
            | Op::ValWrite { .. }
            | Op::Fork { .. }
            | Op::Gather { .. } => {}
        }
    }
    let size_of = |index: Option<&str>, fallback: f64| index.and_then(|i| sizes.get(i).copied()).unwrap_or(fallback);
    let mut shapes: Vec<Shape> = vec![Shape::default(); g.streams.len()];
    let (mut flops, mut bytes, mut busiest) = (0.0f64, 0.0f64, 0.0f64);
    // Bytes per memory access stream (the simulator gives each its own port).
    let mut ports: Vec<f64> = Vec::new();
    // Blocked graphs: each stream's tile axis mask and the latest tile-unit latency behind it.
    let mut masks: Vec<u8> = vec![0; if tiles.is_some() { g.streams.len() } else { 0 }];
    let mut lats: Vec<f64> = vec![0.0; masks.len()];
    let mut longest = 0.0f64;
    // Which scanned levels' coordinates chose each stream's points, a bit per (tensor, level)
    // (the first 64): a matrix's inner scanner whose rows were chosen by that level's own
    // coordinates scans its size-biased fibers (`TensorStats::self_selected`).
    let mut level_bits: HashMap<(&str, u32), u64> = HashMap::new();
    let mut chosen: Vec<u64> = vec![0; g.streams.len()];
    for (ni, n) in g.nodes.iter().enumerate() {
        let ins: Vec<Shape> = n.ins.iter().map(|&s: &StreamId| shapes[s.0 as usize].clone()).collect();
        let chosen_in = |k: usize| n.ins.get(k).map_or(0, |s| chosen[s.0 as usize]);
        let chosen_out = match &n.op {
            Op::Scan { tensor, level, .. } => {
                let next = level_bits.len();
                *level_bits.entry((tensor.as_str(), *level)).or_insert(if next < 64 { 1 << next } else { 0 })
            }
            Op::Join { .. } => (0..n.ins.len()).fold(0, |b, k| b | chosen_in(k)),
            Op::Repeat { .. } | Op::Locate { .. } => chosen_in(0),
            Op::Root
            | Op::RepSig
            | Op::Range { .. }
            | Op::Array { .. }
            | Op::Alu { .. }
            | Op::Reduce { .. }
            | Op::Spacc { .. }
            | Op::CrdDrop
            | Op::LevelWrite { .. }
            | Op::ValWrite { .. }
            | Op::Fork { .. }
            | Op::Gather { .. } => 0,
        };
        // Tile bookkeeping: what the node does per tile token (values per token, FLOPs and
        // bytes per token, its interval and latency).
        let tile = tiles.map(|(roles, t)| {
            let mask_in = |k: usize| n.ins.get(k).map_or(0, |s| masks[s.0 as usize]);
            let lat_in = n.ins.iter().map(|s| lats[s.0 as usize]).fold(0.0, f64::max);
            let elems = |m: u8| t.block.powi(m.count_ones() as i32);
            let last_in = n.ins.len().saturating_sub(1);
            // (mask of the outputs, flops per token, bytes per token, (interval, latency))
            let (mask, flops, bytes, (ii, lat)) = match roles.get(ni).copied().unwrap_or(TileRole::Other) {
                TileRole::Other => (mask_in(0), 0.0, 0.0, (0.0, 0.0)),
                TileRole::Array { axes } => (axes, 0.0, 4.0 * elems(axes), t.array),
                TileRole::Alu { contract, binary } => {
                    let both = mask_in(0) | if binary { mask_in(1) } else { 0 };
                    let out = contract.map_or(both, |c| both & !(1u8 << c));
                    match (contract, binary) {
                        (Some(_), _) => (out, elems(out) * t.block, 0.0, t.matmul),
                        (None, true) => (out, elems(out), 0.0, t.elementwise),
                        (None, false) => (out, elems(out), 0.0, t.unary),
                    }
                }
                TileRole::Reduce { axis, spacc } => {
                    let m = mask_in(last_in);
                    let out = axis.map_or(m, |a| m & !(1u8 << a));
                    (out, elems(m), 0.0, if spacc { t.spacc } else { t.reduce })
                }
                TileRole::Write { axes } => (axes, 0.0, 4.0 * elems(axes), (1.0, 0.0)),
            };
            (mask, flops, bytes, ii, lat_in + lat)
        });
        let outs: Vec<Shape> = match &n.op {
            Op::Root => vec![Shape { points: Rc::from(vec![1.0]), index: None }],
            Op::Scan { tensor, level, dim, index, format } => {
                let parent = ins.first().cloned().unwrap_or_default();
                let dim_size =
                    bindings.get(tensor.as_str()).and_then(|b| b.shape.get(*dim as usize)).copied().unwrap_or(1) as f64;
                let own = stats.tensors.get(tensor);
                let fiber = match own.and_then(|t| t.self_selected) {
                    Some(biased) if *level == 1 && chosen_in(0) & chosen_out != 0 => biased,
                    _ => own.and_then(|t| t.mean_fiber(*level as usize)).unwrap_or(dim_size),
                };
                let s = parent.child(parent.len() * fiber, Some(index.as_str()));
                if *format == fuseflow_tensor::LevelFormat::Compressed {
                    bytes += 8.0 * parent.len() + 4.0 * s.len();
                    ports.extend([8.0 * parent.len(), 4.0 * s.len()]);
                }
                vec![s.clone(), s]
            }
            Op::Range { size, index } => {
                let parent = ins.first().cloned().unwrap_or_default();
                let s = parent.child(parent.len() * *size as f64, Some(index.as_str()));
                vec![s.clone(), s]
            }
            Op::RepSig => vec![ins.first().cloned().unwrap_or_default()],
            Op::Repeat { .. } => {
                vec![ins.get(1).map_or_else(Shape::default, Shape::values)]
            }
            Op::Join { kind, payloads, index } => {
                let mut operands = Vec::new();
                let mut i = 0;
                for &p in payloads {
                    if let Some(s) = ins.get(i) {
                        operands.push(s.clone());
                    }
                    i += 1 + p as usize;
                }
                let widest =
                    operands.iter().max_by(|a, b| a.parent().total_cmp(&b.parent())).cloned().unwrap_or_default();
                let parent = widest.parent();
                let fibers: Vec<f64> =
                    operands.iter().map(|s| if s.parent() > 0.0 { s.len() / s.parent() } else { 0.0 }).collect();
                let size = size_of(Some(index.as_str()), fibers.iter().copied().fold(1.0, f64::max));
                let fiber = match kind {
                    JoinKind::Intersect => size * fibers.iter().map(|&f| density(f, size)).product::<f64>(),
                    JoinKind::Union => size * (1.0 - fibers.iter().map(|&f| 1.0 - density(f, size)).product::<f64>()),
                };
                let s = widest.dropped().child(parent * fiber, Some(index.as_str()));
                let work = match kind {
                    JoinKind::Intersect => operands.iter().map(Shape::tokens).sum::<f64>(),
                    JoinKind::Union => s.tokens(),
                };
                busiest = busiest.max(work);
                vec![s; n.outs.len()]
            }
            Op::Locate { .. } => vec![ins.first().map_or_else(Shape::default, Shape::values)],
            Op::Array { .. } => {
                let s = ins.first().cloned().unwrap_or_default();
                let b = s.len() * tile.map_or(4.0, |t| t.2);
                bytes += b;
                ports.push(b);
                vec![s.values()]
            }
            Op::Alu { .. } => {
                let s = ins.iter().max_by(|a, b| a.len().total_cmp(&b.len())).cloned().unwrap_or_default();
                flops += s.len() * tile.map_or(1.0, |t| t.1);
                vec![s.values()]
            }
            Op::Reduce { .. } => {
                let s = ins.first().cloned().unwrap_or_default();
                flops += s.len() * tile.map_or(1.0, |t| t.1);
                vec![s.dropped()]
            }
            Op::Spacc { order, .. } => {
                // Inputs: reduced crd, `order` inner crds, values. The reduced level (depth k)
                // goes; each inner level becomes the union of the fibers it merged.
                let order = *order as usize;
                let val = ins.last().cloned().unwrap_or_default();
                flops += val.len() * tile.map_or(1.0, |t| t.1);
                let d = val.points.len();
                let mut out = Vec::new();
                if d >= order + 2 {
                    let k = d - 1 - order;
                    let above = val.points[k - 1];
                    let merged = if above > 0.0 { val.points[k] / above } else { 0.0 };
                    let mut points: Vec<f64> = val.points[..k].to_vec();
                    let mut per_parent_in = val.points[k];
                    let mut per_parent_out = above;
                    for j in 0..order {
                        let inner = ins.get(1 + j).cloned().unwrap_or_default();
                        let fiber = if per_parent_in > 0.0 { val.points[k + 1 + j] / per_parent_in } else { 0.0 };
                        let size = size_of(inner.index, fiber);
                        let union = if j == 0 {
                            size * (1.0 - (1.0 - density(fiber, size)).powf(merged.max(1.0)))
                        } else {
                            fiber
                        };
                        per_parent_in = val.points[k + 1 + j];
                        per_parent_out *= union;
                        points.push(per_parent_out);
                        out.push(Shape { points: points.clone().into(), index: inner.index });
                    }
                    let last = out.last().cloned().unwrap_or_default();
                    out.push(last.values());
                } else {
                    out = vec![val; order + 1];
                }
                out
            }
            Op::CrdDrop => ins.clone(),
            Op::LevelWrite { .. } => {
                let s = ins.first().cloned().unwrap_or_default();
                bytes += 4.0 * (s.len() + s.parent());
                ports.extend([4.0 * s.parent(), 4.0 * s.len()]);
                Vec::new()
            }
            Op::ValWrite { .. } => {
                let b = tile.map_or(4.0, |t| t.2) * ins.first().map_or(0.0, Shape::len);
                bytes += b;
                ports.push(b);
                Vec::new()
            }
            // A lane gets every lanes-th element of the parallelized level (the stream's own)
            // and every stop; lanes run side by side, so per-lane shapes are what bound cycles.
            Op::Fork { lanes, .. } => {
                let s = ins.first().cloned().unwrap_or_default();
                let mut points = s.points.to_vec();
                if let Some(last) = points.last_mut() {
                    *last /= f64::from(*lanes).max(1.0);
                }
                vec![Shape { points: points.into(), index: s.index }; n.outs.len()]
            }
            // The lanes' elements, from the parallelized level down, put back together.
            Op::Gather { lanes, depth, .. } => {
                let first_lane = usize::from(*depth > 0);
                let s = ins.get(first_lane).cloned().unwrap_or_default();
                let mut points = s.points.to_vec();
                let from = points.len().saturating_sub(1 + *depth as usize);
                for p in &mut points[from..] {
                    *p *= f64::from(*lanes);
                }
                vec![Shape { points: points.into(), index: s.index }]
            }
        };
        for s in ins.iter().chain(&outs) {
            busiest = busiest.max(s.tokens());
        }
        if let Some((mask, _, _, ii, lat)) = tile {
            // A tile unit takes `ii` cycles per tile it consumes.
            let fires = ins.iter().map(Shape::len).fold(0.0, f64::max);
            busiest = busiest.max(fires * ii);
            longest = longest.max(lat);
            for id in n.outs.iter().flatten() {
                masks[id.0 as usize] = mask;
                lats[id.0 as usize] = lat;
            }
        }
        for (slot, s) in n.outs.iter().zip(outs) {
            if let Some(id) = slot {
                shapes[id.0 as usize] = s;
                chosen[id.0 as usize] = chosen_out;
            }
        }
    }
    let memory = memory.map_or(0.0, |m| m.cycles(&ports));
    Estimate { cycles: busiest.max(memory) + longest, flops, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuseflow_tensor::{Coo, Format, LevelFormat};

    fn tensor(shape: Vec<usize>, entries: &[(u32, u32)], levels: Vec<LevelFormat>) -> Tensor {
        let mut coo = Coo::new(shape.clone());
        for &(i, j) in entries {
            coo.push(&[i, j], 1.0);
        }
        Tensor::from_coo(&coo, &Format::new(levels, vec![0, 1]).unwrap()).unwrap()
    }

    #[test]
    fn stats_of_a_compressed_matrix() {
        let t =
            tensor(vec![4, 10], &[(0, 1), (0, 2), (2, 5), (3, 0), (3, 9), (3, 4)], vec![LevelFormat::Compressed; 2]);
        let s = TensorStats::measure(&t);
        assert_eq!(s.positions, vec![3.0, 6.0]);
        assert_eq!(s.mean_fiber(1), Some(2.0));
        let d = tensor(vec![4, 10], &[(0, 1)], vec![LevelFormat::Dense; 2]);
        assert_eq!(TensorStats::measure(&d).positions, vec![4.0, 40.0]);
        assert_eq!((s.self_selected, TensorStats::measure(&d).self_selected), (None, None), "not square");
    }

    #[test]
    fn rows_chosen_by_their_own_columns_are_size_biased() {
        // Rows 0, 1, 2 hold 2, 1 and 1 entries; columns 0, 1, 2 appear 1, 1 and 2 times:
        // (1·2 + 1·1 + 2·1) / 4 = 1.25 per chosen row, against a mean of 4/3.
        let entries = [(0, 1), (0, 2), (1, 2), (2, 0)];
        for levels in [vec![LevelFormat::Compressed; 2], vec![LevelFormat::Dense, LevelFormat::Compressed]] {
            let s = TensorStats::measure(&tensor(vec![3, 3], &entries, levels));
            assert_eq!(s.self_selected, Some(1.25));
        }
        // A row that no column names weighs nothing; no column names any row: no figure.
        let s = TensorStats::measure(&tensor(vec![4, 4], &[(3, 0), (3, 1), (0, 1)], vec![LevelFormat::Compressed; 2]));
        assert_eq!(s.self_selected, Some(1.0));
        let s = TensorStats::measure(&tensor(vec![4, 4], &[(0, 3), (1, 3)], vec![LevelFormat::Compressed; 2]));
        assert_eq!(s.self_selected, None);
    }

    #[test]
    fn scan_and_write_follow_the_data() {
        // A copy X(i,j) = A(i,j) of a 3-row matrix with 6 entries: 6 values read and written.
        let mut g = Graph::new("copy");
        g.inputs.push(fuseflow_graph::TensorBinding {
            tensor: "A".into(),
            shape: vec![4, 10],
            levels: vec![LevelFormat::Compressed; 2],
            mode_order: vec![0, 1],
        });
        let root = g.add(Op::Root, &[], "root")[0];
        let si = g.add(
            Op::Scan { tensor: "A".into(), level: 0, dim: 0, format: LevelFormat::Compressed, index: "i".into() },
            &[root],
            "A_i",
        );
        let sj = g.add(
            Op::Scan { tensor: "A".into(), level: 1, dim: 1, format: LevelFormat::Compressed, index: "j".into() },
            &[si[1]],
            "A_j",
        );
        let v = g.add(Op::Array { tensor: "A".into() }, &[sj[1]], "vals")[0];
        g.add(Op::ValWrite { tensor: "X".into() }, &[v], "w");
        let t =
            tensor(vec![4, 10], &[(0, 1), (0, 2), (2, 5), (3, 0), (3, 9), (3, 4)], vec![LevelFormat::Compressed; 2]);
        let stats = DataStats { tensors: [("A".to_string(), TensorStats::measure(&t))].into_iter().collect() };
        let e = estimate_graph(&g, &stats, None);
        // Reads: level 0 (8·1 + 4·3), level 1 (8·3 + 4·6), values 4·6; writes 4·6.
        assert_eq!(e.bytes, 20.0 + 48.0 + 24.0 + 24.0);
        assert_eq!(e.flops, 0.0);
        // The busiest stream: 6 coordinates and 3 stops.
        assert_eq!(e.cycles, 9.0);
        // One byte per cycle in all, 4-byte lines, no latency: the busiest of the 6 ports (24
        // bytes of values, 6 lines) gets 1/6 byte per cycle.
        let m =
            MemoryModel { peak_bytes_per_cycle: 1.0, slots: 64.0, line_bytes: 4.0, latency: 0.0, partitioned: true };
        assert_eq!(estimate_graph(&g, &stats, Some(&m)).cycles, 6.0 * 4.0 * 6.0);
        // Latency-bound: one slot per port, 100 cycles a request.
        let m =
            MemoryModel { peak_bytes_per_cycle: 1e6, slots: 6.0, line_bytes: 4.0, latency: 100.0, partitioned: true };
        assert_eq!(estimate_graph(&g, &stats, Some(&m)).cycles, 6.0 * 100.0);

        // The same graph blocked 4 × 4: its scanners read the block structure (here the same
        // 6 positions), each value token is a 16-value tile loaded and stored whole, and the
        // tile array's latency (B² = 16) is added to the busiest primitive's 9 tokens.
        let tiles = TileModel {
            roles: vec![
                TileRole::Other,
                TileRole::Other,
                TileRole::Other,
                TileRole::Array { axes: 0b11 },
                TileRole::Write { axes: 0b11 },
            ],
            stats: stats.clone(),
        };
        let b = estimate_blocked(&g, &tiles, &TileTiming::comal(4), None);
        assert_eq!(b.bytes, 20.0 + 48.0 + 16.0 * 24.0 + 16.0 * 24.0);
        assert_eq!(b.cycles, 9.0 + 16.0);
        // A slower tile load (interval 3 per tile) makes the array the busiest primitive.
        let slow = TileTiming { array: (3.0, 16.0), ..TileTiming::comal(4) };
        assert_eq!(estimate_blocked(&g, &tiles, &slow, None).cycles, 6.0 * 3.0 + 16.0);
    }
}
