//! OGB raw CSV layouts (as unpacked by the `ogb` package), plain or gzip-compressed.
//!
//! Homogeneous graphs (ogbl-collab, ogbn-arxiv, ...):
//! - `raw/edge.csv[.gz]`: one `src,dst` line per edge, 0-based;
//! - `raw/num-node-list.csv[.gz]`: one integer, the node count;
//! - `raw/node-feat.csv[.gz]` (optional): the feature width is its column count;
//! - `raw/node-label.csv[.gz]` (optional): the class count is the largest label plus one.
//!
//! ogbn-mag (heterogeneous): only paper nodes and paper-cites-paper edges are used, as in the
//! benchmark: `raw/relations/paper___cites___paper/edge.csv[.gz]`, the `paper` column of
//! `raw/num-node-dict.csv[.gz]`, `raw/node-feat/paper/node-feat.csv[.gz]` and
//! `raw/node-label/paper/node-label.csv[.gz]`.
//!
//! Edges are kept as given (directed entries, duplicates merged). Without a label file the
//! class count is 2, the benchmark loader's default for link-prediction sets.

use std::path::{Path, PathBuf};

use crate::edgelist::parse_edges;
use crate::io::{first_line, lines, path_name, read_maybe_gz};
use crate::{DatasetError, Graph, IdBase, LoadOptions};

/// Class count used when a dataset has no node labels (link prediction).
pub const LINK_PREDICTION_CLASSES: usize = 2;

/// The heterogeneous relation read from ogbn-mag.
const MAG_RELATION: &str = "relations/paper___cites___paper";

/// True if `dir` (or `dir/raw`) looks like an OGB raw layout.
pub fn is_ogb_dir(dir: &Path) -> bool {
    let raw = raw_dir(dir);
    find(&raw, "edge").is_some() || find(&raw.join(MAG_RELATION), "edge").is_some()
}

/// `dir/raw` if it exists, else `dir`.
fn raw_dir(dir: &Path) -> PathBuf {
    let raw = dir.join("raw");
    if raw.is_dir() {
        raw
    } else {
        dir.to_path_buf()
    }
}

/// `<dir>/<stem>.csv.gz` or `<dir>/<stem>.csv`, whichever exists.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.csv.gz"), format!("{stem}.csv")].into_iter().map(|f| dir.join(f)).find(|p| p.is_file())
}

/// Reads an OGB dataset directory (the dataset folder or its `raw/`).
pub fn read_ogb(dir: &Path, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let raw = raw_dir(dir);
    let shown = path_name(dir);
    let mag = raw.join(MAG_RELATION);
    let hetero = find(&raw, "edge").is_none() && find(&mag, "edge").is_some();
    let (edge_path, feat_dir, label_dir) = if hetero {
        (find(&mag, "edge"), raw.join("node-feat/paper"), raw.join("node-label/paper"))
    } else {
        (find(&raw, "edge"), raw.clone(), raw.clone())
    };
    let edge_path = edge_path.ok_or_else(|| DatasetError::invalid(&shown, "no raw/edge.csv[.gz]"))?;
    let counted = if hetero { paper_count(&raw)? } else { node_count(&raw)? };
    let n = match (options.num_nodes, counted) {
        (Some(n), _) => n,
        (None, Some((n, _))) => n,
        (None, None) => {
            return Err(DatasetError::invalid(
                &shown,
                if hetero { "no raw/num-node-dict.csv[.gz]" } else { "no raw/num-node-list.csv[.gz]" },
            ))
        }
    };
    let edge_file = path_name(&edge_path);
    let bytes = read_maybe_gz(&edge_path)?;
    let parsed = parse_edges(&bytes, &edge_file, IdBase::Zero, Some(n))?;
    drop(bytes);
    let entries = parsed.keys.len();
    let name = options.name.clone().unwrap_or_else(|| {
        let base = if dir.file_name().is_some_and(|f| f == "raw") { dir.parent().unwrap_or(dir) } else { dir };
        base.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "ogb".to_string())
    });
    let (mut g, duplicates) = Graph::from_keys(name, n, parsed.keys);
    let mut notes = vec![format!("{entries} edge lines, {duplicates} duplicates merged")];
    if hetero {
        notes.push("paper nodes and paper-cites-paper edges only".to_string());
    }
    notes.extend(crate::apply_cleanup(&mut g, options, false));
    let features = match find(&feat_dir, "node-feat") {
        Some(p) => first_line(&p)?.map(|l| (l.split(',').count(), format!("from {}", path_name(&p)))),
        None => None,
    };
    let classes = match find(&label_dir, "node-label") {
        Some(p) => label_count(&p)?,
        None => Some((LINK_PREDICTION_CLASSES, "no node labels: link-prediction default".to_string())),
    };
    notes.extend(crate::apply_counts(&mut g, options, features, classes));
    g.description = crate::describe(&format!("OGB raw files {}", path_name(&raw)), &g, &notes);
    Ok(g)
}

