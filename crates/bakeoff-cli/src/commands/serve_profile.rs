//! `bakeoff serve PROFILE [--fallback PROFILE]`: start a saved profile supervised, report it ready
//! only after its readiness gate passes, and start the fallback profile when it does not. Each
//! start is its own `serve` run; its readiness checks are stored with it.

use crate::cli::{Global, ServeArgs};
use crate::printer::Printer;
use bakeoff::engines::http::Timeouts;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::engines::process;
use bakeoff::quality::canary::{CanaryResult, Suite};
use bakeoff::serve::readiness::{self, Canaries, CheckResult, Gate, GateReport};
use bakeoff::session::{Engine, RunSpec, Session};
use bakeoff::store::{Profile, Store};
use bakeoff::Error;
use serde_json::json;
use std::path::{Path, PathBuf};
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
    let store = super::open_existing_store(global)?;
    let candidate = store.profile(name)?;
    let fallback = fallback_of(&store, args, &candidate)?;
    let suite = match &args.canaries {
        Some(path) => Suite::load(path)?,
        None => Suite::builtin(),
    };
    let starter = Starter {
        global,
        args,
        suite: &suite,
        printer,
    };
    let (profile, serving) = match starter.start(&candidate, fallback.as_ref())? {
        Started::Serving(profile, serving) => (profile, serving),
        Started::Interrupted(signal) => return Ok(ExitCode::from((128 + signal) as u8)),
    };
    starter.serve(profile, name, *serving)
}

/// `--fallback`, else the profile's own; never the profile itself.
fn fallback_of(
    store: &Store,
    args: &ServeArgs,
    candidate: &Profile,
) -> anyhow::Result<Option<Profile>> {
    let name = &candidate.name;
    match args.fallback.as_deref().or(candidate.fallback.as_deref()) {
        Some(other) if other == name => {
            Err(Error::input(format!("profile '{name}' cannot be its own fallback")).into())
        }
        Some(other) => Ok(Some(store.profile(other)?)),
        None => Ok(None),
    }
}

/// How one start ended.
enum Attempt {
    Ready(Box<Serving>),
    /// It failed readiness (stopped and recorded): the failing check, in words.
    Failed(String),
    /// Ctrl-C (or SIGTERM) arrived during start-up or the checks.
    Interrupted(i32),
}

/// How the candidate-then-fallback sequence ended, short of an error.
enum Started<'p> {
    Serving(&'p Profile, Box<Serving>),
    Interrupted(i32),
}

/// What every start shares: the command line, the canary suite, the printer.
struct Starter<'a> {
    global: &'a Global,
    args: &'a ServeArgs,
    suite: &'a Suite,
    printer: Printer,
}

impl Starter<'_> {
    /// The candidate; when it fails readiness, the fallback in its place.
    fn start<'p>(
        &self,
        candidate: &'p Profile,
        fallback: Option<&'p Profile>,
    ) -> anyhow::Result<Started<'p>> {
        let name = &candidate.name;
        let failure = match self.attempt(candidate, None)? {
            Attempt::Ready(serving) => return Ok(Started::Serving(candidate, serving)),
            Attempt::Interrupted(signal) => return Ok(Started::Interrupted(signal)),
            Attempt::Failed(failure) => failure,
        };
        let Some(fallback) = fallback else {
            return Err(Error::engine(format!("profile '{name}' failed readiness: {failure}"))
                .with_hint("save a fallback with `profile save ... --fallback OTHER`, or pass --fallback OTHER")
                .into());
        };
        self.printer.warn(format!(
            "profile '{name}' failed readiness ({failure}); starting fallback profile '{}'",
            fallback.name
        ));
        self.start_fallback(name, &failure, fallback)
    }

    fn start_fallback<'p>(
        &self,
        name: &str,
        failure: &str,
        fallback: &'p Profile,
    ) -> anyhow::Result<Started<'p>> {
        let other = &fallback.name;
        match self.attempt(fallback, Some(name))? {
            Attempt::Ready(serving) => {
                self.printer.warn(format!(
                    "serving fallback profile '{other}' in place of '{name}'"
                ));
                Ok(Started::Serving(fallback, serving))
            }
            Attempt::Interrupted(signal) => Ok(Started::Interrupted(signal)),
            Attempt::Failed(second) => Err(Error::engine(format!(
                "profile '{name}' failed readiness ({failure}), and so did its fallback '{other}' ({second})"
            ))
            .into()),
        }
    }

    /// Print the ready line and supervise until Ctrl-C or the engine's exit.
    fn serve(
        &self,
        profile: &Profile,
        asked: &str,
        mut serving: Serving,
    ) -> anyhow::Result<ExitCode> {
        let fallback_for = (profile.name != asked).then_some(asked);
        // Up and gated: from here on the server is what others measure, so the lock is theirs.
        serving.session.release_lock();
        print_ready(&serving, profile, fallback_for, self.args.json);
        let (log_path, printer) = (&serving.log_path, self.printer);
        super::serve::keep_serving(&mut serving.session, log_path, &mut serving.server, printer)
    }

    /// Start `profile` as its own run and gate it. `Err`: bakeoff itself could not proceed (no
    /// engine, database error).
    fn attempt(&self, profile: &Profile, fallback_for: Option<&str>) -> anyhow::Result<Attempt> {
        let gate = Gate::standard(Canaries {
            suite: self.suite.clone(),
            reference: profile.canary_reference.clone(),
        });
        let binary = super::profile::engine_binary(self.global, profile, self.printer)?;
        let mut flags = profile.flags.clone();
        flags.extend(self.args.engine_args.iter().cloned());
        let start = Start {
            profile,
            fallback_for,
            binary: &binary,
            flags: &flags,
            checks: gate.names(),
        };
        let (session, log_path) = self.begin(&start)?;
        let spec = self.spec(&start, log_path);
        let timeouts = self.args.timeouts.timeouts();
        gate_start(session, (spec, timeouts), &gate, profile, self.printer)
    }

    fn spec(&self, start: &Start, log_path: PathBuf) -> ServerSpec {
        ServerSpec {
            binary: start.binary.to_path_buf(),
            model: PathBuf::from(&start.profile.model_path),
            host: self.args.host.clone(),
            port: self.args.port,
            args: start.flags.to_vec(),
            health_timeout: Duration::from_secs(self.args.health_timeout),
            log_path,
        }
    }

    /// Record the start as a `serve` run (engine, model, flags, role); returns it and its log.
    fn begin(&self, start: &Start) -> anyhow::Result<(Session, PathBuf)> {
        let store = super::open_store(self.global)?;
        let engine = Engine::find(Some(&store), Some(start.binary), "llama-server")?;
        let command = super::command_line();
        let tag = self.args.tag.as_deref();
        let params = start.params(engine.engine_id);
        // Locked while the engine loads and its readiness gate measures; released once it serves.
        let session = Session::begin(store, RunSpec::new("serve", &command, tag, params))?;
        let log_path = session.run_dir().join("llama-server.log");
        self.printer.status(format!(
            "starting profile '{}' (run {}): {} on {} (log: {})",
            start.profile.name,
            session.run_id(),
            engine.label(),
            start.profile.model_path,
            log_path.display()
        ));
        Ok((session, log_path))
    }
}

