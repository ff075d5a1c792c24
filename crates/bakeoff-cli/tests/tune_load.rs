//! `bakeoff tune --goal load` on real llama-server engines (SmolLM2): each repetition is one
//! closed-loop load step stored as `bakeoff load` stores its steps; the race ends with a winner
//! and an answer naming goal load and its score; a tune killed with SIGKILL resumes from the
//! steps it stored, measuring none of them twice.

use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(600);

/// Everything pinned but the slots (`-np` 1 or 2) for two users, on short requests, with a light
/// gate (the gate's own checks are tested in gate.rs and tune.rs).
fn tune_args(sandbox: &Sandbox) -> Vec<String> {
    let build = format!("b11434={}", llama_bin("llama-server").display());
    let gate = sandbox.dir.path().join("tune.toml");
    let text = "[checks]\nkld = \"off\"\ncanaries = false\nagreement_prompts = 2\nagreement_tokens = 16\ntg_reps = 0\n";
    std::fs::write(&gate, text).unwrap();
    let mut args: Vec<String> = vec!["tune".into(), "-m".into()];
    args.push(smollm().display().to_string());
    args.extend([
        "--build".into(),
        build,
        "--config".into(),
        gate.display().to_string(),
    ]);
    let rest = [
        "--goal",
        "load",
        "--parallel",
        "2",
        "--only",
        "-np=1,2",
        "--pin",
        "-ctk=f16",
        "--pin",
        "-ctv=f16",
        "--pin",
        "-fa=on",
        "--pin",
        "-b=512",
        "--pin",
        "-ub=128",
        "--pin",
        "spec=none",
        "--pin",
        "-lm=mmap",
        "--pin",
        "-t=1",
        "--ctx",
        "512",
        "-n",
        "8",
        "-p",
        "32",
        "--requests",
        "4",
        "--max-trials",
        "6",
        "-o",
        "json",
    ];
    args.extend(rest.iter().map(|s| s.to_string()));
    args
}

fn show(sandbox: &Sandbox, run: &str) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", run, "--json"]);
    let (status, stdout, stderr) = run_cmd(cmd);
    assert!(status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn run_cmd(cmd: std::process::Command) -> (std::process::ExitStatus, String, String) {
    run(cmd, LIMIT)
}

/// The run's ok load steps.
fn load_steps(detail: &Value) -> Vec<Value> {
    let trials = detail["trials"].as_array().unwrap().iter();
    trials
        .filter(|t| t["status"] == "ok" && t["workload"]["kind"] == "load")
        .cloned()
        .collect()
}

fn count(trial: &Value, metric: &str) -> usize {
    let samples = trial["samples"].as_array().unwrap().iter();
    samples.filter(|s| s["metric"] == metric).count()
}

/// The answer names goal load and its score, and its winner is one of the two slot counts.
fn assert_answer(answer: &Value) {
    assert_eq!(answer["goal"], "load");
    assert_eq!(
        answer["score"],
        "output tok/s of 4 requests of 32 prompt + 8 generated tokens from 2 closed-loop users"
    );
    let winner = &answer["winner"];
    let args: Vec<&str> = (winner["args"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap())
        .collect();
    let slots = args.windows(2).find(|w| w[0] == "-np").map(|w| w[1]);
    assert!(matches!(slots, Some("1" | "2")), "{winner}");
    assert!(winner["median"].as_f64().unwrap() > 0.0, "{winner}");
    assert_eq!(winner["fidelity"], "pass", "{winner}");
    let points = answer["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "both slot counts measured: {answer}");
}

/// Every load step: two users' four requests, each request's samples stored, the repetitions
/// of one configuration numbered without a repeat.
fn assert_steps(detail: &Value) -> usize {
    let steps = load_steps(detail);
    let mut keys: Vec<String> = Vec::new();
    for step in &steps {
        assert_eq!(step["workload"]["test"], "c2", "{step}");
        assert_eq!(step["workload"]["shape"]["users"], 2, "{step}");
        assert_eq!(count(step, "e2e_ms"), 4, "{step}");
        assert_eq!(count(step, "output_tps"), 1, "{step}");
        keys.push(format!("{} {}", step["config_hash"], step["repetition"]));
    }
    let all = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all, "no repetition measured twice: {keys:?}");
    all
}

#[test]
fn a_load_tune_races_slot_counts_on_load_steps_and_names_its_score() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(tune_args(&sandbox));
    let (status, stdout, stderr) = run_cmd(cmd);
    assert!(status.success(), "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_answer(&answer);
    assert!(stderr.contains("c2 rep 1: "), "{stderr}");
    assert!(stderr.contains(" tok/s"), "{stderr}");
    let detail = show(&sandbox, "last");
    let steps = assert_steps(&detail);
    // Both candidates' race steps and the engine defaults' three.
    assert!(steps >= 2 + 3, "{steps} load steps");
}

#[test]
fn a_load_tune_killed_with_sigkill_resumes_from_its_stored_steps() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(tune_args(&sandbox));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Kill as soon as the second step has been reported (so, stored).
    let mut reported = 0;
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        reported += usize::from(line.contains(": c2 rep "));
        seen.push(line);
        if reported == 2 {
            break;
        }
    }
    assert_eq!(reported, 2, "{}", seen.join("\n"));
    signal(child.id(), libc::SIGKILL);
    wait_exit(&mut child, LIMIT);

    let detail = show(&sandbox, "last");
    let before = load_steps(&detail).len();
    assert!(before >= 2, "stored before the kill: {before}");
    let run_id = detail["run"]["id"].to_string();
    let mut resume = sandbox.cmd();
    resume.args(["tune", "--resume", &run_id, "-o", "json"]);
    let (status, stdout, stderr) = run_cmd(resume);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "resumed: {before} repetitions answered from stored trials"
        )),
        "{stderr}"
    );
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_answer(&answer);
    let steps = assert_steps(&show(&sandbox, &run_id));
    assert!(steps > before, "the resumed tune measured the rest");
}
