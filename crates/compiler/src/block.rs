//! Sparsity blocking of a fusion group (FuseFlow's block-sparse mode, fuseflow-compiler.md §9).
//!
//! Blocking a group by `B` splits some index variables into a block index (iterated by the
//! graph) and an in-tile index (inside the value tokens, which become dense tiles). Which
//! variables: those of the group's sparse operands (the mask) and, transitively, every
//! variable that shares a tensor dimension with a blocked one, plus the other matrix dimension
//! of a dense operand that one blocked variable touches (so `Q(h,i,e)` becomes `B×B` tiles over
//! `(i,e)` when `i` is blocked; a leading batch index like `h` stays scalar). The closure makes a
//! variable blocked in every access of a statement or in none.
//!
//! The blocked group is lowered like any group, on a copy of the program whose blocked
//! dimensions are divided by `B` ([`blocked_program`]): the graph's topology is the scalar
//! graph of the block structure, so every primitive, order and fusion rule applies unchanged,
//! and the simulator gives its value streams tiles ([`GroupBlock`] says which tensor dimensions
//! are blocked).

use std::collections::{BTreeMap, BTreeSet};

use fuseflow_ir::{CheckedProgram, Role};
use fuseflow_tensor::LevelFormat;

use crate::CompileError;

/// The blocking of one group: the block size and, per tensor the group reads or writes, which
/// logical dimensions are blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBlock {
    /// Block size `B`.
    pub block: usize,
    /// Blocked dimensions of every tensor the group touches (all `false` for unblocked ones).
    pub dims: BTreeMap<String, Vec<bool>>,
}

impl GroupBlock {
    /// Whether any dimension of `tensor` is blocked.
    pub fn blocks(&self, tensor: &str) -> bool {
        self.dims.get(tensor).is_some_and(|d| d.iter().any(|&b| b))
    }
}

/// Tensors the group reads but does not write (its operands), in first-use order.
pub fn group_operands(p: &CheckedProgram, group: &[usize]) -> Vec<String> {
    let written: BTreeSet<&str> = group.iter().map(|&s| p.stmts[s].lhs.tensor.as_str()).collect();
    let mut out: Vec<String> = Vec::new();
    for &s in group {
        p.stmts[s].rhs.for_each_access(&mut |a| {
            if !written.contains(a.tensor.as_str()) && !out.contains(&a.tensor) {
                out.push(a.tensor.clone());
            }
        });
    }
    out
}

/// The group's sparse operands (a compressed level): what `--block` blocks first.
pub fn sparse_operands(p: &CheckedProgram, group: &[usize]) -> Vec<String> {
    group_operands(p, group)
        .into_iter()
        .filter(|t| p.decl(t).is_some_and(|d| d.format.levels.contains(&LevelFormat::Compressed)))
        .collect()
}

