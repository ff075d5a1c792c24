//! One tune from start to answer: the pruned configurations become the race's candidates, the
//! race runs on real engines ([`measure::Engines`]) under the fidelity gate
//! ([`fidelity::Fidelity`]), every decision is stored as it is made, the engine's defaults are
//! measured to compare with, and the answer is assembled and stored with the run.

use super::answer::{self, Answer, Verdicts};
use super::fidelity::{Fidelity, Gated};
use super::measure::{Contender, Engines, Event, Launch};
use super::prune::{self, Configuration};
use super::race::{self, Candidate, Evaluator, Knob, Options, Progress, Request};
use super::settings::{Tune, DEFAULT_BUDGET};
use super::sink::{TuneDecision, TuneSink};
use super::space::{Inputs, KnobKind, Space};
use super::workload::Workload;
use crate::domain::EngineConfig;
use crate::engines::process;
use crate::measure::bench::Subject;
use crate::quality::readiness::{Candidate as GateCandidate, Flags, GateFile};
use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Screens per round: a time budget is read between rounds, so a round is kept short.
pub const SCREENS_PER_ROUND: usize = 6;
/// Repetitions each of the winner and of the engine's defaults, measured after the race,
/// interleaved (A B B A A B): the speed-up over the defaults compares these.
pub const DEFAULTS_REPS: usize = 3;
/// No candidate is measured more often: two candidates this close are reported unresolved.
pub const MAX_REPS: usize = 12;
/// Contenders whose medians are both known within ±3 % of the incumbent's are tied.
pub const TIE_MARGIN: f64 = 0.03;
/// Tokens of each warmup request on a fresh engine (see [`crate::measure::bench::Prepared::light`]).
pub const WARMUP_TOKENS: u32 = 8;

/// Everything one tune run needs.
pub struct TuneRun<'a> {
    pub tune: &'a Tune,
    pub inputs: &'a Inputs,
    pub store: &'a dyn TuneSink,
    pub run_id: i64,
    pub run_dir: PathBuf,
    /// One per model, in the order of `inputs.models`.
    pub subjects: &'a [Subject],
    pub perplexity: Option<PathBuf>,
    pub launch: Launch,
    /// Seconds a resumed run had already spent.
    pub spent_s: f64,
}

/// How the tune ended.
pub struct Tuned {
    pub answer: Answer,
    /// The signal that stopped it early, if one did.
    pub interrupted: Option<i32>,
    /// Repetitions answered from a resumed run's stored trials.
    pub replayed: usize,
}

/// The race's candidates, built from the pruned configurations.
struct Field {
    contenders: Vec<Contender>,
    candidates: Vec<Candidate>,
    gated: Vec<Gated>,
    knobs: Vec<Vec<(String, String)>>,
    models: Vec<PathBuf>,
}

fn field(space: &Space, configurations: &[Configuration], inputs: &Inputs) -> Field {
    let several_models = inputs.models.len() > 1;
    let models: Vec<PathBuf> = inputs.models.iter().map(|m| m.path.clone()).collect();
    let mut field = Field {
        contenders: Vec::new(),
        candidates: Vec::new(),
        gated: Vec::new(),
        knobs: Vec::new(),
        models: models.clone(),
    };
    for configuration in configurations {
        let mut config = configuration.config();
        config.flags.remove("-m");
        let subject = configuration
            .value("model")
            .and_then(|s| inputs.models.iter().position(|m| m.name == s.label))
            .unwrap_or(0);
        let label = label(configuration, several_models);
        let knobs: Vec<Knob> = configuration
            .choice
            .iter()
            .map(|(name, setting)| race_knob(space, name, &setting.label))
            .collect();
        field.candidates.push(Candidate {
            id: label.clone(),
            start_key: format!("{subject} {}", config.hash()),
            knobs,
        });
        field.gated.push(Gated {
            label: label.clone(),
            model: models[subject].clone(),
            config: config.clone(),
        });
        field.knobs.push(
            (configuration.choice.iter())
                .map(|(name, s)| (name.clone(), s.label.clone()))
                .collect(),
        );
        field.contenders.push(Contender {
            label,
            config,
            subject,
            needed: configuration.needed,
        });
    }
    field
}

/// `-ctk q8_0 -ctv f16 -fa on ...`, the model's name first only when there are several.
fn label(configuration: &Configuration, several_models: bool) -> String {
    let parts: Vec<String> = (configuration.choice.iter())
        .filter(|(name, _)| several_models || name != "model")
        .map(|(name, s)| match name.as_str() {
            "model" => s.label.clone(),
            _ => format!("{name} {}", s.label),
        })
        .collect();
    parts.join(" ")
}

