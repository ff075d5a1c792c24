//! The measuring seam: runners hand trials, samples, skipped configurations and engine logs to a
//! [`TrialSink`] and never name the store. The store implements it; [`MemorySink`] records
//! everything in memory so the runners can be tested without a database.

use crate::domain::{EngineConfig, Unit};
use crate::{Error, Result};
use serde::Serialize;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// A trial about to be measured.
pub struct NewTrial<'a> {
    pub config: Option<&'a EngineConfig>,
    pub engine_id: Option<i64>,
    pub model_id: Option<i64>,
    pub workload: &'a serde_json::Value,
    pub repetition: u32,
}

impl<'a> NewTrial<'a> {
    /// Repetition `repetition` of `workload` on `config`, with no engine or model row named.
    pub fn new(
        config: Option<&'a EngineConfig>,
        workload: &'a serde_json::Value,
        repetition: u32,
    ) -> Self {
        NewTrial {
            config,
            engine_id: None,
            model_id: None,
            workload,
            repetition,
        }
    }
}

/// One stored measured value.
#[derive(Debug, Clone, Serialize)]
pub struct SampleRow {
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub source: String,
    pub seq: i64,
}

/// One stored trial with its samples.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub id: i64,
    pub config_hash: Option<String>,
    pub flags: Option<serde_json::Value>,
    pub engine: Option<String>,
    pub model_sha256: Option<String>,
    /// The trial's engine and model rows.
    pub engine_id: Option<i64>,
    pub model_id: Option<i64>,
    /// The engine's build name (`--build NAME=PATH`), else its version label.
    pub build: Option<String>,
    /// The model's display name: its file name without the extension.
    pub model_name: Option<String>,
    pub workload: serde_json::Value,
    pub repetition: i64,
    pub status: String,
    pub note: Option<String>,
    pub samples: Vec<SampleRow>,
}

/// Where measurements go. Every call commits at once, so an interrupted run keeps what it measured.
pub trait TrialSink {
    /// Start a trial of `run_id`; returns its id.
    fn begin_trial(&self, run_id: i64, trial: &NewTrial) -> Result<i64>;

    /// Finish a trial: `ok`, `failed` or `skipped`, with an optional note.
    fn end_trial(&self, trial_id: i64, status: &str, note: Option<&str>) -> Result<()>;

    /// Store one measured value of a trial.
    fn sample(
        &self,
        trial_id: i64,
        metric: &str,
        value: f64,
        unit: Unit,
        source: &str,
        seq: usize,
    ) -> Result<()>;

    /// Move a trial's `client` samples with these sequence numbers (request indices) out of the
    /// measured window (source `client-excluded`): load learns a step's cooldown only at its end.
    fn exclude_samples(&self, trial_id: i64, seqs: &[usize]) -> Result<()>;

    /// Keep an engine log (its fatal lines and last lines) with the run.
    fn engine_log(&self, run_id: i64, trial_id: Option<i64>, path: &Path) -> Result<()>;

    /// The directory for a run's files (engine logs, llama-bench output).
    fn run_dir(&self, run_id: i64) -> PathBuf;

    /// Every trial of a run, with its samples (what `--resume` skips).
    fn trials(&self, run_id: i64) -> Result<Vec<TrialRow>>;

    /// One trial, with its samples.
    fn trial(&self, trial_id: i64) -> Result<TrialRow>;

    /// Record a configuration that was not measured, with the reason (rejected by the engine,
    /// failed to start, not applicable to the engine): one `skipped` trial over all tests.
    fn skip_config(
        &self,
        run_id: i64,
        config: &EngineConfig,
        engine_id: i64,
        model_id: i64,
        reason: &str,
    ) -> Result<()> {
        let workload = serde_json::json!({ "test": "(all)" });
        let trial = NewTrial {
            config: Some(config),
            engine_id: Some(engine_id),
            model_id: Some(model_id),
            workload: &workload,
            repetition: 0,
        };
        let id = self.begin_trial(run_id, &trial)?;
        self.end_trial(id, "skipped", Some(reason))
    }
}

/// Refuse a value that is not a finite number: an `inf` or `NaN` in the store reads as a
/// measurement and poisons every statistic over it. Runners turn such figures into failed trials
/// with a reason first; this is the last guard, for every sink.
pub fn check_finite(trial_id: i64, metric: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(Error::engine(format!(
        "refusing to store {metric} = {value} for trial {trial_id}: not a finite number"
    )))
}

/// An engine log handed to a [`MemorySink`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedFile {
    pub run_id: i64,
    pub trial_id: Option<i64>,
    pub path: PathBuf,
}

#[derive(Debug, Default)]
struct Recorded {
    /// (run id, trial), in the order begun; a trial's id is its index + 1.
    trials: Vec<(i64, TrialRow)>,
    logs: Vec<LoggedFile>,
}

/// A sink that keeps everything in memory, for tests of the runners (here and in other crates).
/// Trial ids count from 1; with no engine or model registry, a trial's `engine` and
/// `model_sha256` read `engine <id>` and `model <id>`.
#[derive(Debug, Default)]
pub struct MemorySink {
    dir: PathBuf,
    recorded: RefCell<Recorded>,
}

impl MemorySink {
    /// A sink whose runs' files go under `dir/<run id>/`.
    pub fn new(dir: &Path) -> Self {
        MemorySink {
            dir: dir.to_path_buf(),
            recorded: RefCell::default(),
        }
    }

    /// Every trial of every run, in the order begun.
    pub fn all_trials(&self) -> Vec<TrialRow> {
        let recorded = self.recorded.borrow();
        recorded.trials.iter().map(|(_, t)| t.clone()).collect()
    }

