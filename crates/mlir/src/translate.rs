//! From the parsed MLIR to a tensor-index-notation program, built in code.
//!
//! Rules (docs/mlir.md has the user-facing version):
//! - every live `linalg` op that computes (a `linalg.generic` other than a copy or transpose,
//!   `linalg.matmul`, `batch_matmul`, `matvec`) is one statement over a temporary named after
//!   its SSA value (`%7` → `t7`); the function's results are the outputs;
//! - dimensions of size 1 are dropped everywhere (torch-mlir keeps reduced dimensions as size-1
//!   dimensions read through constant-0 map results), and so are loops of extent 1;
//! - a copy or transpose (a generic yielding its input through a permuted map, or
//!   `linalg.transpose`) of a computed tensor is a view: consumers read the producer with
//!   permuted indices; of an input used nowhere else it is a new input in the result's own
//!   encoding holding the permuted data (the hand-edited FuseFlow files make weights sparse
//!   this way); `extf`/`truncf` copies and `expand_shape`/`collapse_shape` that only add or
//!   drop size-1 dimensions are aliases;
//! - `linalg.fill` and `dense<c>` splats read as constants; the accumulator of a reduction
//!   starts at its fill (0 for sums and −∞ for maxima add nothing);
//! - a block encoding (BSR: `floordiv`/`mod` levels) declares its tensor with the block levels'
//!   format and `block(B)`, as `bcsr(B)` does in a program file, so its readers run blocked;
//! - operations whose results nothing live uses are dropped with a note (GCN's dead `log`);
//!   the argmax result of torch-mlir's max reduction must be unused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use fuseflow_ir::{Access, BinOp, Expr, ReduceOp, Role, Source, Span, Stmt, TensorDecl, UnaryOp};
use fuseflow_tensor::{Coo, Format, LevelFormat};

use crate::ast::*;
use crate::error::MlirError;
use crate::syntax::bytes_to_f32;

/// How arguments and constants get their data, and how sizes are changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `--input NAME=FILE`: argument or constant (SSA name without `%`) → data file.
    pub inputs: BTreeMap<String, PathBuf>,
    /// `--density NAME=D`: density of a generated argument or elided constant.
    pub densities: BTreeMap<String, f64>,
    /// Density of generated data for tensors with a sparse encoding and no `--density`.
    pub default_sparse_density: f64,
    /// Size overrides: `D<size>` → new size, applied to every dimension of that size.
    pub params: BTreeMap<String, i64>,
    /// Memory limit for reading `--input` files: what each file's reader will allocate is
    /// estimated from the file (a few times its size, or what an archive's members inflate
    /// to) and checked before reading.
    pub budget: fuseflow_tensor::Budget,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: BTreeMap::new(),
            densities: BTreeMap::new(),
            default_sparse_density: DEFAULT_SPARSE_DENSITY,
            params: BTreeMap::new(),
            budget: fuseflow_tensor::Budget::UNLIMITED,
        }
    }
}

/// Reads an `--input` file once the memory its reader will need fits `budget`.
pub(crate) fn read_input(path: &std::path::Path, budget: &fuseflow_tensor::Budget) -> Result<Coo, String> {
    // Readers allocate in proportion to what they read, as for a program's file sources.
    let size = fuseflow_tensor::npz::expanded_size(path).unwrap_or(0);
    budget
        .check(size.saturating_mul(4), || format!("reading {} ({size} bytes to read)", path.display()))
        .map_err(|e| e.to_string())?;
    fuseflow_tensor::read_any(path).map_err(|e| e.to_string())
}

/// The most elements a nonzero fill read as data may have (each one is stored).
pub(crate) const MAX_FILL_ELEMENTS: usize = 1 << 26;

/// Density of generated sparse inputs when none is given.
pub const DEFAULT_SPARSE_DENSITY: f64 = 0.1;

/// The statements and declarations of one function, before idiom recognition.
pub(crate) struct Lowered {
    pub decls: Vec<TensorDecl>,
    pub stmts: Vec<Stmt>,
    pub bind: Vec<(String, Coo)>,
    pub notes: Vec<String>,
    pub params: BTreeMap<String, i64>,
    /// Original (MLIR) sizes of every declared tensor's kept dimensions.
    pub orig_shapes: BTreeMap<String, Vec<u64>>,
    /// Temporaries computed by a `masked_fill(mask == 0, -inf)` (as `x * mask`), with the
    /// position of the op: only a softmax over them may read them (it becomes
    /// `masked_softmax`, which skips the zeros that stand for −∞).
    pub masked: BTreeMap<String, Span>,
}

/// What an SSA value is to the translation.
#[derive(Debug, Clone)]
enum Val {
    /// A scalar constant.
    Scalar(f64),
    /// A tensor whose every element is this value (a fill or a `dense<c>` splat).
    Splat(f64),
    /// `tensor.empty`: no defined contents.
    Empty,
    /// A declared tensor read through a view.
    Tensor(View),
    /// An argument or constant not declared yet (declared on first read).
    Input(InputVal),
    /// A value that must not be read (the argmax output, an unsupported op's result).
    Unusable(String),
    /// An `i1` tensor `view == 0` (`zero`) or `view != 0`: torch-mlir's `masked_fill` mask,
    /// only read as the condition of a `select` with −∞ (see [`Tx::generic`]).
    Mask { view: View, zero: bool },
}

/// A tensor value as a view of a declared tensor: squeezed dimension `q` of the value is
/// dimension `perm[q]` of `base`, or, when `perm[q]` is `None`, a dimension the value is
/// broadcast over (torch-mlir's bias and `expand` copies), which reads no dimension of `base`.
/// Every dimension of `base` appears exactly once.
#[derive(Debug, Clone)]
struct View {
    base: String,
    perm: Vec<Option<usize>>,
}

impl View {
    /// The whole of `base` (rank `rank`) in its own order.
    fn identity(base: String, rank: usize) -> View {
        View { base, perm: (0..rank).map(Some).collect() }
    }

    fn is_identity(&self) -> bool {
        self.perm.iter().enumerate().all(|(q, &p)| p == Some(q))
    }

    /// The rank of the base tensor.
    fn base_rank(&self) -> usize {
        self.perm.iter().flatten().count()
    }
}

#[derive(Debug, Clone)]
struct InputVal {
    /// SSA name (options and notes use it).
    ssa: String,
    /// The argument's own name (`torch.arg_name`): the tensor is called that.
    named: Option<String>,
    ty: TensorType,
    origin: Origin,
    span: Span,
}

#[derive(Debug, Clone)]
enum Origin {
    Arg,
    Data(Vec<f64>),
    Generated(String),
    /// A fill or splat read as data (every element this value), at the resized shape: the
    /// operand of a kernel that reads only constants (FuseFlow's generated tests).
    Fill(f64),
}

/// Names of the loops of a `linalg` op, by position.
const LOOP_NAMES: [&str; 12] = ["i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t"];

fn loop_name(n: usize) -> String {
    LOOP_NAMES.get(n).map_or_else(|| format!("d{n}"), |s| s.to_string())
}

/// Dimensions of size other than 1.
fn kept(ty: &TensorType) -> Vec<usize> {
    (0..ty.shape.len()).filter(|&d| ty.shape[d] != 1).collect()
}

pub(crate) struct Tx<'a> {
    file: &'a str,
    opts: &'a Options,
    resources: &'a BTreeMap<String, Vec<u8>>,
    vals: BTreeMap<String, Val>,
    decls: Vec<TensorDecl>,
    stmts: Vec<Stmt>,
    bind: Vec<(String, Coo)>,
    notes: Vec<String>,
    names: BTreeSet<String>,
    params: BTreeMap<String, i64>,
    orig_shapes: BTreeMap<String, Vec<u64>>,
    /// How many live operations read each value.
    uses: BTreeMap<String, usize>,
    /// Which declared tensor each SSA key became (for `--input`/`--density` names).
    declared_inputs: BTreeMap<String, String>,
    /// `tensor.empty` values read as data (hand-edited files) and fills read as data (kernels
    /// of constants), as the inputs they became.
    empty_reads: BTreeMap<String, View>,
    /// See [`Lowered::masked`].
    masked: BTreeMap<String, Span>,
    /// Inputs refined by a relabelled reshape: SSA key → declared MLIR shape.
    reshaped: BTreeMap<String, Vec<u64>>,
}

type R<T> = Result<T, MlirError>;

