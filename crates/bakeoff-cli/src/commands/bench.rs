//! `bakeoff bench`: resolve the settings (command line over the experiment file), print the plan or run
//! it under the machine-wide lock, then print the table.

use crate::cli::{BenchArgs, Global};
use crate::printer::Printer;
use bakeoff::analysis::compare;
use bakeoff::domain::units::human_bytes;
use bakeoff::domain::Combine;
use bakeoff::measure::bench::{self, BenchContext, BenchPlan, Event, ServerBench, TrialKey};
use bakeoff::measure::experiment::{self, BenchEngine, Experiment, MatrixSettings, Values};
use bakeoff::measure::llama_bench::LlamaBenchRun;
use bakeoff::measure::matrix::{parse_flag_values, parse_values, Matrix, PromptSet};
use bakeoff::measure::shard;
use bakeoff::measure::watch::WatchConfig;
use bakeoff::model;
use bakeoff::report::bench_cells;
use bakeoff::report::table::{self, Format, ModelInfo};
use bakeoff::session::{Engine, RunSpec, Session, Sweep};
use bakeoff::store::{ModelRow, Store};
use bakeoff::Error;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn text(value: &Option<String>) -> Option<Values> {
    value.clone().map(Values)
}

/// The swept flags of the command line, as the experiment file's `[matrix]` spells them.
fn matrix_from_args(args: &BenchArgs) -> MatrixSettings {
    MatrixSettings {
        kv: text(&args.kv),
        ctk: text(&args.cache_type_k),
        ctv: text(&args.cache_type_v),
        fa: text(&args.flash_attn),
        b: text(&args.batch),
        ub: text(&args.ubatch),
        t: text(&args.threads),
        ngl: text(&args.gpu_layers),
        np: text(&args.parallel),
        c: text(&args.ctx),
        md: text(&args.draft_model),
        spec_type: text(&args.spec_type),
        spec_draft_n_max: text(&args.spec_draft_n_max),
        sm: text(&args.split_mode),
        ts: text(&args.tensor_split),
        mg: text(&args.main_gpu),
        p: text(&args.prompt),
        n: text(&args.gen),
        d: text(&args.depth),
        prompts: text(&args.prompts),
    }
}

/// The command line as one layer of bench settings (`None` where a flag was not given).
fn settings_from_args(args: &BenchArgs) -> bakeoff::Result<Experiment> {
    let query = args.subject.query();
    Ok(Experiment {
        model: query.spec.map(Values),
        category: query.category,
        max_size: query.max_size.map(|bytes| Values(bytes.to_string())),
        catalog: query.catalog,
        builds: Some(args.subject.builds()?).filter(|b| !b.is_empty()),
        reps: args.reps,
        warmup: args.warmup,
        max_reps: args.max_reps,
        ci_target: text(&args.ci_target),
        engine: args.engine.map(Into::into),
        tag: args.tag.clone(),
        matrix: matrix_from_args(args),
        server_flags: args
            .server_flags
            .iter()
            .map(|e| Values::keyed("--server-flag", e, "FLAG=VALUES"))
            .collect::<Result<_, _>>()?,
    })
}

/// The bench settings: the command line over the `--config` file.
fn resolve(args: &BenchArgs) -> bakeoff::Result<Experiment> {
    let cli = settings_from_args(args)?;
    match &args.config {
        Some(path) => Ok(cli.combine(Experiment::load(path)?)),
        None => Ok(cli),
    }
}

fn numbers(flag: &str, values: Option<&Values>, default: &str) -> bakeoff::Result<Vec<u32>> {
    let text = values.map_or(default, |v| v.0.as_str());
    parse_values(flag, text)?
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| Error::input(format!("{flag}: '{v}' is not a whole number")))
        })
        .collect()
}

fn matrix_of(
    settings: &MatrixSettings,
    server_flags: &[(String, Values)],
) -> bakeoff::Result<Matrix> {
    let mut matrix = Matrix::default();
    for (flag, values) in settings.engine_flags() {
        if let Some(Values(values)) = values {
            matrix.set(flag, parse_flag_values(flag, values)?);
        }
    }
    for (flag, Values(values)) in server_flags {
        if !flag.starts_with('-') {
            return Err(Error::input(format!(
                "--server-flag {flag}={values}: '{flag}' does not look like a flag"
            )));
        }
        matrix.set(flag, parse_flag_values(flag, values)?);
    }
    let given = |v: &Option<Values>| v.is_some();
    let default_prompt = if given(&settings.p) || given(&settings.n) {
        "0"
    } else {
        "64"
    };
    matrix.prompt_tokens = numbers("-p", settings.p.as_ref(), default_prompt)?;
    matrix.gen_tokens = numbers("-n", settings.n.as_ref(), "32")?;
    matrix.depths = numbers("-d", settings.d.as_ref(), "0")?;
    let prompts = settings.prompts.as_ref().map_or("random", |v| v.0.as_str());
    matrix.prompts = parse_values("--prompts", prompts)?
        .iter()
        .map(|p| PromptSet::parse(p))
        .collect();
    Ok(matrix)
}

