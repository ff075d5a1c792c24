//! The machine-wide measurement lock: two measuring bakeoff commands on one machine would disturb
//! each other's figures, so each takes this lock first. The lock file holds the holder's pid and
//! command line; a lock whose pid is dead is stale and is taken over.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: i32,
    pub command: String,
    pub started_unix: u64,
}

/// Held while alive; the lock file is removed on drop.
#[derive(Debug)]
pub struct MeasureLock {
    path: PathBuf,
    /// Set when a stale lock was taken over, naming its dead holder.
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

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl MeasureLock {
    /// Take the lock at `path` for `command`, or fail naming the live holder.
    pub fn acquire(path: &Path, command: &str) -> Result<Self> {
        let me = Holder {
            pid: std::process::id() as i32,
            command: command.to_string(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let mut took_over = None;
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    let body = serde_json::to_string(&me).unwrap_or_default();
                    file.write_all(body.as_bytes())
                        .map_err(|e| Error::io(path, e))?;
                    return Ok(MeasureLock {
                        path: path.to_path_buf(),
                        took_over,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(path);
                    match holder {
                        Some(h) if pid_alive(h.pid) && h.pid != me.pid => {
                            return Err(Error::Locked {
                                message: format!(
                                    "another bakeoff is measuring on this machine: pid {} running `{}` (lock {})",
                                    h.pid,
                                    h.command,
                                    path.display()
                                ),
                            });
                        }
                        stale => {
                            // Dead holder (or unreadable file): remove it and retry the exclusive create.
                            took_over = stale;
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::Locked {
            message: format!("could not take the lock {} (contended)", path.display()),
        })
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

impl Drop for MeasureLock {
    fn drop(&mut self) {
        // Only remove the file if it is still ours.
        if read_holder(&self.path).is_some_and(|h| h.pid == std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // Pid 1 is always alive: pretend it holds the lock.
        let holder = Holder {
            pid: 1,
            command: "bakeoff bench".into(),
            started_unix: 0,
        };
        std::fs::write(&path, serde_json::to_string(&holder).unwrap()).unwrap();
        let err = MeasureLock::acquire(&path, "bakeoff serve").unwrap_err();
        assert!(
            err.to_string().contains("pid 1 running `bakeoff bench`"),
            "{err}"
        );
    }

    #[test]
    fn stale_lock_is_taken_over_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let dead = Holder {
            pid: i32::MAX - 7,
            command: "bakeoff bench (crashed)".into(),
            started_unix: 0,
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = MeasureLock::acquire(&path, "bakeoff serve").unwrap();
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(dead.pid));
        assert_eq!(read_holder(&path).unwrap().pid, std::process::id() as i32);
        drop(lock);
        assert!(!path.exists());
    }
}
