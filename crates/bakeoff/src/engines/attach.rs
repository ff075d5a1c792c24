//! Attach mode: use a server someone else started, after finding out what kind it is and that it
//! completes. Every way of failing is told apart (malformed URL, connection refused, no answer in
//! time, an HTTP error with its body, completions that fail), since every `--url` command starts here.

use super::http::excerpt;
use super::EngineKind;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;

/// Bounds of the identifying probes: a local server answers these at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A first completion may wait for the server to load its model (Ollama loads on demand).
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct Detected {
    pub kind: EngineKind,
    pub url: String,
    pub version: Option<String>,
    /// Models the server says it serves.
    pub models: Vec<String>,
}

/// Probe `url`: llama-server answers `/props`, Ollama `/api/version`, any OpenAI-compatible
/// server `/v1/models`; then one one-token completion must succeed.
pub fn detect(url: &str) -> Result<Detected> {
    let base = check_url(url)?;
    let probe = Probe::new(&base);
    let models = probe.get("/v1/models")?;
    let detected = identify(&probe, &models).ok_or_else(|| unrecognised(&base, &models))?;
    probe.complete(&detected)?;
    Ok(detected)
}

/// The kind of server at the probe's URL (`models`: its `/v1/models` answer); `None` when it is
/// none of the three.
fn identify(probe: &Probe, models: &Answer) -> Option<Detected> {
    let listed = models.json().map(|v| model_ids(&v)).unwrap_or_default();
    let found = |kind, version| Detected {
        kind,
        url: probe.base.clone(),
        version,
        models: listed.clone(),
    };
    if let Some(props) = probe.get("/props").ok().and_then(|a| a.json()) {
        if props.get("build_info").is_some() || props.get("total_slots").is_some() {
            let version = props["build_info"].as_str().map(str::to_string);
            return Some(found(EngineKind::LlamaServer, version));
        }
    }
    if let Some(version) = probe.get("/api/version").ok().and_then(|a| a.json()) {
        if let Some(v) = version["version"].as_str() {
            let mut detected = found(EngineKind::Ollama, Some(v.to_string()));
            detected.models = ollama_models(probe);
            return Some(detected);
        }
    }
    let openai = models.json().is_some_and(|v| v.get("data").is_some());
    openai.then(|| found(EngineKind::OpenAi, None))
}

