//! `bakeoff bench`: resolve the matrix (experiment file, then command line), print the plan or run
//! it under the machine-wide lock, then print the table.

use crate::cli::{BenchArgs, Global};
use crate::printer::Printer;
use bakeoff::analysis::compare;
use bakeoff::domain::units::human_bytes;
use bakeoff::engines::discovery;
use bakeoff::measure::bench::{self, BenchContext, BenchPlan, Event, ServerBench};
use bakeoff::measure::llama_bench::LlamaBenchRun;
use bakeoff::measure::matrix::{parse_values, Matrix, PromptSet};
use bakeoff::report::table::{self, Format, ModelInfo};
use bakeoff::system::{lock, Fingerprint, MeasureLock};
use bakeoff::Error;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// (matrix key in experiment files, llama-server flag, value from the command line).
fn flag_args(args: &BenchArgs) -> Vec<(&'static str, &'static str, Option<&String>)> {
    vec![
        ("kv", "--kv", args.kv.as_ref()),
        ("ctk", "-ctk", args.cache_type_k.as_ref()),
        ("ctv", "-ctv", args.cache_type_v.as_ref()),
        ("fa", "-fa", args.flash_attn.as_ref()),
        ("b", "-b", args.batch.as_ref()),
        ("ub", "-ub", args.ubatch.as_ref()),
        ("t", "-t", args.threads.as_ref()),
        ("ngl", "-ngl", args.gpu_layers.as_ref()),
        ("np", "-np", args.parallel.as_ref()),
        ("c", "-c", args.ctx.as_ref()),
        ("md", "-md", args.draft_model.as_ref()),
        ("spec-type", "--spec-type", args.spec_type.as_ref()),
        (
            "spec-draft-n-max",
            "--spec-draft-n-max",
            args.spec_draft_n_max.as_ref(),
        ),
    ]
}

fn numbers(flag: &str, text: &str) -> bakeoff::Result<Vec<u32>> {
    parse_values(flag, text)?
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| Error::input(format!("{flag}: '{v}' is not a whole number")))
        })
        .collect()
}

/// An experiment file value as text: `"f16,q8_0"`, `512`, or `["f16", "q8_0"]`.
fn toml_text(file: &Path, key: &str, value: &toml::Value) -> bakeoff::Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(if *b { "on".into() } else { "off".into() }),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| toml_text(file, key, v))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        other => Err(Error::input(format!(
            "{}: {key}: expected a string, number or list, got {}",
            file.display(),
            other.type_str()
        ))),
    }
}

/// Apply an experiment file to `args` (values already given on the command line win).
fn apply_experiment(path: &Path, args: &mut BenchArgs) -> bakeoff::Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Error::input(format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or("invalid TOML")
        ))
    })?;
    for (key, value) in &doc {
        let text = || toml_text(path, key, value);
        let number = || {
            text()?.parse::<u32>().map_err(|_| {
                Error::input(format!(
                    "{}: {key}: expected a whole number",
                    path.display()
                ))
            })
        };
        match key.as_str() {
            "model" => { args.model.get_or_insert(PathBuf::from(text()?)); }
            "reps" | "repetitions" => { args.reps.get_or_insert(number()?); }
            "warmup" => { args.warmup.get_or_insert(number()?); }
            "max-reps" => { args.max_reps.get_or_insert(number()?); }
            "ci-target" => { args.ci_target.get_or_insert(text()?); }
            "engine" => { args.engine.get_or_insert(text()?); }
            "tag" => { args.tag.get_or_insert(text()?); }
            "matrix" => apply_matrix_table(path, value, args)?,
            "server-flags" => {
                let table = value.as_table().ok_or_else(|| Error::input(format!("{}: [server-flags] must be a table", path.display())))?;
                for (flag, values) in table {
                    args.server_flags.push(format!("{flag}={}", toml_text(path, flag, values)?));
                }
            }
            other => return Err(Error::input(format!("{}: unknown key '{other}'", path.display()))
                .with_hint("known keys: model, reps, warmup, max-reps, ci-target, engine, tag, [matrix], [server-flags]")),
        }
    }
    Ok(())
}

