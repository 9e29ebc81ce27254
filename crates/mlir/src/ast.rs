//! The parsed MLIR subset: a module of functions whose bodies are lists of operations. Only
//! what the translation needs is kept; everything else is skipped by the parser with a note.

use std::collections::BTreeMap;

use fuseflow_ir::Span;

/// A parsed `.mlir` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Module {
    /// `torch.debug_module_name`, when the module carries it.
    pub debug_name: Option<String>,
    /// The functions in file order.
    pub funcs: Vec<Func>,
    /// Blobs of the trailing `{-# dialect_resources: { builtin: { ... } } #-}` section, by key.
    pub resources: BTreeMap<String, Vec<u8>>,
    /// What the parser skipped (ignored operations such as `ml_program.global`), one line each.
    pub notes: Vec<String>,
}

/// `func.func @name(%arg0: T, ...) -> (T, ...) { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Func {
    /// Symbol name without `@`.
    pub name: String,
    /// Arguments: SSA name (without `%`), type and position.
    pub args: Vec<(String, Type, Span)>,
    /// The name each argument's attributes give it (`{torch.arg_name = "adj"}` or
    /// `{mlir.name = "adj"}`), as written; `None` without one. One entry per argument.
    pub arg_names: Vec<Option<String>>,
    /// Result types.
    pub results: Vec<Type>,
    /// Operations in order; the last is normally the `return`.
    pub body: Vec<Op>,
    /// Position of `func.func`.
    pub span: Span,
}

/// The size of a dynamic (`?`) dimension as parsed: the translation replaces it with the size
/// it is tied to, bound from an `--input` file, or given with `--param` before anything reads
/// sizes.
pub const DYNAMIC: u64 = u64::MAX;

/// A type.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `tensor<...>`.
    Tensor(TensorType),
    /// A scalar type such as `f32`, `i64` or `index` (kept as written).
    Scalar(String),
}

/// `tensor<4x8xf32, #ENC>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    /// Sizes; a dynamic `?` size is [`DYNAMIC`] until the translation resolves it.
    pub shape: Vec<u64>,
    /// Element type as written (`f32`, `f64`, `i64`, ...).
    pub elem: String,
    /// The sparse encoding, if any.
    pub encoding: Option<Encoding>,
}

/// A level type of a `#sparse_tensor.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelKind {
    /// `dense`.
    Dense,
    /// `compressed`.
    Compressed,
    /// `compressed(nonunique)` (the first level of COO).
    CompressedNonunique,
    /// `singleton` (the inner levels of COO).
    Singleton,
}

/// A `#sparse_tensor.encoding<{ map = (i, j) -> (j : dense, i : compressed) }>`.
///
/// A block encoding (BSR: `(i floordiv 2 : dense, j floordiv 2 : compressed, i mod 2 : dense,
/// j mod 2 : dense)`) keeps its block levels in `levels` (one per dimension, the structure of
/// the blocks) and the block size in `block`: the in-block levels are always dense tiles,
/// which is exactly our `bcsr(B)` / `bdcsr(B)` formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// Number of dimensions of the map's domain.
    pub dims: usize,
    /// Storage levels, outermost first: the dimension each stores and its level type (for a
    /// block encoding, the levels of the blocks).
    pub levels: Vec<(usize, LevelKind)>,
    /// The block size `B` of a block encoding (square `B × B` tiles over every dimension),
    /// `None` for a scalar encoding.
    pub block: Option<u64>,
    /// Position of the encoding (for errors about it).
    pub span: Span,
}

/// One result of an affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineExpr {
    /// A loop dimension `dN`.
    Dim(usize),
    /// A constant (only 0 on a dimension of size 1 is meaningful here).
    Const(i64),
}

/// `affine_map<(d0, d1) -> (d1, 0)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffineMap {
    /// Number of loop dimensions.
    pub dims: usize,
    /// One expression per operand dimension.
    pub results: Vec<AffineExpr>,
}

/// A use of an SSA value: `%5` or `%21#1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// Name without `%`.
    pub name: String,
    /// Result number (`#k`), 0 for a plain use.
    pub index: usize,
    /// Position of the use.
    pub span: Span,
}

impl Operand {
    /// The key under which the translation keeps this value (`name` or `name#k`).
    pub fn key(&self) -> String {
        value_key(&self.name, self.index)
    }
}

/// The key of result `index` of the value named `name`.
pub fn value_key(name: &str, index: usize) -> String {
    if index == 0 {
        name.to_string()
    } else {
        format!("{name}#{index}")
    }
}

/// An attribute value of `arith.constant`.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstValue {
    /// A scalar (float, integer, `true`/`false`, or a hex bit pattern already decoded).
    Scalar(f64),
    /// `dense<c>`: every element `c`.
    Splat(f64),
    /// `dense<[[...]]>` or `dense<"0x...">`: row-major elements.
    Array(Vec<f64>),
    /// `dense_resource<key>`.
    Resource(String),
}

/// An operation of a function body.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// Result name (without `%`) and how many results it has (`%21:2` has 2); `None` for ops
    /// without results (`return`).
    pub result: Option<(String, usize)>,
    /// The operation name as written (`linalg.generic`).
    pub name: String,
    /// What the operation is.
    pub kind: OpKind,
    /// Position of the operation name.
    pub span: Span,
}

