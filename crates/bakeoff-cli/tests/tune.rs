//! `bakeoff tune --dry-run` on the real installed llama-server's `--help` (read only: no model is
//! loaded) and the real GGUF files set-up installs: the space built from build, model, machine
//! and goal; pruning by the build's rules and by memory with the margin; one-line errors for an
//! impossible budget and a misspelt tune-file key; pins and narrowing; and the exit without
//! `--dry-run` until the search lands.

mod common;

use common::{gemma, llama_bin, smollm, Sandbox};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn tune(sandbox: &Sandbox, model: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["tune", "-m"])
        .arg(model)
        .arg("--build")
        .arg(format!("b11434={}", llama_bin("llama-server").display()))
        .args(extra);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// A successful `--dry-run -o json`.
fn dry_run(model: &Path, extra: &[&str]) -> Value {
    let sandbox = Sandbox::new();
    let mut args = vec!["--dry-run", "-o", "json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = tune(&sandbox, model, &args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn knob<'a>(dry: &'a Value, name: &str) -> Option<&'a Value> {
    dry["space"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["knob"] == name)
}

fn values(dry: &Value, name: &str) -> Vec<String> {
    let knob = knob(dry, name).unwrap_or_else(|| panic!("no knob {name} in {dry}"));
    let values = knob["values"].as_array().unwrap();
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn pruned<'a>(dry: &'a Value, kind: &str) -> Vec<&'a Value> {
    let rows = dry["pruned"].as_array().unwrap();
    rows.iter().filter(|r| r["kind"] == kind).collect()
}

fn plan(dry: &Value, item: &str) -> String {
    let rows = dry["plan"].as_array().unwrap();
    let row = rows.iter().find(|r| r["item"] == item).unwrap();
    row["value"].as_str().unwrap().to_string()
}

#[test]
fn smollm_space_comes_from_the_build_the_model_and_this_machine() {
    let dry = dry_run(&smollm(), &["--ctx", "4096", "--goal", "tg"]);
    // Types and flash-attention choices are the real --help's, f32 and auto left out.
    assert_eq!(values(&dry, "-ctk").len(), 8);
    assert_eq!(values(&dry, "-fa"), ["on", "off"]);
    assert!(values(&dry, "spec").contains(&"ngram-mod n=24 m=64".to_string()));
    // Threads come from the cores; this machine has no GPU and SmolLM2 is dense.
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = values(&dry, "-t");
    assert_eq!(threads.last().unwrap(), &cores.to_string(), "{threads:?}");
    for absent in ["-ngl", "--n-cpu-moe", "-np"] {
        assert!(
            knob(&dry, absent).is_none(),
            "{absent} should not be a knob"
        );
    }
    let left: Vec<&Value> = pruned(&dry, "left out");
    assert!(left.iter().any(|r| r["example"] == "-ngl"), "{left:?}");
    let why = knob(&dry, "model").unwrap()["why"].as_str().unwrap();
    assert!(why.contains("llama") && why.contains("dense"), "{why}");
    // A quantized V cache without flash attention is rejected: counted, never planned.
    let rejected = pruned(&dry, "rejected by the build");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0]["example"].as_str().unwrap().contains("-fa off"));
    assert_eq!(plan(&dry, "limit"), "budget 30m");
}

#[test]
fn gemma_is_noted_as_sliding_window() {
    let dry = dry_run(&gemma(), &["--ctx", "8192", "--goal", "pp"]);
    let why = knob(&dry, "model").unwrap()["why"].as_str().unwrap();
    assert!(why.contains("gemma3") && why.contains("SWA"), "{why}");
    // goal pp widens the batch knobs.
    assert_eq!(values(&dry, "-ub"), ["128", "256", "512", "1024"]);
    // -ub 1024 with -b 512 is the same as -ub 512: pruned as having no effect.
    let same = pruned(&dry, "no effect");
    assert!(
        same[0]["example"]
            .as_str()
            .unwrap()
            .contains("-b 512 -ub 1024"),
        "{same:?}"
    );
}

