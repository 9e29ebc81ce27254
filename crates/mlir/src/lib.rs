//! MLIR frontend: reads the linalg-on-tensors + `sparse_tensor` subset that torch-mlir emits
//! (and that the FuseFlow compiler takes) and builds the equivalent tensor-index-notation
//! program in code, so that everything after loading is the ordinary pipeline.
//!
//! Pipeline position: **MLIR text** → this crate → [`fuseflow_ir::CheckedProgram`] → compiler.
//! [`parse`] gives the [`Module`] (no LLVM: a hand-written parser that never panics),
//! [`translate`] the program plus the data of constants (`dense_resource` blobs, dense arrays)
//! and of `--input` files, to bind to the program's inputs. [`load`] does both from a file.
//! Idioms ([`idioms`]): torch-mlir's decomposed softmax and layer norm become the `softmax` and
//! `layernorm` built-ins, so they fuse and share rows exactly as programs that call them.

#![warn(missing_docs)]

pub mod ast;
mod error;
pub mod idioms;
mod syntax;
mod translate;

use std::path::Path;

use fuseflow_ir::{build_program, CheckedProgram};
use fuseflow_tensor::Coo;

pub use ast::Module;
pub use error::MlirError;
pub use syntax::parse;
pub use translate::{Options, DEFAULT_SPARSE_DENSITY};

/// A translated MLIR function.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The program (checked). Parameters `D<size>` list the sizes that `--param` can change.
    pub program: CheckedProgram,
    /// Data to bind to inputs: constants with values and `--input` files (already squeezed
    /// and permuted to the input's shape).
    pub bind: Vec<(String, Coo)>,
    /// What was ignored, generated or recognised, one line each.
    pub notes: Vec<String>,
}

/// Translates the module's function (the one named `forward` or `main`, else the first with a
/// body) into a checked program.
pub fn translate(module: &Module, file: &str, opts: &Options) -> Result<Translated, MlirError> {
    let funcs = &module.funcs;
    let f = funcs
        .iter()
        .find(|f| f.name == "forward" || f.name == "main")
        .or_else(|| funcs.first())
        .ok_or_else(|| MlirError::whole_file(file, "the module has no function with a body"))?;
    for name in opts.params.keys() {
        let ok = name.strip_prefix('D').and_then(|s| s.parse::<u64>().ok()).is_some();
        if !ok {
            return Err(MlirError::whole_file(
                file,
                format!("--param {name}: an MLIR program's parameters are its sizes, named D<size> (e.g. D1024=64)"),
            ));
        }
    }
    let lowered = translate::lower_func(file, module, f, opts)?;
    let sizes = ast::sizes(f);
    for name in opts.params.keys() {
        let size = name.strip_prefix('D').and_then(|s| s.parse::<u64>().ok());
        if !size.is_some_and(|s| sizes.contains(&s)) {
            let have: Vec<String> = sizes.iter().filter(|&&s| s > 1).map(|s| format!("D{s}")).collect();
            return Err(MlirError::whole_file(
                file,
                format!("--param {name}: no dimension of @{} has that size (sizes: {})", f.name, have.join(", ")),
            ));
        }
    }
    let mut notes = module.notes.clone();
    notes.extend(lowered.notes);
    if funcs.len() > 1 {
        notes.push(format!("{} functions: translated @{} only", funcs.len(), f.name));
    }
    let (decls, stmts, idiom_notes) = idioms::recognise(lowered.decls, lowered.stmts, &lowered.orig_shapes);
    notes.extend(idiom_notes);
    let program = build_program(file, decls, stmts, Vec::new(), lowered.params)?;
    let program = fuseflow_ir::check(program)?;
    Ok(Translated { program, bind: lowered.bind, notes })
}

/// Reads, parses and translates an `.mlir` file.
pub fn load(path: &Path, opts: &Options) -> Result<Translated, MlirError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path)
        .map_err(|e| MlirError::whole_file(&file, format!("cannot read MLIR file: {e}")))?;
    let module = parse(&src, &file)?;
    translate(&module, &file, opts)
}

/// Whether a path names an MLIR file (by its extension).
pub fn is_mlir(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mlir"))
}
