//! Zachary's karate club, bundled.
//!
//! The friendship network of a university karate club observed by W. W. Zachary (1977): 34
//! members and 78 undirected ties. It is public-domain data, shipped with networkx and PyG.
//! Stored both ways, as PyG's `KarateClub` does: 156 directed entries, no self loops. PyG gives
//! it 34 identity features and 4 classes.

use crate::graph::key;
use crate::Graph;

/// Name under which [`crate::by_name`] finds the graph.
pub const NAME: &str = "karate";

/// One-line summary for [`crate::list`].
pub const SUMMARY: &str =
    "Zachary's karate club (bundled, real): 34 nodes, 156 directed entries (78 undirected), 34 identity features, 4 classes";

/// Number of members.
pub const NUM_NODES: usize = 34;

/// The 78 ties, 1-based as in Zachary's paper, each listed once with the larger id first.
const EDGES: [(u8, u8); 78] = [
    (2, 1),
    (3, 1),
    (3, 2),
    (4, 1),
    (4, 2),
    (4, 3),
    (5, 1),
    (6, 1),
    (7, 1),
    (7, 5),
    (7, 6),
    (8, 1),
    (8, 2),
    (8, 3),
    (8, 4),
    (9, 1),
    (9, 3),
    (10, 3),
    (11, 1),
    (11, 5),
    (11, 6),
    (12, 1),
    (13, 1),
    (13, 4),
    (14, 1),
    (14, 2),
    (14, 3),
    (14, 4),
    (17, 6),
    (17, 7),
    (18, 1),
    (18, 2),
    (20, 1),
    (20, 2),
    (22, 1),
    (22, 2),
    (26, 24),
    (26, 25),
    (28, 3),
    (28, 24),
    (28, 25),
    (29, 3),
    (30, 24),
    (30, 27),
    (31, 2),
    (31, 9),
    (32, 1),
    (32, 25),
    (32, 26),
    (32, 29),
    (33, 3),
    (33, 9),
    (33, 15),
    (33, 16),
    (33, 19),
    (33, 21),
    (33, 23),
    (33, 24),
    (33, 30),
    (33, 31),
    (33, 32),
    (34, 9),
    (34, 10),
    (34, 14),
    (34, 15),
    (34, 16),
    (34, 19),
    (34, 20),
    (34, 21),
    (34, 23),
    (34, 24),
    (34, 27),
    (34, 28),
    (34, 29),
    (34, 30),
    (34, 31),
    (34, 32),
    (34, 33),
];

/// The karate club graph: 34 nodes, 156 entries (each tie both ways), 34 features, 4 classes.
pub fn karate() -> Graph {
    let keys = EDGES
        .iter()
        .flat_map(|&(a, b)| {
            let (a, b) = (a as u32 - 1, b as u32 - 1);
            [key(a, b), key(b, a)]
        })
        .collect();
    let (mut g, _) = Graph::from_keys(NAME.to_string(), NUM_NODES, keys);
    g.num_features = NUM_NODES;
    g.identity_features = true;
    g.num_classes = 4;
    g.description =
        format!("{SUMMARY}; Zachary (1977), as in networkx and PyG; features are the identity (one-hot per node)");
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degree_sequence_matches_the_published_one() {
        let g = karate();
        g.validate().unwrap();
        assert_eq!((g.num_nodes, g.num_edges(), g.num_features, g.num_classes), (34, 156, 34, 4));
        assert!(g.is_symmetric());
        assert_eq!(g.num_self_loops(), 0);
        let d = g.out_degrees();
        assert_eq!((d[0], d[33], d[32]), (16, 17, 12));
        assert_eq!(
            d,
            vec![
                16, 9, 10, 6, 3, 4, 4, 4, 5, 2, 3, 1, 2, 5, 2, 2, 2, 2, 2, 3, 2, 2, 2, 5, 3, 3, 2, 4, 3, 4, 4, 6, 12,
                17
            ]
        );
        assert!(!g.synthetic);
        assert!(g.identity_features());
        let id = g.identity();
        assert_eq!((id.shape.clone(), id.nnz()), (vec![34, 34], 34));
        assert_eq!((id.coords(5), id.vals[5]), (&[5u32, 5][..], 1.0));
    }
}
