//! Adjacency matrices in Matrix Market and `.npz` files.
//!
//! Every stored nonzero entry becomes a directed edge (explicit zeros are dropped, duplicates
//! merged, values replaced by `1.0`); a symmetric Matrix Market file is expanded to both
//! triangles by the reader. Two `.npz` flavours are read:
//! - what `scipy.sparse.save_npz` writes (csr, csc, coo), through `fuseflow_tensor::npz`;
//! - the graph2gauss archives that PyG's `CitationFull` downloads (`cora_ml.npz`, `dblp.npz`,
//!   ...), holding `adj_indptr`/`adj_indices`/`adj_shape` plus optional `attr_shape` (features)
//!   and `labels` (classes). Like PyG, self loops are dropped and the graph symmetrised by
//!   default.

use std::io::{Cursor, Read};
use std::path::Path;

use fuseflow_tensor::Coo;

use crate::edgelist::file_stem;
use crate::graph::{check_node_count, key};
use crate::io::{path_name, read_raw};
use crate::{DatasetError, Graph, LoadOptions};

/// Reads a Matrix Market adjacency. Errors name the file and line.
pub fn read_mtx_graph(path: &Path, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let coo = fuseflow_tensor::read_mtx(path)?;
    graph_from_matrix(&coo, path, options, "Matrix Market")
}

/// Reads a scipy sparse `.npz` or a CitationFull (graph2gauss) `.npz` archive.
pub fn read_npz_graph(path: &Path, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let bytes = read_raw(path)?;
    let file = path_name(path);
    if bytes.starts_with(b"PK") {
        if let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(&bytes[..])) {
            let names: Vec<String> = zip.file_names().map(str::to_string).collect();
            if names.iter().any(|n| n == "adj_indptr.npy" || n == "adj_indptr") {
                return read_citation_full(&mut zip, &names, path, options);
            }
        }
    }
    let coo = fuseflow_tensor::npz::parse_npz(&bytes, &file)?;
    graph_from_matrix(&coo, path, options, "scipy .npz")
}

/// Turns a parsed square matrix into a graph with the loader notes.
fn graph_from_matrix(coo: &Coo, path: &Path, options: &LoadOptions, kind: &str) -> Result<Graph, DatasetError> {
    let file = path_name(path);
    if coo.rank() != 2 {
        return Err(DatasetError::invalid(
            &file,
            format!("holds a rank-{} tensor, not an adjacency matrix", coo.rank()),
        ));
    }
    if coo.shape[0] != coo.shape[1] {
        return Err(DatasetError::invalid(
            &file,
            format!("adjacency is {}×{}, not square", coo.shape[0], coo.shape[1]),
        ));
    }
    let n = coo.shape[0];
    check_node_count(n).map_err(|e| DatasetError::invalid(&file, e.to_string()))?;
    if let Some(given) = options.num_nodes {
        if given != n {
            return Err(DatasetError::invalid(&file, format!("matrix has {n} rows but {given} nodes were asked for")));
        }
    }
    let zeros = coo.vals.iter().filter(|&&v| v == 0.0).count();
    let keys: Vec<u64> =
        (0..coo.nnz()).filter(|&i| coo.vals[i] != 0.0).map(|i| key(coo.coords[2 * i], coo.coords[2 * i + 1])).collect();
    let name = options.name.clone().unwrap_or_else(|| file_stem(path));
    let (mut g, duplicates) = Graph::from_keys(name, n, keys);
    let mut notes = vec![format!("{zeros} explicit zeros dropped, {duplicates} duplicates merged")];
    notes.extend(crate::apply_cleanup(&mut g, options, false));
    notes.extend(crate::apply_counts(&mut g, options, None, None));
    g.description = crate::describe(&format!("{kind} adjacency {file}"), &g, &notes);
    Ok(g)
}

