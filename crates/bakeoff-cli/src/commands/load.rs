//! `bakeoff load`: resolve the shapes and workload, launch or attach to a server, run the steps
//! under the machine-wide lock, print one row per step. Each (build, model) is a cell that
//! `--shard` splits; one server (`--url`, or one model) is one cell, shard 1's.

use crate::cli::{Global, LoadArgs};
use crate::printer::Printer;
use bakeoff::domain::EngineConfig;
use bakeoff::engines::build::BuildRef;
use bakeoff::engines::EngineKind;
use bakeoff::measure::load::executor::{Progress, Shape, StepLimits};
use bakeoff::measure::load::metrics::{parse_duration_ms, Slo};
use bakeoff::measure::load::selftest;
use bakeoff::measure::load::workload::{Generator, LengthDist, WorkloadSpec};
use bakeoff::measure::load::{LoadEvent, LoadPlan, LoadRunner, ServerSizing, StepTable};
use bakeoff::measure::matrix::{parse_values, PromptSet};
use bakeoff::measure::prompts::TokenSource;
use bakeoff::measure::shard::{self, Shard};
use bakeoff::measure::watch::WatchConfig;
use bakeoff::report::table::Format;
use bakeoff::session::{self, Engine, Launch, RunSpec, Session, Target};
use bakeoff::store::Store;
use bakeoff::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn parse_duration(flag: &str, text: &str) -> bakeoff::Result<Duration> {
    parse_duration_ms(text)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .ok_or_else(|| {
            Error::input(format!(
                "{flag} {text}: expected a duration such as 30s, 500ms or 2m"
            ))
        })
}

/// The shapes asked for; concurrency 1, 2 and 4 when none is (and no sweep).
fn shapes(args: &LoadArgs) -> bakeoff::Result<Vec<Shape>> {
    if let Some(k) = args.burstiness.filter(|k| *k <= 0.0) {
        return Err(Error::input(format!("--burstiness {k}: must be above 0")));
    }
    let mut shapes = requested_shapes(args)?;
    if shapes.is_empty() && args.sweep.is_none() {
        shapes = [1, 2, 4].map(Shape::Concurrency).to_vec();
    }
    Ok(shapes)
}

fn requested_shapes(args: &LoadArgs) -> bakeoff::Result<Vec<Shape>> {
    let rates = |list| rate_shapes(list, args.burstiness);
    let concurrency = args
        .concurrency
        .as_deref()
        .map(concurrency_shapes)
        .transpose()?;
    let rates = args.rate.as_deref().map(rates).transpose()?;
    let mut shapes = concurrency.unwrap_or_default();
    shapes.extend(rates.into_iter().flatten());
    shapes.extend(args.max_throughput.then_some(Shape::MaxThroughput));
    Ok(shapes)
}

fn concurrency_shapes(list: &str) -> bakeoff::Result<Vec<Shape>> {
    let positive = |v: &String| {
        let n = v.parse().ok().filter(|&n: &usize| n > 0);
        let message = || format!("--concurrency: '{v}' is not a positive whole number");
        n.map(Shape::Concurrency)
            .ok_or_else(|| Error::input(message()))
    };
    let values = parse_values("--concurrency", list)?;
    values.iter().map(positive).collect()
}

fn rate_shapes(list: &str, burstiness: Option<f64>) -> bakeoff::Result<Vec<Shape>> {
    let rate = |v: &str| {
        let rate = v.parse().ok().filter(|r: &f64| *r > 0.0);
        rate.map(|rate| Shape::Rate { rate, burstiness })
            .ok_or_else(|| Error::input(format!("--rate: '{v}' is not a positive number")))
    };
    list.split(',').map(str::trim).map(rate).collect()
}

fn plan(args: &LoadArgs) -> bakeoff::Result<LoadPlan> {
    Ok(LoadPlan {
        shapes: shapes(args)?,
        sweep_rates: args.sweep,
        workload: workload(args)?,
        limits: limits(args)?,
        seed: args.seed,
        slo: slo(args.slo.as_deref())?,
    })
}

/// `--slo ttft=500ms,...`; none by default.
fn slo(text: Option<&str>) -> bakeoff::Result<Slo> {
    let slo = text.map(Slo::parse).transpose().map_err(Error::input)?;
    Ok(slo.unwrap_or_default())
}

