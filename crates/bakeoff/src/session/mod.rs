//! One measuring command's run, written once: the machine-wide lock, the system fingerprint, the
//! run row and its end (ok / partial / failed / interrupted, with the exit code, derived from what
//! was stored); [`Target`] is the engine the run measures (launched or attached, registered in
//! the store).

pub mod queue;
mod subjects;
mod target;

pub use subjects::Sweep;
pub use target::{Engine, Launch, Target};

use crate::engines::process;
use crate::store::{Store, TrialTally};
use crate::system::lock::{self, Holder};
use crate::system::{Fingerprint, MeasureLock};
use crate::{Error, Result};
use std::fmt::Display;
use std::path::PathBuf;

/// The run row a command begins.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// `bench`, `load`, `gate`, `tools`, `serve`, ...
    pub kind: &'a str,
    /// The command line as typed.
    pub command: &'a str,
    pub tag: Option<&'a str>,
    pub params: serde_json::Value,
}

impl<'a> RunSpec<'a> {
    pub fn new(
        kind: &'a str,
        command: &'a str,
        tag: Option<&'a str>,
        params: serde_json::Value,
    ) -> Self {
        RunSpec {
            kind,
            command,
            tag,
            params,
        }
    }
}

/// Run kinds whose trials are measurements: such a run that measured nothing failed, and one
/// where some trials failed is partial. Other kinds store verdicts as trials (a gate candidate
/// that fails its checks is a result, not a failed measurement) or store none (`serve`), and
/// their commands say how they ended.
const MEASURING_KINDS: &[&str] = &["bench", "load"];

/// A stored run in progress. Dropped while still open (an early `?`), it ends as failed, so no
/// run is left `running`; a signal that kills bakeoff before the command records its end has the
/// signal path record it as interrupted.
pub struct Session {
    store: Store,
    run_id: i64,
    system_id: i64,
    open: bool,
    lock: Option<MeasureLock>,
    /// The forced-exit hook that records this run as interrupted (see [`process::on_forced_exit`]).
    exit_hook: Option<usize>,
    /// How a partial run ended, in words, once finished.
    note: Option<String>,
}

/// The machine-wide lock for a measuring command that stores no run of its own
/// (`load --self-test`).
pub fn take_lock(command: &str) -> Result<MeasureLock> {
    MeasureLock::acquire(&lock::default_path(), command)
}

/// This machine's row in `systems` (its fingerprint collected now).
pub fn this_system(store: &Store) -> Result<i64> {
    store.system_id(&Fingerprint::collect())
}

/// `took over a stale lock left by pid N (`CMD`)` when the lock's last holder had died.
pub fn stale_lock_note(lock: &MeasureLock) -> Option<String> {
    lock.took_over.as_ref().map(describe_holder)
}

fn describe_holder(holder: &Holder) -> String {
    format!(
        "took over a stale lock left by pid {} (`{}`)",
        holder.pid, holder.command
    )
}

impl Session {
    /// Take the lock, then record the run's start with this machine's fingerprint.
    pub fn begin(store: Store, run: RunSpec) -> Result<Session> {
        let lock = take_lock(run.command)?;
        Self::begin_with(store, run, Some(lock))
    }

    /// Record a run without the lock: `serve` keeps a server up for others to measure.
    pub fn begin_unlocked(store: Store, run: RunSpec) -> Result<Session> {
        Self::begin_with(store, run, None)
    }

    fn begin_with(store: Store, run: RunSpec, lock: Option<MeasureLock>) -> Result<Session> {
        let system_id = this_system(&store)?;
        // Collecting never fails (what cannot be read says so); storing it may, like any row.
        let audit = crate::system::audit::collect_system();
        let run_id = store.begin_run(run.kind, run.command, system_id, run.tag, &run.params)?;
        // Opened first, so a failure to store the audit ends the run as failed (see Drop).
        let session = Self::opened(store, run_id, system_id, lock);
        session.store.record_audit(run_id, &audit)?;
        // A worker's child: its run belongs to the queue item it was started for.
        if let Some(item) = std::env::var(queue::ITEM_ENV)
            .ok()
            .and_then(|i| i.parse().ok())
        {
            session.store.set_run_queue_item(run_id, item)?;
        }
        Ok(session)
    }

    fn opened(store: Store, run_id: i64, system_id: i64, lock: Option<MeasureLock>) -> Session {
        let exit_hook = Some(record_on_forced_exit(store.location(), run_id));
        Session {
            store,
            run_id,
            system_id,
            open: true,
            lock,
            exit_hook,
            note: None,
        }
    }

