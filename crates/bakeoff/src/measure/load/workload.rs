//! Load workloads: synthetic prompts with exact token counts drawn from length distributions,
//! JSONL files of chat messages, and multi-turn conversations that share a prefix (so the prompt
//! cache behaves as it does with real users). A seed makes every workload reproducible.

use crate::measure::prompts::TokenSource;
use crate::measure::stats::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A token-length distribution, stored as `{"kind": "fixed", "tokens": 128}`,
/// `{"kind": "uniform", "min": 64, "max": 256}` or `{"kind": "normal", "mean": 128.0, "sd": 32.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "LengthRecord", try_from = "LengthRecord")]
pub enum LengthDist {
    Fixed(u32),
    /// Uniform on `[lo, hi]`.
    Uniform(u32, u32),
    /// Normal, rounded and clamped to `[1, mean + 4 sd]`.
    Normal {
        mean: f64,
        sd: f64,
    },
}

/// The flat, documented form of a [`LengthDist`] in JSON.
#[derive(Serialize, Deserialize)]
struct LengthRecord {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sd: Option<f64>,
}

impl From<LengthDist> for LengthRecord {
    fn from(dist: LengthDist) -> Self {
        let empty = LengthRecord {
            kind: String::new(),
            tokens: None,
            min: None,
            max: None,
            mean: None,
            sd: None,
        };
        match dist {
            LengthDist::Fixed(n) => LengthRecord {
                kind: "fixed".into(),
                tokens: Some(n),
                ..empty
            },
            LengthDist::Uniform(lo, hi) => LengthRecord {
                kind: "uniform".into(),
                min: Some(lo),
                max: Some(hi),
                ..empty
            },
            LengthDist::Normal { mean, sd } => LengthRecord {
                kind: "normal".into(),
                mean: Some(mean),
                sd: Some(sd),
                ..empty
            },
        }
    }
}

impl TryFrom<LengthRecord> for LengthDist {
    type Error = String;

    fn try_from(r: LengthRecord) -> std::result::Result<Self, String> {
        let need =
            |v: Option<u32>, f: &str| v.ok_or_else(|| format!("length '{}' needs '{f}'", r.kind));
        let needf =
            |v: Option<f64>, f: &str| v.ok_or_else(|| format!("length '{}' needs '{f}'", r.kind));
        match r.kind.as_str() {
            "fixed" => Ok(LengthDist::Fixed(need(r.tokens, "tokens")?)),
            "uniform" => Ok(LengthDist::Uniform(
                need(r.min, "min")?,
                need(r.max, "max")?,
            )),
            "normal" => Ok(LengthDist::Normal {
                mean: needf(r.mean, "mean")?,
                sd: needf(r.sd, "sd")?,
            }),
            other => Err(format!(
                "unknown length distribution '{other}' (expected fixed, uniform or normal)"
            )),
        }
    }
}

