//! `bakeoff bench`: resolve the matrix (experiment file, then command line), print the plan or run
//! it under the machine-wide lock, then print the table.

use crate::cli::{BenchArgs, Global};
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::measure::bench::{self, BenchContext, BenchPlan, Event, ServerBench, TrialKey};
use bakeoff::measure::compare;
use bakeoff::measure::llama_bench::LlamaBenchRun;
use bakeoff::measure::matrix::{parse_values, Matrix, PromptSet};
use bakeoff::report::bench_cells;
use bakeoff::report::table::{self, Format, ModelInfo};
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::{ModelRow, Store};
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
    let ci_target_pct = ci_target(args.ci_target.as_deref())?;
    let default_reps = if ci_target_pct.is_some() { 3 } else { 5 };
    Ok(BenchPlan {
        model: super::resolve_model(model),
        matrix: matrix_from_args(args)?,
        reps: args.reps.unwrap_or(default_reps),
        warmup: args.warmup.unwrap_or(1),
        ci_target_pct,
        max_reps: args.max_reps.unwrap_or(20),
        engine: engine_name(args.engine.as_deref())?,
        extra_args: args.engine_args.clone(),
        health_timeout_s: args.health_timeout,
    })
}

/// The swept flags, `--server-flag`s and tests; `-p 64` when neither `-p` nor `-n` is given.
fn matrix_from_args(args: &BenchArgs) -> bakeoff::Result<Matrix> {
    let mut matrix = Matrix::default();
    for (_, flag, value) in flag_args(args) {
        if let Some(value) = value {
            matrix.set(flag, parse_values(flag, value)?);
        }
    }
    for entry in &args.server_flags {
        let (flag, values) = server_flag(entry)?;
        matrix.set(flag, parse_values(flag, values)?);
    }
    matrix.prompt_tokens = numbers("-p", args.prompt.as_deref().unwrap_or("0"))?;
    matrix.gen_tokens = numbers("-n", args.gen.as_deref().unwrap_or("32"))?;
    matrix.depths = numbers("-d", args.depth.as_deref().unwrap_or("0"))?;
    let prompts = parse_values("--prompts", args.prompts.as_deref().unwrap_or("random"))?;
    matrix.prompts = prompts.iter().map(|p| PromptSet::parse(p)).collect();
    if args.prompt.is_none() && args.gen.is_none() {
        matrix.prompt_tokens = vec![64];
    }
    Ok(matrix)
}

/// `--server-flag FLAG=VALUES`.
fn server_flag(entry: &str) -> bakeoff::Result<(&str, &str)> {
    let (flag, values) = entry
        .split_once('=')
        .ok_or_else(|| Error::input(format!("--server-flag {entry}: expected FLAG=VALUES")))?;
    if !flag.starts_with('-') {
        let message = format!("--server-flag {entry}: '{flag}' does not look like a flag");
        return Err(Error::input(message));
    }
    Ok((flag, values))
}

/// `--ci-target 2` or `2%`.
fn ci_target(text: Option<&str>) -> bakeoff::Result<Option<f64>> {
    let parse = |t: &str| {
        t.trim_end_matches('%').parse::<f64>().map_err(|_| {
            Error::input(format!(
                "--ci-target {t}: expected a percentage such as 2 or 2%"
            ))
        })
    };
    text.map(parse).transpose()
}

fn engine_name(name: Option<&str>) -> bakeoff::Result<String> {
    let engine = name.unwrap_or("llama-server");
    if !matches!(engine, "llama-server" | "llama-bench") {
        let message = format!("--engine {engine}: expected llama-server or llama-bench");
        return Err(Error::input(message));
    }
    Ok(engine.to_string())
}

pub fn run(global: &Global, args: BenchArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let args = with_experiment(args)?;
    let format = output_format(&args.output)?;
    let store = super::open_store(global)?;
    let (plan, resume) = resolve_plan(&store, &args)?;
    if args.dry_run {
        print!("{}", plan.describe());
        return Ok(ExitCode::SUCCESS);
    }
    check_model(&plan.model)?;
    let engine = Engine::find(Some(&store), global.engine_path.as_deref(), &plan.engine)?;
    let model = store.model(&plan.model)?;
    let session = open_session(store, &plan, &args, resume, &model)?;
    let mut bench = BenchRun {
        session,
        args: &args,
        plan: &plan,
        model,
        printer,
    };
    bench.run(engine, resume.is_some(), format)
}

/// `--config FILE` applied under the command line's values.
fn with_experiment(mut args: BenchArgs) -> bakeoff::Result<BenchArgs> {
    if let Some(path) = args.config.clone() {
        apply_experiment(&path, &mut args)?;
    }
    Ok(args)
}

fn output_format(text: &str) -> bakeoff::Result<Format> {
    Format::parse(text)
        .ok_or_else(|| Error::input(format!("-o {text}: expected md, csv, json or jsonl")))
}

