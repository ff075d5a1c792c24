//! `bakeoff serve` against a real llama-server on SmolLM2: the engine never outlives bakeoff, and
//! start-up failures give one clear line without hanging.

use crate::common;

use common::*;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn assert_engine_gone_after(
    signal_or_fault: &str,
    served: &mut Served,
) -> std::process::ExitStatus {
    let status = wait_exit(&mut served.child, LIMIT);
    assert!(
        !pid_alive(served.engine_pid()),
        "llama-server (pid {}) outlived bakeoff after {signal_or_fault}",
        served.engine_pid()
    );
    status
}

#[test]
fn ctrl_c_stops_the_engine_and_records_the_run() {
    let sandbox = Sandbox::new();
    let mut served = serve(sandbox.cmd(), &[]);
    // The server really answers before we interrupt it.
    let (status, body, _) = run(
        {
            let mut c = std::process::Command::new("curl");
            c.args(["-s", &format!("{}/health", served.url())]);
            c
        },
        LIMIT,
    );
    assert!(status.success() && body.contains("ok"), "health: {body}");
    signal(served.child.id(), libc::SIGINT);
    let status = assert_engine_gone_after("SIGINT", &mut served);
    assert_eq!(status.code(), Some(130));

    let mut show = sandbox.cmd();
    show.args(["runs", "show", "last", "--json"]);
    let (status, stdout, stderr) = run(show, LIMIT);
    assert!(status.success(), "{stderr}");
    let detail: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(detail["run"]["status"], "interrupted");
    assert_eq!(detail["run"]["kind"], "serve");
    assert!(detail["params"]["model_sha256"]
        .as_str()
        .unwrap()
        .starts_with("b179c952"));
    assert!(
        detail["logs"][0]["excerpt"]
            .as_str()
            .unwrap()
            .contains("server"),
        "engine log excerpt stored"
    );
    assert!(detail["system"]["cpu_cores"].as_u64().unwrap() >= 1);
}

#[test]
fn sigterm_stops_the_engine() {
    let sandbox = Sandbox::new();
    let mut served = serve(sandbox.cmd(), &[]);
    signal(served.child.id(), libc::SIGTERM);
    let status = assert_engine_gone_after("SIGTERM", &mut served);
    assert_eq!(status.code(), Some(143));
}

#[test]
fn an_error_after_start_stops_the_engine() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_FAULT", "error-after-ready");
    let mut served = serve(cmd, &[]);
    let status = assert_engine_gone_after("an error", &mut served);
    assert_eq!(status.code(), Some(1));
    assert!(served
        .stderr
        .join()
        .unwrap()
        .contains("error: injected fault"));
}

#[test]
fn a_panic_after_start_stops_the_engine() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_FAULT", "panic-after-ready");
    let mut served = serve(cmd, &[]);
    let status = assert_engine_gone_after("a panic", &mut served);
    assert_eq!(status.code(), Some(101));
}

#[test]
fn port_in_use_is_one_clear_line() {
    let sandbox = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", "--model"])
        .arg(smollm())
        .args(["--port", &port]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "error: port {port} on 127.0.0.1 is already in use"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn missing_model_is_one_clear_line() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", "--model", "/nonexistent/model.gguf"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.starts_with("error: model file not found: /nonexistent/model.gguf\n"),
        "{stderr}"
    );
}

#[test]
fn engine_dying_during_start_names_its_fatal_line() {
    let sandbox = Sandbox::new();
    // A well-formed GGUF with no tensors and no vocabulary: bakeoff's reader accepts it,
    // llama-server starts, fails to load it and exits.
    let bogus = sandbox.dir.path().join("bogus.gguf");
    tensorless_gguf(&bogus, 512);
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", "--model"]).arg(&bogus);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(1));
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        first.contains("llama-server exited during start-up"),
        "{stderr}"
    );
    assert!(
        first.to_lowercase().contains("failed to load model"),
        "fatal line not reported: {stderr}"
    );
    assert!(stderr.contains("hint: full engine log:"), "{stderr}");
}

#[test]
fn unknown_engine_flag_fails_fast() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", "--model"])
        .arg(smollm())
        .args(["--", "--no-such-flag-here"]);
    let (status, _, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("exited during start-up"), "{stderr}");
}

