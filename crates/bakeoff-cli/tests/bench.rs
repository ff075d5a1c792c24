//! `bakeoff bench` and `bakeoff compare` against a real llama-server (and llama-bench) on SmolLM2.

use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

fn bench(sandbox: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm()).args(args);
    run(cmd, LIMIT)
}

/// `bench` on a model path that need not exist: a dry run or an argument error reads no model.
fn bench_without_model(
    sandbox: &Sandbox,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["bench", "-m", "absent.gguf"]).args(args);
    run(cmd, LIMIT)
}

fn show(sandbox: &Sandbox, run: &str) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", run, "--json"]);
    let (status, stdout, stderr) = run_ok(cmd);
    assert!(status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn run_ok(cmd: std::process::Command) -> (std::process::ExitStatus, String, String) {
    run(cmd, LIMIT)
}

fn sample(trial: &Value, metric: &str, source: &str) -> Option<f64> {
    trial["samples"]
        .as_array()?
        .iter()
        .find(|s| s["metric"] == metric && s["source"] == source)?["value"]
        .as_f64()
}

fn ok_trials(detail: &Value) -> Vec<Value> {
    detail["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "ok")
        .cloned()
        .collect()
}

#[test]
fn sweep_measures_exact_tokens_and_skips_what_the_engine_rejects() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench(
        &sandbox,
        &[
            "-ctv", "f16,q8_0", "-fa", "off", "-p", "32", "-n", "8", "-r", "2", "--warmup", "0",
            "-o", "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let cells: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let names: Vec<String> = cells
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["config"].as_str().unwrap(),
                c["test"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["-ctv f16 -fa off pp32", "-ctv f16 -fa off tg8"]);
    assert!(cells
        .iter()
        .all(|c| c["n"] == 2 && c["median_ts"].as_f64().unwrap() > 0.0));
    assert!(
        stderr.contains(
            "skipped -ctv q8_0 -fa off: a quantized V cache (-ctv q8_0) requires flash attention"
        ),
        "{stderr}"
    );

    let detail = show(&sandbox, "last");
    assert_eq!(detail["run"]["status"], "ok");
    let skipped: Vec<&Value> = detail["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1);
    for trial in ok_trials(&detail) {
        assert!(
            trial["engine"].as_str().unwrap().contains("build 11434"),
            "engine build recorded: {}",
            trial["engine"]
        );
        assert!(trial["model_sha256"]
            .as_str()
            .unwrap()
            .starts_with("b179c952"));
        match trial["workload"]["kind"].as_str().unwrap() {
            "pp" => {
                assert_eq!(
                    sample(&trial, "prompt_n", "server"),
                    Some(32.0),
                    "exact prompt tokens"
                );
                assert!(sample(&trial, "pp_tps", "client").unwrap() > 0.0);
                assert!(sample(&trial, "pp_tps", "server").unwrap() > 0.0);
            }
            _ => {
                assert_eq!(sample(&trial, "predicted_n", "server"), Some(8.0));
                assert_eq!(
                    sample(&trial, "tokens_received", "client"),
                    Some(8.0),
                    "every streamed token counted"
                );
                let gaps = trial["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["metric"] == "itl_ms")
                    .count();
                assert_eq!(gaps, 7, "one gap per token after the first");
            }
        }
    }
    assert!(detail["system"]["cpu_model"].is_string());
    assert!(
        !detail["logs"].as_array().unwrap().is_empty(),
        "engine log excerpt stored"
    );
}

#[test]
fn depth_is_prefilled_once_and_reused() {
    let sandbox = Sandbox::new();
    let (status, _, stderr) = bench(
        &sandbox,
        &[
            "-p", "16", "-n", "4", "-d", "128", "-r", "2", "--warmup", "0",
        ],
    );
    assert!(status.success(), "{stderr}");
    let detail = show(&sandbox, "last");
    let trials = ok_trials(&detail);
    assert_eq!(trials.len(), 4);
    for trial in &trials {
        assert_eq!(
            sample(trial, "cache_n", "server"),
            Some(128.0),
            "depth prefix reused: {trial}"
        );
    }
    let pp = trials
        .iter()
        .find(|t| t["workload"]["kind"] == "pp")
        .unwrap();
    assert_eq!(sample(pp, "prompt_n", "server"), Some(16.0));
}

#[test]
fn dry_run_prints_the_plan_and_its_restarts_without_starting_anything() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench(
        &sandbox,
        &[
            "-ctk",
            "f16,q8_0",
            "-ctv",
            "q8_0",
            "-fa",
            "0,1",
            "-t",
            "1-2",
            "-p",
            "64",
            "-n",
            "16",
            "--dry-run",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("(8 configs, 2 tests, 5 reps)"), "{stdout}");
    assert_eq!(
        stdout.matches("SKIP: a quantized V cache").count(),
        4,
        "{stdout}"
    );
    assert!(
        stdout.contains("engine starts: 4 (restarts: 3)"),
        "{stdout}"
    );
    assert!(
        !sandbox.db().exists(),
        "a dry run stores no run (and creates no database)"
    );
}

#[test]
fn a_second_measuring_command_is_refused_and_a_stale_lock_taken_over() {
    let sandbox = Sandbox::new();
    let lock = sandbox.dir.path().join("measure.lock");
    let holder = format!(
        r#"{{"pid": {}, "command": "bakeoff bench (the other one)", "started_unix": 0}}"#,
        std::process::id()
    );
    std::fs::write(&lock, holder).unwrap();
    // The lock is an flock held by an open file: hold it as the other bakeoff would.
    let held = std::fs::File::open(&lock).unwrap();
    // SAFETY: flock on a file this test opened.
    assert_eq!(
        unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&held),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        },
        0
    );
    let (status, _, stderr) = bench(&sandbox, &["-n", "4", "-p", "0", "-r", "1"]);
    drop(held);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("error: another bakeoff is measuring on this machine: pid {} running `bakeoff bench (the other one)`", std::process::id())), "{stderr}");

    std::fs::write(
        &lock,
        r#"{"pid": 2147483000, "command": "bakeoff bench (crashed)", "started_unix": 0}"#,
    )
    .unwrap();
    let (status, _, stderr) = bench(
        &sandbox,
        &["-n", "4", "-p", "0", "-r", "1", "--warmup", "0"],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("took over a stale lock left by pid 2147483000"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        "",
        "lock released at exit"
    );
}

#[test]
fn kill_9_loses_nothing_and_resume_finishes_without_repeats() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm()).args([
        "-ctk", "f16,q8_0", "-p", "16", "-n", "8", "-r", "3", "--warmup", "0",
    ]);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Kill as soon as the fourth trial has been reported (so, stored).
    for line in stderr.lines() {
        if line.unwrap().contains("[4/") {
            break;
        }
    }
    signal(child.id(), libc::SIGKILL);
    wait_exit(&mut child, LIMIT);

    let detail = show(&sandbox, "last");
    assert_eq!(
        detail["run"]["status"], "abandoned",
        "a killed run stays visible as unfinished"
    );
    let before = ok_trials(&detail).len();
    assert!(before >= 4, "stored before the kill: {before}");

    let run_id = detail["run"]["id"].to_string();
    let mut resume = sandbox.cmd();
    resume.args(["bench", "--resume", &run_id]);
    let (status, _, stderr) = run(resume, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "resuming run {run_id}: {before} trials already stored"
        )),
        "{stderr}"
    );
    let detail = show(&sandbox, &run_id);
    assert_eq!(detail["run"]["status"], "ok");
    let trials = ok_trials(&detail);
    let mut keys: Vec<String> = trials
        .iter()
        .map(|t| {
            format!(
                "{} {} {}",
                t["config_hash"], t["workload"]["test"], t["repetition"]
            )
        })
        .collect();
    assert_eq!(keys.len(), 12, "2 configs x 2 tests x 3 reps");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 12, "no trial measured twice");
}

