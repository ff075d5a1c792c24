//! A small blocking HTTP client for talking to engines on loopback: JSON requests, and streamed
//! responses where each line is handed over with the instant it arrived.

use crate::formats::sse::{parse_line, SseLine};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The bounds on every request to an engine. ureq 2 offers only a per-socket-read timeout, which
/// bounds the wait for the response head and each later read alike; a first-byte bound longer than
/// the idle bound (a long prompt evaluates before the first token, later tokens come quickly)
/// cannot be one socket setting. So a stream is read on its own thread and the caller waits on a
/// channel with the first-byte deadline until the first event and the idle deadline after it; the
/// socket timeout (the larger of the two) only ends an abandoned reader thread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    /// TCP connect.
    #[serde(rename = "connect_s", with = "crate::domain::seconds")]
    pub connect: Duration,
    /// Request sent → first streamed event (or a whole non-streamed answer).
    #[serde(rename = "first_byte_s", with = "crate::domain::seconds")]
    pub first_byte: Duration,
    /// Between two consecutive lines of a stream.
    #[serde(rename = "idle_s", with = "crate::domain::seconds")]
    pub idle: Duration,
}

impl Default for Timeouts {
    /// Generous enough for a long prompt on a slow CPU (first byte), tight enough that a frozen
    /// engine is noticed within a minute of its last token (idle).
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(DEFAULT_CONNECT_S),
            first_byte: Duration::from_secs(DEFAULT_FIRST_BYTE_S),
            idle: Duration::from_secs(DEFAULT_IDLE_S),
        }
    }
}

pub const DEFAULT_CONNECT_S: u64 = 10;
pub const DEFAULT_FIRST_BYTE_S: u64 = 300;
pub const DEFAULT_IDLE_S: u64 = 60;

impl Timeouts {
    /// One bound for everything after the connect (short probes).
    pub fn uniform(read: Duration) -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            first_byte: read,
            idle: read,
        }
    }

    /// The socket read timeout: the longest wait any read may legitimately need.
    fn socket_read(&self) -> Duration {
        self.first_byte.max(self.idle)
    }
}

#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    base: String,
    timeouts: Timeouts,
}

/// What the stream callback wants next.
pub enum Flow {
    Continue,
    Stop,
}

/// What the reader thread of a stream hands over.
enum Piece {
    Line(Instant, String),
    /// The request failed before the stream began (HTTP status, connect error).
    Refused(String),
    /// A read failed mid-stream.
    Broke(String),
    End,
}

impl Http {
    /// A client whose reads are bounded by `read_timeout` (first byte and idle alike).
    pub fn new(base: &str, read_timeout: Duration) -> Self {
        Self::with_timeouts(base, Timeouts::uniform(read_timeout))
    }

    pub fn with_timeouts(base: &str, timeouts: Timeouts) -> Self {
        // No connection pool: ureq 2 sets `timeout_read` only on a new connection and clears it
        // when a connection goes back to the pool, so a reused one read without any bound (a
        // frozen server held a load step's `/metrics` scrape for ever). Loopback connects are cheap.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeouts.connect)
            .timeout_read(timeouts.socket_read())
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build();
        Http {
            agent,
            base: base.trim_end_matches('/').to_string(),
            timeouts,
        }
    }

    /// The same server under other bounds.
    pub fn retimed(&self, timeouts: Timeouts) -> Self {
        Self::with_timeouts(&self.base, timeouts)
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET a path; returns the status code and body, errors only on transport failure.
    pub fn get_raw(&self, path: &str) -> Result<(u16, String)> {
        let url = self.url(path);
        match self.agent.get(&url).call() {
            Ok(resp) => {
                let status = resp.status();
                Ok((
                    status,
                    resp.into_string()
                        .map_err(|e| Error::http(&url, e.to_string()))?,
                ))
            }
            Err(ureq::Error::Status(code, resp)) => {
                Ok((code, resp.into_string().unwrap_or_default()))
            }
            Err(error) => Err(Error::http(url, refusal(error))),
        }
    }

    pub fn get_json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get_raw(path)?;
        parse_json_response(&self.url(path), status, &body)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let (status, text) = match self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
        {
            Ok(resp) => (
                resp.status(),
                resp.into_string()
                    .map_err(|e| Error::http(&url, e.to_string()))?,
            ),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(error) => return Err(Error::http(url, refusal(error))),
        };
        parse_json_response(&url, status, &text)
    }

