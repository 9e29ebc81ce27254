//! Tensor index notation: the program text, its parser and its checker.
//!
//! Pipeline position: frontends → **tensor IR** → fusion/scheduling → dataflow graph → simulator.
//! This crate knows nothing about dataflow graphs or simulation.
//!
//! Entry points: [`parse`] (text → [`Program`]), [`check`] ([`Program`] → [`CheckedProgram`],
//! with every reduction explicit), [`load`] (both, from a file), [`pretty`] (back to text) and
//! [`load_inputs`] (the declared input tensors). [`parse_with`] and [`load_with`] also select a
//! `preset` line ([`Overrides`]); the grammar is documented in the parser module.
//!
//! Statement-level built-ins (`softmax`, `masked_softmax`, `layernorm`; see [`builtin`]) are
//! expanded by the parser into ordinary statements, so a [`Program`] and everything after it
//! only contain ordinary statements.

#![warn(missing_docs)]

pub mod ast;
mod builder;
pub mod builtin;
mod check;
mod data;
mod error;
mod lexer;
mod parser;
mod pretty;

use std::collections::BTreeMap;
use std::path::Path;

pub use ast::*;
pub use builder::{build_program, BuildStmt};
pub use builtin::{BUILTINS, LAYERNORM_EPS};
pub use check::check;
pub use data::{load_inputs, load_inputs_with, stored_bytes, DataError, LoadOptions, Loaded};
pub use error::{located, IrError, IrResult};
pub use parser::{parse, parse_with, Overrides, MAX_EXPR_DEPTH, MAX_LANES, RESERVED};
pub use pretty::{
    binary_name, format_name, group_text, pretty, pretty_decl, pretty_expr, pretty_stmt, reduce_name, unary_name,
};

/// Reads, parses and checks a program file. An unreadable file is an error naming the path.
pub fn load(path: &Path, params: &BTreeMap<String, i64>) -> Result<CheckedProgram, IrError> {
    load_with(path, &Overrides::params(params))
}

/// [`load`] with a preset and explicit parameter values (see [`parse_with`]).
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<CheckedProgram, IrError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path)
        .map_err(|e| IrError::whole_file(&file, format!("cannot read program file: {e}")))?;
    check(parse_with(&src, &file, overrides)?)
}

#[cfg(test)]
mod tests;
