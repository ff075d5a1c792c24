//! Fidelity: does a faster configuration still answer like the baseline? Coherence canaries,
//! run hygiene, greedy agreement, KL-divergence (llama-perplexity or an HTTP estimate),
//! speculative losslessness, and the gates that turn those figures into PASS / WARN / FAIL.

pub mod agreement;
pub mod canary;
pub mod gate;
pub mod hygiene;
pub mod kld;
pub mod readiness;
pub mod toolcall;

use serde::{Deserialize, Serialize};

/// The fixed text KL-divergence is measured on: written for the project, public domain.
pub const FIDELITY_TEXT: &str = include_str!("../../quality/fidelity.txt");

/// The outcome of one check, ordered from best to worst so the worst of a set is its `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "pass" => Some(Status::Pass),
            "warn" => Some(Status::Warn),
            "fail" => Some(Status::Fail),
            _ => None,
        }
    }
}

/// At most `max_chars` characters of `text` (never splitting a character), with `…` when cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut chars = text.char_indices();
    match chars.nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_never_splits_a_multibyte_character() {
        assert_eq!(excerpt("鳳梨酥-七號", 3), "鳳梨酥…");
        assert_eq!(excerpt("🍞🔥", 5), "🍞🔥");
        assert_eq!(excerpt("", 3), "");
    }

    #[test]
    fn worst_status_is_the_max() {
        assert_eq!(
            [Status::Pass, Status::Fail, Status::Warn].into_iter().max(),
            Some(Status::Fail)
        );
    }
}
