//! Bench result tables. One row per (configuration, test) cell: mean ± sd as llama-bench prints
//! it, then the median with its 95 % bootstrap CI, min–max, repetitions, the server's own figure,
//! draft acceptance and notes (noisy or flagged trials, outliers); comparisons of two runs.

use super::escape::markdown_cell;
use super::render::{Cell as TableCell, Column, Table};
use crate::analysis::compare::{Cell, CompareRow, Comparison};
use crate::measure::stats::{self, Summary};
use serde_json::json;
use std::fmt::Write;

/// The library's output formats for tables.
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
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub name: String,
    pub size: String,
    pub params: String,
    /// The file's sha256, to find a cell's model when a run measured several.
    pub sha256: String,
}

/// Which dimensions beside (config, test) vary over a run's cells: a bench table shows each
/// cell's model only when there are several, and a `build` column only then.
#[derive(Debug, Clone, Copy, Default)]
struct Varies {
    models: bool,
    builds: bool,
    /// Some cell measured energy (tok/J, W) or peak memory: the table shows each.
    energy: bool,
    memory: bool,
}

impl Varies {
    fn of(cells: &[Cell]) -> Self {
        let distinct = |key: &dyn Fn(&Cell) -> String| {
            let keys: std::collections::BTreeSet<String> = cells.iter().map(key).collect();
            keys.len() > 1
        };
        Varies {
            models: distinct(&|c| c.model_sha256.clone().unwrap_or_default()),
            builds: distinct(&|c| c.build.clone()),
            energy: (cells.iter())
                .any(|c| c.energy.tokens_per_j().is_some() || c.energy.watts().is_some()),
            memory: cells.iter().any(|c| c.energy.peak_bytes().is_some()),
        }
    }
}

/// The model of a cell: the one given when the run measured one model, else the cell's own
/// (found by sha256; its name alone when not given).
fn model_of(models: &[ModelInfo], cell: &Cell, varies: Varies) -> ModelInfo {
    let found = match varies.models {
        false => models.first(),
        true => models
            .iter()
            .find(|m| Some(&m.sha256) == cell.model_sha256.as_ref()),
    };
    found.cloned().unwrap_or_else(|| ModelInfo {
        name: cell.model.clone(),
        ..ModelInfo::default()
    })
}

/// The columns CSV keeps of the JSON rows (the samples and a few derived figures stay JSON-only).
const CSV_COLUMNS: [&str; 16] = [
    "model",
    "config",
    "test",
    "source",
    "mean_ts",
    "sd_ts",
    "median_ts",
    "ci_low",
    "ci_high",
    "min_ts",
    "max_ts",
    "n",
    "server_median_ts",
    "draft_acceptance",
    "roofline_ts",
    "flagged",
];

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// A fraction as a whole percentage, or `-`.
fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

pub fn render(format: Format, model: &ModelInfo, cells: &[Cell]) -> String {
    render_models(format, std::slice::from_ref(model), cells)
}

/// [`render`] for a run of several models (and builds): each row names its own model, and a
/// `build` column appears when the cells span more than one build.
pub fn render_models(format: Format, models: &[ModelInfo], cells: &[Cell]) -> String {
    match format {
        Format::Markdown => bench_table_of(models, cells).markdown(),
        Format::Csv => {
            let mut columns = CSV_COLUMNS.to_vec();
            if Varies::of(cells).builds {
                columns.insert(1, "build");
            }
            data_table_of(models, cells).only(&columns).csv()
        }
        Format::Json | Format::Jsonl => data_table_of(models, cells).render(format),
    }
}

fn server_median(cell: &Cell) -> Option<f64> {
    (!cell.server_values.is_empty()).then(|| stats::median(&cell.server_values))
}

/// The machine-readable rows: raw numbers in JSON, three decimals in CSV.
pub fn data_table(model: &ModelInfo, cells: &[Cell]) -> Table {
    data_table_of(std::slice::from_ref(model), cells)
}

