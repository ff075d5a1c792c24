//! Faults around bakeoff, injected on purpose: a real llama-server killed (SIGKILL) or frozen
//! (SIGSTOP) in the middle of a bench trial, a load step or a gate candidate; and, for faults a
//! real server cannot be made to produce, the scripted endpoint (`load --serve-scripted
//! --scripted-fault`) hanging, stalling mid-stream, answering HTTP 500 or bad JSON. Each test
//! asserts the stored status, the message, the exit code where bakeoff's own code decides it, and
//! that what was measured before the fault is kept.

use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);

/// A bakeoff command running in the background, its stderr read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Running {
    fn start(mut cmd: std::process::Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bakeoff");
        let stdout = child.stdout.take().expect("stdout");
        let stdout =
            std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }

    /// Wait (bounded) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str) {
        self.wait_for_all(&[text]);
    }

    /// Wait (bounded) for a stderr line containing every one of `parts`.
    fn wait_for_all(&mut self, parts: &[&str]) {
        let text = parts.join(" … ");
        let deadline = Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = parts.iter().all(|p| line.contains(p));
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no stderr line with {text:?}; got:\n{}",
            self.seen.join("\n")
        );
    }

    /// The llama-server bakeoff started (its child), waiting for it to appear. Asked once the
    /// engine serves: before, the child may be the `llama-server --version` probe of discovery.
    fn engine_pid(&self) -> i32 {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Some(pid) = child_named(self.child.id() as i32, "llama-server") {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("bakeoff started no llama-server");
    }

    /// Wait for the exit; returns it with all of stdout and stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let status = wait_exit(&mut self.child, LIMIT);
        self.seen.extend(self.lines.iter());
        (status, self.stdout.join().unwrap(), self.seen.join("\n"))
    }
}

/// A live child of `parent` whose command name is `name` (from `/proc/PID/stat`).
fn child_named(parent: i32, name: &str) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: i32 = fields.get(1)?.parse().ok()?;
        (ppid == parent && comm == name && fields[0] != "Z").then_some(pid)
    })
}

fn runs_show(sandbox: &Sandbox, run: &str) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", run, "--json"]);
    let (_, stdout, stderr) = run_cmd(cmd);
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("runs show: {stderr}"))
}

fn run_cmd(cmd: std::process::Command) -> (ExitStatus, String, String) {
    run(cmd, LIMIT)
}

fn trials(run: &Value) -> Vec<Value> {
    run["trials"].as_array().expect("trials").clone()
}

/// (test name, status, note) of each trial.
fn statuses(run: &Value) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    trials(run)
        .iter()
        .map(|t| {
            (
                text(&t["workload"]["test"]),
                text(&t["status"]),
                text(&t["note"]),
            )
        })
        .collect()
}

fn has_sample(trial: &Value, metric: &str) -> bool {
    let samples = trial["samples"].as_array().expect("samples");
    samples.iter().any(|s| s["metric"] == metric)
}

fn bench(sandbox: &Sandbox, extra: &[&str]) -> std::process::Command {
    let mut cmd = sandbox.cmd();
    cmd.args(["bench", "-m"]).arg(smollm());
    cmd.args(["--engine-path"]).arg(llama_bin("llama-server"));
    cmd.args(["-p", "16", "-r", "1", "--warmup", "0", "-t", "1"]);
    cmd.args(extra);
    cmd
}

#[test]
fn bench_names_an_engine_killed_mid_trial_and_measures_the_next_config() {
    // Regression: a llama-server killed mid-trial ended the sweep ("stream broke after 0 events:
    // Error while decoding chunks"); later configs were never tried.
    let sandbox = Sandbox::new();
    let mut bench = Running::start(bench(&sandbox, &["-n", "256", "--ctk", "f16,q8_0"]));
    bench.wait_for("config 1/2");
    bench.wait_for_all(&["pp16 rep 1: ", " t/s"]);
    let first_engine = bench.engine_pid();
    signal(first_engine as u32, libc::SIGKILL);
    let (status, _, stderr) = bench.finish();
    assert_ne!(status.code(), Some(101), "no panic: {stderr}");
    let run = runs_show(&sandbox, "last");
    let found = statuses(&run);
    let tests: Vec<(&str, &str)> = found
        .iter()
        .map(|(test, status, _)| (test.as_str(), status.as_str()))
        .collect();
    assert_eq!(
        tests,
        [
            ("pp16", "ok"),
            ("tg256", "failed"),
            ("pp16", "ok"),
            ("tg256", "ok")
        ],
        "{stderr}"
    );
    let note = &found[1].2;
    assert!(
        note.contains(&format!(
            "llama-server (pid {first_engine}) was killed by signal 9"
        )),
        "{note}"
    );
    assert!(note.contains("during the trial"), "{note}");
    // What was measured before the kill is kept.
    assert!(has_sample(&trials(&run)[0], "pp_tps"));
    assert!(stderr.contains("1 trial(s) failed"), "{stderr}");
    assert!(!pid_alive(first_engine));
}