fn race_knob(space: &Space, name: &str, value: &str) -> Knob {
    let knob = space.knob(name);
    let rank = knob
        .filter(|k| k.kind == KnobKind::Ordinal)
        .and_then(|k| k.values.iter().position(|s| s.label == value));
    match rank {
        Some(rank) => Knob::ordinal(name, value, rank),
        None => Knob::nominal(name, value),
    }
}

/// The race's evaluator with every round's decisions stored as they are made.
struct Recorded<'e, 'a> {
    engines: &'e mut Engines<'a>,
    store: &'a dyn TuneSink,
    run_id: i64,
    field: &'e Field,
    recorded: usize,
    error: Option<Error>,
}

impl Recorded<'_, '_> {
    fn record(&mut self, decisions: &[race::Decision]) {
        for decision in decisions {
            let candidate = &self.field.contenders[decision.candidate];
            let reference = decision
                .reference
                .map(|r| self.field.contenders[r].label.clone());
            let row = TuneDecision {
                round: decision.round as i64,
                config_hash: candidate.config.hash(),
                candidate: candidate.label.clone(),
                action: action_name(decision.action).to_string(),
                reference,
                why: decision.why.clone(),
            };
            if let Err(error) = self.store.record_decision(self.run_id, &row) {
                self.error.get_or_insert(error);
            }
            self.recorded += 1;
        }
    }
}

pub fn action_name(action: race::Action) -> &'static str {
    use race::Action::*;
    match action {
        Screened => "screened",
        Promoted => "promoted",
        Explored => "explored",
        Eliminated => "eliminated",
        Vetoed => "vetoed",
        Winner => "winner",
        Tied => "tied",
        Unresolved => "unresolved",
        Skipped => "skipped",
    }
}

impl Evaluator for Recorded<'_, '_> {
    fn measure(&mut self, batch: &[Request]) -> Result<Vec<race::Outcome>> {
        self.engines.measure(batch)
    }

    fn observe(&mut self, progress: &Progress) {
        self.record(progress.decisions);
        self.engines.observe(progress);
    }
}

/// The fidelity reference: the highest-precision model given (the largest file), f16 K and V
/// caches, no speculation, everything else the engine's default.
pub fn reference(inputs: &Inputs) -> (PathBuf, Vec<String>) {
    let model = inputs
        .models
        .iter()
        .max_by_key(|m| std::fs::metadata(&m.path).map_or(0, |md| md.len()))
        .map(|m| m.path.clone())
        .unwrap_or_default();
    let flags = ["-ctk", "f16", "-ctv", "f16"].map(String::from).to_vec();
    (model, flags)
}

/// What each repetition of `tune` measures (an error when its depths, or goal load's requests,
/// do not fit its context).
pub fn workload(tune: &Tune) -> Result<Workload> {
    if tune.goal == super::space::Goal::Load {
        let sizes = (tune.prompt, tune.gen);
        let slo = tune.slo.clone();
        return Workload::load(tune.ctx, tune.parallel, tune.requests, sizes, slo);
    }
    Workload::new(
        tune.goal,
        tune.ctx,
        tune.depths.as_deref(),
        (tune.prompt, tune.gen),
        tune.prompts.clone(),
    )
}

