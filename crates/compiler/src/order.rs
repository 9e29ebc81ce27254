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
    for l in leaves.chain(std::iter::once(&t.out)) {
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
    let trees = Trees::build(p, stmt).map_err(|message| CompileError::Unsupported {
        file: p.file.clone(),
        line: s.span.line,
        col: s.span.col,
        message,
    })?;
    orders_of(p, s, &trees, cap, opts)
}

/// Legal orders of a (possibly fused) statement's trees.
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
    ) {
        let n = used.len();
        let t = &trees.factored;
        if result.len() >= cap {
            return;
        }
        if cur.len() == n {
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
            go(trees, arcs, cur, used, cap, opts, result, first_error);
            cur.pop();
            used[v] = false;
        }
    }
    go(trees, &arcs, &mut cur, &mut used, cap, opts, &mut result, &mut first_error);
    if result.is_empty() {
        let message = match first_error {
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

/// The default order: built greedily, one variable at a time, taking the allowed variable whose
/// best completion has the lowest dense-shape cost estimate (see `estimate`), then checked by
/// lowering; if that fails, the cheapest of the first legal orders.
pub(crate) fn best_order(
    p: &CheckedProgram,
    s: &Stmt,
    trees: &Trees,
    opts: &LowerOptions,
) -> Result<Vec<String>, CompileError> {
    let t = &trees.factored;
    let n = t.var_names.len();
    let arcs = arcs(t);
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
    let cost =
        |o: &[Var]| if o.len() == n { estimate(t, o).or_else(|| estimate(&trees.hoisted_tree(), o)) } else { None };
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
    if prefix.len() == n && trees.lower(&prefix, opts, "probe").is_ok() {
        return Ok(prefix.iter().map(|&v| t.var_names[v].clone()).collect());
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
