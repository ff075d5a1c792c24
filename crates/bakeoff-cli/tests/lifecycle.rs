//! A run's life under faults (issue 14): the machine-wide lock under simultaneous starts, a closed
//! stdout, kill -9 of bench and resume, SIGINT of gate, each database's own log folder, and a run
//! that measured nothing. Each asserts the status, the exit code, the message and that nothing
//! already measured is lost. Engine paths use a real llama-server on SmolLM2.

use crate::common;

use bakeoff::store::Store;
use bakeoff::system::MeasureLock;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);

fn show(sandbox: &Sandbox, run: &str) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", run, "--json"]);
    let (status, stdout, stderr) = run_cmd(cmd);
    assert!(status.success(), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn run_cmd(cmd: Command) -> (ExitStatus, String, String) {
    run(cmd, LIMIT)
}

fn trials_with(detail: &Value, status: &str) -> Vec<Value> {
    let trials = detail["trials"].as_array().unwrap();
    trials
        .iter()
        .filter(|t| t["status"] == status)
        .cloned()
        .collect()
}

/// The environment variable that turns this test binary into one lock-taking process of
/// [`simultaneous_lock_starts_never_hold_it_together`]: `LOCK_FILE|EVENT_LOG`.
const LOCK_CHILD: &str = "BAKEOFF_TEST_LOCK_CHILD";

/// One contender: wait for the start signal (a byte on stdin), then take the lock once, logging
/// `enter PID` and `leave PID` (appends are atomic and ordered) while holding it.
fn lock_child(spec: &str) {
    let (lock, log) = spec.split_once('|').unwrap();
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let deadline = Instant::now() + LIMIT;
    let pid = std::process::id();
    let append = |event: &str| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap();
        file.write_all(format!("{event} {pid}\n").as_bytes())
            .unwrap();
    };
    loop {
        match MeasureLock::acquire(Path::new(lock), "bakeoff bench (contender)") {
            Ok(held) => {
                append("enter");
                // Hold it a while, so that a second holder, if the lock let one in, would
                // overlap this one in the log.
                std::thread::sleep(Duration::from_millis(30));
                append("leave");
                drop(held);
                return;
            }
            Err(error) => {
                assert_eq!(error.exit_code(), 3, "{error}");
                assert!(
                    error.to_string().contains("another bakeoff is measuring"),
                    "{error}"
                );
                assert!(Instant::now() < deadline, "never got the lock");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Regression: the lock was create-then-write; a second starter read the still-empty file, called
/// it stale, deleted it and took it (two benches ran at once in 8 of 15 tries). 8 pairs of
/// processes start at once; the event log must alternate enter/leave of one process at a time.
#[test]
fn simultaneous_lock_starts_never_hold_it_together() {
    if let Ok(spec) = std::env::var(LOCK_CHILD) {
        return lock_child(&spec);
    }
    let sandbox = Sandbox::new();
    let (lock, log) = (
        sandbox.dir.path().join("measure.lock"),
        sandbox.dir.path().join("events"),
    );
    let spec = format!("{}|{}", lock.display(), log.display());
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..16)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "lifecycle::simultaneous_lock_starts_never_hold_it_together",
                    "--exact",
                    "--nocapture",
                ])
                .env(LOCK_CHILD, &spec)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every contender is started and waiting: release them together.
    for child in &mut children {
        child.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    for child in &mut children {
        assert!(wait_exit(child, LIMIT).success(), "a contender failed");
    }
    let events = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(lines.len(), 32, "each of 16 took it once: {events}");
    for pair in lines.chunks(2) {
        let (enter, leave) = (pair[0], pair[1]);
        assert!(
            enter.starts_with("enter "),
            "two holders at once:\n{events}"
        );
        assert_eq!(
            leave,
            enter.replace("enter", "leave"),
            "two holders at once:\n{events}"
        );
    }
}

#[test]
fn doctor_bandwidth_takes_the_lock_and_names_the_holder() {
    let sandbox = Sandbox::new();
    let lock = sandbox.dir.path().join("measure.lock");
    let held = MeasureLock::acquire(&lock, "bakeoff bench (the test)").unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["doctor", "--bandwidth"]);
    let (status, _, stderr) = run_cmd(cmd);
    assert_eq!(status.code(), Some(3), "{stderr}");
    let holder = format!(
        "pid {} running `bakeoff bench (the test)`",
        std::process::id()
    );
    assert!(
        stderr.contains(&format!(
            "error: another bakeoff is measuring on this machine: {holder}"
        )),
        "{stderr}"
    );
    let store = Store::open(&sandbox.db()).unwrap();
    let system = bakeoff::session::this_system(&store).unwrap();
    let stored = store
        .latest_system_measurement(system, "memory_bandwidth")
        .unwrap();
    assert_eq!(stored, None, "nothing measured while refused");
    drop(held);
}

#[test]
fn serve_holds_the_lock_while_starting_and_lets_go_once_ready() {
    let sandbox = Sandbox::new();
    let lock = sandbox.dir.path().join("measure.lock");
    let held = MeasureLock::acquire(&lock, "bakeoff bench (the test)").unwrap();
    let mut refused = sandbox.cmd();
    refused.args(["serve", "--model"]).arg(smollm());
    let (status, stdout, stderr) = run_cmd(refused);
    assert_eq!(
        status.code(),
        Some(3),
        "refused while another measures: {stderr}"
    );
    assert!(
        stdout.is_empty() && stderr.contains("another bakeoff is measuring"),
        "{stderr}"
    );
    drop(held);

    let mut served = serve(sandbox.cmd(), &[]);
    // Ready: measuring commands may measure this server now.
    let lock_free = MeasureLock::acquire(&lock, "bakeoff load --url (the test)");
    assert!(
        lock_free.is_ok(),
        "serve kept the lock after ready: {:?}",
        lock_free.err()
    );
    drop(lock_free);
    signal(served.child.id(), libc::SIGINT);
    let status = wait_exit(&mut served.child, LIMIT);
    assert_eq!(status.code(), Some(130));
}

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are ours, each wrapped once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Run with stdout a closed pipe; returns (status, stderr).
fn with_closed_stdout(mut cmd: Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_exit(&mut child, LIMIT);
    (status, stderr.join().unwrap())
}

/// A stored run with a trial and samples, written through the library (no engine involved).
fn stored_run(sandbox: &Sandbox) -> i64 {
    let store = Store::open(&sandbox.db()).unwrap();
    let system = bakeoff::session::this_system(&store).unwrap();
    let params = serde_json::json!({});
    let run = store
        .begin_run("bench", "bakeoff bench", system, Some("t"), &params)
        .unwrap();
    let workload = serde_json::json!({"test": "tg8"});
    let trial = bakeoff::store::NewTrial::new(None, &workload, 0);
    let trial = store.begin_trial(run, &trial).unwrap();
    for seq in 0..50 {
        let unit = bakeoff::domain::Unit::TokensPerSecond;
        store
            .sample(trial, "tg", 100.0 + seq as f64, unit, "client", seq)
            .unwrap();
    }
    store.end_trial(trial, "ok", None).unwrap();
    store.end_run(run, "ok", None).unwrap();
    run
}

/// Regression: `runs show last --json | head -1` panicked on the closed pipe (exit 101).
#[test]
fn a_closed_stdout_is_success_for_runs_show_and_list() {
    let sandbox = Sandbox::new();
    stored_run(&sandbox);
    for args in [
        &["runs", "show", "last", "--json"][..],
        &["runs", "show", "last"],
        &["runs", "list"],
    ] {
        let mut cmd = sandbox.cmd();
        cmd.args(args);
        let (status, stderr) = with_closed_stdout(cmd);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("error:"),
            "{args:?}: {stderr}"
        );
    }
}

