//! `bakeoff serve`: launch llama-server under supervision (or attach to a running server) and keep
//! it up until Ctrl-C, reporting fatal engine log lines. Saved profiles go through `serve_profile`.

use crate::cli::{Global, ServeArgs};
use crate::printer::Printer;
use bakeoff::engines::attach::{self, Detected};
use bakeoff::engines::llama_server::LlamaServer;
use bakeoff::engines::process;
use bakeoff::session::{Engine, Launch, RunSpec, Session};
use bakeoff::store::Store;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(global: &Global, args: &ServeArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.url {
        return attach_only(url, args.json);
    }
    if let Some(name) = &args.profile {
        return super::serve_profile::run(global, args, name, printer);
    }
    let model = super::resolve_model(args.model.as_deref().unwrap_or(Path::new("")));
    bakeoff::model::check_file(&model)?;
    let store = super::open_store(global)?;
    let engine = Engine::find(Some(&store), global.engine_path.as_deref(), "llama-server")?;
    let (mut session, launch) = begin(store, args, engine, &model)?;
    let log_path = launch.log_path.clone();
    announce(&launch, printer);
    let started = launch.start(Some(&session));
    let mut target = session.guard(started)?;
    // Up and healthy: from here on the server is what others measure, so the lock is theirs.
    session.release_lock();
    let server = target
        .server
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no engine"))?;
    print_ready(server, session.run_id(), &log_path, args.json);
    keep_serving(&mut session, &log_path, server, printer)
}

fn announce(launch: &Launch, printer: Printer) {
    let (label, log) = (launch.engine.label(), launch.log_path.display());
    let model = launch.model.display();
    printer.status(format!("starting {label} on {model} (log: {log})"));
}

/// The `serve` run and its launch. It holds the machine-wide lock while the engine loads and
/// passes its health check (loading a model would disturb another command's figures, and a
/// running measurement would slow the start), and lets go once the server is ready, so that
/// measuring commands (`bench`, `load --url`, `gate`) can measure the server it keeps up.
fn begin(
    store: Store,
    args: &ServeArgs,
    engine: Engine,
    model: &Path,
) -> bakeoff::Result<(Session, Launch)> {
    let model_row = store.model(model)?;
    let params = json!({ "model": model_row.path, "model_sha256": model_row.sha256, "engine_id": engine.engine_id, "engine_args": args.engine_args });
    let command = super::command_line();
    let run = RunSpec::new("serve", &command, args.tag.as_deref(), params);
    let session = Session::begin(store, run)?;
    let launch = Launch::new(engine, model, Some(model_row), &session.run_dir());
    Ok((session, with_serve_args(launch, args)))
}

/// Host, port, flags and health timeout from the command line.
fn with_serve_args(mut launch: Launch, args: &ServeArgs) -> Launch {
    launch.host = args.host.clone();
    launch.port = args.port;
    launch.args = args.engine_args.clone();
    launch.health_timeout = Duration::from_secs(args.health_timeout);
    launch
}

fn print_ready(server: &LlamaServer, run_id: i64, log_path: &Path, as_json: bool) {
    let (url, pid) = (&server.url, server.pid());
    let ready = json!({ "ready": true, "url": url, "pid": pid, "log": log_path, "run": run_id });
    if as_json {
        println!("{ready}");
    } else {
        let log = log_path.display();
        println!("ready {url} pid={pid} run={run_id} log={log}");
    }
}

/// After the ready line: supervise until Ctrl-C or the engine's own exit, and record the end.
pub(super) fn keep_serving(
    session: &mut Session,
    log_path: &Path,
    server: &mut LlamaServer,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    inject_fault_for_tests()?;
    let outcome = supervise(server);
    let run_id = session.run_id();
    session.store().engine_log(run_id, None, log_path)?;
    let Outcome::Exited(message) = outcome else {
        server.stop();
        let code = session.finish(&Ok::<(), String>(()))?;
        printer.status("stopped");
        return Ok(ExitCode::from(code));
    };
    session.finish(&Err::<(), _>(&message))?;
    let hint = format!("full engine log: {}", log_path.display());
    Err(bakeoff::Error::engine(message).with_hint(hint).into())
}

enum Outcome {
    Interrupted,
    Exited(String),
}

/// Wait until we are interrupted or the engine exits on its own.
fn supervise(server: &mut LlamaServer) -> Outcome {
    while process::interrupted().is_none() {
        if let Some(status) = server.exited() {
            return Outcome::Exited(exit_message(server, status));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Outcome::Interrupted
}

/// `llama-server exited unexpectedly (STATUS): first fatal log line`.
fn exit_message(server: &LlamaServer, status: std::process::ExitStatus) -> String {
    let fatal = server.fatal_lines();
    let reason = fatal.first().map(|f| format!(": {}", f.text));
    let reason = reason.unwrap_or_default();
    format!("llama-server exited unexpectedly ({status}){reason}")
}

/// Test hook: `BAKEOFF_FAULT=panic-after-ready|error-after-ready` lets the integration tests prove
/// that no engine outlives bakeoff when it panics or fails after starting one. Compiled only into
/// builds with debug assertions (what `cargo test` runs); release builds carry no fault switch.
#[cfg(not(debug_assertions))]
fn inject_fault_for_tests() -> anyhow::Result<()> {
    Ok(())
}

#[cfg(debug_assertions)]
fn inject_fault_for_tests() -> anyhow::Result<()> {
    match std::env::var("BAKEOFF_FAULT").as_deref() {
        Ok("panic-after-ready") => panic!("injected fault (BAKEOFF_FAULT=panic-after-ready)"),
        Ok("error-after-ready") => {
            anyhow::bail!("injected fault (BAKEOFF_FAULT=error-after-ready)")
        }
        _ => Ok(()),
    }
}

fn attach_only(url: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let detected = attach::detect(url)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&detected)?);
    } else {
        println!("{}", attached_line(&detected));
    }
    Ok(ExitCode::SUCCESS)
}

fn attached_line(detected: &Detected) -> String {
    let models = match detected.models.is_empty() {
        true => "none listed".to_string(),
        false => detected.models.join(", "),
    };
    let (kind, url) = (detected.kind.as_str(), &detected.url);
    let version = detected.version.as_deref().unwrap_or("?");
    format!("attached {kind} at {url} (version {version}); models: {models}; bakeoff does not manage it")
}
