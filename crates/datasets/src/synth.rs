//! Seeded synthetic graphs matched to the published statistics of benchmarks.md §3.
//!
//! **Model.** A Chung–Lu graph with a power-law expected-degree sequence: node of rank `i`
//! (0-based) gets weight `(i + 1)^(-1/(γ-1))`, which gives a degree distribution with tail
//! exponent γ; weights are scaled to the target degree sum `D` and capped at `√D` (the
//! structural cut-off that keeps edge probabilities below one). Ranks are assigned to node ids
//! by a seeded shuffle, so hubs are spread over the id range. Endpoints are drawn with an
//! integer alias table, so each draw is O(1) and the whole generator is O(entries), never
//! quadratic.
//!
//! **Exact counts.** As many endpoint pairs as edges are wanted are drawn, self loops dropped,
//! and the rest sorted and deduplicated; then draws that are checked against the existing
//! edges top the set up to exactly the target. A repair pass gives every isolated node one edge
//! (to a weight-drawn partner), removing for each one a random edge whose endpoints both keep
//! degree at least one, so the count stays exact. The node count is exact by construction.
//!
//! **Layouts.** Citation graphs (Cora, Cora-ML, DBLP) are undirected and stored both ways, as
//! their PyG loaders give them. ogbl-collab is undirected with each edge stored once (its
//! published count, 1,285,465, is odd), in a random orientation. ogbn-mag's paper-cites-paper
//! relation is directed; out- and in-weights use independent shuffles.
//!
//! **Determinism.** Everything is driven by [`fuseflow_tensor::random::Rng`] (xoshiro256**);
//! weights are quantised to integers before the alias table is built, so the same seed gives
//! the same graph.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use fuseflow_tensor::random::Rng;

use crate::graph::{adjacency_from_sorted_keys, key, unkey, MAX_NODES};
use crate::{DatasetError, Graph};

/// How the generated edges are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Undirected, each edge stored both ways (`entries` must be even).
    Symmetric,
    /// Undirected, each edge stored once in a random orientation.
    UndirectedOnce,
    /// Directed edges; `(u, v)` and `(v, u)` may both occur.
    Directed,
}

/// The published statistics a synthetic graph matches, and the model parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Name under which [`crate::by_name`] finds it.
    pub name: &'static str,
    /// The real dataset it stands in for.
    pub like: &'static str,
    /// One-line summary for [`crate::list`].
    pub summary: &'static str,
    /// Node count (exact).
    pub nodes: usize,
    /// Stored directed entries (exact).
    pub entries: usize,
    /// Feature width of the real dataset.
    pub features: usize,
    /// Class count of the real dataset (or the benchmark loader's default).
    pub classes: usize,
    /// How edges are stored.
    pub layout: Layout,
    /// Power-law exponent γ of the degree distribution (must exceed 2).
    pub gamma: f64,
}

