//! Client honesty: a scripted streaming endpoint on loopback that emits tokens at a fixed pace
//! (llama-server's `/completion` chunk format), to measure the client's own ceiling — streamed
//! tokens per second, concurrent streams, and how far measured gaps stray from the true pace. This
//! is the only fake server in bakeoff and it never stands in for an engine.

use super::executor::{run_step, Shape, StepLimits};
use super::workload::{Generator, LengthDist, WorkloadSpec};
use crate::engines::http::Http;
use crate::measure::stats::{quantile_sorted, sorted};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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

fn serve_one(mut stream: TcpStream, tokens: usize, pace: Duration) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
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
    // Honour n_predict so the client can ask for any length.
    let n = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["n_predict"].as_u64())
        .map(|n| n as usize)
        .unwrap_or(tokens);
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
    )?;
    let start = Instant::now();
    for i in 0..n {
        if !pace.is_zero() {
            let due = start + pace * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        stream.write_all(b"data: {\"content\":\"x\",\"tokens\":[7],\"stop\":false}\n\n")?;
    }
    let final_chunk = format!("data: {{\"content\":\"\",\"tokens\":[],\"stop\":true,\"timings\":{{\"prompt_n\":1,\"predicted_n\":{n}}}}}\n\n");
    stream.write_all(final_chunk.as_bytes())?;
    stream.flush()
}

impl ScriptedEndpoint {
    /// Listen on a free loopback port; every request streams `n_predict` tokens, one per `pace`.
    pub fn start(pace: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = stream.set_nodelay(true);
                    std::thread::spawn(move || serve_one(stream, 64, pace));
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
    fn client_reads_every_scripted_token() {
        let c = measure_ceiling(2, Duration::ZERO, 16, Duration::from_millis(300)).unwrap();
        assert!(c.requests > 0 && c.errors == 0, "{c:?}");
        assert!(c.streamed_tps > 0.0);
    }
}
