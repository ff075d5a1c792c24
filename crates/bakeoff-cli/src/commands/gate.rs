//! `bakeoff gate`: run the fidelity checks for each candidate against the baseline and print the
//! readiness table; `--show RUN` prints a stored one.

use crate::cli::{GateArgs, Global};
use crate::cli_values::GateFormat;
use crate::printer::Printer;
use bakeoff::engines::http::Timeouts;
use bakeoff::quality::gate::GateSpec;
use bakeoff::quality::readiness::{Event, GateFile, GateRun, Readiness};
use bakeoff::quality::Status;
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::Store;
use bakeoff::Error;
use std::path::Path;
use std::process::ExitCode;

pub fn run(global: &Global, args: &GateArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let json = args.format == GateFormat::Json;
    let table = match (&args.show, &args.file) {
        (Some(reference), _) => show(&super::open_existing_store(global)?, reference)?,
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
    let engine = Engine::find(Some(&store), global.engine_path.as_deref(), "llama-server")?;
    let command = super::command_line();
    let params = serde_json::json!({ "file": file, "gate": spec });
    let tag = args.tag.as_deref();
    let mut session = Session::begin(store, RunSpec::new("gate", &command, tag, params))?;
    let timeouts = args.timeouts.timeouts();
    let result = run_gate(&session, (&file, &spec), engine, timeouts, printer);
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

/// The candidates file (and `--gate` over its gate), every model in it present.
fn load_files(args: &GateArgs, path: &Path) -> bakeoff::Result<(GateFile, GateSpec)> {
    let (file, mut spec) = GateFile::load(path)?;
    if let Some(gate) = &args.gate {
        spec = GateSpec::load(gate)?;
    }
    check_models(path, &file)?;
    Ok((file, spec))
}

fn check_models(path: &Path, file: &GateFile) -> bakeoff::Result<()> {
    let candidates = file.candidates.iter().filter_map(|c| c.model.as_ref());
    for model in std::iter::once(&file.model).chain(candidates) {
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
    timeouts: Timeouts,
    printer: &Printer,
) -> bakeoff::Result<Vec<Readiness>> {
    let (run_id, run_dir) = (session.run_id(), session.run_dir());
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    announce(run_id, file, &engine, printer);
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
        timeouts,
    }
    .run(&mut |event| observe(event, printer))
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
