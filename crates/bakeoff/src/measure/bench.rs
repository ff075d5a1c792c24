//! The bench runner: for each build, each model and each configuration (one engine start each),
//! every test, warmups and repetitions (fixed, or adaptive until the median's CI is tight enough),
//! through a real llama-server with exact token counts. Every sample is stored as it is measured.

use super::matrix::{Matrix, PlannedConfig, PromptSet, Test};
use super::noise;
use super::prompts::TokenSource;
use super::shard::Shard;
use super::sink::{NewTrial, TrialRow, TrialSink};
use super::stats::Summary;
use super::watch::{Watch, WatchConfig};
use crate::domain::{EngineConfig, Unit};
use crate::engines::build::{BuildRef, KnownFlags};
use crate::engines::http::{Flow, Http, Timeouts};
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
    /// The models, each measured on every configuration (older stored plans hold one `model`).
    #[serde(alias = "model", deserialize_with = "one_or_many")]
    pub models: Vec<PathBuf>,
    /// The builds, outermost in the order; empty: the one engine `--engine-path` or discovery finds.
    #[serde(default)]
    pub builds: Vec<BuildRef>,
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
    /// Bounds on each request (older stored plans have none: the defaults).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// `--shard K/N`: only the cells this shard takes ([`BenchPlan::cells`]); none: every cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// A cell of the matrix: one configuration on one subject (build and model), one engine start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellAt {
    /// Its position in the full order (each subject, then each configuration), what shards split.
    pub index: usize,
    /// Its subject's position in [`BenchPlan::subject_order`].
    pub subject: usize,
    /// Its configuration's position in [`BenchPlan::configs`].
    pub config: usize,
}

/// One path or a list of them (a stored plan of an older run names one `model`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

impl BenchPlan {
    pub fn configs(&self) -> Vec<PlannedConfig> {
        self.matrix.configs()
    }

    /// How many cells the full matrix has: subjects × configurations, rejected ones included.
    pub fn cell_count(&self) -> usize {
        self.subject_order().len() * self.configs().len()
    }

    /// The cells this run measures, in order: every cell, or only its shard's.
    pub fn cells(&self) -> Vec<CellAt> {
        let (subjects, configs) = (self.subject_order().len(), self.configs().len());
        let all = (0..subjects).flat_map(|subject| {
            (0..configs).map(move |config| CellAt {
                index: subject * configs + config,
                subject,
                config,
            })
        });
        let shard = self.shard.unwrap_or(Shard::WHOLE);
        shard
            .select(all)
            .into_iter()
            .map(|(_, cell)| cell)
            .collect()
    }

    /// True when the run sweeps more than one model or build (labels then name them).
    pub fn is_shootout(&self) -> bool {
        self.models.len() > 1 || self.builds.len() > 1
    }

    /// The (build, model) pairs in the order they are measured: each build, then each model.
    pub fn subject_order(&self) -> Vec<(Option<&str>, &Path)> {
        let builds: Vec<Option<&str>> = match self.builds.is_empty() {
            true => vec![None],
            false => self.builds.iter().map(|b| Some(b.name.as_str())).collect(),
        };
        let pairs = builds.into_iter().flat_map(|build| {
            let models = self.models.iter();
            models.map(move |model| (build, model.as_path()))
        });
        pairs.collect()
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

/// A key identifying a trial across resumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrialKey {
    pub model_sha256: String,
    /// The build's name; empty for the one engine of a run without `--build`.
    pub build: String,
    pub config_hash: String,
    pub test: String,
    pub repetition: u32,
}

/// `build NAME · MODEL` (the model's file stem), or the model alone without a named build.
pub fn subject_label(build: Option<&str>, model: &Path) -> String {
    let stem = model.file_stem().unwrap_or(model.as_os_str());
    let stem = stem.to_string_lossy();
    match build {
        Some(name) => format!("build {name} · {stem}"),
        None => stem.to_string(),
    }
}

/// One (build, model) pair of a sweep: the engine binary and the rows every trial on it names.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `--build NAME`; `None` for the one engine found by `--engine-path` or discovery.
    pub build: Option<String>,
    pub binary: PathBuf,
    pub engine_id: i64,
    pub model: PathBuf,
    pub model_id: i64,
    pub model_sha256: String,
    /// The flags the build's `--help` lists (empty: every flag is taken as known).
    pub known_flags: KnownFlags,
}

impl Subject {
    /// `build NAME · MODEL`, for progress lines and skip reasons.
    pub fn label(&self) -> String {
        subject_label(self.build.as_deref(), &self.model)
    }

    fn key(&self, config_hash: String, test: String, repetition: u32) -> TrialKey {
        TrialKey {
            model_sha256: self.model_sha256.clone(),
            build: self.build.clone().unwrap_or_default(),
            config_hash,
            test,
            repetition,
        }
    }

    /// Why this build cannot run `args`: the flags its `--help` does not list.
    pub fn unknown_flags(&self, args: &[String]) -> Option<String> {
        let unknown = self.known_flags.unknown(args);
        let build = self.build.as_deref().filter(|_| !unknown.is_empty())?;
        Some(format!(
            "build {build} does not know {} (not in its --help)",
            unknown.join(", ")
        ))
    }
}

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

/// Tokens one `/completion` stream event carries. llama-server sends one event per token, so an
/// event counts even when its piece decodes to `""` (a lone byte of a UTF-8 sequence, a special
/// token): counting only non-empty text lost such tokens (a pp trial stored TTFT 0 and pp inf).
/// With `return_tokens` the event lists its token ids, which counts several tokens in one event
/// (speculative decoding). The final event (`stop`) is a token only when it carries one.
pub fn event_tokens(chunk: &Value) -> usize {
    let listed = chunk["tokens"].as_array().map_or(0, Vec::len);
    let has_text = chunk["content"].as_str().is_some_and(|c| !c.is_empty());
    match chunk["stop"].as_bool() == Some(true) {
        true => listed.max(usize::from(has_text)),
        false => listed.max(1),
    }
}

