//! Tables (Markdown, CSV) and plots (SVG) of an experiment, built from its records alone.
//!
//! The experiment's plan ([`super::configs`]) fixes which rows exist and their order, so the
//! output does not depend on the order records finished in; every number comes from a record.
//! A row whose records are missing, failed or unverified says `missing` and has no numbers.
//! Nothing here reads a clock: the same records give the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::paper::{Agreement, PaperData};
use super::plan::{self, Config, GPT3_DECODER_STATEMENTS, GPT3_LAYERS};
use super::{Experiment, Record, ReproduceError, Scale};

/// A rendered experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `table.md`.
    pub markdown: String,
    /// `table.csv`.
    pub csv: String,
    /// `plot.svg`.
    pub svg: String,
    /// Each row's label and verdict, for the command's summary.
    pub verdicts: Vec<(String, Agreement)>,
    /// Configurations of the plan with no usable record (missing, failed or unverified).
    pub missing: Vec<String>,
}

/// A table: columns, rows, and one verdict per row (its last column).
struct Table {
    columns: Vec<&'static str>,
    rows: Vec<(Vec<String>, Agreement)>,
    notes: Vec<String>,
}

/// A bar chart: one bar per series per category, with the paper's values as markers.
struct BarPlot {
    title: String,
    y: &'static str,
    categories: Vec<String>,
    series: Vec<(&'static str, Vec<Option<f64>>)>,
    paper: Vec<(&'static str, Vec<Option<f64>>)>,
    log: bool,
}

/// Renders `exp` at `scale` from `records`.
pub fn render(
    exp: Experiment,
    scale: Scale,
    records: &[Record],
    paper: &PaperData,
) -> Result<Rendered, ReproduceError> {
    let plan = plan::configs(exp, scale);
    let by_id: BTreeMap<&str, &Record> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let missing: Vec<String> =
        plan.iter().filter(|c| !by_id.get(c.id.as_str()).is_some_and(|r| r.ok())).map(|c| c.id.clone()).collect();
    let look = Lookup { by_id };
    let (table, plot) = match exp {
        Experiment::Fig12 => fig12(&plan, &look, paper, scale),
        Experiment::Fig14 => fig14(&plan, &look, paper),
        Experiment::Fig15 => fig15(&plan, &look, paper),
        Experiment::Fig16 => fig16(&plan, &look, paper),
        Experiment::Fig17 => fig17(&plan, &look, paper),
    };
    let mut table = table;
    for id in &missing {
        let why = match look.by_id.get(id.as_str()) {
            None => "no record".to_string(),
            Some(r) => r.error.clone().unwrap_or_else(|| "not verified".into()),
        };
        table.notes.push(format!("`{id}`: {why}"));
    }
    let svg =
        svg(&plot).map_err(|message| ReproduceError::Plot { path: format!("{}/plot.svg", exp.name()), message })?;
    Ok(Rendered {
        markdown: markdown(exp, scale, &table, paper),
        csv: csv(&table),
        svg,
        verdicts: table.rows.iter().map(|(cells, a)| (cells[..2].join(" "), *a)).collect(),
        missing,
    })
}

/// Records by configuration id; only verified ones count.
struct Lookup<'a> {
    by_id: BTreeMap<&'a str, &'a Record>,
}

impl Lookup<'_> {
    fn get(&self, id: &str) -> Option<&Record> {
        self.by_id.get(id).copied().filter(|r| r.ok())
    }
}

/// Cycles, FLOPs and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    /// Cycles.
    pub cycles: u64,
    /// Arithmetic operations.
    pub flops: u64,
    /// Off-chip bytes.
    pub bytes: u64,
}

impl Figures {
    fn of(r: &Record) -> Option<Figures> {
        Some(Figures { cycles: r.cycles?, flops: r.flops?, bytes: r.bytes? })
    }

    fn scaled(self, k: u64) -> Figures {
        Figures { cycles: self.cycles * k, flops: self.flops * k, bytes: self.bytes * k }
    }
}