/// Run the tune: see the module docs. `observe` sees every start, trial, round and gate stage.
pub fn run(run: &TuneRun, observe: &dyn Fn(Event)) -> Result<Tuned> {
    let started = Instant::now();
    let inputs = run.inputs;
    let tune = run.tune;
    let workload = workload(tune)?;
    if workload.per_joule() {
        let Some(telemetry) = &run.launch.watch.telemetry else {
            return Err(Error::input(
                "goal tokens-per-joule needs telemetry: drop --no-telemetry",
            ));
        };
        crate::system::telemetry::sampler::energy_sources(telemetry).map_err(|why| {
            Error::input(format!("goal tokens-per-joule needs an energy counter, and this machine has none ({why})"))
                .with_hint("run it where NVML (NVIDIA), RAPL (/sys/class/powercap) or amdgpu hwmon counts energy; `bakeoff monitor` shows what is there")
        })?;
    }
    let space = Space::build(inputs)?;
    let configurations = prune::configurations(&space, inputs)?;
    if configurations.is_empty() {
        prune::prune(&space, inputs)?; // says why nothing fits
        return Err(Error::input("nothing is left to tune after pruning"));
    }
    let mut field = field(&space, &configurations, inputs);
    let race_size = field.candidates.len();
    // The engine's defaults on each model: measured after the race, never racing.
    for subject in 0..run.subjects.len() {
        field.contenders.push(Contender {
            label: "engine defaults".to_string(),
            config: EngineConfig::default(),
            subject,
            needed: None,
        });
    }
    let (reference_model, reference_flags) = reference(inputs);
    let gate_file = GateFile {
        model: reference_model.clone(),
        ctx: tune.ctx,
        baseline: GateCandidate {
            name: "reference".into(),
            model: Some(reference_model.clone()),
            flags: Flags::List(reference_flags.clone()),
        },
        candidates: Vec::new(),
        checks: tune.checks.clone(),
        gate: None,
    };
    let stage = |candidate: &str, what: &str| observe(Event::Gate { candidate, what });
    let engine_id = run.subjects.first().map_or(0, |s| s.engine_id);
    let mut fidelity = Fidelity::new(
        &field.gated,
        gate_file,
        tune.gate.clone(),
        (
            run.subjects
                .first()
                .map(|s| s.binary.clone())
                .unwrap_or_default(),
            run.perplexity.clone(),
        ),
        run.run_dir.join("gate"),
        run.launch.timeouts,
        (run.store, run.run_id, engine_id),
        &stage,
    );
    fidelity.restore(run.store.readiness_rows(run.run_id)?);
    let mut engines = Engines::new(
        run.store,
        run.run_id,
        (run.subjects, &field.contenders),
        &workload,
        run.launch.clone(),
        observe,
    )?;
    let options = options(tune);
    let spent = run.spent_s;
    let clock_start = Instant::now();
    let mut clock = || match process::interrupted() {
        Some(_) => f64::INFINITY,
        None => spent + clock_start.elapsed().as_secs_f64(),
    };
    let race_result = {
        let mut recorded = Recorded {
            engines: &mut engines,
            store: run.store,
            run_id: run.run_id,
            field: &field,
            recorded: 0,
            error: None,
        };
        let result = race::run(
            &field.candidates[..race_size],
            &options,
            &mut recorded,
            &mut fidelity,
            &mut clock,
        );
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                drop(recorded);
                engines.stop_engine()?;
                return Err(error);
            }
        };
        let closing = result.decisions[recorded.recorded.min(result.decisions.len())..].to_vec();
        recorded.record(&closing);
        if let Some(error) = recorded.error.take() {
            return Err(error);
        }
        result
    };
    let winner_subject = race_result
        .winner
        .as_ref()
        .map_or(0, |w| field.contenders[w.candidate].subject);
    let defaults_index = race_size + winner_subject;
    let (beside, defaults) = match (process::interrupted(), &race_result.winner) {
        (None, Some(winner)) => {
            engines.interleaved(winner.candidate, defaults_index, DEFAULTS_REPS)?
        }
        (None, None) => (Vec::new(), engines.extra(defaults_index, DEFAULTS_REPS)?),
        (Some(_), _) => (Vec::new(), Vec::new()),
    };
    engines.stop_engine()?;
    let verdicts: Verdicts = (0..race_size)
        .map(|c| fidelity.verdict_of(c).map(|v| v.veto.clone()))
        .collect();
    let reference = format!(
        "{} {}",
        reference_model
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        reference_flags.join(" ")
    );
    let interrupted = engines.interrupted.or_else(process::interrupted);
    let trials = run.store.trials(run.run_id)?;
    let answer = answer::assemble(&answer::Inputs {
        goal: tune.goal.name(),
        score: &workload.describe,
        ctx: tune.ctx,
        reference,
        contenders: &field.contenders,
        models: &field.models,
        knobs: &field.knobs,
        race: &race_result,
        verdicts: &verdicts,
        defaults: Some((defaults_index, defaults)),
        beside,
        interrupted: interrupted.is_some(),
        engine_starts: engines.starts,
        wall_s: spent + started.elapsed().as_secs_f64(),
        energy: answer::energy_of(&trials, &field.contenders, run.subjects),
    });
    let json = serde_json::to_value(&answer)
        .map_err(|e| Error::engine(format!("tune: the answer did not serialise: {e}")))?;
    run.store.save_answer(run.run_id, &json)?;
    Ok(Tuned {
        answer,
        interrupted,
        replayed: engines.replayed,
    })
}

/// The race's options for this tune: its budget, short rounds of screens.
fn options(tune: &Tune) -> Options {
    let max_seconds = match tune.max_trials {
        Some(_) => None,
        None => Some(tune.budget.unwrap_or(DEFAULT_BUDGET).as_secs_f64()),
    };
    Options {
        budget: race::Budget {
            max_trials: tune.max_trials.map(|t| t as usize),
            max_seconds,
        },
        max_screens: Some(SCREENS_PER_ROUND),
        max_reps: MAX_REPS,
        tie_margin: Some(TIE_MARGIN),
        ..Options::default()
    }
}
