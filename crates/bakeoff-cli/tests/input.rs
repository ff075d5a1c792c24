//! Bad input told the truth (issue 14): settings files name the file, field, line and column; a
//! directory as model, `-r 0` and `-p 0 -n 0` are refused; a depth past the trained context is
//! warned; unwritable and missing databases are named; `serve --url` tells refused, timeout, HTTP
//! error and malformed URL apart; `compare` refuses runs with nothing to compare. None of these is
//! an engine path: no engine is started here (the servers below are faults, not engines).

use crate::common;

use bakeoff::domain::{EngineConfig, Unit};
use bakeoff::store::{NewTrial, Store};
use bakeoff::system::Fingerprint;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// Generous: the machine is shared; nothing here waits on purpose except the hanging server (5 s).
const LIMIT: Duration = Duration::from_secs(120);

fn bakeoff(sandbox: &Sandbox, args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    run(cmd, LIMIT)
}

/// The run failed with exit code `code` and stderr holding `expected`.
fn fails_with(sandbox: &Sandbox, args: &[&str], code: i32, expected: &str) -> String {
    let (status, stdout, stderr) = bakeoff(sandbox, args);
    assert_eq!(
        status.code(),
        Some(code),
        "{args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn write(sandbox: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sandbox.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

// --- settings files: file, field, line and column ---

#[test]
fn a_gate_file_syntax_error_names_its_line_and_column() {
    let sandbox = Sandbox::new();
    let file = write(
        &sandbox,
        "cand.toml",
        "model = \"m.gguf\"\n[baseline\nname = \"f16\"\n",
    );
    let expected = format!("{}:2:10: ", file.display());
    fails_with(&sandbox, &["gate", text(&file)], 2, &expected);
}

#[test]
fn a_candidates_field_of_the_wrong_type_is_named() {
    let sandbox = Sandbox::new();
    let file = write(
        &sandbox,
        "cand.toml",
        "model = \"m.gguf\"\nctx = \"big\"\n[baseline]\nname = \"f16\"\n",
    );
    let expected = format!(
        "{}:2:7: ctx: invalid type: string \"big\", expected u64",
        file.display()
    );
    fails_with(&sandbox, &["gate", text(&file)], 2, &expected);
}

#[test]
fn a_gate_thresholds_file_names_the_check_and_field() {
    let sandbox = Sandbox::new();
    let candidates = write(
        &sandbox,
        "cand.toml",
        "model = \"m.gguf\"\n[baseline]\nname = \"f16\"\n[[candidate]]\nname = \"q8\"\n",
    );
    let gate = write(
        &sandbox,
        "strict.toml",
        "[mean_kld]\npass = \"low\"\nwarn = 0.03\n",
    );
    let expected = format!(
        "{}:2:8: mean_kld.pass: invalid type: string \"low\"",
        gate.display()
    );
    let args = ["gate", text(&candidates), "--gate", text(&gate)];
    fails_with(&sandbox, &args, 2, &expected);
}

#[test]
fn a_bench_experiment_names_the_field_and_the_reason() {
    let sandbox = Sandbox::new();
    let exp = write(
        &sandbox,
        "exp.toml",
        "model = \"m.gguf\"\nwarmup = 1\nreps = \"five\"\n",
    );
    let expected = format!(
        "{}:3:8: reps: invalid value 'five', expected a whole number",
        exp.display()
    );
    fails_with(&sandbox, &["bench", "--config", text(&exp)], 2, &expected);
    let exp = write(
        &sandbox,
        "syntax.toml",
        "model = \"m.gguf\"\n[matrix]\nctk = [\"f16\", \n",
    );
    let expected = format!("{}:4:1: matrix.ctk: ", exp.display());
    fails_with(&sandbox, &["bench", "--config", text(&exp)], 2, &expected);
    let exp = write(&sandbox, "kind.toml", "engine = \"llama-cli\"\n");
    let expected = format!(
        "{}:1:10: engine: unknown variant 'llama-cli'",
        exp.display()
    );
    fails_with(&sandbox, &["bench", "--config", text(&exp)], 2, &expected);
}

// --- models and counts ---

#[test]
fn a_directory_given_as_model_is_said_to_be_one() {
    let sandbox = Sandbox::new();
    let dir = sandbox.dir.path().join("models");
    std::fs::create_dir(&dir).unwrap();
    let expected = format!("model {} is a directory, not a GGUF file", dir.display());
    // bench and gate take a directory of models (-m DIR, a gate file's model); an empty one is
    // said to hold none.
    let empty = format!("{}: a directory with no .gguf file", dir.display());
    fails_with(&sandbox, &["bench", "-m", text(&dir), "-n", "4"], 2, &empty);
    for args in [
        &["plan", text(&dir)][..],
        &["model", "inspect", text(&dir)],
        &["serve", "--model", text(&dir)],
    ] {
        fails_with(&sandbox, args, 2, &expected);
    }
    let candidates = write(
        &sandbox,
        "cand.toml",
        &format!(
            "model = \"{}\"\n[baseline]\nname = \"f16\"\n[[candidate]]\nname = \"q8\"\n",
            dir.display()
        ),
    );
    let in_file = format!("{}: {empty}", candidates.display());
    fails_with(&sandbox, &["gate", text(&candidates)], 2, &in_file);
}

/// Regression: bench on a GGUF cut to half its size started an engine that would not load it,
/// stored nothing and ended ok; the reader names the bad byte before any engine starts.
#[test]
fn a_truncated_model_is_refused_naming_its_bad_byte_before_any_engine_starts() {
    let sandbox = Sandbox::new();
    let whole = std::fs::read(smollm()).unwrap();
    let half = sandbox.dir.path().join("half.gguf");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    let expected = "malformed GGUF at byte ";
    for args in [
        &["bench", "-m", text(&half), "-p", "0", "-n", "4", "-r", "1"][..],
        &["serve", "--model", text(&half)],
        &["model", "inspect", text(&half)],
    ] {
        let stderr = fails_with(&sandbox, args, 2, expected);
        assert!(stderr.contains("run past the end of the file"), "{stderr}");
    }
    assert!(!sandbox.db().exists(), "a refused model measures nothing");
}

#[test]
fn zero_repetitions_or_zero_tokens_are_refused() {
    // Regression: `-r 0` and `-p 0 -n 0` measured nothing and ended ok.
    let sandbox = Sandbox::new();
    let model = sandbox.dir.path().join("m.gguf");
    let args = ["bench", "-m", text(&model), "-r", "0"];
    fails_with(
        &sandbox,
        &args,
        2,
        "-r/--repetitions 0: at least one repetition is needed",
    );
    let args = ["bench", "-m", text(&model), "-p", "0", "-n", "0"];
    fails_with(&sandbox, &args, 2, "-p 0 and -n 0: no test to run");
    let exp = write(&sandbox, "exp.toml", "reps = 0\n");
    let args = ["bench", "-m", text(&model), "--config", text(&exp)];
    fails_with(&sandbox, &args, 2, "-r/--repetitions 0");
}

#[test]
fn a_depth_beyond_the_trained_context_is_warned() {
    let sandbox = Sandbox::new();
    let model = sandbox.dir.path().join("short.gguf");
    tensorless_gguf(&model, 512);
    let args = [
        "bench",
        "-m",
        text(&model),
        "-n",
        "16",
        "-d",
        "0,1024",
        "--dry-run",
    ];
    let (status, _, stderr) = bakeoff(&sandbox, &args);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "-d 1024: depth plus test (1040) is beyond the model's trained context (512 tokens"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("-d 0:"), "{stderr}");
}

// --- the database ---

#[test]
fn an_unwritable_database_location_is_said_as_such() {
    // /sys refuses new files even to root: permission denied (read-only in some containers).
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_DB", "/sys/bakeoff-test/x.db").args([
        "journal",
        "add",
        "kv q8_0",
        "--verdict",
        "PENDING",
    ]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let reason = ["permission denied", "read-only file system"];
    assert!(
        reason.iter().any(|r| stderr.contains(&format!(
            "cannot write the database /sys/bakeoff-test/x.db: {r}"
        ))),
        "{stderr}"
    );
    assert!(stderr.contains("hint: pass --db PATH"), "{stderr}");
    let folder = sandbox.dir.path();
    let expected = format!("the database {} is a directory", folder.display());
    for args in [
        &["runs", "list"][..],
        &["journal", "add", "x", "--verdict", "PENDING"],
    ] {
        let mut with_db = vec!["--db", text(folder)];
        with_db.extend_from_slice(args);
        fails_with(&sandbox, &with_db, 2, &expected);
    }
}

