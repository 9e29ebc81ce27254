//! The tensor-index-notation program as data: declarations, statements and expressions.
//!
//! [`Program`] is what the parser produces (surface syntax, implicit reductions).
//! [`CheckedProgram`] is what every later stage consumes: names resolved, index sizes known,
//! and every reduction explicit as an [`Expr::Reduce`] node.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use fuseflow_tensor::Format;

/// A source position (1-based line and column) for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// What a declared tensor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Role {
    /// Read from data (file or generator).
    Input,
    /// Result of a statement, written and verified.
    Output,
    /// Intermediate result of a statement (also verified when materialised).
    Temp,
}

/// Where an input's data comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Source {
    /// Seeded uniform random sparsity: exactly `round(density * size)` distinct entries, values in
    /// `[0.1, 1.0)`. The effective seed is `seed` if given, else derived from the run seed and
    /// the tensor name.
    Random {
        /// Fraction of entries present, in `[0, 1]`.
        density: f64,
        /// Fixed seed, overriding the run seed.
        seed: Option<u64>,
    },
    /// A BigBird block-sparse attention mask (square, values 1.0): a band of `window` blocks
    /// either side of the diagonal, `global` dense leading block rows and columns, and
    /// `random` random block columns per block row (benchmarks.md §2.4).
    BigBird {
        /// Block size; must divide the matrix size.
        block: usize,
        /// Leading global block rows/columns.
        global: usize,
        /// Band half-width in blocks.
        window: usize,
        /// Random block columns per block row.
        random: usize,
        /// Fixed seed, overriding the run seed.
        seed: Option<u64>,
    },
    /// A file (`.mtx`, `.npz`) or a SAM tensor directory, relative to the program file.
    File {
        /// Path as written in the program.
        path: PathBuf,
    },
}

/// A declaration `input A[100, 50] dcsr = random(density=0.1)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorDecl {
    /// Tensor name.
    pub name: String,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Storage format (level formats and mode order).
    #[serde(skip)]
    pub format: Format,
    /// Sparsity blocking declared with the format (`bcsr(16)`, `block(16)`): the tensor's
    /// matrix dimensions (its last two, or its only one) are stored as `B × B` tiles, and groups
    /// that read it run blocked (see `fuseflow_compiler::block`). `None`: scalar.
    pub block: Option<usize>,
    /// Input, output or temporary.
    pub role: Role,
    /// Data source (inputs only).
    pub source: Option<Source>,
    /// Position of the declaration.
    pub span: Span,
}

/// A tensor access `A(i,k)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Access {
    /// Tensor name.
    pub tensor: String,
    /// Index variable names, one per logical dimension.
    pub indices: Vec<String>,
    /// Position of the tensor name.
    pub span: Span,
}

/// Binary operators. `Add`, `Sub`, `Max` co-iterate by union; `Mul`, `Div` by intersection;
/// `ExpSubNz` iterates over the nonzeros of its first operand only (the second is looked up,
/// absent entries reading as 0, and broadcast over the indices it lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`, evaluated only where both operands are stored (0 elsewhere).
    Div,
    /// `max(a, b)`
    Max,
    /// `expsubnz(a, b)` = `exp(a - b)` where `a != 0`, and 0 where `a` is 0 or absent. The
    /// result has exactly the sparsity of `a` (broadcast over the indices only `b` has); `b` is
    /// read where `a` is nonzero, an absent `b` reading as 0. This is the shifted exponential of
    /// a masked (sparse) softmax: unlike `expnz(a - b)` it gives `exp(0) = 1` where `a == b`.
    ExpSubNz,
}

/// Unary functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum UnaryOp {
    /// `-a`
    Neg,
    /// `relu(a)` = max(a, 0)
    Relu,
    /// `exp(a)`
    Exp,
    /// `rsqrt(a)` = 1/sqrt(a)
    Rsqrt,
    /// `sigmoid(a)`
    Sigmoid,
    /// `gelu(a)`, tanh approximation
    Gelu,
    /// `erf(a)`: the error function (exact GELU is `0.5 a (1 + erf(a/√2))`); erf(0) = 0.
    Erf,
    /// `expnz(a)`: `exp(a)` on the nonzero entries of `a`, 0 where `a` is 0 or absent, so it
    /// preserves sparsity (the sparse-attention exponential).
    ExpNz,
}

