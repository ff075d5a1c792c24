//! Supervised child processes. Each engine runs in its own process group with stdout and stderr
//! in a log file. It is stopped (SIGTERM to the group, SIGKILL after a grace period) when its
//! handle is dropped, when bakeoff receives SIGINT/SIGTERM/SIGHUP, or when bakeoff panics; on Linux
//! the kernel also kills it if bakeoff itself is killed (`PR_SET_PDEATHSIG`).

use crate::{Error, Result};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Pids (= process-group ids) of every live supervised child, for the signal and panic paths.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();
/// Held by [`stop_all`] while it stops children, so a thread that finds its child already taken
/// can wait for the stop to finish instead of exiting while the engine still runs.
static STOPPING: Mutex<()> = Mutex::new(());
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// What to do before the signal thread's fallback exit (record the open runs as interrupted).
type ExitHook = Box<dyn FnOnce(i32) + Send>;
static EXIT_HOOKS: Mutex<Vec<(usize, ExitHook)>> = Mutex::new(Vec::new());
static NEXT_HOOK: AtomicUsize = AtomicUsize::new(0);

/// The signal number once SIGINT/SIGTERM/SIGHUP arrived. Long-running commands check it to record
/// the run as interrupted and exit (the process ends when the main thread returns, at once); the
/// signal thread exits the process itself only if they have not within [`FALLBACK_EXIT`].
pub fn interrupted() -> Option<i32> {
    Some(SIGNAL.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// `SIGINT`, `SIGTERM`, `SIGHUP` or `signal N`, for the line that says why bakeoff stopped.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

/// How long a child gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// On a signal the engines get this long before SIGKILL: what they were doing is abandoned
/// anyway, and llama-server may not stop on SIGTERM while a client stays connected.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(1);

/// How long after stopping the engines the signal thread waits for the main thread to record
/// its run and exit before it exits itself (a main thread blocked without a bound).
pub const FALLBACK_EXIT: Duration = Duration::from_secs(5);

/// Run `hook` (with the signal number) if the signal thread has to exit the process itself;
/// returns an id for [`cancel_forced_exit`]. Sessions use it so that no run stays `running`.
pub fn on_forced_exit(hook: ExitHook) -> usize {
    let id = NEXT_HOOK.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut hooks) = EXIT_HOOKS.lock() {
        hooks.push((id, hook));
    }
    id
}

/// Drop a hook registered with [`on_forced_exit`] (its run was recorded normally).
pub fn cancel_forced_exit(id: usize) {
    if let Ok(mut hooks) = EXIT_HOOKS.lock() {
        hooks.retain(|(hook, _)| *hook != id);
    }
}

fn run_exit_hooks(signal: i32) {
    let hooks = EXIT_HOOKS
        .lock()
        .map(|mut hooks| std::mem::take(&mut *hooks))
        .unwrap_or_default();
    hooks.into_iter().for_each(|(_, hook)| hook(signal));
}

/// Install the SIGINT/SIGTERM/SIGHUP handler and the panic hook that stop every supervised child.
/// Idempotent; [`Supervised::spawn`] calls it, and commands call it at start.
pub fn install_handlers() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            stop_all();
        }));
        let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
        if let Ok(mut signals) = signal_hook::iterator::Signals::new(signals) {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    on_signal(signal);
                }
            });
        }
    });
}

/// Stop the engines, then leave the exit to the main thread (it records the run and returns as
/// soon as its in-flight work fails); exit here only if it has not within [`FALLBACK_EXIT`],
/// recording the open runs as interrupted first.
fn on_signal(signal: i32) {
    SIGNAL.store(signal, Ordering::SeqCst);
    let stopped = stop_all_within(SIGNAL_GRACE);
    if stopped > 0 {
        eprintln!("bakeoff: interrupted; stopped {stopped} engine process(es)");
    }
    std::thread::sleep(FALLBACK_EXIT);
    run_exit_hooks(signal);
    std::process::exit(128 + signal);
}

/// Stop every registered child; returns how many there were.
pub fn stop_all() -> usize {
    stop_all_within(GRACE)
}

fn stop_all_within(grace: Duration) -> usize {
    let _stopping = STOPPING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pids: Vec<i32> = LIVE
        .lock()
        .map(|mut live| std::mem::take(&mut *live))
        .unwrap_or_default();
    for &pid in &pids {
        terminate_group(pid, grace);
    }
    pids.len()
}

fn signal_group(pid: i32, signal: i32) {
    // SAFETY: sending a signal to a process group we created; failure (already gone) is harmless.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// Reap `pid` if it has exited: `Some(raw wait status)` once it is gone (`None` status if another
/// thread reaped it first).
fn reaped(pid: i32) -> Option<Option<i32>> {
    let mut status = 0;
    // SAFETY: waitpid on our own child with WNOHANG never blocks.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => None,
        -1 => Some(None),
        _ => Some(Some(status)),
    }
}

