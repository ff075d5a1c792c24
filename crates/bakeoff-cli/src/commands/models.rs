//! `bakeoff models list`: resolve the selection (catalog entries by default), read each model and
//! its cached sha256, and print the listing table.

use crate::cli::{Global, ModelsCommand, ModelsListArgs};
use bakeoff::model::select::{self, ModelQuery};
use bakeoff::report::models;
use bakeoff::report::table::Format;
use bakeoff::Error;
use std::process::ExitCode;

pub fn run(global: &Global, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List(args) => list(global, &args),
    }
}

fn list(global: &Global, args: &ModelsListArgs) -> anyhow::Result<ExitCode> {
    if !args.subject.builds.is_empty() {
        return Err(Error::input("models list lists models: it takes no --build").into());
    }
    let selected = select::select(&query(args))?;
    let store = super::open_store(global)?;
    let listings = models::listings(&selected, &store, args.ctx);
    let table = models::table(&listings, args.ctx, models::machine_budget());
    let text = table.render(Format::from(args.format));
    println!("{}", text.trim_end_matches('\n'));
    Ok(ExitCode::SUCCESS)
}

/// With no -m, every catalog entry (the default catalog when --catalog is not given either).
fn query(args: &ModelsListArgs) -> ModelQuery {
    let mut query = args.subject.query();
    if query.spec.is_none() && query.catalog.is_none() {
        query.catalog = Some(bakeoff::model::catalog::default_path());
    }
    query
}
