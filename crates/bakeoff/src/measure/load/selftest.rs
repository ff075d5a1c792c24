//! Client honesty: a scripted streaming endpoint on loopback that emits tokens at a fixed pace
//! (llama-server's `/completion` chunk format), to measure the client's own ceiling — streamed
//! tokens per second, concurrent streams, and how far measured gaps stray from the true pace — and
//! to drive the bench and load runners in unit tests. It is the only fake server in bakeoff and it
//! never stands in for an engine in an engine test.

use super::executor::{run_step, Shape, StepLimits};
use super::workload::{Generator, LengthDist, WorkloadSpec};
use crate::engines::http::Http;
use crate::measure::stats::{quantile_sorted, sorted};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A scripted endpoint; stops when dropped.
pub struct ScriptedEndpoint {
    pub url: String,
    stop: Arc<AtomicBool>,
}

impl Drop for ScriptedEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// A fault the endpoint injects into its completion answers (`/completion`, `/v1/...`), the
/// ones a real engine cannot be made to produce on demand. `/health`, `/tokenize` and
/// `/v1/models` always answer, so bakeoff attaches before the fault shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Read the request, never answer.
    Hang,
    /// Send the response head and this many token events, then nothing (the connection stays open).
    Stall(usize),
    /// Send this many token events, then close without a final chunk.
    Truncate(usize),
    /// HTTP 500 with a JSON error body.
    Http500,
    /// One event that is not JSON.
    BadJson,
    /// Token events whose piece decodes to `""` and that carry no `tokens` array (llama-server
    /// without `return_tokens`, on a token such as a lone byte of a UTF-8 sequence).
    EmptyPiece,
}

impl Fault {
    /// `hang`, `stall`, `truncate`, `500`, `bad-json`, `empty-piece` (stall and truncate after
    /// 3 events), as the hidden `load --scripted-fault` flag spells them.
    pub fn parse(text: &str) -> Option<Fault> {
        Some(match text {
            "none" => Fault::None,
            "hang" => Fault::Hang,
            "stall" => Fault::Stall(3),
            "truncate" => Fault::Truncate(3),
            "500" => Fault::Http500,
            "bad-json" => Fault::BadJson,
            "empty-piece" => Fault::EmptyPiece,
            _ => return None,
        })
    }
}

