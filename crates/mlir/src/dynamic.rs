//! Dynamic sizes (`?`): every `?` dimension is resolved to a size before translation, so that
//! everything after (relabelling, sizes as `D<size>` parameters, data binding) sees static
//! shapes.
//!
//! Dimensions are tied as in [`crate::reshape`]: the dimensions of an SSA value and the loops of
//! the `linalg` ops that index them are nodes of a union-find; `tensor.cast` ties its source
//! and result dimension by dimension, `return` ties a value to the declared result type.
//! Values without contents (`tensor.empty`, fills, splats) tie nothing (torch-mlir shares them
//! among unrelated ops): where an op reads one, its dimensions are the op's loops. A reshape
//! (`expand_shape`/`collapse_shape`) ties a dimension to its reassociation group: one to one
//! when the group has one dimension, else as a product (the coarse dimension's size is the
//! product of the fine ones), so a class whose size is unknown gets it from the others as soon
//! as all the other sizes of the product are known (`tensor<?xf32>` expanded into
//! `tensor<4x16xf32>` is 64; `tensor<4x?xf32>` collapsed into `tensor<64xf32>` has 16 columns).
//! Products are solved again after every size bound from a file or `--param`. A class of
//! tied dimensions takes, in order: a static size one of its members has; the size of that
//! dimension in the `--input` file of an argument in it; `--param D<arg>_<dim>=N`; else the
//! translation stops with an error naming the argument and dimension. Contradicting data is
//! then the ordinary shape error of `--input`.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::*;
use crate::error::MlirError;
use crate::reshape::as_generic;
use crate::translate::Options;

/// A function with its dynamic sizes resolved.
pub(crate) struct Resolved {
    /// The function with every `?` replaced by a size.
    pub func: Func,
    /// One line per resolved argument dimension (how it was bound).
    pub notes: Vec<String>,
    /// The `--param` names this function's dynamic dimensions take (`D<arg>_<dim>`).
    pub params: BTreeSet<String>,
}

/// The `--param` name of dimension `d` of argument `a`.
pub(crate) fn param_name(a: &str, d: usize) -> String {
    format!("D{a}_{d}")
}

#[derive(Default)]
struct Uf {
    up: Vec<usize>,
    size: Vec<Option<u64>>,
}

impl Uf {
    fn node(&mut self) -> usize {
        self.up.push(self.up.len());
        self.size.push(None);
        self.up.len() - 1
    }

    fn root(&self, mut d: usize) -> usize {
        while self.up[d] != d {
            d = self.up[d];
        }
        d
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            // The lower node stays the root: the first static size seen wins, deterministically.
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.up[hi] = lo;
            if self.size[lo].is_none() {
                self.size[lo] = self.size[hi];
            }
        }
    }

    /// Records a size written in a type (`?` records nothing).
    fn saw(&mut self, n: usize, s: u64) {
        let r = self.root(n);
        if s != DYNAMIC && self.size[r].is_none() {
            self.size[r] = Some(s);
        }
    }
}

/// Where each dimension of each tensor type of the function lives in the union-find.
struct Ties {
    uf: Uf,
    /// Reshape groups of more than one dimension: the coarse dimension's class has the
    /// product of the fine dimensions' sizes.
    products: Vec<Product>,
    vals: BTreeMap<(String, usize), usize>,
    /// Loop nodes of each op with loops, by op position.
    loops: BTreeMap<usize, Vec<usize>>,
    contentless: BTreeSet<String>,
    /// The loop a contentless value's dimension is first read as (its own type's `?` takes
    /// that loop's size: nothing reads the type of a value without contents otherwise).
    first_use: BTreeMap<(String, usize), usize>,
}

/// One reassociation group of a reshape: `coarse = fine[0] × fine[1] × ...`.
struct Product {
    coarse: usize,
    fine: Vec<usize>,
    /// The reshape, for errors: "`tensor.expand_shape` at line 7".
    what: String,
    span: fuseflow_ir::Span,
}

