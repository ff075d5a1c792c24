//! The report's content, independent of format: sections of text, tables and charts built from
//! [`ReportData`]. HTML draws the charts as SVG; Markdown turns each chart into its data table,
//! so both formats carry the same numbers.

use super::data::{self, BenchCell, GateCandidate, LoadAxis, LoadStep, ParetoPoint, ReportData};
use super::render::Table;
use super::svg::{
    BarChart, BarSeries, Chart, LineChart, ScatterChart, ScatterPoint, Series, Stroke,
};
use crate::domain::units::human_bytes;
use std::collections::BTreeSet;

pub struct Document {
    pub title: String,
    pub intro: Vec<String>,
    pub sections: Vec<Section>,
}

pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub blocks: Vec<Block>,
}

pub enum Block {
    Text(String),
    Table(Table),
    /// A chart, and whether the section's tables already hold all its numbers (then Markdown,
    /// which cannot draw it, leaves it out instead of repeating them).
    Chart {
        chart: Chart,
        tabulated: bool,
    },
}

fn chart(chart: Chart) -> Block {
    Block::Chart {
        chart,
        tabulated: false,
    }
}

fn tabulated_chart(chart: Chart) -> Block {
    Block::Chart {
        chart,
        tabulated: true,
    }
}

fn num(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| num(v, digits)).unwrap_or_else(|| "-".into())
}

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Build the document for `data`.
pub fn build(data: &ReportData) -> Document {
    let ids: Vec<String> = data.runs.iter().map(|r| r.id.to_string()).collect();
    Document {
        title: format!(
            "bakeoff report: run{} {}",
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        ),
        intro: vec![format!(
            "Written by bakeoff {} from the result store. Medians with 95 % bootstrap CIs; latency percentiles use type-7 interpolation over stored raw samples (docs/metrics.md).",
            data.bakeoff_version
        )],
        sections: [runs_section(data)]
            .into_iter()
            .chain(data.shootout.as_ref().map(shootout_section))
            .chain(super::tune::section(data))
            .chain(super::machines::section(data))
            .chain([
            configs_section(data),
            depth_section(data),
            kv_section(data),
            latency_section(data),
            speculative_section(data),
            fidelity_section(data),
            pareto_section(data),
            environment_section(data),
        ])
            .collect(),
    }
}

/// The shootout rows (`report --shootout`) and the rules behind their recommendations.
fn shootout_section(shootout: &super::shootout::Shootout) -> Section {
    let blocks = vec![
        Block::Table(super::shootout::table(shootout)),
        Block::Text(super::shootout::rules_text(shootout)),
    ];
    section("shootout", "Shootout", blocks)
}

/// A series name: the config label, prefixed with its run when the report covers several runs.
fn series_name(data: &ReportData, run_id: i64, label: &str) -> String {
    if data.runs.len() > 1 {
        format!("run {run_id}: {label}")
    } else {
        label.to_string()
    }
}