/// What the endpoint answers: its pace, after how many `/completion` requests it fails them, and
/// the fault it injects.
struct Script {
    pace: Duration,
    completions_before_failure: Option<usize>,
    completions: AtomicUsize,
    fault: Fault,
    /// Completions answered normally before the fault shows (a `--url` command's attach check).
    spared: usize,
    /// Completion requests seen, for `spared`.
    seen: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl Script {
    /// Tokens one per `pace`; `/completion` fails after `fail_after` requests when given.
    fn paced(pace: Duration, fail_after: Option<usize>) -> Script {
        Script {
            pace,
            completions_before_failure: fail_after,
            completions: AtomicUsize::new(0),
            fault: Fault::None,
            spared: 0,
            seen: AtomicUsize::new(0),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Hold the connection open, answering nothing, until the endpoint is dropped.
    fn hold(&self) -> std::io::Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

/// Answer a completion request with the script's fault; `None` when there is none to inject.
fn inject(
    stream: &mut TcpStream,
    script: &Script,
    path: &str,
    chunk: &[u8],
) -> Option<std::io::Result<()>> {
    const COMPLETIONS: [&str; 3] = ["/completion", "/v1/chat/completions", "/v1/completions"];
    if !COMPLETIONS.contains(&path) || script.seen.fetch_add(1, Ordering::SeqCst) < script.spared {
        return None;
    }
    let events = |stream: &mut TcpStream, n: usize| -> std::io::Result<()> {
        stream.write_all(SSE_HEAD)?;
        (0..n).try_for_each(|_| stream.write_all(chunk))?;
        stream.flush()
    };
    Some(match script.fault {
        Fault::None | Fault::EmptyPiece => return None,
        Fault::Hang => script.hold(),
        Fault::Stall(n) => events(stream, n).and_then(|()| script.hold()),
        Fault::Truncate(n) => events(stream, n),
        Fault::Http500 => internal_error(stream),
        Fault::BadJson => events(stream, 1)
            .and_then(|()| stream.write_all(b"data: {\"content\": \"x\", oops\n\n")),
    })
}

fn internal_error(stream: &mut TcpStream) -> std::io::Result<()> {
    let body = r#"{"error":{"code":500,"message":"scripted failure"}}"#;
    let head = format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

/// The final `/completion` chunk: llama-server's timings, with the figures at the scripted pace.
fn completion_timings(request: &serde_json::Value, n: usize, pace: Duration) -> String {
    let prompt_n = request["prompt"].as_array().map_or(1, Vec::len);
    let predicted_ms = (pace.as_secs_f64() * 1000.0 * n as f64).max(0.001);
    let timings = serde_json::json!({
        "prompt_n": prompt_n, "cache_n": 0, "prompt_ms": 1.0, "prompt_per_second": prompt_n as f64 * 1000.0,
        "predicted_n": n, "predicted_ms": predicted_ms, "predicted_per_second": n as f64 * 1000.0 / predicted_ms,
    });
    format!("data: {{\"content\":\"\",\"tokens\":[],\"stop\":true,\"timings\":{timings}}}\n\n")
}

/// llama-server's `/tokenize`: one token per whitespace-separated word (its length as the id).
fn tokenize(request: &serde_json::Value) -> String {
    let text = request["content"].as_str().unwrap_or("");
    let tokens: Vec<usize> = text.split_whitespace().map(str::len).collect();
    serde_json::json!({ "tokens": tokens }).to_string()
}

/// One request: llama-server `/completion` (with timings), `/tokenize`, `/props`, `/slots`, OpenAI
/// `/v1/chat/completions` and `/v1/completions` (streamed, with a usage chunk and `[DONE]`),
/// `/v1/models` (with llama-server's `meta.n_vocab`) and `/health`, so bakeoff and other load
/// generators can be measured against the same endpoint.
fn serve_one(mut stream: TcpStream, default_tokens: usize, script: &Script) -> std::io::Result<()> {
    let pace = script.pace;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let json = |stream: &mut TcpStream, body: &str| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())
    };
    let n = ["n_predict", "max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| request[*k].as_u64())
        .map(|n| n as usize)
        .unwrap_or(default_tokens);
    let (chunk, last): (&[u8], String) = match path {
        "/v1/models" => return json(&mut stream, r#"{"object":"list","data":[{"id":"scripted","object":"model","owned_by":"bakeoff","meta":{"n_vocab":32000}}]}"#),
        "/tokenize" => return json(&mut stream, &tokenize(&request)),
        "/completion" if script.fails_now() => return internal_error(&mut stream),
        "/health" => return json(&mut stream, r#"{"status":"ok"}"#),
        // Enough of llama-server's `/props` for `--url` to attach to it as one.
        "/props" => return json(&mut stream, r#"{"build_info":"scripted","total_slots":4}"#),
        "/slots" => return json(&mut stream, "[]"),
        "/v1/chat/completions" => (
            b"data: {\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"model\":\"scripted\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" x\"},\"finish_reason\":null}]}\n\n",
            format!("data: {{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"model\":\"scripted\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"length\"}}]}}\n\ndata: {{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"model\":\"scripted\",\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n", n + 1),
        ),
        "/v1/completions" => (
            b"data: {\"id\":\"s\",\"object\":\"text_completion\",\"model\":\"scripted\",\"choices\":[{\"index\":0,\"text\":\" x\",\"finish_reason\":null}]}\n\n",
            format!("data: {{\"id\":\"s\",\"object\":\"text_completion\",\"model\":\"scripted\",\"choices\":[{{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n", n + 1),
        ),
        _ if script.fault == Fault::EmptyPiece => (
            b"data: {\"content\":\"\",\"stop\":false}\n\n",
            completion_timings(&request, n, pace),
        ),
        _ => (
            b"data: {\"content\":\"x\",\"tokens\":[7],\"stop\":false}\n\n",
            completion_timings(&request, n, pace),
        ),
    };
    if let Some(done) = inject(&mut stream, script, path, chunk) {
        return done;
    }
    stream.write_all(SSE_HEAD)?;
    let start = Instant::now();
    for i in 0..n {
        if !pace.is_zero() {
            let due = start + pace * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        stream.write_all(chunk)?;
    }
    stream.write_all(last.as_bytes())?;
    stream.flush()
}

impl Script {
    /// Counts a `/completion` request; true once the scripted successes are used up.
    fn fails_now(&self) -> bool {
        let seen = self.completions.fetch_add(1, Ordering::SeqCst);
        self.completions_before_failure.is_some_and(|ok| seen >= ok)
    }
}

impl ScriptedEndpoint {
    /// Listen on a free loopback port; every request streams `n_predict` tokens, one per `pace`.
    pub fn start(pace: Duration) -> std::io::Result<Self> {
        Self::start_on(0, pace)
    }

    /// As [`ScriptedEndpoint::start`], on `port` of 127.0.0.1 (0: a free one).
    pub fn start_on(port: u16, pace: Duration) -> std::io::Result<Self> {
        Self::listen(port, Script::paced(pace, None))
    }

    /// As [`ScriptedEndpoint::start`], but `/completion` answers HTTP 500 after `ok` requests.
    pub fn failing_after(ok: usize, pace: Duration) -> std::io::Result<Self> {
        Self::listen(0, Script::paced(pace, Some(ok)))
    }

    /// As [`ScriptedEndpoint::start_on`], every completion answered with `fault`.
    pub fn faulty(port: u16, fault: Fault) -> std::io::Result<Self> {
        Self::faulty_after(port, fault, 0)
    }

    /// As [`ScriptedEndpoint::faulty`], the first `spared` completions answered normally: a
    /// `--url` command checks that one completion works before it attaches, and the fault must
    /// show in what it measures.
    pub fn faulty_after(port: u16, fault: Fault, spared: usize) -> std::io::Result<Self> {
        let script = Script {
            fault,
            spared,
            ..Script::paced(Duration::ZERO, None)
        };
        Self::listen(port, script)
    }

    fn listen(port: u16, script: Script) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let stop = script.stop.clone();
        let script = Arc::new(script);
        let url = format!("http://{}", listener.local_addr()?);
        let flag = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = stream.set_nodelay(true);
                    let script = script.clone();
                    std::thread::spawn(move || serve_one(stream, 64, &script));
                }
            }
        });
        Ok(ScriptedEndpoint { url, stop })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub streams: usize,
    pub pace_us: u64,
    pub tokens_per_request: u32,
    pub seconds: f64,
    pub streamed_tps: f64,
    pub requests: usize,
    pub errors: usize,
    /// |measured gap − pace| percentiles, microseconds (paced runs only).
    pub gap_error_p50_us: Option<f64>,
    pub gap_error_p99_us: Option<f64>,
    pub client_cpu_cores: f64,
}

/// Measure the client against the scripted endpoint with `streams` concurrent streams.
pub fn measure_ceiling(
    streams: usize,
    pace: Duration,
    tokens_per_request: u32,
    duration: Duration,
) -> std::io::Result<Ceiling> {
    let endpoint = ScriptedEndpoint::start(pace)?;
    let http = Http::new(&endpoint.url, Duration::from_secs(30));
    let workload = WorkloadSpec::Synthetic {
        input: LengthDist::Fixed(1),
        output: LengthDist::Fixed(tokens_per_request),
    };
    let source = crate::measure::prompts::TokenSource::fixed(vec![1, 2, 3, 4]);
    let generator = Generator::new(workload, 1, Some(source)).map_err(std::io::Error::other)?;
    let limits = StepLimits {
        duration: Some(duration),
        requests: None,
        warmup: Duration::ZERO,
        cooldown: Duration::ZERO,
        max_inflight: streams,
        stop_on_saturation: false,
    };
    let result = run_step(
        &http,
        &generator,
        &Shape::Concurrency(streams),
        &limits,
        1,
        0,
        None,
        &mut |_, _| {},
    );
    let tokens: u64 = result
        .records
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.output_tokens())
        .sum();
    let (p50, p99) = if pace.is_zero() {
        (None, None)
    } else {
        let pace_us = pace.as_secs_f64() * 1e6;
        let errors: Vec<f64> = result
            .records
            .iter()
            .flat_map(|r| r.itl_ms())
            .map(|g| (g * 1000.0 - pace_us).abs())
            .collect();
        let s = sorted(&errors);
        (
            Some(quantile_sorted(&s, 0.5)),
            Some(quantile_sorted(&s, 0.99)),
        )
    };
    Ok(Ceiling {
        streams,
        pace_us: pace.as_micros() as u64,
        tokens_per_request,
        seconds: result.wall_s,
        streamed_tps: tokens as f64 / result.wall_s,
        requests: result.records.len(),
        errors: result.records.iter().filter(|r| r.error.is_some()).count(),
        gap_error_p50_us: p50,
        gap_error_p99_us: p99,
        client_cpu_cores: result.client_cpu_cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_openai_chat_for_other_load_generators() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let http = Http::new(&endpoint.url, Duration::from_secs(10));
        assert_eq!(
            http.get_json("/v1/models").unwrap()["data"][0]["id"],
            "scripted"
        );
        let body = serde_json::json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": true});
        let mut content = String::new();
        let mut usage = None;
        http.post_sse("/v1/chat/completions", &body, |_, chunk| {
            content.push_str(
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or(""),
            );
            usage = usage
                .take()
                .or(chunk["usage"]["completion_tokens"].as_u64());
            Ok(crate::engines::http::Flow::Continue)
        })
        .unwrap();
        assert_eq!((content.as_str(), usage), (" x x x x x", Some(5)));
    }

    #[test]
    fn client_reads_every_scripted_token() {
        let c = measure_ceiling(2, Duration::ZERO, 16, Duration::from_millis(300)).unwrap();
        assert!(c.requests > 0 && c.errors == 0, "{c:?}");
        assert!(c.streamed_tps > 0.0);
    }
}
