//! Channel depths a graph needs to run with finite FIFOs.
//!
//! A SAM graph is a DAG, so with unbounded channels it always completes. With finite ones it
//! can deadlock where the streams of a shared upstream region `S` reach one node `M` along two
//! branches and one branch is *late*: a reducer (or sparse accumulator) on it emits the result
//! of a fiber only after the whole fiber and the token after it have gone by, and a repeater of
//! such a result closes its fiber only when it sees the next result. `M` then waits on the late
//! branch while the early branch fills up; once the early branch's channels out of `S` are
//! full, `S` cannot feed the late branch either. Softmax and layer norm, where a row reduction
//! is broadcast back over its row, are the typical case, and chained reductions add up: the
//! last of `k` chained row reductions trails the rows it reads by about `k` rows.
//!
//! [`min_depths`] measures this on the graph alone. Every stream gets its nesting (the
//! dimension sizes of its levels, from the scanners' tensor bindings, ranges and locators) and
//! its *lag*: how many fibers at each depth its tokens may trail the tokens they derive from
//! (a reducer adds one fiber at its depth; a scanner or repeater fed by a lagging stream adds
//! one more for its look-ahead). For each node with two inputs `a` and `b` that share upstream
//! nodes, the channels that carry tokens from the shared region into `b`'s own side (the
//! *frontier*) get room for `a`'s extra lag, counted in the tokens of each frontier stream,
//! plus [`LOOKAHEAD_SLACK`]. Inputs of one node nested at different depths get the slack as
//! well (a deeper input's fibers close by look-ahead through the shared upstream). Placing the
//! room at the frontier rather than at `M` means that a branch that re-reads a row from memory
//! (a scanner between the shared region and `M`) buffers one reference per row, while a branch
//! that carries the row itself (row sharing) buffers the row.
//!
//! The bound is conservative: it assumes fibers as long as their dimension. The property tests
//! run random fused programs at depths 1, 2 and 4 with the needs applied and must never
//! deadlock.

use crate::{Graph, JoinKind, NodeId, Op, StreamId};

/// Tokens of look-ahead slack given to every channel that needs more than the default depth.
pub const LOOKAHEAD_SLACK: u64 = 2;

/// One channel (a stream and one of its consumer ports) that needs a minimum depth.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DepthNeed {
    /// The stream.
    pub stream: StreamId,
    /// The consuming node.
    pub consumer: NodeId,
    /// The consumer's input port.
    pub port: u32,
    /// The smallest capacity, in tokens, with which the graph cannot deadlock here.
    pub depth: u64,
    /// The reducer whose fibers the channel must buffer, or `None` for look-ahead slack only.
    pub reducer: Option<NodeId>,
}

/// A fixed-size bit set over node indices.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
    fn meets(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }
    /// Whether `self ∖ other` meets `third`.
    fn minus_meets(&self, other: &Bits, third: &Bits) -> bool {
        self.0.iter().zip(&other.0).zip(&third.0).any(|((a, b), c)| a & !b & c != 0)
    }
    fn minus(&self, other: &Bits) -> Bits {
        Bits(self.0.iter().zip(&other.0).map(|(a, b)| a & !b).collect())
    }
    fn and(&self, other: &Bits) -> Bits {
        Bits(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }
    fn or(&self, other: &Bits) -> Bits {
        Bits(self.0.iter().zip(&other.0).map(|(a, b)| a | b).collect())
    }
}

