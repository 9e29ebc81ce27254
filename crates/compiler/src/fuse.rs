//! Cross-expression fusion: statements of a group are inlined into one expression per group
//! output and lowered to one graph, so intermediates flow as streams and never touch memory.
//!
//! A consumer's access `T(i,j)` to a tensor produced in the same group is replaced by the
//! producer's right-hand side with its left-hand indices renamed to `i,j`. The producer's own
//! (reduced) indices keep the names the program gives them unless another loop of the fused
//! expression already uses the name; then they are renamed apart to `k2`, `k3`, ... in the
//! order the inlining meets them (depth first, left to right). `fuseflow orders --fusion`
//! prints the resulting names, and `--order` for a fused group takes them. Reductions stay where the program put them, so each producer keeps
//! its own iteration space (factored iteration); the lowering recomputes a producer only when
//! the dataflow order places one of the consumer's variables outside the producer's
//! reduction, and such recomputation shows up in the simulated FLOPs and traffic.

use std::collections::{BTreeMap, BTreeSet};

use fuseflow_graph::Graph;
use fuseflow_ir::{Access, CheckedProgram, Expr, Role, Stmt};

use crate::convex::{group_text, groups_text, range_text};
use crate::lower::{LowerOptions, Trees};
use crate::CompileError;

/// How statements are grouped into graphs.
///
/// Statements are numbered as the user wrote them (see [`fuseflow_ir::UserStmt`]): a line with
/// a `softmax`, `masked_softmax` or `layernorm` is one statement, and no group can split it.
/// Only [`Fusion::Unfused`] (every expanded statement alone) and the library-level
/// [`Fusion::Expanded`] work below that level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fusion {
    /// One graph per expanded statement: a built-in runs as one graph per statement it
    /// expands to (reported as `U.K`, part K of user statement U).
    Unfused,
    /// One graph for the whole program.
    Full,
    /// The groups named by the program's `fuse` lines; every other statement is a group of its
    /// own (a built-in as one graph).
    Partial,
    /// Explicit groups of user statements (`--fusion 0-3,4-7`, `--fusion 0-2+4,3,5-13`): every
    /// statement exactly once, each group convex in the dependence DAG and the groups
    /// orderable ([`crate::convex`]); written in any order, run in the DAG's order.
    Groups(Vec<Vec<usize>>),
    /// Explicit groups of expanded statements (indices into [`CheckedProgram::stmts`]): every
    /// statement exactly once, in order. May split a built-in; for tests and tools that study
    /// the expanded program, not offered on the command line.
    Expanded(Vec<Vec<usize>>),
}

impl std::str::FromStr for Fusion {
    type Err = String;
    /// `unfused`, `full`, `partial`, or groups of user statements like `0-3,4-7` or
    /// `0-2+4,3,5-13` (items separated by `,` are groups; within a group, parts joined by `+`
    /// are each a range `a-b` or a statement; spaces are ignored).
    fn from_str(s: &str) -> Result<Fusion, String> {
        match s.trim() {
            "unfused" => return Ok(Fusion::Unfused),
            "full" => return Ok(Fusion::Full),
            "partial" => return Ok(Fusion::Partial),
            _ => {}
        }
        let mut groups = Vec::new();
        for item in s.split(',') {
            let item = item.trim();
            let bad = || {
                format!("invalid fusion group {item:?} (expected unfused, partial, full, or groups of statements such as 0-3,4 or 0-2+4,3)")
            };
            let mut group: Vec<usize> = Vec::new();
            for part in item.split('+') {
                let part = part.trim();
                match part.split_once('-') {
                    Some((a, b)) => {
                        let a: usize = a.trim().parse().map_err(|_| bad())?;
                        let b: usize = b.trim().parse().map_err(|_| bad())?;
                        if b < a {
                            return Err(bad());
                        }
                        if b - a > 1_000_000 || group.len() > 1_000_000 {
                            return Err(format!("fusion group {item:?} is too large"));
                        }
                        group.extend(a..=b);
                    }
                    None => group.push(part.parse().map_err(|_| bad())?),
                }
            }
            groups.push(group);
        }
        Ok(Fusion::Groups(groups))
    }
}

