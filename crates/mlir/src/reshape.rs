//! Reshapes that split or merge dimensions, as index relabellings.
//!
//! Index notation has no index arithmetic (`d = h·E + e`), so a `tensor.expand_shape` that
//! splits a dimension of size H·E into (H, E), or a `collapse_shape` that merges them back, is
//! not translated as an operation: the split is applied to *every* tensor dimension tied to
//! the split one (through the loops of the `linalg` ops that read and write it: the producer's
//! output dimension, the weight dimensions contracted or broadcast against it, the bias), so
//! the whole function is rewritten into one where every reshape only adds or drops size-1
//! dimensions. A merge is the same thing seen from the other side: the merged dimension
//! becomes two indices everywhere it is tied. Data stays row-major, so a split of dense data
//! is free (the same values under a finer shape).
//!
//! The ties are a union-find over dimensions, with splitting, as the Python frontend does for
//! `view`/`reshape` (`python/fuseflow/_dims.py`): loops of each op and dimensions of each SSA
//! value are nodes; a loop indexing an operand's dimension puts both in one class; a split
//! applies to a whole class, and classes that meet are split alike. What cannot be relabelled
//! is refused in one line: a dimension split two incompatible ways, a split of a compressed
//! level, reassociation groups that are not contiguous.

use std::collections::BTreeMap;

use crate::ast::*;
use crate::error::MlirError;
use crate::translate::{named_generic, transpose_generic};

/// A function rewritten so that every reshape only adds or drops size-1 dimensions.
pub(crate) struct Relabelled {
    /// The rewritten function (unchanged when no reshape splits or merges).
    pub func: Func,
    /// Arguments and tensor constants whose shape the rewrite changed: SSA key → the shape
    /// MLIR declares (data files have that shape and are read row-major into the new one).
    pub orig_shapes: BTreeMap<String, Vec<u64>>,
    /// One line per relabelled reshape and per result returned in a finer shape.
    pub notes: Vec<String>,
    /// Whether some reshape split or merged dimensions (then storage orders are planned,
    /// see [`crate::layout`]).
    pub changed: bool,
}

/// Union-find over dimensions, with splitting (see the module documentation).
#[derive(Default)]
struct Dims {
    size: Vec<u64>,
    up: Vec<usize>,
    children: Vec<Option<Vec<usize>>>,
    /// Members of the class, kept at its root.
    members: Vec<Vec<usize>>,
}

impl Dims {
    fn node(&mut self, size: u64) -> usize {
        let id = self.size.len();
        self.size.push(size);
        self.up.push(id);
        self.children.push(None);
        self.members.push(vec![id]);
        id
    }

    fn root(&self, mut d: usize) -> usize {
        while self.up[d] != d {
            d = self.up[d];
        }
        d
    }

    /// The leaves of a node, outermost first (row-major order).
    fn leaves(&self, d: usize) -> Vec<usize> {
        match &self.children[d] {
            None => vec![d],
            Some(c) => c.iter().flat_map(|&x| self.leaves(x)).collect(),
        }
    }

    fn leaves_of(&self, ds: &[usize]) -> Vec<usize> {
        ds.iter().flat_map(|&d| self.leaves(d)).collect()
    }

