//! Tensor index notation: the program text, its parser and its checker.
//!
//! Pipeline position: frontends → **tensor IR** → fusion/scheduling → dataflow graph → simulator.
//! This crate knows nothing about dataflow graphs or simulation.

pub mod ast;

pub use ast::*;
