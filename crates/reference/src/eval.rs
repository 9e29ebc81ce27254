//! The evaluator: every statement in order, in `f64`, as operations on sparse relations.

use std::collections::BTreeMap;

use fuseflow_ir::{BinOp, CheckedProgram, Expr, ReduceOp, Role, Stmt};
use fuseflow_tensor::{Coo, Tensor};

use crate::relation::{KeyMap, Layout, Projector, Relation, MAX_DENSE_POINTS};
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
/// - A unary `f` with `f(0) = 0` maps the nonzero values; any other `f` is evaluated over the
///   full dense index space of its operand (`exp` of a sparse matrix is dense).
/// - `sum` over `k` adds over `k`; `maxr` over `k` takes the maximum of the values present and
///   also 0 if fewer than `size(k)` values were present (implicit zeros count).
///
/// Every input declared by `p` must be in `inputs`, with the declared shape. Dense enumeration
/// of more than 2^27 points in one step is refused with [`EvalError::TooLarge`].
pub fn evaluate(p: &CheckedProgram, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Coo>, EvalError> {
    let mut values: BTreeMap<String, Coo> = BTreeMap::new();
    for d in p.decls.iter().filter(|d| d.role == Role::Input) {
        let t = inputs.get(&d.name).ok_or_else(|| EvalError::MissingInput { tensor: d.name.clone() })?;
        if t.shape != d.shape {
            return Err(EvalError::InputShape { tensor: d.name.clone(), expected: d.shape.clone(), actual: t.shape.clone() });
        }
        t.validate().map_err(|source| EvalError::InvalidInput { tensor: d.name.clone(), source })?;
        values.insert(d.name.clone(), t.to_coo());
    }
    let mut out = BTreeMap::new();
    for (s, stmt) in p.stmts.iter().enumerate() {
        let sizes = p
            .index_sizes
            .get(s)
            .ok_or_else(|| EvalError::Malformed(format!("no index sizes for statement {s}")))?;
        let shape = p
            .decl(&stmt.lhs.tensor)
            .ok_or_else(|| EvalError::Malformed(format!("{} is not declared", stmt.lhs.tensor)))?
            .shape
            .clone();
        let cx = Cx { values: &values, sizes, tensor: &stmt.lhs.tensor };
        let coo = cx.statement(stmt, shape)?;
        values.insert(stmt.lhs.tensor.clone(), coo.clone());
        out.insert(stmt.lhs.tensor.clone(), coo);
    }
    Ok(out)
}

/// Context of one statement's evaluation.
struct Cx<'a> {
    values: &'a BTreeMap<String, Coo>,
    sizes: &'a BTreeMap<String, usize>,
    /// The statement's left-hand-side tensor (for error messages).
    tensor: &'a str,
}