    /// Puts two dimensions of equal size in one class (splitting an unsplit class like a
    /// split one: members of a class are all split the same way, or all leaves).
    fn union(&mut self, a: usize, b: usize) -> Result<(), String> {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return Ok(());
        }
        if self.size[ra] != self.size[rb] {
            return Err(format!("dimensions of sizes {} and {} meet at one index", self.size[ra], self.size[rb]));
        }
        match (self.children[ra].clone(), self.children[rb].clone()) {
            (Some(c), None) => self.split(rb, &c.iter().map(|&x| self.size[x]).collect::<Vec<_>>())?,
            (None, Some(c)) => self.split(ra, &c.iter().map(|&x| self.size[x]).collect::<Vec<_>>())?,
            _ => {}
        }
        self.up[rb] = ra;
        let moved = std::mem::take(&mut self.members[rb]);
        self.members[ra].extend(moved);
        if let (Some(ca), Some(cb)) = (self.children[ra].clone(), self.children[rb].clone()) {
            self.unify(&ca, &cb)?;
        }
        Ok(())
    }

    /// Splits an unsplit dimension, and its whole class, into `factors`, outermost first.
    fn split(&mut self, d: usize, factors: &[u64]) -> Result<(), String> {
        let r = self.root(d);
        let members = self.members[r].clone();
        for &m in &members {
            if self.children[m].is_some() {
                return Err(format!("a dimension of size {} is already split", self.size[m]));
            }
            let c = factors.iter().map(|&f| self.node(f)).collect();
            self.children[m] = Some(c);
        }
        let first = self.children[members[0]].clone().unwrap_or_default();
        for &m in &members[1..] {
            let other = self.children[m].clone().unwrap_or_default();
            for (&x, &y) in first.iter().zip(&other) {
                self.union(x, y)?;
            }
        }
        Ok(())
    }

    /// Makes two row-major sequences of dimensions with equal products the same indices,
    /// splitting a leaf where one side is finer than the other.
    fn unify(&mut self, a: &[usize], b: &[usize]) -> Result<(), String> {
        let prod = |ds: &[usize]| ds.iter().try_fold(1u64, |p, &d| p.checked_mul(self.size[d]));
        let (Some(pa), Some(pb)) = (prod(a), prod(b)) else { return Err("sizes overflow 64 bits".into()) };
        if pa != pb {
            return Err(format!("sizes {pa} and {pb} meet at one index"));
        }
        let (mut i, mut j) = (0, 0);
        loop {
            let (la, lb) = (self.leaves_of(a), self.leaves_of(b));
            let (Some(&x), Some(&y)) = (la.get(i), lb.get(j)) else { return Ok(()) };
            let (sx, sy) = (self.size[x], self.size[y]);
            if sx == sy {
                self.union(x, y)?;
                i += 1;
                j += 1;
            } else {
                let (small, big, sb) = if sx < sy { (sx, y, sy) } else { (sy, x, sx) };
                if small == 0 || sb % small != 0 {
                    return Err(format!(
                        "a dimension of size {sb} cannot be split by {small} (it is split two incompatible ways)"
                    ));
                }
                self.split(big, &[small, sb / small])?;
            }
        }
    }
}

/// A reshape that changes the kept (size > 1) dimensions.
fn splits(op: &Op) -> bool {
    let OpKind::Reshape { from: Type::Tensor(a), to: Type::Tensor(b), .. } = &op.kind else { return false };
    let keep = |t: &TensorType| t.shape.iter().copied().filter(|&s| s != 1).collect::<Vec<_>>();
    keep(a) != keep(b)
}

/// The generic form of the ops with loops.
pub(crate) fn as_generic(op: &Op) -> Option<Generic> {
    match &op.kind {
        OpKind::Generic(g) => Some((**g).clone()),
        OpKind::Named { which, ins, out, ty } => Some(named_generic(op.span, *which, ins, out, ty)),
        OpKind::Transpose { input, out, perm } => Some(transpose_generic(op.span, input, out, perm)),
        _ => None,
    }
}

