//! Parallel lanes: replicates the part of a graph that runs below an index variable into `F`
//! lanes (FuseFlow's stream parallelizer, `fuseflow-compiler.md` §8; `docs/parallel.md`).
//!
//! The region is found on the graph, as structured IR. Every stream has a *path*: the index
//! variables of its levels, outermost first (a scanner adds its variable, a reducer removes
//! the innermost, a sparse accumulator the one it reduces). For the variable `v`:
//! - the *co-iteration* of `v` is every scanner, range and joiner over `v` and what feeds them
//!   at `v`'s level or below; its last joiner (or scanner) is the region's *anchor*, whose
//!   outputs hold one token per element of `v`;
//! - the *region* is every other node whose output path contains `v`, except writers and
//!   nodes that mix the elements of `v`'s fibers (a coordinate dropper at `v`'s level, a sparse
//!   accumulator over a variable outside `v`), and what those feed;
//! - a fork (Comal `Scatter`) splits each anchor output the region reads into the lanes, element
//!   by element round-robin; streams from above `v`'s level go to every lane unchanged; every
//!   region stream read outside the region passes through a gather, which puts the lanes'
//!   element subtrees back in order with the original stops (below `v`'s level it reads the
//!   anchor's crd stream to know where each element's subtree ends).
//!
//! Each element of `v` is therefore computed by exactly one lane, with the very primitives the
//! unparallelized graph uses, and the gathers give every consumer outside the region the
//! stream it had before: outputs are identical for every lane count. Two variables are
//! parallelized innermost first, so the outer variable's lanes each hold a copy of the inner
//! variable's forks, lanes and gathers (`--par h=4 --par i=4` gives 16 lanes).

use std::collections::{BTreeMap, HashMap};

use fuseflow_graph::{Graph, Op, StreamId, VerifyError};

/// Why a variable cannot be parallelized in a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParError {
    /// The graph has no scanner, range or joiner over the variable.
    #[error("index {index} is not iterated here (indices: {indices})")]
    NotIterated {
        /// The variable.
        index: String,
        /// The indices the graph iterates, comma-separated.
        indices: String,
    },
    /// A lane count of 0.
    #[error("index {index}: a par factor must be at least 1, not 0")]
    ZeroLanes {
        /// The variable.
        index: String,
    },
    /// A graph shape the lane transformation does not handle.
    #[error("cannot parallelize index {index}: {reason}")]
    Unsupported {
        /// The variable.
        index: String,
        /// What stands in the way.
        reason: String,
    },
    /// The parallel graph failed verification (a compiler bug).
    #[error("internal error: the parallel graph failed verification: {0}")]
    Verify(#[from] VerifyError),
}

impl ParError {
    /// The index variable concerned (`None` for a verification failure).
    pub fn index(&self) -> Option<&str> {
        match self {
            ParError::NotIterated { index, .. }
            | ParError::ZeroLanes { index }
            | ParError::Unsupported { index, .. } => Some(index),
            ParError::Verify(_) => None,
        }
    }
}

/// The index path of every stream (see the module documentation).
fn paths(g: &Graph) -> Vec<Vec<String>> {
    let mut path: Vec<Vec<String>> = vec![Vec::new(); g.streams.len()];
    for node in &g.nodes {
        let at = |p: usize| node.ins.get(p).map(|s| path[s.0 as usize].clone()).unwrap_or_default();
        let outs: Vec<Vec<String>> = match &node.op {
            Op::Root => vec![Vec::new()],
            Op::Scan { index, .. } | Op::Range { index, .. } => {
                let mut p = at(0);
                p.push(index.clone());
                vec![p.clone(), p]
            }
            Op::Repeat { .. } => vec![at(1)],
            Op::RepSig | Op::Array { .. } | Op::Alu { .. } | Op::Locate { .. } | Op::Join { .. } | Op::Fork { .. } => {
                vec![at(0); node.outs.len()]
            }
            Op::CrdDrop => vec![at(0), at(1)],
            Op::Gather { depth, .. } => vec![at(usize::from(*depth > 0))],
            Op::Reduce { .. } => {
                let mut p = at(0);
                p.pop();
                vec![p]
            }
            Op::Spacc { order, .. } => {
                // The reduced variable sits at the end of the first input's path.
                let cut = at(0).len().saturating_sub(1);
                let without = |mut p: Vec<String>| {
                    if cut < p.len() {
                        p.remove(cut);
                    }
                    p
                };
                let o = *order as usize;
                let mut v: Vec<Vec<String>> = (1..=o).map(|k| without(at(k))).collect();
                v.push(without(at(o + 1)));
                v
            }
            Op::LevelWrite { .. } | Op::ValWrite { .. } => Vec::new(),
        };
        for (s, p) in node.outs.iter().zip(outs) {
            if let Some(s) = s {
                path[s.0 as usize] = p;
            }
        }
    }
    path
}