/// The built-in synthetic datasets, smallest first.
pub const SYNTHETIC: &[SyntheticSpec] = &[
    SyntheticSpec {
        name: "cora-synth",
        like: "Cora (Planetoid)",
        summary: "synthetic Cora-like power-law graph: 2708 nodes, 10556 directed entries (5278 undirected), 1433 features, 7 classes",
        nodes: 2_708,
        entries: 10_556,
        features: 1_433,
        classes: 7,
        layout: Layout::Symmetric,
        gamma: 2.3,
    },
    SyntheticSpec {
        name: "cora-ml-synth",
        like: "Cora-ML (CitationFull)",
        summary: "synthetic Cora-ML-like power-law graph: 2995 nodes, 16316 directed entries (8158 undirected), 2879 features, 7 classes",
        nodes: 2_995,
        entries: 16_316,
        features: 2_879,
        classes: 7,
        layout: Layout::Symmetric,
        gamma: 2.3,
    },
    SyntheticSpec {
        name: "dblp-synth",
        like: "DBLP (CitationFull)",
        summary: "synthetic DBLP-like power-law graph: 17716 nodes, 105734 directed entries (52867 undirected), 1639 features, 4 classes",
        nodes: 17_716,
        entries: 105_734,
        features: 1_639,
        classes: 4,
        layout: Layout::Symmetric,
        gamma: 2.3,
    },
    SyntheticSpec {
        name: "ogbl-collab-synth",
        like: "ogbl-collab (OGB)",
        summary: "synthetic ogbl-collab-like power-law graph: 235868 nodes, 1285465 entries (undirected, stored once), 128 features, 2 classes",
        nodes: 235_868,
        entries: 1_285_465,
        features: 128,
        classes: 2,
        layout: Layout::UndirectedOnce,
        gamma: 2.3,
    },
    SyntheticSpec {
        name: "ogbn-mag-synth",
        like: "ogbn-mag paper-cites-paper (OGB)",
        summary: "synthetic ogbn-mag-like directed power-law graph: 736389 paper nodes, 5416271 cites entries, 128 features, 349 classes",
        nodes: 736_389,
        entries: 5_416_271,
        features: 128,
        classes: 349,
        layout: Layout::Directed,
        gamma: 2.3,
    },
];

/// The built-in spec with this name, if any.
pub fn spec(name: &str) -> Option<&'static SyntheticSpec> {
    SYNTHETIC.iter().find(|s| s.name == name)
}

