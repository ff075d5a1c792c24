//! The race's measuring side on real engines: one llama-server start per configuration, kept for
//! consecutive repetitions of it, each repetition every test of the [`Workload`] (goal load: one
//! load step, stored as `bakeoff load` stores it), each test a trial stored as measured. A resumed
//! tune answers from the trials already stored, in order, so the race replays to where it stopped
//! and nothing is measured twice.

use super::race::{Evaluator, Outcome, Progress, Request};
use super::workload::{LoadStep, Workload};
use crate::domain::EngineConfig;
use crate::engines::http::Timeouts;
use crate::engines::llama_server::ServerSpec;
use crate::engines::process;
use crate::measure::bench::{self, BenchEngine, Prepared, Subject};
use crate::measure::load::executor::{self, Shape, StepLimits};
use crate::measure::load::workload::Generator;
use crate::measure::load::{LoadEvent, LoadRunner, StepTable};
use crate::measure::matrix::PromptSet;
use crate::measure::prompts::TokenSource;
use crate::measure::sink::{NewTrial, TrialRow, TrialSink};
use crate::measure::watch::{Watch, WatchConfig};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One configuration of the race as the engine sees it.
#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    /// Its flags, without the model (`-m`): trials name the model by its row.
    pub config: EngineConfig,
    /// Index into the subjects (one per model).
    pub subject: usize,
    /// What the planner says it needs at the tune's context.
    pub needed: Option<u64>,
}

/// What the measuring side reports, for the display.
pub enum Event<'a> {
    /// An engine is starting for a configuration.
    Start { label: &'a str },
    Trial {
        label: &'a str,
        test: &'a str,
        rep: u32,
        value: f64,
        flags: &'a [String],
    },
    /// A repetition could not be measured; the candidate is out.
    Failed { label: &'a str, why: &'a str },
    /// A round of the race was judged; `best` is the faithful incumbent's label.
    Round {
        progress: &'a Progress<'a>,
        best: Option<&'a str>,
    },
    /// The fidelity gate at work.
    Gate { candidate: &'a str, what: &'a str },
}

/// The server side of every start: context, slots, pass-through flags, bounds.
#[derive(Debug, Clone)]
pub struct Launch {
    pub ctx: u64,
    pub parallel: u64,
    pub extra_args: Vec<String>,
    pub health_timeout: Duration,
    pub timeouts: Timeouts,
    /// Goal load: each of the server's slots holds `ctx` (`-c ctx × slots`), with `/metrics`.
    pub per_slot: bool,
    /// What each trial watches besides its figures (noise, telemetry).
    pub watch: WatchConfig,
}