fn runs_section(data: &ReportData) -> Section {
    let mut table = Table::from_titles(&[
        "run#", "kind", "tag", "status", "started", "ended", "trials#", "samples#", "bakeoff",
        "command", "error",
    ]);
    for r in &data.runs {
        table.push(vec![
            r.id.to_string(),
            r.kind.clone(),
            r.tag.clone().unwrap_or_default(),
            r.status.clone(),
            r.started_at.clone(),
            r.ended_at.clone().unwrap_or_else(|| "-".into()),
            r.trials.to_string(),
            r.samples.to_string(),
            r.bakeoff_version.clone(),
            r.command.clone(),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    section("runs", "Runs", vec![Block::Table(table)])
}

fn configs_section(data: &ReportData) -> Section {
    let mut table = Table::from_titles(&[
        "run#",
        "config",
        "hash",
        "swept flags",
        "pass-through",
        "engine arguments",
        "ok#",
        "skipped#",
        "failed#",
        "memory",
        "notes",
    ]);
    for c in &data.configs {
        let flags: Vec<String> = c.flags.iter().map(|(k, v)| format!("{k} {v}")).collect();
        table.push(vec![
            c.run_id.to_string(),
            c.label.clone(),
            c.hash.clone(),
            flags.join(" "),
            c.extra.join(" "),
            c.server_args
                .as_ref()
                .map(|a| a.join(" "))
                .unwrap_or_else(|| "-".into()),
            c.trials_ok.to_string(),
            c.trials_skipped.to_string(),
            c.trials_failed.to_string(),
            c.memory
                .as_ref()
                .map(|m| format!("{} ({})", human_bytes(m.bytes), m.source))
                .unwrap_or_else(|| "-".into()),
            c.notes.join("; "),
        ]);
    }
    let mut blocks = vec![Block::Text(
        "Every configuration the runs hold. Engine arguments are the full argument vector bakeoff gave llama-server (swept flags, the slot and context defaults it adds, then pass-through flags); memory is the KV cache at that context, planned from the GGUF with llama.cpp's allocation rules.".into(),
    )];
    if data.configs.is_empty() {
        blocks.push(Block::Text("no configurations stored in these runs".into()));
    } else {
        blocks.push(Block::Table(table));
    }
    section("configs", "Configurations", blocks)
}

/// A test name without its depth: `tg32 @ d256 [natural]` → `tg32 [natural]`.
fn test_family(test: &str) -> String {
    match test.split_once(" @ d") {
        Some((head, rest)) => {
            let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{head}{tail}")
        }
        None => test.to_string(),
    }
}

fn depth_chart(data: &ReportData, kind: &str) -> Option<Chart> {
    let cells: Vec<&BenchCell> = data.bench.iter().filter(|b| b.cell.kind == kind).collect();
    if cells.is_empty() {
        return None;
    }
    let families: BTreeSet<String> = cells.iter().map(|b| test_family(&b.cell.test)).collect();
    let mut series: Vec<Series> = Vec::new();
    for b in &cells {
        let family = test_family(&b.cell.test);
        let mut name = series_name(data, b.run_id, &b.cell.config);
        if families.len() > 1 {
            name = format!("{name} · {family}");
        }
        let index = match series.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                series.push(Series {
                    name,
                    points: Vec::new(),
                    color: series.len(),
                    stroke: Stroke::Solid,
                });
                series.len() - 1
            }
        };
        series[index]
            .points
            .push((b.cell.depth as f64, b.summary.median));
    }
    Some(Chart::Line(LineChart {
        id: format!("depth-{kind}"),
        title: format!("{kind} t/s against context depth"),
        x_label: "depth (tokens already in the context)".into(),
        y_label: format!("{kind} t/s (median)"),
        series,
    }))
}

fn bench_table(data: &ReportData) -> Table {
    // The energy columns only where a cell measured energy, the memory column where one
    // measured a peak (as the bench table does).
    let cells = || data.bench.iter().map(|b| &b.cell.energy);
    let energy = cells().any(|e| e.tokens_per_j().is_some() || e.watts().is_some());
    let memory = cells().any(|e| e.peak_bytes().is_some());
    let mut titles = vec![
        "run#",
        "config",
        "test",
        "depth#",
        "median t/s#",
        "95% CI#",
        "mean ± sd#",
        "min–max#",
        "n#",
        "server t/s#",
        "source",
        "notes",
    ];
    let mut telemetry = Vec::new();
    if energy {
        telemetry.extend(["tok/J#", "W#"]);
    }
    if memory {
        telemetry.push("peak mem (vs plan)");
    }
    titles.splice(10..10, telemetry);
    let mut table = Table::from_titles(&titles);
    for b in &data.bench {
        let s = &b.summary;
        let mut notes = Vec::new();
        if b.cell.noisy > 0 {
            notes.push(format!("{} noisy", b.cell.noisy));
        }
        if b.cell.flagged > b.cell.noisy {
            notes.push(format!("{} flagged", b.cell.flagged - b.cell.noisy));
        }
        let mut row = vec![
            b.run_id.to_string(),
            b.cell.config.clone(),
            b.cell.test.clone(),
            b.cell.depth.to_string(),
            num(s.median, 2),
            format!("[{}, {}]", num(s.ci_low, 2), num(s.ci_high, 2)),
            format!("{} ± {}", num(s.mean, 2), num(s.sd, 2)),
            format!("{}–{}", num(s.min, 2), num(s.max, 2)),
            s.n.to_string(),
            opt(b.server_median, 2),
            b.cell.source.clone(),
            notes.join(", "),
        ];
        let e = &b.cell.energy;
        let mut figures = Vec::new();
        if energy {
            figures.extend([opt(e.tokens_per_j(), 2), opt(e.watts(), 1)]);
        }
        if memory {
            figures.push(e.peak_vs_plan());
        }
        row.splice(10..10, figures);
        table.push(row);
    }
    table
}

fn depth_section(data: &ReportData) -> Section {
    let mut blocks = Vec::new();
    if data.bench.is_empty() {
        blocks.push(Block::Text("no bench (pp/tg) results in these runs".into()));
    } else {
        blocks.push(Block::Text("Median tokens per second of every (configuration, test) cell, one line per configuration. Client-clock figures; the server's own figure is beside them in the table.".into()));
        for kind in ["tg", "pp"] {
            if let Some(c) = depth_chart(data, kind) {
                blocks.push(chart(c));
            }
        }
        blocks.push(Block::Table(bench_table(data)));
    }
    section("depth", "Speed against depth", blocks)
}

/// The cells a KV comparison holds together: same run, same other flags, same test.
fn kv_category(data: &ReportData, b: &BenchCell, several_groups: bool) -> String {
    let others = data::non_kv_label(&b.cell.flags);
    let mut name = b.cell.test.clone();
    if several_groups && !others.is_empty() {
        name = format!("{others} · {name}");
    }
    if data.runs.len() > 1 {
        name = format!("run {} · {name}", b.run_id);
    }
    name
}

fn kv_chart(data: &ReportData, kind: &str, several_groups: bool) -> Option<Chart> {
    let cells: Vec<&BenchCell> = data.bench.iter().filter(|b| b.cell.kind == kind).collect();
    if cells.is_empty() {
        return None;
    }
    let mut categories: Vec<String> = Vec::new();
    let mut series: Vec<BarSeries> = Vec::new();
    for b in &cells {
        let category = kv_category(data, b, several_groups);
        if !categories.contains(&category) {
            categories.push(category);
        }
        let kv = data::kv_label(&b.cell.flags);
        if !series.iter().any(|s| s.name == kv) {
            series.push(BarSeries {
                name: kv,
                values: Vec::new(),
            });
        }
    }
    for s in &mut series {
        s.values = categories
            .iter()
            .map(|category| {
                cells
                    .iter()
                    .find(|b| {
                        data::kv_label(&b.cell.flags) == s.name
                            && kv_category(data, b, several_groups) == *category
                    })
                    .map(|b| b.summary.median)
            })
            .collect();
    }
    Some(Chart::Bar(BarChart {
        id: format!("kv-{kind}"),
        title: format!("{kind} t/s by KV cache type"),
        y_label: format!("{kind} t/s (median)"),
        categories,
        series,
    }))
}

fn kv_section(data: &ReportData) -> Section {
    let mut blocks = Vec::new();
    let kv_types: BTreeSet<String> = data
        .bench
        .iter()
        .map(|b| data::kv_label(&b.cell.flags))
        .collect();
    if data.bench.is_empty() {
        blocks.push(Block::Text("no bench (pp/tg) results in these runs".into()));
        return section("kv", "KV cache types", blocks);
    }
    if kv_types.len() == 1 {
        blocks.push(Block::Text(format!(
            "Only one KV cache type ({}) was measured in these runs.",
            kv_types.iter().next().cloned().unwrap_or_default()
        )));
    } else {
        blocks.push(Block::Text("Each test's median t/s per KV cache type, other flags held equal; the ratio is against f16 (or the first type measured) in the same group.".into()));
    }
    let groups: BTreeSet<String> = data
        .bench
        .iter()
        .map(|b| data::non_kv_label(&b.cell.flags))
        .collect();
    for kind in ["tg", "pp"] {
        if let Some(c) = kv_chart(data, kind, groups.len() > 1) {
            blocks.push(chart(c));
        }
    }
    blocks.push(Block::Table(kv_table(data)));
    section("kv", "KV cache types", blocks)
}

fn kv_table(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&[
        "run#",
        "test",
        "other flags",
        "KV type",
        "median t/s#",
        "vs baseline#",
        "KV memory#",
        "n#",
    ]);
    let same_group = |a: &BenchCell, b: &BenchCell| {
        a.run_id == b.run_id
            && a.cell.test == b.cell.test
            && data::non_kv_label(&a.cell.flags) == data::non_kv_label(&b.cell.flags)
    };
    for b in &data.bench {
        let group: Vec<&BenchCell> = data.bench.iter().filter(|o| same_group(o, b)).collect();
        let baseline = group
            .iter()
            .find(|o| data::kv_label(&o.cell.flags) == "f16")
            .or(group.first());
        let ratio = baseline.map(|base| b.summary.median / base.summary.median);
        let memory = data
            .config(b.run_id, b.config_hash.as_deref())
            .and_then(|c| c.memory.as_ref())
            .map(|m| human_bytes(m.bytes))
            .unwrap_or_else(|| "-".into());
        table.push(vec![
            b.run_id.to_string(),
            b.cell.test.clone(),
            data::non_kv_label(&b.cell.flags),
            data::kv_label(&b.cell.flags),
            num(b.summary.median, 2),
            ratio
                .map(|r| format!("{r:.3}×"))
                .unwrap_or_else(|| "-".into()),
            memory,
            b.summary.n.to_string(),
        ]);
    }
    table
}

