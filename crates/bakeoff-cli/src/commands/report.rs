//! `bakeoff report RUN... -o FILE`: gather the runs from the store once and write them as HTML,
//! Markdown or JSON.

use crate::cli::{Global, ReportArgs};
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::report::{data, ReportFormat};
use bakeoff::Error;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn format_of(args: &ReportArgs) -> bakeoff::Result<ReportFormat> {
    if let Some(name) = &args.format {
        return ReportFormat::parse(name)
            .ok_or_else(|| Error::input(format!("--format {name}: expected html, md or json")));
    }
    if args.output == Path::new("-") {
        return Ok(ReportFormat::Markdown);
    }
    ReportFormat::from_path(&args.output).ok_or_else(|| {
        Error::input(format!(
            "-o {}: cannot tell the format from the file name",
            args.output.display()
        ))
        .with_hint("name the file .html, .md or .json, or pass --format html|md|json")
    })
}

pub fn run(global: &Global, args: &ReportArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let format = format_of(args)?;
    let store = super::open_store(global)?;
    let mut ids = Vec::new();
    for reference in &args.runs {
        let id = store.resolve_run(reference)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let data = data::gather(&store, &ids)?;
    let bytes = format.exporter().serialize(&data);
    if args.output == Path::new("-") {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(&args.output, &bytes).map_err(|e| Error::io(&args.output, e))?;
    printer.status(format!(
        "wrote {} ({}): {} run(s), {} configuration(s), {} bench cell(s), {} load step(s), {} fidelity check(s)",
        args.output.display(),
        human_bytes(bytes.len() as u64),
        data.runs.len(),
        data.configs.len(),
        data.bench.len(),
        data.load.len(),
        data.fidelity.len()
    ));
    Ok(ExitCode::SUCCESS)
}