/// Regression: `doctor --bandwidth | head -2` panicked (exit 101); the measured figure is kept.
#[test]
fn a_closed_stdout_is_success_for_doctor_bandwidth_and_the_figure_is_stored() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["doctor", "--bandwidth", "--engine-path"])
        .arg(llama_bin("llama-server").parent().unwrap());
    let (status, stderr) = with_closed_stdout(cmd);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error:"),
        "{stderr}"
    );
    let store = Store::open(&sandbox.db()).unwrap();
    let system = bakeoff::session::this_system(&store).unwrap();
    let stored = store
        .latest_system_measurement(system, "memory_bandwidth")
        .unwrap();
    assert!(
        stored.is_some_and(|gb| gb > 0.0),
        "the bandwidth was stored: {stored:?}"
    );
}

/// Wait (bounded) until the newest run of `db` has a trial in flight after at least `ok` stored,
/// while `child` runs.
fn wait_for_trial_in_flight(child: &mut Child, db: &Path, ok: usize) -> i64 {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bakeoff exited ({status}) before a trial was in flight");
        }
        if let Ok(store) = Store::open(db) {
            let run = store
                .runs(1)
                .ok()
                .and_then(|runs| runs.first().map(|r| r.id));
            let trials = run.and_then(|id| store.trials(id).ok()).unwrap_or_default();
            let done = trials.iter().filter(|t| t.status == "ok").count();
            let running = trials.iter().find(|t| t.status == "running");
            if let (Some(trial), true) = (running, done >= ok) {
                return trial.id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trial in flight within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: after kill -9 a run stayed `running` for ever, and its interrupted trial stayed
/// `running` inside the resumed, finished run.
#[test]
fn kill_9_of_bench_reads_abandoned_and_resume_finishes_it_marking_the_cut_trial() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args([
        "-ctk", "f16,q8_0", "-p", "16", "-n", "32", "-r", "3", "--warmup", "0",
    ]);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cut = wait_for_trial_in_flight(&mut child, &sandbox.db(), 2);
    signal(child.id(), libc::SIGKILL);
    wait_exit(&mut child, LIMIT);

    let mut list = sandbox.cmd();
    list.args(["runs", "list"]);
    let (status, listed, stderr) = run_cmd(list);
    assert!(status.success(), "{stderr}");
    let row = listed.lines().nth(1).unwrap_or_default();
    assert!(row.contains("abandoned"), "runs list: {listed}");
    let before = show(&sandbox, "last");
    assert_eq!(before["run"]["status"], "abandoned");
    let kept = trials_with(&before, "ok");
    assert!(kept.len() >= 2, "stored before the kill: {}", kept.len());

    let run_id = before["run"]["id"].to_string();
    let mut resume = sandbox.cmd();
    resume.args(["bench", "--resume", &run_id]);
    let (status, _, stderr) = run_cmd(resume);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let line = format!(
        "resuming run {run_id}: {} trials already stored",
        kept.len()
    );
    assert!(stderr.contains(&line), "{stderr}");

    let after = show(&sandbox, &run_id);
    assert_eq!(after["run"]["status"], "ok");
    assert!(
        trials_with(&after, "running").is_empty(),
        "no trial left running: {after}"
    );
    let interrupted = trials_with(&after, "interrupted");
    assert_eq!(interrupted.len(), 1, "{after}");
    assert_eq!(interrupted[0]["id"], cut);
    assert_eq!(
        trials_with(&after, "ok").len(),
        12,
        "2 configs x 2 tests x 3 reps"
    );
    for trial in &kept {
        let same = after["trials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == trial["id"]);
        assert_eq!(
            same,
            Some(trial),
            "a trial measured before the kill is kept as it was"
        );
    }
}

/// A one-candidate gate file (no KLD, no agreement) on SmolLM2.
fn gate_file(dir: &Path) -> PathBuf {
    let file = dir.join("gate.toml");
    let body = format!(
        "model = \"{}\"\nctx = 1024\n[baseline]\nname = \"plain\"\nflags = \"-t 1\"\n[[candidate]]\nname = \"q8\"\nflags = \"-t 1 -ctk q8_0\"\n[checks]\nkld = \"off\"\nagreement = false\ntg_reps = 3\n",
        smollm().display()
    );
    std::fs::write(&file, body).unwrap();
    file
}

/// Regression: SIGINT of gate exited 1 with a spurious "Unexpected EOF" (the in-flight request
/// failed when its engine was stopped).
#[test]
fn sigint_of_gate_exits_130_with_no_error_line_and_the_run_interrupted() {
    let sandbox = Sandbox::new();
    let file = gate_file(sandbox.dir.path());
    let mut cmd = sandbox.cmd();
    cmd.arg("gate").arg(&file);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Interrupt while the baseline's canaries are being asked (a request in flight).
    while !seen.contains("plain: canaries") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "gate ended early: {seen}"
        );
        seen.push_str(&line);
    }
    signal(child.id(), libc::SIGINT);
    let rest = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_exit(&mut child, LIMIT);
    let stderr = seen + &rest.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("error:"), "no error line: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let detail = show(&sandbox, "last");
    assert_eq!(detail["run"]["status"], "interrupted", "{detail}");
    assert!(trials_with(&detail, "running").is_empty(), "{detail}");
}

