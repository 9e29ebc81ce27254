//! The verifier of parallel regions: forks, lane bodies and gathers (see [`Op::Fork`] and
//! [`Op::Gather`]).
//!
//! A region is checked as structured IR rather than trusted as a textual copy: the nodes fed,
//! directly or not, by a fork's output `l` form lane `l`'s body; bodies must be disjoint, of
//! the same shape (the same primitives, wired alike, reading the same streams from outside),
//! and may leave their lane only through a gather of the region, at that lane's port. Every
//! gather's `depth` must equal the nesting of the lane streams it reads, counted from the
//! parallelized level (the forks' streams, depth 0), so that it re-emits exactly the stops the
//! unparallelized stream had.

use std::collections::BTreeMap;

use crate::{Graph, Op, StreamId, VerifyError};

/// Where an input of a lane-body node comes from, with the lane number factored out.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// Output `l` of this fork (for lane `l`).
    Fork(u32),
    /// Output port of the node at this position of the same lane's body.
    Lane(usize, u32),
    /// A stream from outside the region, shared by every lane.
    Outside(StreamId),
}

/// The forks and gathers of one region.
#[derive(Default)]
struct Region {
    forks: Vec<usize>,
    gathers: Vec<usize>,
    lanes: Vec<u32>,
}

/// The depth of each output of a lane-body node, from the depths of its inputs (`None` for
/// inputs from outside the region, which lie above the parallelized level).
fn out_depths(op: &Op, ins: &[Option<i64>], outs: usize) -> Vec<Option<i64>> {
    let first_known = ins.iter().flatten().next().copied();
    let at = |p: usize| ins.get(p).copied().flatten();
    match op {
        Op::Root => vec![None; outs],
        Op::Scan { .. } | Op::Range { .. } => vec![at(0).map(|d| d + 1); outs],
        Op::Repeat { .. } => vec![at(1); outs],
        Op::RepSig | Op::Array { .. } | Op::Alu { .. } | Op::Locate { .. } | Op::Join { .. } | Op::Fork { .. } => {
            vec![first_known; outs]
        }
        Op::CrdDrop => vec![at(0), at(1)],
        // A nested gather's control stream lies above its lanes.
        Op::Gather { depth, .. } => vec![at(usize::from(*depth > 0)); outs],
        Op::Reduce { .. } => vec![at(0).map(|d| d - 1); outs],
        Op::Spacc { order, .. } => {
            let o = i64::from(*order);
            let mut v: Vec<Option<i64>> = (0..o).map(|j| at(0).map(|d| d + j)).collect();
            v.push(at(0).map(|d| d + o - 1));
            v
        }
        Op::LevelWrite { .. } | Op::ValWrite { .. } => Vec::new(),
    }
}

