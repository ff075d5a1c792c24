//! Machines side by side: the same configuration measured on several hosts, in one table and
//! one chart per test kind (a report over runs from more than one machine: `--each` on a team
//! store, or runs pushed from laptops and servers).

use super::data::{BenchCell, ReportData};
use super::document::{Block, Section};
use super::render::Table;
use super::svg::{BarChart, BarSeries, Chart};
use crate::analysis::compare::{self, gpus_text};
use crate::domain::units::human_bytes;
use crate::measure::stats::{self, Summary};
use std::collections::{BTreeMap, BTreeSet};

/// What one configuration measured on one test: its model, swept flags and test.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: String,
    model: String,
    config: String,
    test: String,
}

/// One configuration on one test, with each machine's pooled samples.
struct Row {
    key: Key,
    /// Host → every sample of that key on it (runs of one host pooled).
    by_host: BTreeMap<String, Vec<f64>>,
}

/// The section, when the report's runs come from more than one machine; `None` otherwise.
pub fn section(data: &ReportData) -> Option<Section> {
    let hosts = hosts(data);
    if hosts.len() < 2 {
        return None;
    }
    let mut blocks = vec![Block::Table(machines_table(data, &hosts))];
    let rows = shared_rows(data);
    if rows.is_empty() {
        blocks.push(Block::Text(format!(
            "These runs come from {} machines, but no configuration was measured on more than one of them.",
            hosts.len()
        )));
    } else {
        blocks.push(Block::Text("Each configuration measured on more than one machine: median t/s with its 95 % CI on each (a machine's samples from several runs pooled), the fastest machine, and how much faster it is than the slowest, with the ratio's 95 % CI and compare's verdict (FASTER only when the CI clears 1 and Mann–Whitney agrees; * marks too few samples for the test).".into()));
        let several_models = rows
            .iter()
            .map(|r| &r.key.model)
            .collect::<BTreeSet<_>>()
            .len()
            > 1;
        for kind in ["tg", "pp"] {
            if let Some(chart) = chart(&rows, &hosts, kind, several_models) {
                blocks.push(Block::Chart {
                    chart,
                    tabulated: true,
                });
            }
        }
        blocks.push(Block::Table(side_by_side(&rows, &hosts)));
    }
    Some(Section {
        id: "machines",
        title: "Machines side by side",
        blocks,
    })
}

/// The host of a run; runs without one are `?`.
fn host_of(data: &ReportData, run_id: i64) -> String {
    data.runs
        .iter()
        .find(|r| r.id == run_id)
        .and_then(|r| r.host.clone())
        .unwrap_or_else(|| "?".into())
}

/// The machines the report's runs come from, by name.
fn hosts(data: &ReportData) -> Vec<String> {
    let hosts: BTreeSet<String> = data.runs.iter().map(|r| host_of(data, r.id)).collect();
    hosts.into_iter().collect()
}