    /// Let go of the machine-wide lock before the run ends: `serve` holds it while its engine
    /// loads and is checked, then releases it so that measuring commands can measure the server.
    pub fn release_lock(&mut self) {
        self.lock = None;
    }

    /// Take the lock and mark a stored run as running again (`--resume`).
    pub fn resume(store: Store, run_id: i64, command: &str) -> Result<Session> {
        let lock = take_lock(command)?;
        Self::resume_with(store, run_id, Some(lock))
    }

    fn resume_with(store: Store, run_id: i64, lock: Option<MeasureLock>) -> Result<Session> {
        let system_id = this_system(&store)?;
        store.reopen_run(run_id)?;
        Ok(Self::opened(store, run_id, system_id, lock))
    }

    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This machine's row in `systems`.
    pub fn system_id(&self) -> i64 {
        self.system_id
    }

    /// Where the run's files (engine logs) go: `NAME.runs/<id>/` beside the database `NAME.db`.
    pub fn run_dir(&self) -> PathBuf {
        crate::measure::sink::TrialSink::run_dir(&self.store, self.run_id)
    }

    /// Set when the lock was taken over from a dead holder, in words for a status line.
    pub fn lock_note(&self) -> Option<String> {
        self.lock.as_ref().and_then(stale_lock_note)
    }

    /// Finish the run with `result` if it failed; the value passes through. For steps that may
    /// fail before the work starts (launching the engine).
    pub fn guard<T, E: Display>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if let Err(error) = &result {
            // The step's error is what the user needs to see; a store error here would hide it.
            let _ = self.end(&Ending::Failed(error.to_string()));
        }
        result
    }

    /// Record how the run ended and return the exit code. Interrupted (a signal arrived): 128 +
    /// signal. Failed (`result` is an error, recorded with its text): 1. Otherwise, for runs
    /// whose trials are measurements, the stored trials decide: none measured is a failure,
    /// returned as an error (the command has none of its own to print); some failed is `partial`,
    /// exit 1, described by [`Session::note`]; else ok, 0.
    pub fn finish<T, E: Display>(&mut self, result: &Result<T, E>) -> Result<u8> {
        let ending = match result {
            Err(error) => Ending::Failed(error.to_string()),
            Ok(_) => self.judge()?,
        };
        let derived_failure = matches!((&ending, result), (Ending::Failed(_), Ok(_)));
        let code = self.end(&ending)?;
        match (derived_failure, &ending) {
            (true, Ending::Failed(message)) if code == 1 => {
                Err(nothing_measured_error(message, self.run_id))
            }
            _ => Ok(code),
        }
    }

    /// How a partial run ended (`partial: 2 of 6 trials failed (first: ...)`), once finished.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The ending the stored trials say, for kinds whose trials are measurements.
    fn judge(&self) -> Result<Ending> {
        let kind = self.store.run_kind(self.run_id)?;
        if !MEASURING_KINDS.contains(&kind.as_str()) {
            return Ok(Ending::Ok);
        }
        Ok(judge_tally(&self.store.trial_tally(self.run_id)?))
    }

    /// Write the run's end (a signal overrides the ending) and pick the exit code.
    fn end(&mut self, ending: &Ending) -> Result<u8> {
        let (status, error, code) = match (process::interrupted(), ending) {
            (Some(signal), _) => ("interrupted", ending.error(), 128 + signal),
            (None, Ending::Ok) => ("ok", None, 0),
            (None, Ending::Partial(note)) => ("partial", Some(note.clone()), 1),
            (None, Ending::Failed(error)) => ("failed", Some(error.clone()), 1),
        };
        self.open = false;
        if let Some(hook) = self.exit_hook.take() {
            process::cancel_forced_exit(hook);
        }
        self.store.end_run(self.run_id, status, error.as_deref())?;
        self.note = matches!(ending, Ending::Partial(_)).then(|| error.unwrap_or_default());
        Ok(code as u8)
    }
}

/// How a run ended, before a signal is taken into account.
enum Ending {
    Ok,
    Partial(String),
    Failed(String),
}

impl Ending {
    fn error(&self) -> Option<String> {
        match self {
            Ending::Ok => None,
            Ending::Partial(text) | Ending::Failed(text) => Some(text.clone()),
        }
    }
}

