//! The readable text dump of a graph (one line per node), used by snapshot tests and `--dump`.

use std::fmt::Write;

use crate::Graph;

impl Graph {
    /// Renders the graph as text: `s3:crd, s4:ref = scan_compressed[B level=0 ...](s2)  ; label`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "graph {}", self.name);
        for b in &self.inputs {
            let lv: Vec<&str> = b.levels.iter().map(|l| l.name()).collect();
            let _ = writeln!(out, "  input {} {:?} ({}) order{:?}", b.tensor, b.shape, lv.join(","), b.mode_order);
        }
        for b in &self.outputs {
            let _ = writeln!(out, "  output {} {:?} dims{:?}", b.tensor, b.shape, b.dims);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let outs: Vec<String> = node
                .outs
                .iter()
                .map(|o| match o {
                    Some(s) => format!("{s}:{}", self.stream(*s).kind.name()),
                    None => "_".into(),
                })
                .collect();
            let ins: Vec<String> = node.ins.iter().map(|s| s.to_string()).collect();
            let lhs = if outs.is_empty() { String::new() } else { format!("{} = ", outs.join(", ")) };
            let _ = writeln!(out, "  n{i}: {lhs}{}({})  ; {}", node.op.describe(), ins.join(", "), node.label);
        }
        out
    }
}