/// Launch, run the readiness checks, store them, and end the run unless it serves.
fn gate_start(
    mut session: Session,
    (spec, timeouts): (ServerSpec, Timeouts),
    gate: &Gate,
    profile: &Profile,
    printer: Printer,
) -> anyhow::Result<Attempt> {
    let log_path = spec.log_path.clone();
    let mut report = GateReport::default();
    let model = bakeoff::serve::model_check(session.store(), profile);
    report.results.push(model);
    let outcome = bakeoff::serve::start(spec, gate, report, timeouts);
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
        Err(report) => failed(session, &log_path, &report),
    }
}

/// A start that failed readiness: its log stored, its run ended with the failing check.
fn failed(mut session: Session, log_path: &Path, report: &GateReport) -> anyhow::Result<Attempt> {
    if log_path.exists() {
        session
            .store()
            .engine_log(session.run_id(), None, log_path)?;
    }
    let line = report.failure_line();
    session.finish(&Err::<(), _>(format!("readiness: {line}")))?;
    Ok(Attempt::Failed(line))
}

/// What one start launches, as recorded in its run's params.
struct Start<'a> {
    profile: &'a Profile,
    fallback_for: Option<&'a str>,
    binary: &'a Path,
    flags: &'a [String],
    checks: Vec<String>,
}

impl Start<'_> {
    fn params(&self, engine_id: Option<i64>) -> serde_json::Value {
        let profile = self.profile;
        json!({
            "profile": profile.name,
            "role": if self.fallback_for.is_some() { "fallback" } else { "candidate" },
            "fallback_for": self.fallback_for, "profile_run": profile.run_id,
            "profile_config": profile.config_id, "model": profile.model_path,
            "model_sha256": profile.model_sha256, "engine_id": engine_id, "engine_args": self.flags,
            "readiness": self.checks,
        })
    }
}

/// Store each check (and each canary answer) with the run; a first ready start's passing
/// canaries become the profile's reference.
fn record_checks(
    session: &Session,
    profile: &Profile,
    report: &GateReport,
    printer: Printer,
) -> anyhow::Result<()> {
    for check in &report.results {
        record_check(session, &profile.name, check)?;
        let mark = if check.passed { "pass" } else { "FAIL" };
        printer.status(format!("  {mark} {}: {}", check.name, check.detail));
    }
    let Some(canaries) = report.result("canaries") else {
        return Ok(());
    };
    let results: Vec<CanaryResult> =
        serde_json::from_value(canaries.data["results"].clone()).unwrap_or_default();
    for result in &results {
        session
            .store()
            .record_serve_canary(session.run_id(), &profile.name, result)?;
    }
    if report.passed() && profile.canary_reference.is_none() {
        set_reference(session.store(), profile, canaries, printer)?;
    }
    Ok(())
}

fn record_check(session: &Session, profile: &str, check: &CheckResult) -> bakeoff::Result<()> {
    let detail = json!({ "detail": check.detail, "elapsed_ms": check.elapsed_ms });
    let (name, passed) = (&check.name, check.passed);
    let store = session.store();
    store.record_readiness_check(session.run_id(), profile, name, passed, &detail)
}

/// The first ready start's passing canaries become the profile's reference.
fn set_reference(
    store: &Store,
    profile: &Profile,
    canaries: &CheckResult,
    printer: Printer,
) -> bakeoff::Result<()> {
    let passed = readiness::passed_canaries(canaries);
    store.set_canary_reference(&profile.name, &passed)?;
    printer.status(format!(
        "  profile '{}' now holds {} canaries as its reference: {}",
        profile.name,
        passed.len(),
        passed.join(", ")
    ));
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
