//! `bakeoff compare A B`: matched cells with ratio, CI, Mann-Whitney U and verdict.

use crate::cli::{CompareArgs, Global};
use bakeoff::analysis::compare;
use bakeoff::report::table;
use std::process::ExitCode;

pub fn run(global: &Global, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let (a, b) = (store.resolve_run(&args.a)?, store.resolve_run(&args.b)?);
    let comparison = compare::compare_strict(&store, a, b)?;
    match args.wants_json() {
        true => println!("{}", serde_json::to_string_pretty(&comparison)?),
        false => print!("{}", table::comparison_markdown(&comparison)),
    }
    Ok(ExitCode::SUCCESS)
}
