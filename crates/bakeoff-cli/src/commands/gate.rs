//! `bakeoff gate`: run the fidelity checks for each candidate against the baseline and print the
//! readiness table; `--show RUN` prints a stored one.

use crate::cli::{GateArgs, Global};
use crate::printer::Printer;
use bakeoff::quality::gate::GateSpec;
use bakeoff::quality::readiness::{self, Event, GateFile, GateRun, Readiness};
use bakeoff::quality::Status;
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::Store;
use bakeoff::Error;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &Global, args: &GateArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let json = match args.output.as_str() {
        "md" | "markdown" => false,
        "json" => true,
        other => return Err(Error::input(format!("-o {other}: expected md or json")).into()),
    };
    let store = super::open_store(global)?;
    let (run_id, rows, ctx) = match (&args.show, &args.file) {
        (Some(reference), _) => show(&store, reference)?,
        (None, Some(path)) => measure(global, args, path, store, &printer)?,
        (None, None) => return Err(Error::input("give a candidates file or --show RUN").into()),
    };
    if json {
        let value = serde_json::json!({"run": run_id, "ctx": ctx, "candidates": rows});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", readiness::markdown(&rows, ctx));
    }
    let failed = rows.iter().any(|r| r.overall == Some(Status::Fail));
    Ok(if args.strict && failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show(store: &Store, reference: &str) -> anyhow::Result<(i64, Vec<Readiness>, u64)> {
    let run_id = store.resolve_run(reference)?;
    let rows = store.readiness(run_id)?;
    if rows.is_empty() {
        return Err(Error::input(format!(
            "run {run_id} has no readiness rows (not a `bakeoff gate` run)"
        ))
        .into());
    }
    let detail = store.run_detail(run_id)?;
    let ctx = detail.params["file"]["ctx"].as_u64().unwrap_or(0);
    Ok((run_id, rows, ctx))
}

fn measure(
    global: &Global,
    args: &GateArgs,
    path: &Path,
    store: Store,
    printer: &Printer,
) -> anyhow::Result<(i64, Vec<Readiness>, u64)> {
    let (file, spec) = load_files(args, path)?;
    let engine = Engine::find(Some(&store), global.engine_path.as_deref(), "llama-server")?;
    let command = super::command_line();
    let params = serde_json::json!({ "file": file, "gate": spec });
    let run = RunSpec {
        kind: "gate",
        command: &command,
        tag: args.tag.as_deref(),
        params,
    };
    let mut session = Session::begin(store, run)?;
    let result = run_gate(&session, &file, &spec, engine, printer);
    session.finish(&result)?;
    let rows = result?;
    let (run_id, path) = (session.run_id(), session.store().path().display());
    printer.status(format!("stored as run {run_id} in {path}"));
    Ok((run_id, rows, file.ctx))
}

/// The candidates file (and `--gate` over its gate), every model in it present.
fn load_files(args: &GateArgs, path: &Path) -> bakeoff::Result<(GateFile, GateSpec)> {
    let (file, mut spec) = GateFile::load(path)?;
    if let Some(gate) = &args.gate {
        spec = GateSpec::load(gate)?;
    }
    let candidates = file.candidates.iter().filter_map(|c| c.model.as_ref());
    match std::iter::once(&file.model)
        .chain(candidates)
        .find(|m| !m.is_file())
    {
        None => Ok((file, spec)),
        Some(model) => Err(Error::input(format!(
            "{}: model file not found: {}",
            path.display(),
            model.display()
        ))
        .with_hint(
            "`bakeoff doctor` lists installed models; scripts/setup installs two small ones",
        )),
    }
}

fn run_gate(
    session: &Session,
    file: &GateFile,
    spec: &GateSpec,
    engine: Engine,
    printer: &Printer,
) -> bakeoff::Result<Vec<Readiness>> {
    let run_id = session.run_id();
    let run_dir = session.run_dir();
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    printer.status(format!(
        "run {run_id}: {} candidate(s) against {} on {} ({})",
        file.candidates.len(),
        file.baseline.name,
        file.model.display(),
        engine.label()
    ));
    let store = session.store();
    let engine_id = engine.engine_id.unwrap_or_default();
    let mut record = |row: &Readiness| store.record_readiness(run_id, engine_id, row).map(drop);
    GateRun {
        file,
        spec,
        server: engine.binary,
        perplexity: engine.install.tool("llama-perplexity"),
        run_dir,
        store: &mut record,
    }
    .run(&mut |event| observe(event, printer))
}

fn observe(event: Event, printer: &Printer) {
    match event {
        Event::Stage { candidate, what } => printer.status(format!("{candidate}: {what}")),
        Event::Done(row) => printer.status(format!(
            "{}: {}{}",
            row.candidate,
            row.overall.map_or("done", Status::label),
            row.blocker
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default()
        )),
    }
}
