//! `bakeoff push` and `bakeoff pull`: copy runs between this host's store and a team's. The
//! library (`store::sync`) does the copying; this opens the two stores, resolves the runs in the
//! source and prints one line per run, entry and profile, then a summary.

use crate::cli::{Global, PullArgs, PushArgs, SyncArgs};
use bakeoff::store::sync::{self, Difference, Outcome, SyncReport};
use bakeoff::store::Store;
use std::process::ExitCode;

/// Which way the runs go, for the words of the output: `here` is always this host's store.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Push,
    Pull,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }

    /// What the destination's ids are called.
    fn there(self) -> &'static str {
        match self {
            Direction::Push => "team",
            Direction::Pull => "local",
        }
    }

    /// A difference as `FIELD A here, B there`.
    fn difference(self, d: &Difference) -> String {
        let (here, there) = match self {
            Direction::Push => (&d.source, &d.destination),
            Direction::Pull => (&d.destination, &d.source),
        };
        format!("{} {here} here, {there} there", d.field)
    }
}

pub fn push(global: &Global, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let source = super::open_existing_store(global)?;
    let destination = Store::open(&args.to)?;
    transfer(&source, &destination, &args.sync, Direction::Push)
}

pub fn pull(global: &Global, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let source = Store::open_existing(&args.from)?;
    let destination = super::open_store(global)?;
    transfer(&source, &destination, &args.sync, Direction::Pull)
}

fn transfer(
    source: &Store,
    destination: &Store,
    args: &SyncArgs,
    direction: Direction,
) -> anyhow::Result<ExitCode> {
    let runs = match args.runs.is_empty() {
        true => source.run_ids()?,
        false => args
            .runs
            .iter()
            .map(|r| source.resolve_run(r))
            .collect::<bakeoff::Result<_>>()?,
    };
    let report = match args.dry_run {
        true => sync::plan_runs(source, destination, &runs)?,
        false => sync::copy_runs(source, destination, &runs)?,
    };
    match args.output.wants_json() {
        true => print_json(source, destination, args.dry_run, &report, direction)?,
        false => print_text(destination, args.dry_run, &report, direction),
    }
    let conflicts = report.conflicts();
    if conflicts == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let noun = if conflicts == 1 {
        "conflict"
    } else {
        "conflicts"
    };
    eprintln!(
        "error: {conflicts} {noun} with {}: nothing was overwritten",
        destination.path().display()
    );
    eprintln!("hint: compare with `bakeoff runs show RUN` against each store; the stored copy stays as it is until someone resolves it by hand");
    Ok(ExitCode::from(1))
}

fn print_json(
    source: &Store,
    destination: &Store,
    dry_run: bool,
    report: &SyncReport,
    direction: Direction,
) -> anyhow::Result<()> {
    let json = serde_json::json!({
        "direction": direction.verb(),
        "source": source.path().display().to_string(),
        "destination": destination.path().display().to_string(),
        "dry_run": dry_run,
        "runs": report.runs,
        "journal": report.journal,
        "profiles": report.profiles,
        "conflicts": report.conflicts(),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn print_text(destination: &Store, dry_run: bool, report: &SyncReport, direction: Direction) {
    for run in &report.runs {
        let uuid = short_uuid(run.uuid.as_deref());
        let what = outcome(&run.outcome, direction, "run");
        println!("run {} (uuid {uuid}) {what}", run.source_id);
    }
    for entry in &report.journal {
        let uuid = short_uuid(entry.uuid.as_deref());
        let what = outcome(&entry.outcome, direction, "entry");
        println!("journal entry {} (uuid {uuid}) {what}", entry.source_id);
    }
    for profile in &report.profiles {
        let what = outcome(&profile.outcome, direction, "profile");
        println!("profile {} {what}", profile.name);
    }
    let mood = if dry_run { "dry run, would " } else { "" };
    println!(
        "{mood}{} {} {}: {}",
        direction.verb(),
        if direction == Direction::Push {
            "to"
        } else {
            "into"
        },
        destination.path().display(),
        summary(report)
    );
}

/// `→ team run 17`, `unchanged (team run 17)`, `conflict: status ok here, interrupted there`.
fn outcome(outcome: &Outcome, direction: Direction, noun: &str) -> String {
    let there = direction.there();
    match outcome {
        Outcome::Copied { id: Some(id) } => format!("→ {there} {noun} {id}"),
        Outcome::Copied { id: None } => "→ would copy".into(),
        Outcome::Unchanged { id } => format!("unchanged ({there} {noun} {id})"),
        Outcome::Conflict { id, differences } => {
            let what: Vec<String> = differences
                .iter()
                .map(|d| direction.difference(d))
                .collect();
            format!("conflict: {} ({there} {noun} {id})", what.join("; "))
        }
        Outcome::Skipped { reason } => format!("skipped: {reason}"),
    }
}

/// `runs: 2 copied, 1 unchanged; journal: 1 copied; profiles: nothing`.
fn summary(report: &SyncReport) -> String {
    let runs = tally(report.runs.iter().map(|r| &r.outcome));
    let journal = tally(report.journal.iter().map(|e| &e.outcome));
    let profiles = tally(report.profiles.iter().map(|p| &p.outcome));
    format!("runs: {runs}; journal: {journal}; profiles: {profiles}")
}

fn tally<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> String {
    let mut counts = [0usize; 4];
    for outcome in outcomes {
        let slot = match outcome {
            Outcome::Copied { .. } => 0,
            Outcome::Unchanged { .. } => 1,
            Outcome::Conflict { .. } => 2,
            Outcome::Skipped { .. } => 3,
        };
        counts[slot] += 1;
    }
    let names = ["copied", "unchanged", "conflicting", "skipped"];
    let parts: Vec<String> = counts
        .iter()
        .zip(names)
        .filter(|(n, _)| **n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    match parts.is_empty() {
        true => "none".into(),
        false => parts.join(", "),
    }
}

/// The first 8 hex digits of a uuid, enough to tell runs apart on a screen.
fn short_uuid(uuid: Option<&str>) -> String {
    match uuid {
        Some(uuid) if uuid.chars().count() > 8 => {
            format!("{}…", uuid.chars().take(8).collect::<String>())
        }
        Some(uuid) => uuid.to_string(),
        None => "none".into(),
    }
}
