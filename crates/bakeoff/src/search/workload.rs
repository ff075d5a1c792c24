//! What one repetition of a tune measures for its goal, and the one number (higher is better)
//! the race compares: the tests run on every candidate's engine, and how they combine.

use super::space::Goal;
use crate::measure::matrix::{PromptSet, Test};
use crate::{Error, Result};
use serde::Serialize;

/// Generated tokens per tg test unless told.
pub const DEFAULT_GEN: u32 = 64;
/// Prompt tokens per pp test unless told.
pub const DEFAULT_PROMPT: u32 = 512;

/// The tests of one repetition and how their t/s combine into the score.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub goal: Goal,
    pub tests: Vec<Test>,
    /// The score in words, for tables and the README: what "faster" means in this tune.
    pub describe: String,
}

impl Workload {
    /// The workload of `goal` at context `ctx`: tg and pp at each depth (default 0 and half the
    /// served context); balanced is one request of `prompt` tokens in and `gen` out at depth 0.
    pub fn new(
        goal: Goal,
        ctx: u64,
        depths: Option<&[u32]>,
        (prompt, gen): (Option<u32>, Option<u32>),
        prompts: PromptSet,
    ) -> Result<Workload> {
        let gen = gen.unwrap_or(DEFAULT_GEN).max(1);
        let prompt = prompt.unwrap_or(DEFAULT_PROMPT.min(ctx as u32 / 4)).max(1);
        let half = (ctx / 2) as u32;
        let depths: Vec<u32> = match depths {
            Some(d) => d.to_vec(),
            None if goal == Goal::Balanced => vec![0],
            None => vec![0, half],
        };
        let test = |kind: &str, tokens, depth| Test {
            kind: kind.to_string(),
            tokens,
            depth,
            prompts: prompts.clone(),
        };
        let (tests, describe): (Vec<Test>, String) = match goal {
            Goal::Tg => (
                depths.iter().map(|&d| test("tg", gen, d)).collect(),
                format!("decode t/s of tg{gen} at depth {} (harmonic mean over depths)", list(&depths)),
            ),
            Goal::Pp => (
                depths.iter().map(|&d| test("pp", prompt, d)).collect(),
                format!("prompt t/s of pp{prompt} at depth {} (harmonic mean over depths)", list(&depths)),
            ),
            Goal::Balanced => (
                depths
                    .iter()
                    .flat_map(|&d| [test("pp", prompt, d), test("tg", gen, d)])
                    .collect(),
                format!(
                    "request t/s of {prompt} prompt + {gen} generated tokens at depth {}: ({prompt} + {gen}) / ({prompt}/pp + {gen}/tg)",
                    list(&depths)
                ),
            ),
            Goal::Load => {
                return Err(Error::input(
                    "tune --goal load is not searched yet: use tg, pp or balanced, then `bakeoff load` the winner",
                ))
            }
        };
        for t in &tests {
            let needed = t.depth as u64 + t.tokens as u64 + 128;
            if needed > ctx {
                return Err(Error::input(format!(
                    "{} needs a context of {needed} tokens, more than --ctx {ctx}",
                    t.name()
                ))
                .with_hint("lower --depth, or raise --ctx"));
            }
        }
        Ok(Workload {
            goal,
            tests,
            describe,
        })
    }

    /// One repetition's score from each test's t/s (in `tests` order).
    pub fn score(&self, values: &[f64]) -> f64 {
        match self.goal {
            Goal::Balanced => {
                let mut time = 0.0;
                let mut tokens = 0.0;
                for (test, value) in self.tests.iter().zip(values) {
                    time += test.tokens as f64 / value;
                    tokens += test.tokens as f64;
                }
                tokens / time
            }
            _ => harmonic_mean(values),
        }
    }
}

fn harmonic_mean(values: &[f64]) -> f64 {
    values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>()
}

fn list(depths: &[u32]) -> String {
    let parts: Vec<String> = depths.iter().map(u32::to_string).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tg_measures_depth_zero_and_half_the_context() {
        let w = Workload::new(Goal::Tg, 4096, None, (None, None), PromptSet::Random).unwrap();
        let names: Vec<String> = w.tests.iter().map(Test::name).collect();
        assert_eq!(names, ["tg64", "tg64 @ d2048"]);
        assert!((w.score(&[100.0, 50.0]) - 66.666).abs() < 0.01);
    }

    #[test]
    fn balanced_weighs_by_time_and_impossible_depths_are_refused() {
        let w = Workload::new(
            Goal::Balanced,
            4096,
            None,
            (Some(512), Some(128)),
            PromptSet::Random,
        )
        .unwrap();
        // 512 tokens at 512 t/s (1 s) and 128 at 128 t/s (1 s): 640 tokens in 2 s.
        assert_eq!(w.score(&[512.0, 128.0]), 320.0);
        let error = Workload::new(Goal::Tg, 512, Some(&[480]), (None, None), PromptSet::Random)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "tg64 @ d480 needs a context of 672 tokens, more than --ctx 512"
        );
    }
}
