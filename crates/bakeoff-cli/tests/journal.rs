//! `bakeoff journal` on real runs: two `bakeoff bench` runs of SmolLM2 on a real llama-server,
//! judged into entries with proposed verdicts, rendered as the Markdown log and as JSON.

use crate::common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

fn bakeoff(sandbox: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    run(cmd, LIMIT)
}

fn ok(sandbox: &Sandbox, args: &[&str]) -> String {
    expect_ok(sandbox.cmd(), args, LIMIT)
}

fn json(sandbox: &Sandbox, args: &[&str]) -> Value {
    expect_json(sandbox.cmd(), args, LIMIT)
}

/// A small real bench run of SmolLM2 (pp16 and tg8, 2 repetitions) tagged `tag`.
fn bench(sandbox: &Sandbox, tag: &str, flags: &[&str]) {
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args([
        "-p", "16", "-n", "8", "-r", "2", "--warmup", "0", "--tag", tag,
    ]);
    cmd.args(flags);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "bench {tag}: {stderr}");
}

/// The verdict the documented rule gives for a set of headline cell verdicts.
fn expected_verdict(rows: &[Value]) -> &'static str {
    let headline: Vec<&str> = rows
        .iter()
        .filter(|r| r["headline"] == true)
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    if headline.iter().any(|v| v.starts_with("SLOWER")) {
        "REVERTED"
    } else if headline.iter().any(|v| v.starts_with("FASTER")) {
        "KEEP"
    } else {
        "NO IMPACT"
    }
}