const LATENCY_METRICS: [(&str, &str); 4] = [
    ("ttft", "TTFT"),
    ("itl", "ITL"),
    ("tpot", "TPOT"),
    ("e2e", "E2E"),
];
const CHART_PERCENTILES: [(&str, Stroke); 3] = [
    ("p50", Stroke::Solid),
    ("p90", Stroke::Dashed),
    ("p99", Stroke::Dotted),
];

fn distribution<'a>(
    step: &'a LoadStep,
    metric: &str,
) -> &'a crate::measure::load::metrics::Distribution {
    match metric {
        "ttft" => &step.table.ttft_ms,
        "itl" => &step.table.itl_ms,
        "tpot" => &step.table.tpot_ms,
        _ => &step.table.e2e_ms,
    }
}

fn latency_chart(data: &ReportData, axis: LoadAxis, metric: (&str, &str)) -> Chart {
    let steps: Vec<&LoadStep> = data
        .load
        .iter()
        .filter(|s| s.axis.is_some_and(|(a, _)| a == axis))
        .collect();
    let mut keys: Vec<(i64, String)> = Vec::new();
    for s in &steps {
        let key = (s.run_id, s.config_label.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut series = Vec::new();
    for (index, (run_id, label)) in keys.iter().enumerate() {
        for (p, stroke) in CHART_PERCENTILES {
            series.push(Series {
                name: format!("{} {p}", series_name(data, *run_id, label)),
                points: steps
                    .iter()
                    .filter(|s| s.run_id == *run_id && s.config_label == *label)
                    .filter_map(|s| Some((s.axis?.1, distribution(s, metric.0).p(p))))
                    .collect(),
                color: index,
                stroke,
            });
        }
    }
    let (axis_id, x_label) = match axis {
        LoadAxis::Concurrency => ("concurrency", "concurrency (requests in flight)"),
        LoadAxis::Rate => ("rate", "offered rate (requests/s)"),
    };
    Chart::Line(LineChart {
        id: format!("latency-{axis_id}-{}", metric.0),
        title: format!("{} against {axis_id}", metric.1),
        x_label: x_label.into(),
        y_label: format!("{} (ms)", metric.1),
        series,
    })
}

fn load_tables(data: &ReportData) -> (Table, Table) {
    let mut steps = Table::from_titles(&[
        "run#",
        "config",
        "step",
        "completed#",
        "errors#",
        "req/s#",
        "output tok/s#",
        "goodput req/s#",
        "client CPU cores#",
        "note",
    ])
    .caption("Load steps");
    let mut latency = Table::from_titles(&[
        "run#", "config", "step", "metric", "p50 ms#", "p90 ms#", "p99 ms#", "mean ms#", "n#",
    ])
    .caption("Latency percentiles");
    for s in &data.load {
        let t = &s.table;
        let errors: u64 = t.errors.values().sum();
        steps.push(vec![
            s.run_id.to_string(),
            s.config_label.clone(),
            t.step.clone(),
            t.completed.to_string(),
            errors.to_string(),
            num(t.request_throughput, 3),
            num(t.output_tps, 2),
            opt(t.goodput_rps, 3),
            num(t.client_cpu_cores, 2),
            t.note.clone().unwrap_or_default(),
        ]);
        for (metric, name) in LATENCY_METRICS {
            let d = distribution(s, metric);
            latency.push(vec![
                s.run_id.to_string(),
                s.config_label.clone(),
                t.step.clone(),
                name.to_string(),
                num(d.p("p50"), 1),
                num(d.p("p90"), 1),
                num(d.p("p99"), 1),
                num(d.mean, 1),
                d.n.to_string(),
            ]);
        }
    }
    (steps, latency)
}

fn latency_section(data: &ReportData) -> Section {
    let mut blocks = Vec::new();
    if data.load.is_empty() {
        blocks.push(Block::Text("no load runs among these runs".into()));
    } else {
        blocks.push(Block::Text("TTFT, ITL, TPOT and E2E percentiles of each load step (p50 solid, p90 dashed, p99 dotted), against the step's concurrency or offered rate. Max-throughput steps have no such axis and appear in the tables only.".into()));
        for axis in [LoadAxis::Concurrency, LoadAxis::Rate] {
            if data
                .load
                .iter()
                .any(|s| s.axis.is_some_and(|(a, _)| a == axis))
            {
                for metric in LATENCY_METRICS {
                    blocks.push(chart(latency_chart(data, axis, metric)));
                }
            }
        }
        let (steps, latency) = load_tables(data);
        blocks.push(Block::Table(steps));
        blocks.push(Block::Table(latency));
    }
    section("latency", "Latency against concurrency", blocks)
}

/// The cell measured without speculation that `b` is compared with: same run, test and flags
/// apart from the speculation settings.
fn without_speculation<'a>(data: &'a ReportData, b: &BenchCell) -> Option<&'a BenchCell> {
    let others = |c: &BenchCell| {
        let mut flags = c.cell.flags.clone();
        flags.remove("--spec-type");
        flags.remove("--spec-draft-n-max");
        flags
    };
    data.bench.iter().find(|o| {
        o.run_id == b.run_id
            && o.cell.test == b.cell.test
            && o.cell.flags.get("--spec-type").is_none_or(|s| s == "none")
            && others(o) == others(b)
    })
}

