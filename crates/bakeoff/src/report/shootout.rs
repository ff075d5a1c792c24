//! Shootout tables (`bakeoff report RUN... --shootout`): one row per model, per build, or per
//! (model, build) when both vary, with the file's size, parameters and quant, pp and tg medians
//! with 95 % CIs, KV memory at the served context, % of roofline, a gate's verdict, ratios
//! against a reference row, and a recommendation per row naming the rule that produced it.

use super::data::{kv_memory_at, BenchCell, FactsCache, GateCandidate, Memory, ReportData};
use super::render::{Cell as TableCell, Column, Table};
use crate::domain::units::human_bytes;
use crate::measure::bench::BenchPlan;
use crate::quality::Status;
use crate::store::report_rows::ModelInfo;
use crate::store::Store;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// How far below the fastest tg a row may be and still win on quality (percent).
pub const DEFAULT_WITHIN_PCT: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct ShootoutOptions {
    /// A build name, or a substring of a model name: the row the ratio columns divide by.
    pub reference: Option<String>,
    pub within_pct: f64,
}

impl Default for ShootoutOptions {
    fn default() -> Self {
        ShootoutOptions {
            reference: None,
            within_pct: DEFAULT_WITHIN_PCT,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Shootout {
    /// Which of `model`, `build`, `config` and `run` vary over the rows (`run` only when two
    /// runs measured the same model, build and config).
    pub varies: Vec<&'static str>,
    /// The tests measured, in order: one figure column each.
    pub tests: Vec<String>,
    /// The reference row's label, when `--reference` named one.
    pub reference: Option<String>,
    pub within_pct: f64,
    /// What "quality" meant for the best-quality rule.
    pub quality: &'static str,
    pub rows: Vec<ShootoutRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShootoutRow {
    /// The varying dimensions' values, e.g. `SmolLM2 · b11434`.
    pub label: String,
    pub run_id: i64,
    pub model: String,
    pub model_sha256: Option<String>,
    pub build: String,
    pub config: String,
    pub architecture: Option<String>,
    pub file_bytes: Option<u64>,
    pub parameters: Option<u64>,
    pub quant: Option<String>,
    /// One per test of [`Shootout::tests`]; `None` where this row did not measure it.
    pub figures: Vec<Option<Figure>>,
    pub kv: Option<Memory>,
    /// The first tg test's median as a percentage of its memory-bandwidth roofline.
    pub roofline_pct: Option<f64>,
    pub gate: Option<GateVerdict>,
    /// Median over the reference row's median, per test.
    pub ratios: Vec<Option<f64>>,
    pub recommendations: Vec<Recommendation>,
}

/// A test's figure: the median and its 95 % bootstrap CI (`measure::stats::Summary`).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub kind: String,
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
}

/// The verdict of the gate runs among the reported runs for a row's model (and build).
#[derive(Debug, Clone, Serialize)]
pub struct GateVerdict {
    /// The worst overall status among the row's gate candidates.
    pub status: String,
    pub passes: bool,
    pub candidates: usize,
    /// The lowest mean KLD among the candidates that have one.
    pub mean_kld: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The rule's id: `fastest-tg`, `fastest-pp`, `smallest-passing-gate`,
    /// `best-quality-within-pct`, `fails-gate`.
    pub rule: &'static str,
    pub text: String,
}

/// The shootout over the gathered runs. The store gives each run's plan (the context its
/// servers were given, for the KV column).
pub fn build(store: &Store, data: &ReportData, options: &ShootoutOptions) -> Result<Shootout> {
    let within = options.within_pct;
    if !(0.0..=100.0).contains(&within) {
        let message = format!("--within {within}: not a percentage from 0 to 100");
        return Err(Error::input(message).with_hint("e.g. --within 10 (the default)"));
    }
    let tests = tests_of(&data.bench);
    let mut rows = measured_rows(store, data, &tests)?;
    if rows.is_empty() {
        let runs: Vec<String> = data.runs.iter().map(|r| r.id.to_string()).collect();
        let message = format!(
            "run(s) {} hold no pp or tg cell: nothing for a shootout",
            runs.join(", ")
        );
        return Err(Error::input(message)
            .with_hint("name a bench run (`bakeoff runs list` shows each run's kind)"));
    }
    let varies = label_rows(&mut rows);
    add_gates(&mut rows, &data.readiness);
    let reference = reference_row(&rows, options.reference.as_deref())?;
    if let Some(index) = reference {
        add_ratios(&mut rows, index);
    }
    let quality = add_recommendations(&mut rows, options.within_pct);
    Ok(Shootout {
        varies,
        tests,
        reference: reference.map(|i| rows[i].label.clone()),
        within_pct: options.within_pct,
        quality,
        rows,
    })
}

/// One row per (model, build, config) with its figures, KV memory and % of roofline.
fn measured_rows(store: &Store, data: &ReportData, tests: &[String]) -> Result<Vec<ShootoutRow>> {
    let contexts = plan_contexts(store, data)?;
    let bandwidth = bandwidth_gbs(data);
    let mut facts = FactsCache::default();
    let groups = group_cells(&data.bench);
    let rows = groups.iter().map(|cells| {
        let mut row = base_row(data, cells, tests);
        let facts = model_of(data, &row).and_then(|m| facts.get(m));
        let context = contexts.get(&cells[0].run_id).copied();
        row.kv = facts.and_then(|f| kv_memory_at(&cells[0].cell.flags, context, f));
        row.roofline_pct = facts
            .zip(bandwidth)
            .and_then(|(f, gbs)| roofline_pct(cells, f, gbs));
        row
    });
    Ok(rows.collect())
}

/// The context each bench run's plan gives its servers.
fn plan_contexts(store: &Store, data: &ReportData) -> Result<HashMap<i64, u64>> {
    let mut contexts = HashMap::new();
    for run in data.runs.iter().filter(|r| r.kind == "bench") {
        let params = store.run_detail(run.id)?.params;
        if let Ok(plan) = serde_json::from_value::<BenchPlan>(params["plan"].clone()) {
            contexts.insert(run.id, u64::from(plan.matrix.context_needed()));
        }
    }
    Ok(contexts)
}

/// The key of a row: run, model, build and swept flags.
fn row_key(b: &BenchCell) -> (i64, Option<&str>, &str, &str) {
    let c = &b.cell;
    (b.run_id, c.model_sha256.as_deref(), &c.build, &c.config)
}

/// Bench cells grouped by (model, build, config), in the order first measured.
fn group_cells(bench: &[BenchCell]) -> Vec<Vec<&BenchCell>> {
    let mut groups: Vec<Vec<&BenchCell>> = Vec::new();
    for b in bench
        .iter()
        .filter(|b| matches!(b.cell.kind.as_str(), "pp" | "tg"))
    {
        match groups.iter_mut().find(|g| row_key(g[0]) == row_key(b)) {
            Some(group) => group.push(b),
            None => groups.push(vec![b]),
        }
    }
    groups
}

fn tests_of(bench: &[BenchCell]) -> Vec<String> {
    let mut tests: Vec<String> = Vec::new();
    for b in bench
        .iter()
        .filter(|b| matches!(b.cell.kind.as_str(), "pp" | "tg"))
    {
        if !tests.contains(&b.cell.test) {
            tests.push(b.cell.test.clone());
        }
    }
    tests
}

fn model_of<'a>(data: &'a ReportData, row: &ShootoutRow) -> Option<&'a ModelInfo> {
    data.models
        .iter()
        .find(|m| Some(&m.sha256) == row.model_sha256.as_ref())
}

/// A row's identity, model facts and figures (KV, roofline, gate, ratios and recommendations
/// come later).
fn base_row(data: &ReportData, cells: &[&BenchCell], tests: &[String]) -> ShootoutRow {
    let first = &cells[0].cell;
    let mut row = ShootoutRow {
        label: String::new(),
        run_id: cells[0].run_id,
        model: first.model.clone(),
        model_sha256: first.model_sha256.clone(),
        build: first.build.clone(),
        config: first.config.clone(),
        architecture: None,
        file_bytes: None,
        parameters: None,
        quant: None,
        figures: tests.iter().map(|t| figure(cells, t)).collect(),
        kv: None,
        roofline_pct: None,
        gate: None,
        ratios: Vec::new(),
        recommendations: Vec::new(),
    };
    if let Some(model) = model_of(data, &row) {
        let summary = &model.summary;
        row.architecture = summary["architecture"].as_str().map(str::to_string);
        row.file_bytes = Some(model.size);
        row.parameters = summary["parameters"].as_u64();
        row.quant = summary["file_type"].as_u64().map(quant_name);
    }
    row
}

fn figure(cells: &[&BenchCell], test: &str) -> Option<Figure> {
    let b = cells.iter().find(|b| b.cell.test == test)?;
    let s = &b.summary;
    Some(Figure {
        kind: b.cell.kind.clone(),
        median: s.median,
        ci_low: s.ci_low,
        ci_high: s.ci_high,
        n: s.n,
    })
}

/// llama.cpp's `llama_ftype` (`general.file_type`) as the quant name users write.
pub fn quant_name(file_type: u64) -> String {
    crate::formats::gguf::file_type_name(file_type)
        .map_or_else(|| format!("file type {file_type}"), str::to_string)
}

/// The newest memory bandwidth (GB/s) `doctor --bandwidth` stored for a reported system.
fn bandwidth_gbs(data: &ReportData) -> Option<f64> {
    data.systems
        .iter()
        .find_map(|s| s.measurements.get("memory_bandwidth").map(|(v, _)| *v))
        .filter(|v| v.is_finite() && *v > 0.0)
}

fn roofline_pct(cells: &[&BenchCell], facts: &crate::model::ModelFacts, gbs: f64) -> Option<f64> {
    let tg = cells.iter().find(|b| b.cell.kind == "tg")?;
    let roofline =
        crate::model::plan::roofline_for_flags(facts, &tg.cell.flags, tg.cell.depth, gbs * 1e9)?;
    Some(tg.summary.median / roofline * 100.0)
}

/// Name each row by the dimensions that vary (the model alone when nothing does).
fn label_rows(rows: &mut [ShootoutRow]) -> Vec<&'static str> {
    let distinct = |key: fn(&ShootoutRow) -> String| {
        let keys: std::collections::BTreeSet<String> = rows.iter().map(key).collect();
        keys.len() > 1
    };
    let mut varies = Vec::new();
    if distinct(|r| r.model_sha256.clone().unwrap_or_default()) {
        varies.push("model");
    }
    if distinct(|r| r.build.clone()) {
        varies.push("build");
    }
    if distinct(|r| r.config.clone()) {
        varies.push("config");
    }
    let same = |a: &ShootoutRow, b: &ShootoutRow| {
        (&a.model_sha256, &a.build, &a.config) == (&b.model_sha256, &b.build, &b.config)
    };
    let repeated = rows
        .iter()
        .enumerate()
        .any(|(i, a)| rows[..i].iter().any(|b| same(a, b)));
    if repeated {
        varies.push("run");
    }
    for row in rows.iter_mut() {
        let parts: Vec<String> = varies
            .iter()
            .map(|d| match *d {
                "model" => row.model.clone(),
                "build" => row.build.clone(),
                "config" => row.config.clone(),
                _ => format!("run {}", row.run_id),
            })
            .collect();
        row.label = match parts.is_empty() {
            true => row.model.clone(),
            false => parts.join(" · "),
        };
    }
    varies
}

