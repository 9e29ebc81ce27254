//! Matrix Market (`.mtx`) reader and writer.
//!
//! Supported: `matrix coordinate` with fields `real`, `integer` or `pattern` and symmetry
//! `general`, `symmetric` or `skew-symmetric`, and `matrix array` with fields `real` or `integer`
//! and symmetry `general`. Pattern entries get the value 1. Symmetric files must list the lower
//! triangle (row >= column) and are expanded to both triangles; skew-symmetric files must list
//! the strict lower triangle and mirror entries with the opposite sign.

use std::io::Write;
use std::path::Path;

use crate::io_error::{fmt_f64, path_name, quote, read_text};
use crate::{Coo, IoError};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Real,
    Integer,
    Pattern,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Symmetry {
    General,
    Symmetric,
    Skew,
}

/// Reads a Matrix Market file into COO (entries in file order; a mirrored entry follows its
/// original). Errors name the file, line and column.
pub fn read_mtx(path: &Path) -> Result<Coo, IoError> {
    let text = read_text(path)?;
    parse_mtx(&text, &path_name(path))
}

/// Splits a line into whitespace-separated tokens with their 1-based character columns.
fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte, column)
    let mut col = 0;
    for (b, ch) in line.char_indices() {
        col += 1;
        if ch.is_whitespace() {
            if let Some((s, c)) = start.take() {
                out.push((c, &line[s..b]));
            }
        } else if start.is_none() {
            start = Some((b, col));
        }
    }
    if let Some((s, c)) = start {
        out.push((c, &line[s..]));
    }
    out
}

