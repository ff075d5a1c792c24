//! Greedy agreement: the same prompts at temperature 0 on one slot with the prompt cache off,
//! baseline against candidate, token by token. Reports the exact-match rate, the common prefix,
//! where each prompt first diverged and the baseline's top-1/top-2 logprob gap there (a small gap
//! is a near-tie that rounding can flip; a large one is damage).

use super::hygiene::RequestLog;
use super::FIDELITY_TEXT;
use crate::engines::http::Http;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One generated token with the top alternatives the engine reported for that position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub id: i64,
    pub piece: String,
    /// `(token id, logprob)`, most likely first.
    pub top: Vec<(i64, f64)>,
}

impl Step {
    /// Top-1 minus top-2 logprob: how decisive the choice was.
    pub fn gap(&self) -> Option<f64> {
        match self.top.as_slice() {
            [(_, first), (_, second), ..] => Some(first - second),
            _ => None,
        }
    }
}

/// One greedy completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greedy {
    pub steps: Vec<Step>,
    pub text: String,
    pub timings: Value,
}

/// Settings shared by both sides of a comparison.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct GreedySettings {
    pub n_predict: u32,
    pub n_probs: u32,
}

impl Default for GreedySettings {
    fn default() -> Self {
        GreedySettings {
            n_predict: 64,
            n_probs: 2,
        }
    }
}

/// The built-in agreement prompts: `count` passages of the fidelity text, each cut at a word
/// boundary near `chars` characters, taken from evenly spaced paragraphs.
pub fn builtin_prompts(count: usize, chars: usize) -> Vec<String> {
    let paragraphs: Vec<&str> = FIDELITY_TEXT
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.len() > chars)
        .collect();
    let stride = (paragraphs.len() / count.max(1)).max(1);
    paragraphs
        .iter()
        .step_by(stride)
        .take(count)
        .map(|p| {
            let cut = p[..floor_boundary(p, chars)].rfind(' ').unwrap_or(chars);
            p[..cut].to_string()
        })
        .collect()
}