impl LengthDist {
    /// `128`, `64-256` (uniform) or `normal:128,32`.
    pub fn parse(flag: &str, text: &str) -> Result<Self> {
        let bad = || {
            Error::input(format!(
                "{flag} {text}: expected N, LO-HI or normal:MEAN,SD"
            ))
        };
        if let Some(rest) = text.strip_prefix("normal:") {
            let (mean, sd) = rest.split_once(',').ok_or_else(bad)?;
            let (mean, sd): (f64, f64) = (
                mean.trim().parse().map_err(|_| bad())?,
                sd.trim().parse().map_err(|_| bad())?,
            );
            return if mean >= 1.0 && sd >= 0.0 {
                Ok(LengthDist::Normal { mean, sd })
            } else {
                Err(bad())
            };
        }
        if let Some((lo, hi)) = text.split_once('-') {
            let (lo, hi): (u32, u32) = (
                lo.trim().parse().map_err(|_| bad())?,
                hi.trim().parse().map_err(|_| bad())?,
            );
            return if 1 <= lo && lo <= hi {
                Ok(LengthDist::Uniform(lo, hi))
            } else {
                Err(bad())
            };
        }
        match text.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(LengthDist::Fixed(n)),
            _ => Err(bad()),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u32 {
        match *self {
            LengthDist::Fixed(n) => n,
            LengthDist::Uniform(lo, hi) => lo + (rng.next_u64() % u64::from(hi - lo + 1)) as u32,
            LengthDist::Normal { mean, sd } => (mean + sd * standard_normal(rng))
                .round()
                .clamp(1.0, mean + 4.0 * sd) as u32,
        }
    }

    /// The largest value this distribution produces.
    pub fn max(&self) -> u32 {
        match *self {
            LengthDist::Fixed(n) => n,
            LengthDist::Uniform(_, hi) => hi,
            LengthDist::Normal { mean, sd } => (mean + 4.0 * sd).ceil() as u32,
        }
    }
}

/// Box–Muller.
pub fn standard_normal(rng: &mut Rng) -> f64 {
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Prompt {
    /// Token ids for llama-server's `/completion` (exact counts).
    Tokens(Vec<i64>),
    /// Chat messages for `/v1/chat/completions`.
    Chat(Vec<Value>),
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub prompt: Prompt,
    pub max_tokens: u32,
    /// Let the server reuse a cached prefix. Only multi-turn conversations share prefixes on
    /// purpose; single-turn synthetic prompts turn it off, so a server that saw the same seeded
    /// prompts in an earlier run cannot answer from its cache.
    pub cache_prompt: bool,
}

/// What a load test sends; stored as `{"kind": "synthetic" | "jsonl" | "multi_turn", ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadSpec {
    Synthetic {
        input: LengthDist,
        output: LengthDist,
    },
    /// One JSON object per line: `{"messages": [...], "max_tokens": N}` (max_tokens optional).
    Jsonl { path: PathBuf, output: LengthDist },
    /// Conversations of `turns` requests; all share a `shared_prefix`-token system prefix and each
    /// turn's prompt extends the previous one by `input` tokens.
    MultiTurn {
        turns: u32,
        shared_prefix: u32,
        input: LengthDist,
        output: LengthDist,
    },
}

impl WorkloadSpec {
    /// Largest prompt + generation a request can need, in tokens (to size the server context).
    pub fn max_tokens_per_request(&self) -> u32 {
        match self {
            WorkloadSpec::Synthetic { input, output } => input.max() + output.max(),
            WorkloadSpec::Jsonl { output, .. } => 2048 + output.max(),
            WorkloadSpec::MultiTurn {
                turns,
                shared_prefix,
                input,
                output,
            } => shared_prefix + turns * input.max() + output.max(),
        }
    }

    pub fn describe(&self) -> String {
        let d = |l: &LengthDist| match l {
            LengthDist::Fixed(n) => n.to_string(),
            LengthDist::Uniform(a, b) => format!("{a}-{b}"),
            LengthDist::Normal { mean, sd } => format!("normal:{mean},{sd}"),
        };
        match self {
            WorkloadSpec::Synthetic { input, output } => {
                format!("in {} / out {}", d(input), d(output))
            }
            WorkloadSpec::Jsonl { path, output } => {
                format!("{} / out {}", path.display(), d(output))
            }
            WorkloadSpec::MultiTurn {
                turns,
                shared_prefix,
                input,
                output,
            } => {
                format!(
                    "{turns} turns, prefix {shared_prefix}, in {} / out {}",
                    d(input),
                    d(output)
                )
            }
        }
    }
}

/// A conversation: requests a single user sends one after another.
pub type Conversation = Vec<RequestSpec>;

/// Generates conversation `i` of a workload deterministically from the seed.
pub struct Generator {
    spec: WorkloadSpec,
    seed: u64,
    source: Option<TokenSource>,
    chats: Vec<(Vec<Value>, Option<u32>)>,
}

impl Generator {
    /// `source` is needed for token workloads (synthetic, multi-turn).
    pub fn new(spec: WorkloadSpec, seed: u64, source: Option<TokenSource>) -> Result<Self> {
        let chats = match &spec {
            WorkloadSpec::Jsonl { path, .. } => read_jsonl(path)?,
            _ => Vec::new(),
        };
        if !matches!(spec, WorkloadSpec::Jsonl { .. }) && source.is_none() {
            return Err(Error::input("token workloads need a llama-server (for its vocabulary); use --dataset FILE.jsonl with other servers"));
        }
        Ok(Generator {
            spec,
            seed,
            source,
            chats,
        })
    }

