//! What a report shows, read from the store once: the runs, every configuration they measured
//! (with its KV-cache size at the run's context), bench cells, load steps, fidelity checks and the
//! environment (systems, engines, models). Renderers work from this alone.

use crate::analysis::compare::{self, Cell};
use crate::domain::EngineConfig;
use crate::formats::gguf::{GgmlType, GgufFile};
use crate::measure::bench::BenchPlan;
use crate::measure::load::StepTable;
use crate::measure::stats::{self, Summary};
use crate::model::plan::{self, KvSettings};
use crate::model::ModelFacts;
use crate::quality::readiness::Readiness;
use crate::store::{RunDetail, RunRow, Store, TrialRow};
// The stored rows a report shows as they are.
pub use crate::store::report_rows::{EngineInfo, FidelityRow, ModelInfo, SystemInfo};
use crate::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportData {
    pub bakeoff_version: String,
    pub runs: Vec<RunRow>,
    pub configs: Vec<ConfigInfo>,
    pub bench: Vec<BenchCell>,
    pub load: Vec<LoadStep>,
    pub fidelity: Vec<FidelityRow>,
    /// The readiness rows of `bakeoff gate` runs (one per candidate).
    pub readiness: Vec<GateCandidate>,
    pub systems: Vec<SystemInfo>,
    pub engines: Vec<EngineInfo>,
    pub models: Vec<ModelInfo>,
    /// The answer and decisions of each tune run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunes: Vec<super::tune::TuneReport>,
    /// The shootout table, when asked for (`report --shootout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shootout: Option<super::shootout::Shootout>,
}

/// One configuration of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub run_id: i64,
    pub hash: String,
    /// Swept flags then pass-through arguments, e.g. `-ctk q8_0 -ctv q8_0`.
    pub label: String,
    pub flags: BTreeMap<String, String>,
    pub extra: Vec<String>,
    /// The engine's full argument vector when the run's plan records it (bench through llama-server).
    pub server_args: Option<Vec<String>>,
    pub trials_ok: usize,
    pub trials_skipped: usize,
    pub trials_failed: usize,
    /// Why trials were skipped or failed.
    pub notes: Vec<String>,
    pub memory: Option<Memory>,
}

/// Memory a configuration needs, and where the figure comes from.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub bytes: u64,
    /// e.g. `KV plan: ctx 512, K f16, V f16` or `stored sample kv_bytes`.
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchCell {
    pub run_id: i64,
    pub config_hash: Option<String>,
    pub cell: Cell,
    pub summary: Summary,
    pub server_median: Option<f64>,
}

/// What a load step's x axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LoadAxis {
    Concurrency,
    Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadStep {
    pub run_id: i64,
    pub config_hash: Option<String>,
    pub config_label: String,
    /// Concurrency or offered rate (req/s); `None` for max-throughput steps.
    pub axis: Option<(LoadAxis, f64)>,
    pub table: StepTable,
    /// Draft tokens generated and accepted during the step (server `/metrics` counters).
    pub drafted: Option<f64>,
    pub accepted: Option<f64>,
}

/// One candidate of a `bakeoff gate` run: its whole readiness row.
#[derive(Debug, Clone, Serialize)]
pub struct GateCandidate {
    pub run_id: i64,
    pub config_hash: Option<String>,
    /// The model and build its trial ran on (to find a shootout row's verdict).
    pub model_sha256: Option<String>,
    pub build: Option<String>,
    pub row: Readiness,
}

impl GateCandidate {
    /// Mean KLD against the baseline: llama-perplexity's exact figure, else the HTTP top-k
    /// estimate; zero for the baseline itself.
    pub fn mean_kld(&self) -> Option<f64> {
        let exact = self.row.kld.as_ref().map(|k| k.mean_kld);
        let estimate = self.row.kld_estimate.as_ref().map(|k| k.mean_kld);
        exact
            .or(estimate)
            .or(self.row.baseline.then_some(0.0))
            .filter(|k| k.is_finite())
    }
}