/// Whether a node begins the iteration of `index`: a scanner, range or joiner over it.
fn introduces(op: &Op, index: &str) -> bool {
    match op {
        Op::Scan { index: i, .. } | Op::Range { index: i, .. } | Op::Join { index: i, .. } => i == index,
        Op::Root
        | Op::RepSig
        | Op::Repeat { .. }
        | Op::Locate { .. }
        | Op::Array { .. }
        | Op::Alu { .. }
        | Op::Reduce { .. }
        | Op::Spacc { .. }
        | Op::CrdDrop
        | Op::LevelWrite { .. }
        | Op::ValWrite { .. }
        | Op::Fork { .. }
        | Op::Gather { .. } => false,
    }
}

/// The variables the graph iterates, in order of first appearance.
fn indices(g: &Graph) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in &g.nodes {
        if let Op::Scan { index, .. } | Op::Range { index, .. } | Op::Join { index, .. } = &n.op {
            if !v.contains(index) {
                v.push(index.clone());
            }
        }
    }
    v
}

/// Whether the graph iterates `index`.
pub fn iterates(g: &Graph, index: &str) -> bool {
    g.nodes.iter().any(|n| introduces(&n.op, index))
}

/// How deep `index` is first iterated (1 = outermost), `None` if it is not.
fn level_of(g: &Graph, path: &[Vec<String>], index: &str) -> Option<usize> {
    g.nodes
        .iter()
        .filter(|n| introduces(&n.op, index))
        .filter_map(|n| n.outs.iter().flatten().next().map(|s| path[s.0 as usize].len()))
        .min()
}

/// Parallelizes several variables, innermost first (see the module documentation); factors
/// of 1 change nothing.
pub fn parallelize_all(g: &Graph, pars: &[(String, u32)]) -> Result<Graph, ParError> {
    let path = paths(g);
    let mut todo: Vec<(usize, &str, u32)> = Vec::new();
    for (index, lanes) in pars {
        let Some(level) = level_of(g, &path, index) else {
            return Err(ParError::NotIterated { index: index.clone(), indices: indices(g).join(",") });
        };
        todo.push((level, index, *lanes));
    }
    todo.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut out = g.clone();
    for (_, index, lanes) in todo {
        out = parallelize(&out, index, lanes)?;
    }
    Ok(out)
}

