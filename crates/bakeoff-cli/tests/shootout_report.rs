//! `bakeoff report --shootout` and `bakeoff compare --across` over a store filled through the
//! library: a bench run of two real model files (SmolLM2 and Gemma 3 270M) × two engine rows with
//! build names, and a gate run on one build that passes SmolLM2 and fails Gemma. This is stored
//! data for the renderers, not an engine path: no engine runs here.

use crate::common;

use bakeoff::domain::{EngineConfig, Unit};
use bakeoff::engines::build::BuildIdentity;
use bakeoff::formats::gguf::{GgmlType, GgufFile};
use bakeoff::model::plan::{plan_kv, KvSettings};
use bakeoff::model::ModelFacts;
use bakeoff::quality::kld::KldReport;
use bakeoff::quality::readiness::Readiness;
use bakeoff::quality::Status;
use bakeoff::store::{NewTrial, Store};
use bakeoff::system::Fingerprint;
use common::{gemma, run, smollm, Sandbox};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1";
const GEMMA: &str = "gemma-3-270m-q4_k_m";

struct Stored {
    sandbox: Sandbox,
    bench: i64,
    gate: i64,
    /// SmolLM2 on each build alone, one run each.
    per_build: [i64; 2],
}

fn stored() -> &'static Stored {
    static STORED: OnceLock<Stored> = OnceLock::new();
    STORED.get_or_init(|| {
        let sandbox = Sandbox::new();
        let store = Store::open(&sandbox.db()).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        store
            .system_measurement(system, "memory_bandwidth", 20.0, "GB/s")
            .unwrap();
        let builds = [
            (0, build_row(&store, sandbox.dir.path(), "b11434")),
            (1, build_row(&store, sandbox.dir.path(), "b11000")),
        ];
        let models = [smollm(), gemma()];
        let bench = bench_run(&store, system, &models, &builds);
        let gate = gate_run(&store, system, builds[0].1);
        let per_build = builds.map(|b| bench_run(&store, system, &models[..1], &[b]));
        Stored {
            sandbox,
            bench,
            gate,
            per_build,
        }
    })
}

/// An engine row of a named build (its binary need not exist: nothing is started).
fn build_row(store: &Store, dir: &Path, name: &str) -> i64 {
    let identity = BuildIdentity {
        name: name.into(),
        binary: dir.join(name).join("llama-server"),
        version: Some(format!("version of {name}")),
        backends: vec!["CPU".into()],
        binary_sha256: format!("sha-{name}"),
        ..Default::default()
    };
    store.build_engine_id("llama-server", &identity).unwrap()
}

/// tg t/s of (model, build): SmolLM2 100 / 90, Gemma 50 / 45; pp four times that.
fn speed(model: usize, build: usize) -> f64 {
    let base = [100.0, 50.0][model];
    base * [1.0, 0.9][build]
}

/// A bench run of `models` × `builds` (each its speed index and engine row).
fn bench_run(store: &Store, system: i64, models: &[PathBuf], builds: &[(usize, i64)]) -> i64 {
    let run = store
        .begin_run(
            "bench",
            "bakeoff bench",
            system,
            Some("shootout"),
            &json!({}),
        )
        .unwrap();
    let config = EngineConfig::default()
        .with_flag("-c", "512")
        .with_flag("-fa", "on");
    for (m, path) in models.iter().enumerate() {
        let model_id = store.model(path).unwrap().id;
        for (b, engine_id) in builds {
            for (kind, test, factor) in [("pp", "pp64", 4.0), ("tg", "tg32", 1.0)] {
                let workload = json!({"test": test, "kind": kind, "tokens": 32});
                for rep in 0..3 {
                    let trial = NewTrial {
                        engine_id: Some(*engine_id),
                        model_id: Some(model_id),
                        ..NewTrial::new(Some(&config), &workload, rep)
                    };
                    let id = store.begin_trial(run, &trial).unwrap();
                    let value = speed(m, *b) * factor + f64::from(rep) - 1.0;
                    let metric = format!("{kind}_tps");
                    store
                        .sample(id, &metric, value, Unit::TokensPerSecond, "client", 0)
                        .unwrap();
                    store.end_trial(id, "ok", None).unwrap();
                }
            }
        }
    }
    store.end_run(run, "ok", None).unwrap();
    run
}

