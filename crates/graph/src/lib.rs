//! SAM (Sparse Abstract Machine) dataflow graphs.
//!
//! A [`Graph`] is a plain arena of [`Node`]s joined by typed [`Stream`]s. Nodes are SAM
//! primitives ([`Op`]); streams carry crd, ref, val or repeat-signal tokens. The graph knows
//! nothing about tensor index notation (that is the compiler's business) nor about time (that
//! is the simulator's): it is the contract between the two.
//!
//! Invariants checked by [`Graph::verify`]: every node's inputs have the kinds its primitive
//! expects, every stream has exactly one producer and at least one consumer, and a node's
//! outputs are consumed only by nodes added after it (the graph is a DAG in arena order).
//! Parallel regions (forks, lane bodies, gathers) are checked as structured IR: every lane has
//! the same shape, every fork is matched by gathers, and each gather's depth matches its lanes
//! (so the stop levels it restores are the original ones).

mod dot;
pub mod fifo;
mod lanes;
mod op;
mod share;
mod text;
mod verify;

pub use dot::NodeStyle;
pub use op::{AluOp, JoinKind, Op, ReduceKind, ScalarOp};
pub use verify::VerifyError;

use fuseflow_tensor::LevelFormat;

/// Index of a node in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct NodeId(pub u32);

/// Index of a stream in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct StreamId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StreamKind {
    /// Coordinates.
    Crd,
    /// References (positions into the next level or the value array).
    Ref,
    /// Values.
    Val,
    /// Repeat signals (`R`, `S`, `D`).
    RepSig,
}

impl StreamKind {
    /// Lower-case name used in dumps.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Crd => "crd",
            StreamKind::Ref => "ref",
            StreamKind::Val => "val",
            StreamKind::RepSig => "repsig",
        }
    }
}

/// A stream: one producer port, one or more consumer ports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stream {
    /// Token kind.
    pub kind: StreamKind,
    /// Human-readable name, e.g. `B_k.crd`.
    pub name: String,
    /// Producing node and output port.
    pub producer: (NodeId, u32),
    /// Consuming nodes and their input ports, in the order they were connected.
    pub consumers: Vec<(NodeId, u32)>,
}

/// A node: a primitive with its input and output streams. An output that nothing consumes is
/// `None` (the "void" stream of the tortilla format).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Node {
    /// The primitive and its parameters.
    pub op: Op,
    /// Input streams, in the primitive's port order.
    pub ins: Vec<StreamId>,
    /// Output streams, in the primitive's port order.
    pub outs: Vec<Option<StreamId>>,
    /// Free-text label (tensor and index, for humans).
    pub label: String,
}

/// How the simulator must bind an input tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorBinding {
    /// Tensor name as used by scanners, locators and arrays.
    pub tensor: String,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Level formats in storage order.
    pub levels: Vec<LevelFormat>,
    /// Logical dimension of each storage level.
    pub mode_order: Vec<usize>,
}

/// How the simulator must assemble an output tensor from its writers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputBinding {
    /// Tensor name as used by the writers.
    pub tensor: String,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Logical dimension written by each level writer, outermost first.
    pub dims: Vec<usize>,
}