impl Launch {
    /// The engine arguments a configuration's `args` are started with: its own, then the slots
    /// (unless it sets them), the context and the pass-through flags. A profile saved from a tune
    /// takes the same vector, so what is served is what was measured.
    pub fn server_args(&self, mut args: Vec<String>) -> Vec<String> {
        let np = args.iter().position(|a| a == "-np");
        let slots = np.and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
        if np.is_none() {
            args.extend(["-np".into(), self.parallel.to_string()]);
        }
        let ctx = match self.per_slot {
            // Given -np without --kv-unified (never a knob), this build (b11434) gives each slot
            // -c / np cells (llama-context.cpp `n_ctx_seq`): every slot must hold the tune's
            // context. The server's own view of a load step needs --metrics.
            true => {
                args.push("--metrics".into());
                self.ctx * slots.unwrap_or(self.parallel).max(1)
            }
            false => self.ctx,
        };
        args.extend(["-c".into(), ctx.to_string()]);
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Per (subject, config hash): repetition → test name → t/s, from the stored trials.
type Stored = HashMap<(usize, String), BTreeMap<u32, BTreeMap<String, f64>>>;

/// The [`Evaluator`] over real engines.
pub struct Engines<'a> {
    pub sink: &'a dyn TrialSink,
    pub run_id: i64,
    pub subjects: &'a [Subject],
    pub contenders: &'a [Contender],
    pub workload: &'a Workload,
    pub launch: Launch,
    observe: &'a dyn Fn(Event),
    stored: Stored,
    /// Repetitions each contender has been given so far (its next repetition's index).
    used: Vec<u32>,
    engine: Option<(usize, Box<dyn BenchEngine>, Prepared)>,
    /// Goal load's prompts for the kept engine (from its tokenizer), made at its first step.
    load_prompts: Option<Generator>,
    /// The signal that stopped the tune.
    pub interrupted: Option<i32>,
    /// Repetitions answered from stored trials.
    pub replayed: usize,
    pub starts: usize,
}

impl<'a> Engines<'a> {
    pub fn new(
        sink: &'a dyn TrialSink,
        run_id: i64,
        (subjects, contenders): (&'a [Subject], &'a [Contender]),
        workload: &'a Workload,
        launch: Launch,
        observe: &'a dyn Fn(Event),
    ) -> Result<Self> {
        let stored = stored(sink, run_id, subjects, workload)?;
        Ok(Engines {
            sink,
            run_id,
            subjects,
            contenders,
            workload,
            launch,
            observe,
            stored,
            used: vec![0; contenders.len()],
            engine: None,
            load_prompts: None,
            interrupted: None,
            replayed: 0,
            starts: 0,
        })
    }

    /// Stop the engine kept for the next request (its log is stored with the run).
    pub fn stop_engine(&mut self) -> Result<()> {
        self.load_prompts = None;
        if let Some((_, server, _)) = self.engine.take() {
            self.sink.engine_log(self.run_id, None, server.log_path())?;
        }
        Ok(())
    }

    /// Measure `repetitions` more of `candidate` on its own engine, outside the race (the
    /// engine's defaults, to compare the winner with). Returns every sample it has.
    pub fn extra(&mut self, candidate: usize, repetitions: usize) -> Result<Vec<f64>> {
        let mut samples = Vec::new();
        for _ in 0..repetitions {
            match self.repetition(candidate)? {
                Some(score) => samples.push(score),
                None => break,
            }
        }
        Ok(samples)
    }

    /// `pairs` repetitions each of `a` and `b`, interleaved A B B A A B …: a machine that drifts
    /// (a noisy neighbour arriving, a CPU's clock sinking as it warms) weighs on both alike, where
    /// all of `a` then all of `b` would hand the drift to one side. A side that fails stops; the
    /// other goes on. Returns each side's samples.
    pub fn interleaved(
        &mut self,
        a: usize,
        b: usize,
        pairs: usize,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut samples = (Vec::new(), Vec::new());
        let mut live = (true, true);
        for pair in 0..pairs {
            let order = if pair % 2 == 0 { [a, b] } else { [b, a] };
            for candidate in order {
                let (side, alive) = match candidate == a {
                    true => (&mut samples.0, &mut live.0),
                    false => (&mut samples.1, &mut live.1),
                };
                if !*alive {
                    continue;
                }
                match self.repetition(candidate)? {
                    Some(score) => side.push(score),
                    None => *alive = false,
                }
            }
            if self.interrupted.is_some() || !(live.0 || live.1) {
                break;
            }
        }
        Ok(samples)
    }

    /// One repetition's score: from the stored trials when a resumed run holds it, else
    /// measured. `None`: it failed (reported) or the tune was interrupted.
    fn repetition(&mut self, candidate: usize) -> Result<Option<f64>> {
        let rep = self.used[candidate];
        self.used[candidate] += 1;
        if let Some(score) = self.stored_score(candidate, rep) {
            self.replayed += 1;
            return Ok(Some(score));
        }
        if let Some(signal) = process::interrupted() {
            // Ctrl-C (maybe during the gate): nothing new starts; the race ends this round.
            self.interrupted = Some(signal);
            return Ok(None);
        }
        match self.measure_live(candidate, rep) {
            Ok(score) => Ok(Some(score)),
            Err(Stop::Sink(error)) => Err(error),
            Err(Stop::Interrupted) => Ok(None),
            Err(Stop::Failed(why)) => {
                let label = &self.contenders[candidate].label;
                (self.observe)(Event::Failed { label, why: &why });
                self.stop_engine()?;
                Ok(None)
            }
        }
    }

