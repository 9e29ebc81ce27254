//! The one error type of the front end: a message with a source position.

use crate::ast::Span;

/// A parse or check error, displayed as `FILE:LINE:COL: message` (line/column omitted when 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct IrError {
    /// File name (as given to the parser).
    pub file: String,
    /// 1-based line, or 0 when the error has no position.
    pub line: u32,
    /// 1-based column, or 0 when unknown.
    pub col: u32,
    /// One-line description naming the tensor or index concerned.
    pub message: String,
}

impl IrError {
    /// An error at a position.
    pub fn at(file: &str, span: Span, message: impl Into<String>) -> IrError {
        IrError { file: file.to_string(), line: span.line, col: span.col, message: message.into() }
    }

    /// An error without a position.
    pub fn whole_file(file: &str, message: impl Into<String>) -> IrError {
        IrError { file: file.to_string(), line: 0, col: 0, message: message.into() }
    }

    fn render(&self) -> String {
        located(&self.file, self.line, self.col, &self.message)
    }
}

/// `FILE:LINE:COL: message`, leaving out an empty file and a zero line or column: how every
/// frontend (index notation, MLIR) shows a positioned error.
pub fn located(file: &str, line: u32, col: u32, message: &str) -> String {
    let mut out = String::new();
    if !file.is_empty() {
        out.push_str(file);
        out.push(':');
    }
    if line != 0 {
        out.push_str(&format!("{line}:"));
        if col != 0 {
            out.push_str(&format!("{col}:"));
        }
    }
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(message);
    out
}

/// Result alias for the front end.
pub type IrResult<T> = Result<T, IrError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_missing_positions() {
        let e = IrError::at("p.ein", Span { line: 3, col: 7 }, "unknown tensor A");
        assert_eq!(e.to_string(), "p.ein:3:7: unknown tensor A");
        let e = IrError::at("p.ein", Span { line: 3, col: 0 }, "x");
        assert_eq!(e.to_string(), "p.ein:3: x");
        let e = IrError::whole_file("p.ein", "cannot read");
        assert_eq!(e.to_string(), "p.ein: cannot read");
        let e = IrError::whole_file("", "bare");
        assert_eq!(e.to_string(), "bare");
    }
}