/// Each machine's hardware, from the fingerprint of its newest run in the report.
fn machines_table(data: &ReportData, hosts: &[String]) -> Table {
    let mut table = Table::from_titles(&["host", "CPU", "cores#", "memory", "GPUs", "run ids"]);
    for host in hosts {
        let runs: Vec<i64> = data
            .runs
            .iter()
            .filter(|r| host_of(data, r.id) == *host)
            .map(|r| r.id)
            .collect();
        let system = data
            .systems
            .iter()
            .rev()
            .find(|s| s.runs.iter().any(|id| runs.contains(id)));
        let fingerprint = system.map(|s| s.fingerprint.clone()).unwrap_or_default();
        let text = |key: &str| fingerprint[key].as_str().unwrap_or("-").to_string();
        let cores = fingerprint["cpu_cores"].as_u64();
        table.push(vec![
            host.clone(),
            text("cpu_model"),
            cores.map_or("-".into(), |c| c.to_string()),
            fingerprint["ram_bytes"]
                .as_u64()
                .map_or("-".into(), human_bytes),
            gpus_text(&fingerprint["gpus"]),
            runs.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    table.caption("The machines")
}

/// The configurations measured on two machines or more, in key order.
fn shared_rows(data: &ReportData) -> Vec<Row> {
    let mut rows: BTreeMap<Key, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for b in &data.bench {
        rows.entry(key(b))
            .or_default()
            .entry(host_of(data, b.run_id))
            .or_default()
            .extend(&b.cell.values);
    }
    rows.into_iter()
        .filter(|(_, by_host)| by_host.values().filter(|v| !v.is_empty()).count() > 1)
        .map(|(key, by_host)| Row { key, by_host })
        .collect()
}

fn key(b: &BenchCell) -> Key {
    Key {
        kind: b.cell.kind.clone(),
        model: b.cell.model.clone(),
        config: b.cell.config.clone(),
        test: b.cell.test.clone(),
    }
}

fn config_text(config: &str) -> &str {
    if config.is_empty() {
        "(defaults)"
    } else {
        config
    }
}

/// A chart's category for a row: `config · test`, with the model where several are shown.
fn category(row: &Row, several_models: bool) -> String {
    let config = config_text(&row.key.config);
    match several_models {
        true => format!("{} · {config} · {}", row.key.model, row.key.test),
        false => format!("{config} · {}", row.key.test),
    }
}

/// One bar per machine for each configuration of `kind` (`tg` or `pp`).
fn chart(rows: &[Row], hosts: &[String], kind: &str, several_models: bool) -> Option<Chart> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.key.kind == kind).collect();
    if rows.is_empty() {
        return None;
    }
    let series = hosts
        .iter()
        .map(|host| BarSeries {
            name: host.clone(),
            values: rows
                .iter()
                .map(|r| summary(r, host).map(|s| s.median))
                .collect(),
        })
        .collect();
    Some(Chart::Bar(BarChart {
        id: format!("machines-{kind}"),
        title: format!("{kind} t/s on each machine"),
        y_label: format!("{kind} t/s (median)"),
        categories: rows.iter().map(|r| category(r, several_models)).collect(),
        series,
    }))
}

/// A machine's summary of one row's samples (`None`: not measured there).
fn summary(row: &Row, host: &str) -> Option<Summary> {
    row.by_host
        .get(host)
        .filter(|v| !v.is_empty())
        .map(|v| Summary::of(v))
}

/// Model, config, test, then each machine's median [CI] (n), the fastest and its lead.
fn side_by_side(rows: &[Row], hosts: &[String]) -> Table {
    let mut titles = vec!["model", "config", "test"];
    titles.extend(hosts.iter().map(String::as_str));
    titles.extend(["fastest", "fastest / slowest (95% CI, verdict)#"]);
    let mut table = Table::from_titles(&titles);
    for row in rows {
        let summaries: Vec<(&String, Option<Summary>)> =
            hosts.iter().map(|h| (h, summary(row, h))).collect();
        let mut cells = vec![
            row.key.model.clone(),
            config_text(&row.key.config).to_string(),
            row.key.test.clone(),
        ];
        cells.extend(summaries.iter().map(|(_, s)| match s {
            Some(s) => format!(
                "{:.2} [{:.2}, {:.2}] (n={})",
                s.median, s.ci_low, s.ci_high, s.n
            ),
            None => "-".into(),
        }));
        let measured: Vec<(&String, f64)> = summaries
            .iter()
            .filter_map(|(h, s)| s.as_ref().map(|s| (*h, s.median)))
            .collect();
        let fastest = measured.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let slowest = measured.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        cells.push(fastest.map_or("-".into(), |f| f.0.clone()));
        cells.push(match (fastest, slowest) {
            (Some(fast), Some(slow)) => lead(&row.by_host[fast.0], &row.by_host[slow.0]),
            _ => "-".into(),
        });
        table.push(cells);
    }
    table.caption("The same configuration on each machine")
}

/// How much faster the fastest machine is than the slowest: the ratio of medians, its 95 %
/// bootstrap CI and the verdict `compare` gives (`FASTER` only when the CI clears 1 and the
/// Mann–Whitney test agrees; `*` where too few samples allow the test).
fn lead(fast: &[f64], slow: &[f64]) -> String {
    let (fast_median, slow_median) = (Summary::of(fast).median, Summary::of(slow).median);
    if slow_median <= 0.0 {
        return "-".into();
    }
    let (low, high) = stats::bootstrap_ratio_ci(slow, fast);
    let (_, p_value) = stats::mann_whitney(slow, fast);
    let min_p = stats::mann_whitney_min_p(slow.len(), fast.len());
    let ratio = fast_median / slow_median;
    let verdict = compare::verdict(low, high, p_value, min_p);
    format!("{ratio:.2}× [{low:.2}, {high:.2}] {verdict}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::report::{document, markdown};
    use crate::store::{NewTrial, Store};
    use crate::system::Fingerprint;
    use serde_json::json;

    /// A bench run on `host` (its fingerprint says so too): one config, tg16, values as given.
    fn bench_on(store: &Store, host: &str, kv: &str, values: &[f64]) -> i64 {
        let fingerprint = Fingerprint {
            hostname: host.into(),
            cpu_model: format!("{host} CPU"),
            cpu_cores: 8,
            ..Default::default()
        };
        let system = store.system_id(&fingerprint).unwrap();
        let run = store
            .begin_run("bench", "bakeoff bench", system, None, &json!({}))
            .unwrap();
        store.set_run_host(run, host).unwrap();
        let config = EngineConfig::default()
            .with_flag("-ctk", kv)
            .with_flag("-ctv", kv);
        let workload =
            json!({"test": "tg16", "kind": "tg", "tokens": 16, "depth": 0, "prompts": "random"});
        for (rep, value) in values.iter().enumerate() {
            let trial = NewTrial::new(Some(&config), &workload, rep as u32);
            let id = store.begin_trial(run, &trial).unwrap();
            store
                .sample(id, "tg_tps", *value, Unit::TokensPerSecond, "client", 0)
                .unwrap();
            store.end_trial(id, "ok", None).unwrap();
        }
        run
    }

    #[test]
    fn one_configuration_on_two_machines_is_one_row_and_one_chart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let runs = [
            bench_on(&store, "box-a", "f16", &[10.0, 11.0, 12.0]),
            bench_on(&store, "box-b", "f16", &[30.0, 31.0, 32.0]),
            // Measured on one machine only: not side by side.
            bench_on(&store, "box-b", "q8_0", &[20.0, 21.0]),
        ];
        let data = crate::report::data::gather(&store, &runs).unwrap();
        let section = section(&data).expect("two machines");
        let md = markdown::render(&document::Document {
            title: "t".into(),
            intro: vec![],
            sections: vec![section],
        });
        assert!(md.contains("| box-a | box-a CPU | 8 |"), "{md}");
        assert!(
            md.contains("| -ctk f16 -ctv f16 | tg16 | 11.00 ["),
            "box-a's median first: {md}"
        );
        assert!(
            md.contains("| box-b | 2.82× ["),
            "box-b fastest, 31/11: {md}"
        );
        // Every box-b sample beats every box-a one, but 3 against 3 cannot reach p < 0.05.
        assert!(md.contains("] FASTER* |"), "{md}");
        assert!(!md.contains("q8_0 | tg16"), "q8_0 ran on one machine: {md}");
        let doc = document::build(&data);
        let html = crate::report::html::render(&doc);
        assert!(
            html.contains("id=\"machines-tg\" data-kind=\"bar\" data-marks=\"2\""),
            "one bar per machine"
        );
    }

    #[test]
    fn one_machine_has_no_section() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let runs = [
            bench_on(&store, "box-a", "f16", &[10.0]),
            bench_on(&store, "box-a", "q8_0", &[9.0]),
        ];
        let data = crate::report::data::gather(&store, &runs).unwrap();
        assert!(section(&data).is_none());
    }
}