fn ci_target(settings: &Experiment) -> bakeoff::Result<Option<f64>> {
    settings
        .ci_target
        .as_ref()
        .map(|Values(t)| {
            t.trim_end_matches('%').parse::<f64>().map_err(|_| {
                Error::input(format!(
                    "--ci-target {t}: expected a percentage such as 2 or 2%"
                ))
            })
        })
        .transpose()
}

/// The model files the settings select (a bare file name is looked up in the model cache).
fn models_of(settings: &Experiment) -> bakeoff::Result<Vec<PathBuf>> {
    model::select::resolve(&settings.model_query()?)
}

fn plan_from_settings(settings: &Experiment, args: &BenchArgs) -> bakeoff::Result<BenchPlan> {
    let ci_target_pct = ci_target(settings)?;
    Ok(BenchPlan {
        models: models_of(settings)?,
        builds: settings.builds.clone().unwrap_or_default(),
        matrix: matrix_of(&settings.matrix, &settings.server_flags)?,
        reps: settings
            .reps
            .unwrap_or(if ci_target_pct.is_some() { 3 } else { 5 }),
        warmup: settings.warmup.unwrap_or(1),
        ci_target_pct,
        max_reps: settings.max_reps.unwrap_or(20),
        engine: settings
            .engine
            .unwrap_or(BenchEngine::LlamaServer)
            .as_str()
            .to_string(),
        extra_args: bakeoff::measure::matrix::checked_engine_args(&args.engine_args)?,
        health_timeout_s: args.health_timeout,
        timeouts: args.timeouts.timeouts(),
        shard: args.shard.resolve()?,
    })
}

pub fn run(global: &Global, args: BenchArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let settings = resolve(&args)?;
    if args.resume.is_some() && args.shard.shard.is_some() {
        let message = "--shard with --resume: a resumed run keeps the shard it was started with";
        return Err(Error::input(message).into());
    }
    let format = Format::from(args.format);
    let args = BenchArgs {
        tag: settings.tag.clone(),
        ..args
    };
    // A new plan is checked before the database is opened: a refused plan creates nothing.
    let (plan, resume, store) = match args.resume.as_deref() {
        Some(reference) => {
            let (store, plan, run_id) = stored_plan(global, reference)?;
            (plan, Some(run_id), Some(store))
        }
        None => (plan_from_settings(&settings, &args)?, None, None),
    };
    experiment::check_plan(&plan)?;
    if args.queue.queue {
        refuse_shard_in_queue(args.shard.shard.is_some())?;
        let (cells, tag) = (plan.cell_count(), args.tag.as_deref());
        let queued = super::worker::Queued {
            kind: "bench",
            cells,
            tag,
            models: &plan.models,
            builds: Some(&plan.builds),
            files: super::worker::named_files(&[&args.config, &settings.catalog]),
        };
        return super::worker::enqueue(global, &args.queue, queued, printer);
    }
    for warning in experiment::plan_depth_warnings(&plan) {
        printer.warn(warning);
    }
    let split_flags = ["-sm", "-ts", "-mg"];
    if (plan.configs().iter()).any(|c| split_flags.iter().any(|f| c.config.flags.contains_key(*f)))
    {
        let machine = bakeoff::system::Fingerprint::collect();
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let memories = bakeoff::search::visible_gpu_memories(&machine, visible.as_deref());
        for warning in experiment::plan_gpu_warnings(&plan, &memories) {
            printer.warn(warning);
        }
    }
    if let Some(shard) = plan.shard.filter(|_| plan.cells().is_empty()) {
        // A scheduler's array is often sized above the matrix: its extra tasks succeed.
        printer.status(shard.empty_note(plan.cell_count()));
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        print!("{}", plan.describe());
        return Ok(ExitCode::SUCCESS);
    }
    plan.models.iter().try_for_each(|m| model::check_file(m))?;
    let store = match store {
        Some(store) => store,
        None => super::open_store(global)?,
    };
    let sweep = sweep_of(&store, global, &plan)?;
    let session = open_session(store, &plan, &args, resume, &sweep)?;
    let mut bench = BenchRun {
        session,
        args: &args,
        plan: &plan,
        sweep,
        printer,
        watch: WatchConfig::new(args.telemetry.no_telemetry),
    };
    bench.run(resume.is_some(), format)
}

