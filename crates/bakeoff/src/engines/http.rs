//! A small blocking HTTP client for talking to engines on loopback: JSON requests, and streamed
//! responses where each line is handed over with the instant it arrived.

use crate::formats::sse::{parse_line, SseLine};
use crate::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    base: String,
}

/// What the stream callback wants next.
pub enum Flow {
    Continue,
    Stop,
}

impl Http {
    pub fn new(base: &str, read_timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout_read(read_timeout)
            .build();
        Http {
            agent,
            base: base.trim_end_matches('/').to_string(),
        }
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
            Err(e) => Err(Error::http(url, e.to_string())),
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
            Err(e) => return Err(Error::http(url, e.to_string())),
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
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(Error::http(url, format!("HTTP {code}: {}", excerpt(&text))))
            }
            Err(e) => Err(Error::http(url, e.to_string())),
        }
    }

    /// POST `body` and stream the server-sent events back: `on_event` gets each `data:` JSON
    /// payload with the instant its line arrived. Returns the number of events. A stream that
    /// ends before `on_event` says [`Flow::Stop`] (or before `[DONE]`) is an error: truncated.
    pub fn post_sse(
        &self,
        path: &str,
        body: &Value,
        mut on_event: impl FnMut(Instant, Value) -> Result<Flow>,
    ) -> Result<usize> {
        let url = self.url(path);
        let resp = match self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
        {
            Ok(resp) => resp,
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                return Err(Error::http(url, format!("HTTP {code}: {}", excerpt(&text))));
            }
            Err(e) => return Err(Error::http(url, e.to_string())),
        };
        let mut reader = BufReader::new(resp.into_reader());
        let mut line = String::new();
        let mut events = 0;
        loop {
            line.clear();
            let read = reader.read_line(&mut line).map_err(|e| {
                Error::http(&url, format!("stream broke after {events} events: {e}"))
            })?;
            let arrived = Instant::now();
            if read == 0 {
                return Err(Error::http(
                    &url,
                    format!("stream ended after {events} events without a final chunk (truncated)"),
                ));
            }
            match parse_line(&line) {
                SseLine::Data(payload) => {
                    let value: Value = serde_json::from_str(payload).map_err(|e| {
                        Error::http(
                            &url,
                            format!(
                                "event {} is not JSON ({e}): {}",
                                events + 1,
                                excerpt(payload)
                            ),
                        )
                    })?;
                    events += 1;
                    if let Flow::Stop = on_event(arrived, value)? {
                        return Ok(events);
                    }
                }
                SseLine::Done => return Ok(events),
                SseLine::Error(payload) => {
                    return Err(Error::http(
                        &url,
                        format!("server reported an error mid-stream: {}", excerpt(payload)),
                    ))
                }
                SseLine::Ignored => {}
            }
        }
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