/// Nothing measured → failed; some trials failed or ended without a sample → partial. Skipped
/// trials do not make a run partial (a sweep skips rejected combinations by design), nor do
/// interrupted ones: they are what a crash left, measured again by the `--resume` that finished.
fn judge_tally(tally: &TrialTally) -> Ending {
    let unmeasured = tally.failed + tally.empty;
    if tally.measured == 0 {
        return Ending::Failed(format!("nothing measured: {}", tally_words(tally)));
    }
    if unmeasured == 0 {
        return Ending::Ok;
    }
    let first = in_parentheses(tally.first_failure.as_deref());
    let total = tally.total() - tally.skipped - tally.interrupted;
    Ending::Partial(format!(
        "partial: {unmeasured} of {total} trials did not measure{first}"
    ))
}

/// `2 trials failed, 3 skipped (first: REASON)`, or that no trial was stored.
fn tally_words(tally: &TrialTally) -> String {
    let counts = [
        (tally.failed, "failed"),
        (tally.skipped, "skipped"),
        (tally.empty, "ended without a sample"),
        (tally.interrupted, "interrupted"),
    ];
    let mut parts = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| (*n, *what));
    let Some((n, what)) = parts.next() else {
        return "the run stored no trial".into();
    };
    let trials = if n == 1 { "trial" } else { "trials" };
    let mut words = format!("{n} {trials} {what}");
    parts.for_each(|(n, what)| words.push_str(&format!(", {n} {what}")));
    words + &in_parentheses(tally.first_reason.as_deref())
}

/// ` (first: REASON)`, or nothing without a reason.
fn in_parentheses(reason: Option<&str>) -> String {
    reason.map(|r| format!(" (first: {r})")).unwrap_or_default()
}

fn nothing_measured_error(message: &str, run_id: i64) -> Error {
    let hint = format!("`bakeoff runs show {run_id}` lists each trial with its reason");
    Error::engine(message).with_hint(hint)
}

