//! Dataflow orders: the permutations of a statement's index variables that its tensors'
//! storage orders allow and that the lowering supports.

use fuseflow_ir::CheckedProgram;

use crate::expr::{Kind, Tree, Var};

use crate::lower::{LowerOptions, Trees};
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
    go(&trees, &arcs, &mut cur, &mut used, cap, opts, &mut result, &mut first_error);
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