/// Generates a graph for `spec`; the same spec and seed always give the same graph.
///
/// Errors if the spec is impossible or too dense for the model: more entries than half the
/// possible ones, an odd entry count for [`Layout::Symmetric`], a node count beyond the 32-bit
/// range, or γ not in `(2, 10]`.
pub fn generate(spec: &SyntheticSpec, seed: u64) -> Result<Graph, DatasetError> {
    let n = spec.nodes;
    if n > MAX_NODES {
        return Err(DatasetError::argument(format!("{}: {n} nodes exceed the 32-bit coordinate range", spec.name)));
    }
    if !(spec.gamma > 2.0 && spec.gamma <= 10.0) {
        return Err(DatasetError::argument(format!("{}: exponent {} is not in (2, 10]", spec.name, spec.gamma)));
    }
    let pairs = match spec.layout {
        Layout::Symmetric if spec.entries % 2 == 1 => {
            return Err(DatasetError::argument(format!(
                "{}: {} entries cannot be stored both ways (odd count)",
                spec.name, spec.entries
            )))
        }
        Layout::Symmetric => spec.entries / 2,
        Layout::UndirectedOnce | Layout::Directed => spec.entries,
    };
    if spec.entries > MAX_ENTRIES {
        return Err(DatasetError::argument(format!(
            "{}: {} entries exceed the generator's limit of {MAX_ENTRIES}",
            spec.name, spec.entries
        )));
    }
    let n64 = n as u128;
    let possible = match spec.layout {
        Layout::Directed => n64 * n64.saturating_sub(1),
        _ => n64 * n64.saturating_sub(1) / 2,
    };
    if pairs as u128 * 2 > possible {
        return Err(DatasetError::argument(format!(
            "{}: {} edges on {n} nodes is denser than half of all {possible} possible edges",
            spec.name, pairs
        )));
    }
    let mut rng = Rng::new(seed);
    let directed = spec.layout == Layout::Directed;
    // Degree sum each side of the draw sees.
    let degree_sum = if directed { pairs } else { 2 * pairs };
    let weights = power_law_weights(n, spec.gamma, degree_sum).ok_or_else(|| out_of_memory(spec))?;
    let out_table = Alias::new(&shuffled(&weights, &mut rng));
    let in_table = if directed { Some(Alias::new(&shuffled(&weights, &mut rng))) } else { None };
    let in_table_ref = in_table.as_ref().unwrap_or(&out_table);
    let canon = |u: u32, v: u32| if directed || u < v { key(u, v) } else { key(v, u) };

    // Phase 1: draw `pairs` candidates, sort and deduplicate them, then top up with draws that
    // are checked against what exists until exactly `pairs` distinct edges exist.
    let mut draws: u64 = 0;
    // Dense corners of a custom spec could make weighted drawing slow; past this budget the
    // remaining edges are drawn uniformly, which accepts at least half the time (density <= 1/2).
    let budget = 20 * pairs as u64 + 1_000;
    let mut draw = |rng: &mut Rng| -> Option<u64> {
        draws += 1;
        let (u, v) = if draws <= budget {
            (out_table.sample(rng), in_table_ref.sample(rng))
        } else {
            (rng.below(n as u64) as u32, rng.below(n as u64) as u32)
        };
        (u != v).then(|| canon(u, v))
    };
    let mut edges: Vec<u64> = Vec::new();
    edges.try_reserve_exact(pairs).map_err(|_| out_of_memory(spec))?;
    for _ in 0..pairs {
        if let Some(k) = draw(&mut rng) {
            edges.push(k);
        }
    }
    edges.sort_unstable();
    edges.dedup();
    if edges.len() < pairs {
        let mut extra: HashSet<u64, BuildHasherDefault<MixHasher>> = HashSet::default();
        let mut added = Vec::with_capacity(pairs - edges.len());
        while edges.len() + added.len() < pairs {
            if let Some(k) = draw(&mut rng) {
                if edges.binary_search(&k).is_err() && extra.insert(k) {
                    added.push(k);
                }
            }
        }
        edges.extend(added);
        edges.sort_unstable();
    }

    // Phase 2: give isolated nodes an edge, removing random edges to keep the count.
    let repaired = repair_isolated(n, &mut edges, in_table_ref, &mut rng, canon);

    // Store.
    let mut keys: Vec<u64> = Vec::new();
    keys.try_reserve_exact(spec.entries).map_err(|_| out_of_memory(spec))?;
    for &k in &edges {
        let (u, v) = unkey(k);
        match spec.layout {
            Layout::Symmetric => {
                keys.push(key(u, v));
                keys.push(key(v, u));
            }
            Layout::UndirectedOnce => keys.push(if rng.next_u64() & 1 == 0 { key(u, v) } else { key(v, u) }),
            Layout::Directed => keys.push(k),
        }
    }
    drop(edges);
    keys.sort_unstable();
    if keys.len() != spec.entries || keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(DatasetError::argument(format!(
            "{}: generated {} entries instead of {} (internal error)",
            spec.name,
            keys.len(),
            spec.entries
        )));
    }
    let adjacency = adjacency_from_sorted_keys(n, &keys);
    let layout = match spec.layout {
        Layout::Symmetric => "undirected, stored both ways",
        Layout::UndirectedOnce => "undirected, each edge stored once in a random orientation",
        Layout::Directed => "directed",
    };
    let description = format!(
        "SYNTHETIC stand-in for {}: matches its published node count ({n}), directed entry count ({}), \
         feature width ({}) and class count ({}); structure is a seeded Chung-Lu power-law graph \
         (gamma {}, {layout}, no self loops, {repaired} isolated nodes repaired), not the real edges; \
         adjacency values are 1.0 and any features are synthetic; generator seed {seed:#x}",
        spec.like, spec.entries, spec.features, spec.classes, spec.gamma
    );
    Ok(Graph {
        name: spec.name.to_string(),
        num_nodes: n,
        adjacency,
        num_features: spec.features,
        identity_features: false,
        num_classes: spec.classes,
        synthetic: true,
        description,
    })
}

/// Largest entry count [`generate`] accepts; keeps the fixed-point weight sums within `u64`.
pub const MAX_ENTRIES: usize = 1 << 40;

fn out_of_memory(spec: &SyntheticSpec) -> DatasetError {
    DatasetError::argument(format!(
        "{}: not enough memory for {} nodes and {} entries",
        spec.name, spec.nodes, spec.entries
    ))
}

