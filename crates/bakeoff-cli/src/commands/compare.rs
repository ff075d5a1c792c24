//! `bakeoff compare A B`: matched cells with ratio, CI, Mann-Whitney U and verdict; or
//! `bakeoff compare RUN --across build|model`: each build (or model) of one run against a reference.

use crate::cli::{AcrossArg, CompareArgs, Global};
use bakeoff::analysis::compare::{self, Comparison, Dimension};
use bakeoff::report::table;
use bakeoff::store::Store;
use std::process::ExitCode;

pub fn run(global: &Global, args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let comparison = comparison(&store, args)?;
    match args.wants_json() {
        true => println!("{}", serde_json::to_string_pretty(&comparison)?),
        false => print!("{}", table::comparison_markdown(&comparison)),
    }
    Ok(ExitCode::SUCCESS)
}

fn comparison(store: &Store, args: &CompareArgs) -> bakeoff::Result<Comparison> {
    let a = store.resolve_run(&args.a)?;
    if let Some(across) = args.across {
        let dimension = match across {
            AcrossArg::Build => Dimension::Build,
            AcrossArg::Model => Dimension::Model,
        };
        return compare::compare_across(store, a, dimension, args.reference.as_deref());
    }
    let b = store.resolve_run(args.b.as_deref().unwrap_or_default())?;
    compare::compare_strict(store, a, b)
}
