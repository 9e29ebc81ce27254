//! What a sweep gives the user: `results.csv` (one row per point), `report.md` (the best
//! configuration, its speedup over unfused, the Pareto fronts and the estimate's accuracy)
//! and the Pareto plots. Every file is a function of the records alone, sorted by id, with no
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

/// The Markdown report.
pub fn markdown(program: &str, records: &[PointRecord], space_points: Option<usize>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Design-space exploration of `{program}`\n");
    let ok: Vec<&PointRecord> = records.iter().filter(|r| r.status != Status::Failed).collect();
    let failed = records.len() - ok.len();
    match space_points {
        Some(n) => {
            let _ = writeln!(md, "{} of the space's {n} points simulated ({} failed).\n", records.len(), failed);
        }
        None => {
            let _ = writeln!(md, "{} points simulated ({} failed).\n", records.len(), failed);
        }
    }
    // Best per machine and order choice: cycles compare only on one machine.
    let mut slices: Vec<(&str, &str)> = records.iter().map(|r| (r.machine.as_str(), r.order.as_str())).collect();
    slices.sort();
    slices.dedup();
    let _ = writeln!(md, "## Best configuration\n");
    let _ =
        writeln!(md, "| machine | order | best fusion | cycles | unfused cycles | speedup | FLOPs | off-chip bytes |");
    let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|");
    for (m, o) in &slices {
        let here: Vec<&&PointRecord> = ok.iter().filter(|r| r.machine == *m && r.order == *o).collect();
        let Some(best) = here.iter().min_by(|a, b| a.cycles.cmp(&b.cycles).then(a.id.cmp(&b.id))) else {
            let _ = writeln!(md, "| {m} | {o} | (every point failed) | | | | | |");
            continue;
        };
        // Every statement alone (no group is a range), without lanes or blocking if there is
        // such a point.
        let alone = |r: &&&PointRecord| !r.fusion.contains('-');
        let unfused = here
            .iter()
            .find(|r| alone(r) && r.par.is_none() && r.block.is_none())
            .or_else(|| here.iter().find(|r| alone(r)));
        let (uc, speed) = match unfused.and_then(|u| u.cycles) {
            Some(u) => (u.to_string(), format!("{:.2}x", u as f64 / best.cycles.unwrap_or(1).max(1) as f64)),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        let _ = writeln!(
            md,
            "| {m} | {o} | `{}{}` | {} | {uc} | {speed} | {} | {} |",
            best.fusion,
            best.par.as_ref().map_or(String::new(), |p| format!(" par={p}"))
                + &best.block.map_or(String::new(), |b| format!(" block={b}")),
            best.cycles.unwrap_or(0),
            best.flops.unwrap_or(0),
            best.offchip_bytes.unwrap_or(0)
        );
    }
    let _ = writeln!(md);
    for (title, file, yname, y) in [
        (
            "cycles vs off-chip bytes",
            "pareto-cycles-bytes",
            "cycles",
            (|r: &PointRecord| r.cycles) as fn(&PointRecord) -> Option<u64>,
        ),
        ("FLOPs vs off-chip bytes", "pareto-flops-bytes", "FLOPs", |r: &PointRecord| r.flops),
    ] {
        let front = pareto(records, |r| r.offchip_bytes, y);
        let _ = writeln!(md, "## Pareto front: {title}\n");
        let _ = writeln!(md, "Plots: `{file}.svg`, `{file}.png`.\n");
        let _ = writeln!(md, "| fusion | order | machine | off-chip bytes | {yname} |");
        let _ = writeln!(md, "|---|---|---|---:|---:|");
        for r in front {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} |",
                r.fusion,
                r.order,
                r.machine,
                r.offchip_bytes.unwrap_or(0),
                y(r).unwrap_or(0)
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Estimate accuracy\n");
    let slices = validate_slices(records);
    if slices.is_empty() {
        let _ = writeln!(md, "No simulated point has an estimate.\n");
    }
    for (slice, v) in &slices {
        if slices.len() > 1 {
            let _ = writeln!(md, "### {slice}\n");
        }
        write_validation(&mut md, v);
    }
    if slices.len() > 1 {
        if let Some(v) = validate(records) {
            let _ = writeln!(md, "### All machines and order choices together\n");
            write_validation(&mut md, &v);
        }
    }
    if failed > 0 {
        let _ = writeln!(md, "## Failed points\n");
        for r in records.iter().filter(|r| r.status == Status::Failed).take(20) {
            let _ = writeln!(md, "- `{}`: {}", r.key, r.error.as_deref().unwrap_or(""));
        }
        if failed > 20 {
            let _ = writeln!(md, "- ... and {} more (results.csv lists them all)", failed - 20);
        }
        let _ = writeln!(md);
    }
    md
}

/// The estimate's accuracy section.
pub fn write_validation(md: &mut String, v: &Validation) {
    let rho = v.spearman.map_or("n/a".to_string(), |r| format!("{r:.3}"));
    let _ = writeln!(md, "Over {} simulated points: Spearman rank correlation of estimated and simulated cycles **{rho}**; regret of the estimate's pick **{:.3}** (its simulated cycles over the best's).\n", v.points, v.regret);
    let _ = writeln!(md, "- estimate's pick: `{}`", v.pick);
    let _ = writeln!(md, "- true best: `{}`", v.best);
    for (f, k, kept) in &v.kept {
        let _ = writeln!(
            md,
            "- pruning to the best {:.0} % by estimate ({k} points): true best {}",
            f * 100.0,
            if *kept { "kept" } else { "LOST" }
        );
    }
    let _ = writeln!(md, "\nWorst misses (largest rank differences):\n");
    let _ = writeln!(md, "| point | estimated rank | simulated rank | estimated cycles | simulated cycles |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for m in &v.worst_misses {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {:.0} | {} |",
            m.key, m.estimated_rank, m.simulated_rank, m.estimated_cycles, m.simulated_cycles
        );
    }
    let _ = writeln!(md);
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
        chart.configure_mesh().x_desc(plot.x).y_desc(plot.y).draw().map_err(|x| e(&x))?;
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

/// Writes `NAME.svg` and `NAME.png` for a Pareto plot of `y` against off-chip bytes.
fn pareto_plots(
    dir: &Path,
    name: &str,
    title: &str,
    y_name: &str,
    records: &[PointRecord],
    y: fn(&PointRecord) -> Option<u64>,
) -> Result<Vec<PathBuf>, ExploreError> {
    let points: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.status != Status::Failed)
        .filter_map(|r| Some((r.offchip_bytes? as f64, y(r)? as f64)))
        .collect();
    let front: Vec<(f64, f64)> = pareto(records, |r| r.offchip_bytes, y)
        .iter()
        .filter_map(|r| Some((r.offchip_bytes? as f64, y(r)? as f64)))
        .collect();
    let plot = Plot { title, x: "off-chip bytes", y: y_name, points, front };
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    let fail = |path: &Path| {
        let path = path.display().to_string();
        move |message: String| ExploreError::Plot { path: path.clone(), message }
    };
    use plotters::prelude::IntoDrawingArea;
    let mut text = String::new();
    draw(plotters::prelude::SVGBackend::with_string(&mut text, (800, 600)).into_drawing_area(), &plot, true)
        .map_err(fail(&svg))?;
    write_atomic(&svg, text.as_bytes())?;
    // The bitmap backend writes the file itself (by extension): into a temporary file that
    // is renamed into place, as every other output.
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    draw(plotters::prelude::BitMapBackend::new(&tmp, (800, 600)).into_drawing_area(), &plot, false)
        .map_err(fail(&png))?;
    std::fs::rename(&tmp, &png).map_err(|error| ExploreError::Io { path: png.display().to_string(), error })?;
    Ok(vec![svg, png])
}

/// Writes `results.csv`, `report.md` and the plots into `dir`; returns the files written.
pub fn write_all(
    dir: &Path,
    program: &str,
    records: &[PointRecord],
    space_points: Option<usize>,
) -> Result<Vec<PathBuf>, ExploreError> {
    let mut written = Vec::new();
    let csv_path = dir.join("results.csv");
    write_atomic(&csv_path, csv(records).as_bytes())?;
    written.push(csv_path);
    let md_path = dir.join("report.md");
    write_atomic(&md_path, markdown(program, records, space_points).as_bytes())?;
    written.push(md_path);
    written
        .extend(pareto_plots(dir, "pareto-cycles-bytes", "Cycles vs off-chip bytes", "cycles", records, |r| r.cycles)?);
    written.extend(pareto_plots(dir, "pareto-flops-bytes", "FLOPs vs off-chip bytes", "FLOPs", records, |r| r.flops)?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::Estimate;

    fn rec(id: u64, fusion: &str, groups: usize, cycles: u64, bytes: u64, est: f64) -> PointRecord {
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
