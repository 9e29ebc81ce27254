//! The synthetic generators: exact published counts, power-law shape, determinism.

use fuseflow_datasets::synth::{self, Layout};
use fuseflow_datasets::{by_name, features, list, load, Graph};

/// Published statistics of benchmarks.md §3: name, nodes, directed entries, features, classes.
const PUBLISHED: &[(&str, usize, usize, usize, usize)] = &[
    ("cora-synth", 2_708, 10_556, 1_433, 7),
    ("cora-ml-synth", 2_995, 16_316, 2_879, 7),
    ("dblp-synth", 17_716, 105_734, 1_639, 4),
    ("ogbl-collab-synth", 235_868, 1_285_465, 128, 2),
    ("ogbn-mag-synth", 736_389, 5_416_271, 128, 349),
];

fn check_matches_published(g: &Graph) {
    let &(name, nodes, entries, feats, classes) = PUBLISHED.iter().find(|p| p.0 == g.name).unwrap();
    g.validate().unwrap();
    assert_eq!((g.num_nodes, g.num_edges(), g.num_features, g.num_classes), (nodes, entries, feats, classes), "{name}");
    assert!(g.synthetic);
    assert!(g.description.starts_with("SYNTHETIC"), "{}", g.description);
    assert!(g.description.contains("features are synthetic"), "{}", g.description);
    assert_eq!(g.num_self_loops(), 0, "{name}");
    let s = g.degree_stats();
    assert_eq!(s.isolated, 0, "{name}");
    // Power law: hubs far above the mean.
    assert!(s.max as f64 > 10.0 * s.mean, "{name}: max {} mean {}", s.max, s.mean);
}

#[test]
fn citation_graphs_match_published_counts() {
    for name in ["cora-synth", "cora-ml-synth", "dblp-synth"] {
        let g = by_name(name, 1).unwrap();
        check_matches_published(&g);
        assert!(g.is_symmetric(), "{name}");
    }
}

#[test]
fn degree_distribution_has_a_heavy_tail() {
    let g = by_name("dblp-synth", 3).unwrap();
    let mut d = g.out_degrees();
    d.sort_unstable();
    let n = d.len();
    let median = d[n / 2];
    let top = d[n - 1 - n / 1000]; // 99.9th percentile
    assert!(median <= 4, "median {median}");
    assert!(top >= 20 * median, "99.9th percentile {top}, median {median}");
    // Many low-degree nodes, as in a power law (not a Poisson bump around the mean).
    assert!(d.iter().filter(|&&x| x <= 2).count() * 3 > n, "too few low-degree nodes");
}

#[test]
fn same_seed_same_graph_different_seed_different_graph() {
    let a = by_name("cora-synth", 7).unwrap();
    let b = by_name("cora-synth", 7).unwrap();
    let c = by_name("cora-synth", 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.adjacency, c.adjacency);
    assert_eq!(a.num_edges(), c.num_edges());
    // Names are case-insensitive, and load() accepts them too.
    assert_eq!(load("Cora-Synth", 7).unwrap(), a);
}

#[test]
fn large_specs_match_published_counts() {
    // Parameters only; the graphs themselves are built by the release-only test below.
    for &(name, nodes, entries, feats, classes) in PUBLISHED {
        let s = synth::spec(name).unwrap();
        assert_eq!((s.nodes, s.entries, s.features, s.classes), (nodes, entries, feats, classes), "{name}");
        assert!(s.gamma > 2.0 && s.gamma < 3.0);
    }
    assert_eq!(synth::spec("ogbl-collab-synth").unwrap().layout, Layout::UndirectedOnce);
    assert_eq!(synth::spec("ogbn-mag-synth").unwrap().layout, Layout::Directed);
    assert_eq!(list().len(), PUBLISHED.len() + 1);
}

/// Builds the two large graphs; only in optimised builds without debug assertions
/// (`cargo test --release`), where each takes about a second.
#[cfg(not(debug_assertions))]
#[test]
fn large_graphs_match_published_counts_in_release() {
    for name in ["ogbl-collab-synth", "ogbn-mag-synth"] {
        let t = std::time::Instant::now();
        let g = by_name(name, 1).unwrap();
        assert!(t.elapsed().as_secs_f64() < 20.0, "{name} took {:?}", t.elapsed());
        check_matches_published(&g);
    }
}

#[test]
fn features_for_a_synthetic_graph() {
    let g = by_name("cora-synth", 1).unwrap();
    let x = features(&g, g.num_features, 0.01, 5).unwrap();
    assert_eq!(x.shape, vec![2_708, 1_433]);
    assert_eq!(x.nnz(), (0.01f64 * 2_708.0 * 1_433.0).round() as usize);
}
