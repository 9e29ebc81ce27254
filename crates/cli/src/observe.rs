//! Observability exports: per-node statistics (JSON), Chrome/Perfetto traces, and DOT graphs
//! annotated with utilisation. Each is a pure function from simulated groups to text, so the
//! same inputs give byte-identical files; `main.rs` writes them. Schemas: `docs/observability.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use fuseflow_graph::{Graph, NodeStyle};
use fuseflow_sim::{NodeStats, Trace};
use serde::Serialize;

use crate::RunReport;

/// Version tag of the statistics file.
pub const STATS_SCHEMA: &str = "fuseflow-stats/1";

/// Default cap on the spans of a trace.
pub const DEFAULT_TRACE_LIMIT: usize = 1_000_000;

/// One simulated graph (a fusion group), as the exports see it.
pub struct Observed<'a> {
    /// The statements fused in the graph, numbered as written (empty for an imported graph).
    pub statements: Vec<usize>,
    /// The same as `fuseflow run` shows them (`0-3`, or `2.1` for step 1 of a built-in).
    pub label: String,
    /// Tensors the graph writes.
    pub outputs: Vec<String>,
    /// The graph.
    pub graph: &'a Graph,
    /// Simulated cycles.
    pub cycles: u64,
    /// Per-node counters, indexed like the graph's nodes.
    pub nodes: &'a [NodeStats],
    /// Activation spans, if recorded.
    pub trace: Option<&'a Trace>,
}

impl Observed<'_> {
    /// `group 0: X (statement 0)`, `group 1: Y (statements 1-4)`.
    fn title(&self, group: usize) -> String {
        let what = if self.label.is_empty() {
            format!("graph {}", self.graph.name)
        } else if self.label.contains(['-', ',']) {
            format!("statements {}", self.label)
        } else {
            format!("statement {}", self.label)
        };
        format!("group {group}: {} ({what})", self.outputs.join(","))
    }
}

/// The groups of a run, in execution order.
pub fn groups(report: &RunReport) -> Vec<Observed<'_>> {
    report
        .groups
        .iter()
        .map(|g| Observed {
            statements: g.statements.clone(),
            label: g.label.clone(),
            outputs: g.outputs.clone(),
            graph: &g.graph,
            cycles: g.cycles,
            nodes: &g.nodes,
            trace: g.trace.as_ref(),
        })
        .collect()
}

/// Busy cycles over the group's cycles (0 for an empty run).
fn utilisation(s: &NodeStats, cycles: u64) -> f64 {
    if cycles == 0 {
        0.0
    } else {
        (s.busy as f64 / cycles as f64).min(1.0)
    }
}

#[derive(Serialize)]
struct NodeRow<'a> {
    id: usize,
    name: &'a str,
    kind: &'a str,
    op: String,
    tokens_in: u64,
    tokens_out: u64,
    fires: u64,
    busy_cycles: u64,
    stall_in_cycles: u64,
    stall_out_cycles: u64,
    finish_cycle: u64,
    utilisation: f64,
    ops: u64,
    bytes_read: u64,
    bytes_written: u64,
    mem_requests: u64,
    mem_bytes: u64,
}

#[derive(Serialize)]
struct GroupStats<'a> {
    group: usize,
    title: String,
    statements: &'a [usize],
    outputs: &'a [String],
    graph: &'a str,
    start_cycle: u64,
    cycles: u64,
    nodes: Vec<NodeRow<'a>>,
}

#[derive(Serialize)]
struct StatsFile<'a, H: Serialize> {
    schema: &'static str,
    program: &'a str,
    hardware: &'a H,
    cycles: u64,
    groups: Vec<GroupStats<'a>>,
}

