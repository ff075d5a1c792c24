//! The bench runner: for each configuration (one engine start each), every test, warmups and
//! repetitions (fixed, or adaptive until the median's CI is tight enough), through a real
//! llama-server with exact token counts. Every sample is stored as it is measured.

use super::matrix::{Matrix, PlannedConfig, PromptSet, Test};
use super::noise::{self, CpuSnapshot};
use super::prompts::TokenSource;
use super::sink::{NewTrial, TrialSink};
use super::stats::Summary;
use crate::domain::{EngineConfig, Unit};
use crate::engines::http::{Flow, Http};
use crate::engines::llama_server::{LlamaServer, ServerSpec};
use crate::engines::process;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Relative disagreement between client and server figures above which a trial is flagged.
pub const AGREEMENT_TOLERANCE: f64 = 0.05;

/// Everything a bench run needs; stored with the run so `--resume` can rebuild it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchPlan {
    pub model: PathBuf,
    pub matrix: Matrix,
    pub reps: u32,
    pub warmup: u32,
    /// Adaptive repetitions: stop when the 95 % CI half-width of the median is within this many percent.
    pub ci_target_pct: Option<f64>,
    pub max_reps: u32,
    /// `llama-server` (through the server) or `llama-bench` (in-process).
    pub engine: String,
    /// Further engine flags, passed to every configuration.
    pub extra_args: Vec<String>,
    pub health_timeout_s: u64,
}

impl BenchPlan {
    pub fn configs(&self) -> Vec<PlannedConfig> {
        self.matrix.configs()
    }

