//! `bakeoff report RUN... --out FILE`: gather the runs from the store once and write them as HTML,
//! Markdown or JSON.

use crate::cli::{Global, ReportArgs};
use crate::cli_values::ReportFormatArg;
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::report::{data, ReportFormat};
use bakeoff::Error;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn format_of(format: Option<ReportFormatArg>, out: &Path) -> bakeoff::Result<ReportFormat> {
    if let Some(format) = format {
        return Ok(format.into());
    }
    if out == Path::new("-") {
        return Ok(ReportFormat::Markdown);
    }
    ReportFormat::from_path(out).ok_or_else(|| {
        Error::input(format!(
            "--out {}: cannot tell the format from the file name",
            out.display()
        ))
        .with_hint("name the file .html, .md or .json, or pass -o html|md|json")
    })
}

pub fn run(global: &Global, args: &ReportArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let (format, out) = args.format_and_out();
    let format = format_of(format, &out)?;
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
    if out == Path::new("-") {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(&out, &bytes).map_err(|e| Error::io(&out, e))?;
    printer.status(format!(
        "wrote {} ({}): {} run(s), {} configuration(s), {} bench cell(s), {} load step(s), {} fidelity check(s)",
        out.display(),
        human_bytes(bytes.len() as u64),
        data.runs.len(),
        data.configs.len(),
        data.bench.len(),
        data.load.len(),
        data.fidelity.len()
    ));
    Ok(ExitCode::SUCCESS)
}
