//! Building a [`Program`] in code, for frontends that do not start from program text (the
//! MLIR frontend). Statement-level built-ins are expanded exactly as the parser expands them,
//! so a built-in built here fuses and shares rows like one written in a program file.

use std::collections::BTreeMap;

use crate::ast::{Access, Expr, FuseGroup, Program, Span, Stmt, TensorDecl, UserStmt};
use crate::builtin::{expand, Builtin, BuiltinStmt, SourceStmt, BUILTINS};
use crate::error::IrError;

/// One statement as a frontend writes it: ordinary, or a statement-level built-in.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildStmt {
    /// An ordinary statement `lhs = rhs`.
    Plain(Stmt),
    /// `lhs = name(index, arg)` with `name` one of [`BUILTINS`].
    Builtin {
        /// The built-in's name (`softmax`, `masked_softmax`, `layernorm`).
        name: String,
        /// Left-hand side.
        lhs: Access,
        /// The index normalised over (an index of `lhs`).
        index: String,
        /// The argument expression.
        arg: Expr,
        /// Position of the statement (used for the statement, its index and its name).
        span: Span,
    },
}

/// Builds a [`Program`] from declarations, statements (built-ins expanded as the parser does)
/// and fusion groups in user statement numbering. The result still has to be [`crate::check`]ed.
/// An unknown built-in name is an error at the statement's position.
pub fn build_program(
    file: &str,
    decls: Vec<TensorDecl>,
    stmts: Vec<BuildStmt>,
    groups: Vec<FuseGroup>,
    params: BTreeMap<String, i64>,
) -> Result<Program, IrError> {
    let mut src = Vec::with_capacity(stmts.len());
    let mut sources = Vec::with_capacity(stmts.len());
    for s in stmts {
        match s {
            BuildStmt::Plain(st) => {
                sources.push((st.span, None));
                src.push(SourceStmt::Plain(st));
            }
            BuildStmt::Builtin { name, lhs, index, arg, span } => {
                let Some(kind) = Builtin::from_name(&name) else {
                    return Err(IrError::at(
                        file,
                        span,
                        format!("unknown built-in {name} (built-ins: {})", BUILTINS.join(", ")),
                    ));
                };
                sources.push((span, Some(kind.name())));
                src.push(SourceStmt::Builtin(BuiltinStmt {
                    kind,
                    lhs,
                    index,
                    index_span: span,
                    arg,
                    span,
                    name_span: span,
                }));
            }
        }
    }
    let expanded = expand(file, decls, &params, src)?;
    let user_stmts = sources
        .into_iter()
        .zip(expanded.ranges)
        .map(|((span, builtin), stmts)| UserStmt { stmts, builtin, span })
        .collect();
    Ok(Program {
        file: file.to_string(),
        decls: expanded.decls,
        stmts: expanded.stmts,
        user_stmts,
        groups,
        params,
        pars: Vec::new(),
    })
}
