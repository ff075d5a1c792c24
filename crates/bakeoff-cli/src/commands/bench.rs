//! `bakeoff bench`: resolve the settings (command line over the experiment file), print the plan or run
//! it under the machine-wide lock, then print the table.

use crate::cli::{BenchArgs, Global};
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::domain::Combine;
use bakeoff::engines::discovery;
use bakeoff::measure::bench::{self, BenchContext, BenchPlan, Event, ServerBench};
use bakeoff::measure::compare;
use bakeoff::measure::experiment::{BenchEngine, Experiment, MatrixSettings, Values};
use bakeoff::measure::llama_bench::LlamaBenchRun;
use bakeoff::measure::matrix::{parse_values, Matrix, PromptSet};
use bakeoff::report::table::{self, Format, ModelInfo};
use bakeoff::system::{lock, Fingerprint, MeasureLock};
use bakeoff::Error;
use std::collections::HashSet;
use std::path::Path;
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
        p: text(&args.prompt),
        n: text(&args.gen),
        d: text(&args.depth),
        prompts: text(&args.prompts),
    }
}

/// The command line as one layer of bench settings (`None` where a flag was not given).
fn settings_from_args(args: &BenchArgs) -> bakeoff::Result<Experiment> {
    Ok(Experiment {
        model: args.model.clone(),
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
            .map(|e| server_flag(e))
            .collect::<Result<_, _>>()?,
    })
}