/// Each row's gate verdict: the gate candidates on its model, and on its build when the gate
/// ran on one of the rows' builds.
fn add_gates(rows: &mut [ShootoutRow], gates: &[GateCandidate]) {
    let builds: Vec<String> = rows.iter().map(|r| r.build.clone()).collect();
    for row in rows.iter_mut() {
        let of_row: Vec<&GateCandidate> = gates
            .iter()
            .filter(|g| g.model_sha256 == row.model_sha256)
            .filter(|g| match &g.build {
                Some(build) if builds.contains(build) => *build == row.build,
                _ => true,
            })
            .collect();
        row.gate = verdict(&of_row);
    }
}

fn verdict(candidates: &[&GateCandidate]) -> Option<GateVerdict> {
    let statuses: Vec<Status> = candidates.iter().filter_map(|g| g.row.overall).collect();
    let worst = if statuses.contains(&Status::Fail) {
        Status::Fail
    } else if statuses.contains(&Status::Warn) {
        Status::Warn
    } else {
        *statuses.first()?
    };
    let kld = candidates.iter().filter_map(|g| g.mean_kld());
    Some(GateVerdict {
        status: worst.as_str().to_string(),
        passes: worst != Status::Fail,
        candidates: candidates.len(),
        mean_kld: kld.min_by(f64::total_cmp),
    })
}

