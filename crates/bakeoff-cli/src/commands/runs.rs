//! `bakeoff runs list|show`: what the store holds.

use crate::cli::{Global, RunsCommand};
use bakeoff::measure::shard;
use bakeoff::report::data::EngineInfo;
use bakeoff::store::{LogRow, RunDetail, RunRow, Store, TrialRow};
use std::process::ExitCode;

/// Samples shown per trial; `-o json` shows them all.
const SAMPLES_SHOWN: usize = 12;

pub fn run(global: &Global, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    match command {
        RunsCommand::List {
            host: Some(host),
            output,
            ..
        } if host.is_empty() => hosts(&store, output.wants_json())?,
        RunsCommand::List {
            limit,
            host,
            output,
        } => list(&store, host.as_deref(), limit, output.wants_json())?,
        RunsCommand::Show { run, output } => show(&store, &run, output.wants_json())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn show(store: &Store, run: &str, json: bool) -> anyhow::Result<()> {
    let detail = store.run_detail(store.resolve_run(run)?)?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&detail)?),
        false => print_detail(&detail),
    }
    Ok(())
}

fn list(store: &Store, host: Option<&str>, limit: usize, json: bool) -> anyhow::Result<()> {
    let runs = store.runs_on(host, limit)?;
    let place = store.path().display();
    match (json, runs.is_empty(), host) {
        (true, _, _) => println!("{}", serde_json::to_string_pretty(&runs)?),
        (false, true, None) => eprintln!("no runs stored in {place}"),
        (false, true, Some(host)) => {
            eprintln!("no runs of host '{host}' in {place} (`bakeoff runs list --host` lists the machines)")
        }
        (false, false, _) => print_list(runs, host.is_some()),
    }
    Ok(())
}

/// The runs, newest first; a HOST column where they come from more than one machine (or one was
/// asked for).
fn print_list(runs: Vec<RunRow>, with_host: bool) {
    let with_host = with_host || runs.windows(2).any(|w| w[0].host != w[1].host);
    let width = runs
        .iter()
        .filter_map(|r| r.host.as_ref().map(|h| h.chars().count()))
        .max()
        .unwrap_or(0)
        .max(4);
    let host = |name: &str| match with_host {
        true => format!("{name:<width$} "),
        false => String::new(),
    };
    println!(
        "{:>5}  {:<8} {:<11} {:<24} {}{:>6} {:>8}  {:<10} COMMAND",
        "RUN",
        "KIND",
        "STATUS",
        "STARTED",
        host("HOST"),
        "TRIALS",
        "SAMPLES",
        "TAG"
    );
    for r in runs {
        println!(
            "{:>5}  {:<8} {:<11} {:<24} {}{:>6} {:>8}  {:<10} {}",
            r.id,
            r.kind,
            r.status,
            r.started_at,
            host(r.host.as_deref().unwrap_or("-")),
            r.trials,
            r.samples,
            r.tag.unwrap_or_default(),
            r.command
        );
    }
}

/// `runs list --host`: the machines, each with its number of runs and its newest.
fn hosts(store: &Store, json: bool) -> anyhow::Result<()> {
    let hosts = store.hosts()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
        return Ok(());
    }
    if hosts.is_empty() {
        eprintln!("no runs stored in {}", store.path().display());
        return Ok(());
    }
    let width = hosts
        .iter()
        .map(|h| h.host.chars().count())
        .max()
        .unwrap_or(0);
    let width = width.max(4);
    println!(
        "{:<width$}  {:>5}  {:>6}  NEWEST STARTED",
        "HOST", "RUNS", "NEWEST"
    );
    for h in hosts {
        println!(
            "{:<width$}  {:>5}  {:>6}  {}",
            h.host, h.runs, h.newest_run, h.newest_started_at
        );
    }
    Ok(())
}

fn print_detail(d: &RunDetail) {
    print_run(&d.run);
    print_shard(&d.params);
    d.system.iter().for_each(print_system);
    d.builds.iter().for_each(print_build);
    d.trials.iter().for_each(print_trial);
    d.logs.iter().for_each(print_log);
}

