//! Dataflow orders: the permutations of a statement's index variables that its tensors'
//! storage orders allow and that the lowering supports.

use fuseflow_ir::{CheckedProgram, Stmt};

use crate::expr::{Kind, Tree, Var};

use crate::lower::{estimate, LowerOptions, PrefixRules, Rule, Trees};
use crate::CompileError;

/// Partial-order arcs `a → b` ("a is iterated before b"), each with the tensor that imposes it.
fn arcs(t: &Tree) -> Vec<(Var, Var, String)> {
    let mut out = Vec::new();
    let leaves = t.nodes.iter().filter_map(|n| match &n.kind {
        Kind::Leaf(l) => Some(l),
        _ => None,
    });
    for l in leaves.chain(std::iter::once(&t.out)).filter(|l| !(t.free_layout && l.movable)) {
        for w in l.level_vars.windows(2) {
            out.push((w[0], w[1], l.tensor.clone()));
        }
    }
    out
}

/// Every legal order of statement `stmt`, in a deterministic order (lexicographic in index
/// variable name order), at most `cap` of them. Errors name the conflicting tensors when no
/// order exists.
pub fn legal_orders(
    p: &CheckedProgram,
    stmt: usize,
    cap: usize,
    opts: &LowerOptions,
) -> Result<Vec<Vec<String>>, CompileError> {
    let s = &p.stmts[stmt];
    let trees = Trees::build(p, stmt, opts)?;
    orders_of(p, s, &trees, cap, opts)
}

/// How many complete orders the search lowers before it stops: fused groups can have
/// factorially many candidate orders, and the search must end with an error, not hang.
const PROBE_BUDGET: usize = 2000;

/// How many prefixes the search checks before it stops, per index variable of the statement:
/// the unpruned enumeration checks no prefix but visits at most `n` of them per order it
/// lowers, and the pruned search visits a subset of those in the same sequence, so with this
/// budget it always gets at least as far as that enumeration did with [`PROBE_BUDGET`]
/// lowerings (and finds the same orders first).
const PREFIXES_PER_VAR: usize = PROBE_BUDGET;

/// The limit a search stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// This many complete orders were lowered.
    Lowered(usize),
    /// This many prefixes were checked.
    Prefixes(usize),
}

/// The budgets of one search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    /// Complete orders lowered at most.
    pub lowered: usize,
    /// Prefixes checked at most.
    pub prefixes: usize,
}

impl Budgets {
    /// The default budgets for a statement with `n` index variables.
    pub(crate) fn for_vars(n: usize) -> Budgets {
        Budgets { lowered: PROBE_BUDGET, prefixes: PREFIXES_PER_VAR * n.max(1) }
    }
}

/// What a search found, and why it ended.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    /// Supported orders, lexicographic (in variable id order), at most `cap`.
    pub orders: Vec<Vec<Var>>,
    /// The limit that ended the search early, if any.
    pub stopped: Option<Limit>,
    /// Complete orders lowered.
    pub lowered: usize,
    /// Prefixes checked.
    pub prefixes: usize,
    /// Prefixes (and complete orders) rejected without lowering.
    pub pruned: usize,
    /// Per rule: the prefixes and lowered orders it rejected, and the first of them with the
    /// lowering's message.
    pub rejected: std::collections::BTreeMap<Rule, (usize, String)>,
}