/// [`data_table`] over several models; a `build` column (after `model`) when builds vary.
pub fn data_table_of(models: &[ModelInfo], cells: &[Cell]) -> Table {
    let varies = Varies::of(cells);
    let mut table = data_columns();
    if varies.builds {
        table.columns.insert(1, Column::left("build", "build"));
    }
    for cell in cells {
        let mut row = data_row(&model_of(models, cell, varies), cell);
        if varies.builds {
            row.insert(1, cell.build.as_str().into());
        }
        table.push(row);
    }
    table
}

fn data_columns() -> Table {
    let ids = [
        "model",
        "config",
        "test",
        "source",
        "mean_ts",
        "sd_ts",
        "median_ts",
        "ci_low",
        "ci_high",
        "min_ts",
        "max_ts",
        "n",
        "server_median_ts",
        "draft_acceptance",
        "cache_n",
        "roofline_ts",
        "roofline_pct",
        "flagged",
        "noisy",
        "samples_ts",
        "tokens_per_j",
        "power_w",
        "mem_peak_bytes",
        "mem_plan_bytes",
    ];
    Table::new(ids.iter().map(|id| Column::left(*id, *id)).collect())
}

fn data_row(model: &ModelInfo, c: &Cell) -> Vec<TableCell> {
    let s = c.summary();
    let fixed = |v: f64| TableCell::new(format!("{v:.3}"), v);
    let server = (!c.server_values.is_empty()).then(|| Summary::of(&c.server_values).median);
    let roofline_pct = c.roofline_tps.map(|r| s.median / r * 100.0);
    let e = &c.energy;
    vec![
        model.name.as_str().into(),
        c.config.as_str().into(),
        c.test.as_str().into(),
        c.source.as_str().into(),
        fixed(s.mean),
        fixed(s.sd),
        fixed(s.median),
        fixed(s.ci_low),
        fixed(s.ci_high),
        fixed(s.min),
        fixed(s.max),
        TableCell::new(s.n.to_string(), s.n),
        TableCell::new(fmt_opt(server_median(c), 3), json!(server)),
        TableCell::new(fmt_opt(c.acceptance(), 4), json!(c.acceptance())),
        TableCell::new(fmt_opt(c.cache_n, 0), json!(c.cache_n)),
        TableCell::new(fmt_opt(c.roofline_tps, 3), json!(c.roofline_tps)),
        TableCell::new(fmt_opt(roofline_pct, 1), json!(roofline_pct)),
        TableCell::new(c.flagged.to_string(), c.flagged),
        TableCell::new(c.noisy.to_string(), c.noisy),
        TableCell::new(format!("{:?}", c.values), json!(c.values)),
        TableCell::new(fmt_opt(e.tokens_per_j(), 3), json!(e.tokens_per_j())),
        TableCell::new(fmt_opt(e.watts(), 1), json!(e.watts())),
        TableCell::new(fmt_opt(e.peak_bytes(), 0), json!(e.peak_bytes())),
        TableCell::new(fmt_opt(e.plan_bytes, 0), json!(e.plan_bytes)),
    ]
}

/// The bench table in llama-bench's shape, as Markdown prints it.
pub fn bench_table(model: &ModelInfo, cells: &[Cell]) -> Table {
    bench_table_of(std::slice::from_ref(model), cells)
}

/// [`bench_table`] over several models; a `build` column (after `params`) when builds vary.
pub fn bench_table_of(models: &[ModelInfo], cells: &[Cell]) -> Table {
    let varies = Varies::of(cells);
    let mut table = bench_columns();
    if varies.builds {
        table.columns.insert(3, Column::left("build", "build"));
    }
    let mut telemetry = Vec::new();
    if varies.energy {
        telemetry.push(Column::right("tokens_per_j", "tok/J"));
        telemetry.push(Column::right("power_w", "W"));
    }
    if varies.memory {
        telemetry.push(Column::right("mem_peak", "peak mem (vs plan)"));
    }
    let at = table.columns.len() - 1;
    table.columns.splice(at..at, telemetry);
    for cell in cells {
        let mut row = bench_row(&model_of(models, cell, varies), cell);
        if varies.builds {
            row.insert(3, cell.build.clone());
        }
        let e = &cell.energy;
        let mut telemetry = Vec::new();
        if varies.energy {
            telemetry.extend([fmt_opt(e.tokens_per_j(), 2), fmt_opt(e.watts(), 1)]);
        }
        if varies.memory {
            telemetry.push(e.peak_vs_plan());
        }
        let at = row.len() - 1;
        row.splice(at..at, telemetry);
        table.push(row);
    }
    table
}