/// `--server-flag FLAG=VALUES`.
fn server_flag(entry: &str) -> bakeoff::Result<(String, Values)> {
    let (flag, values) = entry
        .split_once('=')
        .ok_or_else(|| Error::input(format!("--server-flag {entry}: expected FLAG=VALUES")))?;
    Ok((flag.to_string(), Values(values.to_string())))
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
            matrix.set(flag, parse_values(flag, values)?);
        }
    }
    for (flag, Values(values)) in server_flags {
        if !flag.starts_with('-') {
            return Err(Error::input(format!(
                "--server-flag {flag}={values}: '{flag}' does not look like a flag"
            )));
        }
        matrix.set(flag, parse_values(flag, values)?);
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

fn plan_from_settings(settings: &Experiment, args: &BenchArgs) -> bakeoff::Result<BenchPlan> {
    let model = settings
        .model
        .as_deref()
        .ok_or_else(|| Error::input("no model: pass --model FILE (or `model` in --config)"))?;
    let ci_target_pct = ci_target(settings)?;
    Ok(BenchPlan {
        model: super::resolve_model(model),
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
        extra_args: args.engine_args.clone(),
        health_timeout_s: args.health_timeout,
    })
}

fn print_plan(plan: &BenchPlan) {
    let configs = plan.configs();
    let tests = plan.matrix.tests();
    let runnable = configs.iter().filter(|c| c.rejected.is_none()).count();
    println!(
        "plan: {} on {} ({} configs, {} tests, {} reps{})",
        plan.engine,
        plan.model.display(),
        configs.len(),
        tests.len(),
        plan.reps,
        plan.ci_target_pct
            .map(|t| format!(", adaptive to ±{t}% up to {}", plan.max_reps))
            .unwrap_or_default()
    );
    for (i, c) in configs.iter().enumerate() {
        match &c.rejected {
            Some(reason) => println!("  config {}: {}  SKIP: {reason}", i + 1, c.config.label()),
            None => println!(
                "  config {}: {}  (engine start {})",
                i + 1,
                c.config.label(),
                configs[..=i]
                    .iter()
                    .filter(|c| c.rejected.is_none())
                    .count()
            ),
        }
    }
    println!(
        "  tests: {}",
        tests
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if plan.engine == "llama-server" {
        println!(
            "  server flags added: -np 1 and -c {} unless swept",
            plan.matrix.context_needed()
        );
    }
    println!(
        "  trials: {}; engine starts: {runnable} (restarts: {})",
        runnable * tests.len() * plan.reps as usize,
        runnable.saturating_sub(1)
    );
}

pub fn run(global: &Global, args: BenchArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let settings = resolve(&args)?;
    let format = Format::from(args.format);
    let args = BenchArgs {
        tag: settings.tag.clone(),
        ..args
    };
    let store = super::open_store(global)?;
    let (plan, resume_run) = match &args.resume {
        Some(reference) => {
            let run_id = store.resolve_run(reference)?;
            let detail = store.run_detail(run_id)?;
            let plan: BenchPlan =
                serde_json::from_value(detail.params["plan"].clone()).map_err(|e| {
                    Error::input(format!("run {run_id} has no bench plan to resume ({e})"))
                })?;
            (plan, Some(run_id))
        }
        None => (plan_from_settings(&settings, &args)?, None),
    };
    if args.dry_run {
        print_plan(&plan);
        return Ok(ExitCode::SUCCESS);
    }
    if !plan.model.is_file() {
        return Err(Error::input(format!("model file not found: {}", plan.model.display()))
            .with_hint("`bakeoff doctor` lists installed models; scripts/setup installs two small ones")
            .into());
    }
    let _lock = MeasureLock::acquire(&lock::default_path(), &super::command_line())?;
    if let Some(holder) = &_lock.took_over {
        printer.status(format!(
            "took over a stale lock left by pid {} (`{}`)",
            holder.pid, holder.command
        ));
    }
    let (install, binary) = discovery::find_tool(global.engine_path.as_deref(), &plan.engine)?;
    let model = store.model(&plan.model)?;
    let engine_id = store.engine_id(
        &plan.engine,
        &binary.display().to_string(),
        Some(&install),
        None,
    )?;
    let run_id = match resume_run {
        Some(id) => id,
        None => {
            let system_id = store.system_id(&Fingerprint::collect())?;
            let params = serde_json::json!({ "plan": plan, "model_sha256": model.sha256 });
            store.begin_run(
                "bench",
                &super::command_line(),
                system_id,
                args.tag.as_deref(),
                &params,
            )?
        }
    };
    let done = if resume_run.is_some() {
        bench::completed_trials(&store, run_id)?
    } else {
        HashSet::new()
    };
    if resume_run.is_some() {
        store.reopen_run(run_id)?;
        printer.status(format!(
            "resuming run {run_id}: {} trials already stored",
            done.len()
        ));
    }
    printer.status(format!(
        "run {run_id}: {} on {} ({})",
        install.label(),
        model.path,
        human_bytes(model.size)
    ));
    let mut progress = Progress::new(printer);
    let mut observe = |event: Event| progress.event(event);
    let ctx = BenchContext {
        store: &store,
        run_id,
        plan: &plan,
        binary,
        engine_id,
        model_id: model.id,
        done,
    };
    let result = if plan.engine == "llama-bench" {
        LlamaBenchRun { ctx }.run(&mut observe)
    } else {
        let require_clean = args.require_clean.map(Duration::from_secs);
        ServerBench { ctx, require_clean }.run(&mut observe)
    };
    printer.finish();
    let status = match (&result, bakeoff::engines::process::interrupted()) {
        (_, Some(_)) => "interrupted",
        (Ok(()), None) => "ok",
        (Err(_), None) => "failed",
    };
    store.end_run(
        run_id,
        status,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    )?;
    let detail = store.run_detail(run_id)?;
    let mut cells = compare::cells(&detail);
    let bandwidth = match args.bandwidth {
        Some(gbs) => Some(gbs),
        None => store.latest_system_measurement(
            store.system_id(&Fingerprint::collect())?,
            "memory_bandwidth",
        )?,
    };
    add_roofline(&mut cells, &plan.model, bandwidth);
    let name = Path::new(&model.path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let params = model.summary["parameters"]
        .as_u64()
        .map(|p| format!("{:.2} M", p as f64 / 1e6))
        .unwrap_or_default();
    let info = ModelInfo {
        name,
        size: human_bytes(model.size),
        params,
    };
    print!("{}", table::render(format, &info, &cells));
    if format == Format::Markdown {
        print!("{}", table::speculation_summary(&cells));
    }
    if let Some(signal) = bakeoff::engines::process::interrupted() {
        printer.status(format!(
            "interrupted; resume with: bakeoff bench --resume {run_id}"
        ));
        return Ok(ExitCode::from((128 + signal) as u8));
    }
    result?;
    printer.status(format!(
        "stored as run {run_id} in {}",
        store.path().display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Fill in the tg roofline of each cell when the memory bandwidth is known.
fn add_roofline(cells: &mut [compare::Cell], model: &Path, bandwidth_gbs: Option<f64>) {
    let Some(gbs) = bandwidth_gbs else { return };
    let Ok(file) = bakeoff::formats::gguf::GgufFile::open(model) else {
        return;
    };
    let facts = bakeoff::model::ModelFacts::from_gguf(&file);
    for cell in cells.iter_mut().filter(|c| c.kind == "tg") {
        cell.roofline_tps =
            bakeoff::model::plan::roofline_for_flags(&facts, &cell.flags, cell.depth, gbs * 1e9);
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
            } => self
                .printer
                .status(format!("config {}/{total}: {label}", index + 1)),
            Event::Skipped { label, reason } => {
                self.printer.status(format!("  skipped {label}: {reason}"))
            }
            Event::Trial {
                done,
                total,
                test,
                rep,
                value,
                unit,
                flags,
                ..
            } => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = if done > 0 && total >= done {
                    elapsed / done as f64 * (total - done) as f64
                } else {
                    0.0
                };
                let note = if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join("; "))
                };
                self.printer.status(format!(
                    "  [{done}/{total} eta {eta:.0}s] {test} rep {}: {value:.2} {unit}{note}",
                    rep + 1
                ));
                self.printer.bar(done, total, eta, test);
            }
            Event::Warning(message) => self.printer.warn(message),
        }
    }
}
