//! One module per subcommand. Each resolves its arguments, calls the library, and prints.

mod bench;
mod compare;
mod doctor;
mod gate;
mod journal;
mod load;
mod model;
mod models;
mod monitor;
mod profile;
mod report;
mod runs;
mod serve;
mod serve_profile;
mod sync;
mod tools;
mod tune;
pub mod worker;

use crate::cli::{Cli, Command, Global};
use crate::printer::Printer;
use bakeoff::domain::Combine;
use bakeoff::store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run one command. Once a signal has arrived its outcome is "interrupted", exit 128 + signal:
/// an error it returned then (a request cut off when its engine was stopped, "Unexpected EOF")
/// is a consequence of the stop, not news, and is not printed as one.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let printer = Printer::new(cli.global.quiet);
    let outcome = dispatch(cli, printer);
    let Some(signal) = bakeoff::engines::process::interrupted() else {
        return outcome;
    };
    if outcome.is_err() {
        let name = bakeoff::engines::process::signal_name(signal);
        printer.status(format!("interrupted by {name}"));
    }
    Ok(ExitCode::from((128 + signal) as u8))
}

fn dispatch(cli: Cli, printer: Printer) -> anyhow::Result<ExitCode> {
    // The command's own --engine-path over the one before the subcommand; commands read `Global`.
    let global = Global {
        engine_path: cli
            .command
            .engine_path()
            .combine(cli.global.engine_path.clone()),
        ..cli.global
    };
    let global = &global;
    match cli.command {
        Command::Doctor(args) => doctor::run(global, &args, printer),
        Command::Serve(args) => serve::run(global, &args, printer),
        Command::Bench(args) => bench::run(global, *args, printer),
        Command::Load(args) => load::run(global, *args, printer),
        Command::Compare(args) => compare::run(global, &args),
        Command::Model(command) => model::run(global, command, printer),
        Command::Plan(args) => model::plan(&args),
        Command::Report(args) => report::run(global, &args, printer),
        Command::Runs(command) => runs::run(global, command),
        Command::Gate(args) => gate::run(global, &args, printer),
        Command::Journal(command) => journal::run(global, command, printer),
        Command::Profile(command) => profile::run(global, command, printer),
        Command::Push(args) => sync::push(global, &args),
        Command::Pull(args) => sync::pull(global, &args),
        Command::Tools(command) => tools::run(global, command, printer),
        Command::Models(command) => models::run(global, command, printer),
        Command::Tune(args) => tune::run(global, &args, printer),
        Command::Monitor(args) => monitor::run(&args),
        Command::Worker(args) => worker::run(global, &args, printer),
        Command::Queue(args) => worker::list(global, &args),
        Command::Db(command) => worker::db(global, &command),
    }
}

pub fn db_path(global: &Global) -> PathBuf {
    global
        .db
        .clone()
        .unwrap_or_else(bakeoff::system::paths::default_db)
}

/// The database, created when missing; an unwritable location is said as such.
pub fn open_store(global: &Global) -> bakeoff::Result<Store> {
    let path = db_path(global);
    Store::open(&path).map_err(|e| bakeoff::system::writable::unwritable_db(&path).unwrap_or(e))
}

/// The database of a command that only reads: never created (`no database at PATH`).
pub fn open_existing_store(global: &Global) -> bakeoff::Result<Store> {
    let path = db_path(global);
    Store::open_existing(&path).map_err(|e| match e {
        bakeoff::Error::Input { .. } => e,
        other => bakeoff::system::writable::unwritable_db(&path).unwrap_or(other),
    })
}

/// A model argument: a path, or a bare file name found in the model cache.
pub fn resolve_model(path: &Path) -> PathBuf {
    bakeoff::model::select::cached(path, &bakeoff::system::paths::models_dir())
}

/// `RUN` or `RUN:SUFFIX` (a config, a candidate); a tag that itself holds `:` still resolves whole.
pub fn resolve_run_and_suffix(store: &Store, text: &str) -> bakeoff::Result<(i64, Option<String>)> {
    let Some((run, suffix)) = text.rsplit_once(':') else {
        return Ok((store.resolve_run(text)?, None));
    };
    let whole = |error| {
        store
            .resolve_run(text)
            .map(|id| (id, None))
            .map_err(|_| error)
    };
    let split = store
        .resolve_run(run)
        .map(|id| (id, Some(suffix.to_string())));
    split.or_else(whole)
}

/// The command line as typed, for the runs table (a database URL's password masked).
pub fn command_line() -> String {
    bakeoff::store::redact(&std::env::args().collect::<Vec<_>>().join(" "))
}