/// The statistics file: every node of every group with its counters (pretty JSON).
pub fn stats_json(program: &str, hardware: &impl Serialize, groups: &[Observed]) -> String {
    let mut start = 0;
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let nodes = g
            .nodes
            .iter()
            .enumerate()
            .map(|(id, s)| NodeRow {
                id,
                name: &s.name,
                kind: &s.kind,
                op: g.graph.nodes.get(id).map(|n| n.op.describe()).unwrap_or_default(),
                tokens_in: s.tokens_in,
                tokens_out: s.tokens_out,
                fires: s.fires,
                busy_cycles: s.busy,
                stall_in_cycles: s.stall_in,
                stall_out_cycles: s.stall_out,
                finish_cycle: s.finish,
                utilisation: utilisation(s, g.cycles),
                ops: s.ops,
                bytes_read: s.bytes_read,
                bytes_written: s.bytes_written,
                mem_requests: s.mem_requests,
                mem_bytes: s.mem_bytes,
            })
            .collect();
        out.push(GroupStats {
            group: gi,
            title: g.title(gi),
            statements: &g.statements,
            outputs: &g.outputs,
            graph: &g.graph.name,
            start_cycle: start,
            cycles: g.cycles,
            nodes,
        });
        start += g.cycles;
    }
    let file = StatsFile { schema: STATS_SCHEMA, program, hardware, cycles: start, groups: out };
    let mut text = serde_json::to_string_pretty(&file).expect("statistics serialise");
    text.push('\n');
    text
}

/// What a trace file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSummary {
    /// Spans written ("X" events).
    pub spans: usize,
    /// Spans not recorded because the limit was reached.
    pub dropped: u64,
    /// The limit.
    pub limit: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

impl TraceSummary {
    /// Whether the limit cut the trace short.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A Chrome/Perfetto trace (Trace Event Format, JSON object form) of the groups' recorded
/// activation spans: one process per group, one thread (track) per node, one complete ("X")
/// event per span with `ts`/`dur` in cycles. Groups run one after another, so a group's spans
/// are offset by the cycles of the groups before it. `limit` is the cap the spans were
/// recorded under; a truncated trace says so in `otherData`.
pub fn chrome_trace(program: &str, hardware: &str, groups: &[Observed], limit: usize) -> (String, TraceSummary) {
    let mut out = Vec::new();
    let summary = write_chrome_trace(&mut out, program, hardware, groups, limit).expect("writing to memory");
    (String::from_utf8(out).expect("the trace is UTF-8"), summary)
}

/// [`chrome_trace`], streamed to `w` (a trace can hold millions of spans); the summary's
/// `bytes` counts what was written.
pub fn write_chrome_trace(
    w: &mut impl std::io::Write,
    program: &str,
    hardware: &str,
    groups: &[Observed],
    limit: usize,
) -> std::io::Result<TraceSummary> {
    let mut w = Counting { inner: w, bytes: 0 };
    let mut summary = TraceSummary { spans: 0, dropped: 0, limit, bytes: 0 };
    let mut offset = 0;
    let mut group_meta = Vec::new();
    for (pid, g) in groups.iter().enumerate() {
        if let Some(t) = g.trace {
            summary.spans += t.spans.len();
            summary.dropped += t.dropped;
        }
        group_meta.push(format!(
            "{{\"pid\":{pid},\"title\":{},\"start_cycle\":{offset},\"cycles\":{}}}",
            json_str(&g.title(pid)),
            g.cycles
        ));
        offset += g.cycles;
    }
    write!(
        w,
        "{{\"displayTimeUnit\":\"ns\",\n\"otherData\":{{\"generator\":\"fuseflow\",\"program\":{},\"hardware\":{},\
         \"time_unit\":\"cycle\",\"cycles\":{offset},\"span_limit\":{limit},\"spans\":{},\"dropped_spans\":{},\
         \"truncated\":{},\"groups\":[{}]}},\n\"traceEvents\":[",
        json_str(program),
        json_str(hardware),
        summary.spans,
        summary.dropped,
        summary.truncated(),
        group_meta.join(",")
    )?;
    let mut sep = "\n";
    let mut offset = 0;
    for (pid, g) in groups.iter().enumerate() {
        write!(
            w,
            "{sep}{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"args\":{{\"name\":{}}}}},\n\
             {{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"args\":{{\"sort_index\":{pid}}}}}",
            json_str(&g.title(pid))
        )?;
        sep = ",\n";
        for (tid, s) in g.nodes.iter().enumerate() {
            let name =
                if s.name.is_empty() { format!("n{tid} {}", s.kind) } else { format!("n{tid} {} {}", s.kind, s.name) };
            write!(
                w,
                ",\n{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":{}}}}},\n\
                 {{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"sort_index\":{tid}}}}}",
                json_str(&name)
            )?;
        }
        if let Some(t) = g.trace {
            let kinds: Vec<String> = g.nodes.iter().map(|n| json_str(&n.kind)).collect();
            let mut order: Vec<usize> = (0..t.spans.len()).collect();
            order.sort_by_key(|&i| (t.spans[i].start, t.spans[i].node, t.spans[i].end));
            for i in order {
                let s = &t.spans[i];
                let kind = kinds.get(s.node as usize).map_or("\"node\"", |k| k.as_str());
                let dur = s.end - s.start;
                write!(
                    w,
                    ",\n{{\"name\":{kind},\"cat\":{kind},\"ph\":\"X\",\"pid\":{pid},\"tid\":{},\"ts\":{},\"dur\":{dur},\
                     \"args\":{{\"fires\":{},\"busy\":{},\"stalled\":{}}}}}",
                    s.node,
                    offset + s.start,
                    s.fires,
                    s.busy,
                    dur.saturating_sub(s.busy)
                )?;
            }
        }
        offset += g.cycles;
    }
    w.write_all(b"\n]}\n")?;
    w.flush()?;
    summary.bytes = w.bytes;
    Ok(summary)
}