impl Graph {
    /// Checks every parallel region (see the module documentation).
    pub(crate) fn verify_lanes(&self) -> Result<(), VerifyError> {
        let mut regions: BTreeMap<u32, Region> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Op::Fork { lanes, region, .. } = &n.op {
                let r = regions.entry(*region).or_default();
                r.forks.push(i);
                r.lanes.push(*lanes);
            } else if let Op::Gather { lanes, region, .. } = &n.op {
                let r = regions.entry(*region).or_default();
                r.gathers.push(i);
                r.lanes.push(*lanes);
            }
        }
        for (&id, r) in &regions {
            self.verify_region(r).map_err(|message| VerifyError::Lanes { region: id, message })?;
        }
        Ok(())
    }

    fn verify_region(&self, r: &Region) -> Result<(), String> {
        let lanes = r.lanes[0] as usize;
        if lanes < 2 || r.lanes.iter().any(|&l| l as usize != lanes) {
            return Err(format!("lane counts {:?} differ or are below 2", r.lanes));
        }
        if r.forks.is_empty() {
            return Err("gathers without a fork".into());
        }
        if r.gathers.is_empty() {
            return Err("a fork without a gather".into());
        }
        let is_gather = |n: usize| r.gathers.contains(&n);
        // Lane of every node (in arena order, a topological order), and the lane and depth of
        // every stream inside the region.
        let mut node_lane: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut stream_lane: Vec<Option<usize>> = vec![None; self.streams.len()];
        let mut depth: Vec<Option<i64>> = vec![None; self.streams.len()];
        for &f in &r.forks {
            for (l, s) in self.nodes[f].outs.iter().enumerate() {
                if let Some(s) = s {
                    stream_lane[s.0 as usize] = Some(l);
                    depth[s.0 as usize] = Some(0);
                }
            }
        }
        let start = r.forks.iter().min().copied().unwrap_or(0);
        for (i, node) in self.nodes.iter().enumerate().skip(start) {
            if r.forks.contains(&i) {
                if let Some(l) = node.ins.iter().find_map(|s| stream_lane[s.0 as usize]) {
                    return Err(format!("fork n{i} reads lane {l} of its own region"));
                }
                continue;
            }
            if is_gather(i) {
                let ctrl = self.gather_ctrl(i);
                for (port, s) in node.ins.iter().enumerate() {
                    let lane = stream_lane[s.0 as usize];
                    if port < ctrl {
                        if lane.is_some() {
                            return Err(format!("gather n{i}: its control stream comes from a lane"));
                        }
                    } else if lane != Some(port - ctrl) {
                        return Err(format!(
                            "gather n{i} input {port} (stream {}) is not lane {}'s",
                            self.streams[s.0 as usize].name,
                            port - ctrl
                        ));
                    }
                }
                continue;
            }
            let mut lane = None;
            for s in &node.ins {
                if let Some(l) = stream_lane[s.0 as usize] {
                    if lane.is_some_and(|x| x != l) {
                        return Err(format!("node n{i} ({}) reads lanes {} and {l}", node.label, lane.unwrap_or(0)));
                    }
                    lane = Some(l);
                }
            }
            let Some(l) = lane else { continue };
            if node.op.is_sink() {
                return Err(format!("lane {l} reaches writer n{i} ({}) without a gather", node.label));
            }
            node_lane[i] = Some(l);
            let ins: Vec<Option<i64>> = node.ins.iter().map(|s| depth[s.0 as usize]).collect();
            let outs = out_depths(&node.op, &ins, node.outs.len());
            for (s, d) in node.outs.iter().zip(outs) {
                if let Some(s) = s {
                    if d.is_some_and(|d| d < 0) {
                        return Err(format!(
                            "stream {} of lane {l} rises above the parallelized level",
                            self.streams[s.0 as usize].name
                        ));
                    }
                    stream_lane[s.0 as usize] = Some(l);
                    depth[s.0 as usize] = d;
                }
            }
        }
        // Gathers restore the stops of streams of their own depth.
        for &gi in &r.gathers {
            let Op::Gather { depth: want, .. } = &self.nodes[gi].op else { continue };
            let ctrl = self.gather_ctrl(gi);
            for s in &self.nodes[gi].ins[ctrl..] {
                if let Some(d) = depth[s.0 as usize] {
                    if d != i64::from(*want) {
                        return Err(format!(
                            "gather n{gi} has depth {want} but stream {} lies {d} levels below the parallelized level",
                            self.streams[s.0 as usize].name
                        ));
                    }
                }
            }
        }
        // Every lane body has the same shape.
        let bodies: Vec<Vec<usize>> =
            (0..lanes).map(|l| (0..self.nodes.len()).filter(|&i| node_lane[i] == Some(l)).collect()).collect();
        let mut pos = vec![usize::MAX; self.nodes.len()];
        for body in &bodies {
            for (k, &i) in body.iter().enumerate() {
                pos[i] = k;
            }
        }
        let signature = |l: usize, i: usize| -> (Op, Vec<Source>) {
            let node = &self.nodes[i];
            let srcs = node
                .ins
                .iter()
                .map(|s| {
                    let (p, port) = self.streams[s.0 as usize].producer;
                    let p = p.0 as usize;
                    if r.forks.contains(&p) && port as usize == l {
                        Source::Fork(p as u32)
                    } else if node_lane[p] == Some(l) {
                        Source::Lane(pos[p], port)
                    } else {
                        Source::Outside(*s)
                    }
                })
                .collect();
            (node.op.renumbered(&mut |_| 0), srcs)
        };
        for l in 1..lanes {
            if bodies[l].len() != bodies[0].len() {
                return Err(format!("lane {l} has {} nodes, lane 0 has {}", bodies[l].len(), bodies[0].len()));
            }
            for (&a, &b) in bodies[0].iter().zip(&bodies[l]) {
                if signature(0, a) != signature(l, b) {
                    return Err(format!("lane {l}'s node n{b} differs from lane 0's n{a}"));
                }
            }
        }
        // Lane streams leave their lane only through this region's gathers.
        for (l, body) in bodies.iter().enumerate() {
            for &i in body {
                for s in self.nodes[i].outs.iter().flatten() {
                    for &(c, port) in &self.streams[s.0 as usize].consumers {
                        let c = c.0 as usize;
                        let ok = node_lane[c] == Some(l) || (is_gather(c) && port as usize == self.gather_ctrl(c) + l);
                        if !ok {
                            return Err(format!(
                                "stream {} leaves lane {l} without a gather (read by n{c})",
                                self.streams[s.0 as usize].name
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Number of control inputs of a gather (1 below the parallelized level, else 0).
    fn gather_ctrl(&self, n: usize) -> usize {
        if let Op::Gather { depth, .. } = &self.nodes[n].op {
            usize::from(*depth > 0)
        } else {
            0
        }
    }
}