/// Gather everything the report needs about `run_ids`, in that order.
pub fn gather(store: &Store, run_ids: &[i64]) -> Result<ReportData> {
    let mut data = ReportData {
        bakeoff_version: crate::VERSION.to_string(),
        ..Default::default()
    };
    let mut facts = FactsCache::default();
    for &run_id in run_ids {
        let detail = store.run_detail(run_id)?;
        let systems = store.run_systems(run_id)?;
        merge(&mut data.systems, systems, |s| s.id, |s| &mut s.runs);
        merge(
            &mut data.engines,
            store.run_engines(run_id)?,
            |e| e.id,
            |e| &mut e.runs,
        );
        merge(
            &mut data.models,
            store.run_models(run_id)?,
            |m| m.id,
            |m| &mut m.runs,
        );
        let gates = gate_candidates(store, run_id)?;
        let mut configs = configs_of(&detail, &data.models, &mut facts);
        for config in configs.iter_mut().filter(|c| c.memory.is_none()) {
            config.memory = gates
                .iter()
                .find(|g| g.config_hash.as_ref() == Some(&config.hash))
                .and_then(gate_memory);
        }
        data.bench
            .extend(bench_cells(&detail, &configs, &data.models, &mut facts));
        data.load.extend(load_steps(&detail));
        data.configs.extend(configs);
        data.fidelity.extend(store.run_fidelity(run_id)?);
        data.readiness.extend(gates);
        if detail.run.kind == "tune" {
            data.tunes.push(super::tune::gather(store, run_id)?);
        }
        data.runs.push(detail.run);
    }
    Ok(data)
}

/// Add rows not yet present (by id); a row seen again only gains the run.
fn merge<T>(
    into: &mut Vec<T>,
    rows: Vec<T>,
    id: impl Fn(&T) -> i64,
    runs: impl Fn(&mut T) -> &mut Vec<i64>,
) {
    for mut row in rows {
        let key = id(&row);
        match into.iter_mut().find(|r| id(r) == key) {
            Some(existing) => {
                let more = std::mem::take(runs(&mut row));
                runs(existing).extend(more);
            }
            None => into.push(row),
        }
    }
}

/// The readiness rows a `bakeoff gate` run stored (none for other runs).
fn gate_candidates(store: &Store, run_id: i64) -> Result<Vec<GateCandidate>> {
    let mut candidates = Vec::new();
    for f in store.fidelity_rows(run_id, Some("readiness"))? {
        let Ok(row) = serde_json::from_value(f.detail) else {
            continue;
        };
        let trial = f.trial_id.map(|id| store.trial(id)).transpose()?;
        candidates.push(GateCandidate {
            run_id,
            config_hash: f.config_hash,
            model_sha256: trial.as_ref().and_then(|t| t.model_sha256.clone()),
            build: trial.and_then(|t| t.build),
            row,
        });
    }
    Ok(candidates)
}

/// A trial's configuration as stored (flags and pass-through arguments).
fn trial_config(trial: &TrialRow) -> EngineConfig {
    trial
        .flags
        .clone()
        .and_then(|f| serde_json::from_value(f).ok())
        .unwrap_or_default()
}

/// The label a config gets everywhere in a report: swept flags as `compare` spells them (so bench
/// cells match), then pass-through arguments.
pub fn config_label(config: &EngineConfig) -> String {
    let mut parts: Vec<String> = config
        .flags
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    parts.extend(config.extra.iter().cloned());
    if parts.is_empty() {
        "(defaults)".into()
    } else {
        parts.join(" ")
    }
}