    fn stored_score(&self, candidate: usize, rep: u32) -> Option<f64> {
        let contender = &self.contenders[candidate];
        let key = (contender.subject, contender.config.hash());
        let tests = self.stored.get(&key)?.get(&rep)?;
        let values: Option<Vec<f64>> = (self.workload.test_names().iter())
            .map(|name| tests.get(name).copied())
            .collect();
        Some(self.workload.score(&values?))
    }

    fn measure_live(&mut self, candidate: usize, rep: u32) -> std::result::Result<f64, Stop> {
        self.ensure_engine(candidate)?;
        if let Some(step) = &self.workload.load {
            return self.load_step(candidate, step, rep);
        }
        let mut values = Vec::new();
        for test in &self.workload.tests {
            if let Some(signal) = process::interrupted() {
                self.interrupted = Some(signal);
                return Err(Stop::Interrupted);
            }
            let value = self.trial(candidate, test, rep)?;
            values.push(value);
        }
        Ok(self.workload.score(&values))
    }

    /// The candidate's engine, started unless the last request's engine is the same start.
    fn ensure_engine(&mut self, candidate: usize) -> std::result::Result<(), Stop> {
        let contender = &self.contenders[candidate];
        let same = |(kept, _, _): &(usize, Box<dyn BenchEngine>, Prepared)| {
            let kept = &self.contenders[*kept];
            kept.subject == contender.subject && kept.config == contender.config
        };
        if self.engine.as_ref().is_some_and(same) {
            return Ok(());
        }
        self.stop_engine().map_err(Stop::Sink)?;
        (self.observe)(Event::Start {
            label: &contender.label,
        });
        let subject = &self.subjects[contender.subject];
        let spec = self.spec(subject, &contender.config);
        self.starts += 1;
        let server = bench::launch_llama_server(spec, self.launch.timeouts)
            .map_err(|e| Stop::Failed(format!("the engine did not start: {e}")))?;
        let prepared = Prepared::light(super::tuner::WARMUP_TOKENS);
        self.engine = Some((candidate, server, prepared));
        Ok(())
    }

    fn spec(&self, subject: &Subject, config: &EngineConfig) -> ServerSpec {
        let args = self.launch.server_args(config.args());
        let launch = &self.launch;
        let log = format!("llama-server-{}-{}.log", subject.model_id, config.hash());
        ServerSpec {
            binary: subject.binary.clone(),
            model: subject.model.clone(),
            host: "127.0.0.1".into(),
            port: None,
            args,
            health_timeout: launch.health_timeout,
            log_path: self.sink.run_dir(self.run_id).join(log),
        }
    }

