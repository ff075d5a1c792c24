//! Grouping stored trials into (model, build, configuration, test) cells, and comparing two runs
//! (or two builds or models of one run): for each matched cell the ratio B/A with a bootstrap CI,
//! a Mann–Whitney U test and a verdict, plus everything that differs between the two runs' records.

use crate::measure::stats::{self, Summary};
use crate::measure::watch::Energy;
use crate::store::{RunDetail, Store, TrialRow};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;

/// Significance level for verdicts.
pub const ALPHA: f64 = 0.05;

/// The samples of one (model, build, configuration, test) cell of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The model's display name (file stem); empty when the trial named no model row.
    pub model: String,
    pub model_sha256: Option<String>,
    /// The engine build's name, else its version label; empty when the trial named no engine row.
    pub build: String,
    /// Swept flags only (pass-through flags excluded), as a label.
    pub config: String,
    pub test: String,
    /// `pp` or `tg`.
    pub kind: String,
    /// The swept flags behind `config`.
    pub flags: std::collections::BTreeMap<String, String>,
    pub depth: u64,
    /// `client` (through a server) or `llama-bench`.
    pub source: String,
    pub values: Vec<f64>,
    /// Server-reported t/s for the same trials (through-server runs).
    pub server_values: Vec<f64>,
    pub flagged: usize,
    pub noisy: usize,
    pub draft_n: f64,
    pub draft_accepted: f64,
    pub cache_n: Option<f64>,
    /// Upper bound on tg t/s from memory bandwidth, when known (filled in by the caller).
    pub roofline_tps: Option<f64>,
    /// What the machine did during the cell's trials (telemetry), where it was measured.
    pub energy: Energy,
}

impl Cell {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.values)
    }

    pub fn acceptance(&self) -> Option<f64> {
        (self.draft_n > 0.0).then(|| self.draft_accepted / self.draft_n)
    }
}

