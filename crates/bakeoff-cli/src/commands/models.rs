//! `bakeoff models list`: resolve the selection (catalog entries by default), read each model and
//! its cached sha256, and print the listing table.

use crate::cli::{Global, ModelsCommand, ModelsListArgs};
use crate::printer::Printer;
use bakeoff::model::select::{self, ModelQuery};
use bakeoff::report::models;
use bakeoff::report::table::Format;
use bakeoff::Error;
use std::process::ExitCode;

pub fn run(global: &Global, command: ModelsCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List(args) => list(global, &args, printer),
    }
}

fn list(global: &Global, args: &ModelsListArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    if !args.subject.builds.is_empty() {
        return Err(Error::input("models list lists models: it takes no --build").into());
    }
    let selected = select::select(&query(args, printer))?;
    let store = super::open_store(global)?;
    let listings = models::listings(&selected, &store, args.ctx);
    let table = models::table(&listings, args.ctx, models::machine_budget());
    let text = table.render(Format::from(args.format));
    println!("{}", text.trim_end_matches('\n'));
    Ok(ExitCode::SUCCESS)
}

/// With no -m, every catalog entry (the default catalog when --catalog is not given either); with
/// no catalog at all, the models in the model cache, said so on stderr.
fn query(args: &ModelsListArgs, printer: Printer) -> ModelQuery {
    let mut query = args.subject.query();
    if query.spec.is_some() || query.catalog.is_some() {
        return query;
    }
    let catalog = bakeoff::model::catalog::default_path();
    if catalog.is_file() || query.category.is_some() {
        query.catalog = Some(catalog);
        return query;
    }
    let cache = bakeoff::system::paths::models_dir();
    let (catalog, dir) = (catalog.display(), cache.display());
    printer.status(format!(
        "no model catalog at {catalog} (see examples/models.toml): listing the model cache {dir}"
    ));
    query.spec = Some(cache.display().to_string());
    query
}
