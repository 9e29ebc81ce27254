//! The [`Graph`] type: a square 0/1 adjacency plus the counts a GNN model needs.

use fuseflow_tensor::Coo;

use crate::DatasetError;

/// A graph dataset: its adjacency and the feature and class counts a GNN model is built with.
///
/// *Invariant:* `adjacency` is `num_nodes × num_nodes`, its entries are sorted row-major and
/// distinct, and every value is `1.0` (the plain 0/1 adjacency of benchmarks.md §2.2: no self
/// loops are added and nothing is normalised). Each stored entry is one directed edge; an
/// undirected edge is stored as two entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Short name (`karate`, `cora-synth`, or the file or directory it was read from).
    pub name: String,
    /// Number of nodes.
    pub num_nodes: usize,
    /// The `num_nodes × num_nodes` adjacency, values `1.0`, sorted row-major, deduplicated.
    pub adjacency: Coo,
    /// Width of the node feature matrix X; 0 when the source does not say.
    pub num_features: usize,
    /// The source defines the node features as the identity (one-hot per node,
    /// `num_features == num_nodes`), as PyG's karate club does. See
    /// [`Graph::identity_features`].
    pub identity_features: bool,
    /// Number of output classes; 0 when the source does not say.
    pub num_classes: usize,
    /// True for generated graphs, whose structure only mimics a real dataset's statistics.
    pub synthetic: bool,
    /// One line saying where the graph came from and what was done to it.
    pub description: String,
}

/// Degree statistics of a graph's stored entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegreeStats {
    /// Smallest out-degree (entries in a row).
    pub min: usize,
    /// Largest out-degree.
    pub max: usize,
    /// Mean out-degree: stored entries divided by nodes (0 for an empty graph).
    pub mean: f64,
    /// Largest in-degree (entries in a column).
    pub max_in: usize,
    /// Nodes with no entry in their row or their column.
    pub isolated: usize,
}

/// Packs a directed edge into a key that sorts row-major.
pub(crate) fn key(row: u32, col: u32) -> u64 {
    ((row as u64) << 32) | col as u64
}

