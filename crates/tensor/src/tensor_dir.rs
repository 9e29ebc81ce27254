//! The SAM/Comal tensor-directory text layout.
//!
//! A tensor `T` is stored as one ASCII number per line in these files of a directory:
//!
//! - `tensor_T_mode_shape`: dimension sizes, in logical dimension order;
//! - `tensor_T_mode_<m>_seg` and `tensor_T_mode_<m>_crd`: segment and coordinate arrays of each
//!   compressed level, where `<m>` is the logical dimension that level stores (not the level
//!   index); dense levels have no files;
//! - `tensor_T_mode_vals`: values in position order of the last level.
//!
//! A compressed top level stores `seg = [0, n]`. Unlike Comal, the reader treats a line that is
//! not a number as an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::io_error::{bytes_to_text, fmt_f64, path_name, quote};
use crate::{Format, IoError, LevelData, LevelFormat, Tensor};

/// File name of the shape file of tensor `name`.
pub fn shape_file(name: &str) -> String {
    format!("tensor_{name}_mode_shape")
}

/// File name of the segment array of the level storing logical dimension `dim`.
pub fn seg_file(name: &str, dim: usize) -> String {
    format!("tensor_{name}_mode_{dim}_seg")
}

/// File name of the coordinate array of the level storing logical dimension `dim`.
pub fn crd_file(name: &str, dim: usize) -> String {
    format!("tensor_{name}_mode_{dim}_crd")
}

/// File name of the values array of tensor `name`.
pub fn vals_file(name: &str) -> String {
    format!("tensor_{name}_mode_vals")
}

/// Rejects names that would escape the directory or make empty file names.
fn check_name(dir: &Path, name: &str) -> Result<(), IoError> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(IoError::invalid(
            &path_name(dir),
            format!("tensor name {} must be non-empty and contain no path separators", quote(name)),
        ));
    }
    Ok(())
}

fn write_lines<T: Copy>(path: &Path, items: &[T], f: impl Fn(T) -> String) -> Result<(), IoError> {
    let mut s = String::with_capacity(items.len() * 4);
    for &x in items {
        let _ = writeln!(s, "{}", f(x));
    }
    std::fs::write(path, s).map_err(|e| IoError::io(path_name(path), "write", e))
}

/// Writes `t` into directory `dir` (created if missing) under tensor name `name`. The tensor is
/// validated first. The shape file is in logical dimension order.
pub fn write_tensor_dir(dir: &Path, name: &str, t: &Tensor) -> Result<(), IoError> {
    check_name(dir, name)?;
    t.validate().map_err(|e| IoError::tensor(&path_name(&dir.join(vals_file(name))), e))?;
    std::fs::create_dir_all(dir).map_err(|e| IoError::io(path_name(dir), "create directory", e))?;
    write_lines(&dir.join(shape_file(name)), &t.shape, |n| n.to_string())?;
    for (l, level) in t.levels.iter().enumerate() {
        if let LevelData::Compressed { seg, crd } = level {
            let dim = t.format.mode_order[l];
            write_lines(&dir.join(seg_file(name, dim)), seg, |n| n.to_string())?;
            write_lines(&dir.join(crd_file(name, dim)), crd, |n| n.to_string())?;
        }
    }
    write_lines(&dir.join(vals_file(name)), &t.vals, fmt_f64)
}

/// One parsed file: its display name and numbers with their line numbers.
struct Numbers<T> {
    file: String,
    vals: Vec<T>,
    /// Line of each value (blank lines only occur at the end, so this is `index + 1`).
    last_line: usize,
}

impl<T> Numbers<T> {
    fn line_of(&self, i: usize) -> usize {
        i + 1
    }
}

/// Reads a file of one number per line. Trailing blank lines are allowed; any other line that
/// does not parse as `T` is an error naming the file and line.
fn read_numbers<T: FromStr>(path: &Path, what: &str) -> Result<Numbers<T>, IoError> {
    let file = path_name(path);
    let bytes = std::fs::read(path).map_err(|e| IoError::io(&file, "read", e))?;
    let text = bytes_to_text(bytes, &file)?;
    let lines: Vec<&str> = text.lines().collect();
    let used = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |p| p + 1);
    let mut vals = Vec::with_capacity(used);
    for (i, line) in lines[..used].iter().enumerate() {
        let tok = line.trim();
        if tok.is_empty() {
            return Err(IoError::parse(&file, i + 1, None, format!("blank line; expected {what}")));
        }
        let v = tok.parse::<T>().map_err(|_| {
            let col = line.len() - line.trim_start().len() + 1;
            IoError::parse(&file, i + 1, Some(col), format!("expected {what}, found {}", quote(tok)))
        })?;
        vals.push(v);
    }
    Ok(Numbers { file, vals, last_line: used.max(1) })
}

