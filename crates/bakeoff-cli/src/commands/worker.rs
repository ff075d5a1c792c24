//! `bakeoff worker` (run a team store's queued items on this host), `bakeoff queue` (list them),
//! and `--queue` (enqueue a measuring command instead of running it).

use crate::cli::{DbCommand, Global, QueueArgs, QueueListArgs, WorkerArgs};
use crate::printer::Printer;
use bakeoff::engines::build::BuildRef;
use bakeoff::session::queue::{self, Request, Worker, WorkerConfig, WorkerEvent};
use bakeoff::store::queue::QueueMode;
use bakeoff::store::{Location, Store};
use bakeoff::Error;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(global: &Global, args: &WorkerArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let location = Location::parse(&super::db_path(global))?;
    let host = args
        .host
        .clone()
        .or_else(bakeoff::store::own_host)
        .unwrap_or_else(|| "localhost".into());
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{host}:{}", std::process::id()));
    if !(args.lease.is_finite() && args.lease >= 1.0) {
        return Err(Error::input(format!("--lease {}: at least 1 second", args.lease)).into());
    }
    let log_dir = location.runs_dir().join("worker").join(sanitize(&name));
    let config = WorkerConfig {
        name: name.clone(),
        host: host.clone(),
        tags: args.host_tags.clone(),
        lease_s: args.lease,
        poll: args.poll,
        max_items: args.once.then_some(1),
        idle_exit: args.idle_exit,
        model_dirs: args.model_dirs.clone(),
        engine_path: global.engine_path.clone(),
        log_dir,
        exe: std::env::current_exe().map_err(|e| Error::io(PathBuf::from("bakeoff"), e))?,
    };
    let mut worker = Worker::new(config, location.clone())?;
    let mut builds: Vec<&String> = worker.builds().keys().collect();
    builds.sort();
    let builds = match builds.is_empty() {
        true => "no llama.cpp build".to_string(),
        false => format!(
            "llama.cpp {}",
            builds.into_iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    printer.status(format!(
        "worker {name} on host {host} ({builds}) taking items from {}{}",
        location.display(),
        tags_note(&args.host_tags)
    ));
    let json = args.json;
    let summary = worker.run(|event| report(&event, json, printer))?;
    let line = format!(
        "worker {name}: {} done, {} failed, {} already done, {} lost to another worker",
        summary.done, summary.failed, summary.already_done, summary.lease_lost
    );
    if json {
        println!(
            "{}",
            serde_json::json!({ "event": "summary", "worker": name, "summary": summary })
        );
    } else {
        printer.status(line);
    }
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn tags_note(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(" (host tags {})", tags.join(", "))
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn report(event: &WorkerEvent, json: bool, printer: Printer) {
    if json {
        let value = match event {
            WorkerEvent::Claimed(c) => serde_json::json!({ "event": "claimed", "claim": c }),
            WorkerEvent::AlreadyDone { item, run_uuid } => {
                serde_json::json!({ "event": "already_done", "item": item, "run_uuid": run_uuid })
            }
            WorkerEvent::Done { item, run_uuid } => {
                serde_json::json!({ "event": "done", "item": item, "run_uuid": run_uuid })
            }
            WorkerEvent::Failed { item, error, log } => {
                serde_json::json!({ "event": "failed", "item": item, "error": error, "log": log })
            }
            WorkerEvent::LeaseLost { item } => {
                serde_json::json!({ "event": "lease_lost", "item": item })
            }
            WorkerEvent::Missing(need) => {
                serde_json::json!({ "event": "missing_model", "model": need })
            }
            WorkerEvent::MissingBuild(need) => {
                serde_json::json!({ "event": "missing_build", "build": need })
            }
        };
        println!("{value}");
        return;
    }
    match event {
        WorkerEvent::Claimed(c) => {
            let shard = if c.shards > 1 {
                format!(" shard {}/{}", c.shard_k, c.shards)
            } else {
                String::new()
            };
            let uuid: String = c.experiment_uuid.chars().take(8).collect();
            printer.status(format!(
                "item {}: {}{shard} of experiment {uuid} ({}, attempt {})",
                c.item, c.kind, c.mode, c.attempts
            ));
        }
        WorkerEvent::AlreadyDone { item, run_uuid } => printer.status(format!(
            "item {item}: its run {run_uuid} was already committed; marked done without measuring again"
        )),
        WorkerEvent::Done { item, run_uuid } => printer.status(format!(
            "item {item}: done (run {})",
            run_uuid.unwrap_or("?")
        )),
        WorkerEvent::Failed { item, error, log } => printer.warn(format!(
            "item {item} failed: {error} (log {})",
            log.display()
        )),
        WorkerEvent::LeaseLost { item } => printer.warn(format!(
            "item {item}: the lease ran out and another worker holds it; stopped measuring it"
        )),
        WorkerEvent::Missing(need) => printer.status(format!(
            "not taking experiments that need {} (sha256 {}…): no such file here",
            need.name,
            &need.sha256[..need.sha256.len().min(12)]
        )),
        WorkerEvent::MissingBuild(need) => printer.status(format!(
            "not taking experiments that run on llama.cpp {}{}: no such build here (cache, PATH, --engine-path)",
            need.build,
            match need.name.is_empty() {
                true => String::new(),
                false => format!(" (--build {})", need.name),
            }
        )),
    }
}

/// `bakeoff queue`: every item and where it stands.
pub fn list(global: &Global, args: &QueueListArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let items = store.queue_items()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    if items.is_empty() {
        eprintln!("the queue of {} is empty", store.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<8}  {:<6}  {:<6}  {:<10}  {:<8}  {:<16}  {:>3}  RUN",
        "ITEM", "EXPERIM.", "KIND", "MODE", "HOST", "SHARD", "STATUS", "TRY"
    );
    for item in items {
        let uuid: String = item.experiment_uuid.chars().take(8).collect();
        let host = item.host.clone().unwrap_or_else(|| "-".into());
        let run: String = item
            .run_uuid
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(12)
            .collect();
        println!(
            "{:>5}  {:<8}  {:<6}  {:<6}  {:<10}  {:<8}  {:<16}  {:>3}  {run}",
            item.item, uuid, item.kind, item.mode, host, item.shard, item.status, item.attempts
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bakeoff db status|migrate`.
pub fn db(global: &Global, command: &DbCommand) -> anyhow::Result<ExitCode> {
    let location = Location::parse(&super::db_path(global))?;
    match command {
        DbCommand::Status => {
            let store = Store::open_unchecked(&location)?;
            let version = store.schema_version()?;
            let wanted = Store::current_schema_version();
            let backend = if location.is_postgres() {
                "PostgreSQL"
            } else {
                "SQLite"
            };
            let state = match version.cmp(&wanted) {
                std::cmp::Ordering::Equal => "current".to_string(),
                std::cmp::Ordering::Less => {
                    format!("older than this bakeoff's {wanted}: `bakeoff db migrate` upgrades it")
                }
                std::cmp::Ordering::Greater => {
                    format!("newer than this bakeoff's {wanted}: upgrade bakeoff")
                }
            };
            println!(
                "{} ({backend}): schema version {version}, {state}",
                location.display()
            );
        }
        DbCommand::Migrate => {
            let store = Store::open_unchecked(&location)?;
            let (before, after) = store.migrate_to_current()?;
            if before == after {
                println!(
                    "{}: schema version {after}, already current",
                    location.display()
                );
            } else {
                println!("{}: schema version {before} → {after}", location.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a command puts on the queue with `--queue`.
pub struct Queued<'a> {
    pub kind: &'a str,
    /// The experiment's cells (a split makes one item per cell).
    pub cells: usize,
    pub tag: Option<&'a str>,
    pub models: &'a [PathBuf],
    /// The `--build`s it sweeps (none: the default engine), or `None` for a command that starts
    /// no llama.cpp engine (a load test of a running server).
    pub builds: Option<&'a [BuildRef]>,
    /// The files it names besides models (experiment, candidates, dataset, suite, catalog),
    /// shipped with it.
    pub files: Vec<PathBuf>,
}

/// The files among a command's optional paths that it was given ([`Queued::files`]).
pub fn named_files(paths: &[&Option<PathBuf>]) -> Vec<PathBuf> {
    paths.iter().copied().flatten().cloned().collect()
}

/// `--queue`: put this command on the team store's queue instead of running it.
pub fn enqueue(
    global: &Global,
    args: &QueueArgs,
    queued: Queued,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    let Queued {
        kind,
        cells,
        tag,
        models,
        builds,
        files,
    } = queued;
    let builds = match builds {
        // The default engine, left to each worker.
        Some([]) if args.any_build => Vec::new(),
        Some(builds) => queue::build_needs(global.engine_path.as_deref(), builds)?,
        None => Vec::new(),
    };
    let store = super::open_store(global)?;
    let mode = if args.each {
        QueueMode::Each
    } else {
        QueueMode::Split
    };
    let request = Request {
        kind,
        mode,
        argv: queued_argv(std::env::args().skip(1)),
        cells,
        host_tag: args.host_tag.as_deref(),
        tag,
        models,
        builds,
        files,
    };
    let enqueued = queue::enqueue(&store, &request)?;
    let what = match mode {
        QueueMode::Split if enqueued.items > 1 => {
            format!(
                "{} items, one per cell, split across the workers",
                enqueued.items
            )
        }
        QueueMode::Split => "1 item".to_string(),
        QueueMode::Each => "the whole experiment for every host whose worker takes it".into(),
    };
    printer.status(format!(
        "enqueued {kind} experiment {} in {}: {what}; start `bakeoff worker --db {}` on each host",
        enqueued.uuid,
        store.path().display(),
        store.path().display()
    ));
    println!("{}", enqueued.uuid);
    Ok(ExitCode::SUCCESS)
}

/// The command's arguments as a worker should run them: without `--queue`, `--each`,
/// `--host-tag` and `--db` (the worker gives its own store).
fn queued_argv(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.as_str() {
            "--queue" | "--each" | "--any-build" => {}
            "--host-tag" | "--db" => skip_value = true,
            a if a.starts_with("--host-tag=") || a.starts_with("--db=") => {}
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queued_command_drops_the_queue_options_and_the_store() {
        let argv = "bench --db postgres://a:b@h/d -m m.gguf --queue --each --any-build --host-tag gpu --kv f16,q8_0 --db=x -- -c 512";
        let kept = queued_argv(argv.split(' ').map(String::from));
        assert_eq!(kept.join(" "), "bench -m m.gguf --kv f16,q8_0 -- -c 512");
    }
}
