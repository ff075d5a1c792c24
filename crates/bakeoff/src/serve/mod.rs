//! Serving saved profiles: a winning configuration stored under a name, started supervised behind
//! a readiness gate (model identity, start-up, health, a completion, canaries), with a fallback
//! profile for when the candidate fails, and exported as a command line or a systemd unit.

pub mod profile;
pub mod readiness;

use crate::engines::http::Http;
use crate::engines::llama_server::{LlamaServer, ServerSpec};
use crate::store::{Profile, Store};
use readiness::{CheckResult, Gate, GateReport};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one readiness check may wait for the server.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The model file must be the one the profile was saved with (same SHA-256): a profile promises
/// the measured configuration, and a swapped or damaged file breaks that promise.
pub fn model_check(store: &Store, profile: &Profile) -> CheckResult {
    let started = Instant::now();
    let ms = || started.elapsed().as_secs_f64() * 1000.0;
    let path = Path::new(&profile.model_path);
    let row = match store.model(path) {
        Ok(row) => row,
        Err(error) => return CheckResult::fail("model", error.to_string(), ms()),
    };
    match &profile.model_sha256 {
        Some(saved) if *saved != row.sha256 => CheckResult::fail(
            "model",
            format!(
                "{} changed since the profile was saved (sha256 {} → {})",
                row.path,
                &saved[..12.min(saved.len())],
                &row.sha256[..12.min(row.sha256.len())]
            ),
            ms(),
        ),
        _ => CheckResult::pass(
            "model",
            format!(
                "{} sha256 {}",
                row.path,
                &row.sha256[..12.min(row.sha256.len())]
            ),
            ms(),
        ),
    }
}

/// Launch `spec` and run `gate` on it, after the checks already in `report` (which must have
/// passed). On success the server is running and reported ready; on failure it is stopped and the
/// report says which check failed.
pub fn start(
    spec: ServerSpec,
    gate: &Gate,
    mut report: GateReport,
) -> std::result::Result<(LlamaServer, GateReport), GateReport> {
    if report.failure().is_some() {
        return Err(report);
    }
    let started = Instant::now();
    let ms = || started.elapsed().as_secs_f64() * 1000.0;
    let mut server = match LlamaServer::launch(spec) {
        Ok(server) => server,
        Err(error) => {
            let detail = match error.hint() {
                Some(hint) => format!("{error} ({hint})"),
                None => error.to_string(),
            };
            report
                .results
                .push(CheckResult::fail("start", detail, ms()));
            return Err(report);
        }
    };
    report.results.push(CheckResult::pass(
        "start",
        format!("pid {} healthy on {}", server.pid(), server.url),
        ms(),
    ));
    gate.run(&Http::new(&server.url, CHECK_TIMEOUT), &mut report);
    if let Some(status) = server.exited() {
        report.results.push(CheckResult::fail(
            "alive",
            format!("llama-server exited during the readiness checks ({status})"),
            ms(),
        ));
    }
    if report.passed() {
        Ok((server, report))
    } else {
        server.stop();
        Err(report)
    }
}