/// Reads tensor `name` from directory `dir`, given its storage format (which levels are
/// compressed, and the mode order). Every file is checked: each line must be a number of the
/// right kind, the shape must have one size per dimension, each `seg` must have one entry per
/// parent position plus one and be non-decreasing from 0 to the `crd` length, coordinates must
/// be in range and strictly increasing within a fiber, and `vals` must have one value per leaf
/// position. Errors name the file and, where applicable, the line.
pub fn read_tensor_dir(dir: &Path, name: &str, format: &Format) -> Result<Tensor, IoError> {
    check_name(dir, name)?;
    let shape_path = dir.join(shape_file(name));
    let shape_name = path_name(&shape_path);
    let format = Format::new(format.levels.clone(), format.mode_order.clone())
        .map_err(|e| IoError::tensor(&path_name(dir), e))?;
    let shape = read_numbers::<u32>(&shape_path, "a dimension size (unsigned 32-bit integer)")?;
    if shape.vals.len() != format.rank() {
        return Err(IoError::parse(
            &shape_name,
            shape.last_line,
            None,
            format!("{} dimension sizes, but the format {format} has rank {}", shape.vals.len(), format.rank()),
        ));
    }
    let dims: Vec<usize> = shape.vals.iter().map(|&n| n as usize).collect();

    let mut levels = Vec::with_capacity(format.rank());
    let mut parents = 1usize;
    for (l, &lf) in format.levels.iter().enumerate() {
        let dim = format.mode_order[l];
        let size = dims[dim];
        match lf {
            LevelFormat::Dense => {
                parents = parents.checked_mul(size).ok_or_else(|| {
                    IoError::invalid(&shape_name, format!("too many positions at level {l} (dense dimension {dim})"))
                })?;
                levels.push(LevelData::Dense { size });
            }
            LevelFormat::Compressed => {
                let seg =
                    read_numbers::<u32>(&dir.join(seg_file(name, dim)), "a segment bound (unsigned 32-bit integer)")?;
                let crd =
                    read_numbers::<u32>(&dir.join(crd_file(name, dim)), "a coordinate (unsigned 32-bit integer)")?;
                check_level(&seg, &crd, parents, size, dim)?;
                parents = crd.vals.len();
                levels.push(LevelData::Compressed { seg: seg.vals, crd: crd.vals });
            }
        }
    }
    let vals_path = dir.join(vals_file(name));
    let vals = read_numbers::<f64>(&vals_path, "a value")?;
    if vals.vals.len() != parents {
        return Err(IoError::parse(
            &vals.file,
            vals.last_line,
            None,
            format!("{} values, but the last level has {parents} positions", vals.vals.len()),
        ));
    }
    let t = Tensor { shape: dims, format, levels, vals: vals.vals };
    t.validate().map_err(|e| IoError::tensor(&path_name(&vals_path), e))?;
    Ok(t)
}