/// Integer weights proportional to the capped expected degrees of ranks `0..n`; `None` if the
/// memory for them cannot be had.
fn power_law_weights(n: usize, gamma: f64, degree_sum: usize) -> Option<Vec<u64>> {
    let alpha = 1.0 / (gamma - 1.0);
    let mut raw: Vec<f64> = Vec::new();
    raw.try_reserve_exact(n).ok()?;
    raw.extend((0..n).map(|i| ((i + 1) as f64).powf(-alpha)));
    let total: f64 = raw.iter().sum();
    let d = degree_sum.max(1) as f64;
    let cap = d.sqrt().max(1.0);
    // Fixed-point expected degrees with 16 fractional bits; at least 1 so every node can be drawn.
    Some(raw.iter().map(|w| ((d * w / total).min(cap) * 65536.0).round().max(1.0) as u64).collect())
}

/// The weights assigned to node ids by a seeded Fisher–Yates shuffle.
fn shuffled(weights: &[u64], rng: &mut Rng) -> Vec<u64> {
    let mut w = weights.to_vec();
    for i in (1..w.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        w.swap(i, j);
    }
    w
}

/// Gives every isolated node one edge to a partner drawn by weight. For each, a random edge
/// whose endpoints both have degree two or more is removed first, so the edge count is unchanged
/// and no node becomes isolated. Stops early if no edge can be removed. Returns the number of
/// nodes repaired.
fn repair_isolated(
    n: usize,
    edges: &mut Vec<u64>,
    partners: &Alias,
    rng: &mut Rng,
    canon: impl Fn(u32, u32) -> u64,
) -> usize {
    const REMOVED: u64 = u64::MAX;
    /// Random probes per isolated node before falling back to a scan.
    const PROBES: usize = 64;
    let mut degree = vec![0u32; n];
    for &k in edges.iter() {
        let (u, v) = unkey(k);
        degree[u as usize] += 1;
        degree[v as usize] += 1;
    }
    let removable = |k: u64, degree: &[u32]| {
        let (a, b) = unkey(k);
        k != REMOVED && degree[a as usize] >= 2 && degree[b as usize] >= 2
    };
    let mut cursor = edges.len();
    let mut added = Vec::new();
    for u in 0..n {
        if degree[u] != 0 || n < 2 || edges.is_empty() {
            continue;
        }
        let mut victim = None;
        for _ in 0..PROBES {
            let i = rng.below(edges.len() as u64) as usize;
            if removable(edges[i], &degree) {
                victim = Some(i);
                break;
            }
        }
        while victim.is_none() && cursor > 0 {
            cursor -= 1;
            if removable(edges[cursor], &degree) {
                victim = Some(cursor);
            }
        }
        let Some(i) = victim else { break };
        let (a, b) = unkey(edges[i]);
        degree[a as usize] -= 1;
        degree[b as usize] -= 1;
        edges[i] = REMOVED;
        let mut v = partners.sample(rng);
        while v as usize == u {
            v = partners.sample(rng);
        }
        // `u` had no edge, so (u, v) is new whatever `v` is.
        added.push(canon(u as u32, v));
        degree[u] += 1;
        degree[v as usize] += 1;
    }
    let repaired = added.len();
    if repaired > 0 {
        edges.retain(|&k| k != REMOVED);
        edges.extend(added);
    }
    repaired
}

/// Walker/Vose alias table over integer weights: O(1) exact draws.
struct Alias {
    /// Per column: acceptance threshold out of `total`, and where a rejected draw goes. Kept
    /// together so that a draw touches one cache line.
    columns: Vec<(u64, u32)>,
    /// Sum of the weights.
    total: u64,
}

