//! Snapshots of the main commands' stdout, stderr and exit code on real engines (SmolLM2 on a
//! real llama-server), filtered for what differs between machines and runs (`common/snapshot.rs`).
//! Re-accept after a deliberate output change: `make snapshots` (or `INSTA_UPDATE=always cargo
//! test -p bakeoff-cli --test suite snapshots::`) and review the diff.

use crate::bakeoff_snapshot;
use crate::common;

use common::snapshot::{filters, measured_filters};
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// One sandbox holding stored runs of every kind, made once for the tests that show them: three
/// tiny bench runs (tags `base`, `batch` with `-b 256`, `again` as `base`), a load run, a gate run
/// and a journal entry.
struct Stored {
    sandbox: Sandbox,
}

fn stored() -> &'static Stored {
    static STORED: OnceLock<Stored> = OnceLock::new();
    STORED.get_or_init(|| {
        let sandbox = Sandbox::new();
        must(tiny_bench(&sandbox, "base", &[]));
        must(tiny_bench(&sandbox, "batch", &["-b", "256"]));
        must(tiny_bench(&sandbox, "again", &[]));
        must(tiny_load(&sandbox));
        must(tiny_gate(&sandbox));
        let mut journal = sandbox.cmd();
        journal.args(["journal", "add", "batch 256", "--change", "-b 256"]);
        journal.args(["--before", "base", "--after", "batch"]);
        must(journal);
        Stored { sandbox }
    })
}

/// Run a set-up command; a failure shows what bakeoff said.
fn must(cmd: Command) {
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "set-up command failed: {stderr}");
}

/// pp16 and tg4, two repetitions, no warm-up: the smallest bench with a median and a CI.
fn tiny_bench(sandbox: &Sandbox, tag: &str, flags: &[&str]) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args([
        "-p", "16", "-n", "4", "-r", "2", "--warmup", "0", "--tag", tag,
    ]);
    cmd.args(flags);
    cmd
}

/// Four requests at concurrency 1 against the binary's shared server.
fn tiny_load(sandbox: &Sandbox) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "--url", &shared_server(&[]).url]);
    cmd.args([
        "--concurrency",
        "1",
        "--requests",
        "4",
        "--input",
        "16",
        "--output",
        "4",
    ]);
    cmd.args(["--tag", "load"]);
    cmd
}

/// A baseline and one candidate with the quick checks only (one canary, hygiene), so the
/// readiness table has rows and verdicts without perplexity or agreement runs.
fn tiny_gate(sandbox: &Sandbox) -> Command {
    let dir = sandbox.dir.path();
    write(
        &dir.join("suite.toml"),
        "[[canary]]\nname = \"count\"\nmax_tokens = 24\nprompt = \"How many legs does a cat have? Answer with a number.\"\nexpect = { kind = \"count\", answer = 4 }\n",
    );
    let file = dir.join("candidates.toml");
    write(
        &file,
        &format!(
            "model = \"{}\"\nctx = 1024\n[baseline]\nname = \"f16\"\nflags = \"-t 1\"\n[[candidate]]\nname = \"q8_0\"\nflags = \"-t 1 -fa on -ctk q8_0 -ctv q8_0\"\n[checks]\nkld = \"off\"\nagreement = false\ntg_reps = 0\nsuite = \"suite.toml\"\n",
            smollm().display()
        ),
    );
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(file).args(["--tag", "gate"]);
    cmd
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

fn bakeoff(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    cmd
}

// --- deterministic commands: only paths and versions are filtered ---

#[test]
fn plan() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("plan").arg(smollm());
    cmd.args([
        "--ctx",
        "8192",
        "--parallel",
        "2",
        "--ctk",
        "q8_0",
        "--mem",
        "24G",
    ]);
    bakeoff_snapshot!("plan", filters(&sandbox), cmd);
}

#[test]
fn model_inspect() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "inspect"]).arg(smollm());
    bakeoff_snapshot!("model_inspect", filters(&sandbox), cmd);
}

#[test]
fn bench_dry_run() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args([
        "-ctk", "f16,q8_0", "-ctv", "q8_0", "-fa", "0,1", "-p", "64", "-n", "16",
    ]);
    cmd.arg("--dry-run");
    bakeoff_snapshot!("bench_dry_run", filters(&sandbox), cmd);
}

// --- measuring commands: figures are filtered too ---

#[test]
fn bench_tiny() {
    let sandbox = Sandbox::new();
    let cmd = tiny_bench(&sandbox, "tiny", &[]);
    let mut filters = measured_filters(&sandbox);
    // The last column holds outlier and noise markers, which come and go with the machine's load.
    filters.push((
        r"(?m)^(\| SmolLM2.*\| )[^|\n]*( \|)$".into(),
        "${1}[MARKERS]${2}".into(),
    ));
    bakeoff_snapshot!("bench_tiny", filters, cmd);
}

#[test]
fn load_tiny() {
    let sandbox = Sandbox::new();
    let cmd = tiny_load(&sandbox);
    let mut filters = vec![
        // The note column and the live progress line depend on timing (noise, measured window).
        (
            r"(?m)^(\| c\d+ \|.*\| )[^|\n]+( \|)$".to_string(),
            "${1}[NOTE]${2}".to_string(),
        ),
        (
            r"(?m)^(  c\d+: )\d+ done, .*$".to_string(),
            "${1}[PROGRESS]".to_string(),
        ),
    ];
    filters.extend(measured_filters(&sandbox));
    bakeoff_snapshot!("load_tiny", filters, cmd);
}