fn section(id: &'static str, title: &'static str, blocks: Vec<Block>) -> Section {
    Section { id, title, blocks }
}

fn speculative_section(data: &ReportData) -> Section {
    let speculative = |b: &&BenchCell| {
        b.cell.draft_n > 0.0 || b.cell.flags.get("--spec-type").is_some_and(|s| s != "none")
    };
    let cells: Vec<&BenchCell> = data.bench.iter().filter(speculative).collect();
    let steps: Vec<&LoadStep> = data.load.iter().filter(|s| s.drafted.is_some()).collect();
    let gates: Vec<&GateCandidate> = data
        .readiness
        .iter()
        .filter(|c| c.row.draft_acceptance.is_some())
        .collect();
    let (id, title) = ("speculative", "Speculative decoding");
    if cells.is_empty() && steps.is_empty() && gates.is_empty() {
        let text = "no speculative decoding in these runs (no config with --spec-type, and no server reported drafted tokens)";
        return section(id, title, vec![Block::Text(text.into())]);
    }
    let (table, chart) = acceptance(data, &cells, &steps, &gates);
    let text = "Draft acceptance is accepted / drafted tokens as the server reports them (draft_n, draft_n_accepted per request; /metrics counters for load steps). The speed-up compares with the same test and flags without speculation.";
    let blocks = vec![
        Block::Text(text.into()),
        tabulated_chart(Chart::Bar(chart)),
        Block::Table(table),
    ];
    section(id, title, blocks)
}