/// Parses Matrix Market text; `file_name` is used in error messages.
pub fn parse_mtx(text: &str, file_name: &str) -> Result<Coo, IoError> {
    let file = file_name;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let last_line = text.lines().count().max(1);

    // Header.
    let (hline, header) = lines
        .next()
        .ok_or_else(|| IoError::parse(file, 1, None, "empty file; expected a '%%MatrixMarket matrix ...' header"))?;
    let head = tokens(header);
    match head.first() {
        Some((_, banner)) if banner.eq_ignore_ascii_case("%%MatrixMarket") => {}
        _ => return Err(IoError::parse(file, hline, Some(1), "expected a '%%MatrixMarket' header")),
    }
    if head.len() != 5 {
        return Err(IoError::parse(
            file,
            hline,
            None,
            format!("header has {} words; expected '%%MatrixMarket matrix <format> <field> <symmetry>'", head.len()),
        ));
    }
    let word = |i: usize| (head[i].0, head[i].1.to_ascii_lowercase());
    let (c, object) = word(1);
    if object != "matrix" {
        return Err(IoError::parse(
            file,
            hline,
            Some(c),
            format!("unsupported object {}; only 'matrix'", quote(head[1].1)),
        ));
    }
    let (c, layout) = word(2);
    let coordinate = match layout.as_str() {
        "coordinate" => true,
        "array" => false,
        _ => {
            return Err(IoError::parse(
                file,
                hline,
                Some(c),
                format!("unknown format {}; expected 'coordinate' or 'array'", quote(head[2].1)),
            ))
        }
    };
    let (c, f) = word(3);
    let field = match f.as_str() {
        "real" | "double" => Field::Real,
        "integer" => Field::Integer,
        "pattern" if coordinate => Field::Pattern,
        _ => {
            return Err(IoError::parse(
                file,
                hline,
                Some(c),
                format!("unsupported field {}; expected real, integer or pattern", quote(head[3].1)),
            ))
        }
    };
    let (c, s) = word(4);
    let symmetry = match s.as_str() {
        "general" => Symmetry::General,
        "symmetric" if coordinate => Symmetry::Symmetric,
        "skew-symmetric" if coordinate => Symmetry::Skew,
        _ => {
            return Err(IoError::parse(
                file,
                hline,
                Some(c),
                format!(
                    "unsupported symmetry {} for {layout} format; expected {}",
                    quote(head[4].1),
                    if coordinate { "general, symmetric or skew-symmetric" } else { "general" }
                ),
            ))
        }
    };

    // Skip comments and blank lines; yields (line number, tokens).
    let mut data = lines.filter_map(|(n, l)| {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('%') {
            None
        } else {
            Some((n, tokens(l)))
        }
    });

    // Size line.
    let (sline, size) =
        data.next().ok_or_else(|| IoError::parse(file, last_line, None, "missing size line after the header"))?;
    let want = if coordinate { 3 } else { 2 };
    if size.len() != want {
        return Err(IoError::parse(
            file,
            sline,
            None,
            format!(
                "size line has {} numbers; expected {}",
                size.len(),
                if coordinate { "3 (rows columns entries)" } else { "2 (rows columns)" }
            ),
        ));
    }
    let mut dims = [0u64; 3];
    for (k, &(c, tok)) in size.iter().enumerate() {
        dims[k] = tok.parse::<u64>().map_err(|_| {
            IoError::parse(file, sline, Some(c), format!("expected a non-negative integer, found {}", quote(tok)))
        })?;
        if k < 2 && dims[k] > u32::MAX as u64 {
            return Err(IoError::parse(file, sline, Some(c), format!("dimension {} is too large", dims[k])));
        }
    }
    let (rows, cols) = (dims[0], dims[1]);
    if symmetry != Symmetry::General && rows != cols {
        return Err(IoError::parse(file, sline, None, format!("{rows}x{cols} matrix cannot be symmetric")));
    }
    let entries = if coordinate {
        dims[2]
    } else {
        rows.checked_mul(cols)
            .ok_or_else(|| IoError::parse(file, sline, None, format!("{rows}x{cols} array is too large")))?
    };

    let mut coo = Coo::new(vec![rows as usize, cols as usize]);
    // Never trust the declared count for allocation: a line holds at least two bytes.
    let cap = (entries as usize).min(text.len() / 2 + 1);
    coo.vals.reserve(cap);
    coo.coords.reserve(2 * cap);

    let parse_val = |n: usize, c: usize, tok: &str| -> Result<f64, IoError> {
        match field {
            Field::Integer => tok.parse::<i64>().map(|v| v as f64).map_err(|_| {
                IoError::parse(file, n, Some(c), format!("expected an integer value, found {}", quote(tok)))
            }),
            _ => parse_real(tok).ok_or_else(|| {
                IoError::parse(file, n, Some(c), format!("expected a real value, found {}", quote(tok)))
            }),
        }
    };

    let mut count = 0u64;
    for (n, toks) in data {
        if count == entries {
            return Err(IoError::parse(
                file,
                n,
                None,
                format!("more entries than the {entries} declared on line {sline}"),
            ));
        }
        count += 1;
        if coordinate {
            let want = if field == Field::Pattern { 2 } else { 3 };
            if toks.len() != want {
                return Err(IoError::parse(
                    file,
                    n,
                    None,
                    format!(
                        "entry has {} fields; expected {want} ({})",
                        toks.len(),
                        if want == 2 { "row column" } else { "row column value" }
                    ),
                ));
            }
            let idx = |k: usize, limit: u64, what: &str| -> Result<u32, IoError> {
                let (c, tok) = toks[k];
                let v = tok.parse::<u64>().map_err(|_| {
                    IoError::parse(file, n, Some(c), format!("expected a {what} index, found {}", quote(tok)))
                })?;
                if v == 0 || v > limit {
                    return Err(IoError::parse(
                        file,
                        n,
                        Some(c),
                        format!("{what} index {v} out of range 1..={limit} (indices are 1-based)"),
                    ));
                }
                Ok((v - 1) as u32)
            };
            let i = idx(0, rows, "row")?;
            let j = idx(1, cols, "column")?;
            let v = if field == Field::Pattern { 1.0 } else { parse_val(n, toks[2].0, toks[2].1)? };
            match symmetry {
                Symmetry::General => coo.push(&[i, j], v),
                Symmetry::Symmetric | Symmetry::Skew => {
                    let skew = symmetry == Symmetry::Skew;
                    if i < j || (skew && i == j) {
                        return Err(IoError::parse(
                            file,
                            n,
                            None,
                            format!(
                                "entry ({}, {}) is not in the {}lower triangle, as a {} file requires",
                                i + 1,
                                j + 1,
                                if skew { "strict " } else { "" },
                                if skew { "skew-symmetric" } else { "symmetric" }
                            ),
                        ));
                    }
                    coo.push(&[i, j], v);
                    if i != j {
                        coo.push(&[j, i], if skew { -v } else { v });
                    }
                }
            }
        } else {
            if toks.len() != 1 {
                return Err(IoError::parse(
                    file,
                    n,
                    None,
                    format!("array entry has {} fields; expected 1 value", toks.len()),
                ));
            }
            let v = parse_val(n, toks[0].0, toks[0].1)?;
            // Column-major order; zeros are not stored.
            let k = count - 1;
            if v != 0.0 {
                coo.push(&[(k % rows) as u32, (k / rows) as u32], v);
            }
        }
    }
    if count != entries {
        return Err(IoError::parse(
            file,
            last_line,
            None,
            format!("file ends after {count} of the {entries} entries declared on line {sline}"),
        ));
    }
    Ok(coo)
}