impl std::fmt::Display for Fusion {
    /// The form [`Fusion::from_str`](std::str::FromStr) reads (`expanded:` marks groups of
    /// expanded statements).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fusion::Unfused => f.write_str("unfused"),
            Fusion::Full => f.write_str("full"),
            Fusion::Partial => f.write_str("partial"),
            Fusion::Groups(g) => f.write_str(&groups_text(g)),
            Fusion::Expanded(g) => write!(f, "expanded:{}", groups_text(g)),
        }
    }
}

/// A fused group lowered to one graph.
#[derive(Debug, Clone)]
pub struct GroupKernel {
    /// Expanded statement indices in the group (see [`CheckedProgram::group_label`] for how
    /// users see them).
    pub stmts: Vec<usize>,
    /// Tensors the group writes (read by later groups or program outputs).
    pub outputs: Vec<String>,
    /// Dataflow order used for each output's expression.
    pub orders: Vec<Vec<String>>,
    /// The verified graph.
    pub graph: Graph,
    /// The group's sparsity blocking, when its values are tiles (see [`crate::block`]).
    pub block: Option<crate::GroupBlock>,
}

/// Resolves a fusion choice into validated groups of expanded statements (indices into
/// [`CheckedProgram::stmts`]) covering every statement once, each group in program order and
/// the groups in execution order (for explicit groups, the dependence DAG's order of
/// [`crate::convex::Dag::schedule`]; every other choice gives ranges in program order). Errors
/// name the `fuse` line or the `--fusion` groups and use user statement numbering.
pub fn plan(p: &CheckedProgram, fusion: &Fusion) -> Result<Vec<Vec<usize>>, CompileError> {
    let n = p.stmts.len();
    let users = if p.user_stmts.is_empty() { n } else { p.user_stmts.len() };
    match fusion {
        Fusion::Unfused => Ok((0..n).map(|s| vec![s]).collect()),
        Fusion::Full => Ok(if n == 0 { Vec::new() } else { vec![(0..n).collect()] }),
        Fusion::Partial => {
            // The `fuse` lines' groups (ranges, or convex groups joined with `+`), every other
            // statement alone, run in the dependence DAG's order (program order for ranges), as
            // `--fusion` groups are.
            let mut groups: Vec<Vec<usize>> = p.groups.iter().map(|g| g.stmts.clone()).collect();
            groups.extend((0..users).filter(|u| !p.groups.iter().any(|g| g.stmts.contains(u))).map(|u| vec![u]));
            let origin = match p.groups.first() {
                Some(g) => format!("{}:{}:{}", p.file, g.span.line, g.span.col),
                None => p.file.clone(),
            };
            let dag = crate::convex::Dag::of_program(p);
            let ordered = dag.schedule(&groups).map_err(|message| CompileError::Fusion { origin, message })?;
            Ok(ordered.iter().map(|g| p.expand_user_stmts(g)).collect())
        }
        Fusion::Groups(groups) => {
            let origin = format!("--fusion {}", groups_text(groups));
            let dag = crate::convex::Dag::of_program(p);
            debug_assert_eq!(dag.len(), users);
            let ordered = dag.schedule(groups).map_err(|message| CompileError::Fusion { origin, message })?;
            Ok(ordered.iter().map(|g| p.expand_user_stmts(g)).collect())
        }
        Fusion::Expanded(groups) => {
            let origin = format!("fusion groups {} (expanded statements)", groups_text(groups));
            check_cover(groups, n, "expanded statement").map_err(|message| CompileError::Fusion { origin, message })?;
            Ok(groups.clone())
        }
    }
}

/// Checks that `groups` hold `0..n` exactly once, in order; `what` names the unit in errors.
fn check_cover(groups: &[Vec<usize>], n: usize, what: &str) -> Result<(), String> {
    let mut next = 0;
    for g in groups {
        if g.is_empty() {
            return Err("empty group".to_string());
        }
        for (k, &s) in g.iter().enumerate() {
            if s >= n {
                return Err(format!("{what} {s} does not exist (the program has {n}: {})", range_text(n)));
            }
            if s != next {
                let why = if k == 0 { "does not continue the previous group" } else { "is not contiguous" };
                return Err(format!("group {} {why}: expected {what} {next}, found {s}", group_text(g)));
            }
            next += 1;
        }
    }
    if next != n {
        return Err(format!(
            "the groups cover {what}s {}, but the program has {n} ({}); every {what} must be in a group",
            range_text(next),
            range_text(n)
        ));
    }
    Ok(())
}

