//! The error type of every reader and writer, plus helpers shared by the text formats.

use std::path::Path;

use crate::{Coo, TensorError};

/// Errors raised by the file readers and writers.
///
/// Every message is a single line that starts with the file it concerns, followed by the line
/// (and column) where one applies.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system refused to open, read, write or create something.
    #[error("{file}: cannot {action}: {source}")]
    Io {
        /// File or directory concerned.
        file: String,
        /// What was being attempted (`open`, `read`, `write`, `create directory`).
        action: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A text file is malformed at a known line (and, where known, column; both 1-based).
    #[error("{file}:{line}{}: {msg}", col.map(|c| format!(":{c}")).unwrap_or_default())]
    Parse {
        /// File concerned.
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column (in characters), where known.
        col: Option<usize>,
        /// What is wrong.
        msg: String,
    },
    /// A file is malformed or unsupported in a way not tied to one text line.
    #[error("{file}: {msg}")]
    Invalid {
        /// File concerned.
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// The file parsed, but its contents do not form a valid tensor.
    #[error("{file}: {source}")]
    Tensor {
        /// File (or tensor directory entry) concerned.
        file: String,
        /// Underlying tensor error.
        #[source]
        source: TensorError,
    },
}

impl IoError {
    pub(crate) fn io(file: impl Into<String>, action: &'static str, source: std::io::Error) -> IoError {
        IoError::Io { file: file.into(), action, source }
    }

    pub(crate) fn parse(file: &str, line: usize, col: Option<usize>, msg: impl Into<String>) -> IoError {
        IoError::Parse { file: file.to_string(), line, col, msg: one_line(msg.into()) }
    }

    pub(crate) fn invalid(file: &str, msg: impl Into<String>) -> IoError {
        IoError::Invalid { file: file.to_string(), msg: one_line(msg.into()) }
    }

    pub(crate) fn tensor(file: &str, source: TensorError) -> IoError {
        IoError::Tensor { file: file.to_string(), source }
    }

    /// The file this error concerns, as it appears at the start of the message.
    pub fn file(&self) -> &str {
        match self {
            IoError::Io { file, .. }
            | IoError::Parse { file, .. }
            | IoError::Invalid { file, .. }
            | IoError::Tensor { file, .. } => file,
        }
    }

    /// The 1-based line the error points at, for text-format errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            IoError::Parse { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Replaces line breaks so that a message stays on one line.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.replace(['\n', '\r'], " ")
    } else {
        s
    }
}

/// Quotes a piece of input for an error message: escaped, and cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{:?}...", cut)
    } else {
        format!("{s:?}")
    }
}

/// Display form of a path for error messages.
pub(crate) fn path_name(path: &Path) -> String {
    path.display().to_string()
}

/// Reads a whole file as bytes, naming the file on failure.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(|e| IoError::io(path_name(path), "read", e))
}

/// Reads a whole file as UTF-8 text; invalid UTF-8 is reported with its line.
pub(crate) fn read_text(path: &Path) -> Result<String, IoError> {
    let bytes = read_bytes(path)?;
    bytes_to_text(bytes, &path_name(path))
}

/// Converts bytes to text, reporting the line of the first invalid UTF-8 sequence.
pub(crate) fn bytes_to_text(bytes: Vec<u8>, file: &str) -> Result<String, IoError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        IoError::parse(file, line, Some(col), "invalid UTF-8")
    })
}

/// Formats a value so that it parses back to exactly the same `f64`, compactly: integers print
/// without a fraction (`3`), very large or small magnitudes use an exponent (`1e-7`).
pub(crate) fn fmt_f64(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() || (1e-5..1e16).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Reads a tensor file, choosing the reader by extension: `.mtx` (Matrix Market), `.npz` (scipy
/// sparse or a single dense array) or `.npy` (dense array). Tensor directories need a name and a
/// format, so they are read with [`crate::read_tensor_dir`] instead.
pub fn read_any(path: &Path) -> Result<Coo, IoError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mtx") => crate::mtx::read_mtx(path),
        Some("npz") => crate::npz::read_npz(path),
        Some("npy") => crate::npz::read_npy(path),
        _ => Err(IoError::invalid(&path_name(path), "unknown tensor file extension (expected .mtx, .npz or .npy)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_f64_round_trips() {
        for v in [0.0, -0.0, 1.0, 2.5, 1e-7, 1e300, -3.25e-300, 0.1, 123456789.0, 1e16, f64::MAX, f64::MIN_POSITIVE] {
            let s = fmt_f64(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(fmt_f64(1.0), "1");
        assert_eq!(fmt_f64(1e-7), "1e-7");
        assert_eq!(fmt_f64(f64::NAN).parse::<f64>().map(|v| v.is_nan()), Ok(true));
        assert_eq!(fmt_f64(f64::INFINITY).parse::<f64>(), Ok(f64::INFINITY));
    }

    #[test]
    fn messages_are_one_line() {
        let e = IoError::parse("f.txt", 3, Some(4), "bad\nthing");
        assert_eq!(e.to_string(), "f.txt:3:4: bad thing");
        let e = IoError::parse("f.txt", 3, None, "bad");
        assert_eq!(e.to_string(), "f.txt:3: bad");
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.file(), "f.txt");
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let e = bytes_to_text(b"ab\ncd\xffe".to_vec(), "x").unwrap_err();
        assert_eq!(e.to_string(), "x:2:3: invalid UTF-8");
    }

    #[test]
    fn read_any_rejects_unknown_extension() {
        let e = read_any(Path::new("/nonexistent/a.txt")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/a.txt: unknown"), "{e}");
        let e = read_any(Path::new("/nonexistent/a.mtx")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/a.mtx: cannot read"), "{e}");
    }
}