    /// One test of one repetition on the kept engine, stored as measured.
    fn trial(
        &mut self,
        candidate: usize,
        test: &crate::measure::matrix::Test,
        rep: u32,
    ) -> std::result::Result<f64, Stop> {
        let contender = &self.contenders[candidate];
        let subject = &self.subjects[contender.subject];
        let Some((_, server, prepared)) = self.engine.as_mut() else {
            return Err(Stop::Failed("no engine".into()));
        };
        let source = prepared
            .prepare(server.as_ref(), test)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let watch = Watch::start(&[server.pid()], &self.launch.watch);
        let workload = test.to_json();
        let trial = NewTrial {
            config: Some(&contender.config),
            engine_id: Some(subject.engine_id),
            model_id: Some(subject.model_id),
            workload: &workload,
            repetition: rep,
        };
        let sink = self.sink;
        let trial_id = sink.begin_trial(self.run_id, &trial).map_err(Stop::Sink)?;
        let figures = match bench::measure_test(server.http(), source, test, rep) {
            Ok(figures) => figures,
            Err(error) => {
                let (status, why) = match process::interrupted() {
                    Some(signal) => {
                        self.interrupted = Some(signal);
                        (
                            "interrupted",
                            format!("interrupted by {}", process::signal_name(signal)),
                        )
                    }
                    None => match server.trouble() {
                        Some(trouble) => {
                            ("failed", format!("{trouble} during the trial ({error})"))
                        }
                        None => ("failed", error.to_string()),
                    },
                };
                sink.end_trial(trial_id, status, Some(&why))
                    .map_err(Stop::Sink)?;
                return Err(match status {
                    "interrupted" => Stop::Interrupted,
                    _ => Stop::Failed(why),
                });
            }
        };
        if let Some(reason) = bench::non_finite(&figures) {
            sink.end_trial(trial_id, "failed", Some(&reason))
                .map_err(Stop::Sink)?;
            return Err(Stop::Failed(reason));
        }
        let watched = watch.finish();
        let mut flags = figures.flags.clone();
        flags.extend(watched.flags.iter().cloned());
        bench::store_figures(sink, trial_id, &figures).map_err(Stop::Sink)?;
        let tokens = figures.tokens();
        watched.store(sink, trial_id, tokens).map_err(Stop::Sink)?;
        let value = match self.workload.per_joule() {
            false => figures.value,
            true => {
                let efficiency = tokens.and_then(|n| watched.tokens_per_j(n));
                let Some(efficiency) = efficiency else {
                    let why = "no energy figure for the trial (goal tokens-per-joule): no counter moved, or it ran under the 0.5 s one needs (raise --gen)";
                    sink.end_trial(trial_id, "failed", Some(why))
                        .map_err(Stop::Sink)?;
                    return Err(Stop::Failed(why.into()));
                };
                efficiency
            }
        };
        let note = (!flags.is_empty()).then(|| flags.join("; "));
        sink.end_trial(trial_id, "ok", note.as_deref())
            .map_err(Stop::Sink)?;
        (self.observe)(Event::Trial {
            label: &contender.label,
            test: &test.name(),
            rep,
            value,
            flags: &flags,
        });
        Ok(value)
    }
}

impl Engines<'_> {
    /// Goal load's repetition on the kept engine: one closed-loop step, stored by the load
    /// runner as `bakeoff load` stores its steps (one trial, every request and token gap).
    fn load_step(
        &mut self,
        candidate: usize,
        step: &LoadStep,
        rep: u32,
    ) -> std::result::Result<f64, Stop> {
        let plan = step.plan();
        self.load_prompts(&plan)?;
        let contender = &self.contenders[candidate];
        let subject = &self.subjects[contender.subject];
        let (Some((_, server, _)), Some(generator)) = (&self.engine, &self.load_prompts) else {
            return Err(Stop::Failed("no engine".into()));
        };
        let trouble = || server.trouble();
        let runner = LoadRunner {
            sink: self.sink,
            run_id: self.run_id,
            http: server.http(),
            generator,
            config: &contender.config,
            engine_id: Some(subject.engine_id),
            model_id: Some(subject.model_id),
            model_name: None,
            ceiling_tps: None,
            tracked_pids: vec![server.pid()],
            trouble: &trouble,
            watch: &self.launch.watch,
        };
        let mut warnings = Vec::new();
        let mut observe = |event: LoadEvent| {
            if let LoadEvent::Warning(warning) = event {
                warnings.push(warning);
            }
        };
        let (table, gone) = runner
            .repetition(&plan, rep, &mut observe)
            .map_err(Stop::Sink)?;
        if let Some(signal) = process::interrupted() {
            self.interrupted = Some(signal);
            return Err(Stop::Interrupted);
        }
        if let Some(gone) = gone {
            return Err(Stop::Failed(gone));
        }
        let value = step.score(&table).map_err(Stop::Failed)?;
        (self.observe)(Event::Trial {
            label: &contender.label,
            test: &table.step,
            rep,
            value,
            flags: &warnings,
        });
        Ok(value)
    }

