//! `bakeoff serve PROFILE [--fallback PROFILE]`: start a saved profile supervised, report it ready
//! only after its readiness gate passes, and start the fallback profile when it does not. Each
//! start is its own `serve` run; its readiness checks are stored with it.

use crate::cli::{Global, ServeArgs};
use crate::printer::Printer;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::engines::process;
use bakeoff::quality::canary::{CanaryResult, Suite};
use bakeoff::serve::readiness::{self, Canaries, Gate, GateReport};
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::Profile;
use bakeoff::Error;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A profile that passed its gate and is serving.
struct Serving {
    server: LlamaServer,
    session: Session,
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
    let suite = match &args.canaries {
        Some(path) => Suite::load(path)?,
        None => Suite::builtin(),
    };
    let first = attempt(global, &candidate, None, args, &suite, printer)?;
    let (profile, mut serving) = match first {
        Attempt::Ready(serving) => (&candidate, serving),
        Attempt::Interrupted(signal) => return Ok(ExitCode::from((128 + signal) as u8)),
        Attempt::Failed(failure) => {
            let Some(fallback) = &fallback else {
                return Err(Error::engine(format!("profile '{name}' failed readiness: {failure}"))
                    .with_hint("save a fallback with `profile save ... --fallback OTHER`, or pass --fallback OTHER")
                    .into());
            };
            printer.warn(format!(
                "profile '{name}' failed readiness ({failure}); starting fallback profile '{}'",
                fallback.name
            ));
            match attempt(global, fallback, Some(name), args, &suite, printer)? {
                Attempt::Ready(serving) => {
                    printer.warn(format!(
                        "serving fallback profile '{}' in place of '{name}'",
                        fallback.name
                    ));
                    (fallback, serving)
                }
                Attempt::Interrupted(signal) => return Ok(ExitCode::from((128 + signal) as u8)),
                Attempt::Failed(second) => {
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
        &mut serving.session,
        &serving.log_path,
        &mut serving.server,
        printer,
    )
}

/// How one start ended.
enum Attempt {
    Ready(Box<Serving>),
    /// It failed readiness (stopped and recorded): the failing check, in words.
    Failed(String),
    /// Ctrl-C (or SIGTERM) arrived during start-up or the checks.
    Interrupted(i32),
}

/// Start `profile` as its own run and gate it. `Err`: bakeoff itself could not proceed (no engine,
/// database error).
fn attempt(
    global: &Global,
    profile: &Profile,
    fallback_for: Option<&str>,
    args: &ServeArgs,
    suite: &Suite,
    printer: Printer,
) -> anyhow::Result<Attempt> {
    let gate = Gate::standard(Canaries {
        suite: suite.clone(),
        reference: profile.canary_reference.clone(),
    });
    let binary = super::profile::engine_binary(global, profile, printer)?;
    let mut flags = profile.flags.clone();
    flags.extend(args.engine_args.iter().cloned());
    let start = Start {
        profile,
        fallback_for,
        binary: &binary,
        flags: &flags,
        checks: gate.names(),
    };
    let (session, log_path) = begin_start(global, &start, args.tag.as_deref(), printer)?;
    let spec = ServerSpec {
        binary: binary.clone(),
        model: PathBuf::from(&profile.model_path),
        host: args.host.clone(),
        port: args.port,
        args: flags,
        health_timeout: Duration::from_secs(args.health_timeout),
        log_path,
    };
    gate_start(session, spec, &gate, profile, printer)
}

/// Launch, run the readiness checks, store them, and end the run unless it serves.
fn gate_start(
    mut session: Session,
    spec: ServerSpec,
    gate: &Gate,
    profile: &Profile,
    printer: Printer,
) -> anyhow::Result<Attempt> {
    let log_path = spec.log_path.clone();
    let mut report = GateReport::default();
    report
        .results
        .push(bakeoff::serve::model_check(session.store(), profile));
    let outcome = bakeoff::serve::start(spec, gate, report);
    let report = match &outcome {
        Ok((_, report)) | Err(report) => report,
    };
    record_checks(&session, profile, report, printer)?;
    if let Some(signal) = process::interrupted() {
        if let Ok((mut server, _)) = outcome {
            server.stop();
        }
        session.finish(&Ok::<(), String>(()))?;
        return Ok(Attempt::Interrupted(signal));
    }
    match outcome {
        Ok((server, report)) => Ok(Attempt::Ready(Box::new(Serving {
            server,
            session,
            log_path,
            report,
        }))),
        Err(report) => {
            if log_path.exists() {
                session
                    .store()
                    .engine_log(session.run_id(), None, &log_path)?;
            }
            let line = report.failure_line();
            session.finish(&Err::<(), _>(format!("readiness: {line}")))?;
            Ok(Attempt::Failed(line))
        }
    }
}

/// What one start launches, as recorded in its run's params.
struct Start<'a> {
    profile: &'a Profile,
    fallback_for: Option<&'a str>,
    binary: &'a std::path::Path,
    flags: &'a [String],
    checks: Vec<String>,
}

/// Record the start as a `serve` run (engine, model, flags, role); returns it and its log path.
fn begin_start(
    global: &Global,
    start: &Start,
    tag: Option<&str>,
    printer: Printer,
) -> anyhow::Result<(Session, PathBuf)> {
    let store = super::open_store(global)?;
    let engine = Engine::find(Some(&store), Some(start.binary), "llama-server")?;
    let profile = start.profile;
    let params = json!({
        "profile": profile.name,
        "role": if start.fallback_for.is_some() { "fallback" } else { "candidate" },
        "fallback_for": start.fallback_for, "profile_run": profile.run_id,
        "profile_config": profile.config_id, "model": profile.model_path,
        "model_sha256": profile.model_sha256, "engine_id": engine.engine_id, "engine_args": start.flags,
        "readiness": start.checks,
    });
    let command = super::command_line();
    let run = RunSpec {
        kind: "serve",
        command: &command,
        tag,
        params,
    };
    let session = Session::begin_unlocked(store, run)?;
    let log_path = session.run_dir().join("llama-server.log");
    printer.status(format!(
        "starting profile '{}' (run {}): {} on {} (log: {})",
        profile.name,
        session.run_id(),
        engine.label(),
        profile.model_path,
        log_path.display()
    ));
    Ok((session, log_path))
}

/// Store each check (and each canary answer) with the run; a first ready start's passing
/// canaries become the profile's reference.
fn record_checks(
    session: &Session,
    profile: &Profile,
    report: &GateReport,
    printer: Printer,
) -> anyhow::Result<()> {
    let (store, run_id) = (session.store(), session.run_id());
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
    let Some(canaries) = report.result("canaries") else {
        return Ok(());
    };
    let results: Vec<CanaryResult> =
        serde_json::from_value(canaries.data["results"].clone()).unwrap_or_default();
    for result in &results {
        store.record_serve_canary(run_id, &profile.name, result)?;
    }
    if report.passed() && profile.canary_reference.is_none() {
        let passed = readiness::passed_canaries(canaries);
        store.set_canary_reference(&profile.name, &passed)?;
        printer.status(format!(
            "  profile '{}' now holds {} canaries as its reference: {}",
            profile.name,
            passed.len(),
            passed.join(", ")
        ));
    }
    Ok(())
}

fn print_ready(serving: &Serving, profile: &Profile, fallback_for: Option<&str>, as_json: bool) {
    let server = &serving.server;
    if as_json {
        println!(
            "{}",
            json!({
                "ready": true, "url": server.url, "pid": server.pid(), "log": serving.log_path,
                "run": serving.session.run_id(), "profile": profile.name,
                "role": if fallback_for.is_some() { "fallback" } else { "candidate" },
                "fallback_for": fallback_for, "readiness": serving.report.results,
            })
        );
    } else {
        println!(
            "ready {} pid={} run={} log={} profile={}{}",
            server.url,
            server.pid(),
            serving.session.run_id(),
            serving.log_path.display(),
            profile.name,
            fallback_for
                .map(|c| format!(" (fallback for {c})"))
                .unwrap_or_default()
        );
    }
}