/// SIGTERM the group, wait up to `grace` for the leader, then SIGKILL the group and reap it.
/// Returns the leader's raw wait status when this call reaped it.
fn terminate_group(pid: i32, grace: Duration) -> Option<i32> {
    signal_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = reaped(pid) {
            signal_group(pid, libc::SIGKILL); // any stragglers in the group
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(pid, libc::SIGKILL);
    let mut status = 0;
    // SAFETY: blocking reap of our own child after SIGKILL.
    let result = unsafe { libc::waitpid(pid, &mut status, 0) };
    (result == pid).then_some(status)
}

fn register(pid: i32) {
    if let Ok(mut live) = LIVE.lock() {
        live.push(pid);
    }
}

/// Remove `pid` from the registry; false when the signal path already took it.
fn unregister(pid: i32) -> bool {
    LIVE.lock()
        .map(|mut live| {
            let before = live.len();
            live.retain(|&p| p != pid);
            live.len() != before
        })
        .unwrap_or(false)
}

/// A child process bakeoff owns. Dropping it stops it.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    pid: i32,
    program: String,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Supervised {
    /// Start `program args...` (an argument vector, never a shell string) in a new process group,
    /// appending its stdout and stderr to `log_path`.
    pub fn spawn(program: &Path, args: &[String], log_path: &Path) -> Result<Self> {
        Self::spawn_with_stdout(program, args, None, log_path)
    }

    /// As [`Supervised::spawn`], with stdout to its own file when `stdout_path` is given (for
    /// tools that print results on stdout and logs on stderr).
    pub fn spawn_with_stdout(
        program: &Path,
        args: &[String],
        stdout_path: Option<&Path>,
        log_path: &Path,
    ) -> Result<Self> {
        Self::spawn_with_env(program, args, &[], None, stdout_path, log_path)
    }

    /// As [`Supervised::spawn_with_stdout`], with `env` added to the child's environment (a
    /// worker's `bakeoff` child gets the store URL there, not on its command line).
    pub fn spawn_with_env(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        stdout_path: Option<&Path>,
        log_path: &Path,
    ) -> Result<Self> {
        install_handlers();
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(log_path, e))?;
        let stdout = match stdout_path {
            Some(path) => std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
            None => log.try_clone().map_err(|e| Error::io(log_path, e))?,
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .process_group(0);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        // SAFETY: prctl is async-signal-safe; it asks the kernel to SIGKILL the child if we die.
        unsafe {
            command.pre_exec(|| {
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            Error::engine(format!("cannot start {}: {e}", program.display()))
                .with_hint("check the engine path; `bakeoff doctor` lists the engines it finds")
        })?;
        let pid = child.id() as i32;
        register(pid);
        let mut supervised = Supervised {
            child,
            pid,
            program: program.display().to_string(),
            log_path: log_path.to_path_buf(),
            exit: None,
        };
        // A signal whose handler took the list of children before this one was registered
        // would leave it running: the signal is recorded before that list is taken, so a child
        // registered after it sees the signal here and is stopped at once.
        if let Some(signal) = interrupted() {
            supervised.stop(SIGNAL_GRACE);
            let why = format!("not started: interrupted by {}", signal_name(signal));
            return Err(Error::engine(why));
        }
        Ok(supervised)
    }

    /// Wait for the child to exit; on SIGINT/SIGTERM stop it and return an error, so a tool run
    /// to completion (llama-bench, llama-perplexity) never outlives an interrupted bakeoff.
    pub fn wait_interruptible(&mut self) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait() {
                return Ok(status);
            }
            if let Some(signal) = interrupted() {
                self.stop(GRACE);
                return Err(Error::engine(format!("interrupted by signal {signal}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the child has exited (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() && !self.reaped_elsewhere() {
            if let Ok(Some(status)) = self.child.try_wait() {
                unregister(self.pid);
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// True when the signal or panic path stopped (and reaped) this child.
    fn reaped_elsewhere(&mut self) -> bool {
        let registered = LIVE
            .lock()
            .map(|live| live.contains(&self.pid))
            .unwrap_or(true);
        if !registered {
            // stop_all took it: wait until it has finished stopping it.
            drop(
                STOPPING
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            self.exit = Some(ExitStatus::from_raw(libc::SIGKILL));
        }
        !registered
    }

    /// Stop the child: SIGTERM to its group, SIGKILL after `grace`. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if self.try_wait().is_some() {
            return;
        }
        if !unregister(self.pid) {
            self.reaped_elsewhere();
            return;
        }
        let raw = terminate_group(self.pid, grace);
        // The child was reaped by waitpid above; record its status (SIGKILL if unknown).
        self.exit = Some(ExitStatus::from_raw(raw.unwrap_or(libc::SIGKILL)));
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pids of non-zombie processes in process group `pgid` (zombies have exited; they only wait
    /// for init to reap them).
    fn live_group_members(pgid: i32) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // fields[0] = state, fields[2] = pgrp
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                pids.push(pid);
            }
        }
        pids
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        // A shell that ignores SIGTERM and has a grandchild: both must be gone after stop().
        let args = vec![
            "-c".to_string(),
            "trap '' TERM; sleep 300 & echo started; wait".to_string(),
        ];
        let mut child = Supervised::spawn(Path::new("/bin/sh"), &args, &log).unwrap();
        let pid = child.pid();
        child.stop(Duration::from_millis(200));
        assert!(child.try_wait().is_some(), "leader must be reaped");
        assert!(!crate::system::lock::pid_alive(pid));
        assert!(
            live_group_members(pid).is_empty(),
            "grandchild survived: {:?}",
            live_group_members(pid)
        );
    }
}
