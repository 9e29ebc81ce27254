//! The checker: resolves names, infers index sizes, validates declarations, statements and
//! fusion groups, and makes every reduction explicit.
//!
//! Implicit reductions follow the TACO convention: an index that occurs on the right-hand side
//! but not on the left (and is not bound by an explicit `sum`/`maxr`/`maxnz`) is summed at the
//! smallest subexpression that contains all of its occurrences. Several indices placed at the
//! same node nest in order of first occurrence, the first-occurring one outermost.

use std::collections::{BTreeMap, BTreeSet};

use fuseflow_tensor::Format;

use crate::ast::{
    Access, CheckedProgram, Expr, FuseGroup, ParSpec, Program, ReduceOp, Role, Source, Span, Stmt, TensorDecl, UserStmt,
};
use crate::error::IrError;
use crate::parser::RESERVED;
use crate::pretty::reduce_name;

/// Checks a parsed program and makes its reductions explicit.
pub fn check(p: Program) -> Result<CheckedProgram, IrError> {
    let file = p.file.as_str();
    let mut decls: BTreeMap<&str, &TensorDecl> = BTreeMap::new();
    for d in &p.decls {
        check_decl(file, d)?;
        if let Some(first) = decls.insert(d.name.as_str(), d) {
            return Err(IrError::at(
                file,
                d.span,
                format!("tensor {} is declared twice (first declared at line {})", d.name, first.span.line),
            ));
        }
    }

    // Which statement assigns each tensor.
    let mut assigned: BTreeMap<&str, usize> = BTreeMap::new();
    for (s, stmt) in p.stmts.iter().enumerate() {
        let name = stmt.lhs.tensor.as_str();
        let Some(d) = decls.get(name) else {
            return Err(IrError::at(file, stmt.lhs.span, format!("unknown tensor {name}")));
        };
        if d.role == Role::Input {
            return Err(IrError::at(
                file,
                stmt.lhs.span,
                format!("cannot assign to input {name} (declare it as output or temp)"),
            ));
        }
        if let Some(&first) = assigned.get(name) {
            return Err(IrError::at(
                file,
                stmt.lhs.span,
                format!("{name} is assigned twice (first at line {})", p.stmts[first].span.line),
            ));
        }
        assigned.insert(name, s);
    }

    let mut stmts = Vec::with_capacity(p.stmts.len());
    let mut index_sizes = Vec::with_capacity(p.stmts.len());
    for (s, stmt) in p.stmts.iter().enumerate() {
        let cx = StmtCx { file, decls: &decls, assigned: &assigned, stmt_idx: s, stmts: &p.stmts };
        let (checked, sizes) = cx.check_stmt(stmt)?;
        stmts.push(checked);
        index_sizes.push(sizes);
    }

    for d in &p.decls {
        if d.role != Role::Input && !assigned.contains_key(d.name.as_str()) {
            let role = if d.role == Role::Output { "output" } else { "temp" };
            return Err(IrError::at(file, d.span, format!("{role} {} is never assigned", d.name)));
        }
    }

    let users = user_stmts(&p)?;
    check_groups(file, &p.groups, &users, &p.stmts, &assigned)?;
    check_pars(file, &p.pars, &index_sizes)?;

    Ok(CheckedProgram {
        file: p.file.clone(),
        decls: p.decls.clone(),
        stmts,
        index_sizes,
        user_stmts: users,
        groups: p.groups.clone(),
        pars: p.pars.clone(),
        params: p.params.clone(),
    })
}

/// `par` items: each names an index some statement iterates, once per group.
fn check_pars(file: &str, pars: &[ParSpec], index_sizes: &[BTreeMap<String, usize>]) -> Result<(), IrError> {
    let known: std::collections::BTreeSet<&String> = index_sizes.iter().flat_map(|m| m.keys()).collect();
    for (k, par) in pars.iter().enumerate() {
        if !known.contains(&par.index) {
            let list: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
            return Err(IrError::at(
                file,
                par.span,
                format!("par: index {} is not an index of any statement (indices: {})", par.index, list.join(", ")),
            ));
        }
        if pars[..k].iter().any(|q| q.index == par.index && q.group == par.group) {
            return Err(IrError::at(file, par.span, format!("par: index {} is given twice", par.index)));
        }
    }
    Ok(())
}