/// Regression: Ctrl-C of bench stored the trial it cut off as failed ("llama-server has exited
/// during the trial") and warned "1 trial(s) failed": the stop is not a failure of the config.
#[test]
fn sigint_of_bench_marks_the_cut_trial_interrupted_not_failed() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args(["-p", "0", "-n", "64", "-r", "20", "--warmup", "0"]);
    let (mut child, log) = spawn_logging_stderr(sandbox.dir.path(), cmd);
    let cut = wait_for_trial_in_flight(&mut child, &sandbox.db(), 1);
    signal(child.id(), libc::SIGINT);
    let status = wait_exit(&mut child, LIMIT);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("failed"), "{stderr}");
    let detail = show(&sandbox, "last");
    assert_eq!(detail["run"]["status"], "interrupted", "{detail}");
    assert!(trials_with(&detail, "failed").is_empty(), "{detail}");
    assert!(trials_with(&detail, "running").is_empty(), "{detail}");
    assert!(
        !trials_with(&detail, "ok").is_empty(),
        "measured trials kept"
    );
    // The signal may land between two trials; when it cut one, that one says so.
    for trial in trials_with(&detail, "interrupted") {
        assert_eq!(trial["id"], cut, "{detail}");
        assert_eq!(trial["note"], "interrupted by SIGINT", "{detail}");
    }
}