/// Rewrites `f` so that reshapes that split or merge dimensions become relabellings.
pub(crate) fn relabel(file: &str, f: &Func) -> Result<Relabelled, MlirError> {
    if !f.body.iter().any(splits) {
        return Ok(Relabelled { func: f.clone(), orig_shapes: BTreeMap::new(), notes: Vec::new(), changed: false });
    }
    let op_err =
        |op: &Op, msg: String| MlirError::at(file, op.span, format!("`{}` at line {}: {msg}", op.name, op.span.line));
    let mut dims = Dims::default();
    // Dimensions of SSA values with contents (size-1 dimensions have none). Values without
    // contents (`tensor.empty`, fills, splats) are shared as inits by unrelated ops, so they
    // tie nothing: each use takes its shape from the loops.
    let mut vals: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
    let fresh = |dims: &mut Dims, t: &TensorType| -> Vec<Option<usize>> {
        t.shape.iter().map(|&s| (s != 1).then(|| dims.node(s))).collect()
    };
    for (a, t, _) in &f.args {
        if let Type::Tensor(t) = t {
            let v = fresh(&mut dims, t);
            vals.insert(a.clone(), v);
        }
    }
    // Loops of each op with loops, by op position.
    let mut loops: BTreeMap<usize, Vec<Option<usize>>> = BTreeMap::new();
    for (pos, op) in f.body.iter().enumerate() {
        let Some((res, _)) = &op.result else { continue };
        match &op.kind {
            OpKind::Constant { value: ConstValue::Array(_) | ConstValue::Resource(_), ty: Type::Tensor(t) } => {
                let v = fresh(&mut dims, t);
                vals.insert(res.clone(), v);
            }
            OpKind::Reshape { src, groups, from: Type::Tensor(a), to: Type::Tensor(b) } => {
                let Some(sv) = vals.get(&src.key()).cloned() else { continue };
                if sv.len() != a.shape.len() {
                    continue;
                }
                let rv = fresh(&mut dims, b);
                let kept = |v: &[Option<usize>]| v.iter().flatten().copied().collect::<Vec<_>>();
                let shown = format!("reshape {:?} → {:?}", a.shape, b.shape);
                if groups.is_empty() {
                    // `tensor.cast`: the same dimensions.
                    dims.unify(&kept(&sv), &kept(&rv)).map_err(|m| op_err(op, format!("{shown}: {m}")))?;
                } else {
                    // Groups index the higher-rank side, one per dimension of the other.
                    let (low, high, lowv, highv) =
                        if a.shape.len() <= b.shape.len() { (a, b, &sv, &rv) } else { (b, a, &rv, &sv) };
                    let flat: Vec<usize> = groups.iter().flatten().copied().collect();
                    if groups.len() != low.shape.len()
                        || groups.iter().any(Vec::is_empty)
                        || flat != (0..high.shape.len()).collect::<Vec<_>>()
                    {
                        return Err(op_err(
                            op,
                            format!("{shown}: reassociation {groups:?} is not contiguous groups covering every dimension in order"),
                        ));
                    }
                    for (l, g) in groups.iter().enumerate() {
                        let hs: Vec<usize> = g.iter().filter_map(|&h| highv[h]).collect();
                        let ls: Vec<usize> = lowv[l].into_iter().collect();
                        dims.unify(&ls, &hs).map_err(|m| op_err(op, format!("{shown}: {m}")))?;
                    }
                }
                vals.insert(res.clone(), rv);
            }
            _ => {
                let Some(g) = as_generic(op) else { continue };
                let mut lp: Vec<Option<usize>> = vec![None; g.iterators.len()];
                for (k, (o, t)) in g.ins.iter().chain(&g.outs).enumerate() {
                    let (Type::Tensor(t), Some(m)) = (t, g.maps.get(k)) else { continue };
                    let Some(v) = vals.get(&o.key()).cloned() else { continue };
                    for (d, r) in m.results.iter().enumerate() {
                        let (AffineExpr::Dim(n), Some(&s), Some(&Some(vd))) = (r, t.shape.get(d), v.get(d)) else {
                            continue;
                        };
                        if s == 1 || *n >= lp.len() {
                            continue;
                        }
                        let l = *lp[*n].get_or_insert_with(|| dims.node(s));
                        dims.union(l, vd).map_err(|m| op_err(op, m))?;
                    }
                }
                // Loops that only index contentless operands still get nodes (a broadcast).
                for (k, (_, t)) in g.ins.iter().chain(&g.outs).enumerate() {
                    let (Type::Tensor(t), Some(m)) = (t, g.maps.get(k)) else { continue };
                    for (d, r) in m.results.iter().enumerate() {
                        if let (AffineExpr::Dim(n), Some(&s)) = (r, t.shape.get(d)) {
                            if s != 1 && *n < lp.len() && lp[*n].is_none() {
                                lp[*n] = Some(dims.node(s));
                            }
                        }
                    }
                }
                // The result has the output's dimensions, through the output's map.
                if let (Some(Type::Tensor(rt)), Some(m)) = (g.results.first(), g.maps.get(g.ins.len())) {
                    let rv = rt
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(d, &s)| match m.results.get(d) {
                            Some(AffineExpr::Dim(n)) if s != 1 => lp.get(*n).copied().flatten(),
                            _ => None,
                        })
                        .collect();
                    vals.insert(res.clone(), rv);
                }
                loops.insert(pos, lp);
            }
        }
    }

    // Rewrite: every dimension becomes its leaves.
    let mut orig_shapes = BTreeMap::new();
    let mut notes = Vec::new();
    let leaf_sizes = |v: &[Option<usize>], d: usize, s: u64| -> Vec<u64> {
        match v.get(d).copied().flatten() {
            Some(n) => dims.leaves(n).iter().map(|&x| dims.size[x]).collect(),
            None => vec![s],
        }
    };
    let retype = |t: &TensorType, v: &[Option<usize>], span_op: &dyn Fn(String) -> MlirError| {
        let parts: Vec<Vec<u64>> = t.shape.iter().enumerate().map(|(d, &s)| leaf_sizes(v, d, s)).collect();
        refine(t, &parts).map_err(span_op)
    };
    let mut out = f.clone();
    for (a, t, span) in &mut out.args {
        if let (Type::Tensor(tt), Some(v)) = (&*t, vals.get(a.as_str())) {
            let e = |m: String| MlirError::at(file, *span, format!("argument %{a}: {m}"));
            let nt = retype(tt, v, &e)?;
            if nt.shape != tt.shape {
                orig_shapes.insert(a.clone(), tt.shape.clone());
                *t = Type::Tensor(nt);
            }
        }
    }
    for (pos, op) in out.body.iter_mut().enumerate() {
        let orig = op.clone();
        let e = |m: String| op_err(&orig, m);
        let res = op.result.as_ref().map(|(r, _)| r.clone()).unwrap_or_default();
        match &mut op.kind {
            OpKind::Constant { ty: Type::Tensor(t), .. } => {
                if let Some(v) = vals.get(&res) {
                    let nt = retype(t, v, &e)?;
                    if nt.shape != t.shape {
                        orig_shapes.insert(res.clone(), t.shape.clone());
                        *t = nt;
                    }
                }
            }
            OpKind::Reshape { src, groups, from: Type::Tensor(a), to: Type::Tensor(b) } => {
                let (Some(sv), Some(rv)) = (vals.get(&src.key()), vals.get(&res)) else { continue };
                let (na, nb) = (retype(a, sv, &e)?, retype(b, rv, &e)?);
                if splits(&orig) {
                    notes.push(format!(
                        "line {}: reshape {:?} → {:?} read as a relabelling: the tied dimensions of every tensor are {:?}",
                        orig.span.line,
                        a.shape,
                        b.shape,
                        nb.shape.iter().filter(|&&s| s != 1).collect::<Vec<_>>()
                    ));
                }
                *a = na;
                *b = nb;
                // Both sides now have the same kept dimensions: an alias, like `tensor.cast`.
                groups.clear();
            }
            _ => {
                let (Some(g), Some(lp)) = (as_generic(&orig), loops.get(&pos)) else { continue };
                let out_of_range =
                    g.maps.iter().flat_map(|m| &m.results).any(|r| matches!(r, AffineExpr::Dim(n) if *n >= lp.len()));
                if g.maps.len() != g.ins.len() + g.outs.len() || lp.len() != g.iterators.len() || out_of_range {
                    continue; // malformed: the translation reports it
                }
                // New loop numbers: loop n becomes one loop per leaf of its class.
                let mut first = Vec::new();
                let mut per: Vec<Vec<usize>> = Vec::new();
                let mut iters = Vec::new();
                for (n, l) in lp.iter().enumerate() {
                    let count = l.map_or(1, |l| dims.leaves(l).len());
                    first.push(iters.len());
                    per.push((iters.len()..iters.len() + count).collect());
                    iters.extend(std::iter::repeat_n(g.iterators[n], count));
                }
                // A map result and its sizes, for dimension `d` (size `s`) read through `r`.
                let refined = |r: AffineExpr, s: u64| -> (Vec<AffineExpr>, Vec<u64>) {
                    match r {
                        AffineExpr::Dim(n) if s != 1 && n < lp.len() => {
                            let leaves = lp[n].map_or_else(Vec::new, |l| dims.leaves(l));
                            (
                                per[n].iter().map(|&x| AffineExpr::Dim(x)).collect(),
                                leaves.iter().map(|&x| dims.size[x]).collect(),
                            )
                        }
                        AffineExpr::Dim(n) => (vec![AffineExpr::Dim(first.get(n).copied().unwrap_or(n))], vec![s]),
                        AffineExpr::Const(c) => (vec![AffineExpr::Const(c)], vec![s]),
                    }
                };
                let shape_of = |t: &Type| match t {
                    Type::Tensor(tt) => tt.shape.clone(),
                    Type::Scalar(_) => Vec::new(),
                };
                let mut ng = g.clone();
                ng.iterators = iters.clone();
                let n_in = g.ins.len();
                for (k, (_, t)) in ng.ins.iter_mut().chain(ng.outs.iter_mut()).enumerate() {
                    let shape = shape_of(t);
                    let (mut results, mut parts) = (Vec::new(), Vec::new());
                    for (d, &r) in g.maps[k].results.iter().enumerate() {
                        let (rs, ps) = refined(r, shape.get(d).copied().unwrap_or(1));
                        results.extend(rs);
                        parts.push(ps);
                    }
                    ng.maps[k] = AffineMap { dims: iters.len(), results };
                    if let Type::Tensor(tt) = t {
                        *tt = refine(tt, &parts).map_err(&e)?;
                    }
                }
                // Result `i` has output `i`'s dimensions (its own element type and encoding).
                for (i, r) in ng.results.iter_mut().enumerate() {
                    let (Type::Tensor(rt), Some(m)) = (&*r, g.maps.get(n_in + i)) else { continue };
                    let parts: Vec<Vec<u64>> = rt
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(d, &s)| m.results.get(d).map_or(vec![s], |&x| refined(x, s).1))
                        .collect();
                    *r = Type::Tensor(refine(rt, &parts).map_err(&e)?);
                }
                op.kind = OpKind::Generic(Box::new(ng));
            }
        }
    }
    // Results returned in a finer shape than declared (same row-major data).
    if let Some(Op { kind: OpKind::Return(rets), .. }) = out.body.iter().find(|o| matches!(o.kind, OpKind::Return(_))) {
        for (o, t) in rets.iter().zip(&f.results) {
            let (Some(v), Type::Tensor(t)) = (vals.get(&o.key()), t) else { continue };
            let parts: Vec<u64> = t.shape.iter().enumerate().flat_map(|(d, &s)| leaf_sizes(v, d, s)).collect();
            if parts.iter().filter(|&&s| s != 1).count() != t.shape.iter().filter(|&&s| s != 1).count() {
                notes.push(format!(
                    "result %{} is returned with shape {parts:?} (declared {:?}: the same row-major data)",
                    o.key(),
                    t.shape
                ));
            }
        }
    }
    Ok(Relabelled { func: out, orig_shapes, notes, changed: true })
}

