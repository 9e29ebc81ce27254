//! Planetoid raw files (Cora, CiteSeer, PubMed as released by Yang et al. and used by PyG).
//!
//! The adjacency is `ind.<name>.graph`, a pickled dict of adjacency lists read by the safe
//! reader in [`crate::pickle`]. The feature width is the column count of `ind.<name>.x` (or
//! `allx`, `tx`) and the class count that of `ind.<name>.y` (or `ally`, `ty`); only the shapes
//! are read. Missing shape files leave the counts to [`LoadOptions`], else 0.
//!
//! Like PyG's loader, duplicates are merged and self loops removed by default; the graph is
//! also symmetrised by default (the raw Cora dict is already symmetric, so this changes nothing
//! there: 10,556 directed entries, 5,278 undirected edges). Both are overridable.

use std::path::{Path, PathBuf};

use crate::graph::{check_node_count, key};
use crate::io::{path_name, read_raw};
use crate::{pickle, DatasetError, Graph, LoadOptions};

/// Reads a Planetoid dataset from a directory (or its `raw/` subdirectory) holding
/// `ind.<name>.graph`, or from the path of that file. With several datasets in one directory,
/// `options.name` picks one.
pub fn read_planetoid(path: &Path, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let (dir, name) = locate(path, options)?;
    let stem = |suffix: &str| dir.join(format!("ind.{name}.{suffix}"));
    let graph_path = stem("graph");
    let graph_file = path_name(&graph_path);
    let bytes = read_raw(&graph_path)?;
    let edges = pickle::parse_adjacency(&bytes, &graph_file)?;
    let max_id = edges.iter().map(|&(a, b)| a.max(b) as usize).max();
    let n = match options.num_nodes {
        Some(n) => {
            check_node_count(n).map_err(|e| DatasetError::invalid(&graph_file, e.to_string()))?;
            if let Some(m) = max_id.filter(|&m| m >= n) {
                return Err(DatasetError::invalid(&graph_file, format!("node id {m} is out of range for {n} nodes")));
            }
            n
        }
        None => max_id.map_or(0, |m| m + 1),
    };
    let entries = edges.len();
    let keys = edges.into_iter().map(|(a, b)| key(a, b)).collect();
    let (mut g, duplicates) = Graph::from_keys(options.name.clone().unwrap_or_else(|| name.clone()), n, keys);
    let mut notes = vec![format!("{entries} adjacency-list entries, {duplicates} duplicates merged")];
    notes.extend(crate::apply_cleanup(&mut g, options, true));
    let features = column_count(&dir, &name, &["x", "allx", "tx"])?;
    let classes = column_count(&dir, &name, &["y", "ally", "ty"])?;
    notes.extend(crate::apply_counts(&mut g, options, features, classes));
    g.description = crate::describe(&format!("Planetoid raw files {}", path_name(&stem("*"))), &g, &notes);
    Ok(g)
}

/// The directory holding the raw files and the dataset name.
fn locate(path: &Path, options: &LoadOptions) -> Result<(PathBuf, String), DatasetError> {
    let shown = path_name(path);
    if path.is_file() {
        let file_name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file_name.strip_prefix("ind.").and_then(|s| s.strip_suffix(".graph"));
        return match name {
            Some(n) if !n.is_empty() => Ok((path.parent().unwrap_or(Path::new(".")).to_path_buf(), n.to_string())),
            _ => Err(DatasetError::invalid(&shown, "a Planetoid graph file must be named ind.<name>.graph")),
        };
    }
    let Some((dir, names)) = find_graph_files(path) else {
        return Err(DatasetError::invalid(&shown, "no ind.<name>.graph file here or under raw/"));
    };
    if let Some(want) = &options.name {
        let want = want.to_ascii_lowercase();
        if names.contains(&want) {
            return Ok((dir, want));
        }
        return Err(DatasetError::invalid(
            &path_name(&dir),
            format!("no ind.{want}.graph (found: {})", names.join(", ")),
        ));
    }
    match names.as_slice() {
        [one] => Ok((dir, one.clone())),
        [] => Err(DatasetError::invalid(&shown, "no ind.<name>.graph file here or under raw/")),
        many => Err(DatasetError::invalid(
            &path_name(&dir),
            format!("several Planetoid datasets ({}); choose one with a name", many.join(", ")),
        )),
    }
}

/// The directory (`path` or `path/raw`) holding `ind.*.graph` files, with their dataset names
/// sorted; `None` if `path` cannot be listed.
pub(crate) fn find_graph_files(path: &Path) -> Option<(PathBuf, Vec<String>)> {
    let list = |dir: &Path| -> Option<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                let n = f.strip_prefix("ind.")?.strip_suffix(".graph")?.to_string();
                (!n.is_empty()).then_some(n)
            })
            .collect();
        names.sort();
        Some(names)
    };
    let here = list(path)?;
    if !here.is_empty() {
        return Some((path.to_path_buf(), here));
    }
    let raw = path.join("raw");
    match list(&raw) {
        Some(names) if !names.is_empty() => Some((raw, names)),
        _ => Some((path.to_path_buf(), here)),
    }
}

/// The column count of the first of `ind.<name>.<suffix>` files that exists, checked against
/// the others that exist; `None` if none exists.
fn column_count(dir: &Path, name: &str, suffixes: &[&str]) -> Result<Option<(usize, String)>, DatasetError> {
    let mut found: Option<(usize, String)> = None;
    for s in suffixes {
        let p = dir.join(format!("ind.{name}.{s}"));
        if !p.is_file() {
            continue;
        }
        let file = path_name(&p);
        let shape = pickle::parse_shape(&read_raw(&p)?, &file)?;
        let cols = match shape.as_slice() {
            [_, c] => *c,
            other => return Err(DatasetError::invalid(&file, format!("shape {other:?} is not two-dimensional"))),
        };
        match &found {
            None => found = Some((cols, format!("from ind.{name}.{s}"))),
            Some((c, src)) if *c != cols => {
                return Err(DatasetError::invalid(&file, format!("{cols} columns, but {c} {src}")));
            }
            Some(_) => {}
        }
    }
    Ok(found)
}