fn check_decl(file: &str, d: &TensorDecl) -> Result<(), IrError> {
    let name = &d.name;
    if RESERVED.contains(&name.as_str()) {
        return Err(IrError::at(file, d.span, format!("`{name}` is a function name and cannot name a tensor")));
    }
    let rank = d.shape.len();
    if let Some(dim) = d.shape.iter().position(|&n| n == 0 || n as u64 > 1u64 << 32) {
        return Err(IrError::at(
            file,
            d.span,
            format!("dimension {dim} of {name} must be between 1 and 2^32, got {}", d.shape[dim]),
        ));
    }
    if d.format.levels.len() != rank {
        return Err(IrError::at(
            file,
            d.span,
            format!("format of {name} has {} levels but {name} has rank {rank}", d.format.levels.len()),
        ));
    }
    if Format::new(d.format.levels.clone(), d.format.mode_order.clone()).is_err() {
        return Err(IrError::at(
            file,
            d.span,
            format!("mode order {:?} of {name} is not a permutation of 0..{rank}", d.format.mode_order),
        ));
    }
    match (&d.role, &d.source) {
        (Role::Input, None) => Err(IrError::at(file, d.span, format!("input {name} needs a data source"))),
        (Role::Input, Some(Source::Random { density, .. })) if !(0.0..=1.0).contains(density) => {
            Err(IrError::at(file, d.span, format!("density of {name} must be in [0, 1], got {density}")))
        }
        (Role::Output | Role::Temp, Some(_)) => {
            Err(IrError::at(file, d.span, format!("only inputs take a data source, but {name} is not an input")))
        }
        _ => Ok(()),
    }
}

/// Where an index variable got its size from.
#[derive(Clone)]
struct SizeOrigin {
    size: usize,
    tensor: String,
    dim: usize,
}

/// Facts about one index variable gathered by walking a right-hand side.
#[derive(Default)]
struct IndexUse {
    /// Occurrences not bound by an enclosing explicit reduction.
    free: usize,
    /// Position of the first free occurrence in pre-order.
    first: usize,
    /// Span of the first free occurrence.
    first_span: Span,
}

struct StmtCx<'a> {
    file: &'a str,
    decls: &'a BTreeMap<&'a str, &'a TensorDecl>,
    assigned: &'a BTreeMap<&'a str, usize>,
    stmt_idx: usize,
    stmts: &'a [Stmt],
}

/// Mutable state of one right-hand-side walk.
#[derive(Default)]
struct Walk {
    sizes: BTreeMap<String, SizeOrigin>,
    uses: BTreeMap<String, IndexUse>,
    /// Indices bound by enclosing explicit reductions, with their occurrence counts.
    bound: Vec<(String, usize)>,
    /// Every explicitly reduced index.
    explicit: BTreeSet<String>,
    next_occurrence: usize,
}