/// Unpacks a key made by [`key`].
pub(crate) fn unkey(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// The largest node count whose ids fit the 32-bit coordinates of [`Coo`].
pub(crate) const MAX_NODES: usize = u32::MAX as usize;

impl Graph {
    /// Builds a graph from directed edges (any order; duplicates are merged). Feature and class
    /// counts start at 0 and the description is empty; set the public fields afterwards.
    ///
    /// Errors if `num_nodes` exceeds the 32-bit coordinate range or an edge names a node
    /// `>= num_nodes`.
    pub fn from_edges(
        name: impl Into<String>,
        num_nodes: usize,
        edges: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<Graph, DatasetError> {
        check_node_count(num_nodes)?;
        let mut keys = Vec::new();
        for (r, c) in edges {
            if r as usize >= num_nodes || c as usize >= num_nodes {
                return Err(DatasetError::argument(format!("edge ({r}, {c}) names a node outside 0..{num_nodes}")));
            }
            keys.push(key(r, c));
        }
        Ok(Graph::from_keys(name.into(), num_nodes, keys).0)
    }

    /// Builds a graph from a square COO matrix: every stored entry with a nonzero value becomes
    /// an edge (duplicates merged, explicit zeros dropped, values replaced by `1.0`).
    ///
    /// Errors if the matrix is not square and two-dimensional, or a coordinate is out of range.
    pub fn from_coo(name: impl Into<String>, coo: &Coo) -> Result<Graph, DatasetError> {
        if coo.rank() != 2 || coo.shape[0] != coo.shape[1] {
            return Err(DatasetError::argument(format!("an adjacency must be a square matrix, not {:?}", coo.shape)));
        }
        coo.validate().map_err(DatasetError::Tensor)?;
        let n = coo.shape[0];
        check_node_count(n)?;
        let keys =
            (0..coo.nnz()).filter(|&i| coo.vals[i] != 0.0).map(|i| key(coo.coords[2 * i], coo.coords[2 * i + 1]));
        Ok(Graph::from_keys(name.into(), n, keys.collect()).0)
    }

    /// Builds a graph from packed edge keys, returning it with the number of duplicates merged.
    /// The caller guarantees every id is below `n` and `n <= MAX_NODES`.
    pub(crate) fn from_keys(name: String, n: usize, mut keys: Vec<u64>) -> (Graph, usize) {
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        let duplicates = before - keys.len();
        let graph = Graph {
            name,
            num_nodes: n,
            adjacency: adjacency_from_sorted_keys(n, &keys),
            num_features: 0,
            identity_features: false,
            num_classes: 0,
            synthetic: false,
            description: String::new(),
        };
        (graph, duplicates)
    }

    /// Whether a GNN should use identity node features (one-hot per node, width `num_nodes`):
    /// the source says so, or it has no features at all (edge lists and bare adjacency
    /// matrices), where the identity is the usual convention. No loader reads feature values,
    /// so for every other graph only the width is known.
    pub fn identity_features(&self) -> bool {
        self.identity_features || self.num_features == 0
    }

    /// The `num_nodes × num_nodes` identity as a sparse COO (`num_nodes` entries of 1.0).
    pub fn identity(&self) -> Coo {
        let n = u32::try_from(self.num_nodes).unwrap_or(u32::MAX);
        Coo {
            shape: vec![self.num_nodes, self.num_nodes],
            coords: (0..n).flat_map(|i| [i, i]).collect(),
            vals: vec![1.0; n as usize],
        }
    }

    /// Number of stored directed entries (an undirected edge counts twice).
    pub fn num_edges(&self) -> usize {
        self.adjacency.nnz()
    }

    /// Fraction of the `n²` possible entries that are stored (0 for an empty graph).
    pub fn density(&self) -> f64 {
        let n = self.num_nodes as f64;
        if self.num_nodes == 0 {
            0.0
        } else {
            self.num_edges() as f64 / (n * n)
        }
    }

    /// The stored entries as `(row, column)` pairs, in row-major order.
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.adjacency.coords.chunks_exact(2).map(|c| (c[0], c[1]))
    }

    /// Out-degree (entries per row) of every node.
    pub fn out_degrees(&self) -> Vec<usize> {
        let mut d = vec![0usize; self.num_nodes];
        for (r, _) in self.edges() {
            // `get_mut`: the fields are public, so stay total even if the invariant is broken.
            if let Some(x) = d.get_mut(r as usize) {
                *x += 1;
            }
        }
        d
    }

    /// In-degree (entries per column) of every node.
    pub fn in_degrees(&self) -> Vec<usize> {
        let mut d = vec![0usize; self.num_nodes];
        for (_, c) in self.edges() {
            if let Some(x) = d.get_mut(c as usize) {
                *x += 1;
            }
        }
        d
    }

    /// Minimum, maximum and mean out-degree, maximum in-degree, and the number of isolated nodes.
    pub fn degree_stats(&self) -> DegreeStats {
        let out = self.out_degrees();
        let inn = self.in_degrees();
        let mean = if self.num_nodes == 0 { 0.0 } else { self.num_edges() as f64 / self.num_nodes as f64 };
        DegreeStats {
            min: out.iter().copied().min().unwrap_or(0),
            max: out.iter().copied().max().unwrap_or(0),
            mean,
            max_in: inn.iter().copied().max().unwrap_or(0),
            isolated: out.iter().zip(&inn).filter(|(&o, &i)| o == 0 && i == 0).count(),
        }
    }

    /// Number of diagonal entries.
    pub fn num_self_loops(&self) -> usize {
        self.edges().filter(|(r, c)| r == c).count()
    }

    /// True if every entry `(u, v)` has its mirror `(v, u)`.
    pub fn is_symmetric(&self) -> bool {
        let keys: Vec<u64> = self.edges().map(|(r, c)| key(r, c)).collect();
        keys.iter().all(|&k| {
            let (r, c) = unkey(k);
            keys.binary_search(&key(c, r)).is_ok()
        })
    }

    /// Adds the mirror `(v, u)` of every entry `(u, v)`; returns how many entries were added.
    pub fn symmetrize(&mut self) -> usize {
        let before = self.num_edges();
        let mut keys: Vec<u64> = Vec::with_capacity(2 * before);
        for (r, c) in self.edges() {
            keys.push(key(r, c));
            keys.push(key(c, r));
        }
        keys.sort_unstable();
        keys.dedup();
        self.adjacency = adjacency_from_sorted_keys(self.num_nodes, &keys);
        self.num_edges() - before
    }

    /// Removes every diagonal entry; returns how many were removed.
    pub fn remove_self_loops(&mut self) -> usize {
        let keys: Vec<u64> = self.edges().filter(|(r, c)| r != c).map(|(r, c)| key(r, c)).collect();
        let removed = self.num_edges() - keys.len();
        if removed > 0 {
            self.adjacency = adjacency_from_sorted_keys(self.num_nodes, &keys);
        }
        removed
    }

    /// Checks the invariant: square shape, coordinates in range, entries strictly increasing in
    /// row-major order, every value `1.0`.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let a = &self.adjacency;
        if a.shape != [self.num_nodes, self.num_nodes] {
            return Err(DatasetError::argument(format!(
                "{}: adjacency shape {:?} does not match {} nodes",
                self.name, a.shape, self.num_nodes
            )));
        }
        a.validate().map_err(DatasetError::Tensor)?;
        let mut prev: Option<u64> = None;
        for (i, (r, c)) in self.edges().enumerate() {
            let k = key(r, c);
            if prev.is_some_and(|p| p >= k) {
                return Err(DatasetError::argument(format!(
                    "{}: entry {i} ({r}, {c}) is out of order or repeated",
                    self.name
                )));
            }
            prev = Some(k);
            if a.vals[i] != 1.0 {
                return Err(DatasetError::argument(format!("{}: entry {i} has value {}, not 1", self.name, a.vals[i])));
            }
        }
        Ok(())
    }
}