#[test]
fn journal_judges_real_runs_and_renders_the_log() {
    let sandbox = Sandbox::new();
    bench(&sandbox, "batch-default", &[]);
    bench(&sandbox, "batch-256", &["-b", "256"]);

    let entry = json(
        &sandbox,
        &[
            "journal",
            "add",
            "MoE batch size -b 256",
            "--change",
            "-b 256 vs default (2048)",
            "--before",
            "batch-default",
            "--after",
            "batch-256",
            "--json",
        ],
    );
    assert_eq!(
        (entry["before_run"].as_i64(), entry["after_run"].as_i64()),
        (Some(1), Some(2))
    );
    let evidence = &entry["evidence"];
    // Different flags in the two runs: cells are matched test by test.
    assert_eq!(evidence["matched_by"], "test");
    assert_eq!(evidence["headline"], "tg");
    let rows = evidence["rows"].as_array().unwrap();
    let tg = rows
        .iter()
        .find(|r| r["test"] == "tg8")
        .expect("tg8 compared");
    assert_eq!(tg["config"], "(defaults) → -b 256");
    assert_eq!(tg["headline"], true);
    assert_eq!(
        (tg["before_n"].as_u64(), tg["after_n"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(tg["ci_low"].as_f64().unwrap() <= tg["ci_high"].as_f64().unwrap());
    let p = tg["p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "p = {p}");
    let proposed = expected_verdict(rows);
    assert_eq!(entry["proposed"], proposed);
    assert_eq!(entry["verdict"], proposed);
    assert_eq!(entry["verdict_by"], "proposal");
    assert!(
        evidence["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["what"] == "flags"),
        "the flag change is listed among the differences: {evidence}"
    );

    // Untested and overridden entries.
    ok(
        &sandbox,
        &[
            "journal",
            "add",
            "amdgpu.noretry=0",
            "--change",
            "kernel cmdline",
            "--verdict",
            "pending",
        ],
    );
    let overridden = json(
        &sandbox,
        &[
            "journal",
            "add",
            "batch 256, judged by hand",
            "--before",
            "batch-default",
            "--after",
            "batch-256",
            "--verdict",
            "BLOCKED",
            "--note",
            "needs pp8192 runs",
            "--json",
        ],
    );
    assert_eq!(overridden["verdict"], "BLOCKED");
    assert_eq!(overridden["verdict_by"], "hand");
    assert_eq!(overridden["proposed"], proposed);

    let md = ok(&sandbox, &["journal", "show", "--md"]);
    assert!(md.starts_with("# Optimization Log\n"), "{md}");
    assert!(md.contains("## 1. MoE batch size -b 256\n"), "{md}");
    assert!(
        md.contains("- **Change:** -b 256 vs default (2048)\n"),
        "{md}"
    );
    assert!(
        md.contains("- **Benchmark:** run 1 (batch-default) → run 2 (batch-256)\n"),
        "{md}"
    );
    assert!(
        md.contains("| config | test | before | after | after/before | 95% CI |"),
        "{md}"
    );
    assert!(md.contains("| (defaults) → -b 256 | tg8 | "), "{md}");
    assert!(
        md.contains(&format!("- **Verdict:** {proposed} — ")),
        "{md}"
    );
    assert!(md.contains("## 2. amdgpu.noretry=0\n"), "{md}");
    assert!(md.contains("- **Verdict:** PENDING\n"), "{md}");
    assert!(
        md.contains(&format!(
            "- **Verdict:** BLOCKED (set by hand; bakeoff proposed {proposed}: "
        )),
        "{md}"
    );
    assert!(md.contains("- **Notes:** needs pp8192 runs\n"), "{md}");

    let all = json(&sandbox, &["journal", "show", "--json"]);
    let verdicts: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, [proposed, "PENDING", "BLOCKED"]);

    // The PENDING entry, measured later: its runs are attached and it is judged.
    let judged = json(
        &sandbox,
        &[
            "journal", "set", "2", "--before", "1", "--after", "2", "--json",
        ],
    );
    assert_eq!(
        (judged["verdict"].as_str(), judged["verdict_by"].as_str()),
        (Some(proposed), Some("proposal"))
    );
    assert_eq!(judged["after_run"], 2);
    let text = ok(&sandbox, &["journal", "show", "2"]);
    assert!(
        text.starts_with("#2  ")
            && text.contains("runs     run 1 (batch-default) → run 2 (batch-256)"),
        "{text}"
    );
}

#[test]
fn a_failed_fidelity_gate_reverts_and_nothing_to_judge_is_an_error() {
    let sandbox = Sandbox::new();
    bench(&sandbox, "base", &[]);
    bench(&sandbox, "q8", &["-ctk", "q8_0"]);
    // Gate checks as `bakeoff gate` stores them: here in run 1 (standing in for a gate run) for two
    // candidates, and then in the after-run itself.
    let store = bakeoff::store::Store::open(&sandbox.db()).unwrap();
    let gate_row = |run: i64, candidate: &str, name: &str, status: &str| {
        let check = bakeoff::store::NewCheck {
            candidate,
            config: None,
            kind: "gate",
            name,
            status,
            value: None,
            detail: serde_json::json!({}),
        };
        store.record_check(run, None, &check).unwrap();
    };
    gate_row(1, "q8_0", "mean_kld", "pass");
    gate_row(1, "q4_0", "mean_kld", "fail");
    let add = |gate: &str| {
        let args = [
            "journal",
            "add",
            "K cache q8_0",
            "--before",
            "base",
            "--after",
            "q8",
            "--gate",
            gate,
            "--json",
        ];
        bakeoff(&sandbox, &args)
    };
    let (status, stdout, stderr) = add("base:q4_0");
    assert!(status.success(), "{stderr}");
    let entry: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(entry["verdict"], "REVERTED");
    assert_eq!(
        entry["evidence"]["reason"],
        "fidelity gate failed: mean_kld (q4_0)"
    );
    let (status, stdout, _) = add("base:q8_0");
    assert!(status.success());
    let entry: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(entry["evidence"]["gates"][0]["status"], "pass");
    // A passed gate is never the reason to revert. The speed verdict of two 2-rep runs can still
    // say SLOWER on a busy machine (it did in CI), so only that reason may revert here.
    let reason = entry["evidence"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.starts_with("fidelity gate failed"), "{entry}");
    if entry["verdict"] == "REVERTED" {
        assert!(
            reason.starts_with("slower"),
            "a passed gate does not revert: {entry}"
        );
    }
    let (status, _, stderr) = add("base:f16");
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains(
            "error: run 1 has no gate checks for candidate 'f16'\nhint: its candidates: q8_0, q4_0"
        ),
        "{stderr}"
    );

    gate_row(2, "-ctk q8_0", "greedy agreement", "fail");
    drop(store);
    let entry = json(
        &sandbox,
        &[
            "journal",
            "add",
            "K cache q8_0",
            "--before",
            "base",
            "--after",
            "q8",
            "--json",
        ],
    );
    assert_eq!(entry["verdict"], "REVERTED");
    assert_eq!(entry["evidence"]["gates"][0]["status"], "fail");
    assert!(
        entry["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("fidelity gate failed: greedy agreement (-ctk q8_0)"),
        "{entry}"
    );

    let (status, stdout, stderr) = bakeoff(&sandbox, &["journal", "add", "no runs, no verdict"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: no evidence and no verdict\nhint: "),
        "{stderr}"
    );
    let (status, _, stderr) = bakeoff(
        &sandbox,
        &["journal", "add", "x", "--before", "base", "--after", "nope"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("error: no run 'nope'"), "{stderr}");
    let (status, _, stderr) = bakeoff(&sandbox, &["journal", "add", "x", "--verdict", "maybe"]);
    assert_eq!(status.code(), Some(2));
    // --verdict is a clap choice now: the error is clap's, listing the verdicts.
    assert!(
        stderr.contains("invalid value 'maybe' for '--verdict <VERDICT>'")
            && stderr.contains("[possible values: KEEP, REVERTED, NO-IMPACT, PENDING, BLOCKED]"),
        "{stderr}"
    );
}

const SCRIPT: &str = "<script>alert(1)</script>";

/// Two stored bench runs tagged with markup (as `bakeoff bench --tag` would store them), three
/// repetitions of one tg cell each, written straight to the sandbox's store: no engine needed.
fn hostile_runs(sandbox: &Sandbox) {
    use bakeoff::domain::{EngineConfig, Unit};
    use bakeoff::store::{NewTrial, Store};
    let store = Store::open(&sandbox.db()).unwrap();
    let system = store
        .system_id(&bakeoff::system::Fingerprint::collect())
        .unwrap();
    let config = EngineConfig::default().with_flag("-b", "256");
    let workload = serde_json::json!({"test": "tg16", "kind": "tg", "tokens": 16, "depth": 0, "prompts": "random"});
    for (tag, speed) in [(format!("a{SCRIPT}"), 100.0), (format!("b{SCRIPT}"), 90.0)] {
        let params = serde_json::json!({});
        let run = store
            .begin_run("bench", "bakeoff bench", system, Some(&tag), &params)
            .unwrap();
        for rep in 0..3 {
            let trial = NewTrial::new(Some(&config), &workload, rep);
            let id = store.begin_trial(run, &trial).unwrap();
            let value = speed + f64::from(rep);
            store
                .sample(id, "tg_tps", value, Unit::TokensPerSecond, "client", 0)
                .unwrap();
            store.end_trial(id, "ok", None).unwrap();
        }
        store.end_run(run, "ok", None).unwrap();
    }
}

// Regression: `journal show --md` printed entry titles, notes and run tags as raw HTML while
// `report -o r.md` escaped the same tag.
#[test]
fn journal_and_report_markdown_escape_hostile_titles_and_tags() {
    let sandbox = Sandbox::new();
    hostile_runs(&sandbox);
    let title = format!("title {SCRIPT}");
    let note = "note <img src=x onerror=alert(1)> | pipe";
    let args = [
        "journal", "add", &title, "--change", SCRIPT, "--before", "1", "--after", "2", "--note",
        note, "--json",
    ];
    ok(&sandbox, &args);
    let md = ok(&sandbox, &["journal", "show", "--md"]);
    assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
    assert!(
        md.contains("## 1. title &lt;script&gt;alert(1)&lt;/script&gt;\n"),
        "{md}"
    );
    assert!(
        md.contains("- **Benchmark:** run 1 (a&lt;script&gt;alert(1)&lt;/script&gt;) → run 2 (b&lt;script&gt;"),
        "{md}"
    );
    assert!(
        md.contains("- **Notes:** note &lt;img src=x onerror=alert(1)&gt; \\| pipe\n"),
        "{md}"
    );
    let report = sandbox.dir.path().join("r.md");
    let report_arg = report.to_str().unwrap();
    ok(&sandbox, &["report", "1", "2", "-o", report_arg]);
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(
        report.contains("a&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{report}"
    );
    assert!(!report.contains("<script"), "{report}");
}
