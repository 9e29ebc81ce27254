//! What a sweep gives the user: `results.csv` (one row per point), `report.md` and
//! `report.html` (the best configuration, its speedup over unfused, the Pareto fronts and the
//! estimate's accuracy; built once as blocks and rendered twice, see [`crate::html`]) and the
//! Pareto plots. Every file is a function of the records alone, sorted by id, with no
//! wall-clock times, so a merged sharded sweep writes the same bytes as one process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::stats::{validate, validate_slices, Validation};
use crate::store::{write_atomic, PointRecord, Status};
use crate::ExploreError;

/// `results.csv`: one row per point.
pub fn csv(records: &[PointRecord]) -> String {
    let mut out = String::from(
        "id,fusion,order,machine,status,cycles,flops,offchip_bytes,est_cycles,est_flops,est_bytes,groups,error\n",
    );
    let num = |x: Option<u64>| x.map_or(String::new(), |v| v.to_string());
    let est = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.0}"));
    for r in records {
        let status = match r.status {
            Status::Verified => "verified",
            Status::Unchecked => "unchecked",
            Status::Failed => "failed",
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{status},{},{},{},{},{},{},{},{}",
            r.id,
            quote(&r.fusion),
            quote(&r.order),
            quote(&r.machine),
            num(r.cycles),
            num(r.flops),
            num(r.offchip_bytes),
            est(r.estimate.map(|e| e.cycles)),
            est(r.estimate.map(|e| e.flops)),
            est(r.estimate.map(|e| e.bytes)),
            r.groups.len(),
            quote(r.error.as_deref().unwrap_or(""))
        );
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a newline.
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Points on the Pareto front of two costs (both minimised), sorted by the first.
pub fn pareto(
    records: &[PointRecord],
    x: impl Fn(&PointRecord) -> Option<u64>,
    y: impl Fn(&PointRecord) -> Option<u64>,
) -> Vec<&PointRecord> {
    let mut pts: Vec<(u64, u64, &PointRecord)> =
        records.iter().filter(|r| r.status != Status::Failed).filter_map(|r| Some((x(r)?, y(r)?, r))).collect();
    pts.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.id.cmp(&b.2.id)));
    let mut front = Vec::new();
    let mut best_y = u64::MAX;
    for (_, y, r) in pts {
        if y < best_y {
            best_y = y;
            front.push(r);
        }
    }
    front
}

/// A run of text in a report, rendered by [`markdown`] and [`crate::html`] alike.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Span {
    /// Plain text.
    Text(String),
    /// A configuration, a file or a program name (Markdown backticks, HTML `<code>`).
    Code(String),
    /// A figure the reader should see first (Markdown `**`, HTML `<strong>`).
    Strong(String),
}

/// A line of text: spans one after another.
pub(crate) type Line = Vec<Span>;

/// One block of a report. The report is built once as blocks and rendered to Markdown and
/// to HTML, so that the two files can never say different things.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A heading of level 1 to 3.
    Heading(u8, Line),
    /// A paragraph.
    Para(Line),
    /// A bulleted list, one line per item.
    List(Vec<Line>),
    /// A table: column titles, whether each column holds numbers (right-aligned), rows of
    /// cells (an empty line is an empty cell).
    Table { head: Vec<String>, numeric: Vec<bool>, rows: Vec<Vec<Line>> },
    /// A Pareto plot: Markdown names its files, HTML embeds its SVG.
    Plot(PlotKind),
}

/// The report's plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// Simulated cycles against off-chip bytes.
    CyclesBytes,
    /// FLOPs against off-chip bytes (the paper's operational-intensity view).
    FlopsBytes,
}

impl PlotKind {
    /// Every plot, in report order.
    pub const ALL: [PlotKind; 2] = [PlotKind::CyclesBytes, PlotKind::FlopsBytes];