impl UnaryOp {
    /// Applies the function.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Exp => x.exp(),
            UnaryOp::ExpNz => {
                if x == 0.0 {
                    0.0
                } else {
                    x.exp()
                }
            }
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Gelu => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            UnaryOp::Erf => fuseflow_tensor::erf(x),
        }
    }

    /// Whether f(0) = 0, i.e. the function preserves sparsity.
    pub fn preserves_zero(self) -> bool {
        self.apply(0.0) == 0.0
    }
}

impl BinOp {
    /// Applies the operator (division is only applied where both operands are stored).
    /// `ExpSubNz` gives `exp(a - b)` if `a != 0` and 0 otherwise.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Max => a.max(b),
            BinOp::ExpSubNz => {
                if a == 0.0 {
                    0.0
                } else {
                    (a - b).exp()
                }
            }
        }
    }
}

/// Reduction operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ReduceOp {
    /// Sum over the index.
    Sum,
    /// Maximum over the index; implicit zeros count as values.
    Max,
    /// `maxnz(k, e)`: maximum over the nonzero values of `e` along the index; zeros (stored or
    /// implicit) are ignored, and a group without any nonzero value is 0 (absent).
    MaxNz,
}

/// An expression. In a [`Program`] reductions may be implicit; in a [`CheckedProgram`] every
/// index that is not in the left-hand side is bound by exactly one `Reduce` node, placed at the
/// smallest subexpression that contains every use of the index.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Expr {
    /// A tensor access.
    Access(Access),
    /// A scalar constant.
    Const(f64),
    /// A unary function.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A reduction over one index variable.
    Reduce {
        /// Sum, max or max over nonzeros.
        op: ReduceOp,
        /// The reduced index variable.
        index: String,
        /// The reduced expression.
        body: Box<Expr>,
    },
}

impl Expr {
    /// Calls `f` on every tensor access, left to right.
    pub fn for_each_access<'e>(&'e self, f: &mut impl FnMut(&'e Access)) {
        match self {
            Expr::Access(a) => f(a),
            Expr::Const(_) => {}
            Expr::Unary(_, x) => x.for_each_access(f),
            Expr::Binary(_, a, b) => {
                a.for_each_access(f);
                b.for_each_access(f);
            }
            Expr::Reduce { body, .. } => body.for_each_access(f),
        }
    }
}

/// One statement `X(i,j) = expr`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stmt {
    /// Left-hand side; its tensor must be declared `output` or `temp`.
    pub lhs: Access,
    /// Right-hand side.
    pub rhs: Expr,
    /// Position of the statement.
    pub span: Span,
}

/// A statement as the user wrote it: one program line. A line calling a statement-level
/// built-in (`softmax`, `masked_softmax`, `layernorm`) is one user statement that the parser
/// expands into several ordinary statements; every other line is exactly one.
///
/// Everything users see numbers statements this way (`fuse` lines, `--fusion`, reports,
/// `--stmt`), so that the numbers match the program text; [`Program::stmts`] and
/// [`CheckedProgram::stmts`] hold the expanded statements the compiler works on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserStmt {
    /// The expanded statements this line became (a single one for an ordinary statement).
    pub stmts: Range<usize>,
    /// The built-in the line calls, if any.
    pub builtin: Option<&'static str>,
    /// Position of the statement.
    pub span: Span,
}

/// One item of a `par` line: run the part of a fusion group below index variable `index` in
/// `lanes` parallel lanes (`par h=4`, or for one group `par 1: h=4`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParSpec {
    /// The fusion group (as `fuseflow orders` numbers them) or `None` for every group that
    /// iterates the index.
    pub group: Option<usize>,
    /// The index variable, as the program names it.
    pub index: String,
    /// Number of lanes (≥ 1).
    pub lanes: u32,
    /// Position of the item (for errors).
    pub span: Span,
}

/// One group of a `fuse` line, in user statement numbering (see [`UserStmt`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FuseGroup {
    /// User statement indices, in order (the parser only produces ranges).
    pub stmts: Vec<usize>,
    /// Position of the group on its `fuse` line (for errors).
    pub span: Span,
}

/// A parsed program (surface form).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Program {
    /// File name used in error messages.
    pub file: String,
    /// Declarations in order (including the temporaries that statement-level built-ins such as
    /// `softmax` declare, each right after the declaration of the built-in's left-hand side).
    pub decls: Vec<TensorDecl>,
    /// Statements in order, built-ins already expanded into ordinary statements.
    pub stmts: Vec<Stmt>,
    /// The statements as written, each with the range of `stmts` it expanded to. Empty means
    /// one user statement per statement (hand-built programs).
    pub user_stmts: Vec<UserStmt>,
    /// Named fusion groups (`fuse 0-3` lines), in user statement numbering.
    pub groups: Vec<FuseGroup>,
    /// Parallel lanes (`par` lines), in the order written.
    pub pars: Vec<ParSpec>,
    /// Every declared `param` with its value after the preset and explicit overrides.
    pub params: BTreeMap<String, i64>,
}