/// A JSONL dataset, multi-turn conversations, or synthetic prompts.
fn workload(args: &LoadArgs) -> bakeoff::Result<WorkloadSpec> {
    let input = LengthDist::parse("--input", &args.input)?;
    let output = LengthDist::parse("--output-len", &args.output_len)?;
    Ok(match (&args.dataset, args.turns) {
        (Some(path), _) => WorkloadSpec::Jsonl {
            path: path.clone(),
            output,
        },
        (None, Some(turns)) if turns > 0 => WorkloadSpec::MultiTurn {
            turns,
            shared_prefix: args.shared_prefix,
            input,
            output,
        },
        _ => WorkloadSpec::Synthetic { input, output },
    })
}

/// A duration-bound step must leave something to measure once warmup and cooldown are cut off.
fn check_window(duration: Option<Duration>, excluded: Duration) -> bakeoff::Result<()> {
    match duration {
        Some(d) if d.is_zero() => Err(Error::input("--duration 0: a step needs some time")),
        Some(d) if excluded >= d => Err(Error::input(format!(
            "--warmup and --cooldown ({} s together) leave nothing of --duration ({} s) to measure",
            excluded.as_secs_f64(),
            d.as_secs_f64()
        ))),
        _ => Ok(()),
    }
}

/// Each step's bounds: 32 requests unless a duration or a request count is given.
fn limits(args: &LoadArgs) -> bakeoff::Result<StepLimits> {
    let duration = args.duration.as_deref();
    let duration = duration
        .map(|d| parse_duration("--duration", d))
        .transpose()?;
    let default_requests = duration.is_none().then_some(32);
    let warmup = parse_duration("--warmup", &args.warmup)?;
    let cooldown = parse_duration("--cooldown", &args.cooldown)?;
    check_window(duration, warmup + cooldown)?;
    Ok(StepLimits {
        duration,
        requests: args.requests.or(default_requests),
        warmup,
        cooldown,
        max_inflight: args.max_inflight,
        stop_on_saturation: !args.no_stop_on_saturation,
    })
}

pub fn run(global: &Global, mut args: LoadArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    args.engine_args = bakeoff::measure::matrix::checked_engine_args(&args.engine_args)?;
    let format = Format::from(args.format);
    if args.serve_scripted {
        return serve_scripted(&args, printer);
    }
    if args.self_test {
        let _lock = session::take_lock(&super::command_line())?;
        return self_test(global, printer);
    }
    let all = subjects(&args)?;
    let plan = plan(&args)?;
    let shard = args.shard.resolve()?;
    let cells = all.len();
    if args.queue.queue {
        super::bench::refuse_shard_in_queue(args.shard.shard.is_some())?;
        let models: Vec<PathBuf> = all
            .iter()
            .filter_map(|s| match s {
                Subject::Launched { model, .. } => Some(model.clone()),
                Subject::Attached => None,
            })
            .collect();
        // A load test of running servers starts no engine: no build to match.
        let builds = args.subject.builds()?;
        let queued = super::worker::Queued {
            kind: "load",
            cells,
            tag: args.tag.as_deref(),
            models: &models,
            builds: (!models.is_empty()).then_some(&builds[..]),
            files: super::worker::named_files(&[&args.dataset, &args.subject.catalog]),
        };
        return super::worker::enqueue(global, &args.queue, queued, printer);
    }
    let subjects = shard.unwrap_or(Shard::WHOLE).select(all.iter().cloned());
    if let Some(shard) = shard.filter(|_| subjects.is_empty()) {
        // A scheduler's array is often sized above the matrix: its extra tasks succeed.
        printer.status(shard.empty_note(cells));
        return Ok(ExitCode::SUCCESS);
    }
    let store = super::open_store(global)?;
    distinct_models(&store, &all)?;
    let chosen: Vec<Subject> = subjects.iter().map(|(_, s)| s.clone()).collect();
    let engines = build_engines(&store, &chosen)?;
    let session = begin(store, &args, &plan, (shard, cells))?;
    if let Some(shard) = shard {
        printer.status(shard.summary(cells));
    }
    let run = LoadRun {
        session,
        global,
        args: &args,
        plan: &plan,
        subjects,
        cells,
        engines,
        printer,
    };
    run.run(format)
}