    /// The file stem (`NAME.svg`, `NAME.png`), also the HTML figure's id.
    pub fn file(self) -> &'static str {
        match self {
            PlotKind::CyclesBytes => "pareto-cycles-bytes",
            PlotKind::FlopsBytes => "pareto-flops-bytes",
        }
    }

    /// The plot's title.
    pub fn title(self) -> &'static str {
        match self {
            PlotKind::CyclesBytes => "Cycles vs off-chip bytes",
            PlotKind::FlopsBytes => "FLOPs vs off-chip bytes",
        }
    }

    /// What the section heading calls the plot.
    fn heading(self) -> &'static str {
        match self {
            PlotKind::CyclesBytes => "cycles vs off-chip bytes",
            PlotKind::FlopsBytes => "FLOPs vs off-chip bytes",
        }
    }

    /// The y axis' name.
    pub fn y_name(self) -> &'static str {
        match self {
            PlotKind::CyclesBytes => "cycles",
            PlotKind::FlopsBytes => "FLOPs",
        }
    }

    /// The y value of a point.
    pub fn y(self, r: &PointRecord) -> Option<u64> {
        match self {
            PlotKind::CyclesBytes => r.cycles,
            PlotKind::FlopsBytes => r.flops,
        }
    }

    /// What the plot draws.
    pub fn series(self, records: &[PointRecord]) -> Series {
        let xy = |r: &PointRecord| Some((r.offchip_bytes? as f64, self.y(r)? as f64));
        let points = records.iter().filter(|r| r.status != Status::Failed).filter_map(xy).collect();
        let front = pareto(records, |r| r.offchip_bytes, |r| self.y(r)).into_iter().filter_map(xy).collect();
        Series { points, front }
    }
}

/// The (off-chip bytes, y) pairs a plot draws, in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Every point that did not fail (grey).
    pub points: Vec<(f64, f64)>,
    /// The Pareto front (red).
    pub front: Vec<(f64, f64)>,
}

/// Plain text.
fn text(s: impl Into<String>) -> Span {
    Span::Text(s.into())
}

/// A configuration or name, set as code.
fn code(s: impl Into<String>) -> Span {
    Span::Code(s.into())
}

/// A figure in bold.
fn strong(s: impl Into<String>) -> Span {
    Span::Strong(s.into())
}

/// A table block from column titles, their alignment and rows.
fn table(head: &[&str], numeric: &[bool], rows: Vec<Vec<Line>>) -> Block {
    Block::Table { head: head.iter().map(|h| h.to_string()).collect(), numeric: numeric.to_vec(), rows }
}

