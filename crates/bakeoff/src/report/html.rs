//! One self-contained HTML file: inline CSS and SVG, no script, no external asset. A Content
//! Security Policy forbids every fetch and script, so even a missed escape could not run code.

use super::document::{Block, Document};
use super::escape::html as esc;
use std::fmt::Write;

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 20px 60px; color: #1b1b1b; }
h1 { font-size: 22px; margin: 24px 0 4px; } h2 { font-size: 18px; margin: 36px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
nav a { margin-right: 12px; } p.intro { color: #555; }
.scroll { overflow-x: auto; margin: 10px 0 18px; }
table { border-collapse: collapse; font-size: 13px; } caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td { max-width: 480px; overflow-wrap: anywhere; }
tr.pass td { background: #eaf6ec; } tr.warn td { background: #fff6dc; } tr.fail td { background: #fde8e6; }
tr.optimal td { font-weight: 600; background: #eef4fb; }
figure { margin: 12px 0; }
svg.chart { max-width: 100%; height: auto; font-size: 12px; }
svg .chart-title { font-size: 14px; font-weight: 600; } svg .tick, svg .legend, svg .point-label { fill: #333; }
svg .grid { stroke: #e6e6e6; } svg .axis { stroke: #777; } svg .axis-label { fill: #444; } svg .no-data { fill: #888; font-size: 14px; }
";

pub fn render(doc: &Document) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(&doc.title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(out, "<h1>{}</h1>", esc(&doc.title));
    for line in &doc.intro {
        let _ = writeln!(out, "<p class=\"intro\">{}</p>", esc(line));
    }
    out.push_str("<nav>");
    for s in &doc.sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", esc(s.id), esc(s.title));
    }
    out.push_str("</nav>\n");
    for s in &doc.sections {
        let _ = writeln!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>",
            esc(s.id),
            esc(s.title)
        );
        for block in &s.blocks {
            match block {
                Block::Text(text) => {
                    let _ = writeln!(out, "<p>{}</p>", esc(text));
                }
                Block::Table(table) => out.push_str(&table.html()),
                Block::Chart { chart, .. } => {
                    let _ = writeln!(out, "<figure>{}</figure>", chart.to_svg());
                }
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}