/// Have the signal path record `run_id` as interrupted should bakeoff exit before the command
/// records the run's end itself (its main thread blocked past the signal thread's bound).
fn record_on_forced_exit(location: &crate::store::Location, run_id: i64) -> usize {
    let location = location.clone();
    process::on_forced_exit(Box::new(move |signal| {
        if let Ok(store) = Store::open_location(&location) {
            // Nothing to report to: bakeoff is exiting; the run row is the record.
            let _ = store.interrupt_run(run_id, signal);
        }
    }))
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to from a drop; the run row is the record.
            let stopped = Ending::Failed("bakeoff stopped before the run finished".into());
            let _ = self.end(&stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("bakeoff.db")).unwrap()
    }

    /// A run whose trials are verdicts, not measurements: its command says how it ended.
    fn spec() -> RunSpec<'static> {
        RunSpec {
            kind: "gate",
            command: "bakeoff bench",
            tag: Some("t"),
            params: json!({ "x": 1 }),
        }
    }

    fn status(dir: &tempfile::TempDir, run_id: i64) -> (String, Option<String>) {
        let run = store(dir).run_detail(run_id).unwrap().run;
        (run.status, run.error)
    }

    #[test]
    fn an_early_return_after_begin_leaves_the_run_failed() {
        // Regression: a `?` between begin_run and end_run left the run `running` for ever.
        let dir = tempfile::tempdir().unwrap();
        let mut run_id = 0;
        let mut early = || -> Result<()> {
            let session = Session::begin_unlocked(store(&dir), spec())?;
            run_id = session.run_id();
            Err(crate::Error::input("bad input"))
        };
        assert!(early().is_err());
        let (status, error) = status(&dir, run_id);
        assert_eq!(status, "failed");
        assert!(error.unwrap().contains("stopped before"));
    }

    #[test]
    fn a_run_begins_with_this_machines_audit_stored() {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::begin_unlocked(store(&dir), spec()).unwrap();
        let audit = session.store().audit(session.run_id()).unwrap();
        let audit = audit.expect("the audit is stored with the run");
        let ids = |a: &crate::system::audit::Audit| {
            a.checks.iter().map(|c| c.id.clone()).collect::<Vec<_>>()
        };
        let now = crate::system::audit::collect_system();
        assert_eq!(ids(&audit), ids(&now));
        assert!(!audit.checks.is_empty());
    }

    #[test]
    fn finish_records_ok_and_failed_with_the_error_and_picks_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut ok = Session::begin_unlocked(store(&dir), spec()).unwrap();
        assert_eq!(ok.finish(&Ok::<(), String>(())).unwrap(), 0);
        let mut failed = Session::begin_unlocked(store(&dir), spec()).unwrap();
        let code = failed.finish(&Err::<(), _>("engine died")).unwrap();
        assert_eq!(code, 1);
        let (ok_id, failed_id) = (ok.run_id(), failed.run_id());
        drop((ok, failed));
        assert_eq!(status(&dir, ok_id), ("ok".into(), None));
        assert_eq!(
            status(&dir, failed_id),
            ("failed".into(), Some("engine died".into()))
        );
    }

    #[test]
    fn a_guarded_error_ends_the_run_with_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::begin_unlocked(store(&dir), spec()).unwrap();
        let result: Result<(), String> = session.guard(Err("no llama-server found".into()));
        assert!(result.is_err());
        let run_id = session.run_id();
        drop(session);
        let (status, error) = status(&dir, run_id);
        assert_eq!(status, "failed");
        assert_eq!(error.as_deref(), Some("no llama-server found"));
    }

    #[test]
    fn resume_reopens_the_run() {
        let dir = tempfile::tempdir().unwrap();
        // A lock of its own: the machine-wide one may be held by a real measurement.
        let lock_path = dir.path().join("lock");
        let lock = || MeasureLock::acquire(&lock_path, "bakeoff bench").unwrap();
        let mut first = Session::begin_with(store(&dir), spec(), Some(lock())).unwrap();
        assert!(MeasureLock::acquire(&lock_path, "other").is_err(), "held");
        first.finish(&Err::<(), _>("interrupted by test")).unwrap();
        let run_id = first.run_id();
        drop(first);
        let mut again = Session::resume_with(store(&dir), run_id, Some(lock())).unwrap();
        assert_eq!(status(&dir, run_id).0, "running");
        again.finish(&Ok::<(), String>(())).unwrap();
        drop(again);
        assert_eq!(status(&dir, run_id).0, "ok");
        assert!(
            MeasureLock::acquire(&lock_path, "other").is_ok(),
            "released"
        );
    }

    fn bench_session(dir: &tempfile::TempDir) -> Session {
        let spec = RunSpec::new("bench", "bakeoff bench", None, json!({}));
        Session::begin_unlocked(store(dir), spec).unwrap()
    }

    /// A trial of `session`'s run ended with `status` (and a sample when `measured`).
    fn add_trial(session: &Session, status: &str, note: Option<&str>, measured: bool) {
        let workload = json!({"test": "tg32"});
        let new = crate::store::NewTrial::new(None, &workload, 0);
        let store = session.store();
        let id = store.begin_trial(session.run_id(), &new).unwrap();
        if measured {
            let unit = crate::domain::Unit::TokensPerSecond;
            store.sample(id, "tg", 1.0, unit, "client", 0).unwrap();
        }
        store.end_trial(id, status, note).unwrap();
    }

    #[test]
    fn a_bench_that_measured_nothing_ends_failed_with_the_first_reason() {
        // Regression: `bench --kv banana` (every cell skipped) was stored as ok, exit 0.
        let dir = tempfile::tempdir().unwrap();
        let mut session = bench_session(&dir);
        for _ in 0..3 {
            add_trial(
                &session,
                "skipped",
                Some("-ctk banana: unknown KV type"),
                false,
            );
        }
        let error = session.finish(&Ok::<(), String>(())).unwrap_err();
        let expected = "nothing measured: 3 trials skipped (first: -ctk banana: unknown KV type)";
        assert_eq!(error.to_string(), expected);
        assert_eq!(error.exit_code(), 1);
        let run_id = session.run_id();
        drop(session);
        assert_eq!(
            status(&dir, run_id),
            ("failed".into(), Some(expected.into()))
        );
    }

    #[test]
    fn a_bench_with_some_failed_trials_is_partial_and_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = bench_session(&dir);
        add_trial(&session, "ok", None, true);
        add_trial(&session, "skipped", Some("rejected combination"), false);
        add_trial(
            &session,
            "failed",
            Some("llama-server died (signal 9)"),
            false,
        );
        assert_eq!(session.finish(&Ok::<(), String>(())).unwrap(), 1);
        let note = "partial: 1 of 2 trials did not measure (first: llama-server died (signal 9))";
        assert_eq!(session.note(), Some(note));
        let run_id = session.run_id();
        drop(session);
        assert_eq!(status(&dir, run_id), ("partial".into(), Some(note.into())));
    }

    #[test]
    fn a_bench_whose_trials_all_measured_is_ok_even_with_skipped_cells() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = bench_session(&dir);
        add_trial(&session, "ok", None, true);
        add_trial(&session, "skipped", Some("rejected combination"), false);
        assert_eq!(session.finish(&Ok::<(), String>(())).unwrap(), 0);
        assert_eq!(session.note(), None);
    }

    #[test]
    fn a_bench_that_stored_no_trial_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = bench_session(&dir);
        let error = session.finish(&Ok::<(), String>(())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "nothing measured: the run stored no trial"
        );
    }
}