/// The swept flags of a trial's config (`-ctk` → `q8_0`, …).
pub fn config_flags(trial: &TrialRow) -> std::collections::BTreeMap<String, String> {
    trial
        .flags
        .as_ref()
        .and_then(|f| f.get("flags"))
        .and_then(|f| f.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn config_label(trial: &TrialRow) -> String {
    let flags = trial
        .flags
        .as_ref()
        .and_then(|f| f.get("flags"))
        .and_then(|f| f.as_object());
    match flags {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "(defaults)".into(),
    }
}

/// A load step as a cell: its per-second output tok/s (first and last second dropped, as they are
/// partial), so two load runs compare with the same statistics as bench runs.
fn load_cell(trial: &TrialRow, test: &str) -> Option<Cell> {
    let timeline: Vec<f64> = trial
        .samples
        .iter()
        .filter(|s| s.metric == "timeline_output_tps")
        .map(|s| s.value)
        .collect();
    let values = if timeline.len() > 2 {
        timeline[1..timeline.len() - 1].to_vec()
    } else {
        timeline
    };
    (!values.is_empty()).then(|| Cell {
        model: trial.model_name.clone().unwrap_or_default(),
        model_sha256: trial.model_sha256.clone(),
        build: trial.build.clone().unwrap_or_default(),
        config: config_label(trial),
        test: test.to_string(),
        kind: "load".into(),
        flags: config_flags(trial),
        depth: 0,
        source: "load-timeline".into(),
        values,
        server_values: Vec::new(),
        flagged: usize::from(trial.note.is_some()),
        noisy: usize::from(trial.note.as_deref().is_some_and(|n| n.contains("noisy"))),
        draft_n: 0.0,
        draft_accepted: 0.0,
        cache_n: None,
        roofline_tps: None,
        energy: {
            let mut energy = Energy::default();
            energy.add(trial);
            energy
        },
    })
}

fn sample(trial: &TrialRow, metric: &str, sources: &[&str]) -> Option<(f64, String)> {
    trial
        .samples
        .iter()
        .find(|s| s.metric == metric && sources.contains(&s.source.as_str()))
        .map(|s| (s.value, s.source.clone()))
}

/// Whether `trial` belongs to `cell`: same model, build, swept flags, test and source of figures.
fn same_cell(cell: &Cell, trial: &TrialRow, test: &str, source: &str) -> bool {
    cell.model_sha256 == trial.model_sha256
        && cell.build == trial.build.as_deref().unwrap_or_default()
        && cell.config == config_label(trial)
        && cell.test == test
        && cell.source == source
}

/// An empty cell for the trial's (model, build, config, test).
fn new_cell(trial: &TrialRow, test: &str, kind: &str, source: String) -> Cell {
    Cell {
        model: trial.model_name.clone().unwrap_or_default(),
        model_sha256: trial.model_sha256.clone(),
        build: trial.build.clone().unwrap_or_default(),
        config: config_label(trial),
        test: test.to_string(),
        kind: kind.to_string(),
        flags: config_flags(trial),
        depth: trial.workload["depth"].as_u64().unwrap_or(0),
        source,
        values: Vec::new(),
        server_values: Vec::new(),
        flagged: 0,
        noisy: 0,
        draft_n: 0.0,
        draft_accepted: 0.0,
        cache_n: None,
        roofline_tps: None,
        energy: Energy::default(),
    }
}

/// Group a run's successful trials into cells, in the order they were measured.
pub fn cells(detail: &RunDetail) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for trial in detail.trials.iter().filter(|t| t.status == "ok") {
        let Some(test) = trial.workload["test"].as_str() else {
            continue;
        };
        let kind = trial.workload["kind"].as_str().unwrap_or("tg");
        if kind == "load" {
            if let Some(cell) = load_cell(trial, test) {
                cells.push(cell);
            }
            continue;
        }
        let metric = if kind == "pp" { "pp_tps" } else { "tg_tps" };
        let Some((value, source)) = sample(trial, metric, &["client", "llama-bench"]) else {
            continue;
        };
        let index = match cells
            .iter()
            .position(|c| same_cell(c, trial, test, &source))
        {
            Some(i) => i,
            None => {
                cells.push(new_cell(trial, test, kind, source));
                cells.len() - 1
            }
        };
        let cell = &mut cells[index];
        cell.values.push(value);
        cell.energy.add(trial);
        if let Some((server, _)) = sample(trial, metric, &["server"]) {
            cell.server_values.push(server);
        }
        if let Some(note) = &trial.note {
            cell.flagged += 1;
            cell.noisy += usize::from(note.contains("noisy"));
        }
        cell.draft_n += sample(trial, "draft_n", &["server"])
            .map(|s| s.0)
            .unwrap_or(0.0);
        cell.draft_accepted += sample(trial, "draft_n_accepted", &["server"])
            .map(|s| s.0)
            .unwrap_or(0.0);
        if let Some((cache, _)) = sample(trial, "cache_n", &["server"]) {
            cell.cache_n = Some(cache);
        }
    }
    cells
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub config: String,
    pub test: String,
    pub a: Summary,
    pub b: Summary,
    pub a_source: String,
    pub b_source: String,
    /// median(B) / median(A).
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    pub verdict: String,
    /// The model and build both cells share, when the runs hold more than one (else empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Within one run (`--across`): the build or model of A and of B.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub a_subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub b_subject: String,
    /// Median tokens per joule of each side, where telemetry measured energy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_tokens_per_j: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_tokens_per_j: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub what: String,
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: i64,
    pub b: i64,
    pub rows: Vec<CompareRow>,
    /// How many (configuration, test) cells each run holds; `rows` are those in both.
    pub a_cells: usize,
    pub b_cells: usize,
    /// Cells present in only one run.
    pub unmatched: Vec<String>,
    pub differences: Vec<Difference>,
    /// The machine settings whose audited value changed between the runs' starts
    /// (`CPU governor: powersave → performance`); empty when they match or one has no audit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_differences: Vec<String>,
    /// Model or build sets that differ between the runs: left out of the matching key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differs_in: Vec<Difference>,
    /// Dimensions with more than one value that the cells were matched on as well.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched_on: Vec<Dimension>,
    /// Set for a comparison within one run across builds or models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub across: Option<Across>,
}

/// A dimension of cells beside (config, test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Model,
    Build,
}

impl Dimension {
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Build => "build",
        }
    }

    /// `model` or `build`, for `--across`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "model" => Some(Dimension::Model),
            "build" => Some(Dimension::Build),
            _ => None,
        }
    }

    /// What identifies a cell's value: the model's sha256, the build's name.
    fn key(self, cell: &Cell) -> &str {
        match self {
            Dimension::Model => cell.model_sha256.as_deref().unwrap_or_default(),
            Dimension::Build => &cell.build,
        }
    }

    /// What a reader is shown: the model's name, the build's name.
    pub fn label(self, cell: &Cell) -> &str {
        match self {
            Dimension::Model => &cell.model,
            Dimension::Build => &cell.build,
        }
    }

    fn other(self) -> Self {
        match self {
            Dimension::Model => Dimension::Build,
            Dimension::Build => Dimension::Model,
        }
    }
}

/// A comparison within one run: each other build (or model) against the reference.
#[derive(Debug, Clone, Serialize)]
pub struct Across {
    pub dimension: Dimension,
    pub reference: String,
    pub others: Vec<String>,
}

