//! `bakeoff compare A B`: matched cells with ratio, CI, Mann-Whitney U and verdict.

use crate::cli::{CompareArgs, Global};
use bakeoff::measure::compare;
use bakeoff::report::table;
use std::process::ExitCode;

pub fn run(global: &Global, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let (a, b) = (store.resolve_run(&args.a)?, store.resolve_run(&args.b)?);
    let comparison = compare::compare(&store, a, b)?;
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&comparison)?),
        false => print!("{}", table::comparison_markdown(&comparison)),
    }
    if comparison.rows.is_empty() {
        eprintln!("warning: runs {a} and {b} share no (config, test) cell to compare");
    }
    Ok(ExitCode::SUCCESS)
}
