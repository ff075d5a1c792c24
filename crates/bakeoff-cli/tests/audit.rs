//! `bakeoff doctor --audit` against fixture trees (`BAKEOFF_AUDIT_ROOT`): the checklist table and
//! score, the `--json` shape, readiness of a saved profile's model and of the port, and the audit
//! stored with every run, named by `compare` (runs against the scripted endpoint: no engine).

use crate::common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A machine tuned (or not) in the ways the audit checks, with an H200 behind a fake nvidia-smi.
fn machine(root: &Path, tuned: bool) {
    let pick = |good: &'static str, bad: &'static str| if tuned { good } else { bad };
    for cpu in ["cpu0", "cpu1"] {
        let dir = format!("/sys/devices/system/cpu/{cpu}/cpufreq");
        let governor = pick("performance", "powersave");
        write(root, &format!("{dir}/scaling_governor"), governor);
        let preference = pick("performance", "balance_power");
        write(
            root,
            &format!("{dir}/energy_performance_preference"),
            preference,
        );
    }
    let thp = pick("always [madvise] never", "always madvise [never]");
    write(root, "/sys/kernel/mm/transparent_hugepage/enabled", thp);
    write(root, "/proc/sys/vm/swappiness", pick("10", "60"));
    write(root, "/proc/sys/vm/max_map_count", "65530");
    write(root, "/sys/devices/system/node/node0/cpulist", "0-1");
    write(root, "/proc/meminfo", "MemTotal:       16384000 kB\n");
    let memlock = pick(
        "unlimited            unlimited",
        "8388608              8388608",
    );
    let limits = format!("Limit  Soft Limit  Hard Limit  Units\nMax locked memory         {memlock}            bytes\n");
    write(root, "/proc/self/limits", &limits);
    let persistence = pick("Enabled", "Disabled");
    let gpu = format!("0, NVIDIA H200, {persistence}, 1980, 3201, 1980, 3201, 700.00, 700.00, 5, 5, 16, 16, Enabled");
    write(
        root,
        "/usr/bin/nvidia-smi",
        &format!("#!/bin/sh\necho '{gpu}'\n"),
    );
    use std::os::unix::fs::PermissionsExt;
    let script = root.join("usr/bin/nvidia-smi");
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn audit_cmd(sandbox: &Sandbox, root: &Path) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_AUDIT_ROOT", root);
    cmd
}

/// A port nothing listens on (bound and released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_checklist_shows_each_check_its_fix_and_the_score() {
    let (sandbox, root) = (Sandbox::new(), tempfile::tempdir().unwrap());
    machine(root.path(), false);
    let mut cmd = audit_cmd(&sandbox, root.path());
    cmd.args(["doctor", "--audit", "--port", &free_port().to_string()]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert_eq!(status.code(), Some(0), "an audit is information: {stderr}");
    assert!(
        stdout.contains("| check | status | current | recommended | fix |"),
        "{stdout}"
    );
    let row = |title: &str| {
        let prefix = format!("| {title} |");
        let found = stdout.lines().find(|l| l.starts_with(&prefix));
        found
            .unwrap_or_else(|| panic!("no row {title}: {stdout}"))
            .to_string()
    };
    assert!(row("CPU governor").contains("| FAIL | powersave | performance |"));
    assert!(row("swappiness").contains("| warn | 60 | 10 or less | sudo sysctl vm.swappiness=10 |"));
    assert!(row("GPU0 persistence mode").contains("sudo nvidia-smi -i 0 -pm 1"));
    assert!(row("GPU0 power limit").contains("| pass | 700 W |"));
    assert!(row("NUMA balancing").contains("| n/a | 1 NUMA node |"));
    assert!(row("AMD GPUs").contains("| n/a |"));
    // governor, preference, THP, swappiness, memlock and persistence are off; map count and five GPU checks pass.
    assert!(
        stdout.contains("\nscore 6/12 (2 not applicable)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n      echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor\n"), "{stdout}");
    assert!(stdout.contains("Deployment readiness:"), "{stdout}");
    assert!(stdout.contains("profiles   none saved"), "{stdout}");
    assert!(stdout.contains(": free\n"), "{stdout}");
}

#[test]
fn json_holds_the_checks_the_score_and_readiness() {
    let (sandbox, root) = (Sandbox::new(), tempfile::tempdir().unwrap());
    machine(root.path(), true);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut cmd = audit_cmd(&sandbox, root.path());
    cmd.args(["doctor", "--audit", "--json", "--port", &port]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let audit = &doc["audit"];
    assert_eq!(audit["root"], root.path().display().to_string());
    assert_eq!(
        (audit["passed"].as_u64(), audit["applicable"].as_u64()),
        (Some(12), Some(12))
    );
    let checks = audit["checks"].as_array().unwrap();
    for check in checks {
        for key in [
            "id",
            "area",
            "title",
            "status",
            "current",
            "recommended",
            "why",
        ] {
            assert!(check[key].is_string(), "{key} in {check}");
        }
    }
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"nvidia.gpu0.pcie_width") && ids.contains(&"cpu.governor"),
        "{ids:?}"
    );
    let readiness = &doc["readiness"];
    assert_eq!(readiness["port"]["port"].to_string(), port);
    assert_eq!(readiness["port"]["free"], false, "our listener holds it");
    assert_eq!(readiness["lock"]["state"], "free");
    assert_eq!(readiness["profiles"], serde_json::json!([]));
    drop(listener);
}

/// `load --serve-scripted` and its URL once it is ready.
fn scripted(sandbox: &Sandbox) -> (Child, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "--serve-scripted"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn scripted endpoint");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("ready ").expect("ready line");
    (child, url.to_string())
}

#[test]
fn each_run_stores_its_audit_and_compare_names_what_changed() {
    let sandbox = Sandbox::new();
    let (slow, fast) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    machine(slow.path(), false);
    machine(fast.path(), true);
    let (mut server, url) = scripted(&sandbox);
    for root in [slow.path(), fast.path()] {
        let mut cmd = audit_cmd(&sandbox, root);
        cmd.args([
            "load",
            "--url",
            &url,
            "--concurrency",
            "1",
            "--requests",
            "2",
        ]);
        let (status, _, stderr) = run(cmd, LIMIT);
        assert!(status.success(), "{stderr}");
    }
    signal(server.id(), libc::SIGTERM);
    wait_exit(&mut server, LIMIT);
    let mut cmd = sandbox.cmd();
    cmd.args(["compare", "1", "2"]);
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("- audit: CPU governor: powersave → performance\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- audit: GPU0 persistence mode: Disabled → Enabled\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("audit: vm.max_map_count"),
        "unchanged: {stdout}"
    );
    let mut cmd = sandbox.cmd();
    cmd.args(["compare", "1", "2", "--json"]);
    let (_, stdout, _) = run(cmd, LIMIT);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let lines = doc["audit_differences"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l == "swappiness: 60 → 10"),
        "{lines:?}"
    );
}