impl std::ops::Add for Figures {
    type Output = Figures;
    fn add(self, o: Figures) -> Figures {
        Figures { cycles: self.cycles + o.cycles, flops: self.flops + o.flops, bytes: self.bytes + o.bytes }
    }
}

/// Whole-model GPT-3 Small totals (12 decoders) from the chain program's three runs
/// (benchmarks.md §2.4):
/// - unfused = 12 × (every kernel of one decoder: the groups of statements 0-13);
/// - partial = 12 × (c1 + c2 + c3);
/// - full = c1 + 12·c2 + 11·c3′ + c3 (the last decoder has no successor to fuse with).
///
/// Returns (unfused, partial, full), or which group is missing.
pub fn compose_gpt3(unfused: &Record, partial: &Record, full: &Record) -> Result<[Figures; 3], String> {
    let fig = |g: &super::GroupFigures| Figures { cycles: g.cycles, flops: g.flops, bytes: g.bytes };
    let one_decoder: Vec<Figures> =
        unfused.groups.iter().filter(|g| g.statements.iter().all(|&s| s < GPT3_DECODER_STATEMENTS)).map(fig).collect();
    if one_decoder.is_empty() {
        return Err(format!("{}: no group of the first decoder", unfused.id));
    }
    let group = |r: &Record, first: usize, last: usize| {
        r.groups
            .iter()
            .find(|g| g.statements == (first..=last).collect::<Vec<_>>())
            .map(fig)
            .ok_or_else(|| format!("{}: no group of statements {first}-{last}", r.id))
    };
    let unfused_total = one_decoder.into_iter().fold(Figures::default(), |a, b| a + b).scaled(GPT3_LAYERS);
    let (c1, c2, c3) = (group(partial, 0, 3)?, group(partial, 4, 7)?, group(partial, 8, 13)?);
    let c3_next = group(full, 8, 17)?;
    let partial_total = (c1 + c2 + c3).scaled(GPT3_LAYERS);
    let full_total = c1 + c2.scaled(GPT3_LAYERS) + c3_next.scaled(GPT3_LAYERS - 1) + c3;
    Ok([unfused_total, partial_total, full_total])
}

/// The paper's data set that ours stands for.
fn paper_dataset(model: &str, dataset: &str, scale: Scale) -> String {
    match (model, dataset) {
        ("gpt3", d) if scale == Scale::Small => match d {
            "B=2" => "B=16".into(),
            "B=4" => "B=32".into(),
            "B=8" => "B=64".into(),
            other => other.into(),
        },
        ("gcn" | "graphsage", "default" | "cora-synth") => "cora".into(),
        ("sae", "default") => "imagenet".into(),
        (_, d) => d.trim_end_matches("-synth").trim_start_matches("ogbl-").trim_start_matches("ogbn-").to_string(),
    }
}

fn num(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.2}×"))
}