/// Renames index variables in an expression.
fn rename(e: &Expr, map: &BTreeMap<String, String>) -> Expr {
    let r = |s: &String| map.get(s).cloned().unwrap_or_else(|| s.clone());
    match e {
        Expr::Access(a) => Expr::Access(Access { indices: a.indices.iter().map(r).collect(), ..a.clone() }),
        Expr::Const(c) => Expr::Const(*c),
        Expr::Unary(op, x) => Expr::Unary(*op, Box::new(rename(x, map))),
        Expr::Binary(op, a, b) => Expr::Binary(*op, Box::new(rename(a, map)), Box::new(rename(b, map))),
        Expr::Reduce { op, index, body } => {
            Expr::Reduce { op: *op, index: r(index), body: Box::new(rename(body, map)) }
        }
    }
}

struct Inliner<'a> {
    p: &'a CheckedProgram,
    /// Statement defining each tensor of the group.
    defs: BTreeMap<String, usize>,
    sizes: BTreeMap<String, usize>,
    /// Every index name of the group's statements: renamed indices avoid them.
    taken: BTreeSet<String>,
    /// What inlined copies share (see [`Inliner::expr`]).
    share: Sharing,
    /// Inlined expression of each intermediate view `(tensor, indices)`.
    memo: BTreeMap<(String, Vec<String>), Expr>,
}

impl Inliner<'_> {
    /// The name of a producer's own index `name` in the fused expression: `name` itself while
    /// no other loop of the expression uses it, else `name2`, `name3`, ... (the first suffix
    /// that names no index of the group's statements and no loop already in the expression).
    fn fresh(&mut self, name: &str, size: usize) -> String {
        if !self.sizes.contains_key(name) {
            self.sizes.insert(name.to_string(), size);
            return name.to_string();
        }
        let mut k = 1;
        loop {
            k += 1;
            let f = format!("{name}{k}");
            if !self.taken.contains(&f) && !self.sizes.contains_key(&f) {
                self.sizes.insert(f.clone(), size);
                return f;
            }
        }
    }

    /// Inlines the intermediates read by `e` in context `cx`.
    ///
    /// As FuseFlow's `Dup` cells and logical index variables do: the same view `T(i,j)` read
    /// twice becomes one expression, which the lowering builds once (`Views`); and a producer's
    /// reduced index takes the consumer's index when the consumer iterates the same view with
    /// it (the producer reads `E(r,j)` and so does the consumer, as in softmax and layer norm),
    /// so a row reduction and its broadcast back over the row run in one pass, the row
    /// buffered in the channels (`Rows`). With `Nothing` every copy gets fresh names.
    fn expr(&mut self, e: &Expr, cx: &Context) -> Expr {
        match e {
            Expr::Access(a) => match self.defs.get(&a.tensor).copied() {
                Some(s) => {
                    let key = (a.tensor.clone(), a.indices.clone());
                    if self.share != Sharing::Nothing {
                        if let Some(x) = self.memo.get(&key) {
                            return x.clone();
                        }
                    }
                    let st = &self.p.stmts[s];
                    let mut map = BTreeMap::new();
                    for (from, to) in st.lhs.indices.iter().zip(&a.indices) {
                        map.insert(from.clone(), to.clone());
                    }
                    let lhs_map = map.clone();
                    // The producer's other indices are its own: rename them apart, unless they
                    // can share the consumer's loop.
                    for (name, &size) in &self.p.index_sizes[s] {
                        if map.contains_key(name) {
                            continue;
                        }
                        let shared = if self.share == Sharing::Rows {
                            shared_index(&st.rhs, name, &lhs_map, &cx.views)
                        } else {
                            None
                        };
                        let to = match shared {
                            Some(q)
                                if cx.scope.contains(&q)
                                    && !a.indices.contains(&q)
                                    && !map.values().any(|x| *x == q)
                                    && self.sizes.get(&q) == Some(&size) =>
                            {
                                q
                            }
                            _ => self.fresh(name, size),
                        };
                        map.insert(name.clone(), to);
                    }
                    let body = rename(&st.rhs, &map);
                    let mut inner = cx.clone();
                    inner.scope.extend(a.indices.iter().cloned());
                    accesses(&body, &mut inner.views);
                    let out = self.expr(&body, &inner);
                    if self.share != Sharing::Nothing {
                        self.memo.insert(key, out.clone());
                    }
                    out
                }
                None => e.clone(),
            },
            Expr::Const(c) => Expr::Const(*c),
            Expr::Unary(op, x) => Expr::Unary(*op, Box::new(self.expr(x, cx))),
            Expr::Binary(op, a, b) => Expr::Binary(*op, Box::new(self.expr(a, cx)), Box::new(self.expr(b, cx))),
            Expr::Reduce { op, index, body } => {
                let mut inner = cx.clone();
                inner.scope.insert(index.clone());
                Expr::Reduce { op: *op, index: index.clone(), body: Box::new(self.expr(body, &inner)) }
            }
        }
    }
}