    /// The prompts of the kept engine, made (and the engine warmed up with one request per
    /// user, not stored) before its first step: a fresh engine's first requests pay for page
    /// faults and allocations that the configuration would not pay in service.
    fn load_prompts(
        &mut self,
        plan: &crate::measure::load::LoadPlan,
    ) -> std::result::Result<(), Stop> {
        if self.load_prompts.is_some() {
            return Ok(());
        }
        let Some((_, server, _)) = &self.engine else {
            return Err(Stop::Failed("no engine".into()));
        };
        let failed = |e: Error| Stop::Failed(e.to_string());
        let source = TokenSource::new(server.http(), &PromptSet::Random).map_err(failed)?;
        let generator =
            Generator::new(plan.workload.clone(), plan.seed, Some(source)).map_err(failed)?;
        let users = plan.limits.max_inflight;
        let warmup = StepLimits {
            requests: Some(users),
            ..plan.limits.clone()
        };
        let shape = Shape::Concurrency(users);
        let seed = plan.seed.wrapping_sub(1);
        executor::run_step(
            server.http(),
            &generator,
            &shape,
            &warmup,
            seed,
            WARMUP_CONVERSATIONS,
            None,
            &mut |_, _| {},
        );
        self.load_prompts = Some(generator);
        Ok(())
    }
}

/// Warm-up requests' conversation numbers: far from any repetition's (which start at
/// repetition × 1 000 000), so no repetition reuses a warm-up prompt.
const WARMUP_CONVERSATIONS: usize = 1 << 40;

/// Why a live repetition ended early.
enum Stop {
    /// The store failed: the tune ends.
    Sink(Error),
    Interrupted,
    /// This candidate could not be measured.
    Failed(String),
}

impl Evaluator for Engines<'_> {
    fn measure(&mut self, batch: &[Request]) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for request in batch {
            let mut samples = Vec::new();
            let mut failed = None;
            for _ in 0..request.repetitions {
                match self.repetition(request.candidate)? {
                    Some(score) => samples.push(score),
                    None => {
                        failed = Some(match self.interrupted {
                            Some(signal) => {
                                format!("interrupted by {}", process::signal_name(signal))
                            }
                            None => "could not be measured (see the warning above)".to_string(),
                        });
                        break;
                    }
                }
            }
            outcomes.push(match failed {
                Some(why) => Outcome::Failed(why),
                None => Outcome::Samples(samples),
            });
        }
        Ok(outcomes)
    }

    fn observe(&mut self, progress: &Progress) {
        let best =
            (progress.incumbent.as_ref()).map(|s| self.contenders[s.candidate].label.as_str());
        (self.observe)(Event::Round { progress, best });
    }
}

/// The ok trials of a resumed run, by subject and configuration.
fn stored(
    sink: &dyn TrialSink,
    run_id: i64,
    subjects: &[Subject],
    workload: &Workload,
) -> Result<Stored> {
    let mut stored: Stored = HashMap::new();
    for trial in sink.trials(run_id)? {
        if trial.status != "ok" {
            continue;
        }
        let subject = subjects.iter().position(|s| {
            Some(s.engine_id) == trial.engine_id && Some(s.model_id) == trial.model_id
        });
        let (Some(subject), Some(hash)) = (subject, trial.config_hash.clone()) else {
            continue;
        };
        let Some(test) = trial.workload["test"].as_str() else {
            continue;
        };
        if let Some(value) = stored_value(&trial, workload) {
            let reps = stored.entry((subject, hash)).or_default();
            let tests = reps.entry(trial.repetition as u32).or_default();
            tests.insert(test.to_string(), value);
        }
    }
    Ok(stored)
}

