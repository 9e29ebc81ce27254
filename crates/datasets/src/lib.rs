//! Graph datasets for the GNN benchmarks (benchmarks.md §3).
//!
//! Three sources, one [`Graph`] type:
//! - **bundled**: Zachary's karate club ([`karate::karate`]);
//! - **synthetic**: seeded power-law graphs whose node count, directed entry count, feature
//!   width and class count equal the published statistics of Cora, Cora-ML, DBLP, ogbl-collab
//!   and ogbn-mag ([`synth`]); they are marked `synthetic` and say so in their description;
//! - **loaders** for the real formats, for users who have the data: Matrix Market and scipy
//!   `.npz` adjacency ([`matrix`]), CitationFull `.npz` archives ([`matrix::read_npz_graph`]),
//!   plain edge lists ([`edgelist`]), Planetoid raw files with a safe pickle reader
//!   ([`planetoid`], [`pickle`]) and OGB CSV layouts ([`ogb`]).
//!
//! [`load`] takes a built-in name or a path and picks the right one. Adjacencies follow the
//! GCN conventions of benchmarks.md §2.2: a plain 0/1 matrix, values `1.0`, no self loops added
//! and no normalisation. Entries are directed as stored; the loaders symmetrise and drop self
//! loops only for formats whose reference loader does (Planetoid, CitationFull), and
//! [`LoadOptions`] overrides that either way.

#![warn(missing_docs)]

mod error;
mod graph;
mod io;

pub mod edgelist;
pub mod karate;
pub mod matrix;
pub mod ogb;
pub mod pickle;
pub mod planetoid;
pub mod synth;

use std::path::Path;

pub use error::DatasetError;
use fuseflow_tensor::Coo;
pub use graph::{DegreeStats, Graph};

/// How node ids in an edge list are numbered. Nothing is guessed: the default is 0-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdBase {
    /// The first node is 0.
    #[default]
    Zero,
    /// The first node is 1 (id 0 is an error).
    One,
}

impl std::str::FromStr for IdBase {
    type Err = DatasetError;

    /// Parses `0` or `1`.
    fn from_str(s: &str) -> Result<IdBase, DatasetError> {
        match s.trim() {
            "0" => Ok(IdBase::Zero),
            "1" => Ok(IdBase::One),
            other => Err(DatasetError::argument(format!("id base must be 0 or 1, not {other:?}"))),
        }
    }
}

/// Options for the file loaders. Every `None` lets the loader decide from the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// Graph name; default: the file or directory name.
    pub name: Option<String>,
    /// Node count; default: from the dataset's metadata, else the largest id plus one. Ids at or
    /// beyond it are errors.
    pub num_nodes: Option<usize>,
    /// Feature width; default: from the dataset's feature file where there is one, else 0.
    pub num_features: Option<usize>,
    /// Class count; default: from the dataset's label file where there is one, else 0.
    pub num_classes: Option<usize>,
    /// Numbering of ids in plain edge lists.
    pub base: IdBase,
    /// Add the mirror of every entry; default: only for Planetoid and CitationFull.
    pub symmetrize: Option<bool>,
    /// Drop diagonal entries; default: only for Planetoid and CitationFull.
    pub remove_self_loops: Option<bool>,
}

/// The built-in datasets as `(name, description)`, in a stable order.
pub fn list() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![(karate::NAME, karate::SUMMARY)];
    out.extend(synth::SYNTHETIC.iter().map(|s| (s.name, s.summary)));
    out
}

/// A built-in dataset by name (case-insensitive): `karate` or one of the `*-synth` generators.
/// The seed only affects the generators (each derives its own stream from it and the name).
pub fn by_name(name: &str, seed: u64) -> Result<Graph, DatasetError> {
    builtin(name, seed)?.ok_or_else(|| unknown(name))
}

/// `Some` graph if `name` is built in.
fn builtin(name: &str, seed: u64) -> Result<Option<Graph>, DatasetError> {
    let lower = name.trim().to_ascii_lowercase();
    if lower == karate::NAME {
        return Ok(Some(karate::karate()));
    }
    match synth::spec(&lower) {
        Some(spec) => synth::generate(spec, fuseflow_tensor::derive_seed(seed, spec.name)).map(Some),
        None => Ok(None),
    }
}

fn unknown(name: &str) -> DatasetError {
    let known: Vec<&str> = list().into_iter().map(|(n, _)| n).collect();
    DatasetError::Unknown { name: name.to_string(), known: known.join(", ") }
}

/// A built-in dataset by name, or a dataset read from a path (see [`load_with`]).
pub fn load(spec: &str, seed: u64) -> Result<Graph, DatasetError> {
    load_with(spec, seed, &LoadOptions::default())
}