/// `t` with dimension `d` replaced by dimensions of sizes `parts[d]` (outermost first), its
/// encoding's levels likewise. A compressed level cannot be split: its coordinates would
/// have to be divided among several levels, which is a different storage.
fn refine(t: &TensorType, parts: &[Vec<u64>]) -> Result<TensorType, String> {
    if parts.len() != t.shape.len() || parts.iter().all(|p| p.len() == 1) {
        return Ok(t.clone());
    }
    let mut start = Vec::new();
    let mut shape = Vec::new();
    for p in parts {
        start.push(shape.len());
        shape.extend(p);
    }
    let encoding = match &t.encoding {
        None => None,
        Some(enc) => {
            // A tile is a `B × B` block of the declared dimensions: splitting one would cut
            // the tiles apart.
            if let (Some(b), Some(d)) = (enc.block, parts.iter().position(|p| p.len() > 1)) {
                return Err(format!(
                    "dimension {d} (size {}) of a block-encoded ({b} × {b} tiles) tensor would be split into {:?}, but blocked dimensions cannot be split or merged",
                    t.shape[d], parts[d]
                ));
            }
            let mut levels = Vec::new();
            for &(d, kind) in &enc.levels {
                let Some(p) = parts.get(d) else { return Ok(t.clone()) };
                if p.len() > 1 && kind != LevelKind::Dense {
                    return Err(format!(
                        "dimension {d} (size {}) of a sparse tensor would be split into {p:?}, but it is a compressed level (only dense levels can be split or merged)",
                        t.shape[d]
                    ));
                }
                levels.extend((0..p.len()).map(|x| (start[d] + x, kind)));
            }
            Some(Encoding { dims: shape.len(), levels, block: enc.block, span: enc.span })
        }
    };
    Ok(TensorType { shape, elem: t.elem.clone(), encoding })
}
