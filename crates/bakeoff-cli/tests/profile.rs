//! `bakeoff profile` and `bakeoff serve PROFILE` on real runs: a `bakeoff bench` sweep of SmolLM2
//! on a real llama-server saved as profiles, exported as a command line and a systemd unit, served
//! behind the readiness gate, and a candidate that fails readiness replaced by its fallback.

use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

fn bakeoff(sandbox: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    run(cmd, LIMIT)
}

fn ok(sandbox: &Sandbox, args: &[&str]) -> (String, String) {
    let (status, stdout, stderr) = bakeoff(sandbox, args);
    assert!(status.success(), "bakeoff {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn json(sandbox: &Sandbox, args: &[&str]) -> Value {
    let (stdout, _) = ok(sandbox, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// A small real bench run of `model` (tg8, 2 repetitions) tagged `tag`.
fn bench(sandbox: &Sandbox, model: &std::path::Path, tag: &str, flags: &[&str]) {
    let mut cmd = sandbox.cmd();
    cmd.arg("bench").arg("-m").arg(model);
    cmd.args([
        "-n", "8", "-p", "0", "-r", "2", "--warmup", "0", "--tag", tag,
    ]);
    cmd.args(flags);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "bench {tag}: {stderr}");
    assert!(
        !stderr.contains("skipped"),
        "bench {tag} measured every config: {stderr}"
    );
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `bakeoff serve ARGS --json` that printed its ready line (or failed: stdout empty). Dropping it
/// (a failed assertion) interrupts bakeoff, so no server outlives the test.
struct Serve {
    child: std::process::Child,
    ready: Option<Value>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), libc::SIGINT);
            wait_exit(&mut self.child, Duration::from_secs(60));
        }
    }
}

/// The readiness gate asks every canary: allow for a machine shared with other builds.
const READY_LIMIT: Duration = Duration::from_secs(600);

fn serve(sandbox: &Sandbox, args: &[&str]) -> Serve {
    let mut cmd = sandbox.cmd();
    cmd.arg("serve").args(args).arg("--json");
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
    let mut served = Serve {
        child,
        ready: None,
        stderr: Some(stderr),
    };
    let line = rx.recv_timeout(READY_LIMIT);
    served.ready = line.ok().and_then(|l| serde_json::from_str(&l).ok());
    served
}

/// The ready line, or a failure that shows what bakeoff said.
fn expect_ready(served: &mut Serve) -> Value {
    if let Some(ready) = &served.ready {
        return ready.clone();
    }
    if served.child.try_wait().ok().flatten().is_none() {
        signal(served.child.id(), libc::SIGINT);
    }
    wait_exit(&mut served.child, Duration::from_secs(60));
    let stderr = served.stderr.take().unwrap().join().unwrap();
    panic!("no ready line; stderr:\n{stderr}");
}

/// SIGINT a serving bakeoff; it must exit 130 leaving its engine dead. Returns its stderr.
fn interrupt(mut served: Serve) -> String {
    let ready = expect_ready(&mut served);
    let engine = ready["pid"].as_i64().unwrap() as i32;
    assert!(
        pid_alive(engine),
        "engine pid {engine} not running while ready"
    );
    signal(served.child.id(), libc::SIGINT);
    let status = wait_exit(&mut served.child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    assert!(
        !pid_alive(engine),
        "llama-server {engine} outlived bakeoff serve"
    );
    served.stderr.take().unwrap().join().unwrap()
}

/// Three canaries SmolLM2-135M answers (count, JSON, a CJK marker) with short answers: the gate
/// stays quick, and random weights still fail every one.
fn small_suite(sandbox: &Sandbox) -> String {
    let path = sandbox.dir.path().join("canaries.toml");
    std::fs::write(
        &path,
        r#"[[canary]]
name = "count"
max_tokens = 24
prompt = "How many legs does a cat have? Answer with a number."
expect = { kind = "count", answer = 4 }

[[canary]]
name = "json_object"
max_tokens = 32
prompt = "Write a JSON object with the keys \"name\" and \"age\" describing a person called Ann who is 30. Output only the JSON."
expect = { kind = "json", keys = ["name", "age"] }

[[canary]]
name = "zh_marker"
max_tokens = 24
prompt = "Copy this marker exactly, with nothing before or after it: 鳳梨酥-七號"
expect = { kind = "echo", marker = "鳳梨酥-七號" }
"#,
    )
    .unwrap();
    path.display().to_string()
}

fn health(url: &str) -> String {
    let mut curl = Command::new("curl");
    curl.args(["-s", &format!("{url}/health")]);
    run(curl, Duration::from_secs(30)).1
}

/// Sections of a unit file: `[Section]` → `Key=Value` lines.
fn unit_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_string(), Vec::new()));
        } else {
            let (key, value) = line.split_once('=').expect("Key=Value line");
            sections
                .last_mut()
                .expect("a key before any section")
                .1
                .push((key.into(), value.into()));
        }
    }
    sections
}