/// `--queue` makes the shards itself (one per cell); a `--shard` of its own would mean a shard
/// of a shard.
pub fn refuse_shard_in_queue(sharded: bool) -> bakeoff::Result<()> {
    if sharded {
        let message = "--shard with --queue: the queue splits the cells across its workers itself";
        return Err(Error::input(message));
    }
    Ok(())
}

/// The plan's builds (or the one engine found) and models, registered; duplicates refused.
fn sweep_of(store: &Store, global: &Global, plan: &BenchPlan) -> bakeoff::Result<Sweep> {
    let engine_path = global.engine_path.as_deref();
    Sweep::resolve(store, engine_path, &plan.engine, &plan.builds, &plan.models)
}

/// The stored plan of the run `--resume` names, with the database it is in.
fn stored_plan(global: &Global, reference: &str) -> anyhow::Result<(Store, BenchPlan, i64)> {
    let store = super::open_existing_store(global)?;
    let run_id = store.resolve_run(reference)?;
    let detail = store.run_detail(run_id)?;
    let plan = serde_json::from_value(detail.params["plan"].clone())
        .map_err(|e| Error::input(format!("run {run_id} has no bench plan to resume ({e})")))?;
    Ok((store, plan, run_id))
}

/// A new bench run holding the plan, or the resumed one reopened.
fn open_session(
    store: Store,
    plan: &BenchPlan,
    args: &BenchArgs,
    resume: Option<i64>,
    sweep: &Sweep,
) -> bakeoff::Result<Session> {
    let command = super::command_line();
    let hashes: Vec<&str> = sweep.models.iter().map(|m| m.sha256.as_str()).collect();
    let first = hashes.first().copied().unwrap_or_default();
    let mut params =
        serde_json::json!({ "plan": plan, "model_sha256": first, "model_sha256s": hashes });
    shard::record(&mut params, plan.shard, plan.cell_count());
    match resume {
        Some(run_id) => Session::resume(store, run_id, &command),
        None => Session::begin(
            store,
            RunSpec::new("bench", &command, args.tag.as_deref(), params),
        ),
    }
}

/// The table, and under Markdown the speculation summary and which shard the run measured.
fn print_cells(format: Format, models: &[ModelInfo], cells: &[compare::Cell], plan: &BenchPlan) {
    print!("{}", table::render_models(format, models, cells));
    if format == Format::Markdown {
        print!("{}", table::speculation_summary(cells));
        if let Some(shard) = plan.shard {
            println!("\n{}", shard.summary(plan.cell_count()));
        }
    }
}

/// One bench run under way.
struct BenchRun<'a> {
    session: Session,
    args: &'a BenchArgs,
    plan: &'a BenchPlan,
    sweep: Sweep,
    printer: Printer,
    watch: WatchConfig,
}

