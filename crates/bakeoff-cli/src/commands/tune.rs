//! `bakeoff tune`: merge the command line over the tune file, resolve the models, the build's
//! `--help` and this machine, and print the dry run (space, pruning, planned cost). The search
//! itself is not built yet: without `--dry-run` it says so and exits 2.

use crate::cli::{Global, TuneArgs};
use bakeoff::domain::Combine;
use bakeoff::engines::build::{self, BuildRef};
use bakeoff::measure::experiment::Values;
use bakeoff::model::select::{self, ModelQuery};
use bakeoff::search::settings::{Tune, TuneSettings};
use bakeoff::search::space::Help;
use bakeoff::system::fingerprint::Fingerprint;
use bakeoff::Error;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(global: &Global, args: &TuneArgs) -> anyhow::Result<ExitCode> {
    let tune = settings(args)?.resolve()?;
    if !args.dry_run {
        return Err(not_built().into());
    }
    let models = bakeoff::search::model_inputs(&select::select(&query(&tune))?)?;
    let help = help(global, &tune)?;
    let machine = Fingerprint::collect();
    let budget = bakeoff::report::models::machine_budget();
    let inputs = bakeoff::search::inputs(&tune, help, models, &machine, budget);
    let dry = bakeoff::search::dry_run(&tune, &inputs)?;
    let text = bakeoff::report::tune::render(&dry, args.format.into());
    println!("{}", text.trim_end_matches('\n'));
    Ok(ExitCode::SUCCESS)
}

fn not_built() -> Error {
    Error::input("tune: the search is not built yet; `bakeoff tune --dry-run` shows the space, the pruning and the planned cost")
}

/// The command line over the tune file.
fn settings(args: &TuneArgs) -> anyhow::Result<TuneSettings> {
    let file = match &args.config {
        Some(path) => TuneSettings::read(path)?,
        None => TuneSettings::default(),
    };
    Ok(command_line(args)?.combine(file))
}

fn command_line(args: &TuneArgs) -> bakeoff::Result<TuneSettings> {
    let subject = &args.subject;
    Ok(TuneSettings {
        model: subject.model.clone().map(Values),
        category: subject.category.clone(),
        max_size: subject.max_size.map(|s| Values(s.to_string())),
        catalog: subject.catalog.clone(),
        builds: Some(subject.builds()?).filter(|b| !b.is_empty()),
        ctx: args.ctx,
        parallel: args.parallel,
        goal: args.goal,
        budget: args.budget.clone(),
        max_trials: args.max_trials,
        mem: args.mem.clone().map(Values),
        save: args.save.clone(),
        pin: keyed("--pin", &args.pin)?,
        only: keyed("--only", &args.only)?,
        extend: keyed("--extend", &args.extend)?,
    })
}

/// `KNOB=VALUES` entries as the tune file's tables hold them.
fn keyed(option: &str, entries: &[String]) -> bakeoff::Result<Vec<(String, Values)>> {
    let shape = "KNOB=VALUE[,VALUE...]";
    entries
        .iter()
        .map(|entry| Values::keyed(option, entry, shape))
        .collect()
}

fn query(tune: &Tune) -> ModelQuery {
    ModelQuery {
        spec: tune.model.clone(),
        category: tune.category.clone(),
        max_size: tune.max_size,
        catalog: tune.catalog.clone(),
        models_dir: Some(bakeoff::system::paths::models_dir()),
    }
}

/// The `--help` of the one build tuned: `--build`, else the llama-server discovery finds.
fn help(global: &Global, tune: &Tune) -> anyhow::Result<Help> {
    let binary = match tune.builds.as_slice() {
        [] => discovered(global)?,
        [build] => build.tool("llama-server")?,
        more => return Err(one_build(more).into()),
    };
    let text = build::help_text(&binary)?;
    Ok(Help::parse(&text, &binary.display().to_string())?)
}

fn discovered(global: &Global) -> bakeoff::Result<PathBuf> {
    let explicit = global.engine_path.as_deref();
    Ok(bakeoff::engines::discovery::find_tool(explicit, "llama-server")?.1)
}

fn one_build(builds: &[BuildRef]) -> Error {
    let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
    Error::input(format!(
        "tune takes one --build for now, got {}",
        names.join(", ")
    ))
}