/// Start `cmd` with its stderr in `dir/stderr` (read after it exits; a pipe nobody drains could
/// block it), stdout discarded.
fn spawn_logging_stderr(dir: &Path, mut cmd: Command) -> (Child, PathBuf) {
    let log = dir.join("stderr");
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap();
    (child, log)
}

/// A tiny bench stored in `db`.
fn tiny_bench(sandbox: &Sandbox, db: &Path) -> (ExitStatus, String) {
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_DB", db)
        .arg("bench")
        .arg("-m")
        .arg(smollm());
    cmd.args(["-p", "0", "-n", "4", "-r", "1", "--warmup", "0"]);
    let (status, _, stderr) = run_cmd(cmd);
    (status, stderr)
}

/// Regression: every database in a folder wrote its engine logs to the same `runs/<id>/`.
#[test]
fn two_databases_in_one_folder_keep_separate_log_folders() {
    let sandbox = Sandbox::new();
    let dir = sandbox.dir.path();
    for name in ["a", "b"] {
        let (status, stderr) = tiny_bench(&sandbox, &dir.join(format!("{name}.db")));
        assert!(status.success(), "{name}: {stderr}");
    }
    assert!(!dir.join("runs").exists(), "no shared runs/ folder");
    for name in ["a", "b"] {
        let mut cmd = sandbox.cmd();
        cmd.env("BAKEOFF_DB", dir.join(format!("{name}.db")));
        cmd.args(["runs", "show", "1", "--json"]);
        let (status, stdout, stderr) = run_cmd(cmd);
        assert!(status.success(), "{stderr}");
        let detail: Value = serde_json::from_str(&stdout).unwrap();
        let logs = detail["logs"].as_array().unwrap();
        assert!(!logs.is_empty(), "{detail}");
        let own = dir.join(format!("{name}.runs")).join("1");
        for log in logs {
            let path = PathBuf::from(log["path"].as_str().unwrap());
            assert!(
                path.starts_with(&own),
                "{name}: {} not under {}",
                path.display(),
                own.display()
            );
            assert!(path.is_file(), "{}", path.display());
        }
        assert_eq!(
            trials_with(&detail, "ok").len(),
            1,
            "{name}'s measurement is kept"
        );
    }
}

/// Regression: `bench --kv banana` skipped every cell and was stored as ok, exit 0.
#[test]
fn a_bench_that_measured_nothing_exits_1_and_is_stored_failed() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(smollm());
    cmd.args([
        "--kv", "banana", "-p", "0", "-n", "4", "-r", "1", "--warmup", "0",
    ]);
    let (status, _, stderr) = run_cmd(cmd);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: nothing measured: 1 trial skipped (first: "),
        "{stderr}"
    );
    let detail = show(&sandbox, "last");
    assert_eq!(detail["run"]["status"], "failed");
    let error = detail["run"]["error"].as_str().unwrap();
    assert!(error.starts_with("nothing measured"), "{error}");
    assert_eq!(
        trials_with(&detail, "skipped").len(),
        1,
        "the skipped trial and its reason are kept"
    );
}

/// Regression: SIGTERM while `load` waited on a request that never came back left the run
/// `running` (the signal thread exited the process before the command recorded its end). A
/// scripted endpoint (the one fake server bakeoff has; a real engine cannot be made to stall on
/// cue) answers the attach check, then stalls the measured request after three tokens.
#[test]
fn sigterm_while_load_blocks_on_a_stalled_request_ends_the_run_interrupted() {
    use bakeoff::measure::load::selftest::{Fault, ScriptedEndpoint};
    let sandbox = Sandbox::new();
    let endpoint = ScriptedEndpoint::faulty_after(0, Fault::Stall(3), 1).unwrap();
    let dataset = sandbox.dir.path().join("chats.jsonl");
    let chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n";
    std::fs::write(&dataset, chat).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.arg("load").arg("--dataset").arg(&dataset);
    cmd.args([
        "--url",
        &endpoint.url,
        "--concurrency",
        "1",
        "--requests",
        "1",
    ]);
    let (mut child, log) = spawn_logging_stderr(sandbox.dir.path(), cmd);
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let in_flight = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_trial_in_flight(&mut child, &sandbox.db(), 0)
    }));
    assert!(in_flight.is_ok(), "stderr: {}", stderr());
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child, LIMIT);
    let stderr = stderr();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
    let detail = show(&sandbox, "last");
    assert_eq!(detail["run"]["status"], "interrupted", "{detail}");
    assert!(trials_with(&detail, "running").is_empty(), "{detail}");
}
