//! What a tune ends with: the fastest faithful configuration with its CI; beside it the fastest
//! overall (and why it lost), the smallest-memory faithful one, the engine's defaults and the
//! speed-up over them, what each of the winner's knobs contributed, and every measured point
//! (speed × memory × fidelity) for the pareto chart. Stored as JSON with the run.

use super::measure::Contender;
use super::race::{RaceResult, Standing, Stop};
use crate::measure::bench::Subject;
use crate::measure::sink::TrialRow;
use crate::measure::stats::Summary;
use crate::measure::watch::Energy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One measured configuration in the answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finalist {
    pub label: String,
    /// Its engine flags (without the model).
    pub args: Vec<String>,
    pub model: PathBuf,
    pub config_hash: String,
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
    /// The planner's weights + KV + compute at the tune's context.
    pub memory_bytes: Option<u64>,
    /// `pass`, `fail` or `unchecked` (never gated: it never led the race).
    pub fidelity: String,
    /// Why it failed, or whose gate result it shares.
    pub fidelity_note: Option<String>,
    /// Median tokens per joule and mean watts over its trials, where telemetry measured energy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watts: Option<f64>,
}

/// What one of the winner's knobs is worth: the winner against the measured configuration that
/// differs from it in that knob alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Contribution {
    pub knob: String,
    pub winner_value: String,
    pub other_value: String,
    /// Winner's median over the other's, −1, in percent.
    pub speed_pct: f64,
    /// Winner's planned memory over the other's, −1, in percent.
    pub memory_pct: Option<f64>,
    /// `-fa on (vs off): +12.0 % speed`.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Answer {
    pub goal: String,
    /// What the score is, in words.
    pub score: String,
    pub ctx: u64,
    /// The fidelity reference: model and flags.
    pub reference: String,
    pub winner: Option<Finalist>,
    pub fastest: Option<Finalist>,
    /// Why the fastest is not the winner, when it is not.
    pub fastest_lost: Option<String>,
    pub smallest: Option<Finalist>,
    pub defaults: Option<Finalist>,
    /// The winner re-measured right before the defaults, on the same engine start as its last
    /// race repetitions when it can: the speed-up compares these two, so that a drift over the
    /// race does not count for or against the winner.
    #[serde(default)]
    pub beside_defaults: Option<Finalist>,
    pub speedup_over_defaults_pct: Option<f64>,
    pub contributions: Vec<Contribution>,
    /// Every configuration measured, fastest first.
    pub points: Vec<Finalist>,
    /// `separated`, `trial budget`, `time budget`, `repetition cap`, `none left`, `interrupted`.
    pub stop: String,
    pub configurations: usize,
    pub trials: usize,
    pub engine_starts: usize,
    pub rounds: usize,
    pub gated: usize,
    pub wall_s: f64,
}

/// Each candidate's gate verdict: `Some(None)` passed, `Some(Some(why))` failed, `None` unchecked.
pub type Verdicts = Vec<Option<Option<String>>>;

/// Everything the answer is assembled from.
pub struct Inputs<'a> {
    pub goal: &'a str,
    pub score: &'a str,
    pub ctx: u64,
    pub reference: String,
    pub contenders: &'a [Contender],
    pub models: &'a [PathBuf],
    /// The race's knobs of each candidate (name, value), for contributions.
    pub knobs: &'a [Vec<(String, String)>],
    pub race: &'a RaceResult,
    pub verdicts: &'a Verdicts,
    /// The defaults' contender and samples.
    pub defaults: Option<(usize, Vec<f64>)>,
    /// The winner's samples measured right before the defaults'.
    pub beside: Vec<f64>,
    pub interrupted: bool,
    pub engine_starts: usize,
    pub wall_s: f64,
    /// Each contender's telemetry, by index ([`energy_of`]); empty when none was measured.
    pub energy: Vec<Energy>,
}

fn finalist(inputs: &Inputs, candidate: usize, summary: &Summary) -> Finalist {
    let contender = &inputs.contenders[candidate];
    let (fidelity, note) = match inputs.verdicts.get(candidate).cloned().flatten() {
        Some(None) => ("pass", None),
        Some(Some(why)) => ("fail", Some(why)),
        None => ("unchecked", None),
    };
    Finalist {
        label: contender.label.clone(),
        args: contender.config.args(),
        model: inputs.models[contender.subject].clone(),
        config_hash: contender.config.hash(),
        median: summary.median,
        ci_low: summary.ci_low,
        ci_high: summary.ci_high,
        n: summary.n,
        memory_bytes: contender.needed,
        fidelity: fidelity.to_string(),
        fidelity_note: note,
        tokens_per_j: inputs.energy.get(candidate).and_then(Energy::tokens_per_j),
        watts: inputs.energy.get(candidate).and_then(Energy::watts),
    }
}

