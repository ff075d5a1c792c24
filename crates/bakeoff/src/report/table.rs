//! Bench result tables. One row per (configuration, test) cell: mean ± sd as llama-bench prints
//! it, then the median with its 95 % bootstrap CI, min–max, repetitions, the server's own figure,
//! draft acceptance and flags (noisy trials, client/server disagreement).

use crate::analysis::compare::{Cell, Comparison};
use serde_json::json;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
    Json,
    Jsonl,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "md" | "markdown" => Format::Markdown,
            "csv" => Format::Csv,
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            _ => return None,
        })
    }
}

/// Context printed with each row: model name, size and parameter count.
pub struct ModelInfo {
    pub name: String,
    pub size: String,
    pub params: String,
}

fn cell_json(model: &ModelInfo, cell: &Cell) -> serde_json::Value {
    let s = cell.summary();
    let server = crate::measure::stats::Summary::of(&cell.server_values);
    json!({
        "model": model.name, "config": cell.config, "test": cell.test, "source": cell.source,
        "mean_ts": s.mean, "sd_ts": s.sd, "median_ts": s.median, "ci_low": s.ci_low, "ci_high": s.ci_high,
        "min_ts": s.min, "max_ts": s.max, "n": s.n,
        "server_median_ts": if cell.server_values.is_empty() { serde_json::Value::Null } else { json!(server.median) },
        "draft_acceptance": cell.acceptance(), "cache_n": cell.cache_n,
        "roofline_ts": cell.roofline_tps, "roofline_pct": cell.roofline_tps.map(|r| s.median / r * 100.0), "flagged": cell.flagged, "noisy": cell.noisy,
        "samples_ts": cell.values,
    })
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

pub fn render(format: Format, model: &ModelInfo, cells: &[Cell]) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(
                &cells
                    .iter()
                    .map(|c| cell_json(model, c))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default()
                + "\n"
        }
        Format::Jsonl => cells
            .iter()
            .map(|c| cell_json(model, c).to_string() + "\n")
            .collect(),
        Format::Csv => {
            let mut out = String::from("model,config,test,source,mean_ts,sd_ts,median_ts,ci_low,ci_high,min_ts,max_ts,n,server_median_ts,draft_acceptance,roofline_ts,flagged\n");
            for c in cells {
                let s = c.summary();
                let server = (!c.server_values.is_empty())
                    .then(|| crate::measure::stats::median(&c.server_values));
                let _ = writeln!(
                    out,
                    "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{}",
                    csv_field(&model.name),
                    csv_field(&c.config),
                    csv_field(&c.test),
                    c.source,
                    s.mean,
                    s.sd,
                    s.median,
                    s.ci_low,
                    s.ci_high,
                    s.min,
                    s.max,
                    s.n,
                    fmt_opt(server, 3),
                    fmt_opt(c.acceptance(), 4),
                    fmt_opt(c.roofline_tps, 3),
                    c.flagged
                );
            }
            out
        }
        Format::Markdown => markdown(model, cells),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn markdown(model: &ModelInfo, cells: &[Cell]) -> String {
    let mut out = String::from(
        "| model | size | params | config | test | t/s | median [95% CI] | min–max | n | server t/s | accept | % roofline | flags |\n\
         | ----- | ---: | -----: | ------ | ---: | --: | --------------: | ------: | -: | ---------: | -----: | ---------: | ----- |\n",
    );
    for c in cells {
        let s = c.summary();
        let server =
            (!c.server_values.is_empty()).then(|| crate::measure::stats::median(&c.server_values));
        let mut flags = Vec::new();
        if c.noisy > 0 {
            flags.push(format!("{} noisy", c.noisy));
        }
        if c.flagged > c.noisy {
            flags.push(format!("{} flagged", c.flagged - c.noisy));
        }
        if !s.outliers.is_empty() {
            flags.push(format!("{} outlier", s.outliers.len()));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} ± {:.2} | {:.2} [{:.2}, {:.2}] | {:.2}–{:.2} | {} | {} | {} | {} | {} |",
            model.name,
            model.size,
            model.params,
            c.config,
            c.test,
            s.mean,
            s.sd,
            s.median,
            s.ci_low,
            s.ci_high,
            s.min,
            s.max,
            s.n,
            fmt_opt(server, 2),
            c.acceptance().map(|a| format!("{:.0}%", a * 100.0)).unwrap_or_else(|| "-".into()),
            c.roofline_tps.map(|r| format!("{:.0}%", s.median / r * 100.0)).unwrap_or_else(|| "-".into()),
            flags.join(", ")
        );
    }
    out
}

/// A comparison as a Markdown table plus the list of differences.
pub fn comparison_markdown(cmp: &Comparison) -> String {
    let mut out = String::from(
        "| config | test | A median | B median | B/A | 95% CI | p (Mann–Whitney) | verdict |\n\
         | ------ | ---: | -------: | -------: | --: | -----: | ---------------: | ------- |\n",
    );
    for r in &cmp.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} ({}) | {:.2} ({}) | {:.3} ({:+.1}%) | [{:.3}, {:.3}] | {:.4} | {} |",
            r.config,
            r.test,
            r.a.median,
            r.a_source,
            r.b.median,
            r.b_source,
            r.ratio,
            (r.ratio - 1.0) * 100.0,
            r.ci_low,
            r.ci_high,
            r.p_value,
            r.verdict
        );
    }
    for u in &cmp.unmatched {
        let _ = writeln!(out, "\n{u}");
    }
    if cmp.rows.iter().any(|r| r.verdict.ends_with('*')) {
        out.push_str("\n\\* too few repetitions for a Mann–Whitney test to reach p < 0.05 (3 against 3 cannot); verdict from the 95 % CI alone — use -r 4 or more.\n");
    }
    if cmp.differences.is_empty() {
        out.push_str("\nNothing recorded differs between the runs except the measurements.\n");
    } else {
        let _ = writeln!(
            out,
            "\nWhat differs between run {} (A) and run {} (B):",
            cmp.a, cmp.b
        );
        for d in &cmp.differences {
            let _ = writeln!(out, "- {}: {} → {}", d.what, d.a, d.b);
        }
    }
    out
}

/// With and without speculation: for each cell with a `--spec-type` other than `none`, the
/// speed-up over the cell with the same other flags and test but no speculation.
pub fn speculation_summary(cells: &[Cell]) -> String {
    let spec_of = |c: &Cell| {
        c.flags
            .get("--spec-type")
            .cloned()
            .unwrap_or_else(|| "none".into())
    };
    let others = |c: &Cell| {
        let mut f = c.flags.clone();
        f.remove("--spec-type");
        f.remove("--spec-draft-n-max");
        f
    };
    let mut out = String::new();
    for cell in cells.iter().filter(|c| spec_of(c) != "none") {
        let Some(base) = cells
            .iter()
            .find(|b| spec_of(b) == "none" && b.test == cell.test && others(b) == others(cell))
        else {
            continue;
        };
        if out.is_empty() {
            out.push_str("\nSpeculative decoding (same prompts, without → with):\n");
        }
        let (with, without) = (cell.summary().median, base.summary().median);
        let _ = writeln!(
            out,
            "- {} {}: {:.2} → {:.2} t/s ({:.2}×), draft acceptance {}",
            cell.config,
            cell.test,
            without,
            with,
            with / without,
            cell.acceptance()
                .map(|a| format!("{:.1}%", a * 100.0))
                .unwrap_or_else(|| "n/a (nothing drafted)".into())
        );
    }
    out
}
