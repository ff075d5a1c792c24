//! `bakeoff load` against a real llama-server on SmolLM2 (and, for faults a real server cannot be
//! made to produce, a scripted endpoint that answers HTTP 500 or cuts streams short).

use crate::bakeoff_snapshot;
use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);
/// The flags of this binary's shared llama-server (tests attach to it with `--url`).
const SHARED_FLAGS: &[&str] = &["-np", "2", "-c", "2048"];

fn load(sandbox: &Sandbox, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.arg("load").args(args);
    run(cmd, LIMIT)
}

fn last_run(sandbox: &Sandbox) -> Value {
    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", "last", "--json"]);
    let (_, stdout, stderr) = run(cmd, LIMIT);
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("runs show: {stderr}"))
}

fn samples<'a>(trial: &'a Value, metric: &'a str) -> impl Iterator<Item = f64> + 'a {
    trial["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |s| s["metric"] == metric)
        .map(|s| s["value"].as_f64().unwrap())
}

#[test]
fn concurrency_steps_store_exact_per_request_samples_and_the_server_view() {
    let sandbox = Sandbox::new();
    let model = smollm();
    let (status, stdout, stderr) = load(
        &sandbox,
        &[
            "-m",
            model.to_str().unwrap(),
            "--concurrency",
            "1,2",
            "--requests",
            "6",
            "--input",
            "32",
            "--output",
            "8",
            "--slo",
            "ttft=60s",
            "-o",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let steps: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    for step in &steps {
        assert_eq!(step["completed"], 6, "{step}");
        assert!(step["errors"].as_object().unwrap().is_empty());
        assert!(step["output_tps"].as_f64().unwrap() > 0.0);
        assert!(
            step["ttft_ms"]["percentiles"]["p99.9"].as_f64().unwrap()
                >= step["ttft_ms"]["percentiles"]["p50"].as_f64().unwrap()
        );
        assert!(
            step["goodput_rps"].as_f64().unwrap() > 0.0,
            "a 60 s TTFT objective is met"
        );
    }
    let detail = last_run(&sandbox);
    assert_eq!(detail["run"]["kind"], "load");
    for trial in detail["trials"].as_array().unwrap() {
        assert!(
            samples(trial, "prompt_tokens").all(|n| n == 32.0),
            "exact prompt tokens"
        );
        assert!(
            samples(trial, "output_tokens").all(|n| n == 8.0),
            "every streamed token counted"
        );
        assert_eq!(
            samples(trial, "itl_ms").count(),
            6 * 7,
            "one gap per token after the first"
        );
        assert!(
            samples(trial, "llamacpp:tokens_predicted_total").count() > 0,
            "server /metrics scraped"
        );
        assert!(
            samples(trial, "slots:total").any(|n| n == 2.0),
            "server /slots scraped"
        );
    }
}

#[test]
fn open_loop_rates_follow_a_fixed_schedule_and_multi_turn_reuses_the_prefix() {
    let sandbox = Sandbox::new();
    let model = smollm();
    let (status, stdout, stderr) = load(
        &sandbox,
        &[
            "--url",
            &shared_server(SHARED_FLAGS).url,
            "--rate",
            "4",
            "--burstiness",
            "1",
            "--requests",
            "8",
            "--input",
            "16",
            "--output",
            "4",
            "-o",
            "csv",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("poisson 4.00/s,8,0,"),
        "{stdout}"
    );
    let detail = last_run(&sandbox);
    assert_eq!(samples(&detail["trials"][0], "queue_ms").count(), 8);

    let (status, _, stderr) = load(
        &sandbox,
        &[
            "-m",
            model.to_str().unwrap(),
            "--turns",
            "3",
            "--shared-prefix",
            "64",
            "--input",
            "16",
            "--output",
            "4",
            "--concurrency",
            "1",
            "--requests",
            "6",
        ],
    );
    assert!(status.success(), "{stderr}");
    let detail = last_run(&sandbox);
    let cached: Vec<f64> = samples(&detail["trials"][0], "cached_tokens").collect();
    let prompts: Vec<f64> = samples(&detail["trials"][0], "prompt_tokens").collect();
    assert_eq!(cached.len(), 6);
    assert!(
        cached.iter().skip(1).all(|&c| c >= 64.0),
        "later turns reuse at least the shared prefix: {cached:?}"
    );
    assert!(
        prompts[1] < prompts[0] + 16.0 + 1.0,
        "prompt_n counts only new tokens: {prompts:?}"
    );
}

#[test]
fn chat_datasets_go_through_the_openai_endpoint() {
    let sandbox = Sandbox::new();
    let dataset = sandbox.dir.path().join("chats.jsonl");
    std::fs::write(&dataset, "{\"messages\":[{\"role\":\"user\",\"content\":\"Name three colours.\"}]}\n{\"messages\":[{\"role\":\"user\",\"content\":\"日本の首都は？ 🌸\"}],\"max_tokens\":6}\n").unwrap();
    let model = smollm();
    let (status, stdout, stderr) = load(
        &sandbox,
        &[
            "--url",
            &shared_server(SHARED_FLAGS).url,
            "--dataset",
            dataset.to_str().unwrap(),
            "--concurrency",
            "2",
            "--requests",
            "4",
            "--output",
            "8",
            "-o",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let steps: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(steps[0]["completed"], 4);
    let detail = last_run(&sandbox);
    assert!(samples(&detail["trials"][0], "output_tokens").all(|n| (1.0..=8.0).contains(&n)));

    std::fs::write(
        &dataset,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\nnot json\n",
    )
    .unwrap();
    let (status, _, stderr) = load(
        &sandbox,
        &[
            "-m",
            model.to_str().unwrap(),
            "--dataset",
            dataset.to_str().unwrap(),
            "--requests",
            "1",
        ],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chats.jsonl:2: not JSON"), "{stderr}");
}

#[test]
fn bad_arguments_are_one_clear_line() {
    let sandbox = Sandbox::new();
    let (status, _, stderr) = load(
        &sandbox,
        &["--url", "http://127.0.0.1:9", "--input", "lots"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.starts_with("error: --input lots: expected N, LO-HI or normal:MEAN,SD\n"),
        "{stderr}"
    );
    let (status, _, stderr) = load(
        &sandbox,
        &["--url", "http://127.0.0.1:9", "--slo", "ttft=soon"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("--slo ttft=soon: 'soon' is not a duration"),
        "{stderr}"
    );
}

/// A scripted OpenAI-style endpoint: /v1/models answers; chat requests alternate between HTTP 500,
/// a stream cut short, and a good two-token stream.
fn faulty_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request_line, mut length, mut line) = (String::new(), 0usize, String::new());
            reader.read_line(&mut request_line).unwrap_or(0);
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = stream;
            let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n";
            let reply = if request_line.starts_with("GET /v1/models") {
                let body = "{\"data\":[{\"id\":\"scripted\"}]}";
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            } else if request_line.starts_with("GET") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            } else {
                n += 1;
                match n % 3 {
                    // The connection closes after each reply; saying so keeps the client from
                    // reusing it (a stale pooled connection showed up as a spurious connect error).
                    0 => "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\nContent-Length: 4\r\n\r\nboom".to_string(),
                    1 => format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{chunk}"),
                    _ => format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{chunk}{chunk}data: [DONE]\n\n"),
                }
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn http_errors_and_truncated_streams_are_counted_by_kind_and_nothing_is_lost() {
    let sandbox = Sandbox::new();
    let url = faulty_endpoint();
    let dataset = sandbox.dir.path().join("chats.jsonl");
    std::fs::write(
        &dataset,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
    )
    .unwrap();
    let (status, stdout, stderr) = load(
        &sandbox,
        &[
            "--url",
            &url,
            "--dataset",
            dataset.to_str().unwrap(),
            "--concurrency",
            "1",
            "--requests",
            "9",
            "-o",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let steps: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(steps[0]["completed"], 3, "{}", steps[0]);
    assert_eq!(steps[0]["errors"]["http_500"], 3, "{}", steps[0]);
    assert_eq!(steps[0]["errors"]["truncated"], 3, "{}", steps[0]);
    let detail = last_run(&sandbox);
    assert_eq!(detail["run"]["status"], "ok");
    assert_eq!(
        samples(&detail["trials"][0], "error:http_500").count(),
        3,
        "each error stored as it happened"
    );
}

#[test]
fn self_test_measures_and_stores_the_client_ceiling() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "--self-test"]);
    // The measured columns (tok/s, requests, gap errors, CPU) are masked; streams, pace and the
    // errors column stay, so the snapshot holds five rows with no errors against the scripted endpoint.
    let mut filters = vec![
        (
            r"(?m)^\| (\d+) \| ([^|]+) \| \d+ \| \d+ \| (\d+) \| [^|]+ \| [\d.]+ \|$".to_string(),
            "| $1 | $2 | [N] | [N] | $3 | [N] | [N] |".to_string(),
        ),
        (
            r"client ceiling \d+".to_string(),
            "client ceiling [N]".to_string(),
        ),
    ];
    filters.extend(common::snapshot::measured_filters(&sandbox));
    bakeoff_snapshot!("load_self_test", filters, cmd);
}

#[test]
fn a_second_run_with_the_same_seed_is_not_answered_from_the_prompt_cache() {
    // Regression: seeded synthetic prompts repeat across runs; with the prompt cache on, a server
    // that had seen them answered the second run's prompts from its cache (TTFT 28 ms instead of 400).
    let sandbox = Sandbox::new();
    let url = &shared_server(SHARED_FLAGS).url;
    for _ in 0..2 {
        let (status, _, stderr) = load(
            &sandbox,
            &[
                "--url",
                url,
                "--concurrency",
                "1",
                "--requests",
                "3",
                "--input",
                "32",
                "--output",
                "4",
            ],
        );
        assert!(status.success(), "{stderr}");
    }
    let detail = last_run(&sandbox);
    let cached: Vec<f64> = samples(&detail["trials"][0], "cached_tokens").collect();
    assert_eq!(cached, [0.0, 0.0, 0.0]);
    assert!(samples(&detail["trials"][0], "prompt_tokens").all(|n| n == 32.0));
}

#[test]
fn an_unreachable_url_ends_the_run_failed_not_running() {
    // Regression: an attach error after the run began returned early and left it `running`.
    let sandbox = Sandbox::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (status, _, stderr) = load(&sandbox, &["--url", &url, "--requests", "1"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let detail = last_run(&sandbox);
    assert_eq!(detail["run"]["kind"], "load");
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    assert!(detail["run"]["error"].as_str().unwrap().contains(&url));
}

#[test]
fn a_shard_of_two_models_serves_only_its_own_and_an_empty_shard_exits_0() {
    let sandbox = Sandbox::new();
    let models = format!("{},{}", smollm().display(), gemma().display());
    let steps = [
        "--concurrency",
        "1",
        "--requests",
        "2",
        "--input",
        "16",
        "--output",
        "4",
    ];
    let shard = [
        "-m",
        models.as_str(),
        "--shard",
        "2/2",
        "--tag",
        "pair",
        "-o",
        "json",
    ];
    let (status, stdout, stderr) = load(&sandbox, &[&shard[..], &steps].concat());
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("shard 2/2: 1 of the matrix's 2 cells"),
        "{stderr}"
    );
    let tables: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let steps_run: Vec<&str> = tables.iter().map(|t| t["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps_run,
        ["gemma-3-270m-q4_k_m.gguf c1"],
        "the second model only"
    );
    let detail = last_run(&sandbox);
    assert_eq!(
        detail["params"]["shard"],
        serde_json::json!({ "k": 2, "n": 2 })
    );
    assert_eq!(detail["params"]["matrix_cells"], 2);

    let one = ["-m", models.as_str(), "--shard", "3/3"];
    let (status, stdout, stderr) = load(&sandbox, &[&one[..], &steps].concat());
    assert!(status.success(), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("shard 3/3 has no cells: the matrix has 2"),
        "{stderr}"
    );
    assert_eq!(
        last_run(&sandbox)["run"]["id"],
        detail["run"]["id"],
        "no run stored"
    );
}
