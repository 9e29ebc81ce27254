//! Storage orders of temporaries and dense inputs after a relabelled reshape.
//!
//! Splitting the model dimension into heads makes attention read the projections through
//! permuted views (`Q(h,s,e)` stored as `(s,h,e)`), and a row-major temporary can then
//! contradict the loop order its consumer needs (no legal dataflow order). As the Python
//! frontend does (`_plan_storage` in `python/fuseflow/_frontend.py`), each such tensor is
//! stored in an order its statements can iterate: here consumer first, walking the
//! statements backwards, so that a producer is stored the way its last reader wants it. A
//! statement's loop order is a topological order of the storage orders already fixed among
//! the tensors it touches (outputs and sparse or already planned tensors), preferring its
//! result's own order with reduced indices before the result's last index; every tensor it
//! touches that is still free (a temporary, or a dense input) is stored in that order. A
//! statement whose fixed orders conflict is left alone (the compiler reports it).
//!
//! Only functions with a relabelled reshape are planned, so every other program keeps the
//! row-major layout (and the cycle counts) it always had.

use std::collections::{BTreeMap, BTreeSet};

use fuseflow_ir::{Access, BuildStmt, Expr, Role, TensorDecl};
use fuseflow_tensor::LevelFormat;

/// Chooses mode orders of free tensors (see the module documentation).
pub(crate) fn plan(decls: &mut [TensorDecl], stmts: &[BuildStmt]) {
    let pos: BTreeMap<String, usize> = decls.iter().enumerate().map(|(k, d)| (d.name.clone(), k)).collect();
    let mut fixed: BTreeSet<usize> = decls
        .iter()
        .enumerate()
        .filter(|(_, d)| match d.role {
            Role::Output => true,
            Role::Temp => false,
            // A blocked input's storage is its block encoding's, as written.
            Role::Input => d.block.is_some() || d.format.levels.iter().any(|l| *l != LevelFormat::Dense),
        })
        .map(|(k, _)| k)
        .collect();
    for st in stmts.iter().rev() {
        let (lhs, rhs, norm) = match st {
            BuildStmt::Plain(s) => (&s.lhs, &s.rhs, None),
            BuildStmt::Builtin { lhs, arg, index, .. } => (lhs, arg, Some(index.as_str())),
        };
        let mut reads: Vec<Access> = Vec::new();
        rhs.for_each_access(&mut |a| reads.push(a.clone()));
        let mut reduced: Vec<String> = Vec::new();
        reductions(rhs, &mut reduced);
        let all: Vec<&Access> = std::iter::once(lhs).chain(&reads).collect();
        // Precedences from the fixed tensors' storage orders.
        let mut before: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for a in &all {
            for i in &a.indices {
                if !names.contains(i) {
                    names.push(i.clone());
                }
            }
            let Some(&k) = pos.get(&a.tensor) else { continue };
            if !fixed.contains(&k) || decls[k].format.mode_order.len() != a.indices.len() {
                continue;
            }
            let stored: Vec<&String> = decls[k].format.mode_order.iter().filter_map(|&m| a.indices.get(m)).collect();
            for w in stored.windows(2) {
                if w[0] != w[1] {
                    before.entry(w[1].clone()).or_default().insert(w[0].clone());
                }
            }
        }
        // Preference: the result's stored order (or its index order), reductions before its last.
        let lk = pos.get(&lhs.tensor).copied();
        let mut lhs_order: Vec<String> = match lk {
            Some(k) if fixed.contains(&k) && decls[k].format.mode_order.len() == lhs.indices.len() => {
                decls[k].format.mode_order.iter().filter_map(|&m| lhs.indices.get(m).cloned()).collect()
            }
            _ => lhs.indices.clone(),
        };
        let last = lhs_order.pop();
        let mut pref: Vec<String> = lhs_order;
        for r in &reduced {
            if !pref.contains(r) {
                pref.push(r.clone());
            }
        }
        pref.extend(last);
        for n in &names {
            if !pref.contains(n) && Some(n.as_str()) != norm {
                pref.push(n.clone());
            }
        }
        if let Some(n) = norm {
            if !pref.iter().any(|p| p == n) {
                pref.push(n.to_string());
            }
        }
        let Some(order) = topo(&pref, &before) else { continue };
        let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(r, n)| (n.as_str(), r)).collect();
        for a in &all {
            let Some(&k) = pos.get(&a.tensor) else { continue };
            let distinct: BTreeSet<&String> = a.indices.iter().collect();
            if fixed.contains(&k) || distinct.len() != a.indices.len() || a.indices.len() != decls[k].shape.len() {
                continue;
            }
            let mut mo: Vec<usize> = (0..a.indices.len()).collect();
            mo.sort_by_key(|&m| rank.get(a.indices[m].as_str()).copied().unwrap_or(usize::MAX));
            decls[k].format.mode_order = mo;
            fixed.insert(k);
        }
    }
}

/// Indices reduced anywhere in `e`.
fn reductions(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Access(_) | Expr::Const(_) => {}
        Expr::Unary(_, x) => reductions(x, out),
        Expr::Binary(_, a, b) => {
            reductions(a, out);
            reductions(b, out);
        }
        Expr::Reduce { index, body, .. } => {
            if !out.contains(index) {
                out.push(index.clone());
            }
            reductions(body, out);
        }
    }
}

/// A topological order of `pref` under `before` (index → indices that must precede it),
/// taking the earliest preferred index whose predecessors are placed; `None` on a cycle.
fn topo(pref: &[String], before: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < pref.len() {
        let next = pref.iter().find(|n| {
            !order.contains(n)
                && before.get(*n).is_none_or(|b| b.iter().all(|p| order.contains(p) || !pref.contains(p)))
        })?;
        order.push(next.clone());
    }
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn topo_prefers_the_given_order_under_precedences() {
        let mut before = BTreeMap::new();
        before.insert("i".to_string(), BTreeSet::from(["j".to_string()]));
        assert_eq!(topo(&s(&["i", "j", "k"]), &before), Some(s(&["j", "i", "k"])));
        assert_eq!(topo(&s(&["i", "j", "k"]), &BTreeMap::new()), Some(s(&["i", "j", "k"])));
        before.insert("j".to_string(), BTreeSet::from(["i".to_string()]));
        assert_eq!(topo(&s(&["i", "j"]), &before), None);
    }
}