/// Dimension sizes of each stream's levels, outermost first (its nesting). Unknown sizes (a
/// scanner of a tensor the graph does not bind) count as 1: such a graph cannot be simulated.
pub fn stream_nesting(g: &Graph) -> Vec<Vec<u64>> {
    let mut nest: Vec<Vec<u64>> = vec![Vec::new(); g.streams.len()];
    let of = |nest: &Vec<Vec<u64>>, s: Option<&StreamId>| s.map(|s| nest[s.0 as usize].clone()).unwrap_or_default();
    for node in &g.nodes {
        let outs: Vec<Vec<u64>> = match &node.op {
            Op::Root => vec![Vec::new()],
            Op::Scan { tensor, dim, .. } => {
                let size = g
                    .inputs
                    .iter()
                    .find(|b| &b.tensor == tensor)
                    .and_then(|b| b.shape.get(*dim as usize))
                    .map_or(1, |&s| s as u64);
                let mut n = of(&nest, node.ins.first());
                n.push(size);
                vec![n.clone(), n]
            }
            Op::Range { size, .. } => {
                let mut n = of(&nest, node.ins.first());
                n.push(u64::from(*size));
                vec![n.clone(), n]
            }
            Op::RepSig | Op::Array { .. } | Op::Alu { .. } | Op::Locate { .. } => vec![of(&nest, node.ins.first())],
            Op::Repeat { .. } => vec![of(&nest, node.ins.get(1))],
            Op::Join { .. } => vec![of(&nest, node.ins.first()); node.outs.len()],
            Op::Reduce { .. } => {
                let mut n = of(&nest, node.ins.first());
                n.pop();
                vec![n]
            }
            Op::Spacc { order, .. } => {
                // Inputs: the reduced crd, the crds of the levels inside it, the values.
                let mut outer = of(&nest, node.ins.first());
                outer.pop();
                let inner: Vec<u64> =
                    (1..=*order as usize).map(|k| of(&nest, node.ins.get(k)).last().copied().unwrap_or(1)).collect();
                let mut outs: Vec<Vec<u64>> = (1..=inner.len())
                    .map(|k| {
                        let mut n = outer.clone();
                        n.extend_from_slice(&inner[..k]);
                        n
                    })
                    .collect();
                let mut vals = outer;
                vals.extend_from_slice(&inner);
                outs.push(vals);
                outs
            }
            Op::CrdDrop => vec![of(&nest, node.ins.first()), of(&nest, node.ins.get(1))],
            Op::LevelWrite { .. } | Op::ValWrite { .. } => Vec::new(),
            Op::Fork { .. } => vec![of(&nest, node.ins.first()); node.outs.len()],
            Op::Gather { depth, .. } => vec![of(&nest, node.ins.get(usize::from(*depth > 0)))],
        };
        for (s, n) in node.outs.iter().zip(outs) {
            if let Some(s) = s {
                nest[s.0 as usize] = n;
            }
        }
    }
    nest
}

/// Most tokens a stream with level sizes `sizes` carries for one fiber at depth `depth` (the
/// levels from `depth` inward, with one stop token per fiber), saturating.
pub fn fiber_tokens(sizes: &[u64], depth: usize) -> u64 {
    sizes
        .get(depth..)
        .unwrap_or_default()
        .iter()
        .rev()
        .fold(0u64, |inner, &s| s.saturating_mul(inner.max(1)).saturating_add(1))
}

/// Tokens of a stream with level sizes `sizes` for one unit of lag at depth `depth`: one fiber
/// at that depth, or a single token when the stream is not nested that deep.
fn lag_unit(sizes: &[u64], depth: usize) -> u64 {
    fiber_tokens(sizes, depth).max(1)
}

/// Lag bounds of a stream: index `d` of each vector counts fibers at depth `d`. `max` is what
/// the stream may trail (an intersection may match nothing until its fiber ends); `min` is
/// what it always trails (a reducer always waits for its fiber's end).
#[derive(Debug, Clone, Default)]
struct Lag {
    max: Vec<u64>,
    min: Vec<u64>,
}

impl Lag {
    fn join(&mut self, other: &Lag) {
        max_into(&mut self.max, &other.max);
        max_into(&mut self.min, &other.min);
    }
}

fn max_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, &y) in a.iter_mut().zip(b) {
        *x = (*x).max(y);
    }
}

fn add_at(a: &mut Vec<u64>, depth: usize) {
    if a.len() <= depth {
        a.resize(depth + 1, 0);
    }
    a[depth] = a[depth].saturating_add(1);
}

fn lags(v: &[u64]) -> bool {
    v.iter().any(|&x| x > 0)
}

/// Whether a stream nested `depth` deep lags by whole fibers per token: a lag at its own depth
/// or deeper (a reducer's output lags one fiber at its depth for every value).
fn per_token(v: &[u64], depth: usize) -> bool {
    v.get(depth..).is_some_and(lags)
}

