//! `bakeoff tune --save NAME` end to end on SmolLM2 and the real llama-server: a two-candidate
//! tune (V cache f16 or q8_0, everything else pinned, five trials) saves its winner as a profile with the
//! context and slots it was measured at, writes its journal entry, reports its pareto chart, and
//! `bakeoff serve NAME` starts the saved profile behind its readiness gate.

use crate::common;

use common::{llama_bin, pid_alive, signal, smollm, wait_exit, Sandbox};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A bound against a hang, not a timing: engine starts, the trials, the fidelity gate and the
/// defaults take ~3 min on a quiet 2-core machine and far longer beside parallel builds.
const TUNE_LIMIT: Duration = Duration::from_secs(1800);

/// A light fidelity gate (greedy agreement on two short prompts) keeps the test short; the
/// gate's own checks are tested in gate.rs.
const TUNE_FILE: &str =
    "[checks]\nkld = \"off\"\ncanaries = false\nagreement_prompts = 2\nagreement_tokens = 16\ntg_reps = 0\n";
/// The readiness gate asks every canary.
const READY_LIMIT: Duration = Duration::from_secs(600);
const LIMIT: Duration = Duration::from_secs(60);

fn tune_args(sandbox: &Sandbox) -> Vec<String> {
    let file = sandbox.dir.path().join("tune.toml");
    std::fs::write(&file, TUNE_FILE).unwrap();
    let mut args: Vec<String> = ["tune", "--config"].map(String::from).to_vec();
    args.push(file.display().to_string());
    args.push("-m".into());
    args.push(smollm().display().to_string());
    args.push("--build".into());
    args.push(format!("b11434={}", llama_bin("llama-server").display()));
    let rest = "--ctx 512 --goal tg -n 16 -d 0 --only -ctv=f16,q8_0 --pin -ctk=f16 --pin -fa=on \
        --pin -b=512 --pin -ub=128 --pin spec=none --pin -lm=mmap --only -t=2 --max-trials 5 \
        --save daily -o json";
    args.extend(rest.split_whitespace().map(String::from));
    args
}

fn json_of(sandbox: &Sandbox, args: &[&str]) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    let (status, stdout, stderr) = common::run(cmd, LIMIT);
    assert!(status.success(), "bakeoff {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A `bakeoff serve` child; dropped early (a failed assertion) it is interrupted, so no engine
/// outlives the test.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            signal(self.0.id(), libc::SIGINT);
            wait_exit(&mut self.0, LIMIT);
        }
    }
}

/// `bakeoff serve NAME --json` and its ready line (`None`: it printed none within the limit).
fn serve(sandbox: &Sandbox, name: &str) -> (Serve, Option<Value>, std::thread::JoinHandle<String>) {
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", name, "--json"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bakeoff serve");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx
        .recv_timeout(READY_LIMIT)
        .ok()
        .and_then(|l| serde_json::from_str(&l).ok());
    (Serve(child), ready, stderr)
}

#[test]
fn a_tuned_winner_is_saved_journaled_reported_and_served() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(tune_args(&sandbox));
    let (status, stdout, stderr) = common::run(cmd, TUNE_LIMIT);
    assert_eq!(status.code(), Some(0), "tune: {stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let winner = &answer["winner"];
    assert_eq!(winner["fidelity"], "pass", "{answer}");
    assert!(stderr.contains("saved profile 'daily': "), "{stderr}");
    let run = json_of(&sandbox, &["runs", "show", "last", "--json"])["run"]["id"]
        .as_i64()
        .unwrap();

    // The profile: the winner's flags, then the slots and context the tune served it with.
    let profile = json_of(&sandbox, &["profile", "show", "daily", "--json"]);
    let mut expected: Vec<Value> = winner["args"].as_array().unwrap().clone();
    expected.extend(["-np", "1", "-c", "512"].map(Value::from));
    assert_eq!(profile["flags"], Value::Array(expected), "{profile}");
    assert_eq!(profile["run_id"], run);
    assert_eq!(profile["config_hash"], winner["config_hash"]);
    assert!(profile["model_sha256"]
        .as_str()
        .unwrap()
        .starts_with("b179c952"));
    assert!(profile["engine_path"]
        .as_str()
        .unwrap()
        .ends_with("llama-server"));

    // A second tune may not take the name without --force: refused before measuring anything.
    let mut again = sandbox.cmd();
    again.args(tune_args(&sandbox));
    let (status, _, refused) = common::run(again, LIMIT);
    assert_eq!(status.code(), Some(2), "{refused}");
    assert!(
        refused.contains("\nerror: --save daily: profile 'daily' already exists\n")
            && !refused.contains("engine start"),
        "{refused}"
    );

    // The journal lists the tune's entry, judged against the engine's defaults.
    let entries = json_of(&sandbox, &["journal", "show", "--json"]);
    let entry = &entries.as_array().unwrap()[0];
    assert_eq!(
        entry["title"],
        "tune: fastest faithful for SmolLM2-135M-Instruct.Q4_1.gguf at ctx 512"
    );
    assert_eq!(entry["after_run"], run);
    assert_eq!(entry["evidence"]["answer"]["winner"], *winner);
    let verdict = entry["verdict"].as_str().unwrap();
    assert!(
        ["KEEP", "NO IMPACT", "REVERTED"].contains(&verdict),
        "{entry}"
    );
    let mut show = sandbox.cmd();
    show.args(["journal", "show"]);
    let (_, listed, _) = common::run(show, LIMIT);
    assert!(listed.contains("tune: fastest faithful for"), "{listed}");

    // The HTML report holds the tune section and its pareto chart, one mark per point.
    let html = sandbox.dir.path().join("tune.html");
    let mut report = sandbox.cmd();
    report
        .args(["report", &run.to_string(), "-o", "html", "--out"])
        .arg(&html);
    let (status, _, stderr) = common::run(report, LIMIT);
    assert!(status.success(), "{stderr}");
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<section id=\"tune\">"));
    let points = answer["points"].as_array().unwrap().len();
    let chart = format!("id=\"tune-pareto-{run}\" data-kind=\"pareto\" data-marks=\"{points}\"");
    assert!(html.contains(&chart), "{chart} not in the report");
    assert!(html.contains(" winner</text>"), "the winner is labelled");

    // The saved profile starts behind its readiness gate; SIGINT stops it and its engine.
    let (mut served, ready, stderr) = serve(&sandbox, "daily");
    let Some(ready) = ready else {
        drop(served);
        panic!(
            "serve daily printed no ready line: {}",
            stderr.join().unwrap()
        );
    };
    assert_eq!(ready["profile"], "daily");
    assert!(ready["readiness"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["passed"] == true));
    let engine = ready["pid"].as_i64().unwrap() as i32;
    signal(served.0.id(), libc::SIGINT);
    assert_eq!(wait_exit(&mut served.0, LIMIT).code(), Some(130));
    assert!(!pid_alive(engine), "llama-server {engine} outlived serve");
}