fn configs_of(detail: &RunDetail, models: &[ModelInfo], facts: &mut FactsCache) -> Vec<ConfigInfo> {
    let bench_plan: Option<BenchPlan> = serde_json::from_value(detail.params["plan"].clone())
        .ok()
        .filter(|_| detail.run.kind == "bench");
    let mut configs: Vec<ConfigInfo> = Vec::new();
    for trial in &detail.trials {
        let Some(hash) = &trial.config_hash else {
            continue;
        };
        let index = match configs.iter().position(|c| &c.hash == hash) {
            Some(i) => i,
            None => {
                let config = trial_config(trial);
                let model = models
                    .iter()
                    .find(|m| Some(&m.sha256) == trial.model_sha256.as_ref());
                configs.push(ConfigInfo {
                    run_id: detail.run.id,
                    hash: hash.clone(),
                    label: config_label(&config),
                    server_args: bench_plan
                        .as_ref()
                        .filter(|p| p.engine == "llama-server")
                        .map(|p| p.server_args(&config)),
                    memory: bench_plan
                        .as_ref()
                        .zip(model)
                        .and_then(|(p, m)| kv_memory(p, &config, m, facts)),
                    flags: config.flags,
                    extra: config.extra,
                    trials_ok: 0,
                    trials_skipped: 0,
                    trials_failed: 0,
                    notes: Vec::new(),
                });
                configs.len() - 1
            }
        };
        count_trial(&mut configs[index], trial);
    }
    for config in configs.iter_mut().filter(|c| c.memory.is_none()) {
        config.memory = stored_memory(detail, &config.hash);
    }
    configs
}

fn count_trial(config: &mut ConfigInfo, trial: &TrialRow) {
    match trial.status.as_str() {
        "ok" => config.trials_ok += 1,
        "skipped" => config.trials_skipped += 1,
        _ => config.trials_failed += 1,
    }
    if trial.status != "ok" {
        if let Some(note) = trial.note.as_ref().filter(|n| !config.notes.contains(n)) {
            config.notes.push(note.clone());
        }
    }
}

/// Model facts read from GGUF files, once per path (`None`: unreadable, or changed since stored).
#[derive(Default)]
pub struct FactsCache(HashMap<String, Option<ModelFacts>>);

impl FactsCache {
    pub fn get(&mut self, model: &ModelInfo) -> Option<&ModelFacts> {
        self.0
            .entry(model.path.clone())
            .or_insert_with(|| {
                let path = Path::new(&model.path);
                // A file of another size is not the model that was measured.
                let same = std::fs::metadata(path).is_ok_and(|m| m.len() == model.size);
                same.then(|| GgufFile::open(path).ok())
                    .flatten()
                    .map(|f| ModelFacts::from_gguf(&f))
            })
            .as_ref()
    }
}

/// KV-cache bytes of a bench config at the context its server was given (llama.cpp's rules).
fn kv_memory(
    plan: &BenchPlan,
    config: &EngineConfig,
    model: &ModelInfo,
    facts: &mut FactsCache,
) -> Option<Memory> {
    let context = u64::from(plan.matrix.context_needed());
    kv_memory_at(&config.flags, Some(context), facts.get(model)?)
}

/// KV-cache bytes with these swept flags at the context `-c` gives, else at `context` (the
/// context a bench plan gives its server).
pub fn kv_memory_at(
    flags: &BTreeMap<String, String>,
    context: Option<u64>,
    facts: &ModelFacts,
) -> Option<Memory> {
    let settings = kv_settings(flags, context)?;
    let kv = plan::plan_kv(facts, &settings)?;
    let flag = |name: &str| flags.get(name).map_or("f16", String::as_str);
    Some(Memory {
        bytes: kv.total_bytes,
        source: format!(
            "KV plan: ctx {}, K {}, V {}",
            kv.ctx,
            flag("-ctk"),
            flag("-ctv")
        ),
    })
}

/// The planner's weights + KV + compute estimate for these swept flags (context as in
/// [`kv_memory_at`]; flash attention on unless `-fa off`).
pub fn memory_needed_at(
    flags: &BTreeMap<String, String>,
    context: Option<u64>,
    facts: &ModelFacts,
) -> Option<u64> {
    let settings = kv_settings(flags, context)?;
    let flash = flags.get("-fa").is_none_or(|v| v != "off");
    plan::memory_needed(facts, &settings, flash)
}