/// Acceptance of speculative bench cells and load steps, as a table and a bar chart.
fn acceptance(
    data: &ReportData,
    cells: &[&BenchCell],
    steps: &[&LoadStep],
    gates: &[&GateCandidate],
) -> (Table, BarChart) {
    let mut table = Table::from_titles(&[
        "run#",
        "config",
        "test",
        "drafted#",
        "accepted#",
        "acceptance#",
        "t/s#",
        "without spec t/s#",
        "speed-up#",
    ]);
    let mut chart = BarChart {
        id: "speculative-acceptance".into(),
        title: "draft acceptance".into(),
        y_label: "accepted / drafted (%)".into(),
        categories: Vec::new(),
        series: vec![BarSeries {
            name: "draft acceptance %".into(),
            values: Vec::new(),
        }],
    };
    let rows = cells
        .iter()
        .map(|b| bench_acceptance(data, b))
        .chain(steps.iter().map(|s| step_acceptance(data, s)))
        .chain(gates.iter().map(|c| gate_acceptance(data, c)));
    for (category, acceptance, cells) in rows {
        table.push(cells);
        chart.categories.push(category);
        chart.series[0].values.push(acceptance.map(|a| a * 100.0));
    }
    (table, chart)
}

/// (chart category, acceptance, table row) of a speculative bench cell.
fn bench_acceptance(data: &ReportData, b: &BenchCell) -> (String, Option<f64>, Vec<String>) {
    let base = without_speculation(data, b).map(|o| o.summary.median);
    let shown = if b.cell.draft_n > 0.0 {
        pct(b.cell.acceptance())
    } else {
        "nothing drafted".into()
    };
    let speedup = base.map(|w| format!("{:.2}×", b.summary.median / w));
    let category = format!(
        "{} · {}",
        series_name(data, b.run_id, &b.cell.config),
        b.cell.test
    );
    let row = vec![
        b.run_id.to_string(),
        b.cell.config.clone(),
        b.cell.test.clone(),
        num(b.cell.draft_n, 0),
        num(b.cell.draft_accepted, 0),
        shown,
        num(b.summary.median, 2),
        opt(base, 2),
        speedup.unwrap_or_else(|| "-".into()),
    ];
    (category, b.cell.acceptance(), row)
}

