//! A llama-server that bakeoff launched and supervises: free loopback port, health wait with a
//! timeout, log file in the run's directory, fatal-line scanning, clean stop.

use super::fatal::{self, FatalLine};
use super::http::Http;
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
        let http = Http::new(&url, Duration::from_secs(600));
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
        let reason = fatal::scan_file(log)
            .first()
            .map(|f| f.text.clone())
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

    /// `Some(status)` once the engine has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait()
    }

    pub fn stop(&mut self) {
        self.process.stop(GRACE);
    }
}
