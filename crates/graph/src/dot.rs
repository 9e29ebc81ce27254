//! Graphviz DOT export.

use std::fmt::Write;

use crate::{Graph, StreamKind};

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Graph {
    /// Renders the graph in Graphviz DOT. `annotate` may add a line to each node's label
    /// (e.g. utilisation); pass `|_| None` for none.
    pub fn to_dot(&self, annotate: impl Fn(usize) -> Option<String>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", escape(&self.name));
        let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\", fontsize=10];");
        for (i, node) in self.nodes.iter().enumerate() {
            let mut label = format!("n{i}: {}", node.op.describe());
            if !node.label.is_empty() {
                label.push_str(&format!("\\n{}", node.label));
            }
            if let Some(extra) = annotate(i) {
                label.push_str(&format!("\\n{extra}"));
            }
            let _ = writeln!(out, "  n{i} [label=\"{}\"];", escape(&label).replace("\\\\n", "\\n"));
        }
        for (i, s) in self.streams.iter().enumerate() {
            let color = match s.kind {
                StreamKind::Crd => "green4",
                StreamKind::Ref => "blue",
                StreamKind::Val => "red",
                StreamKind::RepSig => "orange",
            };
            for (c, _) in &s.consumers {
                let _ = writeln!(
                    out,
                    "  n{} -> n{} [label=\"s{i} {}\", color={color}, fontsize=8];",
                    s.producer.0 .0,
                    c.0,
                    s.kind.name()
                );
            }
        }
        out.push_str("}\n");
        out
    }
}