fn readiness(model: &Path, overall: Status, kld: f64) -> Readiness {
    Readiness {
        candidate: "q8_0".into(),
        baseline: false,
        model: model.to_path_buf(),
        flags: vec!["-ctk".into(), "q8_0".into()],
        canaries: vec![],
        hygiene: None,
        agreement: None,
        speculative: None,
        kld: Some(KldReport {
            mean_kld: kld,
            ..Default::default()
        }),
        kld_estimate: None,
        ppl: None,
        tg_tps: None,
        tg_samples: vec![],
        draft_acceptance: None,
        tg_telemetry: None,
        kv_bytes: None,
        outcomes: vec![],
        overall: Some(overall),
        blocker: None,
    }
}

fn gate_run(store: &Store, system: i64, engine: i64) -> i64 {
    let run = store
        .begin_run("gate", "bakeoff gate", system, None, &json!({}))
        .unwrap();
    store
        .record_readiness(run, engine, &readiness(&smollm(), Status::Pass, 0.001))
        .unwrap();
    store
        .record_readiness(run, engine, &readiness(&gemma(), Status::Fail, 0.2))
        .unwrap();
    store.end_run(run, "ok", None).unwrap();
    run
}

fn bakeoff(args: &[String]) -> String {
    let mut cmd = stored().sandbox.cmd();
    cmd.args(args);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(60));
    assert!(status.success(), "bakeoff {args:?}: {stderr}");
    stdout
}