/// Parses a real number, also accepting Fortran `D` exponents (`1.5D+03`).
fn parse_real(tok: &str) -> Option<f64> {
    tok.parse::<f64>().ok().or_else(|| {
        if tok.contains(['d', 'D']) {
            tok.replace(['d', 'D'], "e").parse::<f64>().ok()
        } else {
            None
        }
    })
}

/// Matrix Market text (`coordinate real general`) for a rank-2 COO tensor.
fn format_mtx(coo: &Coo, file: &str) -> Result<String, IoError> {
    if coo.rank() != 2 {
        return Err(IoError::invalid(
            file,
            format!("Matrix Market holds matrices, but the tensor has rank {}", coo.rank()),
        ));
    }
    coo.validate().map_err(|e| IoError::tensor(file, e))?;
    let mut s = String::with_capacity(64 + coo.nnz() * 24);
    s.push_str("%%MatrixMarket matrix coordinate real general\n");
    s.push_str(&format!("{} {} {}\n", coo.shape[0], coo.shape[1], coo.nnz()));
    for i in 0..coo.nnz() {
        let c = coo.coords(i);
        s.push_str(&format!("{} {} {}\n", c[0] as u64 + 1, c[1] as u64 + 1, fmt_f64(coo.vals[i])));
    }
    Ok(s)
}