/// FASTER / SLOWER when the ratio's CI excludes 1 and Mann–Whitney rejects at [`ALPHA`]; else
/// NO CHANGE (within noise).
///
/// With so few repetitions that even a total separation cannot reach [`ALPHA`] (3 against 3:
/// smallest p 0.1), the test cannot decide: the verdict then comes from the CI alone, marked `*`.
pub fn verdict(ci_low: f64, ci_high: f64, p_value: f64, min_p: f64) -> String {
    let decidable = min_p < ALPHA;
    let significant = p_value < ALPHA || !decidable;
    let mark = if decidable { "" } else { "*" };
    if ci_low > 1.0 && significant {
        format!("FASTER{mark}")
    } else if ci_high < 1.0 && significant {
        format!("SLOWER{mark}")
    } else {
        format!("NO CHANGE{mark}")
    }
}

/// One matched cell: ratio of medians B/A, its bootstrap CI, Mann–Whitney p and the verdict.
pub fn compare_cells(x: &Cell, y: &Cell) -> CompareRow {
    let (ci_low, ci_high) = stats::bootstrap_ratio_ci(&x.values, &y.values);
    let (_, p_value) = stats::mann_whitney(&x.values, &y.values);
    let (sa, sb) = (x.summary(), y.summary());
    CompareRow {
        config: x.config.clone(),
        test: x.test.clone(),
        ratio: sb.median / sa.median,
        a: sa,
        b: sb,
        a_source: x.source.clone(),
        b_source: y.source.clone(),
        ci_low,
        ci_high,
        p_value,
        verdict: verdict(
            ci_low,
            ci_high,
            p_value,
            stats::mann_whitney_min_p(x.values.len(), y.values.len()),
        ),
        group: String::new(),
        a_subject: String::new(),
        b_subject: String::new(),
        a_tokens_per_j: x.energy.tokens_per_j(),
        b_tokens_per_j: y.energy.tokens_per_j(),
    }
}

pub fn compare(store: &Store, a: i64, b: i64) -> Result<Comparison> {
    let (da, db) = (store.run_detail(a)?, store.run_detail(b)?);
    let mut comparison = compare_details(&da, &db);
    comparison.audit_differences = audit_differences(store, a, b)?;
    Ok(comparison)
}

/// What the settings audits stored at the two runs' starts disagree on (nothing when either run
/// predates audits).
fn audit_differences(store: &Store, a: i64, b: i64) -> Result<Vec<String>> {
    Ok(match (store.audit(a)?, store.audit(b)?) {
        (Some(x), Some(y)) => crate::system::audit::differences(&x, &y),
        _ => Vec::new(),
    })
}

/// As [`compare`], for `bakeoff compare`: runs of different kinds, or runs that share no cell, are
/// an error with a hint instead of an empty table (or a ratio of nothing, printed as NaN).
pub fn compare_strict(store: &Store, a: i64, b: i64) -> Result<Comparison> {
    let (da, db) = (store.run_detail(a)?, store.run_detail(b)?);
    let (ka, kb) = (&da.run.kind, &db.run.kind);
    if ka != kb {
        let message =
            format!("run {a} is a {ka} run and run {b} a {kb} run: they measure different things");
        let hint =
            "compare two bench runs or two load runs (`bakeoff runs list` shows each run's kind)";
        return Err(Error::input(message).with_hint(hint));
    }
    let mut comparison = compare_details(&da, &db);
    comparison.audit_differences = audit_differences(store, a, b)?;
    if comparison.rows.is_empty() {
        let hint = "measure both with the same swept flags and tests (e.g. --engine llama-bench and llama-server with the same -fa/-ctk/-p/-n/-d); `bakeoff runs show RUN` lists a run's cells";
        let message = format!(
            "runs {a} and {b} share no (config, test) cell to compare: {}",
            comparison.matching()
        );
        return Err(Error::input(message).with_hint(hint));
    }
    Ok(comparison)
}

/// A cell with something to take a ratio of: a finite, positive median.
fn comparable(cell: &Cell) -> bool {
    let median = cell.summary().median;
    median.is_finite() && median > 0.0
}

/// The distinct values of a dimension over cells, as (key, label), in the order first seen.
fn values_of(cells: &[Cell], dimension: Dimension) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = Vec::new();
    for cell in cells {
        let key = dimension.key(cell);
        if !values.iter().any(|(k, _)| k == key) {
            values.push((key.to_string(), dimension.label(cell).to_string()));
        }
    }
    values
}

fn labels(values: &[(String, String)]) -> String {
    let labels: Vec<&str> = values.iter().map(|(_, l)| l.as_str()).collect();
    labels.join(", ")
}

/// Whether two cells pair up: same config and test, and the same value of each `dimensions`.
fn pairs(x: &Cell, y: &Cell, dimensions: &[Dimension]) -> bool {
    x.config == y.config && x.test == y.test && dimensions.iter().all(|d| d.key(x) == d.key(y))
}