/// Replicates the region below `index` into `lanes` lanes, with forks and gathers around it.
pub fn parallelize(g: &Graph, index: &str, lanes: u32) -> Result<Graph, ParError> {
    if lanes == 0 {
        return Err(ParError::ZeroLanes { index: index.into() });
    }
    if !iterates(g, index) {
        return Err(ParError::NotIterated { index: index.into(), indices: indices(g).join(",") });
    }
    if lanes == 1 {
        return Ok(g.clone());
    }
    let unsupported = |reason: String| ParError::Unsupported { index: index.into(), reason };
    let path = paths(g);
    let has = |s: StreamId| path[s.0 as usize].iter().any(|v| v == index);
    let n = g.nodes.len();
    let below: Vec<bool> = g.nodes.iter().map(|node| node.outs.iter().flatten().any(|&s| has(s))).collect();
    // The co-iteration of `index`: scanners and joiners over it and what feeds them below it.
    let mut pre = vec![false; n];
    for i in (0..n).rev() {
        let node = &g.nodes[i];
        pre[i] = below[i]
            && (introduces(&node.op, index)
                || node.outs.iter().flatten().any(|s| g.stream(*s).consumers.iter().any(|c| pre[c.0 .0 as usize])));
    }
    // Nodes that mix the elements of `index` (and what they feed) stay outside the lanes.
    let mut post = vec![false; n];
    for i in 0..n {
        let node = &g.nodes[i];
        if !below[i] || pre[i] {
            continue;
        }
        // A node with outputs both below and above the variable (a dropper of outer
        // coordinates whose inner fiber is empty) needs every lane's part of a fiber.
        let split = node.outs.iter().flatten().any(|&s| !has(s));
        let mixes = split
            || match &node.op {
                // An outer coordinate of the variable's own level goes when its inner fiber is
                // empty: the elements of a fiber are counted anew.
                Op::CrdDrop => node.ins.first().is_some_and(|s| path[s.0 as usize].last().is_some_and(|v| v == index)),
                Op::Spacc { .. } => node.ins.first().is_some_and(|&s| !has(s)),
                Op::Root
                | Op::Scan { .. }
                | Op::Range { .. }
                | Op::RepSig
                | Op::Repeat { .. }
                | Op::Join { .. }
                | Op::Locate { .. }
                | Op::Array { .. }
                | Op::Alu { .. }
                | Op::Reduce { .. }
                | Op::LevelWrite { .. }
                | Op::ValWrite { .. }
                | Op::Fork { .. }
                | Op::Gather { .. } => false,
            };
        post[i] = mixes || node.ins.iter().any(|s| post[g.stream(*s).producer.0 .0 as usize]);
    }
    let region: Vec<bool> = (0..n).map(|i| below[i] && !pre[i] && !post[i] && !g.nodes[i].op.is_sink()).collect();
    if !region.iter().any(|&r| r) {
        return Err(unsupported("nothing below its co-iteration runs per element".into()));
    }
    // Each region node hangs from one anchor: the co-iteration node whose outputs it reads.
    let mut anchor: Vec<Option<usize>> = vec![None; n];
    for i in (0..n).filter(|&i| region[i]) {
        let node = &g.nodes[i];
        let mut a = None;
        for &s in &node.ins {
            let p = g.stream(s).producer.0 .0 as usize;
            let from = if region[p] {
                anchor[p]
            } else if has(s) {
                if !introduces(&g.nodes[p].op, index) || path[s.0 as usize].last().is_none_or(|v| v != index) {
                    return Err(unsupported(format!(
                        "{} reads {} from inside the co-iteration of {index}",
                        node.label,
                        g.stream(s).name
                    )));
                }
                Some(p)
            } else {
                None
            };
            if let Some(f) = from {
                if a.is_some_and(|x| x != f) {
                    return Err(unsupported(format!(
                        "{} reads two separate co-iterations of {index}",
                        if node.label.is_empty() { node.op.kind_name() } else { &node.label }
                    )));
                }
                a = Some(f);
            }
        }
        if a.is_none() {
            return Err(unsupported(format!("{} reads nothing per element", node.op.describe())));
        }
        anchor[i] = a;
    }
    // Region numbers: new regions after those already in the graph.
    let mut next_region = g.nodes.iter().filter_map(|n| n.op.region()).map(|r| r + 1).max().unwrap_or(0);
    let mut region_of_anchor: BTreeMap<usize, u32> = BTreeMap::new();
    for a in anchor.iter().flatten() {
        region_of_anchor.entry(*a).or_insert_with(|| {
            next_region += 1;
            next_region - 1
        });
    }
    let mut nested: HashMap<(u32, usize), u32> = HashMap::new();

    let mut out = Graph::new(g.name.clone());
    out.inputs = g.inputs.clone();
    out.outputs = g.outputs.clone();
    let mut single: Vec<Option<StreamId>> = vec![None; g.streams.len()];
    let mut laned: Vec<Option<Vec<StreamId>>> = vec![None; g.streams.len()];
    let mut new_outs: Vec<Vec<StreamId>> = vec![Vec::new(); n];
    let mut gathered: HashMap<StreamId, StreamId> = HashMap::new();
    let f = lanes as usize;
    for i in 0..n {
        let node = &g.nodes[i];
        if region[i] {
            let rid = anchor[i].and_then(|a| region_of_anchor.get(&a).copied()).unwrap_or(0);
            let mut per_lane: Vec<Vec<StreamId>> = Vec::with_capacity(f);
            for l in 0..f {
                let mut ins = Vec::with_capacity(node.ins.len());
                for &s in &node.ins {
                    let si = s.0 as usize;
                    if laned[si].is_none() && has(s) {
                        let src =
                            single[si].ok_or_else(|| unsupported(format!("stream {} is void", g.stream(s).name)))?;
                        let fork = Op::Fork { lanes, index: index.into(), region: rid };
                        laned[si] = Some(out.add(fork, &[src], format!("fork_{index}_{}", g.stream(s).name)));
                    }
                    ins.push(match &laned[si] {
                        Some(ls) => ls[l],
                        None => {
                            single[si].ok_or_else(|| unsupported(format!("stream {} is void", g.stream(s).name)))?
                        }
                    });
                }
                let mut renumber = |r: u32| {
                    *nested.entry((r, l)).or_insert_with(|| {
                        next_region += 1;
                        next_region - 1
                    })
                };
                // A nested region gets a number of its own in every lane.
                let op = node.op.renumbered(&mut renumber);
                per_lane.push(out.add(op, &ins, format!("{}@{l}", node.label)));
            }
            for (port, s) in node.outs.iter().enumerate() {
                if let Some(s) = s {
                    laned[s.0 as usize] = Some(per_lane.iter().map(|o| o[port]).collect());
                }
            }
        } else {
            let mut ins = Vec::with_capacity(node.ins.len());
            for &s in &node.ins {
                let si = s.0 as usize;
                // Streams of region nodes come back through a gather; others (the anchor's
                // outputs too, forked or not) are read as they are.
                let from_region = region[g.stream(s).producer.0 .0 as usize];
                let new = match laned[si].as_ref().filter(|_| from_region) {
                    Some(ls) => match gathered.get(&s) {
                        Some(&x) => x,
                        None => {
                            let p = g.stream(s).producer.0 .0 as usize;
                            let a =
                                anchor[p].ok_or_else(|| unsupported(format!("{} has no anchor", g.stream(s).name)))?;
                            let sp = &path[si];
                            let at = sp
                                .iter()
                                .position(|v| v == index)
                                .ok_or_else(|| unsupported(format!("{} lies above {index}", g.stream(s).name)))?;
                            let depth = (sp.len() - 1 - at) as u32;
                            let mut gins = Vec::with_capacity(f + 1);
                            if depth > 0 {
                                gins.push(new_outs[a][0]);
                            }
                            gins.extend(ls.iter().copied());
                            let rid = region_of_anchor.get(&a).copied().unwrap_or(0);
                            let op = Op::Gather { lanes, depth, index: index.into(), region: rid };
                            let x = out.add(op, &gins, format!("gather_{index}_{}", g.stream(s).name))[0];
                            gathered.insert(s, x);
                            x
                        }
                    },
                    None => single[si].ok_or_else(|| unsupported(format!("stream {} is void", g.stream(s).name)))?,
                };
                ins.push(new);
            }
            let outs = out.add(node.op.clone(), &ins, node.label.clone());
            for (port, s) in node.outs.iter().enumerate() {
                if let Some(s) = s {
                    single[s.0 as usize] = Some(outs[port]);
                }
            }
            new_outs[i] = outs;
        }
    }
    out.prune();
    out.verify()?;
    Ok(out)
}