/// (chart category, acceptance, table row) of a load step whose server drafted tokens.
fn step_acceptance(data: &ReportData, s: &LoadStep) -> (String, Option<f64>, Vec<String>) {
    let acceptance = s.accepted.zip(s.drafted).map(|(a, d)| a / d);
    let category = format!(
        "{} · load {}",
        series_name(data, s.run_id, &s.config_label),
        s.table.step
    );
    let row = vec![
        s.run_id.to_string(),
        s.config_label.clone(),
        format!("load {}", s.table.step),
        opt(s.drafted, 0),
        opt(s.accepted, 0),
        pct(acceptance),
        num(s.table.output_tps, 2),
        "-".into(),
        "-".into(),
    ];
    (category, acceptance, row)
}

/// (chart category, acceptance, table row) of a gate candidate that speculated.
fn gate_acceptance(data: &ReportData, c: &GateCandidate) -> (String, Option<f64>, Vec<String>) {
    let r = &c.row;
    let category = format!("{} · gate", series_name(data, c.run_id, &r.candidate));
    let row = vec![
        c.run_id.to_string(),
        format!("{} ({})", r.candidate, r.flags.join(" ")),
        "gate greedy prompts".into(),
        "-".into(),
        "-".into(),
        pct(r.draft_acceptance),
        opt(r.tg_tps, 2),
        "-".into(),
        "-".into(),
    ];
    (category, r.draft_acceptance, row)
}

/// Long details are cut (at a character boundary) so one check cannot swamp the report.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn fidelity_section(data: &ReportData) -> Section {
    let (id, title) = ("fidelity", "Fidelity gates");
    if data.fidelity.is_empty() && data.readiness.is_empty() {
        return section(
            id,
            title,
            vec![Block::Text("no fidelity checks stored".into())],
        );
    }
    let mut blocks = Vec::new();
    if !data.readiness.is_empty() {
        blocks.push(Block::Table(readiness_table(data)));
    }
    blocks.push(Block::Table(fidelity_summary(data)));
    blocks.push(Block::Table(fidelity_checks(data)));
    section(id, title, blocks)
}

/// The readiness table of gate runs: one row per candidate, styled by its overall status.
fn readiness_table(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&[
        "run#",
        "candidate",
        "flags",
        "overall",
        "tg t/s#",
        "draft acceptance#",
        "KV memory#",
        "mean KLD#",
        "blocker",
    ])
    .caption("Readiness (bakeoff gate)");
    for c in &data.readiness {
        let r = &c.row;
        let overall = r.overall.map_or("-", |s| s.as_str());
        let candidate = if r.baseline {
            format!("{} (baseline)", r.candidate)
        } else {
            r.candidate.clone()
        };
        let cells = vec![
            c.run_id.to_string(),
            candidate,
            r.flags.join(" "),
            overall.to_string(),
            opt(r.tg_tps, 2),
            pct(r.draft_acceptance),
            r.kv_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
            opt(c.mean_kld(), 5),
            r.blocker.clone().unwrap_or_default(),
        ];
        match r.overall {
            Some(status) => table.push_class(cells, status.as_str()),
            None => table.push(cells),
        }
    }
    table
}

/// Checks per candidate by status; a row takes the style of its worst status.
fn fidelity_summary(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&["run#", "candidate", "pass#", "warn#", "fail#", "info#"])
        .caption("Checks per candidate");
    let mut candidates: Vec<(i64, &str)> = Vec::new();
    for f in &data.fidelity {
        if !candidates.contains(&(f.run_id, f.candidate.as_str())) {
            candidates.push((f.run_id, &f.candidate));
        }
    }
    for (run_id, candidate) in candidates {
        let count = |status: &str| {
            data.fidelity
                .iter()
                .filter(|f| f.run_id == run_id && f.candidate == candidate && f.status == status)
                .count()
        };
        let statuses = ["pass", "warn", "fail", "info"];
        let mut cells = vec![run_id.to_string(), candidate.to_string()];
        cells.extend(statuses.iter().map(|s| count(s).to_string()));
        let worst = ["fail", "warn", "pass"]
            .into_iter()
            .find(|s| count(s) > 0)
            .unwrap_or("info");
        table.push_class(cells, worst);
    }
    table
}

fn fidelity_checks(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&[
        "run#",
        "trial#",
        "candidate",
        "config",
        "kind",
        "name",
        "status",
        "value#",
        "detail",
    ])
    .caption("Checks");
    for f in &data.fidelity {
        let config = f
            .config_hash
            .as_ref()
            .and_then(|h| data.configs.iter().find(|c| &c.hash == h))
            .map(|c| c.label.clone())
            .or_else(|| f.config_hash.clone())
            .unwrap_or_else(|| "-".into());
        let cells = vec![
            f.run_id.to_string(),
            f.trial_id
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            f.candidate.clone(),
            config,
            f.kind.clone(),
            f.name.clone(),
            f.status.clone(),
            opt(f.value, 4),
            shorten(&f.detail, 600),
        ];
        table.push_class(cells, &f.status);
    }
    table
}

