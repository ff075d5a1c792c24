//! `bakeoff gate`: each candidate against a baseline, through every fidelity check, into seed
//! 002's "Candidate Final Readiness" table (candidate, PPL status, coherence, tg t/s and draft
//! acceptance, KV at the target context, blocker). Each candidate's figures are stored as soon as
//! they are measured.

use super::agreement::{self, Agreement, Greedy, GreedySettings};
use super::canary::{self, CanaryResult, Suite};
use super::gate::{self, CheckOutcome, GateSpec, GateTable};
use super::hygiene::{self, Hygiene, RequestLog};
use super::kld::{self, KldEstimate, KldReport, Perplexity, TopK};
use super::Status;
use crate::engines::http::Timeouts;
use crate::engines::llama_server::{LlamaServer, ServerSpec};
use crate::formats::config_file;
use crate::formats::gguf::{GgmlType, GgufFile};
use crate::model::facts::ModelFacts;
use crate::model::plan::{plan_kv, KvSettings};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A candidate (or the baseline): a name, engine flags, and optionally another model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub name: String,
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub flags: Flags,
}

/// Flags as one string split on whitespace (no shell) or as an argument list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Flags {
    Line(String),
    List(Vec<String>),
}

impl Default for Flags {
    fn default() -> Self {
        Flags::List(Vec::new())
    }
}

impl Flags {
    pub fn args(&self) -> Vec<String> {
        match self {
            Flags::Line(line) => line.split_whitespace().map(String::from).collect(),
            Flags::List(list) => list.clone(),
        }
    }
}

/// How KL-divergence is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KldMethod {
    Perplexity,
    Http,
    Both,
    Off,
}

/// Which checks run, and their sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    pub canaries: bool,
    /// A user canary suite (TOML) instead of the built-in one.
    pub suite: Option<PathBuf>,
    pub agreement: bool,
    pub agreement_prompts: usize,
    pub agreement_tokens: u32,
    /// `perplexity` (llama-perplexity), `http` (top-k estimate), `both` or `off`.
    pub kld: KldMethod,
    pub kld_ctx: u32,
    pub kld_chunks: u32,
    pub http_positions: usize,
    pub http_top_k: u32,
    /// Decode-speed repetitions (0: skip) and tokens per repetition.
    pub tg_reps: u32,
    pub tg_tokens: u32,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            canaries: true,
            suite: None,
            agreement: true,
            agreement_prompts: 8,
            agreement_tokens: 64,
            kld: KldMethod::Perplexity,
            kld_ctx: 128,
            kld_chunks: 16,
            http_positions: 24,
            http_top_k: 10,
            tg_reps: 3,
            tg_tokens: 128,
        }
    }
}

impl Checks {
    fn perplexity(&self) -> bool {
        matches!(self.kld, KldMethod::Perplexity | KldMethod::Both)
    }
    fn http_kld(&self) -> bool {
        matches!(self.kld, KldMethod::Http | KldMethod::Both)
    }
}

/// A candidates file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    pub model: PathBuf,
    /// The context the candidates are meant to serve: the server's `-c` and the KV column.
    #[serde(default = "default_ctx")]
    pub ctx: u64,
    pub baseline: Candidate,
    #[serde(rename = "candidate")]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub checks: Checks,
    /// Thresholds overriding the defaults (see `gate::CHECKS`).
    #[serde(default)]
    pub gate: Option<GateTable>,
}

fn default_ctx() -> u64 {
    4096
}

impl GateFile {
    /// Read a candidates file; relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<(GateFile, GateSpec)> {
        let origin = path.display().to_string();
        let mut file: GateFile = config_file::read(path)?;
        if file.candidates.is_empty() {
            return Err(Error::input(format!("{origin}: no [[candidate]] entries")));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        file.model = anchor_models(&file.model, base);
        file.checks.suite = file.checks.suite.map(|p| resolve_path(&p, base));
        for c in std::iter::once(&mut file.baseline).chain(&mut file.candidates) {
            c.model = c.model.take().map(|p| resolve_path(&p, base));
        }
        let spec = match &file.gate {
            Some(table) => GateSpec::from_table(table, &origin)?,
            None => GateSpec::default(),
        };
        Ok((file, spec))
    }
}

