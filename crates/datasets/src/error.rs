//! The error type of every loader and generator.

use fuseflow_tensor::{IoError, TensorError};

/// Errors raised while loading or generating a graph dataset.
///
/// Every message is a single line. Errors about a file start with the file's name, followed by
/// the line (text formats) or byte offset (pickles) where one applies.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A Matrix Market or `.npz` reader of `fuseflow-tensor` failed (its message names the file
    /// and, for text, the line).
    #[error(transparent)]
    Read(#[from] IoError),
    /// The operating system refused to read something.
    #[error("{file}: cannot {action}: {source}")]
    Io {
        /// File or directory concerned.
        file: String,
        /// What was being attempted (`read`, `decompress`).
        action: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A text file is malformed at a known line.
    #[error("{file}:{line}: {msg}")]
    Parse {
        /// File concerned.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A pickle is malformed or uses a construct outside the supported subset.
    #[error("{file}: byte {offset}: {msg}")]
    Pickle {
        /// File concerned.
        file: String,
        /// 0-based offset of the offending opcode.
        offset: usize,
        /// What is wrong.
        msg: String,
    },
    /// A file or directory is malformed or unsupported in a way not tied to one line.
    #[error("{file}: {msg}")]
    Invalid {
        /// File or directory concerned.
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// Neither a known dataset name nor an existing path.
    #[error("unknown dataset {name:?}: not a built-in name ({known}) and no such file or directory")]
    Unknown {
        /// The name or path asked for.
        name: String,
        /// The built-in names, comma separated.
        known: String,
    },
    /// A function argument is out of its domain.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// Building or checking a tensor failed (for example a density outside `[0, 1]`).
    #[error("{0}")]
    Tensor(#[from] TensorError),
}

impl DatasetError {
    pub(crate) fn io(file: &str, action: &'static str, source: std::io::Error) -> DatasetError {
        DatasetError::Io { file: file.to_string(), action, source }
    }

    pub(crate) fn parse(file: &str, line: usize, msg: impl Into<String>) -> DatasetError {
        DatasetError::Parse { file: file.to_string(), line, msg: one_line(msg.into()) }
    }

    pub(crate) fn pickle(file: &str, offset: usize, msg: impl Into<String>) -> DatasetError {
        DatasetError::Pickle { file: file.to_string(), offset, msg: one_line(msg.into()) }
    }

    pub(crate) fn invalid(file: &str, msg: impl Into<String>) -> DatasetError {
        DatasetError::Invalid { file: file.to_string(), msg: one_line(msg.into()) }
    }

    pub(crate) fn argument(msg: impl Into<String>) -> DatasetError {
        DatasetError::Argument(one_line(msg.into()))
    }

    /// The file this error concerns, where there is one.
    pub fn file(&self) -> Option<&str> {
        match self {
            DatasetError::Read(e) => Some(e.file()),
            DatasetError::Io { file, .. }
            | DatasetError::Parse { file, .. }
            | DatasetError::Pickle { file, .. }
            | DatasetError::Invalid { file, .. } => Some(file),
            DatasetError::Unknown { .. } | DatasetError::Argument(_) | DatasetError::Tensor(_) => None,
        }
    }

    /// The 1-based line the error points at, for text-format errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            DatasetError::Read(e) => e.line(),
            DatasetError::Parse { line, .. } => Some(*line),
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
pub(crate) fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let s = String::from_utf8_lossy(bytes);
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    } else {
        format!("{s:?}")
    }
}