/// A checked program, ready for the compiler and the reference evaluator.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckedProgram {
    /// File name used in error messages.
    pub file: String,
    /// Declarations in order.
    pub decls: Vec<TensorDecl>,
    /// Expanded statements in dependency order, with explicit reductions.
    pub stmts: Vec<Stmt>,
    /// Size of every index variable, per statement (an index has one size within a statement;
    /// different statements may reuse a name with another size).
    pub index_sizes: Vec<BTreeMap<String, usize>>,
    /// The statements as written (never empty when `stmts` is not): user statement `u` is
    /// `stmts[user_stmts[u].stmts]`.
    pub user_stmts: Vec<UserStmt>,
    /// Fusion groups named in the program (may be empty), in user statement numbering.
    pub groups: Vec<FuseGroup>,
    /// Parallel lanes named in the program (`par` lines; may be empty).
    pub pars: Vec<ParSpec>,
    /// Every declared `param` with its value after the preset and explicit overrides.
    pub params: BTreeMap<String, i64>,
}

impl CheckedProgram {
    /// The declaration of a tensor.
    pub fn decl(&self, name: &str) -> Option<&TensorDecl> {
        self.decls.iter().find(|d| d.name == name)
    }

    /// The user statement that expanded statement `s` belongs to.
    pub fn user_stmt_of(&self, s: usize) -> usize {
        if self.user_stmts.is_empty() {
            return s;
        }
        self.user_stmts.partition_point(|u| u.stmts.end <= s)
    }

    /// The expanded statements of user statements `users` (in order).
    pub fn expand_user_stmts(&self, users: &[usize]) -> Vec<usize> {
        users
            .iter()
            .flat_map(|&u| {
                if self.user_stmts.is_empty() {
                    u..u + 1
                } else {
                    self.user_stmts.get(u).map_or(0..0, |x| x.stmts.clone())
                }
            })
            .collect()
    }

    /// How expanded statement `s` is shown to users: its user statement `U`, or `U.K` for the
    /// K-th (from 0) of the statements a built-in expanded to.
    pub fn stmt_label(&self, s: usize) -> String {
        let u = self.user_stmt_of(s);
        match self.user_stmts.get(u) {
            Some(x) if x.stmts.len() > 1 => format!("{u}.{}", s - x.stmts.start),
            _ => u.to_string(),
        }
    }

    /// How a group of expanded statements is shown to users: whole user statements as ranges
    /// in `--fusion` syntax, parts joined by `+` so that a label is never read as several
    /// groups (`0-3`, `0-2+4` for statements that are not adjacent), parts of a built-in as
    /// `U.K` (`2.1`, `0+1.0+1.1`).
    pub fn group_label(&self, group: &[usize]) -> String {
        let mut items: Vec<String> = Vec::new();
        let mut run: Option<(usize, usize)> = None;
        let flush = |run: &mut Option<(usize, usize)>, items: &mut Vec<String>| {
            if let Some((a, b)) = run.take() {
                items.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
            }
        };
        let mut k = 0;
        while k < group.len() {
            let s = group[k];
            let u = self.user_stmt_of(s);
            let whole = self.user_stmts.get(u).map_or(s..s + 1, |x| x.stmts.clone());
            let n = whole.len();
            if s == whole.start && group.len() >= k + n && group[k..k + n].iter().copied().eq(whole) {
                match &mut run {
                    Some((_, b)) if *b + 1 == u => *b = u,
                    _ => {
                        flush(&mut run, &mut items);
                        run = Some((u, u));
                    }
                }
                k += n;
            } else {
                flush(&mut run, &mut items);
                items.push(self.stmt_label(s));
                k += 1;
            }
        }
        flush(&mut run, &mut items);
        items.join("+")
    }

    /// The user statements a group of expanded statements computes, in whole or in part.
    pub fn user_stmts_of(&self, group: &[usize]) -> Vec<usize> {
        let mut out: Vec<usize> = group.iter().map(|&s| self.user_stmt_of(s)).collect();
        out.dedup();
        out
    }
}