fn apply_matrix_table(
    path: &Path,
    value: &toml::Value,
    args: &mut BenchArgs,
) -> bakeoff::Result<()> {
    let table = value
        .as_table()
        .ok_or_else(|| Error::input(format!("{}: [matrix] must be a table", path.display())))?;
    for (key, value) in table {
        let text = toml_text(path, key, value)?;
        let slot = match key.as_str() {
            "kv" => &mut args.kv,
            "ctk" => &mut args.cache_type_k,
            "ctv" => &mut args.cache_type_v,
            "fa" => &mut args.flash_attn,
            "b" => &mut args.batch,
            "ub" => &mut args.ubatch,
            "t" => &mut args.threads,
            "ngl" => &mut args.gpu_layers,
            "np" => &mut args.parallel,
            "c" => &mut args.ctx,
            "md" => &mut args.draft_model,
            "spec-type" => &mut args.spec_type,
            "spec-draft-n-max" => &mut args.spec_draft_n_max,
            "p" => &mut args.prompt,
            "n" => &mut args.gen,
            "d" => &mut args.depth,
            "prompts" => &mut args.prompts,
            other => {
                return Err(Error::input(format!("{}: [matrix] unknown parameter '{other}'", path.display()))
                    .with_hint("parameters: kv ctk ctv fa b ub t ngl np c md spec-type spec-draft-n-max p n d prompts"))
            }
        };
        slot.get_or_insert(text);
    }
    Ok(())
}

fn plan_from_args(args: &BenchArgs) -> bakeoff::Result<BenchPlan> {
    let model = args
        .model
        .as_deref()
        .ok_or_else(|| Error::input("no model: pass --model FILE (or `model` in --config)"))?;
    let model = super::resolve_model(model);
    let mut matrix = Matrix::default();
    for (_, flag, value) in flag_args(args) {
        if let Some(value) = value {
            matrix.set(flag, parse_values(flag, value)?);
        }
    }
    for entry in &args.server_flags {
        let (flag, values) = entry
            .split_once('=')
            .ok_or_else(|| Error::input(format!("--server-flag {entry}: expected FLAG=VALUES")))?;
        if !flag.starts_with('-') {
            return Err(Error::input(format!(
                "--server-flag {entry}: '{flag}' does not look like a flag"
            )));
        }
        matrix.set(flag, parse_values(flag, values)?);
    }
    matrix.prompt_tokens = numbers("-p", args.prompt.as_deref().unwrap_or("0"))?;
    matrix.gen_tokens = numbers("-n", args.gen.as_deref().unwrap_or("32"))?;
    matrix.depths = numbers("-d", args.depth.as_deref().unwrap_or("0"))?;
    matrix.prompts = parse_values("--prompts", args.prompts.as_deref().unwrap_or("random"))?
        .iter()
        .map(|p| PromptSet::parse(p))
        .collect();
    if args.prompt.is_none() && args.gen.is_none() {
        matrix.prompt_tokens = vec![64];
    }
    let ci_target_pct = args
        .ci_target
        .as_deref()
        .map(|t| {
            t.trim_end_matches('%').parse::<f64>().map_err(|_| {
                Error::input(format!(
                    "--ci-target {t}: expected a percentage such as 2 or 2%"
                ))
            })
        })
        .transpose()?;
    let engine = args.engine.clone().unwrap_or_else(|| "llama-server".into());
    if !matches!(engine.as_str(), "llama-server" | "llama-bench") {
        return Err(Error::input(format!(
            "--engine {engine}: expected llama-server or llama-bench"
        )));
    }
    Ok(BenchPlan {
        model,
        matrix,
        reps: args
            .reps
            .unwrap_or(if ci_target_pct.is_some() { 3 } else { 5 }),
        warmup: args.warmup.unwrap_or(1),
        ci_target_pct,
        max_reps: args.max_reps.unwrap_or(20),
        engine,
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
    let mut args = args;
    if let Some(path) = args.config.clone() {
        apply_experiment(&path, &mut args)?;
    }
    let format = Format::parse(&args.output).ok_or_else(|| {
        Error::input(format!(
            "-o {}: expected md, csv, json or jsonl",
            args.output
        ))
    })?;
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
        None => (plan_from_args(&args)?, None),
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
        sink: &store,
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
