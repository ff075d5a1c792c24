//! Coherence canaries: prompts whose answers a machine can check (echo a marker, recall embedded
//! facts, repeat lines exactly, produce JSON, count). UTF-8 safe end to end: markers in CJK, emoji,
//! combining marks and right-to-left scripts are compared byte for byte.

use super::excerpt;
use super::hygiene::RequestLog;
use crate::engines::http::Http;
use crate::formats::config_file;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// The suite shipped with bakeoff.
pub const BUILTIN: &str = include_str!("../../quality/canaries.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(rename = "canary")]
    pub canaries: Vec<Canary>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub name: String,
    #[serde(default)]
    pub system: Option<String>,
    pub prompt: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    pub expect: Expect,
}

fn default_max_tokens() -> u32 {
    96
}

/// What a correct answer contains.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expect {
    /// The marker appears verbatim (byte for byte).
    Echo { marker: String },
    /// Every fact appears (ASCII case-insensitive).
    Facts { facts: Vec<String> },
    /// The lines appear in this order, each exactly (surrounding whitespace ignored).
    RepeatLines { lines: Vec<String> },
    /// A JSON object (bare or in a code fence) with at least these keys.
    Json { keys: Vec<String> },
    /// The first integer in the answer.
    Count { answer: i64 },
}

impl Suite {
    pub fn builtin() -> Suite {
        // The built-in suite is checked by a unit test; a parse failure here is a build defect.
        Suite::parse(BUILTIN, "built-in canaries").unwrap_or(Suite { canaries: vec![] })
    }

    /// Parse a TOML suite; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Suite> {
        let suite: Suite = config_file::parse(text, origin)?;
        if suite.canaries.is_empty() {
            return Err(Error::input(format!("{origin}: no [[canary]] entries")));
        }
        Ok(suite)
    }

    pub fn load(path: &Path) -> Result<Suite> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Suite::parse(&text, &path.display().to_string())
    }
}

/// Check an answer; `Err` carries why it failed.
pub fn check(expect: &Expect, answer: &str) -> std::result::Result<(), String> {
    match expect {
        Expect::Echo { marker } => answer
            .contains(marker.as_str())
            .then_some(())
            .ok_or_else(|| format!("marker {marker:?} not found")),
        Expect::Facts { facts } => {
            let lower = answer.to_ascii_lowercase();
            let missing: Vec<&String> = facts
                .iter()
                .filter(|f| !lower.contains(&f.to_ascii_lowercase()))
                .collect();
            missing
                .is_empty()
                .then_some(())
                .ok_or_else(|| format!("missing facts: {missing:?}"))
        }
        Expect::RepeatLines { lines } => check_lines(lines, answer),
        Expect::Json { keys } => check_json(keys, answer),
        Expect::Count { answer: expected } => match first_integer(answer) {
            Some(n) if n == *expected => Ok(()),
            Some(n) => Err(format!("answered {n}, expected {expected}")),
            None => Err(format!("no number in the answer, expected {expected}")),
        },
    }
}

fn check_lines(lines: &[String], answer: &str) -> std::result::Result<(), String> {
    let mut got = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    for (i, want) in lines.iter().enumerate() {
        if !got.any(|line| line == want.trim()) {
            return Err(format!(
                "line {} of {} ({want:?}) missing or out of order",
                i + 1,
                lines.len()
            ));
        }
    }
    Ok(())
}

fn check_json(keys: &[String], answer: &str) -> std::result::Result<(), String> {
    let start = answer.find('{').ok_or("no JSON object in the answer")?;
    let end = answer
        .rfind('}')
        .filter(|&e| e > start)
        .ok_or("unterminated JSON object")?;
    let value: Value =
        serde_json::from_str(&answer[start..=end]).map_err(|e| format!("invalid JSON at {e}"))?;
    let object = value.as_object().ok_or("JSON is not an object")?;
    let missing: Vec<&String> = keys.iter().filter(|k| !object.contains_key(*k)).collect();
    missing
        .is_empty()
        .then_some(())
        .ok_or_else(|| format!("JSON lacks keys {missing:?}"))
}

fn first_integer(text: &str) -> Option<i64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let negative = text[..start].ends_with('-');
    digits
        .parse::<i64>()
        .ok()
        .map(|n| if negative { -n } else { n })
}

/// One canary's outcome on one candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryResult {
    pub name: String,
    pub pass: bool,
    /// Why it failed (empty on a pass).
    pub reason: String,
    /// The start of the answer, for the reader.
    pub excerpt: String,
    pub tokens: Option<u64>,
    pub tokens_per_second: Option<f64>,
    pub draft_acceptance: Option<f64>,
}