/// Translates function `f`.
/// `reshaped`: arguments and constants whose declared shape a relabelled reshape refined
/// (their data files have the declared shape; see [`crate::reshape`]).
pub(crate) fn lower_func(
    file: &str,
    module: &Module,
    f: &Func,
    opts: &Options,
    reshaped: &BTreeMap<String, Vec<u64>>,
) -> Result<Lowered, MlirError> {
    let mut tx = Tx {
        reshaped: reshaped.clone(),
        file,
        opts,
        resources: &module.resources,
        vals: BTreeMap::new(),
        decls: Vec::new(),
        stmts: Vec::new(),
        bind: Vec::new(),
        notes: Vec::new(),
        names: BTreeSet::new(),
        params: BTreeMap::new(),
        orig_shapes: BTreeMap::new(),
        uses: BTreeMap::new(),
        declared_inputs: BTreeMap::new(),
        empty_reads: BTreeMap::new(),
        masked: BTreeMap::new(),
    };
    for name in opts.inputs.keys().chain(opts.densities.keys()) {
        let known = f.args.iter().any(|(a, _, _)| a == name)
            || f.body.iter().any(|op| {
                matches!(op.kind, OpKind::Constant { ty: Type::Tensor(_), .. })
                    && op.result.as_ref().is_some_and(|(r, _)| r == name)
            });
        if !known {
            // Named arguments by name, with their SSA name (also accepted).
            let args: Vec<String> = f
                .args
                .iter()
                .zip(f.arg_names.iter().chain(std::iter::repeat(&None)))
                .map(|((a, _, _), n)| match n {
                    Some(n) if n != a => format!("{n} (%{a})"),
                    _ => a.clone(),
                })
                .collect();
            return Err(MlirError::whole_file(
                file,
                format!(
                    "--input/--density {name}: @{} has no argument or tensor constant %{name} (arguments: {})",
                    f.name,
                    if args.is_empty() { "none".to_string() } else { args.join(", ") }
                ),
            ));
        }
    }
    let live = liveness(f);
    for (k, (a, t, span)) in f.args.iter().enumerate() {
        let named = f.arg_names.get(k).cloned().flatten();
        let v = match t {
            Type::Tensor(ty) => {
                Val::Input(InputVal { ssa: a.clone(), named, ty: ty.clone(), origin: Origin::Arg, span: *span })
            }
            Type::Scalar(s) => Val::Unusable(format!(
                "argument %{a} is a bare `{s}`, not a tensor (write a scalar argument as `tensor<{s}>`)"
            )),
        };
        tx.vals.insert(a.clone(), v);
    }
    // Uses by live operations, to tell whether an input is read only through one transpose.
    for op in f.body.iter().filter(|op| is_live(op, &live)) {
        for o in op_operands(op) {
            *tx.uses.entry(o.key()).or_default() += 1;
        }
    }
    let mut returned = None;
    for op in &f.body {
        if !is_live(op, &live) {
            // `tensor.dim` only computes the sizes of a dynamic `tensor.empty`, which the ties
            // of `crate::dynamic` give instead: nothing is lost, so no note.
            if !matches!(op.kind, OpKind::Constant { .. } | OpKind::Empty(_) | OpKind::Fill { .. })
                && op.name != "tensor.dim"
            {
                tx.notes.push(format!("line {}: `{}` result unused, dropped", op.span.line, op.name));
            }
            continue;
        }
        if let OpKind::Return(v) = &op.kind {
            returned = Some((v.clone(), op.span));
            break;
        }
        tx.op(op)?;
    }
    let Some((ret, rspan)) = returned else {
        return Err(MlirError::at(file, f.span, format!("function @{} has no `return`", f.name)));
    };
    tx.outputs(&ret, rspan)?;
    Ok(Lowered {
        decls: tx.decls,
        stmts: tx.stmts,
        bind: tx.bind,
        notes: tx.notes,
        params: tx.params,
        orig_shapes: tx.orig_shapes,
        masked: tx.masked,
    })
}

/// Every value an operation reads.
fn op_operands(op: &Op) -> Vec<Operand> {
    match &op.kind {
        OpKind::Constant { .. } | OpKind::Empty(_) => Vec::new(),
        OpKind::Fill { value, out, .. } => vec![value.clone(), out.clone()],
        OpKind::Named { ins, out, .. } => ins.iter().chain(std::iter::once(out)).map(|(o, _)| o.clone()).collect(),
        OpKind::Transpose { input, out, .. } => vec![input.0.clone(), out.0.clone()],
        OpKind::Generic(g) => {
            let mut v: Vec<Operand> = g.ins.iter().chain(&g.outs).map(|(o, _)| o.clone()).collect();
            // Values captured by the body (scalar constants).
            let local: BTreeSet<&str> = g
                .block_args
                .iter()
                .map(String::as_str)
                .chain(g.body.iter().filter_map(|b| b.result.as_deref()))
                .collect();
            for b in &g.body {
                v.extend(b.operands.iter().filter(|o| !local.contains(o.name.as_str())).cloned());
            }
            v.extend(g.yields.iter().filter(|o| !local.contains(o.name.as_str())).cloned());
            v
        }
        OpKind::Reshape { src, .. } => vec![src.clone()],
        OpKind::Return(v) | OpKind::Other(v) => v.clone(),
    }
}

/// The values the function's results depend on.
fn liveness(f: &Func) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for op in f.body.iter().rev() {
        if matches!(op.kind, OpKind::Return(_)) || is_live(op, &live) {
            for o in op_operands(op) {
                live.insert(o.key());
            }
        }
    }
    live
}

fn is_live(op: &Op, live: &BTreeSet<String>) -> bool {
    match &op.result {
        None => matches!(op.kind, OpKind::Return(_)),
        Some((name, n)) => (0..*n).any(|k| live.contains(&value_key(name, k))),
    }
}