/// Errors if `n` nodes cannot be addressed with 32-bit coordinates.
pub(crate) fn check_node_count(n: usize) -> Result<(), DatasetError> {
    if n > MAX_NODES {
        Err(DatasetError::argument(format!("{n} nodes exceed the 32-bit coordinate range")))
    } else {
        Ok(())
    }
}

/// An `n × n` COO with one `1.0` per key; `keys` must be sorted and distinct.
pub(crate) fn adjacency_from_sorted_keys(n: usize, keys: &[u64]) -> Coo {
    let mut coo = Coo::new(vec![n, n]);
    coo.coords.reserve_exact(2 * keys.len());
    for &k in keys {
        let (r, c) = unkey(k);
        coo.coords.push(r);
        coo.coords.push(c);
    }
    coo.vals = vec![1.0; keys.len()];
    coo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_edges_sorts_and_merges() {
        let g = Graph::from_edges("t", 3, [(2, 0), (0, 1), (2, 0), (1, 1)]).unwrap();
        assert_eq!(g.adjacency.coords, vec![0, 1, 1, 1, 2, 0]);
        assert_eq!(g.adjacency.vals, vec![1.0; 3]);
        g.validate().unwrap();
        assert!(Graph::from_edges("t", 2, [(0, 2)]).is_err());
    }

    #[test]
    fn symmetrize_and_self_loops() {
        let mut g = Graph::from_edges("t", 3, [(0, 1), (1, 1), (2, 0), (0, 2)]).unwrap();
        assert!(!g.is_symmetric());
        assert_eq!(g.num_self_loops(), 1);
        assert_eq!(g.remove_self_loops(), 1);
        assert_eq!(g.remove_self_loops(), 0);
        assert_eq!(g.symmetrize(), 1);
        assert!(g.is_symmetric());
        assert_eq!(g.num_edges(), 4);
        g.validate().unwrap();
    }

    #[test]
    fn degree_stats_count_isolated_nodes() {
        let g = Graph::from_edges("t", 4, [(0, 1), (0, 2), (2, 0)]).unwrap();
        let s = g.degree_stats();
        assert_eq!((s.min, s.max, s.max_in, s.isolated), (0, 2, 1, 1));
        assert_eq!(s.mean, 0.75);
        assert_eq!(g.out_degrees(), vec![2, 0, 1, 0]);
        let e = Graph::from_edges("e", 0, []).unwrap();
        assert_eq!(e.degree_stats().mean, 0.0);
        assert_eq!(e.density(), 0.0);
    }

    #[test]
    fn from_coo_drops_zeros_and_rejects_non_square() {
        let mut c = Coo::new(vec![2, 2]);
        c.push(&[1, 0], 3.0);
        c.push(&[0, 1], 0.0);
        c.push(&[1, 0], 2.0);
        let g = Graph::from_coo("t", &c).unwrap();
        assert_eq!(g.adjacency.coords, vec![1, 0]);
        assert!(Graph::from_coo("t", &Coo::new(vec![2, 3])).is_err());
        let mut bad = Coo::new(vec![2, 2]);
        bad.push(&[0, 5], 1.0);
        assert!(Graph::from_coo("t", &bad).is_err());
    }

    #[test]
    fn validate_catches_broken_invariants() {
        let mut g = Graph::from_edges("t", 3, [(0, 1), (1, 2)]).unwrap();
        g.adjacency.vals[0] = 2.0;
        assert!(g.validate().is_err());
        let mut g = Graph::from_edges("t", 3, [(0, 1), (1, 2)]).unwrap();
        g.adjacency.coords.swap(0, 2);
        assert!(g.validate().is_err());
        let mut g = Graph::from_edges("t", 3, [(0, 1)]).unwrap();
        g.num_nodes = 4;
        assert!(g.validate().is_err());
        // Degree helpers stay total on a broken graph.
        g.num_nodes = 1;
        assert_eq!(g.out_degrees(), vec![1]);
        assert_eq!(g.degree_stats().max_in, 0);
    }
}
