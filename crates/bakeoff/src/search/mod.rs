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
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let gpus = visible_gpu_memories(machine, visible.as_deref());
    Inputs {
        help,
        models,
        cpu_cores: machine.cpu_cores,
        gpu_memory: gpus.iter().copied().max(),
        gpu_memories: gpus,
        budget: tune.mem.unwrap_or(budget),
        ctx: tune.ctx,
        goal: tune.goal,
        parallel: tune.parallel,
        edits: tune.edits.clone(),
    }
}

/// Each GPU's memory as llama.cpp will number them: with `CUDA_VISIBLE_DEVICES` a list of indices,
/// only those NVIDIA GPUs, in its order (the engine inherits the variable; nvidia-smi ignores it);
/// empty, none of them. UUIDs cannot be matched to the fingerprint's rows: all GPUs are kept.
pub fn visible_gpu_memories(machine: &Fingerprint, cuda_visible: Option<&str>) -> Vec<u64> {
    let nvidia: Vec<&crate::system::fingerprint::Gpu> = machine
        .gpus
        .iter()
        .filter(|g| g.source == "nvidia-smi")
        .collect();
    let others = machine.gpus.iter().filter(|g| g.source != "nvidia-smi");
    let indices: Option<Vec<usize>> = cuda_visible.and_then(|list| {
        (list.split(',').map(str::trim).filter(|i| !i.is_empty()))
            .map(|i| i.parse().ok())
            .collect()
    });
    let visible: Vec<&crate::system::fingerprint::Gpu> = match indices {
        Some(indices) => indices
            .iter()
            .filter_map(|&i| nvidia.get(i).copied())
            .collect(),
        None => nvidia,
    };
    (visible.into_iter().chain(others))
        .filter_map(|g| g.memory_bytes)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::fingerprint::Gpu;

    #[test]
    fn cuda_visible_devices_picks_and_orders_the_gpus_the_engine_sees() {
        let gpu = |gib: u64| Gpu {
            name: "H200".into(),
            memory_bytes: Some(gib << 30),
            driver: None,
            source: "nvidia-smi".into(),
        };
        let machine = Fingerprint {
            gpus: vec![gpu(80), gpu(40), gpu(24)],
            ..Default::default()
        };
        let gib = |list: Vec<u64>| list.into_iter().map(|b| b >> 30).collect::<Vec<_>>();
        assert_eq!(gib(visible_gpu_memories(&machine, None)), [80, 40, 24]);
        assert_eq!(gib(visible_gpu_memories(&machine, Some("2,0"))), [24, 80]);
        assert!(visible_gpu_memories(&machine, Some("")).is_empty());
        // UUIDs: not matched, every GPU kept.
        assert_eq!(visible_gpu_memories(&machine, Some("GPU-8a1b")).len(), 3);
    }
}