/// The report as blocks: the title, the best configuration per machine and order choice with
/// its speedup over unfused, the Pareto fronts, the estimate's accuracy and the failed points.
pub(crate) fn document(program: &str, records: &[PointRecord], space_points: Option<usize>) -> (Line, Vec<Block>) {
    let title = vec![text("Design-space exploration of "), code(program)];
    let mut doc = vec![Block::Heading(1, title.clone())];
    let ok: Vec<&PointRecord> = records.iter().filter(|r| r.status != Status::Failed).collect();
    let failed = records.len() - ok.len();
    doc.push(Block::Para(vec![text(match space_points {
        Some(n) => format!("{} of the space's {n} points simulated ({} failed).", records.len(), failed),
        None => format!("{} points simulated ({} failed).", records.len(), failed),
    })]));
    // Best per machine and order choice: cycles compare only on one machine.
    let mut slices: Vec<(&str, &str)> = records.iter().map(|r| (r.machine.as_str(), r.order.as_str())).collect();
    slices.sort();
    slices.dedup();
    doc.push(Block::Heading(2, vec![text("Best configuration")]));
    let mut rows = Vec::new();
    for (m, o) in &slices {
        let here: Vec<&&PointRecord> = ok.iter().filter(|r| r.machine == *m && r.order == *o).collect();
        let Some(best) = here.iter().min_by(|a, b| a.cycles.cmp(&b.cycles).then(a.id.cmp(&b.id))) else {
            let mut row = vec![vec![text(*m)], vec![text(*o)], vec![text("(every point failed)")]];
            row.extend((0..5).map(|_| Vec::new()));
            rows.push(row);
            continue;
        };
        // Every statement alone (no group is a range or joins statements with `+`), without
        // lanes or blocking if there is such a point.
        let alone = |r: &&&PointRecord| !r.fusion.contains(['-', '+']);
        let unfused = here
            .iter()
            .find(|r| alone(r) && r.par.is_none() && r.block.is_none())
            .or_else(|| here.iter().find(|r| alone(r)));
        let (uc, speed) = match unfused.and_then(|u| u.cycles) {
            Some(u) => (u.to_string(), format!("{:.2}x", u as f64 / best.cycles.unwrap_or(1).max(1) as f64)),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        rows.push(vec![
            vec![text(*m)],
            vec![text(*o)],
            vec![code(format!(
                "{}{}{}",
                best.fusion,
                best.par.as_ref().map_or(String::new(), |p| format!(" par={p}")),
                best.block.map_or(String::new(), |b| format!(" block={b}"))
            ))],
            vec![text(best.cycles.unwrap_or(0).to_string())],
            vec![text(uc)],
            vec![text(speed)],
            vec![text(best.flops.unwrap_or(0).to_string())],
            vec![text(best.offchip_bytes.unwrap_or(0).to_string())],
        ]);
    }
    doc.push(table(
        &["machine", "order", "best fusion", "cycles", "unfused cycles", "speedup", "FLOPs", "off-chip bytes"],
        &[false, false, false, true, true, true, true, true],
        rows,
    ));
    for kind in PlotKind::ALL {
        let front = pareto(records, |r| r.offchip_bytes, |r| kind.y(r));
        doc.push(Block::Heading(2, vec![text(format!("Pareto front: {}", kind.heading()))]));
        doc.push(Block::Plot(kind));
        let rows = front
            .iter()
            .map(|r| {
                vec![
                    vec![code(&r.fusion)],
                    vec![text(&r.order)],
                    vec![text(&r.machine)],
                    vec![text(r.offchip_bytes.unwrap_or(0).to_string())],
                    vec![text(kind.y(r).unwrap_or(0).to_string())],
                ]
            })
            .collect();
        doc.push(table(
            &["fusion", "order", "machine", "off-chip bytes", kind.y_name()],
            &[false, false, false, true, true],
            rows,
        ));
    }
    doc.push(Block::Heading(2, vec![text("Estimate accuracy")]));
    let slices = validate_slices(records);
    if slices.is_empty() {
        doc.push(Block::Para(vec![text("No simulated point has an estimate.")]));
    }
    for (slice, v) in &slices {
        if slices.len() > 1 {
            doc.push(Block::Heading(3, vec![text(slice)]));
        }
        validation_blocks(&mut doc, v);
    }
    if slices.len() > 1 {
        if let Some(v) = validate(records) {
            doc.push(Block::Heading(3, vec![text("All machines and order choices together")]));
            validation_blocks(&mut doc, &v);
        }
    }
    if failed > 0 {
        doc.push(Block::Heading(2, vec![text("Failed points")]));
        let mut items: Vec<Line> = records
            .iter()
            .filter(|r| r.status == Status::Failed)
            .take(20)
            .map(|r| vec![code(&r.key), text(format!(": {}", r.error.as_deref().unwrap_or("")))])
            .collect();
        if failed > 20 {
            items.push(vec![text(format!("... and {} more (results.csv lists them all)", failed - 20))]);
        }
        doc.push(Block::List(items));
    }
    (title, doc)
}

/// The estimate's accuracy over one slice of points.
fn validation_blocks(doc: &mut Vec<Block>, v: &Validation) {
    let rho = v.spearman.map_or("n/a".to_string(), |r| format!("{r:.3}"));
    doc.push(Block::Para(vec![
        text(format!(
            "Over {} simulated points: Spearman rank correlation of estimated and simulated cycles ",
            v.points
        )),
        strong(rho),
        text("; regret of the estimate's pick "),
        strong(format!("{:.3}", v.regret)),
        text(" (its simulated cycles over the best's)."),
    ]));
    let mut items = vec![vec![text("estimate's pick: "), code(&v.pick)], vec![text("true best: "), code(&v.best)]];
    for (f, k, kept) in &v.kept {
        items.push(vec![text(format!(
            "pruning to the best {:.0} % by estimate ({k} points): true best {}",
            f * 100.0,
            if *kept { "kept" } else { "LOST" }
        ))]);
    }
    doc.push(Block::List(items));
    doc.push(Block::Para(vec![text("Worst misses (largest rank differences):")]));
    let rows = v
        .worst_misses
        .iter()
        .map(|m| {
            vec![
                vec![code(&m.key)],
                vec![text(m.estimated_rank.to_string())],
                vec![text(m.simulated_rank.to_string())],
                vec![text(format!("{:.0}", m.estimated_cycles))],
                vec![text(m.simulated_cycles.to_string())],
            ]
        })
        .collect();
    doc.push(table(
        &["point", "estimated rank", "simulated rank", "estimated cycles", "simulated cycles"],
        &[false, true, true, true, true],
        rows,
    ));
}

/// Markdown of a line.
fn md_line(line: &Line) -> String {
    line.iter()
        .map(|s| match s {
            Span::Text(t) => t.clone(),
            Span::Code(t) => format!("`{t}`"),
            Span::Strong(t) => format!("**{t}**"),
        })
        .collect()
}

/// The Markdown report.
pub fn markdown(program: &str, records: &[PointRecord], space_points: Option<usize>) -> String {
    render_markdown(document(program, records, space_points).1)
}

/// Markdown of blocks.
fn render_markdown(blocks: Vec<Block>) -> String {
    let mut md = String::new();
    for block in blocks {
        match block {
            Block::Heading(level, line) => {
                let _ = writeln!(md, "{} {}\n", "#".repeat(level as usize), md_line(&line));
            }
            Block::Para(line) => {
                let _ = writeln!(md, "{}\n", md_line(&line));
            }
            Block::List(items) => {
                for item in &items {
                    let _ = writeln!(md, "- {}", md_line(item));
                }
                let _ = writeln!(md);
            }
            Block::Table { head, numeric, rows } => {
                let _ = writeln!(md, "| {} |", head.join(" | "));
                let align: Vec<&str> = numeric.iter().map(|&n| if n { "---:" } else { "---" }).collect();
                let _ = writeln!(md, "|{}|", align.join("|"));
                for row in &rows {
                    md.push('|');
                    for cell in row {
                        match md_line(cell) {
                            c if c.is_empty() => md.push_str(" |"),
                            c => {
                                let _ = write!(md, " {c} |");
                            }
                        }
                    }
                    md.push('\n');
                }
                let _ = writeln!(md);
            }
            Block::Plot(kind) => {
                let _ = writeln!(md, "Plots: `{0}.svg`, `{0}.png`.\n", kind.file());
            }
        }
    }
    md
}

/// The estimate's accuracy section, in Markdown (as in `report.md`).
pub fn write_validation(md: &mut String, v: &Validation) {
    let mut blocks = Vec::new();
    validation_blocks(&mut blocks, v);
    md.push_str(&render_markdown(blocks));
}

/// One scatter plot: every point, with its Pareto front drawn over it.
struct Plot<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    points: Vec<(f64, f64)>,
    front: Vec<(f64, f64)>,
}