impl BenchRun<'_> {
    fn run(&mut self, resumed: bool, format: Format) -> anyhow::Result<ExitCode> {
        let done = self.announce(resumed)?;
        let result = self.measure(done);
        self.printer.finish();
        let code = self.session.finish(&result)?;
        self.print_table(format)?;
        self.finish_lines(code, result)
    }

    /// Status lines at the start; returns the trials a resumed run already holds.
    fn announce(&self, resumed: bool) -> bakeoff::Result<HashSet<TrialKey>> {
        if let Some(note) = self.session.lock_note() {
            self.printer.status(note);
        }
        let done = if resumed {
            self.stored_trials()?
        } else {
            HashSet::new()
        };
        let run_id = self.session.run_id();
        if let Some(shard) = self.plan.shard {
            self.printer.status(shard.summary(self.plan.cell_count()));
        }
        match (&self.sweep.engines[..], &self.sweep.models[..]) {
            ([engine], [model]) => {
                let (label, size) = (engine.label(), human_bytes(model.size));
                let line = format!("run {run_id}: {label} on {} ({size})", model.path);
                self.printer.status(line);
            }
            (engines, models) => self.announce_sweep(run_id, engines, models),
        }
        Ok(done)
    }

    /// `run N: B build(s) × M model(s)`, then a line for each.
    fn announce_sweep(&self, run_id: i64, engines: &[Engine], models: &[ModelRow]) {
        let (b, m) = (engines.len(), models.len());
        self.printer
            .status(format!("run {run_id}: {b} build(s) × {m} model(s)"));
        for engine in engines {
            let name = engine.build.as_ref().map_or("", |b| b.name.as_str());
            self.printer
                .status(format!("  build {name}: {}", engine.label()));
        }
        for model in models {
            let size = human_bytes(model.size);
            self.printer
                .status(format!("  model {} ({size})", model.path));
        }
    }

    /// The trials a resumed run already holds (they are not measured again).
    fn stored_trials(&self) -> bakeoff::Result<HashSet<TrialKey>> {
        let run_id = self.session.run_id();
        let subjects = &self.sweep.subjects;
        let done = bench::completed_trials(self.session.store(), run_id, subjects)?;
        let stored = done.len();
        let line = format!("resuming run {run_id}: {stored} trials already stored");
        self.printer.status(line);
        Ok(done)
    }

    /// Run the plan through llama-server or llama-bench, reporting progress.
    fn measure(&self, done: HashSet<TrialKey>) -> bakeoff::Result<()> {
        let mut progress = Progress::new(self.printer);
        let mut observe = |event: Event| progress.event(event);
        let ctx = self.context(done);
        if self.plan.engine == "llama-bench" {
            return LlamaBenchRun { ctx }.run(&mut observe);
        }
        let require_clean = self.args.require_clean.map(Duration::from_secs);
        ServerBench { ctx, require_clean }.run(&mut observe)
    }

    fn context(&self, done: HashSet<TrialKey>) -> BenchContext<'_> {
        BenchContext {
            sink: self.session.store(),
            run_id: self.session.run_id(),
            plan: self.plan,
            subjects: self.sweep.subjects.clone(),
            done,
            watch: self.watch.clone(),
        }
    }

    /// The run's cells (with rooflines when the bandwidth is known) in the chosen format.
    /// (The roofline is one model's: a sweep of several models has none here.)
    fn print_table(&self, format: Format) -> bakeoff::Result<()> {
        let detail = self.session.store().run_detail(self.session.run_id())?;
        let mut cells = compare::cells(&detail);
        let models = &self.sweep.models;
        bench_cells::add_rooflines(&mut cells, models, self.bandwidth()?);
        let context = u64::from(self.plan.matrix.context_needed());
        bench_cells::add_memory_plans(&mut cells, models, Some(context));
        let infos: Vec<ModelInfo> = models.iter().map(bench_cells::model_info).collect();
        print_cells(format, &infos, &cells, self.plan);
        Ok(())
    }

    /// `--bandwidth`, else the one `doctor --bandwidth` stored for this machine.
    fn bandwidth(&self) -> bakeoff::Result<Option<f64>> {
        if let Some(gbs) = self.args.bandwidth {
            return Ok(Some(gbs));
        }
        let system = self.session.system_id();
        let store = self.session.store();
        store.latest_system_measurement(system, "memory_bandwidth")
    }

    /// The closing status line, and the exit code (128 + signal when interrupted).
    fn finish_lines(&self, code: u8, result: bakeoff::Result<()>) -> anyhow::Result<ExitCode> {
        let run_id = self.session.run_id();
        if code >= 128 {
            self.printer.status(format!(
                "interrupted; resume with: bakeoff bench --resume {run_id}"
            ));
            return Ok(ExitCode::from(code));
        }
        result?;
        let path = self.session.store().path().display();
        self.printer
            .status(format!("stored as run {run_id} in {path}"));
        if let Some(note) = self.session.note() {
            self.printer.warn(note);
        }
        Ok(ExitCode::from(code))
    }
}

/// Progress lines on stderr with an ETA from the mean trial time so far.
struct Progress {
    printer: Printer,
    started: Instant,
}

impl Progress {
    fn new(printer: Printer) -> Self {
        Progress {
            printer,
            started: Instant::now(),
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Config {
                index,
                total,
                label,
            } => self.config(index, total, label),
            Event::Skipped { label, reason } => self.status(format!("  skipped {label}: {reason}")),
            Event::Trial { .. } => self.trial(&event),
            Event::Warning(message) => self.printer.warn(message),
        }
    }

    fn config(&self, index: usize, total: usize, label: &str) {
        self.status(format!("config {}/{total}: {label}", index + 1));
    }

    fn status(&self, line: String) {
        self.printer.status(line);
    }

    /// `[done/total eta Ns] test rep R: value unit  [noise notes]`, and the bar.
    fn trial(&self, event: &Event) {
        let Event::Trial {
            done,
            total,
            test,
            rep,
            value,
            unit,
            flags,
            ..
        } = *event
        else {
            return;
        };
        let eta = self.eta(done, total);
        let note = match flags.is_empty() {
            true => String::new(),
            false => format!("  [{}]", flags.join("; ")),
        };
        let rep = rep + 1;
        let line =
            format!("  [{done}/{total} eta {eta:.0}s] {test} rep {rep}: {value:.2} {unit}{note}");
        self.printer.status(line);
        self.printer.bar(done, total, eta, test);
    }

    /// Seconds left at the mean trial time so far.
    fn eta(&self, done: usize, total: usize) -> f64 {
        if done == 0 || total < done {
            return 0.0;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        elapsed / done as f64 * (total - done) as f64
    }
}