/// What the inlined copies of an intermediate share, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// Identical views, and a reduced index with the consumer's index over the same row.
    Rows,
    /// Identical views only.
    Views,
    /// Nothing: every copy has fresh index names.
    Nothing,
}

impl Sharing {
    /// The modes to try, in order.
    fn modes(opts: &LowerOptions) -> &'static [Sharing] {
        if opts.row_sharing {
            &[Sharing::Rows, Sharing::Views, Sharing::Nothing]
        } else {
            &[Sharing::Views, Sharing::Nothing]
        }
    }

    /// The result of `f` under the first mode for which it succeeds, or the error of the
    /// most-sharing mode (the one the user would expect to work).
    fn first_ok<T>(
        opts: &LowerOptions,
        mut f: impl FnMut(Sharing) -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        let mut first = None;
        for &share in Sharing::modes(opts) {
            match f(share) {
                Ok(x) => return Ok(x),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.expect("at least one sharing mode"))
    }
}

/// What is visible where an intermediate is inlined: the index names bound there (by the
/// enclosing statements and reductions) and the views the enclosing statements read.
#[derive(Clone, Default)]
struct Context {
    scope: BTreeSet<String>,
    views: BTreeSet<(String, Vec<String>)>,
}

/// Every tensor access `(tensor, indices)` of an expression.
fn accesses(e: &Expr, out: &mut BTreeSet<(String, Vec<String>)>) {
    e.for_each_access(&mut |a| {
        out.insert((a.tensor.clone(), a.indices.clone()));
    });
}

/// The consumer's index that producer index `name` can share: the producer reads a view
/// `T(.., name, ..)` (its other indices left-hand ones, mapped by `lhs_map`) that the consumer
/// reads as `T(.., q, ..)`.
fn shared_index(
    rhs: &Expr,
    name: &str,
    lhs_map: &BTreeMap<String, String>,
    views: &BTreeSet<(String, Vec<String>)>,
) -> Option<String> {
    let mut own = BTreeSet::new();
    accesses(rhs, &mut own);
    for (t, idx) in &own {
        if !idx.iter().any(|i| i == name) || !idx.iter().all(|i| i == name || lhs_map.contains_key(i)) {
            continue;
        }
        for (vt, vidx) in views {
            if vt != t || vidx.len() != idx.len() {
                continue;
            }
            let mut q: Option<&String> = None;
            let fits =
                idx.iter().zip(vidx).all(
                    |(i, v)| {
                        if i == name {
                            q.get_or_insert(v) == &v
                        } else {
                            lhs_map.get(i) == Some(v)
                        }
                    },
                );
            if fits {
                return q.cloned();
            }
        }
    }
    None
}