/// Stream one `/completion` request and time it on the client clock.
pub fn stream_completion(http: &Http, body: &Value) -> Result<Measurement> {
    let start = Instant::now();
    let mut arrivals: Vec<(Instant, usize)> = Vec::new();
    let mut final_chunk = Value::Null;
    http.post_sse("/completion", body, |at, chunk| {
        let count = event_tokens(&chunk);
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
            }
            m.itl_ms.extend(std::iter::repeat_n(0.0, count - 1));
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
pub struct TrialFigures {
    /// Primary (client) t/s.
    pub value: f64,
    samples: Vec<(&'static str, f64, Unit, &'static str)>,
    itl_ms: Vec<f64>,
    /// Notes on the trial (client and server disagree, ...).
    pub flags: Vec<String>,
}

impl TrialFigures {
    /// What the trial made: the prompt tokens of a pp trial, the tokens received of a tg one.
    pub fn tokens(&self) -> Option<f64> {
        let stored = |name: &str| {
            (self.samples.iter())
                .find(|(metric, ..)| *metric == name)
                .map(|(_, value, ..)| *value)
        };
        stored("tokens_received").or_else(|| stored("prompt_n"))
    }
}

fn relative_gap(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// Measure one repetition of `test` on a running server.
pub fn measure_test(
    http: &Http,
    source: &TokenSource,
    test: &Test,
    rep: u32,
) -> Result<TrialFigures> {
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
        "return_tokens": true,
    });
    let m = stream_completion(http, &body)?;
    let mut flags = Vec::new();
    let prompt_n = m.server("prompt_n").unwrap_or(f64::NAN);
    if prompt_n != expected_prompt_n {
        flags.push(format!("prompt_n {prompt_n} != {expected_prompt_n} sent"));
    }
    let mut samples = vec![
        ("ttft_ms", m.ttft_ms, Unit::Milliseconds, "client"),
        ("e2e_ms", m.e2e_ms, Unit::Milliseconds, "client"),
        ("prompt_n", prompt_n, Unit::Tokens, "server"),
        (
            "cache_n",
            m.server("cache_n").unwrap_or(0.0),
            Unit::Tokens,
            "server",
        ),
    ];
    // Figures the server may leave out are stored only when it reports them.
    let reported = [
        ("predicted_n", Unit::Tokens),
        ("prompt_ms", Unit::Milliseconds),
        ("predicted_ms", Unit::Milliseconds),
        ("draft_n", Unit::Tokens),
        ("draft_n_accepted", Unit::Tokens),
    ];
    for (key, unit) in reported {
        if let Some(v) = m.server(key) {
            samples.push((key, v, unit, "server"));
        }
    }
    let (kind, client, server_key) = match test.kind.as_str() {
        "pp" => ("pp", prompt_n / (m.ttft_ms / 1000.0), "prompt_per_second"),
        // Both clocks over the same span: the tokens after the first, and the server's decode time.
        _ => (
            "tg",
            (m.tokens.saturating_sub(1)) as f64 / (m.decode_span_ms / 1000.0),
            "predicted_per_second",
        ),
    };
    let metric = if kind == "pp" { "pp_tps" } else { "tg_tps" };
    samples.push((metric, client, Unit::TokensPerSecond, "client"));
    if let Some(server) = m.server(server_key) {
        samples.push((metric, server, Unit::TokensPerSecond, "server"));
        if relative_gap(client, server) > AGREEMENT_TOLERANCE {
            flags.push(format!(
                "client {kind} {client:.1} vs server {server:.1} t/s"
            ));
        }
    }
    if kind == "tg" {
        samples.push(("tokens_received", m.tokens as f64, Unit::Tokens, "client"));
    }
    Ok(TrialFigures {
        value: client,
        samples,
        itl_ms: m.itl_ms,
        flags,
    })
}

/// Why a trial's figures cannot be stored: the first one that is not a finite number (a pp trial
/// whose first token was never seen divides by a zero TTFT), with what it was computed from.
pub fn non_finite(figures: &TrialFigures) -> Option<String> {
    let (metric, value, _, source) = figures.samples.iter().find(|s| !s.1.is_finite())?;
    let ttft = figures.samples.iter().find(|s| s.0 == "ttft_ms");
    let ttft = ttft.map_or(String::new(), |s| format!(" (TTFT {} ms)", s.1));
    Some(format!("{source} {metric} is {value}{ttft}: not stored"))
}

/// What every bench engine needs: where results go, what to run with which binary, and which
/// trials an interrupted run already stored (skipped on `--resume`).
pub struct BenchContext<'a> {
    pub sink: &'a dyn TrialSink,
    pub run_id: i64,
    pub plan: &'a BenchPlan,
    /// The (build, model) pairs in the order measured ([`BenchPlan::subject_order`]).
    pub subjects: Vec<Subject>,
    pub done: HashSet<TrialKey>,
    /// What each trial watches besides its figures (noise, telemetry).
    pub watch: WatchConfig,
}

impl BenchContext<'_> {
    /// The cells this run measures ([`BenchPlan::cells`]), each with its subject and configuration.
    pub fn cells<'c>(
        &'c self,
        configs: &'c [PlannedConfig],
    ) -> Vec<(CellAt, &'c Subject, &'c PlannedConfig)> {
        let cells = self.plan.cells().into_iter();
        let parts =
            |at: CellAt| Some((at, self.subjects.get(at.subject)?, configs.get(at.config)?));
        cells.filter_map(parts).collect()
    }

    /// A configuration's label, prefixed by its subject's in a sweep of several.
    pub fn label(&self, subject: &Subject, config: &EngineConfig) -> String {
        match self.plan.is_shootout() {
            true => format!("{} · {}", subject.label(), config.label()),
            false => config.label(),
        }
    }

    /// Record a configuration not measured on `subject`, with the reason.
    pub fn record_skip(
        &self,
        subject: &Subject,
        config: &EngineConfig,
        reason: &str,
    ) -> Result<()> {
        let (engine_id, model_id) = (subject.engine_id, subject.model_id);
        self.sink
            .skip_config(self.run_id, config, engine_id, model_id, reason)
    }
}

/// One configuration on one subject: what an engine start measures.
struct Cell<'a> {
    subject: &'a Subject,
    /// Its position among the subjects (names its engine log in a sweep of several).
    index: usize,
    planned: &'a PlannedConfig,
    label: String,
}