/// A SAM dataflow graph.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    /// Nodes in creation (topological) order.
    pub nodes: Vec<Node>,
    /// Streams.
    pub streams: Vec<Stream>,
    /// Tensors the graph reads.
    pub inputs: Vec<TensorBinding>,
    /// Tensors the graph writes.
    pub outputs: Vec<OutputBinding>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// Adds a node reading `ins` and returns its output streams (one per output port).
    ///
    /// Output kinds follow from the primitive and the input kinds; [`Graph::verify`] checks
    /// the inputs.
    pub fn add(&mut self, op: Op, ins: &[StreamId], label: impl Into<String>) -> Vec<StreamId> {
        let id = NodeId(self.nodes.len() as u32);
        let label = label.into();
        let in_kinds: Vec<StreamKind> = ins.iter().map(|s| self.streams[s.0 as usize].kind).collect();
        for (port, s) in ins.iter().enumerate() {
            self.streams[s.0 as usize].consumers.push((id, port as u32));
        }
        let out_kinds = op.output_kinds(&in_kinds);
        let port_names = op.output_port_names(out_kinds.len());
        let mut outs = Vec::with_capacity(out_kinds.len());
        for (port, kind) in out_kinds.into_iter().enumerate() {
            let sid = StreamId(self.streams.len() as u32);
            let name =
                if label.is_empty() { port_names[port].clone() } else { format!("{label}.{}", port_names[port]) };
            self.streams.push(Stream { kind, name, producer: (id, port as u32), consumers: Vec::new() });
            outs.push(sid);
        }
        self.nodes.push(Node { op, ins: ins.to_vec(), outs: outs.iter().copied().map(Some).collect(), label });
        outs
    }

    /// The stream with this id.
    pub fn stream(&self, s: StreamId) -> &Stream {
        &self.streams[s.0 as usize]
    }

    /// The node with this id.
    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n.0 as usize]
    }

    /// Removes nodes whose outputs are never consumed (writers are kept), repeatedly, and marks
    /// unconsumed outputs of the remaining nodes as void. Ids are renumbered densely.
    pub fn prune(&mut self) {
        let n = self.nodes.len();
        let mut alive = vec![true; n];
        // Consumer counts that only count live consumers.
        let mut uses: Vec<usize> = vec![0; self.streams.len()];
        for node in &self.nodes {
            for s in &node.ins {
                uses[s.0 as usize] += 1;
            }
        }
        for i in (0..n).rev() {
            let node = &self.nodes[i];
            let sink = node.op.is_sink();
            let used = node.outs.iter().flatten().any(|s| uses[s.0 as usize] > 0);
            if !sink && !used {
                alive[i] = false;
                for s in &node.ins {
                    uses[s.0 as usize] -= 1;
                }
            }
        }
        // Renumber.
        let mut node_map = vec![u32::MAX; n];
        let mut stream_map = vec![u32::MAX; self.streams.len()];
        let mut nodes = Vec::new();
        let mut streams: Vec<Stream> = Vec::new();
        for i in 0..n {
            if !alive[i] {
                continue;
            }
            node_map[i] = nodes.len() as u32;
            let mut node = self.nodes[i].clone();
            for out in node.outs.iter_mut() {
                if let Some(s) = *out {
                    if uses[s.0 as usize] == 0 {
                        *out = None;
                    } else {
                        stream_map[s.0 as usize] = streams.len() as u32;
                        let mut st = self.streams[s.0 as usize].clone();
                        st.producer.0 = NodeId(node_map[i]);
                        st.consumers.clear();
                        streams.push(st);
                        *out = Some(StreamId(stream_map[s.0 as usize]));
                    }
                }
            }
            for (port, s) in node.ins.iter_mut().enumerate() {
                *s = StreamId(stream_map[s.0 as usize]);
                streams[s.0 as usize].consumers.push((NodeId(node_map[i]), port as u32));
            }
            nodes.push(node);
        }
        self.nodes = nodes;
        self.streams = streams;
    }

    /// Appends every node and stream of `other` (ids shifted), and its bindings (inputs
    /// already bound are not repeated). The two parts share nothing and run side by side.
    pub fn append(&mut self, other: &Graph) {
        let n0 = self.nodes.len() as u32;
        let s0 = self.streams.len() as u32;
        for st in &other.streams {
            let mut st = st.clone();
            st.producer.0 .0 += n0;
            for c in st.consumers.iter_mut() {
                c.0 .0 += n0;
            }
            self.streams.push(st);
        }
        for node in &other.nodes {
            let mut node = node.clone();
            for s in node.ins.iter_mut() {
                s.0 += s0;
            }
            for s in node.outs.iter_mut().flatten() {
                s.0 += s0;
            }
            self.nodes.push(node);
        }
        for b in &other.inputs {
            if !self.inputs.iter().any(|x| x.tensor == b.tensor) {
                self.inputs.push(b.clone());
            }
        }
        self.outputs.extend(other.outputs.iter().cloned());
    }

    /// Number of nodes per primitive kind, sorted by kind name.
    pub fn kind_counts(&self) -> Vec<(&'static str, usize)> {
        let mut map = std::collections::BTreeMap::new();
        for n in &self.nodes {
            *map.entry(n.op.kind_name()).or_insert(0usize) += 1;
        }
        map.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports are not limited to 256: fused graphs build joiners with hundreds of payloads.
    #[test]
    fn wide_nodes_keep_every_port() {
        let mut g = Graph::new("wide");
        let root = g.add(Op::Root, &[], "r")[0];
        let scan = g.add(
            Op::Scan {
                tensor: "A".into(),
                level: 0,
                dim: 0,
                format: fuseflow_tensor::LevelFormat::Dense,
                index: "i".into(),
            },
            &[root],
            "A_i",
        );
        let mut ins = vec![scan[0]];
        ins.extend(std::iter::repeat_n(scan[1], 300));
        let outs = g.add(Op::Join { kind: JoinKind::Union, payloads: vec![300], index: "i".into() }, &ins, "u");
        for (k, &o) in outs.iter().enumerate() {
            g.add(Op::LevelWrite { tensor: format!("X{k}"), level: 0 }, &[if k == 0 { o } else { outs[0] }], "w");
        }
        let ports: Vec<u32> = g.stream(scan[1]).consumers.iter().map(|c| c.1).collect();
        assert_eq!(ports, (1..=300).collect::<Vec<u32>>());
        assert_eq!(g.stream(outs[300]).producer.1, 300);
        g.prune();
        g.verify().unwrap();
    }
}