/// Adds a node's own lag to `out` (the join of its inputs' lags): `global` gives the lag of
/// its inputs counted from the sources, which decides whether look-ahead on them costs a fiber.
fn add_own_lag(node: &crate::Node, nest: &[Vec<u64>], global: &[Lag], out: &mut Lag) {
    let depth = |s: StreamId| nest[s.0 as usize].len();
    let Some(&first) = node.ins.first() else { return };
    match &node.op {
        // One fiber: its end, and the token after it, must have gone by.
        Op::Reduce { .. } | Op::Spacc { .. } => {
            let d = depth(first).saturating_sub(1);
            add_at(&mut out.max, d);
            add_at(&mut out.min, d);
        }
        // An intersection may find no match until its fiber ends.
        Op::Join { kind: JoinKind::Intersect, .. } => add_at(&mut out.max, depth(first).saturating_sub(1)),
        // Closing a fiber takes the next input token, which trails by a fiber of its own when
        // every token of the input lags a fiber (a reducer's results). An input that lags
        // within its own fibers (an intersection's) brings its next token within that lag.
        Op::Scan { .. } | Op::Range { .. } | Op::Repeat { .. } => {
            let (g, d) = (&global[first.0 as usize], depth(first));
            if per_token(&g.max, d) {
                add_at(&mut out.max, d);
            }
            if per_token(&g.min, d) {
                add_at(&mut out.min, d);
            }
        }
        // An outer coordinate may wait for its whole inner fiber.
        Op::CrdDrop => add_at(&mut out.max, depth(first)),
        // A lane's element waits while the gather passes the other lanes' elements: a
        // subtree of the parallelized level per lane.
        Op::Gather { depth: k, lanes, .. } => {
            let lane = node.ins[usize::from(*k > 0)];
            let d = depth(lane).saturating_sub(*k as usize);
            for _ in 1..*lanes {
                add_at(&mut out.max, d);
            }
        }
        Op::Root
        | Op::Fork { .. }
        | Op::RepSig
        | Op::Join { kind: JoinKind::Union, .. }
        | Op::Locate { .. }
        | Op::Array { .. }
        | Op::Alu { .. }
        | Op::LevelWrite { .. }
        | Op::ValWrite { .. } => {}
    }
}

/// Whether a node can add lag at all.
fn can_lag(node: &crate::Node, nest: &[Vec<u64>], global: &[Lag]) -> bool {
    let mut l = Lag::default();
    add_own_lag(node, nest, global, &mut l);
    lags(&l.max)
}

/// How far one output of a node trails its other outputs: a sparse accumulator of order 2
/// emits its result as a fibertree, each middle coordinate after the inner fiber of the one
/// before, so every middle coordinate trails a whole inner fiber.
fn skew(g: &Graph, nest: &[Vec<u64>], s: StreamId) -> Lag {
    let (node, port) = g.streams[s.0 as usize].producer;
    let mut l = Lag::default();
    match g.nodes[node.0 as usize].op {
        Op::Spacc { order, .. } if (port as usize) + 1 < order as usize => {
            let d = nest[s.0 as usize].len();
            add_at(&mut l.max, d);
            add_at(&mut l.min, d);
        }
        Op::Spacc { .. }
        | Op::Root
        | Op::Scan { .. }
        | Op::Range { .. }
        | Op::RepSig
        | Op::Repeat { .. }
        | Op::Join { .. }
        | Op::Locate { .. }
        | Op::Array { .. }
        | Op::Alu { .. }
        | Op::Reduce { .. }
        | Op::CrdDrop
        | Op::LevelWrite { .. }
        | Op::ValWrite { .. }
        | Op::Fork { .. }
        | Op::Gather { .. } => {}
    }
    l
}

/// The lag of every stream counted from the graph's sources (see the module documentation).
fn stream_lags(g: &Graph, nest: &[Vec<u64>]) -> Vec<Lag> {
    let mut lag: Vec<Lag> = vec![Lag::default(); g.streams.len()];
    for node in &g.nodes {
        let mut out = Lag::default();
        for &s in &node.ins {
            out.join(&lag[s.0 as usize]);
        }
        add_own_lag(node, nest, &lag, &mut out);
        for s in node.outs.iter().flatten() {
            let mut l = out.clone();
            l.join(&skew(g, nest, *s));
            lag[s.0 as usize] = l;
        }
    }
    lag
}