impl Cell<'_> {
    fn key(&self, test: &Test, repetition: u32) -> TrialKey {
        let hash = self.planned.config.hash();
        self.subject.key(hash, test.name(), repetition)
    }
}

/// A running engine the bench measures through.
pub trait BenchEngine {
    fn http(&self) -> &Http;
    /// Its process, whose own CPU and GPU use is not noise.
    fn pid(&self) -> i32;
    fn log_path(&self) -> &Path;
    /// Why it can no longer answer (it died or is frozen), in words; `None` while it can. Asked
    /// after a request failed.
    fn trouble(&self) -> Option<String> {
        None
    }
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

    fn trouble(&self) -> Option<String> {
        LlamaServer::trouble_within(self, Duration::from_secs(1))
    }
}

/// Starts the engine for one configuration (dropping it stops the engine).
pub type StartEngine<'a> = dyn Fn(ServerSpec) -> Result<Box<dyn BenchEngine>> + 'a;

/// The real [`StartEngine`]: launch llama-server, wait for its health check, bound its requests.
pub fn launch_llama_server(spec: ServerSpec, timeouts: Timeouts) -> Result<Box<dyn BenchEngine>> {
    Ok(Box::new(LlamaServer::launch(spec)?.with_timeouts(timeouts)))
}

/// The tests' token sources and depth prefixes on one running engine: each prompt set is
/// tokenized once, each depth prefix filled into the cache once, then every test is warmed up.
pub struct Prepared {
    sources: Vec<(PromptSet, TokenSource)>,
    prefilled: HashSet<(PromptSet, u32)>,
    warmed: HashSet<String>,
    warmup: u32,
    /// Warm up with at most this many tokens (generated, or prompt tokens for pp) instead of the
    /// test's own: what a warmup pays for (page faults over the weights, first allocations) is
    /// paid by any request, and a search that restarts engines often should not pay twice.
    warmup_tokens: Option<u32>,
}

impl Prepared {
    /// For a freshly started engine; `warmup` runs before each test's first repetition.
    pub fn new(warmup: u32) -> Self {
        Prepared {
            sources: Vec::new(),
            prefilled: HashSet::new(),
            warmed: HashSet::new(),
            warmup,
            warmup_tokens: None,
        }
    }

    /// As [`Prepared::new`], each warmup one short request of at most `tokens` tokens.
    pub fn light(tokens: u32) -> Self {
        Prepared {
            warmup_tokens: Some(tokens),
            ..Prepared::new(1)
        }
    }

    /// The test's token source (made once per prompt set), its depth prefix in the cache, and
    /// the warmup runs (once per test and engine).
    pub fn prepare(&mut self, server: &dyn BenchEngine, test: &Test) -> Result<&TokenSource> {
        let at = match self
            .sources
            .iter()
            .position(|(set, _)| *set == test.prompts)
        {
            Some(at) => at,
            None => {
                let source = TokenSource::new(server.http(), &test.prompts)?;
                self.sources.push((test.prompts.clone(), source));
                self.sources.len() - 1
            }
        };
        let source = &self.sources[at].1;
        if test.depth > 0 && self.prefilled.insert((test.prompts.clone(), test.depth)) {
            // Fill the cache with the depth prefix once; trials then reuse it (cache_n).
            let body = json!({ "prompt": source.prefix(test.depth), "n_predict": 1, "cache_prompt": true, "id_slot": 0, "stream": true });
            stream_completion(server.http(), &body)?;
        }
        if self.warmed.insert(test.name()) {
            let short = self.warmup_tokens.map(|tokens| Test {
                tokens: test.tokens.min(tokens),
                ..test.clone()
            });
            for _ in 0..self.warmup {
                measure_test(
                    server.http(),
                    source,
                    short.as_ref().unwrap_or(test),
                    u32::MAX,
                )?;
            }
        }
        Ok(source)
    }
}

/// Run the plan through llama-server.
pub struct ServerBench<'a> {
    pub ctx: BenchContext<'a>,
    pub require_clean: Option<Duration>,
}

/// How one configuration's measurements ended.
enum ConfigEnd {
    Measured,
    /// A request failed (the engine died, froze, or answered badly): the rest of the
    /// configuration is not tried; the next one gets a fresh engine.
    Broken,
}

/// A failure while measuring: the run carries on (the trial is stored as failed), unless the
/// sink itself failed, which ends it.
enum Failure {
    Measure(Error),
    Sink(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Measure(error)
    }
}

/// Counts for the closing line.
#[derive(Default)]
struct Tally {
    done: usize,
    failed: usize,
}