#[test]
fn bench_detects_a_frozen_engine_within_the_request_bounds() {
    // Regression: a frozen engine stalled bench for the fixed 600 s read timeout per request.
    let sandbox = Sandbox::new();
    // Bounds generous enough that a busy machine's slow tokens do not trip them first.
    let args = [
        "-n",
        "256",
        "--idle-timeout",
        "10",
        "--first-byte-timeout",
        "20",
    ];
    let mut bench = Running::start(bench(&sandbox, &args));
    bench.wait_for_all(&["pp16 rep 1: ", " t/s"]);
    let engine = bench.engine_pid();
    signal(engine as u32, libc::SIGSTOP);
    let (status, _, stderr) = bench.finish();
    assert_ne!(status.code(), Some(101), "no panic: {stderr}");
    let found = statuses(&runs_show(&sandbox, "last"));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].1.as_str(), found[1].1.as_str()), ("ok", "failed"));
    let note = &found[1].2;
    assert!(
        note.contains(&format!("(pid {engine}) is frozen")),
        "{note}"
    );
    // Frozen before its first token or after some: either bound names itself.
    let bounded = ["no first event within 20 s", "no data for 10 s after"];
    assert!(bounded.iter().any(|b| note.contains(b)), "{note}");
    assert!(
        !pid_alive(engine),
        "the frozen engine is stopped, not leaked"
    );
}

fn load_on_model(sandbox: &Sandbox, extra: &[&str]) -> std::process::Command {
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "-m"]).arg(smollm());
    cmd.args(["--engine-path"]).arg(llama_bin("llama-server"));
    cmd.args(["--input", "16", "--output", "256", "--requests", "4"]);
    cmd.args(extra);
    cmd
}

#[test]
fn load_fails_the_step_whose_engine_was_killed_and_says_so() {
    // Regression: load stored a step of connect errors as ok and exited 0.
    let sandbox = Sandbox::new();
    let mut load = Running::start(load_on_model(&sandbox, &["--concurrency", "1,2"]));
    load.wait_for("c1: 1 done");
    let engine = load.engine_pid();
    signal(engine as u32, libc::SIGKILL);
    let (status, _, stderr) = load.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("was killed by signal 9"), "{stderr}");
    let run = runs_show(&sandbox, "last");
    let found = statuses(&run);
    assert_eq!(found.len(), 1, "no step after the engine died: {found:?}");
    assert_eq!(found[0].1, "failed");
    assert!(
        found[0]
            .2
            .contains("killed by signal 9 (SIGKILL) during the step"),
        "{}",
        found[0].2
    );
    // The request that finished before the kill is kept.
    assert!(has_sample(&trials(&run)[0], "e2e_ms"));
}

#[test]
fn load_fails_the_step_of_a_frozen_engine_within_the_bounds() {
    let sandbox = Sandbox::new();
    let args = [
        "--concurrency",
        "1",
        "--first-byte-timeout",
        "10",
        "--idle-timeout",
        "10",
    ];
    let mut load = Running::start(load_on_model(&sandbox, &args));
    load.wait_for("c1: 1 done, 0 errors");
    let engine = load.engine_pid();
    signal(engine as u32, libc::SIGSTOP);
    let (status, _, stderr) = load.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let found = statuses(&runs_show(&sandbox, "last"));
    assert_eq!(found[0].1, "failed");
    assert!(found[0].2.contains("is frozen"), "{}", found[0].2);
    assert!(found[0].2.contains("timeout"), "{}", found[0].2);
    assert!(
        !pid_alive(engine),
        "the frozen engine is stopped, not leaked"
    );
}