fn ollama_models(probe: &Probe) -> Vec<String> {
    let tags = probe.get("/api/tags").ok().and_then(|a| a.json());
    let models = tags.as_ref().and_then(|t| t.get("models")?.as_array());
    models
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// A server that answered, but as none of the kinds: its HTTP error when it gave one.
fn unrecognised(base: &str, models: &Answer) -> Error {
    let body = excerpt(&models.body);
    let message = match models.status {
        200..=299 => format!(
            "{base}: no llama-server, Ollama or OpenAI-compatible server answers there (GET /v1/models: {body})"
        ),
        code => format!("{base}: HTTP {code} from GET /v1/models: {body}"),
    };
    Error::engine(message)
        .with_hint("check the URL and that the server is running (`curl URL/v1/models`)")
}

/// The base URL without its trailing `/`, or an error naming what is wrong with it.
pub fn check_url(url: &str) -> Result<String> {
    let malformed = |why: &str| {
        Error::input(format!("--url {url}: malformed URL: {why}"))
            .with_hint("give the server's base URL, e.g. --url http://127.0.0.1:8080")
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(malformed(
            "https is not supported (bakeoff talks to servers over plain http)",
        ));
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(malformed("expected http://HOST[:PORT]"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = host_and_port(authority);
    let host_ok = !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '@');
    if !host_ok {
        return Err(malformed("no host"));
    }
    if port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|p| p > 0)) {
        return Err(malformed("the port must be a number from 1 to 65535"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `HOST[:PORT]`, with an IPv6 host in brackets (`[::1]:8080`).
fn host_and_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => ("", None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A status and body the server sent (any status).
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    /// The body as JSON, when the status is a success and the body parses.
    fn json(&self) -> Option<Value> {
        (200..300)
            .contains(&self.status)
            .then(|| serde_json::from_str(&self.body).ok())
            .flatten()
    }
}

/// Bounded requests to the server, whose transport failures are told apart.
struct Probe {
    base: String,
    agent: ureq::Agent,
}

impl Probe {
    fn new(base: &str) -> Probe {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(PROBE_TIMEOUT)
            .build();
        Probe {
            base: base.to_string(),
            agent,
        }
    }

    fn get(&self, path: &str) -> Result<Answer> {
        let request = self.agent.get(&format!("{}{path}", self.base));
        self.answer(&format!("GET {path}"), request.call(), PROBE_TIMEOUT)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        let request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .timeout(COMPLETION_TIMEOUT)
            .set("Content-Type", "application/json");
        let sent = request.send_string(&body.to_string());
        self.answer(&format!("POST {path}"), sent, COMPLETION_TIMEOUT)
    }

    fn answer(
        &self,
        what: &str,
        result: std::result::Result<ureq::Response, ureq::Error>,
        limit: Duration,
    ) -> Result<Answer> {
        let (status, response) = match result {
            Ok(response) => (response.status(), response),
            Err(ureq::Error::Status(code, response)) => (code, response),
            Err(ureq::Error::Transport(t)) => return Err(transport(&self.base, what, &t, limit)),
        };
        let body = response.into_string().map_err(|e| {
            Error::engine(format!(
                "{}: {what}: reading the answer failed: {e}",
                self.base
            ))
        })?;
        Ok(Answer { status, body })
    }

    /// One one-token completion in the server's own API; an attached server that cannot complete
    /// is not a server to measure.
    fn complete(&self, detected: &Detected) -> Result<()> {
        let (path, body) = completion_request(detected)?;
        let answer = self.post(path, &body)?;
        // Any success will do: some servers stream even when asked not to.
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let (kind, code) = (detected.kind.as_str(), answer.status);
        let message = format!(
            "{}: {kind} answers, but a one-token completion failed (POST {path}): HTTP {code}: {}",
            self.base,
            excerpt(&answer.body)
        );
        Err(Error::engine(message)
            .with_hint("check the server's log; bakeoff attaches only to a server that completes"))
    }
}

/// The path and body of a one-token completion for the detected kind.
fn completion_request(detected: &Detected) -> Result<(&'static str, Value)> {
    let model = detected.models.first();
    match detected.kind {
        EngineKind::LlamaServer => Ok((
            "/completion",
            json!({"prompt": "Hello", "n_predict": 1, "stream": false}),
        )),
        EngineKind::Ollama => {
            let model = model.ok_or_else(|| {
                Error::engine(format!("{}: Ollama serves no model", detected.url))
                    .with_hint("pull one first: ollama pull NAME")
            })?;
            let body = json!({"model": model, "prompt": "Hello", "stream": false, "options": {"num_predict": 1}});
            Ok(("/api/generate", body))
        }
        _ => {
            let mut body = json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1, "stream": false});
            if let Some(model) = model {
                body["model"] = json!(model);
            }
            Ok(("/v1/chat/completions", body))
        }
    }
}

/// A transport failure in words: refused, no connection in time, no answer in time, or other.
fn transport(base: &str, what: &str, error: &ureq::Transport, limit: Duration) -> Error {
    use std::io::ErrorKind;
    let io_kind = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let connect = error.kind() == ureq::ErrorKind::ConnectionFailed;
    let (message, hint) = match io_kind {
        Some(ErrorKind::ConnectionRefused) => (
            "connection refused: nothing listens there".to_string(),
            "start the server, or check the host and port",
        ),
        Some(ErrorKind::TimedOut | ErrorKind::WouldBlock) if connect => (
            format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            "check the host and port, and any firewall between",
        ),
        Some(ErrorKind::TimedOut | ErrorKind::WouldBlock) => (
            format!(
                "connected, but no answer to {what} within {} s",
                limit.as_secs()
            ),
            "the server may be frozen or overloaded; check its log",
        ),
        _ if error.kind() == ureq::ErrorKind::Dns => (
            format!("cannot resolve the host ({error})"),
            "check the host name",
        ),
        _ => (
            format!("{what} failed: {error}"),
            "check the URL and that the server is running",
        ),
    };
    Error::engine(format!("{base}: {message}")).with_hint(hint)
}

fn model_ids(value: &Value) -> Vec<String> {
    value
        .get("data")
        .and_then(|d| d.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m.get("id")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    #[test]
    fn a_malformed_url_is_refused_before_any_request() {
        for url in [
            "localhost:8080",
            "http://",
            "http://host:port",
            "ftp://x",
            "https://x",
            "http://h:0",
        ] {
            let error = check_url(url).unwrap_err();
            assert!(
                error.to_string().contains("malformed URL"),
                "{url}: {error}"
            );
            assert_eq!(error.exit_code(), 2);
        }
        assert_eq!(
            check_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("http://[::1]:8080").is_ok());
        assert!(check_url("http://[::1]").is_ok());
        assert!(check_url("http://[::1]:x").is_err());
        assert!(check_url("http://localhost/v1").is_ok());
    }

    #[test]
    fn a_refused_port_is_said_so() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = detect(&format!("http://127.0.0.1:{port}")).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("connection refused: nothing listens there"),
            "{error}"
        );
    }

    /// A one-thread server answering each request with `reply(request line)`.
    fn server(reply: fn(&str) -> (u16, &'static str)) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut first, mut line, mut length) = (String::new(), String::new(), 0);
                reader.read_line(&mut first).unwrap();
                while reader.read_line(&mut line).unwrap() > 2 {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    line.clear();
                }
                reader.read_exact(&mut vec![0; length]).unwrap();
                let (status, body) = reply(&first);
                let mut stream = stream;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(format!("{head}{body}").as_bytes());
            }
        });
        url
    }

    #[test]
    fn an_http_error_names_its_status_and_body() {
        let url = server(|_| (503, "{\"error\":\"loading model\"}"));
        let error = detect(&url).unwrap_err().to_string();
        assert!(
            error.contains("HTTP 503 from GET /v1/models: {\"error\":\"loading model\"}"),
            "{error}"
        );
    }

    #[test]
    fn a_server_whose_completions_fail_is_not_attached() {
        let url = server(|request| match request.split_whitespace().nth(1) {
            Some("/v1/models") => (200, "{\"object\":\"list\",\"data\":[{\"id\":\"m\"}]}"),
            Some("/v1/chat/completions") => (500, "{\"error\":\"scripted failure\"}"),
            _ => (404, "not found"),
        });
        let error = detect(&url).unwrap_err().to_string();
        assert!(
            error.contains("openai answers, but a one-token completion failed (POST /v1/chat/completions): HTTP 500: {\"error\":\"scripted failure\"}"),
            "{error}"
        );
    }
}