/// Backtracking search over the topological sorts of the mode-order `arcs`, in lexicographic
/// order. With `prune`, every prefix is checked against the rules that a prefix decides
/// ([`PrefixRules`]: a violation there holds for every completion) in both the factored and the
/// hoisted tree, and the search does not descend below a prefix that both reject; complete
/// orders are always lowered, the final authority. Without `prune`, it is the plain
/// enumeration (for tests).
pub(crate) fn search(
    trees: &Trees,
    arcs: &[(Var, Var, String)],
    cap: usize,
    opts: &LowerOptions,
    prune: bool,
    budgets: Budgets,
) -> Search {
    struct Walk<'a> {
        trees: &'a Trees,
        arcs: &'a [(Var, Var, String)],
        rules: [PrefixRules<'a>; 2],
        cap: usize,
        opts: &'a LowerOptions,
        prune: bool,
        budgets: Budgets,
        cur: Vec<Var>,
        used: Vec<bool>,
        /// The rule the factored tree breaks on the complete order just checked, if any.
        factored_rule: Option<Rule>,
        out: Search,
    }
    impl Walk<'_> {
        fn names(&self) -> String {
            let t = &self.trees.factored;
            self.cur.iter().map(|&v| t.var_names[v].as_str()).collect::<Vec<_>>().join(",")
        }
        fn reject(&mut self, rule: Rule, what: &str, message: String) {
            if !self.out.rejected.contains_key(&rule) {
                let first = format!("{what} {}: {message}", self.names());
                self.out.rejected.insert(rule, (0, first));
            }
            if let Some(e) = self.out.rejected.get_mut(&rule) {
                e.0 += 1;
            }
        }
        /// Lowers the complete order `cur`.
        fn lower(&mut self) {
            self.out.lowered += 1;
            match self.trees.lower(&self.cur, self.opts, "probe") {
                Ok(_) => self.out.orders.push(self.cur.clone()),
                Err(e) => {
                    // On a complete order the prefix rules are exact: they name the rule of the
                    // factored tree's error (the one `Trees::lower` reports). The pruned walk
                    // has just checked it.
                    let rule = match self.prune {
                        true => self.factored_rule.take(),
                        false => self.rules[0].dead(&self.cur).map(|(r, _)| r),
                    };
                    self.reject(rule.unwrap_or(Rule::Other), "order", e);
                }
            }
            if self.out.lowered >= self.budgets.lowered {
                self.out.stopped = Some(Limit::Lowered(self.out.lowered));
            }
        }
        fn go(&mut self) {
            let n = self.used.len();
            if self.cur.len() == n {
                self.lower();
                return;
            }
            for v in 0..n {
                if self.out.orders.len() >= self.cap || self.out.stopped.is_some() {
                    return;
                }
                if self.used[v] || self.arcs.iter().any(|(a, b, _)| *b == v && !self.used[*a]) {
                    continue;
                }
                self.cur.push(v);
                if self.prune {
                    if self.out.prefixes >= self.budgets.prefixes {
                        self.out.stopped = Some(Limit::Prefixes(self.out.prefixes));
                        self.cur.pop();
                        return;
                    }
                    self.out.prefixes += 1;
                    // Both trees must reject it: `Trees::lower` falls back to the hoisted one.
                    let factored = self.rules[0].dead(&self.cur);
                    if let Some((rule, message)) = factored {
                        if self.rules[1].dead(&self.cur).is_some() {
                            let what = if self.cur.len() == n { "order" } else { "prefix" };
                            self.reject(rule, what, message);
                            self.out.pruned += 1;
                            self.cur.pop();
                            continue;
                        }
                        self.factored_rule = Some(rule);
                    } else {
                        self.factored_rule = None;
                    }
                }
                self.used[v] = true;
                self.go();
                self.used[v] = false;
                self.cur.pop();
            }
        }
    }
    let n = trees.factored.var_names.len();
    let mut walk = Walk {
        trees,
        arcs,
        rules: [PrefixRules::new(&trees.factored), PrefixRules::new(trees.hoisted_tree())],
        cap,
        opts,
        prune,
        budgets,
        cur: Vec::with_capacity(n),
        used: vec![false; n],
        factored_rule: None,
        out: Search {
            orders: Vec::new(),
            stopped: None,
            lowered: 0,
            prefixes: 0,
            pruned: 0,
            rejected: Default::default(),
        },
    };
    if cap > 0 {
        walk.go();
    }
    walk.out
}