/// The model and build labels of a cell over `dimensions` with more than one value.
fn group_label(cell: &Cell, dimensions: &[Dimension]) -> String {
    let labels: Vec<&str> = dimensions.iter().map(|d| d.label(cell)).collect();
    labels.join(" · ")
}

/// Dimensions whose value sets are the same in both runs join the key; those that differ are
/// left out (so runs of two builds match on config+test) and reported.
fn split_dimensions(ca: &[Cell], cb: &[Cell]) -> (Vec<Dimension>, Vec<Difference>) {
    let (mut keyed, mut differ) = (Vec::new(), Vec::new());
    for dimension in [Dimension::Model, Dimension::Build] {
        let (va, vb) = (values_of(ca, dimension), values_of(cb, dimension));
        let keys =
            |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<BTreeSet<_>>();
        if keys(&va) == keys(&vb) {
            keyed.push(dimension);
            continue;
        }
        differ.push(Difference {
            what: dimension.name().to_string(),
            a: labels(&va),
            b: labels(&vb),
        });
    }
    (keyed, differ)
}

fn compare_details(da: &RunDetail, db: &RunDetail) -> Comparison {
    let (ca, cb) = (cells(da), cells(db));
    let (keyed, differs_in) = split_dimensions(&ca, &cb);
    let shown: Vec<Dimension> = keyed
        .into_iter()
        .filter(|d| values_of(&ca, *d).len() > 1)
        .collect();
    let mut comparison = pair_cells(&ca, &cb, &shown, |c| c.to_string());
    comparison.a = da.run.id;
    comparison.b = db.run.id;
    comparison.differences = differences(da, db);
    comparison.differs_in = differs_in;
    comparison
}

/// Pair each cell of `ca` with the first of `cb` on config, test and `dimensions`; `name` names
/// a cell in the unmatched list.
fn pair_cells(
    ca: &[Cell],
    cb: &[Cell],
    dimensions: &[Dimension],
    name: impl Fn(&str) -> String,
) -> Comparison {
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    let label = |c: &Cell| name(&format!("{} {}", c.config, c.test));
    for x in ca {
        match cb.iter().find(|y| pairs(x, y, dimensions)) {
            Some(y) if comparable(x) && comparable(y) => {
                let mut row = compare_cells(x, y);
                row.group = group_label(x, dimensions);
                rows.push(row);
            }
            Some(_) => unmatched.push(format!("both, no finite median: {}", label(x))),
            None => unmatched.push(format!("A only: {}", label(x))),
        }
    }
    for y in cb
        .iter()
        .filter(|y| !ca.iter().any(|x| pairs(x, y, dimensions)))
    {
        unmatched.push(format!("B only: {}", label(y)));
    }
    Comparison {
        a: 0,
        b: 0,
        rows,
        a_cells: ca.len(),
        b_cells: cb.len(),
        unmatched,
        differences: Vec::new(),
        audit_differences: Vec::new(),
        differs_in: Vec::new(),
        matched_on: dimensions.to_vec(),
        across: None,
    }
}

/// Within one run: each cell of the reference build (or model) against the cell of every other
/// build (or model) with the same config, test and other dimension. `reference` is a build name,
/// or a substring of a model name; without it the first measured is the reference.
pub fn compare_across(
    store: &Store,
    run: i64,
    dimension: Dimension,
    reference: Option<&str>,
) -> Result<Comparison> {
    let all = cells(&store.run_detail(run)?);
    let values = values_of(&all, dimension);
    let what = dimension.name();
    if values.len() < 2 {
        let message = format!(
            "run {run} has one {what} ({}): nothing to compare across {what}",
            labels(&values)
        );
        return Err(Error::input(message)
            .with_hint("measure several with --build NAME=PATH or -m a.gguf,b.gguf"));
    }
    let reference = pick_reference(&values, reference, what)?;
    let mut comparison = across(&all, dimension, &reference, &values);
    comparison.a = run;
    comparison.b = run;
    Ok(comparison)
}

/// The reference's cells paired with each other value's; rows name the model (or build) they
/// share when that varies too.
fn across(
    all: &[Cell],
    dimension: Dimension,
    (reference_key, reference_label): &(String, String),
    values: &[(String, String)],
) -> Comparison {
    let of = |key: &str| -> Vec<Cell> {
        let matching = all.iter().filter(|c| dimension.key(c) == key);
        matching.cloned().collect()
    };
    let base = of(reference_key);
    let others: Vec<&(String, String)> =
        values.iter().filter(|(k, _)| k != reference_key).collect();
    let other = dimension.other();
    let shown: Vec<Dimension> = [other]
        .into_iter()
        .filter(|d| values_of(all, *d).len() > 1)
        .collect();
    let mut comparison = pair_cells(&[], &[], &shown, |c| c.to_string());
    comparison.a_cells = base.len();
    for (key, label) in &others {
        let part = pair_cells(&base, &of(key), &shown, |c| format!("{label}: {c}"));
        comparison.rows.extend(part.rows.into_iter().map(|mut row| {
            row.a_subject = reference_label.clone();
            row.b_subject = label.clone();
            row
        }));
        comparison.unmatched.extend(part.unmatched);
        comparison.b_cells += part.b_cells;
    }
    comparison.across = Some(Across {
        dimension,
        reference: reference_label.clone(),
        others: others.iter().map(|(_, l)| l.clone()).collect(),
    });
    comparison
}