/// The blocking of `group` by `block`, seeded by `seeds` (tensors whose matrix dimensions
/// are blocked: the last two, or the only one of a vector). `origin` names what asked for it
/// in errors (`--block 16`, or a declaration's `block(16)`).
///
/// Errors (one line, naming the declaration): a block size below 2, a block size that does
/// not divide a blocked dimension, an operand whose blocked dimensions are not its innermost
/// storage levels (a tile is the leaf of the block fibertree).
pub fn block_group(
    p: &CheckedProgram,
    group: &[usize],
    block: usize,
    seeds: &[String],
    origin: &str,
) -> Result<GroupBlock, CompileError> {
    let at = |tensor: &str, message: String| {
        let span = p.decl(tensor).map(|d| d.span).unwrap_or_default();
        CompileError::Block { file: p.file.clone(), line: span.line, col: span.col, message }
    };
    if block < 2 {
        let t = seeds.first().map(String::as_str).unwrap_or("");
        return Err(at(t, format!("{origin}: a block size must be at least 2, got {block}")));
    }
    let rank = |t: &str| p.decl(t).map_or(0, |d| d.shape.len());
    let mut blocked: BTreeSet<(String, usize)> = BTreeSet::new();
    for t in seeds {
        let r = rank(t);
        for d in r.saturating_sub(2)..r {
            blocked.insert((t.clone(), d));
        }
    }
    loop {
        let before = blocked.len();
        for &s in group {
            let st = &p.stmts[s];
            let mut accesses = vec![&st.lhs];
            st.rhs.for_each_access(&mut |a| accesses.push(a));
            let mut vars: BTreeSet<&str> = BTreeSet::new();
            for a in &accesses {
                for (d, v) in a.indices.iter().enumerate() {
                    if blocked.contains(&(a.tensor.clone(), d)) {
                        vars.insert(v.as_str());
                    }
                }
            }
            for a in &accesses {
                let r = a.indices.len();
                for (d, v) in a.indices.iter().enumerate() {
                    if vars.contains(v.as_str()) {
                        blocked.insert((a.tensor.clone(), d));
                    }
                }
                // A dense input operand is a (batch of) matrices: its tile spans both matrix
                // dimensions.
                let input = p.decl(&a.tensor).is_some_and(|d| d.role == Role::Input);
                if input && r >= 2 {
                    let (x, y) = ((a.tensor.clone(), r - 2), (a.tensor.clone(), r - 1));
                    if blocked.contains(&x) || blocked.contains(&y) {
                        blocked.insert(x);
                        blocked.insert(y);
                    }
                }
            }
        }
        if blocked.len() == before {
            break;
        }
    }
    let mut dims: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for &s in group {
        let st = &p.stmts[s];
        dims.entry(st.lhs.tensor.clone()).or_insert_with(|| vec![false; st.lhs.indices.len()]);
        st.rhs.for_each_access(&mut |a| {
            dims.entry(a.tensor.clone()).or_insert_with(|| vec![false; a.indices.len()]);
        });
    }
    for (t, d) in &blocked {
        if let Some(v) = dims.get_mut(t).and_then(|v| v.get_mut(*d)) {
            *v = true;
        }
    }
    let operands = group_operands(p, group);
    for (t, flags) in &dims {
        let Some(decl) = p.decl(t) else { continue };
        for (d, (&b, &size)) in flags.iter().zip(&decl.shape).enumerate() {
            if b && !size.is_multiple_of(block) {
                return Err(at(
                    t,
                    format!("{origin}: block size {block} does not divide dimension {d} of {t} (size {size})"),
                ));
            }
        }
        if operands.contains(t) && flags.iter().any(|&b| b) {
            fuseflow_tensor::block::check_blockable(&decl.shape, &decl.format, block, flags).map_err(|e| {
                let why = e.to_string();
                let why = why.strip_prefix("invalid argument: ").unwrap_or(&why);
                at(t, format!("{origin}: {t} ({}) cannot be blocked: {why}", fuseflow_ir::format_name(&decl.format)))
            })?;
        }
    }
    Ok(GroupBlock { block, dims })
}

/// A copy of `p` in which every blocked dimension of `b` (declarations, and the index sizes
/// of the group's statements) is divided by the block size: the program of the block
/// structure, which lowers to the blocked group's graph.
pub fn blocked_program(p: &CheckedProgram, group: &[usize], b: &GroupBlock) -> CheckedProgram {
    let mut q = p.clone();
    for decl in q.decls.iter_mut() {
        if let Some(flags) = b.dims.get(&decl.name) {
            for (size, &f) in decl.shape.iter_mut().zip(flags) {
                if f {
                    *size /= b.block;
                }
            }
        }
    }
    for &s in group {
        let st = &p.stmts[s];
        let mut vars: BTreeSet<&str> = BTreeSet::new();
        let mut accesses = vec![&st.lhs];
        st.rhs.for_each_access(&mut |a| accesses.push(a));
        for a in accesses {
            for (d, v) in a.indices.iter().enumerate() {
                if b.dims.get(&a.tensor).and_then(|f| f.get(d)).copied().unwrap_or(false) {
                    vars.insert(v.as_str());
                }
            }
        }
        if let Some(sizes) = q.index_sizes.get_mut(s) {
            for v in vars {
                if let Some(n) = sizes.get_mut(v) {
                    *n /= b.block;
                }
            }
        }
    }
    q
}

/// Lowers `group` blocked by `b`: the group's graph on [`blocked_program`], with the blocking
/// recorded in the kernel ([`crate::GroupKernel::block`]).
pub fn lower_blocked_group(
    p: &CheckedProgram,
    group: &[usize],
    b: &GroupBlock,
    order: Option<&[String]>,
    opts: &crate::LowerOptions,
) -> Result<crate::GroupKernel, CompileError> {
    let q = blocked_program(p, group, b);
    let mut k = crate::lower_group(&q, group, order, opts)?;
    k.block = Some(b.clone());
    Ok(k)
}