/// What the plan runs against: the server at `--url`, or each (build, model) in turn, builds
/// outermost so that each build's models run together.
fn subjects(args: &LoadArgs) -> bakeoff::Result<Vec<Subject>> {
    let subject = &args.subject;
    let asked = subject.model.is_some() || subject.category.is_some() || !subject.builds.is_empty();
    match (&args.url, asked) {
        (Some(_), true) => Err(Error::input(
            "--url attaches to a running server: it takes no --model, --category or --build",
        )),
        (Some(_), false) => Ok(vec![Subject::Attached]),
        (None, false) => Err(Error::input(
            "nothing to load-test: pass --model FILE or --url URL",
        )),
        (None, true) => launched_subjects(subject),
    }
}

fn launched_subjects(subject: &crate::cli::SubjectArgs) -> bakeoff::Result<Vec<Subject>> {
    let models = bakeoff::model::select::resolve(&subject.query())?;
    let builds = subject.builds()?;
    let builds: Vec<Option<BuildRef>> = match builds.is_empty() {
        true => vec![None],
        false => builds.into_iter().map(Some).collect(),
    };
    let pairs = builds
        .iter()
        .flat_map(|b| models.iter().map(move |m| (b.clone(), m.clone())));
    Ok(pairs
        .map(|(build, model)| Subject::Launched { build, model })
        .collect())
}

/// The scripted endpoint measures nothing itself: it takes no lock (the clients measuring it do).
fn serve_scripted(args: &LoadArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let port = args.port.unwrap_or(0);
    let pace = Duration::from_micros(args.pace_us);
    let listen_error = |e| Error::engine(format!("cannot listen on 127.0.0.1:{port}: {e}"));
    let endpoint = match args.scripted_fault.as_deref() {
        None => selftest::ScriptedEndpoint::start_on(port, pace),
        Some(name) => {
            let fault = selftest::Fault::parse(name).ok_or_else(|| {
                Error::input(format!("--scripted-fault {name}: expected hang, stall, truncate, 500, bad-json or empty-piece"))
            })?;
            // The attach check's completion passes; the fault shows in the measured requests.
            selftest::ScriptedEndpoint::faulty_after(port, fault, 1)
        }
    }
    .map_err(listen_error)?;
    println!("ready {}", endpoint.url);
    printer.status("serving the scripted endpoint until Ctrl-C");
    wait_for_interrupt();
    Ok(ExitCode::SUCCESS)
}

fn wait_for_interrupt() {
    while bakeoff::engines::process::interrupted().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Several models: each a GGUF, no file twice under two names (by sha256, cached in the store).
fn distinct_models(store: &Store, subjects: &[Subject]) -> bakeoff::Result<()> {
    let mut models: Vec<PathBuf> = Vec::new();
    for subject in subjects {
        if let Subject::Launched { model, .. } = subject {
            let model = super::resolve_model(model);
            if !models.contains(&model) {
                models.push(model);
            }
        }
    }
    let sha256 = |path: &Path| Ok(store.model(path)?.sha256);
    match models.len() {
        0 | 1 => Ok(()),
        _ => bakeoff::model::select::distinct(&models, sha256),
    }
}

/// Each named build's llama-server, identified once per run (not once per model).
fn build_engines(store: &Store, subjects: &[Subject]) -> bakeoff::Result<Vec<(String, Engine)>> {
    let mut engines: Vec<(String, Engine)> = Vec::new();
    for subject in subjects {
        let Subject::Launched {
            build: Some(build), ..
        } = subject
        else {
            continue;
        };
        if !engines.iter().any(|(name, _)| *name == build.name) {
            let engine = Engine::for_build(Some(store), build, "llama-server")?;
            engines.push((build.name.clone(), engine));
        }
    }
    Ok(engines)
}

/// A new load run; its params hold the plan, the subjects asked for, and its shard of them.
fn begin(
    store: Store,
    args: &LoadArgs,
    plan: &LoadPlan,
    (shard, cells): (Option<Shard>, usize),
) -> bakeoff::Result<Session> {
    let command = super::command_line();
    let mut params = serde_json::json!({ "plan": plan, "url": args.url, "model": args.subject.model, "builds": args.subject.builds, "engine_args": args.engine_args });
    shard::record(&mut params, shard, cells);
    let tag = args.tag.as_deref();
    Session::begin(store, RunSpec::new("load", &command, tag, params))
}

const CEILING_UNKNOWN: &str =
    "note: the client's ceiling is unknown here; `bakeoff load --self-test` measures it";

/// One server the plan runs against.
#[derive(Debug, Clone)]
enum Subject {
    Attached,
    Launched {
        build: Option<BuildRef>,
        model: PathBuf,
    },
}

impl Subject {
    /// `gemma-3-270m-q4_k_m.gguf` or `b11434/gemma-3-270m-q4_k_m.gguf`.
    fn label(&self) -> String {
        let Subject::Launched { build, model } = self else {
            return String::new();
        };
        let file = model.file_name().unwrap_or_default().to_string_lossy();
        match build {
            Some(build) => format!("{}/{file}", build.name),
            None => file.into_owned(),
        }
    }
}

/// One load run under way.
struct LoadRun<'a> {
    session: Session,
    global: &'a Global,
    args: &'a LoadArgs,
    plan: &'a LoadPlan,
    /// The subjects this run measures (its shard's), each with its position among all of them.
    subjects: Vec<(usize, Subject)>,
    /// How many subjects were asked for (the cells the shards split).
    cells: usize,
    /// The `--build` engines by name.
    engines: Vec<(String, Engine)>,
    printer: Printer,
}

