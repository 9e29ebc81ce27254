//! Idiom recognition on the translated statements: duplicate statements are merged (torch-mlir
//! computes a layer norm's mean twice, once through an `f64` copy), then torch-mlir's decomposed
//! softmax (max, subtract, exp, sum, divide) and layer norm (sum, ÷D, subtract, square, sum, ÷D,
//! +ε, rsqrt, multiply) become the `softmax` and `layernorm` built-ins, over the last (kept)
//! dimension, so they expand, fuse and share rows exactly like the built-ins of a program file.
//!
//! Matching works on *canonical* statements: a statement's left-hand-side indices are renamed
//! `p0, p1, ...` by position and its reductions `pN, pN+1, ...` (N its rank), so that a
//! temporary read as `T(p0, ..., pm)` can be replaced by its own canonical right-hand side.

use std::collections::{BTreeMap, BTreeSet};

use fuseflow_ir::{Access, BinOp, BuildStmt, Expr, ReduceOp, Role, Span, Stmt, TensorDecl, UnaryOp, LAYERNORM_EPS};

/// Merges duplicates and recognises softmax and layer norm. Returns the declarations, the
/// statements to build (built-ins among them) and one note per recognised idiom.
/// A softmax whose argument reads a tensor of `masked` (torch-mlir's `masked_fill(mask == 0,
/// -inf)`, translated as `x * mask`) becomes `masked_softmax`: its zeros stand for −∞.
pub fn recognise(
    decls: Vec<TensorDecl>,
    stmts: Vec<Stmt>,
    orig_shapes: &BTreeMap<String, Vec<u64>>,
    masked: &BTreeMap<String, Span>,
) -> (Vec<TensorDecl>, Vec<BuildStmt>, Vec<String>) {
    let mut notes = Vec::new();
    let (mut decls, stmts) = merge_duplicates(decls, stmts, &mut notes);
    let merged = notes.len();
    let canon: Vec<Expr> = stmts.iter().map(canonical).collect();
    let def: BTreeMap<&str, usize> = stmts.iter().enumerate().map(|(s, st)| (st.lhs.tensor.as_str(), s)).collect();
    let mut uses: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (s, st) in stmts.iter().enumerate() {
        st.rhs.for_each_access(&mut |a| uses.entry(a.tensor.clone()).or_default().push(s));
    }
    let role: BTreeMap<&str, Role> = decls.iter().map(|d| (d.name.as_str(), d.role)).collect();
    let m = Matcher { stmts: &stmts, canon: &canon, def: &def, role: &role };
    let mut removed: BTreeSet<usize> = BTreeSet::new();
    let mut replaced: BTreeMap<usize, BuildStmt> = BTreeMap::new();
    for (y, st) in stmts.iter().enumerate().rev() {
        if removed.contains(&y) {
            continue;
        }
        let n = st.lhs.indices.len();
        if n < 2 {
            continue;
        }
        let last = orig_shapes.get(&st.lhs.tensor).and_then(|s| s.last().copied()).unwrap_or(0) as f64;
        let found =
            m.softmax(y, n).map(|r| ("softmax", r)).or_else(|| m.layernorm(y, n, last).map(|r| ("layernorm", r)));
        let Some((mut name, (e, temps))) = found else { continue };
        let mut reads_masked = temps.iter().any(|t| masked.contains_key(t));
        e.for_each_access(&mut |a| reads_masked |= masked.contains_key(&a.tensor));
        if name == "softmax" && reads_masked {
            name = "masked_softmax";
        }
        // Every temporary of the idiom must be read only inside it, and not yet taken.
        let inside: BTreeSet<usize> = temps.iter().map(|t| def[t.as_str()]).chain([y]).collect();
        let private = temps.iter().all(|t| {
            uses.get(t).is_none_or(|u| u.iter().all(|s| inside.contains(s))) && !removed.contains(&def[t.as_str()])
        });
        if !private {
            continue;
        }
        let names: BTreeMap<String, String> =
            st.lhs.indices.iter().enumerate().map(|(k, i)| (format!("p{k}"), i.clone())).collect();
        let arg = rename(&e, &names, st.span);
        replaced.insert(
            y,
            BuildStmt::Builtin {
                name: name.to_string(),
                lhs: st.lhs.clone(),
                index: st.lhs.indices[n - 1].clone(),
                arg,
                span: st.span,
            },
        );
        removed.extend(inside.iter().copied().filter(|&s| s != y));
        notes.push(format!(
            "line {}: {name} recognised ({} operations → one `{name}` statement for {})",
            st.span.line,
            inside.len(),
            st.lhs.tensor
        ));
    }
    let gone: BTreeSet<&str> = removed.iter().map(|&s| stmts[s].lhs.tensor.as_str()).collect();
    decls.retain(|d| !gone.contains(d.name.as_str()));
    let out = stmts
        .iter()
        .enumerate()
        .filter(|(s, _)| !removed.contains(s))
        .map(|(s, st)| replaced.remove(&s).unwrap_or_else(|| BuildStmt::Plain(st.clone())))
        .collect();
    // Idioms were found from the last statement up: report them in file order.
    notes[merged..].reverse();
    (decls, out, notes)
}

