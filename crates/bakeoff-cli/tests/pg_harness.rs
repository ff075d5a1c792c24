//! The PostgreSQL harness (`common/pg.rs`) starts a real server that keeps its data across a
//! stop, wants its password over TCP, gives each test its own database, and never outlives its
//! owner: not a panicking test, not its test binary however that ends.

use crate::common;

use common::pg::{self, PgServer};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to `exit` or `hold`) in the probe's environment only.
const PROBE: &str = "BAKEOFF_PG_PROBE";

#[test]
fn a_server_keeps_its_data_across_a_stop() {
    let mut pg = PgServer::start();
    assert_eq!(pg.psql("bakeoff", "SELECT 1").trim(), "1");
    pg.psql(
        "bakeoff",
        "CREATE TABLE runs (id int); INSERT INTO runs VALUES (7)",
    );
    pg.stop();
    let stopped = pg.try_psql("bakeoff", "SELECT 1");
    assert!(
        stopped.is_err(),
        "psql answered a stopped server: {stopped:?}"
    );
    pg.start_again();
    assert_eq!(pg.psql("bakeoff", "SELECT id FROM runs").trim(), "7");
    let port = pg.port();
    pg.restart();
    assert_eq!(pg.port(), port, "a restart keeps the port");
    assert_eq!(pg.psql("bakeoff", "SELECT count(*) FROM runs").trim(), "1");
}

#[test]
fn tcp_needs_the_password() {
    let pg = pg::shared();
    let tcp = |url: String, password: Option<&str>| {
        let mut psql = pg.psql_command();
        psql.arg(url).args(["-c", "SELECT current_user"]);
        if let Some(password) = password {
            psql.env("PGPASSWORD", password);
        }
        run(psql, Duration::from_secs(60))
    };
    let (status, stdout, stderr) = tcp(pg.url_without_password(), Some(pg.password()));
    assert!(status.success(), "PGPASSWORD over TCP: {stderr}");
    assert_eq!(stdout.trim(), "bakeoff");
    let (status, stdout, stderr) = tcp(pg.url(), None);
    assert!(status.success(), "the password in the URL: {stderr}");
    assert_eq!(stdout.trim(), "bakeoff");
    let (status, _, stderr) = tcp(pg.url_without_password(), None);
    assert!(!status.success(), "TCP without a password was let in");
    assert!(stderr.contains("password"), "{stderr}");
    let (status, _, stderr) = tcp(pg.url_without_password(), Some("wrong"));
    assert!(!status.success(), "TCP with a wrong password was let in");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
}

#[test]
fn fresh_databases_are_separate() {
    let pg = pg::shared();
    let first = pg.fresh_database("harness_first");
    let second = pg.fresh_database("harness_second");
    assert!(first.ends_with("/harness_first") && first.contains(pg.password()));
    assert!(second.ends_with("/harness_second"));
    pg.psql("harness_first", "CREATE TABLE only_here (id int)");
    let tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'";
    assert_eq!(pg.psql("harness_first", tables).trim(), "1");
    assert_eq!(pg.psql("harness_second", tables).trim(), "0");
}

#[test]
fn a_panicking_test_leaves_no_server() {
    let (pid, dir) = std::panic::catch_unwind(|| {
        let pg = PgServer::start();
        let owned = (pg.pid().expect("running"), pg.data_dir());
        std::panic::panic_any(owned);
    })
    .expect_err("the closure panics")
    .downcast::<(u32, std::path::PathBuf)>()
    .map(|owned| *owned)
    .expect("the panic carries the pid");
    assert!(!pid_alive(pid as i32), "postgres {pid} outlived the panic");
    assert!(!dir.exists(), "{} outlived the panic", dir.display());
}

/// The probe: starts the shared server, prints its pid, children and directory, then returns
/// (`exit`: the binary ends as every test binary does) or blocks until killed (`hold`).
#[test]
fn probe_holding_the_shared_server() {
    let Ok(mode) = std::env::var(PROBE) else {
        return;
    };
    let pg = pg::shared();
    let pid = pg.pid().expect("running");
    println!("pg-dir {}", pg.data_dir().display());
    println!("pg-pids {pid} {}", children(pid).join(" "));
    if mode == "hold" {
        loop {
            std::thread::park();
        }
    }
}

#[test]
fn no_shared_server_outlives_its_test_binary() {
    for mode in ["exit", "hold"] {
        let (mut probe, pids, dir) = start_probe(mode);
        if mode == "hold" {
            // Only the postmaster is sure to be alive: a child listed a moment ago may be the
            // backend of the probe's own readiness check, ended since.
            assert!(pid_alive(pids[0]), "the postmaster {} runs", pids[0]);
            signal(probe.id(), libc::SIGKILL);
        }
        let status = wait_exit(&mut probe, Duration::from_secs(60));
        if mode == "exit" {
            assert!(status.success(), "the probe failed: {status}");
        }
        let survivors: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|&pid| !gone_within(pid, Duration::from_secs(10)))
            .collect();
        survivors
            .iter()
            .for_each(|&pid| signal(pid as u32, libc::SIGKILL));
        assert!(
            survivors.is_empty(),
            "{survivors:?} outlived the probe ({mode})"
        );
        if mode == "exit" {
            assert!(!dir.exists(), "{} outlived the probe", dir.display());
        } else if let Some(root) = dir.parent() {
            // A SIGKILLed binary runs no exit handler: its directory is left behind.
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// Run the probe in `mode`; returns it with the server's pids and data directory.
fn start_probe(mode: &str) -> (std::process::Child, Vec<i32>, std::path::PathBuf) {
    let mut probe = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "pg_harness::probe_holding_the_shared_server",
            "--exact",
            "--nocapture",
        ])
        .env(PROBE, mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the probe");
    let mut lines = BufReader::new(probe.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut dir = None;
    let pids = lines.by_ref().map_while(Result::ok).find_map(|line| {
        seen.push(line.clone());
        if let Some(path) = line.strip_prefix("pg-dir ") {
            dir = Some(std::path::PathBuf::from(path.trim()));
        }
        let pids = line.strip_prefix("pg-pids ")?;
        Some(
            pids.split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect(),
        )
    });
    let (Some(pids), Some(dir)) = (pids, dir) else {
        panic!(
            "the probe printed no pids; its output:\n{}",
            seen.join("\n")
        );
    };
    // Keep reading, so the probe's last lines do not meet a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (probe, pids, dir)
}

/// The postmaster's children (checkpointer, WAL writer and the like), from /proc.
fn children(pid: u32) -> Vec<String> {
    let parent = pid.to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?;
            (ppid == parent).then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// The kernel kills the server as the probe dies; give it a bounded moment to be reaped.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