    /// POST `body` and hand back the response body as a reader (for NDJSON streams, which are
    /// decoded by [`crate::formats::ndjson::NdjsonReader`] whether they come from here or a file).
    pub fn post_reader(&self, path: &str, body: &Value) -> Result<Box<dyn BufRead + Send>> {
        let url = self.url(path);
        match self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
        {
            Ok(resp) => Ok(Box::new(BufReader::new(resp.into_reader()))),
            Err(error) => Err(Error::http(url, refusal(error))),
        }
    }

    /// POST `body` and stream the server-sent events back: `on_event` gets each `data:` JSON
    /// payload with the instant its line arrived. Returns the number of events. A stream that
    /// ends before `on_event` says [`Flow::Stop`] (or before `[DONE]`) is an error: truncated. No
    /// first event within the first-byte bound, or no line within the idle bound after it, is an
    /// error naming the bound and how far the stream got.
    pub fn post_sse(
        &self,
        path: &str,
        body: &Value,
        mut on_event: impl FnMut(Instant, Value) -> Result<Flow>,
    ) -> Result<usize> {
        let url = self.url(path);
        let lines = self.stream_lines(&url, body);
        let sent = Instant::now();
        let mut events = 0;
        let mut last = sent;
        loop {
            let (at, line) = match self.next_piece(&lines, events, sent, last) {
                Ok(Piece::Line(at, line)) => (at, line),
                Ok(Piece::Refused(why)) => return Err(Error::http(&url, why)),
                Ok(Piece::Broke(why)) => {
                    let message = format!("stream broke after {events} events: {why}");
                    return Err(Error::http(&url, message));
                }
                Ok(Piece::End) => {
                    let message = format!(
                        "stream ended after {events} events without a final chunk (truncated)"
                    );
                    return Err(Error::http(&url, message));
                }
                Err(why) => return Err(Error::http(&url, why)),
            };
            last = at;
            match parse_line(&line) {
                SseLine::Data(payload) => {
                    let value: Value = serde_json::from_str(payload).map_err(|e| {
                        let n = events + 1;
                        let message = format!("event {n} is not JSON ({e}): {}", excerpt(payload));
                        Error::http(&url, message)
                    })?;
                    events += 1;
                    if let Flow::Stop = on_event(at, value)? {
                        return Ok(events);
                    }
                }
                SseLine::Done => return Ok(events),
                SseLine::Error(payload) => {
                    let message =
                        format!("server reported an error mid-stream: {}", excerpt(payload));
                    return Err(Error::http(&url, message));
                }
                SseLine::Ignored => {}
            }
        }
    }