fn bench_columns() -> Table {
    Table::new(vec![
        Column::left("model", "model"),
        Column::right("size", "size"),
        Column::right("params", "params"),
        Column::left("config", "config"),
        Column::right("test", "test"),
        Column::right("mean_sd_ts", "t/s"),
        Column::right("median_ci_ts", "median [95% CI]"),
        Column::right("min_max_ts", "min–max"),
        Column::right("n", "n"),
        Column::right("server_ts", "server t/s"),
        Column::right("accept", "accept"),
        Column::right("roofline_pct", "% roofline"),
        Column::left("notes", "notes"),
    ])
}

fn bench_row(model: &ModelInfo, c: &Cell) -> Vec<String> {
    let s = c.summary();
    vec![
        model.name.clone(),
        model.size.clone(),
        model.params.clone(),
        c.config.clone(),
        c.test.clone(),
        format!("{:.2} ± {:.2}", s.mean, s.sd),
        format!("{:.2} [{:.2}, {:.2}]", s.median, s.ci_low, s.ci_high),
        format!("{:.2}–{:.2}", s.min, s.max),
        s.n.to_string(),
        fmt_opt(server_median(c), 2),
        percent(c.acceptance()),
        percent(c.roofline_tps.map(|r| s.median / r)),
        notes(c, &s).join(", "),
    ]
}

/// What a reader should know about a cell's trials: noisy, otherwise flagged, outliers.
fn notes(c: &Cell, s: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    if c.noisy > 0 {
        notes.push(format!("{} noisy", c.noisy));
    }
    if c.flagged > c.noisy {
        notes.push(format!("{} flagged", c.flagged - c.noisy));
    }
    if !s.outliers.is_empty() {
        notes.push(format!("{} outlier", s.outliers.len()));
    }
    notes
}

/// A comparison's rows as a table; within one run (`--across`) each row names its A and B
/// build or model, and rows name the model and build they share when the runs hold several.
pub fn comparison_table(cmp: &Comparison) -> Table {
    let mut table = comparison_columns();
    let grouped = cmp.rows.iter().any(|r| !r.group.is_empty());
    let across = cmp.across.as_ref().map(|a| a.dimension.name());
    if let Some(what) = across {
        table
            .columns
            .insert(0, Column::left("b_subject", format!("B {what}")));
        table
            .columns
            .insert(0, Column::left("a_subject", format!("A {what}")));
    }
    if grouped {
        table.columns.insert(0, Column::left("group", "cell of"));
    }
    let energy =
        (cmp.rows.iter()).any(|r| r.a_tokens_per_j.is_some() || r.b_tokens_per_j.is_some());
    if energy {
        let at = table.columns.len() - 1;
        let column = Column::right("tokens_per_j", "tok/J A → B");
        table.columns.insert(at, column);
    }
    for r in &cmp.rows {
        let mut row = comparison_row(r);
        if energy {
            let (a, b) = (fmt_opt(r.a_tokens_per_j, 2), fmt_opt(r.b_tokens_per_j, 2));
            let at = row.len() - 1;
            row.insert(at, format!("{a} → {b}"));
        }
        if across.is_some() {
            row.splice(0..0, [r.a_subject.clone(), r.b_subject.clone()]);
        }
        if grouped {
            row.insert(0, r.group.clone());
        }
        table.push(row);
    }
    table
}

fn comparison_columns() -> Table {
    Table::new(vec![
        Column::left("config", "config"),
        Column::right("test", "test"),
        Column::right("a_median", "A median"),
        Column::right("b_median", "B median"),
        Column::right("ratio", "B/A"),
        Column::right("ci", "95% CI"),
        Column::right("p_value", "p (Mann–Whitney)"),
        Column::left("verdict", "verdict"),
    ])
}