impl Ties {
    /// Sizes the classes that a product determines (all of its other sizes known), until
    /// nothing changes. A size that cannot divide evenly is an error naming the reshape.
    fn solve(&mut self, file: &str) -> Result<(), MlirError> {
        loop {
            let mut changed = false;
            for p in &self.products {
                let size = |n: usize| self.uf.size[self.uf.root(n)];
                let coarse = size(p.coarse);
                let fine: Vec<Option<u64>> = p.fine.iter().map(|&n| size(n)).collect();
                let unknown: Vec<usize> = (0..fine.len()).filter(|&k| fine[k].is_none()).collect();
                let known = fine.iter().flatten().try_fold(1u64, |a, &b| a.checked_mul(b));
                let Some(known) = known else {
                    return Err(MlirError::at(file, p.span, format!("{}: the dimension sizes overflow", p.what)));
                };
                match (coarse, unknown.as_slice()) {
                    (None, []) => {
                        let r = self.uf.root(p.coarse);
                        self.uf.size[r] = Some(known);
                        changed = true;
                    }
                    (Some(c), &[k]) => {
                        if known == 0 || c % known != 0 {
                            return Err(MlirError::at(
                                file,
                                p.span,
                                format!(
                                    "{}: a dynamic (`?`) dimension cannot be sized: {c} is not a multiple of the other dimensions' product {known}",
                                    p.what
                                ),
                            ));
                        }
                        let r = self.uf.root(p.fine[k]);
                        self.uf.size[r] = Some(c / known);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }

    fn val(&mut self, key: &str, d: usize) -> usize {
        if let Some(&n) = self.vals.get(&(key.to_string(), d)) {
            return n;
        }
        let n = self.uf.node();
        self.vals.insert((key.to_string(), d), n);
        n
    }

    /// Ties the dimensions of a value to a type naming it.
    fn typed(&mut self, key: &str, t: &Type) {
        if let Type::Tensor(t) = t {
            for (d, &s) in t.shape.iter().enumerate() {
                let n = self.val(key, d);
                self.uf.saw(n, s);
            }
        }
    }
}

fn has_dynamic(f: &Func) -> bool {
    let mut any = false;
    visit_types(f, &mut |t| any |= t.shape.contains(&DYNAMIC));
    any
}

/// Calls `g` on every tensor type the function names.
fn visit_types(f: &Func, g: &mut dyn FnMut(&TensorType)) {
    let mut ty = |t: &Type| {
        if let Type::Tensor(t) = t {
            g(t);
        }
    };
    f.args.iter().for_each(|(_, t, _)| ty(t));
    f.results.iter().for_each(&mut ty);
    for op in &f.body {
        match &op.kind {
            OpKind::Constant { ty: t, .. } => ty(t),
            OpKind::Empty(t) | OpKind::Fill { ty: t, .. } => ty(&Type::Tensor(t.clone())),
            OpKind::Named { ins, out, ty: t, .. } => {
                ins.iter().chain(std::iter::once(out)).for_each(|(_, t)| ty(t));
                ty(&Type::Tensor(t.clone()));
            }
            OpKind::Transpose { input, out, .. } => {
                ty(&input.1);
                ty(&out.1);
            }
            OpKind::Generic(gen) => {
                gen.ins.iter().chain(&gen.outs).for_each(|(_, t)| ty(t));
                gen.results.iter().for_each(&mut ty);
            }
            OpKind::Reshape { from, to, .. } => {
                ty(from);
                ty(to);
            }
            OpKind::Return(_) | OpKind::Other(_) => {}
        }
    }
}

/// Resolves the `?` sizes of `f` (unchanged when it has none). `opts.inputs` names this
/// function's arguments.
pub(crate) fn resolve(file: &str, f: &Func, opts: &Options) -> Result<Resolved, MlirError> {
    let mut params = BTreeSet::new();
    for (a, t, _) in &f.args {
        if let Type::Tensor(t) = t {
            params.extend((0..t.shape.len()).filter(|&d| t.shape[d] == DYNAMIC).map(|d| param_name(a, d)));
        }
    }
    if !has_dynamic(f) {
        return Ok(Resolved { func: f.clone(), notes: Vec::new(), params });
    }
    let mut ties = Ties {
        uf: Uf::default(),
        products: Vec::new(),
        vals: BTreeMap::new(),
        loops: BTreeMap::new(),
        contentless: BTreeSet::new(),
        first_use: BTreeMap::new(),
    };
    for (a, t, _) in &f.args {
        ties.typed(a, t);
    }
    for (pos, op) in f.body.iter().enumerate() {
        let res = |k: usize| op.result.as_ref().map(|(r, _)| value_key(r, k));
        match &op.kind {
            OpKind::Constant { value, ty } => {
                if matches!(value, ConstValue::Scalar(_) | ConstValue::Splat(_)) {
                    ties.contentless.extend(res(0));
                } else if let Some(r) = res(0) {
                    ties.typed(&r, ty);
                }
            }
            OpKind::Empty(_) | OpKind::Fill { .. } => ties.contentless.extend(res(0)),
            OpKind::Reshape { src, groups, from, to } => {
                let Some(r) = res(0) else { continue };
                ties.typed(&src.key(), from);
                ties.typed(&r, to);
                let (Type::Tensor(a), Type::Tensor(b)) = (from, to) else { continue };
                if groups.is_empty() {
                    // `tensor.cast`: the same dimensions.
                    for d in 0..a.shape.len().min(b.shape.len()) {
                        let (x, y) = (ties.val(&src.key(), d), ties.val(&r, d));
                        ties.uf.union(x, y);
                    }
                } else if !ties.contentless.contains(&src.key()) {
                    // The groups index the finer side's dimensions, one group per dimension of
                    // the coarser side.
                    let (coarse, fine) = if a.shape.len() <= b.shape.len() { (src.key(), r) } else { (r, src.key()) };
                    for (k, g) in groups.iter().enumerate() {
                        let c = ties.val(&coarse, k);
                        let f: Vec<usize> = g.iter().map(|&d| ties.val(&fine, d)).collect();
                        if let [one] = f.as_slice() {
                            ties.uf.union(c, *one);
                        } else {
                            ties.products.push(Product {
                                coarse: c,
                                fine: f,
                                what: format!("`{}` at line {}", op.name, op.span.line),
                                span: op.span,
                            });
                        }
                    }
                }
            }
            OpKind::Named { .. } | OpKind::Transpose { .. } | OpKind::Generic(_) => {
                let Some(g) = as_generic(op) else { continue };
                let lp: Vec<usize> = (0..g.iterators.len()).map(|_| ties.uf.node()).collect();
                for (k, (o, t)) in g.ins.iter().chain(&g.outs).enumerate() {
                    let (Type::Tensor(t), Some(m)) = (t, g.maps.get(k)) else { continue };
                    for (d, r) in m.results.iter().enumerate() {
                        let (AffineExpr::Dim(n), Some(&s)) = (r, t.shape.get(d)) else { continue };
                        let Some(&l) = lp.get(*n) else { continue };
                        ties.uf.saw(l, s);
                        if ties.contentless.contains(&o.key()) {
                            ties.first_use.entry((o.key(), d)).or_insert(l);
                        } else {
                            let v = ties.val(&o.key(), d);
                            ties.uf.saw(v, s);
                            ties.uf.union(l, v);
                        }
                    }
                }
                // Result k has output k's dimensions, through its map.
                for (k, t) in g.results.iter().enumerate() {
                    let (Type::Tensor(t), Some(m), Some(r)) = (t, g.maps.get(g.ins.len() + k), res(k)) else {
                        continue;
                    };
                    for (d, e) in m.results.iter().enumerate() {
                        let (AffineExpr::Dim(n), Some(&s)) = (e, t.shape.get(d)) else { continue };
                        let Some(&l) = lp.get(*n) else { continue };
                        let v = ties.val(&r, d);
                        ties.uf.saw(v, s);
                        ties.uf.union(l, v);
                    }
                }
                ties.loops.insert(pos, lp);
            }
            OpKind::Return(vals) => {
                for (o, t) in vals.iter().zip(&f.results) {
                    if !ties.contentless.contains(&o.key()) {
                        ties.typed(&o.key(), t);
                    }
                }
            }
            OpKind::Other(_) => {}
        }
    }

    // A fill's init is read where the fill is.
    for op in f.body.iter().rev() {
        if let (OpKind::Fill { out, ty, .. }, Some((r, _))) = (&op.kind, &op.result) {
            for d in 0..ty.shape.len() {
                if let Some(&l) = ties.first_use.get(&(r.clone(), d)) {
                    ties.first_use.entry((out.key(), d)).or_insert(l);
                }
            }
        }
    }

    // Sizes that reshapes determine from static sizes, then the classes still without a size
    // from the arguments' files, then `--param` (solving the products again after each).
    ties.solve(file)?;
    let mut notes = Vec::new();
    for (a, t, span) in &f.args {
        let Type::Tensor(t) = t else { continue };
        let file_shape = match opts.inputs.get(a) {
            Some(path) if t.shape.contains(&DYNAMIC) => {
                let coo = crate::translate::read_input(path, &opts.budget)
                    .map_err(|e| MlirError::at(file, *span, format!("--input {a}: {e}")))?;
                if coo.shape.len() != t.shape.len() {
                    return Err(MlirError::at(
                        file,
                        *span,
                        format!(
                            "--input {a}={}: the file has shape {:?} (rank {}) but %{a} has rank {}",
                            path.display(),
                            coo.shape,
                            coo.shape.len(),
                            t.shape.len()
                        ),
                    ));
                }
                Some(coo.shape)
            }
            _ => None,
        };
        for d in (0..t.shape.len()).filter(|&d| t.shape[d] == DYNAMIC) {
            let n = ties.val(a, d);
            let r = ties.uf.root(n);
            let name = param_name(a, d);
            if let Some(s) = ties.uf.size[r] {
                if opts.params.contains_key(&name) {
                    // A size given twice would be silently dropped: say which one holds.
                    return Err(MlirError::at(
                        file,
                        *span,
                        format!("--param {name}: argument %{a} dimension {d} is tied to a dimension of size {s} (resize that with --param D{s}=N)"),
                    ));
                }
                notes.push(format!("argument %{a} dimension {d} (`?`) has size {s}"));
                continue;
            }
            let (s, how) = match (&file_shape, opts.params.get(&name)) {
                (Some(shape), _) => (shape[d] as u64, "from its --input file".to_string()),
                (None, Some(&p)) if p >= 1 => (p as u64, format!("from --param {name}")),
                (None, Some(&p)) => {
                    return Err(MlirError::at(file, *span, format!("--param {name}={p}: a size must be at least 1")))
                }
                (None, None) => {
                    return Err(MlirError::at(
                        file,
                        *span,
                        format!(
                            "argument %{a} dimension {d} is dynamic (`?`): bind it with --input {a}=FILE or give --param {name}=N"
                        ),
                    ))
                }
            };
            ties.uf.size[r] = Some(s);
            ties.solve(file)?;
            notes.push(format!("argument %{a} dimension {d} (`?`) has size {s} {how}"));
        }
    }

    // Rewrite every type.
    let mut out = f.clone();
    let mut rw = Rewrite { ties, unresolved: None };
    for (a, t, _) in &mut out.args {
        rw.by_val(Some(a.clone()), t);
    }
    let rets: Vec<String> = f
        .body
        .iter()
        .find_map(|op| match &op.kind {
            OpKind::Return(v) => Some(v.iter().map(Operand::key).collect()),
            _ => None,
        })
        .unwrap_or_default();
    for (k, t) in out.results.iter_mut().enumerate() {
        rw.by_val(rets.get(k).cloned(), t);
    }
    for (pos, op) in out.body.iter_mut().enumerate() {
        let res: Vec<String> =
            op.result.as_ref().map(|(r, n)| (0..*n).map(|k| value_key(r, k)).collect()).unwrap_or_default();
        let r0 = res.first().cloned();
        let lp = rw.ties.loops.get(&pos).cloned().unwrap_or_default();
        let maps = as_generic(op).map(|g| g.maps).unwrap_or_default();
        match &mut op.kind {
            OpKind::Constant { ty, .. } => rw.by_val(r0, ty),
            OpKind::Empty(t) | OpKind::Fill { ty: t, .. } => rw.tensor_by_val(r0, t),
            OpKind::Reshape { src, from, to, .. } => {
                rw.by_val(Some(src.key()), from);
                rw.by_val(r0, to);
            }
            OpKind::Named { ins, out: o, ty, .. } => {
                for (k, (operand, t)) in ins.iter_mut().chain(std::iter::once(&mut *o)).enumerate() {
                    rw.by_loop(&lp, maps.get(k), &operand.key(), t);
                }
                rw.tensor_by_val(r0, ty);
            }
            OpKind::Transpose { input, out: o, .. } => {
                rw.by_loop(&lp, maps.first(), &input.0.key(), &mut input.1);
                rw.by_loop(&lp, maps.get(1), &o.0.key(), &mut o.1);
            }
            OpKind::Generic(g) => {
                let n_in = g.ins.len();
                for (k, (operand, t)) in g.ins.iter_mut().chain(g.outs.iter_mut()).enumerate() {
                    rw.by_loop(&lp, maps.get(k), &operand.key(), t);
                }
                for (k, t) in g.results.iter_mut().enumerate() {
                    rw.by_loop(&lp, maps.get(n_in + k), res.get(k).map_or("", String::as_str), t);
                }
            }
            OpKind::Return(_) | OpKind::Other(_) => {}
        }
    }
    let unresolved = rw.unresolved;
    if let Some(msg) = unresolved {
        return Err(MlirError::at(file, f.span, format!("@{}: {msg}", f.name)));
    }
    Ok(Resolved { func: out, notes, params })
}

/// The second pass: every `?` becomes its class's size.
struct Rewrite {
    ties: Ties,
    /// The first dimension left without a size.
    unresolved: Option<String>,
}

impl Rewrite {
    fn fix(&mut self, node: Option<usize>, key: &str, t: &mut TensorType, d: usize) {
        if t.shape[d] != DYNAMIC {
            return;
        }
        match node.and_then(|n| self.ties.uf.size[self.ties.uf.root(n)]) {
            Some(s) => t.shape[d] = s,
            None => {
                self.unresolved.get_or_insert_with(|| {
                    format!("%{key} dimension {d} is dynamic (`?`) and tied to no static size or argument")
                });
            }
        }
    }

    /// A type naming value `key`: its dimensions are the value's.
    fn by_val(&mut self, key: Option<String>, t: &mut Type) {
        if let Type::Tensor(t) = t {
            self.tensor_by_val(key, t);
        }
    }

    fn tensor_by_val(&mut self, key: Option<String>, t: &mut TensorType) {
        let Some(key) = key else { return };
        for d in 0..t.shape.len() {
            let n = if self.ties.contentless.contains(&key) {
                self.ties.first_use.get(&(key.clone(), d)).copied()
            } else {
                Some(self.ties.val(&key, d))
            };
            self.fix(n, &key, t, d);
        }
    }

    /// An operand or result type of an op with loops `lp`: a dimension its map indexes by a
    /// loop is that loop.
    fn by_loop(&mut self, lp: &[usize], m: Option<&AffineMap>, key: &str, t: &mut Type) {
        let Type::Tensor(t) = t else { return };
        for d in 0..t.shape.len() {
            let n = match m.and_then(|m| m.results.get(d)) {
                Some(AffineExpr::Dim(n)) => lp.get(*n).copied(),
                _ if self.ties.contentless.contains(key) => self.ties.first_use.get(&(key.to_string(), d)).copied(),
                _ => Some(self.ties.val(key, d)),
            };
            self.fix(n, key, t, d);
        }
    }
}
