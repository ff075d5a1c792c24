//! `bakeoff report RUN... -o FILE`: gather the runs from the store once and write them as HTML,
//! Markdown or JSON.

use crate::cli::{Global, ReportArgs};
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::report::data::{self, ReportData};
use bakeoff::report::ReportFormat;
use bakeoff::store::Store;
use bakeoff::Error;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `--format`, else `-` (stdout) as Markdown, else the output file's extension.
fn format_of(args: &ReportArgs) -> bakeoff::Result<ReportFormat> {
    if let Some(name) = &args.format {
        let unknown = || Error::input(format!("--format {name}: expected html, md or json"));
        return ReportFormat::parse(name).ok_or_else(unknown);
    }
    if args.output == Path::new("-") {
        return Ok(ReportFormat::Markdown);
    }
    ReportFormat::from_path(&args.output).ok_or_else(|| unknown_extension(&args.output))
}

fn unknown_extension(output: &Path) -> Error {
    let message = format!(
        "-o {}: cannot tell the format from the file name",
        output.display()
    );
    Error::input(message)
        .with_hint("name the file .html, .md or .json, or pass --format html|md|json")
}

pub fn run(global: &Global, args: &ReportArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let format = format_of(args)?;
    let store = super::open_store(global)?;
    let data = data::gather(&store, &run_ids(&store, &args.runs)?)?;
    let bytes = format.exporter().serialize(&data);
    if args.output == Path::new("-") {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(&args.output, &bytes).map_err(|e| Error::io(&args.output, e))?;
    print_written(&args.output, &bytes, &data, printer);
    Ok(ExitCode::SUCCESS)
}

/// The runs named, each once, in the order first named.
fn run_ids(store: &Store, references: &[String]) -> bakeoff::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for reference in references {
        let id = store.resolve_run(reference)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn print_written(output: &Path, bytes: &[u8], data: &ReportData, printer: Printer) {
    printer.status(format!(
        "wrote {} ({}): {} run(s), {} configuration(s), {} bench cell(s), {} load step(s), {} fidelity check(s)",
        output.display(),
        human_bytes(bytes.len() as u64),
        data.runs.len(),
        data.configs.len(),
        data.bench.len(),
        data.load.len(),
        data.fidelity.len()
    ));
}