/// Parses a non-negative integer field of a CSV file.
fn parse_count(word: &str, file: &str, line: usize) -> Result<usize, DatasetError> {
    let w = word.trim();
    w.parse::<usize>().map_err(|_| DatasetError::parse(file, line, format!("{w:?} is not a node count")))
}

/// The node count from `num-node-list.csv[.gz]`: exactly one integer.
fn node_count(raw: &Path) -> Result<Option<(usize, String)>, DatasetError> {
    let Some(p) = find(raw, "num-node-list") else { return Ok(None) };
    let file = path_name(&p);
    let bytes = read_maybe_gz(&p)?;
    let mut count = None;
    for (no, l) in lines(&bytes) {
        let l = String::from_utf8_lossy(l);
        if l.trim().is_empty() {
            continue;
        }
        if count.is_some() {
            return Err(DatasetError::parse(
                &file,
                no,
                "more than one graph; only single-graph datasets are supported",
            ));
        }
        count = Some(parse_count(&l, &file, no)?);
    }
    match count {
        Some(n) => Ok(Some((n, file))),
        None => Err(DatasetError::parse(&file, 1, "empty; expected the node count")),
    }
}

/// The paper count from ogbn-mag's `num-node-dict.csv[.gz]` (a header of node types, then one
/// row of counts).
fn paper_count(raw: &Path) -> Result<Option<(usize, String)>, DatasetError> {
    let Some(p) = find(raw, "num-node-dict") else { return Ok(None) };
    let file = path_name(&p);
    let bytes = read_maybe_gz(&p)?;
    let rows: Vec<(usize, String)> = lines(&bytes)
        .map(|(no, l)| (no, String::from_utf8_lossy(l).into_owned()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let [(_, header), (no, counts), ..] = rows.as_slice() else {
        return Err(DatasetError::parse(&file, rows.len() + 1, "expected a header of node types and a row of counts"));
    };
    let col = header
        .split(',')
        .position(|t| t.trim() == "paper")
        .ok_or_else(|| DatasetError::parse(&file, rows[0].0, "no 'paper' node type in the header"))?;
    let word = counts
        .split(',')
        .nth(col)
        .ok_or_else(|| DatasetError::parse(&file, *no, "no count under the 'paper' column"))?;
    Ok(Some((parse_count(word, &file, *no)?, file)))
}

/// The class count from a label file: the largest label plus one. Empty and `nan` labels
/// (unlabelled nodes) are skipped.
fn label_count(p: &Path) -> Result<Option<(usize, String)>, DatasetError> {
    let file = path_name(p);
    let bytes = read_maybe_gz(p)?;
    let mut max: Option<usize> = None;
    for (no, l) in lines(&bytes) {
        let l = String::from_utf8_lossy(l);
        let w = l.split(',').next().unwrap_or("").trim();
        if w.is_empty() || w.eq_ignore_ascii_case("nan") {
            continue;
        }
        // Labels are integers, sometimes written as floats (`3.0`).
        let v = w.parse::<f64>().ok().filter(|v| *v >= 0.0 && v.fract() == 0.0 && *v < 1e9);
        let Some(v) = v else {
            return Err(DatasetError::parse(&file, no, format!("label {w:?} is not a non-negative integer")));
        };
        max = Some(max.unwrap_or(0).max(v as usize));
    }
    Ok(max.map(|m| (m + 1, format!("from {file}"))))
}