/// The row `--reference` names: a build name exactly, else the first whose model name contains
/// it (ignoring case: `Q4_K_M` finds `gemma-3-270m-q4_k_m`), else whose quant or label is it.
fn reference_row(rows: &[ShootoutRow], reference: Option<&str>) -> Result<Option<usize>> {
    let Some(wanted) = reference else {
        return Ok(None);
    };
    let lower = wanted.to_lowercase();
    let build = rows.iter().position(|r| r.build == wanted);
    let model = || {
        rows.iter()
            .position(|r| r.model.to_lowercase().contains(&lower))
    };
    let quant = || rows.iter().position(|r| r.quant.as_deref() == Some(wanted));
    let label = || rows.iter().position(|r| r.label.contains(wanted));
    match build.or_else(model).or_else(quant).or_else(label) {
        Some(index) => Ok(Some(index)),
        None => {
            let names: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
            Err(Error::input(format!(
                "--reference {wanted}: no shootout row's build or model name matches"
            ))
            .with_hint(format!("the rows: {}", names.join(", "))))
        }
    }
}

fn add_ratios(rows: &mut [ShootoutRow], reference: usize) {
    let base: Vec<Option<f64>> = rows[reference]
        .figures
        .iter()
        .map(|f| f.as_ref().map(|f| f.median))
        .collect();
    for row in rows.iter_mut() {
        row.ratios = row
            .figures
            .iter()
            .zip(&base)
            .map(|(f, b)| {
                let ratio = f.as_ref()?.median / (*b)?;
                ratio.is_finite().then_some(ratio)
            })
            .collect();
    }
}