/// The value `--reference` names: a build name exactly, or a model name containing it.
fn pick_reference(
    values: &[(String, String)],
    reference: Option<&str>,
    what: &str,
) -> Result<(String, String)> {
    let Some(wanted) = reference else {
        return Ok(values[0].clone());
    };
    let exact = values.iter().find(|(_, l)| l == wanted);
    let partial = || values.iter().find(|(_, l)| l.contains(wanted));
    exact.or_else(partial).cloned().ok_or_else(|| {
        Error::input(format!(
            "--reference {wanted}: no {what} of the run is named so"
        ))
        .with_hint(format!("the run's {what}s: {}", labels(values)))
    })
}

impl Comparison {
    /// What was matched, in words: cells pair up when their swept flags and test are the same
    /// (the engine, its source of figures and pass-through flags may differ; they are listed below).
    pub fn matching(&self) -> String {
        if let Some(across) = &self.across {
            return self.matching_across(across);
        }
        let rule = self.rule();
        let rule = rule.as_str();
        let differs = self.differs_text();
        if self.rows.is_empty() {
            return format!(
                "no cell matched: run {} (A) has {} cell(s), run {} (B) has {}; {rule}{differs}",
                self.a, self.a_cells, self.b, self.b_cells
            );
        }
        format!(
            "matched {} cell(s) of run {} (A, {} cells) and run {} (B, {} cells); {rule}{differs}",
            self.rows.len(),
            self.a,
            self.a_cells,
            self.b,
            self.b_cells
        )
    }

    /// The matching rule in words; dimensions matched on are named only when they vary.
    fn rule(&self) -> String {
        let names: Vec<&str> = self.matched_on.iter().map(|d| d.name()).collect();
        match names.is_empty() {
            true => "cells pair up by swept flags (config) and test".into(),
            false => format!(
                "cells pair up by {}, swept flags (config) and test",
                names.join(", ")
            ),
        }
    }

    /// `; the runs differ in build: b11434 vs b11000`, or nothing.
    fn differs_text(&self) -> String {
        let parts: Vec<String> = self
            .differs_in
            .iter()
            .map(|d| format!("{}: {} vs {}", d.what, d.a, d.b))
            .collect();
        match parts.is_empty() {
            true => String::new(),
            false => format!("; the runs differ in {}", parts.join("; ")),
        }
    }

    fn matching_across(&self, across: &Across) -> String {
        format!(
            "matched {} cell(s) of run {} across {}: reference {} (A) against {} (B); {}",
            self.rows.len(),
            self.a,
            across.dimension.name(),
            across.reference,
            across.others.join(", "),
            self.rule()
        )
    }
}

fn set_of(detail: &RunDetail, f: impl Fn(&TrialRow) -> Option<String>) -> String {
    let set: BTreeSet<String> = detail.trials.iter().filter_map(f).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

/// Everything recorded that differs between two runs.
pub fn differences(a: &RunDetail, b: &RunDetail) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut check = |what: &str, x: String, y: String| {
        if x != y {
            out.push(Difference {
                what: what.to_string(),
                a: x,
                b: y,
            });
        }
    };
    check(
        "bakeoff version",
        a.run.bakeoff_version.clone(),
        b.run.bakeoff_version.clone(),
    );
    check(
        "host",
        a.run.host.clone().unwrap_or_default(),
        b.run.host.clone().unwrap_or_default(),
    );
    check(
        "engine",
        set_of(a, |t| t.engine.clone()),
        set_of(b, |t| t.engine.clone()),
    );
    check(
        "engine build",
        set_of(a, |t| t.build.clone()),
        set_of(b, |t| t.build.clone()),
    );
    check(
        "model sha256",
        set_of(a, |t| t.model_sha256.clone()),
        set_of(b, |t| t.model_sha256.clone()),
    );
    let flags = |t: &TrialRow| t.flags.as_ref().map(|f| f.to_string());
    check("flags", set_of(a, flags), set_of(b, flags));
    // Settings of the run that are not swept flags: pass-through engine flags, repetitions, warmup,
    // and the context bakeoff gives the server (from the workload), so "same config" is not taken
    // on trust.
    for key in ["extra_args", "reps", "warmup", "ci_target_pct", "engine"] {
        check(
            &format!("run setting {key}"),
            a.params["plan"][key].to_string(),
            b.params["plan"][key].to_string(),
        );
    }
    let context = |d: &RunDetail| {
        serde_json::from_value::<crate::measure::bench::BenchPlan>(d.params["plan"].clone())
            .map(|p| p.matrix.context_needed().to_string())
            .unwrap_or_else(|_| "null".into())
    };
    check("server context (-c) bakeoff adds", context(a), context(b));
    let (sa, sb) = (
        a.system.clone().unwrap_or_default(),
        b.system.clone().unwrap_or_default(),
    );
    if let (Some(ma), Some(mb)) = (sa.as_object(), sb.as_object()) {
        // The host name is the `host` line above.
        for (key, va) in ma.iter().filter(|(key, _)| *key != "hostname") {
            let vb = mb.get(key).cloned().unwrap_or_default();
            check(
                &format!("system.{key}"),
                system_value(key, va),
                system_value(key, &vb),
            );
        }
    }
    out
}