impl LoadRun<'_> {
    fn run(mut self, format: Format) -> anyhow::Result<ExitCode> {
        let system = self.session.system_id();
        let ceiling = self
            .session
            .store()
            .latest_system_measurement(system, "client_ceiling_tps")?;
        let result = self.measure_all(ceiling);
        let code = self.session.finish(&result)?;
        print!("{}", bakeoff::report::load::render(format, &result?));
        self.closing_lines(ceiling);
        if let Some(note) = self.session.note() {
            self.printer.warn(note);
        }
        Ok(ExitCode::from(code))
    }

    /// Every subject in turn; with several, each step's label says which (build and) model.
    fn measure_all(&mut self, ceiling: Option<f64>) -> bakeoff::Result<Vec<StepTable>> {
        let several = self.cells > 1;
        let mut tables = Vec::new();
        for (at, subject) in self.subjects.clone() {
            let steps = self.measure(&subject, at, ceiling)?;
            tables.extend(steps.into_iter().map(|mut step| {
                if several {
                    step.step = format!("{} {}", subject.label(), step.step);
                }
                step
            }));
        }
        Ok(tables)
    }

    /// Open the subject's server, run the plan on it, store its log, stop it.
    fn measure(
        &mut self,
        subject: &Subject,
        at: usize,
        ceiling: Option<f64>,
    ) -> bakeoff::Result<Vec<StepTable>> {
        let target = self.open_target(subject, at).map(|mut target| {
            target.set_timeouts(self.args.timeouts.timeouts());
            target
        });
        let target = self.session.guard(target)?;
        let result = self.drive(&target, ceiling);
        self.printer.finish();
        target.store_log(&self.session)?;
        result
    }

    /// Attach to `--url`, or launch llama-server (of the build, when one is named) on the model,
    /// sized for the plan.
    fn open_target(&self, subject: &Subject, at: usize) -> bakeoff::Result<Target> {
        let Subject::Launched { build, model } = subject else {
            let url = self.args.url.as_deref().unwrap_or_default();
            return Target::attach(Some(self.session.store()), url);
        };
        let mut launch = self.launch(build.as_ref(), model)?;
        if self.cells > 1 {
            launch.log_path = self
                .session
                .run_dir()
                .join(format!("llama-server-{}.log", at + 1));
        }
        let sizing = self.plan.server_sizing(&self.args.engine_args);
        self.announce(&launch, &sizing);
        launch.args = sizing.args;
        launch.health_timeout = Duration::from_secs(self.args.health_timeout);
        launch.start(Some(&self.session))
    }

    fn launch(&self, build: Option<&BuildRef>, model: &Path) -> bakeoff::Result<Launch> {
        let model = super::resolve_model(model);
        bakeoff::model::check_file(&model)?;
        let Some(build) = build else {
            let engine_path = self.global.engine_path.as_deref();
            return Launch::in_session(&self.session, engine_path, &model);
        };
        let store = self.session.store();
        let known = self.engines.iter().find(|(name, _)| *name == build.name);
        let engine = match known {
            Some((_, engine)) => engine.clone(),
            None => Engine::for_build(Some(store), build, "llama-server")?,
        };
        let row = store.model(&model)?;
        Ok(Launch::new(
            engine,
            &model,
            Some(row),
            &self.session.run_dir(),
        ))
    }

    fn announce(&self, launch: &Launch, sizing: &ServerSizing) {
        let (slots, ctx) = (sizing.slots, sizing.ctx);
        let (label, log) = (launch.engine.label(), launch.log_path.display());
        let line = format!("starting {label} with {slots} slots, ctx {ctx} (log: {log})");
        self.printer.status(line);
    }

    /// Run the plan's steps against `target`, printing each step's progress.
    fn drive(&self, target: &Target, ceiling: Option<f64>) -> bakeoff::Result<Vec<StepTable>> {
        let generator = self.generator(target)?;
        let config = EngineConfig {
            extra: self.args.engine_args.clone(),
            ..Default::default()
        };
        let runner = LoadRunner {
            sink: self.session.store(),
            run_id: self.session.run_id(),
            http: &target.http,
            generator: &generator,
            config: &config,
            engine_id: target.engine_id,
            model_id: target.model_id,
            model_name: target.served_model(),
            ceiling_tps: ceiling,
            tracked_pids: target.tracked_pids(),
            trouble: &|| target.trouble(),
            watch: &WatchConfig::new(self.args.telemetry.no_telemetry),
        };
        runner.run(self.plan, &mut |event| self.observe(event))
    }

    /// Synthetic prompts on llama-server are built from its own tokenizer.
    fn generator(&self, target: &Target) -> bakeoff::Result<Generator> {
        let synthetic = target.kind == EngineKind::LlamaServer && self.args.dataset.is_none();
        let source = synthetic
            .then(|| TokenSource::new(&target.http, &PromptSet::Random))
            .transpose()?;
        Generator::new(self.plan.workload.clone(), self.plan.seed, source)
    }

    fn observe(&self, event: LoadEvent) {
        match event {
            LoadEvent::StepStart { label } => self.step_start(label),
            LoadEvent::Progress { label, progress } => self.show_progress(label, progress),
            LoadEvent::Warning(message) => self.printer.warn(message),
        }
    }

    fn step_start(&self, label: &str) {
        let workload = self.plan.workload.describe();
        self.printer.status(format!("step {label}: {workload}"));
    }

    /// A bar on a terminal, else a line.
    fn show_progress(&self, label: &str, progress: &Progress) {
        let line = format!(
            "{label}: {} done, {} errors, {:.2} req/s, p50 TTFT {:.0} ms",
            progress.done, progress.errors, progress.rate, progress.p50_ttft_ms
        );
        if !self.printer.terminal {
            let line = format!("  {line} ({:.0}s)", progress.elapsed_s);
            return self.printer.status(line);
        }
        let (done, total) = self.bound(progress);
        let left = total.saturating_sub(done) as f64;
        let eta = match done {
            0 => 0.0,
            done => progress.elapsed_s / done as f64 * left,
        };
        self.printer.bar(done, total, eta, &line);
    }

    /// The step's bound: requests, or seconds when the step is duration-bound.
    fn bound(&self, progress: &Progress) -> (usize, usize) {
        let limits = &self.plan.limits;
        match (limits.requests, limits.duration) {
            (Some(n), _) => (progress.done, n),
            (None, Some(d)) => (progress.elapsed_s as usize, d.as_secs() as usize),
            (None, None) => (0, 0),
        }
    }

    fn closing_lines(&self, ceiling: Option<f64>) {
        if ceiling.is_none() {
            self.printer.status(CEILING_UNKNOWN);
        }
        let path = self.session.store().path().display();
        let run_id = self.session.run_id();
        self.printer
            .status(format!("stored as run {run_id} in {path}"));
    }
}

fn self_test(global: &Global, printer: Printer) -> anyhow::Result<ExitCode> {
    printer.status(
        "measuring the client's ceiling against a scripted streaming endpoint on loopback…",
    );
    let mut rows = Vec::new();
    for streams in [1, 8, 32, 64] {
        rows.push(selftest::measure_ceiling(
            streams,
            Duration::ZERO,
            256,
            Duration::from_secs(3),
        )?);
    }
    // Timing error: a paced stream (1 token per ms) with 8 streams.
    rows.push(selftest::measure_ceiling(
        8,
        Duration::from_millis(1),
        256,
        Duration::from_secs(3),
    )?);
    let best = rows.iter().map(|r| r.streamed_tps).fold(0.0, f64::max);
    let store = super::open_store(global)?;
    let system_id = session::this_system(&store)?;
    store.system_measurement(system_id, "client_ceiling_tps", best, "tok/s")?;
    print!("{}", bakeoff::report::load::ceiling_table(&rows).markdown());
    printer.status(format!("client ceiling {best:.0} streamed tok/s stored; load runs warn when they come within 50 % of it"));
    Ok(ExitCode::SUCCESS)
}
