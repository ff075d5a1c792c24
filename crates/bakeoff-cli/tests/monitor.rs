//! `bakeoff monitor` on this machine: rows parse, the summary names every source this machine
//! does not offer with a reason (a VM without RAPL access or a GPU is the expected case here).

use crate::common;

use common::{run, Sandbox};
use std::time::Duration;

#[test]
fn monitor_jsonl_rows_and_unavailable_sources() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args([
        "monitor",
        "--duration",
        "1s",
        "--interval",
        "200ms",
        "-o",
        "jsonl",
    ]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        rows.len() >= 2,
        "a sample at start and one at stop: {stdout}"
    );
    for row in &rows {
        assert!(row["t_s"].as_f64().is_some(), "{row}");
        for reading in row["readings"].as_array().expect("readings") {
            assert!(
                reading["source"].is_string() && reading["value"].is_number(),
                "{reading}"
            );
        }
    }
    let t: Vec<f64> = rows.iter().map(|r| r["t_s"].as_f64().unwrap()).collect();
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "rows in time order: {t:?}"
    );
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("telemetry: "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    assert!(
        summary.contains(&format!("{} samples", rows.len())),
        "{summary}\n{stderr}"
    );
    // Every source is either summarised or named as not available, with a reason.
    for source in ["rapl", "amdgpu", "nvml"] {
        let offered = rows
            .iter()
            .flat_map(|r| r["readings"].as_array().unwrap().iter())
            .any(|r| r["source"].as_str().unwrap().starts_with(source));
        let unavailable = stderr.lines().find(|l| {
            l.trim_start()
                .starts_with(&format!("{source}: not available: "))
        });
        match unavailable {
            Some(line) => assert!(
                line.len() > format!("  {source}: not available: ").len(),
                "{line}"
            ),
            None => assert!(
                offered || stderr.contains(&format!("  {source}:")),
                "{source}: {stderr}"
            ),
        }
    }
}

#[test]
fn monitor_rejects_a_bad_interval_in_one_line() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["monitor", "--interval", "soon"]);
    let (status, _, stderr) = run(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'soon' is not a time span"), "{stderr}");
}

#[test]
fn monitor_ctrl_c_prints_the_summary() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["monitor", "--interval", "100ms", "-o", "jsonl"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first row");
    serde_json::from_str::<serde_json::Value>(&first).expect("row parses");
    common::signal(child.id(), libc::SIGINT);
    let status = common::wait_exit(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("telemetry: "),
        "summary on Ctrl-C: {stderr}"
    );
}