/// Writes a rank-2 COO tensor as Matrix Market `coordinate real general` (1-based indices,
/// values printed so that they read back exactly).
pub fn write_mtx(path: &Path, coo: &Coo) -> Result<(), IoError> {
    let file = path_name(path);
    let text = format_mtx(coo, &file)?;
    let mut f = std::fs::File::create(path).map_err(|e| IoError::io(&file, "create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| IoError::io(&file, "write", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(text: &str) -> String {
        parse_mtx(text, "m.mtx").unwrap_err().to_string()
    }

    fn b_matrix() -> Coo {
        let mut c = Coo::new(vec![4, 4]);
        for (i, j, v) in [(0, 1, 1.0), (1, 0, 2.0), (1, 2, 3.0), (3, 1, 4.0), (3, 3, 5.0)] {
            c.push(&[i, j], v);
        }
        c
    }

    #[test]
    fn reads_coordinate_real_general() {
        let text = "%%MatrixMarket matrix coordinate real general\n% comment\n\n4 4 5\n\
                    1 2 1\n2 1 2.0\n2 3 3e0\n4 2 4\n4 4 5.0D0\n";
        assert_eq!(parse_mtx(text, "m.mtx").unwrap(), b_matrix());
    }

    #[test]
    fn reads_crlf_and_case_insensitive_header() {
        let text = "%%matrixmarket MATRIX Coordinate Integer General\r\n2 3 1\r\n2 3 -7\r\n";
        let c = parse_mtx(text, "m.mtx").unwrap();
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.coords, vec![1, 2]);
        assert_eq!(c.vals, vec![-7.0]);
    }

    #[test]
    fn pattern_gets_ones() {
        let c = parse_mtx("%%MatrixMarket matrix coordinate pattern general\n3 3 2\n1 1\n3 2\n", "p").unwrap();
        assert_eq!(c.vals, vec![1.0, 1.0]);
        assert_eq!(c.coords, vec![0, 0, 2, 1]);
    }

    #[test]
    fn symmetric_and_skew_expand() {
        let c = parse_mtx("%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 1 5\n3 1 2\n", "s").unwrap();
        assert_eq!(c.to_dense(), vec![5.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]);
        let c = parse_mtx("%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n2 1 3\n", "k").unwrap();
        assert_eq!(c.to_dense(), vec![0.0, -3.0, 3.0, 0.0]);
        let c = parse_mtx("%%MatrixMarket matrix coordinate pattern symmetric\n2 2 1\n2 1\n", "k").unwrap();
        assert_eq!(c.to_dense(), vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn array_is_column_major_and_skips_zeros() {
        let c = parse_mtx("%%MatrixMarket matrix array real general\n2 3\n1\n0\n3\n4\n0\n6\n", "a").unwrap();
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(c.to_dense(), vec![1.0, 3.0, 0.0, 0.0, 4.0, 6.0]);
        let c = parse_mtx("%%MatrixMarket matrix array integer general\n0 0\n", "a").unwrap();
        assert_eq!((c.shape.clone(), c.nnz()), (vec![0, 0], 0));
    }

    #[test]
    fn round_trip_through_file() {
        let dir = std::env::temp_dir().join(format!("fuseflow-mtx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.mtx");
        let mut b = b_matrix();
        b.vals[0] = 0.1 + 0.2;
        b.vals[1] = -1e-300;
        write_mtx(&p, &b).unwrap();
        assert_eq!(read_mtx(&p).unwrap(), b);
        let empty = Coo::new(vec![0, 7]);
        write_mtx(&p, &empty).unwrap();
        assert_eq!(read_mtx(&p).unwrap(), empty);
        let r = crate::random_coo(&[30, 20], 0.2, 3).unwrap();
        write_mtx(&p, &r).unwrap();
        assert_eq!(read_mtx(&p).unwrap(), r);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writer_rejects_bad_tensors() {
        let p = Path::new("/nonexistent-dir/x.mtx");
        let e = write_mtx(p, &Coo::new(vec![2, 2, 2])).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent-dir/x.mtx: Matrix Market holds matrices"), "{e}");
        let mut c = Coo::new(vec![2, 2]);
        c.push(&[2, 0], 1.0);
        let e = write_mtx(p, &c).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent-dir/x.mtx: coordinate 2 out of range"), "{e}");
        let e = write_mtx(p, &b_matrix()).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent-dir/x.mtx: cannot create"), "{e}");
    }

    #[test]
    fn scipy_written_fixtures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let s = read_mtx(&dir.join("sym.mtx")).unwrap();
        assert_eq!(s.to_dense(), vec![4.0, 0.0, 1.5, 0.0, 0.0, 0.0, 1.5, 0.0, -2.0]);
        let b = b_matrix().to_dense();
        let p = read_mtx(&dir.join("b_pattern.mtx")).unwrap();
        assert_eq!(p.to_dense(), b.iter().map(|&v| if v != 0.0 { 1.0 } else { 0.0 }).collect::<Vec<_>>());
        let a = crate::read_any(&dir.join("b_array.mtx")).unwrap();
        assert_eq!((a.to_dense(), a.nnz()), (b, 5));
    }

    #[test]
    fn missing_file_names_it() {
        let e = read_mtx(Path::new("/nonexistent/q.mtx")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/q.mtx: cannot read"), "{e}");
    }

    #[test]
    fn malformed_inputs_name_file_line_and_column() {
        let h = "%%MatrixMarket matrix coordinate real general\n";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "m.mtx:1: empty file"),
            ("hello\n".into(), "m.mtx:1:1: expected a '%%MatrixMarket' header"),
            ("%%MatrixMarket matrix coordinate real\n".into(), "m.mtx:1: header has 4 words"),
            ("%%MatrixMarket vector coordinate real general\n".into(), "m.mtx:1:16: unsupported object"),
            ("%%MatrixMarket matrix sparse real general\n".into(), "m.mtx:1:23: unknown format"),
            ("%%MatrixMarket matrix coordinate complex general\n".into(), "m.mtx:1:34: unsupported field"),
            ("%%MatrixMarket matrix coordinate real hermitian\n".into(), "m.mtx:1:39: unsupported symmetry"),
            ("%%MatrixMarket matrix array real symmetric\n".into(), "m.mtx:1:34: unsupported symmetry"),
            ("%%MatrixMarket matrix array pattern general\n".into(), "m.mtx:1:29: unsupported field"),
            (h.to_string(), "m.mtx:1: missing size line"),
            (format!("{h}% only comments\n"), "m.mtx:2: missing size line"),
            (format!("{h}4 4\n"), "m.mtx:2: size line has 2 numbers"),
            (format!("{h}4 x 1\n"), "m.mtx:2:3: expected a non-negative integer, found \"x\""),
            (format!("{h}4 -4 1\n"), "m.mtx:2:3: expected a non-negative integer"),
            (format!("{h}99999999999 4 1\n"), "m.mtx:2:1: dimension 99999999999 is too large"),
            (format!("{h}4 4 1\n5 1 1\n"), "m.mtx:3:1: row index 5 out of range 1..=4"),
            (format!("{h}4 4 1\n1 0 1\n"), "m.mtx:3:3: column index 0 out of range"),
            (format!("{h}4 4 1\n1  x 1\n"), "m.mtx:3:4: expected a column index, found \"x\""),
            (format!("{h}4 4 1\n1 1 abc\n"), "m.mtx:3:5: expected a real value, found \"abc\""),
            (format!("{h}4 4 1\n1 1\n"), "m.mtx:3: entry has 2 fields; expected 3"),
            (format!("{h}4 4 1\n1 1 1 1\n"), "m.mtx:3: entry has 4 fields"),
            (format!("{h}4 4 2\n1 1 1\n"), "m.mtx:3: file ends after 1 of the 2 entries declared on line 2"),
            (format!("{h}4 4 1\n1 1 1\n2 2 2\n"), "m.mtx:4: more entries than the 1 declared on line 2"),
            (
                "%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1.5\n".into(),
                "m.mtx:3:5: expected an integer value",
            ),
            (
                "%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n".into(),
                "m.mtx:2: 2x3 matrix cannot be symmetric",
            ),
            (
                "%%MatrixMarket matrix coordinate real symmetric\n2 2 1\n1 2 1\n".into(),
                "m.mtx:3: entry (1, 2) is not in the lower triangle",
            ),
            (
                "%%MatrixMarket matrix coordinate real skew-symmetric\n2 2 1\n1 1 1\n".into(),
                "m.mtx:3: entry (1, 1) is not in the strict lower triangle",
            ),
            (
                "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n".into(),
                "m.mtx:5: file ends after 3 of the 4 entries",
            ),
            ("%%MatrixMarket matrix array real general\n1 1\n1 2\n".into(), "m.mtx:3: array entry has 2 fields"),
            (
                "%%MatrixMarket matrix array real general\n4294967295 4294967295\n".into(),
                "m.mtx:2: file ends after 0 of",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.starts_with(want), "input {text:?}\n  got:  {e}\n  want: {want}...");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = parse_mtx(&s, "fuzz.mtx");
        }

        #[test]
        fn arbitrary_text_after_header_never_panics(
            head in prop::sample::select(vec![
                "%%MatrixMarket matrix coordinate real general\n",
                "%%MatrixMarket matrix coordinate pattern symmetric\n",
                "%%MatrixMarket matrix coordinate integer skew-symmetric\n",
                "%%MatrixMarket matrix array real general\n",
            ]),
            body in "([0-9 %.eE+-]{0,12}\n){0,8}",
        ) {
            if let Err(e) = parse_mtx(&format!("{head}{body}"), "fuzz.mtx") {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("fuzz.mtx:"));
                prop_assert!(!msg.contains('\n'));
            }
        }
    }
}
