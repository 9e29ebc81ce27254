//! The evaluator: every statement in order, in `f64`, as operations on sparse relations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuseflow_ir::{BinOp, CheckedProgram, Expr, ReduceOp, Role, Stmt};
use fuseflow_tensor::budget::coo_bytes;
use fuseflow_tensor::{Budget, Coo, Tensor};

use crate::relation::{
    merge_union, normalize_sum, Layout, Point, Projector, Relation, RowAccumulator, SumAccumulator, MAX_DENSE_POINTS,
};
use crate::EvalError;

/// Evaluates every statement of `p` in order and returns the value of every statement's
/// left-hand-side tensor (temps and outputs) as COO in logical order: sorted row-major, no
/// duplicates, no zeros.
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
/// Every input declared by `p` must be in `inputs`, with the declared shape. Dense enumeration
/// of more than 2^27 points in one step is refused with [`EvalError::TooLarge`].
pub fn evaluate(p: &CheckedProgram, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Coo>, EvalError> {
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
) -> Result<BTreeMap<String, Coo>, EvalError> {
    let mut values: BTreeMap<String, Coo> = BTreeMap::new();
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
        let bytes = coo_bytes(t.rank(), t.vals.len() as u64);
        budget.check(bytes, || format!("the reference evaluator's copy of input {}", d.name))?;
        budget.hold(bytes);
        values.insert(d.name.clone(), t.to_coo());
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
        let coo = cx.statement(stmt, shape)?;
        budget.hold(coo_bytes(coo.rank(), coo.nnz() as u64));
        values.insert(stmt.lhs.tensor.clone(), coo);
    }
    // The results are the values of the statements' left-hand sides (the inputs' copies go).
    let assigned: std::collections::BTreeSet<&String> = p.stmts.iter().map(|s| &s.lhs.tensor).collect();
    values.retain(|name, _| assigned.contains(name));
    Ok(values)
}