    pub fn uses_chat(&self) -> bool {
        matches!(self.spec, WorkloadSpec::Jsonl { .. })
    }

    pub fn conversation(&self, i: usize) -> Conversation {
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        match &self.spec {
            WorkloadSpec::Synthetic { input, output } => {
                let n = input.sample(&mut rng);
                let tokens = self.tokens(rng.next_u64(), n);
                vec![RequestSpec {
                    prompt: Prompt::Tokens(tokens),
                    max_tokens: output.sample(&mut rng),
                    cache_prompt: false,
                }]
            }
            WorkloadSpec::Jsonl { output, .. } => {
                let (messages, max_tokens) = &self.chats[i % self.chats.len()];
                vec![RequestSpec {
                    prompt: Prompt::Chat(messages.clone()),
                    max_tokens: max_tokens.unwrap_or_else(|| output.sample(&mut rng)),
                    cache_prompt: true,
                }]
            }
            WorkloadSpec::MultiTurn {
                turns,
                shared_prefix,
                input,
                output,
            } => {
                // The prefix is the same for every conversation (offset 0); turns are per conversation.
                let mut prompt = self.tokens(0, *shared_prefix);
                (0..*turns)
                    .map(|_| {
                        let n = input.sample(&mut rng);
                        prompt.extend(self.tokens(rng.next_u64() | 1, n));
                        RequestSpec {
                            prompt: Prompt::Tokens(prompt.clone()),
                            max_tokens: output.sample(&mut rng),
                            cache_prompt: true,
                        }
                    })
                    .collect()
            }
        }
    }

    fn tokens(&self, offset: u64, count: u32) -> Vec<i64> {
        self.source
            .as_ref()
            .map(|s| s.take(offset, count))
            .unwrap_or_default()
    }
}

fn read_jsonl(path: &Path) -> Result<Vec<(Vec<Value>, Option<u32>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut chats = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), n + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Error::input(format!("{}: not JSON: {e}", at())))?;
        let messages = value["messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                Error::input(format!("{}: expected a non-empty \"messages\" array", at()))
            })?;
        let max_tokens = value
            .get("max_tokens")
            .and_then(Value::as_u64)
            .map(|m| m as u32);
        chats.push((messages.clone(), max_tokens));
    }
    if chats.is_empty() {
        return Err(Error::input(format!(
            "{}: no conversations",
            path.display()
        )));
    }
    Ok(chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stored plans held `{"Uniform": [64, 256]}` and `{"Synthetic": {...}}`: serde's enum layout.
    #[test]
    fn lengths_and_workloads_have_documented_json() {
        let spec = WorkloadSpec::Synthetic {
            input: LengthDist::Uniform(64, 256),
            output: LengthDist::Normal {
                mean: 128.0,
                sd: 8.0,
            },
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "synthetic",
                "input": {"kind": "uniform", "min": 64, "max": 256},
                "output": {"kind": "normal", "mean": 128.0, "sd": 8.0}})
        );
        let back: WorkloadSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.max_tokens_per_request(), 256 + 160);
        let fixed = serde_json::to_string(&LengthDist::Fixed(16)).unwrap();
        assert_eq!(fixed, r#"{"kind":"fixed","tokens":16}"#);
    }

    #[test]
    fn distributions_parse_and_stay_in_range() {
        let mut rng = Rng::new(1);
        assert_eq!(
            LengthDist::parse("-i", "128").unwrap(),
            LengthDist::Fixed(128)
        );
        let uniform = LengthDist::parse("-i", "64-256").unwrap();
        let normal = LengthDist::parse("-i", "normal:128,32").unwrap();
        for _ in 0..1000 {
            assert!((64..=256).contains(&uniform.sample(&mut rng)));
            assert!((1..=256).contains(&normal.sample(&mut rng)));
        }
        assert!(LengthDist::parse("--input", "0").is_err());
        assert!(LengthDist::parse("--input", "300-200").is_err());
        let err = LengthDist::parse("--input", "lots")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--input lots: expected"), "{err}");
    }

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chats.jsonl");
        std::fs::write(
            &path,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n{\"messages\": 3}\n",
        )
        .unwrap();
        let err = read_jsonl(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("chats.jsonl:2: expected a non-empty \"messages\" array"),
            "{err}"
        );
    }
}