fn comparison_row(r: &CompareRow) -> Vec<String> {
    vec![
        r.config.clone(),
        r.test.clone(),
        format!("{:.2} ({})", r.a.median, r.a_source),
        format!("{:.2} ({})", r.b.median, r.b_source),
        format!("{:.3} ({:+.1}%)", r.ratio, (r.ratio - 1.0) * 100.0),
        format!("[{:.3}, {:.3}]", r.ci_low, r.ci_high),
        format!("{:.4}", r.p_value),
        r.verdict.clone(),
    ]
}

/// A comparison as a Markdown table plus the list of differences.
pub fn comparison_markdown(cmp: &Comparison) -> String {
    let mut out = format!("{}.\n\n", markdown_cell(&cmp.matching()));
    if !cmp.rows.is_empty() {
        out.push_str(&comparison_table(cmp).markdown());
    }
    for u in &cmp.unmatched {
        let _ = writeln!(out, "\n{}", markdown_cell(u));
    }
    if cmp.rows.iter().any(|r| r.verdict.ends_with('*')) {
        out.push_str("\n\\* too few repetitions for a Mann–Whitney test to reach p < 0.05 (3 against 3 cannot); verdict from the 95 % CI alone — use -r 4 or more.\n");
    }
    if cmp.across.is_some() {
        return out;
    }
    if cmp.differences.is_empty() && cmp.audit_differences.is_empty() {
        out.push_str("\nNothing recorded differs between the runs except the measurements.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\nWhat differs between run {} (A) and run {} (B):",
        cmp.a, cmp.b
    );
    for d in &cmp.differences {
        let (what, a, b) = (&d.what, &d.a, &d.b);
        let line = format!("{what}: {a} → {b}");
        let _ = writeln!(out, "- {}", markdown_cell(&line));
    }
    for line in &cmp.audit_differences {
        let _ = writeln!(out, "- {}", markdown_cell(&format!("audit: {line}")));
    }
    out
}

fn spec_type(cell: &Cell) -> &str {
    cell.flags.get("--spec-type").map_or("none", String::as_str)
}

/// The cell without speculation measured on the same test with the same other flags.
fn without_speculation<'a>(cells: &'a [Cell], cell: &Cell) -> Option<&'a Cell> {
    let others = |c: &Cell| {
        let mut f = c.flags.clone();
        f.remove("--spec-type");
        f.remove("--spec-draft-n-max");
        f
    };
    cells
        .iter()
        .find(|b| spec_type(b) == "none" && b.test == cell.test && others(b) == others(cell))
}

/// With and without speculation: for each cell with a `--spec-type` other than `none`, the
/// speed-up over the cell with the same other flags and test but no speculation.
pub fn speculation_table(cells: &[Cell]) -> Table {
    let mut table = Table::new(vec![
        Column::left("config", "config"),
        Column::right("test", "test"),
        Column::right("without_ts", "without t/s"),
        Column::right("with_ts", "with t/s"),
        Column::right("speedup", "speed-up"),
        Column::right("draft_acceptance", "draft acceptance"),
    ]);
    for cell in cells.iter().filter(|c| spec_type(c) != "none") {
        let Some(base) = without_speculation(cells, cell) else {
            continue;
        };
        let (with, without) = (cell.summary().median, base.summary().median);
        let acceptance = cell.acceptance().map(|a| format!("{:.1}%", a * 100.0));
        table.push([
            cell.config.clone(),
            cell.test.clone(),
            format!("{without:.2}"),
            format!("{with:.2}"),
            format!("{:.2}×", with / without),
            acceptance.unwrap_or_else(|| "n/a (nothing drafted)".into()),
        ]);
    }
    table
}

