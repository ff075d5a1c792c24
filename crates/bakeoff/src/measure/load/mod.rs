//! `bakeoff load`: serving load tests. Shapes (concurrency, open-loop rates, max throughput, a
//! GuideLLM-style sweep) run as steps; each step is one stored trial whose per-request and
//! per-token samples are committed as they arrive, with the server's own `/metrics` and `/slots`
//! view beside them. Step tables are computed from the stored raw samples.

pub mod client;
pub mod executor;
pub mod metrics;
pub mod scrape;
pub mod selftest;
mod sizing;
pub mod workload;

use crate::domain::{EngineConfig, Unit};
use crate::engines::http::Http;
use crate::measure::sink::{NewTrial, TrialRow, TrialSink};
use crate::measure::watch::{Watch, WatchConfig};
use crate::Result;
use executor::{run_step, Progress, Shape, StepLimits};
use metrics::{Distribution, RequestRecord, Slo};
use serde::{Deserialize, Serialize};
use serde_json::json;
pub use sizing::ServerSizing;
use std::collections::BTreeMap;
use workload::{Generator, WorkloadSpec};

/// Fewer completed requests than this inside a step's window earn a warning.
pub const MIN_WINDOW_REQUESTS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadPlan {
    pub shapes: Vec<Shape>,
    /// GuideLLM-style sweep: synchronous, max throughput, then this many constant rates between.
    pub sweep_rates: Option<usize>,
    pub workload: WorkloadSpec,
    pub limits: StepLimits,
    pub seed: u64,
    pub slo: Slo,
}

pub enum LoadEvent<'a> {
    StepStart {
        label: &'a str,
    },
    Progress {
        label: &'a str,
        progress: &'a Progress,
    },
    Warning(String),
}

/// One step's figures, computed from stored samples.
#[derive(Debug, Clone, Serialize)]
pub struct StepTable {
    pub step: String,
    pub completed: u64,
    pub errors: BTreeMap<String, u64>,
    pub request_throughput: f64,
    pub output_tps: f64,
    pub goodput_rps: Option<f64>,
    pub ttft_ms: Distribution,
    pub itl_ms: Distribution,
    pub tpot_ms: Distribution,
    pub e2e_ms: Distribution,
    pub client_cpu_cores: f64,
    pub note: Option<String>,
    /// Output tokens per joule over the whole step and its mean watts, where telemetry
    /// measured energy; the peak memory (GPU's, else the engine's resident peak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_j: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_peak_bytes: Option<f64>,
}

impl StepTable {
    /// Rebuild a step's table from a stored trial (samples with source `client` are inside the
    /// measured window; `client-excluded` ones fell in warmup or cooldown).
    pub fn from_trial(trial: &TrialRow) -> Self {
        let values = |metric: &str| -> Vec<f64> {
            trial
                .samples
                .iter()
                .filter(|s| s.metric == metric && s.source == "client")
                .map(|s| s.value)
                .collect()
        };
        let scalar = |metric: &str| {
            trial
                .samples
                .iter()
                .find(|s| s.metric == metric)
                .map(|s| s.value)
        };
        let telemetry = |metric: &str| {
            (trial.samples.iter())
                .find(|s| s.metric == metric && s.source == crate::system::telemetry::trial::SOURCE)
                .map(|s| s.value)
        };
        let errors = trial
            .samples
            .iter()
            .filter_map(|s| {
                s.metric
                    .strip_prefix("errors:")
                    .map(|k| (k.to_string(), s.value as u64))
            })
            .collect();
        StepTable {
            step: trial.workload["test"].as_str().unwrap_or("?").to_string(),
            completed: values("e2e_ms").len() as u64,
            errors,
            request_throughput: scalar("request_throughput").unwrap_or(0.0),
            output_tps: scalar("output_tps").unwrap_or(0.0),
            goodput_rps: scalar("goodput_rps"),
            ttft_ms: Distribution::of(&values("ttft_ms")),
            itl_ms: Distribution::of(&values("itl_ms")),
            tpot_ms: Distribution::of(&values("tpot_ms")),
            e2e_ms: Distribution::of(&values("e2e_ms")),
            client_cpu_cores: scalar("client_cpu_cores").unwrap_or(0.0),
            note: trial.note.clone(),
            tokens_per_j: telemetry("tokens_per_j"),
            power_w: telemetry("power_w_mean"),
            mem_peak_bytes: telemetry("vram_peak_bytes").or_else(|| telemetry("rss_peak_bytes")),
        }
    }
}

