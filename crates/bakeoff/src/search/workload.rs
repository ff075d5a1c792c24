//! What one repetition of a tune measures for its goal, and the one number (higher is better)
//! the race compares: the tests run on every candidate's engine and how they combine, or for
//! goal load one closed-loop load step and its output tok/s (goodput under an SLO).

use super::space::Goal;
use crate::measure::load::executor::{Shape, StepLimits};
use crate::measure::load::metrics::Slo;
use crate::measure::load::workload::{LengthDist, WorkloadSpec};
use crate::measure::load::{LoadPlan, StepTable};
use crate::measure::matrix::{PromptSet, Test};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Duration;

/// Generated tokens per tg test unless told.
pub const DEFAULT_GEN: u32 = 64;
/// Prompt tokens per pp test unless told.
pub const DEFAULT_PROMPT: u32 = 512;

/// Requests of one load step, at least (fewer draw a warning from the load runner).
pub const MIN_LOAD_REQUESTS: usize = crate::measure::load::MIN_WINDOW_REQUESTS;
/// The load step's prompts come from this seed (plus the repetition), so every candidate's
/// repetition N sends the same prompts and no repetition re-sends an earlier one's.
pub const LOAD_SEED: u64 = 0x7ab1e;

/// The tests of one repetition and how their t/s combine into the score.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub goal: Goal,
    /// The bench tests (empty for goal load).
    pub tests: Vec<Test>,
    /// Goal load's one step per repetition.
    pub load: Option<LoadStep>,
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
            Goal::TokensPerJoule => (
                depths.iter().map(|&d| test("tg", gen, d)).collect(),
                format!("decode tokens per joule of tg{gen} at depth {} (all the energy the machine counts, harmonic mean over depths)", list(&depths)),
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
                // Unreachable from the tuner, which builds goal load's with `Workload::load`.
                return Err(Error::input(
                    "goal load is one load step, not bench tests: see Workload::load",
                ));
            }
        };
        for t in &tests {
            let needed = t.depth as u64 + t.tokens as u64;
            fits(
                (&t.name(), ""),
                needed,
                ctx,
                "lower --depth, or raise --ctx",
            )?;
        }
        Ok(Workload {
            goal,
            tests,
            load: None,
            describe,
        })
    }

    /// Goal load at context `ctx` per slot: `users` closed-loop users send `requests` requests
    /// (default twice the users, at least [`MIN_LOAD_REQUESTS`]) of `prompt` tokens in and `gen`
    /// out. The score is the step's output tok/s, or its goodput when `slo` sets a limit.
    pub fn load(
        ctx: u64,
        users: u64,
        requests: Option<u64>,
        (prompt, gen): (Option<u32>, Option<u32>),
        slo: Slo,
    ) -> Result<Workload> {
        let users = users.max(1) as usize;
        let default_requests = (2 * users).max(MIN_LOAD_REQUESTS);
        let step = LoadStep {
            users,
            requests: requests.map_or(default_requests, |r| r.max(1) as usize),
            gen: gen.unwrap_or(DEFAULT_GEN).max(1),
            prompt: prompt.unwrap_or(DEFAULT_PROMPT.min(ctx as u32 / 4)).max(1),
            slo,
        };
        let what = format!("load step {}", step.label());
        let needed = step.prompt as u64 + step.gen as u64;
        fits(
            (&what, " per slot"),
            needed,
            ctx,
            "lower --prompt or --gen, or raise --ctx",
        )?;
        Ok(Workload {
            goal: Goal::Load,
            tests: Vec::new(),
            describe: step.describe(),
            load: Some(step),
        })
    }

    /// The names of one repetition's stored trials, in the order [`Workload::score`] takes
    /// their values.
    pub fn test_names(&self) -> Vec<String> {
        match &self.load {
            Some(step) => vec![step.label()],
            None => self.tests.iter().map(Test::name).collect(),
        }
    }

    /// What the score counts, for progress lines.
    pub fn unit(&self) -> &'static str {
        match &self.load {
            Some(step) if !step.slo.is_empty() => "req/s",
            Some(_) => "tok/s",
            None if self.goal == Goal::TokensPerJoule => "tok/J",
            None => "t/s",
        }
    }

    /// Whether a test's value is its energy efficiency (tokens per joule) rather than its speed.
    pub fn per_joule(&self) -> bool {
        self.goal == Goal::TokensPerJoule
    }

    /// One repetition's score from each test's value (in [`Workload::test_names`] order).
    pub fn score(&self, values: &[f64]) -> f64 {
        match self.goal {
            Goal::Load => values.first().copied().unwrap_or(f64::NAN),
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

/// Goal load's repetition: one closed-loop step at the tune's concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStep {
    /// Users, each sending its next request as soon as its last one ends (`--parallel`).
    pub users: usize,
    /// Requests in the step, all of them measured (no warmup or cooldown cut).
    pub requests: usize,
    pub prompt: u32,
    pub gen: u32,
    /// With a limit set, the score is goodput rather than output tok/s.
    pub slo: Slo,
}

impl LoadStep {
    /// `c4`: the step's name in stored trials, as `bakeoff load` names it.
    pub fn label(&self) -> String {
        Shape::Concurrency(self.users).label()
    }

    /// The score in words.
    fn describe(&self) -> String {
        let (users, requests, prompt, gen) = (self.users, self.requests, self.prompt, self.gen);
        let step = format!("{requests} requests of {prompt} prompt + {gen} generated tokens from {users} closed-loop users");
        match self.slo.is_empty() {
            true => format!("output tok/s of {step}"),
            false => format!(
                "goodput (requests/s meeting {}) of {step}",
                slo_text(&self.slo)
            ),
        }
    }

    /// The `bakeoff load` plan of one repetition: every request inside the measured window.
    pub fn plan(&self) -> LoadPlan {
        LoadPlan {
            shapes: vec![Shape::Concurrency(self.users)],
            sweep_rates: None,
            workload: WorkloadSpec::Synthetic {
                input: LengthDist::Fixed(self.prompt),
                output: LengthDist::Fixed(self.gen),
            },
            limits: StepLimits {
                duration: None,
                requests: Some(self.requests),
                warmup: Duration::ZERO,
                cooldown: Duration::ZERO,
                max_inflight: self.users,
                stop_on_saturation: false,
            },
            seed: LOAD_SEED,
            slo: self.slo.clone(),
        }
    }

    /// The step's score from its table as stored: goodput under an SLO, else output tok/s.
    /// `Err` (why, in words) unless every request completed: a configuration that fails
    /// requests under load is out, and a step cut short by Ctrl-C is measured again on resume.
    pub fn score(&self, table: &StepTable) -> std::result::Result<f64, String> {
        if !table.errors.is_empty() || table.completed != self.requests as u64 {
            let errors: Vec<String> = (table.errors.iter())
                .map(|(kind, n)| format!("{n} × {kind}"))
                .collect();
            let errors = match errors.is_empty() {
                true => String::new(),
                false => format!(" ({})", errors.join(", ")),
            };
            let (done, asked) = (table.completed, self.requests);
            return Err(format!("{done} of {asked} requests completed{errors}"));
        }
        Ok(match self.slo.is_empty() {
            true => table.output_tps,
            false => table.goodput_rps.unwrap_or(0.0),
        })
    }
}

/// `ttft ≤ 500 ms, tpot ≤ 50 ms`.
fn slo_text(slo: &Slo) -> String {
    let limits = [
        ("ttft", slo.ttft_ms),
        ("tpot", slo.tpot_ms),
        ("e2e", slo.e2e_ms),
    ];
    let parts: Vec<String> = (limits.iter())
        .filter_map(|(name, ms)| ms.map(|ms| format!("{name} ≤ {ms} ms")))
        .collect();
    parts.join(", ")
}

/// `what` needs `tokens` (plus room for the prompt's own tokens) within `ctx` (`per`: " per slot").
fn fits((what, per): (&str, &str), tokens: u64, ctx: u64, hint: &str) -> Result<()> {
    let needed = tokens + 128;
    if needed > ctx {
        let message =
            format!("{what} needs a context of {needed} tokens{per}, more than --ctx {ctx}");
        return Err(Error::input(message).with_hint(hint));
    }
    Ok(())
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
    fn tokens_per_joule_decodes_as_tg_does_and_scores_in_tok_per_j() {
        let goal = Goal::parse("tokens-per-joule").unwrap();
        let w = Workload::new(goal, 4096, None, (None, None), PromptSet::Random).unwrap();
        let names: Vec<String> = w.tests.iter().map(Test::name).collect();
        assert_eq!(names, ["tg64", "tg64 @ d2048"]);
        assert!(w.per_joule() && w.unit() == "tok/J", "{w:?}");
        // Equal tokens per test: the harmonic mean is all the tokens over all the joules.
        assert!((w.score(&[4.0, 2.0]) - 128.0 / (16.0 + 32.0)).abs() < 1e-9);
        assert!(
            !Workload::new(Goal::Tg, 4096, None, (None, None), PromptSet::Random)
                .unwrap()
                .per_joule()
        );
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

    /// A step's table as the load runner would rebuild it from stored samples.
    fn table(completed: u64, output_tps: f64, goodput_rps: Option<f64>) -> StepTable {
        let none = crate::measure::load::metrics::Distribution::of(&[]);
        StepTable {
            step: "c2".into(),
            completed,
            errors: Default::default(),
            request_throughput: 1.0,
            output_tps,
            goodput_rps,
            ttft_ms: none.clone(),
            itl_ms: none.clone(),
            tpot_ms: none.clone(),
            e2e_ms: none,
            client_cpu_cores: 0.0,
            note: None,
            tokens_per_j: None,
            power_w: None,
            mem_peak_bytes: None,
        }
    }

    #[test]
    fn load_scores_output_tokens_per_second_of_one_closed_loop_step() {
        let w = Workload::load(512, 2, None, (Some(32), Some(16)), Slo::default()).unwrap();
        let step = w.load.as_ref().unwrap();
        assert_eq!((step.users, step.requests), (2, MIN_LOAD_REQUESTS));
        assert_eq!(w.test_names(), ["c2"]);
        assert_eq!(w.unit(), "tok/s");
        assert_eq!(
            w.describe,
            "output tok/s of 10 requests of 32 prompt + 16 generated tokens from 2 closed-loop users"
        );
        assert_eq!(step.score(&table(10, 250.0, None)), Ok(250.0));
        assert_eq!(w.score(&[250.0]), 250.0);
        let plan = step.plan();
        assert_eq!(plan.shapes, [Shape::Concurrency(2)]);
        assert_eq!(plan.limits.requests, Some(10));
        assert_eq!(plan.limits.max_inflight, 2);
        // Eight users: twice as many requests as users.
        let wide = Workload::load(512, 8, None, (Some(32), Some(16)), Slo::default()).unwrap();
        assert_eq!(wide.load.unwrap().requests, 16);
    }

    #[test]
    fn with_an_slo_load_scores_goodput() {
        let slo = Slo::parse("ttft=500ms,tpot=50ms").unwrap();
        let w = Workload::load(4096, 4, Some(12), (None, None), slo).unwrap();
        let step = w.load.as_ref().unwrap();
        assert_eq!(w.unit(), "req/s");
        assert_eq!(
            w.describe,
            "goodput (requests/s meeting ttft ≤ 500 ms, tpot ≤ 50 ms) of 12 requests of 512 prompt + 64 generated tokens from 4 closed-loop users"
        );
        assert_eq!(step.score(&table(12, 900.0, Some(1.5))), Ok(1.5));
    }

    #[test]
    fn an_incomplete_load_step_scores_nothing_and_too_small_a_context_is_refused() {
        let w = Workload::load(512, 2, Some(4), (Some(32), Some(16)), Slo::default()).unwrap();
        let step = w.load.unwrap();
        // Cut short (Ctrl-C): measured again on resume rather than scored from 3 of 4.
        assert_eq!(
            step.score(&table(3, 250.0, None)),
            Err("3 of 4 requests completed".to_string())
        );
        let mut failed = table(3, 250.0, None);
        failed.errors.insert("http_503".into(), 1);
        assert_eq!(
            step.score(&failed),
            Err("3 of 4 requests completed (1 × http_503)".to_string())
        );
        let error = Workload::load(256, 2, None, (Some(100), Some(64)), Slo::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "load step c2 needs a context of 292 tokens per slot, more than --ctx 256"
        );
    }
}
