//! `bakeoff tune`: the search space built from the build's `--help`, the model, the machine and
//! the goal ([`space`]), pruned before anything is measured ([`prune`]), the tune's settings
//! ([`settings`]), and the race that measures what is left ([`race`]).

pub mod answer;
pub mod fidelity;
pub mod measure;
pub mod prune;
pub mod race;
pub mod settings;
pub mod sink;
pub mod space;
pub mod tuner;
pub mod workload;

use crate::formats::gguf::GgufFile;
use crate::model::select::Selected;
use crate::model::ModelFacts;
use crate::system::fingerprint::Fingerprint;
use crate::Result;
use serde::Serialize;
use settings::{Tune, DEFAULT_BUDGET};
use space::{Help, Inputs, ModelInput, Space};
use std::time::Duration;

/// A rough cost of one trial on a small model: an engine start plus a short measurement. Only
/// for the dry run's estimate; the search measures its own.
pub const TRIAL_ESTIMATE: Duration = Duration::from_secs(20);

/// What `tune --dry-run` shows: the space, what pruning took out, and the planned cost.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub space: Space,
    pub pruned: prune::Pruned,
    pub cost: Cost,
}

/// The planned cost of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub configurations: u128,
    /// What the budget holds at [`TRIAL_ESTIMATE`] per start (a start and its repetitions), at
    /// most one per configuration. Rough: the race restarts a configuration it comes back to,
    /// and a small model's start costs far less (42 starts in 223 s on an H200, 8B shape).
    pub engine_starts: u128,
    /// The wall time the search plans to use.
    pub wall: Duration,
    /// The wall time an exhaustive measurement of every configuration would take.
    pub exhaustive: Duration,
    /// `budget 30m` or `max-trials 20`.
    pub limit: String,
}

/// The models as the space takes them: facts from each GGUF, the draft its catalog entry names.
pub fn model_inputs(selected: &[Selected]) -> Result<Vec<ModelInput>> {
    selected
        .iter()
        .map(|s| {
            let facts = ModelFacts::from_gguf(&GgufFile::open(&s.path)?);
            Ok(ModelInput {
                name: s.name(),
                path: s.path.clone(),
                facts,
                draft: s.entry.as_ref().and_then(|e| e.draft.clone()),
            })
        })
        .collect()
}

/// The inputs of the space: the build's `--help` text, the models, this machine, the settings.
/// `budget` is the memory budget when `--mem` is not given.
pub fn inputs(
    tune: &Tune,
    help: Help,
    models: Vec<ModelInput>,
    machine: &Fingerprint,
    budget: u64,
) -> Inputs {
    Inputs {
        help,
        models,
        cpu_cores: machine.cpu_cores,
        gpu_memory: machine.gpus.iter().filter_map(|g| g.memory_bytes).max(),
        gpu_memories: machine.gpus.iter().filter_map(|g| g.memory_bytes).collect(),
        budget: tune.mem.unwrap_or(budget),
        ctx: tune.ctx,
        goal: tune.goal,
        parallel: tune.parallel,
        edits: tune.edits.clone(),
    }
}

/// Build and prune the space and plan the cost, measuring nothing.
pub fn dry_run(tune: &Tune, inputs: &Inputs) -> Result<DryRun> {
    let space = Space::build(inputs)?;
    let pruned = prune::prune(&space, inputs)?;
    let cost = cost(tune, pruned.kept);
    Ok(DryRun {
        space,
        pruned,
        cost,
    })
}

fn cost(tune: &Tune, configurations: u128) -> Cost {
    let per_trial = TRIAL_ESTIMATE.as_secs_f64();
    let exhaustive = Duration::from_secs_f64(per_trial * configurations as f64);
    let (starts, wall, limit) = match (tune.max_trials, tune.budget) {
        (Some(trials), _) => {
            let starts = configurations.min(trials as u128);
            let wall = Duration::from_secs_f64(per_trial * starts as f64);
            (starts, wall, format!("max-trials {trials}"))
        }
        (None, budget) => {
            let budget = budget.unwrap_or(DEFAULT_BUDGET);
            let fit = (budget.as_secs_f64() / per_trial).floor() as u128;
            let starts = configurations.min(fit.max(1));
            (
                starts,
                budget.min(exhaustive.max(TRIAL_ESTIMATE)),
                format!("budget {}", minutes(budget)),
            )
        }
    };
    Cost {
        configurations,
        engine_starts: starts,
        wall,
        exhaustive,
        limit,
    }
}

/// `30m`, `1h 30m`, `45s`.
pub fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}