fn fig12(plan: &[Config], look: &Lookup, paper: &PaperData, scale: Scale) -> (Table, BarPlot) {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for c in plan {
        let k = (c.model.clone(), c.dataset.clone(), c.hw.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut table = Table {
        columns: vec![
            "model",
            "data",
            "machine",
            "unfused cycles",
            "partial cycles",
            "full cycles",
            "partial ×",
            "full ×",
            "best",
            "paper partial ×",
            "paper full ×",
            "paper best",
            "agreement",
        ],
        rows: Vec::new(),
        notes: vec![
            "Speedup = unfused cycles / cycles; kernels run one after another (sums of groups).".into(),
            "GPT-3 totals are 12 decoders: unfused 12 × one decoder's kernels, partial 12 × (c1 + c2 + c3), full c1 + 12·c2 + 11·c3′ + c3, with c3′ simulated as one fused group of the chain program.".into(),
        ],
    };
    let mut plot = BarPlot {
        title: "fig12: speedup over unfused".into(),
        y: "speedup over unfused",
        categories: Vec::new(),
        series: vec![("partial", Vec::new()), ("full", Vec::new())],
        paper: vec![("paper partial", Vec::new()), ("paper full", Vec::new())],
        log: false,
    };
    for (model, dataset, hw) in keys {
        let id = |v: &str| format!("{model}/{dataset}/{v}/{hw}");
        let recs: [Option<&Record>; 3] = ["unfused", "partial", "full"].map(|v| look.get(&id(v)));
        // Each granularity's figures on its own, so that a row shows what finished (GPT-3's
        // totals need all three kernels' records).
        let each: [Option<Figures>; 3] = match (recs[0], recs[1], recs[2]) {
            (Some(u), Some(p), Some(f)) if model == "gpt3" => match compose_gpt3(u, p, f) {
                Ok(t) => t.map(Some),
                Err(e) => {
                    table.notes.push(e);
                    [None; 3]
                }
            },
            _ if model == "gpt3" => [None; 3],
            _ => recs.map(|r| r.and_then(Figures::of)),
        };
        let figures: Option<[Figures; 3]> = match each {
            [Some(u), Some(p), Some(f)] => Some([u, p, f]),
            _ => None,
        };
        let pds = paper_dataset(&model, &dataset, scale);
        let prow = paper.fig12_row(&model, &pds);
        let data = if pds == dataset { dataset.clone() } else { format!("{dataset} (paper: {pds})") };
        let cyc = |i: usize| each[i].map_or("missing".into(), |f| num(f.cycles));
        let speed = |i: usize| match (each[0], each[i]) {
            (Some(u), Some(x)) => Some(u.cycles as f64 / x.cycles.max(1) as f64),
            _ => None,
        };
        let best = figures.map(|f| {
            let names = ["unfused", "partial", "full"];
            let i = (0..3).min_by_key(|&i| (f[i].cycles, i)).unwrap_or(0);
            names[i]
        });
        let verdict = match (best, prow) {
            (None, _) => Agreement::Missing,
            (Some(_), None) => Agreement::NoPaperValue,
            (Some(b), Some(p)) => {
                let close = [(speed(1), p.partial), (speed(2), p.full)]
                    .iter()
                    .all(|(ours, theirs)| theirs.is_none_or(|t| ours.is_some_and(|o| paper.close(o, t))));
                match (b == p.best, close) {
                    (true, true) => Agreement::Agrees,
                    (true, false) => Agreement::SameTrend,
                    (false, _) => Agreement::Differs,
                }
            }
        };
        table.rows.push((
            vec![
                model.clone(),
                data,
                hw.clone(),
                cyc(0),
                cyc(1),
                cyc(2),
                ratio(speed(1)),
                ratio(speed(2)),
                best.unwrap_or("—").into(),
                ratio(prow.and_then(|p| p.partial)),
                ratio(prow.and_then(|p| p.full)),
                prow.map_or("—".into(), |p| p.best.clone()),
                verdict.label().into(),
            ],
            verdict,
        ));
        plot.categories.push(format!("{model} {dataset} {hw}"));
        plot.series[0].1.push(speed(1));
        plot.series[1].1.push(speed(2));
        plot.paper[0].1.push(prow.and_then(|p| p.partial));
        plot.paper[1].1.push(prow.and_then(|p| p.full));
    }
    (table, plot)
}

fn fig14(plan: &[Config], look: &Lookup, paper: &PaperData) -> (Table, BarPlot) {
    let mut table = Table {
        columns: vec![
            "data",
            "variant",
            "fusion",
            "FLOPs",
            "bytes",
            "FLOPs / unfused",
            "bytes / unfused",
            "paper (bounds read from its claims)",
            "agreement",
        ],
        rows: Vec::new(),
        notes: vec!["FLOPs: ALU, reducer and accumulator operations; bytes: off-chip bytes read and written.".into()],
    };
    let mut plot = BarPlot {
        title: "fig14: GCN FLOPs and bytes over unfused".into(),
        y: "ratio to unfused (log)",
        categories: Vec::new(),
        series: vec![("FLOPs", Vec::new()), ("bytes", Vec::new())],
        paper: Vec::new(),
        log: true,
    };
    for c in plan {
        let base = look.get(&format!("{}/{}/unfused/{}", c.model, c.dataset, c.hw)).and_then(Figures::of);
        let f = look.get(&c.id).and_then(Figures::of);
        let r = |a: u64, b: u64| a as f64 / b.max(1) as f64;
        let ratios = base.zip(f).map(|(b, f)| (r(f.flops, b.flops), r(f.bytes, b.bytes)));
        let claim = paper.fig14.iter().find(|x| x.variant == c.variant);
        let inside = |v: f64, b: [f64; 2]| v >= b[0] && v <= b[1];
        let verdict = match (ratios, claim) {
            (None, _) => Agreement::Missing,
            (Some(_), None) => Agreement::NoPaperValue,
            (Some((fl, by)), Some(cl)) if inside(fl, cl.flops) && inside(by, cl.bytes) => Agreement::Agrees,
            (Some(_), Some(_)) => Agreement::Differs,
        };
        let bounds = |b: [f64; 2]| {
            if b[1] >= 1e6 {
                format!("≥ {}", b[0])
            } else if b[0] <= 0.0 {
                format!("≤ {}", b[1])
            } else {
                format!("{}–{}", b[0], b[1])
            }
        };
        table.rows.push((
            vec![
                c.dataset.clone(),
                c.variant.clone(),
                c.fusion.clone(),
                f.map_or("missing".into(), |f| num(f.flops)),
                f.map_or("missing".into(), |f| num(f.bytes)),
                ratio(ratios.map(|x| x.0)),
                ratio(ratios.map(|x| x.1)),
                claim.map_or("—".into(), |cl| format!("FLOPs {}, bytes {}", bounds(cl.flops), bounds(cl.bytes))),
                verdict.label().into(),
            ],
            verdict,
        ));
        plot.categories.push(format!("{} {}", c.dataset, c.variant));
        plot.series[0].1.push(ratios.map(|x| x.0));
        plot.series[1].1.push(ratios.map(|x| x.1));
    }
    (table, plot)
}

fn fig15(plan: &[Config], look: &Lookup, paper: &PaperData) -> (Table, BarPlot) {
    let mut table = Table {
        columns: vec!["shape", "lanes", "total lanes", "cycles", "speedup", "speedup per lane", "agreement"],
        rows: Vec::new(),
        notes: vec![format!(
            "Near-linear (the paper's claim) is read as a speedup of at least {} × the lane count.",
            paper.fig15.min_efficiency
        )],
    };
    let mut plot = BarPlot {
        title: "fig15: parallel lanes, fused attention".into(),
        y: "speedup over one lane",
        categories: Vec::new(),
        series: vec![("speedup", Vec::new())],
        paper: vec![("linear", Vec::new())],
        log: false,
    };
    let base = plan.first().and_then(|c| look.get(&c.id)).and_then(|r| r.cycles);
    for c in plan {
        let lanes: u32 = c.par.iter().map(|p| p.1).product();
        let cycles = look.get(&c.id).and_then(|r| r.cycles);
        let speed = base.zip(cycles).map(|(b, x)| b as f64 / x.max(1) as f64);
        let eff = speed.map(|s| s / lanes as f64);
        let verdict = match eff {
            None => Agreement::Missing,
            Some(_) if lanes == 1 => Agreement::NoPaperValue,
            Some(e) if e >= paper.fig15.min_efficiency => Agreement::Agrees,
            Some(_) if speed.is_some_and(|s| s > 1.0) => Agreement::SameTrend,
            Some(_) => Agreement::Differs,
        };
        table.rows.push((
            vec![
                c.dataset.clone(),
                c.variant.clone(),
                lanes.to_string(),
                cycles.map_or("missing".into(), num),
                ratio(speed),
                eff.map_or("—".into(), |e| format!("{e:.2}")),
                verdict.label().into(),
            ],
            verdict,
        ));
        plot.categories.push(c.variant.clone());
        plot.series[0].1.push(speed);
        plot.paper[0].1.push(Some(lanes as f64));
    }
    (table, plot)
}

fn fig16(plan: &[Config], look: &Lookup, paper: &PaperData) -> (Table, BarPlot) {
    let mut table = Table {
        columns: vec!["mask block", "machine", "scalar cycles", "blocked cycles", "speedup", "agreement"],
        rows: Vec::new(),
        notes: vec![format!(
            "\"Orders of magnitude\" (the paper's claim) is read as a scalar/blocked ratio of at least {}.",
            paper.fig16.min_speedup
        )],
    };
    let mut plot = BarPlot {
        title: "fig16: blocked over scalar attention".into(),
        y: "scalar cycles / blocked cycles (log)",
        categories: Vec::new(),
        series: vec![("speedup", Vec::new())],
        paper: Vec::new(),
        log: true,
    };
    for c in plan.iter().filter(|c| c.variant == "scalar") {
        let scalar = look.get(&c.id).and_then(|r| r.cycles);
        let blocked = look.get(&format!("{}/{}/blocked/{}", c.model, c.dataset, c.hw)).and_then(|r| r.cycles);
        let speed = scalar.zip(blocked).map(|(s, b)| s as f64 / b.max(1) as f64);
        let verdict = match speed {
            None => Agreement::Missing,
            Some(s) if s >= paper.fig16.min_speedup => Agreement::Agrees,
            Some(s) if s > 1.0 => Agreement::SameTrend,
            Some(_) => Agreement::Differs,
        };
        table.rows.push((
            vec![
                c.dataset.clone(),
                c.hw.clone(),
                scalar.map_or("missing".into(), num),
                blocked.map_or("missing".into(), num),
                ratio(speed),
                verdict.label().into(),
            ],
            verdict,
        ));
        plot.categories.push(c.dataset.clone());
        plot.series[0].1.push(speed);
    }
    (table, plot)
}

fn fig17(plan: &[Config], look: &Lookup, paper: &PaperData) -> (Table, BarPlot) {
    let mut table = Table {
        columns: vec!["order", "cycles", "speedup over the worst", "agreement"],
        rows: Vec::new(),
        notes: vec![
            "Orders are named by permutation (outermost first); the paper's enumeration indices do not carry over (benchmarks.md §4.3).".into(),
            format!(
                "The last row compares the spread with the paper's ≈{}× (same trend: at least {}×).",
                paper.fig17.best_over_worst, paper.fig17.trend_at_least
            ),
        ],
    };
    let mut plot = BarPlot {
        title: "fig17: dataflow orders of (A·B)·C on karate".into(),
        y: "speedup over the worst order",
        categories: Vec::new(),
        series: vec![("speedup", Vec::new())],
        paper: Vec::new(),
        log: false,
    };
    let mut rows: Vec<(String, Option<u64>)> =
        plan.iter().map(|c| (c.variant.clone(), look.get(&c.id).and_then(|r| r.cycles))).collect();
    // Fastest first; missing orders last, in plan order.
    rows.sort_by_key(|(_, c)| c.map_or((1, 0), |x| (0, x)));
    let worst = rows.iter().filter_map(|r| r.1).max();
    let best = rows.iter().filter_map(|r| r.1).min();
    for (order, cycles) in &rows {
        let speed = worst.zip(*cycles).map(|(w, x)| w as f64 / x.max(1) as f64);
        let verdict = if cycles.is_some() { Agreement::NoPaperValue } else { Agreement::Missing };
        table.rows.push((
            vec![order.clone(), cycles.map_or("missing".into(), num), ratio(speed), verdict.label().into()],
            verdict,
        ));
        plot.categories.push(order.clone());
        plot.series[0].1.push(speed);
    }
    let spread = best.zip(worst).map(|(b, w)| w as f64 / b.max(1) as f64);
    let verdict = match spread {
        None => Agreement::Missing,
        Some(s) if paper.close(s, paper.fig17.best_over_worst) => Agreement::Agrees,
        Some(s) if s >= paper.fig17.trend_at_least => Agreement::SameTrend,
        Some(_) => Agreement::Differs,
    };
    table.rows.push((
        vec![
            "best over worst".into(),
            String::new(),
            format!("{} (paper ≈{}×)", ratio(spread), paper.fig17.best_over_worst),
            verdict.label().into(),
        ],
        verdict,
    ));
    (table, plot)
}

fn markdown(exp: Experiment, scale: Scale, t: &Table, paper: &PaperData) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}: {}\n", exp.name(), exp.title());
    let _ = writeln!(
        md,
        "Scale `{}`. Built from `{}/records.jsonl` only; the paper's values are vendored in `crates/explore/data/paper-results.toml`. A number agrees within {:.0} %.\n",
        scale.name(),
        exp.name(),
        paper.tolerance * 100.0
    );
    let _ = writeln!(md, "| {} |", t.columns.join(" | "));
    let align: Vec<&str> = t
        .columns
        .iter()
        .map(|c| {
            if c.contains("cycles") || c.contains('×') || c.contains("FLOPs") || c.contains("speedup") {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(md, "|{}|", align.join("|"));
    for (cells, _) in &t.rows {
        let _ = writeln!(md, "| {} |", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, a) in &t.rows {
        *counts.entry(a.label()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(md, "\nRows: {}.", summary.join(", "));
    if !t.notes.is_empty() {
        let _ = writeln!(md);
        for n in &t.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn csv(t: &Table) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", t.columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(","));
    for (cells, _) in &t.rows {
        // Numbers without thousands separators, ratios without the × sign.
        let plain: Vec<String> = cells.iter().map(|c| q(&c.replace([',', '×'], ""))).collect();
        let _ = writeln!(out, "{}", plain.join(","));
    }
    out
}

fn svg(plot: &BarPlot) -> Result<String, String> {
    use plotters::prelude::*;
    let mut text = String::new();
    {
        let height = 600;
        let root = SVGBackend::with_string(&mut text, (1000, height)).into_drawing_area();
        let e = |x: &dyn std::fmt::Display| x.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let n = plot.categories.len().max(1);
        let values: Vec<f64> = plot
            .series
            .iter()
            .chain(&plot.paper)
            .flat_map(|s| s.1.iter().flatten().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let hi = values.iter().copied().fold(1.0f64, f64::max) * 1.15;
        let lo = values.iter().copied().fold(1.0f64, f64::min) / 2.0;
        let xr = -0.5f64..(n as f64 - 0.5);
        let mut b = ChartBuilder::on(&root);
        b.margin(20).caption(&plot.title, ("sans-serif", 20)).x_label_area_size(160).y_label_area_size(70);
        let rotated = ("sans-serif", 12).into_font().transform(FontTransform::Rotate90).into_text_style(&root).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        // Category names are drawn below the axis, rotated, at each bar group's centre.
        let ticks: Vec<(i32, i32)> = if plot.log {
            let mut chart = b.build_cartesian_2d(xr, (lo..hi).log_scale()).map_err(|x| e(&x))?;
            chart.configure_mesh().x_labels(0).y_desc(plot.y).disable_x_mesh().draw().map_err(|x| e(&x))?;
            bars(&mut chart, plot, lo)?;
            (0..n).map(|i| chart.backend_coord(&(i as f64, lo))).collect()
        } else {
            let mut chart = b.build_cartesian_2d(xr, 0.0..hi).map_err(|x| e(&x))?;
            chart.configure_mesh().x_labels(0).y_desc(plot.y).disable_x_mesh().draw().map_err(|x| e(&x))?;
            bars(&mut chart, plot, 0.0)?;
            (0..n).map(|i| chart.backend_coord(&(i as f64, 0.0))).collect()
        };
        for (name, (x, y)) in plot.categories.iter().zip(ticks) {
            root.draw(&Text::new(name.clone(), (x, y + 8), rotated.clone())).map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(text)
}

/// The bars, the paper's markers and the legend, on either y axis.
fn bars<'a, DB: plotters::prelude::DrawingBackend + 'a, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    chart: &mut plotters::chart::ChartContext<
        'a,
        DB,
        plotters::coord::cartesian::Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    plot: &BarPlot,
    base: f64,
) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    const COLORS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
    let k = plot.series.len().max(1) as f64;
    let width = 0.8 / k;
    for (si, (name, vals)) in plot.series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let left = |i: usize| i as f64 - 0.4 + si as f64 * width;
        let rects: Vec<Rectangle<(f64, f64)>> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite() && *v > 0.0).map(|v| (i, v)))
            .map(|(i, v)| Rectangle::new([(left(i), base), (left(i) + width * 0.9, v)], color.filled()))
            .collect();
        chart
            .draw_series(rects)
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (pi, (name, vals)) in plot.paper.iter().enumerate() {
        let si = pi.min(plot.series.len().saturating_sub(1));
        let center = |i: usize| i as f64 - 0.4 + si as f64 * width + width * 0.45;
        let marks: Vec<Cross<(f64, f64), i32>> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite() && *v > 0.0).map(|v| (i, v)))
            .map(|(i, v)| Cross::new((center(i), v), 6, BLACK.stroke_width(2)))
            .collect();
        chart
            .draw_series(marks)
            .map_err(|x| e(&x))?
            .label(*name)
            .legend(|(x, y)| Cross::new((x + 5, y), 5, BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::records::tests::rec;
    use crate::reproduce::GroupFigures;

    fn group(first: usize, last: usize, cycles: u64) -> GroupFigures {
        GroupFigures {
            statements: (first..=last).collect(),
            label: format!("{first}-{last}"),
            cycles,
            flops: cycles,
            bytes: cycles,
        }
    }

    #[test]
    fn gpt3_totals_follow_the_paper_formula() {
        let mut u = rec("u", "unfused", 0);
        u.groups = vec![group(0, 0, 10), group(1, 13, 20), group(14, 14, 1000)];
        let mut p = rec("p", "partial", 0);
        p.groups = vec![group(0, 3, 3), group(4, 7, 5), group(8, 13, 7), group(14, 17, 3)];
        let mut f = rec("f", "full", 0);
        f.groups = vec![group(0, 3, 3), group(4, 7, 5), group(8, 17, 8)];
        let [un, pa, fu] = compose_gpt3(&u, &p, &f).unwrap();
        // The next decoder's statements (14-) are not part of one decoder's unfused kernels.
        assert_eq!(un.cycles, 12 * 30);
        assert_eq!(pa.cycles, 12 * (3 + 5 + 7));
        assert_eq!(fu.cycles, 3 + 12 * 5 + 11 * 8 + 7);
        f.groups.pop();
        assert!(compose_gpt3(&u, &p, &f).unwrap_err().contains("no group of statements 8-17"));
    }

    fn fig12_records(partial: u64, full: u64) -> Vec<Record> {
        let mut v = Vec::new();
        for c in plan::configs(Experiment::Fig12, Scale::Small).iter().filter(|c| c.model == "gcn") {
            let cycles = match c.variant.as_str() {
                "unfused" => 1000,
                "partial" => partial,
                _ => full,
            };
            v.push(Record {
                id: c.id.clone(),
                variant: c.variant.clone(),
                hw: c.hw.clone(),
                ..rec(&c.id, &c.variant, cycles)
            });
        }
        v
    }

    #[test]
    fn fig12_rows_say_whether_they_agree() {
        let paper = PaperData::load().unwrap();
        // The paper: GCN on Cora, partial 1.63×, full 0.29×.
        let r = render(Experiment::Fig12, Scale::Small, &fig12_records(613, 3448), &paper).unwrap();
        let gcn: Vec<_> = r.verdicts.iter().filter(|v| v.0.starts_with("gcn")).collect();
        assert_eq!(gcn.len(), 2);
        assert!(gcn.iter().all(|v| v.1 == Agreement::Agrees), "{gcn:?}");
        assert!(r.markdown.contains("| gcn | default (paper: cora) | ideal | 1,000 | 613 | 3,448 | 1.63× | 0.29× | partial | 1.63× | 0.29× | partial | agrees |"), "{}", r.markdown);
        assert!(
            r.csv.contains("gcn,default (paper: cora),ideal,1000,613,3448,1.63,0.29,partial,1.63,0.29,partial,agrees"),
            "{}",
            r.csv
        );
        // Same winner, other numbers.
        let r = render(Experiment::Fig12, Scale::Small, &fig12_records(900, 2000), &paper).unwrap();
        assert!(r.verdicts.iter().filter(|v| v.0.starts_with("gcn")).all(|v| v.1 == Agreement::SameTrend));
        // Another winner.
        let r = render(Experiment::Fig12, Scale::Small, &fig12_records(900, 500), &paper).unwrap();
        assert!(r.verdicts.iter().filter(|v| v.0.starts_with("gcn")).all(|v| v.1 == Agreement::Differs));
        // Every other model has no records: missing, and said so.
        assert!(r.verdicts.iter().filter(|v| !v.0.starts_with("gcn")).all(|v| v.1 == Agreement::Missing));
        assert!(r.markdown.contains("`sae/default/unfused/ideal`: no record"), "{}", r.markdown);
        assert!(r.svg.starts_with("<svg") && r.svg.contains("partial"));
    }

    #[test]
    fn rendering_is_a_function_of_the_records_not_their_order() {
        let paper = PaperData::load().unwrap();
        let recs = fig12_records(613, 3448);
        let mut rev = recs.clone();
        rev.reverse();
        let a = render(Experiment::Fig12, Scale::Small, &recs, &paper).unwrap();
        let b = render(Experiment::Fig12, Scale::Small, &rev, &paper).unwrap();
        assert_eq!(a, b);
        // Wall time is never rendered.
        let slow: Vec<Record> = recs.iter().map(|r| Record { wall_seconds: 99.0, ..r.clone() }).collect();
        assert_eq!(render(Experiment::Fig12, Scale::Small, &slow, &paper).unwrap(), a);
    }

    #[test]
    fn failed_and_unverified_records_are_missing_rows() {
        let paper = PaperData::load().unwrap();
        let mut recs = fig12_records(613, 3448);
        recs[0].verified = false;
        recs[0].error = Some("deadlock".into());
        let r = render(Experiment::Fig12, Scale::Small, &recs, &paper).unwrap();
        assert_eq!(r.verdicts[0].1, Agreement::Missing);
        assert!(r.missing.contains(&recs[0].id));
        assert!(r.markdown.contains(&format!("`{}`: deadlock", recs[0].id)), "{}", r.markdown);
        // A row whose full run failed still shows what finished.
        let mut recs = fig12_records(613, 3448);
        let full = recs.iter_mut().find(|r| r.id.ends_with("/full/ideal")).unwrap();
        full.verified = false;
        full.error = Some("the run passed the cycle limit".into());
        let r = render(Experiment::Fig12, Scale::Small, &recs, &paper).unwrap();
        let row = "| gcn | default (paper: cora) | ideal | 1,000 | 613 | missing | 1.63× | — | — | 1.63× | 0.29× | partial | missing |";
        assert!(r.markdown.contains(row), "{}", r.markdown);
    }

    #[test]
    fn paper_datasets_map_to_the_papers_names() {
        assert_eq!(paper_dataset("gcn", "default", Scale::Paper), "cora");
        assert_eq!(paper_dataset("graphsage", "ogbn-mag-synth", Scale::Paper), "mag");
        assert_eq!(paper_dataset("gcn", "ogbl-collab-synth", Scale::Paper), "collab");
        assert_eq!(paper_dataset("gcn", "cora-ml-synth", Scale::Paper), "cora-ml");
        assert_eq!(paper_dataset("sae", "default", Scale::Paper), "imagenet");
        assert_eq!(paper_dataset("gpt3", "B=16", Scale::Paper), "B=16");
        assert_eq!(paper_dataset("gpt3", "B=2", Scale::Small), "B=16");
        assert_eq!(paper_dataset("gcn", "default", Scale::Small), "cora");
    }
}