    /// The engine logs handed over, in order.
    pub fn logs(&self) -> Vec<LoggedFile> {
        self.recorded.borrow().logs.clone()
    }

    fn with_trial<T>(&self, trial_id: i64, f: impl FnOnce(&mut TrialRow) -> T) -> Result<T> {
        let mut recorded = self.recorded.borrow_mut();
        let index = usize::try_from(trial_id - 1).ok();
        match index.and_then(|i| recorded.trials.get_mut(i)) {
            Some((_, trial)) => Ok(f(trial)),
            None => Err(Error::input(format!(
                "no trial {trial_id} in the memory sink"
            ))),
        }
    }
}

impl TrialSink for MemorySink {
    fn begin_trial(&self, run_id: i64, trial: &NewTrial) -> Result<i64> {
        let mut recorded = self.recorded.borrow_mut();
        let id = recorded.trials.len() as i64 + 1;
        let row = TrialRow {
            id,
            config_hash: trial.config.map(EngineConfig::hash),
            flags: trial.config.and_then(|c| serde_json::to_value(c).ok()),
            engine: trial.engine_id.map(|e| format!("engine {e}")),
            model_sha256: trial.model_id.map(|m| format!("model {m}")),
            engine_id: trial.engine_id,
            model_id: trial.model_id,
            build: trial.engine_id.map(|e| format!("engine {e}")),
            model_name: trial.model_id.map(|m| format!("model {m}")),
            workload: trial.workload.clone(),
            repetition: i64::from(trial.repetition),
            status: "running".into(),
            note: None,
            samples: Vec::new(),
        };
        recorded.trials.push((run_id, row));
        Ok(id)
    }

    fn end_trial(&self, trial_id: i64, status: &str, note: Option<&str>) -> Result<()> {
        self.with_trial(trial_id, |trial| {
            trial.status = status.to_string();
            trial.note = note.map(str::to_string);
        })
    }

    fn sample(
        &self,
        trial_id: i64,
        metric: &str,
        value: f64,
        unit: Unit,
        source: &str,
        seq: usize,
    ) -> Result<()> {
        check_finite(trial_id, metric, value)?;
        let sample = SampleRow {
            metric: metric.to_string(),
            value,
            unit: unit.as_str().to_string(),
            source: source.to_string(),
            seq: seq as i64,
        };
        self.with_trial(trial_id, |trial| trial.samples.push(sample))
    }

    fn exclude_samples(&self, trial_id: i64, seqs: &[usize]) -> Result<()> {
        self.with_trial(trial_id, |trial| {
            let window = trial.samples.iter_mut().filter(|s| s.source == "client");
            for sample in window.filter(|s| seqs.contains(&(s.seq as usize))) {
                sample.source = "client-excluded".into();
            }
        })
    }

    fn engine_log(&self, run_id: i64, trial_id: Option<i64>, path: &Path) -> Result<()> {
        let logged = LoggedFile {
            run_id,
            trial_id,
            path: path.to_path_buf(),
        };
        self.recorded.borrow_mut().logs.push(logged);
        Ok(())
    }

    fn run_dir(&self, run_id: i64) -> PathBuf {
        self.dir.join(run_id.to_string())
    }

    fn trials(&self, run_id: i64) -> Result<Vec<TrialRow>> {
        let recorded = self.recorded.borrow();
        let of_run = recorded.trials.iter().filter(|(run, _)| *run == run_id);
        Ok(of_run.map(|(_, t)| t.clone()).collect())
    }

    fn trial(&self, trial_id: i64) -> Result<TrialRow> {
        self.with_trial(trial_id, |trial| trial.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_samples_are_refused_with_the_metric_named() {
        let sink = MemorySink::new(Path::new("/runs"));
        let workload = serde_json::json!({"test": "pp8"});
        let trial = NewTrial::new(None, &workload, 0);
        let id = sink.begin_trial(1, &trial).unwrap();
        let error = sink
            .sample(
                id,
                "pp_tps",
                f64::INFINITY,
                Unit::TokensPerSecond,
                "client",
                0,
            )
            .unwrap_err();
        assert!(error.to_string().contains("pp_tps = inf"), "{error}");
        assert!(sink
            .sample(id, "ttft_ms", f64::NAN, Unit::Milliseconds, "client", 0)
            .is_err());
        assert!(sink.trials(1).unwrap()[0].samples.is_empty());
    }

    #[test]
    fn memory_sink_records_trials_samples_and_skips_per_run() {
        let sink = MemorySink::new(Path::new("/tmp/x"));
        let config = EngineConfig::default().with_flag("-ctk", "q8_0");
        let workload = serde_json::json!({"test": "tg16"});
        let trial = NewTrial {
            config: Some(&config),
            engine_id: Some(1),
            model_id: Some(2),
            workload: &workload,
            repetition: 3,
        };
        let id = sink.begin_trial(7, &trial).unwrap();
        sink.sample(id, "tg_tps", 10.0, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        sink.end_trial(id, "ok", None).unwrap();
        sink.skip_config(8, &config, 1, 2, "rejected").unwrap();
        let stored = sink.trials(7).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].status.as_str(), stored[0].repetition), ("ok", 3));
        assert_eq!(stored[0].config_hash, Some(config.hash()));
        assert_eq!(stored[0].samples[0].value, 10.0);
        assert_eq!(
            (stored[0].engine_id, stored[0].model_id),
            (Some(1), Some(2))
        );
        assert_eq!(stored[0].build.as_deref(), Some("engine 1"));
        let skipped = sink.trials(8).unwrap();
        assert_eq!(skipped[0].note.as_deref(), Some("rejected"));
        assert!(sink.trial(3).is_err());
        assert_eq!(sink.run_dir(7), Path::new("/tmp/x/7"));
    }
}
