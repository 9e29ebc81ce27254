//! Plain edge lists: one `src dst` pair per line.
//!
//! Ids are separated by spaces, tabs or commas. `#` and `%` start a comment that runs to the end
//! of the line. The first non-comment line is a header, and skipped, if its first word does not
//! start with a digit (`src,dst`, `FromNodeId ToNodeId`). Further columns (weights, timestamps)
//! are ignored. Ids are 0-based unless [`IdBase::One`] is asked for: nothing is guessed. The
//! node count is the largest id plus one unless given. Files may be gzip-compressed.

use std::path::Path;

use crate::error::quote;
use crate::graph::{check_node_count, key, MAX_NODES};
use crate::io::{lines, path_name, read_maybe_gz};
use crate::{DatasetError, Graph, IdBase, LoadOptions};

/// Edges read from a text file, before they become a [`Graph`].
#[derive(Debug)]
pub(crate) struct ParsedEdges {
    /// Packed `(src, dst)` keys in file order, converted to 0-based ids.
    pub keys: Vec<u64>,
    /// The node count: given, or the largest id plus one.
    pub num_nodes: usize,
    /// Whether a header line was skipped.
    pub header: bool,
}

/// Reads an edge-list file (optionally gzip-compressed) into a graph.
///
/// Errors name the file and line: a line with fewer than two ids, an id that is not a
/// non-negative integer, id 0 in a 1-based file, or an id at or beyond `options.num_nodes`.
pub fn read_edge_list(path: &Path, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let bytes = read_maybe_gz(path)?;
    let name = options.name.clone().unwrap_or_else(|| file_stem(path));
    parse_edge_list_named(&bytes, &path_name(path), name, options)
}

/// Parses an in-memory edge list; `file_name` is used in error messages and as the graph name
/// unless `options.name` is set.
pub fn parse_edge_list(bytes: &[u8], file_name: &str, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let name = options.name.clone().unwrap_or_else(|| file_stem(Path::new(file_name)));
    parse_edge_list_named(bytes, file_name, name, options)
}

fn parse_edge_list_named(bytes: &[u8], file: &str, name: String, options: &LoadOptions) -> Result<Graph, DatasetError> {
    let parsed = parse_edges(bytes, file, options.base, options.num_nodes)?;
    let entries = parsed.keys.len();
    let (mut g, duplicates) = Graph::from_keys(name, parsed.num_nodes, parsed.keys);
    let mut notes = vec![format!(
        "{} ids{}",
        match options.base {
            IdBase::Zero => "0-based",
            IdBase::One => "1-based",
        },
        if parsed.header { ", header line skipped" } else { "" }
    )];
    notes.push(format!("{entries} lines, {duplicates} duplicates merged"));
    notes.extend(crate::apply_cleanup(&mut g, options, false));
    notes.extend(crate::apply_counts(&mut g, options, None, None));
    g.description = crate::describe(&format!("edge list {file}"), &g, &notes);
    Ok(g)
}

/// The graph name a file gives by default: its name without `.gz` and the last extension.
pub(crate) fn file_stem(path: &Path) -> String {
    let base = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let base = base.strip_suffix(".gz").unwrap_or(&base);
    match base.rfind('.') {
        Some(i) if i > 0 => base[..i].to_string(),
        _ => base.to_string(),
    }
}

/// Is `b` a separator between ids?
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b',' | b'\r' | b'\x0b' | b'\x0c')
}

/// Parses edge lines into 0-based keys. Shared with the OGB loader.
pub(crate) fn parse_edges(
    bytes: &[u8],
    file: &str,
    base: IdBase,
    num_nodes: Option<usize>,
) -> Result<ParsedEdges, DatasetError> {
    if let Some(n) = num_nodes {
        check_node_count(n)
            .map_err(|_| DatasetError::invalid(file, format!("node count {n} exceeds the 32-bit coordinate range")))?;
    }
    // A UTF-8 byte order mark would otherwise make the first line look like a header.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut keys = Vec::with_capacity(bytes.len() / 8);
    let mut max_id: Option<u32> = None;
    let mut header = false;
    let mut seen_data = false;
    for (line_no, line) in lines(bytes) {
        let line = match line.iter().position(|&b| b == b'#' || b == b'%') {
            Some(p) => &line[..p],
            None => line,
        };
        let mut words = line.split(|&b| is_sep(b)).filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        if !seen_data {
            seen_data = true;
            if !first[0].is_ascii_digit() && first[0] != b'-' && first[0] != b'+' {
                header = true;
                continue;
            }
        }
        let Some(second) = words.next() else {
            return Err(DatasetError::parse(file, line_no, "expected two node ids (src dst), found one"));
        };
        let src = parse_id(first, file, line_no, base, num_nodes)?;
        let dst = parse_id(second, file, line_no, base, num_nodes)?;
        max_id = Some(max_id.unwrap_or(0).max(src).max(dst));
        keys.push(key(src, dst));
    }
    let num_nodes = match num_nodes {
        Some(n) => n,
        None => max_id.map_or(0, |m| m as usize + 1),
    };
    Ok(ParsedEdges { keys, num_nodes, header })
}

