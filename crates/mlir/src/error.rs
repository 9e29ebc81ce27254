//! The frontend's one error type: a message with the MLIR position it concerns.

use fuseflow_ir::{IrError, Span};

/// An error in an MLIR file, displayed as `FILE:LINE:COL: message` (the position is omitted
/// when unknown). Messages name the operation, e.g. "`linalg.generic` at line 40: body with
/// two reductions is not supported".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct MlirError {
    /// File name as given.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub col: u32,
    /// One line.
    pub message: String,
}

impl MlirError {
    /// An error at a position.
    pub fn at(file: &str, span: Span, message: impl Into<String>) -> MlirError {
        MlirError { file: file.to_string(), line: span.line, col: span.col, message: message.into() }
    }

    /// An error about the whole file.
    pub fn whole_file(file: &str, message: impl Into<String>) -> MlirError {
        MlirError { file: file.to_string(), line: 0, col: 0, message: message.into() }
    }

    fn render(&self) -> String {
        fuseflow_ir::located(&self.file, self.line, self.col, &self.message)
    }
}

impl From<IrError> for MlirError {
    /// The IR's errors carry the MLIR positions the translation gave its statements.
    fn from(e: IrError) -> MlirError {
        MlirError { file: e.file, line: e.line, col: e.col, message: e.message }
    }
}
