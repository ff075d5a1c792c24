//! A llama-server that bakeoff launched and supervises: free loopback port, health wait with a
//! timeout, log file in the run's directory, fatal-line scanning, clean stop.

use super::fatal::{self, FatalLine};
use super::http::{Http, Timeouts};
use super::process::{Supervised, GRACE};
use crate::{Error, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to launch.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub binary: PathBuf,
    pub model: PathBuf,
    pub host: String,
    /// `None`: pick a free port.
    pub port: Option<u16>,
    /// Further llama-server flags, passed through as an argument vector.
    pub args: Vec<String>,
    pub health_timeout: Duration,
    pub log_path: PathBuf,
}

pub struct LlamaServer {
    process: Supervised,
    pub port: u16,
    pub url: String,
    pub http: Http,
    pub spec: ServerSpec,
}

/// Flags bakeoff sets itself; passing them through would make the server unreachable.
const OWNED_FLAGS: [&str; 4] = ["--port", "--host", "-m", "--model"];

/// Ask the kernel for a free port on `host`.
pub fn free_port(host: &str) -> Result<u16> {
    let listener = TcpListener::bind((host, 0))
        .map_err(|e| Error::engine(format!("cannot bind {host}:0 to find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::engine(e.to_string()))
}

fn check_port_free(host: &str, port: u16) -> Result<()> {
    TcpListener::bind((host, port)).map(drop).map_err(|e| {
        Error::engine(format!("port {port} on {host} is already in use ({e})"))
            .with_hint("pick another --port, or leave it out to use a free one")
    })
}

/// A process's state letter from `/proc/PID/stat` (`R`, `S`, `T` stopped, `Z` zombie, ...).
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
}

/// How `pid` (our child) ended, in words, if it has, without reaping it: the supervisor still
/// reaps and records it. Peeking needs no `&mut`, so a runner that only borrows the engine can
/// ask.
fn peek_exit(pid: i32) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: siginfo_t is plain data; all-zero is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid with WNOHANG | WNOWAIT on our own child neither blocks nor reaps.
    if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) } != 0 {
        return Some("has exited".into()); // reaped already (ECHILD)
    }
    // SAFETY: waitid filled `info` for a child event (si_pid 0: no child has changed state).
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    let raw = match info.si_code {
        _ if child == 0 => return None,
        libc::CLD_EXITED => status << 8,
        _ => status,
    };
    Some(fatal::describe_exit(std::process::ExitStatus::from_raw(
        raw,
    )))
}

impl LlamaServer {
    /// Start llama-server and wait until `/health` answers 200. Fails with one clear line when the
    /// model is missing, the port is taken, the engine dies during start-up or never gets healthy.
    pub fn launch(spec: ServerSpec) -> Result<Self> {
        if !spec.model.is_file() {
            return Err(Error::input(format!("model file not found: {}", spec.model.display()))
                .with_hint("`bakeoff doctor` lists installed models; scripts/setup installs two small ones"));
        }
        if let Some(flag) = spec.args.iter().find(|a| OWNED_FLAGS.contains(&a.as_str())) {
            return Err(Error::input(format!(
                "engine flag {flag} is set by bakeoff; use bakeoff's own --model/--port/--host"
            )));
        }
        let port = match spec.port {
            Some(port) => {
                check_port_free(&spec.host, port)?;
                port
            }
            None => free_port(&spec.host)?,
        };
        let mut args = vec![
            "-m".to_string(),
            spec.model.display().to_string(),
            "--host".to_string(),
            spec.host.clone(),
            "--port".to_string(),
            port.to_string(),
        ];
        args.extend(spec.args.iter().cloned());
        let process = Supervised::spawn(&spec.binary, &args, &spec.log_path)?;
        let url = format!("http://{}:{port}", spec.host);
        let http = Http::with_timeouts(&url, Timeouts::default());
        let mut server = LlamaServer {
            process,
            port,
            url,
            http,
            spec,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let probe = Http::new(&self.url, Duration::from_secs(2));
        let deadline = Instant::now() + self.spec.health_timeout;
        loop {
            if let Some(status) = self.process.try_wait() {
                return Err(self
                    .startup_failure(&format!("llama-server exited during start-up ({status})")));
            }
            if let Ok((200, _)) = probe.get_raw("/health") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.process.stop(GRACE);
                return Err(self.startup_failure(&format!(
                    "llama-server did not become healthy within {}s",
                    self.spec.health_timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn startup_failure(&self, what: &str) -> Error {
        let log = self.process.log_path();
        let reason = fatal::first_error(log)
            .or_else(|| fatal::tail(log, 1).pop())
            .unwrap_or_else(|| "no output".to_string());
        Error::engine(format!("{what}: {reason}"))
            .with_hint(format!("full engine log: {}", log.display()))
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Fatal lines in the engine log so far.
    pub fn fatal_lines(&self) -> Vec<FatalLine> {
        fatal::scan_file(self.log_path())
    }

    /// The same server with other request bounds.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.http = self.http.retimed(timeouts);
        self
    }

    /// Why the engine can no longer answer, in words, with the log's first error line: it exited
    /// (`llama-server was killed by signal 9 (SIGKILL)`) or it is frozen (stopped by SIGSTOP or
    /// a debugger). `None` while it runs.
    pub fn trouble(&self) -> Option<String> {
        let pid = self.pid();
        let what = match peek_exit(pid) {
            Some(how) => format!("llama-server (pid {pid}) {how}"),
            None if process_state(pid) == Some('T') => {
                format!("llama-server (pid {pid}) is frozen (stopped by a signal, e.g. SIGSTOP)")
            }
            None => return None,
        };
        Some(match fatal::first_error(self.log_path()) {
            Some(line) => format!("{what}; engine log: {line}"),
            None => what,
        })
    }

    /// [`LlamaServer::trouble`], waiting up to `wait` for it to show: after a request broke, the
    /// kernel closes a killed engine's sockets a moment before its exit can be seen.
    pub fn trouble_within(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let trouble = self.trouble();
            if trouble.is_some() || Instant::now() >= deadline {
                return trouble;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Some(status)` once the engine has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait()
    }

    pub fn stop(&mut self) {
        self.process.stop(GRACE);
    }
}
