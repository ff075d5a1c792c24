//! `bakeoff gate` against a real llama-server and llama-perplexity on SmolLM2: the fidelity
//! gates bite (a random-weight model with the same vocabulary FAILS every one), a near-lossless
//! change does not, and the readiness table is stored and re-printed.

use crate::common;

use common::{random_model, run, smollm, Sandbox};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(2400);

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

/// Write a candidates file for SmolLM2: `body` follows its `model = ...` line.
fn candidates(path: &Path, body: &str) {
    write(path, &format!("model = \"{}\"\n{body}", smollm().display()));
}

fn gate(sandbox: &Sandbox, file: &Path, extra: &[&str]) -> (Value, String) {
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(file).args(["-o", "json"]).args(extra);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "bakeoff gate failed: {stderr}");
    (serde_json::from_str(&stdout).expect("gate -o json"), stderr)
}

fn candidate<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["candidate"] == name)
        .unwrap_or_else(|| panic!("no candidate {name} in {report}"))
}

fn outcome(row: &Value, check: &str) -> (String, f64) {
    let o = row["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == check)
        .unwrap_or_else(|| {
            panic!(
                "{} has no {check} outcome: {}",
                row["candidate"], row["outcomes"]
            )
        });
    (
        o["status"].as_str().unwrap().to_string(),
        o["value"].as_f64().unwrap(),
    )
}

#[test]
fn fidelity_gates_fail_a_random_model_and_pass_a_near_lossless_kv_cache() {
    let sandbox = Sandbox::new();
    let dir = sandbox.dir.path();
    let random = dir.join("random.gguf");
    random_model(&sandbox, &random);

    let file = dir.join("candidates.toml");
    candidates(
        &file,
        r#"ctx = 2048
[baseline]
name = "f16"
flags = "-fa on -t 1"
[[candidate]]
name = "q8_0"
flags = "-fa on -t 1 -ctk q8_0 -ctv q8_0"
[[candidate]]
name = "q4_0"
flags = "-fa on -t 1 -ctk q4_0 -ctv q4_0"
[[candidate]]
name = "random"
model = "random.gguf"
flags = "-fa on -t 1"
[checks]
kld = "both"
kld_chunks = 8
agreement_prompts = 3
agreement_tokens = 24
http_positions = 8
tg_reps = 1
tg_tokens = 16
"#,
    );
    let (report, stderr) = gate(&sandbox, &file, &[]);

    let baseline = candidate(&report, "f16");
    assert_eq!(baseline["baseline"], true);
    let base_passed = baseline["canaries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == true)
        .count();
    assert!(
        base_passed > 0,
        "SmolLM2 passes no canary: the canary gate cannot bite: {}",
        baseline["canaries"]
    );
    assert!(baseline["ppl"].as_f64().unwrap() > 1.0);
    // The noise floor: the baseline against itself on one slot without the prompt cache.
    assert_eq!(
        baseline["agreement"]["exact_rate"], 1.0,
        "greedy decoding is not repeatable: {stderr}"
    );

    let random = candidate(&report, "random");
    assert_eq!(random["overall"], "fail");
    for check in [
        "mean_kld",
        "same_top",
        "ppl_ratio",
        "http_kld",
        "greedy_prefix",
        "canary_loss",
    ] {
        let (status, value) = outcome(random, check);
        assert_eq!(status, "fail", "random weights pass {check} = {value}");
    }

    let q8 = candidate(&report, "q8_0");
    assert_ne!(q8["overall"], "fail", "q8_0 KV failed: {}", q8["outcomes"]);
    let q4 = candidate(&report, "q4_0");
    let kld = |row: &Value| row["kld"]["mean_kld"].as_f64().unwrap();
    assert!(kld(q8) < 0.03, "q8_0 mean KLD {}", kld(q8));
    assert!(
        kld(q4) > kld(q8),
        "q4_0 KLD {} not above q8_0 KLD {}",
        kld(q4),
        kld(q8)
    );
    assert!(kld(&random.clone()) > 1.0);
    for row in [q8, q4, random] {
        assert!(row["kv_bytes"].as_u64().unwrap() > 0);
        assert_eq!(
            row["hygiene"]["problems"],
            serde_json::json!([]),
            "{}",
            row["candidate"]
        );
    }
    assert!(q4["kv_bytes"].as_u64() < q8["kv_bytes"].as_u64());

    // Stored: the table comes back from the database, and as Markdown.
    let mut show = sandbox.cmd();
    show.args(["gate", "--show", "last", "-o", "json"]);
    let (status, stdout, stderr) = run(show, LIMIT);
    assert!(status.success(), "{stderr}");
    let stored: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stored["candidates"], report["candidates"]);
    let mut md = sandbox.cmd();
    md.args(["gate", "--show", "last"]);
    let (_, table, _) = run(md, LIMIT);
    assert!(
        table.starts_with(
            "| Candidate | Gate | PPL status | Coherence | tg t/s / accept | KV @ 2K | Blocker |"
        ),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2 + 4, "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("| random | FAIL |")),
        "{table}"
    );
}

#[test]
fn speculation_is_checked_for_losslessness_and_draft_timings() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("spec.toml");
    candidates(
        &file,
        r#"ctx = 1024
[baseline]
name = "plain"
flags = "-t 1"
[[candidate]]
name = "ngram"
flags = "-t 1 --spec-type ngram-mod"
[checks]
kld = "off"
canaries = false
agreement_prompts = 3
agreement_tokens = 48
tg_reps = 1
tg_tokens = 32
"#,
    );
    let (report, _) = gate(&sandbox, &file, &[]);
    let ngram = candidate(&report, "ngram");
    let spec = &ngram["speculative"];
    assert_eq!(spec["prompts"], 3, "{ngram}");
    let (_, divergences) = outcome(ngram, "spec_divergences");
    let (_, ties) = outcome(ngram, "spec_near_ties");
    assert_eq!(
        (divergences + ties) as usize,
        spec["divergences"].as_array().unwrap().len()
    );
    for d in spec["divergences"].as_array().unwrap() {
        assert!(
            d["baseline_gap"].is_number(),
            "a divergence without its logprob gap: {d}"
        );
    }
    // ngram-mod drafts on this text; when it drafts, llama-server reports draft timings.
    assert!(ngram["draft_acceptance"].is_number(), "{ngram}");
    assert_eq!(ngram["hygiene"]["problems"], serde_json::json!([]));
}