#[test]
fn attach_detects_llama_server_and_refuses_nothing_there() {
    let sandbox = Sandbox::new();
    let mut attach = sandbox.cmd();
    attach.args(["serve", "--json", "--url", &shared_server(&[]).url]);
    let (status, stdout, stderr) = run(attach, LIMIT);
    assert!(status.success(), "{stderr}");
    let detected: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(detected["kind"], "llama-server");
    assert!(detected["models"][0]
        .as_str()
        .unwrap()
        .ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"));

    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut attach = sandbox.cmd();
    attach.args(["serve", "--url", &format!("http://127.0.0.1:{port}")]);
    let (status, _, stderr) = run(attach, LIMIT);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("connection refused: nothing listens there"),
        "{stderr}"
    );
}

/// `model synth` of a small llama shape (SmolLM2's vocabulary) into `out`, with `extra`; its
/// JSON report.
fn synth_tiny_llama(sandbox: &Sandbox, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut synth = sandbox.cmd();
    synth.args(["model", "synth", "--arch", "llama", "--layers", "2"]);
    synth.args([
        "--embd",
        "256",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--ff",
        "512",
    ]);
    synth.arg("--json").arg("--vocab-from").arg(smollm());
    synth.arg("-o").arg(out).args(extra);
    let (status, stdout, stderr) = run(synth, LIMIT);
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["architecture"], "llama");
    assert_eq!(report["tensors"], 21);
    report
}

/// Bytes of `out`'s tensors of GGML type `name`, from `model inspect`.
fn bytes_of_type(sandbox: &Sandbox, out: &Path, name: &str) -> u64 {
    let mut inspect = sandbox.cmd();
    inspect.args(["model", "inspect", "--json"]).arg(out);
    let (status, stdout, stderr) = run(inspect, LIMIT);
    assert!(status.success(), "{stderr}");
    let facts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    facts["bytes_by_type"][name].as_u64().unwrap_or(0)
}

/// `bakeoff serve` the model; a real completion of four tokens comes back.
fn serve_and_complete(sandbox: &Sandbox, model: &Path) {
    let mut cmd = sandbox.cmd();
    cmd.args(["serve", "--json", "--model"]).arg(model);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("no ready line: {line:?}"));
    let url = ready["url"].as_str().unwrap();
    let mut curl = std::process::Command::new("curl");
    curl.args([
        "-s",
        &format!("{url}/completion"),
        "-d",
        r#"{"prompt":"Hello","n_predict":4}"#,
    ]);
    let (_, body, _) = run(curl, LIMIT);
    signal(child.id(), libc::SIGINT);
    wait_exit(&mut child, LIMIT);
    let completion: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(completion["tokens_predicted"], 4, "{body}");
}

#[test]
fn a_synthesised_model_of_a_real_shape_is_served() {
    let sandbox = Sandbox::new();
    let out = sandbox.dir.path().join("tiny-llama.gguf");
    synth_tiny_llama(&sandbox, &out, &["--quantize", "Q8_0"]);
    assert!(
        !out.with_extension("f16.gguf").exists(),
        "the unquantized intermediate is removed"
    );
    assert!(
        bytes_of_type(&sandbox, &out, "Q8_0") > 0,
        "quantized by llama-quantize"
    );
    serve_and_complete(&sandbox, &out);
}

/// `--dtype q4_k` writes random Q4_K blocks straight away (no F16 file, no llama-quantize), and
/// llama-server runs its Q4_K kernels on them.
#[test]
fn a_shape_written_straight_as_q4_k_blocks_is_served() {
    let sandbox = Sandbox::new();
    let out = sandbox.dir.path().join("tiny-q4k.gguf");
    let report = synth_tiny_llama(&sandbox, &out, &["--dtype", "q4_k"]);
    assert_eq!(report["bytes"], std::fs::metadata(&out).unwrap().len());
    assert_eq!(
        bytes_of_type(&sandbox, &out, "F16"),
        0,
        "every matrix in Q4_K"
    );
    assert!(bytes_of_type(&sandbox, &out, "Q4_K") > 0);
    serve_and_complete(&sandbox, &out);
}