impl StmtCx<'_> {
    fn err(&self, span: Span, msg: String) -> IrError {
        IrError::at(self.file, span, msg)
    }

    fn check_stmt(&self, stmt: &Stmt) -> Result<(Stmt, BTreeMap<String, usize>), IrError> {
        let lhs = &stmt.lhs;
        let x = lhs.tensor.as_str();
        let decl = self.decls.get(x).ok_or_else(|| self.err(lhs.span, format!("unknown tensor {x}")))?;
        if lhs.indices.len() != decl.shape.len() {
            return Err(self.err(
                lhs.span,
                format!("{x} has rank {} but is accessed with {} indices", decl.shape.len(), lhs.indices.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for idx in &lhs.indices {
            if !seen.insert(idx.as_str()) {
                return Err(self.err(lhs.span, format!("index {idx} appears twice on the left-hand side of {x}")));
            }
        }

        let mut w = Walk::default();
        self.walk(&stmt.rhs, &lhs.indices, x, &mut w, stmt.span)?;

        for k in &w.explicit {
            if let Some(u) = w.uses.get(k).filter(|u| u.free > 0) {
                return Err(self.err(
                    u.first_span,
                    format!("index {k} is reduced by an explicit sum/maxr/maxnz but also used outside it"),
                ));
            }
        }
        for (d, idx) in lhs.indices.iter().enumerate() {
            let Some(origin) = w.sizes.get(idx).filter(|_| w.uses.get(idx).is_some_and(|u| u.free > 0)) else {
                return Err(self.err(lhs.span, format!("index {idx} of {x} does not occur on the right-hand side")));
            };
            if origin.size != decl.shape[d] {
                return Err(self.err(
                    lhs.span,
                    format!(
                        "{x} dimension {d} has size {} but index {idx} has size {} (from {} dimension {})",
                        decl.shape[d], origin.size, origin.tensor, origin.dim
                    ),
                ));
            }
        }

        let pending: BTreeMap<String, (usize, usize)> = w
            .uses
            .iter()
            .filter(|(k, u)| u.free > 0 && !lhs.indices.contains(k))
            .map(|(k, u)| (k.clone(), (u.free, u.first)))
            .collect();
        let (rhs, _) = place_reductions(stmt.rhs.clone(), &pending);
        let sizes = w.sizes.into_iter().map(|(k, o)| (k, o.size)).collect();
        Ok((Stmt { lhs: lhs.clone(), rhs, span: stmt.span }, sizes))
    }

    fn walk(&self, e: &Expr, lhs: &[String], x: &str, w: &mut Walk, stmt_span: Span) -> Result<(), IrError> {
        match e {
            Expr::Const(_) => Ok(()),
            Expr::Access(a) => self.access(a, w),
            Expr::Unary(_, a) => self.walk(a, lhs, x, w, stmt_span),
            Expr::Binary(_, a, b) => {
                self.walk(a, lhs, x, w, stmt_span)?;
                self.walk(b, lhs, x, w, stmt_span)
            }
            Expr::Reduce { op, index, body } => {
                let f = reduce_name(*op);
                let span = first_access_span(body).unwrap_or(stmt_span);
                if lhs.contains(index) {
                    return Err(self.err(
                        span,
                        format!(
                            "{f}({index}, ...) reduces index {index}, which also appears on the left-hand side of {x}"
                        ),
                    ));
                }
                if w.bound.iter().any(|(k, _)| k == index) {
                    return Err(
                        self.err(span, format!("index {index} is reduced twice (nested {f} over the same index)"))
                    );
                }
                w.bound.push((index.clone(), 0));
                self.walk(body, lhs, x, w, stmt_span)?;
                let (_, count) = w.bound.pop().unwrap_or_default();
                if count == 0 {
                    return Err(self.err(span, format!("{f}({index}, ...): index {index} does not occur in its body")));
                }
                w.explicit.insert(index.clone());
                Ok(())
            }
        }
    }

    fn access(&self, a: &Access, w: &mut Walk) -> Result<(), IrError> {
        let name = a.tensor.as_str();
        let decl = self.decls.get(name).ok_or_else(|| {
            let msg = if crate::parser::is_foreign_function(name) {
                crate::parser::unknown_function(name)
            } else {
                format!("unknown tensor {name}")
            };
            self.err(a.span, msg)
        })?;
        if a.indices.len() != decl.shape.len() {
            return Err(self.err(
                a.span,
                format!("{name} has rank {} but is accessed with {} indices", decl.shape.len(), a.indices.len()),
            ));
        }
        if decl.role != Role::Input {
            match self.assigned.get(name) {
                Some(&s) if s < self.stmt_idx => {}
                Some(&s) => {
                    return Err(self.err(
                        a.span,
                        format!(
                            "{name} is used before it is defined (it is assigned at line {})",
                            self.stmts[s].span.line
                        ),
                    ))
                }
                None => return Err(self.err(a.span, format!("{name} is used but never assigned"))),
            }
        }
        for (d, idx) in a.indices.iter().enumerate() {
            let size = decl.shape[d];
            match w.sizes.get(idx) {
                Some(o) if o.size != size => {
                    return Err(self.err(
                        a.span,
                        format!(
                        "index {idx} is used with two sizes: {} ({} dimension {}) and {size} ({name} dimension {d})",
                        o.size, o.tensor, o.dim
                    ),
                    ))
                }
                Some(_) => {}
                None => {
                    w.sizes.insert(idx.clone(), SizeOrigin { size, tensor: name.to_string(), dim: d });
                }
            }
            if let Some((_, count)) = w.bound.iter_mut().find(|(k, _)| k == idx) {
                *count += 1;
            } else {
                let occ = w.next_occurrence;
                let u = w.uses.entry(idx.clone()).or_default();
                if u.free == 0 {
                    u.first = occ;
                    u.first_span = a.span;
                }
                u.free += 1;
            }
            w.next_occurrence += 1;
        }
        Ok(())
    }
}

fn first_access_span(e: &Expr) -> Option<Span> {
    match e {
        Expr::Access(a) => Some(a.span),
        Expr::Const(_) => None,
        Expr::Unary(_, a) => first_access_span(a),
        Expr::Binary(_, a, b) => first_access_span(a).or_else(|| first_access_span(b)),
        Expr::Reduce { body, .. } => first_access_span(body),
    }
}

/// Inserts a `Reduce{Sum}` for every pending index (name → (free occurrence count, first
/// occurrence)) at the smallest subexpression containing all its free occurrences. Returns the
/// rewritten expression and the counts of pending indices not yet placed inside it.
fn place_reductions(e: Expr, pending: &BTreeMap<String, (usize, usize)>) -> (Expr, BTreeMap<String, usize>) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let e = match e {
        Expr::Access(a) => {
            for idx in &a.indices {
                if pending.contains_key(idx) {
                    *counts.entry(idx.clone()).or_default() += 1;
                }
            }
            Expr::Access(a)
        }
        Expr::Const(c) => Expr::Const(c),
        Expr::Unary(op, a) => {
            let (a, ca) = place_reductions(*a, pending);
            counts = ca;
            Expr::Unary(op, Box::new(a))
        }
        Expr::Binary(op, a, b) => {
            let (a, ca) = place_reductions(*a, pending);
            let (b, cb) = place_reductions(*b, pending);
            counts = ca;
            for (k, n) in cb {
                *counts.entry(k).or_default() += n;
            }
            Expr::Binary(op, Box::new(a), Box::new(b))
        }
        Expr::Reduce { op, index, body } => {
            // An explicit reduction binds `index`; pending indices are distinct from it.
            let (body, cb) = place_reductions(*body, pending);
            counts = cb;
            Expr::Reduce { op, index, body: Box::new(body) }
        }
    };
    let mut ready: Vec<(usize, String)> = counts
        .iter()
        .filter(|(k, n)| pending.get(*k).is_some_and(|&(total, _)| total == **n))
        .map(|(k, _)| (pending[k].1, k.clone()))
        .collect();
    ready.sort();
    let mut e = e;
    for (_, k) in ready.into_iter().rev() {
        counts.remove(&k);
        e = Expr::Reduce { op: ReduceOp::Sum, index: k, body: Box::new(e) };
    }
    (e, counts)
}

/// The user statements of `p` (one per statement when the program was built by hand), checked
/// to cover the statements in order.
fn user_stmts(p: &Program) -> Result<Vec<UserStmt>, IrError> {
    if p.user_stmts.is_empty() {
        return Ok(p
            .stmts
            .iter()
            .enumerate()
            .map(|(s, st)| UserStmt { stmts: s..s + 1, builtin: None, span: st.span })
            .collect());
    }
    let mut next = 0;
    for (u, x) in p.user_stmts.iter().enumerate() {
        if x.stmts.start != next || x.stmts.end <= x.stmts.start {
            return Err(IrError::at(
                &p.file,
                x.span,
                format!("statement {u} maps to statements {:?}, expected a range starting at {next}", x.stmts),
            ));
        }
        next = x.stmts.end;
    }
    if next != p.stmts.len() {
        return Err(IrError::whole_file(
            &p.file,
            format!("the user statements cover {next} statements, but the program has {}", p.stmts.len()),
        ));
    }
    Ok(p.user_stmts.clone())
}

/// Validates fusion groups (user statement numbering): statement indices in range, no
/// statement in two groups, and every group convex in the dependency order (no outside
/// statement both depends on a member and is depended on by a member).
fn check_groups(
    file: &str,
    groups: &[FuseGroup],
    users: &[UserStmt],
    stmts: &[Stmt],
    assigned: &BTreeMap<&str, usize>,
) -> Result<(), IrError> {
    if groups.is_empty() {
        return Ok(());
    }
    let n = users.len();
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    for (g, group) in groups.iter().enumerate() {
        if group.stmts.is_empty() {
            return Err(IrError::at(file, group.span, format!("fusion group {g} is empty")));
        }
        for &s in &group.stmts {
            if s >= n {
                return Err(IrError::at(
                    file,
                    group.span,
                    format!("fuse: statement {s} does not exist (the program has {n} statements)"),
                ));
            }
            if let Some(prev) = owner.insert(s, g) {
                return Err(IrError::at(
                    file,
                    group.span,
                    format!("fuse: statement {s} is in fusion groups {prev} and {g}"),
                ));
            }
        }
    }
    // The user statement of every expanded statement.
    let user_of: Vec<usize> = users.iter().enumerate().flat_map(|(u, x)| x.stmts.clone().map(move |_| u)).collect();
    // reach[a] = user statements that (transitively) read what user statement a produces.
    let mut direct: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (b, st) in stmts.iter().enumerate() {
        let mut reads = Vec::new();
        st.rhs.for_each_access(&mut |a| reads.push(a.tensor.as_str()));
        for t in reads {
            if let Some(&a) = assigned.get(t) {
                let (ua, ub) = (user_of[a], user_of[b]);
                if ua < ub {
                    direct[ua].insert(ub);
                }
            }
        }
    }
    let mut reach: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for a in (0..n).rev() {
        let mut r = BTreeSet::new();
        for &b in &direct[a] {
            r.insert(b);
            r.extend(reach[b].iter().copied());
        }
        reach[a] = r;
    }
    for group in groups {
        let members: BTreeSet<usize> = group.stmts.iter().copied().collect();
        for s in 0..n {
            if members.contains(&s) {
                continue;
            }
            let from = members.iter().find(|&&m| reach[m].contains(&s));
            let to = members.iter().find(|&&m| reach[s].contains(&m));
            if let (Some(from), Some(to)) = (from, to) {
                return Err(IrError::at(
                    file,
                    group.span,
                    format!(
                        "fuse: group is not contiguous in dependency order: statement {s} (line {}) depends on statement {from} of the group and statement {to} of the group depends on it",
                        users[s].span.line
                    ),
                ));
            }
        }
    }
    Ok(())
}