/// The KV settings swept flags give: `-c` (else `context`), `-ctk`/`-ctv`, `-np`, `-ub`.
fn kv_settings(flags: &BTreeMap<String, String>, context: Option<u64>) -> Option<KvSettings> {
    let flag = |name: &str| flags.get(name).map(String::as_str);
    let number = |name: &str| flag(name).and_then(|v| v.parse::<u64>().ok());
    let ctx = number("-c").or(context)?;
    let (k, v) = (flag("-ctk").unwrap_or("f16"), flag("-ctv").unwrap_or("f16"));
    Some(KvSettings {
        parallel: number("-np").unwrap_or(1),
        n_ubatch: number("-ub").unwrap_or(plan::DEFAULT_UBATCH),
        ..KvSettings::new(ctx, GgmlType::from_name(k)?, GgmlType::from_name(v)?)
    })
}

/// The largest byte-valued sample stored for a config (when a run recorded memory itself).
fn stored_memory(detail: &RunDetail, hash: &str) -> Option<Memory> {
    detail
        .trials
        .iter()
        .filter(|t| t.config_hash.as_deref() == Some(hash))
        .flat_map(|t| t.samples.iter())
        // Telemetry's peaks are the whole process or device, not what the config adds.
        .filter(|s| s.source != crate::system::telemetry::trial::SOURCE)
        .filter(|s| s.unit == "bytes" && s.value.is_finite() && s.value >= 0.0)
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .map(|s| Memory {
            bytes: s.value as u64,
            source: format!("stored sample {}", s.metric),
        })
}

fn bench_cells(
    detail: &RunDetail,
    configs: &[ConfigInfo],
    models: &[ModelInfo],
    facts: &mut FactsCache,
) -> Vec<BenchCell> {
    let plan: Option<BenchPlan> = serde_json::from_value(detail.params["plan"].clone()).ok();
    let context = plan.map(|p| u64::from(p.matrix.context_needed()));
    let mut planned = |cell: &Cell| {
        let model = models
            .iter()
            .find(|m| Some(&m.sha256) == cell.model_sha256.as_ref())?;
        memory_needed_at(&cell.flags, context, facts.get(model)?).map(|b| b as f64)
    };
    compare::cells(detail)
        .into_iter()
        .filter(|c| c.kind != "load")
        .map(|mut cell| {
            if cell.energy.measured() {
                cell.energy.plan_bytes = planned(&cell);
            }
            cell
        })
        .map(|cell| BenchCell {
            run_id: detail.run.id,
            config_hash: configs
                .iter()
                .find(|c| c.label == cell.config)
                .map(|c| c.hash.clone()),
            summary: cell.summary(),
            server_median: (!cell.server_values.is_empty())
                .then(|| stats::median(&cell.server_values)),
            cell,
        })
        .collect()
}

fn load_steps(detail: &RunDetail) -> Vec<LoadStep> {
    detail
        .trials
        .iter()
        .filter(|t| t.status == "ok" && t.workload["kind"] == "load")
        .map(|trial| {
            let shape = &trial.workload["shape"];
            let axis = if let Some(n) = shape["users"].as_f64() {
                Some((LoadAxis::Concurrency, n))
            } else {
                shape["rate_per_s"].as_f64().map(|r| (LoadAxis::Rate, r))
            };
            let counter = |suffix: &str| counter_delta(trial, suffix);
            LoadStep {
                run_id: detail.run.id,
                config_hash: trial.config_hash.clone(),
                config_label: config_label(&trial_config(trial)),
                axis,
                table: StepTable::from_trial(trial),
                drafted: counter("spec_decode_num_draft_tokens_total"),
                accepted: counter("spec_decode_num_accepted_tokens_total"),
            }
        })
        .collect()
}

/// How much a server `/metrics` counter rose during a step (last scrape − first).
fn counter_delta(trial: &TrialRow, suffix: &str) -> Option<f64> {
    let values: Vec<f64> = trial
        .samples
        .iter()
        .filter(|s| s.source == "server-metrics" && s.metric.ends_with(suffix))
        .map(|s| s.value)
        .collect();
    let (first, last) = (values.first()?, values.last()?);
    Some(last - first).filter(|d| *d > 0.0)
}