/// The lag of the streams of the nodes in `visit` but not in `shared`, counted from the shared
/// region (whose streams lag only by their producer's output skew), written into `lag`.
/// `visit` must be closed under ancestors. Look-ahead on a stream that lags from the sources
/// still costs a fiber here: the shared region must produce it.
fn relative_lags(g: &Graph, nest: &[Vec<u64>], global: &[Lag], shared: &Bits, visit: &Bits, lag: &mut [Lag]) {
    let producer = |s: StreamId| g.streams[s.0 as usize].producer.0 .0 as usize;
    for (i, node) in g.nodes.iter().enumerate() {
        if !visit.has(i) || shared.has(i) {
            continue;
        }
        let mut out = Lag::default();
        for &s in &node.ins {
            if shared.has(producer(s)) {
                out.join(&skew(g, nest, s));
            } else {
                out.join(&lag[s.0 as usize]);
            }
        }
        add_own_lag(node, nest, global, &mut out);
        for s in node.outs.iter().flatten() {
            let mut l = out.clone();
            l.join(&skew(g, nest, *s));
            lag[s.0 as usize] = l;
        }
    }
}

/// The depth each channel needs beyond a default of 1 (see the module documentation), sorted
/// by stream and consumer. Channels not listed need no more than 1.
pub fn min_depths(g: &Graph) -> Vec<DepthNeed> {
    let n = g.nodes.len();
    let nest = stream_nesting(g);
    let global = stream_lags(g, &nest);
    let producer = |s: StreamId| g.streams[s.0 as usize].producer.0 .0 as usize;
    // Ancestors of every node (itself included), in arena (topological) order, and the nodes
    // that can add lag.
    let mut anc: Vec<Bits> = Vec::with_capacity(n);
    let mut lagging = Bits::new(n);
    for (i, node) in g.nodes.iter().enumerate() {
        let mut b = Bits::new(n);
        b.set(i);
        for &s in &node.ins {
            let p = anc[producer(s)].clone();
            b.union(&p);
        }
        anc.push(b);
        if can_lag(node, &nest, &global) {
            lagging.set(i);
        }
    }
    let mut need: std::collections::BTreeMap<(StreamId, NodeId, u32), (u64, Option<NodeId>)> = Default::default();
    let mut raise = |key: (StreamId, NodeId, u32), depth: u64, reducer: Option<NodeId>| {
        let e = need.entry(key).or_insert((0, None));
        if depth > e.0 {
            *e = (depth, reducer);
        }
    };
    let mut rel: Vec<Lag> = vec![Lag::default(); g.streams.len()];
    for (m, node) in g.nodes.iter().enumerate() {
        for (pb_port, &b) in node.ins.iter().enumerate() {
            let pb = producer(b);
            for (pa_port, &a) in node.ins.iter().enumerate() {
                let pa = producer(a);
                if pa == pb || !anc[pa].meets(&anc[pb]) {
                    continue;
                }
                let key = (b, NodeId(m as u32), pb_port as u32);
                let deeper = nest[a.0 as usize].len() > nest[b.0 as usize].len();
                if !anc[pa].minus_meets(&anc[pb], &lagging) {
                    if deeper {
                        raise(key, LOOKAHEAD_SLACK, None);
                    }
                    continue;
                }
                let shared = anc[pa].and(&anc[pb]);
                let visit = anc[pa].or(&anc[pb]);
                relative_lags(g, &nest, &global, &shared, &visit, &mut rel);
                let at =
                    |s: StreamId| if shared.has(producer(s)) { skew(g, &nest, s) } else { rel[s.0 as usize].clone() };
                // What a may trail beyond what b surely trails.
                let (late, early) = (at(a), at(b));
                let (la, lb) = (&late.max, &early.min);
                let extra: Vec<(usize, u64)> = la
                    .iter()
                    .enumerate()
                    .map(|(d, &x)| (d, x.saturating_sub(lb.get(d).copied().unwrap_or(0))))
                    .filter(|&(_, x)| x > 0)
                    .collect();
                if extra.is_empty() {
                    if deeper {
                        raise(key, LOOKAHEAD_SLACK, None);
                    }
                    continue;
                }
                let cause = latest_reducer(g, &anc[pa], &anc[pb]);
                let room = |s: StreamId| {
                    extra.iter().fold(LOOKAHEAD_SLACK, |acc, &(d, x)| {
                        acc.saturating_add(x.saturating_mul(lag_unit(&nest[s.0 as usize], d)))
                    })
                };
                // The frontier: channels from the shared region and from a's side into every
                // node that stalls while M waits on a: b's own side, M, and what they feed,
                // except a's side itself.
                let own = anc[pa].minus(&shared);
                let mut stalled = Bits::new(n);
                for (x, xn) in g.nodes.iter().enumerate() {
                    let fed = xn.ins.iter().any(|&s| stalled.has(producer(s)));
                    if own.has(x) || !(x == m || fed || (anc[pb].has(x) && !shared.has(x))) {
                        continue;
                    }
                    stalled.set(x);
                    for (port, &s) in xn.ins.iter().enumerate() {
                        // What the shared region and a's side send to a stalled node piles up
                        // while a catches up; only a's own channel into M is drained.
                        let from = producer(s);
                        let late_input = x == m && port == pa_port;
                        if shared.has(from) || (own.has(from) && !late_input) {
                            raise((s, NodeId(x as u32), port as u32), room(s), cause);
                        }
                    }
                }
            }
        }
    }
    // Parallel lanes: a gather takes an element from its lane only when the element's closing
    // stop is out, which a lane's scanners send on the look-ahead of the lane's next element,
    // `lanes` elements further on at the fork. Meanwhile the other lanes finish elements of
    // their own and the anchor runs ahead: each lane's channel into the gather holds two
    // elements' subtrees, the control channel `lanes + 1` elements.
    for (m, node) in g.nodes.iter().enumerate() {
        if let Op::Gather { lanes, depth, .. } = &node.op {
            let ctrl = usize::from(*depth > 0);
            for (port, &s) in node.ins.iter().enumerate() {
                let room = if port < ctrl {
                    u64::from(*lanes) + 1
                } else {
                    let sizes = &nest[s.0 as usize];
                    let element = fiber_tokens(sizes, sizes.len().saturating_sub(*depth as usize)).saturating_add(1);
                    element.saturating_mul(2)
                };
                raise((s, NodeId(m as u32), port as u32), room.saturating_add(LOOKAHEAD_SLACK), None);
            }
        }
    }
    need.into_iter()
        .map(|((stream, consumer, port), (depth, reducer))| DepthNeed { stream, consumer, port, depth, reducer })
        .collect()
}