#[test]
fn llama_bench_results_sit_beside_server_results_in_compare() {
    let sandbox = Sandbox::new();
    let (status, _, stderr) = bench(
        &sandbox,
        &[
            "--engine",
            "llama-bench",
            "-p",
            "32",
            "-n",
            "8",
            "-r",
            "2",
            "--tag",
            "inproc",
        ],
    );
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = bench(
        &sandbox,
        &["-p", "32", "-n", "8", "-r", "2", "--tag", "server"],
    );
    assert!(status.success(), "{stderr}");
    let detail = show(&sandbox, "inproc");
    let trials = ok_trials(&detail);
    assert_eq!(
        trials.len(),
        4,
        "2 tests x 2 reps from llama-bench's samples_ts"
    );
    assert!(trials.iter().all(|t| sample(
        t,
        if t["workload"]["kind"] == "pp" {
            "pp_tps"
        } else {
            "tg_tps"
        },
        "llama-bench"
    )
    .unwrap()
        > 0.0));

    let mut cmd = sandbox.cmd();
    cmd.args(["compare", "inproc", "server", "--json"]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    let cmp: Value = serde_json::from_str(&stdout).unwrap();
    let tests: Vec<&str> = cmp["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp32", "tg8"]);
    for row in cmp["rows"].as_array().unwrap() {
        assert_eq!(row["a_source"], "llama-bench");
        assert_eq!(row["b_source"], "client");
        assert!(row["ratio"].as_f64().unwrap() > 0.0);
        let verdict = row["verdict"].as_str().unwrap();
        // 2 against 2 repetitions cannot reach p < 0.05: the verdict is the CI's, marked `*`.
        assert!(verdict.ends_with('*'), "{verdict}");
        assert!(["FASTER", "SLOWER", "NO CHANGE"].contains(&verdict.trim_end_matches('*')));
    }
    let differences: Vec<&str> = cmp["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["what"].as_str().unwrap())
        .collect();
    assert!(differences.contains(&"engine"), "{differences:?}");
}

#[test]
fn experiment_file_sets_the_matrix_and_bad_keys_are_named() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("exp.toml");
    std::fs::write(
        &file,
        "reps = 2\n[matrix]\nctk = [\"f16\", \"q8_0\"]\nfa = \"on\"\np = 128\nn = \"16\"\n",
    )
    .unwrap();
    let (status, stdout, stderr) =
        bench(&sandbox, &["--config", file.to_str().unwrap(), "--dry-run"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("(2 configs, 2 tests, 2 reps)"), "{stdout}");
    assert!(stdout.contains("-ctk q8_0 -fa on"), "{stdout}");

    // The file is read through serde now: errors carry the line and column of the key.
    std::fs::write(&file, "[matrix]\nctk = \"f16\"\nkv_type = \"q8_0\"\n").unwrap();
    let (status, _, stderr) = bench(&sandbox, &["--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains(&format!(
            "error: {}:3:1: unknown field 'kv_type', expected one of",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_typo_in_an_experiment_file_names_the_key_the_line_and_the_close_spelling() {
    // Regression: the hand-walked file said only "unknown key" with no line and no suggestion.
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("experiment.toml");
    std::fs::write(&file, "warmup = 1\nrep = 5\n[matrix]\nctk = \"f16\"\n").unwrap();
    let (status, stdout, stderr) =
        bench_without_model(&sandbox, &["--config", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "error: {}:2:1: unknown field 'rep', expected one of 'model', 'repetitions', 'reps'",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        lines.get(1),
        Some(&"hint: did you mean 'reps'?"),
        "{stderr}"
    );
}

#[test]
fn the_command_line_wins_over_the_experiment_file() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("experiment.toml");
    std::fs::write(
        &file,
        "reps = 7\nwarmup = 0\n[matrix]\nctk = \"f16,q8_0\"\nn = 16\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let (status, stdout, stderr) = bench_without_model(
        &sandbox,
        &["--config", config, "-r", "2", "-ctk", "q4_0", "--dry-run"],
    );
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("(1 configs, 1 tests, 2 reps)"), "{stdout}");
    assert!(stdout.contains("-ctk q4_0"), "{stdout}");
}

#[test]
fn split_flags_are_matrix_dimensions_and_a_comma_ratio_is_refused() {
    let sandbox = Sandbox::new();
    let args = [
        "-sm",
        "layer,row",
        "-ts",
        "1/1,3:1",
        "-mg",
        "0",
        "--dry-run",
    ];
    let (status, stdout, stderr) = bench_without_model(&sandbox, &args);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("(4 configs,"), "{stdout}");
    assert!(stdout.contains("-mg 0 -sm row -ts 3/1"), "{stdout}");
    // `-ts 3,1` is two sweep values of one proportion each: an error naming the flag, with the spelling.
    let (status, stdout, stderr) = bench_without_model(&sandbox, &["-ts", "3,1", "--dry-run"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("error: -ts 3: a split needs a proportion for at least two GPUs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: write a ratio per GPU as 3/1"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_output_format_is_an_argument_error_listing_the_formats() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench_without_model(&sandbox, &["-o", "xml", "--dry-run"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("invalid value 'xml'"), "{stderr}");
    assert!(
        stderr.contains("[possible values: md, csv, json, jsonl]"),
        "{stderr}"
    );
    let (status, _, stderr) =
        bench_without_model(&sandbox, &["--engine", "llama-cli", "--dry-run"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("llama-server, llama-bench"), "{stderr}");
}

#[test]
fn speculation_is_measured_with_and_without_on_the_same_prompts() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench(
        &sandbox,
        &[
            "--spec-type",
            "none,ngram-mod",
            "--prompts",
            // Regression: on this build ngram-mod drafts nothing in 48 tokens of natural text
            // (greedy SmolLM2 does not repeat itself there); code repeats n-grams at once.
            "code",
            "-p",
            "0",
            "-n",
            "48",
            "-r",
            "2",
            "--warmup",
            "0",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("Speculative decoding (same prompts, without → with):"),
        "{stdout}"
    );
    // The summary is a table now (config and test in their own cells), as is the bench table,
    // whose last column holds the trial notes.
    assert!(
        stdout.contains("--spec-type ngram-mod | tg48 [code] | "),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("| config | test | without t/s | with t/s | speed-up | draft acceptance |\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| accept | % roofline | peak mem (vs plan) | notes |\n"),
        "{stdout}"
    );
    let detail = show(&sandbox, "last");
    let trials = ok_trials(&detail);
    let drafted: f64 = trials
        .iter()
        .filter(|t| t["flags"]["flags"]["--spec-type"] == "ngram-mod")
        .map(|t| sample(t, "draft_n", "server").unwrap_or(0.0))
        .sum();
    assert!(drafted > 0.0, "ngram-mod drafted nothing on code");
    for t in trials
        .iter()
        .filter(|t| t["flags"]["flags"]["--spec-type"] == "none")
    {
        assert_eq!(
            sample(t, "draft_n", "server"),
            None,
            "no draft timings without speculation"
        );
    }
}

#[test]
fn a_config_the_engine_refuses_is_skipped_and_the_sweep_goes_on() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench(
        &sandbox,
        &[
            "-ctk",
            "no_such_type,f16",
            "-p",
            "0",
            "-n",
            "4",
            "-r",
            "1",
            "--warmup",
            "0",
            "-o",
            "csv",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped -ctk no_such_type: llama-server exited during start-up"),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 2, "header + the f16 row: {stdout}");
    assert!(
        stdout.lines().nth(1).unwrap().contains("-ctk f16"),
        "{stdout}"
    );
    let detail = show(&sandbox, "last");
    let skipped = detail["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "skipped")
        .unwrap();
    assert!(skipped["note"]
        .as_str()
        .unwrap()
        .contains("exited during start-up"));
}

/// The directory of the installed llama.cpp tools, usable as a `--build NAME=DIR`.
fn build_dir() -> String {
    let server = llama_bin("llama-server");
    server.parent().unwrap().display().to_string()
}

fn two_models() -> String {
    format!("{},{}", smollm().display(), gemma().display())
}

#[test]
fn a_dry_run_of_two_models_on_two_builds_shows_every_engine_start_in_order() {
    let sandbox = Sandbox::new();
    let (a, b) = (format!("a={}", build_dir()), format!("b={}", build_dir()));
    let mut cmd = sandbox.cmd();
    cmd.args(["bench", "-m", &two_models(), "--build", &a, "--build", &b]);
    cmd.args([
        "-ctk",
        "f16,q8_0",
        "-fa",
        "on",
        "-p",
        "0",
        "-n",
        "4",
        "--dry-run",
    ]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    let starts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  engine start"))
        .collect();
    let expected = [
        "  engine start 1/8: build a · SmolLM2-135M-Instruct.Q4_1 · -ctk f16 -fa on",
        "  engine start 2/8: build a · SmolLM2-135M-Instruct.Q4_1 · -ctk q8_0 -fa on",
        "  engine start 3/8: build a · gemma-3-270m-q4_k_m · -ctk f16 -fa on",
        "  engine start 4/8: build a · gemma-3-270m-q4_k_m · -ctk q8_0 -fa on",
        "  engine start 5/8: build b · SmolLM2-135M-Instruct.Q4_1 · -ctk f16 -fa on",
        "  engine start 6/8: build b · SmolLM2-135M-Instruct.Q4_1 · -ctk q8_0 -fa on",
        "  engine start 7/8: build b · gemma-3-270m-q4_k_m · -ctk f16 -fa on",
        "  engine start 8/8: build b · gemma-3-270m-q4_k_m · -ctk q8_0 -fa on",
    ];
    assert_eq!(starts, expected, "{stdout}");
    assert!(
        stdout.starts_with("plan: llama-server on 2 model(s) × 2 build(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("engine starts: 8 (restarts: 7)"),
        "{stdout}"
    );
    assert!(!sandbox.db().exists(), "a dry run opens no database");
}

#[test]
fn the_same_model_under_two_names_is_refused_before_any_engine_starts() {
    let sandbox = Sandbox::new();
    let copy = sandbox.dir.path().join("copy-of-smollm.gguf");
    std::fs::copy(smollm(), &copy).unwrap();
    let models = format!("{},{}", smollm().display(), copy.display());
    let mut cmd = sandbox.cmd();
    cmd.args(["bench", "-m", &models, "-p", "0", "-n", "4", "-r", "1"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        error.contains("copy-of-smollm.gguf are the same model (sha256 "),
        "{stderr}"
    );
    assert!(
        !stderr.contains("config 1/"),
        "nothing was measured: {stderr}"
    );
    let mut list = sandbox.cmd();
    list.args(["runs", "list", "--json"]);
    let (status, stdout, stderr) = run(list, LIMIT);
    assert!(status.success(), "{stderr}");
    let runs: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(0),
        "no run row: {stdout}"
    );
}

#[test]
fn two_models_in_one_run_store_trials_for_each() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args([
        "bench",
        "-m",
        &two_models(),
        "-p",
        "0",
        "-n",
        "4",
        "-r",
        "1",
    ]);
    cmd.args(["--warmup", "0", "-o", "json"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("config 2/2: gemma-3-270m-q4_k_m"),
        "{stderr}"
    );
    let detail = show(&sandbox, "last");
    let trials = ok_trials(&detail);
    let models: Vec<&str> = trials
        .iter()
        .map(|t| t["model_sha256"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(models.len(), 2, "one tg4 trial per model: {detail}");
    assert_ne!(models[0], models[1], "each trial names its own model");
    let sha = std::fs::read_to_string(format!("{}.sha256", gemma().display())).unwrap();
    assert!(sha.contains(models[1]), "the second is gemma's: {sha}");
    for trial in &trials {
        assert_eq!(
            sample(trial, "tokens_received", "client"),
            Some(4.0),
            "{trial}"
        );
    }
}

#[test]
fn llama_bench_runs_once_per_build_and_model() {
    let sandbox = Sandbox::new();
    let build = format!("cpu={}", build_dir());
    let mut cmd = sandbox.cmd();
    cmd.args([
        "bench",
        "-m",
        &two_models(),
        "--build",
        &build,
        "--engine",
        "llama-bench",
    ]);
    cmd.args(["-p", "0", "-n", "4", "-r", "1", "--warmup", "0"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("config 2/2: build cpu · gemma-3-270m-q4_k_m"),
        "{stderr}"
    );
    let detail = show(&sandbox, "last");
    let trials = ok_trials(&detail);
    let models: Vec<&str> = trials
        .iter()
        .map(|t| t["model_sha256"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(models.len(), 2, "{detail}");
    assert_ne!(models[0], models[1]);
    for trial in &trials {
        assert!(sample(trial, "tg_tps", "llama-bench").is_some(), "{trial}");
    }
}

#[test]
fn a_build_path_without_llama_server_is_a_one_line_error() {
    let sandbox = Sandbox::new();
    let empty = sandbox.dir.path().join("empty-build");
    std::fs::create_dir(&empty).unwrap();
    let build = format!("broken={}", empty.display());
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args(["--build", &build, "-p", "0", "-n", "4", "-r", "1"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let expected = format!("build broken: no llama-server in {}", empty.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn an_experiment_file_lists_models_and_builds() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("shootout.toml");
    let text = format!(
        "model = [{:?}, {:?}]\n[matrix]\nn = 4\np = 0\n[builds]\nfile = {:?}\n",
        smollm().display().to_string(),
        gemma().display().to_string(),
        build_dir()
    );
    std::fs::write(&file, text).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("--config").arg(&file).arg("--dry-run");
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("  engine start 2/2: build file · gemma-3-270m-q4_k_m · (defaults)"),
        "{stdout}"
    );
}

#[test]
fn a_killed_two_model_run_resumes_measuring_only_what_is_missing() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args([
        "bench",
        "-m",
        &two_models(),
        "-p",
        "0",
        "-n",
        "4",
        "-r",
        "2",
    ]);
    cmd.args(["--warmup", "0"]);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Kill once the second trial (smollm's last) has been reported, so stored.
    for line in stderr.lines() {
        if line.unwrap().contains("[2/") {
            break;
        }
    }
    signal(child.id(), libc::SIGKILL);
    wait_exit(&mut child, LIMIT);
    let detail = show(&sandbox, "last");
    let before = ok_trials(&detail).len();
    assert!(before >= 2, "stored before the kill: {before}");

    let run_id = detail["run"]["id"].to_string();
    let mut resume = sandbox.cmd();
    resume.args(["bench", "--resume", &run_id]);
    let (status, _, stderr) = run(resume, LIMIT);
    assert!(status.success(), "{stderr}");
    let resumed = format!("resuming run {run_id}: {before} trials already stored");
    assert!(stderr.contains(&resumed), "{stderr}");
    let trials = ok_trials(&show(&sandbox, &run_id));
    let key = |t: &Value| {
        format!(
            "{} {} {}",
            t["model_sha256"], t["config_hash"], t["repetition"]
        )
    };
    let mut keys: Vec<String> = trials.iter().map(key).collect();
    assert_eq!(keys.len(), 4, "2 models x tg4 x 2 reps");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4, "no trial measured twice");
}

/// The `config N: LABEL` lines of a dry run, as (N, LABEL).
fn planned_configs(stdout: &str) -> Vec<(String, String)> {
    let line = |l: &str| {
        let rest = l.strip_prefix("  config ")?;
        let (number, rest) = rest.split_once(": ")?;
        let label = rest.split("  ").next()?;
        Some((number.to_string(), label.to_string()))
    };
    stdout.lines().filter_map(line).collect()
}

/// A 2 × 2 matrix (two KV types, two micro-batches), cheap enough to run for real.
const TWO_BY_TWO: [&str; 12] = [
    "--kv", "f16,q8_0", "--ub", "64,128", "-p", "16", "-n", "8", "-r", "1", "--warmup", "0",
];

#[test]
fn two_shards_into_one_store_measure_the_whole_matrix_once_between_them() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) = bench(&sandbox, &[&TWO_BY_TWO[..], &["--dry-run"]].concat());
    assert!(status.success(), "{stderr}");
    let mut whole: Vec<String> = planned_configs(&stdout).into_iter().map(|c| c.1).collect();
    assert_eq!(whole.len(), 4, "{stdout}");
    let mut union = Vec::new();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let flags = ["--shard", &shard, "--tag", "kv-sweep", "-o", "json"];
        let (status, stdout, stderr) = bench(&sandbox, &[&TWO_BY_TWO[..], &flags].concat());
        assert!(status.success(), "{stderr}");
        let summary = format!("shard {k}/2: 2 of the matrix's 4 cells");
        assert!(stderr.contains(&summary), "{stderr}");
        let cells: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        let mut configs: Vec<String> = cells
            .iter()
            .map(|c| c["config"].as_str().unwrap().to_string())
            .collect();
        configs.dedup();
        assert_eq!(
            configs.len(),
            2,
            "each shard measures two of the four: {stdout}"
        );
        union.extend(configs);
        let detail = show(&sandbox, "last");
        assert_eq!(
            detail["params"]["shard"],
            serde_json::json!({ "k": k, "n": 2 })
        );
        assert_eq!(detail["params"]["matrix_cells"], 4);
        assert_eq!(detail["run"]["tag"], "kv-sweep");
        assert_eq!(ok_trials(&detail).len(), 4, "2 configs x pp16, tg8");
    }
    assert_eq!(
        union.len(),
        4,
        "no config measured by both shards: {union:?}"
    );
    union.sort();
    whole.sort();
    assert_eq!(union, whole, "the shards together measure the whole matrix");

    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", "last"]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("  shard    2/2 (2 of the matrix's 4 cells)\n"),
        "{stdout}"
    );
}

#[test]
fn a_sharded_dry_run_lists_its_cells_numbered_as_in_the_whole_matrix() {
    let sandbox = Sandbox::new();
    let dry = [&TWO_BY_TWO[..], &["--dry-run", "--shard", "2/3"]].concat();
    let (status, stdout, stderr) = bench_without_model(&sandbox, &dry);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("  shard 2/3: 1 of the matrix's 4 cells\n"),
        "{stdout}"
    );
    let numbers: Vec<String> = planned_configs(&stdout).into_iter().map(|c| c.0).collect();
    assert_eq!(numbers, ["2"], "{stdout}");
    assert!(
        stdout.contains("engine starts: 1 (restarts: 0)"),
        "{stdout}"
    );

    // A Slurm array task (--array=1-4, task 4) under BAKEOFF_SHARD=auto: shard 4/4, cell 4.
    let mut cmd = sandbox.cmd();
    cmd.args(["bench", "-m", "absent.gguf"])
        .args(TWO_BY_TWO)
        .arg("--dry-run");
    cmd.env("BAKEOFF_SHARD", "auto")
        .env("SLURM_ARRAY_TASK_ID", "4");
    cmd.env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "4");
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    let numbers: Vec<String> = planned_configs(&stdout).into_iter().map(|c| c.0).collect();
    assert_eq!(numbers, ["4"], "{stdout}");
}

#[test]
fn a_shard_beyond_the_matrix_exits_0_storing_nothing_and_a_bad_one_is_named() {
    let sandbox = Sandbox::new();
    let (status, stdout, stderr) =
        bench_without_model(&sandbox, &[&TWO_BY_TWO[..], &["--shard", "5/6"]].concat());
    assert!(status.success(), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("shard 5/6 has no cells: the matrix has 4"),
        "{stderr}"
    );
    assert!(!sandbox.db().exists(), "an empty shard stores no run");

    let (status, _, stderr) =
        bench_without_model(&sandbox, &[&TWO_BY_TWO[..], &["--shard", "0/4"]].concat());
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("error: --shard 0/4: K counts from 1"),
        "{stderr}"
    );
}