/// The KV cache types of a config as one label: `q8_0`, or `K q8_0 / V f16` when they differ.
pub fn kv_label(flags: &BTreeMap<String, String>) -> String {
    let get = |f: &str| flags.get(f).map(String::as_str).unwrap_or("f16");
    let (k, v) = (get("-ctk"), get("-ctv"));
    if k == v {
        k.to_string()
    } else {
        format!("K {k} / V {v}")
    }
}

/// A config's swept flags other than the KV types, as a label (what KV comparisons hold fixed).
pub fn non_kv_label(flags: &BTreeMap<String, String>) -> String {
    let rest: Vec<String> = flags
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "-ctk" | "-ctv" | "--kv"))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    rest.join(" ")
}

/// A candidate on the speed / memory / fidelity plane.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoPoint {
    pub run_id: i64,
    pub config_hash: String,
    pub label: String,
    /// Mean over the config's tg tests of their median t/s.
    pub speed_tps: Option<f64>,
    pub tests: Vec<String>,
    pub memory: Option<Memory>,
    /// Mean KL-divergence from the `fidelity` table (kind `kld`).
    pub kld: Option<f64>,
    pub optimal: bool,
}

impl ReportData {
    /// The config a row belongs to (run and hash).
    pub fn config(&self, run_id: i64, hash: Option<&str>) -> Option<&ConfigInfo> {
        self.configs
            .iter()
            .find(|c| c.run_id == run_id && Some(c.hash.as_str()) == hash)
    }

    /// Mean KLD of a config from `kld` rows of the same config or of one with the same engine
    /// arguments (a gate candidate run with the flags a bench swept); llama-perplexity's exact
    /// figure wins over the HTTP top-k estimate. A gate baseline's flags have a KLD of zero.
    pub fn mean_kld(&self, config: &ConfigInfo) -> Option<f64> {
        let args = EngineConfig {
            flags: config.flags.clone(),
            extra: config.extra.clone(),
        }
        .args();
        let rows: Vec<&FidelityRow> = self
            .fidelity
            .iter()
            .filter(|f| f.kind == "kld" && f.value.is_some_and(f64::is_finite))
            .filter(|f| f.config_hash.as_ref() == Some(&config.hash) || f.config_args == args)
            .collect();
        let exact: Vec<f64> = rows
            .iter()
            .filter(|f| f.name == "llama-perplexity")
            .filter_map(|f| f.value)
            .collect();
        let values: Vec<f64> = if exact.is_empty() {
            rows.iter().filter_map(|f| f.value).collect()
        } else {
            exact
        };
        if values.is_empty() {
            // The flags a gate measured every candidate against: zero divergence by definition.
            let baseline = self
                .readiness
                .iter()
                .any(|g| g.row.baseline && g.row.flags == args);
            return baseline.then_some(0.0);
        }
        Some(stats::mean(&values))
    }

    /// Every bench config with tg cells, with pareto-optimal ones marked. Fidelity counts only when
    /// every candidate has a KLD (a missing figure cannot be compared).
    pub fn pareto(&self) -> (Vec<ParetoPoint>, bool) {
        let mut points: Vec<ParetoPoint> = Vec::new();
        for config in &self.configs {
            let cells: Vec<&BenchCell> = self
                .bench
                .iter()
                .filter(|b| {
                    b.run_id == config.run_id && b.config_hash.as_deref() == Some(&config.hash)
                })
                .filter(|b| b.cell.kind == "tg" && b.summary.median.is_finite())
                .collect();
            if cells.is_empty() {
                continue;
            }
            let medians: Vec<f64> = cells.iter().map(|b| b.summary.median).collect();
            points.push(ParetoPoint {
                run_id: config.run_id,
                config_hash: config.hash.clone(),
                label: config.label.clone(),
                speed_tps: Some(stats::mean(&medians)),
                tests: cells.iter().map(|b| b.cell.test.clone()).collect(),
                memory: config.memory.clone(),
                kld: self.mean_kld(config),
                optimal: false,
            });
        }
        points.extend(self.readiness.iter().filter_map(gate_point));
        let with_fidelity = !points.is_empty() && points.iter().all(|p| p.kld.is_some());
        let vectors: Vec<Vec<Option<f64>>> = points
            .iter()
            .map(|p| {
                let mut v = vec![p.speed_tps, p.memory.as_ref().map(|m| -(m.bytes as f64))];
                if with_fidelity {
                    v.push(p.kld.map(|k| -k));
                }
                v
            })
            .collect();
        for (point, optimal) in points.iter_mut().zip(pareto_front(&vectors)) {
            point.optimal = optimal;
        }
        (points, with_fidelity)
    }
}

