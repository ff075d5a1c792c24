//! A real PostgreSQL server for integration tests: initdb'd into a private temporary directory,
//! listening on a free loopback port (password auth) and a private socket directory (trust).
//! `PgServer::start()` gives a test its own server; `shared()` gives one per test binary, with
//! `fresh_database` per test. The postmaster never outlives its test binary (see `spawn`).

use super::{pid_alive, run};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The role initdb creates; it owns every database.
pub const USER: &str = "bakeoff";
/// The role's password, needed over TCP (scram-sha-256); the socket trusts.
pub const PASSWORD: &str = "bakeoff-test-pw";
/// The database `start` creates.
pub const DATABASE: &str = "bakeoff";

const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(30);
const PSQL_LIMIT: Duration = Duration::from_secs(60);

/// A PostgreSQL server on its own data directory, port and socket directory. Dropping it stops
/// the server at once (immediate shutdown) and removes the directory.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<Owner>,
    port: u16,
    running: Option<Postmaster>,
}

/// The unprivileged account that runs the server when the tests run as root (initdb and postgres
/// refuse root).
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// A running postmaster and the thread that spawned it and waits on it.
struct Postmaster {
    pid: u32,
    supervisor: JoinHandle<()>,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

/// The test binary's shared server (started on first call). Tests share it through
/// `fresh_database`; none may stop it, so it is handed out only by shared reference.
pub fn shared() -> &'static PgServer {
    let server = SHARED.get_or_init(|| {
        let server = PgServer::start();
        // SAFETY: registers a plain function; statics are never dropped, so this is what
        // stops the shared server and removes its directory when the binary exits.
        unsafe { libc::atexit(remove_shared) };
        server
    });
    let pid = server.pid().expect("the shared server is never stopped");
    assert!(
        pid_alive(pid as i32),
        "the shared PostgreSQL server (pid {pid}) died; log: {}",
        server.log().display()
    );
    server
}

extern "C" fn remove_shared() {
    if let Some(server) = SHARED.get() {
        if let Some(pid) = server.pid() {
            kill_and_wait(pid);
        }
        let _ = std::fs::remove_dir_all(server.dir.path());
    }
}

impl PgServer {
    /// initdb a private cluster, start it on a free loopback port and create `bakeoff`.
    pub fn start() -> PgServer {
        let mut server = Self::init();
        let mut failures = Vec::new();
        // The port is picked free and then handed to postgres: another process may take it in
        // between (test binaries run in parallel), so a failed start is tried on another port.
        for _ in 0..3 {
            server.port = free_port();
            match server.launch() {
                Ok(postmaster) => {
                    server.running = Some(postmaster);
                    server.create_database(DATABASE);
                    return server;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("PostgreSQL did not start: {failures:#?}");
    }

    fn init() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("bakeoff-pg-")
            .tempdir()
            .expect("tempdir");
        let owner = server_owner();
        let server = PgServer {
            bin: binaries(),
            owner,
            port: 0,
            running: None,
            dir,
        };
        std::fs::create_dir(server.socket_dir()).expect("socket dir");
        let pwfile = server.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if let Some(owner) = owner {
            for path in [server.dir.path(), &server.socket_dir(), &pwfile] {
                std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            }
        }
        let mut initdb = server.tool("initdb");
        initdb
            .arg("-D")
            .arg(server.data_dir())
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--locale=C", "--encoding=UTF8"]);
        let (status, _, stderr) = run(initdb, START_LIMIT);
        assert!(status.success(), "initdb failed ({status}): {stderr}");
        let _ = std::fs::remove_file(pwfile);
        server
    }

    /// `postgres://bakeoff:PASSWORD@127.0.0.1:PORT/bakeoff`.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// `postgres://bakeoff@127.0.0.1:PORT/bakeoff`: TCP without the password, which the server
    /// refuses.
    pub fn url_without_password(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the Unix socket lives (`-h` for psql), kept short: socket paths are limited to
    /// 107 bytes.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The postmaster's stdout and stderr, appended across restarts.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|postmaster| postmaster.pid)
    }

    /// Create an empty database `name` (lowercase letters, digits, `_`) and return its URL, so
    /// tests sharing a server each have their own.
    pub fn fresh_database(&self, name: &str) -> String {
        self.create_database(name);
        self.url_for(name)
    }

    fn create_database(&self, name: &str) {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database name {name:?}: use lowercase letters, digits and `_`"
        );
        // template0 takes no connections, so concurrent creations never find it busy.
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE template0"),
        );
    }

    /// Fast shutdown (what `pg_ctl stop -m fast` does: SIGINT); the data stays.
    pub fn stop(&mut self) {
        let postmaster = self.running.take().expect("the server is not running");
        stop(postmaster, libc::SIGINT);
    }

    /// Start the stopped server again on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.running.is_none(), "the server is already running");
        let postmaster = self
            .launch()
            .unwrap_or_else(|why| panic!("PostgreSQL did not start again: {why}"));
        self.running = Some(postmaster);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Run `sql` with psql over the socket as `bakeoff` on `database`; returns stdout (unaligned,
    /// tuples only) and panics with stderr on failure.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.try_psql(database, sql)
            .unwrap_or_else(|stderr| panic!("psql on {database} failed: {sql}\n{stderr}"))
    }