/// Merges statements that compute the same thing from the same tensors into the first one.
fn merge_duplicates(
    mut decls: Vec<TensorDecl>,
    stmts: Vec<Stmt>,
    notes: &mut Vec<String>,
) -> (Vec<TensorDecl>, Vec<Stmt>) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(stmts.len());
    for mut st in stmts {
        st.rhs = retarget(&st.rhs, &renamed);
        let d = decls.iter().find(|d| d.name == st.lhs.tensor);
        let Some(d) = d else {
            out.push(st);
            continue;
        };
        let key = format!("{:?}|{:?}|{:?}", canonical(&st), d.shape, d.format);
        match seen.get(&key) {
            Some(first) if d.role == Role::Temp => {
                notes.push(format!("line {}: {} computes what {first} computes: merged", st.span.line, st.lhs.tensor));
                renamed.insert(st.lhs.tensor.clone(), first.clone());
                let name = st.lhs.tensor.clone();
                decls.retain(|d| d.name != name);
            }
            _ => {
                seen.insert(key, st.lhs.tensor.clone());
                out.push(st);
            }
        }
    }
    (decls, out)
}

/// Reads tensors by their new names.
fn retarget(e: &Expr, renamed: &BTreeMap<String, String>) -> Expr {
    match e {
        Expr::Access(a) => {
            let mut a = a.clone();
            if let Some(n) = renamed.get(&a.tensor) {
                a.tensor = n.clone();
            }
            Expr::Access(a)
        }
        Expr::Const(c) => Expr::Const(*c),
        Expr::Unary(u, x) => Expr::Unary(*u, Box::new(retarget(x, renamed))),
        Expr::Binary(o, a, b) => Expr::Binary(*o, Box::new(retarget(a, renamed)), Box::new(retarget(b, renamed))),
        Expr::Reduce { op, index, body } => {
            Expr::Reduce { op: *op, index: index.clone(), body: Box::new(retarget(body, renamed)) }
        }
    }
}

/// The canonical right-hand side (positional index names, no positions).
fn canonical(st: &Stmt) -> Expr {
    let mut names: BTreeMap<String, String> =
        st.lhs.indices.iter().enumerate().map(|(k, i)| (i.clone(), format!("p{k}"))).collect();
    let mut next = st.lhs.indices.len();
    canon_expr(&st.rhs, &mut names, &mut next)
}

fn canon_expr(e: &Expr, names: &mut BTreeMap<String, String>, next: &mut usize) -> Expr {
    match e {
        Expr::Access(a) => Expr::Access(Access {
            tensor: a.tensor.clone(),
            indices: a.indices.iter().map(|i| names.get(i).cloned().unwrap_or_else(|| i.clone())).collect(),
            span: Span::default(),
        }),
        Expr::Const(c) => Expr::Const(*c),
        Expr::Unary(u, x) => Expr::Unary(*u, Box::new(canon_expr(x, names, next))),
        Expr::Binary(o, a, b) => {
            Expr::Binary(*o, Box::new(canon_expr(a, names, next)), Box::new(canon_expr(b, names, next)))
        }
        Expr::Reduce { op, index, body } => {
            let fresh = format!("p{next}");
            *next += 1;
            let saved = names.insert(index.clone(), fresh.clone());
            let body = canon_expr(body, names, next);
            match saved {
                Some(s) => names.insert(index.clone(), s),
                None => names.remove(index),
            };
            Expr::Reduce { op: *op, index: fresh, body: Box::new(body) }
        }
    }
}

/// Renames canonical index names back (`p0` → the statement's first index, ...).
fn rename(e: &Expr, names: &BTreeMap<String, String>, span: Span) -> Expr {
    match e {
        Expr::Access(a) => Expr::Access(Access {
            tensor: a.tensor.clone(),
            indices: a.indices.iter().map(|i| names.get(i).cloned().unwrap_or_else(|| i.clone())).collect(),
            span,
        }),
        Expr::Const(c) => Expr::Const(*c),
        Expr::Unary(u, x) => Expr::Unary(*u, Box::new(rename(x, names, span))),
        Expr::Binary(o, a, b) => Expr::Binary(*o, Box::new(rename(a, names, span)), Box::new(rename(b, names, span))),
        Expr::Reduce { op, index, body } => Expr::Reduce {
            op: *op,
            index: names.get(index).cloned().unwrap_or_else(|| index.clone()),
            body: Box::new(rename(body, names, span)),
        },
    }
}

