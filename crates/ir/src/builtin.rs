//! Statement-level built-ins: `Y(i,j) = softmax(j, E)`, `Y(i,j) = masked_softmax(j, E)` and
//! `Y(i,j) = layernorm(j, E)`.
//!
//! A built-in is the whole right-hand side of a statement; its first argument is the index it
//! normalises over (an index of the left-hand side) and the other left-hand-side indices are the
//! "row". The parser records built-ins and, once every declaration is known, expands each into
//! ordinary statements over temporaries it declares itself, named after the left-hand side:
//!
//! ```text
//! softmax(j, E)          Y__max(r) = maxr(j, E)
//!                        Y__exp(r,j) = exp(E - Y__max(r))
//!                        Y__sum(r) = sum(j, Y__exp(r,j))
//!                        Y(r,j) = Y__exp(r,j) / Y__sum(r)
//! masked_softmax(j, E)   Y__max(r) = maxnz(j, E)
//!                        Y__exp(r,j) = expsubnz(E, Y__max(r))
//!                        Y__sum(r) = sum(j, Y__exp(r,j))
//!                        Y(r,j) = Y__exp(r,j) / Y__sum(r)
//! layernorm(j, E)        Y__mean(r) = sum(j, E) / D
//!                        Y__cen(r,j) = E - Y__mean(r)
//!                        Y__var(r) = sum(j, Y__cen(r,j) * Y__cen(r,j)) / D
//!                        Y__rstd(r) = rsqrt(Y__var(r) + 0.00001)
//!                        Y(r,j) = Y__cen(r,j) * Y__rstd(r)
//! ```
//!
//! (`r` stands for the row indices in left-hand-side order, `(r,j)` for the left-hand-side
//! indices in their written order, `D` for the size of `j`.) Temporaries over the row indices are
//! dense, with the mode order of `Y` restricted to the row; temporaries over all of `Y`'s
//! indices (`Y__exp`, `Y__cen`) have exactly `Y`'s format, so a fused group never meets
//! conflicting mode orders and a masked softmax keeps its sparsity. Every temporary has role
//! [`Role::Temp`] and is declared right after `Y`. Later stages therefore only ever see ordinary
//! statements.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use fuseflow_tensor::{Format, LevelFormat};

use crate::ast::{Access, BinOp, Expr, ReduceOp, Role, Span, Stmt, TensorDecl, UnaryOp};
use crate::error::IrError;

/// Names of the statement-level built-ins (reserved: they cannot name tensors).
pub const BUILTINS: [&str; 3] = ["softmax", "masked_softmax", "layernorm"];

/// The ε that `layernorm` adds to the variance.
pub const LAYERNORM_EPS: f64 = 1e-5;

/// A statement-level built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Softmax,
    MaskedSoftmax,
    LayerNorm,
}

impl Builtin {
    pub(crate) fn from_name(name: &str) -> Option<Builtin> {
        Some(match name {
            "softmax" => Builtin::Softmax,
            "masked_softmax" => Builtin::MaskedSoftmax,
            "layernorm" => Builtin::LayerNorm,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Builtin::Softmax => "softmax",
            Builtin::MaskedSoftmax => "masked_softmax",
            Builtin::LayerNorm => "layernorm",
        }
    }
}

/// A statement as written: an ordinary one, or a built-in still to be expanded.
pub(crate) enum SourceStmt {
    Plain(Stmt),
    Builtin(BuiltinStmt),
}

/// `lhs = kind(index, arg)`.
pub(crate) struct BuiltinStmt {
    pub kind: Builtin,
    pub lhs: Access,
    pub index: String,
    /// Position of the index argument.
    pub index_span: Span,
    pub arg: Expr,
    /// Position of the statement.
    pub span: Span,
    /// Position of the built-in's name.
    pub name_span: Span,
}

/// The program after expansion.
pub(crate) struct Expanded {
    /// Declarations, temporaries inserted after the tensor they belong to.
    pub decls: Vec<TensorDecl>,
    /// Ordinary statements only.
    pub stmts: Vec<Stmt>,
    /// For each source statement, the range of `stmts` it became.
    pub ranges: Vec<Range<usize>>,
}

/// What a name is already used for.
enum Taken {
    Tensor(u32),
    Param,
    Temp(u32),
}

/// Expands every built-in of `src` (see the module documentation).
pub(crate) fn expand(
    file: &str,
    decls: Vec<TensorDecl>,
    params: &BTreeMap<String, i64>,
    src: Vec<SourceStmt>,
) -> Result<Expanded, IrError> {
    let mut taken: BTreeMap<String, Taken> = BTreeMap::new();
    for p in params.keys() {
        taken.insert(p.clone(), Taken::Param);
    }
    for d in &decls {
        taken.entry(d.name.clone()).or_insert(Taken::Tensor(d.span.line));
    }
    let mut temps: BTreeMap<String, Vec<TensorDecl>> = BTreeMap::new();
    let mut done: BTreeMap<String, u32> = BTreeMap::new();
    let mut stmts = Vec::with_capacity(src.len());
    let mut ranges = Vec::with_capacity(src.len());
    for s in src {
        let start = stmts.len();
        match s {
            SourceStmt::Plain(st) => stmts.push(st),
            SourceStmt::Builtin(b) => {
                let cx = Cx { file, decls: &decls, b: &b };
                let (new_decls, new_stmts) = cx.expand(&mut taken, &done)?;
                done.insert(b.lhs.tensor.clone(), b.span.line);
                temps.entry(b.lhs.tensor.clone()).or_default().extend(new_decls);
                stmts.extend(new_stmts);
            }
        }
        ranges.push(start..stmts.len());
    }
    let mut out = Vec::with_capacity(decls.len() + temps.values().map(Vec::len).sum::<usize>());
    for d in decls {
        let extra = temps.remove(&d.name);
        out.push(d);
        out.extend(extra.into_iter().flatten());
    }
    Ok(Expanded { decls: out, stmts, ranges })
}

/// Expansion of one built-in statement.
struct Cx<'a> {
    file: &'a str,
    decls: &'a [TensorDecl],
    b: &'a BuiltinStmt,
}