/// The KV bytes `bakeoff gate` planned for a candidate at its served context.
fn gate_memory(c: &GateCandidate) -> Option<Memory> {
    c.row.kv_bytes.map(|bytes| Memory {
        bytes,
        source: "gate: KV plan at the served context".into(),
    })
}

/// A gate candidate on the plane: its server-reported tg on the greedy prompts, its planned KV
/// bytes and its KLD against the baseline. Blocked candidates have no place.
fn gate_point(c: &GateCandidate) -> Option<ParetoPoint> {
    if c.row.blocker.is_some() {
        return None;
    }
    Some(ParetoPoint {
        run_id: c.run_id,
        config_hash: c.config_hash.clone().unwrap_or_default(),
        label: format!("{} ({})", c.row.candidate, c.row.flags.join(" ")),
        speed_tps: c.row.tg_tps,
        tests: vec!["gate greedy prompts (server t/s)".into()],
        memory: gate_memory(c),
        kld: c.mean_kld(),
        optimal: false,
    })
}

/// Which vectors no other vector dominates (every dimension higher-is-better). A dimension
/// missing (`None`) in any vector is left out of every comparison.
pub fn pareto_front(vectors: &[Vec<Option<f64>>]) -> Vec<bool> {
    let dims = vectors.iter().map(Vec::len).min().unwrap_or(0);
    let usable: Vec<usize> = (0..dims)
        .filter(|&d| vectors.iter().all(|v| v[d].is_some_and(f64::is_finite)))
        .collect();
    let value = |v: &Vec<Option<f64>>, d: usize| v[d].unwrap_or(f64::NAN);
    let dominates = |a: &Vec<Option<f64>>, b: &Vec<Option<f64>>| {
        usable.iter().all(|&d| value(a, d) >= value(b, d))
            && usable.iter().any(|&d| value(a, d) > value(b, d))
    };
    vectors
        .iter()
        .map(|b| !vectors.iter().any(|a| dominates(a, b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_the_undominated() {
        let v = |s: f64, m: f64| vec![Some(s), Some(-m)];
        // fast+big, slow+small, and one both slower and bigger than the first.
        let front = pareto_front(&[v(100.0, 10.0), v(80.0, 5.0), v(90.0, 12.0)]);
        assert_eq!(front, [true, true, false]);
        // Equal points do not dominate each other.
        assert_eq!(pareto_front(&[v(1.0, 1.0), v(1.0, 1.0)]), [true, true]);
        // A dimension one candidate lacks is ignored for all.
        let front = pareto_front(&[vec![Some(2.0), None], vec![Some(1.0), Some(5.0)]]);
        assert_eq!(front, [true, false]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn kv_labels() {
        let flags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(kv_label(&flags(&[])), "f16");
        assert_eq!(
            kv_label(&flags(&[("-ctk", "q8_0"), ("-ctv", "q8_0")])),
            "q8_0"
        );
        assert_eq!(kv_label(&flags(&[("-ctk", "q8_0")])), "K q8_0 / V f16");
        assert_eq!(
            non_kv_label(&flags(&[("-ctk", "q8_0"), ("-fa", "on")])),
            "-fa on"
        );
    }
}