/// One row of the readiness table, with everything behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Readiness {
    pub candidate: String,
    pub baseline: bool,
    pub model: PathBuf,
    pub flags: Vec<String>,
    pub canaries: Vec<CanaryResult>,
    pub hygiene: Option<Hygiene>,
    pub agreement: Option<Agreement>,
    pub speculative: Option<Agreement>,
    pub kld: Option<KldReport>,
    pub kld_estimate: Option<KldEstimate>,
    /// Base PPL (baseline row only).
    pub ppl: Option<f64>,
    /// Median of `tg_samples`.
    pub tg_tps: Option<f64>,
    /// Server-timed decode t/s of each speed repetition.
    #[serde(default)]
    pub tg_samples: Vec<f64>,
    pub draft_acceptance: Option<f64>,
    /// What telemetry saw during the decode-speed step, and the tokens it generated (stored
    /// as the row's trial samples, like a bench trial's).
    #[serde(skip)]
    pub tg_telemetry: Option<(crate::system::telemetry::TelemetrySummary, f64)>,
    pub kv_bytes: Option<u64>,
    pub outcomes: Vec<CheckOutcome>,
    pub overall: Option<Status>,
    pub blocker: Option<String>,
}

impl Readiness {
    pub(crate) fn new(candidate: &Candidate, model: &Path, baseline: bool) -> Self {
        Readiness {
            candidate: candidate.name.clone(),
            baseline,
            model: model.to_path_buf(),
            flags: candidate.flags.args(),
            canaries: Vec::new(),
            hygiene: None,
            agreement: None,
            speculative: None,
            kld: None,
            kld_estimate: None,
            ppl: None,
            tg_tps: None,
            tg_samples: Vec::new(),
            draft_acceptance: None,
            tg_telemetry: None,
            kv_bytes: None,
            outcomes: Vec::new(),
            overall: None,
            blocker: None,
        }
    }

    pub fn canaries_passed(&self) -> usize {
        self.canaries.iter().filter(|c| c.pass).count()
    }
}

/// Progress reported while a gate runs.
pub enum Event<'a> {
    Stage { candidate: &'a str, what: &'a str },
    Done(&'a Readiness),
}

/// What the runner needs from the outside: binaries, where logs go, and where rows are stored.
pub struct GateRun<'a> {
    pub file: &'a GateFile,
    pub spec: &'a GateSpec,
    pub server: PathBuf,
    /// `None`: llama-perplexity is not installed; `kld = perplexity` then fails with a hint.
    pub perplexity: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// Called with each finished row, to store it before the next candidate starts.
    pub store: &'a mut dyn FnMut(&Readiness) -> Result<()>,
    /// Bounds on each request to the engines.
    pub timeouts: Timeouts,
    /// Sample energy and power during the decode-speed step (`None`: `--no-telemetry`).
    pub telemetry: Option<crate::system::telemetry::Config>,
}

/// The baseline's reference figures, measured once.
struct Reference {
    canaries: Vec<CanaryResult>,
    greedy: Vec<Greedy>,
    top_k: Option<TopK>,
    base_logits: Option<PathBuf>,
}

/// The baseline measured once, with what every candidate is compared against.
pub struct Baseline {
    reference: Reference,
    pub row: Readiness,
    suite: Suite,
    prompts: Vec<String>,
}

