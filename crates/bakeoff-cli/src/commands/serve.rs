//! `bakeoff serve`: launch llama-server under supervision (or attach to a running server) and keep
//! it up until Ctrl-C, reporting fatal engine log lines. Saved profiles go through `serve_profile`.

use crate::cli::{Global, ServeArgs};
use crate::printer::Printer;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::engines::{attach, discovery, process};
use bakeoff::store::Store;
use bakeoff::system::{paths, Fingerprint};
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
    let model = super::resolve_model(args.model.as_deref().unwrap_or(std::path::Path::new("")));
    if !model.is_file() {
        return Err(bakeoff::Error::input(format!("model file not found: {}", model.display()))
            .with_hint("`bakeoff doctor` lists installed models; scripts/setup installs two small ones")
            .into());
    }
    let (install, binary) = discovery::find_tool(global.engine_path.as_deref(), "llama-server")?;
    let store = super::open_store(global)?;
    let model_row = store.model(&model)?;
    let engine_id = store.engine_id(
        "llama-server",
        &binary.display().to_string(),
        Some(&install),
        None,
    )?;
    let system_id = store.system_id(&Fingerprint::collect())?;
    let params = json!({ "model": model_row.path, "model_sha256": model_row.sha256, "engine_id": engine_id, "engine_args": args.engine_args });
    let run_id = store.begin_run(
        "serve",
        &super::command_line(),
        system_id,
        args.tag.as_deref(),
        &params,
    )?;
    let log_path = paths::run_dir(store.path(), run_id).join("llama-server.log");
    printer.status(format!(
        "starting {} on {} (log: {})",
        install.label(),
        model.display(),
        log_path.display()
    ));

    let spec = ServerSpec {
        binary,
        model,
        host: args.host.clone(),
        port: args.port,
        args: args.engine_args.clone(),
        health_timeout: Duration::from_secs(args.health_timeout),
        log_path: log_path.clone(),
    };
    let mut server = match LlamaServer::launch(spec) {
        Ok(server) => server,
        Err(error) => {
            store.engine_log(run_id, None, &log_path)?;
            store.end_run(run_id, "failed", Some(&error.to_string()))?;
            return Err(error.into());
        }
    };
    if args.json {
        println!(
            "{}",
            json!({ "ready": true, "url": server.url, "pid": server.pid(), "log": log_path, "run": run_id })
        );
    } else {
        println!(
            "ready {} pid={} run={} log={}",
            server.url,
            server.pid(),
            run_id,
            log_path.display()
        );
    }
    keep_serving(&store, run_id, &log_path, &mut server, printer)
}

/// After the ready line: supervise until Ctrl-C or the engine's own exit, and record the end.
pub(super) fn keep_serving(
    store: &Store,
    run_id: i64,
    log_path: &Path,
    server: &mut LlamaServer,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    inject_fault_for_tests()?;
    let outcome = supervise(server);
    store.engine_log(run_id, None, log_path)?;
    match outcome {
        Outcome::Interrupted(signal) => {
            server.stop();
            store.end_run(run_id, "interrupted", None)?;
            printer.status("stopped");
            Ok(ExitCode::from((128 + signal) as u8))
        }
        Outcome::Exited(message) => {
            store.end_run(run_id, "failed", Some(&message))?;
            Err(bakeoff::Error::engine(message)
                .with_hint(format!("full engine log: {}", log_path.display()))
                .into())
        }
    }
}

enum Outcome {
    Interrupted(i32),
    Exited(String),
}

/// Wait until we are interrupted or the engine exits on its own.
fn supervise(server: &mut LlamaServer) -> Outcome {
    loop {
        if let Some(signal) = process::interrupted() {
            return Outcome::Interrupted(signal);
        }
        if let Some(status) = server.exited() {
            let reason = server
                .fatal_lines()
                .first()
                .map(|f| format!(": {}", f.text))
                .unwrap_or_default();
            return Outcome::Exited(format!(
                "llama-server exited unexpectedly ({status}){reason}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
        println!(
            "attached {} at {} (version {}); models: {}; bakeoff does not manage it",
            detected.kind.as_str(),
            detected.url,
            detected.version.as_deref().unwrap_or("?"),
            if detected.models.is_empty() {
                "none listed".to_string()
            } else {
                detected.models.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