/// Draws `plot` on `root`. Text needs a font, which the bitmap backend would have to load
/// (plotters' `ttf`/`ab_glyph` features, a font file): the PNG is drawn without text, and the
/// SVG (whose text the viewer renders) and the report carry the labels.
fn draw<DB: plotters::prelude::DrawingBackend>(
    root: plotters::drawing::DrawingArea<DB, plotters::coord::Shift>,
    plot: &Plot,
    text: bool,
) -> Result<(), String> {
    use plotters::prelude::*;
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let max = |f: fn(&(f64, f64)) -> f64| plot.points.iter().map(f).fold(1.0f64, f64::max) * 1.05;
    let (xmax, ymax) = (max(|p| p.0), max(|p| p.1));
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder.caption(plot.title, ("sans-serif", 20)).x_label_area_size(45).y_label_area_size(80);
    }
    let mut chart = builder.build_cartesian_2d(0.0..xmax, 0.0..ymax).map_err(|x| e(&x))?;
    if text {
        chart
            .configure_mesh()
            .x_desc(plot.x)
            .y_desc(plot.y)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(|x| e(&x))?;
    } else {
        chart
            .plotting_area()
            .draw(&Rectangle::new([(0.0, 0.0), (xmax, ymax)], BLACK.stroke_width(1)))
            .map_err(|x| e(&x))?;
    }
    let grey = RGBColor(150, 150, 150);
    chart.draw_series(plot.points.iter().map(|&p| Circle::new(p, 3, grey.filled()))).map_err(|x| e(&x))?;
    chart.draw_series(LineSeries::new(plot.front.iter().copied(), RED.stroke_width(2))).map_err(|x| e(&x))?;
    chart.draw_series(plot.front.iter().map(|&p| Circle::new(p, 5, RED.filled()))).map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// An axis label: counts are integers (plotters would print `200000.0`), large ones in