/// `shard    1/2 (2 of the matrix's 4 cells)` for a run of one shard of an experiment.
fn print_shard(params: &serde_json::Value) {
    if let Some((shard, cells)) = shard::recorded(params) {
        let count = shard.count(cells);
        println!("  shard    {shard} ({count} of the matrix's {cells} cells)");
    }
}

fn print_system(system: &serde_json::Value) {
    let cpu = system["cpu_model"].as_str().unwrap_or("?");
    let kernel = system["kernel"].as_str().unwrap_or("?");
    println!(
        "  system   {cpu} / {} cores / kernel {kernel}",
        system["cpu_cores"]
    );
}

fn print_run(r: &RunRow) {
    println!("run {} ({}) {}", r.id, r.kind, r.status);
    println!("  command  {}", r.command);
    println!("  bakeoff  {}", r.bakeoff_version);
    r.host.iter().for_each(|host| println!("  host     {host}"));
    let ended = r.ended_at.as_deref().unwrap_or("-");
    println!("  started  {}  ended {ended}", r.started_at);
    r.tag.iter().for_each(|tag| println!("  tag      {tag}"));
    r.error.iter().for_each(|e| println!("  error    {e}"));
    if let Some(note) = abandoned_note(r) {
        println!("  note     {note}");
    }
}

/// For an abandoned run: whose process is gone, and how to continue it where that exists.
fn abandoned_note(r: &RunRow) -> Option<String> {
    if r.status != "abandoned" {
        return None;
    }
    let pid = r.pid.map_or("?".to_string(), |p| p.to_string());
    let gone = format!("its bakeoff (pid {pid}) is gone without recording the end");
    Some(match r.kind.as_str() {
        "bench" => format!("{gone}; `bakeoff bench --resume {}` continues it", r.id),
        _ => gone,
    })
}

/// A named build: `build    new  0.6.0-dev (build 11434, commit unknown)  CPU  devices: (none)  sha256 1eb6c007e1a7`.
fn print_build(e: &EngineInfo) {
    let name = e.build_name.as_deref().unwrap_or("?");
    let version = e.version.as_deref().unwrap_or("?");
    let build = e.build_number.map_or("?".into(), |b| b.to_string());
    let commit = e.commit.as_deref().unwrap_or("?");
    let list = |items: &[String]| match items.is_empty() {
        true => "(none)".to_string(),
        false => items.join(", "),
    };
    let sha = e.binary_sha256.as_deref().unwrap_or("?");
    println!(
        "  build    {name}  {version} (build {build}, commit {commit})  backends: {}  devices: {}  sha256 {}",
        list(&e.backends),
        list(&e.devices),
        &sha[..sha.len().min(12)]
    );
}

/// A trial and its first samples.
fn print_trial(t: &TrialRow) {
    let flags = t.flags.as_ref().map(|f| f.to_string()).unwrap_or_default();
    println!(
        "  trial {} rep {} [{}] {} {}",
        t.id, t.repetition, t.status, flags, t.workload
    );
    if let Some(note) = &t.note {
        println!("    note: {note}");
    }
    for s in t.samples.iter().take(SAMPLES_SHOWN) {
        println!(
            "    {:<24} {:>12.3} {:<7} ({})",
            s.metric, s.value, s.unit, s.source
        );
    }
    if t.samples.len() > SAMPLES_SHOWN {
        let more = t.samples.len() - SAMPLES_SHOWN;
        println!("    … {more} more samples (-o json shows all)");
    }
    for line in bakeoff::measure::watch::per_gpu_lines(&t.samples) {
        println!("    {line}");
    }
}

fn print_log(log: &LogRow) {
    println!("  engine log {}", log.path);
    for line in log.fatal_lines.as_array().into_iter().flatten() {
        println!(
            "    FATAL line {}: {}",
            line["line"],
            line["text"].as_str().unwrap_or("")
        );
    }
}