/// A built-in dataset by name, or a dataset read from a path with the given options.
///
/// Paths are dispatched by layout and extension (a trailing `.gz` is looked through):
/// - a directory holding `ind.<name>.graph` (directly or under `raw/`): Planetoid;
/// - a directory holding `edge.csv[.gz]` or `relations/paper___cites___paper/edge.csv[.gz]`
///   (directly or under `raw/`): OGB;
/// - `ind.<name>.graph`: Planetoid, from that file's directory;
/// - `.mtx`: Matrix Market; `.npz`: scipy sparse or CitationFull;
/// - `.txt`, `.edges`, `.el`, `.edgelist`, `.csv`, `.tsv`: edge list.
///
/// Built-in names take precedence and ignore `options`.
pub fn load_with(spec: &str, seed: u64, options: &LoadOptions) -> Result<Graph, DatasetError> {
    if let Some(g) = builtin(spec, seed)? {
        return Ok(g);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        if planetoid::find_graph_files(path).is_some_and(|(_, f)| !f.is_empty()) {
            return planetoid::read_planetoid(path, options);
        }
        if ogb::is_ogb_dir(path) {
            return ogb::read_ogb(path, options);
        }
        return Err(DatasetError::invalid(
            spec,
            "directory holds neither Planetoid raw files (ind.<name>.graph) nor an OGB layout (raw/edge.csv[.gz])",
        ));
    }
    if !path.is_file() {
        return Err(unknown(spec));
    }
    let file_name = path.file_name().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if file_name.starts_with("ind.") && file_name.ends_with(".graph") {
        return planetoid::read_planetoid(path, options);
    }
    let base = file_name.strip_suffix(".gz").unwrap_or(&file_name);
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "mtx" => matrix::read_mtx_graph(path, options),
        "npz" => matrix::read_npz_graph(path, options),
        "txt" | "edges" | "el" | "edgelist" | "csv" | "tsv" => edgelist::read_edge_list(path, options),
        _ => Err(DatasetError::invalid(
            spec,
            "unknown file type (expected .mtx, .npz, an edge list .txt/.edges/.el/.csv/.tsv, or ind.<name>.graph)",
        )),
    }
}

/// A seeded random sparse feature matrix X (`num_nodes × num_features`) with exactly
/// `round(density · num_nodes · num_features)` entries, values in `[0.1, 1.0)`, built with
/// [`fuseflow_tensor::random_coo`]. The same arguments always give the same matrix.
///
/// Errors if `density` is outside `[0, 1]` or the matrix is too large to index.
pub fn features(g: &Graph, num_features: usize, density: f64, seed: u64) -> Result<Coo, DatasetError> {
    Ok(fuseflow_tensor::random_coo(&[g.num_nodes, num_features], density, seed)?)
}

/// Applies the symmetrisation and self-loop options (`default` when unset); returns notes for
/// the description.
pub(crate) fn apply_cleanup(g: &mut Graph, options: &LoadOptions, default: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if options.remove_self_loops.unwrap_or(default) {
        notes.push(format!("{} self loops removed", g.remove_self_loops()));
    }
    if options.symmetrize.unwrap_or(default) {
        notes.push(format!("symmetrised (+{} entries)", g.symmetrize()));
    }
    notes
}

/// Sets the feature and class counts: the option if given, else what the data says (with where
/// it says it), else 0. Returns notes for the description.
pub(crate) fn apply_counts(
    g: &mut Graph,
    options: &LoadOptions,
    from_data_features: Option<(usize, String)>,
    from_data_classes: Option<(usize, String)>,
) -> Vec<String> {
    let pick = |opt: Option<usize>, data: Option<(usize, String)>, what: &str| match (opt, data) {
        (Some(v), _) => (v, format!("{v} {what} (given)")),
        (None, Some((v, src))) => (v, format!("{v} {what} ({src})")),
        (None, None) => (0, format!("{what} unknown (0)")),
    };
    let (f, fnote) = pick(options.num_features, from_data_features, "features");
    let (c, cnote) = pick(options.num_classes, from_data_classes, "classes");
    g.num_features = f;
    g.num_classes = c;
    vec![fnote, cnote]
}

/// One-line description: source, size, then notes.
pub(crate) fn describe(source: &str, g: &Graph, notes: &[String]) -> String {
    let mut s = format!("{source}: {} nodes, {} directed entries", g.num_nodes, g.num_edges());
    for n in notes {
        s.push_str("; ");
        s.push_str(n);
    }
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_base_parses() {
        assert_eq!("0".parse::<IdBase>().unwrap(), IdBase::Zero);
        assert_eq!(" 1 ".parse::<IdBase>().unwrap(), IdBase::One);
        assert!("2".parse::<IdBase>().is_err());
    }

    #[test]
    fn list_names_every_builtin() {
        let names: Vec<&str> = list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec!["karate", "cora-synth", "cora-ml-synth", "dblp-synth", "ogbl-collab-synth", "ogbn-mag-synth"]
        );
        assert!(list().iter().all(|(_, d)| !d.is_empty() && !d.contains('\n')));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = by_name("cora", 0).unwrap_err();
        assert!(e.to_string().contains("karate, cora-synth"), "{e}");
        let e = load("/no/such/file.txt", 0).unwrap_err();
        assert!(matches!(e, DatasetError::Unknown { .. }), "{e}");
    }

    #[test]
    fn features_are_seeded() {
        let g = karate::karate();
        let a = features(&g, 8, 0.5, 1).unwrap();
        assert_eq!(a.shape, vec![34, 8]);
        assert_eq!(a.nnz(), 136);
        assert_eq!(a, features(&g, 8, 0.5, 1).unwrap());
        assert_ne!(a, features(&g, 8, 0.5, 2).unwrap());
        assert!(features(&g, 8, 1.5, 1).is_err());
    }
}