/// The last reducer (in arena order) upstream of `a` but not of `b`: the one a report names as
/// the cause of a channel's depth.
fn latest_reducer(g: &Graph, a: &Bits, b: &Bits) -> Option<NodeId> {
    (0..g.nodes.len())
        .rev()
        .find(|&i| a.has(i) && !b.has(i) && matches!(g.nodes[i].op, Op::Reduce { .. } | Op::Spacc { .. }))
        .map(|i| NodeId(i as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AluOp, OutputBinding, ReduceKind, TensorBinding};
    use fuseflow_tensor::LevelFormat;

    fn scan(g: &mut Graph, r: StreamId, level: u32, index: &str) -> (StreamId, StreamId) {
        let op = Op::Scan { tensor: "A".into(), level, dim: level, format: LevelFormat::Dense, index: index.into() };
        let o = g.add(op, &[r], format!("A_{index}"));
        (o[0], o[1])
    }

    /// `X(i,j) = A(i,j) - sum_j A(i,j)` with the row shared between the reduction and its
    /// broadcast, as fused softmax and layer norm lower it.
    fn row_minus_its_sum(rows: usize, cols: usize) -> (Graph, StreamId, NodeId) {
        let mut g = Graph::new("row");
        g.inputs.push(TensorBinding {
            tensor: "A".into(),
            shape: vec![rows, cols],
            levels: vec![LevelFormat::Dense; 2],
            mode_order: vec![0, 1],
        });
        let root = g.add(Op::Root, &[], "root")[0];
        let (ci, ri) = scan(&mut g, root, 0, "i");
        let (cj, rj) = scan(&mut g, ri, 1, "j");
        let vals = g.add(Op::Array { tensor: "A".into() }, &[rj], "A_vals")[0];
        let sum = g.add(Op::Reduce { op: ReduceKind::Sum }, &[vals], "sum")[0];
        let sig = g.add(Op::RepSig, &[cj], "")[0];
        let rep = g.add(Op::Repeat { index: "j".into() }, &[sum, sig], "rep")[0];
        let sub = g.add(Op::Alu { op: AluOp::Sub }, &[vals, rep], "")[0];
        let alu = NodeId(g.nodes.len() as u32 - 1);
        g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[ci], "w0");
        g.add(Op::LevelWrite { tensor: "X".into(), level: 1 }, &[cj], "w1");
        g.add(Op::ValWrite { tensor: "X".into() }, &[sub], "wv");
        g.outputs.push(OutputBinding { tensor: "X".into(), shape: vec![rows, cols], dims: vec![0, 1] });
        g.verify().unwrap();
        (g, vals, alu)
    }

    #[test]
    fn fiber_tokens_count_stops() {
        assert_eq!(fiber_tokens(&[4, 3], 1), 4);
        assert_eq!(fiber_tokens(&[4, 3], 0), 4 * 4 + 1);
        assert_eq!(fiber_tokens(&[4], 1), 0);
        assert_eq!(lag_unit(&[4], 1), 1);
        assert_eq!(fiber_tokens(&[u64::MAX, 3], 0), u64::MAX);
    }

    #[test]
    fn nesting_follows_scans_and_reductions() {
        let (g, vals, _) = row_minus_its_sum(4, 5);
        let nest = stream_nesting(&g);
        assert_eq!(nest[vals.0 as usize], vec![4, 5]);
        let sum = g.nodes.iter().position(|n| matches!(n.op, Op::Reduce { .. })).unwrap();
        assert_eq!(nest[g.nodes[sum].outs[0].unwrap().0 as usize], vec![4]);
    }

    #[test]
    fn a_shared_row_waits_for_its_reduction() {
        // The row's values reach the subtraction at once but its sum only after the row and
        // the scanner's look-ahead, and the repeated sum closes its row only with the next
        // row's sum: the channel must hold a row and the next, plus slack (the bound counts
        // both rows in full, where the first has mostly drained when the second arrives). The
        // repeat of the sum stalls too, and so does the repeat-signal generator feeding it:
        // the row's coordinates wait in front of that.
        for (rows, cols) in [(4, 5), (1, 1), (3, 100)] {
            let (g, vals, alu) = row_minus_its_sum(rows, cols);
            let needs = min_depths(&g);
            let two_rows = 2 * fiber_tokens(&[rows as u64, cols as u64], 1) + LOOKAHEAD_SLACK;
            let at_alu = needs.iter().find(|d| d.stream == vals && d.consumer == alu).expect("row channel sized");
            assert_eq!((at_alu.port, at_alu.depth), (0, two_rows));
            assert!(at_alu.reducer.is_some());
            let repsig = g.nodes.iter().position(|n| matches!(n.op, Op::RepSig)).unwrap();
            let sig = needs.iter().find(|d| d.consumer == NodeId(repsig as u32)).expect("repsig input sized");
            assert_eq!(sig.depth, fiber_tokens(&[rows as u64, cols as u64], 1) + LOOKAHEAD_SLACK);
            // And the sum's channel into the repeat gets the look-ahead slack (one level
            // shallower than the repeat signal beside it); nothing else needs more than 1.
            let sum = g.nodes.iter().position(|n| matches!(n.op, Op::Reduce { .. })).unwrap();
            let slack = needs.iter().find(|d| d.stream == g.nodes[sum].outs[0].unwrap()).expect("slack");
            assert_eq!((slack.depth, slack.reducer), (LOOKAHEAD_SLACK, None));
            assert_eq!(needs.len(), 3, "{needs:?}");
        }
    }

    #[test]
    fn a_plain_pipeline_needs_nothing() {
        let mut g = Graph::new("copy");
        g.inputs.push(TensorBinding {
            tensor: "A".into(),
            shape: vec![3, 3],
            levels: vec![LevelFormat::Dense; 2],
            mode_order: vec![0, 1],
        });
        let root = g.add(Op::Root, &[], "root")[0];
        let (ci, ri) = scan(&mut g, root, 0, "i");
        let (cj, rj) = scan(&mut g, ri, 1, "j");
        let vals = g.add(Op::Array { tensor: "A".into() }, &[rj], "")[0];
        let neg = g.add(Op::Alu { op: AluOp::Neg }, &[vals], "")[0];
        g.add(Op::LevelWrite { tensor: "X".into(), level: 0 }, &[ci], "w0");
        g.add(Op::LevelWrite { tensor: "X".into(), level: 1 }, &[cj], "w1");
        g.add(Op::ValWrite { tensor: "X".into() }, &[neg], "wv");
        assert_eq!(min_depths(&g), Vec::new());
    }
}
