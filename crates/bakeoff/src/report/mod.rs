//! Reports: bench tables (Markdown in llama-bench's shape, CSV, JSON, JSONL) and comparisons
//! (`table`), and whole-run reports (`bakeoff report`): data gathered from the store once
//! (`data`), laid out as a format-free document (`document`), written by one exporter per format.

pub mod audit;
pub mod bench_cells;
pub mod data;
pub mod document;
pub mod escape;
pub mod html;
pub mod journal;
pub mod load;
pub mod machines;
pub mod markdown;
pub mod models;
pub mod plan;
pub mod readiness;
pub mod render;
pub mod shootout;
pub mod svg;
pub mod table;
pub mod tune;

use data::ReportData;
use std::path::Path;

/// Writes a report in one format.
pub trait Exporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8>;
}

/// A self-contained HTML page with inline SVG charts.
pub struct HtmlExporter;
/// Markdown tables (charts become tables).
pub struct MarkdownExporter;
/// The gathered data as JSON, for other tools.
pub struct JsonExporter;
/// The shootout table as CSV when gathered, else the bench cells.
pub struct CsvExporter;

impl Exporter for HtmlExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        html::render(&document::build(data)).into_bytes()
    }
}

impl Exporter for MarkdownExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        markdown::render(&document::build(data)).into_bytes()
    }
}

impl Exporter for JsonExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(data).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

impl Exporter for CsvExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        if let Some(shootout) = &data.shootout {
            return shootout::table(shootout).csv().into_bytes();
        }
        let cells: Vec<_> = data.bench.iter().map(|b| b.cell.clone()).collect();
        let models: Vec<_> = data
            .models
            .iter()
            .map(bench_cells::report_model_info)
            .collect();
        table::render_models(table::Format::Csv, &models, &cells).into_bytes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Markdown,
    Json,
    Csv,
}