/// Legal orders of a (possibly fused) statement's trees, lexicographic; when the search's
/// budget runs out first (large fused groups), supported orders near the cost-guided default
/// complete the list. The error when none exists names the limit the search stopped at, if
/// any, and the rule that rejected the most prefixes and orders, with the first of them.
pub(crate) fn orders_of(
    p: &CheckedProgram,
    s: &Stmt,
    trees: &Trees,
    cap: usize,
    opts: &LowerOptions,
) -> Result<Vec<Vec<String>>, CompileError> {
    let t = &trees.factored;
    let arcs = arcs(t);
    let found = search(trees, &arcs, cap, opts, true, Budgets::for_vars(t.var_names.len()));
    let named = |o: &[Var]| -> Vec<String> { o.iter().map(|&v| t.var_names[v].clone()).collect() };
    let mut result: Vec<Vec<String>> = found.orders.iter().map(|o| named(o)).collect();
    if found.stopped.is_some() && result.len() < cap {
        // The first orders in lexicographic order all failed to lower: look near the
        // cost-guided ones instead.
        for o in nearby_orders(trees, &arcs, opts, cap) {
            let names = named(&o);
            if result.len() < cap && !result.contains(&names) {
                result.push(names);
            }
        }
    }
    if result.is_empty() {
        // The rule with the most rejections; on a tie the first rule listed (`max_by_key`
        // keeps the last maximum of the reversed list).
        let message = match found.rejected.iter().rev().max_by_key(|(_, r)| r.0) {
            None => {
                let desc: Vec<String> =
                    arcs.iter().map(|(a, b, tn)| format!("{tn}: {}<{}", t.var_names[*a], t.var_names[*b])).collect();
                format!("the tensors' mode orders conflict ({})", desc.join(", "))
            }
            Some((rule, (count, first))) => {
                let why = match found.stopped {
                    Some(Limit::Lowered(k)) => {
                        format!("none found before the search's limit of {k} lowered orders")
                    }
                    Some(Limit::Prefixes(k)) => format!("none found before the search's limit of {k} prefixes"),
                    None => "every order breaks a lowering rule".to_string(),
                };
                format!(
                    "{why} ({} lowered, {} prefixes pruned; most rejections, {count}, by {}; first: {first})",
                    found.lowered,
                    found.pruned,
                    rule.describe()
                )
            }
        };
        return Err(CompileError::NoOrder { file: p.file.clone(), line: s.span.line, col: s.span.col, message });
    }
    Ok(result)
}

/// [`estimate`] of an order given by index names (`None` if a name is unknown or the order is
/// not supported by this tree).
pub(crate) fn estimate_named(t: &crate::expr::Tree, order: &[String]) -> Option<f64> {
    let vars: Option<Vec<Var>> = order.iter().map(|n| t.var_names.iter().position(|x| x == n)).collect();
    estimate(t, &vars?)
}

/// The default order: the cost-guided candidates of [`guided_orders`] in order, the first that
/// lowers; if none does, the cheapest of the first legal orders.
pub(crate) fn best_order(
    p: &CheckedProgram,
    s: &Stmt,
    trees: &Trees,
    opts: &LowerOptions,
) -> Result<Vec<String>, CompileError> {
    let t = &trees.factored;
    for o in guided_orders(trees, &arcs(t)) {
        if trees.lower(&o, opts, "probe").is_ok() {
            return Ok(o.iter().map(|&v| t.var_names[v].clone()).collect());
        }
    }
    let mut orders = orders_of(p, s, trees, 64, opts)?;
    let var = |name: &String| t.var_names.iter().position(|x| x == name).unwrap_or(0);
    orders.sort_by(|a, b| {
        let ca = estimate(t, &a.iter().map(var).collect::<Vec<_>>()).unwrap_or(f64::INFINITY);
        let cb = estimate(t, &b.iter().map(var).collect::<Vec<_>>()).unwrap_or(f64::INFINITY);
        ca.total_cmp(&cb)
    });
    Ok(orders.swap_remove(0))
}

/// Cost-guided candidate orders, best first: the greedy order (built one variable at a time,
/// taking the allowed variable whose completion has the lowest dense-shape cost estimate, see
/// `estimate`) improved by local search, then the plain greedy order. Not yet checked by
/// lowering.
fn guided_orders(trees: &Trees, arcs: &[(Var, Var, String)]) -> Vec<Vec<Var>> {
    let t = &trees.factored;
    let n = t.var_names.len();
    let ready = |used: &[bool], v: Var| !used[v] && !arcs.iter().any(|(a, b, _)| *b == v && !used[*a]);
    // Completes a prefix with the lexicographically first allowed variables.
    let complete = |prefix: &[Var]| -> Vec<Var> {
        let mut used = vec![false; n];
        for &v in prefix {
            used[v] = true;
        }
        let mut out = prefix.to_vec();
        while out.len() < n {
            match (0..n).find(|&v| ready(&used, v)) {
                Some(v) => {
                    used[v] = true;
                    out.push(v);
                }
                None => break,
            }
        }
        out
    };
    let cost = |o: &[Var]| if o.len() == n { order_cost(trees, o) } else { None };
    let mut prefix: Vec<Var> = Vec::new();
    let mut used = vec![false; n];
    while prefix.len() < n {
        let mut best: Option<(f64, Var)> = None;
        for v in 0..n {
            if !ready(&used, v) {
                continue;
            }
            let mut cand = prefix.clone();
            cand.push(v);
            if let Some(c) = cost(&complete(&cand)) {
                if best.is_none_or(|(b, _)| c < b) {
                    best = Some((c, v));
                }
            }
        }
        let Some((_, v)) = best else { break };
        used[v] = true;
        prefix.push(v);
    }
    if prefix.len() < n {
        return Vec::new();
    }
    let improved = improve(trees, arcs, prefix.clone());
    if improved == prefix {
        vec![prefix]
    } else {
        vec![improved, prefix]
    }
}

