//! The shared llama-server fixture (`common/shared.rs`) never outlives its test binary: this
//! binary runs itself again as a probe that starts the shared server, and checks the server is
//! gone once the probe exits normally and once it is killed with SIGKILL.

use crate::common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to `exit` or `hold`) in the probe's environment only.
const PROBE: &str = "BAKEOFF_SHARED_SERVER_PROBE";

/// The probe: starts the shared server, prints its pid, and then returns (`exit`: the binary
/// ends as every test binary does) or blocks until killed (`hold`). A no-op in a normal run.
#[test]
fn probe_holding_the_shared_server() {
    let Ok(mode) = std::env::var(PROBE) else {
        return;
    };
    let server = shared_server(&[]);
    println!("shared-server-pid {}", server.pid);
    if mode == "hold" {
        loop {
            std::thread::park();
        }
    }
}

/// Run the probe in `mode`; returns it with the shared server's pid, read from its stdout.
fn start_probe(mode: &str) -> (std::process::Child, i32) {
    let mut probe = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "fixture::probe_holding_the_shared_server",
            "--exact",
            "--nocapture",
        ])
        .env(PROBE, mode)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the probe");
    let mut lines = BufReader::new(probe.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let pid = lines.by_ref().map_while(Result::ok).find_map(|line| {
        let pid = line.strip_prefix("shared-server-pid ")?.trim().parse().ok();
        seen.push(line);
        pid
    });
    let Some(pid) = pid else {
        panic!("the probe printed no pid; its output:\n{}", seen.join("\n"));
    };
    // Keep reading, so the probe's last lines do not meet a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (probe, pid)
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

#[test]
fn no_shared_server_outlives_its_test_binary() {
    for mode in ["exit", "hold"] {
        let (mut probe, pid) = start_probe(mode);
        if mode == "hold" {
            assert!(
                pid_alive(pid),
                "the shared server runs while its binary does"
            );
            signal(probe.id(), libc::SIGKILL);
        }
        let status = wait_exit(&mut probe, Duration::from_secs(120));
        if mode == "exit" {
            assert!(status.success(), "the probe failed: {status}");
        }
        let survived = !gone_within(pid, Duration::from_secs(10));
        if survived {
            signal(pid as u32, libc::SIGKILL);
        }
        assert!(
            !survived,
            "llama-server {pid} outlived its test binary ({mode})"
        );
    }
}