#[test]
fn gate_goes_on_with_the_next_candidate_when_one_engine_is_killed() {
    // Regression: a candidate's engine dying ended the gate; later candidates never ran.
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("candidates.toml");
    let body = format!(
        "model = \"{}\"\nctx = 1024\n[baseline]\nname = \"base\"\nflags = \"-t 1\"\n[[candidate]]\nname = \"doomed\"\nflags = \"-t 1\"\n[[candidate]]\nname = \"survivor\"\nflags = \"-t 1\"\n[checks]\nkld = \"off\"\nagreement = false\ncanaries = false\ntg_reps = 1\ntg_tokens = 512\n",
        smollm().display()
    );
    std::fs::write(&file, body).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(&file).args(["-o", "json"]);
    cmd.args(["--engine-path"]).arg(llama_bin("llama-server"));
    let mut gate = Running::start(cmd);
    gate.wait_for("doomed: decode speed");
    let engine = gate.engine_pid();
    signal(engine as u32, libc::SIGKILL);
    let (status, stdout, stderr) = gate.finish();
    assert!(
        status.success(),
        "without --strict a FAIL row exits 0: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("gate -o json");
    let rows = report["candidates"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["candidate"] == name).unwrap();
    assert_eq!(row("doomed")["overall"], "fail");
    let blocker = row("doomed")["blocker"].as_str().unwrap();
    assert!(
        blocker.contains(&format!("(pid {engine}) was killed by signal 9")),
        "{blocker}"
    );
    assert!(
        row("survivor")["tg_tps"].as_f64().is_some(),
        "{}",
        row("survivor")
    );
    assert!(
        row("base")["tg_tps"].as_f64().is_some(),
        "the baseline's figures are kept"
    );
}

/// `load --serve-scripted --scripted-fault FAULT`, and its URL once it is ready.
fn scripted(sandbox: &Sandbox, fault: &str) -> (Child, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "--serve-scripted", "--scripted-fault", fault]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scripted endpoint");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready line")
        .to_string();
    (child, url)
}

fn stop(mut child: Child) {
    signal(child.id(), libc::SIGTERM);
    wait_exit(&mut child, LIMIT);
}

#[test]
fn load_against_a_faulty_server_fails_each_step_with_the_reason_within_the_bounds() {
    // Regression: a server that never answered, or stalled mid-stream, hung load past 200 s;
    // steps of only HTTP 500s or bad JSON were stored as ok.
    for (fault, kind, reason) in [
        (
            "hang",
            "timeout",
            "no first event within 1 s (first-byte timeout)",
        ),
        (
            "stall",
            "timeout",
            "no data for 1 s after 3 events (idle timeout)",
        ),
        ("500", "http_500", "HTTP 500"),
        ("bad-json", "bad_json", "is not JSON"),
    ] {
        let sandbox = Sandbox::new();
        let (server, url) = scripted(&sandbox, fault);
        let mut cmd = sandbox.cmd();
        cmd.args([
            "load",
            "--url",
            &url,
            "--concurrency",
            "1",
            "--requests",
            "2",
        ]);
        cmd.args([
            "--first-byte-timeout",
            "1",
            "--idle-timeout",
            "1",
            "-o",
            "json",
        ]);
        let (status, _, stderr) = run_cmd(cmd);
        stop(server);
        assert_ne!(status.code(), Some(101), "{fault}: no panic: {stderr}");
        let run = runs_show(&sandbox, "last");
        let found = statuses(&run);
        assert_eq!(found.len(), 1, "{fault}: {found:?}");
        let (_, step_status, note) = &found[0];
        assert_eq!(step_status, "failed", "{fault}: {note}");
        assert!(
            note.starts_with("every request failed: 2 of 2 requests failed"),
            "{fault}: {note}"
        );
        assert!(note.contains(&format!("2 × {kind}")), "{fault}: {note}");
        assert!(note.contains(reason), "{fault}: {note}");
        assert!(stderr.contains("c1: failed"), "{fault}: {stderr}");
    }
}

#[test]
fn a_failed_engine_start_shows_the_cause_not_the_usage_text() {
    // Regression: the error was the log's last line, "to show complete usage, run with -h".
    let sandbox = Sandbox::new();
    let mut cmd = bench(&sandbox, &["-n", "4"]);
    cmd.args(["--", "--rope-scaling", "banana"]);
    let (_, _, stderr) = run_cmd(cmd);
    let found = statuses(&runs_show(&sandbox, "last"));
    assert_eq!(found[0].1, "skipped", "{found:?}");
    let note = &found[0].2;
    assert!(note.contains("--rope-scaling"), "{note}");
    assert!(!note.contains("to show complete usage"), "{note}");
    assert!(stderr.contains("--rope-scaling"), "{stderr}");
}