/// Parses one node id and converts it to a 0-based id below the node count.
fn parse_id(word: &[u8], file: &str, line: usize, base: IdBase, num_nodes: Option<usize>) -> Result<u32, DatasetError> {
    if word.first() == Some(&b'-') {
        return Err(DatasetError::parse(file, line, format!("negative node id {}", quote(word))));
    }
    if !word.iter().all(u8::is_ascii_digit) {
        return Err(DatasetError::parse(file, line, format!("node id {} is not a non-negative integer", quote(word))));
    }
    // At most 10 digits fit below 2^32 + 1; longer words are too large even if they parse.
    let value: u64 =
        if word.len() > 11 { u64::MAX } else { word.iter().fold(0u64, |acc, &b| acc * 10 + (b - b'0') as u64) };
    let id = match base {
        IdBase::Zero => value,
        IdBase::One => {
            if value == 0 {
                return Err(DatasetError::parse(file, line, "node id 0 in a 1-based edge list"));
            }
            value - 1
        }
    };
    let limit = num_nodes.unwrap_or(MAX_NODES) as u64;
    if id >= limit {
        let what = if num_nodes.is_some() {
            format!("node id {} is out of range for {limit} nodes", quote(word))
        } else {
            format!("node id {} exceeds the 32-bit coordinate range", quote(word))
        };
        return Err(DatasetError::parse(file, line, what));
    }
    Ok(id as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, opts: &LoadOptions) -> Result<Graph, DatasetError> {
        parse_edge_list(text.as_bytes(), "t.txt", opts)
    }

    #[test]
    fn separators_comments_and_header() {
        let g = parse("src,dst\n# comment\n0 1\n1,2 % tail\n\n2\t0\t0.5\n0 1\n", &LoadOptions::default()).unwrap();
        assert_eq!(g.num_nodes, 3);
        assert_eq!(g.num_edges(), 3);
        assert_eq!(g.name, "t");
        assert!(g.description.contains("header line skipped"), "{}", g.description);
        assert!(g.description.contains("1 duplicates merged"), "{}", g.description);
        g.validate().unwrap();
    }

    #[test]
    fn one_based_and_given_node_count() {
        let opts = LoadOptions { base: IdBase::One, num_nodes: Some(5), ..Default::default() };
        let g = parse("1 2\n3 1\n", &opts).unwrap();
        assert_eq!(g.num_nodes, 5);
        assert_eq!(g.adjacency.coords, vec![0, 1, 2, 0]);
        let e = parse("1 2\n0 1\n", &opts).unwrap_err();
        assert_eq!(e.to_string(), "t.txt:2: node id 0 in a 1-based edge list");
        let e = parse("1 6\n", &opts).unwrap_err();
        assert_eq!(e.to_string(), "t.txt:1: node id \"6\" is out of range for 5 nodes");
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let d = LoadOptions::default();
        for (text, line, msg) in [
            ("0 1\n2\n", 2, "found one"),
            ("0 1\n1 x\n", 2, "not a non-negative integer"),
            ("0 -1\n", 1, "negative"),
            ("0 1.5\n", 1, "not a non-negative integer"),
            ("0 99999999999999999999\n", 1, "32-bit"),
            ("0 4294967295\n", 1, "32-bit"),
        ] {
            let e = parse(text, &d).unwrap_err();
            assert_eq!(e.line(), Some(line), "{e}");
            assert!(e.to_string().contains(msg), "{e}");
            assert!(e.to_string().starts_with(&format!("t.txt:{line}: ")), "{e}");
        }
        // Only the first data line can be a header.
        assert!(parse("0 1\nsrc dst\n", &d).is_err());
    }

    #[test]
    fn byte_order_mark_is_not_a_header() {
        let g = parse_edge_list(b"\xef\xbb\xbf0 1\n1 2\n", "t.txt", &LoadOptions::default()).unwrap();
        assert_eq!(g.num_edges(), 2);
    }

    #[test]
    fn empty_input_is_an_empty_graph() {
        let g = parse("# nothing\n", &LoadOptions::default()).unwrap();
        assert_eq!((g.num_nodes, g.num_edges()), (0, 0));
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem(Path::new("/a/b/edge.csv.gz")), "edge");
        assert_eq!(file_stem(Path::new("karate.txt")), "karate");
        assert_eq!(file_stem(Path::new(".hidden")), ".hidden");
    }
}