/// [`speculation_table`] under its heading, or nothing when no cell speculated.
pub fn speculation_summary(cells: &[Cell]) -> String {
    let table = speculation_table(cells);
    if table.rows.is_empty() {
        return String::new();
    }
    format!(
        "\nSpeculative decoding (same prompts, without → with):\n\n{}",
        table.markdown()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "Smol <b>".into(),
            size: "86 MiB".into(),
            params: "135 M".into(),
            sha256: "aa".into(),
        }
    }

    fn cell(config: &str, spec: &str, values: &[f64]) -> Cell {
        Cell {
            model: "Smol".into(),
            model_sha256: Some("aa".into()),
            build: "b11434".into(),
            config: config.into(),
            test: "tg16".into(),
            kind: "tg".into(),
            flags: [("--spec-type".to_string(), spec.to_string())]
                .into_iter()
                .collect(),
            depth: 0,
            source: "client".into(),
            values: values.to_vec(),
            server_values: vec![],
            flagged: 2,
            noisy: 1,
            draft_n: 10.0,
            draft_accepted: 5.0,
            cache_n: None,
            roofline_tps: None,
            energy: Default::default(),
        }
    }

    #[test]
    fn markdown_keeps_llama_bench_shape_with_a_notes_column() {
        let md = render(
            Format::Markdown,
            &model(),
            &[cell("-b 256", "none", &[10.0, 12.0])],
        );
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| model | size | params | config | test | t/s | median [95% CI] | min–max | n | server t/s | accept | % roofline | notes |");
        assert_eq!(lines[1], "| ----- | ---: | -----: | ------ | ---: | --: | --------------: | ------: | -: | ---------: | -----: | ---------: | ----- |");
        assert!(
            lines[2]
                .starts_with("| Smol &lt;b&gt; | 86 MiB | 135 M | -b 256 | tg16 | 11.00 ± 1.41 |"),
            "{md}"
        );
        assert!(
            lines[2].ends_with("| 2 | - | 50% | - | 1 noisy, 1 flagged |"),
            "{md}"
        );
    }

    #[test]
    fn telemetry_columns_appear_when_a_cell_has_it_with_the_peak_against_the_plan() {
        let plain = cell("-b 256", "none", &[10.0, 12.0]);
        let mut measured = cell("-b 512", "none", &[10.0, 12.0]);
        measured.energy = crate::measure::watch::Energy {
            joules: 90.0,
            tokens: 270.0,
            seconds: 3.0,
            rss_peak_bytes: Some(410.0 * 1024.0 * 1024.0),
            vram_peak_bytes: None,
            plan_bytes: Some(400.0 * 1024.0 * 1024.0),
        };
        let md = render(Format::Markdown, &model(), std::slice::from_ref(&plain));
        assert!(!md.contains("tok/J"), "no telemetry, no columns: {md}");
        let md = render(Format::Markdown, &model(), &[plain, measured]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].ends_with("| % roofline | tok/J | W | peak mem (vs plan) | notes |"),
            "{md}"
        );
        assert!(lines[2].contains("| - | - | - | 1 noisy"), "{md}");
        assert!(
            lines[3].contains("| 3.00 | 30.0 | 410 MiB (+10 MiB, +2.5 %) |"),
            "{md}"
        );
    }

    #[test]
    fn a_comparison_shows_tokens_per_joule_of_both_sides_when_measured() {
        let energy = |joules: f64| crate::measure::watch::Energy {
            joules,
            tokens: 300.0,
            seconds: 2.0,
            ..Default::default()
        };
        let (mut a, mut b) = (
            cell("-b 256", "none", &[10.0, 11.0, 12.0]),
            cell("-b 256", "none", &[12.0, 13.0, 14.0]),
        );
        (a.energy, b.energy) = (energy(150.0), energy(100.0));
        let comparison = |rows| Comparison {
            a: 1,
            b: 2,
            rows,
            a_cells: 1,
            b_cells: 1,
            unmatched: Vec::new(),
            differences: Vec::new(),
            audit_differences: Vec::new(),
            differs_in: Vec::new(),
            matched_on: Vec::new(),
            across: None,
        };
        let md = comparison_table(&comparison(vec![crate::analysis::compare::compare_cells(
            &a, &b,
        )]))
        .markdown();
        assert!(
            md.lines()
                .next()
                .unwrap()
                .ends_with("| tok/J A → B | verdict |"),
            "{md}"
        );
        assert!(md.contains("| 2.00 → 3.00 |"), "{md}");
        let plain = cell("-b 256", "none", &[10.0, 11.0, 12.0]);
        let md = comparison_table(&comparison(vec![crate::analysis::compare::compare_cells(
            &plain, &plain,
        )]))
        .markdown();
        assert!(!md.contains("tok/J"), "{md}");
    }

    #[test]
    fn csv_quotes_and_json_keeps_its_keys() {
        let cells = [cell("-ctk q8_0,\"x\"", "none", &[10.0, 12.0])];
        let csv = render(Format::Csv, &model(), &cells);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("model,config,test,source,mean_ts,sd_ts,median_ts,ci_low,ci_high,min_ts,max_ts,n,server_median_ts,draft_acceptance,roofline_ts,flagged"));
        let record = lines.next().unwrap();
        assert!(
            record.starts_with("Smol <b>,\"-ctk q8_0,\"\"x\"\"\",tg16,client,11.000,"),
            "{csv}"
        );
        assert!(record.ends_with(",2,-,0.5000,-,2"), "{csv}");
        let json: Value = serde_json::from_str(&render(Format::Json, &model(), &cells)).unwrap();
        let keys: Vec<&str> = json[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "model",
                "config",
                "test",
                "source",
                "mean_ts",
                "sd_ts",
                "median_ts",
                "ci_low",
                "ci_high",
                "min_ts",
                "max_ts",
                "n",
                "server_median_ts",
                "draft_acceptance",
                "cache_n",
                "roofline_ts",
                "roofline_pct",
                "flagged",
                "noisy",
                "samples_ts",
                "tokens_per_j",
                "power_w",
                "mem_peak_bytes",
                "mem_plan_bytes"
            ]
        );
        assert_eq!(json[0]["median_ts"], 11.0);
        assert_eq!(json[0]["samples_ts"], serde_json::json!([10.0, 12.0]));
        assert!(json[0]["server_median_ts"].is_null());
        let jsonl = render(Format::Jsonl, &model(), &cells);
        assert_eq!(
            serde_json::from_str::<Value>(jsonl.trim()).unwrap(),
            json[0]
        );
    }

    #[test]
    fn several_models_and_builds_show_each_cells_own_and_a_build_column() {
        let mut cells = vec![
            cell("-b 256", "none", &[10.0]),
            cell("-b 256", "none", &[20.0]),
        ];
        cells[1].build = "b11000".into();
        cells[1].model = "gemma".into();
        cells[1].model_sha256 = Some("bb".into());
        let gemma = ModelInfo {
            name: "gemma.gguf".into(),
            size: "241 MiB".into(),
            params: "268 M".into(),
            sha256: "bb".into(),
        };
        let models = [model(), gemma];
        let md = render_models(Format::Markdown, &models, &cells);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].starts_with("| model | size | params | build | config |"),
            "{md}"
        );
        assert!(
            lines[2].starts_with("| Smol &lt;b&gt; | 86 MiB | 135 M | b11434 | -b 256 |"),
            "{md}"
        );
        assert!(
            lines[3].starts_with("| gemma.gguf | 241 MiB | 268 M | b11000 | -b 256 |"),
            "{md}"
        );
        let csv = render_models(Format::Csv, &models, &cells);
        assert!(csv.starts_with("model,build,config,test,"), "{csv}");
        let json: Value =
            serde_json::from_str(&render_models(Format::Json, &models, &cells)).unwrap();
        assert_eq!(
            (json[1]["model"].as_str(), json[1]["build"].as_str()),
            (Some("gemma.gguf"), Some("b11000"))
        );
        // One build, one model: no build column, the model given names every row.
        let single = render(Format::Markdown, &model(), &cells[..1]);
        assert!(!single.contains("build"), "{single}");
        assert!(render(Format::Csv, &model(), &cells[..1]).starts_with("model,config,"));
    }

    #[test]
    fn speculation_summary_is_a_table_of_matched_cells() {
        let cells = [
            cell("(defaults)", "none", &[10.0]),
            cell("--spec-type ngram-mod", "ngram-mod", &[15.0]),
        ];
        let summary = speculation_summary(&cells);
        assert!(
            summary.starts_with(
                "\nSpeculative decoding (same prompts, without → with):\n\n| config |"
            ),
            "{summary}"
        );
        assert!(
            summary.ends_with("| --spec-type ngram-mod | tg16 | 10.00 | 15.00 | 1.50× | 50.0% |\n"),
            "{summary}"
        );
        assert_eq!(speculation_summary(&cells[..1]), "");
    }
}