#[test]
fn a_memory_budget_prunes_with_the_margin_shown() {
    // At 32K tokens an f16 KV cache of SmolLM2 is ~720 MiB; q4_0 ~200 MiB.
    let dry = dry_run(
        &smollm(),
        &["--ctx", "32768", "--goal", "tg", "--mem", "400M"],
    );
    let memory = pruned(&dry, "memory");
    assert_eq!(memory.len(), 1, "{memory:?}");
    let example = memory[0]["example"].as_str().unwrap();
    assert!(example.contains("of 400.00 MiB (over by "), "{example}");
    let tightest = pruned(&dry, "tightest fit");
    let fit = tightest[0]["example"].as_str().unwrap();
    assert!(fit.contains("of 400.00 MiB (margin "), "{fit}");
    let kept: u64 = plan(&dry, "configurations after pruning").parse().unwrap();
    assert!(kept > 0);
}

#[test]
fn an_impossible_budget_is_one_line_and_exit_2() {
    let sandbox = Sandbox::new();
    let args = [
        "--ctx",
        "32768",
        "--goal",
        "tg",
        "--mem",
        "64M",
        "--dry-run",
    ];
    let (code, stdout, stderr) = tune(&sandbox, &smollm(), &args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let first = stderr.lines().next().unwrap();
    let prefix = "error: nothing fits 64.00 MiB at ctx 32768: the smallest configuration needs ";
    assert!(first.starts_with(prefix), "{stderr}");
    assert!(stderr
        .lines()
        .all(|l| l.starts_with("error:") || l.starts_with("hint:")));
}

#[test]
fn a_misspelt_tune_file_key_names_file_line_and_key() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("tune.toml");
    std::fs::write(&file, "ctx = 4096\ngoal = \"tg\"\nmax-trails = 20\n").unwrap();
    let config = file.display().to_string();
    let (code, _, stderr) = tune(&sandbox, &smollm(), &["--config", &config, "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    let expected = format!("error: {config}:3:1: unknown field 'max-trails'");
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("hint: did you mean 'max-trials'?"),
        "{stderr}"
    );
}

#[test]
fn pin_and_only_change_the_space_on_the_command_line_and_in_the_file() {
    let base = dry_run(&smollm(), &["--ctx", "4096", "--goal", "tg"]);
    let edited = dry_run(
        &smollm(),
        &[
            "--ctx",
            "4096",
            "--goal",
            "tg",
            "--pin",
            "-ctk=q8_0",
            "--only",
            "-t=1",
        ],
    );
    assert_eq!(values(&edited, "-ctk"), ["q8_0"]);
    assert_eq!(values(&edited, "-t"), ["1"]);
    let count = |dry: &Value| -> u64 { plan(dry, "configurations after pruning").parse().unwrap() };
    assert!(count(&edited) < count(&base));
    // The same in a tune file; the command line's --ctx wins over the file's.
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("tune.toml");
    let text = "ctx = 2048\ngoal = \"tg\"\n[pin]\n\"--cache-type-v\" = \"f16\"\n[extend]\n\"-ub\" = [1024]\n";
    std::fs::write(&file, text).unwrap();
    let config = file.display().to_string();
    let dry = dry_run(&smollm(), &["--config", &config, "--ctx", "4096"]);
    assert_eq!(values(&dry, "-ctv"), ["f16"]);
    assert_eq!(values(&dry, "-ub").last().unwrap(), "1024");
    assert_eq!(plan(&dry, "context"), "4096");
}

#[test]
fn tune_without_dry_run_says_the_search_is_not_built_yet() {
    let sandbox = Sandbox::new();
    let (code, stdout, stderr) = tune(&sandbox, &smollm(), &["--ctx", "4096", "--goal", "tg"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim_end(),
        "error: tune: the search is not built yet; `bakeoff tune --dry-run` shows the space, the pruning and the planned cost"
    );
}