impl Alias {
    fn new(weights: &[u64]) -> Alias {
        let n = weights.len();
        let total: u64 = weights.iter().sum();
        let mut columns: Vec<(u64, u32)> = (0..n as u32).map(|i| (total, i)).collect();
        // Scaled weights w * n, compared with `total`.
        let mut scaled: Vec<u128> = weights.iter().map(|&w| w as u128 * n as u128).collect();
        let t = total as u128;
        let mut small: Vec<u32> = Vec::new();
        let mut large: Vec<u32> = Vec::new();
        for (i, &s) in scaled.iter().enumerate() {
            if s < t {
                small.push(i as u32);
            } else {
                large.push(i as u32);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            large.pop();
            columns[s as usize] = (scaled[s as usize] as u64, l);
            scaled[l as usize] = scaled[l as usize] + scaled[s as usize] - t;
            if scaled[l as usize] < t {
                small.push(l);
            } else {
                large.push(l);
            }
        }
        Alias { columns, total }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let i = rng.below(self.columns.len() as u64) as usize;
        let (threshold, alias) = self.columns[i];
        if rng.below(self.total) < threshold {
            i as u32
        } else {
            alias
        }
    }
}

/// Hasher for edge keys: SplitMix64's finaliser, a strong and fast 64-bit mixer.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    fn write_u64(&mut self, x: u64) {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(layout: Layout, nodes: usize, entries: usize) -> SyntheticSpec {
        SyntheticSpec {
            name: "t",
            like: "t",
            summary: "t",
            nodes,
            entries,
            features: 1,
            classes: 1,
            layout,
            gamma: 2.3,
        }
    }

    #[test]
    fn alias_table_matches_weights() {
        let w = [1u64, 0, 3, 4];
        let a = Alias::new(&w);
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 4];
        for _ in 0..80_000 {
            counts[a.sample(&mut rng) as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, w) in counts.iter().zip(w) {
            let expect = 80_000.0 * w as f64 / 8.0;
            assert!((*c as f64 - expect).abs() < 0.05 * 80_000.0, "{counts:?}");
        }
    }

    #[test]
    fn every_layout_hits_the_count() {
        for (layout, entries) in [(Layout::Symmetric, 400), (Layout::UndirectedOnce, 301), (Layout::Directed, 333)] {
            let g = generate(&small(layout, 100, entries), 5).unwrap();
            g.validate().unwrap();
            assert_eq!(g.num_edges(), entries);
            assert_eq!(g.num_self_loops(), 0);
            assert_eq!(g.degree_stats().isolated, 0, "{layout:?}");
            assert_eq!(g.is_symmetric(), layout == Layout::Symmetric);
        }
    }

    #[test]
    fn dense_and_degenerate_specs() {
        // Exactly half of all possible edges still works (uniform fallback).
        let g = generate(&small(Layout::Symmetric, 10, 44), 1).unwrap();
        assert_eq!(g.num_edges(), 44);
        assert!(generate(&small(Layout::Symmetric, 10, 46), 1).is_err());
        assert!(generate(&small(Layout::Symmetric, 10, 3), 1).is_err());
        let g = generate(&small(Layout::Directed, 0, 0), 1).unwrap();
        assert_eq!((g.num_nodes, g.num_edges()), (0, 0));
        let g = generate(&small(Layout::Directed, 1, 0), 1).unwrap();
        assert_eq!(g.num_nodes, 1);
        assert!(generate(&small(Layout::Directed, 1 << 30, MAX_ENTRIES + 1), 1).is_err());
        let mut s = small(Layout::Directed, 10, 5);
        s.gamma = 2.0;
        assert!(generate(&s, 1).is_err());
        s.gamma = f64::NAN;
        assert!(generate(&s, 1).is_err());
    }

    #[test]
    fn sparse_spec_leaves_unrepairable_nodes() {
        // 3 edges cannot touch 20 nodes; the repair pass stops instead of looping.
        let g = generate(&small(Layout::Symmetric, 20, 6), 1).unwrap();
        assert_eq!(g.num_edges(), 6);
        assert!(g.degree_stats().isolated > 0);
    }
}
