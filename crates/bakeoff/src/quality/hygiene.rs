//! Run hygiene for one candidate: every request answered with HTTP 200, no fatal line in the
//! engine log, and draft timings reported whenever speculation is configured.

use crate::engines::fatal::FatalLine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the requests of one candidate showed, accumulated as they are made.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RequestLog {
    pub requests: usize,
    /// One line per request that did not come back 200 with a usable body.
    pub failures: Vec<String>,
    /// Responses whose timings carried `draft_n`.
    pub with_draft_timings: usize,
    pub draft_n: u64,
    pub draft_accepted: u64,
}

impl RequestLog {
    /// Record a response's outcome; `timings` is the server's timings object when it sent one.
    pub fn record<T>(&mut self, outcome: &crate::Result<T>, timings: Option<&Value>) {
        self.requests += 1;
        if let Err(e) = outcome {
            self.failures.push(e.to_string());
        }
        if let Some(drafted) = timings
            .and_then(|t| t.get("draft_n"))
            .and_then(Value::as_u64)
        {
            self.with_draft_timings += 1;
            self.draft_n += drafted;
            self.draft_accepted += timings
                .and_then(|t| t.get("draft_n_accepted"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
    }

    /// Accepted / drafted tokens over every response, when anything was drafted.
    pub fn acceptance(&self) -> Option<f64> {
        (self.draft_n > 0).then(|| self.draft_accepted as f64 / self.draft_n as f64)
    }
}

/// The hygiene verdict: a list of problems, empty when clean.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hygiene {
    pub requests: usize,
    pub problems: Vec<String>,
}

/// Judge a candidate's requests and engine log. `speculative`: speculation was configured.
pub fn judge(log: &RequestLog, fatal_lines: &[FatalLine], speculative: bool) -> Hygiene {
    let mut problems = Vec::new();
    if let Some(first) = log.failures.first() {
        problems.push(format!(
            "{} of {} requests failed (first: {first})",
            log.failures.len(),
            log.requests
        ));
    }
    if let Some(first) = fatal_lines.first() {
        problems.push(format!(
            "{} fatal line(s) in the engine log (line {}: {})",
            fatal_lines.len(),
            first.line,
            first.text
        ));
    }
    if speculative && log.requests > 0 && log.with_draft_timings == 0 {
        problems.push(
            "speculation is configured but no response reported draft timings (draft_n)".into(),
        );
    }
    Hygiene {
        requests: log.requests,
        problems,
    }
}

/// Whether an argument vector configures speculative decoding.
pub fn is_speculative(args: &[String]) -> bool {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let enables = match arg.as_str() {
            "--spec-type" => iter.next().is_some_and(|v| v != "none"),
            "-md" | "--model-draft" | "-hfd" | "--hf-repo-draft" => true,
            _ => false,
        };
        if enables {
            return true;
        }
    }
    false
}

/// `args` without the flags that turn speculation on (and their values).
pub fn without_speculation(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let takes_value = matches!(
            arg.as_str(),
            "--spec-type" | "-md" | "--model-draft" | "--spec-draft-n-max" | "--spec-draft-n-min"
        ) || (arg.starts_with("--spec-") && !arg.contains('='));
        if takes_value {
            iter.next();
        } else {
            out.push(arg.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use serde_json::json;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn speculation_is_detected_and_removed() {
        let spec = args("-fa on --spec-type ngram-mod --spec-draft-n-max 16 -c 2048");
        assert!(is_speculative(&spec));
        assert!(!is_speculative(&args("-fa on --spec-type none")));
        assert_eq!(without_speculation(&spec), args("-fa on -c 2048"));
    }

    #[test]
    fn a_clean_log_has_no_problems_and_each_fault_is_named() {
        let mut log = RequestLog::default();
        log.record(&Ok(()), Some(&json!({"predicted_n": 5})));
        assert!(judge(&log, &[], false).problems.is_empty());
        let missing_drafts = judge(&log, &[], true);
        assert!(missing_drafts.problems[0].contains("draft timings"));
        log.record::<()>(&Err(Error::http("u", "HTTP 500: boom")), None);
        let fatal = [FatalLine {
            line: 7,
            text: "GGML_ABORT failed".into(),
        }];
        let judged = judge(&log, &fatal, false);
        assert_eq!(judged.problems.len(), 2, "{:?}", judged.problems);
        assert!(judged.problems[0].contains("1 of 2 requests failed"));
        assert!(judged.problems[1].contains("line 7"));
    }

    #[test]
    fn acceptance_sums_drafts_over_responses() {
        let mut log = RequestLog::default();
        log.record(
            &Ok(()),
            Some(&json!({"draft_n": 10, "draft_n_accepted": 5})),
        );
        log.record(
            &Ok(()),
            Some(&json!({"draft_n": 10, "draft_n_accepted": 10})),
        );
        assert_eq!(log.acceptance(), Some(0.75));
    }
}