#[test]
fn a_read_only_command_never_creates_a_database() {
    // Regression: a mistyped --db created an empty database and answered "no runs" from it.
    let sandbox = Sandbox::new();
    let db = sandbox.dir.path().join("typo.db");
    let expected = format!("no database at {}", db.display());
    for args in [
        &["runs", "list"][..],
        &["runs", "show", "last"],
        &["compare", "1", "2"],
        &["report", "last"],
        &["journal", "show"],
        &["gate", "--show", "last"],
        &["profile", "list"],
        &["profile", "show", "daily"],
        &["serve", "daily"],
    ] {
        let mut with_db = vec!["--db", text(&db)];
        with_db.extend_from_slice(args);
        let stderr = fails_with(&sandbox, &with_db, 2, &expected);
        assert!(stderr.contains("hint: "), "{stderr}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

// --- serve --url ---

/// A free port with nothing listening on it.
fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[test]
fn serve_url_says_connection_refused() {
    let sandbox = Sandbox::new();
    let url = refused_url();
    let stderr = fails_with(&sandbox, &["serve", "--url", &url], 1, "connection refused");
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
fn serve_url_says_a_malformed_url_is_malformed() {
    let sandbox = Sandbox::new();
    for url in [
        "127.0.0.1:8080",
        "http://127.0.0.1:http",
        "https://127.0.0.1:8080",
    ] {
        let expected = format!("--url {url}: malformed URL");
        fails_with(&sandbox, &["serve", "--url", url], 2, &expected);
    }
}

#[test]
fn serve_url_bounds_a_server_that_never_answers() {
    // The listener accepts connections (the kernel does) but never reads or answers.
    let sandbox = Sandbox::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let expected = "connected, but no answer to GET /v1/models within 5 s";
    fails_with(&sandbox, &["serve", "--url", &url], 1, expected);
    drop(listener);
}

/// A server on loopback answering each request by its path: an OpenAI-compatible model list, and
/// HTTP 500 for completions (a fault: a real server cannot be made to do it on demand).
fn failing_completions() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream);
        }
    });
    url
}