#[test]
fn save_show_and_export_a_sweep_winner() {
    let sandbox = Sandbox::new();
    bench(
        &sandbox,
        &smollm(),
        "kv",
        &["-ctk", "f16,q8_0", "-fa", "on", "--", "--load-mode", "none"],
    );

    let (stdout, stderr) = ok(
        &sandbox,
        &["profile", "save", "fastest", "--from", "kv", "--json"],
    );
    assert!(stderr.contains("fastest of 2 by tg median"), "{stderr}");
    assert!(
        stderr.contains("not stored: -np 1, -c "),
        "bench-only settings named: {stderr}"
    );
    let fastest: Value = serde_json::from_str(&stdout).unwrap();
    let flags = strings(&fastest["flags"]);
    assert_eq!(flags[0], "-ctk");
    assert!(["f16", "q8_0"].contains(&flags[1].as_str()), "{flags:?}");
    assert!(
        flags.ends_with(&["-fa", "on", "--load-mode", "none"].map(String::from)),
        "pass-through flags kept: {flags:?}"
    );
    assert!(fastest["model_sha256"]
        .as_str()
        .unwrap()
        .starts_with("b179c952"));
    let server = llama_bin("llama-server").canonicalize().unwrap();
    assert_eq!(
        fastest["engine_path"].as_str(),
        Some(server.to_str().unwrap())
    );
    assert_eq!(fastest["run_id"], 1);

    // A named config (by hash prefix), with serving flags added after `--`.
    let detail = json(&sandbox, &["runs", "show", "kv", "--json"]);
    let q8 = detail["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["flags"]["flags"]["-ctk"] == "q8_0")
        .unwrap()["config_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let from = format!("kv:{}", &q8[..6]);
    ok(
        &sandbox,
        &[
            "profile",
            "save",
            "q8",
            "--from",
            &from,
            "--fallback",
            "fastest",
            "--",
            "-c",
            "2048",
            "-np",
            "2",
        ],
    );
    let shown = json(&sandbox, &["profile", "show", "q8", "--json"]);
    assert_eq!(shown["config_hash"], q8.as_str());
    assert_eq!(shown["fallback"], "fastest");
    assert_eq!(
        strings(&shown["flags"]),
        [
            "-ctk",
            "q8_0",
            "-fa",
            "on",
            "--load-mode",
            "none",
            "-c",
            "2048",
            "-np",
            "2"
        ]
    );
    let (text, _) = ok(&sandbox, &["profile", "show", "q8"]);
    assert!(
        text.contains("  flags     -ctk q8_0 -fa on --load-mode none -c 2048 -np 2\n"),
        "{text}"
    );
    let (status, _, stderr) = bakeoff(&sandbox, &["profile", "save", "q8", "--from", "kv"]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("error: profile 'q8' already exists"),
        "{stderr}"
    );

    let (command, _) = ok(
        &sandbox,
        &["profile", "export", "q8", "--command", "--port", "8099"],
    );
    let model = smollm().canonicalize().unwrap();
    assert_eq!(
        command,
        format!(
            "{} -m {} --host 127.0.0.1 --port 8099 -ctk q8_0 -fa on --load-mode none -c 2048 -np 2\n",
            server.display(),
            model.display()
        )
    );

    let unit_path = sandbox.dir.path().join("bakeoff-q8.service");
    ok(
        &sandbox,
        &[
            "profile",
            "export",
            "q8",
            "--systemd",
            "--out",
            unit_path.to_str().unwrap(),
        ],
    );
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let sections = unit_sections(&unit);
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Unit", "Service", "Install"]);
    let get = |section: usize, key: &str| {
        sections[section]
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        get(0, "Description"),
        format!(
            "llama-server profile q8 (from bakeoff run 1, config {})",
            &q8[..8]
        )
    );
    assert_eq!(get(1, "ExecStart"), command.trim().replace("8099", "8080"));
    assert_eq!(get(1, "Restart"), "on-failure");
    assert_eq!(get(2, "WantedBy"), "default.target");
    systemd_verify(&unit_path);

    let (list, _) = ok(&sandbox, &["profile", "list"]);
    assert!(
        list.lines().nth(1).unwrap().starts_with("fastest "),
        "{list}"
    );
    assert!(list.contains("q8 ") && list.contains(" fastest "), "{list}");
    let (status, _, stderr) = bakeoff(&sandbox, &["profile", "delete", "fastest"]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("error: profile 'fastest' is the fallback of q8"),
        "{stderr}"
    );
    ok(&sandbox, &["profile", "delete", "q8"]);
    let names: Vec<Value> = json(&sandbox, &["profile", "list", "--json"])
        .as_array()
        .unwrap()
        .to_vec();
    assert_eq!(names.len(), 1);
}

/// `systemd-analyze verify` accepts the unit (set-up installs systemd).
fn systemd_verify(unit: &std::path::Path) {
    let Ok(output) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    else {
        panic!("systemd-analyze is missing: install systemd (apt-get install systemd) to verify exported units");
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let name = unit.file_name().unwrap().to_string_lossy();
    // Complaints about the host's own units are not ours; any line naming our unit is.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(name.as_ref()))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn serve_a_profile_behind_its_readiness_gate() {
    let sandbox = Sandbox::new();
    bench(&sandbox, &smollm(), "base", &[]);
    ok(&sandbox, &["profile", "save", "daily", "--from", "base"]);

    let mut served = serve(&sandbox, &["daily"]);
    let ready = expect_ready(&mut served);
    assert_eq!(
        (ready["profile"].as_str(), ready["role"].as_str()),
        (Some("daily"), Some("candidate"))
    );
    let checks: Vec<(&str, bool)> = ready["readiness"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("model", true),
            ("start", true),
            ("health", true),
            ("completion", true),
            ("canaries", true)
        ]
    );
    assert!(health(ready["url"].as_str().unwrap()).contains("ok"));
    interrupt(served);

    let detail = json(&sandbox, &["runs", "show", "last", "--json"]);
    assert_eq!(
        (
            detail["run"]["kind"].as_str(),
            detail["run"]["status"].as_str()
        ),
        (Some("serve"), Some("interrupted"))
    );
    assert_eq!(detail["params"]["profile"], "daily");
    assert_eq!(detail["params"]["role"], "candidate");
    // Each check and each of the built-in canaries' answers is stored with the run.
    let run = detail["run"]["id"].as_i64().unwrap();
    let store = bakeoff::store::Store::open(&sandbox.db()).unwrap();
    let checks: Vec<String> = store
        .fidelity_rows(run, Some("serve-readiness"))
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.name, r.status))
        .collect();
    assert_eq!(
        checks,
        [
            "model pass",
            "start pass",
            "health pass",
            "completion pass",
            "canaries pass"
        ]
    );
    let canaries = store.fidelity_rows(run, Some("canary")).unwrap();
    assert_eq!(
        canaries.len(),
        bakeoff::quality::canary::Suite::builtin().canaries.len()
    );
    let passed: Vec<String> = canaries
        .iter()
        .filter(|c| c.status == "pass")
        .map(|c| c.name.clone())
        .collect();
    let profile = json(&sandbox, &["profile", "show", "daily", "--json"]);
    assert_eq!(strings(&profile["canary_reference"]), passed);
}