/// Ask one canary through the OpenAI-compatible chat endpoint at temperature 0, one request, no
/// prompt cache. Request failures become failed canaries (and are counted in `log`).
pub fn ask(http: &Http, canary: &Canary, log: &mut RequestLog) -> CanaryResult {
    let mut messages = Vec::new();
    if let Some(system) = &canary.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": canary.prompt}));
    let body = json!({
        "messages": messages,
        "temperature": 0,
        "max_tokens": canary.max_tokens,
        "seed": 42,
        "cache_prompt": false,
        "stream": false,
    });
    let response = http.post_json("/v1/chat/completions", &body);
    let timings = response.as_ref().ok().map(|r| r["timings"].clone());
    log.record(&response, timings.as_ref());
    match response.and_then(|r| answer_of(http, &r)) {
        Ok(answer) => judge_answer(canary, &answer, timings.as_ref()),
        Err(e) => CanaryResult {
            name: canary.name.clone(),
            pass: false,
            reason: format!("request failed: {e}"),
            excerpt: String::new(),
            tokens: None,
            tokens_per_second: None,
            draft_acceptance: None,
        },
    }
}

fn answer_of(http: &Http, response: &Value) -> Result<String> {
    response["choices"][0]["message"]["content"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| {
            Error::http(
                http.url("/v1/chat/completions"),
                "response has no choices[0].message.content",
            )
        })
}

fn judge_answer(canary: &Canary, answer: &str, timings: Option<&Value>) -> CanaryResult {
    let figure = |key: &str| timings.and_then(|t| t.get(key)).and_then(Value::as_f64);
    let verdict = check(&canary.expect, answer);
    CanaryResult {
        name: canary.name.clone(),
        pass: verdict.is_ok(),
        reason: verdict.err().unwrap_or_default(),
        excerpt: excerpt(answer.trim(), 160),
        tokens: figure("predicted_n").map(|n| n as u64),
        tokens_per_second: figure("predicted_per_second"),
        draft_acceptance: figure("draft_n")
            .filter(|&n| n > 0.0)
            .and_then(|n| Some(figure("draft_n_accepted")? / n)),
    }
}

/// Run a whole suite.
pub fn run(http: &Http, suite: &Suite, log: &mut RequestLog) -> Vec<CanaryResult> {
    suite.canaries.iter().map(|c| ask(http, c, log)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_suite_parses_and_covers_every_script() {
        let suite = Suite::parse(BUILTIN, "built-in").unwrap();
        assert!(suite.canaries.len() >= 8);
        let markers: String = suite.canaries.iter().map(|c| c.prompt.as_str()).collect();
        for needle in ["鳳梨酥", "🍞", "\u{0301}", "שלום", "سلام"] {
            assert!(markers.contains(needle), "{needle} missing from the suite");
        }
        // Every expectation is satisfiable: the expectation checked against an ideal answer passes.
        for canary in &suite.canaries {
            let ideal = match &canary.expect {
                Expect::Echo { marker } => marker.clone(),
                Expect::Facts { facts } => facts.join(", "),
                Expect::RepeatLines { lines } => lines.join("\n"),
                Expect::Json { keys } => {
                    let fields: Vec<String> = keys.iter().map(|k| format!("\"{k}\": 1")).collect();
                    format!("{{{}}}", fields.join(", "))
                }
                Expect::Count { answer } => answer.to_string(),
            };
            assert_eq!(check(&canary.expect, &ideal), Ok(()), "{}", canary.name);
        }
    }

    #[test]
    fn echo_is_byte_exact_so_a_mojibake_or_normalised_marker_fails() {
        let expect = Expect::Echo {
            marker: "Cafe\u{0301}".into(),
        };
        assert!(check(&expect, "Sure: Cafe\u{0301}!").is_ok());
        // Precomposed é is a different byte sequence: a harness that normalises would hide damage.
        assert!(check(&expect, "Caf\u{00e9}").is_err());
        // Latin-1 mojibake of the same bytes.
        assert!(check(&expect, "CafeÌ\u{0081}").is_err());
    }

    #[test]
    fn lines_must_appear_in_order() {
        let lines: Vec<String> = vec!["a".into(), "b".into()];
        assert!(check_lines(&lines, "a\n b \n").is_ok());
        assert!(check_lines(&lines, "b\na").unwrap_err().contains("line 2"));
    }

    #[test]
    fn json_and_count_checks() {
        let keys = vec!["name".to_string(), "age".to_string()];
        assert!(check_json(&keys, "```json\n{\"name\": \"Ann\", \"age\": 30}\n```").is_ok());
        assert!(check_json(&keys, "{\"name\": \"Ann\"}")
            .unwrap_err()
            .contains("age"));
        assert!(check_json(&keys, "{name: Ann}")
            .unwrap_err()
            .contains("invalid JSON"));
        assert_eq!(first_integer("A cat has 4 legs."), Some(4));
        assert_eq!(first_integer("-3 degrees"), Some(-3));
        assert_eq!(first_integer("four"), None);
    }

    #[test]
    fn a_user_suite_with_an_unknown_kind_names_the_file() {
        let text = "[[canary]]\nname='x'\nprompt='p'\nexpect={kind='telepathy'}\n";
        let err = Suite::parse(text, "mine.toml").unwrap_err().to_string();
        assert!(err.starts_with("mine.toml:4:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let text = "[[canary]]\nname='x'\nprompt='p'\nmax_tokens='many'\nexpect={kind='echo', marker='m'}\n";
        let err = Suite::parse(text, "mine.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("mine.toml:4:12: canary.max_tokens: invalid type: string \"many\""),
            "{err}"
        );
    }
}
