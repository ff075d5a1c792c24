//! `bakeoff push` and `bakeoff pull` between a local SQLite store and a real PostgreSQL server:
//! a real bench run goes to the team store and back whole, pushing twice adds nothing, and a run
//! changed in the team store is a conflict that is reported, not overwritten.

use crate::common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// `bakeoff` on the sandbox's store, with no team store from the environment.
fn cmd(sandbox: &Sandbox) -> Command {
    let mut cmd = sandbox.cmd();
    cmd.env_remove("BAKEOFF_TEAM_DB");
    cmd
}

fn bakeoff(sandbox: &Sandbox, args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = cmd(sandbox);
    cmd.args(args);
    run(cmd, LIMIT)
}

fn ok(sandbox: &Sandbox, args: &[&str]) -> String {
    expect_ok(cmd(sandbox), args, LIMIT)
}

fn json(sandbox: &Sandbox, args: &[&str]) -> Value {
    expect_json(cmd(sandbox), args, LIMIT)
}

/// (kind, status, trials, samples) of every run in a store, newest first.
fn runs(sandbox: &Sandbox, db: &str) -> Vec<(String, String, i64, i64)> {
    let list = json(sandbox, &["runs", "list", "--db", db, "--json"]);
    let runs = list.as_array().expect("a list of runs");
    runs.iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let number = |k: &str| r[k].as_i64().unwrap_or(-1);
            (
                text("kind"),
                text("status"),
                number("trials"),
                number("samples"),
            )
        })
        .collect()
}