fn answer(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let (mut request, mut line, mut length) = (String::new(), String::new(), 0);
    reader.read_line(&mut request)?;
    while reader.read_line(&mut line)? > 2 {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    reader.read_exact(&mut vec![0; length])?;
    let (status, body) = match request.split_whitespace().nth(1) {
        Some("/v1/models") => ("200 OK", r#"{"object":"list","data":[{"id":"m"}]}"#),
        Some("/v1/chat/completions") => (
            "500 Internal Server Error",
            r#"{"error":{"code":500,"message":"scripted failure"}}"#,
        ),
        _ => ("404 Not Found", "not found"),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(format!("{head}{body}").as_bytes())
}

#[test]
fn serve_url_does_not_attach_to_a_server_whose_completions_fail() {
    let sandbox = Sandbox::new();
    let url = failing_completions();
    let (status, stdout, stderr) = bakeoff(&sandbox, &["serve", "--url", &url]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains("attached"), "{stdout}");
    let expected = "openai answers, but a one-token completion failed (POST /v1/chat/completions): HTTP 500: {\"error\":{\"code\":500,\"message\":\"scripted failure\"}}";
    assert!(stderr.contains(expected), "{stderr}");
}

// --- compare ---

/// A finished run of `kind` with one tg32 trial of `-b batch` at `tps`.
fn stored_run(store: &Store, kind: &str, batch: &str, tps: f64) -> i64 {
    let system = store.system_id(&Fingerprint::collect()).unwrap();
    let run = store
        .begin_run(kind, "bakeoff", system, None, &serde_json::json!({}))
        .unwrap();
    let config = EngineConfig::default().with_flag("-b", batch);
    let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
    for (rep, value) in [tps, tps * 1.01, tps * 0.99].into_iter().enumerate() {
        let trial = NewTrial::new(Some(&config), &workload, rep as u32);
        let id = store.begin_trial(run, &trial).unwrap();
        store
            .sample(id, "tg_tps", value, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        store.end_trial(id, "ok", None).unwrap();
    }
    store.end_run(run, "ok", None).unwrap();
    run
}

#[test]
fn compare_refuses_runs_with_nothing_in_common() {
    // Regression: disjoint runs printed an empty table with exit 0.
    let sandbox = Sandbox::new();
    let store = Store::open(&sandbox.db()).unwrap();
    let a = stored_run(&store, "bench", "256", 50.0).to_string();
    let b = stored_run(&store, "bench", "512", 60.0).to_string();
    let load = stored_run(&store, "load", "256", 50.0).to_string();
    let zero = stored_run(&store, "bench", "256", 0.0).to_string();
    drop(store);
    let expected = format!("runs {a} and {b} share no (config, test) cell to compare");
    let stderr = fails_with(&sandbox, &["compare", &a, &b], 2, &expected);
    assert!(stderr.contains("hint: "), "{stderr}");
    let expected = format!("run {a} is a bench run and run {load} a load run");
    fails_with(&sandbox, &["compare", &a, &load], 2, &expected);
    let (status, stdout, stderr) = bakeoff(&sandbox, &["compare", &a, &zero]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("NaN"),
        "{stdout}{stderr}"
    );
}

#[test]
fn load_counts_of_zero_and_empty_windows_are_refused() {
    let sandbox = Sandbox::new();
    let url = refused_url();
    let load = |extra: &[&str]| {
        let mut args = vec!["load", "--url", url.as_str()];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (extra, expected) in [
        (
            &["--requests", "0"][..],
            "invalid value '0' for '--requests <N>'",
        ),
        (
            &["--max-inflight", "0"],
            "invalid value '0' for '--max-inflight <N>'",
        ),
        (&["--turns", "0"], "invalid value '0' for '--turns <N>'"),
        (
            &["--duration", "0s"],
            "--duration 0: a step needs some time",
        ),
        (
            &["--duration", "20s", "--warmup", "10s", "--cooldown", "10s"],
            "leave nothing of --duration (20 s) to measure",
        ),
    ] {
        let args = load(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&sandbox, &args, 2, expected);
    }
}