fn shootout_args(extra: &[&str]) -> Vec<String> {
    let s = stored();
    let mut args = vec![
        "report".to_string(),
        s.bench.to_string(),
        s.gate.to_string(),
        "--shootout".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn json_rows() -> Vec<Value> {
    let out = bakeoff(&shootout_args(&["--reference", "b11000", "-o", "json"]));
    serde_json::from_str(&out).unwrap()
}

fn rules(row: &Value) -> Vec<&str> {
    let list = row["recommendation"].as_array().unwrap();
    list.iter().map(|r| r["rule"].as_str().unwrap()).collect()
}

#[test]
fn shootout_json_has_one_row_per_model_and_build_with_identities() {
    let rows = json_rows();
    let ids: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["build"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            (SMOL, "b11434"),
            (SMOL, "b11000"),
            (GEMMA, "b11434"),
            (GEMMA, "b11000")
        ]
    );
    let quants: Vec<&str> = rows.iter().map(|r| r["quant"].as_str().unwrap()).collect();
    assert_eq!(quants, ["Q4_1", "Q4_1", "Q4_K_M", "Q4_K_M"]);
    let size = std::fs::metadata(smollm()).unwrap().len();
    assert_eq!(rows[0]["size"], size);
    assert_eq!(rows[0]["architecture"], "llama");
    // Medians of 99/100/101 and 44/45/46; CIs around them.
    assert_eq!(rows[0]["tg32"]["median"], 100.0);
    assert_eq!(rows[3]["tg32"]["median"], 45.0);
    assert_eq!(rows[0]["pp64"]["median"], 400.0);
    let tg = &rows[0]["tg32"];
    assert!(tg["ci_low"].as_f64() <= Some(100.0) && tg["ci_high"].as_f64() >= Some(100.0));
    assert!(rows[0]["roofline_pct"].as_f64().unwrap() > 0.0);
}

#[test]
fn kv_memory_is_planned_at_the_served_context() {
    let rows = json_rows();
    let facts = ModelFacts::from_gguf(&GgufFile::open(&smollm()).unwrap());
    let f16 = GgmlType::from_name("f16").unwrap();
    let settings = KvSettings::new(512, f16, f16);
    let planned = plan_kv(&facts, &settings).unwrap();
    assert_eq!(rows[0]["kv"]["bytes"], planned.total_bytes);
    assert_eq!(rows[0]["kv"]["source"], "KV plan: ctx 512, K f16, V f16");
    assert_ne!(
        rows[2]["kv"]["bytes"], rows[0]["kv"]["bytes"],
        "Gemma's own plan"
    );
}

#[test]
fn reference_ratio_and_recommendation_rules() {
    let rows = json_rows();
    // Against SmolLM2 on b11000 (the first row of that build): tg 100 / 90.
    let ratio = rows[0]["tg32_ratio"].as_f64().unwrap();
    assert!((ratio - 100.0 / 90.0).abs() < 1e-9, "{ratio}");
    assert_eq!(rows[1]["tg32_ratio"], 1.0);
    // The gate ran on b11434 only: its verdicts reach those rows, the b11000 rows have none.
    assert_eq!(rows[0]["gate"]["status"], "pass");
    assert_eq!(rows[2]["gate"]["status"], "fail");
    assert!(rows[1]["gate"].is_null() && rows[3]["gate"].is_null());
    assert_eq!(
        rules(&rows[0]),
        [
            "fastest-tg",
            "fastest-pp",
            "smallest-passing-gate",
            "best-quality-within-pct"
        ]
    );
    // 90 t/s is within 10 % of 100, with the same bits per weight: a tie on quality.
    assert_eq!(rules(&rows[1]), ["best-quality-within-pct"]);
    assert_eq!(rules(&rows[2]), ["fails-gate"]);
    assert!(rules(&rows[3]).is_empty());
}

#[test]
fn shootout_markdown_names_rules_and_reference() {
    let md = bakeoff(&shootout_args(&["--reference", "b11000"]));
    let lines: Vec<&str> = md.lines().collect();
    assert!(
        lines[0].starts_with("| model | build | architecture | file size | params | quant | pp64 t/s [95% CI] | tg32 t/s [95% CI] | KV memory | % roofline | gate | pp64 vs SmolLM2-135M-Instruct.Q4_1 · b11000 | tg32 vs SmolLM2-135M-Instruct.Q4_1 · b11000 | recommendation |"),
        "{md}"
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("| ")).count(), 6);
    assert!(
        md.contains(&format!("| {GEMMA} | b11434 | gemma3 |")),
        "{md}"
    );
    assert!(
        md.contains("not recommended: fails the gate [fails-gate]"),
        "{md}"
    );
    assert!(md.contains("Recommendations are proposed from the numbers"));
    // --within moves the best-quality window: at 5 %, SmolLM2 on b11000 (10 % slower) is out.
    let narrow = bakeoff(&shootout_args(&["--within", "5", "-o", "csv"]));
    let smol_b11000 = narrow.lines().nth(2).unwrap();
    assert!(
        smol_b11000.starts_with(&format!("{SMOL},b11000,")),
        "{narrow}"
    );
    assert!(smol_b11000.ends_with(",-"), "{narrow}");
}

