//! How big lowering a fused group gets, estimated from the program before anything is built.
//!
//! Lowering a group inlines each intermediate into its consumers, so an intermediate read
//! twice is copied twice (a chain of `T(k) = T(k-1) * T(k-1)` doubles at every statement), and
//! every joiner forwards the payload streams of all the operands below it, so a chain of `N`
//! nested operations builds about `N²/2` payload streams before pruning keeps the few that
//! are used (2000 fused statements: gigabytes). [`group_size`] computes, in one pass over the
//! group's statements, the size of the inlined expressions and that count of payload streams,
//! so that a caller can refuse a group before lowering it (see `fuseflow`'s memory limit).

use std::collections::BTreeMap;

use fuseflow_ir::{CheckedProgram, Expr};

/// Most inlined expression nodes of a fused group that the compiler lowers (lowering time
/// grows faster than linearly in them: 2^15 nodes take seconds).
pub const MAX_EXPR_NODES: u64 = 1 << 15;

/// Most payload streams (before pruning) of a fused group that the compiler lowers: about a
/// chain of 1400 fused statements, a few seconds and a few hundred megabytes.
pub const MAX_PAYLOAD_STREAMS: u64 = 1 << 21;

/// Estimated size of lowering one fused group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupSize {
    /// Nodes of the inlined expressions of the group's outputs (exact, saturating).
    pub expr_nodes: u64,
    /// Payload streams the joiners create before pruning (an upper bound, saturating).
    pub payload_streams: u64,
}

impl GroupSize {
    /// Whether the group is within [`MAX_EXPR_NODES`] and [`MAX_PAYLOAD_STREAMS`].
    pub fn within_limits(&self) -> bool {
        self.expr_nodes <= MAX_EXPR_NODES && self.payload_streams <= MAX_PAYLOAD_STREAMS
    }

    /// Rough peak bytes of lowering: a few hundred bytes per expression node and payload
    /// stream (the node or stream, its name, memo entries). Calibrated on chains of fused
    /// statements; an estimate for refusing absurd groups, not an accounting.
    pub fn bytes(&self) -> u64 {
        self.expr_nodes.saturating_mul(256).saturating_add(self.payload_streams.saturating_mul(256))
    }
}

/// Per inlined expression: nodes, operand leaves, and Σ over binary nodes of the leaves below.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    nodes: u64,
    leaves: u64,
    pairs: u64,
}

fn shape(e: &Expr, inlined: &BTreeMap<&str, Shape>) -> Shape {
    match e {
        Expr::Access(a) => inlined.get(a.tensor.as_str()).copied().unwrap_or(Shape { nodes: 1, leaves: 1, pairs: 0 }),
        Expr::Const(_) => Shape { nodes: 1, leaves: 0, pairs: 0 },
        Expr::Unary(_, x) | Expr::Reduce { body: x, .. } => {
            let s = shape(x, inlined);
            Shape { nodes: s.nodes.saturating_add(1), ..s }
        }
        Expr::Binary(_, a, b) => {
            let (a, b) = (shape(a, inlined), shape(b, inlined));
            let leaves = a.leaves.saturating_add(b.leaves);
            Shape {
                nodes: a.nodes.saturating_add(b.nodes).saturating_add(1),
                leaves,
                pairs: a.pairs.saturating_add(b.pairs).saturating_add(leaves),
            }
        }
    }
}

/// The size of lowering `group` (statement indices of `p`, as [`crate::plan`] gives them)
/// fused: each output's statement with the intermediates it reads inlined.
pub fn group_size(p: &CheckedProgram, group: &[usize]) -> GroupSize {
    let mut inlined: BTreeMap<&str, Shape> = BTreeMap::new();
    let mut vars = 1u64;
    for &s in group {
        let Some(st) = p.stmts.get(s) else { continue };
        let sh = shape(&st.rhs, &inlined);
        inlined.insert(st.lhs.tensor.as_str(), sh);
        vars = vars.max(p.index_sizes.get(s).map_or(1, |m| m.len() as u64));
    }
    let mut size = GroupSize::default();
    for t in crate::group_outputs(p, group) {
        if let Some(sh) = inlined.get(t.as_str()) {
            size.expr_nodes = size.expr_nodes.saturating_add(sh.nodes);
            size.payload_streams = size.payload_streams.saturating_add(sh.pairs.saturating_mul(vars));
        }
    }
    size
}