/// A fingerprint's `gpus` as a person reads them: `NVIDIA H200 (139.8 GiB), …`, or `none`.
pub fn gpus_text(gpus: &serde_json::Value) -> String {
    let gpus = gpus.as_array().cloned().unwrap_or_default();
    if gpus.is_empty() {
        return "none".into();
    }
    let gpu = |g: &serde_json::Value| {
        let name = g["name"].as_str().unwrap_or("?");
        match g["memory_bytes"].as_u64() {
            Some(bytes) => format!("{name} ({})", crate::domain::units::human_bytes(bytes)),
            None => name.to_string(),
        }
    };
    gpus.iter().map(gpu).collect::<Vec<_>>().join(", ")
}

/// A fingerprint field as a person reads it: GPUs by name and memory, memory in GiB.
fn system_value(key: &str, value: &serde_json::Value) -> String {
    match key {
        "gpus" => gpus_text(value),
        "ram_bytes" => value
            .as_u64()
            .map(crate::domain::units::human_bytes)
            .unwrap_or_else(|| value.to_string()),
        _ => match value.as_str() {
            Some(text) => text.to_string(),
            None => value.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::store::NewTrial;
    use crate::system::Fingerprint;

    /// A run of `kind` holding one trial of `test` with the `-b` flag at `batch`, one value `tps`.
    fn run_of(store: &Store, kind: &str, batch: &str, tps: f64) -> i64 {
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(kind, "bakeoff", system, None, &serde_json::json!({}))
            .unwrap();
        let config = EngineConfig::default().with_flag("-b", batch);
        let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
        let trial = NewTrial::new(Some(&config), &workload, 0);
        let id = store.begin_trial(run, &trial).unwrap();
        store
            .sample(id, "tg_tps", tps, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        store.end_trial(id, "ok", None).unwrap();
        store.end_run(run, "ok", None).unwrap();
        run
    }

    /// A bench run over `models` × `builds` (engine rows with build names), one tg32 cell each
    /// with three values around `speed(model, build)`.
    pub(crate) fn matrix_run(
        store: &Store,
        dir: &std::path::Path,
        models: &[&str],
        builds: &[&str],
        speed: impl Fn(usize, usize) -> f64,
    ) -> i64 {
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run("bench", "bakeoff", system, None, &serde_json::json!({}))
            .unwrap();
        let config = EngineConfig::default().with_flag("-fa", "on");
        let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
        for (m, model) in models.iter().enumerate() {
            let path = dir.join(format!("{model}.gguf"));
            std::fs::write(&path, model.as_bytes()).unwrap();
            let model_id = store.model(&path).unwrap().id;
            for (b, build) in builds.iter().enumerate() {
                let identity = crate::engines::build::BuildIdentity {
                    name: build.to_string(),
                    binary: dir.join(build).join("llama-server"),
                    version: Some(format!("v{b}")),
                    ..Default::default()
                };
                let engine_id = store.build_engine_id("llama-server", &identity).unwrap();
                for rep in 0..3 {
                    let trial = NewTrial {
                        engine_id: Some(engine_id),
                        model_id: Some(model_id),
                        ..NewTrial::new(Some(&config), &workload, rep)
                    };
                    let id = store.begin_trial(run, &trial).unwrap();
                    let value = speed(m, b) + f64::from(rep);
                    store
                        .sample(id, "tg_tps", value, Unit::TokensPerSecond, "client", 0)
                        .unwrap();
                    store.end_trial(id, "ok", None).unwrap();
                }
            }
        }
        store.end_run(run, "ok", None).unwrap();
        run
    }

    #[test]
    fn audit_differences_are_named_in_json_and_markdown() {
        use crate::system::audit::{self, fixture};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let (slow, fast) = (
            run_of(&store, "bench", "512", 100.0),
            run_of(&store, "bench", "512", 120.0),
        );
        let unaudited = compare(&store, slow, fast).unwrap();
        assert!(
            unaudited.audit_differences.is_empty(),
            "runs without audits"
        );
        let (bad, good) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fixture::untuned(bad.path());
        fixture::tuned(good.path());
        store
            .record_audit(slow, &audit::collect(bad.path()))
            .unwrap();
        store
            .record_audit(fast, &audit::collect(good.path()))
            .unwrap();
        let comparison = compare(&store, slow, fast).unwrap();
        let expected = "CPU governor: powersave → performance".to_string();
        assert!(
            comparison.audit_differences.contains(&expected),
            "{comparison:#?}"
        );
        let json = serde_json::to_value(&comparison).unwrap();
        assert!(json["audit_differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| *l == expected.as_str()));
        let markdown = crate::report::table::comparison_markdown(&comparison);
        assert!(
            markdown.contains("- audit: CPU governor: powersave → performance"),
            "{markdown}"
        );
        assert!(
            markdown.contains("- audit: swappiness: 60 → 10"),
            "{markdown}"
        );
        store
            .record_audit(fast, &audit::collect(bad.path()))
            .unwrap();
        let same = compare(&store, slow, fast).unwrap();
        assert!(
            same.audit_differences.is_empty(),
            "{:?}",
            same.audit_differences
        );
        assert!(serde_json::to_value(&same)
            .unwrap()
            .get("audit_differences")
            .is_none());
    }

    #[test]
    fn cells_are_per_model_and_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let run = matrix_run(
            &store,
            dir.path(),
            &["smol", "gemma"],
            &["b11434", "b11000"],
            |m, b| 100.0 * (m + 1) as f64 + 10.0 * b as f64,
        );
        let cells = cells(&store.run_detail(run).unwrap());
        let found: Vec<(&str, &str, f64)> = cells
            .iter()
            .map(|c| (c.model.as_str(), c.build.as_str(), c.summary().median))
            .collect();
        assert_eq!(
            found,
            [
                ("smol", "b11434", 101.0),
                ("smol", "b11000", 111.0),
                ("gemma", "b11434", 201.0),
                ("gemma", "b11000", 211.0)
            ]
        );
    }

    #[test]
    fn runs_of_two_builds_match_on_config_and_test_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let a = matrix_run(&store, dir.path(), &["smol"], &["b11434"], |_, _| 100.0);
        let b = matrix_run(&store, dir.path(), &["smol"], &["b11000"], |_, _| 90.0);
        let comparison = compare_strict(&store, a, b).unwrap();
        assert_eq!(comparison.rows.len(), 1);
        assert!((comparison.rows[0].ratio - 91.0 / 101.0).abs() < 1e-9);
        assert_eq!(
            comparison.matching(),
            format!("matched 1 cell(s) of run {a} (A, 1 cells) and run {b} (B, 1 cells); cells pair up by swept flags (config) and test; the runs differ in build: b11434 vs b11000")
        );
        // Two models × two builds in both runs: matched on model and build as well.
        let c = matrix_run(
            &store,
            dir.path(),
            &["smol", "gemma"],
            &["b11434", "b11000"],
            |_, _| 50.0,
        );
        let d = matrix_run(
            &store,
            dir.path(),
            &["smol", "gemma"],
            &["b11434", "b11000"],
            |_, _| 60.0,
        );
        let comparison = compare_strict(&store, c, d).unwrap();
        assert_eq!(comparison.rows.len(), 4);
        assert!(comparison
            .matching()
            .ends_with("cells pair up by model, build, swept flags (config) and test"));
        let groups: Vec<&str> = comparison.rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(
            groups,
            [
                "smol · b11434",
                "smol · b11000",
                "gemma · b11434",
                "gemma · b11000"
            ]
        );
    }

    #[test]
    fn an_engine_without_a_build_name_is_labelled_by_its_build_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let run = run_of(&store, "bench", "256", 50.0);
        let install = crate::engines::discovery::LlamaCppInstall {
            bin_dir: dir.path().to_path_buf(),
            source: "PATH".into(),
            version: Some("0.6.0-dev".into()),
            build_number: Some(11434),
            commit: None,
            built_with: None,
            tools: Vec::new(),
        };
        let engine = store
            .engine_id("llama-server", "/x/llama-server", Some(&install), None)
            .unwrap();
        let config = EngineConfig::default();
        let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
        let trial = NewTrial {
            engine_id: Some(engine),
            ..NewTrial::new(Some(&config), &workload, 0)
        };
        let id = store.begin_trial(run, &trial).unwrap();
        assert_eq!(store.trial(id).unwrap().build.as_deref(), Some("b11434"));
    }

    #[test]
    fn across_builds_pairs_each_cell_with_the_reference_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let run = matrix_run(
            &store,
            dir.path(),
            &["smol", "gemma"],
            &["b11434", "b11000"],
            |m, b| 100.0 * (m + 1) as f64 + 10.0 * b as f64,
        );
        let comparison = compare_across(&store, run, Dimension::Build, Some("b11000")).unwrap();
        let rows: Vec<(&str, &str, &str)> = comparison
            .rows
            .iter()
            .map(|r| (r.group.as_str(), r.a_subject.as_str(), r.b_subject.as_str()))
            .collect();
        assert_eq!(
            rows,
            [("smol", "b11000", "b11434"), ("gemma", "b11000", "b11434")]
        );
        assert!((comparison.rows[0].ratio - 101.0 / 111.0).abs() < 1e-9);
        assert!(comparison.matching().starts_with(&format!(
            "matched 2 cell(s) of run {run} across build: reference b11000 (A) against b11434 (B); cells pair up by model,"
        )), "{}", comparison.matching());
        // A model reference is a substring of its name; the first measured is the default.
        let models = compare_across(&store, run, Dimension::Model, Some("gem")).unwrap();
        assert_eq!(models.rows[0].a_subject, "gemma");
        assert_eq!(
            compare_across(&store, run, Dimension::Model, None)
                .unwrap()
                .rows[0]
                .a_subject,
            "smol"
        );
        let error = compare_across(&store, run, Dimension::Build, Some("b9")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--reference b9: no build of the run"),
            "{error}"
        );
        assert_eq!(
            error.hint().as_deref(),
            Some("the run's builds: b11434, b11000")
        );
        let single = matrix_run(&store, dir.path(), &["smol"], &["b11434"], |_, _| 1.0);
        let error = compare_across(&store, single, Dimension::Build, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("has one build (b11434): nothing to compare across build"),
            "{error}"
        );
    }

    #[test]
    fn runs_with_nothing_to_compare_are_refused_not_printed_as_nan() {
        // Regression: disjoint runs printed an empty table and exit 0; a zero median a NaN ratio.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let (a, b) = (
            run_of(&store, "bench", "256", 50.0),
            run_of(&store, "bench", "512", 60.0),
        );
        let error = compare_strict(&store, a, b).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("runs {a} and {b} share no (config, test) cell")),
            "{error}"
        );
        assert!(error.hint().is_some());
        let load = run_of(&store, "load", "256", 50.0);
        let error = compare_strict(&store, a, load).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is a bench run and run 3 a load run"),
            "{error}"
        );
        let zero = run_of(&store, "bench", "256", 0.0);
        let comparison = compare(&store, a, zero).unwrap();
        assert!(comparison.rows.is_empty(), "{:?}", comparison.rows);
        assert_eq!(
            comparison.unmatched,
            ["both, no finite median: -b 256 tg32"]
        );
        let one_each = compare_strict(&store, a, run_of(&store, "bench", "256", 55.0)).unwrap();
        let row = &one_each.rows[0];
        let figures = [row.ratio, row.ci_low, row.ci_high, row.p_value];
        assert!(figures.iter().all(|f| f.is_finite()), "{figures:?}");
    }

    // The README's `compare inproc kv` printed an empty table without saying why nothing matched.
    #[test]
    fn a_comparison_says_what_it_matched() {
        let empty = Comparison {
            a: 2,
            b: 1,
            rows: Vec::new(),
            a_cells: 2,
            b_cells: 8,
            unmatched: Vec::new(),
            differences: Vec::new(),
            audit_differences: Vec::new(),
            differs_in: Vec::new(),
            matched_on: Vec::new(),
            across: None,
        };
        assert_eq!(
            empty.matching(),
            "no cell matched: run 2 (A) has 2 cell(s), run 1 (B) has 8; cells pair up by swept flags (config) and test"
        );
    }

    #[test]
    fn verdicts_need_both_ci_and_significance() {
        assert_eq!(verdict(1.02, 1.10, 0.01, 0.008), "FASTER");
        assert_eq!(verdict(0.90, 0.98, 0.01, 0.008), "SLOWER");
        assert_eq!(verdict(0.98, 1.05, 0.01, 0.008), "NO CHANGE");
        assert_eq!(verdict(1.02, 1.10, 0.20, 0.008), "NO CHANGE");
        // Regression: 3 against 3 can never reach p < 0.05, which made every such verdict NO CHANGE.
        assert_eq!(verdict(0.90, 0.94, 0.10, 0.10), "SLOWER*");
    }
}
