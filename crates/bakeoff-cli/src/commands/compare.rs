//! `bakeoff compare A B`: matched cells with ratio, CI, Mann-Whitney U and verdict.

use crate::cli::{CompareArgs, Global};
use bakeoff::analysis::compare::{self, Comparison};
use bakeoff::report::table;
use std::process::ExitCode;

pub fn run(global: &Global, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let (a, b) = (store.resolve_run(&args.a)?, store.resolve_run(&args.b)?);
    let comparison = compare::compare(&store, a, b)?;
    match args.wants_json() {
        true => println!("{}", serde_json::to_string_pretty(&comparison)?),
        false => print!("{}", table::comparison_markdown(&comparison)),
    }
    warn_if_nothing_matched(&comparison);
    Ok(ExitCode::SUCCESS)
}

fn warn_if_nothing_matched(comparison: &Comparison) {
    if comparison.rows.is_empty() {
        let (a, b) = (comparison.a, comparison.b);
        eprintln!("warning: runs {a} and {b} share no (config, test) cell to compare");
        eprintln!("hint: measure both with the same swept flags and tests (e.g. --engine llama-bench and llama-server with the same -fa/-ctk/-p/-n/-d)");
    }
}