/// The first figure of a kind (`pp` or `tg`) of a row: the one its recommendation weighs.
fn primary(row: &ShootoutRow, kind: &str) -> Option<f64> {
    row.figures
        .iter()
        .flatten()
        .find(|f| f.kind == kind)
        .map(|f| f.median)
}

/// Fill each row's recommendations; returns what "quality" meant.
fn add_recommendations(rows: &mut [ShootoutRow], within_pct: f64) -> &'static str {
    let by_kld = rows
        .iter()
        .all(|r| r.gate.as_ref().is_some_and(|g| g.mean_kld.is_some()));
    let quality = if by_kld { QUALITY_KLD } else { QUALITY_BPW };
    let inputs: Vec<RowFigures> = rows
        .iter()
        .map(|r| RowFigures {
            tg: primary(r, "tg"),
            pp: primary(r, "pp"),
            bytes: r.file_bytes,
            passes_gate: r.gate.as_ref().map(|g| g.passes),
            quality: match by_kld {
                true => r.gate.as_ref().and_then(|g| g.mean_kld).map(|k| -k),
                false => r
                    .file_bytes
                    .zip(r.parameters)
                    .map(|(b, p)| b as f64 * 8.0 / p as f64),
            },
        })
        .collect();
    for (row, recommendations) in rows.iter_mut().zip(recommend(&inputs, within_pct, quality)) {
        row.recommendations = recommendations;
    }
    quality
}

/// What the best-quality rule compares.
pub const QUALITY_KLD: &str = "lowest mean KLD in the gate";
pub const QUALITY_BPW: &str = "most bits per weight";

/// The numbers a recommendation is made from, one row each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFigures {
    pub tg: Option<f64>,
    pub pp: Option<f64>,
    pub bytes: Option<u64>,
    /// `None`: no gate ran on this row.
    pub passes_gate: Option<bool>,
    /// Higher is better.
    pub quality: Option<f64>,
}

