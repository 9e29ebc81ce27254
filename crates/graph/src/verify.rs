//! The graph verifier, run after every pass that builds or rewrites a graph.

use crate::{Graph, NodeId, StreamId, StreamKind};

/// A structural error in a graph, naming the node or stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// A node has the wrong number of inputs.
    #[error("node {node} ({kind}): expected {expected} inputs, found {found}")]
    Arity {
        /// Node.
        node: NodeId,
        /// Primitive kind.
        kind: &'static str,
        /// Expected count.
        expected: usize,
        /// Actual count.
        found: usize,
    },
    /// A node input has the wrong stream kind.
    #[error("node {node} ({kind}) input {port}: stream {stream} carries {found}, expected {expected}")]
    Kind {
        /// Node.
        node: NodeId,
        /// Primitive kind.
        kind: &'static str,
        /// Input port.
        port: usize,
        /// Stream.
        stream: StreamId,
        /// Actual kind.
        found: &'static str,
        /// Expected kind.
        expected: &'static str,
    },
    /// A stream's producer record disagrees with the node that lists it as an output.
    #[error("stream {stream}: producer mismatch")]
    Producer {
        /// Stream.
        stream: StreamId,
    },
    /// A stream has no consumer.
    #[error("stream {stream} ({name}) has no consumer")]
    Unconsumed {
        /// Stream.
        stream: StreamId,
        /// Stream name.
        name: String,
    },
    /// A node reads a stream produced by itself or a later node.
    #[error("node {node} reads stream {stream} produced by a later node {producer}")]
    Order {
        /// Consumer.
        node: NodeId,
        /// Stream.
        stream: StreamId,
        /// Producer.
        producer: NodeId,
    },
    /// A stream id is out of range.
    #[error("node {node} refers to unknown stream {stream}")]
    Dangling {
        /// Node.
        node: NodeId,
        /// Stream.
        stream: StreamId,
    },
    /// A payload of the wrong kind (payloads are refs or values).
    #[error("node {node} ({kind}) input {port}: payload must be ref or val, found {found}")]
    Payload {
        /// Node.
        node: NodeId,
        /// Primitive kind.
        kind: &'static str,
        /// Input port.
        port: usize,
        /// Actual kind.
        found: &'static str,
    },
    /// A parallel region is malformed: lanes of different shapes, a fork without a gather, a
    /// lane stream that leaves its lane other than through a gather, or a gather whose depth
    /// is not the depth of the streams it reassembles (so it would not restore stop levels).
    #[error("parallel region {region}: {message}")]
    Lanes {
        /// Region number (of the forks and gathers).
        region: u32,
        /// What is wrong.
        message: String,
    },
}

impl Graph {
    /// Checks the structural invariants listed in the crate documentation.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let mut consumed = vec![0usize; self.streams.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let kind = node.op.kind_name();
            let expected = node.op.input_kinds();
            if expected.len() != node.ins.len() {
                return Err(VerifyError::Arity { node: id, kind, expected: expected.len(), found: node.ins.len() });
            }
            for (port, (&s, exp)) in node.ins.iter().zip(&expected).enumerate() {
                let Some(stream) = self.streams.get(s.0 as usize) else {
                    return Err(VerifyError::Dangling { node: id, stream: s });
                };
                consumed[s.0 as usize] += 1;
                if stream.producer.0 >= id {
                    return Err(VerifyError::Order { node: id, stream: s, producer: stream.producer.0 });
                }
                match exp {
                    Some(k) if *k != stream.kind => {
                        return Err(VerifyError::Kind {
                            node: id,
                            kind,
                            port,
                            stream: s,
                            found: stream.kind.name(),
                            expected: k.name(),
                        })
                    }
                    None if stream.kind == StreamKind::RepSig => {
                        return Err(VerifyError::Payload { node: id, kind, port, found: stream.kind.name() })
                    }
                    _ => {}
                }
            }
            for (port, out) in node.outs.iter().enumerate() {
                if let Some(s) = out {
                    let Some(stream) = self.streams.get(s.0 as usize) else {
                        return Err(VerifyError::Dangling { node: id, stream: *s });
                    };
                    if stream.producer != (id, port as u32) {
                        return Err(VerifyError::Producer { stream: *s });
                    }
                }
            }
        }
        for (i, s) in self.streams.iter().enumerate() {
            if consumed[i] == 0 {
                return Err(VerifyError::Unconsumed { stream: StreamId(i as u32), name: s.name.clone() });
            }
        }
        self.verify_lanes()
    }
}