/// Reads one member of an archive (with or without the `.npy` suffix) as a 1-D integer array.
fn member_ints(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    key: &str,
    file: &str,
) -> Result<Option<Vec<u64>>, DatasetError> {
    let Some(member) = names.iter().find(|n| n.strip_suffix(".npy").unwrap_or(n) == key) else {
        return Ok(None);
    };
    let what = format!("{file}[{key}]");
    let mut bytes = Vec::new();
    zip.by_name(member)
        .map_err(|e| DatasetError::invalid(file, format!("cannot open member {member}: {e}")))?
        .read_to_end(&mut bytes)
        .map_err(|e| DatasetError::invalid(file, format!("cannot read member {member}: {e}")))?;
    let coo = fuseflow_tensor::npz::parse_npy(&bytes, &what)?;
    if coo.rank() != 1 {
        return Err(DatasetError::invalid(&what, format!("expected a 1-D array, found shape {:?}", coo.shape)));
    }
    let mut out = vec![0u64; coo.shape[0]];
    for (&c, &v) in coo.coords.iter().zip(&coo.vals) {
        if !(v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53)) {
            return Err(DatasetError::invalid(&what, format!("entry {c} is {v}, not a non-negative integer")));
        }
        if let Some(slot) = out.get_mut(c as usize) {
            *slot = v as u64;
        }
    }
    Ok(Some(out))
}

/// Reads a graph2gauss archive as PyG's `CitationFull` does.
fn read_citation_full(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    names: &[String],
    path: &Path,
    options: &LoadOptions,
) -> Result<Graph, DatasetError> {
    let file = path_name(path);
    let mut get = |k: &str| member_ints(zip, names, k, &file);
    let missing = |k: &str| DatasetError::invalid(&file, format!("CitationFull archive without '{k}'"));
    let indptr = get("adj_indptr")?.ok_or_else(|| missing("adj_indptr"))?;
    let indices = get("adj_indices")?.ok_or_else(|| missing("adj_indices"))?;
    let shape = get("adj_shape")?.ok_or_else(|| missing("adj_shape"))?;
    let attr_shape = get("attr_shape")?;
    let labels = get("labels")?;
    let what = |k: &str| format!("{file}[{k}]");
    if shape.len() != 2 || shape[0] != shape[1] {
        return Err(DatasetError::invalid(&what("adj_shape"), format!("{shape:?} is not a square shape")));
    }
    let n = shape[0] as usize;
    check_node_count(n).map_err(|e| DatasetError::invalid(&what("adj_shape"), e.to_string()))?;
    if indptr.len() != n + 1 || indptr[0] != 0 || indptr[n] as usize != indices.len() {
        return Err(DatasetError::invalid(
            &what("adj_indptr"),
            format!(
                "{} entries from {:?} to {:?} do not fit {n} rows and {} indices",
                indptr.len(),
                indptr.first(),
                indptr.last(),
                indices.len()
            ),
        ));
    }
    let mut keys = Vec::with_capacity(indices.len());
    for r in 0..n {
        let (lo, hi) = (indptr[r] as usize, indptr[r + 1] as usize);
        if lo > hi || hi > indices.len() {
            return Err(DatasetError::invalid(&what("adj_indptr"), format!("decreases at row {r}")));
        }
        for &c in &indices[lo..hi] {
            if c as usize >= n {
                return Err(DatasetError::invalid(
                    &what("adj_indices"),
                    format!("column {c} out of range for {n} nodes"),
                ));
            }
            keys.push(key(r as u32, c as u32));
        }
    }
    if let Some(given) = options.num_nodes {
        if given != n {
            return Err(DatasetError::invalid(&file, format!("adjacency has {n} nodes but {given} were asked for")));
        }
    }
    let name = options.name.clone().unwrap_or_else(|| file_stem(path));
    let (mut g, duplicates) = Graph::from_keys(name, n, keys);
    let mut notes = vec![format!("{duplicates} duplicates merged")];
    notes.extend(crate::apply_cleanup(&mut g, options, true));
    let features = match attr_shape {
        Some(s) if s.len() == 2 => Some((s[1] as usize, "from attr_shape".to_string())),
        Some(s) => return Err(DatasetError::invalid(&what("attr_shape"), format!("{s:?} is not a 2-D shape"))),
        None => None,
    };
    let classes = labels.and_then(|l| l.iter().max().map(|&m| (m as usize + 1, "from labels".to_string())));
    notes.extend(crate::apply_counts(&mut g, options, features, classes));
    g.description = crate::describe(&format!("CitationFull archive {file}"), &g, &notes);
    Ok(g)
}