/// Propose recommendations per row, each naming its rule:
/// - `fastest-tg`: the highest tg median (every row that ties);
/// - `fastest-pp`: the highest pp median;
/// - `smallest-passing-gate`: the smallest file among rows that passed a gate;
/// - `best-quality-within-pct`: the highest `quality` among rows within `within_pct` % of the
///   fastest tg that did not fail a gate;
/// - `fails-gate`: a row whose gate failed (it gets no other recommendation).
pub fn recommend(rows: &[RowFigures], within_pct: f64, quality: &str) -> Vec<Vec<Recommendation>> {
    let mut out: Vec<Vec<Recommendation>> = vec![Vec::new(); rows.len()];
    let eligible: Vec<bool> = rows.iter().map(|r| r.passes_gate != Some(false)).collect();
    let best_tg = best(rows, &eligible, |r| r.tg);
    let best_pp = best(rows, &eligible, |r| r.pp);
    let passing: Vec<bool> = rows.iter().map(|r| r.passes_gate == Some(true)).collect();
    let smallest = best(rows, &passing, |r| r.bytes.map(|b| -(b as f64)));
    let fast_enough: Vec<bool> = rows
        .iter()
        .zip(&eligible)
        .map(|(r, e)| *e && within(r.tg, best_tg, within_pct))
        .collect();
    let best_quality = best(rows, &fast_enough, |r| r.quality);
    for (i, row) in rows.iter().enumerate() {
        let mut add = |rule: &'static str, text: String| out[i].push(Recommendation { rule, text });
        if row.passes_gate == Some(false) {
            add("fails-gate", "not recommended: fails the gate".into());
            continue;
        }
        if best_tg.is_some() && row.tg == best_tg {
            add("fastest-tg", "fastest generation (tg)".into());
        }
        if best_pp.is_some() && row.pp == best_pp {
            add("fastest-pp", "fastest prompt processing (pp)".into());
        }
        if passing[i] && smallest.is_some() && row.bytes.map(|b| -(b as f64)) == smallest {
            add(
                "smallest-passing-gate",
                "smallest that passes the gate".into(),
            );
        }
        if fast_enough[i] && best_quality.is_some() && row.quality == best_quality {
            let text = format!("best quality ({quality}) within {within_pct} % of the fastest tg");
            add("best-quality-within-pct", text);
        }
    }
    out
}

/// The highest value of `key` among rows where `mask` holds.
fn best(
    rows: &[RowFigures],
    mask: &[bool],
    key: impl Fn(&RowFigures) -> Option<f64>,
) -> Option<f64> {
    rows.iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .filter_map(|(r, _)| key(r).filter(|v| v.is_finite()))
        .max_by(f64::total_cmp)
}

fn within(tg: Option<f64>, fastest: Option<f64>, pct: f64) -> bool {
    match (tg, fastest) {
        (Some(tg), Some(fastest)) => tg >= fastest * (1.0 - pct / 100.0),
        // Without tg figures, speed cannot exclude a row.
        (None, None) => true,
        _ => false,
    }
}

fn median_ci(f: &Option<Figure>) -> TableCell {
    match f {
        Some(f) => TableCell::new(
            format!("{:.2} [{:.2}, {:.2}]", f.median, f.ci_low, f.ci_high),
            json!({"median": f.median, "ci_low": f.ci_low, "ci_high": f.ci_high, "n": f.n}),
        ),
        None => TableCell::new("-", serde_json::Value::Null),
    }
}

fn text_or_dash(v: Option<String>) -> TableCell {
    match v {
        Some(text) => TableCell::new(text.clone(), text),
        None => TableCell::new("-", serde_json::Value::Null),
    }
}

fn number(v: Option<f64>, text: impl Fn(f64) -> String) -> TableCell {
    match v.filter(|v| v.is_finite()) {
        Some(v) => TableCell::new(text(v), v),
        None => TableCell::new("-", serde_json::Value::Null),
    }
}

/// The recommendations of a row as text: `fastest generation (tg) [fastest-tg]; ...`.
pub fn recommendation_text(row: &ShootoutRow) -> String {
    let parts: Vec<String> = row
        .recommendations
        .iter()
        .map(|r| format!("{} [{}]", r.text, r.rule))
        .collect();
    match parts.is_empty() {
        true => "-".into(),
        false => parts.join("; "),
    }
}