impl GateRun<'_> {
    pub fn run(&mut self, observe: &mut dyn FnMut(Event)) -> Result<Vec<Readiness>> {
        let baseline = self.baseline(observe)?;
        (self.store)(&baseline.row)?;
        observe(Event::Done(&baseline.row));
        let mut rows = vec![baseline.row.clone()];
        for candidate in &self.file.candidates {
            if let Some(signal) = crate::engines::process::interrupted() {
                return Err(Error::engine(format!("interrupted by signal {signal}")));
            }
            let row = self.candidate(&baseline, candidate, observe);
            (self.store)(&row)?;
            observe(Event::Done(&row));
            rows.push(row);
        }
        Ok(rows)
    }

    /// Measure the file's baseline: its row and the reference figures candidates are judged by.
    pub fn baseline(&self, observe: &mut dyn FnMut(Event)) -> Result<Baseline> {
        let suite = match &self.file.checks.suite {
            Some(path) => Suite::load(path)?,
            None => Suite::builtin(),
        };
        let prompts = agreement::builtin_prompts(self.file.checks.agreement_prompts, 240);
        let (reference, row) = self.measure_baseline(&suite, &prompts, observe)?;
        Ok(Baseline {
            reference,
            row,
            suite,
            prompts,
        })
    }

    /// One candidate against `baseline`. A candidate that fails (its engine died or froze, a
    /// request broke) is a FAIL row with the reason, never an error.
    pub fn candidate(
        &self,
        baseline: &Baseline,
        candidate: &Candidate,
        observe: &mut dyn FnMut(Event),
    ) -> Readiness {
        let (reference, suite, prompts) = (&baseline.reference, &baseline.suite, &baseline.prompts);
        self.measure_candidate(candidate, reference, suite, prompts, observe)
            .unwrap_or_else(|error| self.failed_row(candidate, &error))
    }

    /// A candidate's row when measuring it failed: FAIL, the error as the blocker.
    fn failed_row(&self, candidate: &Candidate, error: &Error) -> Readiness {
        let model = self.model_of(candidate);
        let mut row = Readiness::new(candidate, &model, false);
        row.kv_bytes = kv_bytes(&model, &row.flags, self.file.ctx);
        row.overall = Some(Status::Fail);
        row.blocker = Some(format!("checks failed: {error}"));
        row
    }

    fn model_of(&self, candidate: &Candidate) -> PathBuf {
        candidate
            .model
            .clone()
            .unwrap_or_else(|| self.file.model.clone())
    }

    fn server_args(&self, flags: &[String]) -> Vec<String> {
        // One slot and a fixed context: logits depend on batch and slot layout.
        let mut args = strip_flags(flags, &["-np", "--parallel", "-c", "--ctx-size"]);
        args.extend([
            "-np".into(),
            "1".into(),
            "-c".into(),
            self.file.ctx.to_string(),
        ]);
        args
    }

    fn launch(&self, model: &Path, flags: &[String], label: &str) -> Result<LlamaServer> {
        let server = LlamaServer::launch(ServerSpec {
            binary: self.server.clone(),
            model: model.to_path_buf(),
            host: "127.0.0.1".into(),
            port: None,
            args: self.server_args(flags),
            health_timeout: Duration::from_secs(180),
            log_path: self.run_dir.join(format!("{}.log", file_safe(label))),
        })?;
        Ok(server.with_timeouts(self.timeouts))
    }

    fn measure_baseline(
        &self,
        suite: &Suite,
        prompts: &[String],
        observe: &mut dyn FnMut(Event),
    ) -> Result<(Reference, Readiness)> {
        let file = self.file;
        let base = &file.baseline;
        let model = self.model_of(base);
        let mut row = Readiness::new(base, &model, true);
        row.kv_bytes = kv_bytes(&model, &row.flags, file.ctx);
        let name = base.name.as_str();
        observe(Event::Stage {
            candidate: name,
            what: "starting the engine",
        });
        let server = self.launch(&model, &row.flags, name).map_err(|e| {
            Error::engine(format!("baseline {name}: {e}"))
                .with_hint("the baseline must start; fix its flags or model")
        })?;
        let mut log = RequestLog::default();
        let settings = self.greedy_settings();
        stop_if_interrupted()?;
        if file.checks.canaries {
            observe(Event::Stage {
                candidate: name,
                what: "canaries",
            });
            row.canaries = canary::run(&server.http, suite, &mut log);
        }
        let mut greedy = Vec::new();
        stop_if_interrupted()?;
        if file.checks.agreement {
            observe(Event::Stage {
                candidate: name,
                what: "greedy agreement (twice, for the noise floor)",
            });
            greedy = greedy_all(&server, prompts, settings, &mut log)?;
            let again = greedy_all(&server, prompts, settings, &mut log)?;
            row.agreement = Some(agreement::compare(&greedy, &again));
        }
        self.measure_speed(&server, &mut row, &mut log, observe);
        let top_k = if file.checks.http_kld() {
            observe(Event::Stage {
                candidate: name,
                what: "top-k logprobs on the fixed text",
            });
            Some(self.top_k(&server, &mut log)?)
        } else {
            None
        };
        if let Some(trouble) = died_during_checks(&server, &log) {
            return Err(Error::engine(trouble));
        }
        let fatal = server.fatal_lines();
        drop(server);
        row.hygiene = Some(hygiene::judge(
            &log,
            &fatal,
            hygiene::is_speculative(&row.flags),
        ));
        row.draft_acceptance = log.acceptance();
        let base_logits = if file.checks.perplexity() {
            observe(Event::Stage {
                candidate: name,
                what: "llama-perplexity: baseline logits",
            });
            let logits = self.run_dir.join("baseline.kld");
            let text = self.fidelity_text()?;
            row.ppl = Some(self.perplexity()?.save_base(
                &model,
                &row.flags,
                &text,
                &logits,
                &self.run_dir.join("perplexity.log"),
            )?);
            Some(logits)
        } else {
            None
        };
        if let Some(h) = &row.hygiene {
            row.outcomes
                .extend(self.spec.judge("hygiene", h.problems.len() as f64));
        }
        row.overall = gate::overall(&row.outcomes);
        row.blocker = row
            .hygiene
            .as_ref()
            .and_then(|h| h.problems.first().cloned());
        let reference = Reference {
            canaries: row.canaries.clone(),
            greedy,
            top_k,
            base_logits,
        };
        Ok((reference, row))
    }

    fn measure_candidate(
        &self,
        candidate: &Candidate,
        reference: &Reference,
        suite: &Suite,
        prompts: &[String],
        observe: &mut dyn FnMut(Event),
    ) -> Result<Readiness> {
        let model = self.model_of(candidate);
        let mut row = Readiness::new(candidate, &model, false);
        row.kv_bytes = kv_bytes(&model, &row.flags, self.file.ctx);
        let name = candidate.name.as_str();
        observe(Event::Stage {
            candidate: name,
            what: "starting the engine",
        });
        let server = match self.launch(&model, &row.flags, name) {
            Ok(server) => server,
            Err(e) => {
                row.overall = Some(Status::Fail);
                row.blocker = Some(format!("engine did not start: {e}"));
                return Ok(row);
            }
        };
        let mut log = RequestLog::default();
        let settings = self.greedy_settings();
        let speculative = hygiene::is_speculative(&row.flags);
        stop_if_interrupted()?;
        if self.file.checks.canaries {
            observe(Event::Stage {
                candidate: name,
                what: "canaries",
            });
            row.canaries = canary::run(&server.http, suite, &mut log);
        }
        let mut greedy = Vec::new();
        if self.file.checks.agreement {
            observe(Event::Stage {
                candidate: name,
                what: "greedy agreement",
            });
            greedy = greedy_all(&server, prompts, settings, &mut log)?;
            row.agreement = Some(agreement::compare(&reference.greedy, &greedy));
        }
        self.measure_speed(&server, &mut row, &mut log, observe);
        if let Some(base_top) = &reference.top_k {
            observe(Event::Stage {
                candidate: name,
                what: "top-k logprobs on the fixed text",
            });
            row.kld_estimate = Some(kld::estimate(base_top, &self.top_k(&server, &mut log)?));
        }
        if let Some(trouble) = died_during_checks(&server, &log) {
            return Err(Error::engine(trouble));
        }
        let fatal = server.fatal_lines();
        drop(server);
        row.hygiene = Some(hygiene::judge(&log, &fatal, speculative));
        row.draft_acceptance = log.acceptance();
        if speculative && !greedy.is_empty() {
            observe(Event::Stage {
                candidate: name,
                what: "speculation off, for losslessness",
            });
            row.speculative =
                Some(self.losslessness(&model, &row.flags, &greedy, prompts, settings)?);
        }
        if let Some(base_logits) = &reference.base_logits {
            observe(Event::Stage {
                candidate: name,
                what: "llama-perplexity: KL-divergence",
            });
            let log_path = self
                .run_dir
                .join(format!("perplexity-{}.log", file_safe(name)));
            match self
                .perplexity()?
                .compare(&model, &row.flags, base_logits, &log_path)
            {
                Ok(report) => row.kld = Some(report),
                Err(e) => row.blocker = Some(format!("KL-divergence pass failed: {e}")),
            }
        }
        self.judge(&mut row, reference);
        Ok(row)
    }

    fn losslessness(
        &self,
        model: &Path,
        flags: &[String],
        with_spec: &[Greedy],
        prompts: &[String],
        settings: GreedySettings,
    ) -> Result<Agreement> {
        let plain = hygiene::without_speculation(flags);
        let server = self.launch(model, &plain, "speculation-off")?;
        let mut log = RequestLog::default();
        let without = greedy_all(&server, prompts, settings, &mut log)?;
        Ok(agreement::compare(&without, with_spec))
    }

    fn judge(&self, row: &mut Readiness, reference: &Reference) {
        let spec = self.spec;
        let mut figures: Vec<(&str, f64)> = Vec::new();
        if let Some(k) = &row.kld {
            figures.extend([
                ("mean_kld", k.mean_kld),
                ("same_top", k.same_top_pct),
                ("ppl_ratio", k.ppl_ratio),
            ]);
            if let Some(p99) = k.kld_percentiles.get("99.0") {
                figures.push(("kld_p99", *p99));
            }
        }
        if let Some(e) = &row.kld_estimate {
            figures.extend([("http_kld", e.mean_kld), ("http_same_top", e.same_top_pct)]);
        }
        if let Some(a) = &row.agreement {
            figures.extend([
                ("greedy_prefix", a.mean_prefix_fraction),
                ("greedy_exact", a.exact_rate),
            ]);
        }
        let base_passed = reference.canaries.iter().filter(|c| c.pass).count();
        if !row.canaries.is_empty() && base_passed > 0 {
            let lost = canary_regressions(&reference.canaries, &row.canaries);
            figures.push(("canary_loss", lost as f64 / base_passed as f64));
        }
        if let Some(h) = &row.hygiene {
            figures.push(("hygiene", h.problems.len() as f64));
        }
        if let Some(s) = &row.speculative {
            let (ties, real) = agreement::split_ties(&s.divergences, spec.tie_gap);
            figures.extend([
                ("spec_divergences", real as f64),
                ("spec_near_ties", ties as f64),
            ]);
        }
        row.outcomes = figures
            .iter()
            .filter_map(|(name, value)| spec.judge(name, *value))
            .collect();
        row.overall = gate::overall(&row.outcomes);
        if row.blocker.is_none() {
            row.blocker = blocker(row);
        }
        // A check that was asked for and could not be measured fails the row: a KL-divergence
        // pass that died (llama-perplexity stopped before its summary) is no pass.
        let kld_missing = reference.base_logits.is_some() && row.kld.is_none();
        if row.blocker.is_some() && (row.overall.is_none() || kld_missing) {
            row.overall = Some(Status::Fail);
        }
    }

    /// Decode speed on the serving configuration: `tg_reps` generations of `tg_tokens` tokens
    /// (EOS ignored, prompt cache off), server-timed; draft timings feed the acceptance.
    fn measure_speed(
        &self,
        server: &LlamaServer,
        row: &mut Readiness,
        log: &mut RequestLog,
        observe: &mut dyn FnMut(Event),
    ) {
        let checks = &self.file.checks;
        if checks.tg_reps == 0 {
            return;
        }
        observe(Event::Stage {
            candidate: &row.candidate,
            what: "decode speed",
        });
        let prompt = agreement::builtin_prompts(1, 240).pop().unwrap_or_default();
        let body = serde_json::json!({
            "prompt": prompt,
            "n_predict": checks.tg_tokens,
            "ignore_eos": true,
            "temperature": 0,
            "cache_prompt": false,
            "stream": false,
        });
        let sampler =
            (self.telemetry.as_ref()).map(|c| crate::system::telemetry::Sampler::start(c, None));
        let mut generated = 0.0;
        for _ in 0..checks.tg_reps {
            let response = server.http.post_json("/completion", &body);
            let timings = response.as_ref().ok().map(|r| r["timings"].clone());
            log.record(&response, timings.as_ref());
            generated += timings
                .as_ref()
                .and_then(|t| t["predicted_n"].as_f64())
                .unwrap_or(0.0);
            if let Some(tps) = timings.and_then(|t| t["predicted_per_second"].as_f64()) {
                row.tg_samples.push(tps);
            }
        }
        row.tg_tps = median(&row.tg_samples);
        row.tg_telemetry = sampler.map(|s| (s.stop(), generated));
    }

    fn greedy_settings(&self) -> GreedySettings {
        GreedySettings {
            n_predict: self.file.checks.agreement_tokens,
            n_probs: 2,
        }
    }

    fn top_k(&self, server: &LlamaServer, log: &mut RequestLog) -> Result<TopK> {
        let tokens = kld::tokenize(&server.http, super::FIDELITY_TEXT)
            .map_err(|error| engine_failure(server, error))?;
        let tokens = &tokens[..tokens.len().min(512)];
        let cuts = kld::cut_points(tokens.len(), 16, self.file.checks.http_positions);
        kld::top_k_at(
            &server.http,
            tokens,
            &cuts,
            self.file.checks.http_top_k,
            log,
        )
        .map_err(|error| engine_failure(server, error))
    }

    fn perplexity(&self) -> Result<Perplexity> {
        let binary = self.perplexity.clone().ok_or_else(|| {
            Error::input("llama-perplexity is not installed beside llama-server")
                .with_hint("scripts/setup builds it; or set `kld = \"http\"` under [checks] for the HTTP estimate")
        })?;
        let c = &self.file.checks;
        Ok(Perplexity {
            binary,
            ctx: c.kld_ctx,
            chunks: c.kld_chunks,
            batch: c.kld_ctx,
        })
    }

    fn fidelity_text(&self) -> Result<PathBuf> {
        let path = self.run_dir.join("fidelity.txt");
        std::fs::write(&path, super::FIDELITY_TEXT).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

fn greedy_all(
    server: &LlamaServer,
    prompts: &[String],
    settings: GreedySettings,
    log: &mut RequestLog,
) -> Result<Vec<Greedy>> {
    prompts
        .iter()
        .map(|p| {
            agreement::greedy(
                &server.http,
                &serde_json::Value::from(p.as_str()),
                settings,
                log,
            )
        })
        .collect::<Result<_>>()
        .map_err(|error| engine_failure(server, error))
}

/// `llama-server (pid N) was killed by signal 9 (SIGKILL) during its checks` when the engine
/// died or froze; asked only when some request failed (a healthy engine costs no wait).
fn died_during_checks(server: &LlamaServer, log: &RequestLog) -> Option<String> {
    let trouble = match log.failures.is_empty() {
        true => server.trouble(),
        false => server.trouble_within(Duration::from_secs(1)),
    }?;
    Some(format!("{trouble} during its checks"))
}

/// A failed request to `server`, named by what became of the engine when it died or froze
/// (`llama-server (pid N) was killed by signal 9 (SIGKILL)`): the request's own error alone
/// says only that a stream broke.
fn engine_failure(server: &LlamaServer, error: Error) -> Error {
    match server.trouble_within(Duration::from_secs(1)) {
        Some(trouble) => Error::engine(format!("{trouble} ({error})")),
        None => error,
    }
}

/// Canaries the baseline passes and the candidate fails.
/// The gate's stages stop at a signal: the engines are gone and the run is winding down.
fn stop_if_interrupted() -> Result<()> {
    match crate::engines::process::interrupted() {
        Some(signal) => Err(Error::engine(format!(
            "interrupted by {}",
            crate::engines::process::signal_name(signal)
        ))),
        None => Ok(()),
    }
}

pub fn canary_regressions(baseline: &[CanaryResult], candidate: &[CanaryResult]) -> usize {
    baseline
        .iter()
        .filter(|b| b.pass)
        .filter(|b| !candidate.iter().any(|c| c.name == b.name && c.pass))
        .count()
}

/// The first failing check, in words.
fn blocker(row: &Readiness) -> Option<String> {
    if let Some(problem) = row.hygiene.as_ref().and_then(|h| h.problems.first()) {
        return Some(problem.clone());
    }
    let worst = row
        .outcomes
        .iter()
        .filter(|o| o.status == Status::Fail)
        .collect::<Vec<_>>();
    let first = worst.first()?;
    let def = gate::check_def(&first.name)?;
    let limit = first.thresholds.warn;
    Some(
        format!(
            "{} {} {} {}",
            first.name,
            format_figure(first.value),
            if def.better == gate::Better::Lower {
                ">"
            } else {
                "<"
            },
            format_figure(limit)
        ) + &if worst.len() > 1 {
            format!(" and {} more", worst.len() - 1)
        } else {
            String::new()
        },
    )
}

fn format_figure(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// KV bytes at `ctx` for one slot with the flags' cache types.
fn kv_bytes(model: &Path, flags: &[String], ctx: u64) -> Option<u64> {
    let facts = ModelFacts::from_gguf(&GgufFile::open(model).ok()?);
    let flag = |names: &[&str]| {
        let i = flags.iter().position(|f| names.contains(&f.as_str()))?;
        flags.get(i + 1).cloned()
    };
    let ty = |v: Option<String>| GgmlType::from_name(v.as_deref().unwrap_or("f16"));
    let settings = KvSettings::new(
        ctx,
        ty(flag(&["-ctk", "--cache-type-k"]))?,
        ty(flag(&["-ctv", "--cache-type-v"]))?,
    );
    plan_kv(&facts, &settings).map(|p| p.total_bytes)
}

/// A path from a candidates file: `~` expanded, relative to the file; a bare file name that is
/// not beside the file may be in the model cache.
/// Each comma-separated item of the file's `model` anchored at the file, as `resolve_path` does;
/// a catalog name (no `/`, no `.gguf`) that is no file there stays as it is.
fn anchor_models(list: &Path, base: &Path) -> PathBuf {
    let text = list.to_string_lossy();
    let anchor = |item: &str| {
        let anchored = resolve_path(Path::new(item), base);
        match anchored.exists() || !crate::model::select::is_name(item) {
            true => anchored.display().to_string(),
            false => item.to_string(),
        }
    };
    let items: Vec<String> = text.split(',').map(str::trim).map(anchor).collect();
    PathBuf::from(items.join(","))
}

fn resolve_path(path: &Path, base: &Path) -> PathBuf {
    let resolved = crate::system::paths::expand_user(path, base);
    let cached = crate::system::paths::models_dir().join(path);
    if !resolved.exists() && path.components().count() == 1 && cached.exists() {
        cached
    } else {
        resolved
    }
}

/// `args` without the given flags and their values.
fn strip_flags(args: &[String], flags: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if flags.contains(&arg.as_str()) {
            iter.next();
        } else {
            out.push(arg.clone());
        }
    }
    out
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidates_file_resolves_paths_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "model = \"m.gguf\"\nctx = 2048\n[baseline]\nname = \"f16\"\nflags = \"-fa on\"\n\
             [[candidate]]\nname = \"q8\"\nflags = [\"-fa\", \"on\", \"-ctk\", \"q8_0\"]\n\
             [gate.mean_kld]\npass = 0.02\nwarn = 0.04\n",
        )
        .unwrap();
        let (file, spec) = GateFile::load(&path).unwrap();
        assert_eq!(file.model, dir.path().join("m.gguf"));
        assert_eq!(file.baseline.flags.args(), vec!["-fa", "on"]);
        assert_eq!(file.candidates[0].flags.args().len(), 4);
        assert_eq!(spec.thresholds["mean_kld"].pass, 0.02);
        std::fs::write(
            &path,
            "model = \"m\"\nbogus = 1\n[baseline]\nname = \"b\"\n[[candidate]]\nname = \"c\"\n",
        )
        .unwrap();
        let err = GateFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("c.toml:2:1: unknown field 'bogus'"), "{err}");
    }

    #[test]
    fn each_model_of_a_list_is_anchored_at_the_file_and_a_catalog_name_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let body = "[baseline]\nname = \"b\"\n[[candidate]]\nname = \"c\"\n";
        let text = format!("model = \"a.gguf, sub/*.gguf,smollm\"\n{body}");
        std::fs::write(&path, text).unwrap();
        let (file, _) = GateFile::load(&path).unwrap();
        let base = dir.path().display();
        let expected = format!("{base}/a.gguf,{base}/sub/*.gguf,smollm");
        assert_eq!(file.model, PathBuf::from(expected));
    }

    #[test]
    fn typos_in_a_candidates_file_name_the_line_and_the_close_key() {
        // Regression: a typo said which file but not where, and offered no spelling.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let head = "model = \"m\"\n[baseline]\nname = \"b\"\n[[candidate]]\nname = \"c\"\n";
        let cases = [
            (
                "flag = \"-fa on\"\n",
                "c.toml:6:1: unknown field 'flag'",
                "'flags'",
            ),
            (
                "[checks]\nkld = \"perplexty\"\n",
                "c.toml:7:7: checks.kld: unknown variant 'perplexty'",
                "'perplexity'",
            ),
            (
                "[gate.same_topp]\npass = 1\nwarn = 1\n",
                "c.toml:6:7: unknown field 'same_topp'",
                "'same_top'",
            ),
        ];
        for (tail, message, close) in cases {
            std::fs::write(&path, format!("{head}{tail}")).unwrap();
            let err = GateFile::load(&path).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert_eq!(err.hint(), Some(format!("did you mean {close}?")), "{err}");
        }
    }

    #[test]
    fn canary_regressions_count_only_what_the_baseline_passed() {
        let r = |name: &str, pass| CanaryResult {
            name: name.into(),
            pass,
            reason: String::new(),
            excerpt: String::new(),
            tokens: None,
            tokens_per_second: None,
            draft_acceptance: None,
        };
        let base = [r("a", true), r("b", false), r("c", true)];
        let cand = [r("a", false), r("b", true), r("c", true)];
        assert_eq!(canary_regressions(&base, &cand), 1);
    }

    #[test]
    fn server_args_force_one_slot_and_the_target_context() {
        let args: Vec<String> = "-fa on -np 4 -c 512"
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(strip_flags(&args, &["-np", "-c"]), vec!["-fa", "on"]);
    }
}
