//! The readiness gate a served profile passes before bakeoff reports it ready: an ordered list of
//! checks against the running server (health, a completion, then whatever checks are added, such
//! as canaries); the first failure fails the gate.

use crate::engines::http::{excerpt, Http};
use crate::{Error, Result};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;

/// One check of a running server. `run` returns a short description of what it saw when the
/// check passes, and an error saying what was wrong when it fails.
pub trait ReadinessCheck {
    fn name(&self) -> String;
    fn run(&self, http: &Http) -> Result<String>;
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    pub elapsed_ms: f64,
}

impl CheckResult {
    pub fn pass(name: &str, detail: impl Into<String>, elapsed_ms: f64) -> Self {
        CheckResult {
            name: name.to_string(),
            passed: true,
            detail: detail.into(),
            elapsed_ms,
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>, elapsed_ms: f64) -> Self {
        CheckResult {
            passed: false,
            ..CheckResult::pass(name, detail, elapsed_ms)
        }
    }
}

/// The results of a gate (or of a start that never reached it), in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GateReport {
    pub results: Vec<CheckResult>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.passed)
    }

    pub fn failure(&self) -> Option<&CheckResult> {
        self.results.iter().find(|r| !r.passed)
    }

    /// `completion: empty reply` for the first failure.
    pub fn failure_line(&self) -> String {
        self.failure()
            .map(|f| format!("{}: {}", f.name, f.detail))
            .unwrap_or_else(|| "no check ran".to_string())
    }
}

/// An ordered list of checks.
#[derive(Default)]
pub struct Gate {
    checks: Vec<Box<dyn ReadinessCheck>>,
}

impl Gate {
    /// Health, then one greedy completion.
    pub fn standard() -> Self {
        let mut gate = Gate::default();
        gate.push(Health);
        gate.push(Completion::default());
        gate
    }

    pub fn push(&mut self, check: impl ReadinessCheck + 'static) {
        self.checks.push(Box::new(check));
    }

    pub fn names(&self) -> Vec<String> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Run the checks in order, stopping at the first failure (later checks would only repeat it).
    pub fn run(&self, http: &Http, report: &mut GateReport) {
        for check in &self.checks {
            let started = Instant::now();
            let outcome = check.run(http);
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let name = check.name();
            let result = match outcome {
                Ok(detail) => CheckResult::pass(&name, detail, elapsed_ms),
                Err(error) => CheckResult::fail(&name, error.to_string(), elapsed_ms),
            };
            let passed = result.passed;
            report.results.push(result);
            if !passed {
                return;
            }
        }
    }
}

/// `GET /health` answers 200 with `{"status": "ok"}` (the model is loaded).
pub struct Health;

impl ReadinessCheck for Health {
    fn name(&self) -> String {
        "health".into()
    }

    fn run(&self, http: &Http) -> Result<String> {
        let (status, body) = http.get_raw("/health")?;
        let ok = status == 200
            && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["status"] == "ok");
        if ok {
            Ok("status ok".into())
        } else {
            Err(Error::engine(format!("HTTP {status}: {}", excerpt(&body))))
        }
    }
}

/// One greedy `/completion` of a fixed prompt: the server must generate text and finish the
/// request normally. It proves the model runs end to end, not that it answers well (canaries do).
pub struct Completion {
    pub prompt: String,
    pub n_predict: u32,
}

impl Default for Completion {
    fn default() -> Self {
        Completion {
            prompt: "The capital of France is".into(),
            n_predict: 8,
        }
    }
}

impl ReadinessCheck for Completion {
    fn name(&self) -> String {
        "completion".into()
    }

    fn run(&self, http: &Http) -> Result<String> {
        let body = json!({
            "prompt": self.prompt, "n_predict": self.n_predict, "temperature": 0.0,
            "top_k": 1, "cache_prompt": false,
        });
        let reply = http.post_json("/completion", &body)?;
        let content = reply["content"].as_str().unwrap_or_default();
        let predicted = reply["tokens_predicted"].as_u64().unwrap_or(0);
        if predicted == 0 || content.trim().is_empty() {
            return Err(Error::engine(format!(
                "no text generated for {:?} ({predicted} tokens): {}",
                self.prompt,
                excerpt(&reply.to_string())
            )));
        }
        Ok(format!("{predicted} tokens: {:?}", excerpt(content)))
    }
}