/// The operations the translation understands; anything else is [`OpKind::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    /// `arith.constant`.
    Constant {
        /// The value.
        value: ConstValue,
        /// Its type.
        ty: Type,
    },
    /// `tensor.empty() : T`.
    Empty(TensorType),
    /// `linalg.fill ins(%c : f32) outs(%t : T) -> T`.
    Fill {
        /// The scalar filled in.
        value: Operand,
        /// The tensor filled.
        out: Operand,
        /// Result type.
        ty: TensorType,
    },
    /// `linalg.matmul`, `linalg.batch_matmul`, `linalg.matvec`: a named contraction.
    Named {
        /// Which one.
        which: NamedOp,
        /// Inputs with their types.
        ins: Vec<(Operand, Type)>,
        /// The accumulator.
        out: (Operand, Type),
        /// Result type.
        ty: TensorType,
    },
    /// `linalg.transpose ins(%x : T) outs(%y : T) permutation = [1, 0]`.
    Transpose {
        /// Input and type.
        input: (Operand, Type),
        /// Init and type (its type is the result type).
        out: (Operand, Type),
        /// `permutation`: result dimension `d` is input dimension `perm[d]`.
        perm: Vec<usize>,
    },
    /// `linalg.generic`.
    Generic(Box<Generic>),
    /// `tensor.expand_shape` / `tensor.collapse_shape`, and `tensor.cast` (no groups).
    Reshape {
        /// Source.
        src: Operand,
        /// Reassociation groups.
        groups: Vec<Vec<usize>>,
        /// Source type.
        from: Type,
        /// Result type.
        to: Type,
    },
    /// `return` / `func.return`.
    Return(Vec<Operand>),
    /// Anything else: its operands (for liveness) only.
    Other(Vec<Operand>),
}

/// The named `linalg` operations (contractions and element-wise ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedOp {
    /// `linalg.add`: `C = A + B` element-wise.
    Add,
    /// `linalg.sub`.
    Sub,
    /// `linalg.mul`.
    Mul,
    /// `linalg.div`.
    Div,
    /// `linalg.max`.
    Max,
    /// `linalg.exp`: `C = exp(A)`.
    Exp,
    /// `C(i,j) += A(i,k) * B(k,j)`.
    Matmul,
    /// `C(b,i,j) += A(b,i,k) * B(b,k,j)`.
    BatchMatmul,
    /// `y(i) += A(i,j) * x(j)`.
    Matvec,
}

/// Iterator type of a `linalg.generic` loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iterator {
    /// `parallel`.
    Parallel,
    /// `reduction`.
    Reduction,
}

/// A `linalg.generic`.
#[derive(Debug, Clone, PartialEq)]
pub struct Generic {
    /// One map per input, then one per output.
    pub maps: Vec<AffineMap>,
    /// One per loop.
    pub iterators: Vec<Iterator>,
    /// Inputs.
    pub ins: Vec<(Operand, Type)>,
    /// Outputs (inits).
    pub outs: Vec<(Operand, Type)>,
    /// Block argument names (without `%`): one per input, then one per output.
    pub block_args: Vec<String>,
    /// Body operations (the `linalg.yield` is kept separately).
    pub body: Vec<BodyOp>,
    /// `linalg.yield` operands.
    pub yields: Vec<Operand>,
    /// Result types.
    pub results: Vec<Type>,
}

/// A scalar operation inside a `linalg.generic` body.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyOp {
    /// Result name (without `%`).
    pub result: Option<String>,
    /// Operation name (`arith.addf`).
    pub name: String,
    /// Operands.
    pub operands: Vec<Operand>,
    /// `arith.cmpf`'s predicate, `linalg.index`'s dimension, as written.
    pub attr: Option<String>,
    /// `arith.constant`'s value.
    pub constant: Option<f64>,
    /// Position.
    pub span: Span,
}

/// Every dimension size of the tensor types a function's arguments and operations name.
pub fn sizes(f: &Func) -> std::collections::BTreeSet<u64> {
    let mut out = std::collections::BTreeSet::new();
    let mut add = |t: &Type| {
        if let Type::Tensor(t) = t {
            out.extend(t.shape.iter().copied());
        }
    };
    for (_, t, _) in &f.args {
        add(t);
    }
    for t in &f.results {
        add(t);
    }
    for op in &f.body {
        match &op.kind {
            OpKind::Constant { ty, .. } => add(ty),
            OpKind::Empty(t) | OpKind::Fill { ty: t, .. } => add(&Type::Tensor(t.clone())),
            OpKind::Named { ins, out, .. } => ins.iter().chain(std::iter::once(out)).for_each(|(_, t)| add(t)),
            OpKind::Transpose { input, out, .. } => {
                add(&input.1);
                add(&out.1);
            }
            OpKind::Generic(g) => g.ins.iter().chain(&g.outs).for_each(|(_, t)| add(t)),
            OpKind::Reshape { from, to, .. } => {
                add(from);
                add(to);
            }
            OpKind::Return(_) | OpKind::Other(_) => {}
        }
    }
    out
}