#[test]
fn a_candidate_that_fails_readiness_falls_back() {
    let sandbox = Sandbox::new();
    // Random weights: the server starts and generates, but no canary passes.
    let random = sandbox.dir.path().join("random.gguf");
    random_model(&sandbox, &random);
    bench(&sandbox, &random, "random", &[]);
    bench(&sandbox, &smollm(), "base", &[]);
    ok(&sandbox, &["profile", "save", "good", "--from", "base"]);
    ok(
        &sandbox,
        &[
            "profile",
            "save",
            "random",
            "--from",
            "random",
            "--fallback",
            "good",
        ],
    );
    // Flags the engine refuses: it exits during start-up.
    ok(
        &sandbox,
        &[
            "profile",
            "save",
            "refused",
            "--from",
            "base",
            "--",
            "--no-such-flag-here",
        ],
    );

    let suite = small_suite(&sandbox);
    let mut served = serve(&sandbox, &["random", "--canaries", &suite]);
    let ready = expect_ready(&mut served);
    assert_eq!(
        (ready["profile"].as_str(), ready["role"].as_str()),
        (Some("good"), Some("fallback"))
    );
    assert_eq!(ready["fallback_for"], "random");
    let stderr = interrupt(served);
    assert!(
        stderr.contains("warning: profile 'random' failed readiness (canaries: none of 3 passed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: serving fallback profile 'good' in place of 'random'"),
        "{stderr}"
    );
    let good = json(&sandbox, &["profile", "show", "good", "--json"]);
    let reference = strings(&good["canary_reference"]);
    assert_eq!(
        reference,
        ["count", "json_object", "zh_marker"],
        "the fallback's first ready start records the canaries it passed"
    );
    let random_profile = json(&sandbox, &["profile", "show", "random", "--json"]);
    assert!(
        random_profile["canary_reference"].is_null(),
        "a failed start records no reference"
    );

    // Refused flags, fallback named on the command line; the fallback now meets its reference.
    let mut served = serve(
        &sandbox,
        &["refused", "--fallback", "good", "--canaries", &suite],
    );
    let ready = expect_ready(&mut served);
    assert_eq!(ready["profile"], "good");
    let canaries = ready["readiness"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "canaries")
        .unwrap();
    assert!(
        canaries["detail"]
            .as_str()
            .unwrap()
            .ends_with("3/3 passed, all 3 of the profile's reference"),
        "{canaries}"
    );
    let stderr = interrupt(served);
    assert!(
        stderr.contains("warning: profile 'refused' failed readiness (start: llama-server exited during start-up"),
        "{stderr}"
    );
    // Every start is a run: the candidates' failed, the fallbacks' interrupted by SIGINT.
    let runs = json(&sandbox, &["runs", "list", "--json"]);
    let serves: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "serve")
        .map(|r| {
            (
                r["status"].as_str().unwrap(),
                r["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(serves.len(), 4, "{runs}");
    assert_eq!(serves[0].0, "interrupted");
    assert_eq!(serves[1].0, "failed");
    assert!(serves[1].1.starts_with("readiness: start: "), "{serves:?}");
    assert!(
        serves[3]
            .1
            .starts_with("readiness: canaries: none of 3 passed"),
        "{serves:?}"
    );
}

#[test]
fn a_failed_candidate_without_a_fallback_is_an_error() {
    let sandbox = Sandbox::new();
    // The candidate serves a copy of the model, damaged after its profile was saved.
    let copy = sandbox.dir.path().join("smollm-copy.gguf");
    std::fs::copy(smollm(), &copy).unwrap();
    bench(&sandbox, &copy, "copy", &[]);
    ok(&sandbox, &["profile", "save", "damaged", "--from", "copy"]);
    ok(
        &sandbox,
        &[
            "profile",
            "save",
            "refused",
            "--from",
            "copy",
            "--",
            "--no-such-flag-here",
        ],
    );
    let serve_fails = |name: &str| {
        let mut cmd = sandbox.cmd();
        cmd.args(["serve", name]);
        let (status, stdout, stderr) = run(cmd, LIMIT);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stdout.is_empty(), "no ready line: {stdout}");
        assert!(stderr.contains("hint: save a fallback"), "{stderr}");
        stderr
    };
    let stderr = serve_fails("refused");
    assert!(
        stderr.contains(
            "error: profile 'refused' failed readiness: start: llama-server exited during start-up"
        ),
        "{stderr}"
    );

    let mut bytes = std::fs::read(&copy).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    let stderr = serve_fails("damaged");
    assert!(
        stderr.contains("error: profile 'damaged' failed readiness: model: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("changed since the profile was saved (sha256 "),
        "{stderr}"
    );
}
