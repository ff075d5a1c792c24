//! Prompts with exact token counts. Random prompts are token ids drawn from the vocabulary (as
//! llama-bench does); natural-text and code prompts come from texts the project wrote itself
//! (`crates/bakeoff/prompts/`), tokenized by the server's own `/tokenize`, so n-gram speculation
//! has something real to find.

use super::matrix::PromptSet;
use super::stats::Rng;
use crate::engines::http::Http;
use crate::{Error, Result};
use serde_json::json;

pub const NATURAL: &str = include_str!("../../prompts/natural.txt");
pub const CODE: &str = include_str!("../../prompts/code.txt");

/// A source of token sequences for one server and prompt set.
pub struct TokenSource {
    set: PromptSet,
    /// The set's text as tokens (empty for random).
    tokens: Vec<i64>,
    vocab: u64,
}

/// The vocabulary size a llama-server reports in `/v1/models` (`meta.n_vocab`).
pub fn vocab_size(http: &Http) -> Result<u64> {
    let models = http.get_json("/v1/models")?;
    models["data"][0]["meta"]["n_vocab"]
        .as_u64()
        .filter(|&n| n > 100)
        .ok_or_else(|| {
            Error::http(
                http.url("/v1/models"),
                "no data[0].meta.n_vocab in the response",
            )
        })
}

pub fn tokenize(http: &Http, text: &str) -> Result<Vec<i64>> {
    let response = http.post_json("/tokenize", &json!({ "content": text }))?;
    response["tokens"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_i64()).collect())
        .ok_or_else(|| Error::http(http.url("/tokenize"), "no tokens array in the response"))
}

impl TokenSource {
    pub fn new(http: &Http, set: &PromptSet) -> Result<Self> {
        let vocab = vocab_size(http)?;
        let text = match set {
            PromptSet::Random => None,
            PromptSet::Natural => Some(NATURAL.to_string()),
            PromptSet::Code => Some(CODE.to_string()),
            PromptSet::File(path) => {
                Some(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?)
            }
        };
        let tokens = match text {
            Some(text) => {
                let tokens = tokenize(http, &text)?;
                if tokens.len() < 16 {
                    return Err(Error::input(format!(
                        "--prompts {}: only {} tokens; need at least 16",
                        set.name(),
                        tokens.len()
                    )));
                }
                tokens
            }
            None => Vec::new(),
        };
        Ok(TokenSource {
            set: set.clone(),
            tokens,
            vocab,
        })
    }

    /// A source cycling through fixed tokens (for the client self-test, which has no server vocabulary).
    pub fn fixed(tokens: Vec<i64>) -> Self {
        TokenSource {
            set: PromptSet::File("(fixed)".into()),
            tokens,
            vocab: 0,
        }
    }

    /// `count` tokens starting at `offset` into the set (cycling through the text), or random
    /// ids seeded by `offset` for the random set. The same arguments give the same tokens.
    pub fn take(&self, offset: u64, count: u32) -> Vec<i64> {
        if self.set == PromptSet::Random {
            // Stay clear of special tokens at both ends of the vocabulary.
            let (lo, span) = (self.vocab / 10, self.vocab * 8 / 10);
            let mut rng = Rng::new(offset.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xb4c0);
            return (0..count)
                .map(|_| (lo + rng.next_u64() % span) as i64)
                .collect();
        }
        let len = self.tokens.len() as u64;
        (0..count as u64)
            .map(|i| self.tokens[((offset + i) % len) as usize])
            .collect()
    }

    /// The depth prefix: the first `depth` tokens (the same for every trial at that depth).
    pub fn prefix(&self, depth: u32) -> Vec<i64> {
        self.take(0, depth)
    }

    /// Fresh tokens for repetition `rep` of a test, distinct from the prefix and from other reps
    /// so the prompt cache can reuse nothing past the prefix.
    pub fn fresh(&self, depth: u32, rep: u32, count: u32) -> Vec<i64> {
        let offset = if self.set == PromptSet::Random {
            1 + u64::from(rep) * 7919 + u64::from(depth)
        } else {
            u64::from(depth) + u64::from(rep) * u64::from(count.max(1)) + 1
        };
        self.take(offset, count)
    }
}
