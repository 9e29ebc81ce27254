//! `report.html`: the report of [`crate::report`] as one self-contained page, for a browser.
//!
//! It renders the same blocks as `report.md` (so the two cannot disagree) and embeds the
//! Pareto plots as inline SVG, the very text of the `.svg` files. Nothing is fetched: no
//! script, no external style, font or image, and a Content-Security-Policy that forbids every
//! load but the inline style, so the file can be mailed, archived or opened offline and shows
//! the same thing. Every user-derived string (program name, machine, errors) is escaped. The
//! bytes are a function of the records alone: a merged sharded sweep writes the same page as
//! one process.

use std::fmt::Write as _;

use crate::report::{document, Block, Line, PlotKind, Span};
use crate::store::PointRecord;

/// The page's style: readable tables, plots that shrink with the window.
const STYLE: &str = "\
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1b1b1b; background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 72rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin-top: 0; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
code { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: 0.92em; background: #f3f3f3; padding: 0 0.2em; border-radius: 3px; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border: 1px solid #d6d6d6; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure.plot { margin: 0.5rem 0 1rem; }
figure.plot svg { display: block; max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { font-size: 0.9rem; color: #555; margin-top: 0.3rem; }
";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// HTML of a line, escaped.
fn line(l: &Line) -> String {
    l.iter()
        .map(|s| match s {
            Span::Text(t) => escape(t),
            Span::Code(t) => format!("<code>{}</code>", escape(t)),
            Span::Strong(t) => format!("<strong>{}</strong>", escape(t)),
        })
        .collect()
}

/// A plot's SVG for inline use: the namespace declaration is dropped (the HTML parser puts
/// `<svg>` in the SVG namespace itself, and the page then holds no URL at all) and the plot
/// is labelled for screen readers.
fn inline_svg(svg: &str, title: &str) -> String {
    let svg = svg.trim_end().replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{}\" ", escape(title)), 1)
}

/// The page. `svgs` holds the SVG text of each plot (as [`crate::report::svg`] draws it); a
/// plot without one is named but not embedded.
pub fn html(
    program: &str,
    records: &[PointRecord],
    space_points: Option<usize>,
    svgs: &[(PlotKind, String)],
) -> String {
    let (title, blocks) = document(program, records, space_points);
    let plain: String = title
        .iter()
        .map(|s| match s {
            Span::Text(t) | Span::Code(t) | Span::Strong(t) => t.as_str(),
        })
        .collect();
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // The page needs nothing from outside; forbid it, so a regression shows as a console
    // error in the browser test instead of a silent fetch.
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>{}</title>", escape(&plain));
    let _ = writeln!(h, "<style>\n{STYLE}</style>\n</head>\n<body>\n<main>");
    for block in &blocks {
        match block {
            Block::Heading(level, l) => {
                let _ = writeln!(h, "<h{level}>{}</h{level}>", line(l));
            }
            Block::Para(l) => {
                let _ = writeln!(h, "<p>{}</p>", line(l));
            }
            Block::List(items) => {
                h.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(h, "<li>{}</li>", line(item));
                }
                h.push_str("</ul>\n");
            }
            Block::Table { head, numeric, rows } => {
                let class = |i: usize| if numeric.get(i) == Some(&true) { " class=\"num\"" } else { "" };
                h.push_str("<table>\n<thead><tr>");
                for (i, c) in head.iter().enumerate() {
                    let _ = write!(h, "<th{}>{}</th>", class(i), escape(c));
                }
                h.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    h.push_str("<tr>");
                    for (i, c) in row.iter().enumerate() {
                        let _ = write!(h, "<td{}>{}</td>", class(i), line(c));
                    }
                    h.push_str("</tr>\n");
                }
                h.push_str("</tbody>\n</table>\n");
            }
            Block::Plot(kind) => {
                let crate::report::Series { points, front } = kind.series(records);
                // The counts let a test check that every point was drawn.
                let _ = writeln!(
                    h,
                    "<figure class=\"plot\" id=\"{}\" data-points=\"{}\" data-front=\"{}\">",
                    kind.file(),
                    points.len(),
                    front.len()
                );
                if let Some((_, svg)) = svgs.iter().find(|(k, _)| k == kind) {
                    let _ = writeln!(h, "{}", inline_svg(svg, kind.title()));
                }
                let _ = writeln!(
                    h,
                    "<figcaption>{}: every point that simulated in grey, the Pareto front in red. Also \
                     <code>{1}.svg</code>, <code>{1}.png</code>.</figcaption>\n</figure>",
                    escape(kind.title()),
                    kind.file()
                );
            }
        }
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::fixture;

    const PROGRAM: &str = "<script>alert('p')</script>&.ff";

    /// A stand-in for a plot: the page's structure without 600 lines of grid.
    fn stub_svgs() -> Vec<(PlotKind, String)> {
        PlotKind::ALL
            .iter()
            .map(|k| {
                (*k, format!("<svg width=\"8\" height=\"6\" viewBox=\"0 0 8 6\" xmlns=\"http://www.w3.org/2000/svg\">\n<text>{}</text>\n</svg>\n", k.file()))
            })
            .collect()
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("0-1,2 hw=ideal"), "0-1,2 hw=ideal");
    }

    #[test]
    fn html_report_snapshot() {
        insta::assert_snapshot!(html(PROGRAM, &fixture(), Some(9), &stub_svgs()));
    }

    #[test]
    fn user_strings_are_escaped_everywhere() {
        let page = html(PROGRAM, &fixture(), Some(9), &stub_svgs());
        // The only elements are ours: no user string opens one.
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<merge"), "{page}");
        assert!(!page.contains("=<4>"), "{page}");
        assert!(page.contains(
            "<title>Design-space exploration of &lt;script&gt;alert(&#39;p&#39;)&lt;/script&gt;&amp;.ff</title>"
        ));
        assert!(page.contains("deadlock at &lt;merge &amp; &quot;join&quot;&gt; &#39;x&#39;"), "{page}");
        assert!(page.contains("<td>rda fifo_depth=&lt;4&gt;</td>"), "{page}");
    }

    /// Every table cell and list item of `report.md` is in the page: the two say the same.
    #[test]
    fn the_page_says_what_the_markdown_says() {
        let records = fixture();
        let md = crate::report::markdown(PROGRAM, &records, Some(9));
        let page = html(PROGRAM, &records, Some(9), &stub_svgs());
        let plain = |s: &str| escape(&s.replace(['`'], "").replace("**", ""));
        let mut checked = 0;
        for l in md.lines() {
            if let Some(row) = l.strip_prefix("| ") {
                for cell in row.trim_end_matches(" |").split(" | ") {
                    assert!(
                        page.contains(&format!(">{}<", plain(cell))),
                        "{cell:?} of report.md is not in report.html"
                    );
                    checked += 1;
                }
            } else if let Some(item) = l.strip_prefix("- ") {
                let item = item.replace("`: ", ": ");
                assert!(page.replace("<code>", "").replace("</code>", "").contains(&plain(&item)), "{item:?}");
                checked += 1;
            } else if let Some(h) = l.strip_prefix("## ") {
                assert!(page.contains(&format!("<h2>{}</h2>", plain(h))), "{h:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} pieces compared");
        // Numbers sit in right-aligned cells, as in the Markdown table.
        assert!(page.contains("<td class=\"num\">1.60x</td>"), "{page}");
    }

    #[test]
    fn pages_embed_the_plot_files_and_fetch_nothing() {
        let dir = std::env::temp_dir().join(format!("fuseflow-explore-html-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let records = fixture();
        crate::report::write_all(&dir, PROGRAM, &records, Some(9)).unwrap();
        let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
        for kind in PlotKind::ALL {
            let svg = std::fs::read_to_string(dir.join(format!("{}.svg", kind.file()))).unwrap();
            let inline = inline_svg(&svg, kind.title());
            assert!(page.contains(&inline), "{} is not embedded as written", kind.file());
            // Every point and every front point is a circle of the embedded plot.
            let crate::report::Series { points, front } = kind.series(&records);
            assert_eq!(inline.matches("<circle").count(), points.len() + front.len());
            assert!(page.contains(&format!(
                "id=\"{}\" data-points=\"{}\" data-front=\"{}\"",
                kind.file(),
                points.len(),
                front.len()
            )));
        }
        // No URL at all: nothing to fetch, nothing that breaks offline.
        assert!(!page.contains("://") && !page.contains("url("), "the page holds a URL");
        assert!(!page.contains("src="), "the page loads something");
        // Deterministic: the same records give the same bytes.
        crate::report::write_all(&dir, PROGRAM, &records, Some(9)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("report.html")).unwrap(), page);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
