//! Real llama-servers (SmolLM2) shared by the whole suite, one per set of flags, started on first
//! use and shared by every test that only needs an engine to talk to (attach with `--url`), so
//! the suite does not pay an engine start per test. Each dies with the test binary, however the
//! binary ends (`fixture.rs`).

use super::{llama_bin, pid_alive, smollm, ENGINE_THREADS};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// A shared server: where it listens, its pid and the flags it was started with.
#[derive(Debug)]
pub struct SharedServer {
    pub url: String,
    pub pid: u32,
    pub flags: Vec<String>,
    pub log: PathBuf,
}

/// The servers started so far, by their flags. Each lives as long as the binary.
static SHARED: Mutex<BTreeMap<Vec<String>, &'static SharedServer>> = Mutex::new(BTreeMap::new());

/// The suite's shared llama-server on SmolLM2 with `flags` (started on first call for those
/// flags; tests asking for the same flags share it).
pub fn shared_server(flags: &[&str]) -> &'static SharedServer {
    let key: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let server = {
        // Held while a server starts: a second caller waits for it rather than starting another.
        let mut servers = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *servers
            .entry(key)
            .or_insert_with(|| Box::leak(Box::new(start_with_retries(flags))))
    };
    assert!(
        pid_alive(server.pid as i32),
        "the shared llama-server (pid {}) died; log: {}",
        server.pid,
        server.log.display()
    );
    server
}

/// The port is picked free and then handed to llama-server: another process may take it in
/// between (other test binaries run on the same machine), so a failed start is tried again.
fn start_with_retries(flags: &[&str]) -> SharedServer {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match start(flags) {
            Ok(server) => return server,
            Err(why) => failures.push(why),
        }
    }
    panic!("the shared llama-server did not start: {failures:#?}");
}

fn start(flags: &[&str]) -> Result<SharedServer, String> {
    let port = free_port();
    let log = log_path(port);
    let (tx, rx) = mpsc::channel();
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let spawn_flags = flags.clone();
    let spawn_log = log.clone();
    // PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits, so the child is
    // spawned from a thread that lives until the child does (or the process ends).
    std::thread::Builder::new()
        .name("shared-llama-server".into())
        .spawn(move || supervise(port, &spawn_flags, &spawn_log, &tx))
        .map_err(|e| format!("cannot start the supervising thread: {e}"))?;
    let pid = rx
        .recv()
        .map_err(|_| "the supervising thread ended without a word".to_string())??;
    Ok(SharedServer {
        url: format!("http://127.0.0.1:{port}"),
        pid,
        flags,
        log,
    })
}

/// Spawn llama-server, report its pid once healthy (or why not), then wait on it forever.
fn supervise(
    port: u16,
    flags: &[String],
    log: &PathBuf,
    ready: &mpsc::Sender<Result<u32, String>>,
) {
    let mut child = match spawn(port, flags, log) {
        Ok(child) => child,
        Err(why) => {
            let _ = ready.send(Err(why));
            return;
        }
    };
    let outcome = wait_healthy(&mut child, port, log).map(|()| child.id());
    let healthy = outcome.is_ok();
    let _ = ready.send(outcome);
    if healthy {
        let _ = child.wait();
    }
}

fn spawn(port: u16, flags: &[String], log: &PathBuf) -> Result<Child, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(llama_bin("llama-server"));
    cmd.arg("-m")
        .arg(smollm())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(flags)
        .env(ENGINE_THREADS.0, ENGINE_THREADS.1)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    // SAFETY: prctl is async-signal-safe; the kernel SIGKILLs the server when this thread ends,
    // which a test binary's exit (or SIGKILL) always does.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start llama-server: {e}"))
}

fn wait_healthy(child: &mut Child, port: u16, log: &PathBuf) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            return Err(format!(
                "llama-server exited during start-up ({status}): {tail:?}"
            ));
        }
        if health_ok(port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("not healthy within 120 s; log: {}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /health` answered 200 (a plain HTTP/1.0 request: no client dependency for one probe).
fn health_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// In cargo's scratch directory for integration tests, named by binary and port.
fn log_path(port: u16) -> PathBuf {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".into());
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("shared-llama-server-{binary}-{port}.log"))
}
