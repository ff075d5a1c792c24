//! `bakeoff tools` end to end on a real llama-server (SmolLM2 with the Qwen 2.5 template, so both
//! arms speak Hermes `<tool_call>`): forced calls parsed on both arms, traces stored and exported,
//! the divergence report, the single-turn set, and the rendering diff. Assertions are on structure,
//! never on speed or on what the tiny model chooses to say.

use crate::common;

use common::{llama_template, run, shared_server, smollm, Sandbox};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// `bakeoff tools SUB ARGS -m SmolLM2 -- --chat-template-file Qwen2.5` in `sandbox`.
fn tools(sandbox: &Sandbox, sub: &str, args: &[&str]) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.args(["tools", sub])
        .args(args)
        .arg("-m")
        .arg(smollm())
        .arg("--")
        .arg("--chat-template-file")
        .arg(llama_template("Qwen-Qwen2.5-7B-Instruct.jinja"));
    cmd
}

/// The binary's shared server, for tests that only need an engine to talk to: `--jinja` and the
/// Qwen 2.5 template as `bakeoff tools -m` launches it, 4096 tokens a slot (its `-c` default), and
/// two slots so that two tests at once do not queue.
fn shared_url() -> String {
    let template = llama_template("Qwen-Qwen2.5-7B-Instruct.jinja");
    let template = template.to_str().expect("UTF-8 path");
    let flags = [
        "--jinja",
        "--chat-template-file",
        template,
        "-np",
        "2",
        "-c",
        "8192",
    ];
    shared_server(&flags).url.clone()
}

/// `bakeoff tools SUB ARGS --url SHARED` in `sandbox`.
fn tools_attached(sandbox: &Sandbox, sub: &str, args: &[&str]) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.args(["tools", sub])
        .args(args)
        .args(["--url", &shared_url()]);
    cmd
}