impl Cx<'_> {
    fn err(&self, span: Span, msg: String) -> IrError {
        IrError::at(self.file, span, msg)
    }

    fn decl(&self, name: &str) -> Option<&TensorDecl> {
        self.decls.iter().find(|d| d.name == name)
    }

    /// Validates the statement and returns the temporaries' declarations and the statements.
    fn expand(
        &self,
        taken: &mut BTreeMap<String, Taken>,
        done: &BTreeMap<String, u32>,
    ) -> Result<(Vec<TensorDecl>, Vec<Stmt>), IrError> {
        let b = self.b;
        let f = b.kind.name();
        let lhs = &b.lhs;
        let y = lhs.tensor.as_str();
        let k = b.index.as_str();
        let decl = self.decl(y).ok_or_else(|| self.err(lhs.span, format!("unknown tensor {y}")))?;
        if decl.role == Role::Input {
            return Err(self.err(lhs.span, format!("cannot assign to input {y} (declare it as output or temp)")));
        }
        if let Some(line) = done.get(y) {
            return Err(self.err(lhs.span, format!("{y} is assigned twice (first at line {line})")));
        }
        if lhs.indices.len() != decl.shape.len() {
            return Err(self.err(
                lhs.span,
                format!("{y} has rank {} but is accessed with {} indices", decl.shape.len(), lhs.indices.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for idx in &lhs.indices {
            if !seen.insert(idx.as_str()) {
                return Err(self.err(lhs.span, format!("index {idx} appears twice on the left-hand side of {y}")));
            }
        }
        let Some(axis) = lhs.indices.iter().position(|i| i == k) else {
            return Err(self.err(
                b.index_span,
                format!("{f}({k}, ...): {k} is not an index of the left-hand side {y}({})", lhs.indices.join(",")),
            ));
        };
        let mut free = BTreeSet::new();
        free_indices(&b.arg, &mut Vec::new(), &mut free);
        if !free.contains(k) {
            return Err(self.err(
                b.index_span,
                format!("{f}({k}, ...): index {k} does not occur in the argument (outside a reduction over it)"),
            ));
        }
        if let Some(r) = lhs.indices.iter().find(|r| !free.contains(*r)) {
            return Err(self.err(lhs.span, format!("index {r} of {y} does not occur in the argument of {f}(...)")));
        }
        self.check_sizes(&b.arg, decl)?;

        // Temporaries.
        let rows: Vec<String> = lhs.indices.iter().filter(|i| *i != k).cloned().collect();
        let row_shape: Vec<usize> =
            decl.shape.iter().enumerate().filter(|&(d, _)| d != axis).map(|(_, &n)| n).collect();
        let row_order: Vec<usize> =
            decl.format.mode_order.iter().filter(|&&m| m != axis).map(|&m| if m > axis { m - 1 } else { m }).collect();
        let row_format = Format { levels: vec![LevelFormat::Dense; rows.len()], mode_order: row_order };
        let suffixes: &[(&str, bool)] = match b.kind {
            Builtin::Softmax | Builtin::MaskedSoftmax => &[("max", false), ("exp", true), ("sum", false)],
            Builtin::LayerNorm => &[("mean", false), ("cen", true), ("var", false), ("rstd", false)],
        };
        let mut new_decls = Vec::with_capacity(suffixes.len());
        for &(suffix, full) in suffixes {
            let name = format!("{y}__{suffix}");
            let clash = match taken.get(&name) {
                None => None,
                Some(Taken::Tensor(line)) => Some(format!("a tensor {name} is already declared at line {line}")),
                Some(Taken::Param) => Some(format!("{name} is a parameter")),
                Some(Taken::Temp(line)) => Some(format!("the statement at line {line} already declares {name}")),
            };
            if let Some(clash) = clash {
                return Err(self.err(lhs.span, format!("{f}(...) declares the temporary {name}, but {clash}")));
            }
            taken.insert(name.clone(), Taken::Temp(b.span.line));
            let (shape, format) =
                if full { (decl.shape.clone(), decl.format.clone()) } else { (row_shape.clone(), row_format.clone()) };
            new_decls.push(TensorDecl {
                name,
                shape,
                format,
                block: None,
                role: Role::Temp,
                source: None,
                span: b.span,
            });
        }

        // Statements.
        let at_lhs = |suffix: &str, idx: &[String]| Access {
            tensor: format!("{y}__{suffix}"),
            indices: idx.to_vec(),
            span: lhs.span,
        };
        let use_ = |suffix: &str, idx: &[String]| {
            Expr::Access(Access { tensor: format!("{y}__{suffix}"), indices: idx.to_vec(), span: b.name_span })
        };
        let all = &lhs.indices;
        let e = || b.arg.clone();
        let reduce = |op: ReduceOp, body: Expr| Expr::Reduce { op, index: k.to_string(), body: Box::new(body) };
        let bin = |op: BinOp, a: Expr, c: Expr| Expr::Binary(op, Box::new(a), Box::new(c));
        let stmt = |lhs: Access, rhs: Expr| Stmt { lhs, rhs, span: b.span };
        let stmts = match b.kind {
            Builtin::Softmax | Builtin::MaskedSoftmax => {
                let (max, exp) = if b.kind == Builtin::Softmax {
                    (
                        reduce(ReduceOp::Max, e()),
                        Expr::Unary(UnaryOp::Exp, Box::new(bin(BinOp::Sub, e(), use_("max", &rows)))),
                    )
                } else {
                    (reduce(ReduceOp::MaxNz, e()), bin(BinOp::ExpSubNz, e(), use_("max", &rows)))
                };
                vec![
                    stmt(at_lhs("max", &rows), max),
                    stmt(at_lhs("exp", all), exp),
                    stmt(at_lhs("sum", &rows), reduce(ReduceOp::Sum, use_("exp", all))),
                    stmt(lhs.clone(), bin(BinOp::Div, use_("exp", all), use_("sum", &rows))),
                ]
            }
            Builtin::LayerNorm => {
                let d = Expr::Const(decl.shape[axis] as f64);
                vec![
                    stmt(at_lhs("mean", &rows), bin(BinOp::Div, reduce(ReduceOp::Sum, e()), d.clone())),
                    stmt(at_lhs("cen", all), bin(BinOp::Sub, e(), use_("mean", &rows))),
                    stmt(
                        at_lhs("var", &rows),
                        bin(BinOp::Div, reduce(ReduceOp::Sum, bin(BinOp::Mul, use_("cen", all), use_("cen", all))), d),
                    ),
                    stmt(
                        at_lhs("rstd", &rows),
                        Expr::Unary(
                            UnaryOp::Rsqrt,
                            Box::new(bin(BinOp::Add, use_("var", &rows), Expr::Const(LAYERNORM_EPS))),
                        ),
                    ),
                    stmt(lhs.clone(), bin(BinOp::Mul, use_("cen", all), use_("rstd", &rows))),
                ]
            }
        };
        Ok((new_decls, stmts))
    }

    /// The left-hand side's dimensions must agree with the sizes its indices have in the
    /// argument (the temporaries take their shapes from the left-hand side). As in the checker,
    /// an index gets its size from its first occurrence; arguments that use an index with two
    /// sizes, unknown tensors and rank errors are left to the checker, which reports them at the
    /// offending access.
    fn check_sizes(&self, e: &Expr, y: &TensorDecl) -> Result<(), IrError> {
        let mut sizes: BTreeMap<&str, (usize, &str, usize)> = BTreeMap::new();
        let mut consistent = true;
        e.for_each_access(&mut |a| {
            let Some(da) = self.decl(&a.tensor).filter(|d| d.shape.len() == a.indices.len()) else {
                consistent = false;
                return;
            };
            for (d, idx) in a.indices.iter().enumerate() {
                let (size, _, _) = *sizes.entry(idx.as_str()).or_insert((da.shape[d], a.tensor.as_str(), d));
                consistent &= size == da.shape[d];
            }
        });
        if !consistent {
            return Ok(());
        }
        for (p, idx) in self.b.lhs.indices.iter().enumerate() {
            if let Some(&(size, tensor, d)) = sizes.get(idx.as_str()) {
                if size != y.shape[p] {
                    return Err(self.err(
                        self.b.lhs.span,
                        format!(
                            "{} dimension {p} has size {} but index {idx} has size {size} (from {tensor} dimension {d})",
                            y.name, y.shape[p]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Indices with an occurrence not bound by an enclosing reduction.
fn free_indices(e: &Expr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match e {
        Expr::Access(a) => {
            for idx in &a.indices {
                if !bound.contains(idx) {
                    out.insert(idx.clone());
                }
            }
        }
        Expr::Const(_) => {}
        Expr::Unary(_, a) => free_indices(a, bound, out),
        Expr::Binary(_, a, b) => {
            free_indices(a, bound, out);
            free_indices(b, bound, out);
        }
        Expr::Reduce { index, body, .. } => {
            bound.push(index.clone());
            free_indices(body, bound, out);
            bound.pop();
        }
    }
}