/// Supported orders near the cost-guided ones (those candidates and every single-variable move
/// from them), for when the lexicographic enumeration runs out of budget on a large group.
fn nearby_orders(trees: &Trees, arcs: &[(Var, Var, String)], opts: &LowerOptions, cap: usize) -> Vec<Vec<Var>> {
    let mut out: Vec<Vec<Var>> = Vec::new();
    let mut probes = 0;
    for start in guided_orders(trees, arcs) {
        for c in std::iter::once(start.clone()).chain(moves(&start)) {
            if out.len() >= cap || probes >= PROBE_BUDGET {
                return out;
            }
            if out.contains(&c) || !respects(arcs, &c) {
                continue;
            }
            probes += 1;
            if trees.lower(&c, opts, "probe").is_ok() {
                out.push(c);
            }
        }
    }
    out
}

/// The cost estimate of an order: of the factored tree, or of the hoisted one when the
/// factored form has no supported lowering for it (as [`Trees::lower`] chooses).
fn order_cost(trees: &Trees, o: &[Var]) -> Option<f64> {
    estimate(&trees.factored, o).or_else(|| estimate(trees.hoisted_tree(), o))
}

/// Whether order `o` keeps every mode-order arc.
fn respects(arcs: &[(Var, Var, String)], o: &[Var]) -> bool {
    let mut pos = vec![0; o.len()];
    for (i, &v) in o.iter().enumerate() {
        pos[v] = i;
    }
    arcs.iter().all(|(a, b, _)| pos[*a] < pos[*b])
}

/// Every order that moves one variable of `order` to another position.
fn moves(order: &[Var]) -> impl Iterator<Item = Vec<Var>> + '_ {
    let n = order.len();
    (0..n).flat_map(move |from| {
        (0..n).filter(move |&to| to != from).map(move |to| {
            let mut c = order.to_vec();
            let v = c.remove(from);
            c.insert(to, v);
            c
        })
    })
}

/// Most cost estimates a local search evaluates; keeps compile time bounded on large groups.
const SEARCH_BUDGET: usize = 4000;

