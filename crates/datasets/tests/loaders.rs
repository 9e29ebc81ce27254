//! Every loader on the small fixtures under `tests/data` (made by `tests/data/make_fixtures.py`
//! where they are binary), valid and malformed.

use std::path::PathBuf;

use fuseflow_datasets::{load, load_with, pickle, DatasetError, Graph, IdBase, LoadOptions};

fn data(rel: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", rel].iter().collect();
    p.to_string_lossy().into_owned()
}

fn entries(g: &Graph) -> Vec<(u32, u32)> {
    g.edges().collect()
}

/// Checks the message shape every error must have: one line, starting with the file.
fn check_error(e: &DatasetError, file_suffix: &str) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    let file = e.file().unwrap_or_else(|| panic!("no file in {msg}"));
    assert!(file.ends_with(file_suffix), "{msg}");
    assert!(msg.starts_with(file), "{msg}");
    msg
}

#[test]
fn edge_list_with_header_comments_and_duplicates() {
    let g = load(&data("edges/tiny.txt"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.name, "tiny");
    assert_eq!(g.num_nodes, 5);
    assert_eq!(entries(&g), vec![(0, 1), (1, 2), (2, 0), (3, 3), (4, 0)]);
    assert_eq!((g.num_features, g.num_classes, g.synthetic), (0, 0, false));
    assert!(g.description.contains("1 duplicates merged"), "{}", g.description);
    // Cleanup only on request.
    let opts = LoadOptions { remove_self_loops: Some(true), symmetrize: Some(true), ..Default::default() };
    let g = load_with(&data("edges/tiny.txt"), 0, &opts).unwrap();
    assert_eq!(g.num_self_loops(), 0);
    assert!(g.is_symmetric());
    assert_eq!(g.num_edges(), 8);
}

#[test]
fn edge_list_base_is_explicit() {
    let path = data("edges/tiny_one_based.el");
    let one = LoadOptions { base: IdBase::One, num_features: Some(9), num_classes: Some(2), ..Default::default() };
    let g = load_with(&path, 0, &one).unwrap();
    assert_eq!(g.num_nodes, 3);
    assert_eq!(entries(&g), vec![(0, 1), (1, 2), (2, 0)]);
    assert_eq!((g.num_features, g.num_classes), (9, 2));
    // Read as 0-based (the default), the same file has 4 nodes and node 0 is isolated.
    let g = load(&path, 0).unwrap();
    assert_eq!(g.num_nodes, 4);
    assert_eq!(g.degree_stats().isolated, 1);
    // A given node count that is too small is an error at the offending line.
    let small = LoadOptions { num_nodes: Some(2), base: IdBase::One, ..Default::default() };
    let e = load_with(&path, 0, &small).unwrap_err();
    assert_eq!(e.line(), Some(2));
    let msg = check_error(&e, "tiny_one_based.el");
    assert!(msg.ends_with(":2: node id \"3\" is out of range for 2 nodes"), "{msg}");
}

#[test]
fn csv_edge_list() {
    let g = load(&data("edges/tiny.csv"), 0).unwrap();
    assert_eq!(entries(&g), vec![(0, 1), (1, 0)]);
}

#[test]
fn malformed_edge_list_names_file_and_line() {
    let e = load(&data("edges/bad.txt"), 0).unwrap_err();
    let msg = check_error(&e, "edges/bad.txt");
    assert!(msg.ends_with("bad.txt:3: node id \"zero\" is not a non-negative integer"), "{msg}");
    assert_eq!(e.line(), Some(3));
}

#[test]
fn matrix_market() {
    let g = load(&data("mtx/tiny.mtx"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.num_nodes, 4);
    // Symmetric storage is expanded; the diagonal entry stays single.
    assert_eq!(entries(&g), vec![(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 2), (3, 0)]);
    let g = load(&data("mtx/zeros.mtx"), 0).unwrap();
    assert_eq!(entries(&g), vec![(1, 2), (2, 0)]);
    assert!(g.description.contains("1 explicit zeros dropped"), "{}", g.description);

    let e = load(&data("mtx/rect.mtx"), 0).unwrap_err();
    assert!(check_error(&e, "rect.mtx").contains("2×3, not square"), "{e}");
    let e = load(&data("mtx/bad.mtx"), 0).unwrap_err();
    check_error(&e, "bad.mtx");
    assert_eq!(e.line(), Some(4), "{e}");
}

#[test]
fn scipy_npz() {
    let g = load(&data("npz/tiny_csr.npz"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.num_nodes, 4);
    assert_eq!(entries(&g), vec![(0, 1), (1, 0), (1, 2), (2, 2), (3, 0)]);
}

#[test]
fn citation_full_npz_is_cleaned_like_pyg() {
    let g = load(&data("npz/tiny_citation_full.npz"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.num_nodes, 5);
    assert_eq!(entries(&g), vec![(0, 1), (0, 2), (1, 0), (2, 0), (3, 4), (4, 3)]);
    assert_eq!((g.num_features, g.num_classes), (6, 3));
    let raw = LoadOptions { symmetrize: Some(false), remove_self_loops: Some(false), ..Default::default() };
    let g = load_with(&data("npz/tiny_citation_full.npz"), 0, &raw).unwrap();
    assert_eq!(g.num_edges(), 6);
    assert_eq!(g.num_self_loops(), 1);
}

#[test]
fn planetoid_raw_files() {
    for spec in [data("planetoid"), data("planetoid/ind.tiny.graph")] {
        let g = load(&spec, 0).unwrap();
        g.validate().unwrap();
        assert_eq!(g.name, "tiny");
        assert_eq!(g.num_nodes, 6);
        assert_eq!((g.num_features, g.num_classes), (7, 3), "{}", g.description);
        assert!(g.is_symmetric());
        assert_eq!(g.num_self_loops(), 0);
        assert_eq!(entries(&g), vec![(0, 1), (0, 2), (1, 0), (1, 3), (2, 0), (3, 1), (3, 4), (4, 3), (4, 5), (5, 4)]);
        assert!(g.description.contains("1 self loops removed; symmetrised (+1 entries)"), "{}", g.description);
    }
    let raw = LoadOptions {
        symmetrize: Some(false),
        remove_self_loops: Some(false),
        num_features: Some(11),
        ..Default::default()
    };
    let g = load_with(&data("planetoid"), 0, &raw).unwrap();
    assert_eq!(g.num_edges(), 10);
    assert_eq!(g.num_self_loops(), 1);
    assert_eq!(g.num_features, 11);
    let too_few = LoadOptions { num_nodes: Some(3), ..Default::default() };
    let e = load_with(&data("planetoid"), 0, &too_few).unwrap_err();
    assert!(check_error(&e, "ind.tiny.graph").contains("out of range for 3 nodes"), "{e}");
}

#[test]
fn planetoid_feature_files_must_agree() {
    let e = load(&data("planetoid_mismatch"), 0).unwrap_err();
    let msg = check_error(&e, "ind.odd.tx");
    assert!(msg.contains("6 columns, but 5 from ind.odd.x"), "{msg}");
}

#[test]
fn planetoid_shapes_are_read_from_pickles() {
    let read = |f: &str| std::fs::read(data(f)).unwrap();
    assert_eq!(pickle::parse_shape(&read("planetoid/ind.tiny.allx"), "allx").unwrap(), vec![4, 7]);
    assert_eq!(pickle::parse_shape(&read("planetoid/ind.tiny.ty"), "ty").unwrap(), vec![2, 3]);
    // As Python 2 writes it: keys as SHORT_BINSTRING, shape (1708, 1433).
    let py2 = b"\x80\x02cscipy.sparse.csr\ncsr_matrix\nq\x00)\x81q\x01}q\x02(U\x06_shapeq\x03M\xac\x06M\x99\x05\x86q\x04U\x06formatq\x05U\x03csrq\x06ub.";
    assert_eq!(pickle::parse_shape(py2, "x").unwrap(), vec![1708, 1433]);
    // A graph pickle has no shape.
    let e = pickle::parse_shape(&read("planetoid/ind.tiny.graph"), "g").unwrap_err();
    assert!(e.to_string().contains("expected a pickled scipy sparse matrix or numpy array"), "{e}");
}

#[test]
fn hostile_and_malformed_pickles_are_refused() {
    for (file, expect) in [
        ("pickle/global.pickle", "system is not allowed in an adjacency pickle"),
        ("pickle/truncated.pickle", "truncated pickle"),
        ("pickle/protocol4.pickle", "pickle protocol 4 is not supported"),
        ("pickle/list.pickle", "holds a list, expected a dict of lists"),
        ("pickle/ordered.pickle", "global collections.OrderedDict is not allowed"),
    ] {
        let path = data(file);
        let bytes = std::fs::read(&path).unwrap();
        let e = pickle::parse_adjacency(&bytes, &path).unwrap_err();
        let msg = check_error(&e, file);
        assert!(msg.contains(expect), "{file}: {msg}");
        assert!(matches!(e, DatasetError::Pickle { .. }), "{msg}");
    }
}

#[test]
fn ogb_gzip_layout_without_labels() {
    let g = load(&data("ogb_tiny"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.name, "ogb_tiny");
    assert_eq!(g.num_nodes, 6);
    // Kept as given: directed, self loop kept, duplicate merged.
    assert_eq!(entries(&g), vec![(0, 1), (1, 2), (2, 3), (3, 0), (4, 4)]);
    assert_eq!((g.num_features, g.num_classes), (3, 2));
    assert!(g.description.contains("link-prediction default"), "{}", g.description);
    // Pointing at raw/ works too.
    assert_eq!(load(&data("ogb_tiny/raw"), 0).unwrap().adjacency, g.adjacency);
}

#[test]
fn ogb_labels_and_mag_layout() {
    let g = load(&data("ogb_labels"), 0).unwrap();
    assert_eq!((g.num_nodes, g.num_edges(), g.num_features, g.num_classes), (3, 3, 0, 5));
    let g = load(&data("ogb_mag_tiny"), 0).unwrap();
    g.validate().unwrap();
    assert_eq!(g.num_nodes, 5);
    assert_eq!(entries(&g), vec![(0, 1), (1, 2), (2, 0), (3, 0)]);
    assert_eq!((g.num_features, g.num_classes), (4, 349));
    assert!(g.description.contains("paper-cites-paper"), "{}", g.description);
}

#[test]
fn ogb_out_of_range_edge_names_the_line() {
    let e = load(&data("ogb_bad"), 0).unwrap_err();
    let msg = check_error(&e, "edge.csv");
    assert!(msg.ends_with("edge.csv:2: node id \"9\" is out of range for 3 nodes"), "{msg}");
}

#[test]
fn unknown_paths_and_layouts() {
    let e = load(&data("make_fixtures.py"), 0).unwrap_err();
    assert!(check_error(&e, "make_fixtures.py").contains("unknown file type"), "{e}");
    let e = load(&data("edges"), 0).unwrap_err();
    assert!(check_error(&e, "edges").contains("neither Planetoid"), "{e}");
    let e = load(&data("no-such-file.txt"), 0).unwrap_err();
    assert!(matches!(e, DatasetError::Unknown { .. }), "{e}");
}