    /// Server arguments for a config: its flags, then defaults bakeoff adds when the matrix does
    /// not sweep them (one slot, a context that fits every test), then pass-through flags.
    pub fn server_args(&self, config: &EngineConfig) -> Vec<String> {
        let mut args = config.args();
        if !config.flags.contains_key("-np") {
            args.extend(["-np".into(), "1".into()]);
        }
        if !config.flags.contains_key("-c") {
            args.extend(["-c".into(), self.matrix.context_needed().to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Progress events for the CLI to display.
pub enum Event<'a> {
    Config {
        index: usize,
        total: usize,
        label: &'a str,
    },
    Skipped {
        label: &'a str,
        reason: &'a str,
    },
    Trial {
        done: usize,
        total: usize,
        label: &'a str,
        test: &'a str,
        rep: u32,
        value: f64,
        unit: &'a str,
        flags: &'a [String],
    },
    Warning(String),
}

/// A key identifying a trial across resumes: (config hash, test name, repetition).
pub type TrialKey = (String, String, u32);

/// What one streamed request measured.
#[derive(Debug, Default, Clone)]
pub struct Measurement {
    pub ttft_ms: f64,
    pub e2e_ms: f64,
    /// Gaps between consecutive tokens (first excluded); 0 for tokens that arrived in one chunk.
    pub itl_ms: Vec<f64>,
    pub tokens: usize,
    /// Time from the first token to the last.
    pub decode_span_ms: f64,
    pub timings: Value,
}

impl Measurement {
    pub fn server(&self, key: &str) -> Option<f64> {
        self.timings.get(key).and_then(Value::as_f64)
    }
}

/// Stream one `/completion` request and time it on the client clock.
pub fn stream_completion(http: &Http, body: &Value) -> Result<Measurement> {
    let start = Instant::now();
    let mut arrivals: Vec<(Instant, usize)> = Vec::new();
    let mut final_chunk = Value::Null;
    http.post_sse("/completion", body, |at, chunk| {
        let count = chunk["tokens"].as_array().map(Vec::len).unwrap_or_else(|| {
            usize::from(chunk["content"].as_str().is_some_and(|c| !c.is_empty()))
        });
        if count > 0 {
            arrivals.push((at, count));
        }
        if chunk["stop"].as_bool() == Some(true) {
            final_chunk = chunk;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    })?;
    let end = Instant::now();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut m = Measurement {
        e2e_ms: ms(end - start),
        timings: final_chunk["timings"].clone(),
        ..Default::default()
    };
    if let Some(&(first, _)) = arrivals.first() {
        m.ttft_ms = ms(first - start);
        let mut previous = first;
        for (i, &(at, count)) in arrivals.iter().enumerate() {
            if i > 0 {
                m.itl_ms.push(ms(at - previous));
                m.itl_ms.extend(std::iter::repeat_n(0.0, count - 1));
            } else {
                m.itl_ms.extend(std::iter::repeat_n(0.0, count - 1));
            }
            previous = at;
            m.tokens += count;
        }
        m.decode_span_ms = ms(previous - first);
    }
    if m.timings.is_null() {
        return Err(Error::http(
            http.url("/completion"),
            "final chunk carried no timings",
        ));
    }
    Ok(m)
}

/// The figures of one trial, ready to store and display.
struct TrialFigures {
    /// Primary (client) t/s.
    value: f64,
    samples: Vec<(&'static str, f64, Unit, &'static str)>,
    itl_ms: Vec<f64>,
    flags: Vec<String>,
}

fn relative_gap(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// Measure one repetition of `test` on a running server.
fn measure_test(http: &Http, source: &TokenSource, test: &Test, rep: u32) -> Result<TrialFigures> {
    let prefix = source.prefix(test.depth);
    let cache_prompt = test.depth > 0;
    let (fresh, n_predict) = match test.kind.as_str() {
        "pp" => (source.fresh(test.depth, rep, test.tokens), 1),
        _ => (
            source.fresh(
                test.depth,
                rep,
                if test.prompts == PromptSet::Random {
                    16
                } else {
                    128
                },
            ),
            test.tokens,
        ),
    };
    let expected_prompt_n = fresh.len() as f64;
    let prompt: Vec<i64> = prefix.iter().chain(fresh.iter()).copied().collect();
    let body = json!({
        "prompt": prompt, "n_predict": n_predict, "stream": true, "cache_prompt": cache_prompt,
        "ignore_eos": true, "temperature": 0.0, "id_slot": 0, "samplers": ["top_k"], "top_k": 1,
    });
    let m = stream_completion(http, &body)?;
    let mut flags = Vec::new();
    let prompt_n = m.server("prompt_n").unwrap_or(f64::NAN);
    let cache_n = m.server("cache_n").unwrap_or(0.0);
    if prompt_n != expected_prompt_n {
        flags.push(format!("prompt_n {prompt_n} != {expected_prompt_n} sent"));
    }
    let mut samples = vec![
        ("ttft_ms", m.ttft_ms, Unit::Milliseconds, "client"),
        ("e2e_ms", m.e2e_ms, Unit::Milliseconds, "client"),
        ("prompt_n", prompt_n, Unit::Tokens, "server"),
        ("cache_n", cache_n, Unit::Tokens, "server"),
        (
            "predicted_n",
            m.server("predicted_n").unwrap_or(f64::NAN),
            Unit::Tokens,
            "server",
        ),
        (
            "prompt_ms",
            m.server("prompt_ms").unwrap_or(f64::NAN),
            Unit::Milliseconds,
            "server",
        ),
        (
            "predicted_ms",
            m.server("predicted_ms").unwrap_or(f64::NAN),
            Unit::Milliseconds,
            "server",
        ),
    ];
    for key in ["draft_n", "draft_n_accepted"] {
        if let Some(v) = m.server(key) {
            samples.push((
                if key == "draft_n" {
                    "draft_n"
                } else {
                    "draft_n_accepted"
                },
                v,
                Unit::Tokens,
                "server",
            ));
        }
    }
    let value = if test.kind == "pp" {
        let client = prompt_n / (m.ttft_ms / 1000.0);
        let server = m.server("prompt_per_second").unwrap_or(f64::NAN);
        samples.push(("pp_tps", client, Unit::TokensPerSecond, "client"));
        samples.push(("pp_tps", server, Unit::TokensPerSecond, "server"));
        if relative_gap(client, server) > AGREEMENT_TOLERANCE {
            flags.push(format!("client pp {client:.1} vs server {server:.1} t/s"));
        }
        client
    } else {
        // Both clocks over the same span: the tokens after the first, and the server's decode time.
        let client = (m.tokens.saturating_sub(1)) as f64 / (m.decode_span_ms / 1000.0);
        let server = m.server("predicted_per_second").unwrap_or(f64::NAN);
        samples.push(("tg_tps", client, Unit::TokensPerSecond, "client"));
        samples.push(("tg_tps", server, Unit::TokensPerSecond, "server"));
        samples.push(("tokens_received", m.tokens as f64, Unit::Tokens, "client"));
        if relative_gap(client, server) > AGREEMENT_TOLERANCE {
            flags.push(format!("client tg {client:.1} vs server {server:.1} t/s"));
        }
        client
    };
    Ok(TrialFigures {
        value,
        samples,
        itl_ms: m.itl_ms,
        flags,
    })
}

/// What every bench engine needs: where results go, what to run with which binary, and which
/// trials an interrupted run already stored (skipped on `--resume`).
pub struct BenchContext<'a> {
    pub sink: &'a dyn TrialSink,
    pub run_id: i64,
    pub plan: &'a BenchPlan,
    pub binary: PathBuf,
    pub engine_id: i64,
    pub model_id: i64,
    pub done: HashSet<TrialKey>,
}

/// A running engine the bench measures through.
pub trait BenchEngine {
    fn http(&self) -> &Http;
    /// Its process, whose own CPU and GPU use is not noise.
    fn pid(&self) -> i32;
    fn log_path(&self) -> &Path;
}

impl BenchEngine for LlamaServer {
    fn http(&self) -> &Http {
        &self.http
    }

    fn pid(&self) -> i32 {
        LlamaServer::pid(self)
    }

    fn log_path(&self) -> &Path {
        LlamaServer::log_path(self)
    }
}

/// Starts the engine for one configuration (dropping it stops the engine).
pub type StartEngine<'a> = dyn Fn(ServerSpec) -> Result<Box<dyn BenchEngine>> + 'a;

/// The real [`StartEngine`]: launch llama-server and wait for its health check.
pub fn launch_llama_server(spec: ServerSpec) -> Result<Box<dyn BenchEngine>> {
    Ok(Box::new(LlamaServer::launch(spec)?))
}

/// Run the plan through llama-server.
pub struct ServerBench<'a> {
    pub ctx: BenchContext<'a>,
    pub require_clean: Option<Duration>,
}

impl ServerBench<'_> {
    pub fn run(&self, observe: &mut dyn FnMut(Event)) -> Result<()> {
        self.run_with(&launch_llama_server, observe)
    }

    /// Run the plan, starting each configuration's engine with `start` (tests start none and
    /// point at a scripted endpoint).
    pub fn run_with(&self, start: &StartEngine, observe: &mut dyn FnMut(Event)) -> Result<()> {
        let configs = self.ctx.plan.configs();
        let tests = self.ctx.plan.matrix.tests();
        let reps_each = self.ctx.plan.reps.max(1);
        let total = configs.iter().filter(|c| c.rejected.is_none()).count()
            * tests.len()
            * reps_each as usize;
        let mut done_count = 0;
        for (index, planned) in configs.iter().enumerate() {
            let label = planned.config.label();
            observe(Event::Config {
                index,
                total: configs.len(),
                label: &label,
            });
            let remaining: Vec<&Test> = tests
                .iter()
                .filter(|t| {
                    (0..reps_each).any(|r| {
                        !self
                            .ctx
                            .done
                            .contains(&(planned.config.hash(), t.name(), r))
                    })
                })
                .collect();
            if remaining.is_empty() {
                done_count += tests.len() * reps_each as usize;
                continue;
            }
            if let Some(reason) = &planned.rejected {
                self.record_skip(&planned.config, reason)?;
                observe(Event::Skipped {
                    label: &label,
                    reason,
                });
                continue;
            }
            let server = match start(self.spec(&planned.config)) {
                Ok(server) => server,
                Err(error) => {
                    let reason = error.to_string();
                    self.record_skip(&planned.config, &reason)?;
                    observe(Event::Skipped {
                        label: &label,
                        reason: &reason,
                    });
                    continue;
                }
            };
            let result = self.run_config(
                server.as_ref(),
                planned,
                &tests,
                &mut done_count,
                total,
                observe,
            );
            self.ctx
                .sink
                .engine_log(self.ctx.run_id, None, server.log_path())?;
            drop(server);
            result?;
        }
        Ok(())
    }

    fn spec(&self, config: &EngineConfig) -> ServerSpec {
        let dir = self.ctx.sink.run_dir(self.ctx.run_id);
        ServerSpec {
            binary: self.ctx.binary.clone(),
            model: self.ctx.plan.model.clone(),
            host: "127.0.0.1".into(),
            port: None,
            args: self.ctx.plan.server_args(config),
            health_timeout: Duration::from_secs(self.ctx.plan.health_timeout_s),
            log_path: dir.join(format!("llama-server-{}.log", config.hash())),
        }
    }

    fn record_skip(&self, config: &EngineConfig, reason: &str) -> Result<()> {
        self.ctx.sink.skip_config(
            self.ctx.run_id,
            config,
            self.ctx.engine_id,
            self.ctx.model_id,
            reason,
        )
    }

    fn run_config(
        &self,
        server: &dyn BenchEngine,
        planned: &PlannedConfig,
        tests: &[Test],
        done_count: &mut usize,
        total: usize,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let label = planned.config.label();
        let mut sources: Vec<(PromptSet, TokenSource)> = Vec::new();
        let mut prefilled: HashSet<(PromptSet, u32)> = HashSet::new();
        for test in tests {
            if !sources.iter().any(|(set, _)| *set == test.prompts) {
                sources.push((
                    test.prompts.clone(),
                    TokenSource::new(server.http(), &test.prompts)?,
                ));
            }
            let source = &sources
                .iter()
                .find(|(set, _)| *set == test.prompts)
                .expect("just added")
                .1;
            if test.depth > 0 && prefilled.insert((test.prompts.clone(), test.depth)) {
                // Fill the cache with the depth prefix once; trials then reuse it (cache_n).
                let body = json!({ "prompt": source.prefix(test.depth), "n_predict": 1, "cache_prompt": true, "id_slot": 0, "stream": true });
                stream_completion(server.http(), &body)?;
            }
            for _ in 0..self.ctx.plan.warmup {
                measure_test(server.http(), source, test, u32::MAX)?;
            }
            self.run_reps(
                server, planned, test, source, done_count, total, &label, observe,
            )?;
        }
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a struct would only rename these"
    )]
    fn run_reps(
        &self,
        server: &dyn BenchEngine,
        planned: &PlannedConfig,
        test: &Test,
        source: &TokenSource,
        done_count: &mut usize,
        total: usize,
        label: &str,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let mut values = Vec::new();
        let max_reps = if self.ctx.plan.ci_target_pct.is_some() {
            self.ctx.plan.max_reps.max(self.ctx.plan.reps)
        } else {
            self.ctx.plan.reps
        };
        for rep in 0..max_reps.max(1) {
            if let Some(signal) = process::interrupted() {
                return Err(Error::engine(format!("interrupted by signal {signal}")));
            }
            let key = (planned.config.hash(), test.name(), rep);
            if self.ctx.done.contains(&key) {
                *done_count += 1;
                continue;
            }
            if let Some(limit) = self.require_clean {
                noise::wait_for_quiet(limit, &[server.pid()]).map_err(|e| {
                    Error::engine(e).with_hint("stop the busy processes, or drop --require-clean")
                })?;
            }
            // Someone else's process on the GPU (our engine's own work is not noise).
            let foreign_gpu = noise::foreign_gpu_processes(&[server.pid()]);
            let gpu_before = noise::gpu_utilization();
            let before = CpuSnapshot::take(&[server.pid()]);
            let workload = test.to_json();
            let trial = NewTrial {
                config: Some(&planned.config),
                engine_id: Some(self.ctx.engine_id),
                model_id: Some(self.ctx.model_id),
                workload: &workload,
                repetition: rep,
            };
            let trial_id = self.ctx.sink.begin_trial(self.ctx.run_id, &trial)?;
            let figures = match measure_test(server.http(), source, test, rep) {
                Ok(figures) => figures,
                Err(error) => {
                    let fatal = crate::engines::fatal::scan_file(server.log_path());
                    let note = match fatal.first() {
                        Some(line) => format!("{error}; engine log: {}", line.text),
                        None => error.to_string(),
                    };
                    self.ctx.sink.end_trial(trial_id, "failed", Some(&note))?;
                    return Err(Error::engine(note));
                }
            };
            let others = before.others_cores(&CpuSnapshot::take(&[server.pid()]));
            let gpu_after = noise::gpu_utilization();
            for (metric, value) in [
                ("gpu_util_before_pct", gpu_before),
                ("gpu_util_after_pct", gpu_after),
            ] {
                if let Some(value) = value {
                    self.ctx
                        .sink
                        .sample(trial_id, metric, value, Unit::Percent, "system", 0)?;
                }
            }
            let mut flags = figures.flags.clone();
            if others > noise::NOISY_CORES {
                flags.push(format!("noisy: other processes used {others:.2} cores"));
            }
            if !foreign_gpu.is_empty() {
                let names: Vec<String> = foreign_gpu
                    .iter()
                    .map(|(pid, name)| format!("{name} (pid {pid})"))
                    .collect();
                flags.push(format!("noisy: other GPU processes: {}", names.join(", ")));
            }
            for (metric, value, unit, source) in &figures.samples {
                self.ctx
                    .sink
                    .sample(trial_id, metric, *value, *unit, source, 0)?;
            }
            for (seq, gap) in figures.itl_ms.iter().enumerate() {
                self.ctx.sink.sample(
                    trial_id,
                    "itl_ms",
                    *gap,
                    Unit::Milliseconds,
                    "client",
                    seq,
                )?;
            }
            self.ctx.sink.sample(
                trial_id,
                "others_cpu_cores",
                others,
                Unit::Count,
                "system",
                0,
            )?;
            let note = (!flags.is_empty()).then(|| flags.join("; "));
            self.ctx.sink.end_trial(trial_id, "ok", note.as_deref())?;
            *done_count += 1;
            values.push(figures.value);
            let unit = "t/s";
            observe(Event::Trial {
                done: *done_count,
                total,
                label,
                test: &test.name(),
                rep,
                value: figures.value,
                unit,
                flags: &flags,
            });
            if rep + 1 >= self.ctx.plan.reps.max(3) {
                if let Some(target) = self.ctx.plan.ci_target_pct {
                    if Summary::of(&values).ci_half_width_pct() <= target {
                        break;
                    }
                }
            }
        }
        if values.len() >= 3 {
            let rest = Summary::of(&values[1..]);
            if values[0] < rest.median * 0.8 {
                observe(Event::Warning(format!(
                    "{label} {}: the first run ({:.1} t/s) was much slower than the rest (median {:.1}); consider --warmup",
                    test.name(),
                    values[0],
                    rest.median
                )));
            }
            let outliers = super::stats::outliers(&values);
            if !outliers.is_empty() {
                observe(Event::Warning(format!(
                    "{label} {}: {} statistical outlier(s) among {} runs (modified z-score); the machine may be noisy",
                    test.name(),
                    outliers.len(),
                    values.len()
                )));
            }
        }
        Ok(())
    }
}

/// Trials already stored for a run (status ok), for `--resume`.
pub fn completed_trials(sink: &dyn TrialSink, run_id: i64) -> Result<HashSet<TrialKey>> {
    let trials = sink.trials(run_id)?;
    Ok(trials
        .into_iter()
        .filter(|t| t.status == "ok")
        .filter_map(|t| {
            Some((
                t.config_hash?,
                t.workload["test"].as_str()?.to_string(),
                t.repetition as u32,
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::load::selftest::ScriptedEndpoint;
    use crate::measure::sink::{MemorySink, TrialRow};
    use std::cell::RefCell;

    /// The scripted endpoint standing in for a started engine.
    struct Scripted {
        http: Http,
        log_path: PathBuf,
    }

    impl BenchEngine for Scripted {
        fn http(&self) -> &Http {
            &self.http
        }

        fn pid(&self) -> i32 {
            std::process::id() as i32
        }

        fn log_path(&self) -> &Path {
            &self.log_path
        }
    }

    /// Two -ctv values with -fa off (q8_0 is rejected before any engine starts), pp8 and tg4.
    fn plan(reps: u32, warmup: u32) -> BenchPlan {
        let mut matrix = Matrix {
            prompt_tokens: vec![8],
            gen_tokens: vec![4],
            ..Default::default()
        };
        matrix.set("-ctv", vec!["f16".into(), "q8_0".into(), "bf16".into()]);
        matrix.set("-fa", vec!["off".into()]);
        BenchPlan {
            model: "m.gguf".into(),
            matrix,
            reps,
            warmup,
            ci_target_pct: None,
            max_reps: reps,
            engine: "llama-server".into(),
            extra_args: vec!["--no-mmap".into()],
            health_timeout_s: 5,
        }
    }

    struct Harness<'a> {
        endpoint: &'a ScriptedEndpoint,
        /// The specs the runner asked engines for, in order.
        started: RefCell<Vec<ServerSpec>>,
    }

    impl Harness<'_> {
        fn start(&self, spec: ServerSpec) -> Result<Box<dyn BenchEngine>> {
            let log_path = spec.log_path.clone();
            self.started.borrow_mut().push(spec);
            let http = Http::new(&self.endpoint.url, Duration::from_secs(10));
            Ok(Box::new(Scripted { http, log_path }))
        }

        fn run(
            &self,
            sink: &MemorySink,
            plan: &BenchPlan,
            done: HashSet<TrialKey>,
        ) -> Result<Vec<String>> {
            let bench = ServerBench {
                ctx: BenchContext {
                    sink,
                    run_id: 1,
                    plan,
                    binary: "llama-server".into(),
                    engine_id: 2,
                    model_id: 3,
                    done,
                },
                require_clean: None,
            };
            let mut events = Vec::new();
            let start = |spec| self.start(spec);
            bench.run_with(&start, &mut |event| match event {
                Event::Trial {
                    label, test, rep, ..
                } => events.push(format!("{label} {test} #{rep}")),
                Event::Skipped { label, .. } => events.push(format!("{label} skipped")),
                _ => {}
            })?;
            Ok(events)
        }
    }

    fn harness(endpoint: &ScriptedEndpoint) -> Harness<'_> {
        Harness {
            endpoint,
            started: RefCell::default(),
        }
    }

    fn metrics(trial: &TrialRow) -> Vec<(String, String)> {
        let pairs = trial.samples.iter().filter(|s| s.metric.ends_with("_tps"));
        pairs
            .map(|s| (s.metric.clone(), s.source.clone()))
            .collect()
    }

    #[test]
    fn trials_and_samples_are_recorded_per_config_test_and_repetition() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let harness = harness(&endpoint);
        let sink = MemorySink::new(Path::new("/runs"));
        let events = harness.run(&sink, &plan(2, 1), HashSet::new()).unwrap();
        assert_eq!(
            events,
            [
                "-ctv f16 -fa off pp8 #0",
                "-ctv f16 -fa off pp8 #1",
                "-ctv f16 -fa off tg4 #0",
                "-ctv f16 -fa off tg4 #1",
                "-ctv q8_0 -fa off skipped",
                "-ctv bf16 -fa off pp8 #0",
                "-ctv bf16 -fa off pp8 #1",
                "-ctv bf16 -fa off tg4 #0",
                "-ctv bf16 -fa off tg4 #1",
            ]
        );
        let trials = sink.trials(1).unwrap();
        let ok: Vec<&TrialRow> = trials.iter().filter(|t| t.status == "ok").collect();
        assert_eq!(ok.len(), 8);
        assert_eq!(
            metrics(ok[0]),
            [
                ("pp_tps".into(), "client".into()),
                ("pp_tps".into(), "server".into())
            ]
        );
        assert_eq!(
            metrics(ok[2]),
            [
                ("tg_tps".into(), "client".into()),
                ("tg_tps".into(), "server".into())
            ]
        );
        let tokens = ok[2].samples.iter().find(|s| s.metric == "tokens_received");
        assert_eq!(tokens.map(|s| s.value), Some(4.0));
        let prompt_n = ok[0].samples.iter().find(|s| s.metric == "prompt_n");
        assert_eq!(prompt_n.map(|s| s.value), Some(8.0));
        assert_eq!(ok[0].engine.as_deref(), Some("engine 2"));
        // The rejected config is stored as skipped without an engine start.
        let skipped: Vec<&TrialRow> = trials.iter().filter(|t| t.status == "skipped").collect();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0]
            .note
            .as_deref()
            .unwrap()
            .contains("requires flash attention"));
        let started = harness.started.borrow();
        assert_eq!(started.len(), 2);
        assert_eq!(
            started[0].args,
            [
                "-ctv",
                "f16",
                "-fa",
                "off",
                "-np",
                "1",
                "-c",
                "256",
                "--no-mmap"
            ]
        );
        let logs: Vec<PathBuf> = sink.logs().into_iter().map(|l| l.path).collect();
        let expected: Vec<PathBuf> = started.iter().map(|s| s.log_path.clone()).collect();
        assert_eq!(logs, expected);
        assert!(logs[0].starts_with("/runs/1"));
    }

    #[test]
    fn a_failing_request_is_stored_as_a_failed_trial_and_ends_the_run() {
        // One warmup and one repetition succeed; the second repetition's request fails.
        let endpoint = ScriptedEndpoint::failing_after(2, Duration::ZERO).unwrap();
        let harness = harness(&endpoint);
        let sink = MemorySink::new(Path::new("/runs"));
        let error = harness.run(&sink, &plan(2, 1), HashSet::new()).unwrap_err();
        assert!(error.to_string().contains("HTTP 500"), "{error}");
        let trials = sink.trials(1).unwrap();
        let statuses: Vec<&str> = trials.iter().map(|t| t.status.as_str()).collect();
        assert_eq!(statuses, ["ok", "failed"]);
        assert!(trials[1]
            .note
            .as_deref()
            .unwrap()
            .contains("scripted failure"));
        assert_eq!(
            sink.logs().len(),
            1,
            "the engine log is kept on failure too"
        );
    }

    #[test]
    fn resume_measures_only_the_trials_not_yet_stored() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let plan = plan(2, 0);
        let first = MemorySink::new(Path::new("/runs"));
        harness(&endpoint)
            .run(&first, &plan, HashSet::new())
            .unwrap();
        let mut done = completed_trials(&first, 1).unwrap();
        assert_eq!(done.len(), 8);

        let nothing_left = MemorySink::new(Path::new("/runs"));
        let idle = harness(&endpoint);
        let events = idle.run(&nothing_left, &plan, done.clone()).unwrap();
        // A rejected config has no ok trials, so a resume records its skip again.
        assert_eq!(events, ["-ctv q8_0 -fa off skipped"]);
        assert!(
            idle.started.borrow().is_empty(),
            "no engine for finished configs"
        );

        let bf16 = EngineConfig::default()
            .with_flag("-ctv", "bf16")
            .with_flag("-fa", "off");
        done.remove(&(bf16.hash(), "tg4".into(), 1));
        let rest = MemorySink::new(Path::new("/runs"));
        let events = harness(&endpoint).run(&rest, &plan, done).unwrap();
        assert_eq!(
            events,
            ["-ctv q8_0 -fa off skipped", "-ctv bf16 -fa off tg4 #1"]
        );
        let measured = rest.trials(1).unwrap();
        let keys: Vec<(&str, i64)> = measured
            .iter()
            .map(|t| (t.workload["test"].as_str().unwrap(), t.repetition))
            .collect();
        assert_eq!(keys, [("(all)", 0), ("tg4", 1)]);
    }
}
