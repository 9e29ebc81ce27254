//! Graphviz DOT export.

use std::fmt::Write;

use crate::{Graph, StreamKind};

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// How [`Graph::to_dot_styled`] draws one node, beyond its primitive and label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStyle {
    /// Extra lines of the node's label (e.g. utilisation and tokens).
    pub lines: Vec<String>,
    /// Fill colour: any Graphviz colour, e.g. `#ff8080` or an HSV triple `0.000 0.500 1.000`.
    pub fill: Option<String>,
    /// Tooltip (shown by SVG viewers).
    pub tooltip: Option<String>,
}

impl Graph {
    /// Renders the graph in Graphviz DOT. `annotate` may add a line to each node's label
    /// (e.g. utilisation); pass `|_| None` for none.
    pub fn to_dot(&self, annotate: impl Fn(usize) -> Option<String>) -> String {
        self.to_dot_styled(None, |i| NodeStyle { lines: annotate(i).into_iter().collect(), ..NodeStyle::default() })
    }

    /// Renders the graph in Graphviz DOT with a title (drawn above the graph) and, per node,
    /// extra label lines, a fill colour and a tooltip chosen by `style` (called with the node
    /// index). The graph itself knows nothing of what the annotations mean.
    pub fn to_dot_styled(&self, title: Option<&str>, style: impl Fn(usize) -> NodeStyle) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", escape(&self.name));
        if let Some(t) = title {
            let _ = writeln!(out, "  label=\"{}\";\n  labelloc=t;", escape(t));
        }
        let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\", fontsize=10];");
        for (i, node) in self.nodes.iter().enumerate() {
            let st = style(i);
            let mut lines = vec![format!("n{i}: {}", node.op.describe())];
            if !node.label.is_empty() {
                lines.push(node.label.clone());
            }
            lines.extend(st.lines);
            let label: Vec<String> = lines.iter().map(|l| escape(l)).collect();
            let mut attrs = format!("label=\"{}\"", label.join("\\n"));
            if let Some(fill) = &st.fill {
                let _ = write!(attrs, ", style=filled, fillcolor=\"{}\"", escape(fill));
            }
            if let Some(tip) = &st.tooltip {
                let _ = write!(attrs, ", tooltip=\"{}\"", escape(tip));
            }
            let _ = writeln!(out, "  n{i} [{attrs}];");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    fn tiny() -> Graph {
        let mut g = Graph::new("tiny \"g\"");
        g.add(Op::Root, &[], "root");
        g
    }

    #[test]
    fn plain_dot_has_no_styling() {
        let d = tiny().to_dot(|_| None);
        assert!(d.starts_with("digraph \"tiny \\\"g\\\"\" {\n"), "{d}");
        assert!(d.contains("n0 [label=\"n0: root\\nroot\"];"), "{d}");
        assert!(!d.contains("fillcolor") && !d.contains("labelloc"), "{d}");
        let a = tiny().to_dot(|i| Some(format!("extra {i}")));
        assert!(a.contains("n0 [label=\"n0: root\\nroot\\nextra 0\"];"), "{a}");
    }

    #[test]
    fn styled_dot_has_title_fill_and_tooltip() {
        let d = tiny().to_dot_styled(Some("group 0: 10 cycles"), |_| NodeStyle {
            lines: vec!["busy 50%".into(), "a \"quote\"".into()],
            fill: Some("0.000 0.500 1.000".into()),
            tooltip: Some("n0".into()),
        });
        assert!(d.contains("  label=\"group 0: 10 cycles\";\n  labelloc=t;\n"), "{d}");
        assert!(
            d.contains(
                "n0 [label=\"n0: root\\nroot\\nbusy 50%\\na \\\"quote\\\"\", style=filled, \
                 fillcolor=\"0.000 0.500 1.000\", tooltip=\"n0\"];"
            ),
            "{d}"
        );
    }
}
