//! The evaluator: every statement in order, in `f64`, as operations on sparse relations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuseflow_ir::{BinOp, CheckedProgram, Expr, ReduceOp, Role, Stmt};
use fuseflow_tensor::budget::{coo_bytes, from_coo_bytes};
use fuseflow_tensor::{Budget, Coo, Format, Tensor};

use crate::dense::{self, canon, densify, into_layout, space, sparsify, DenseRel, Rel};
use crate::relation::{
    merge_union, normalize_sum, Layout, Point, Projector, Relation, RowAccumulator, SumAccumulator, MAX_DENSE_POINTS,
};
use crate::EvalError;

#[cfg(test)]
thread_local! {
    /// Set by tests to evaluate with sparse relations only, which must give the same results.
    pub(crate) static SPARSE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether values may take the dense form (always, except in tests comparing the two forms).
fn dense_allowed() -> bool {
    #[cfg(test)]
    if SPARSE_ONLY.with(|s| s.get()) {
        return false;
    }
    true
}

/// A tensor's value while the evaluator runs: its nonzero entries, or (when at least a
/// quarter of its points are present, or it is a dense input) every point's value.
enum Stored {
    /// COO in logical order: sorted row-major, no duplicates, no zeros.
    Sparse(Coo),
    /// Row-major, every point (zeros as +0.0).
    Dense { shape: Vec<usize>, vals: Vec<f64> },
}

impl Stored {
    fn shape(&self) -> &[usize] {
        match self {
            Stored::Sparse(c) => &c.shape,
            Stored::Dense { shape, .. } => shape,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Stored::Sparse(c) => coo_bytes(c.rank(), c.nnz() as u64),
            Stored::Dense { vals, .. } => 8 * vals.len() as u64,
        }
    }

    /// Calls `f` with the coordinates and value of every entry held (for a dense value, every
    /// point, zeros included), in row-major order.
    fn for_each_entry(&self, mut f: impl FnMut(&[u32], f64)) {
        match self {
            Stored::Sparse(c) => (0..c.nnz()).for_each(|p| f(c.coords(p), c.vals[p])),
            Stored::Dense { shape, vals } => {
                let mut coords = vec![0u32; shape.len()];
                for &v in vals {
                    f(&coords, v);
                    for d in (0..shape.len()).rev() {
                        coords[d] += 1;
                        if (coords[d] as usize) < shape[d] {
                            break;
                        }
                        coords[d] = 0;
                    }
                }
            }
        }
    }

    /// Memory [`Stored::into_tensor`] needs beside this value's.
    fn conversion_bytes(&self, format: &Format) -> u64 {
        let dense_format = format.is_all_dense();
        match self {
            Stored::Sparse(c) => from_coo_bytes(&c.shape, format, c.nnz() as u64),
            Stored::Dense { shape, .. } if dense_format && *format == Format::dense(shape.len()) => 0,
            Stored::Dense { vals, .. } if dense_format => 8 * vals.len() as u64,
            Stored::Dense { shape, vals } => {
                let nnz = vals.iter().filter(|&&v| v != 0.0).count() as u64;
                coo_bytes(shape.len(), nnz) + from_coo_bytes(shape, format, nnz)
            }
        }
    }

    /// The tensor in `format`.
    fn into_tensor(self, format: &Format) -> Result<Tensor, fuseflow_tensor::TensorError> {
        match self {
            Stored::Sparse(coo) => Tensor::from_coo(&coo, format),
            Stored::Dense { shape, vals } if format.is_all_dense() => {
                let t = Tensor::from_row_major(shape, vals)?;
                if t.format == *format {
                    Ok(t)
                } else {
                    t.convert(format)
                }
            }
            Stored::Dense { shape, vals } => Tensor::from_dense(&shape, &vals, format),
        }
    }
}

/// Evaluates every statement of `p` in order and returns the value of every statement's
/// left-hand-side tensor (temps and outputs), each in its declared format (a compressed level
/// stores no zeros; a dense one stores every point).
///
/// Semantics ("dense semantics with sparse evaluation"): every tensor is a total function on its
/// index space, absent entries and zeros being 0.
/// - An access yields the tensor's nonzero entries (a repeated index such as `A(i,i)` selects the
///   diagonal).
/// - `*` is a natural join on the shared index variables, values multiplied (so 0 annihilates:
///   `0 * inf` and `0 * NaN` are 0).
/// - `/` is a natural join too: `a / b` is computed only where **both** operands are nonzero and
///   is 0 elsewhere (so `x / 0` is 0, never `inf`).
/// - `+`, `-` and `max(a, b)` have true dense semantics: `op(a_or_0, b_or_0)` at every point,
///   an operand lacking an index variable being broadcast over that variable's full range.
/// - `expsubnz(a, b)` is `exp(a - b)` at every point where `a` is nonzero (broadcast over the
///   variables only `b` has), `b` reading 0 where absent, and 0 wherever `a` is 0.
/// - A unary `f` with `f(0) = 0` (including `expnz`) maps the nonzero values; any other `f` is
///   evaluated over the full dense index space of its operand (`exp` of a sparse matrix is
///   dense).
/// - `sum` over `k` adds over `k`; `maxr` over `k` takes the maximum of the values present and
///   also 0 if fewer than `size(k)` values were present (implicit zeros count); `maxnz` over `k`
///   takes the maximum of the nonzero values only, a group without any being 0.
///
/// Values are held sparse (32 bytes a nonzero point) or, when at least a quarter of their points
/// are present, dense (8 bytes a point); either form gives the same values, except that a sum
/// of products over 2^20 products of dense operands adds in the order of a matrix product.
///
/// Every input declared by `p` must be in `inputs`, with the declared shape. Enumerating more
/// than 2^27 points of a sparse value's index space in one step is refused with
/// [`EvalError::TooLarge`].
pub fn evaluate(p: &CheckedProgram, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, EvalError> {
    evaluate_with(p, inputs, &EvalControl::default())
}

/// Progress callback of [`evaluate_with`]: `(statement, statements)` as each statement starts.
pub type StatementObserver = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// Limits and hooks of an evaluation (the default has none). They never change a result: an
/// evaluation either returns what [`evaluate`] returns or stops with an error.
#[derive(Clone, Default)]
pub struct EvalControl {
    /// Memory for the copies of the inputs and the relations each step builds (each step's
    /// output is estimated, exactly for joins, before it is built).
    pub budget: Budget,
    /// Most products (points combined) one step may compute; counted exactly before a join
    /// runs, so a dense 20000² matmul (8·10^12 products) is refused at once, not after hours.
    pub max_work: Option<u64>,
    /// Set to stop: checked between statements and every 2^16 points of a step.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called as each statement starts.
    pub on_statement: Option<StatementObserver>,
}

impl std::fmt::Debug for EvalControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalControl")
            .field("budget", &self.budget)
            .field("max_work", &self.max_work)
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

impl EvalControl {
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Bytes of one point of a relation (`u128` key and `f64` value, aligned).
const POINT_BYTES: u64 = std::mem::size_of::<Point>() as u64;

/// [`evaluate`] under the limits and hooks of `control`.
pub fn evaluate_with(
    p: &CheckedProgram,
    inputs: &BTreeMap<String, Tensor>,
    control: &EvalControl,
) -> Result<BTreeMap<String, Tensor>, EvalError> {
    let mut values: BTreeMap<String, Stored> = BTreeMap::new();
    let mut budget = control.budget;
    for d in p.decls.iter().filter(|d| d.role == Role::Input) {
        let t = inputs.get(&d.name).ok_or_else(|| EvalError::MissingInput { tensor: d.name.clone() })?;
        if t.shape != d.shape {
            return Err(EvalError::InputShape {
                tensor: d.name.clone(),
                expected: d.shape.clone(),
                actual: t.shape.clone(),
            });
        }
        t.validate().map_err(|source| EvalError::InvalidInput { tensor: d.name.clone(), source })?;
        let what = || format!("the reference evaluator's copy of input {}", d.name);
        // A dense input is held as its values in row-major order.
        let dense_format = Format::dense(t.rank());
        let all_dense = t.format.is_all_dense();
        let stored = if dense_allowed() && all_dense && t.rank() > 0 && t.converts_in_place_to(&dense_format) {
            budget.check(8 * t.vals.len() as u64, what)?;
            let vals =
                t.convert(&dense_format).map_err(|e| EvalError::Malformed(format!("input {}: {e}", d.name)))?.vals;
            Stored::Dense { shape: t.shape.clone(), vals }
        } else {
            budget.check(coo_bytes(t.rank(), t.vals.len() as u64), what)?;
            Stored::Sparse(t.to_coo())
        };
        budget.hold(stored.bytes());
        values.insert(d.name.clone(), stored);
    }
    for (s, stmt) in p.stmts.iter().enumerate() {
        if control.cancelled() {
            return Err(EvalError::Cancelled { statement: s });
        }
        if let Some(f) = &control.on_statement {
            f(s, p.stmts.len());
        }
        let sizes =
            p.index_sizes.get(s).ok_or_else(|| EvalError::Malformed(format!("no index sizes for statement {s}")))?;
        let shape = p
            .decl(&stmt.lhs.tensor)
            .ok_or_else(|| EvalError::Malformed(format!("{} is not declared", stmt.lhs.tensor)))?
            .shape
            .clone();
        let cx = Cx { values: &values, sizes, tensor: &stmt.lhs.tensor, control, budget, statement: s };
        let stored = cx.statement(stmt, shape)?;
        budget.hold(stored.bytes());
        if let Some(old) = values.insert(stmt.lhs.tensor.clone(), stored) {
            budget.release(old.bytes());
        }
    }
    // The results are the values of the statements' left-hand sides (the inputs' copies go),
    // each converted to its declared format in turn.
    let assigned: std::collections::BTreeSet<&String> = p.stmts.iter().map(|s| &s.lhs.tensor).collect();
    for (name, v) in &values {
        if !assigned.contains(name) {
            budget.release(v.bytes());
        }
    }
    values.retain(|name, _| assigned.contains(name));
    let mut results = BTreeMap::new();
    for (name, stored) in values {
        let decl = p.decl(&name).ok_or_else(|| EvalError::Malformed(format!("{name} is not declared")))?;
        let nnz = match &stored {
            Stored::Sparse(c) => c.nnz() as u64,
            Stored::Dense { vals, .. } => vals.len() as u64,
        };
        budget.check(stored.conversion_bytes(&decl.format), || {
            format!("storing the reference evaluator's {name} ({nnz} entries) as declared")
        })?;
        let held = stored.bytes();
        let t = stored.into_tensor(&decl.format).map_err(|e| EvalError::Malformed(format!("{name}: {e}")))?;
        budget.release(held);
        budget.hold(8 * t.vals.len() as u64);
        results.insert(name, t);
    }
    Ok(results)
}

/// Context of one statement's evaluation.
struct Cx<'a> {
    values: &'a BTreeMap<String, Stored>,
    sizes: &'a BTreeMap<String, usize>,
    /// The statement's left-hand-side tensor (for error messages).
    tensor: &'a str,
    control: &'a EvalControl,
    /// What the statements before held.
    budget: Budget,
    /// The statement's index.
    statement: usize,
}

impl Cx<'_> {
    fn malformed(&self, msg: String) -> EvalError {
        EvalError::Malformed(format!("statement assigning {}: {msg}", self.tensor))
    }

    fn too_large(&self, what: &str) -> EvalError {
        EvalError::TooLarge { tensor: self.tensor.to_string(), what: what.to_string() }
    }

    /// Refuses a step that would build `points` points, or compute `work` products, beyond
    /// the limits.
    fn afford(&self, what: &str, points: u128, work: u128) -> Result<(), EvalError> {
        if let Some(limit) = self.control.max_work {
            if work > limit as u128 {
                return Err(EvalError::Work {
                    tensor: self.tensor.to_string(),
                    what: what.to_string(),
                    work: u64::try_from(work).unwrap_or(u64::MAX),
                    limit,
                });
            }
        }
        let bytes = u64::try_from(points.saturating_mul(POINT_BYTES as u128)).unwrap_or(u64::MAX);
        self.budget.check(bytes, || {
            format!("the reference evaluator's {what} in the statement assigning {} ({points} points)", self.tensor)
        })?;
        Ok(())
    }

    /// [`EvalError::Cancelled`] if a stop was requested.
    fn check_cancel(&self) -> Result<(), EvalError> {
        if self.control.cancelled() {
            Err(EvalError::Cancelled { statement: self.statement })
        } else {
            Ok(())
        }
    }

    /// Refuses a step that would hold `values` dense values beyond the memory limit.
    fn afford_dense(&self, what: &str, values: usize) -> Result<(), EvalError> {
        let bytes = 8u64.saturating_mul(values as u64);
        self.budget.check(bytes, || {
            format!(
                "the reference evaluator's {what} in the statement assigning {} ({values} dense values)",
                self.tensor
            )
        })?;
        Ok(())
    }

    /// The sparse form of a relation (operations without a dense path take this).
    fn sparse(&self, r: Rel) -> Result<Relation, EvalError> {
        match r {
            Rel::Sparse(r) => Ok(r),
            Rel::Dense(d) => {
                let n = d.vals.iter().filter(|&&v| v != 0.0).count();
                self.afford("sparse form of a dense value", n as u128, 0)?;
                Ok(sparsify(&d))
            }
        }
    }

    /// The dense form of a relation (a sparse one is laid out over its whole space).
    fn dense(&self, r: Rel, what: &str) -> Result<DenseRel, EvalError> {
        match r {
            Rel::Dense(d) => Ok(d),
            Rel::Sparse(r) => {
                let n = space(&r.layout).ok_or_else(|| self.too_large(what))?;
                self.afford_dense(what, n)?;
                densify(&r).ok_or_else(|| self.too_large(what))
            }
        }
    }

    fn layout(&self, vars: Vec<String>) -> Result<Layout, EvalError> {
        let sizes = vars
            .iter()
            .map(|v| self.sizes.get(v).copied().ok_or_else(|| self.malformed(format!("index {v} has no size"))))
            .collect::<Result<Vec<usize>, EvalError>>()?;
        Layout::new(vars, sizes).ok_or_else(|| self.too_large("index tuple wider than 128 bits"))
    }

    fn statement(&self, stmt: &Stmt, shape: Vec<usize>) -> Result<Stored, EvalError> {
        let rel = self.eval(&stmt.rhs)?;
        let lhs = &stmt.lhs.indices;
        if lhs.len() != shape.len() {
            return Err(self.malformed(format!("rank {} but {} indices", shape.len(), lhs.len())));
        }
        if let Some(v) = rel.layout().vars.iter().find(|v| !lhs.contains(v)) {
            return Err(self.malformed(format!("index {v} is neither on the left-hand side nor reduced")));
        }
        // Re-key in left-hand-side order (sorting the keys then sorts the points row-major),
        // broadcasting over any left-hand-side index the value lacks.
        let out_layout = self.layout(lhs.clone())?;
        let rel = match rel {
            Rel::Dense(d) if !lhs.is_empty() => {
                if d.layout.vars != *lhs {
                    self.afford_dense("result in left-hand-side order", space(&out_layout).unwrap_or(usize::MAX))?;
                }
                return Ok(Stored::Dense { shape, vals: into_layout(d, &out_layout) });
            }
            rel => self.sparse(rel)?,
        };
        let missing: Vec<usize> = (0..lhs.len()).filter(|&d| rel.layout.pos(&lhs[d]).is_none()).collect();
        let points = if missing.is_empty() && rel.layout.vars == *lhs {
            rel.points
        } else {
            self.expand(&rel, &out_layout, &missing, "broadcast of the result")?
        };
        // At least a quarter of the points present: the dense form is no larger.
        if let Some(n) = space(&out_layout).filter(|&n| dense_allowed() && !lhs.is_empty() && n / 4 <= points.len()) {
            self.afford_dense("dense form of the result", n)?;
            let d = densify(&Relation { layout: out_layout, points }).ok_or_else(|| self.too_large("result"))?;
            return Ok(Stored::Dense { shape, vals: d.vals });
        }
        let mut coo = Coo::new(shape);
        coo.coords.reserve(points.len() * lhs.len());
        coo.vals.reserve(points.len());
        for (k, v) in points {
            for d in 0..lhs.len() {
                coo.coords.push(out_layout.get(k, d));
            }
            coo.vals.push(v);
        }
        Ok(Stored::Sparse(coo))
    }

    /// The points of `r` re-keyed into `to` (a superset of its variables) and repeated over the
    /// full range of the variables `missing` (positions in `to`), sorted.
    fn expand(&self, r: &Relation, to: &Layout, missing: &[usize], what: &str) -> Result<Vec<Point>, EvalError> {
        // Without a broadcast this only re-keys the points, whatever their number.
        let fits = missing.is_empty()
            || to.dense_points(missing).is_some_and(|m| m.saturating_mul(r.points.len() as u128) <= MAX_DENSE_POINTS);
        if !fits {
            return Err(self.too_large(what));
        }
        let n = to.dense_points(missing).unwrap_or(0).saturating_mul(r.points.len() as u128);
        self.afford(what, n, n)?;
        let proj = Projector::new(&r.layout, to);
        let mut out = Vec::with_capacity(r.points.len());
        for &(k, v) in &r.points {
            let base = proj.apply(k);
            to.for_each_point(missing, |m| out.push((base | m, v)));
        }
        out.sort_unstable_by_key(|p| p.0);
        Ok(out)
    }

    fn eval(&self, e: &Expr) -> Result<Rel, EvalError> {
        match e {
            Expr::Access(a) => self.access(&a.tensor, &a.indices),
            Expr::Const(c) => {
                let mut r = Relation::empty(self.layout(Vec::new())?);
                if *c != 0.0 {
                    r.points.push((0, *c));
                }
                Ok(Rel::Sparse(r))
            }
            Expr::Unary(op, a) => match self.eval(a)? {
                // A function with f(0) = 0 maps the nonzero values; any other every value.
                Rel::Dense(mut d) => {
                    let all = !op.preserves_zero();
                    for v in &mut d.vals {
                        if all || *v != 0.0 {
                            *v = canon(op.apply(*v));
                        }
                    }
                    Ok(Rel::Dense(d))
                }
                Rel::Sparse(mut r) if op.preserves_zero() => {
                    for p in &mut r.points {
                        p.1 = op.apply(p.1);
                    }
                    r.points.retain(|p| p.1 != 0.0);
                    Ok(Rel::Sparse(r))
                }
                Rel::Sparse(a) => {
                    // Every point of the full index space, in key order, merged with the operand.
                    let what = "dense evaluation of a function with f(0) != 0";
                    let all: Vec<usize> = (0..a.layout.vars.len()).collect();
                    let Some(n) = a.layout.dense_points(&all) else {
                        return Err(self.too_large(what));
                    };
                    if dense_allowed() {
                        self.afford_dense(what, n as usize)?;
                        let mut vals = vec![canon(op.apply(0.0)); n as usize];
                        for &(k, v) in &a.points {
                            vals[dense::index(&a.layout, k, &all)] = canon(op.apply(v));
                        }
                        return Ok(Rel::Dense(DenseRel { layout: a.layout, vals }));
                    }
                    self.afford(what, n, n)?;
                    let mut r = Relation::empty(a.layout.clone());
                    let mut next = a.points.iter().peekable();
                    a.layout.for_each_point(&all, |k| {
                        let x = match next.peek() {
                            Some(&&(pk, pv)) if pk == k => {
                                next.next();
                                pv
                            }
                            _ => 0.0,
                        };
                        let v = op.apply(x);
                        if v != 0.0 {
                            r.points.push((k, v));
                        }
                    });
                    Ok(Rel::Sparse(r))
                }
            },
            Expr::Binary(op @ (BinOp::Mul | BinOp::Div), a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.join(*op, a, b, None)
            }
            Expr::Binary(BinOp::ExpSubNz, a, b) => {
                let a = self.eval(a)?;
                let a = self.sparse(a)?;
                let b = self.eval(b)?;
                let b = self.sparse(b)?;
                self.driven_by_left(BinOp::ExpSubNz, &a, &b).map(Rel::Sparse)
            }
            Expr::Binary(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.union(*op, a, b)
            }
            Expr::Reduce { op: ReduceOp::Sum, index, body } => {
                // Fused join + sum: never materialises the product over the reduced index.
                if let Expr::Binary(BinOp::Mul, a, b) = &**body {
                    let a = self.eval(a)?;
                    let b = self.eval(b)?;
                    if a.layout().pos(index).is_some() || b.layout().pos(index).is_some() {
                        return self.join(BinOp::Mul, a, b, Some(index));
                    }
                    let prod = self.join(BinOp::Mul, a, b, None)?;
                    return self.reduce(ReduceOp::Sum, index, prod);
                }
                let body = self.eval(body)?;
                self.reduce(ReduceOp::Sum, index, body)
            }
            Expr::Reduce { op, index, body } => {
                let body = self.eval(body)?;
                self.reduce(*op, index, body)
            }
        }
    }

    /// The entries of a tensor as a relation over its distinct index variables: a dense value
    /// read with distinct indices stays dense; otherwise its nonzero entries.
    fn access(&self, tensor: &str, indices: &[String]) -> Result<Rel, EvalError> {
        let stored = self.values.get(tensor).ok_or_else(|| self.malformed(format!("no value for tensor {tensor}")))?;
        let shape = stored.shape();
        if shape.len() != indices.len() {
            return Err(self.malformed(format!("{tensor} has rank {} but {} indices", shape.len(), indices.len())));
        }
        let mut vars: Vec<String> = Vec::new();
        for i in indices {
            if !vars.contains(i) {
                vars.push(i.clone());
            }
        }
        let layout = self.layout(vars)?;
        let var_of: Vec<usize> = indices.iter().map(|i| layout.pos(i).unwrap_or(0)).collect();
        for (d, &v) in var_of.iter().enumerate() {
            if shape[d] != layout.sizes[v] {
                return Err(self.malformed(format!(
                    "{tensor} dimension {d} has size {} but index {} has size {}",
                    shape[d], indices[d], layout.sizes[v]
                )));
            }
        }
        if let Stored::Dense { vals, .. } = stored {
            if layout.vars.len() == indices.len() {
                self.afford_dense(&format!("relation of {tensor}"), vals.len())?;
                return Ok(Rel::Dense(DenseRel { layout, vals: vals.clone() }));
            }
        }
        let held = match stored {
            Stored::Sparse(c) => c.nnz(),
            Stored::Dense { vals, .. } => vals.iter().filter(|&&v| v != 0.0).count(),
        };
        self.afford(&format!("relation of {tensor}"), held as u128, 0)?;
        let mut points = Vec::with_capacity(held);
        let mut seen = vec![u32::MAX; layout.vars.len()];
        stored.for_each_entry(|coords, v| {
            if v == 0.0 {
                return;
            }
            seen.fill(u32::MAX);
            let mut key = 0u128;
            for (d, &c) in coords.iter().enumerate() {
                let var = var_of[d];
                if seen[var] == u32::MAX {
                    seen[var] = c;
                    key = layout.with(key, var, c);
                } else if seen[var] != c {
                    return; // off the diagonal of a repeated index
                }
            }
            points.push((key, v));
        });
        normalize_sum(&mut points);
        Ok(Rel::Sparse(Relation { layout, points }))
    }

    /// Natural join of `a` and `b` (variables of `a`, then those only in `b`) with `op` applied
    /// (`*` or `/`), optionally summing out `reduce` on the fly.
    fn join(&self, op: BinOp, a: Rel, b: Rel, reduce: Option<&String>) -> Result<Rel, EvalError> {
        let (a, b) = match (a, b) {
            (Rel::Dense(a), Rel::Dense(b)) if reduce.is_none() => return self.dense_join(op, a, b),
            pair => pair,
        };
        if let (BinOp::Mul, Some(k)) = (op, reduce) {
            // Dense operands contract as matrices, provided no stored zero meets an infinity or
            // a NaN (the join never multiplies an absent point); full sparse ones too.
            let dense_ok =
                |x: &Rel, other: &Rel| dense::is_full(x) || (matches!(x, Rel::Dense(_)) && dense::is_finite(other));
            if a.layout().pos(k).is_some() && b.layout().pos(k).is_some() && dense_ok(&a, &b) && dense_ok(&b, &a) {
                let shared = a.layout().vars.iter().filter(|v| b.layout().pos(v).is_some());
                let shared_space = shared.map(|v| self.sizes.get(v).copied().unwrap_or(1) as u128).product::<u128>();
                let work = (a.stored() as u128 * b.stored() as u128) / shared_space.max(1);
                if work >= dense::MIN_PRODUCTS {
                    return self.contract(a, b, k, work);
                }
            }
        }
        let a = self.sparse(a)?;
        // A dense right operand whose shared variables lead its layout (`X[k,f]` in
        // `A[i,k]·X[k,f]`) is read where it lies; any other takes the sparse form.
        let b = match b {
            Rel::Dense(d) if leads(&d.layout, &a.layout) => Rel::Dense(d),
            b => Rel::Sparse(self.sparse(b)?),
        };
        self.sparse_join(op, &a, &b, reduce)
    }

    /// `Σ_k a·b` of dense (or full) operands as a batched matrix product.
    fn contract(&self, a: Rel, b: Rel, k: &str, work: u128) -> Result<Rel, EvalError> {
        let what = format!("dense contraction of {} × {} values", a.stored(), b.stored());
        self.afford(&what, 0, work)?;
        let out = self.layout(a.layout().joined_vars(b.layout()).into_iter().filter(|v| v != k).collect())?;
        let n = space(&out).ok_or_else(|| self.too_large(&what))?;
        // The operands' matrix copies, the product and its reordering.
        self.afford_dense(&what, (a.stored() + b.stored()).saturating_add(n.saturating_mul(2)))?;
        let (a, b) = (self.dense(a, &what)?, self.dense(b, &what)?);
        let c = dense::contract(&a, &b, k, &out).ok_or_else(|| self.too_large(&what))?;
        if dense_allowed() {
            Ok(Rel::Dense(c))
        } else {
            Ok(Rel::Sparse(sparsify(&c)))
        }
    }

    /// `a op b` (`*` or `/`) of dense operands at every point, where both are nonzero (0
    /// elsewhere, as the join).
    fn dense_join(&self, op: BinOp, a: DenseRel, b: DenseRel) -> Result<Rel, EvalError> {
        let full = self.layout(a.layout.joined_vars(&b.layout))?;
        let n = space(&full).ok_or_else(|| self.too_large("elementwise product"))?;
        if full.vars.len() > a.layout.vars.len() {
            self.afford_dense("elementwise product", n)?;
        }
        let vals = dense::combine(a, &b, &full, |va, vb| if va == 0.0 || vb == 0.0 { 0.0 } else { op.apply(va, vb) });
        Ok(Rel::Dense(DenseRel { layout: full, vals }))
    }

    /// [`Cx::join`] of sparse relations. A row-by-row sum whose result fills at least a quarter
    /// of its space is written straight into the dense form.
    fn sparse_join(&self, op: BinOp, a: &Relation, b: &Rel, reduce: Option<&String>) -> Result<Rel, EvalError> {
        let (b_points, dense_b): (&[Point], Option<&DenseRel>) = match b {
            Rel::Sparse(r) => (&r.points, None),
            Rel::Dense(d) => (&[], Some(d)),
        };
        let b_layout = b.layout();
        let vars = a.layout.joined_vars(b_layout);
        let full = self.layout(vars.clone())?;
        let shared_vars: Vec<String> = a.layout.vars.iter().filter(|v| b_layout.pos(v).is_some()).cloned().collect();
        let shared = self.layout(shared_vars)?;
        let (a_to_shared, b_to_shared) = (Projector::new(&a.layout, &shared), Projector::new(b_layout, &shared));
        let (a_to_full, b_to_full) = (Projector::new(&a.layout, &full), Projector::new(b_layout, &full));
        let out_layout = match reduce {
            Some(k) => self.layout(vars.into_iter().filter(|v| v != k).collect())?,
            None => full.clone(),
        };
        let full_to_out = Projector::new(&full, &out_layout);

        // `b`'s points by shared-variable key. They already come in that order when the shared
        // variables lead `b`'s layout in `a`'s order (a dense right operand such as `X[k,f]`
        // in `A[i,k]·X[k,f]`): then they are searched in place rather than copied and sorted.
        let in_place = leads(b_layout, &a.layout);
        // Where each shared key's group starts, when the packed shared keys are few enough to
        // index directly (a CSR row pointer: one lookup per point of `a` instead of two binary
        // searches, which miss the cache on every probe of a large operand).
        let b_len = dense_b.map_or(b_points.len(), |d| d.vals.len());
        // What `b` holds, in points (a dense value is a quarter of a point).
        let b_held = if dense_b.is_some() { b_len.div_ceil(4) } else { b_len };
        let bits = shared.key_bits();
        let indexed = dense_b.is_none() && bits < usize::BITS - 1 && (1usize << bits) <= (2 * b_len).max(1 << 16);
        // A dense `b` holds each shared key's group at its position, `own` values long; the
        // keys of a group's values, in the full layout, are the same for every group.
        let own_vars: Vec<usize> = (shared.vars.len()..b_layout.vars.len()).collect();
        let own_len = dense::space_of(b_layout, &own_vars).unwrap_or(0).max(1);
        let all_shared: Vec<usize> = (0..shared.vars.len()).collect();
        let mut own_keys: Vec<u128> = Vec::new();
        if dense_b.is_some() {
            b_layout.for_each_point(&own_vars, |k| own_keys.push(b_to_full.apply(k)));
        }
        // Copies of `b` this join makes: a regrouped `b` at 1.5 points a point, the index at a
        // quarter point an entry.
        let regrouped = if in_place { 0 } else { 3 * b_len / 2 };
        let index_points = if indexed { ((1usize << bits) + 1).div_ceil(4) } else { 0 };
        self.afford(
            &format!("join of {} × {} points", a.points.len(), b_len),
            (a.points.len() + b_held + regrouped + index_points) as u128,
            0,
        )?;
        let grouped: Vec<(u128, u128, f64)> = if in_place {
            Vec::new()
        } else {
            let mut g: Vec<(u128, u128, f64)> =
                b_points.iter().map(|&(k, v)| (b_to_shared.apply(k), b_to_full.apply(k), v)).collect();
            g.sort_unstable_by_key(|g| (g.0, g.1));
            g
        };
        let shared_key = |i: usize| if in_place { b_to_shared.apply(b_points[i].0) } else { grouped[i].0 };
        let starts: Vec<usize> = if indexed {
            let mut starts = vec![0usize; (1usize << bits) + 1];
            for i in 0..b_len {
                starts[shared_key(i) as usize + 1] += 1;
            }
            for n in 1..starts.len() {
                starts[n] += starts[n - 1];
            }
            starts
        } else {
            Vec::new()
        };
        let group = |s: u128| -> std::ops::Range<usize> {
            if dense_b.is_some() {
                let g = dense::index(&shared, s, &all_shared);
                g * own_len..(g + 1) * own_len
            } else if indexed {
                starts[s as usize]..starts[s as usize + 1]
            } else if in_place {
                b_points.partition_point(|p| b_to_shared.apply(p.0) < s)
                    ..b_points.partition_point(|p| b_to_shared.apply(p.0) <= s)
            } else {
                grouped.partition_point(|g| g.0 < s)..grouped.partition_point(|g| g.0 <= s)
            }
        };
        let item = |i: usize| -> (u128, f64) {
            if let Some(d) = dense_b {
                (own_keys[i % own_len], d.vals[i])
            } else if in_place {
                (b_to_full.apply(b_points[i].0), b_points[i].1)
            } else {
                (grouped[i].1, grouped[i].2)
            }
        };
        // The number of products, counted exactly unless the plain bound is small enough.
        let bound = a.points.len() as u128 * b_len as u128;
        let small = bound <= (1 << 24) && bound <= self.control.max_work.unwrap_or(u64::MAX) as u128;
        let work = if small {
            bound
        } else {
            a.points.iter().map(|&(ka, _)| group(a_to_shared.apply(ka)).len() as u128).sum()
        };
        // A sum over `a`'s innermost variable runs row by row (Gustavson): `a`'s points come
        // grouped by the rest of its key, which is the high part of the output key, so each
        // row is summed apart and appended in order, and nothing but the result is held.
        let by_rows = op == BinOp::Mul && reduce.is_some_and(|k| a.layout.vars.last() == Some(k));
        // Without a reduction every product is a point of the result; with one, the result
        // holds at most one point per output key, and the general accumulator twice that while
        // it merges.
        let out_space = out_layout.sizes.iter().try_fold(1u128, |n, &s| n.checked_mul(s as u128)).unwrap_or(u128::MAX);
        // The keys a row spans: the output's variables that only `b` has, in its lowest bits.
        let own = b_layout.vars.len() - shared.vars.len();
        let low_bits: u32 = (out_layout.vars.len() - own..out_layout.vars.len()).map(|v| out_layout.bits(v)).sum();
        let out_points = match reduce {
            None => work,
            // A wide row's buffer holds at most twice its distinct keys, or its first chunk.
            Some(_) if by_rows && low_bits > RowAccumulator::DENSE_BITS => {
                let row = (1u128 << low_bits.min(100)).min(out_space).saturating_mul(2);
                work.min(out_space) + work.min(row.max(RowAccumulator::MIN_BUFFER as u128))
            }
            Some(_) if by_rows => work.min(out_space),
            Some(_) => work.min(out_space).saturating_mul(2),
        };
        let dense_out = by_rows
            && dense_allowed()
            && !out_layout.vars.is_empty()
            && space(&out_layout).is_some_and(|n| n as u128 <= 4 * work.min(out_space));
        let out_points = if dense_out { out_space.div_ceil(4) + out_points - work.min(out_space) } else { out_points };
        let out_points = out_points + (a.points.len() + b_held + regrouped + index_points) as u128;
        self.afford(&format!("join of {} × {} points", a.points.len(), b_len), out_points, work)?;
        // Every product of the left point `(ka, va)`, at its output key.
        let products = |ka: u128, va: f64, f: &mut dyn FnMut(u128, f64)| {
            let base = a_to_full.apply(ka);
            for i in group(a_to_shared.apply(ka)) {
                let (kb, vb) = item(i);
                // Only a dense `b` stores zeros, which the join never multiplies.
                if vb != 0.0 {
                    f(full_to_out.apply(base | kb), op.apply(va, vb));
                }
            }
        };
        if by_rows {
            let mut rows = RowAccumulator::new(low_bits);
            let k_bits = a.layout.bits(a.layout.vars.len() - 1);
            let mut points = Vec::new();
            let all: Vec<usize> = (0..out_layout.vars.len()).collect();
            let mut dense = if dense_out { Some(vec![0.0; out_space as usize]) } else { None };
            let mut n = 0usize;
            for row in a.points.chunk_by(|x, y| x.0 >> k_bits == y.0 >> k_bits) {
                for &(ka, va) in row {
                    n += 1;
                    if n & 0xFFFF == 0 {
                        self.check_cancel()?;
                    }
                    products(ka, va, &mut |k, v| rows.push(k, v));
                }
                rows.finish_row(&mut points);
                if let Some(d) = &mut dense {
                    for (k, v) in points.drain(..) {
                        d[dense::index(&out_layout, k, &all)] = v;
                    }
                }
            }
            return Ok(match dense {
                Some(vals) => Rel::Dense(DenseRel { layout: out_layout, vals }),
                None => Rel::Sparse(Relation { layout: out_layout, points }),
            });
        }
        let mut acc = SumAccumulator::new(&out_layout);
        for (n, &(ka, va)) in a.points.iter().enumerate() {
            if n & 0xFFFF == 0xFFFF {
                self.check_cancel()?;
            }
            products(ka, va, &mut |k, v| acc.push(k, v));
        }
        // Without a reduction every key is produced once, so summing only sorts.
        Ok(Rel::Sparse(Relation { layout: out_layout, points: acc.finish() }))
    }

    /// `op(a_or_0, b_or_0)` over the union of both supports, each broadcast over the variables
    /// it lacks.
    fn union(&self, op: BinOp, a: Rel, b: Rel) -> Result<Rel, EvalError> {
        let full = self.layout(a.layout().joined_vars(b.layout()))?;
        let missing =
            |l: &Layout| -> Vec<usize> { (0..full.vars.len()).filter(|&v| l.pos(&full.vars[v]).is_none()).collect() };
        let (a_missing, b_missing) = (missing(a.layout()), missing(b.layout()));
        let what = "broadcast in an elementwise operation";
        // Points each operand covers once broadcast: when one covers a quarter of the space,
        // the dense form is no larger.
        let covered =
            |r: &Rel, m: &[usize]| m.iter().fold(r.stored() as u128, |n, &v| n.saturating_mul(full.sizes[v] as u128));
        let cover = covered(&a, &a_missing).max(covered(&b, &b_missing));
        if let Some(n) = space(&full).filter(|&n| dense_allowed() && n as u128 <= cover.saturating_mul(4)) {
            let grows = |r: &Rel| r.layout().vars != full.vars;
            self.afford_dense(what, if grows(&a) { n } else { 0 } + if matches!(b, Rel::Sparse(_)) { n } else { 0 })?;
            let (a, b) = (self.dense(a, what)?, self.dense(b, what)?);
            let vals = dense::combine(a, &b, &full, |va, vb| op.apply(va, vb));
            return Ok(Rel::Dense(DenseRel { layout: full, vals }));
        }
        let (a, b) = (self.sparse(a)?, self.sparse(b)?);
        let ea = self.expand(&a, &full, &a_missing, what)?;
        let eb = self.expand(&b, &full, &b_missing, what)?;
        let mut r = Relation::empty(full);
        merge_union(&ea, &eb, |k, va, vb| {
            let v = op.apply(va.unwrap_or(0.0), vb.unwrap_or(0.0));
            if v != 0.0 {
                r.points.push((k, v));
            }
        });
        Ok(Rel::Sparse(r))
    }

    /// `op(a, b_or_0)` at every nonzero point of `a`, broadcast over the variables only `b` has
    /// (for operators with `op(0, b) = 0`, such as `expsubnz`).
    fn driven_by_left(&self, op: BinOp, a: &Relation, b: &Relation) -> Result<Relation, EvalError> {
        let full = self.layout(a.layout.joined_vars(&b.layout))?;
        let a_missing: Vec<usize> = (0..full.vars.len()).filter(|&v| a.layout.pos(&full.vars[v]).is_none()).collect();
        let ea = self.expand(a, &full, &a_missing, "broadcast in an elementwise operation")?;
        let to_b = Projector::new(&full, &b.layout);
        let mut r = Relation::empty(full);
        for (k, va) in ea {
            let kb = to_b.apply(k);
            let vb = b.points.binary_search_by_key(&kb, |p| p.0).map_or(0.0, |i| b.points[i].1);
            let v = op.apply(va, vb);
            if v != 0.0 {
                r.points.push((k, v));
            }
        }
        Ok(r)
    }

    /// Reduces `index` out of `body`.
    fn reduce(&self, op: ReduceOp, index: &str, body: Rel) -> Result<Rel, EvalError> {
        let size = *self.sizes.get(index).ok_or_else(|| self.malformed(format!("index {index} has no size")))?;
        match body {
            Rel::Dense(d) => self.reduce_dense(op, index, size, d).map(Rel::Dense),
            Rel::Sparse(r) => self.reduce_sparse(op, index, size, r).map(Rel::Sparse),
        }
    }

    /// [`Cx::reduce`] of a dense body: each output point folds its values in the order of the
    /// reduced index, as the sparse form's accumulator adds them (absent points read +0.0, which
    /// a sum adds exactly and a `maxr` counts as its implicit zeros).
    fn reduce_dense(&self, op: ReduceOp, index: &str, size: usize, mut body: DenseRel) -> Result<DenseRel, EvalError> {
        let Some(k) = body.layout.pos(index) else {
            // The body does not depend on the index: sum = size * value, max = value.
            if op == ReduceOp::Sum {
                for v in &mut body.vals {
                    *v = canon(*v * size as f64);
                }
            }
            return Ok(body);
        };
        let rest: Vec<String> =
            body.layout.vars.iter().enumerate().filter(|&(v, _)| v != k).map(|(_, n)| n.clone()).collect();
        let out = self.layout(rest)?;
        // The body's own extent of the index (the statement's sizes give the same).
        let size = body.layout.sizes[k];
        let outer: usize = body.layout.sizes[..k].iter().product();
        let inner: usize = body.layout.sizes[k + 1..].iter().product();
        self.afford_dense("reduction", outer * inner)?;
        let init = match op {
            ReduceOp::Sum => 0.0,
            ReduceOp::Max | ReduceOp::MaxNz => f64::NEG_INFINITY,
        };
        let mut vals = vec![init; outer * inner];
        // For `maxnz`: whether a group has a nonzero value.
        let mut any = if op == ReduceOp::MaxNz { vec![false; outer * inner] } else { Vec::new() };
        for o in 0..outer {
            for kk in 0..size {
                let src = &body.vals[(o * size + kk) * inner..][..inner];
                let dst = &mut vals[o * inner..][..inner];
                match op {
                    ReduceOp::Sum => dst.iter_mut().zip(src).for_each(|(d, s)| *d += s),
                    ReduceOp::Max => dst.iter_mut().zip(src).for_each(|(d, s)| *d = d.max(*s)),
                    ReduceOp::MaxNz => {
                        for (j, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
                            if s != 0.0 {
                                *d = d.max(s);
                                any[o * inner + j] = true;
                            }
                        }
                    }
                }
            }
        }
        for (j, v) in vals.iter_mut().enumerate() {
            let empty = size == 0 || (op == ReduceOp::MaxNz && !any[j]);
            *v = if empty { 0.0 } else { canon(*v) };
        }
        Ok(DenseRel { layout: out, vals })
    }

    /// [`Cx::reduce`] of a sparse body.
    fn reduce_sparse(&self, op: ReduceOp, index: &str, size: usize, body: Relation) -> Result<Relation, EvalError> {
        let Some(k) = body.layout.pos(index) else {
            // The body does not depend on the index: sum = size * value, max = value.
            let mut r = body;
            if op == ReduceOp::Sum {
                for p in &mut r.points {
                    p.1 *= size as f64;
                }
                r.points.retain(|p| p.1 != 0.0);
            }
            return Ok(r);
        };
        let rest: Vec<String> =
            body.layout.vars.iter().enumerate().filter(|&(v, _)| v != k).map(|(_, n)| n.clone()).collect();
        let out = self.layout(rest)?;
        let proj = Projector::new(&body.layout, &out);
        let points = match op {
            ReduceOp::Sum => {
                let mut acc = SumAccumulator::new(&out);
                for &(key, v) in &body.points {
                    acc.push(proj.apply(key), v);
                }
                acc.finish()
            }
            ReduceOp::Max | ReduceOp::MaxNz => {
                let mut projected: Vec<Point> = body.points.iter().map(|&(key, v)| (proj.apply(key), v)).collect();
                // Group equal keys. For `maxr`, implicit zeros count when a group has fewer than
                // size(k) values; `maxnz` sees only the (nonzero) values present.
                projected.sort_by_key(|p| p.0);
                let mut points = Vec::new();
                for group in projected.chunk_by(|x, y| x.0 == y.0) {
                    let max = group.iter().fold(f64::NEG_INFINITY, |m, p| m.max(p.1));
                    let max = if op == ReduceOp::Max && group.len() < size { max.max(0.0) } else { max };
                    if max != 0.0 {
                        points.push((group[0].0, max));
                    }
                }
                points
            }
        };
        Ok(Relation { layout: out, points })
    }
}

/// Whether the variables `b` shares with `a` lead `b`'s layout, in `a`'s order (then `b`'s
/// points come grouped by the shared key).
fn leads(b: &Layout, a: &Layout) -> bool {
    let shared: Vec<&String> = a.vars.iter().filter(|v| b.pos(v).is_some()).collect();
    b.vars.len() >= shared.len() && b.vars.iter().zip(&shared).all(|(x, y)| x == *y)
}
