//! Serving saved profiles: a winning configuration stored under a name, started supervised behind
//! a readiness gate (model identity, start-up, health, a completion, canaries), with a fallback
//! profile for when the candidate fails, and exported as a command line or a systemd unit.

pub mod deployment;
pub mod profile;
pub mod readiness;
pub mod tuned;

use crate::engines::http::{Http, Timeouts};
use crate::engines::llama_server::{LlamaServer, ServerSpec};
use crate::store::{Profile, Store};
use readiness::{CheckResult, Finding, Gate, GateReport};
use std::path::Path;
use std::time::Instant;

/// The model file must be the one the profile was saved with (same SHA-256): a profile promises
/// the measured configuration, and a swapped or damaged file breaks that promise.
pub fn model_check(store: &Store, profile: &Profile) -> CheckResult {
    let started = Instant::now();
    let ms = || started.elapsed().as_secs_f64() * 1000.0;
    let path = Path::new(&profile.model_path);
    let row = match store.model(path) {
        Ok(row) => row,
        Err(error) => return CheckResult::new("model", Finding::fail(error.to_string()), ms()),
    };
    let short = |sha: &str| sha[..12.min(sha.len())].to_string();
    let finding = match &profile.model_sha256 {
        Some(saved) if *saved != row.sha256 => Finding::fail(format!(
            "{} changed since the profile was saved (sha256 {} → {})",
            row.path,
            short(saved),
            short(&row.sha256)
        )),
        _ => Finding::pass(format!("{} sha256 {}", row.path, short(&row.sha256))),
    };
    CheckResult::new("model", finding, ms())
}

/// Launch `spec` and run `gate` on it, after the checks already in `report` (which must have
/// passed). On success the server is running and reported ready; on failure it is stopped and the
/// report says which check failed.
pub fn start(
    spec: ServerSpec,
    gate: &Gate,
    mut report: GateReport,
    timeouts: Timeouts,
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
                .push(CheckResult::new("start", Finding::fail(detail), ms()));
            return Err(report);
        }
    };
    let started_line = format!("pid {} healthy on {}", server.pid(), server.url);
    report
        .results
        .push(CheckResult::new("start", Finding::pass(started_line), ms()));
    gate.run(&Http::with_timeouts(&server.url, timeouts), &mut report);
    if let Some(status) = server.exited() {
        let line = format!("llama-server exited during the readiness checks ({status})");
        report
            .results
            .push(CheckResult::new("alive", Finding::fail(line), ms()));
    }
    if report.passed() {
        Ok((server, report))
    } else {
        server.stop();
        Err(report)
    }
}