    /// The next piece of a stream, or why waiting for it ran out: the first-byte bound until the
    /// first event, the idle bound after it.
    fn next_piece(
        &self,
        lines: &mpsc::Receiver<Piece>,
        events: usize,
        sent: Instant,
        last: Instant,
    ) -> std::result::Result<Piece, String> {
        let (deadline, bound) = match events {
            0 => (sent + self.timeouts.first_byte, self.timeouts.first_byte),
            _ => (last + self.timeouts.idle, self.timeouts.idle),
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(wait) {
            Ok(piece) => Ok(piece),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(Piece::End),
            Err(mpsc::RecvTimeoutError::Timeout) if events == 0 => Err(format!(
                "no first event within {} (first-byte timeout)",
                seconds(bound)
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "no data for {} after {events} events (idle timeout)",
                seconds(bound)
            )),
        }
    }

    /// Send the request on a thread of its own that reads the response line by line, stamping
    /// each line as it arrives; the thread ends when the stream does, when a read times out, or
    /// when the receiver is gone.
    fn stream_lines(&self, url: &str, body: &Value) -> mpsc::Receiver<Piece> {
        let (tx, rx) = mpsc::channel();
        let request = self.agent.post(url).set("Content-Type", "application/json");
        let payload = body.to_string();
        std::thread::spawn(move || {
            let response = match request.send_string(&payload) {
                Ok(response) => response,
                Err(error) => return drop(tx.send(Piece::Refused(refusal(error)))),
            };
            let mut reader = BufReader::new(response.into_reader());
            loop {
                let mut line = String::new();
                let piece = match reader.read_line(&mut line) {
                    Ok(0) => Piece::End,
                    Ok(_) => Piece::Line(Instant::now(), line),
                    Err(e) => Piece::Broke(e.to_string()),
                };
                let last = !matches!(piece, Piece::Line(..));
                if tx.send(piece).is_err() || last {
                    return;
                }
            }
        });
        rx
    }
}

/// An error before a response body: `HTTP 500: ...` with the body's start, or the transport's
/// failure without its URL (the caller's error names the URL once; ureq's own text repeats it,
/// which printed the URL twice).
fn refusal(error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(code, resp) => {
            let text = resp.into_string().unwrap_or_default();
            format!("HTTP {code}: {}", excerpt(&text))
        }
        ureq::Error::Transport(transport) => transport_failure(&transport),
    }
}

/// `Connection Failed: Connect error: connection refused`, `Network Error: ...`.
fn transport_failure(transport: &ureq::Transport) -> String {
    let kind = transport.kind().to_string();
    let source = std::error::Error::source(transport).map(ToString::to_string);
    match (transport.message(), source) {
        (Some(message), _) if message.starts_with(&kind) => message.to_string(),
        (Some(message), _) => format!("{kind}: {message}"),
        (None, Some(source)) => format!("{kind}: {source}"),
        (None, None) => kind,
    }
}

/// `30 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

fn parse_json_response(url: &str, status: u16, body: &str) -> Result<Value> {
    if !(200..300).contains(&status) {
        return Err(Error::http(
            url,
            format!("HTTP {status}: {}", excerpt(body)),
        ));
    }
    serde_json::from_str(body).map_err(|e| {
        Error::http(
            url,
            format!("response is not JSON ({e}): {}", excerpt(body)),
        )
    })
}

/// The first 200 characters of a body, on one line.
pub fn excerpt(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    flat.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_names_the_url_once() {
        // Regression: ureq's transport text repeats the URL, so errors printed it twice.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let http = Http::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
        let error = http
            .post_sse("/completion", &serde_json::json!({}), |_, _| Ok(Flow::Stop))
            .unwrap_err()
            .to_string();
        assert_eq!(error.matches("127.0.0.1").count(), 1, "{error}");
        assert!(error.to_ascii_lowercase().contains("connect"), "{error}");
        let error = http.get_raw("/health").unwrap_err().to_string();
        assert_eq!(error.matches("127.0.0.1").count(), 1, "{error}");
    }

    #[test]
    fn a_second_request_to_a_server_that_stops_answering_is_still_bounded() {
        // Regression: ureq pooled the first connection and read the second answer with no bound.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut first = Some(());
            for stream in listener.incoming().flatten() {
                let mut stream = std::io::BufReader::new(stream);
                let mut line = String::new();
                while stream.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                if first.take().is_some() {
                    use std::io::Write;
                    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    let _ = stream.get_mut().write_all(answer.as_bytes());
                }
                std::mem::forget(stream); // never answer again, never close
            }
        });
        let http = Http::new(&url, Duration::from_millis(300));
        assert_eq!(http.get_raw("/metrics").unwrap(), (200, "ok".to_string()));
        let started = Instant::now();
        assert!(http.get_raw("/metrics").is_err());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "unbounded read"
        );
    }
}