#[test]
fn gate_show() {
    let s = stored();
    let cmd = bakeoff(&s.sandbox, &["gate", "--show", "gate"]);
    let text = bakeoff_snapshot!("gate_show", measured_filters(&s.sandbox), cmd);
    assert!(
        text.contains("\n| f16 (baseline) |"),
        "the baseline row: {text}"
    );
}

#[test]
fn runs_list() {
    let s = stored();
    let cmd = bakeoff(&s.sandbox, &["runs", "list"]);
    let mut filters = measured_filters(&s.sandbox);
    // A load run's samples include the server's /metrics scraped on a timer.
    filters.push((
        r"(?m)^( +\d+  load .*\[DATE\] +\d+) +\d+".into(),
        "${1} [N]".into(),
    ));
    bakeoff_snapshot!("runs_list", filters, cmd);
}

#[test]
fn runs_show() {
    let s = stored();
    let cmd = bakeoff(&s.sandbox, &["runs", "show", "base"]);
    let mut filters = measured_filters(&s.sandbox);
    // Sample lines are figures padded to their width; the run, its trials and logs are the shape.
    for (pattern, replacement) in [
        (
            r"(?m)^    \S+ +\S.*\((client|server|system|telemetry)\)\n",
            "",
        ),
        (r"(?m)^    … \d+ more samples.*\n", ""),
        // A trial's client/server disagreement note comes and goes with the machine's load.
        (r"(?m)^    note: client .*\n", ""),
        (r"(?m)^(  system +).*$", "${1}[SYSTEM]"),
    ] {
        filters.push((pattern.into(), replacement.into()));
    }
    bakeoff_snapshot!("runs_show", filters, cmd);
}

/// A verdict on two runs of one config on a shared machine is noise: the verdict is masked.
fn verdict_filters(sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut filters = measured_filters(sandbox);
    filters.push((r"\b(FASTER|SLOWER|NO CHANGE)\*?".into(), "[VERDICT]".into()));
    filters.push((
        r"(?m)^- \*\*Verdict:\*\* .*$".into(),
        "- **Verdict:** [VERDICT]".into(),
    ));
    filters
}

#[test]
fn compare() {
    let s = stored();
    let cmd = bakeoff(&s.sandbox, &["compare", "base", "again"]);
    bakeoff_snapshot!("compare", verdict_filters(&s.sandbox), cmd);
}

#[test]
fn journal_show() {
    let s = stored();
    let cmd = bakeoff(&s.sandbox, &["journal", "show", "--md"]);
    bakeoff_snapshot!("journal_show", verdict_filters(&s.sandbox), cmd);
}

#[test]
fn doctor() {
    let sandbox = Sandbox::new();
    let cmd = bakeoff(&sandbox, &["doctor"]);
    bakeoff_snapshot!("doctor", doctor_filters(&sandbox), cmd);
}

/// The machine's own facts (CPU, memory, kernel, governor ...) differ everywhere: each fingerprint
/// line keeps its name and loses its value.
fn doctor_filters(sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut filters = measured_filters(sandbox);
    for (pattern, replacement) in [
        // The second build (`scripts/setup --second-build`, installed by `make test` only) is
        // listed where it is installed: the snapshot is the same either way.
        (r"(?m)^  llama\.cpp .*\(build 10798, .*\n(?:    .*\n)*", ""),
        (
            r"(?m)^  (CPU|RAM|GPUs|OS|governor|THP|swappiness)\b.*$",
            "  $1 [VALUE]",
        ),
        (r"(?m)^    built with .*$", "    built with [COMPILER]"),
        // Printed only while a model's hash is not cached yet.
        (r"(?m)^hashing .*\n", ""),
    ] {
        filters.push((pattern.into(), replacement.into()));
    }
    filters
}

// --- errors: one clear line, the right exit code ---

#[test]
fn error_missing_model() {
    let sandbox = Sandbox::new();
    let cmd = bakeoff(
        &sandbox,
        &["bench", "-m", "/nonexistent/model.gguf", "-n", "4"],
    );
    bakeoff_snapshot!("error_missing_model", filters(&sandbox), cmd);
}

#[test]
fn error_bad_flag_value() {
    let sandbox = Sandbox::new();
    let cmd = bakeoff(
        &sandbox,
        &["load", "--url", "http://127.0.0.1:9", "--input", "lots"],
    );
    bakeoff_snapshot!("error_bad_flag_value", filters(&sandbox), cmd);
}

#[test]
fn error_unknown_flag() {
    let sandbox = Sandbox::new();
    let cmd = bakeoff(&sandbox, &["runs", "list", "--limmit", "3"]);
    bakeoff_snapshot!("error_unknown_flag", filters(&sandbox), cmd);
}

#[test]
fn error_malformed_toml() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("broken.toml");
    write(&file, "model = \"m.gguf\"\n[baseline\nname = \"b\"\n");
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(&file);
    bakeoff_snapshot!("error_malformed_toml", filters(&sandbox), cmd);
}

#[test]
fn error_unknown_experiment_key() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("exp.toml");
    write(&file, "[matrix]\nctk = \"f16\"\nkv_type = \"q8_0\"\n");
    let mut cmd = sandbox.cmd();
    cmd.arg("bench")
        .arg("-m")
        .arg(smollm())
        .arg("--config")
        .arg(&file);
    cmd.arg("--dry-run");
    bakeoff_snapshot!("error_unknown_experiment_key", filters(&sandbox), cmd);
}
