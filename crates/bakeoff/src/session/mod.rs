//! One measuring command's run, written once: the machine-wide lock, the system fingerprint, the
//! run row and its end (ok / failed / interrupted, with the exit code); [`Target`] is the engine
//! the run measures (launched or attached, registered in the store).

mod target;

pub use target::{Engine, Launch, Target};

use crate::store::Store;
use crate::system::lock::{self, Holder};
use crate::system::{paths, Fingerprint, MeasureLock};
use crate::Result;
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

/// A stored run in progress. Dropped while still open (an early `?`), it ends as failed, so no
/// run is left `running`.
pub struct Session {
    store: Store,
    run_id: i64,
    system_id: i64,
    open: bool,
    lock: Option<MeasureLock>,
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
        let run_id = store.begin_run(run.kind, run.command, system_id, run.tag, &run.params)?;
        Ok(Session {
            store,
            run_id,
            system_id,
            open: true,
            lock,
        })
    }

    /// Take the lock and mark a stored run as running again (`--resume`).
    pub fn resume(store: Store, run_id: i64, command: &str) -> Result<Session> {
        let lock = take_lock(command)?;
        Self::resume_with(store, run_id, Some(lock))
    }

    fn resume_with(store: Store, run_id: i64, lock: Option<MeasureLock>) -> Result<Session> {
        let system_id = this_system(&store)?;
        store.reopen_run(run_id)?;
        Ok(Session {
            store,
            run_id,
            system_id,
            open: true,
            lock,
        })
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

    /// Where the run's files (engine logs) go: `runs/<id>/` beside the database.
    pub fn run_dir(&self) -> PathBuf {
        paths::run_dir(self.store.path(), self.run_id)
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
            let _ = self.end(Some(error.to_string()));
        }
        result
    }

    /// Record how the run ended — interrupted (a signal arrived), failed (with the error's text)
    /// or ok — and return the exit code: 128 + signal, 1 or 0.
    pub fn finish<T, E: Display>(&mut self, result: &Result<T, E>) -> Result<u8> {
        let error = result.as_ref().err().map(|e| e.to_string());
        let failed = error.is_some();
        let status = self.end(error)?;
        Ok(match (status, failed) {
            (Ended::Interrupted(signal), _) => (128 + signal) as u8,
            (Ended::Done, true) => 1,
            (Ended::Done, false) => 0,
        })
    }

    fn end(&mut self, error: Option<String>) -> Result<Ended> {
        let interrupted = crate::engines::process::interrupted();
        let status = match (interrupted, &error) {
            (Some(_), _) => "interrupted",
            (None, Some(_)) => "failed",
            (None, None) => "ok",
        };
        self.open = false;
        self.store.end_run(self.run_id, status, error.as_deref())?;
        Ok(interrupted.map_or(Ended::Done, Ended::Interrupted))
    }
}

enum Ended {
    Done,
    Interrupted(i32),
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to from a drop; the run row is the record.
            let _ = self.end(Some("bakeoff stopped before the run finished".into()));
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

    fn spec() -> RunSpec<'static> {
        RunSpec {
            kind: "bench",
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
        assert!(lock_path.exists());
        first.finish(&Err::<(), _>("interrupted by test")).unwrap();
        let run_id = first.run_id();
        drop(first);
        assert!(!lock_path.exists());
        let mut again = Session::resume_with(store(&dir), run_id, Some(lock())).unwrap();
        assert_eq!(status(&dir, run_id).0, "running");
        again.finish(&Ok::<(), String>(())).unwrap();
        drop(again);
        assert_eq!(status(&dir, run_id).0, "ok");
        assert!(!lock_path.exists());
    }
}