#[test]
fn an_unknown_reference_is_a_one_line_error_with_the_rows() {
    let mut cmd = stored().sandbox.cmd();
    cmd.args(shootout_args(&["--reference", "Q8_0"]));
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(60));
    assert!(!status.success() && stdout.is_empty());
    assert!(
        stderr.contains("--reference Q8_0: no shootout row's build or model name matches"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{SMOL} · b11434")), "{stderr}");
}

#[test]
fn a_shootout_of_a_gate_run_alone_is_refused() {
    let mut cmd = stored().sandbox.cmd();
    cmd.args(["report", &stored().gate.to_string(), "--shootout"]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(60));
    assert!(!status.success() && stdout.is_empty());
    let expected = format!(
        "run(s) {} hold no pp or tg cell: nothing for a shootout",
        stored().gate
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn html_report_has_a_shootout_section() {
    let out = stored().sandbox.dir.path().join("shootout.html");
    let mut args = shootout_args(&["--reference", "Q4_K_M"]);
    args.extend(["--out".to_string(), out.display().to_string()]);
    bakeoff(&args);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<section id=\"shootout\">\n<h2>Shootout</h2>"));
    assert!(html.contains("<a href=\"#shootout\">Shootout</a>"));
    assert!(
        html.contains("default-src 'none'"),
        "CSP as in every report"
    );
    assert!(
        html.contains(&format!("<td>{GEMMA}</td><td>b11434</td>")),
        "{html}"
    );
    assert!(html.contains("[fails-gate]"));
    assert!(html.contains("tg32 vs gemma-3-270m-q4_k_m · b11434"));
    // The rest of the report is still there.
    assert!(html.contains("<section id=\"environment\">"));
}

#[test]
fn compare_across_build_pairs_each_model_with_the_reference_build() {
    let s = stored();
    let args = [
        "compare".to_string(),
        s.bench.to_string(),
        "--across".into(),
        "build".into(),
        "--reference".into(),
        "b11434".into(),
    ];
    let md = bakeoff(&args);
    assert!(
        md.starts_with(&format!("matched 4 cell(s) of run {} across build: reference b11434 (A) against b11000 (B); cells pair up by model, swept flags (config) and test.", s.bench)),
        "{md}"
    );
    assert!(
        md.contains(&format!("| {SMOL} | b11434 | b11000 | -c 512 -fa on | tg32 | 100.00 (client) | 90.00 (client) | 0.900 (-10.0%) |")),
        "{md}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json".into());
    let json: Value = serde_json::from_str(&bakeoff(&json_args)).unwrap();
    assert_eq!(json["across"]["dimension"], "build");
    assert_eq!(json["rows"].as_array().unwrap().len(), 4);
    assert_eq!(json["rows"][3]["group"], GEMMA);
}

#[test]
fn two_runs_that_differ_only_in_build_match_and_say_so() {
    let [a, b] = stored().per_build;
    let md = bakeoff(&["compare".into(), a.to_string(), b.to_string()]);
    assert!(
        md.starts_with(&format!("matched 2 cell(s) of run {a} (A, 2 cells) and run {b} (B, 2 cells); cells pair up by swept flags (config) and test; the runs differ in build: b11434 vs b11000.")),
        "{md}"
    );
    assert!(
        md.contains("| -c 512 -fa on | tg32 | 100.00 (client) | 90.00 (client) | 0.900 (-10.0%) |"),
        "{md}"
    );
}

#[test]
fn each_cell_gets_its_own_models_roofline() {
    let s = stored();
    let store = Store::open_existing(&s.sandbox.db()).unwrap();
    let mut cells = bakeoff::analysis::compare::cells(&store.run_detail(s.bench).unwrap());
    let (smol, gemma_row) = (
        store.model(&smollm()).unwrap(),
        store.model(&gemma()).unwrap(),
    );
    bakeoff::report::bench_cells::add_rooflines(
        &mut cells,
        std::slice::from_ref(&smol),
        Some(20.0),
    );
    let with: Vec<(&str, &str, bool)> = cells
        .iter()
        .map(|c| (c.model.as_str(), c.kind.as_str(), c.roofline_tps.is_some()))
        .collect();
    let expected = [(SMOL, "pp", false), (SMOL, "tg", true)].repeat(2);
    assert_eq!(with[..4], expected[..], "only SmolLM2's tg cells");
    assert!(cells[4..].iter().all(|c| c.roofline_tps.is_none()));
    bakeoff::report::bench_cells::add_rooflines(&mut cells, &[smol, gemma_row], Some(20.0));
    let (smol_tg, gemma_tg) = (
        cells[1].roofline_tps.unwrap(),
        cells[5].roofline_tps.unwrap(),
    );
    assert!(
        smol_tg > gemma_tg,
        "Gemma reads more bytes per token: {smol_tg} vs {gemma_tg}"
    );
}