/// Checks one compressed level's arrays, naming the offending file and line.
fn check_level(seg: &Numbers<u32>, crd: &Numbers<u32>, parents: usize, size: usize, dim: usize) -> Result<(), IoError> {
    let s = &seg.vals;
    if s.len() != parents.saturating_add(1) {
        return Err(IoError::parse(
            &seg.file,
            seg.last_line,
            None,
            format!("{} entries, expected {} (one per parent position plus one)", s.len(), parents.saturating_add(1)),
        ));
    }
    if s[0] != 0 {
        return Err(IoError::parse(&seg.file, 1, None, format!("first entry is {}, must be 0", s[0])));
    }
    for p in 1..s.len() {
        if s[p] < s[p - 1] {
            return Err(IoError::parse(
                &seg.file,
                seg.line_of(p),
                None,
                format!("{} is less than the previous entry {}", s[p], s[p - 1]),
            ));
        }
    }
    let n = crd.vals.len();
    if s[s.len() - 1] as usize != n {
        return Err(IoError::parse(
            &seg.file,
            seg.line_of(s.len() - 1),
            None,
            format!("last entry is {}, but the crd file has {n} coordinates", s[s.len() - 1]),
        ));
    }
    for p in 0..parents {
        let (lo, hi) = (s[p] as usize, s[p + 1] as usize);
        for w in lo..hi {
            let c = crd.vals[w];
            if c as usize >= size {
                return Err(IoError::parse(
                    &crd.file,
                    crd.line_of(w),
                    None,
                    format!("coordinate {c} out of range for dimension {dim} of size {size}"),
                ));
            }
            if w > lo && c <= crd.vals[w - 1] {
                return Err(IoError::parse(
                    &crd.file,
                    crd.line_of(w),
                    None,
                    format!("coordinate {c} does not increase within its fiber (previous is {})", crd.vals[w - 1]),
                ));
            }
        }
    }
    Ok(())
}