impl ReportFormat {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "html" | "htm" => ReportFormat::Html,
            "md" | "markdown" => ReportFormat::Markdown,
            "json" => ReportFormat::Json,
            "csv" => ReportFormat::Csv,
            _ => return None,
        })
    }

    /// The format a file name's extension asks for.
    pub fn from_path(path: &Path) -> Option<Self> {
        Self::parse(path.extension()?.to_str()?)
    }

    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ReportFormat::Html => Box::new(HtmlExporter),
            ReportFormat::Markdown => Box::new(MarkdownExporter),
            ReportFormat::Json => Box::new(JsonExporter),
            ReportFormat::Csv => Box::new(CsvExporter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::quality::kld::KldReport;
    use crate::quality::readiness::Readiness;
    use crate::quality::Status;
    use crate::store::{NewTrial, Store};
    use crate::system::Fingerprint;
    use serde_json::json;

    const SCRIPT: &str = "</script><script>alert(1)</script>";
    const IMG: &str = "\"><img src=x onerror=alert(1)>";

    /// A store holding one bench run (two KV types at two depths), one load run (two
    /// concurrency steps) and fidelity rows whose text tries to inject markup.
    fn store_with_runs(dir: &Path) -> (Store, Vec<i64>) {
        let store = Store::open(&dir.join("r.db")).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let bench = store
            .begin_run("bench", "bakeoff bench", system, Some(SCRIPT), &json!({}))
            .unwrap();
        for (kv, speed) in [("f16", 100.0), ("q8_0", 90.0)] {
            let config = EngineConfig::default()
                .with_flag("-ctk", kv)
                .with_flag("-ctv", kv);
            for depth in [0, 256] {
                let test = if depth == 0 {
                    "tg16".to_string()
                } else {
                    format!("tg16 @ d{depth}")
                };
                let workload = json!({"test": test, "kind": "tg", "tokens": 16, "depth": depth, "prompts": "random"});
                for rep in 0..2 {
                    let trial = NewTrial::new(Some(&config), &workload, rep);
                    let id = store.begin_trial(bench, &trial).unwrap();
                    let value = speed - depth as f64 / 64.0 + f64::from(rep);
                    store
                        .sample(id, "tg_tps", value, Unit::TokensPerSecond, "client", 0)
                        .unwrap();
                    store.end_trial(id, "ok", None).unwrap();
                }
            }
            let check = crate::store::NewCheck {
                candidate: kv,
                config: Some(&config),
                kind: "kld",
                name: "mean_kld",
                status: if kv == "f16" { "pass" } else { "warn" },
                value: Some(if kv == "f16" { 0.0 } else { 0.005 }),
                detail: json!({"excerpt": IMG, "prompt": SCRIPT}),
            };
            store.record_check(bench, None, &check).unwrap();
        }
        let load = store
            .begin_run("load", "bakeoff load", system, None, &json!({}))
            .unwrap();
        let config = EngineConfig {
            extra: vec!["-fa".into(), "on".into()],
            ..Default::default()
        };
        for n in [1, 2] {
            let workload = json!({"test": format!("c{n}"), "kind": "load", "shape": {"kind": "concurrency", "users": n}});
            let trial = NewTrial::new(Some(&config), &workload, 0);
            let id = store.begin_trial(load, &trial).unwrap();
            for (seq, ms) in [10.0, 20.0, 30.0].into_iter().enumerate() {
                for metric in ["ttft_ms", "tpot_ms", "e2e_ms", "itl_ms"] {
                    store
                        .sample(
                            id,
                            metric,
                            ms * f64::from(n),
                            Unit::Milliseconds,
                            "client",
                            seq,
                        )
                        .unwrap();
                }
            }
            store
                .sample(
                    id,
                    "output_tps",
                    50.0 * f64::from(n),
                    Unit::TokensPerSecond,
                    "step",
                    0,
                )
                .unwrap();
            store.end_trial(id, "ok", None).unwrap();
        }
        (store, vec![bench, load])
    }

    #[test]
    fn html_has_every_section_chart_and_escapes_injected_text() {
        let dir = tempfile::tempdir().unwrap();
        let (store, runs) = store_with_runs(dir.path());
        let data = data::gather(&store, &runs).unwrap();
        let html = String::from_utf8(HtmlExporter.serialize(&data)).unwrap();
        for id in [
            "runs",
            "configs",
            "depth",
            "kv",
            "latency",
            "speculative",
            "fidelity",
            "pareto",
            "environment",
        ] {
            assert!(
                html.contains(&format!("<section id=\"{id}\">")),
                "section {id}"
            );
        }
        // One line per KV type, two depths each.
        assert!(
            html.contains("id=\"depth-tg\" data-kind=\"line\" data-marks=\"4\""),
            "{html}"
        );
        // Two steps × p50/p90/p99 for each latency metric.
        assert!(
            html.contains("id=\"latency-concurrency-ttft\" data-kind=\"line\" data-marks=\"6\"")
        );
        assert!(html.contains("id=\"kv-tg\" data-kind=\"bar\" data-marks=\"4\""));
        // Injected markup only ever appears as text.
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "unescaped markup"
        );
        assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("&amp;quot;&amp;gt;&amp;lt;img")
                || html.contains("&lt;img src=x onerror=alert(1)&gt;")
        );
        // Mean KLD from the fidelity rows reaches the pareto table.
        assert!(html.contains("0.00500"), "KLD in the pareto table");
    }

    #[test]
    fn markdown_carries_the_same_numbers_as_tables() {
        let dir = tempfile::tempdir().unwrap();
        let (store, runs) = store_with_runs(dir.path());
        let data = data::gather(&store, &runs).unwrap();
        let md = String::from_utf8(MarkdownExporter.serialize(&data)).unwrap();
        for title in [
            "## Runs",
            "## Configurations",
            "## Speed against depth",
            "## KV cache types",
            "## Latency against concurrency",
            "## Speculative decoding",
            "## Fidelity gates",
            "## Speed, memory and fidelity",
            "## Environment",
        ] {
            assert!(md.contains(title), "{title}");
        }
        // f16 at depth 0: reps 100 and 101 → median 100.50; the depth chart as a table row.
        assert!(md.contains("| 0 | 100.50 | 90.50 |"), "{md}");
        assert!(!md.contains("<script") && !md.contains("<img"));
        // A pipe inside a cell must not split it.
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            assert!(!line.contains("||"), "{line}");
        }
    }

    #[test]
    fn empty_fidelity_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.db")).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run("bench", "bakeoff bench", system, None, &json!({}))
            .unwrap();
        let data = data::gather(&store, &[run]).unwrap();
        let md = String::from_utf8(MarkdownExporter.serialize(&data)).unwrap();
        assert!(md.contains("no fidelity checks stored"));
        let html = String::from_utf8(HtmlExporter.serialize(&data)).unwrap();
        assert!(html.contains("no fidelity checks stored"));
    }

    fn readiness(name: &str, baseline: bool, model: &Path, kld: Option<f64>) -> Readiness {
        Readiness {
            candidate: name.into(),
            baseline,
            model: model.to_path_buf(),
            flags: vec!["-ctk".into(), name.into(), "-ctv".into(), name.into()],
            canaries: vec![],
            hygiene: None,
            agreement: None,
            speculative: None,
            kld: kld.map(|mean_kld| KldReport {
                mean_kld,
                ..Default::default()
            }),
            kld_estimate: None,
            ppl: None,
            tg_tps: Some(if baseline { 50.0 } else { 48.0 }),
            tg_samples: vec![if baseline { 50.0 } else { 48.0 }],
            draft_acceptance: (!baseline).then_some(0.25),
            tg_telemetry: None,
            kv_bytes: Some(if baseline { 2 << 20 } else { 1 << 20 }),
            outcomes: vec![],
            overall: Some(if baseline { Status::Pass } else { Status::Warn }),
            blocker: None,
        }
    }

    #[test]
    fn gate_runs_give_readiness_kld_and_pareto_points() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut runs) = store_with_runs(dir.path());
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, b"not a gguf").unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let gate = store
            .begin_run("gate", "bakeoff gate", system, None, &json!({}))
            .unwrap();
        let engine = store
            .engine_id("llama-server", "/bin/llama-server", None, Some("1"))
            .unwrap();
        for row in [
            readiness("f16", true, &model, None),
            readiness("q8_0", false, &model, Some(0.0042)),
        ] {
            store.record_readiness(gate, engine, &row).unwrap();
        }
        runs.push(gate);
        let data = data::gather(&store, &runs).unwrap();
        assert_eq!(data.readiness.len(), 2);
        assert!(
            data.fidelity.iter().all(|f| f.kind != "readiness"),
            "readiness rows are not checks"
        );
        // The bench run's q8_0 config has the gate's flags: the gate's exact KLD reaches it.
        let bench_q8 = data
            .configs
            .iter()
            .find(|c| c.run_id == runs[0] && c.label.contains("q8_0"))
            .unwrap();
        assert_eq!(data.mean_kld(bench_q8), Some(0.0042));
        // Without KLD rows of its own, the bench's f16 config is the gate's baseline: zero.
        let without_rows = ReportData {
            fidelity: vec![],
            ..data.clone()
        };
        let bench_f16 = data
            .configs
            .iter()
            .find(|c| c.run_id == runs[0] && c.label.contains("f16"))
            .unwrap();
        assert_eq!(without_rows.mean_kld(bench_f16), Some(0.0));
        assert_eq!(without_rows.mean_kld(bench_q8), None);
        let gate_only = data::gather(&store, &[gate]).unwrap();
        let (points, with_fidelity) = gate_only.pareto();
        assert_eq!(points.len(), 2);
        assert!(
            with_fidelity,
            "the baseline's KLD is 0, the candidate's stored"
        );
        // f16 is faster, q8_0 smaller: neither dominates the other.
        assert!(points.iter().all(|p| p.optimal));
        let md = String::from_utf8(MarkdownExporter.serialize(&gate_only)).unwrap();
        assert!(md.contains("**Readiness (bakeoff gate)**"));
        assert!(
            md.contains(
                "| q8_0 | -ctk q8_0 -ctv q8_0 | warn | 48.00 | 25.0% | 1.00 MiB | 0.00420 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(
            ReportFormat::from_path(Path::new("r.HTML")),
            Some(ReportFormat::Html)
        );
        assert_eq!(
            ReportFormat::from_path(Path::new("r.md")),
            Some(ReportFormat::Markdown)
        );
        assert_eq!(ReportFormat::from_path(Path::new("r.txt")), None);
        assert_eq!(ReportFormat::from_path(Path::new("report")), None);
    }
}