/// The tensors a group must write: program outputs, and tensors read by statements outside
/// the group (after it in program order for a range; for a group of non-adjacent statements
/// also by statements between them, which run in other groups).
pub fn group_outputs(p: &CheckedProgram, group: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for &s in group {
        let t = &p.stmts[s].lhs.tensor;
        let read_later = p.stmts.iter().enumerate().any(|(k, st)| k > s && !group.contains(&k) && reads(&st.rhs, t));
        let is_output = p.decl(t).is_some_and(|d| d.role == Role::Output);
        if read_later || is_output {
            out.push(t.clone());
        }
    }
    out
}

fn reads(e: &Expr, t: &str) -> bool {
    let mut found = false;
    e.for_each_access(&mut |a| found |= a.tensor == t);
    found
}

/// The fused statements of a group, and the inputs that more than one of them reads: those
/// keep their declared layout under `LowerOptions::free_layout` (each output expression has
/// its own order, and one stored copy cannot follow two).
struct Fused {
    stmts: Vec<(Stmt, BTreeMap<String, usize>)>,
    pinned: BTreeSet<String>,
}

fn fused(p: &CheckedProgram, group: &[usize], share: Sharing) -> Fused {
    let stmts = fused_statements(p, group, share);
    let mut seen = BTreeSet::new();
    let mut pinned = BTreeSet::new();
    for (st, _) in &stmts {
        let mut own = BTreeSet::new();
        st.rhs.for_each_access(&mut |a| {
            own.insert(a.tensor.clone());
        });
        for t in own {
            if !seen.insert(t.clone()) {
                pinned.insert(t);
            }
        }
    }
    Fused { stmts, pinned }
}

/// The trees of every output expression of a group under every sharing mode (tests of the
/// order search, which must hold for each mode the driver may try).
#[cfg(test)]
pub(crate) fn fused_trees(p: &CheckedProgram, group: &[usize], opts: &LowerOptions) -> Vec<(Stmt, Trees)> {
    let mut out = Vec::new();
    for &share in Sharing::modes(opts) {
        let f = fused(p, group, share);
        for (st, sizes) in f.stmts {
            if let Ok(trees) = Trees::from_parts(p, &st, &sizes, &f.pinned, opts) {
                out.push((st, trees));
            }
        }
    }
    out
}

/// The fused statement of each output of a group: its inlined expression and index sizes.
fn fused_statements(p: &CheckedProgram, group: &[usize], share: Sharing) -> Vec<(Stmt, BTreeMap<String, usize>)> {
    let taken: BTreeSet<String> = group.iter().flat_map(|&s| p.index_sizes[s].keys().cloned()).collect();
    let mut out = Vec::new();
    for t in group_outputs(p, group) {
        let s = *group.iter().find(|&&s| p.stmts[s].lhs.tensor == t).expect("output defined in group");
        let st = &p.stmts[s];
        let mut inl = Inliner {
            p,
            defs: group.iter().filter(|&&g| g < s).map(|&g| (p.stmts[g].lhs.tensor.clone(), g)).collect(),
            sizes: p.index_sizes[s].clone(),
            taken: taken.clone(),
            share,
            memo: BTreeMap::new(),
        };
        let mut cx = Context { scope: st.lhs.indices.iter().cloned().collect(), views: BTreeSet::new() };
        accesses(&st.rhs, &mut cx.views);
        let rhs = inl.expr(&st.rhs, &cx);
        out.push((Stmt { lhs: st.lhs.clone(), rhs, span: st.span }, inl.sizes));
    }
    out
}

/// Legal dataflow orders (at most `cap`) of every output expression of a group.
pub fn group_orders(
    p: &CheckedProgram,
    group: &[usize],
    cap: usize,
    opts: &LowerOptions,
) -> Result<Vec<Vec<Vec<String>>>, CompileError> {
    Sharing::first_ok(opts, |share| group_orders_with(p, group, cap, opts, share))
}

fn group_orders_with(
    p: &CheckedProgram,
    group: &[usize],
    cap: usize,
    opts: &LowerOptions,
    share: Sharing,
) -> Result<Vec<Vec<Vec<String>>>, CompileError> {
    let mut out = Vec::new();
    let f = fused(p, group, share);
    for (st, sizes) in f.stmts {
        let trees = Trees::from_parts(p, &st, &sizes, &f.pinned, opts)?;
        out.push(crate::order::orders_of(p, &st, &trees, cap, opts)?);
    }
    Ok(out)
}

