//! Machines side by side: runs recorded on two hosts (`BAKEOFF_HOST` stands in for a second
//! machine, as a worker does) are listed by host, compared with the host named among the
//! differences, and put in one table by the report — on SQLite and on a real PostgreSQL store.

use crate::common;

use common::{expect_json, expect_ok, pg, run, smollm, Sandbox};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(900);

fn ok(cmd: Command, args: &[&str]) -> String {
    expect_ok(cmd, args, LIMIT)
}

fn json(cmd: Command, args: &[&str]) -> Value {
    expect_json(cmd, args, LIMIT)
}

/// The same bench on `box-a` then `box-b` through `bakeoff` commands from `cmd`; then every view
/// of machines side by side.
fn machines_side_by_side(cmd: impl Fn() -> Command) {
    let model = smollm();
    let bench = [
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "3",
        "--warmup",
        "0",
    ];
    for host in ["box-a", "box-b"] {
        let mut on_host = cmd();
        on_host.env("BAKEOFF_HOST", host);
        ok(on_host, &[&bench[..], &["--tag", host]].concat());
    }

    let hosts = json(cmd(), &["runs", "list", "--host", "-o", "json"]);
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["box-a", "box-b"], "{hosts}");
    assert!(hosts.as_array().unwrap().iter().all(|h| h["runs"] == 1));

    let of_a = json(cmd(), &["runs", "list", "--host", "box-a", "-o", "json"]);
    let of_a = of_a.as_array().unwrap();
    assert_eq!(of_a.len(), 1, "{of_a:?}");
    assert_eq!(of_a[0]["tag"], "box-a");
    assert_eq!(of_a[0]["host"], "box-a");
    let table = ok(cmd(), &["runs", "list"]);
    assert!(table.lines().next().unwrap().contains("HOST"), "{table}");
    assert!(
        table.contains("box-a") && table.contains("box-b"),
        "{table}"
    );
    let mut unknown = cmd();
    unknown.args(["runs", "list", "--host", "box-z"]);
    let (status, _, err) = run(unknown, LIMIT);
    assert!(status.success());
    assert!(err.contains("no runs of host 'box-z'"), "{err}");
    let shown = ok(cmd(), &["runs", "show", "box-b"]);
    assert!(shown.contains("  host     box-b"), "{shown}");

    // The same configuration on both: every cell matches, and the host is what differs.
    let comparison = json(cmd(), &["compare", "box-a", "box-b", "--json"]);
    assert_eq!(
        comparison["rows"].as_array().unwrap().len(),
        2,
        "{comparison}"
    );
    let host = comparison["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["what"] == "host")
        .unwrap_or_else(|| panic!("no host difference: {comparison}"));
    assert_eq!((&host["a"], &host["b"]), (&"box-a".into(), &"box-b".into()));
    let text = ok(cmd(), &["compare", "box-a", "box-b"]);
    assert!(text.contains("host: box-a → box-b"), "{text}");

    let report = ok(
        cmd(),
        &["report", "box-a", "box-b", "-o", "md", "--out", "-"],
    );
    let section = report
        .split("## Machines side by side")
        .nth(1)
        .unwrap_or_else(|| panic!("no machines section: {report}"));
    let section = section.split("\n## ").next().unwrap();
    for test in ["pp16", "tg4"] {
        let row = section
            .lines()
            .find(|l| l.contains(&format!("| {test} |")))
            .unwrap_or_else(|| panic!("no {test} row: {section}"));
        // Both machines' medians with their CI and sample count, then the fastest of the two.
        assert_eq!(row.matches("(n=3)").count(), 2, "{row}");
        assert!(
            row.contains("| box-a |") || row.contains("| box-b |"),
            "{row}"
        );
    }
    let html = ok(
        cmd(),
        &["report", "box-a", "box-b", "-o", "html", "--out", "-"],
    );
    assert!(
        html.contains("id=\"machines-tg\" data-kind=\"bar\" data-marks=\"2\""),
        "one tg bar per machine"
    );
}

#[test]
fn two_hosts_side_by_side_in_sqlite() {
    let sandbox = Sandbox::new();
    machines_side_by_side(|| sandbox.cmd());
}

#[test]
fn two_hosts_side_by_side_in_postgres() {
    let pg = pg::shared();
    let url = pg.fresh_database("hosts");
    let sandbox = Sandbox::new();
    machines_side_by_side(|| sandbox.on(&url));
}