/// The value a stored trial gives its test: a bench test's client t/s, or a load step's score
/// (only when the whole step completed: see [`LoadStep::score`]).
fn stored_value(trial: &TrialRow, workload: &Workload) -> Option<f64> {
    let kind = trial.workload["kind"].as_str().unwrap_or("tg");
    if kind == "load" {
        let step = workload.load.as_ref()?;
        return step.score(&StepTable::from_trial(trial)).ok();
    }
    let (metric, source) = match (kind, workload.per_joule()) {
        (_, true) => ("tokens_per_j", crate::system::telemetry::trial::SOURCE),
        ("pp", _) => ("pp_tps", "client"),
        _ => ("tg_tps", "client"),
    };
    (trial.samples.iter())
        .find(|s| s.metric == metric && s.source == source)
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Unit;
    use crate::engines::build::KnownFlags;
    use crate::measure::load::metrics::Slo;
    use crate::measure::sink::MemorySink;
    use std::path::{Path, PathBuf};

    fn subject() -> Subject {
        Subject {
            build: None,
            binary: PathBuf::from("llama-server"),
            engine_id: 1,
            model: PathBuf::from("smol.gguf"),
            model_id: 2,
            model_sha256: "model 2".into(),
            known_flags: KnownFlags::default(),
        }
    }

    /// A load step stored as the load runner stores one: `done` requests, output tok/s.
    fn store_step(sink: &MemorySink, config: &EngineConfig, rep: u32, done: usize, tps: f64) {
        let workload = serde_json::json!({ "test": "c2", "kind": "load" });
        let trial = NewTrial {
            config: Some(config),
            engine_id: Some(1),
            model_id: Some(2),
            workload: &workload,
            repetition: rep,
        };
        let id = sink.begin_trial(7, &trial).unwrap();
        for request in 0..done {
            let e2e = 100.0 + request as f64;
            sink.sample(id, "e2e_ms", e2e, Unit::Milliseconds, "client", request)
                .unwrap();
        }
        sink.sample(id, "output_tps", tps, Unit::TokensPerSecond, "step", 0)
            .unwrap();
        sink.end_trial(id, "ok", None).unwrap();
    }

    #[test]
    fn a_resumed_load_tune_answers_whole_stored_steps_and_measures_cut_ones_again() {
        let sink = MemorySink::new(Path::new("/runs"));
        let config = EngineConfig::default().with_flag("-np", "2");
        store_step(&sink, &config, 0, 4, 250.0);
        store_step(&sink, &config, 1, 3, 240.0); // cut short by a kill: not an answer
        let workload = Workload::load(512, 2, Some(4), (Some(32), Some(16)), Slo::default());
        let workload = workload.unwrap();
        let stored = stored(&sink, 7, &[subject()], &workload).unwrap();
        let reps = &stored[&(0, config.hash())];
        assert_eq!(reps.len(), 1);
        assert_eq!(reps[&0]["c2"], 250.0);
    }

    #[test]
    fn a_load_server_gets_the_context_once_per_slot_and_its_metrics() {
        let sink = MemorySink::new(Path::new("/runs"));
        let workload = Workload::load(512, 2, None, (Some(32), Some(16)), Slo::default());
        let workload = workload.unwrap();
        let launch = Launch {
            ctx: 512,
            parallel: 2,
            extra_args: Vec::new(),
            health_timeout: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            per_slot: true,
            watch: WatchConfig::default(),
        };
        let subjects = [subject()];
        let engines = Engines::new(&sink, 7, (&subjects, &[]), &workload, launch, &|_| {}).unwrap();
        let args = |np: Option<&str>| {
            let mut config = EngineConfig::default();
            if let Some(np) = np {
                config = config.with_flag("-np", np);
            }
            engines.spec(&subjects[0], &config).args.join(" ")
        };
        assert_eq!(args(Some("1")), "-np 1 --metrics -c 512");
        assert_eq!(args(Some("2")), "-np 2 --metrics -c 1024");
        // No slots knob: the tune's --parallel.
        assert_eq!(args(None), "-np 2 --metrics -c 1024");
    }
}