impl Cx<'_> {
    fn malformed(&self, msg: String) -> EvalError {
        EvalError::Malformed(format!("statement assigning {}: {msg}", self.tensor))
    }

    fn too_large(&self, what: &str) -> EvalError {
        EvalError::TooLarge { tensor: self.tensor.to_string(), what: what.to_string() }
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
        // Re-key in left-hand-side order (first index in the highest bits: sorting the keys sorts
        // the points row-major), broadcasting over any left-hand-side index the value lacks.
        let out_layout = self.layout(lhs.clone())?;
        let proj = Projector::new(&rel.layout, &out_layout);
        let missing: Vec<usize> = (0..lhs.len()).filter(|&d| rel.layout.pos(&lhs[d]).is_none()).collect();
        if out_layout.dense_points(&missing).is_none() {
            return Err(self.too_large("broadcast of the result"));
        }
        let mut points: Vec<(u128, f64)> = Vec::with_capacity(rel.map.len());
        for (&k, &v) in &rel.map {
            let base = proj.apply(k);
            out_layout.for_each_point(&missing, |m| points.push((base | m, v)));
        }
        points.sort_unstable_by_key(|p| p.0);
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

    fn eval(&self, e: &Expr) -> Result<Relation, EvalError> {
        match e {
            Expr::Access(a) => self.access(&a.tensor, &a.indices),
            Expr::Const(c) => {
                let mut r = Relation::empty(self.layout(Vec::new())?);
                if *c != 0.0 {
                    r.map.insert(0, *c);
                }
                Ok(r)
            }
            Expr::Unary(op, a) => {
                let a = self.eval(a)?;
                if op.preserves_zero() {
                    let mut r = a;
                    for v in r.map.values_mut() {
                        *v = op.apply(*v);
                    }
                    r.drop_zeros();
                    Ok(r)
                } else {
                    let all: Vec<usize> = (0..a.layout.vars.len()).collect();
                    if a.layout.dense_points(&all).is_none() {
                        return Err(self.too_large("dense evaluation of a function with f(0) != 0"));
                    }
                    let mut r = Relation::empty(a.layout.clone());
                    a.layout.for_each_point(&all, |k| {
                        let v = op.apply(a.map.get(&k).copied().unwrap_or(0.0));
                        if v != 0.0 {
                            r.map.insert(k, v);
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
        let mut r = Relation::empty(layout);
        let mut seen = vec![u32::MAX; r.layout.vars.len()];
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
                    key = r.layout.with(key, var, c);
                } else if seen[var] != c {
                    continue 'points; // off the diagonal of a repeated index
                }
            }
            *r.map.entry(key).or_insert(0.0) += v;
        }
        r.drop_zeros();
        Ok(r)
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

        let mut index: KeyMap<Vec<(u128, f64)>> = KeyMap::default();
        for (&k, &v) in &b.map {
            index.entry(b_to_shared.apply(k)).or_default().push((b_to_full.apply(k), v));
        }
        let mut r = Relation::empty(out_layout);
        for (&ka, &va) in &a.map {
            let Some(matches) = index.get(&a_to_shared.apply(ka)) else { continue };
            let base = a_to_full.apply(ka);
            for &(kb, vb) in matches {
                let key = full_to_out.apply(base | kb);
                let v = op.apply(va, vb);
                if reduce.is_some() {
                    *r.map.entry(key).or_insert(0.0) += v;
                } else {
                    r.map.insert(key, v);
                }
            }
        }
        r.drop_zeros();
        Ok(r)
    }

    /// `op(a_or_0, b_or_0)` over the union of both supports, each broadcast over the variables
    /// it lacks.
    fn union(&self, op: BinOp, a: &Relation, b: &Relation) -> Result<Relation, EvalError> {
        let mut vars = a.layout.vars.clone();
        vars.extend(b.layout.vars.iter().filter(|v| a.layout.pos(v).is_none()).cloned());
        let full = self.layout(vars)?;
        let a_missing: Vec<usize> = (0..full.vars.len()).filter(|&v| a.layout.pos(&full.vars[v]).is_none()).collect();
        let b_missing: Vec<usize> = (0..full.vars.len()).filter(|&v| b.layout.pos(&full.vars[v]).is_none()).collect();
        let too_big = |missing: &[usize], n: usize| {
            full.dense_points(missing).map_or(true, |m| m.saturating_mul(n as u128) > MAX_DENSE_POINTS)
        };
        if too_big(&a_missing, a.map.len()) || too_big(&b_missing, b.map.len()) {
            return Err(self.too_large("broadcast in an elementwise operation"));
        }
        let (a_to_full, b_to_full) = (Projector::new(&a.layout, &full), Projector::new(&b.layout, &full));
        let (full_to_a, full_to_b) = (Projector::new(&full, &a.layout), Projector::new(&full, &b.layout));
        let mut r = Relation::empty(full.clone());
        // Points where `a` is present (whatever `b` is there).
        for (&ka, &va) in &a.map {
            let base = a_to_full.apply(ka);
            full.for_each_point(&a_missing, |m| {
                let key = base | m;
                let vb = b.map.get(&full_to_b.apply(key)).copied().unwrap_or(0.0);
                r.map.insert(key, op.apply(va, vb));
            });
        }
        // Points where only `b` is present.
        for (&kb, &vb) in &b.map {
            let base = b_to_full.apply(kb);
            full.for_each_point(&b_missing, |m| {
                let key = base | m;
                if !a.map.contains_key(&full_to_a.apply(key)) {
                    r.map.insert(key, op.apply(0.0, vb));
                }
            });
        }
        r.drop_zeros();
        Ok(r)
    }

    /// Reduces `index` out of `body`.
    fn reduce(&self, op: ReduceOp, index: &str, body: Relation) -> Result<Relation, EvalError> {
        let size = *self.sizes.get(index).ok_or_else(|| self.malformed(format!("index {index} has no size")))?;
        let Some(k) = body.layout.pos(index) else {
            // The body does not depend on the index: sum = size * value, max = value.
            let mut r = body;
            if op == ReduceOp::Sum {
                for v in r.map.values_mut() {
                    *v *= size as f64;
                }
                r.drop_zeros();
            }
            return Ok(r);
        };
        let rest: Vec<String> = body.layout.vars.iter().enumerate().filter(|&(v, _)| v != k).map(|(_, n)| n.clone()).collect();
        let out = self.layout(rest)?;
        let proj = Projector::new(&body.layout, &out);
        let mut r = Relation::empty(out);
        match op {
            ReduceOp::Sum => {
                for (&key, &v) in &body.map {
                    *r.map.entry(proj.apply(key)).or_insert(0.0) += v;
                }
            }
            ReduceOp::Max => {
                let mut groups: KeyMap<(f64, usize)> = KeyMap::default();
                for (&key, &v) in &body.map {
                    let g = groups.entry(proj.apply(key)).or_insert((f64::NEG_INFINITY, 0));
                    g.0 = g.0.max(v);
                    g.1 += 1;
                }
                for (key, (max, count)) in groups {
                    let max = if count < size { max.max(0.0) } else { max };
                    r.map.insert(key, max);
                }
            }
        }
        r.drop_zeros();
        Ok(r)
    }
}
