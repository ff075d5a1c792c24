//! `bakeoff gate`: run the fidelity checks for each candidate against the baseline and print the
//! readiness table; `--show RUN` prints a stored one.

use crate::cli::{GateArgs, Global};
use crate::cli_values::GateFormat;
use crate::printer::Printer;
use bakeoff::engines::build::BuildRef;
use bakeoff::engines::http::Timeouts;
use bakeoff::model::select::ModelQuery;
use bakeoff::quality::gate::GateSpec;
use bakeoff::quality::readiness::{Event, GateFile, GateRun, Readiness};
use bakeoff::quality::Status;
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::Store;
use bakeoff::system::telemetry;
use bakeoff::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(global: &Global, args: &GateArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let json = args.format == GateFormat::Json;
    let table = match (&args.show, &args.file) {
        (Some(reference), _) => show(&super::open_existing_store(global)?, reference)?,
        (None, Some(path)) if args.queue.queue => {
            let (file, _) = load_files(args, path)?;
            let models = file_models(args, &file)?;
            let tag = args.tag.as_deref();
            let builds: Vec<BuildRef> = args
                .builds
                .iter()
                .map(|text| BuildRef::parse(text))
                .collect::<bakeoff::Result<_>>()?;
            // The candidates file's suite is named relative to it: shipped beside it.
            let files = [Some(path), args.gate.as_ref(), args.catalog.as_ref()]
                .into_iter()
                .flatten()
                .chain(&file.checks.suite)
                .cloned()
                .collect();
            let queued = super::worker::Queued {
                kind: "gate",
                cells: 1,
                tag,
                models: &models,
                builds: Some(&builds),
                files,
            };
            return super::worker::enqueue(global, &args.queue, queued, printer);
        }
        (None, Some(path)) => measure(global, args, path, super::open_store(global)?, &printer)?,
        (None, None) => return Err(Error::input("give a candidates file or --show RUN").into()),
    };
    table.print(json)?;
    let failed = table.rows.iter().any(|r| r.overall == Some(Status::Fail));
    Ok(match args.strict && failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

/// A gate run's readiness rows.
struct Table {
    run_id: i64,
    rows: Vec<Readiness>,
    ctx: u64,
}

impl Table {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        let (run, ctx, rows) = (self.run_id, self.ctx, &self.rows);
        if json {
            let value = serde_json::json!({"run": run, "ctx": ctx, "candidates": rows});
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print!("{}", bakeoff::report::readiness::markdown(rows, ctx));
        }
        Ok(())
    }
}

fn show(store: &Store, reference: &str) -> anyhow::Result<Table> {
    let run_id = store.resolve_run(reference)?;
    let rows = store.readiness(run_id)?;
    if rows.is_empty() {
        let message = format!("run {run_id} has no readiness rows (not a `bakeoff gate` run)");
        return Err(Error::input(message).into());
    }
    let ctx = store.run_detail(run_id)?.params["file"]["ctx"].as_u64();
    Ok(Table {
        run_id,
        rows,
        ctx: ctx.unwrap_or(0),
    })
}

fn measure(
    global: &Global,
    args: &GateArgs,
    path: &Path,
    store: Store,
    printer: &Printer,
) -> anyhow::Result<Table> {
    let (file, spec) = load_files(args, path)?;
    let subjects = subjects(global, args, &file, &store)?;
    let command = super::command_line();
    let params = serde_json::json!({ "file": file, "gate": spec, "builds": args.builds });
    let tag = args.tag.as_deref();
    let mut session = Session::begin(store, RunSpec::new("gate", &command, tag, params))?;
    let timeouts = args.timeouts.timeouts();
    let telemetry = (!args.telemetry.no_telemetry).then(telemetry::Config::from_env);
    let bounds = (timeouts, telemetry);
    let result = run_subjects(&session, (&file, &spec), subjects, bounds, printer);
    session.finish(&result)?;
    let rows = result?;
    let (run_id, path) = (session.run_id(), session.store().path().display());
    printer.status(format!("stored as run {run_id} in {path}"));
    Ok(Table {
        run_id,
        rows,
        ctx: file.ctx,
    })
}

/// One (build, model) of a gate run: its engine and the model its baseline runs on.
struct Subject {
    engine: Engine,
    model: PathBuf,
    /// With several subjects, what prefixes each row's candidate name.
    label: Option<String>,
}

/// Every (build, model) pair, builds outermost; the engine `--engine-path` finds without `--build`.
fn subjects(
    global: &Global,
    args: &GateArgs,
    file: &GateFile,
    store: &Store,
) -> bakeoff::Result<Vec<Subject>> {
    let models = file_models(args, file)?;
    if models.len() > 1 {
        let sha256 = |path: &Path| Ok(store.model(path)?.sha256);
        bakeoff::model::select::distinct(&models, sha256)?;
    }
    let engines = engines(global, args, store)?;
    let several = models.len() * engines.len() > 1;
    let subject = |(build, engine): &(Option<String>, Engine), model: &PathBuf| Subject {
        engine: engine.clone(),
        model: model.clone(),
        label: several.then(|| subject_label(build.as_deref(), model)),
    };
    let pairs = engines
        .iter()
        .flat_map(|e| models.iter().map(move |m| (e, m)));
    Ok(pairs
        .map(|(engine, model)| subject(engine, model))
        .collect())
}

/// Each `--build`'s llama-server with its name, identified once; else the one `--engine-path`
/// (or the installed one) finds.
fn engines(
    global: &Global,
    args: &GateArgs,
    store: &Store,
) -> bakeoff::Result<Vec<(Option<String>, Engine)>> {
    if args.builds.is_empty() {
        let engine = Engine::find(Some(store), global.engine_path.as_deref(), "llama-server")?;
        return Ok(vec![(None, engine)]);
    }
    let named = |text: &String| {
        let build = BuildRef::parse(text)?;
        let engine = Engine::for_build(Some(store), &build, "llama-server")?;
        Ok((Some(build.name), engine))
    };
    args.builds.iter().map(named).collect()
}

/// The file's `model`: one file, or several (a comma list, glob, directory or catalog names).
fn file_models(args: &GateArgs, file: &GateFile) -> bakeoff::Result<Vec<PathBuf>> {
    let query = ModelQuery {
        spec: Some(file.model.display().to_string()),
        catalog: args.catalog.clone(),
        models_dir: Some(bakeoff::system::paths::models_dir()),
        ..Default::default()
    };
    bakeoff::model::select::resolve(&query)
}

/// `gemma-3-270m-q4_k_m.gguf` or `b11434/gemma-3-270m-q4_k_m.gguf`.
fn subject_label(build: Option<&str>, model: &Path) -> String {
    let file = model.file_name().unwrap_or_default().to_string_lossy();
    match build {
        Some(build) => format!("{build}/{file}"),
        None => file.into_owned(),
    }
}

/// Each subject's gate in turn, its rows named after it when there are several.
fn run_subjects(
    session: &Session,
    (file, spec): (&GateFile, &GateSpec),
    subjects: Vec<Subject>,
    bounds: (Timeouts, Option<telemetry::Config>),
    printer: &Printer,
) -> bakeoff::Result<Vec<Readiness>> {
    let mut rows = Vec::new();
    for subject in subjects {
        let file = GateFile {
            model: subject.model.clone(),
            ..file.clone()
        };
        let label = subject.label.clone();
        rows.extend(run_gate(
            session,
            (&file, spec),
            subject.engine,
            bounds.clone(),
            printer,
            label.as_deref(),
        )?);
    }
    Ok(rows)
}

/// The candidates file (and `--gate` over its gate), every model in it present.
fn load_files(args: &GateArgs, path: &Path) -> bakeoff::Result<(GateFile, GateSpec)> {
    let (file, mut spec) = GateFile::load(path)?;
    if let Some(gate) = &args.gate {
        spec = GateSpec::load(gate)?;
    }
    let models = file_models(args, &file).map_err(|e| in_file(path, &e))?;
    check_models(path, &file, &models)?;
    Ok((file, spec))
}

fn check_models(path: &Path, file: &GateFile, models: &[PathBuf]) -> bakeoff::Result<()> {
    let candidates = file.candidates.iter().filter_map(|c| c.model.as_ref());
    for model in models.iter().chain(candidates) {
        bakeoff::model::check_file(model).map_err(|e| in_file(path, &e))?;
    }
    Ok(())
}

/// A model error prefixed with the candidates file that names the model.
fn in_file(file: &Path, error: &Error) -> Error {
    let prefixed = Error::input(format!("{}: {error}", file.display()));
    match error.hint() {
        Some(hint) => prefixed.with_hint(hint),
        None => prefixed,
    }
}

fn run_gate(
    session: &Session,
    (file, spec): (&GateFile, &GateSpec),
    engine: Engine,
    (timeouts, telemetry): (Timeouts, Option<telemetry::Config>),
    printer: &Printer,
    label: Option<&str>,
) -> bakeoff::Result<Vec<Readiness>> {
    let (run_id, run_dir) = (session.run_id(), session.run_dir());
    let run_dir = match label {
        Some(label) => run_dir.join(label.replace('/', "_")),
        None => run_dir,
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    announce(run_id, file, &engine, printer);
    let store = session.store();
    let engine_id = engine.engine_id.unwrap_or_default();
    let named = |row: &Readiness| {
        let mut row = row.clone();
        if let Some(label) = label {
            row.candidate = format!("{label} {}", row.candidate);
        }
        row
    };
    let mut record = |row: &Readiness| {
        store
            .record_readiness(run_id, engine_id, &named(row))
            .map(drop)
    };
    GateRun {
        file,
        spec,
        server: engine.binary,
        perplexity: engine.install.tool("llama-perplexity"),
        run_dir,
        store: &mut record,
        timeouts,
        telemetry,
    }
    .run(&mut |event| observe(event, printer))
    .map(|rows| rows.iter().map(named).collect())
}

fn announce(run_id: i64, file: &GateFile, engine: &Engine, printer: &Printer) {
    printer.status(format!(
        "run {run_id}: {} candidate(s) against {} on {} ({})",
        file.candidates.len(),
        file.baseline.name,
        file.model.display(),
        engine.label()
    ));
}

fn observe(event: Event, printer: &Printer) {
    match event {
        Event::Stage { candidate, what } => printer.status(format!("{candidate}: {what}")),
        Event::Done(row) => printer.status(done_line(row)),
    }
}

/// `candidate: PASS (blocker)`.
fn done_line(row: &Readiness) -> String {
    let overall = row.overall.map_or("done", Status::label);
    let blocker = row.blocker.as_ref().map(|b| format!(" ({b})"));
    format!(
        "{}: {overall}{}",
        row.candidate,
        blocker.unwrap_or_default()
    )
}