/// The largest char boundary of `text` at or below `index`.
fn floor_boundary(text: &str, index: usize) -> usize {
    (0..=index.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// Generate greedily through llama-server's `/completion` (one request, no prompt cache).
/// `prompt` is text or an array of token ids.
pub fn greedy(
    http: &Http,
    prompt: &Value,
    settings: GreedySettings,
    log: &mut RequestLog,
) -> Result<Greedy> {
    let body = json!({
        "prompt": prompt,
        "n_predict": settings.n_predict,
        "temperature": 0,
        "n_probs": settings.n_probs,
        "cache_prompt": false,
        "seed": 42,
        "stream": false,
    });
    let response = http.post_json("/completion", &body);
    let timings = response.as_ref().ok().map(|r| r["timings"].clone());
    log.record(&response, timings.as_ref());
    let response = response?;
    let url = http.url("/completion");
    let probabilities = response["completion_probabilities"]
        .as_array()
        .ok_or_else(|| Error::http(&url, "response has no completion_probabilities (n_probs)"))?;
    let steps = probabilities
        .iter()
        .enumerate()
        .map(|(i, p)| {
            parse_step(p).ok_or_else(|| {
                Error::http(
                    &url,
                    format!("completion_probabilities[{i}] lacks id/top_logprobs"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Greedy {
        steps,
        text: response["content"].as_str().unwrap_or_default().to_string(),
        timings: response["timings"].clone(),
    })
}

fn parse_step(p: &Value) -> Option<Step> {
    let top = p["top_logprobs"]
        .as_array()?
        .iter()
        .filter_map(|t| Some((t["id"].as_i64()?, t["logprob"].as_f64()?)))
        .collect();
    Some(Step {
        id: p["id"].as_i64()?,
        piece: p["token"].as_str().unwrap_or_default().to_string(),
        top,
    })
}

/// Where one prompt's two completions first differ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub prompt: usize,
    /// 0-based index of the first differing generated token.
    pub position: usize,
    pub baseline_piece: Option<String>,
    pub candidate_piece: Option<String>,
    /// The baseline's top-1 minus top-2 logprob at that position.
    pub baseline_gap: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub prompts: usize,
    /// Prompts whose completions are identical token for token.
    pub exact: usize,
    pub exact_rate: f64,
    /// Mean length of the common prefix, in tokens.
    pub mean_prefix: f64,
    /// Mean common prefix as a fraction of the baseline's length.
    pub mean_prefix_fraction: f64,
    pub divergences: Vec<Divergence>,
}

/// Compare two sets of completions of the same prompts, in order.
pub fn compare(baseline: &[Greedy], candidate: &[Greedy]) -> Agreement {
    let mut divergences = Vec::new();
    let (mut prefix_sum, mut fraction_sum) = (0.0, 0.0);
    for (prompt, (b, c)) in baseline.iter().zip(candidate).enumerate() {
        let common = b
            .steps
            .iter()
            .zip(&c.steps)
            .take_while(|(x, y)| x.id == y.id)
            .count();
        prefix_sum += common as f64;
        fraction_sum += if b.steps.is_empty() {
            1.0
        } else {
            common as f64 / b.steps.len() as f64
        };
        if common < b.steps.len().max(c.steps.len()) {
            divergences.push(Divergence {
                prompt,
                position: common,
                baseline_piece: b.steps.get(common).map(|s| s.piece.clone()),
                candidate_piece: c.steps.get(common).map(|s| s.piece.clone()),
                baseline_gap: b.steps.get(common).and_then(Step::gap),
            });
        }
    }
    let prompts = baseline.len().min(candidate.len());
    let n = prompts.max(1) as f64;
    Agreement {
        prompts,
        exact: prompts - divergences.len(),
        exact_rate: (prompts - divergences.len()) as f64 / n,
        mean_prefix: prefix_sum / n,
        mean_prefix_fraction: fraction_sum / n,
        divergences,
    }
}

/// Divergences split by whether the baseline's choice there was a near-tie (`gap < tie_gap`).
pub fn split_ties(divergences: &[Divergence], tie_gap: f64) -> (usize, usize) {
    let ties = divergences
        .iter()
        .filter(|d| d.baseline_gap.is_some_and(|g| g < tie_gap))
        .count();
    (ties, divergences.len() - ties)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ids: &[i64]) -> Greedy {
        Greedy {
            steps: ids
                .iter()
                .map(|&id| Step {
                    id,
                    piece: format!("t{id}"),
                    top: vec![(id, -0.1), (id + 100, -0.3)],
                })
                .collect(),
            text: String::new(),
            timings: Value::Null,
        }
    }

    #[test]
    fn identical_runs_agree_exactly() {
        let a = vec![run(&[1, 2, 3]), run(&[4, 5])];
        let agreement = compare(&a, &a);
        assert_eq!(agreement.exact, 2);
        assert_eq!(agreement.exact_rate, 1.0);
        assert_eq!(agreement.mean_prefix_fraction, 1.0);
        assert!(agreement.divergences.is_empty());
    }

    #[test]
    fn the_first_divergence_is_located_with_the_baseline_gap() {
        let agreement = compare(&[run(&[1, 2, 3, 4])], &[run(&[1, 2, 9, 9])]);
        assert_eq!(agreement.exact, 0);
        assert_eq!(agreement.mean_prefix, 2.0);
        assert_eq!(agreement.mean_prefix_fraction, 0.5);
        let d = &agreement.divergences[0];
        assert_eq!((d.prompt, d.position), (0, 2));
        assert_eq!(d.baseline_piece.as_deref(), Some("t3"));
        assert_eq!(d.candidate_piece.as_deref(), Some("t9"));
        assert!((d.baseline_gap.unwrap() - 0.2).abs() < 1e-12);
    }

    #[test]
    fn stopping_early_is_a_divergence_too() {
        let agreement = compare(&[run(&[1, 2, 3])], &[run(&[1, 2])]);
        assert_eq!(agreement.divergences[0].position, 2);
        assert_eq!(agreement.divergences[0].candidate_piece, None);
    }

    #[test]
    fn near_ties_are_told_apart_from_real_divergences() {
        let d = |gap| Divergence {
            prompt: 0,
            position: 0,
            baseline_piece: None,
            candidate_piece: None,
            baseline_gap: Some(gap),
        };
        assert_eq!(split_ties(&[d(0.01), d(2.0), d(0.04)], 0.05), (2, 1));
    }

    #[test]
    fn builtin_prompts_are_distinct_passages_cut_at_words() {
        let prompts = builtin_prompts(8, 240);
        assert_eq!(prompts.len(), 8);
        for p in &prompts {
            assert!(p.len() <= 240 && p.len() > 150, "{p:?}");
            assert!(!p.ends_with(' '));
        }
        let mut unique = prompts.clone();
        unique.dedup();
        assert_eq!(unique.len(), prompts.len());
    }
}