fn json_out(cmd: Command) -> Value {
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "failed: {status}\nstderr:\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

const HALTS: [&str; 2] = ["no_tool_calls", "step_budget"];

/// A task file written by the test: one enum argument keeps forced calls a few tokens long on both
/// arms (free-text arguments can run past a small token budget under llama-server's own grammar).
const CLOCK_TASK: &str = r#"
name = "clock"
description = "What time is it in a city (one forced call, then an answer)."
system = "You are a helpful assistant with tools."
user = "What time is it in Paris right now?"
step_budget = 2

[[tools]]
name = "get_time"
description = "Current local time in a city."
parameters = { type = "object", properties = { city = { type = "string", enum = ["Paris", "Tokyo"] } }, required = ["city"] }

[[tools.results]]
when = { city = "paris" }
result = { time = "14:05" }

[[tools.results]]
result = { time = "22:05" }
"#;

fn clock_task(sandbox: &Sandbox) -> String {
    let path = sandbox.dir.path().join("clock.toml");
    std::fs::write(&path, CLOCK_TASK).expect("write task");
    path.display().to_string()
}

fn halt_recorded(trace: &Value) {
    let halt = trace["final"]["halt_reason"].as_str().expect("halt_reason");
    assert!(
        HALTS.contains(&halt) || halt.starts_with("error:"),
        "unexpected halt {halt}"
    );
    for key in [
        "steps_used",
        "tool_calls_total",
        "wall_clock_s",
        "final_history_chars",
    ] {
        assert!(
            trace["final"][key].is_number(),
            "final.{key} missing: {trace}"
        );
    }
}

#[test]
fn forced_first_call_is_parsed_on_both_arms_and_stored() {
    let sandbox = Sandbox::new();
    let task = clock_task(&sandbox);
    let out = json_out(tools(
        &sandbox,
        "run",
        &[
            "--task",
            &task,
            "--force-tools",
            "first",
            "--max-tokens",
            "96",
            "--json",
        ],
    ));
    let traces = out["traces"].as_array().expect("traces");
    let arms: Vec<&str> = traces.iter().map(|t| t["arm"].as_str().unwrap()).collect();
    assert_eq!(arms, ["json", "native"]);
    for trace in traces {
        halt_recorded(trace);
        let first = &trace["turns"][0];
        // llama-server may add more calls after the forced one (it did, whatever
        // parallel_tool_calls says); the first is what forcing guarantees.
        assert!(
            first["tool_call_count"].as_u64().unwrap() >= 1,
            "{} arm: forced call not parsed: {first}",
            trace["arm"]
        );
        let call = &first["tool_calls"][0];
        assert_eq!(call["name"], "get_time", "{first}");
        let city = call["arguments"]["city"].as_str().expect("city argument");
        assert!(["Paris", "Tokyo"].contains(&city), "{call}");
        for key in [
            "elapsed_s",
            "prompt_eval_count",
            "eval_count",
            "content_len",
        ] {
            assert!(first[key].is_number(), "turn.{key} missing: {first}");
        }
        // Both arms know their prompt: the engine's rendering (json) and bakeoff's (native).
        assert!(
            first["prompt"]
                .as_str()
                .is_some_and(|p| p.contains("<tools>")),
            "{first}"
        );
        assert!(
            first["raw"].is_string(),
            "what the engine returned is kept: {first}"
        );
    }
    assert_eq!(traces[0]["arm_info"]["prefill"], "<tool_call>\n");
    let native = &traces[1];
    assert_eq!(native["arm_info"]["format"], "hermes");
    assert!(native["turns"][0]["raw"]
        .as_str()
        .unwrap()
        .starts_with("<tool_call>"));
    assert!(native["turns"][1]["prompt"]
        .as_str()
        .unwrap()
        .contains("<tool_response>"));
    let report = &out["divergence"][0];
    assert_eq!(
        (report["a"]["arm"].as_str(), report["b"]["arm"].as_str()),
        (Some("json"), Some("native"))
    );
    assert!(report["same_behaviour"].is_boolean());

    // Stored: export gives back both traces, under a run whose trials name engine and model.
    let run_id = out["run"].as_i64().unwrap().to_string();
    let mut export = sandbox.cmd();
    export.args(["tools", "export", &run_id]);
    let exported = json_out(export);
    assert_eq!(exported["traces"].as_array().unwrap().len(), 2);
    assert_eq!(
        exported["traces"][1]["turns"][0]["tool_calls"],
        traces[1]["turns"][0]["tool_calls"]
    );
    let mut show = sandbox.cmd();
    show.args(["runs", "show", &run_id, "--json"]);
    let detail = json_out(show);
    assert_eq!(detail["run"]["status"], "ok");
    let trial = &detail["trials"][0];
    assert!(
        trial["engine"]
            .as_str()
            .unwrap()
            .starts_with("llama-server"),
        "{trial}"
    );
    assert!(trial["model_sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 64));
    assert!(trial["flags"]["extra"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "--chat-template-file"));
    let mut diff = sandbox.cmd();
    diff.args(["tools", "diff", &run_id, "--json"]);
    assert_eq!(json_out(diff)["divergence"][0]["task"], "clock");
}

// Regression (seed 001): thinking kept in a replayed assistant message corrupted the next prompt.
// The grammar makes the real model open its turn with a <think> block before the forced call.
#[test]
fn thinking_from_a_real_model_is_not_replayed() {
    let sandbox = Sandbox::new();
    let task = clock_task(&sandbox);
    let out = json_out(tools_attached(
        &sandbox,
        "run",
        &[
            "--task",
            &task,
            "--arms",
            "native",
            "--force-tools",
            "first",
            "--force-thinking",
            "--max-tokens",
            "64",
            "--json",
        ],
    ));
    let turns = out["traces"][0]["turns"].as_array().unwrap();
    let raw = turns[0]["raw"].as_str().unwrap();
    assert!(
        raw.starts_with("<think>") && raw.contains("</think>"),
        "{raw}"
    );
    assert!(turns[0]["tool_call_count"].as_u64().unwrap() >= 1, "{raw}");
    assert!(turns[0]["thinking_len"].as_u64().unwrap() > 0);
    let next = turns[1]["prompt"].as_str().expect("second prompt recorded");
    assert!(
        next.contains("<tool_response>"),
        "tool result replayed: {next}"
    );
    // The replayed assistant turn holds the call only: no think block, no thought text before it.
    assert!(!next.contains("<think>"), "thinking replayed:\n{next}");
    assert!(
        next.contains("<|im_start|>assistant\n<tool_call>\n{"),
        "content before the call:\n{next}"
    );
}

#[test]
fn single_turn_set_scores_forced_calls_on_both_arms() {
    let sandbox = Sandbox::new();
    let items = "simple_timer,multiple_population";
    let out = json_out(tools_attached(
        &sandbox,
        "bfcl",
        &[
            "--item",
            items,
            "--force-tools",
            "always",
            "--max-tokens",
            "48",
            "--json",
        ],
    ));
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "2 items x 2 arms");
    for result in results {
        // At least the forced call is parsed (llama-server may append more).
        assert!(
            !result["calls"].as_array().unwrap().is_empty(),
            "forced call parsed: {result}"
        );
        assert!(result["verdict"]["valid"].is_boolean());
        if result["verdict"]["valid"] == false {
            assert!(result["verdict"]["error_type"].is_string(), "{result}");
        }
    }
    for arm in ["json", "native"] {
        assert_eq!(out["summary"][arm]["simple"][1], 1, "{}", out["summary"]);
        assert_eq!(out["summary"][arm]["multiple"][1], 1, "{}", out["summary"]);
    }
    let run_id = out["run"].as_i64().unwrap().to_string();
    let mut export = sandbox.cmd();
    export.args(["tools", "export", &run_id]);
    assert_eq!(json_out(export)["bfcl"].as_array().unwrap().len(), 4);
}

#[test]
fn render_diff_compares_every_case_with_the_engine() {
    let sandbox = Sandbox::new();
    let out = json_out(tools_attached(
        &sandbox,
        "render-diff",
        &["--task", "movies", "--json"],
    ));
    let cases = out["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        assert!(case["error"].is_null(), "{case}");
        assert!(case["identical"].is_boolean());
        assert_eq!(case["identical"] == true, case["diff"].is_null(), "{case}");
    }
}

/// Arm C: the same path against another server (the binary's shared one), attached.
#[test]
fn reference_arm_runs_on_an_attached_server() {
    let sandbox = Sandbox::new();
    let url = shared_url();
    let task = clock_task(&sandbox);
    let out = json_out(tools(
        &sandbox,
        "run",
        &[
            "--task",
            &task,
            "--arms",
            "native",
            "--reference",
            &url,
            "--reference-arm",
            "native",
            "--force-tools",
            "first",
            "--max-tokens",
            "64",
            "--json",
        ],
    ));
    let traces = out["traces"].as_array().unwrap();
    let arms: Vec<&str> = traces.iter().map(|t| t["arm"].as_str().unwrap()).collect();
    assert_eq!(arms, ["native", "reference"]);
    let reference = &traces[1];
    assert_eq!(reference["arm_info"]["url"], url.trim_end_matches('/'));
    assert_ne!(reference["arm_info"]["url"], traces[0]["arm_info"]["url"]);
    assert!(
        reference["turns"][0]["tool_call_count"].as_u64().unwrap() >= 1,
        "{reference}"
    );
    halt_recorded(reference);
    let report = &out["divergence"][0];
    assert_eq!(
        (report["a"]["arm"].as_str(), report["b"]["arm"].as_str()),
        (Some("native"), Some("reference"))
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args([
        "tools",
        "run",
        "--task",
        "nope",
        "--url",
        "http://127.0.0.1:9",
    ]);
    let (status, _, stderr) = run(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: no task 'nope'\nhint: built-in tasks: movies, research, memory, long"
        ),
        "{stderr}"
    );
    let mut cmd = sandbox.cmd();
    cmd.args([
        "tools",
        "run",
        "--task",
        "memory",
        "--url",
        "http://127.0.0.1:9",
    ]);
    let (status, _, stderr) = run(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1:9: connection refused: nothing listens there"),
        "{stderr}"
    );
}