/// Each contender's telemetry over its stored trials (by model and configuration).
pub fn energy_of(
    trials: &[TrialRow],
    contenders: &[Contender],
    subjects: &[Subject],
) -> Vec<Energy> {
    let mut energy = vec![Energy::default(); contenders.len()];
    for trial in trials.iter().filter(|t| t.status == "ok") {
        let of = |c: &Contender| {
            Some(subjects[c.subject].model_id) == trial.model_id
                && trial.config_hash.as_deref() == Some(c.config.hash().as_str())
        };
        if let Some(at) = contenders.iter().position(of) {
            energy[at].add(trial);
        }
    }
    energy
}

fn of(inputs: &Inputs, standing: &Standing) -> Finalist {
    finalist(inputs, standing.candidate, &standing.summary)
}

fn stop_name(stop: Stop, interrupted: bool) -> &'static str {
    if interrupted {
        return "interrupted";
    }
    match stop {
        Stop::Separated => "separated",
        Stop::TrialBudget => "trial budget",
        Stop::TimeBudget => "time budget",
        Stop::RepetitionCap => "repetition cap",
        Stop::NoneLeft => "none left",
    }
}

pub fn assemble(inputs: &Inputs) -> Answer {
    let race = inputs.race;
    let winner = race.winner.as_ref().map(|w| of(inputs, w));
    let fastest = race.fastest.as_ref().map(|f| of(inputs, f));
    let fastest_lost = match (&race.fastest, &race.winner) {
        (Some(f), Some(w)) if f.candidate == w.candidate => None,
        (Some(f), _) => Some(f.vetoed.clone().unwrap_or_else(|| {
            "not separated from the winner, or never gated: it did not lead a round".to_string()
        })),
        _ => None,
    };
    let points: Vec<Finalist> = race.standings.iter().map(|s| of(inputs, s)).collect();
    let smallest = points
        .iter()
        .filter(|p| p.fidelity == "pass")
        .filter(|p| p.memory_bytes.is_some())
        .min_by_key(|p| p.memory_bytes)
        .cloned();
    let defaults = inputs
        .defaults
        .as_ref()
        .filter(|(_, samples)| !samples.is_empty())
        .map(|(index, samples)| finalist(inputs, *index, &Summary::of(samples)));
    let beside = match (&race.winner, inputs.beside.is_empty()) {
        (Some(w), false) => Some(finalist(inputs, w.candidate, &Summary::of(&inputs.beside))),
        _ => None,
    };
    let speedup = match (beside.as_ref().or(winner.as_ref()), &defaults) {
        (Some(w), Some(d)) if d.median > 0.0 => Some((w.median / d.median - 1.0) * 100.0),
        _ => None,
    };
    let contributions = race
        .winner
        .as_ref()
        .map(|w| contributions(inputs, w))
        .unwrap_or_default();
    Answer {
        goal: inputs.goal.to_string(),
        score: inputs.score.to_string(),
        ctx: inputs.ctx,
        reference: inputs.reference.clone(),
        winner,
        fastest,
        fastest_lost,
        smallest,
        defaults,
        beside_defaults: beside,
        speedup_over_defaults_pct: speedup,
        contributions,
        points,
        stop: stop_name(race.stop, inputs.interrupted).to_string(),
        configurations: inputs.knobs.len(),
        trials: race.trials,
        engine_starts: inputs.engine_starts,
        rounds: race.rounds,
        gated: inputs.verdicts.iter().filter(|v| v.is_some()).count(),
        wall_s: inputs.wall_s,
    }
}

/// For each knob of the winner, the measured candidate differing from it there alone (the
/// fastest such, when several are measured).
fn contributions(inputs: &Inputs, winner: &Standing) -> Vec<Contribution> {
    let knobs = &inputs.knobs[winner.candidate];
    let mut found = Vec::new();
    for (position, (name, value)) in knobs.iter().enumerate() {
        let rivals = inputs.race.standings.iter().filter(|s| {
            let other = &inputs.knobs[s.candidate];
            s.candidate != winner.candidate
                && other.len() == knobs.len()
                && other
                    .iter()
                    .zip(knobs)
                    .enumerate()
                    .all(|(i, (a, b))| (i == position) != (a == b))
        });
        let Some(rival) = rivals.max_by(|a, b| a.summary.median.total_cmp(&b.summary.median))
        else {
            continue;
        };
        let other = &inputs.knobs[rival.candidate][position].1;
        let speed = (winner.summary.median / rival.summary.median - 1.0) * 100.0;
        let memory = match (
            inputs.contenders[winner.candidate].needed,
            inputs.contenders[rival.candidate].needed,
        ) {
            (Some(w), Some(r)) if r > 0 && w != r => Some((w as f64 / r as f64 - 1.0) * 100.0),
            _ => None,
        };
        let memory_text = memory.map_or(String::new(), |m| format!(" / {m:+.1} % memory"));
        found.push(Contribution {
            knob: name.clone(),
            winner_value: value.clone(),
            other_value: other.clone(),
            speed_pct: speed,
            memory_pct: memory,
            text: format!("{name} {value} (vs {other}): {speed:+.1} % speed{memory_text}"),
        });
    }
    found
}