/// The shootout as one table (Markdown, CSV, JSON and HTML all render it).
pub fn table(shootout: &Shootout) -> Table {
    let mut columns = vec![Column::left("model", "model")];
    if shootout.varies.contains(&"build") {
        columns.push(Column::left("build", "build"));
    }
    if shootout.varies.contains(&"config") {
        columns.push(Column::left("config", "config"));
    }
    if shootout.varies.contains(&"run") {
        columns.push(Column::right("run", "run"));
    }
    columns.extend([
        Column::left("architecture", "architecture"),
        Column::right("size", "file size"),
        Column::right("params", "params"),
        Column::left("quant", "quant"),
    ]);
    for test in &shootout.tests {
        columns.push(Column::right(test.clone(), format!("{test} t/s [95% CI]")));
    }
    columns.push(Column::right("kv", "KV memory"));
    columns.push(Column::right("roofline_pct", "% roofline"));
    let gated = shootout.rows.iter().any(|r| r.gate.is_some());
    if gated {
        columns.push(Column::left("gate", "gate"));
    }
    if let Some(reference) = &shootout.reference {
        for test in &shootout.tests {
            columns.push(Column::right(
                format!("{test}_ratio"),
                format!("{test} vs {reference}"),
            ));
        }
    }
    columns.push(Column::left("recommendation", "recommendation"));
    let mut table = Table::new(columns);
    for row in &shootout.rows {
        table.push(table_row(shootout, row, gated));
    }
    table
}

fn table_row(shootout: &Shootout, row: &ShootoutRow, gated: bool) -> Vec<TableCell> {
    let mut cells: Vec<TableCell> = vec![row.model.as_str().into()];
    if shootout.varies.contains(&"build") {
        cells.push(row.build.as_str().into());
    }
    if shootout.varies.contains(&"config") {
        cells.push(row.config.as_str().into());
    }
    if shootout.varies.contains(&"run") {
        cells.push(TableCell::new(row.run_id.to_string(), row.run_id));
    }
    cells.push(text_or_dash(row.architecture.clone()));
    cells.push(match row.file_bytes {
        Some(b) => TableCell::new(human_bytes(b), b),
        None => TableCell::new("-", serde_json::Value::Null),
    });
    cells.push(number(row.parameters.map(|p| p as f64), |p| {
        format!("{:.1} M", p / 1e6)
    }));
    cells.push(text_or_dash(row.quant.clone()));
    cells.extend(row.figures.iter().map(median_ci));
    cells.push(match &row.kv {
        Some(kv) => TableCell::new(
            human_bytes(kv.bytes),
            json!({"bytes": kv.bytes, "source": kv.source}),
        ),
        None => TableCell::new("-", serde_json::Value::Null),
    });
    cells.push(number(row.roofline_pct, |p| format!("{p:.0}%")));
    if gated {
        cells.push(match &row.gate {
            Some(g) => TableCell::new(g.status.clone(), json!(g)),
            None => TableCell::new("no gate", serde_json::Value::Null),
        });
    }
    if shootout.reference.is_some() {
        cells.extend(
            row.ratios
                .iter()
                .map(|r| number(*r, |r| format!("{r:.3}×"))),
        );
    }
    cells.push(TableCell::new(
        recommendation_text(row),
        json!(row.recommendations),
    ));
    cells
}

/// The rules behind the recommendation column, in words.
pub fn rules_text(shootout: &Shootout) -> String {
    format!(
        "Recommendations are proposed from the numbers: fastest-tg and fastest-pp take the highest median of the first tg and pp test; smallest-passing-gate the smallest file among rows a gate passed; best-quality-within-pct the {} among rows within {} % of the fastest tg; fails-gate marks a row a gate failed. KV memory is planned from the model file at the served context (-c, else the bench plan's).",
        shootout.quality, shootout.within_pct
    )
}

