//! `bakeoff compare A B`: matched cells with ratio, CI, Mann-Whitney U and verdict.

use crate::cli::{CompareArgs, Global};
use bakeoff::analysis::compare;
use bakeoff::report::table;
use std::process::ExitCode;

pub fn run(global: &Global, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let (a, b) = (store.resolve_run(&args.a)?, store.resolve_run(&args.b)?);
    let comparison = compare::compare(&store, a, b)?;
    if args.wants_json() {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", table::comparison_markdown(&comparison));
    }
    if comparison.rows.is_empty() {
        eprintln!("warning: runs {a} and {b} share no (config, test) cell to compare");
        eprintln!("hint: measure both with the same swept flags and tests (e.g. --engine llama-bench and llama-server with the same -fa/-ctk/-p/-n/-d)");
    }
    Ok(ExitCode::SUCCESS)
}
