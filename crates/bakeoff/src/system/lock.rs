//! The machine-wide measurement lock: two measuring bakeoff commands on one machine would disturb
//! each other's figures, so each takes this lock first. It is an `flock` on a lock file kept open
//! for the lock's life: the kernel grants it to one open file at a time and drops it when the
//! holder dies, so there is no window between "create" and "write the pid" and no stale-lock race.
//! The holder writes its pid and command line into the file after taking it, so a refused command
//! can name who is measuring.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: i32,
    pub command: String,
    pub started_unix: u64,
}

/// Held while alive: the open, flocked lock file. Dropping it empties the file and closes it,
/// which releases the lock. The file itself stays: removing it would let a later command lock
/// a new file while an earlier one still waits on the old one.
#[derive(Debug)]
pub struct MeasureLock {
    file: File,
    path: PathBuf,
    /// Set when the previous holder died holding the lock (its record was still in the file).
    pub took_over: Option<Holder>,
}

/// `$BAKEOFF_LOCK` or `/tmp/bakeoff-measure.lock` (machine-wide, not per user).
pub fn default_path() -> PathBuf {
    std::env::var_os("BAKEOFF_LOCK")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("bakeoff-measure.lock"))
}

pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let result = unsafe { libc::kill(pid, 0) };
    if result == 0 {
        return !is_zombie(pid);
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The fields of `/proc/PID/stat` after the command name (state first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|s| s == "Z"))
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22): with the
/// pid it names one process, so a recorded pid reused by a later process is told apart.
pub fn process_start(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the process recorded as `pid` (started at `start`, when that was recorded) still runs.
pub fn process_alive(pid: i32, start: Option<u64>) -> bool {
    pid_alive(pid) && (start.is_none() || process_start(pid) == start)
}

/// How long a refused command waits for the holder's record to appear (it writes it right
/// after taking the lock) or for a holder that is just leaving to let go.
const HOLDER_WAIT: Duration = Duration::from_millis(500);

impl MeasureLock {
    /// Take the lock at `path` for `command`, or fail naming the live holder. A holder that has
    /// just taken it but not yet written its record is waited for briefly, so it can be named.
    pub fn acquire(path: &Path, command: &str) -> Result<Self> {
        let deadline = Instant::now() + HOLDER_WAIT;
        loop {
            let mut file = open_lock_file(path)?;
            if try_flock(&file).map_err(|e| Error::io(path, e))? {
                return Self::hold(file, path, command);
            }
            let holder = read_holder(&mut file);
            if holder.is_some() || Instant::now() >= deadline {
                return Err(locked_error(path, holder));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The flock is ours: note a dead holder's leftover record, then write ours.
    fn hold(mut file: File, path: &Path, command: &str) -> Result<Self> {
        let took_over = read_holder(&mut file);
        write_holder(&mut file, &me(command)).map_err(|e| Error::io(path, e))?;
        Ok(MeasureLock {
            file,
            path: path.to_path_buf(),
            took_over,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

fn me(command: &str) -> Holder {
    Holder {
        pid: own_pid(),
        command: command.to_string(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// Open (creating) the lock file read-write without truncating it: a holder's record is in it.
fn open_lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a file descriptor we own; it does not touch memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

/// The lock's state as seen from outside, without taking it for longer than a probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LockState {
    /// Nobody holds it (no file, or a file emptied by a clean release).
    Free,
    /// A live process holds the flock; its record, when it wrote one, and its program name.
    Held {
        holder: Option<Holder>,
        program: Option<String>,
    },
    /// Nobody holds the flock but a holder's record is still there: it died holding the lock
    /// (the next measuring command takes it over).
    Stale { holder: Holder },
    /// The lock file could not be opened or probed.
    Unknown { reason: String },
}

/// The state of the lock at `path`. The probe is a shared, non-blocking flock dropped at once,
/// so a command taking the lock at that moment retries (see [`MeasureLock::acquire`]).
pub fn state(path: &Path) -> LockState {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockState::Free,
        Err(e) => {
            return LockState::Unknown {
                reason: format!("{}: {e}", path.display()),
            }
        }
    };
    // SAFETY: flock on a file descriptor we own; it does not touch memory.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    let holder = read_holder(&mut file);
    match (taken, holder) {
        (true, None) => LockState::Free,
        (true, Some(holder)) => LockState::Stale { holder },
        (false, holder) => {
            let program = holder.as_ref().and_then(|h| {
                let comm = std::fs::read_to_string(format!("/proc/{}/comm", h.pid)).ok()?;
                Some(comm.trim().to_string())
            });
            LockState::Held { holder, program }
        }
    }
}

/// The refusal, naming the holder when its record could be read.
fn locked_error(path: &Path, holder: Option<Holder>) -> Error {
    let who = holder.map_or_else(
        || "another process".to_string(),
        |h| format!("pid {} running `{}`", h.pid, h.command),
    );
    Error::Locked {
        message: format!(
            "another bakeoff is measuring on this machine: {who} (lock {})",
            path.display()
        ),
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_holder(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    let body = serde_json::to_string(holder).unwrap_or_default();
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(body.as_bytes())?;
    file.flush()
}

impl Drop for MeasureLock {
    fn drop(&mut self) {
        // An empty file tells the next holder that this one ended cleanly; closing the file
        // (when `self.file` drops) releases the flock.
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    #[test]
    fn second_holder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _first = MeasureLock::acquire(&path, "bakeoff bench").unwrap();
        let err = MeasureLock::acquire(&path, "bakeoff serve").unwrap_err();
        let own = format!("pid {} running `bakeoff bench`", own_pid());
        assert!(err.to_string().contains(&own), "{err}");
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn a_dead_holders_record_is_taken_over_and_emptied_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // A holder that died: its record is in the file, but no open file holds the flock.
        let dead = Holder {
            pid: i32::MAX - 7,
            command: "bakeoff bench (crashed)".into(),
            started_unix: 0,
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = MeasureLock::acquire(&path, "bakeoff serve").unwrap();
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(dead.pid));
        let record = read_holder(&mut open_lock_file(&path).unwrap()).unwrap();
        assert_eq!(record.pid, own_pid());
        drop(lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let again = MeasureLock::acquire(&path, "bakeoff bench").unwrap();
        assert!(again.took_over.is_none(), "a clean release is not stale");
    }

    #[test]
    fn state_reads_free_held_and_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert_eq!(state(&path), LockState::Free, "no file yet");
        let lock = MeasureLock::acquire(&path, "bakeoff bench").unwrap();
        match state(&path) {
            LockState::Held { holder, program } => {
                assert_eq!(holder.map(|h| h.pid), Some(own_pid()));
                assert!(program.is_some_and(|p| !p.is_empty()));
            }
            other => panic!("not held: {other:?}"),
        }
        drop(lock);
        assert_eq!(state(&path), LockState::Free, "released cleanly");
        let dead = Holder {
            pid: i32::MAX - 7,
            command: "bakeoff bench (crashed)".into(),
            started_unix: 0,
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        assert_eq!(state(&path), LockState::Stale { holder: dead });
        MeasureLock::acquire(&path, "bakeoff bench").expect("a probe leaves the lock free");
    }

    /// Regression: create-then-write let two starters both take the lock (the second read an
    /// empty file, called it stale and deleted it). Many threads race for it, each with its own
    /// open file as separate processes would have; no two holding intervals may overlap.
    #[test]
    fn simultaneous_starts_never_hold_the_lock_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("lock"));
        let intervals = Arc::new(Mutex::new(Vec::new()));
        for _round in 0..20 {
            let barrier = Arc::new(Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier, intervals) =
                        (path.clone(), barrier.clone(), intervals.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        if let Ok(lock) = MeasureLock::acquire(&path, "bakeoff bench") {
                            let entered = Instant::now();
                            std::thread::sleep(Duration::from_millis(2));
                            let left = Instant::now();
                            drop(lock);
                            intervals.lock().unwrap().push((entered, left));
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        }
        let mut held = intervals.lock().unwrap().clone();
        assert!(held.len() >= 20, "every round has a holder: {}", held.len());
        held.sort();
        for pair in held.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "two holders at once: {pair:?}");
        }
    }
}