/// A legal dataflow order of a group with the compiler's dense-shape cost estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedOrder {
    /// Index names, outermost first.
    pub order: Vec<String>,
    /// Summed iteration volume of the output expressions this order applies to (see
    /// `docs/fusion.md`); `None` when only the hoisted form supports it, so it is ranked last.
    pub estimate: Option<f64>,
}

/// Every legal order of a group (at most `cap` per output expression), cheapest estimate
/// first, ties in lexicographic order: what `--order best` simulates. An order applies to
/// every output expression whose index variables it names (as in [`lower_group`]), so the
/// candidates of a group with several outputs are the union of theirs, each estimated over
/// the outputs it applies to.
pub fn ranked_group_orders(
    p: &CheckedProgram,
    group: &[usize],
    cap: usize,
    opts: &LowerOptions,
) -> Result<Vec<RankedOrder>, CompileError> {
    Sharing::first_ok(opts, |share| {
        let mut outputs = Vec::new();
        let f = fused(p, group, share);
        for (st, sizes) in f.stmts {
            let trees = Trees::from_parts(p, &st, &sizes, &f.pinned, opts)?;
            let orders = crate::order::orders_of(p, &st, &trees, cap, opts)?;
            outputs.push((trees, orders));
        }
        let mut ranked: Vec<RankedOrder> = Vec::new();
        for (_, orders) in &outputs {
            for o in orders {
                if ranked.iter().any(|r| &r.order == o) {
                    continue;
                }
                let mut estimate = Some(0.0);
                for (trees, legal) in &outputs {
                    if legal.contains(o) {
                        let e = crate::order::estimate_named(&trees.factored, o);
                        estimate = estimate.zip(e).map(|(a, b)| a + b);
                    }
                }
                ranked.push(RankedOrder { order: o.clone(), estimate });
            }
        }
        ranked.sort_by(|a, b| {
            let key = |r: &RankedOrder| r.estimate.unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b)).then_with(|| a.order.cmp(&b.order))
        });
        Ok(ranked)
    })
}

/// Lowers a group of statements to one graph. `order` applies to every output expression
/// whose index variables it names exactly; others use their cost-guided default order.
/// Inlined copies share as much as the options allow and the lowering supports for the chosen
/// orders (rows, then identical views only, then nothing).
pub fn lower_group(
    p: &CheckedProgram,
    group: &[usize],
    order: Option<&[String]>,
    opts: &LowerOptions,
) -> Result<GroupKernel, CompileError> {
    Sharing::first_ok(opts, |share| lower_group_with(p, group, order, opts, share))
}

fn lower_group_with(
    p: &CheckedProgram,
    group: &[usize],
    order: Option<&[String]>,
    opts: &LowerOptions,
    share: Sharing,
) -> Result<GroupKernel, CompileError> {
    let outputs = group_outputs(p, group);
    // Named in user statement numbering, as everything users see.
    let mut graph = Graph::new(format!("group_{}", p.group_label(group)));
    let mut orders = Vec::new();
    let f = fused(p, group, share);
    for (fused, sizes) in f.stmts {
        let st = &fused;
        let t = &st.lhs.tensor;
        let trees = Trees::from_parts(p, &fused, &sizes, &f.pinned, opts)?;
        let names: Vec<String> = sizes.keys().cloned().collect();
        // A lone kernel takes the order as given (so a wrong order is reported); otherwise the
        // order applies to the kernels whose indices it names.
        let lone = p.stmts.len() == 1;
        let chosen = order.filter(|o| lone || (o.len() == names.len() && o.iter().all(|v| names.contains(v))));
        let (o, g) = crate::lower::lower_trees(p, st, &trees, chosen, opts, &format!("{t}_fused"))?;
        graph.append(&g);
        orders.push(o);
    }
    let graph = graph.share();
    graph.verify()?;
    Ok(GroupKernel { stmts: group.to_vec(), outputs, orders, graph, block: None })
}
