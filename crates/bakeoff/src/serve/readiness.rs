//! The readiness gate a served profile passes before bakeoff reports it ready: an ordered list of
//! checks against the running server (health, a completion, the coherence canaries, and whatever
//! else is pushed); the first failure fails the gate.

use crate::engines::http::{excerpt, Http};
use crate::quality::canary::{self, CanaryResult, Suite};
use crate::quality::hygiene::RequestLog;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// What one check saw: pass or fail, a line for people, and data to store with the run.
#[derive(Debug, Clone)]
pub struct Finding {
    pub passed: bool,
    pub detail: String,
    pub data: Value,
}

impl Finding {
    pub fn pass(detail: impl Into<String>) -> Self {
        Finding {
            passed: true,
            detail: detail.into(),
            data: Value::Null,
        }
    }

    pub fn fail(detail: impl Into<String>) -> Self {
        Finding {
            passed: false,
            ..Finding::pass(detail)
        }
    }

    pub fn with_data(self, data: Value) -> Self {
        Finding { data, ..self }
    }
}

/// One check of a running server.
pub trait ReadinessCheck {
    fn name(&self) -> String;
    fn run(&self, http: &Http) -> Finding;
}

/// A check's outcome as reported and stored.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    pub elapsed_ms: f64,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl CheckResult {
    pub fn new(name: &str, finding: Finding, elapsed_ms: f64) -> Self {
        CheckResult {
            name: name.to_string(),
            passed: finding.passed,
            detail: finding.detail,
            elapsed_ms,
            data: finding.data,
        }
    }
}

/// The results of a gate (and of the steps before it), in order.
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

    /// `completion: no text generated ...` for the first failure.
    pub fn failure_line(&self) -> String {
        self.failure()
            .map(|f| format!("{}: {}", f.name, f.detail))
            .unwrap_or_else(|| "no check ran".to_string())
    }

    pub fn result(&self, name: &str) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.name == name)
    }
}

/// An ordered list of checks.
#[derive(Default)]
pub struct Gate {
    checks: Vec<Box<dyn ReadinessCheck>>,
}

impl Gate {
    /// Health, one greedy completion, then the canaries against `reference`.
    pub fn standard(canaries: Canaries) -> Self {
        let mut gate = Gate::default();
        gate.push(Health);
        gate.push(Completion::default());
        gate.push(canaries);
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
            let finding = check.run(http);
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let passed = finding.passed;
            report
                .results
                .push(CheckResult::new(&check.name(), finding, elapsed_ms));
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

    fn run(&self, http: &Http) -> Finding {
        match http.get_raw("/health") {
            Ok((200, body))
                if serde_json::from_str::<Value>(&body).is_ok_and(|v| v["status"] == "ok") =>
            {
                Finding::pass("status ok")
            }
            Ok((status, body)) => Finding::fail(format!("HTTP {status}: {}", excerpt(&body))),
            Err(error) => Finding::fail(error.to_string()),
        }
    }
}

/// One greedy `/completion` of a fixed prompt: the server must generate text and finish the
/// request. It proves the model runs end to end, not that it answers well (the canaries do).
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

    fn run(&self, http: &Http) -> Finding {
        let body = json!({
            "prompt": self.prompt, "n_predict": self.n_predict, "temperature": 0.0,
            "top_k": 1, "cache_prompt": false,
        });
        let reply = match http.post_json("/completion", &body) {
            Ok(reply) => reply,
            Err(error) => return Finding::fail(error.to_string()),
        };
        let content = reply["content"].as_str().unwrap_or_default();
        let predicted = reply["tokens_predicted"].as_u64().unwrap_or(0);
        if predicted == 0 || content.trim().is_empty() {
            return Finding::fail(format!(
                "no text generated for {:?} ({predicted} tokens)",
                self.prompt
            ));
        }
        Finding::pass(format!("{predicted} tokens: {:?}", excerpt(content)))
    }
}