struct Matcher<'a> {
    stmts: &'a [Stmt],
    canon: &'a [Expr],
    def: &'a BTreeMap<&'a str, usize>,
    role: &'a BTreeMap<&'a str, Role>,
}

fn positional(m: usize) -> Vec<String> {
    (0..m).map(|k| format!("p{k}")).collect()
}

impl Matcher<'_> {
    /// When `e` reads a temporary `T(p0, ..., pm-1)` with `m` = `rank`, `T`'s canonical
    /// right-hand side (and records `T`).
    fn follow(&self, e: &Expr, rank: usize, temps: &mut Vec<String>) -> Option<Expr> {
        let Expr::Access(a) = e else { return None };
        if a.indices != positional(rank) || self.role.get(a.tensor.as_str()) != Some(&Role::Temp) {
            return None;
        }
        let s = *self.def.get(a.tensor.as_str())?;
        if self.stmts[s].lhs.indices.len() != rank {
            return None;
        }
        if !temps.contains(&a.tensor) {
            temps.push(a.tensor.clone());
        }
        Some(self.canon[s].clone())
    }

    /// `e` itself, or what the temporary it reads computes.
    fn through(&self, e: &Expr, rank: usize, temps: &mut Vec<String>) -> Expr {
        self.follow(e, rank, temps).unwrap_or_else(|| e.clone())
    }

    /// `Y = P / Z`, `Z = sum(P)`, `P = exp(S)`, `S = E - M`, `M = maxr(E)`: returns `E`.
    fn softmax(&self, y: usize, n: usize) -> Option<(Expr, Vec<String>)> {
        let mut temps = Vec::new();
        let Expr::Binary(BinOp::Div, p, z) = &self.canon[y] else { return None };
        let p_def = self.follow(p, n, &mut temps)?;
        let Expr::Unary(UnaryOp::Exp, s) = &p_def else { return None };
        let z_def = self.follow(z, n - 1, &mut temps)?;
        let Expr::Reduce { op: ReduceOp::Sum, index, body } = &z_def else { return None };
        if *index != format!("p{}", n - 1) || **body != **p {
            return None;
        }
        let s_def = self.through(s, n, &mut temps);
        let Expr::Binary(BinOp::Sub, e, m) = &s_def else { return None };
        let m_def = self.follow(m, n - 1, &mut temps)?;
        let Expr::Reduce { op: ReduceOp::Max, index, body } = &m_def else { return None };
        if *index != format!("p{}", n - 1) || **body != **e {
            return None;
        }
        Some(((**e).clone(), temps))
    }

    /// `Y = C * rsqrt(sum(C * C) / D + eps)`, `C = E - sum(E) / D` (through temporaries in
    /// any grouping): returns `E`.
    fn layernorm(&self, y: usize, n: usize, d: f64) -> Option<(Expr, Vec<String>)> {
        let Expr::Binary(BinOp::Mul, a, b) = &self.canon[y] else { return None };
        for (c, r) in [(a, b), (b, a)] {
            let mut temps = Vec::new();
            if let Some(e) = self.layernorm_parts(c, r, n, d, &mut temps) {
                return Some((e, temps));
            }
        }
        None
    }

    fn layernorm_parts(&self, c: &Expr, r: &Expr, n: usize, d: f64, temps: &mut Vec<String>) -> Option<Expr> {
        let row = n - 1;
        let j = format!("p{row}");
        let Expr::Unary(UnaryOp::Rsqrt, x) = self.through(r, row, temps) else { return None };
        let Expr::Binary(BinOp::Add, u, v) = self.through(&x, row, temps) else { return None };
        let (var, eps) = match (&*u, &*v) {
            (other, Expr::Const(e)) | (Expr::Const(e), other) => (other.clone(), *e),
            _ => return None,
        };
        if (eps - LAYERNORM_EPS).abs() > 1e-9 {
            return None;
        }
        let Expr::Binary(BinOp::Div, s, dv) = self.through(&var, row, temps) else { return None };
        if *dv != Expr::Const(d) {
            return None;
        }
        let Expr::Reduce { op: ReduceOp::Sum, index, body } = self.through(&s, row, temps) else { return None };
        if index != j {
            return None;
        }
        let Expr::Binary(BinOp::Mul, c1, c2) = self.through(&body, n, temps) else { return None };
        if c1 != c2 || *c1 != *c {
            return None;
        }
        let Expr::Binary(BinOp::Sub, e, mean) = self.through(c, n, temps) else { return None };
        let Expr::Binary(BinOp::Div, s, dm) = self.through(&mean, row, temps) else { return None };
        if *dm != Expr::Const(d) {
            return None;
        }
        let Expr::Reduce { op: ReduceOp::Sum, index, body } = self.through(&s, row, temps) else { return None };
        if index != j || *body != *e {
            return None;
        }
        Some(*e)
    }
}