    /// `psql` that returns stderr on failure instead of panicking.
    pub fn try_psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut psql = self.psql_command();
        psql.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(["-c", sql]);
        let (status, stdout, stderr) = run(psql, PSQL_LIMIT);
        if status.success() {
            Ok(stdout)
        } else {
            Err(stderr)
        }
    }

    /// psql with a clean environment, no psqlrc, no password prompt and unaligned tuples-only
    /// output; add the connection (a URL or `-h`/`-p`/`-U`/`-d`) and `-c`.
    pub fn psql_command(&self) -> Command {
        let mut psql = self.tool("psql");
        psql.args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        psql
    }

    /// A PostgreSQL program run as the server's owner, untouched by the caller's `PG*`
    /// variables and `~/.pgpass`.
    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGPASSFILE", self.dir.path().join("no-pgpass"))
            .env("LC_ALL", "C")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        if let Some(owner) = self.owner {
            cmd.uid(owner.uid).gid(owner.gid);
        }
        cmd
    }

    /// Start the postmaster on `self.port` and wait until it accepts connections.
    fn launch(&self) -> Result<Postmaster, String> {
        let mut postgres = self.tool("postgres");
        postgres
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"]);
        let (tx, rx) = mpsc::channel();
        let log = self.log();
        let pid_file = self.data_dir().join("postmaster.pid");
        // PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits, so the child is
        // spawned from a thread that lives until the child does (or the process ends).
        let supervisor = std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || supervise(postgres, &log, &pid_file, &tx))
            .map_err(|e| format!("cannot start the supervising thread: {e}"))?;
        let pid = rx
            .recv()
            .map_err(|_| "the supervising thread ended without a word".to_string())??;
        Ok(Postmaster { pid, supervisor })
    }
}

impl Drop for PgServer {
    /// Immediate shutdown (`pg_ctl stop -m immediate`: SIGQUIT), also when a test panics.
    fn drop(&mut self) {
        if let Some(postmaster) = self.running.take() {
            stop(postmaster, libc::SIGQUIT);
        }
    }
}

/// Spawn the postmaster, report its pid once it is ready (or why not), then wait on it.
fn supervise(cmd: Command, log: &Path, pid_file: &Path, ready: &mpsc::Sender<Result<u32, String>>) {
    let mut child = match spawn(cmd, log) {
        Ok(child) => child,
        Err(why) => {
            let _ = ready.send(Err(why));
            return;
        }
    };
    let outcome = wait_ready(&mut child, log, pid_file).map(|()| child.id());
    let started = outcome.is_ok();
    let _ = ready.send(outcome);
    if started {
        let _ = child.wait();
    }
}

/// The postmaster is this process's own child rather than pg_ctl's daemon, so the kernel kills
/// it when the test binary ends however it ends (a panic, SIGKILL, or a static never dropped).
fn spawn(mut cmd: Command, log: &Path) -> Result<Child, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdout(file).stderr(err);
    // SAFETY: prctl is async-signal-safe. It runs after the child has changed uid (which clears
    // the parent-death signal), so the setting survives into postgres.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))
}

/// Ready is what `pg_ctl -w` waits for: postmaster.pid names this child and says `ready`.
fn wait_ready(child: &mut Child, log: &Path, pid_file: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            return Err(format!(
                "postgres exited during start-up ({status}): {tail:?}"
            ));
        }
        let status = std::fs::read_to_string(pid_file).unwrap_or_default();
        let lines: Vec<&str> = status.lines().collect();
        if lines.first() == Some(&child.id().to_string().as_str())
            && lines.get(7).map(|s| s.trim()) == Some("ready")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "not ready within {START_LIMIT:?}; log: {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `signal` and wait for the postmaster to exit, killing it after `STOP_LIMIT`.
fn stop(postmaster: Postmaster, signal: i32) {
    super::signal(postmaster.pid, signal);
    let deadline = Instant::now() + STOP_LIMIT;
    while !postmaster.supervisor.is_finished() {
        if Instant::now() > deadline {
            super::signal(postmaster.pid, libc::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = postmaster.supervisor.join();
}

/// For the exit handler: no panics, no joins; the supervising thread still reaps the postmaster.
/// Immediate shutdown first, so the postmaster reaps its own children rather than orphaning them.
fn kill_and_wait(pid: u32) {
    for signal in [libc::SIGQUIT, libc::SIGKILL] {
        super::signal(pid, signal);
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if !pid_alive(pid as i32) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Debian's `/usr/lib/postgresql/VERSION/bin`, newest version first.
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: run `scripts/install-prereqs` \
             (it installs Debian's postgresql package)"
        )
    })
}

/// None when the tests run unprivileged; the `postgres` account when they run as root.
fn server_owner() -> Option<Owner> {
    // SAFETY: geteuid cannot fail; getpwnam's result is read before any other passwd call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !entry.is_null(),
            "the tests run as root, and initdb and postgres refuse root, but there is no \
             `postgres` account to run them as: Debian's postgresql package creates it \
             (`scripts/install-prereqs`)"
        );
        Some(Owner {
            uid: (*entry).pw_uid,
            gid: (*entry).pw_gid,
        })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