pub struct LoadRunner<'a> {
    pub sink: &'a dyn TrialSink,
    pub run_id: i64,
    pub http: &'a Http,
    pub generator: &'a Generator,
    pub config: &'a EngineConfig,
    pub engine_id: Option<i64>,
    pub model_id: Option<i64>,
    /// Model name for OpenAI-style requests.
    pub model_name: Option<String>,
    /// The client's measured ceiling (streamed tok/s), to warn when a run comes near it.
    pub ceiling_tps: Option<f64>,
    /// Our own processes (the engine), so their CPU use is not counted as noise.
    pub tracked_pids: Vec<i32>,
    /// Why the engine can no longer answer (a launched one died or froze), asked after a step
    /// with failed requests; `None` while it can (always, for an attached server).
    pub trouble: &'a dyn Fn() -> Option<String>,
    /// What each step watches besides its requests (noise, telemetry).
    pub watch: &'a WatchConfig,
}

/// Why a step is failed rather than ok: its engine is gone (the run stops there), or every
/// request failed (the next step is still tried).
fn step_failure(records: &[RequestRecord], trouble: Option<&str>) -> Option<String> {
    let failed: Vec<&RequestRecord> = records.iter().filter(|r| r.error.is_some()).collect();
    let first = failed.first()?;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &failed {
        *kinds
            .entry(r.error.as_deref().unwrap_or("other"))
            .or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} × {k}")).collect();
    let counts = format!(
        "{} of {} requests failed ({})",
        failed.len(),
        records.len(),
        kinds.join(", ")
    );
    let message = first.error_message.as_deref().unwrap_or("no message");
    match trouble {
        Some(trouble) => Some(format!(
            "{trouble} during the step; {counts}; first: {message}"
        )),
        None if failed.len() == records.len() => {
            Some(format!("every request failed: {counts}; first: {message}"))
        }
        None => None,
    }
}

