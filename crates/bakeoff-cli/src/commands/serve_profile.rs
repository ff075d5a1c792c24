//! `bakeoff serve PROFILE [--fallback PROFILE]`: start a saved profile supervised, report it ready
//! only after its readiness gate passes, and start the fallback profile when it does not. Each
//! start is its own `serve` run; its readiness checks are stored with it.

use crate::cli::{Global, ServeArgs};
use crate::printer::Printer;
use bakeoff::engines::discovery;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::serve::readiness::{Gate, GateReport};
use bakeoff::store::{Profile, Store};
use bakeoff::system::{paths, Fingerprint};
use bakeoff::Error;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A profile that passed its gate and is serving.
struct Serving {
    server: LlamaServer,
    run_id: i64,
    log_path: PathBuf,
    report: GateReport,
}

pub fn run(
    global: &Global,
    args: &ServeArgs,
    name: &str,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let candidate = store.profile(name)?;
    let fallback = match args.fallback.as_deref().or(candidate.fallback.as_deref()) {
        Some(other) if other == name => {
            return Err(Error::input(format!("profile '{name}' cannot be its own fallback")).into())
        }
        Some(other) => Some(store.profile(other)?),
        None => None,
    };
    let gate = Gate::standard();
    let (profile, mut serving) = match attempt(
        global, &store, &candidate, None, args, &gate, printer,
    )? {
        Ok(serving) => (&candidate, serving),
        Err(failure) => {
            let Some(fallback) = &fallback else {
                return Err(Error::engine(format!("profile '{name}' failed readiness: {failure}"))
                    .with_hint("save a fallback with `profile save ... --fallback OTHER`, or pass --fallback OTHER")
                    .into());
            };
            printer.warn(format!(
                "profile '{name}' failed readiness ({failure}); starting fallback profile '{}'",
                fallback.name
            ));
            match attempt(global, &store, fallback, Some(name), args, &gate, printer)? {
                Ok(serving) => {
                    printer.warn(format!(
                        "serving fallback profile '{}' in place of '{name}'",
                        fallback.name
                    ));
                    (fallback, serving)
                }
                Err(second) => {
                    return Err(Error::engine(format!(
                        "profile '{name}' failed readiness ({failure}), and so did its fallback '{}' ({second})",
                        fallback.name
                    ))
                    .into())
                }
            }
        }
    };
    print_ready(
        &serving,
        profile,
        (profile.name != name).then_some(name),
        args.json,
    );
    super::serve::keep_serving(
        &store,
        serving.run_id,
        &serving.log_path,
        &mut serving.server,
        printer,
    )
}

/// Start `profile` as its own run and gate it. `Ok(Err(line))`: it failed readiness (stopped,
/// recorded); `Err`: bakeoff itself could not proceed (no engine, database error).
fn attempt(
    global: &Global,
    store: &Store,
    profile: &Profile,
    fallback_for: Option<&str>,
    args: &ServeArgs,
    gate: &Gate,
    printer: Printer,
) -> anyhow::Result<Result<Serving, String>> {
    let binary = super::profile::engine_binary(global, profile, printer)?;
    let (install, _) = discovery::find_tool(Some(&binary), "llama-server")?;
    let engine_id = store.engine_id(
        "llama-server",
        &binary.display().to_string(),
        Some(&install),
        None,
    )?;
    let mut flags = profile.flags.clone();
    flags.extend(args.engine_args.iter().cloned());
    let params = json!({
        "profile": profile.name, "role": if fallback_for.is_some() { "fallback" } else { "candidate" },
        "fallback_for": fallback_for, "profile_run": profile.run_id, "profile_config": profile.config_id,
        "model": profile.model_path, "model_sha256": profile.model_sha256, "engine_id": engine_id,
        "engine_args": flags, "readiness": gate.names(),
    });
    let system_id = store.system_id(&Fingerprint::collect())?;
    let run_id = store.begin_run(
        "serve",
        &super::command_line(),
        system_id,
        args.tag.as_deref(),
        &params,
    )?;
    let log_path = paths::run_dir(store.path(), run_id).join("llama-server.log");
    printer.status(format!(
        "starting profile '{}' (run {run_id}): {} on {} (log: {})",
        profile.name,
        install.label(),
        profile.model_path,
        log_path.display()
    ));
    let spec = ServerSpec {
        binary,
        model: PathBuf::from(&profile.model_path),
        host: args.host.clone(),
        port: args.port,
        args: flags,
        health_timeout: Duration::from_secs(args.health_timeout),
        log_path: log_path.clone(),
    };
    let mut report = GateReport::default();
    report
        .results
        .push(bakeoff::serve::model_check(store, profile));
    let outcome = bakeoff::serve::start(spec, gate, report);
    let report = match &outcome {
        Ok((_, report)) | Err(report) => report,
    };
    for check in &report.results {
        let detail = json!({ "detail": check.detail, "elapsed_ms": check.elapsed_ms });
        store.record_readiness_check(run_id, &profile.name, &check.name, check.passed, &detail)?;
        printer.status(format!(
            "  {} {}: {}",
            if check.passed { "pass" } else { "FAIL" },
            check.name,
            check.detail
        ));
    }
    match outcome {
        Ok((server, report)) => Ok(Ok(Serving {
            server,
            run_id,
            log_path,
            report,
        })),
        Err(report) => {
            if log_path.exists() {
                store.engine_log(run_id, None, &log_path)?;
            }
            let line = report.failure_line();
            store.end_run(run_id, "failed", Some(&format!("readiness: {line}")))?;
            Ok(Err(line))
        }
    }
}

fn print_ready(serving: &Serving, profile: &Profile, fallback_for: Option<&str>, as_json: bool) {
    let server = &serving.server;
    if as_json {
        println!(
            "{}",
            json!({
                "ready": true, "url": server.url, "pid": server.pid(), "log": serving.log_path,
                "run": serving.run_id, "profile": profile.name,
                "role": if fallback_for.is_some() { "fallback" } else { "candidate" },
                "fallback_for": fallback_for, "readiness": serving.report.results,
            })
        );
    } else {
        println!(
            "ready {} pid={} run={} log={} profile={}{}",
            server.url,
            server.pid(),
            serving.run_id,
            serving.log_path.display(),
            profile.name,
            fallback_for
                .map(|c| format!(" (fallback for {c})"))
                .unwrap_or_default()
        );
    }
}
