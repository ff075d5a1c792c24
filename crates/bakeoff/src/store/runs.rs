//! A run's life in the store beyond its row: which process owns it (so a run left `running` by a
//! dead bakeoff reads `abandoned`), the trials a crash left `running`, and the tally of its trials
//! from which the session derives how the run really ended.

use super::db::params;
use super::Store;
use crate::system::lock;
use crate::Result;

/// This process's pid, recorded with the runs it begins or resumes.
pub(super) fn own_pid() -> i32 {
    std::process::id() as i32
}

/// This process's start time (ticks since boot), so a later process reusing the pid is told apart.
pub(super) fn own_start() -> Option<i64> {
    lock::process_start(own_pid()).map(|ticks| ticks as i64)
}

/// The status to show: a `running` run whose recorded process is gone (or is now another process
/// with the same pid) was abandoned: killed, or the machine went down. Runs without a pid (stored
/// before pids were) keep what was recorded.
///
/// Only a run of this host can be checked: another machine's pid means nothing here, so its
/// `running` run stays `running` (its worker's lease says whether it is still alive).
pub(super) fn live_status(
    status: String,
    pid: Option<i32>,
    start: Option<i64>,
    host: Option<String>,
) -> String {
    let start = start.map(|s| s as u64);
    let here = host.is_none() || host == own_host();
    match (status.as_str(), pid) {
        ("running", Some(pid)) if here && !lock::process_alive(pid, start) => "abandoned".into(),
        _ => status,
    }
}

/// How a run's trials ended, for [`crate::session::Session::finish`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrialTally {
    /// Trials that ended `ok` and hold at least one sample.
    pub measured: usize,
    /// Trials that ended `ok` without a sample (nothing was measured).
    pub empty: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    /// The note of the first trial that did not measure (failed, skipped or empty): its reason.
    pub first_reason: Option<String>,
    /// The note of the first trial that failed, ended empty or was interrupted (not skipped).
    pub first_failure: Option<String>,
}

impl TrialTally {
    pub fn total(&self) -> usize {
        self.measured + self.empty + self.failed + self.skipped + self.interrupted
    }

    fn add(&mut self, status: &str, samples: i64, note: Option<String>) {
        let counter = match (status, samples) {
            ("ok", 0) => &mut self.empty,
            ("ok", _) => &mut self.measured,
            ("skipped", _) => &mut self.skipped,
            ("interrupted" | "running", _) => &mut self.interrupted,
            _ => &mut self.failed,
        };
        *counter += 1;
        let measured = status == "ok" && samples > 0;
        if !measured && self.first_reason.is_none() {
            self.first_reason = note.clone();
        }
        if !measured && status != "skipped" && self.first_failure.is_none() {
            self.first_failure = note;
        }
    }
}