/// Context of one statement's evaluation.
struct Cx<'a> {
    values: &'a BTreeMap<String, Coo>,
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

    fn layout(&self, vars: Vec<String>) -> Result<Layout, EvalError> {
        let sizes = vars
            .iter()
            .map(|v| self.sizes.get(v).copied().ok_or_else(|| self.malformed(format!("index {v} has no size"))))
            .collect::<Result<Vec<usize>, EvalError>>()?;
        Layout::new(vars, sizes).ok_or_else(|| self.too_large("index tuple wider than 128 bits"))
    }

    fn statement(&self, stmt: &Stmt, shape: Vec<usize>) -> Result<Coo, EvalError> {
        let rel = self.eval(&stmt.rhs)?;
        let lhs = &stmt.lhs.indices;
        if lhs.len() != shape.len() {
            return Err(self.malformed(format!("rank {} but {} indices", shape.len(), lhs.len())));
        }
        if let Some(v) = rel.layout.vars.iter().find(|v| !lhs.contains(v)) {
            return Err(self.malformed(format!("index {v} is neither on the left-hand side nor reduced")));
        }
        // Re-key in left-hand-side order (sorting the keys then sorts the points row-major),
        // broadcasting over any left-hand-side index the value lacks.
        let out_layout = self.layout(lhs.clone())?;
        let missing: Vec<usize> = (0..lhs.len()).filter(|&d| rel.layout.pos(&lhs[d]).is_none()).collect();
        let points = if missing.is_empty() && rel.layout.vars == *lhs {
            rel.points
        } else {
            self.expand(&rel, &out_layout, &missing, "broadcast of the result")?
        };
        let mut coo = Coo::new(shape);
        coo.coords.reserve(points.len() * lhs.len());
        coo.vals.reserve(points.len());
        for (k, v) in points {
            for d in 0..lhs.len() {
                coo.coords.push(out_layout.get(k, d));
            }
            coo.vals.push(v);
        }
        Ok(coo)
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

    fn eval(&self, e: &Expr) -> Result<Relation, EvalError> {
        match e {
            Expr::Access(a) => self.access(&a.tensor, &a.indices),
            Expr::Const(c) => {
                let mut r = Relation::empty(self.layout(Vec::new())?);
                if *c != 0.0 {
                    r.points.push((0, *c));
                }
                Ok(r)
            }
            Expr::Unary(op, a) => {
                let a = self.eval(a)?;
                if op.preserves_zero() {
                    let mut r = a;
                    for p in &mut r.points {
                        p.1 = op.apply(p.1);
                    }
                    r.points.retain(|p| p.1 != 0.0);
                    Ok(r)
                } else {
                    // Every point of the full index space, in key order, merged with the operand.
                    let all: Vec<usize> = (0..a.layout.vars.len()).collect();
                    let Some(n) = a.layout.dense_points(&all) else {
                        return Err(self.too_large("dense evaluation of a function with f(0) != 0"));
                    };
                    self.afford("dense evaluation of a function with f(0) != 0", n, n)?;
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
                    Ok(r)
                }
            }
            Expr::Binary(op @ (BinOp::Mul | BinOp::Div), a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.join(*op, &a, &b, None)
            }
            Expr::Binary(BinOp::ExpSubNz, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.driven_by_left(BinOp::ExpSubNz, &a, &b)
            }
            Expr::Binary(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.union(*op, &a, &b)
            }
            Expr::Reduce { op: ReduceOp::Sum, index, body } => {
                // Fused join + sum: never materialises the product over the reduced index.
                if let Expr::Binary(BinOp::Mul, a, b) = &**body {
                    let a = self.eval(a)?;
                    let b = self.eval(b)?;
                    if a.layout.pos(index).is_some() || b.layout.pos(index).is_some() {
                        return self.join(BinOp::Mul, &a, &b, Some(index));
                    }
                    let prod = self.join(BinOp::Mul, &a, &b, None)?;
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

    /// The nonzero entries of a tensor as a relation over its distinct index variables.
    fn access(&self, tensor: &str, indices: &[String]) -> Result<Relation, EvalError> {
        let coo = self.values.get(tensor).ok_or_else(|| self.malformed(format!("no value for tensor {tensor}")))?;
        if coo.rank() != indices.len() {
            return Err(self.malformed(format!("{tensor} has rank {} but {} indices", coo.rank(), indices.len())));
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
            if coo.shape[d] != layout.sizes[v] {
                return Err(self.malformed(format!(
                    "{tensor} dimension {d} has size {} but index {} has size {}",
                    coo.shape[d], indices[d], layout.sizes[v]
                )));
            }
        }
        self.afford(&format!("relation of {tensor}"), coo.nnz() as u128, 0)?;
        let mut points = Vec::with_capacity(coo.nnz());
        let mut seen = vec![u32::MAX; layout.vars.len()];
        'points: for p in 0..coo.nnz() {
            let v = coo.vals[p];
            if v == 0.0 {
                continue;
            }
            seen.fill(u32::MAX);
            let mut key = 0u128;
            for (d, &c) in coo.coords(p).iter().enumerate() {
                let var = var_of[d];
                if seen[var] == u32::MAX {
                    seen[var] = c;
                    key = layout.with(key, var, c);
                } else if seen[var] != c {
                    continue 'points; // off the diagonal of a repeated index
                }
            }
            points.push((key, v));
        }
        normalize_sum(&mut points);
        Ok(Relation { layout, points })
    }

    /// Natural join of `a` and `b` (variables of `a`, then those only in `b`) with `op` applied
    /// (`*` or `/`), optionally summing out `reduce` on the fly.
    fn join(&self, op: BinOp, a: &Relation, b: &Relation, reduce: Option<&String>) -> Result<Relation, EvalError> {
        let mut vars = a.layout.vars.clone();
        vars.extend(b.layout.vars.iter().filter(|v| a.layout.pos(v).is_none()).cloned());
        let full = self.layout(vars.clone())?;
        let shared_vars: Vec<String> = a.layout.vars.iter().filter(|v| b.layout.pos(v).is_some()).cloned().collect();
        let shared = self.layout(shared_vars)?;
        let (a_to_shared, b_to_shared) = (Projector::new(&a.layout, &shared), Projector::new(&b.layout, &shared));
        let (a_to_full, b_to_full) = (Projector::new(&a.layout, &full), Projector::new(&b.layout, &full));
        let out_layout = match reduce {
            Some(k) => self.layout(vars.into_iter().filter(|v| v != k).collect())?,
            None => full.clone(),
        };
        let full_to_out = Projector::new(&full, &out_layout);

        // `b`'s points by shared-variable key. They already come in that order when the shared
        // variables lead `b`'s layout in `a`'s order (a dense right operand such as `X[k,f]`
        // in `A[i,k]·X[k,f]`): then they are searched in place rather than copied and sorted.
        let in_place =
            b.layout.vars.len() >= shared.vars.len() && b.layout.vars[..shared.vars.len()] == shared.vars[..];
        // Where each shared key's group starts, when the packed shared keys are few enough to
        // index directly (a CSR row pointer: one lookup per point of `a` instead of two binary
        // searches, which miss the cache on every probe of a large operand).
        let b_len = b.points.len();
        let bits = shared.key_bits();
        let indexed = bits < usize::BITS - 1 && (1usize << bits) <= (2 * b_len).max(1 << 16);
        // Copies of `b` this join makes: a regrouped `b` at 1.5 points a point, the index at a
        // quarter point an entry.
        let regrouped = if in_place { 0 } else { 3 * b_len / 2 };
        let index_points = if indexed { ((1usize << bits) + 1).div_ceil(4) } else { 0 };
        self.afford(
            &format!("join of {} × {} points", a.points.len(), b_len),
            (a.points.len() + b_len + regrouped + index_points) as u128,
            0,
        )?;
        let grouped: Vec<(u128, u128, f64)> = if in_place {
            Vec::new()
        } else {
            let mut g: Vec<(u128, u128, f64)> =
                b.points.iter().map(|&(k, v)| (b_to_shared.apply(k), b_to_full.apply(k), v)).collect();
            g.sort_unstable_by_key(|g| (g.0, g.1));
            g
        };
        let shared_key = |i: usize| if in_place { b_to_shared.apply(b.points[i].0) } else { grouped[i].0 };
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
            if indexed {
                starts[s as usize]..starts[s as usize + 1]
            } else if in_place {
                b.points.partition_point(|p| b_to_shared.apply(p.0) < s)
                    ..b.points.partition_point(|p| b_to_shared.apply(p.0) <= s)
            } else {
                grouped.partition_point(|g| g.0 < s)..grouped.partition_point(|g| g.0 <= s)
            }
        };
        let item = |i: usize| -> (u128, f64) {
            if in_place {
                (b_to_full.apply(b.points[i].0), b.points[i].1)
            } else {
                (grouped[i].1, grouped[i].2)
            }
        };
        // The number of products, counted exactly unless the plain bound is small enough.
        let bound = a.points.len() as u128 * b.points.len() as u128;
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
        let own = b.layout.vars.len() - shared.vars.len();
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
        let out_points = out_points + (a.points.len() + b_len + regrouped + index_points) as u128;
        self.afford(&format!("join of {} × {} points", a.points.len(), b.points.len()), out_points, work)?;
        if let (BinOp::Mul, Some(k)) = (op, reduce) {
            if work >= crate::dense::MIN_PRODUCTS {
                if let Some(points) = crate::dense::contract(a, b, k, &out_layout) {
                    return Ok(Relation { layout: out_layout, points });
                }
            }
        }
        // Every product of the left point `(ka, va)`, at its output key.
        let products = |ka: u128, va: f64, f: &mut dyn FnMut(u128, f64)| {
            let base = a_to_full.apply(ka);
            for i in group(a_to_shared.apply(ka)) {
                let (kb, vb) = item(i);
                f(full_to_out.apply(base | kb), op.apply(va, vb));
            }
        };
        if by_rows {
            let mut rows = RowAccumulator::new(low_bits);
            let k_bits = a.layout.bits(a.layout.vars.len() - 1);
            let mut points = Vec::new();
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
            }
            return Ok(Relation { layout: out_layout, points });
        }
        let mut acc = SumAccumulator::new(&out_layout);
        for (n, &(ka, va)) in a.points.iter().enumerate() {
            if n & 0xFFFF == 0xFFFF {
                self.check_cancel()?;
            }
            products(ka, va, &mut |k, v| acc.push(k, v));
        }
        // Without a reduction every key is produced once, so summing only sorts.
        Ok(Relation { layout: out_layout, points: acc.finish() })
    }

    /// `op(a_or_0, b_or_0)` over the union of both supports, each broadcast over the variables
    /// it lacks.
    fn union(&self, op: BinOp, a: &Relation, b: &Relation) -> Result<Relation, EvalError> {
        let mut vars = a.layout.vars.clone();
        vars.extend(b.layout.vars.iter().filter(|v| a.layout.pos(v).is_none()).cloned());
        let full = self.layout(vars)?;
        let a_missing: Vec<usize> = (0..full.vars.len()).filter(|&v| a.layout.pos(&full.vars[v]).is_none()).collect();
        let b_missing: Vec<usize> = (0..full.vars.len()).filter(|&v| b.layout.pos(&full.vars[v]).is_none()).collect();
        let what = "broadcast in an elementwise operation";
        let ea = self.expand(a, &full, &a_missing, what)?;
        let eb = self.expand(b, &full, &b_missing, what)?;
        let mut r = Relation::empty(full);
        merge_union(&ea, &eb, |k, va, vb| {
            let v = op.apply(va.unwrap_or(0.0), vb.unwrap_or(0.0));
            if v != 0.0 {
                r.points.push((k, v));
            }
        });
        Ok(r)
    }

    /// `op(a, b_or_0)` at every nonzero point of `a`, broadcast over the variables only `b` has
    /// (for operators with `op(0, b) = 0`, such as `expsubnz`).
    fn driven_by_left(&self, op: BinOp, a: &Relation, b: &Relation) -> Result<Relation, EvalError> {
        let mut vars = a.layout.vars.clone();
        vars.extend(b.layout.vars.iter().filter(|v| a.layout.pos(v).is_none()).cloned());
        let full = self.layout(vars)?;
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
    fn reduce(&self, op: ReduceOp, index: &str, body: Relation) -> Result<Relation, EvalError> {
        let size = *self.sizes.get(index).ok_or_else(|| self.malformed(format!("index {index} has no size")))?;
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