/// The shootout alone as Markdown, CSV or JSON rows; `None` for HTML, where it is a section of
/// the whole report.
pub fn render(shootout: &Shootout, format: super::ReportFormat) -> Option<String> {
    match format {
        super::ReportFormat::Markdown => Some(markdown(shootout)),
        super::ReportFormat::Csv => Some(table(shootout).csv()),
        super::ReportFormat::Json => Some(table(shootout).json()),
        super::ReportFormat::Html => None,
    }
}

/// The shootout as Markdown: the table and the rules under it.
pub fn markdown(shootout: &Shootout) -> String {
    format!(
        "{}\n{}\n",
        table(shootout).markdown(),
        super::escape::markdown_cell(&rules_text(shootout))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(tg: f64, pp: f64, mb: u64, gate: Option<bool>, quality: f64) -> RowFigures {
        RowFigures {
            tg: Some(tg),
            pp: Some(pp),
            bytes: Some(mb << 20),
            passes_gate: gate,
            quality: Some(quality),
        }
    }

    fn rules(recommendations: &[Vec<Recommendation>]) -> Vec<Vec<&'static str>> {
        recommendations
            .iter()
            .map(|r| r.iter().map(|r| r.rule).collect())
            .collect()
    }

    #[test]
    fn the_seed_quant_shootout_gets_the_seeds_recommendations() {
        // Seed 003: UD-Q4_K_L 18.8 GB 825/57.0, UD-Q4_K_XL 20.7 GB 835/56.4, Q8_0 34.4 GB 850/51.4.
        let rows = [
            figures(57.0, 825.0, 18_800, Some(true), 4.5),
            figures(56.4, 835.0, 20_700, Some(true), 4.9),
            figures(51.4, 850.0, 34_400, Some(true), 8.5),
        ];
        let out = recommend(&rows, 10.0, QUALITY_BPW);
        assert_eq!(
            rules(&out),
            [
                vec!["fastest-tg", "smallest-passing-gate"],
                vec![],
                vec!["fastest-pp", "best-quality-within-pct"],
            ]
        );
        assert_eq!(
            out[2][1].text,
            "best quality (most bits per weight) within 10 % of the fastest tg"
        );
        // Within 5 %, Q8_0 (10 % slower) is out: the best quality is UD-Q4_K_XL.
        assert_eq!(
            rules(&recommend(&rows, 5.0, QUALITY_BPW))[1],
            ["best-quality-within-pct"]
        );
    }

    #[test]
    fn ties_give_every_tied_row_the_rule() {
        let rows = [
            figures(50.0, 100.0, 10, None, 1.0),
            figures(50.0, 100.0, 10, None, 1.0),
        ];
        let out = rules(&recommend(&rows, 10.0, QUALITY_BPW));
        let all = vec!["fastest-tg", "fastest-pp", "best-quality-within-pct"];
        assert_eq!(out, [all.clone(), all]);
    }

    #[test]
    fn a_row_without_a_gate_is_never_the_smallest_passing() {
        let rows = [
            figures(50.0, 100.0, 5, None, 1.0),
            figures(40.0, 90.0, 10, Some(true), 2.0),
        ];
        let out = rules(&recommend(&rows, 10.0, QUALITY_BPW));
        // The ungated row is within 10 % of itself only; the gated one is 20 % slower.
        assert_eq!(
            out[0],
            ["fastest-tg", "fastest-pp", "best-quality-within-pct"]
        );
        assert_eq!(out[1], ["smallest-passing-gate"]);
    }

    #[test]
    fn when_every_row_fails_the_gate_none_is_recommended() {
        let rows = [
            figures(50.0, 100.0, 5, Some(false), 1.0),
            figures(40.0, 90.0, 10, Some(false), 2.0),
        ];
        let out = recommend(&rows, 10.0, QUALITY_KLD);
        assert_eq!(rules(&out), [vec!["fails-gate"], vec!["fails-gate"]]);
        assert_eq!(out[0][0].text, "not recommended: fails the gate");
        // A failing row does not take "fastest" from the rows that pass.
        let mixed = [rows[0].clone(), figures(40.0, 90.0, 10, Some(true), 2.0)];
        let out = rules(&recommend(&mixed, 10.0, QUALITY_KLD));
        assert_eq!(
            out[1],
            [
                "fastest-tg",
                "fastest-pp",
                "smallest-passing-gate",
                "best-quality-within-pct"
            ]
        );
    }

    #[test]
    fn one_row_wins_every_rule_it_has_numbers_for() {
        let rows = [RowFigures {
            tg: Some(50.0),
            ..RowFigures::default()
        }];
        assert_eq!(
            rules(&recommend(&rows, 10.0, QUALITY_BPW)),
            [vec!["fastest-tg"]]
        );
        assert!(recommend(&[], 10.0, QUALITY_BPW).is_empty());
    }

    fn row(model: &str, build: &str, tg: f64) -> ShootoutRow {
        ShootoutRow {
            label: format!("{model} · {build}"),
            run_id: 1,
            model: model.into(),
            model_sha256: Some(model.into()),
            build: build.into(),
            config: "(defaults)".into(),
            architecture: Some("llama".into()),
            file_bytes: Some(90 << 20),
            parameters: Some(134_515_008),
            quant: Some(quant_name(3)),
            figures: vec![Some(Figure {
                kind: "tg".into(),
                median: tg,
                ci_low: tg - 1.0,
                ci_high: tg + 1.0,
                n: 3,
            })],
            kv: None,
            roofline_pct: Some(41.2),
            gate: None,
            ratios: Vec::new(),
            recommendations: Vec::new(),
        }
    }

    #[test]
    fn two_runs_of_the_same_model_and_build_are_told_apart_by_run() {
        let mut rows = vec![row("smol", "b1", 10.0), row("smol", "b1", 11.0)];
        rows[1].run_id = 2;
        assert_eq!(label_rows(&mut rows), ["run"]);
        assert_eq!(
            (rows[0].label.as_str(), rows[1].label.as_str()),
            ("run 1", "run 2")
        );
        let mut rows = vec![row("smol", "b1", 10.0), row("gemma", "b1", 11.0)];
        rows[1].run_id = 2;
        assert_eq!(label_rows(&mut rows), ["model"], "runs of different models");
        assert_eq!(rows[1].label, "gemma");
    }

    #[test]
    fn rows_render_with_ratio_and_rule_names() {
        let mut rows = vec![
            row("Smol <b>", "b11434", 100.0),
            row("gemma", "b11000", 50.0),
        ];
        add_ratios(&mut rows, 1);
        add_recommendations(&mut rows, 10.0);
        let shootout = Shootout {
            varies: vec!["model", "build"],
            tests: vec!["tg32".into()],
            reference: Some("gemma · b11000".into()),
            within_pct: 10.0,
            quality: QUALITY_BPW,
            rows,
        };
        let md = markdown(&shootout);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| model | build | architecture | file size | params | quant | tg32 t/s [95% CI] | KV memory | % roofline | tg32 vs gemma · b11000 | recommendation |");
        assert_eq!(lines[2], "| Smol &lt;b&gt; | b11434 | llama | 90.00 MiB | 134.5 M | Q4_1 | 100.00 [99.00, 101.00] | - | 41% | 2.000× | fastest generation (tg) [fastest-tg]; best quality (most bits per weight) within 10 % of the fastest tg [best-quality-within-pct] |");
        let json = table(&shootout).json_rows();
        assert_eq!(json[1]["tg32_ratio"], 1.0);
        assert_eq!(json[0]["tg32"]["median"], 100.0);
        assert_eq!(json[0]["recommendation"][0]["rule"], "fastest-tg");
        assert_eq!(json[1]["recommendation"], serde_json::json!([]));
        assert!(table(&shootout).html().contains("Smol &lt;b&gt;"));
        assert_eq!(
            reference_row(&shootout.rows, Some("b11000")).unwrap(),
            Some(1)
        );
        assert_eq!(
            reference_row(&shootout.rows, Some("Smol")).unwrap(),
            Some(0)
        );
        assert_eq!(
            reference_row(&shootout.rows, Some("GEMMA")).unwrap(),
            Some(1)
        );
        assert_eq!(
            reference_row(&shootout.rows, Some("Q4_1")).unwrap(),
            Some(0)
        );
        let error = reference_row(&shootout.rows, Some("Q8_0")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--reference Q8_0: no shootout row"),
            "{error}"
        );
    }
}
