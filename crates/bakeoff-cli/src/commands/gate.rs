//! `bakeoff gate`: run the fidelity checks for each candidate against the baseline and print the
//! readiness table; `--show RUN` prints a stored one.

use crate::cli::{GateArgs, Global};
use crate::cli_values::GateFormat;
use crate::printer::Printer;
use bakeoff::engines::discovery;
use bakeoff::quality::gate::GateSpec;
use bakeoff::quality::readiness::{Event, GateFile, GateRun, Readiness};
use bakeoff::quality::Status;
use bakeoff::store::Store;
use bakeoff::system::lock::{self, MeasureLock};
use bakeoff::system::{paths, Fingerprint};
use bakeoff::Error;
use std::process::ExitCode;

pub fn run(global: &Global, args: &GateArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let json = args.format == GateFormat::Json;
    let store = super::open_store(global)?;
    let (run_id, rows, ctx) = match (&args.show, &args.file) {
        (Some(reference), _) => show(&store, reference)?,
        (None, Some(path)) => measure(global, args, path, &store, &printer)?,
        (None, None) => return Err(Error::input("give a candidates file or --show RUN").into()),
    };
    if json {
        let value = serde_json::json!({"run": run_id, "ctx": ctx, "candidates": rows});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", bakeoff::report::readiness::markdown(&rows, ctx));
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
    path: &std::path::Path,
    store: &Store,
    printer: &Printer,
) -> anyhow::Result<(i64, Vec<Readiness>, u64)> {
    let (file, mut spec) = GateFile::load(path)?;
    if let Some(gate) = &args.gate {
        spec = GateSpec::load(gate)?;
    }
    for model in
        std::iter::once(&file.model).chain(file.candidates.iter().filter_map(|c| c.model.as_ref()))
    {
        if !model.is_file() {
            return Err(Error::input(format!(
                "{}: model file not found: {}",
                path.display(),
                model.display()
            ))
            .with_hint(
                "`bakeoff doctor` lists installed models; scripts/setup installs two small ones",
            )
            .into());
        }
    }
    let _lock = MeasureLock::acquire(&lock::default_path(), &super::command_line())?;
    let (install, server) = discovery::find_tool(global.engine_path.as_deref(), "llama-server")?;
    let engine_id = store.engine_id(
        "llama-server",
        &server.display().to_string(),
        Some(&install),
        None,
    )?;
    let system_id = store.system_id(&Fingerprint::collect())?;
    let params = serde_json::json!({ "file": file, "gate": spec });
    let run_id = store.begin_run(
        "gate",
        &super::command_line(),
        system_id,
        args.tag.as_deref(),
        &params,
    )?;
    let run_dir = paths::run_dir(store.path(), run_id);
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    printer.status(format!(
        "run {run_id}: {} candidate(s) against {} on {} ({})",
        file.candidates.len(),
        file.baseline.name,
        file.model.display(),
        install.label()
    ));
    let mut record = |row: &Readiness| store.record_readiness(run_id, engine_id, row).map(drop);
    let mut observe = |event: Event| match event {
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
    };
    let result = GateRun {
        file: &file,
        spec: &spec,
        server,
        perplexity: install.tool("llama-perplexity"),
        run_dir,
        store: &mut record,
    }
    .run(&mut observe);
    let status = match (&result, bakeoff::engines::process::interrupted()) {
        (_, Some(_)) => "interrupted",
        (Ok(_), None) => "ok",
        (Err(_), None) => "failed",
    };
    store.end_run(
        run_id,
        status,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    )?;
    let rows = result?;
    printer.status(format!(
        "stored as run {run_id} in {}",
        store.path().display()
    ));
    Ok((run_id, rows, file.ctx))
}
