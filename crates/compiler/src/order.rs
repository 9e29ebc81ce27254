//! Dataflow orders: the permutations of a statement's index variables that its tensors'
//! storage orders allow and that the lowering supports.

use fuseflow_ir::{CheckedProgram, Stmt};

use crate::expr::{Kind, Tree, Var};

use crate::lower::{estimate, LowerOptions, Trees};
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

/// How many complete orders the enumeration lowers before giving up: fused groups can have
/// factorially many candidate orders, and the search must end with an error, not hang.
const PROBE_BUDGET: usize = 2000;

/// Legal orders of a (possibly fused) statement's trees, lexicographic; when the enumeration's
/// budget runs out first (large fused groups), supported orders near the cost-guided default
/// complete the list.
pub(crate) fn orders_of(
    p: &CheckedProgram,
    s: &Stmt,
    trees: &Trees,
    cap: usize,
    opts: &LowerOptions,
) -> Result<Vec<Vec<String>>, CompileError> {
    let t = &trees.factored;
    let n = t.var_names.len();
    let arcs = arcs(t);
    let mut result = Vec::new();
    let mut first_error: Option<String> = None;
    let mut cur = Vec::with_capacity(n);
    let mut used = vec![false; n];
    let mut budget = PROBE_BUDGET;
    // Backtracking over topological sorts.
    #[allow(clippy::too_many_arguments)]
    fn go(
        trees: &Trees,
        arcs: &[(Var, Var, String)],
        cur: &mut Vec<Var>,
        used: &mut [bool],
        cap: usize,
        opts: &LowerOptions,
        result: &mut Vec<Vec<String>>,
        first_error: &mut Option<String>,
        budget: &mut usize,
    ) {
        let n = used.len();
        let t = &trees.factored;
        if result.len() >= cap || *budget == 0 {
            return;
        }
        if cur.len() == n {
            *budget -= 1;
            match trees.lower(cur, opts, "probe") {
                Ok(_) => result.push(cur.iter().map(|&v| t.var_names[v].clone()).collect()),
                Err(e) => {
                    if first_error.is_none() {
                        let names: Vec<&str> = cur.iter().map(|&v| t.var_names[v].as_str()).collect();
                        *first_error = Some(format!("order {}: {e}", names.join(",")));
                    }
                }
            }
            return;
        }
        for v in 0..n {
            if used[v] || arcs.iter().any(|(a, b, _)| *b == v && !used[*a]) {
                continue;
            }
            used[v] = true;
            cur.push(v);
            go(trees, arcs, cur, used, cap, opts, result, first_error, budget);
            cur.pop();
            used[v] = false;
        }
    }
    go(trees, &arcs, &mut cur, &mut used, cap, opts, &mut result, &mut first_error, &mut budget);
    if budget == 0 && result.len() < cap {
        // The first orders in lexicographic order all failed to lower: look near the
        // cost-guided ones instead.
        for o in nearby_orders(trees, &arcs, opts, cap) {
            let names: Vec<String> = o.iter().map(|&v| t.var_names[v].clone()).collect();
            if result.len() < cap && !result.contains(&names) {
                result.push(names);
            }
        }
    }
    if result.is_empty() {
        let message = match first_error {
            Some(e) if budget == 0 => {
                format!("no supported order among the first {PROBE_BUDGET} candidates (first failure: {e})")
            }
            Some(e) => e,
            None => {
                let desc: Vec<String> =
                    arcs.iter().map(|(a, b, tn)| format!("{tn}: {}<{}", t.var_names[*a], t.var_names[*b])).collect();
                format!("the tensors' mode orders conflict ({})", desc.join(", "))
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
