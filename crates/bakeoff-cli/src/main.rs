//! The `bakeoff` binary: parse arguments, run one command, print errors with their hints.

// First: its `println!`/`print!` replace std's in every module below (a closed stdout is success).
#[macro_use]
mod printer;
mod cli;
mod cli_tools;
mod cli_values;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::normalize_args(std::env::args()));
    bakeoff::engines::process::install_handlers();
    let outcome = commands::run(cli);
    match (outcome, printer::stdout_error()) {
        (Err(error), _) => report(&error),
        (Ok(_), Some(error)) => {
            report(&anyhow::Error::new(error).context("cannot write to stdout"))
        }
        (Ok(code), None) => code,
    }
}

/// Print an error as one `error:` line (plus an optional `hint:` line) and pick the exit code.
fn report(error: &anyhow::Error) -> ExitCode {
    // A closed stdout (`bakeoff runs list | head`) is not a failure.
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("error: {error}");
    let mut code = 1;
    if let Some(error) = error.downcast_ref::<bakeoff::Error>() {
        if let Some(hint) = error.hint() {
            eprintln!("hint: {hint}");
        }
        code = error.exit_code();
    }
    ExitCode::from(code as u8)
}