impl LoadRunner<'_> {
    pub fn run(
        &self,
        plan: &LoadPlan,
        observe: &mut dyn FnMut(LoadEvent),
    ) -> Result<Vec<StepTable>> {
        let mut tables = Vec::new();
        let mut shapes = plan.shapes.clone();
        if plan.sweep_rates.is_some() {
            shapes = vec![Shape::Concurrency(1), Shape::MaxThroughput];
        }
        let mut index = 0;
        while index < shapes.len() {
            if crate::engines::process::interrupted().is_some() {
                break;
            }
            let (table, trouble) = self.step(plan, &shapes[index], index, 0, observe)?;
            tables.push(table);
            if let Some(trouble) = trouble {
                let steps = tables.len();
                let message =
                    format!("{trouble}; the run stops after {steps} step(s), each stored");
                return Err(crate::Error::engine(message));
            }
            index += 1;
            if let (Some(n), 2) = (plan.sweep_rates, index) {
                // Rates evenly between the synchronous and the maximum request rate.
                let (low, high) = (tables[0].request_throughput, tables[1].request_throughput);
                if high > low && low > 0.0 {
                    shapes.extend((1..=n).map(|i| Shape::Rate {
                        rate: low + (high - low) * i as f64 / (n + 1) as f64,
                        burstiness: None,
                    }));
                } else {
                    observe(LoadEvent::Warning(format!("sweep: max throughput ({high:.2} req/s) is not above synchronous ({low:.2} req/s); no rates in between")));
                }
            }
        }
        Ok(tables)
    }

    /// The first shape of `plan` as one repetition of a tune (stored with that repetition
    /// number): the prompts are fresh for each repetition, as they are for each step of a run.
    /// Returns the step's table and, when its engine is gone, why.
    pub fn repetition(
        &self,
        plan: &LoadPlan,
        repetition: u32,
        observe: &mut dyn FnMut(LoadEvent),
    ) -> Result<(StepTable, Option<String>)> {
        let shape = plan.shapes.first().unwrap_or(&Shape::Concurrency(1));
        self.step(plan, shape, repetition as usize, repetition, observe)
    }

    fn step(
        &self,
        plan: &LoadPlan,
        shape: &Shape,
        index: usize,
        repetition: u32,
        observe: &mut dyn FnMut(LoadEvent),
    ) -> Result<(StepTable, Option<String>)> {
        let label = shape.label();
        observe(LoadEvent::StepStart { label: &label });
        let workload = json!({ "test": label, "kind": "load", "shape": shape, "workload": plan.workload.describe(), "seed": plan.seed });
        let trial = NewTrial {
            config: Some(self.config),
            engine_id: self.engine_id,
            model_id: self.model_id,
            workload: &workload,
            repetition,
        };
        let trial_id = self.sink.begin_trial(self.run_id, &trial)?;
        let mut store_error = None;
        let warmup = plan.limits.warmup.as_secs_f64();
        let mut on_record = |record: &RequestRecord, progress: &Progress| {
            if store_error.is_none() {
                if let Err(e) = self.store_record(trial_id, record, warmup) {
                    store_error = Some(e);
                }
            }
            if progress.done % 10 == 1 {
                observe(LoadEvent::Progress {
                    label: &label,
                    progress,
                });
            }
        };
        let seed = plan.seed.wrapping_add(index as u64);
        let watch = Watch::start(&self.tracked_pids, self.watch);
        let result = run_step(
            self.http,
            self.generator,
            shape,
            &plan.limits,
            seed,
            index * 1_000_000,
            self.model_name.as_deref(),
            &mut on_record,
        );
        if let Some(e) = store_error {
            return Err(e);
        }
        let end = result.records.iter().map(|r| r.end_s).fold(0.0, f64::max);
        let to = (end - plan.limits.cooldown.as_secs_f64()).max(warmup);
        let summary = metrics::summarize(
            &label,
            &result.records,
            warmup,
            to,
            &plan.slo,
            result.saturated.clone(),
        );
        self.store_step(trial_id, &summary, &result, to)?;
        // Energy over the whole step (warmup and cooldown too), per token of every request.
        let watched = watch.finish();
        let tokens: u64 = result
            .records
            .iter()
            .map(RequestRecord::output_tokens)
            .sum();
        watched.store(self.sink, trial_id, Some(tokens as f64))?;
        let mut notes = Vec::new();
        for warning in &watched.flags {
            observe(LoadEvent::Warning(format!("{label}: {warning}")));
            notes.push(warning.clone());
        }
        let any_failed = result.records.iter().any(|r| r.error.is_some());
        let trouble = any_failed.then(|| (self.trouble)()).flatten();
        let failure = step_failure(&result.records, trouble.as_deref());
        // A failed step says why; "too few requests completed" would only repeat it.
        if summary.completed < MIN_WINDOW_REQUESTS && failure.is_none() {
            let warning = format!(
                "only {} request(s) completed inside the measured window{}",
                summary.completed,
                sizing::window_remedy(shape, &plan.limits, &result.records)
            );
            observe(LoadEvent::Warning(format!("{label}: {warning}")));
            notes.push(warning);
        }
        if let Some(reason) = &result.saturated {
            observe(LoadEvent::Warning(format!("{label}: {reason}")));
            notes.push(reason.clone());
        }
        if let Some(ceiling) = self.ceiling_tps {
            if summary.output_tps > 0.5 * ceiling {
                let warning = format!("output {:.0} tok/s is within 50 % of the client's ceiling ({ceiling:.0} tok/s): figures may be client-bound", summary.output_tps);
                observe(LoadEvent::Warning(format!("{label}: {warning}")));
                notes.push(warning);
            }
        }
        let status = match &failure {
            Some(failure) => {
                observe(LoadEvent::Warning(format!("{label}: failed: {failure}")));
                notes.insert(0, failure.clone());
                "failed"
            }
            None => "ok",
        };
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        self.sink.end_trial(trial_id, status, note.as_deref())?;
        let stored = self.sink.trial(trial_id)?;
        Ok((StepTable::from_trial(&stored), trouble))
    }

    fn store_record(&self, trial_id: i64, r: &RequestRecord, warmup_s: f64) -> Result<()> {
        // Cooldown is only known at the end; requests are re-marked then (see store_step).
        let source = if r.scheduled_s < warmup_s {
            "client-excluded"
        } else {
            "client"
        };
        let s = |metric: &str, value: f64, unit: Unit| {
            self.sink
                .sample(trial_id, metric, value, unit, source, r.index)
        };
        if let Some(kind) = &r.error {
            return s(&format!("error:{kind}"), 1.0, Unit::Count);
        }
        s("e2e_ms", r.e2e_ms(), Unit::Milliseconds)?;
        s("queue_ms", r.queue_ms(), Unit::Milliseconds)?;
        s("output_tokens", r.output_tokens() as f64, Unit::Tokens)?;
        if let Some(v) = r.ttft_ms() {
            s("ttft_ms", v, Unit::Milliseconds)?;
        }
        if let Some(v) = r.tpot_ms() {
            s("tpot_ms", v, Unit::Milliseconds)?;
        }
        if let Some(v) = r.prompt_tokens {
            s("prompt_tokens", v as f64, Unit::Tokens)?;
        }
        if let Some(v) = r.cached_tokens {
            s("cached_tokens", v as f64, Unit::Tokens)?;
        }
        // Per-token gaps carry their request's index (in order of insertion), so the cooldown
        // re-marking below applies to them too.
        for gap in r.itl_ms() {
            s("itl_ms", gap, Unit::Milliseconds)?;
        }
        Ok(())
    }

    fn store_step(
        &self,
        trial_id: i64,
        summary: &metrics::StepSummary,
        result: &executor::StepResult,
        window_end_s: f64,
    ) -> Result<()> {
        // Requests that finished after the measured window fell in the cooldown: exclude them too.
        let late: Vec<usize> = result
            .records
            .iter()
            .filter(|r| r.end_s > window_end_s)
            .map(|r| r.index)
            .collect();
        self.sink.exclude_samples(trial_id, &late)?;
        let put = |metric: &str, value: f64, unit: Unit, seq: usize| {
            self.sink.sample(trial_id, metric, value, unit, "step", seq)
        };
        put(
            "request_throughput",
            summary.request_throughput,
            Unit::Count,
            0,
        )?;
        put("output_tps", summary.output_tps, Unit::TokensPerSecond, 0)?;
        put("window_s", summary.window_s, Unit::Seconds, 0)?;
        put("client_cpu_cores", result.client_cpu_cores, Unit::Count, 0)?;
        if let Some(goodput) = summary.goodput_rps {
            put("goodput_rps", goodput, Unit::Count, 0)?;
        }
        for (kind, count) in &summary.errors {
            put(&format!("errors:{kind}"), *count as f64, Unit::Count, 0)?;
        }
        for (second, tps) in summary.timeline_tps.iter().enumerate() {
            put("timeline_output_tps", *tps, Unit::TokensPerSecond, second)?;
        }
        for (second, name, value) in &result.server_samples {
            self.sink.sample(
                trial_id,
                name,
                *value,
                Unit::Count,
                "server-metrics",
                *second,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::prompts::TokenSource;
    use crate::measure::sink::MemorySink;
    use selftest::{Fault, ScriptedEndpoint};
    use std::path::Path;
    use std::time::Duration;
    use workload::LengthDist;

    /// Closed-loop steps of `requests` requests each, 4 prompt tokens in, 3 tokens out.
    fn plan(shapes: Vec<Shape>, requests: usize, cooldown: Duration) -> LoadPlan {
        LoadPlan {
            shapes,
            sweep_rates: None,
            workload: WorkloadSpec::Synthetic {
                input: LengthDist::Fixed(4),
                output: LengthDist::Fixed(3),
            },
            limits: StepLimits {
                duration: None,
                requests: Some(requests),
                warmup: Duration::ZERO,
                cooldown,
                max_inflight: 2,
                stop_on_saturation: false,
            },
            seed: 1,
            slo: Slo::default(),
        }
    }

    /// Run `plan` against a scripted endpoint into `sink`; returns the tables and the warnings.
    fn run(sink: &MemorySink, plan: &LoadPlan) -> (Vec<StepTable>, Vec<String>) {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let http = Http::new(&endpoint.url, Duration::from_secs(10));
        let mut warnings = Vec::new();
        let tables = run_against(sink, plan, &http, &|| None, &mut warnings).unwrap();
        (tables, warnings)
    }

    fn run_against(
        sink: &MemorySink,
        plan: &LoadPlan,
        http: &Http,
        trouble: &dyn Fn() -> Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<StepTable>> {
        let source = TokenSource::fixed(vec![1, 2, 3, 4]);
        let generator = Generator::new(plan.workload.clone(), 1, Some(source)).unwrap();
        let config = EngineConfig::default().with_flag("-np", "2");
        let runner = LoadRunner {
            sink,
            run_id: 4,
            http,
            generator: &generator,
            config: &config,
            engine_id: Some(5),
            model_id: None,
            model_name: None,
            ceiling_tps: None,
            tracked_pids: Vec::new(),
            trouble,
            watch: &WatchConfig::default(),
        };
        runner.run(plan, &mut |event| {
            if let LoadEvent::Warning(warning) = event {
                warnings.push(warning);
            }
        })
    }

    fn short_bounds(url: &str) -> Http {
        let timeouts = crate::engines::http::Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_millis(500),
            idle: Duration::from_millis(300),
        };
        Http::with_timeouts(url, timeouts)
    }

    #[test]
    fn a_step_whose_requests_all_failed_is_a_failed_step_and_the_next_step_runs() {
        // Regression: steps of only HTTP 500s, truncated streams or bad JSON were stored as ok.
        for (fault, kind) in [
            (Fault::Http500, "http_500"),
            (Fault::Truncate(1), "truncated"),
            (Fault::BadJson, "bad_json"),
            (Fault::Stall(1), "timeout"),
            (Fault::Hang, "timeout"),
        ] {
            let endpoint = ScriptedEndpoint::faulty(0, fault).unwrap();
            let sink = MemorySink::new(Path::new("/runs"));
            let shapes = vec![Shape::Concurrency(1), Shape::Concurrency(2)];
            let plan = plan(shapes, 2, Duration::ZERO);
            let mut warnings = Vec::new();
            let http = short_bounds(&endpoint.url);
            let tables = run_against(&sink, &plan, &http, &|| None, &mut warnings).unwrap();
            assert_eq!(tables.len(), 2, "{fault:?}: the second step still ran");
            assert_eq!(
                tables[0].errors.get(kind),
                Some(&2),
                "{fault:?}: {:?}",
                tables[0].errors
            );
            for trial in sink.trials(4).unwrap() {
                assert_eq!(trial.status, "failed", "{fault:?}");
                let note = trial.note.unwrap();
                assert!(
                    note.starts_with("every request failed: 2 of 2"),
                    "{fault:?}: {note}"
                );
            }
        }
    }

    #[test]
    fn a_step_whose_engine_died_is_failed_and_ends_the_run() {
        let endpoint = ScriptedEndpoint::faulty(0, Fault::Http500).unwrap();
        let sink = MemorySink::new(Path::new("/runs"));
        let shapes = vec![Shape::Concurrency(1), Shape::Concurrency(2)];
        let plan = plan(shapes, 2, Duration::ZERO);
        let died = || Some("llama-server (pid 7) was killed by signal 9 (SIGKILL)".to_string());
        let http = short_bounds(&endpoint.url);
        let error = run_against(&sink, &plan, &http, &died, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("killed by signal 9"), "{error}");
        let trials = sink.trials(4).unwrap();
        assert_eq!(trials.len(), 1, "no step after the engine died");
        let note = trials[0].note.as_deref().unwrap();
        assert!(
            note.contains("signal 9 (SIGKILL) during the step"),
            "{note}"
        );
        assert_eq!(trials[0].status, "failed");
    }

    fn count(trial: &TrialRow, metric: &str, source: &str) -> usize {
        let samples = trial.samples.iter();
        samples
            .filter(|s| s.metric == metric && s.source == source)
            .count()
    }

    #[test]
    fn each_step_is_one_trial_with_every_request_and_token_gap() {
        let sink = MemorySink::new(Path::new("/runs"));
        let shapes = vec![Shape::Concurrency(1), Shape::Concurrency(2)];
        let (tables, _) = run(&sink, &plan(shapes, 6, Duration::ZERO));
        let steps: Vec<(&str, u64)> = tables
            .iter()
            .map(|t| (t.step.as_str(), t.completed))
            .collect();
        assert_eq!(steps, [("c1", 6), ("c2", 6)]);
        let trials = sink.trials(4).unwrap();
        assert_eq!(trials.len(), 2);
        for trial in &trials {
            assert_eq!(trial.status, "ok");
            assert_eq!(trial.workload["kind"], "load");
            assert_eq!(count(trial, "e2e_ms", "client"), 6);
            // Three tokens per request: two gaps each.
            assert_eq!(count(trial, "itl_ms", "client"), 12);
            assert_eq!(count(trial, "request_throughput", "step"), 1);
            let prompt = trial.samples.iter().find(|s| s.metric == "prompt_tokens");
            assert_eq!(prompt.map(|s| s.value), Some(4.0));
        }
        assert_eq!(tables[1].errors, BTreeMap::new());
    }

    #[test]
    fn requests_ending_in_the_cooldown_leave_the_measured_window() {
        // The cooldown outlasts the step, so every request ended after the window closed.
        let sink = MemorySink::new(Path::new("/runs"));
        let plan = plan(vec![Shape::Concurrency(2)], 4, Duration::from_secs(3600));
        let (tables, warnings) = run(&sink, &plan);
        assert_eq!(tables[0].completed, 0);
        let trial = &sink.trials(4).unwrap()[0];
        assert_eq!(count(trial, "e2e_ms", "client"), 0);
        assert_eq!(count(trial, "e2e_ms", "client-excluded"), 4);
        assert_eq!(count(trial, "itl_ms", "client-excluded"), 8);
        let few = warnings.iter().any(|w| w.contains("only 0 request(s)"));
        assert!(few, "{warnings:?}");
        // A request-count step: more requests, or a shorter cooldown, widen the window.
        assert!(trial
            .note
            .as_deref()
            .unwrap()
            .contains("raise --requests (or shorten --warmup/--cooldown)"));
    }
}