/// scientific notation so that they fit the label area.
fn tick(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.2e}")
    } else {
        format!("{v:.0}")
    }
}

/// The plot of `kind` over `records`.
fn plot_of(kind: PlotKind, records: &[PointRecord]) -> Plot<'static> {
    let Series { points, front } = kind.series(records);
    Plot { title: kind.title(), x: "off-chip bytes", y: kind.y_name(), points, front }
}

/// Names the plot file in a drawing error.
fn plot_error(dir: &Path, kind: PlotKind, ext: &str) -> impl Fn(String) -> ExploreError {
    let path = dir.join(format!("{}.{ext}", kind.file())).display().to_string();
    move |message| ExploreError::Plot { path: path.clone(), message }
}

/// The SVG text of a plot: what `NAME.svg` holds and `report.html` embeds.
pub fn svg(kind: PlotKind, records: &[PointRecord]) -> Result<String, String> {
    use plotters::prelude::IntoDrawingArea;
    let mut text = String::new();
    draw(
        plotters::prelude::SVGBackend::with_string(&mut text, (800, 600)).into_drawing_area(),
        &plot_of(kind, records),
        true,
    )?;
    Ok(text)
}

/// Writes `NAME.png` of a plot (the SVG is written by the caller, which also embeds it).
fn png(dir: &Path, kind: PlotKind, records: &[PointRecord]) -> Result<PathBuf, ExploreError> {
    use plotters::prelude::IntoDrawingArea;
    let png = dir.join(format!("{}.png", kind.file()));
    // The bitmap backend writes the file itself (by extension): into a temporary file that
    // is renamed into place, as every other output.
    let tmp = dir.join(format!(".{}.{}.tmp.png", kind.file(), std::process::id()));
    draw(plotters::prelude::BitMapBackend::new(&tmp, (800, 600)).into_drawing_area(), &plot_of(kind, records), false)
        .map_err(plot_error(dir, kind, "png"))?;
    std::fs::rename(&tmp, &png).map_err(|error| ExploreError::Io { path: png.display().to_string(), error })?;
    Ok(png)
}