/// A writer that counts the bytes it passes on.
struct Counting<'a, W: std::io::Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The group's graph in DOT, each node annotated with its utilisation (busy cycles over the
/// group's cycles), tokens in and out and stall cycles, and filled from white (idle) to red
/// (busy every cycle).
pub fn annotated_dot(g: &Observed, group: usize) -> String {
    let title = format!("{} · {} cycles", g.title(group), g.cycles);
    g.graph.to_dot_styled(Some(&title), |i| {
        let Some(s) = g.nodes.get(i) else { return NodeStyle::default() };
        let u = utilisation(s, g.cycles);
        NodeStyle {
            lines: vec![
                format!("busy {:.1}% ({} of {} cycles)", 100.0 * u, s.busy, g.cycles),
                format!("tokens in {} out {}", s.tokens_in, s.tokens_out),
                format!("stall in {} out {}", s.stall_in, s.stall_out),
            ],
            fill: Some(format!("0.000 {u:.3} 1.000")),
            tooltip: Some(format!(
                "fires {}, finish cycle {}, ops {}, bytes r/w {}/{}, memory requests {} ({} bytes)",
                s.fires, s.finish, s.ops, s.bytes_read, s.bytes_written, s.mem_requests, s.mem_bytes
            )),
        }
    })
}

/// Where the annotated DOT of each of `groups` groups goes: `path` itself for one group,
/// otherwise `STEM.gN.dot` next to it.
pub fn dot_paths(path: &Path, groups: usize) -> Vec<PathBuf> {
    if groups == 1 {
        return vec![path.to_path_buf()];
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "graph".into());
    (0..groups).map(|g| path.with_file_name(format!("{stem}.g{g}.dot"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_paths_number_groups() {
        assert_eq!(dot_paths(Path::new("out/x.dot"), 1), vec![PathBuf::from("out/x.dot")]);
        assert_eq!(
            dot_paths(Path::new("out/x.dot"), 2),
            vec![PathBuf::from("out/x.g0.dot"), PathBuf::from("out/x.g1.dot")]
        );
        assert_eq!(dot_paths(Path::new("x"), 2)[1], PathBuf::from("x.g1.dot"));
    }
}