/// Every sample value of a run, trial by trial, as `runs show --json` gives them.
fn sample_values(sandbox: &Sandbox, db: &str, run: &str) -> Vec<Vec<(String, f64)>> {
    let detail = json(sandbox, &["runs", "show", run, "--db", db, "--json"]);
    let trials = detail["trials"].as_array().expect("trials");
    trials
        .iter()
        .map(|t| {
            let samples = t["samples"].as_array().expect("samples");
            samples
                .iter()
                .map(|s| {
                    (
                        s["metric"].as_str().unwrap().to_string(),
                        s["value"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

fn row_counts(pg: &pg::PgServer, database: &str) -> String {
    let sql = "SELECT (SELECT count(*) FROM runs) || ' ' || (SELECT count(*) FROM trials) || ' ' ||
               (SELECT count(*) FROM samples) || ' ' || (SELECT count(*) FROM engine_logs) || ' ' ||
               (SELECT count(*) FROM models) || ' ' || (SELECT count(*) FROM engines) || ' ' ||
               (SELECT count(*) FROM journal) || ' ' || (SELECT count(*) FROM profiles)";
    pg.psql(database, sql).trim().to_string()
}

fn db_text(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_bench_run_goes_to_the_team_store_and_back_once() {
    let pg = pg::shared();
    let url = pg.fresh_database("push_round_trip");
    let sandbox = Sandbox::new();
    let local = db_text(&sandbox.db());
    let mut bench = sandbox.cmd();
    bench.arg("bench").arg("-m").arg(smollm());
    bench.args(["-p", "16", "-n", "8", "-r", "1", "--warmup", "0"]);
    let (status, _, stderr) = run(bench, LIMIT);
    assert!(status.success(), "bench: {stderr}");
    let here = runs(&sandbox, &local);
    assert_eq!(here.len(), 1);
    assert_eq!(here[0].1, "ok");
    assert!(here[0].3 > 0, "the bench stored samples");
    ok(
        &sandbox,
        &[
            "journal", "add", "defaults", "--before", "last", "--after", "last",
        ],
    );
    ok(&sandbox, &["profile", "save", "daily", "--from", "last"]);

    let (status, stdout, stderr) = bakeoff(&sandbox, &["push", "--to", &url]);
    assert!(status.success(), "push: {stderr}");
    assert!(stdout.contains("→ team run 1"), "{stdout}");
    assert!(stdout.contains(") → team entry 1"), "{stdout}");
    assert!(
        stdout.contains("profile daily → team profile 1"),
        "{stdout}"
    );
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains(pg.password()),
            "the password was printed: {output}"
        );
    }
    assert_eq!(
        runs(&sandbox, &url),
        here,
        "same run, trials and samples there"
    );
    assert_eq!(
        sample_values(&sandbox, &url, "1"),
        sample_values(&sandbox, &local, "last")
    );
    let once = row_counts(pg, "push_round_trip");

    let again = ok(&sandbox, &["push", "--to", &url]);
    assert!(again.contains("unchanged (team run 1)"), "{again}");
    assert!(again.contains("unchanged (team entry 1)"), "{again}");
    assert_eq!(
        row_counts(pg, "push_round_trip"),
        once,
        "a second push added rows"
    );

    // Pull into a fresh store, the team store named by BAKEOFF_TEAM_DB.
    let fresh = db_text(&sandbox.dir.path().join("fresh.db"));
    let mut pull = sandbox.cmd();
    pull.env("BAKEOFF_TEAM_DB", &url)
        .args(["pull", "--db", &fresh, "--json"]);
    let (status, stdout, stderr) = run(pull, LIMIT);
    assert!(status.success(), "pull: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["runs"][0]["outcome"], "copied", "{report}");
    assert_eq!(report["conflicts"], 0);
    assert!(!stdout.contains(pg.password()), "{stdout}");
    assert_eq!(runs(&sandbox, &fresh), here);
    let profile = json(
        &sandbox,
        &["profile", "show", "daily", "--db", &fresh, "--json"],
    );
    assert_eq!(profile["run_id"], 1, "{profile}");
    let journal = ok(&sandbox, &["journal", "show", "--db", &fresh]);
    assert!(journal.contains("defaults"), "{journal}");
    assert_eq!(
        sample_values(&sandbox, &fresh, "last"),
        sample_values(&sandbox, &local, "last")
    );
}

#[test]
fn a_run_changed_in_the_team_store_is_a_conflict_and_stays_as_it_is() {
    let pg = pg::shared();
    let url = pg.fresh_database("push_conflict");
    let sandbox = Sandbox::new();
    let mut bench = sandbox.cmd();
    bench.arg("bench").arg("-m").arg(smollm());
    bench.args(["-p", "16", "-n", "8", "-r", "1", "--warmup", "0"]);
    let (status, _, stderr) = run(bench, LIMIT);
    assert!(status.success(), "bench: {stderr}");
    ok(&sandbox, &["push", "last", "--to", &url]);
    pg.psql("push_conflict", "UPDATE runs SET status = 'interrupted'");
    let counts = row_counts(pg, "push_conflict");

    let (status, stdout, stderr) = bakeoff(&sandbox, &["push", "--to", &url]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("conflict: status ok here, interrupted there (team run 1)"),
        "{stdout}"
    );
    assert!(stderr.contains("1 conflict with postgres://"), "{stderr}");
    assert!(!stderr.contains(pg.password()), "{stderr}");
    assert_eq!(row_counts(pg, "push_conflict"), counts);
    let status = pg.psql("push_conflict", "SELECT status FROM runs");
    assert_eq!(
        status.trim(),
        "interrupted",
        "the team's copy was overwritten"
    );

    // Pulling sees the same conflict from the other side.
    let mut pull = Command::new(env!("CARGO_BIN_EXE_bakeoff"));
    pull.env("BAKEOFF_DB", sandbox.db())
        .env("BAKEOFF_LOCK", sandbox.dir.path().join("measure.lock"))
        .args(["pull", "--from", &url, "--json"]);
    let (status, stdout, _) = run(pull, LIMIT);
    assert_eq!(status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let difference = &report["runs"][0]["differences"][0];
    assert_eq!(difference["field"], "status");
    assert_eq!(
        (&difference["source"], &difference["destination"]),
        (&Value::from("interrupted"), &Value::from("ok"))
    );
}
