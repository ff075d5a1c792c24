//! `bakeoff report RUN... --out FILE`: gather the runs from the store once and write them as HTML,
//! Markdown or JSON.

use crate::cli::{Global, ReportArgs};
use crate::cli_values::ReportFormatArg;
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::report::data::{self, ReportData};
use bakeoff::report::shootout::{self, ShootoutOptions};
use bakeoff::report::ReportFormat;
use bakeoff::store::Store;
use bakeoff::Error;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `-o FORMAT`, else `-` (stdout) as Markdown, else the output file's extension.
fn format_of(format: Option<ReportFormatArg>, out: &Path) -> bakeoff::Result<ReportFormat> {
    if let Some(format) = format {
        return Ok(format.into());
    }
    if out == Path::new("-") {
        return Ok(ReportFormat::Markdown);
    }
    ReportFormat::from_path(out).ok_or_else(|| unknown_extension(out))
}

fn unknown_extension(out: &Path) -> Error {
    let message = format!(
        "--out {}: cannot tell the format from the file name",
        out.display()
    );
    Error::input(message).with_hint(
        "name the file .html, .md or .json (.csv with --shootout), or pass -o html|md|json|csv",
    )
}

pub fn run(global: &Global, args: &ReportArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let (format, out) = args.format_and_out();
    let format = format_of(format, &out)?;
    let store = super::open_existing_store(global)?;
    let mut data = data::gather(&store, &run_ids(&store, &args.runs)?)?;
    if args.shootout {
        data.shootout = Some(shootout::build(&store, &data, &shootout_options(args))?);
    }
    let bytes = render(&data, format);
    if out == Path::new("-") {
        std::io::stdout().write_all(&bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::write(&out, &bytes).map_err(|e| Error::io(&out, e))?;
    print_written(&out, &bytes, &data, printer);
    Ok(ExitCode::SUCCESS)
}

fn shootout_options(args: &ReportArgs) -> ShootoutOptions {
    ShootoutOptions {
        reference: args.reference.clone(),
        within_pct: args.within.unwrap_or(shootout::DEFAULT_WITHIN_PCT),
    }
}

/// With `--shootout`, Markdown, CSV and JSON are the shootout table alone; else the report.
fn render(data: &ReportData, format: ReportFormat) -> Vec<u8> {
    let alone = data
        .shootout
        .as_ref()
        .and_then(|s| shootout::render(s, format));
    alone
        .map(String::into_bytes)
        .unwrap_or_else(|| format.exporter().serialize(data))
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