impl Store {
    /// Mark the trials of `run_id` still `running` as `interrupted`: the process measuring them
    /// ended (or died) before they did.
    pub(super) fn interrupt_trials(&self, run_id: i64) -> Result<()> {
        self.db
            .execute(
                "UPDATE trials SET status = 'interrupted', note = coalesce(note, 'bakeoff stopped before this trial ended'),
                 ended_at = coalesce(ended_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 WHERE run_id = ?1 AND status = 'running'",
                [run_id],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// How the trials of `run_id` ended, counted from what was stored.
    pub fn trial_tally(&self, run_id: i64) -> Result<TrialTally> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT t.status, (SELECT count(*) FROM samples s WHERE s.trial_id = t.id), t.note
                 FROM trials t WHERE t.run_id = ?1 ORDER BY t.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?;
        let mut tally = TrialTally::default();
        for row in rows {
            let (status, samples, note) = row.map_err(|e| self.err(e))?;
            tally.add(&status, samples, note);
        }
        Ok(tally)
    }

    /// The kind of a stored run (`bench`, `load`, ...).
    pub fn run_kind(&self, run_id: i64) -> Result<String> {
        self.db
            .query_row("SELECT kind FROM runs WHERE id = ?1", [run_id], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// End `run_id` as `interrupted` if it is still `running`: the signal path's record when the
    /// command could not write it itself.
    pub fn interrupt_run(&self, run_id: i64, signal: i32) -> Result<()> {
        let error = format!("interrupted by signal {signal}");
        self.interrupt_trials(run_id)?;
        self.db
            .execute(
                "UPDATE runs SET status = 'interrupted', error = ?2, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?1 AND status = 'running'",
                params![run_id, error],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

/// A fresh run identity: 128 random bits as 32 hex digits (from the kernel's generator; a
/// clock-and-pid mix where it cannot be read).
pub fn new_uuid() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (now ^ ((std::process::id() as u128) << 96)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This host's name, as runs record it (`runs list --host`): `$BAKEOFF_HOST` where set (a
/// worker standing in for a host, a container whose hostname is random), else the kernel's.
pub fn own_host() -> Option<String> {
    if let Some(host) = std::env::var("BAKEOFF_HOST").ok().filter(|h| !h.is_empty()) {
        return Some(host);
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Unit;
    use crate::measure::sink::NewTrial;
    use crate::system::Fingerprint;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("b.db")).unwrap()
    }

    fn trial(store: &Store, run: i64) -> i64 {
        let workload = serde_json::json!({"test": "tg32"});
        let new = NewTrial::new(None, &workload, 0);
        store.begin_trial(run, &new).unwrap()
    }

    fn run(store: &Store) -> i64 {
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let params = serde_json::json!({});
        store
            .begin_run("bench", "bakeoff bench", system, None, &params)
            .unwrap()
    }

    #[test]
    fn a_running_run_of_a_dead_process_reads_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (alive, dead) = (run(&store), run(&store));
        // A pid that no process holds: as after kill -9 of the bakeoff that began the run.
        store
            .db
            .execute(
                "UPDATE runs SET pid = ?1 WHERE id = ?2",
                params![i32::MAX - 7, dead],
            )
            .unwrap();
        let status = |id| store.run_detail(id).unwrap().run.status;
        assert_eq!(status(alive), "running");
        assert_eq!(status(dead), "abandoned");
        // The same pid started at another time is another process.
        store
            .db
            .execute(
                "UPDATE runs SET pid = ?1, pid_start = -1 WHERE id = ?2",
                params![own_pid(), alive],
            )
            .unwrap();
        assert_eq!(status(alive), "abandoned");
        // Another machine's pid means nothing here: its run stays as recorded.
        store
            .db
            .execute(
                "UPDATE runs SET host = 'another-machine' WHERE id = ?1",
                [dead],
            )
            .unwrap();
        assert_eq!(status(dead), "running");
    }

    #[test]
    fn a_resumed_or_ended_run_holds_no_running_trial() {
        // Regression: the trial a crash interrupted stayed `running` inside a finished run.
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let id = run(&store);
        let crashed = trial(&store, id);
        store.reopen_run(id).unwrap();
        assert_eq!(store.trial(crashed).unwrap().status, "interrupted");
        let again = trial(&store, id);
        store.end_run(id, "failed", Some("boom")).unwrap();
        assert_eq!(store.trial(again).unwrap().status, "interrupted");
    }

    #[test]
    fn the_tally_counts_trials_that_measured_apart_from_those_that_did_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let id = run(&store);
        let ok = trial(&store, id);
        store
            .sample(ok, "tg", 10.0, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        store.end_trial(ok, "ok", None).unwrap();
        let empty = trial(&store, id);
        store.end_trial(empty, "ok", None).unwrap();
        let skipped = trial(&store, id);
        store
            .end_trial(skipped, "skipped", Some("bad kv type"))
            .unwrap();
        let failed = trial(&store, id);
        store
            .end_trial(failed, "failed", Some("engine died"))
            .unwrap();
        let tally = store.trial_tally(id).unwrap();
        let expected = TrialTally {
            measured: 1,
            empty: 1,
            failed: 1,
            skipped: 1,
            interrupted: 0,
            first_reason: Some("bad kv type".into()),
            first_failure: Some("engine died".into()),
        };
        assert_eq!(tally, expected);
    }
}