/// The plan from the command line, or the stored one of the run `--resume` names.
fn resolve_plan(store: &Store, args: &BenchArgs) -> bakeoff::Result<(BenchPlan, Option<i64>)> {
    let Some(reference) = &args.resume else {
        return Ok((plan_from_args(args)?, None));
    };
    let run_id = store.resolve_run(reference)?;
    let detail = store.run_detail(run_id)?;
    let plan = serde_json::from_value(detail.params["plan"].clone())
        .map_err(|e| Error::input(format!("run {run_id} has no bench plan to resume ({e})")))?;
    Ok((plan, Some(run_id)))
}

fn check_model(model: &Path) -> bakeoff::Result<()> {
    if model.is_file() {
        return Ok(());
    }
    let hint = "`bakeoff doctor` lists installed models; scripts/setup installs two small ones";
    let message = format!("model file not found: {}", model.display());
    Err(Error::input(message).with_hint(hint))
}

/// A new bench run holding the plan, or the resumed one reopened.
fn open_session(
    store: Store,
    plan: &BenchPlan,
    args: &BenchArgs,
    resume: Option<i64>,
    model: &ModelRow,
) -> bakeoff::Result<Session> {
    let command = super::command_line();
    let params = serde_json::json!({ "plan": plan, "model_sha256": model.sha256 });
    match resume {
        Some(run_id) => Session::resume(store, run_id, &command),
        None => Session::begin(
            store,
            RunSpec::new("bench", &command, args.tag.as_deref(), params),
        ),
    }
}

/// The table, and under Markdown the speculation summary.
fn print_cells(format: Format, info: &ModelInfo, cells: &[compare::Cell]) {
    print!("{}", table::render(format, info, cells));
    if format == Format::Markdown {
        print!("{}", table::speculation_summary(cells));
    }
}

/// One bench run under way.
struct BenchRun<'a> {
    session: Session,
    args: &'a BenchArgs,
    plan: &'a BenchPlan,
    model: ModelRow,
    printer: Printer,
}

impl BenchRun<'_> {
    fn run(&mut self, engine: Engine, resumed: bool, format: Format) -> anyhow::Result<ExitCode> {
        let done = self.announce(&engine, resumed)?;
        let result = self.measure(engine, done);
        self.printer.finish();
        let code = self.session.finish(&result)?;
        self.print_table(format)?;
        self.finish_lines(code, result)
    }

    /// Status lines at the start; returns the trials a resumed run already holds.
    fn announce(&self, engine: &Engine, resumed: bool) -> bakeoff::Result<HashSet<TrialKey>> {
        if let Some(note) = self.session.lock_note() {
            self.printer.status(note);
        }
        let done = if resumed {
            self.stored_trials()?
        } else {
            HashSet::new()
        };
        let (label, size) = (engine.label(), human_bytes(self.model.size));
        let run_id = self.session.run_id();
        let line = format!("run {run_id}: {label} on {} ({size})", self.model.path);
        self.printer.status(line);
        Ok(done)
    }

    /// The trials a resumed run already holds (they are not measured again).
    fn stored_trials(&self) -> bakeoff::Result<HashSet<TrialKey>> {
        let run_id = self.session.run_id();
        let done = bench::completed_trials(self.session.store(), run_id)?;
        let stored = done.len();
        let line = format!("resuming run {run_id}: {stored} trials already stored");
        self.printer.status(line);
        Ok(done)
    }

    /// Run the plan through llama-server or llama-bench, reporting progress.
    fn measure(&self, engine: Engine, done: HashSet<TrialKey>) -> bakeoff::Result<()> {
        let mut progress = Progress::new(self.printer);
        let mut observe = |event: Event| progress.event(event);
        let ctx = self.context(engine, done);
        if self.plan.engine == "llama-bench" {
            return LlamaBenchRun { ctx }.run(&mut observe);
        }
        let require_clean = self.args.require_clean.map(Duration::from_secs);
        ServerBench { ctx, require_clean }.run(&mut observe)
    }

    fn context(&self, engine: Engine, done: HashSet<TrialKey>) -> BenchContext<'_> {
        BenchContext {
            store: self.session.store(),
            run_id: self.session.run_id(),
            plan: self.plan,
            binary: engine.binary,
            engine_id: engine.engine_id.unwrap_or_default(),
            model_id: self.model.id,
            done,
        }
    }

    /// The run's cells (with rooflines when the bandwidth is known) in the chosen format.
    fn print_table(&self, format: Format) -> bakeoff::Result<()> {
        let detail = self.session.store().run_detail(self.session.run_id())?;
        let mut cells = compare::cells(&detail);
        bench_cells::add_roofline(&mut cells, &self.plan.model, self.bandwidth()?);
        print_cells(format, &bench_cells::model_info(&self.model), &cells);
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
        Ok(ExitCode::SUCCESS)
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