/// The coherence canaries (`quality::canary`), asked at temperature 0. With a `reference` (the
/// canaries this profile passed the first time it became ready) every reference canary must pass
/// again; without one, at least one canary must pass (random weights pass none), and the passing
/// set becomes the reference.
pub struct Canaries {
    pub suite: Suite,
    pub reference: Option<Vec<String>>,
}

impl Canaries {
    /// Reference names the suite still holds (a user suite may not hold them all).
    fn applicable_reference(&self) -> Option<Vec<&str>> {
        let names: Vec<&str> = self
            .reference
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|n| self.suite.canaries.iter().any(|c| c.name == *n))
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// Judge a set of results (the check without the server).
    pub fn judge(&self, results: &[CanaryResult]) -> Finding {
        let passed: Vec<&str> = results
            .iter()
            .filter(|r| r.pass)
            .map(|r| r.name.as_str())
            .collect();
        let data = json!({ "passed": passed, "results": results });
        let failure = |name: &str| {
            results
                .iter()
                .find(|r| r.name == name)
                .map(|r| format!("{name} ({})", r.reason))
                .unwrap_or_else(|| name.to_string())
        };
        let total = results.len();
        match self.applicable_reference() {
            Some(reference) => {
                let regressed: Vec<String> = reference
                    .iter()
                    .filter(|n| !passed.contains(n))
                    .map(|n| failure(n))
                    .collect();
                if regressed.is_empty() {
                    Finding::pass(format!(
                        "{}/{total} passed, all {} of the profile's reference",
                        passed.len(),
                        reference.len()
                    ))
                } else {
                    Finding::fail(format!(
                        "{} of the profile's {} reference canaries failed: {}",
                        regressed.len(),
                        reference.len(),
                        regressed.join("; ")
                    ))
                }
            }
            None if passed.is_empty() => Finding::fail(format!(
                "none of {total} passed (first: {})",
                results
                    .first()
                    .map(|r| failure(&r.name))
                    .unwrap_or_default()
            )),
            None => Finding::pass(format!(
                "{}/{total} passed (the profile's reference from now on)",
                passed.len()
            )),
        }
        .with_data(data)
    }
}

impl ReadinessCheck for Canaries {
    fn name(&self) -> String {
        "canaries".into()
    }

    fn run(&self, http: &Http) -> Finding {
        let mut log = RequestLog::default();
        let results = canary::run(http, &self.suite, &mut log);
        self.judge(&results)
    }
}

/// The names of the canaries that passed, from a `canaries` check's data.
pub fn passed_canaries(result: &CheckResult) -> Vec<String> {
    result.data["passed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, pass: bool) -> CanaryResult {
        CanaryResult {
            name: name.into(),
            pass,
            reason: if pass {
                String::new()
            } else {
                "marker not found".into()
            },
            excerpt: String::new(),
            tokens: None,
            tokens_per_second: None,
            draft_acceptance: None,
        }
    }

    fn canaries(reference: Option<&[&str]>) -> Canaries {
        Canaries {
            suite: Suite::builtin(),
            reference: reference.map(|r| r.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn canaries_hold_a_profile_to_its_reference() {
        let results = [result("zh_marker", true), result("count", false)];
        // No reference yet: one pass is enough, and it becomes the reference.
        let first = canaries(None).judge(&results);
        assert!(first.passed, "{}", first.detail);
        let stored = CheckResult::new("canaries", first, 0.0);
        assert_eq!(passed_canaries(&stored), ["zh_marker"]);
        // Nothing passes: random weights.
        let none = canaries(None).judge(&[result("zh_marker", false)]);
        assert!(!none.passed);
        assert!(
            none.detail.contains("zh_marker (marker not found)"),
            "{}",
            none.detail
        );
        // A reference canary that fails now is a regression; one outside the suite is ignored.
        let regressed = canaries(Some(&["zh_marker", "count"])).judge(&results);
        assert!(!regressed.passed);
        assert!(regressed
            .detail
            .starts_with("1 of the profile's 2 reference canaries failed: count"));
        let held = canaries(Some(&["zh_marker", "not-in-suite"])).judge(&results);
        assert!(held.passed, "{}", held.detail);
    }
}
