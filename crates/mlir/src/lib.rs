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

mod arg_names;
pub mod ast;
mod dynamic;
mod error;
pub mod idioms;
mod layout;
mod reshape;
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

/// Translates the module into a checked program. A module with one function is that function;
/// with several, every function is translated on its own (its tensors prefixed with its name,
/// `matmul1_arg0`) and becomes one fusion group (`--fusion partial`), in file order, and
/// `--input`/`--density` name `FUNC.NAME`.
pub fn translate(module: &Module, file: &str, opts: &Options) -> Result<Translated, MlirError> {
    if module.funcs.is_empty() {
        return Err(MlirError::whole_file(file, "the module has no function with a body"));
    }
    // Arguments named by their attributes (`torch.arg_name`) are bound by those names; every
    // pass after this one sees SSA names only.
    let opts = &arg_names::canonical(module, file, opts)?;
    // Reshapes that split or merge dimensions become relabellings first, so that sizes
    // (`--param`) and everything after see the finer dimensions.
    // Dynamic sizes (`?`) are resolved first: everything after sees static shapes.
    let several = module.funcs.len() > 1;
    let resolved = module
        .funcs
        .iter()
        .map(|f| {
            let fopts =
                if several { Options { inputs: pick(&opts.inputs, &f.name), ..opts.clone() } } else { opts.clone() };
            dynamic::resolve(file, f, &fopts)
        })
        .collect::<Result<Vec<_>, MlirError>>()?;
    let dynamic_params: std::collections::BTreeSet<&String> = resolved.iter().flat_map(|r| &r.params).collect();
    let relabelled = resolved.iter().map(|r| reshape::relabel(file, &r.func)).collect::<Result<Vec<_>, MlirError>>()?;
    let funcs: Vec<&ast::Func> = relabelled.iter().map(|r| &r.func).collect();
    let mut sizes = std::collections::BTreeSet::new();
    for f in &funcs {
        sizes.extend(ast::sizes(f));
    }
    for name in opts.params.keys().filter(|n| !dynamic_params.contains(n)) {
        let Some(size) = name.strip_prefix('D').and_then(|s| s.parse::<u64>().ok()) else {
            return Err(MlirError::whole_file(
                file,
                format!("--param {name}: an MLIR program's parameters are its sizes, named D<size> (e.g. D1024=64)"),
            ));
        };
        if !sizes.contains(&size) {
            let have: Vec<String> = sizes.iter().filter(|&&s| s > 1).map(|s| format!("D{s}")).collect();
            let of = if several { "the module".to_string() } else { format!("@{}", funcs[0].name) };
            return Err(MlirError::whole_file(
                file,
                format!("--param {name}: no dimension of {of} has that size (sizes: {})", have.join(", ")),
            ));
        }
    }
    if several {
        for name in opts.inputs.keys().chain(opts.densities.keys()) {
            let known = name.split_once('.').is_some_and(|(f, _)| funcs.iter().any(|g| g.name == f));
            if !known {
                let names: Vec<&str> = funcs.iter().map(|f| f.name.as_str()).collect();
                return Err(MlirError::whole_file(
                    file,
                    format!(
                        "--input/--density {name}: the module has several functions ({}); name the value as FUNCTION.NAME",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    let mut notes = module.notes.clone();
    notes.extend(resolved.iter().flat_map(|r| r.notes.iter().cloned()));
    let (mut decls, mut stmts, mut groups, mut bind) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut params = std::collections::BTreeMap::new();
    for (f, r) in funcs.iter().copied().zip(&relabelled) {
        notes.extend(r.notes.iter().cloned());
        let mut lowered = if several {
            let fopts = Options {
                inputs: pick(&opts.inputs, &f.name),
                densities: pick(&opts.densities, &f.name),
                ..opts.clone()
            };
            let mut l = translate::lower_func(file, module, f, &fopts, &r.orig_shapes)?;
            translate::prefix_names(&mut l, &f.name);
            l
        } else {
            translate::lower_func(file, module, f, opts, &r.orig_shapes)?
        };
        notes.append(&mut lowered.notes);
        params.append(&mut lowered.params);
        bind.append(&mut lowered.bind);
        let (mut d, s, idiom_notes) =
            idioms::recognise(lowered.decls, lowered.stmts, &lowered.orig_shapes, &lowered.masked);
        if r.changed {
            layout::plan(&mut d, &s);
        }
        notes.extend(idiom_notes);
        check_masked(file, &lowered.masked, &d, &s)?;
        if several {
            groups.push(fuseflow_ir::FuseGroup { stmts: (stmts.len()..stmts.len() + s.len()).collect(), span: f.span });
        }
        decls.extend(d);
        stmts.extend(s);
    }
    if several {
        notes.push(format!("{} functions: one fusion group each (--fusion partial)", funcs.len()));
    }
    let program = build_program(file, decls, stmts, groups, params)?;
    let program = fuseflow_ir::check(program)?;
    Ok(Translated { program, bind, notes })
}

/// A masked tensor (`x * mask` standing for `masked_fill(mask == 0, -inf)`) means what
/// MLIR says only when a masked softmax reads it: anything else reading it, or returning it,
/// would see zeros where MLIR has −∞.
fn check_masked(
    file: &str,
    masked: &std::collections::BTreeMap<String, fuseflow_ir::Span>,
    decls: &[fuseflow_ir::TensorDecl],
    stmts: &[fuseflow_ir::BuildStmt],
) -> Result<(), MlirError> {
    for (name, span) in masked {
        let mut bad = decls.iter().any(|d| d.name == *name && d.role == fuseflow_ir::Role::Output);
        for st in stmts {
            let (rhs, ok) = match st {
                fuseflow_ir::BuildStmt::Plain(s) => (&s.rhs, false),
                fuseflow_ir::BuildStmt::Builtin { name: b, arg, .. } => (arg, b == "masked_softmax"),
            };
            if !ok {
                rhs.for_each_access(&mut |a| bad |= a.tensor == *name);
            }
        }
        if bad {
            return Err(MlirError::at(
                file,
                *span,
                format!("`linalg.generic` at line {}: a masked_fill(mask == 0, -inf) result is read by something other than a softmax over it (only masked softmax is supported)", span.line),
            ));
        }
    }
    Ok(())
}

/// The entries named `func.NAME`, as `NAME`.
fn pick<V: Clone>(m: &std::collections::BTreeMap<String, V>, func: &str) -> std::collections::BTreeMap<String, V> {
    let prefix = format!("{func}.");
    m.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone()))).collect()
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