#[test]
fn a_candidate_the_engine_refuses_is_a_blocker_and_the_rest_still_run() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("bad.toml");
    candidates(
        &file,
        r#"ctx = 1024
[baseline]
name = "plain"
flags = "-t 1"
[[candidate]]
name = "typo"
flags = "-t 1 --flash-attn-typo on"
[[candidate]]
name = "user-suite"
flags = "-t 1"
[checks]
kld = "off"
agreement = false
tg_reps = 0
suite = "suite.toml"
"#,
    );
    write(
        &sandbox.dir.path().join("suite.toml"),
        "[[canary]]\nname = \"impossible\"\nprompt = \"Say hello.\"\nmax_tokens = 8\nexpect = { kind = \"echo\", marker = \"ⱯNOT-SAID-ɅNYWHERE\" }\n",
    );
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(&file).args(["-o", "json", "--strict"]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert_eq!(
        status.code(),
        Some(1),
        "--strict exits 1 when a candidate FAILs: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("the table is printed before exiting");
    let typo = candidate(&report, "typo");
    assert_eq!(typo["overall"], "fail");
    assert!(
        typo["blocker"]
            .as_str()
            .unwrap()
            .contains("engine did not start"),
        "{typo}"
    );
    let user = candidate(&report, "user-suite");
    assert_eq!(user["canaries"][0]["name"], "impossible");
    assert_eq!(user["canaries"][0]["pass"], false);
    assert!(user["canaries"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not found"));
}

#[test]
fn a_malformed_candidates_file_is_one_line_naming_the_file() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("broken.toml");
    write(
        &file,
        "model = \"m.gguf\"\n[baseline]\nname = \"b\"\nflags = 3\n[[candidate]]\nname = \"c\"\n",
    );
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(&file);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("broken.toml"), "{stderr}");
}