fn pareto_section(data: &ReportData) -> Section {
    let (id, title) = ("pareto", "Speed, memory and fidelity");
    let (points, with_fidelity) = data.pareto();
    if points.is_empty() {
        let text = "no tg results to place on the speed / memory / fidelity plane";
        return section(id, title, vec![Block::Text(text.into())]);
    }
    let text = format!(
        "Speed is the mean over a configuration's tg tests of their median t/s; memory is the KV cache at the run's context (or a stored memory sample); fidelity is the mean KL-divergence stored by fidelity checks. A configuration is pareto-optimal when no other is at least as good on every figure and better on one. {}",
        if with_fidelity {
            "All three figures count."
        } else {
            "Fidelity does not count: not every configuration has a stored KLD."
        }
    );
    let scatter = ScatterChart {
        id: "pareto".into(),
        title: "tg speed against KV memory".into(),
        x_label: "KV cache (MiB)".into(),
        y_label: "tg t/s".into(),
        points: pareto_points(data, &points),
        highlight_label: "pareto-optimal".into(),
    };
    let blocks = vec![
        Block::Text(text),
        tabulated_chart(Chart::Scatter(scatter)),
        Block::Table(pareto_table(&points)),
    ];
    section(id, title, blocks)
}

/// Points numbered as in the table; those lacking speed or memory are in the table only.
fn pareto_points(data: &ReportData, points: &[ParetoPoint]) -> Vec<ScatterPoint> {
    points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let (speed, memory) = (p.speed_tps?, p.memory.as_ref()?);
            Some(ScatterPoint {
                label: (i + 1).to_string(),
                name: format!("{}: {}", i + 1, series_name(data, p.run_id, &p.label)),
                x: memory.bytes as f64 / (1024.0 * 1024.0),
                y: speed,
                highlight: p.optimal,
            })
        })
        .collect()
}

fn pareto_table(points: &[ParetoPoint]) -> Table {
    let mut table = Table::from_titles(&[
        "point#",
        "run#",
        "config",
        "tg t/s#",
        "tests",
        "memory#",
        "memory source",
        "mean KLD#",
        "pareto-optimal",
    ]);
    for (i, p) in points.iter().enumerate() {
        let memory = |f: fn(&data::Memory) -> String| p.memory.as_ref().map(f);
        let cells = vec![
            (i + 1).to_string(),
            p.run_id.to_string(),
            p.label.clone(),
            opt(p.speed_tps, 2),
            p.tests.join(", "),
            memory(|m| human_bytes(m.bytes)).unwrap_or_else(|| "-".into()),
            memory(|m| m.source.clone()).unwrap_or_else(|| "-".into()),
            opt(p.kld, 5),
            if p.optimal { "yes" } else { "no" }.into(),
        ];
        match p.optimal {
            true => table.push_class(cells, "optimal"),
            false => table.push(cells),
        }
    }
    table
}

/// A fingerprint as key/value rows (GPUs one row each).
fn fingerprint_rows(table: &mut Table, fingerprint: &serde_json::Value) {
    let Some(map) = fingerprint.as_object() else {
        return;
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            ("gpus", serde_json::Value::Array(gpus)) => {
                for gpu in gpus {
                    table.push(vec!["gpu".into(), gpu.to_string()]);
                }
            }
            ("ram_bytes", v) => table.push(vec![
                key.clone(),
                v.as_u64().map(human_bytes).unwrap_or_else(|| v.to_string()),
            ]),
            (_, serde_json::Value::String(s)) => table.push(vec![key.clone(), s.clone()]),
            (_, serde_json::Value::Null) => table.push(vec![key.clone(), "-".into()]),
            (_, v) => table.push(vec![key.clone(), v.to_string()]),
        }
    }
}