impl ServerBench<'_> {
    pub fn run(&self, observe: &mut dyn FnMut(Event)) -> Result<()> {
        let timeouts = self.ctx.plan.timeouts;
        self.run_with(&|spec| launch_llama_server(spec, timeouts), observe)
    }

    /// Run the plan, starting each configuration's engine with `start` (tests start none and
    /// point at a scripted endpoint): for each subject (build, then model), each configuration
    /// (only the shard's cells, with `--shard`).
    /// A configuration whose engine fails to start, dies or fails a request is stored with a
    /// skipped or failed trial and the sweep goes on with the next one.
    pub fn run_with(&self, start: &StartEngine, observe: &mut dyn FnMut(Event)) -> Result<()> {
        let configs = self.ctx.plan.configs();
        let tests = self.ctx.plan.matrix.tests();
        let reps_each = self.ctx.plan.reps.max(1) as usize;
        let cells = self.ctx.cells(&configs);
        let runnable = cells.iter().filter(|(_, _, c)| c.rejected.is_none());
        let total = runnable.count() * tests.len() * reps_each;
        let starts = self.ctx.plan.cell_count();
        let mut tally = Tally::default();
        for (at, subject, planned) in cells {
            if let Some(signal) = process::interrupted() {
                return Err(Error::engine(format!("interrupted by signal {signal}")));
            }
            let label = self.ctx.label(subject, &planned.config);
            observe(Event::Config {
                index: at.index,
                total: starts,
                label: &label,
            });
            let cell = Cell {
                subject,
                index: at.subject,
                planned,
                label,
            };
            self.run_cell(start, &cell, &tests, &mut tally, total, observe)?;
        }
        if tally.failed > 0 {
            let failed = tally.failed;
            observe(Event::Warning(format!(
                "{failed} trial(s) failed; each is stored as failed with its reason (`bakeoff runs show {}`)",
                self.ctx.run_id
            )));
        }
        Ok(())
    }

    /// One configuration on one subject: skipped (already stored, rejected, a flag the build
    /// does not know, the engine did not start) or measured on its own engine.
    fn run_cell(
        &self,
        start: &StartEngine,
        cell: &Cell,
        tests: &[Test],
        tally: &mut Tally,
        total: usize,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        if !self.has_work(cell, tests) {
            tally.done += tests.len() * self.ctx.plan.reps.max(1) as usize;
            return Ok(());
        }
        let started = match self.skip_reason(cell) {
            Some(reason) => Err(reason),
            None => start(self.spec(cell)).map_err(|error| error.to_string()),
        };
        let mut server = match started {
            Ok(server) => server,
            Err(reason) => return self.skip(cell, &reason, observe),
        };
        let result = self.run_config(server.as_mut(), cell, tests, tally, total, observe);
        self.ctx
            .sink
            .engine_log(self.ctx.run_id, None, server.log_path())?;
        drop(server);
        result
    }

    /// Why a configuration is not tried on its subject: rejected by the plan, or it passes a
    /// flag the build's `--help` does not list.
    fn skip_reason(&self, cell: &Cell) -> Option<String> {
        if let Some(reason) = &cell.planned.rejected {
            return Some(reason.clone());
        }
        let args = self.ctx.plan.server_args(&cell.planned.config);
        cell.subject.unknown_flags(&args)
    }

    fn skip(&self, cell: &Cell, reason: &str, observe: &mut dyn FnMut(Event)) -> Result<()> {
        let config = &cell.planned.config;
        self.ctx.record_skip(cell.subject, config, reason)?;
        observe(Event::Skipped {
            label: &cell.label,
            reason,
        });
        Ok(())
    }

    /// True when some (test, repetition) of the configuration is not stored yet.
    fn has_work(&self, cell: &Cell, tests: &[Test]) -> bool {
        let reps = 0..self.ctx.plan.reps.max(1);
        let stored = |t: &Test, r| self.ctx.done.contains(&cell.key(t, r));
        tests.iter().any(|t| reps.clone().any(|r| !stored(t, r)))
    }

    fn spec(&self, cell: &Cell) -> ServerSpec {
        let dir = self.ctx.sink.run_dir(self.ctx.run_id);
        let config = &cell.planned.config;
        let log = match self.ctx.plan.is_shootout() {
            true => format!("llama-server-{}-{}.log", cell.index + 1, config.hash()),
            false => format!("llama-server-{}.log", config.hash()),
        };
        ServerSpec {
            binary: cell.subject.binary.clone(),
            model: cell.subject.model.clone(),
            host: "127.0.0.1".into(),
            port: None,
            args: self.ctx.plan.server_args(config),
            health_timeout: Duration::from_secs(self.ctx.plan.health_timeout_s),
            log_path: dir.join(log),
        }
    }

    /// Every test of one configuration. A failure before a repetition began (prompts, prefill,
    /// warmup) is stored as a failed trial of that test; either way the configuration ends there.
    fn run_config(
        &self,
        server: &mut dyn BenchEngine,
        cell: &Cell,
        tests: &[Test],
        tally: &mut Tally,
        total: usize,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let label = &cell.label;
        let mut prepared = Prepared::new(self.ctx.plan.warmup);
        for test in tests {
            let outcome = match prepared.prepare(server, test) {
                Ok(source) => self.run_reps(server, cell, test, source, tally, total, observe),
                Err(error) => Err(Failure::Measure(error)),
            };
            match outcome {
                Ok(ConfigEnd::Measured) => {}
                Ok(ConfigEnd::Broken) => return Ok(()),
                Err(Failure::Sink(error)) => return Err(error),
                Err(Failure::Measure(error)) => {
                    let note = self.failure_note(server, &error);
                    self.record_failure(cell, test, &note)?;
                    tally.failed += 1;
                    observe(Event::Warning(format!(
                        "{label} {}: failed: {note}",
                        test.name()
                    )));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The error, with what became of the engine (died, frozen) and its log's first error line.
    fn failure_note(&self, server: &mut dyn BenchEngine, error: &Error) -> String {
        if let Some(trouble) = server.trouble() {
            return format!("{trouble} during the trial ({error})");
        }
        match crate::engines::fatal::first_error(server.log_path()) {
            Some(line) if crate::engines::fatal::is_fatal(&line) => {
                format!("{error}; engine log: {line}")
            }
            _ => error.to_string(),
        }
    }

    /// A failed trial for `test` outside a repetition (prompts, prefill or warmup failed).
    fn record_failure(&self, cell: &Cell, test: &Test, note: &str) -> Result<()> {
        let trial_id = self.begin_trial(cell, test, 0)?;
        self.ctx.sink.end_trial(trial_id, "failed", Some(note))
    }

    /// Store the start of repetition `rep` of `test` on the cell's engine and model.
    fn begin_trial(&self, cell: &Cell, test: &Test, rep: u32) -> Result<i64> {
        let workload = test.to_json();
        let trial = NewTrial {
            config: Some(&cell.planned.config),
            engine_id: Some(cell.subject.engine_id),
            model_id: Some(cell.subject.model_id),
            workload: &workload,
            repetition: rep,
        };
        self.ctx.sink.begin_trial(self.ctx.run_id, &trial)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a struct would only rename these"
    )]
    fn run_reps(
        &self,
        server: &mut dyn BenchEngine,
        cell: &Cell,
        test: &Test,
        source: &TokenSource,
        tally: &mut Tally,
        total: usize,
        observe: &mut dyn FnMut(Event),
    ) -> Result<ConfigEnd, Failure> {
        let label = cell.label.as_str();
        let mut values = Vec::new();
        let max_reps = if self.ctx.plan.ci_target_pct.is_some() {
            self.ctx.plan.max_reps.max(self.ctx.plan.reps)
        } else {
            self.ctx.plan.reps
        };
        let sink = |result: Result<()>| result.map_err(Failure::Sink);
        for rep in 0..max_reps.max(1) {
            if let Some(signal) = process::interrupted() {
                let error = Error::engine(format!("interrupted by signal {signal}"));
                return Err(Failure::Sink(error));
            }
            if self.ctx.done.contains(&cell.key(test, rep)) {
                tally.done += 1;
                continue;
            }
            if let Some(limit) = self.require_clean {
                noise::wait_for_quiet(limit, &[server.pid()]).map_err(|e| {
                    Failure::Sink(
                        Error::engine(e)
                            .with_hint("stop the busy processes, or drop --require-clean"),
                    )
                })?;
            }
            let watch = Watch::start(&[server.pid()], &self.ctx.watch);
            let trial_id = self.begin_trial(cell, test, rep).map_err(Failure::Sink)?;
            let figures = match measure_test(server.http(), source, test, rep) {
                Ok(figures) => figures,
                Err(error) => {
                    if let Some(signal) = process::interrupted() {
                        // The stop cut the request off: the trial is not a failure of the config.
                        let why = format!("interrupted by {}", process::signal_name(signal));
                        sink(self.ctx.sink.end_trial(trial_id, "interrupted", Some(&why)))?;
                        return Err(Failure::Sink(Error::engine(why)));
                    }
                    let note = self.failure_note(server, &error);
                    sink(self.ctx.sink.end_trial(trial_id, "failed", Some(&note)))?;
                    tally.failed += 1;
                    observe(Event::Warning(format!(
                        "{label} {} rep {}: failed: {note}",
                        test.name(),
                        rep + 1
                    )));
                    return Ok(ConfigEnd::Broken);
                }
            };
            if let Some(reason) = non_finite(&figures) {
                // The request worked; the engine can go on with the next repetition.
                sink(self.ctx.sink.end_trial(trial_id, "failed", Some(&reason)))?;
                tally.failed += 1;
                observe(Event::Warning(format!(
                    "{label} {} rep {}: failed: {reason}",
                    test.name(),
                    rep + 1
                )));
                continue;
            }
            let watched = watch.finish();
            let mut flags = figures.flags.clone();
            flags.extend(watched.flags.iter().cloned());
            sink(store_figures(self.ctx.sink, trial_id, &figures))?;
            sink(watched.store(self.ctx.sink, trial_id, figures.tokens()))?;
            let note = (!flags.is_empty()).then(|| flags.join("; "));
            sink(self.ctx.sink.end_trial(trial_id, "ok", note.as_deref()))?;
            tally.done += 1;
            values.push(figures.value);
            observe(Event::Trial {
                done: tally.done,
                total,
                label,
                test: &test.name(),
                rep,
                value: figures.value,
                unit: "t/s",
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
        self.warn_about_spread(label, test, &values, observe);
        Ok(ConfigEnd::Measured)
    }

    /// A slow first repetition and statistical outliers, as warnings.
    fn warn_about_spread(
        &self,
        label: &str,
        test: &Test,
        values: &[f64],
        observe: &mut dyn FnMut(Event),
    ) {
        if values.len() < 3 {
            return;
        }
        let rest = Summary::of(&values[1..]);
        if values[0] < rest.median * 0.8 {
            observe(Event::Warning(format!(
                "{label} {}: the first run ({:.1} t/s) was much slower than the rest (median {:.1}); consider --warmup",
                test.name(),
                values[0],
                rest.median
            )));
        }
        let outliers = super::stats::outliers(values);
        if !outliers.is_empty() {
            observe(Event::Warning(format!(
                "{label} {}: {} statistical outlier(s) among {} runs (modified z-score); the machine may be noisy",
                test.name(),
                outliers.len(),
                values.len()
            )));
        }
    }
}

/// Store a measured trial's figures and ITL gaps (what the machine did is [`Watched::store`]'s).
pub fn store_figures(sink: &dyn TrialSink, trial_id: i64, figures: &TrialFigures) -> Result<()> {
    for (metric, value, unit, source) in &figures.samples {
        sink.sample(trial_id, metric, *value, *unit, source, 0)?;
    }
    for (seq, gap) in figures.itl_ms.iter().enumerate() {
        sink.sample(trial_id, "itl_ms", *gap, Unit::Milliseconds, "client", seq)?;
    }
    Ok(())
}

/// Trials already stored for a run (status ok), for `--resume`: each keyed by its model's sha256
/// and the build of the subject whose engine row it names (a trial on no subject's engine is
/// not done).
pub fn completed_trials(
    sink: &dyn TrialSink,
    run_id: i64,
    subjects: &[Subject],
) -> Result<HashSet<TrialKey>> {
    let trials = sink.trials(run_id)?;
    let key = |t: TrialRow| {
        let subject = subjects.iter().find(|s| t.engine_id == Some(s.engine_id))?;
        Some(TrialKey {
            model_sha256: t.model_sha256?,
            build: subject.build.clone().unwrap_or_default(),
            config_hash: t.config_hash?,
            test: t.workload["test"].as_str()?.to_string(),
            repetition: t.repetition as u32,
        })
    };
    let ok = trials.into_iter().filter(|t| t.status == "ok");
    Ok(ok.filter_map(key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::load::selftest::{Fault, ScriptedEndpoint};
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
            models: vec!["m.gguf".into()],
            builds: Vec::new(),
            matrix,
            reps,
            warmup,
            ci_target_pct: None,
            max_reps: reps,
            engine: "llama-server".into(),
            extra_args: vec!["--no-mmap".into()],
            health_timeout_s: 5,
            timeouts: Timeouts::default(),
            shard: None,
        }
    }

    struct Harness<'a> {
        endpoint: &'a ScriptedEndpoint,
        /// The specs the runner asked engines for, in order.
        started: RefCell<Vec<ServerSpec>>,
        /// Engines of this binary fail to start, as a broken build's would.
        broken: Option<PathBuf>,
    }

    impl Harness<'_> {
        fn start(&self, spec: ServerSpec) -> Result<Box<dyn BenchEngine>> {
            let log_path = spec.log_path.clone();
            let broken = self.broken.as_ref() == Some(&spec.binary);
            self.started.borrow_mut().push(spec);
            if broken {
                return Err(Error::engine(
                    "llama-server exited with signal 11 before it was healthy",
                ));
            }
            let http = Http::new(&self.endpoint.url, Duration::from_secs(10));
            Ok(Box::new(Scripted { http, log_path }))
        }

        fn run(
            &self,
            sink: &MemorySink,
            plan: &BenchPlan,
            done: HashSet<TrialKey>,
        ) -> Result<Vec<String>> {
            self.run_on(sink, plan, subjects(plan), done)
        }

        fn run_on(
            &self,
            sink: &MemorySink,
            plan: &BenchPlan,
            subjects: Vec<Subject>,
            done: HashSet<TrialKey>,
        ) -> Result<Vec<String>> {
            let bench = ServerBench {
                ctx: BenchContext {
                    sink,
                    run_id: 1,
                    plan,
                    subjects,
                    done,
                    watch: WatchConfig::default(),
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

    /// The plan's subjects as the session would pair them: build `b` has engine row 2 + 10 b and
    /// binary `b/llama-server` (2 and `llama-server` without builds); model `m` has row 3 + m.
    /// The memory sink reads a trial's model as `model <id>`, so that is its "sha256".
    fn subjects(plan: &BenchPlan) -> Vec<Subject> {
        let order = plan.subject_order();
        let ids = |build: Option<&str>, model: &Path| {
            let b = plan
                .builds
                .iter()
                .position(|r| Some(r.name.as_str()) == build);
            let m = plan.models.iter().position(|p| p == model).unwrap_or(0);
            (2 + 10 * b.unwrap_or(0) as i64, 3 + m as i64)
        };
        let subject = |(build, model): (Option<&str>, &Path)| {
            let (engine_id, model_id) = ids(build, model);
            let build_ref = plan.builds.iter().find(|r| Some(r.name.as_str()) == build);
            let binary = match build_ref {
                Some(build) => build.path.join("llama-server"),
                None => PathBuf::from("llama-server"),
            };
            Subject {
                build: build.map(str::to_string),
                binary,
                engine_id,
                model: model.to_path_buf(),
                model_id,
                model_sha256: format!("model {model_id}"),
                known_flags: KnownFlags::default(),
            }
        };
        order.into_iter().map(subject).collect()
    }

    fn harness(endpoint: &ScriptedEndpoint) -> Harness<'_> {
        Harness {
            endpoint,
            started: RefCell::default(),
            broken: None,
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
    fn a_failing_request_fails_its_trial_and_the_sweep_goes_on_with_the_next_config() {
        // Regression: one failed request ended the whole sweep; later configs were never tried.
        // One warmup and one repetition succeed; every later request fails.
        let endpoint = ScriptedEndpoint::failing_after(2, Duration::ZERO).unwrap();
        let harness = harness(&endpoint);
        let sink = MemorySink::new(Path::new("/runs"));
        let events = harness.run(&sink, &plan(2, 1), HashSet::new()).unwrap();
        assert_eq!(
            events,
            ["-ctv f16 -fa off pp8 #0", "-ctv q8_0 -fa off skipped"]
        );
        let trials = sink.trials(1).unwrap();
        let statuses: Vec<&str> = trials.iter().map(|t| t.status.as_str()).collect();
        // f16: rep 0 ok, rep 1 failed; q8_0 skipped; bf16: its warmup failed.
        assert_eq!(statuses, ["ok", "failed", "skipped", "failed"]);
        for failed in [&trials[1], &trials[3]] {
            let note = failed.note.as_deref().unwrap();
            assert!(
                note.contains("HTTP 500") && note.contains("scripted failure"),
                "{note}"
            );
        }
        assert_eq!(harness.started.borrow().len(), 2, "bf16 got its own engine");
        assert_eq!(
            sink.logs().len(),
            2,
            "each engine log is kept on failure too"
        );
    }

    /// The harness's runner over a scripted endpoint with `fault`, bounded by short timeouts.
    fn faulty_run(fault: Fault, plan: &BenchPlan) -> (Vec<TrialRow>, Duration) {
        let endpoint = ScriptedEndpoint::faulty(0, fault).unwrap();
        let sink = MemorySink::new(Path::new("/runs"));
        let started = Instant::now();
        let bench = ServerBench {
            ctx: BenchContext {
                sink: &sink,
                run_id: 1,
                plan,
                subjects: subjects(plan),
                done: HashSet::new(),
                watch: WatchConfig::default(),
            },
            require_clean: None,
        };
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_millis(500),
            idle: Duration::from_millis(300),
        };
        let start = |spec: ServerSpec| -> Result<Box<dyn BenchEngine>> {
            let http = Http::with_timeouts(&endpoint.url, timeouts);
            Ok(Box::new(Scripted {
                http,
                log_path: spec.log_path,
            }))
        };
        bench.run_with(&start, &mut |_| {}).unwrap();
        (sink.trials(1).unwrap(), started.elapsed())
    }

    fn one_config(reps: u32) -> BenchPlan {
        let mut plan = plan(reps, 0);
        plan.matrix.set("-ctv", vec!["f16".into()]);
        plan
    }

    #[test]
    fn an_empty_piece_is_still_a_token_and_no_sample_is_ever_inf() {
        // Regression: a pp trial whose one token decoded to "" counted no arrival and stored
        // TTFT 0 ms and pp inf t/s as ok.
        let (trials, _) = faulty_run(Fault::EmptyPiece, &one_config(1));
        let statuses: Vec<&str> = trials.iter().map(|t| t.status.as_str()).collect();
        assert_eq!(statuses, ["ok", "ok"]);
        for sample in trials.iter().flat_map(|t| &t.samples) {
            assert!(sample.value.is_finite(), "{sample:?}");
        }
        let ttft = trials[0]
            .samples
            .iter()
            .find(|s| s.metric == "ttft_ms")
            .unwrap();
        assert!(ttft.value > 0.0);
        let tokens = trials[1]
            .samples
            .iter()
            .find(|s| s.metric == "tokens_received");
        assert_eq!(tokens.map(|s| s.value), Some(4.0));
    }

    #[test]
    fn a_stalled_or_hung_server_fails_the_trial_within_its_bounds() {
        for (fault, reason) in [
            (
                Fault::Stall(1),
                "no data for 0.3 s after 1 events (idle timeout)",
            ),
            (
                Fault::Hang,
                "no first event within 0.5 s (first-byte timeout)",
            ),
            (Fault::BadJson, "is not JSON"),
            (Fault::Truncate(1), "truncated"),
        ] {
            let (trials, _) = faulty_run(fault, &one_config(2));
            let statuses: Vec<&str> = trials.iter().map(|t| t.status.as_str()).collect();
            assert_eq!(statuses, ["failed"], "{fault:?}");
            let note = trials[0].note.as_deref().unwrap();
            assert!(note.contains(reason), "{fault:?}: {note}");
        }
    }

    #[test]
    fn a_non_finite_figure_fails_the_trial_with_its_reason() {
        let figures = TrialFigures {
            value: f64::INFINITY,
            samples: vec![
                ("ttft_ms", 0.0, Unit::Milliseconds, "client"),
                ("pp_tps", f64::INFINITY, Unit::TokensPerSecond, "client"),
            ],
            itl_ms: Vec::new(),
            flags: Vec::new(),
        };
        let reason = non_finite(&figures).unwrap();
        assert_eq!(reason, "client pp_tps is inf (TTFT 0 ms): not stored");
    }

    #[test]
    fn event_tokens_count_events_not_text() {
        assert_eq!(event_tokens(&json!({"content": "", "stop": false})), 1);
        assert_eq!(
            event_tokens(&json!({"content": "ab", "tokens": [1, 2], "stop": false})),
            2
        );
        assert_eq!(
            event_tokens(&json!({"content": "", "tokens": [], "stop": true})),
            0
        );
        assert_eq!(event_tokens(&json!({"content": "x", "stop": true})), 1);
    }

    #[test]
    fn resume_measures_only_the_trials_not_yet_stored() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let plan = plan(2, 0);
        let first = MemorySink::new(Path::new("/runs"));
        harness(&endpoint)
            .run(&first, &plan, HashSet::new())
            .unwrap();
        let mut done = completed_trials(&first, 1, &subjects(&plan)).unwrap();
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
        done.remove(&TrialKey {
            model_sha256: "model 3".into(),
            build: String::new(),
            config_hash: bf16.hash(),
            test: "tg4".into(),
            repetition: 1,
        });
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

    /// Two models on two builds, -ctv f16 and bf16 (q8_0 rejected), pp8 and tg4, one repetition.
    fn sweep_plan() -> BenchPlan {
        let mut plan = plan(1, 0);
        plan.models = vec!["/m/smollm.gguf".into(), "/m/gemma.gguf".into()];
        plan.builds = ["new=/b/new", "old=/b/old"]
            .iter()
            .map(|b| BuildRef::parse(b).unwrap())
            .collect();
        plan
    }

    /// (binary, model, -ctv) of each engine start.
    fn starts(harness: &Harness) -> Vec<(String, String, String)> {
        let started = harness.started.borrow();
        let start = |s: &ServerSpec| {
            let binary = s.binary.display().to_string();
            (binary, s.model.display().to_string(), s.args[1].clone())
        };
        started.iter().map(start).collect()
    }

    fn start_of(build: &str, model: &str, ctv: &str) -> (String, String, String) {
        let binary = format!("{build}/llama-server");
        (binary, format!("/m/{model}.gguf"), ctv.to_string())
    }

    /// (engine, model, status) of each trial, in order.
    fn identities(sink: &MemorySink) -> Vec<(String, String, String)> {
        let trials = sink.trials(1).unwrap();
        let identity = |t: &TrialRow| {
            let engine = t.engine.clone().unwrap_or_default();
            let model = t.model_sha256.clone().unwrap_or_default();
            (engine, model, t.status.clone())
        };
        trials.iter().map(identity).collect()
    }

    /// Each trial of a run as (engine, model, config, test, repetition, status).
    fn trial_keys(sink: &MemorySink) -> Vec<String> {
        let trials = sink.trials(1).unwrap();
        let key = |t: &TrialRow| {
            let (engine, model) = (t.engine.clone(), t.model_sha256.clone());
            let (config, test) = (t.config_hash.clone(), &t.workload["test"]);
            format!(
                "{engine:?} {model:?} {config:?} {test} #{} {}",
                t.repetition, t.status
            )
        };
        trials.iter().map(key).collect()
    }

    #[test]
    fn the_shards_of_a_sweep_measure_every_cell_once_between_them() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let whole = MemorySink::new(Path::new("/runs"));
        harness(&endpoint)
            .run(&whole, &sweep_plan(), HashSet::new())
            .unwrap();
        let mut expected = trial_keys(&whole);
        let mut union = Vec::new();
        for k in 1..=3 {
            let plan = BenchPlan {
                shard: Some(Shard { k, n: 3 }),
                ..sweep_plan()
            };
            let cells: Vec<usize> = plan.cells().iter().map(|c| c.index).collect();
            let expected_cells: Vec<usize> = (0..12).filter(|i| i % 3 == k as usize - 1).collect();
            assert_eq!(cells, expected_cells, "shard {k}/3 takes every third cell");
            let sink = MemorySink::new(Path::new("/runs"));
            harness(&endpoint)
                .run(&sink, &plan, HashSet::new())
                .unwrap();
            union.extend(trial_keys(&sink));
        }
        assert_eq!(
            union.len(),
            expected.len(),
            "no cell measured by two shards"
        );
        union.sort();
        expected.sort();
        assert_eq!(
            union, expected,
            "the shards together measure the whole sweep"
        );
    }

    #[test]
    fn two_models_on_two_builds_start_build_by_build_then_model_by_model() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let harness = harness(&endpoint);
        let sink = MemorySink::new(Path::new("/runs"));
        let events = harness.run(&sink, &sweep_plan(), HashSet::new()).unwrap();
        let expected = [
            ("/b/new", "smollm", "f16"),
            ("/b/new", "smollm", "bf16"),
            ("/b/new", "gemma", "f16"),
            ("/b/new", "gemma", "bf16"),
            ("/b/old", "smollm", "f16"),
            ("/b/old", "smollm", "bf16"),
            ("/b/old", "gemma", "f16"),
            ("/b/old", "gemma", "bf16"),
        ];
        let expected: Vec<_> = expected.iter().map(|(b, m, c)| start_of(b, m, c)).collect();
        assert_eq!(starts(&harness), expected);
        assert_eq!(events[0], "build new · smollm · -ctv f16 -fa off pp8 #0");
        assert_eq!(
            events.len(),
            4 * 2 * 2 + 4,
            "16 trials and 4 skipped q8_0 cells"
        );
        let ok: Vec<_> = identities(&sink)
            .into_iter()
            .filter(|(_, _, status)| status == "ok")
            .collect();
        let pairs: Vec<(&str, &str)> = ok
            .iter()
            .step_by(4)
            .map(|(e, m, _)| (e.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("engine 2", "model 3"),
                ("engine 2", "model 4"),
                ("engine 12", "model 3"),
                ("engine 12", "model 4")
            ]
        );
        let logs: HashSet<PathBuf> = sink.logs().into_iter().map(|l| l.path).collect();
        assert_eq!(logs.len(), 8, "each engine start keeps its own log");
    }

    #[test]
    fn a_flag_one_build_does_not_know_skips_its_cells_there_only() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let harness = harness(&endpoint);
        let sink = MemorySink::new(Path::new("/runs"));
        let plan = sweep_plan();
        let mut subjects = subjects(&plan);
        // The old build's --help lists everything but --no-mmap (the plan passes it).
        let known = ["-ctv", "-fa", "-np", "-c"].iter().map(|f| f.to_string());
        for subject in subjects
            .iter_mut()
            .filter(|s| s.build.as_deref() == Some("old"))
        {
            subject.known_flags = KnownFlags(known.clone().collect());
        }
        harness
            .run_on(&sink, &plan, subjects, HashSet::new())
            .unwrap();
        let started = starts(&harness);
        assert_eq!(started.len(), 4);
        assert!(started
            .iter()
            .all(|(binary, _, _)| binary == "/b/new/llama-server"));
        let trials = sink.trials(1).unwrap();
        let old = trials
            .iter()
            .filter(|t| t.engine.as_deref() == Some("engine 12"));
        let notes: Vec<&str> = old.map(|t| t.note.as_deref().unwrap_or_default()).collect();
        assert_eq!(notes.len(), 6, "3 configs × 2 models");
        let unknown = "build old does not know --no-mmap (not in its --help)";
        assert_eq!(
            notes.iter().filter(|n| **n == unknown).count(),
            4,
            "{notes:?}"
        );
        let new_ok = trials
            .iter()
            .filter(|t| t.engine.as_deref() == Some("engine 2") && t.status == "ok");
        assert_eq!(new_ok.count(), 8);
    }

    #[test]
    fn resuming_a_half_done_sweep_measures_only_the_rest() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let plan = sweep_plan();
        let first = MemorySink::new(Path::new("/runs"));
        harness(&endpoint)
            .run(&first, &plan, HashSet::new())
            .unwrap();
        let all = completed_trials(&first, 1, &subjects(&plan)).unwrap();
        assert_eq!(all.len(), 16);
        // Keep the new build's trials and the old build's on smollm: gemma on old is missing.
        let done: HashSet<TrialKey> = all
            .into_iter()
            .filter(|k| k.build == "new" || k.model_sha256 == "model 3")
            .collect();
        assert_eq!(done.len(), 12);
        let rest = MemorySink::new(Path::new("/runs"));
        let resumed = harness(&endpoint);
        resumed.run(&rest, &plan, done).unwrap();
        let expected = [
            start_of("/b/old", "gemma", "f16"),
            start_of("/b/old", "gemma", "bf16"),
        ];
        assert_eq!(starts(&resumed), expected);
        let measured: Vec<_> = identities(&rest)
            .into_iter()
            .filter(|(_, _, status)| status == "ok")
            .collect();
        assert_eq!(measured.len(), 4);
        assert!(measured
            .iter()
            .all(|(e, m, _)| e == "engine 12" && m == "model 4"));
    }

    #[test]
    fn a_build_that_fails_to_start_leaves_the_others_measured() {
        let endpoint = ScriptedEndpoint::start(Duration::ZERO).unwrap();
        let mut harness = harness(&endpoint);
        harness.broken = Some("/b/new/llama-server".into());
        let sink = MemorySink::new(Path::new("/runs"));
        harness.run(&sink, &sweep_plan(), HashSet::new()).unwrap();
        let trials = identities(&sink);
        let of = |engine: &str, status: &str| {
            let matching = trials.iter().filter(|(e, _, s)| e == engine && s == status);
            matching.count()
        };
        assert_eq!(
            of("engine 2", "skipped"),
            6,
            "every cell of the broken build, with its reason"
        );
        assert_eq!(of("engine 2", "ok"), 0);
        assert_eq!(
            of("engine 12", "ok"),
            8,
            "the other build measured both models"
        );
        let notes = sink.trials(1).unwrap();
        let note = notes[0].note.as_deref().unwrap_or_default();
        assert!(note.contains("signal 11"), "{note}");
    }

    #[test]
    fn a_stored_plan_of_one_model_still_reads() {
        // Plans stored before models became a dimension name one `model` and no builds.
        let mut stored = serde_json::to_value(plan(1, 0)).unwrap();
        let object = stored.as_object_mut().unwrap();
        object.remove("models");
        object.remove("builds");
        object.insert("model".into(), json!("old.gguf"));
        let plan: BenchPlan = serde_json::from_value(stored).unwrap();
        assert_eq!(plan.models, [PathBuf::from("old.gguf")]);
        assert!(plan.builds.is_empty());
    }

    #[test]
    fn the_dry_run_shows_every_engine_start_in_order() {
        let text = sweep_plan().describe();
        let starts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  engine start"))
            .collect();
        assert_eq!(starts.len(), 8, "{text}");
        assert_eq!(
            starts[2],
            "  engine start 3/8: build new · gemma · -ctv f16 -fa off"
        );
        assert_eq!(
            starts[7],
            "  engine start 8/8: build old · gemma · -ctv bf16 -fa off"
        );
        assert!(
            text.contains("  skip: build old · smollm · -ctv q8_0 -fa off: "),
            "{text}"
        );
        assert!(
            text.contains("trials: 16; engine starts: 8 (restarts: 7)"),
            "{text}"
        );
    }
}