impl Tx<'_> {
    fn err(&self, span: Span, msg: impl Into<String>) -> MlirError {
        MlirError::at(self.file, span, msg)
    }

    /// "`linalg.generic` at line 40: ..." errors.
    fn op_err(&self, op: &Op, msg: impl std::fmt::Display) -> MlirError {
        self.err(op.span, format!("`{}` at line {}: {msg}", op.name, op.span.line))
    }

    fn get(&self, o: &Operand) -> R<Val> {
        match self.vals.get(&o.key()) {
            Some(Val::Unusable(why)) => Err(self.err(o.span, format!("%{} cannot be used: {why}", o.key()))),
            Some(v) => Ok(v.clone()),
            None => Err(self.err(o.span, format!("unknown value %{}", o.key()))),
        }
    }

    fn set(&mut self, op: &Op, k: usize, v: Val) {
        if let Some((name, _)) = &op.result {
            self.vals.insert(value_key(name, k), v);
        }
    }

    /// A fresh tensor name for an SSA name.
    fn fresh(&mut self, ssa: &str) -> String {
        let mut base: String =
            ssa.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if !base.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            base = format!("t{base}");
        }
        if fuseflow_ir::RESERVED.contains(&base.as_str()) || base.contains("__") {
            base = format!("{}_v", base.replace("__", "_"));
        }
        let mut name = base.clone();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// A size after the `D<size>` overrides; records the parameter.
    fn size(&mut self, s: u64) -> usize {
        let key = format!("D{s}");
        let v = self.opts.params.get(&key).copied().unwrap_or(s as i64);
        self.params.insert(key, v);
        usize::try_from(v.max(1)).unwrap_or(usize::MAX)
    }

    fn shape_of(&mut self, ty: &TensorType) -> Vec<usize> {
        kept(ty).into_iter().map(|d| ty.shape[d]).collect::<Vec<_>>().into_iter().map(|s| self.size(s)).collect()
    }

    /// The storage format of a type, on its kept dimensions.
    fn format_of(&mut self, ty: &TensorType) -> Format {
        let k = kept(ty);
        let Some(enc) = &ty.encoding else { return Format::dense(k.len()) };
        let mut levels = Vec::new();
        let mut order = Vec::new();
        for &(dim, kind) in &enc.levels {
            let Some(q) = k.iter().position(|&d| d == dim) else { continue };
            levels.push(match kind {
                LevelKind::Dense => LevelFormat::Dense,
                LevelKind::Compressed | LevelKind::CompressedNonunique | LevelKind::Singleton => {
                    LevelFormat::Compressed
                }
            });
            order.push(q);
        }
        if enc.levels.iter().any(|l| matches!(l.1, LevelKind::Singleton | LevelKind::CompressedNonunique)) {
            let note = format!(
                "line {}: COO levels (compressed(nonunique), singleton) stored as compressed levels",
                enc.span.line
            );
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
        Format::new(levels, order).unwrap_or_else(|_| Format::dense(k.len()))
    }

    fn declare(&mut self, name: &str, ty: &TensorType, role: Role, source: Option<Source>, span: Span) -> R<()> {
        // A tensor of rank 0 (or of only size-1 dimensions) is a scalar: index notation's
        // 0-d tensor `s()`.
        let shape = self.shape_of(ty);
        if let Some(n) = shape.iter().find(|&&n| n as u64 > 1 << 32) {
            return Err(self.err(span, format!("{name}: dimension size {n} is above 2^32 (coordinates are 32-bit)")));
        }
        let format = self.format_of(ty);
        let block = self.block_of(name, ty, &shape, &format, span)?;
        self.orig_shapes.insert(name.to_string(), kept(ty).into_iter().map(|d| ty.shape[d]).collect());
        self.decls.push(TensorDecl { name: name.to_string(), shape, format, role, source, span, block });
        Ok(())
    }

    /// The block size of a block encoding (BSR): the tensor is declared as `bcsr(B)` /
    /// `bdcsr(B)` would declare it, so the groups that read it run blocked. Its sizes (after
    /// `--param`) must be multiples of `B`, every dimension kept (a size-1 dimension cannot
    /// hold a `B × B` tile); else a one-line error naming the tensor and the encoding's line.
    fn block_of(
        &mut self,
        name: &str,
        ty: &TensorType,
        shape: &[usize],
        format: &Format,
        span: Span,
    ) -> R<Option<usize>> {
        let Some((enc, b)) = ty.encoding.as_ref().and_then(|e| e.block.map(|b| (e, b))) else { return Ok(None) };
        let at = |why: String| {
            self.err(span, format!("{name}: the block encoding at line {} ({b} × {b} blocks) {why}", enc.span.line))
        };
        let b = usize::try_from(b).map_err(|_| at("has too large a block size".into()))?;
        if let Some(d) = (0..ty.shape.len()).find(|&d| ty.shape[d] == 1) {
            return Err(at(format!("cannot block dimension {d} of size 1")));
        }
        let blocked = vec![true; shape.len()];
        fuseflow_tensor::block::check_blockable(shape, format, b, &blocked).map_err(|e| {
            let why = e.to_string();
            at(why.strip_prefix("invalid argument: ").unwrap_or(&why).to_string())
        })?;
        let note = format!(
            "line {}: block encoding read as {} block({b}): the groups that read it run blocked",
            enc.span.line,
            fuseflow_ir::format_name(format)
        );
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        Ok(Some(b))
    }

    /// Declares input `inp` read as `ty` (its own type, or a transpose's result type with
    /// `perm` over the squeezed dimensions) and returns the declared name.
    fn declare_input(&mut self, inp: &InputVal, as_ssa: &str, ty: &TensorType, perm: &[usize]) -> R<String> {
        let name = self.fresh(as_ssa);
        let orig_shape: Vec<usize> = inp.ty.shape.iter().map(|&s| s as usize).collect();
        let resized =
            self.shape_of(&inp.ty) != kept(&inp.ty).iter().map(|&d| inp.ty.shape[d] as usize).collect::<Vec<_>>();
        let data: Option<(Coo, Source)> = if let Some(path) = self.opts.inputs.get(&inp.ssa) {
            let mut coo = read_input(path, &self.opts.budget)
                .map_err(|e| self.err(inp.span, format!("--input {}: {e}", inp.ssa)))?;
            let mut declared = orig_shape.clone();
            if let Some(mlir) = self.reshaped.get(&inp.ssa) {
                // Declared coarser than the relabelled type: the same row-major data.
                declared = mlir.iter().map(|&s| s as usize).collect();
                let squeezed: Vec<usize> = declared.iter().copied().filter(|&s| s != 1).collect();
                if coo.shape == declared || coo.shape == squeezed {
                    coo = reshape_coo(&coo, &orig_shape);
                }
            }
            if coo.shape != orig_shape && coo.shape != self.shape_of(&inp.ty) {
                return Err(self.err(
                    inp.span,
                    format!(
                        "--input {}={}: the file has shape {:?} but %{} is declared {:?}",
                        inp.ssa,
                        path.display(),
                        coo.shape,
                        inp.ssa,
                        declared
                    ),
                ));
            }
            let sq = if coo.shape == orig_shape { squeeze(&coo, &inp.ty) } else { coo };
            Some((sq, Source::File { path: path.clone() }))
        } else {
            match &inp.origin {
                Origin::Data(vals) => {
                    if resized {
                        return Err(self.err(
                            inp.span,
                            format!(
                                "constant %{} holds data, so its dimensions cannot be resized with --param",
                                inp.ssa
                            ),
                        ));
                    }
                    let coo = Coo::from_dense(&orig_shape, vals)
                        .map_err(|e| self.err(inp.span, format!("constant %{}: {e}", inp.ssa)))?;
                    Some((
                        squeeze(&coo, &inp.ty),
                        Source::File { path: PathBuf::from(format!("dense_resource:{}", inp.ssa)) },
                    ))
                }
                Origin::Fill(c) => {
                    let shape = self.shape_of(&inp.ty);
                    // Zeros are stored as nothing: an all-zero sparse operand has no entries.
                    let n = shape.iter().try_fold(1usize, |p, &s| p.checked_mul(s));
                    let coo = if *c == 0.0 {
                        Coo::new(shape)
                    } else {
                        // Every element is stored: refuse sizes that could not be held.
                        let Some(n) = n.filter(|&n| n <= MAX_FILL_ELEMENTS) else {
                            return Err(self.err(
                                inp.span,
                                format!(
                                    "fill %{} of {c} read as data has shape {shape:?}: more than {MAX_FILL_ELEMENTS} elements (shrink it with --param)",
                                    inp.ssa
                                ),
                            ));
                        };
                        Coo::from_dense(&shape, &vec![*c; n])
                            .map_err(|e| self.err(inp.span, format!("fill %{}: {e}", inp.ssa)))?
                    };
                    self.notes.push(format!(
                        "line {}: %{} (a fill of {c}) is read as data: the kernel reads no other tensor",
                        inp.span.line, inp.ssa
                    ));
                    Some((coo, Source::File { path: PathBuf::from(format!("fill:{}", inp.ssa)) }))
                }
                Origin::Arg | Origin::Generated(_) => None,
            }
        };
        let source = match data {
            Some((coo, src)) => {
                let coo = permute(&coo, perm);
                self.bind.push((name.clone(), coo));
                src
            }
            None => {
                let sparse = inp.ty.encoding.as_ref().is_some_and(|e| e.levels.iter().any(|l| l.1 != LevelKind::Dense))
                    || ty.encoding.as_ref().is_some_and(|e| e.levels.iter().any(|l| l.1 != LevelKind::Dense));
                let density = self.opts.densities.get(&inp.ssa).copied().unwrap_or(if sparse {
                    self.opts.default_sparse_density
                } else {
                    1.0
                });
                if let Origin::Generated(why) = &inp.origin {
                    self.notes.push(format!(
                        "line {}: constant %{} {why}: generated (density {density})",
                        inp.span.line, inp.ssa
                    ));
                }
                Source::Random { density, seed: None }
            }
        };
        self.declare(&name, ty, Role::Input, Some(source), inp.span)?;
        self.declared_inputs.insert(inp.ssa.clone(), name.clone());
        Ok(name)
    }

    /// The view of a tensor-valued operand (declaring an input on first read).
    fn view(&mut self, o: &Operand) -> R<Option<View>> {
        if let Some(v) = self.empty_reads.get(&o.key()) {
            return Ok(Some(v.clone()));
        }
        match self.get(o)? {
            Val::Tensor(v) => Ok(Some(v)),
            Val::Input(inp) => {
                let ty = inp.ty.clone();
                let rank = kept(&ty).len();
                let as_name = inp.named.clone().unwrap_or_else(|| inp.ssa.clone());
                let name = self.declare_input(&inp, &as_name, &ty, &(0..rank).collect::<Vec<_>>())?;
                let v = View::identity(name, rank);
                self.vals.insert(o.key(), Val::Tensor(v.clone()));
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    fn op(&mut self, op: &Op) -> R<()> {
        match &op.kind {
            OpKind::Constant { value, ty } => {
                let v = match (value, ty) {
                    (ConstValue::Scalar(x), _) | (ConstValue::Splat(x), _) => {
                        if matches!(ty, Type::Tensor(_)) {
                            Val::Splat(*x)
                        } else {
                            Val::Scalar(*x)
                        }
                    }
                    (ConstValue::Array(vals), Type::Tensor(t)) => {
                        self.constant_input(op, t, Origin::Data(vals.clone()))?
                    }
                    (ConstValue::Resource(key), Type::Tensor(t)) => {
                        let origin = match self.resources.get(key) {
                            Some(blob) if blob.len() >= 4 && t.elem == "f32" => Origin::Data(bytes_to_f32(&blob[4..])),
                            Some(blob) if blob.len() >= 4 && t.elem == "f64" => Origin::Data(
                                blob[4..]
                                    .chunks_exact(8)
                                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                                    .collect(),
                            ),
                            Some(_) => Origin::Generated(format!("({} blob) is not f32/f64 data", t.elem)),
                            None if key == "__elided__" => Origin::Generated("is elided".into()),
                            None => Origin::Generated(format!("has no blob `{key}` in the resource section")),
                        };
                        self.constant_input(op, t, origin)?
                    }
                    (_, Type::Scalar(s)) => return Err(self.op_err(op, format!("array constant of scalar type {s}"))),
                };
                self.set(op, 0, v);
            }
            OpKind::Empty(_) => self.set(op, 0, Val::Empty),
            OpKind::Fill { value, .. } => {
                let v = match self.get(value)? {
                    Val::Scalar(x) => Val::Splat(x),
                    _ => return Err(self.op_err(op, "only fills with a scalar constant are supported")),
                };
                self.set(op, 0, v);
            }
            OpKind::Named { which, ins, out, ty } => {
                let g = named_generic(op.span, *which, ins, out, ty);
                self.generic(op, &g)?;
            }
            OpKind::Transpose { input, out, perm } => {
                let g = transpose_generic(op.span, input, out, perm);
                self.generic(op, &g)?;
            }
            OpKind::Generic(g) => self.generic(op, g)?,
            OpKind::Reshape { src, from, to, .. } => {
                let (Type::Tensor(a), Type::Tensor(b)) = (from, to) else {
                    return Err(self.op_err(op, "reshapes of scalars are not supported"));
                };
                let ka: Vec<u64> = kept(a).iter().map(|&d| a.shape[d]).collect();
                let kb: Vec<u64> = kept(b).iter().map(|&d| b.shape[d]).collect();
                if ka != kb {
                    return Err(self.op_err(
                        op,
                        format!("reshape {:?} → {:?} merges or splits dimensions; only adding or dropping size-1 dimensions is supported", a.shape, b.shape),
                    ));
                }
                let v = self.get(src)?;
                self.set(op, 0, v);
            }
            OpKind::Return(_) => {}
            OpKind::Other(_) => {
                return Err(self.op_err(op, "this operation is not supported"));
            }
        }
        Ok(())
    }

    fn constant_input(&mut self, op: &Op, t: &TensorType, origin: Origin) -> R<Val> {
        let Some((name, _)) = &op.result else { return Err(self.op_err(op, "constant without a result")) };
        Ok(Val::Input(InputVal { ssa: name.clone(), named: None, ty: t.clone(), origin, span: op.span }))
    }

    fn generic(&mut self, op: &Op, g: &Generic) -> R<()> {
        let n_in = g.ins.len();
        if g.maps.len() != n_in + g.outs.len() {
            return Err(self.op_err(op, format!("{} indexing maps for {} operands", g.maps.len(), n_in + g.outs.len())));
        }
        if g.outs.is_empty() || g.block_args.len() != n_in + g.outs.len() {
            return Err(self.op_err(op, "the body's block arguments do not match the operands"));
        }
        let nloops = g.iterators.len();
        if g.maps.iter().any(|m| m.dims != nloops) {
            return Err(self.op_err(op, "an indexing map's dimension count differs from the iterator count"));
        }
        // Loop extents from the operands' shapes.
        let mut extent: Vec<Option<u64>> = vec![None; nloops];
        for (k, (o, t)) in g.ins.iter().chain(&g.outs).enumerate() {
            let Type::Tensor(tt) = t else { continue };
            let m = &g.maps[k];
            if m.results.len() != tt.shape.len() {
                return Err(self.op_err(
                    op,
                    format!(
                        "indexing map {k} has {} results but %{} has rank {}",
                        m.results.len(),
                        o.key(),
                        tt.shape.len()
                    ),
                ));
            }
            for (d, r) in m.results.iter().enumerate() {
                match *r {
                    AffineExpr::Dim(n) if n >= nloops => {
                        return Err(
                            self.op_err(op, format!("indexing map {k} reads loop d{n}, but there are {nloops} loops"))
                        )
                    }
                    AffineExpr::Dim(n) => match extent[n] {
                        Some(e) if e != tt.shape[d] && tt.shape[d] != 1 && e != 1 => {
                            return Err(self.op_err(
                                op,
                                format!(
                                    "loop d{n} has extent {e} but %{} dimension {d} has size {}",
                                    o.key(),
                                    tt.shape[d]
                                ),
                            ))
                        }
                        Some(e) if e != 1 => {}
                        _ => extent[n] = Some(tt.shape[d]),
                    },
                    AffineExpr::Const(c) => {
                        if c != 0 || tt.shape[d] != 1 {
                            return Err(self.op_err(
                                op,
                                format!("indexing map {k} reads %{} dimension {d} at the constant {c}: only 0 on a size-1 dimension is supported", o.key()),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(n) = extent.iter().position(Option::is_none) {
            return Err(self.op_err(op, format!("loop d{n} appears in no indexing map")));
        }
        let extent: Vec<u64> = extent.into_iter().map(|e| e.unwrap_or(1)).collect();
        let live_loops: Vec<bool> = extent.iter().map(|&e| e != 1).collect();
        let reductions: Vec<usize> =
            (0..nloops).filter(|&n| live_loops[n] && g.iterators[n] == Iterator::Reduction).collect();

        // Results: only the first may be used.
        let res_ty = match g.results.first() {
            Some(Type::Tensor(t)) => t.clone(),
            _ => return Err(self.op_err(op, "needs a tensor result")),
        };
        if res_ty.elem == "i1" {
            if let Some((k, zero)) = self.zero_test(g) {
                let o = &g.ins[k].0;
                if let Some(view) = self.view(o)? {
                    self.set(op, 0, Val::Mask { view, zero });
                    return Ok(());
                }
            }
            return Err(self.op_err(
                op,
                "the result is an `i1` tensor other than `x == 0`/`x != 0` of one tensor through the same map (boolean tensors are only read as `masked_fill(mask == 0, -inf)` masks)",
            ));
        }
        if let Some((name, count)) = &op.result {
            for k in 1..*count {
                let why =
                    format!("result #{k} of `{}` at line {} (e.g. an argmax) is not supported", op.name, op.span.line);
                self.vals.insert(value_key(name, k), Val::Unusable(why));
            }
        }
        let Some(y) = g.yields.first() else { return Err(self.op_err(op, "empty linalg.yield")) };

        // A copy or transpose: the yield is an input block argument (possibly cast).
        if reductions.is_empty() {
            if let Some(k) = self.copied_input(g, y) {
                if self.copy(op, g, k, &res_ty, &live_loops)? {
                    return Ok(());
                }
            }
        }

        // A loop that only fills and splats read (a kernel of constants, such as FuseFlow's
        // generated tests that multiply zero fills) would be written over an index no tensor
        // reads, which index notation cannot express: there the fills are read as data.
        let mut read: BTreeSet<usize> = BTreeSet::new();
        for (k, (o, t)) in g.ins.iter().enumerate() {
            let (Type::Tensor(tt), Some(v)) = (t, self.vals.get(&o.key())) else { continue };
            if matches!(v, Val::Scalar(_) | Val::Splat(_)) {
                continue;
            }
            for d in kept(tt) {
                if let Some(AffineExpr::Dim(n)) = g.maps[k].results.get(d) {
                    read.insert(*n);
                }
            }
        }
        let mut needed: BTreeSet<usize> = reductions.iter().copied().collect();
        if let Type::Tensor(tt) = &g.outs[0].1 {
            for d in kept(tt) {
                if let Some(AffineExpr::Dim(n)) = g.maps[n_in].results.get(d) {
                    needed.insert(*n);
                }
            }
        }
        let fills_as_data = needed.iter().any(|n| live_loops.get(*n) == Some(&true) && !read.contains(n));

        // Accesses of the operands, by block argument.
        let mut args: BTreeMap<String, B> = BTreeMap::new();
        for (k, (o, _)) in g.ins.iter().enumerate() {
            let b = match (self.get(o)?, &g.ins[k].1) {
                (Val::Splat(x), Type::Tensor(ty)) if fills_as_data => {
                    if !self.empty_reads.contains_key(&o.key()) {
                        let inp = InputVal {
                            ssa: o.name.clone(),
                            named: None,
                            ty: ty.clone(),
                            origin: Origin::Fill(x),
                            span: o.span,
                        };
                        let rank = kept(ty).len();
                        let name = self.declare_input(&inp, &o.name, ty, &(0..rank).collect::<Vec<_>>())?;
                        self.empty_reads.insert(o.key(), View::identity(name, rank));
                    }
                    B::E(self.access(op, g, k, o)?)
                }
                (Val::Scalar(x) | Val::Splat(x), _) => B::E(Expr::Const(x)),
                (Val::Mask { view, zero }, _) => B::Mask(Box::new(B::E(self.access_view(op, g, k, o, view)?)), zero),
                (Val::Empty, _) => {
                    // Hand-edited files read uninitialised tensors; the FuseFlow compiler never
                    // reads values, so such a tensor is data: generated like an elided weight.
                    let Type::Tensor(ty) = &g.ins[k].1 else {
                        return Err(self.op_err(op, format!("reads %{}, a tensor.empty", o.key())));
                    };
                    let inp = InputVal {
                        ssa: o.name.clone(),
                        named: None,
                        ty: ty.clone(),
                        origin: Origin::Generated("(a tensor.empty read as data)".into()),
                        span: o.span,
                    };
                    if !self.empty_reads.contains_key(&o.key()) {
                        let rank = kept(ty).len();
                        let name = self.declare_input(&inp, &o.name, ty, &(0..rank).collect::<Vec<_>>())?;
                        self.empty_reads.insert(o.key(), View::identity(name, rank));
                    }
                    B::E(self.access(op, g, k, o)?)
                }
                (Val::Tensor(_) | Val::Input(_) | Val::Unusable(_), _) => B::E(self.access(op, g, k, o)?),
            };
            args.insert(g.block_args[k].clone(), b);
        }
        for (k, _) in g.outs.iter().enumerate() {
            args.insert(g.block_args[n_in + k].clone(), B::Out(k));
        }
        let mut memo = BTreeMap::new();
        let tree = self.body_expr(op, g, &y.name, &args, &mut memo, 0)?;
        let out_op = &g.outs[0].0;
        let init = self.get(out_op)?;
        let rhs = if reductions.is_empty() {
            if tree.uses_out() {
                let acc = match &init {
                    Val::Splat(x) => Expr::Const(*x),
                    Val::Tensor(_) | Val::Input(_) => self.access(op, g, n_in, out_op)?,
                    _ => return Err(self.op_err(op, "the body reads its output, which has no contents")),
                };
                tree.into_expr(&acc).map_err(|m| self.op_err(op, m))?
            } else {
                tree.into_expr(&Expr::Const(0.0)).map_err(|m| self.op_err(op, m))?
            }
        } else {
            let (red, x) = match tree.reduction() {
                Some(r) => r,
                None => {
                    return Err(self.op_err(
                        op,
                        "body with reduction iterators must be `addf`/`maximumf` (or `cmpf`+`select`) of the output and one value",
                    ))
                }
            };
            let x = x.into_expr(&Expr::Const(0.0)).map_err(|m| self.op_err(op, m))?;
            let mut e = x;
            for &n in reductions.iter().rev() {
                e = Expr::Reduce { op: red, index: loop_name(n), body: Box::new(e) };
            }
            let identity = match red {
                ReduceOp::Sum => 0.0,
                _ => f64::NEG_INFINITY,
            };
            let combine = match red {
                ReduceOp::Sum => BinOp::Add,
                _ => BinOp::Max,
            };
            match &init {
                Val::Empty => e,
                Val::Splat(x) if *x == identity => e,
                Val::Splat(x) => Expr::Binary(combine, Box::new(Expr::Const(*x)), Box::new(e)),
                Val::Scalar(_) | Val::Unusable(_) | Val::Mask { .. } => {
                    return Err(self.op_err(op, "unsupported accumulator"))
                }
                Val::Tensor(_) | Val::Input(_) => {
                    let acc = self.access(op, g, n_in, out_op)?;
                    Expr::Binary(combine, Box::new(acc), Box::new(e))
                }
            }
        };
        // The left-hand side.
        let out_map = &g.maps[n_in];
        let mut lhs_idx = Vec::new();
        for &d in &kept(&res_ty) {
            match out_map.results.get(d) {
                Some(AffineExpr::Dim(n)) if live_loops[*n] && g.iterators[*n] == Iterator::Parallel => {
                    if lhs_idx.contains(&loop_name(*n)) {
                        return Err(self.op_err(op, "the output map repeats a loop"));
                    }
                    lhs_idx.push(loop_name(*n));
                }
                _ => return Err(self.op_err(op, format!("output dimension {d} is not indexed by a parallel loop"))),
            }
        }
        let mut used = BTreeSet::new();
        rhs.for_each_access(&mut |a| used.extend(a.indices.iter().cloned()));
        if let Some(i) = lhs_idx.iter().find(|i| !used.contains(*i)) {
            return Err(self.op_err(
                op,
                format!("the result is broadcast over loop {i}, which no tensor operand reads (index notation cannot express it)"),
            ));
        }
        if let Some(&n) = reductions.iter().find(|&&n| !used.contains(&loop_name(n))) {
            return Err(self.op_err(
                op,
                format!("reduction loop d{n} reads no tensor operand (its operands are constants or fills)"),
            ));
        }
        let Some((rname, _)) = &op.result else { return Err(self.op_err(op, "no result")) };
        let name = self.fresh(rname);
        self.declare(&name, &res_ty, Role::Temp, None, op.span)?;
        self.stmts.push(Stmt {
            lhs: Access { tensor: name.clone(), indices: lhs_idx, span: op.span },
            rhs,
            span: op.span,
        });
        if args.values().any(B::has_mask) {
            self.masked.insert(name.clone(), op.span);
            self.notes.push(format!(
                "line {}: masked_fill(mask == 0, -inf) read as {name} = x * mask (exact for a 0/1 mask; its zeros stand for -inf, so only a softmax may read it)",
                op.span.line
            ));
        }
        let rank = kept(&res_ty).len();
        self.set(op, 0, Val::Tensor(View::identity(name, rank)));
        Ok(())
    }

    /// `(k, zero)` when the generic yields `cmpf oeq/ueq in_k, 0` (`zero`) or `cmpf one/une
    /// in_k, 0`, reading its one input through the output's map: torch-mlir's `mask == 0`.
    fn zero_test(&self, g: &Generic) -> Option<(usize, bool)> {
        let ([(_, Type::Tensor(in_ty))], [b], [y]) = (g.ins.as_slice(), g.body.as_slice(), g.yields.as_slice()) else {
            return None;
        };
        let is_zero = |o: &Operand| match self.vals.get(&o.key()) {
            Some(Val::Scalar(x)) => *x == 0.0,
            _ => g.body.iter().any(|c| c.result.as_deref() == Some(o.name.as_str()) && c.constant == Some(0.0)),
        };
        if b.name != "arith.cmpf" || b.result.as_deref() != Some(y.name.as_str()) || b.operands.len() != 2 {
            return None;
        }
        let out_ty = match g.outs.first() {
            Some((_, Type::Tensor(t))) => t,
            _ => return None,
        };
        let same_map = g.maps.first() == g.maps.get(1) && in_ty.shape == out_ty.shape;
        let reads_in = g.block_args.first() == Some(&b.operands[0].name);
        let zero = match b.attr.as_deref() {
            Some("oeq" | "ueq") => true,
            Some("one" | "une") => false,
            _ => return None,
        };
        (same_map && reads_in && is_zero(&b.operands[1])).then_some((0, zero))
    }

    /// The input index `k` when the yield is input block argument `k`, possibly through
    /// `extf`/`truncf`.
    fn copied_input(&self, g: &Generic, y: &Operand) -> Option<usize> {
        let mut name = y.name.clone();
        for _ in 0..=g.body.len() {
            if let Some(k) = g.block_args.iter().position(|a| *a == name) {
                return (k < g.ins.len()).then_some(k);
            }
            let b = g.body.iter().find(|b| b.result.as_deref() == Some(name.as_str()))?;
            if !matches!(b.name.as_str(), "arith.extf" | "arith.truncf") || b.operands.len() != 1 {
                return None;
            }
            name = b.operands[0].name.clone();
        }
        None
    }

    /// A copy or transpose of input `k`: a view (or a new input in the result's encoding).
    /// `false` when it broadcasts or drops dimensions (then it is an ordinary statement).
    fn copy(&mut self, op: &Op, g: &Generic, k: usize, res_ty: &TensorType, live: &[bool]) -> R<bool> {
        let (o, t) = &g.ins[k];
        let Type::Tensor(in_ty) = t else {
            // A broadcast scalar.
            let v = match self.get(o)? {
                Val::Scalar(x) | Val::Splat(x) => Val::Splat(x),
                _ => return Err(self.op_err(op, "unsupported copy")),
            };
            self.set(op, 0, v);
            return Ok(true);
        };
        let in_map = &g.maps[k];
        let out_map = &g.maps[g.ins.len()];
        // Squeezed result dim q reads squeezed input dim perm[q].
        let loop_of = |m: &AffineMap, ty: &TensorType| -> Vec<Option<usize>> {
            kept(ty)
                .iter()
                .map(|&d| match m.results.get(d) {
                    Some(AffineExpr::Dim(n)) if live[*n] => Some(*n),
                    _ => None,
                })
                .collect()
        };
        let in_loops = loop_of(in_map, in_ty);
        let out_loops = loop_of(out_map, res_ty);
        // `None`: a loop of the result that reads no input dimension (a broadcast).
        let mut perm: Vec<Option<usize>> = Vec::new();
        for l in &out_loops {
            let Some(n) = l else { return Ok(false) };
            perm.push(in_loops.iter().position(|x| *x == Some(*n)));
        }
        // Every input dimension must reach the result (else it is a reduction or a slice).
        if (0..in_loops.len()).any(|p| !perm.contains(&Some(p))) || in_loops.iter().any(Option::is_none) {
            return Ok(false);
        }
        let broadcast = perm.iter().any(Option::is_none);
        let v = match self.get(o)? {
            Val::Scalar(x) | Val::Splat(x) => Val::Splat(x),
            Val::Empty => return Err(self.op_err(op, format!("copies %{}, a tensor.empty", o.key()))),
            Val::Unusable(w) => return Err(self.op_err(op, w)),
            Val::Input(inp) if !broadcast && self.uses.get(&o.key()).copied().unwrap_or(0) == 1 => {
                // The input is read only here: it becomes an input in the result's encoding.
                let Some((rname, _)) = &op.result else { return Err(self.op_err(op, "no result")) };
                let perm: Vec<usize> = perm.iter().flatten().copied().collect();
                // Named after the argument when it has a name, else after the transpose.
                let as_name = inp.named.clone().unwrap_or_else(|| rname.clone());
                let name = self.declare_input(&inp, &as_name, res_ty, &perm)?;
                if perm.iter().enumerate().any(|(q, &p)| q != p) {
                    self.notes.push(format!(
                        "line {}: transpose of %{} read as input {name} (the transposed data, in the result's encoding)",
                        op.span.line, inp.ssa
                    ));
                }
                Val::Tensor(View::identity(name, perm.len()))
            }
            _ => {
                let base = self.view(o)?.ok_or_else(|| self.op_err(op, "unsupported copy"))?;
                if base.perm.len() != in_loops.len() {
                    return Err(self.op_err(op, format!("%{}'s type does not match its value's rank", o.key())));
                }
                let perm = perm.iter().map(|p| p.and_then(|p| base.perm.get(p).copied().flatten())).collect();
                Val::Tensor(View { perm, base: base.base })
            }
        };
        self.set(op, 0, v);
        Ok(true)
    }

    /// The access expression of operand `k` (an input or the output) of a generic.
    fn access(&mut self, op: &Op, g: &Generic, k: usize, o: &Operand) -> R<Expr> {
        if !matches!(g.ins.iter().chain(&g.outs).nth(k), Some((_, Type::Tensor(_)))) {
            return Err(self.op_err(op, format!("operand %{} is not a tensor", o.key())));
        }
        let v = self.view(o)?.ok_or_else(|| self.op_err(op, format!("operand %{} is not a tensor", o.key())))?;
        self.access_view(op, g, k, o, v)
    }

    /// [`Tx::access`] through a given view of the operand.
    fn access_view(&mut self, op: &Op, g: &Generic, k: usize, o: &Operand, v: View) -> R<Expr> {
        let ty = match &g.ins.iter().chain(&g.outs).nth(k) {
            Some((_, Type::Tensor(t))) => t.clone(),
            _ => return Err(self.op_err(op, format!("operand %{} is not a tensor", o.key()))),
        };
        let m = &g.maps[k];
        let dims = kept(&ty);
        if v.perm.len() != dims.len() {
            return Err(self.op_err(
                op,
                format!("%{} is declared {:?} here, which does not match its value's rank", o.key(), ty.shape),
            ));
        }
        let mut idx = vec![String::new(); v.base_rank()];
        for (q, &d) in dims.iter().enumerate() {
            match m.results.get(d) {
                Some(AffineExpr::Dim(n)) => {
                    // A broadcast dimension of the view reads nothing of its base.
                    if let Some(slot) = v.perm.get(q).copied().flatten().and_then(|b| idx.get_mut(b)) {
                        *slot = loop_name(*n);
                    }
                }
                _ => return Err(self.op_err(op, format!("%{} dimension {d} is not indexed by a loop", o.key()))),
            }
        }
        Ok(Expr::Access(Access { tensor: v.base, indices: idx, span: o.span }))
    }

    /// The scalar expression computing body value `name`.
    fn body_expr(
        &self,
        op: &Op,
        g: &Generic,
        name: &str,
        args: &BTreeMap<String, B>,
        memo: &mut BTreeMap<String, B>,
        depth: usize,
    ) -> R<B> {
        if depth > 200 {
            return Err(self.op_err(op, "body expression nested deeper than 200 operations"));
        }
        if let Some(b) = args.get(name).or_else(|| memo.get(name)) {
            return Ok(b.clone());
        }
        let Some(b) = g.body.iter().find(|b| b.result.as_deref() == Some(name)) else {
            // A value captured from the function body.
            return match self.vals.get(name) {
                Some(Val::Scalar(x)) | Some(Val::Splat(x)) => Ok(B::E(Expr::Const(*x))),
                Some(Val::Unusable(why)) => Err(self.op_err(op, format!("the body reads %{name}: {why}"))),
                _ => Err(self.op_err(op, format!("the body reads %{name}, which is not a scalar constant"))),
            };
        };
        let sub = |k: usize, memo: &mut BTreeMap<String, B>| -> R<B> {
            let o = b.operands.get(k).ok_or_else(|| self.op_err(op, format!("`{}` lacks operand {k}", b.name)))?;
            self.body_expr(op, g, &o.name, args, memo, depth + 1)
        };
        let unary = |u: UnaryOp, a: B| B::Un(u, Box::new(a));
        let bin = |o: BinOp, a: B, c: B| B::Bin(o, Box::new(a), Box::new(c));
        let r = match b.name.as_str() {
            "arith.addf" => bin(BinOp::Add, sub(0, memo)?, sub(1, memo)?),
            "arith.subf" => bin(BinOp::Sub, sub(0, memo)?, sub(1, memo)?),
            "arith.mulf" => bin(BinOp::Mul, sub(0, memo)?, sub(1, memo)?),
            "arith.divf" => bin(BinOp::Div, sub(0, memo)?, sub(1, memo)?),
            "arith.maximumf" | "arith.maxnumf" | "arith.maxf" => bin(BinOp::Max, sub(0, memo)?, sub(1, memo)?),
            "arith.minimumf" | "arith.minnumf" | "arith.minf" => {
                let (a, c) = (sub(0, memo)?, sub(1, memo)?);
                unary(UnaryOp::Neg, bin(BinOp::Max, unary(UnaryOp::Neg, a), unary(UnaryOp::Neg, c)))
            }
            "arith.negf" => unary(UnaryOp::Neg, sub(0, memo)?),
            "arith.extf" | "arith.truncf" => sub(0, memo)?,
            "math.exp" => unary(UnaryOp::Exp, sub(0, memo)?),
            "math.rsqrt" => unary(UnaryOp::Rsqrt, sub(0, memo)?),
            "math.erf" => unary(UnaryOp::Erf, sub(0, memo)?),
            // sqrt(x) = x * rsqrt(x); 0 absorbs in products, so sqrt(0) = 0.
            "math.sqrt" => {
                let a = sub(0, memo)?;
                bin(BinOp::Mul, a.clone(), unary(UnaryOp::Rsqrt, a))
            }
            // tanh(x) = 2 sigmoid(2x) - 1.
            "math.tanh" => {
                let a = sub(0, memo)?;
                let s = unary(UnaryOp::Sigmoid, bin(BinOp::Mul, B::E(Expr::Const(2.0)), a));
                bin(BinOp::Sub, bin(BinOp::Mul, B::E(Expr::Const(2.0)), s), B::E(Expr::Const(1.0)))
            }
            // x^n for a constant integer 0 <= n <= 8 (torch-mlir's tanh GELU has `fpowi x, 3`):
            // a product of n factors.
            "math.powf" | "math.fpowi" => {
                let (a, c) = (sub(0, memo)?, sub(1, memo)?);
                match c {
                    B::E(Expr::Const(n)) if n.fract() == 0.0 && (0.0..=8.0).contains(&n) => {
                        let mut e = B::E(Expr::Const(1.0));
                        for k in 0..n as usize {
                            e = if k == 0 { a.clone() } else { bin(BinOp::Mul, e, a.clone()) };
                        }
                        e
                    }
                    _ => {
                        return Err(self.op_err(
                            op,
                            format!(
                                "`{}` (line {}) with an exponent other than a constant integer 0..=8 is not supported",
                                b.name, b.span.line
                            ),
                        ))
                    }
                }
            }
            "arith.constant" => match b.constant {
                Some(x) => B::E(Expr::Const(x)),
                None => return Err(self.op_err(op, "body constant without a value")),
            },
            "arith.cmpf" => {
                let pred = b.attr.clone().unwrap_or_default();
                B::Cmp(pred, Box::new(sub(0, memo)?), Box::new(sub(1, memo)?))
            }
            "arith.select" => {
                let (c, t, f) = (sub(0, memo)?, sub(1, memo)?, sub(2, memo)?);
                if let B::Mask(m, zero) = c {
                    // masked_fill(mask == 0, -inf): x where the mask is nonzero, -inf elsewhere,
                    // read as x * mask (the zeros stand for -inf; only a softmax may read it).
                    let (fill, x) = if zero { (t, f) } else { (f, t) };
                    if fill != B::E(Expr::Const(f64::NEG_INFINITY)) {
                        return Err(self.op_err(
                            op,
                            "`arith.select` on a mask must fill with -inf (masked_fill(mask == 0, -inf))",
                        ));
                    }
                    return Ok(B::Bin(BinOp::Mul, Box::new(x), m));
                }
                select(c, t, f).ok_or_else(|| {
                    self.op_err(
                        op,
                        "`arith.select` other than ReLU (x > 0 ? x : 0) or a maximum/minimum is not supported",
                    )
                })?
            }
            other => {
                return Err(self.op_err(op, format!("body operation `{other}` (line {}) is not supported", b.span.line)))
            }
        };
        memo.insert(name.to_string(), r.clone());
        Ok(r)
    }

    /// Marks the returned values as outputs (copying views and inputs into new outputs).
    fn outputs(&mut self, ret: &[Operand], span: Span) -> R<()> {
        if ret.is_empty() {
            return Err(self.err(span, "`return` returns nothing: there is no output"));
        }
        for (k, o) in ret.iter().enumerate() {
            let v = self
                .view(o)?
                .ok_or_else(|| self.err(o.span, format!("returned %{} is not a computed tensor", o.key())))?;
            let identity = v.is_identity();
            if v.perm.contains(&None) {
                return Err(self.err(
                    o.span,
                    format!("returned %{} is a broadcast copy (index notation cannot broadcast a result over an index no operand reads)", o.key()),
                ));
            }
            let perm: Vec<usize> = v.perm.iter().flatten().copied().collect();
            let pos = self.decls.iter().position(|d| d.name == v.base);
            let Some(pos) = pos else { return Err(self.err(o.span, format!("unknown tensor {}", v.base))) };
            if identity && self.decls[pos].role == Role::Temp {
                self.decls[pos].role = Role::Output;
                continue;
            }
            // A copy: the result is a view, an input, or returned twice.
            let base = self.decls[pos].clone();
            let name = self.fresh(&format!("out{k}"));
            let rank = perm.len();
            let mut shape = vec![0; rank];
            let idx: Vec<String> = (0..rank).map(loop_name).collect();
            let mut bidx = vec![String::new(); rank];
            for q in 0..rank {
                let (Some(&n), Some(slot)) = (base.shape.get(perm[q]), bidx.get_mut(perm[q])) else {
                    return Err(self.err(o.span, format!("returned %{} does not match its type", o.key())));
                };
                shape[q] = n;
                *slot = idx[q].clone();
            }
            let orig = self.orig_shapes.get(&v.base).cloned().unwrap_or_default();
            self.orig_shapes.insert(name.clone(), perm.iter().map(|&p| orig.get(p).copied().unwrap_or(0)).collect());
            self.decls.push(TensorDecl {
                name: name.clone(),
                shape,
                format: Format::dense(rank),
                role: Role::Output,
                source: None,
                span: o.span,
                block: None,
            });
            self.stmts.push(Stmt {
                lhs: Access { tensor: name, indices: idx, span: o.span },
                rhs: Expr::Access(Access { tensor: v.base, indices: bidx, span: o.span }),
                span: o.span,
            });
        }
        Ok(())
    }
}

/// A body value while translating: an expression, the output (accumulator) `k`, or a
/// comparison (only meaningful as a `select` condition).
#[derive(Debug, Clone, PartialEq)]
enum B {
    E(Expr),
    Out(usize),
    Un(UnaryOp, Box<B>),
    Bin(BinOp, Box<B>, Box<B>),
    Cmp(String, Box<B>, Box<B>),
    /// A mask operand (`Val::Mask`): its access and whether it is true where the access is 0.
    Mask(Box<B>, bool),
}

impl B {
    fn uses_out(&self) -> bool {
        match self {
            B::E(_) => false,
            B::Out(_) => true,
            B::Un(_, a) => a.uses_out(),
            B::Bin(_, a, b) | B::Cmp(_, a, b) => a.uses_out() || b.uses_out(),
            B::Mask(a, _) => a.uses_out(),
        }
    }

    fn has_mask(&self) -> bool {
        match self {
            B::E(_) | B::Out(_) => false,
            B::Mask(..) => true,
            B::Un(_, a) => a.has_mask(),
            B::Bin(_, a, b) | B::Cmp(_, a, b) => a.has_mask() || b.has_mask(),
        }
    }

    /// The expression, with the output read as `acc`.
    fn into_expr(self, acc: &Expr) -> Result<Expr, String> {
        Ok(match self {
            B::E(e) => e,
            B::Out(0) => acc.clone(),
            B::Out(k) => return Err(format!("the body reads output {k}; only one output is supported")),
            B::Un(u, a) => Expr::Unary(u, Box::new(a.into_expr(acc)?)),
            B::Bin(o, a, b) => Expr::Binary(o, Box::new(a.into_expr(acc)?), Box::new(b.into_expr(acc)?)),
            B::Cmp(..) => return Err("a comparison is used as a value".into()),
            B::Mask(..) => {
                return Err("an `i1` mask is used other than as the condition of `select(mask, -inf, x)`".into())
            }
        })
    }

    /// `x + out` / `max(x, out)` → the reduction and `x`.
    fn reduction(self) -> Option<(ReduceOp, B)> {
        let B::Bin(o, a, b) = self else { return None };
        let red = match o {
            BinOp::Add => ReduceOp::Sum,
            BinOp::Max => ReduceOp::Max,
            _ => return None,
        };
        match (*a, *b) {
            (B::Out(0), x) | (x, B::Out(0)) if !x.uses_out() => Some((red, x)),
            _ => None,
        }
    }
}

/// `select(cmp, t, f)` as ReLU, max or min.
fn select(c: B, t: B, f: B) -> Option<B> {
    let B::Cmp(pred, a, b) = c else { return None };
    let zero = B::E(Expr::Const(0.0));
    let greater = matches!(pred.as_str(), "ogt" | "ugt" | "oge" | "uge");
    let less = matches!(pred.as_str(), "olt" | "ult" | "ole" | "ule");
    if greater && *b == zero && t == *a && f == zero {
        return Some(B::Un(UnaryOp::Relu, a));
    }
    if less && *a == zero && t == *b && f == zero {
        return Some(B::Un(UnaryOp::Relu, b));
    }
    if (greater && t == *a && f == *b) || (less && t == *b && f == *a) {
        return Some(B::Bin(BinOp::Max, a, b));
    }
    if (less && t == *a && f == *b) || (greater && t == *b && f == *a) {
        let neg = |x: Box<B>| Box::new(B::Un(UnaryOp::Neg, x));
        return Some(B::Un(UnaryOp::Neg, Box::new(B::Bin(BinOp::Max, neg(a), neg(b)))));
    }
    None
}

/// The `linalg.generic` form of a named operation (as `linalg-generalize-named-ops` gives it).
pub(crate) fn named_generic(
    span: Span,
    which: NamedOp,
    ins: &[(Operand, Type)],
    out: &(Operand, Type),
    ty: &TensorType,
) -> Generic {
    let rank = ty.shape.len();
    let (maps, iters) = named_maps(which, rank);
    let (body_ops, y) = match which {
        NamedOp::Matmul | NamedOp::BatchMatmul | NamedOp::Matvec => {
            (vec![body("m", "arith.mulf", &["a", "b"], span), body("s", "arith.addf", &["c", "m"], span)], "s")
        }
        NamedOp::Add => (vec![body("s", "arith.addf", &["a", "b"], span)], "s"),
        NamedOp::Sub => (vec![body("s", "arith.subf", &["a", "b"], span)], "s"),
        NamedOp::Mul => (vec![body("s", "arith.mulf", &["a", "b"], span)], "s"),
        NamedOp::Div => (vec![body("s", "arith.divf", &["a", "b"], span)], "s"),
        NamedOp::Max => (vec![body("s", "arith.maximumf", &["a", "b"], span)], "s"),
        NamedOp::Exp => (vec![body("s", "math.exp", &["a"], span)], "s"),
    };
    let block_args: Vec<String> =
        if which == NamedOp::Exp { vec!["a".into(), "c".into()] } else { vec!["a".into(), "b".into(), "c".into()] };
    Generic {
        maps,
        iterators: iters,
        ins: ins.to_vec(),
        outs: vec![out.clone()],
        block_args,
        body: body_ops,
        yields: vec![Operand { name: y.into(), index: 0, span }],
        results: vec![Type::Tensor(ty.clone())],
    }
}

/// The `linalg.generic` form of `linalg.transpose`: a copy through a permuted output map.
pub(crate) fn transpose_generic(span: Span, input: &(Operand, Type), out: &(Operand, Type), perm: &[usize]) -> Generic {
    let n = perm.len();
    let in_map = AffineMap { dims: n, results: (0..n).map(AffineExpr::Dim).collect() };
    let mut out_res = vec![AffineExpr::Const(0); n];
    for (d, &p) in perm.iter().enumerate() {
        if p < n {
            out_res[d] = AffineExpr::Dim(p);
        }
    }
    Generic {
        maps: vec![in_map, AffineMap { dims: n, results: out_res }],
        iterators: vec![Iterator::Parallel; n],
        ins: vec![input.clone()],
        outs: vec![out.clone()],
        block_args: vec!["a".into(), "b".into()],
        body: Vec::new(),
        yields: vec![Operand { name: "a".into(), index: 0, span }],
        results: vec![out.1.clone()],
    }
}

fn body(result: &str, name: &str, operands: &[&str], span: Span) -> BodyOp {
    BodyOp {
        result: Some(result.to_string()),
        name: name.to_string(),
        operands: operands.iter().map(|o| Operand { name: o.to_string(), index: 0, span }).collect(),
        attr: None,
        constant: None,
        span,
    }
}

/// The indexing maps and iterators of the named operations (as `linalg-generalize-named-ops`
/// gives them); element-wise ones have identity maps of the result's rank.
fn named_maps(which: NamedOp, rank: usize) -> (Vec<AffineMap>, Vec<Iterator>) {
    use crate::ast::Iterator::{Parallel as P, Reduction as Red};
    use AffineExpr::Dim;
    let m = |dims: usize, r: &[usize]| AffineMap { dims, results: r.iter().map(|&d| Dim(d)).collect() };
    let id: Vec<usize> = (0..rank).collect();
    match which {
        NamedOp::Matmul => (vec![m(3, &[0, 2]), m(3, &[2, 1]), m(3, &[0, 1])], vec![P, P, Red]),
        NamedOp::BatchMatmul => (vec![m(4, &[0, 1, 3]), m(4, &[0, 3, 2]), m(4, &[0, 1, 2])], vec![P, P, P, Red]),
        NamedOp::Matvec => (vec![m(2, &[0, 1]), m(2, &[1]), m(2, &[0])], vec![P, Red]),
        NamedOp::Exp => (vec![m(rank, &id), m(rank, &id)], vec![P; rank]),
        NamedOp::Add | NamedOp::Sub | NamedOp::Mul | NamedOp::Div | NamedOp::Max => {
            (vec![m(rank, &id), m(rank, &id), m(rank, &id)], vec![P; rank])
        }
    }
}

/// Drops the size-1 dimensions of data read for a tensor of type `ty`.
fn squeeze(coo: &Coo, ty: &TensorType) -> Coo {
    let k = kept(ty);
    let r = coo.rank();
    let mut out = Coo::new(k.iter().map(|&d| coo.shape[d]).collect());
    for (i, &v) in coo.vals.iter().enumerate() {
        let c = &coo.coords[i * r..(i + 1) * r];
        out.coords.extend(k.iter().map(|&d| c[d]));
        out.vals.push(v);
    }
    out
}

/// The same row-major elements under another shape of equal size (a relabelled reshape).
fn reshape_coo(coo: &Coo, shape: &[usize]) -> Coo {
    let r = coo.rank();
    let mut out = Coo::new(shape.to_vec());
    for (i, &v) in coo.vals.iter().enumerate() {
        let mut lin = 0usize;
        for (d, &c) in coo.coords[i * r..(i + 1) * r].iter().enumerate() {
            lin = lin * coo.shape[d] + c as usize;
        }
        let mut c = vec![0; shape.len()];
        for (d, &n) in shape.iter().enumerate().rev() {
            c[d] = (lin % n.max(1)) as _;
            lin /= n.max(1);
        }
        out.coords.extend(c);
        out.vals.push(v);
    }
    out
}

/// Permutes dimensions: result dimension `q` is dimension `perm[q]`.
fn permute(coo: &Coo, perm: &[usize]) -> Coo {
    if perm.iter().enumerate().all(|(q, &p)| q == p) || perm.len() != coo.rank() {
        return coo.clone();
    }
    let r = coo.rank();
    let mut out = Coo::new(perm.iter().map(|&p| coo.shape[p]).collect());
    for (i, &v) in coo.vals.iter().enumerate() {
        let c = &coo.coords[i * r..(i + 1) * r];
        out.coords.extend(perm.iter().map(|&p| c[p]));
        out.vals.push(v);
    }
    out
}

/// Prefixes every tensor name of a lowered function with `func_` (several functions in one
/// module: each keeps its own tensors).
pub(crate) fn prefix_names(l: &mut Lowered, func: &str) {
    let clean: String = func.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let p = |n: &str| format!("{clean}_{n}");
    for d in &mut l.decls {
        d.name = p(&d.name);
    }
    for (n, _) in &mut l.bind {
        *n = p(n);
    }
    l.orig_shapes = std::mem::take(&mut l.orig_shapes).into_iter().map(|(k, v)| (p(&k), v)).collect();
    l.masked = std::mem::take(&mut l.masked).into_iter().map(|(k, v)| (p(&k), v)).collect();
    fn expr(e: &mut Expr, p: &dyn Fn(&str) -> String) {
        match e {
            Expr::Access(a) => a.tensor = p(&a.tensor),
            Expr::Const(_) => {}
            Expr::Unary(_, x) => expr(x, p),
            Expr::Binary(_, a, b) => {
                expr(a, p);
                expr(b, p);
            }
            Expr::Reduce { body, .. } => expr(body, p),
        }
    }
    for st in &mut l.stmts {
        st.lhs.tensor = p(&st.lhs.tensor);
        expr(&mut st.rhs, &p);
    }
}
