//! Grouping stored trials into (configuration, test) cells, and comparing two runs: for each
//! matched cell the ratio B/A with a bootstrap CI, a Mann–Whitney U test and a verdict, plus
//! everything that differs between the two runs' records.

use crate::measure::stats::{self, Summary};
use crate::store::{RunDetail, Store, TrialRow};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;

/// Significance level for verdicts.
pub const ALPHA: f64 = 0.05;

/// The samples of one (configuration, test) cell of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
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
    })
}

fn sample(trial: &TrialRow, metric: &str, sources: &[&str]) -> Option<(f64, String)> {
    trial
        .samples
        .iter()
        .find(|s| s.metric == metric && sources.contains(&s.source.as_str()))
        .map(|s| (s.value, s.source.clone()))
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
        let config = config_label(trial);
        let index = match cells
            .iter()
            .position(|c| c.config == config && c.test == test && c.source == source)
        {
            Some(i) => i,
            None => {
                cells.push(Cell {
                    config: config.clone(),
                    test: test.to_string(),
                    kind: kind.to_string(),
                    flags: config_flags(trial),
                    depth: trial.workload["depth"].as_u64().unwrap_or(0),
                    source: source.clone(),
                    values: Vec::new(),
                    server_values: Vec::new(),
                    flagged: 0,
                    noisy: 0,
                    draft_n: 0.0,
                    draft_accepted: 0.0,
                    cache_n: None,
                    roofline_tps: None,
                });
                cells.len() - 1
            }
        };
        let cell = &mut cells[index];
        cell.values.push(value);
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
    }
}

pub fn compare(store: &Store, a: i64, b: i64) -> Result<Comparison> {
    let (da, db) = (store.run_detail(a)?, store.run_detail(b)?);
    Ok(compare_details(&da, &db))
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
    let comparison = compare_details(&da, &db);
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

fn compare_details(da: &RunDetail, db: &RunDetail) -> Comparison {
    let (a, b) = (da.run.id, db.run.id);
    let (ca, cb) = (cells(da), cells(db));
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for x in &ca {
        match cb.iter().find(|y| y.config == x.config && y.test == x.test) {
            Some(y) if comparable(x) && comparable(y) => rows.push(compare_cells(x, y)),
            Some(_) => unmatched.push(format!("both, no finite median: {} {}", x.config, x.test)),
            None => unmatched.push(format!("A only: {} {}", x.config, x.test)),
        }
    }
    for y in cb
        .iter()
        .filter(|y| !ca.iter().any(|x| x.config == y.config && x.test == y.test))
    {
        unmatched.push(format!("B only: {} {}", y.config, y.test));
    }
    Comparison {
        a,
        b,
        rows,
        a_cells: ca.len(),
        b_cells: cb.len(),
        unmatched,
        differences: differences(da, db),
    }
}

impl Comparison {
    /// What was matched, in words: cells pair up when their swept flags and test are the same
    /// (the engine, its source of figures and pass-through flags may differ; they are listed below).
    pub fn matching(&self) -> String {
        let rule = "cells pair up by swept flags (config) and test";
        if self.rows.is_empty() {
            return format!(
                "no cell matched: run {} (A) has {} cell(s), run {} (B) has {}; {rule}",
                self.a, self.a_cells, self.b, self.b_cells
            );
        }
        format!(
            "matched {} cell(s) of run {} (A, {} cells) and run {} (B, {} cells); {rule}",
            self.rows.len(),
            self.a,
            self.a_cells,
            self.b,
            self.b_cells
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
        "engine",
        set_of(a, |t| t.engine.clone()),
        set_of(b, |t| t.engine.clone()),
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
        for (key, va) in ma {
            let vb = mb.get(key).cloned().unwrap_or_default();
            check(&format!("system.{key}"), va.to_string(), vb.to_string());
        }
    }
    out
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