/// Paths of every file `write_tensor_dir` writes for a tensor of this format.
pub fn tensor_dir_files(dir: &Path, name: &str, format: &Format) -> Vec<PathBuf> {
    let mut out = vec![dir.join(shape_file(name))];
    for (l, &lf) in format.levels.iter().enumerate() {
        if lf == LevelFormat::Compressed {
            if let Some(&dim) = format.mode_order.get(l) {
                out.push(dir.join(seg_file(name, dim)));
                out.push(dir.join(crd_file(name, dim)));
            }
        }
    }
    out.push(dir.join(vals_file(name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Coo;
    use proptest::prelude::*;

    struct TmpDir(PathBuf);

    impl TmpDir {
        fn new(tag: &str) -> TmpDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "fuseflow-tdir-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TmpDir(p)
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn example_b() -> Coo {
        let mut c = Coo::new(vec![4, 4]);
        for (i, j, v) in [(0, 1, 1.0), (1, 0, 2.0), (1, 2, 3.0), (3, 1, 4.0), (3, 3, 5.0)] {
            c.push(&[i, j], v);
        }
        c
    }

    fn dcsr() -> Format {
        Format::all_compressed(2)
    }

    #[test]
    fn dcsr_b_matches_the_documented_files() {
        let d = TmpDir::new("b");
        let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(&d.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "tensor_B_mode_0_crd",
                "tensor_B_mode_0_seg",
                "tensor_B_mode_1_crd",
                "tensor_B_mode_1_seg",
                "tensor_B_mode_shape",
                "tensor_B_mode_vals"
            ]
        );
        let read = |f: &str| std::fs::read_to_string(d.0.join(f)).unwrap();
        assert_eq!(read("tensor_B_mode_shape"), "4\n4\n");
        assert_eq!(read("tensor_B_mode_0_seg"), "0\n3\n");
        assert_eq!(read("tensor_B_mode_0_crd"), "0\n1\n3\n");
        assert_eq!(read("tensor_B_mode_1_seg"), "0\n1\n3\n5\n");
        assert_eq!(read("tensor_B_mode_1_crd"), "1\n0\n2\n1\n3\n");
        assert_eq!(read("tensor_B_mode_vals"), "1\n2\n3\n4\n5\n");
        assert_eq!(read_tensor_dir(&d.0, "B", &dcsr()).unwrap(), t);
        let mut files = tensor_dir_files(&d.0, "B", &dcsr());
        files.sort();
        assert_eq!(files.len(), 6);
        assert!(files.iter().all(|f| f.exists()));
    }

    fn round_trip(coo: &Coo, format: &Format) {
        let d = TmpDir::new("rt");
        let t = Tensor::from_coo(coo, format).unwrap();
        write_tensor_dir(&d.0, "t3-0,1", &t).unwrap();
        let back = read_tensor_dir(&d.0, "t3-0,1", format).unwrap();
        assert_eq!(back, t, "format {format}");
    }

    #[test]
    fn round_trips_across_formats_and_ranks() {
        use LevelFormat::{Compressed as C, Dense as D};
        let m = crate::random_coo(&[9, 7], 0.3, 4).unwrap();
        for (levels, order) in [
            (vec![C, C], vec![0, 1]),
            (vec![D, C], vec![0, 1]),
            (vec![C, D], vec![0, 1]),
            (vec![D, D], vec![0, 1]),
            (vec![C, C], vec![1, 0]),
            (vec![D, C], vec![1, 0]),
        ] {
            round_trip(&m, &Format::new(levels, order).unwrap());
        }
        let v = crate::random_coo(&[10], 0.5, 5).unwrap();
        round_trip(&v, &Format::all_compressed(1));
        round_trip(&v, &Format::dense(1));
        let t3 = crate::random_coo(&[4, 5, 6], 0.2, 6).unwrap();
        for (levels, order) in
            [(vec![C, C, C], vec![0, 1, 2]), (vec![D, C, C], vec![2, 0, 1]), (vec![C, D, C], vec![1, 2, 0])]
        {
            round_trip(&t3, &Format::new(levels, order).unwrap());
        }
        // Empty tensors, density 0 and 1, and rank 0.
        round_trip(&Coo::new(vec![3, 4]), &dcsr());
        round_trip(&Coo::new(vec![3, 4]), &Format::csr());
        round_trip(&Coo::new(vec![0, 0]), &dcsr());
        round_trip(&crate::random_coo(&[6, 5], 0.0, 1).unwrap(), &dcsr());
        round_trip(&crate::random_coo(&[6, 5], 1.0, 1).unwrap(), &dcsr());
        let mut s = Coo::new(vec![]);
        s.push(&[], 2.5);
        round_trip(&s, &Format::dense(0));
    }

    #[test]
    fn column_major_files_are_named_by_dimension() {
        let d = TmpDir::new("cm");
        let f = Format::new(vec![LevelFormat::Dense, LevelFormat::Compressed], vec![1, 0]).unwrap();
        let t = Tensor::from_coo(&example_b(), &f).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        // Level 1 stores dimension 0 (rows); the top level (dimension 1) is dense.
        assert!(d.0.join("tensor_B_mode_0_seg").exists());
        assert!(!d.0.join("tensor_B_mode_1_seg").exists());
        assert_eq!(std::fs::read_to_string(d.0.join("tensor_B_mode_0_seg")).unwrap(), "0\n1\n3\n4\n5\n");
        assert_eq!(std::fs::read_to_string(d.0.join("tensor_B_mode_0_crd")).unwrap(), "1\n0\n3\n1\n3\n");
        // The shape file is in logical order even for a permuted all-dense view.
        let mut wide = example_b();
        wide.shape = vec![4, 5];
        let dense_cm = Format::new(vec![LevelFormat::Dense; 2], vec![1, 0]).unwrap();
        let t = Tensor::from_coo(&wide, &dense_cm).unwrap();
        write_tensor_dir(&d.0, "D", &t).unwrap();
        assert_eq!(std::fs::read_to_string(d.0.join("tensor_D_mode_shape")).unwrap(), "4\n5\n");
        // Values are in the view's storage order: column 0 first.
        let vals = std::fs::read_to_string(d.0.join("tensor_D_mode_vals")).unwrap();
        assert!(vals.starts_with("0\n2\n0\n0\n1\n"), "{vals}");
        assert_eq!(read_tensor_dir(&d.0, "D", &dense_cm).unwrap(), t);
    }

    /// Writes B as DCSR, overwrites one file, and returns the read error message and the
    /// directory's display name.
    fn corrupt(file: &str, content: &str) -> (String, String) {
        let d = TmpDir::new("bad");
        let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        std::fs::write(d.0.join(file), content).unwrap();
        let e = read_tensor_dir(&d.0, "B", &dcsr()).unwrap_err().to_string();
        (e, path_name(&d.0))
    }

    #[test]
    fn malformed_directories_name_file_and_line() {
        // (file to overwrite, its new content, expected message after the directory path)
        let cases = [
            (
                "tensor_B_mode_shape",
                "4\n4.0\n",
                "tensor_B_mode_shape:2:1: expected a dimension size (unsigned 32-bit integer), found \"4.0\"",
            ),
            (
                "tensor_B_mode_shape",
                "4\n",
                "tensor_B_mode_shape:1: 1 dimension sizes, but the format (compressed, compressed) has rank 2",
            ),
            ("tensor_B_mode_shape", "4\n4\n4\n", "tensor_B_mode_shape:3: 3 dimension sizes"),
            ("tensor_B_mode_shape", "4\n-4\n", "tensor_B_mode_shape:2:1: expected a dimension size"),
            ("tensor_B_mode_shape", "4\n\n4\n", "tensor_B_mode_shape:2: blank line"),
            (
                "tensor_B_mode_shape",
                "4\n  x\n",
                "tensor_B_mode_shape:2:3: expected a dimension size (unsigned 32-bit integer), found \"x\"",
            ),
            ("tensor_B_mode_shape", "", "tensor_B_mode_shape:1: 0 dimension sizes"),
            (
                "tensor_B_mode_shape",
                "4\n2\n",
                "tensor_B_mode_1_crd:3: coordinate 2 out of range for dimension 1 of size 2",
            ),
            ("tensor_B_mode_0_seg", "0\n3\n4\n", "tensor_B_mode_0_seg:3: 3 entries, expected 2"),
            ("tensor_B_mode_0_seg", "1\n3\n", "tensor_B_mode_0_seg:1: first entry is 1, must be 0"),
            (
                "tensor_B_mode_0_seg",
                "0\n2\n",
                "tensor_B_mode_0_seg:2: last entry is 2, but the crd file has 3 coordinates",
            ),
            ("tensor_B_mode_1_seg", "0\n3\n1\n5\n", "tensor_B_mode_1_seg:3: 1 is less than the previous entry 3"),
            ("tensor_B_mode_1_seg", "0\n1\n3\nfive\n", "tensor_B_mode_1_seg:4:1: expected a segment bound"),
            (
                "tensor_B_mode_0_crd",
                "0\n1\n4\n",
                "tensor_B_mode_0_crd:3: coordinate 4 out of range for dimension 0 of size 4",
            ),
            (
                "tensor_B_mode_0_crd",
                "0\n1\n1\n",
                "tensor_B_mode_0_crd:3: coordinate 1 does not increase within its fiber",
            ),
            (
                "tensor_B_mode_1_crd",
                "1\n0\n2\n1\n",
                "tensor_B_mode_1_seg:4: last entry is 5, but the crd file has 4 coordinates",
            ),
            ("tensor_B_mode_1_crd", "1\n0\n2\n1\n3.5\n", "tensor_B_mode_1_crd:5:1: expected a coordinate"),
            (
                "tensor_B_mode_vals",
                "1\n2\n3\n4\n",
                "tensor_B_mode_vals:4: 4 values, but the last level has 5 positions",
            ),
            ("tensor_B_mode_vals", "1\n2\n3\n4\n5\n6\n", "tensor_B_mode_vals:6: 6 values"),
            ("tensor_B_mode_vals", "1\n2\nthree\n4\n5\n", "tensor_B_mode_vals:3:1: expected a value, found \"three\""),
            ("tensor_B_mode_vals", "1\n2\n3\n4\n\u{2}\n", "tensor_B_mode_vals:5:1: expected a value"),
        ];
        for (file, content, want) in cases {
            let (e, dir) = corrupt(file, content);
            let want = format!("{dir}{}{want}", std::path::MAIN_SEPARATOR);
            assert!(e.starts_with(&want), "file {file}\n  got:  {e}\n  want: {want}...");
            assert!(!e.contains('\n'), "{e}");
        }
        // Invalid UTF-8 is reported with its line and column.
        let d = TmpDir::new("utf8");
        let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        std::fs::write(d.0.join("tensor_B_mode_vals"), b"1\n2\n3\n4\n5\xff\n").unwrap();
        let e = read_tensor_dir(&d.0, "B", &dcsr()).unwrap_err().to_string();
        assert!(e.ends_with("tensor_B_mode_vals:5:2: invalid UTF-8"), "{e}");
    }

    #[test]
    fn trailing_blank_lines_and_crlf_are_accepted() {
        let d = TmpDir::new("crlf");
        let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        std::fs::write(d.0.join("tensor_B_mode_vals"), "1\r\n2\r\n 3 \r\n4\r\n5\r\n\r\n\n").unwrap();
        assert_eq!(read_tensor_dir(&d.0, "B", &dcsr()).unwrap(), t);
    }

    #[test]
    fn missing_files_and_bad_names_are_errors() {
        let d = TmpDir::new("miss");
        let e = read_tensor_dir(&d.0, "B", &dcsr()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: cannot read", path_name(&d.0.join("tensor_B_mode_shape")))), "{e}");
        let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
        write_tensor_dir(&d.0, "B", &t).unwrap();
        std::fs::remove_file(d.0.join("tensor_B_mode_1_crd")).unwrap();
        let e = read_tensor_dir(&d.0, "B", &dcsr()).unwrap_err().to_string();
        assert!(e.contains("tensor_B_mode_1_crd: cannot read"), "{e}");
        // Reading with the wrong format: CSR expects a dense top level, so seg has the wrong length.
        write_tensor_dir(&d.0, "B", &t).unwrap();
        let e = read_tensor_dir(&d.0, "B", &Format::csr()).unwrap_err().to_string();
        assert!(e.contains("tensor_B_mode_1_seg:4: 4 entries, expected 5"), "{e}");
        for bad in ["", "a/b", "..", "x\\y"] {
            assert!(write_tensor_dir(&d.0, bad, &t).is_err());
            assert!(read_tensor_dir(&d.0, bad, &dcsr()).is_err());
        }
        let bad_format = Format { levels: vec![LevelFormat::Dense; 2], mode_order: vec![0, 0] };
        assert!(read_tensor_dir(&d.0, "B", &bad_format).is_err());
        // Writing an invalid tensor is refused before touching the disk.
        let mut broken = t.clone();
        broken.vals.pop();
        let e = write_tensor_dir(&d.0.join("new"), "B", &broken).unwrap_err().to_string();
        assert!(e.contains("tensor_B_mode_vals: invalid fibertree"), "{e}");
        assert!(!d.0.join("new").exists());
    }

    #[test]
    fn huge_dense_shape_is_an_error_not_an_allocation() {
        let d = TmpDir::new("huge");
        std::fs::write(d.0.join("tensor_H_mode_shape"), "4294967295\n4294967295\n4294967295\n").unwrap();
        std::fs::write(d.0.join("tensor_H_mode_vals"), "1\n").unwrap();
        let e = read_tensor_dir(&d.0, "H", &Format::dense(3)).unwrap_err().to_string();
        assert!(e.contains("tensor_H_mode_shape: too many positions") || e.contains("values, but"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_files_never_panic(
            shape in "([0-9]{1,2}\n){0,3}",
            seg0 in "([0-9]{1,2}\n){0,4}",
            crd0 in "([0-9x.]{1,2}\n){0,5}",
            seg1 in "([0-9]{1,2}\n){0,8}",
            crd1 in "([0-9 -]{0,2}\n){0,8}",
            vals in "([0-9.eE-]{0,3}\n){0,8}",
            dense_top in any::<bool>(),
            swap in any::<bool>(),
        ) {
            let d = TmpDir::new("fuzz");
            for (f, s) in [
                ("tensor_F_mode_shape", &shape),
                ("tensor_F_mode_0_seg", &seg0),
                ("tensor_F_mode_0_crd", &crd0),
                ("tensor_F_mode_1_seg", &seg1),
                ("tensor_F_mode_1_crd", &crd1),
                ("tensor_F_mode_vals", &vals),
            ] {
                std::fs::write(d.0.join(f), s).unwrap();
            }
            let top = if dense_top { LevelFormat::Dense } else { LevelFormat::Compressed };
            let order = if swap { vec![1, 0] } else { vec![0, 1] };
            let f = Format::new(vec![top, LevelFormat::Compressed], order).unwrap();
            match read_tensor_dir(&d.0, "F", &f) {
                Ok(t) => prop_assert!(t.validate().is_ok()),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("tensor_F_mode_"), "{}", msg);
                    prop_assert!(!msg.contains('\n'));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_in_one_file_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            which in 0usize..6,
        ) {
            let d = TmpDir::new("fuzzb");
            let t = Tensor::from_coo(&example_b(), &dcsr()).unwrap();
            write_tensor_dir(&d.0, "B", &t).unwrap();
            let files = tensor_dir_files(&d.0, "B", &dcsr());
            std::fs::write(&files[which], &bytes).unwrap();
            if let Err(e) = read_tensor_dir(&d.0, "B", &dcsr()) {
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