/// Writes `results.csv`, `report.md`, `report.html` and the plots into `dir`; returns the
/// files written.
pub fn write_all(
    dir: &Path,
    program: &str,
    records: &[PointRecord],
    space_points: Option<usize>,
) -> Result<Vec<PathBuf>, ExploreError> {
    let mut written = Vec::new();
    let mut put = |name: String, bytes: &[u8]| -> Result<(), ExploreError> {
        let path = dir.join(name);
        write_atomic(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    put("results.csv".into(), csv(records).as_bytes())?;
    put("report.md".into(), markdown(program, records, space_points).as_bytes())?;
    let mut svgs = Vec::new();
    for kind in PlotKind::ALL {
        let text = svg(kind, records).map_err(plot_error(dir, kind, "svg"))?;
        put(format!("{}.svg", kind.file()), text.as_bytes())?;
        svgs.push((kind, text));
    }
    put("report.html".into(), crate::html::html(program, records, space_points, &svgs).as_bytes())?;
    for kind in PlotKind::ALL {
        written.push(png(dir, kind, records)?);
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::estimate::Estimate;

    pub(crate) fn rec(id: u64, fusion: &str, groups: usize, cycles: u64, bytes: u64, est: f64) -> PointRecord {
        PointRecord {
            id,
            key: format!("fusion={fusion} order=default hw=ideal"),
            fusion: fusion.into(),
            order: "default".into(),
            machine: "ideal".into(),
            par: None,
            block: None,
            status: Status::Verified,
            error: None,
            retryable: false,
            cycles: Some(cycles),
            flops: Some(cycles / 2),
            offchip_bytes: Some(bytes),
            estimate: Some(Estimate { cycles: est, flops: 0.0, bytes: 0.0 }),
            groups: (0..groups)
                .map(|_| crate::store::GroupRecord {
                    statements: String::new(),
                    orders: Vec::new(),
                    cycles: 0,
                    flops: 0,
                    offchip_bytes: 0,
                    verified: Some(true),
                    estimate: None,
                    par: None,
                    block: None,
                })
                .collect(),
            wall_seconds: 1.0,
            cached_groups: 0,
        }
    }

    /// Two machines, an order choice, a failed point and user strings that HTML must escape.
    pub(crate) fn fixture() -> Vec<PointRecord> {
        let mut rs = vec![
            rec(0, "0-2", 1, 100, 10, 1.0),
            rec(1, "0-1,2", 2, 50, 20, 2.0),
            rec(2, "0,1,2", 3, 80, 30, 3.0),
            rec(3, "0,1-2", 2, 0, 0, 2.5),
        ];
        let failed = &mut rs[3];
        failed.status = Status::Failed;
        failed.error = Some("group 1-2: deadlock at <merge & \"join\"> 'x'".into());
        failed.cycles = None;
        failed.flops = None;
        failed.offchip_bytes = None;
        for (i, (c, b)) in [(120, 8), (70, 25), (90, 30)].into_iter().enumerate() {
            let mut r = rec(4 + i as u64, ["0-2", "0-1,2", "0,1,2"][i], 3 - i, c, b, c as f64 * 0.9);
            r.machine = "rda fifo_depth=<4>".into();
            r.key = format!("fusion={} order=default hw=rda fifo_depth=<4>", r.fusion);
            rs.push(r);
        }
        // A machine on which every point failed.
        let mut r = rs[3].clone();
        r.id = 7;
        r.machine = "comal".into();
        r.key = "fusion=0,1-2 order=default hw=comal".into();
        rs.push(r);
        rs
    }

    #[test]
    fn axis_labels_are_integers_or_short_scientific() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(200000.0), "200000");
        assert_eq!(tick(271_000_000.0), "2.71e8");
    }

    #[test]
    fn markdown_report_snapshot() {
        insta::assert_snapshot!(markdown("<script>alert('p')</script>&.ff", &fixture(), Some(9)));
    }

    #[test]
    fn pareto_front_keeps_undominated_points() {
        let rs = vec![rec(0, "0-2", 1, 100, 10, 1.0), rec(1, "0-1,2", 2, 50, 20, 2.0), rec(2, "0,1,2", 3, 80, 30, 3.0)];
        let front: Vec<u64> = pareto(&rs, |r| r.offchip_bytes, |r| r.cycles).iter().map(|r| r.id).collect();
        assert_eq!(front, vec![0, 1]);
    }

    #[test]
    fn report_names_best_speedup_and_accuracy() {
        let rs = vec![rec(0, "0-2", 1, 100, 10, 1.0), rec(1, "0-1,2", 2, 50, 20, 2.0), rec(2, "0,1,2", 3, 80, 30, 3.0)];
        let md = markdown("p.ff", &rs, Some(4));
        assert!(md.contains("| ideal | default | `0-1,2` | 50 | 80 | 1.60x |"), "{md}");
        assert!(md.contains("3 of the space's 4 points"), "{md}");
        assert!(md.contains("Spearman rank correlation of estimated and simulated cycles **-0.500**"), "{md}");
        let c = csv(&rs);
        assert!(c.lines().nth(2).unwrap().starts_with("1,\"0-1,2\",default,ideal,verified,50,25,20,2,0,0,2,"), "{c}");
        assert!(!c.contains("1.0"), "no wall times in the CSV");
    }
}