fn runs_list(runs: &[i64]) -> String {
    runs.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn environment_section(data: &ReportData) -> Section {
    let mut blocks = Vec::new();
    for s in &data.systems {
        let caption = format!("System {} (runs {})", s.hash, runs_list(&s.runs));
        let mut table = Table::from_titles(&["property", "value"]).caption(caption);
        fingerprint_rows(&mut table, &s.fingerprint);
        for (name, (value, unit)) in &s.measurements {
            table.push(vec![
                format!("{name} (measured)"),
                format!("{value:.2} {unit}"),
            ]);
        }
        blocks.push(Block::Table(table));
    }
    if data.systems.is_empty() {
        blocks.push(Block::Text("no system fingerprint stored".into()));
    }
    blocks.push(Block::Table(engines_table(data)));
    blocks.push(Block::Table(models_table(data)));
    section("environment", "Environment", blocks)
}

fn engines_table(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&[
        "kind",
        "path",
        "version",
        "build#",
        "commit",
        "built with",
        "runs",
    ])
    .caption("Engines");
    for e in &data.engines {
        table.push(vec![
            e.kind.clone(),
            e.path.clone(),
            e.version.clone().unwrap_or_default(),
            e.build_number.map(|b| b.to_string()).unwrap_or_default(),
            e.commit.clone().unwrap_or_default(),
            e.built_with.clone().unwrap_or_default(),
            runs_list(&e.runs),
        ]);
    }
    table
}

fn models_table(data: &ReportData) -> Table {
    let mut table = Table::from_titles(&[
        "path",
        "size#",
        "sha256",
        "architecture",
        "name",
        "parameters#",
        "runs",
    ])
    .caption("Models");
    for m in &data.models {
        let text = |key: &str| m.summary[key].as_str().unwrap_or_default().to_string();
        let parameters = m.summary["parameters"].as_u64();
        table.push(vec![
            m.path.clone(),
            human_bytes(m.size),
            m.sha256.clone(),
            text("architecture"),
            text("name"),
            parameters
                .map(|p| format!("{:.2} M", p as f64 / 1e6))
                .unwrap_or_default(),
            runs_list(&m.runs),
        ]);
    }
    table
}

/// A table whose first column names the rows and whose others are numbers, one per series.
fn numeric_table(first: &str, series: impl Iterator<Item = String>, caption: String) -> Table {
    let mut titles = vec![first.to_string()];
    titles.extend(series.map(|s| format!("{s}#")));
    let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    Table::from_titles(&refs).caption(caption)
}

/// A chart's data as a table (how Markdown shows a chart).
pub fn chart_table(chart: &Chart) -> Table {
    match chart {
        Chart::Line(c) => line_table(c),
        Chart::Bar(c) => {
            let series = c.series.iter().map(|s| s.name.clone());
            let mut table =
                numeric_table("category", series, format!("{} ({})", c.title, c.y_label));
            for (i, category) in c.categories.iter().enumerate() {
                let mut cells = vec![category.clone()];
                cells.extend(
                    c.series
                        .iter()
                        .map(|s| opt(s.values.get(i).copied().flatten(), 2)),
                );
                table.push(cells);
            }
            table
        }
        Chart::Scatter(c) => {
            let (x, y) = (format!("{}#", c.x_label), format!("{}#", c.y_label));
            let mut table = Table::from_titles(&["point#", "name", &x, &y, &c.highlight_label])
                .caption(c.title.clone());
            for p in &c.points {
                let highlight = if p.highlight { "yes" } else { "no" };
                let cells = [&p.label, &p.name, &num(p.x, 2), &num(p.y, 2), highlight];
                table.push(cells.iter().map(|c| c.to_string()));
            }
            table
        }
        Chart::Pareto(c) => {
            let (x, y) = (format!("{}#", c.x_label), format!("{}#", c.y_label));
            let titles = ["point#", "name", &x, &y, "95% CI", "fidelity", "front"];
            let mut table = Table::from_titles(&titles).caption(c.title.clone());
            for p in &c.points {
                let ci = format!("[{}, {}]", num(p.low, 2), num(p.high, 2));
                let front = if p.front { "yes" } else { "no" };
                let fidelity = format!("{:?}", p.fidelity).to_lowercase();
                let cells = [&p.label, &p.name, &num(p.x, 2), &num(p.y, 2), &ci];
                let mut row: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
                row.extend([fidelity, front.to_string()]);
                table.push(row);
            }
            table
        }
    }
}

/// One row per x value, one column per series.
fn line_table(c: &LineChart) -> Table {
    let mut xs: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let series = c.series.iter().map(|s| s.name.clone());
    let mut table = numeric_table(&format!("{}#", c.x_label), series, c.title.clone());
    for x in xs {
        let mut cells = vec![super::svg::tick_label(x)];
        cells.extend(
            c.series
                .iter()
                .map(|s| opt(s.points.iter().find(|p| p.0 == x).map(|p| p.1), 2)),
        );
        table.push(cells);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_drop_the_depth() {
        assert_eq!(test_family("tg32 @ d256 [natural]"), "tg32 [natural]");
        assert_eq!(test_family("pp64 @ d1024"), "pp64");
        assert_eq!(test_family("tg32"), "tg32");
    }

    #[test]
    fn shorten_cuts_at_characters() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ab", 5), "ab");
    }
}