/// Local search from `order`: moves one variable to another position while that lowers the
/// cost estimate and keeps the mode-order arcs, until no move helps (or the budget is spent).
/// The greedy construction judges a prefix by one arbitrary completion, which can hide the
/// order that keeps a nested reduction outside its consumers' loops; moving single variables
/// repairs that.
fn improve(trees: &Trees, arcs: &[(Var, Var, String)], mut order: Vec<Var>) -> Vec<Var> {
    let Some(mut best) = order_cost(trees, &order) else { return order };
    let mut evaluated = 0;
    loop {
        let mut step: Option<(f64, Vec<Var>)> = None;
        for cand in moves(&order) {
            if evaluated >= SEARCH_BUDGET {
                break;
            }
            if !respects(arcs, &cand) {
                continue;
            }
            evaluated += 1;
            if let Some(c) = order_cost(trees, &cand) {
                if c < best && step.as_ref().is_none_or(|(b, _)| c < *b) {
                    step = Some((c, cand));
                }
            }
        }
        match step {
            Some((c, cand)) => {
                best = c;
                order = cand;
            }
            None => return order,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;

    use super::*;
    use crate::lower::lower_tree;

    /// Budgets no test program reaches.
    const UNLIMITED: Budgets = Budgets { lowered: usize::MAX, prefixes: usize::MAX };

    fn checked(src: &str) -> CheckedProgram {
        let p = fuseflow_ir::parse(src, "t.ff", &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{src}"));
        fuseflow_ir::check(p).unwrap_or_else(|e| panic!("{e}\n{src}"))
    }

    /// Every topological sort of the arcs, lexicographic.
    fn all_orders(n: usize, arcs: &[(Var, Var, String)]) -> Vec<Vec<Var>> {
        fn go(n: usize, arcs: &[(Var, Var, String)], cur: &mut Vec<Var>, out: &mut Vec<Vec<Var>>) {
            if cur.len() == n {
                out.push(cur.clone());
                return;
            }
            for v in 0..n {
                if cur.contains(&v) || arcs.iter().any(|(a, b, _)| *b == v && !cur.contains(a)) {
                    continue;
                }
                cur.push(v);
                go(n, arcs, cur, out);
                cur.pop();
            }
        }
        let mut out = Vec::new();
        go(n, arcs, &mut Vec::new(), &mut out);
        out
    }

    /// The pruned search finds exactly the orders of the exhaustive enumeration, in the same
    /// order; on every complete order the prefix rules agree with the lowering. Returns how
    /// many prefixes were pruned.
    fn check_group(src: &str, opts: &LowerOptions, max_vars: usize) -> (usize, usize) {
        let p = checked(src);
        let group: Vec<usize> = (0..p.stmts.len()).collect();
        let mut pruned = 0;
        let mut checked_trees = 0;
        for (_, trees) in crate::fuse::fused_trees(&p, &group, opts) {
            let t = &trees.factored;
            let n = t.var_names.len();
            if n > max_vars {
                continue;
            }
            let arcs = arcs(t);
            let fast = search(&trees, &arcs, usize::MAX, opts, true, UNLIMITED);
            let slow = search(&trees, &arcs, usize::MAX, opts, false, UNLIMITED);
            assert_eq!(fast.stopped, None);
            assert_eq!(slow.stopped, None);
            assert_eq!(slow.pruned, 0);
            assert_eq!(fast.orders, slow.orders, "pruned and exhaustive searches differ\n{src}");
            assert!(fast.lowered + fast.pruned >= fast.orders.len());
            pruned += fast.pruned;
            checked_trees += 1;
            for o in all_orders(n, &arcs) {
                for tree in [&trees.factored, trees.hoisted_tree()] {
                    let dead = PrefixRules::new(tree).dead(&o);
                    let lowered = lower_tree(tree, &o, opts, "t").err();
                    let names: Vec<&str> = o.iter().map(|&v| t.var_names[v].as_str()).collect();
                    let at = format!("order {}\n{src}", names.join(","));
                    match (&dead, &lowered) {
                        (Some((Rule::MidLevelBroadcast, m)), e) => assert_eq!(Some(m), e.as_ref(), "{at}"),
                        (Some((_, _)), e) => assert!(e.is_some(), "the prefix rules reject a lowerable {at}"),
                        (None, Some(e)) => {
                            assert!(!e.contains("in the middle of its own levels"), "missed {e}: {at}");
                            assert!(!e.contains("needs a sparse accumulator"), "missed {e}: {at}");
                        }
                        (None, None) => {}
                    }
                }
            }
        }
        (checked_trees, pruned)
    }

    /// xorshift64*: program generation from one proptest seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// A format clause of rank `r`: random level kinds and mode order.
    fn format(rng: &mut Rng, r: usize) -> String {
        if r == 0 {
            return "dense".into();
        }
        let levels: Vec<&str> = (0..r).map(|_| if rng.below(2) == 0 { "dense" } else { "compressed" }).collect();
        let mut order: Vec<usize> = (0..r).collect();
        for i in (1..r).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let order: Vec<String> = order.iter().map(|d| d.to_string()).collect();
        format!("({}) order({})", levels.join(", "), order.join(","))
    }

    /// A random expression over the tensors `avail` (name, rank) and its free indices.
    fn expr(rng: &mut Rng, avail: &[(String, usize)], depth: usize) -> (String, BTreeSet<char>) {
        const IDX: [char; 4] = ['i', 'j', 'k', 'l'];
        let leaf = depth == 0 || rng.below(3) == 0;
        if leaf {
            // Half the leaves read an earlier result, when there is one: fusion inlines those.
            let inputs = avail.iter().take_while(|(name, _)| !name.starts_with('T')).count();
            let k = if inputs < avail.len() && rng.below(2) == 0 {
                inputs + rng.below(avail.len() - inputs)
            } else {
                rng.below(avail.len())
            };
            let (name, r) = &avail[k];
            let mut idx = IDX.to_vec();
            for i in (1..idx.len()).rev() {
                idx.swap(i, rng.below(i + 1));
            }
            let idx = &idx[..*r];
            let text: Vec<String> = idx.iter().map(|c| c.to_string()).collect();
            return (format!("{name}({})", text.join(",")), idx.iter().copied().collect());
        }
        let (a, fa) = expr(rng, avail, depth - 1);
        match rng.below(6) {
            0..=2 => {
                let (b, fb) = expr(rng, avail, depth - 1);
                let op = ["*", "*", "+"][rng.below(3)];
                (format!("({a} {op} {b})"), fa.union(&fb).copied().collect())
            }
            3 => (format!("{}({a})", ["exp", "relu"][rng.below(2)]), fa),
            _ if fa.len() > 1 => {
                let k = *fa.iter().nth(rng.below(fa.len())).expect("nonempty");
                let mut f = fa.clone();
                f.remove(&k);
                (format!("{}({k}, {a})", ["sum", "sum", "maxr"][rng.below(3)]), f)
            }
            _ => (a, fa),
        }
    }

    /// A random program of two to four statements, each reading the inputs and the earlier
    /// results, with random formats everywhere.
    fn program(seed: u64) -> String {
        let mut rng = Rng(seed | 1);
        let mut src = String::new();
        let mut avail: Vec<(String, usize)> = Vec::new();
        for (name, r) in [("A", 2), ("B", 2), ("C", 2), ("v", 1)] {
            let dims = vec!["2"; r].join(", ");
            src += &format!("input {name}[{dims}] {} = random(density=0.5)\n", format(&mut rng, r));
            avail.push((name.to_string(), r));
        }
        let stmts = 2 + rng.below(3);
        let mut body = String::new();
        for s in 0..stmts {
            let (e, free) = expr(&mut rng, &avail, 3);
            let mut lhs: Vec<char> = free.into_iter().collect();
            for i in (1..lhs.len()).rev() {
                lhs.swap(i, rng.below(i + 1));
            }
            let r = 1 + rng.below(lhs.len().clamp(1, 3));
            let lhs = &lhs[..r.min(lhs.len())];
            let name = format!("T{s}");
            let role = if s + 1 == stmts { "output" } else { "temp" };
            let dims = vec!["2"; lhs.len()].join(", ");
            src += &format!("{role} {name}[{dims}] {}\n", format(&mut rng, lhs.len()));
            let idx: Vec<String> = lhs.iter().map(|c| c.to_string()).collect();
            body += &format!("{name}({}) = {e}\n", idx.join(","));
            avail.push((name, lhs.len()));
        }
        src + &body
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
            ..ProptestConfig::default()
        })]

        /// On random programs fused whole, under every sharing mode and layout option, the
        /// pruned search returns exactly the orders of the exhaustive enumeration.
        #[test]
        fn pruned_search_finds_exactly_the_legal_orders(seed in any::<u64>(), free in any::<bool>(), rows in any::<bool>()) {
            let src = program(seed);
            let opts = LowerOptions { free_layout: free, row_sharing: rows, ..LowerOptions::default() };
            // Programs that the checker refuses (an index the output lacks, ...) prove nothing.
            let ok = fuseflow_ir::parse(&src, "t.ff", &BTreeMap::new()).ok().and_then(|p| fuseflow_ir::check(p).ok());
            prop_assume!(ok.is_some());
            let (trees, _) = check_group(&src, &opts, 7);
            // A case whose every output has too many variables for the exhaustive
            // enumeration checks nothing.
            prop_assume!(trees > 0);
        }
    }

    /// The projection-then-scores pattern of attention, fused: `Q(i,m) = Σk X(i,k) W(k,m) +
    /// b(m)` read by `S(i,l) = Σm Q(i,m) K(l,m)`. Every order that visits `k` before `l` before
    /// `m` would broadcast `Q`'s sum over `l` in the middle of its levels (and the bias keeps
    /// the sum from being hoisted), so those prefixes are pruned, and the pruned search still
    /// finds every legal order.
    #[test]
    fn a_broadcast_in_the_middle_prunes_prefixes() {
        let src = "input X[2, 3] dense = random(density=0.5)\ninput W[3, 4] dense = random(density=0.5)\n\
                   input K[5, 4] dense = random(density=0.5)\ninput b[4] dense = random(density=0.5)\n\
                   temp Q[2, 4] dense\noutput S[2, 5] dense\nQ(i,m) = X(i,k) * W(k,m) + b(m)\nS(i,l) = Q(i,m) * K(l,m)\n";
        let (_, pruned) = check_group(src, &LowerOptions::default(), 8);
        assert!(pruned > 0, "nothing was pruned");
        let p = checked(src);
        let orders = crate::fuse::group_orders(&p, &[0, 1], 100, &LowerOptions::default()).unwrap();
        assert!(!orders[0].is_empty());
        for o in &orders[0] {
            let at = |v: &str| o.iter().position(|x| x == v);
            assert!(!(at("k") < at("l") && at("l") < at("m")), "{o:?}");
        }
    }

    /// Hoisting `Σi B(j,i) · Σl C(l,k)` makes a chain of two sums whose nodes' variables depend
    /// on the order (the outer node reduces whichever comes first, and the inner one keeps
    /// it): the prefix rules must follow `sort_sums` there (an early version had the chain
    /// upside down and rejected the lowerable order `l,k,j,i`).
    #[test]
    fn sum_chains_follow_the_order() {
        let src = "input B[2, 2] (dense, compressed) = random(density=0.5)\n\
                   input C[2, 2] (compressed, compressed) = random(density=0.5)\n\
                   output X[2, 2] dense order(1,0)\nX(j,k) = sum(i, B(j,i)) * C(l,k)\n";
        for free_layout in [false, true] {
            let (trees, _) = check_group(src, &LowerOptions { free_layout, ..LowerOptions::default() }, 8);
            assert!(trees > 0);
        }
    }

    /// A sum that must keep three levels inside its reduced variable (`k` is stored
    /// outermost) has no order; the error names the rule and the first rejected prefix.
    #[test]
    fn no_order_names_the_rule_that_rejected_the_most() {
        let src = "input A[2, 2, 2, 2] dense = random(density=0.5)\noutput X[2, 2, 2] dense\nX(i,j,l) = A(k,i,j,l)\n";
        let p = checked(src);
        let err = legal_orders(&p, 0, 10, &LowerOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("t.ff:3:1: no legal dataflow order: every order breaks a lowering rule"), "{err}");
        assert!(err.contains("by a sparse accumulator of order above 2"), "{err}");
        assert!(err.contains("first: prefix k: reducing k with 3 levels inside it"), "{err}");
    }

    /// A search stopped by its budget says which limit it hit.
    #[test]
    fn the_search_names_the_limit_it_stopped_at() {
        let src = "input A[2, 2] dense = random(density=0.5)\ninput B[2, 2] dense = random(density=0.5)\n\
                   output X[2, 2] dense\nX(i,j) = A(i,k) * B(j,k)\n";
        let p = checked(src);
        // Free layouts: every permutation is a candidate.
        let opts = LowerOptions { free_layout: true, ..LowerOptions::default() };
        let trees = Trees::build(&p, 0, &opts).unwrap();
        let arcs = arcs(&trees.factored);
        let one = search(&trees, &arcs, 10, &opts, true, Budgets { lowered: 1, prefixes: usize::MAX });
        assert_eq!((one.stopped, one.lowered, one.orders.len()), (Some(Limit::Lowered(1)), 1, 1));
        let few = search(&trees, &arcs, 10, &opts, true, Budgets { lowered: usize::MAX, prefixes: 2 });
        assert_eq!((few.stopped, few.prefixes), (Some(Limit::Prefixes(2)), 2));
        let all = search(&trees, &arcs, 10, &opts, true, UNLIMITED);
        assert_eq!(all.stopped, None);
        assert!(all.orders.len() > 1);
    }
}
