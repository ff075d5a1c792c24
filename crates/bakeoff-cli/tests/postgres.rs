//! The team store: every command against a real PostgreSQL server (started by the test setup on
//! a private directory and port, see common/pg.rs), its credentials, and its schema versions.

use crate::common;

use common::pg::{self, PgServer};
use common::{run, smollm, Sandbox};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(900);

/// `bakeoff` against `url` (the sandbox keeps the lock and run files apart).
fn on(sandbox: &Sandbox, url: &str) -> Command {
    sandbox.on(url)
}

fn ok(mut cmd: Command, args: &[&str]) -> (String, String) {
    cmd.args(args);
    let (status, out, err) = run(cmd, LIMIT);
    assert!(status.success(), "bakeoff {args:?} failed: {err}\n{out}");
    (out, err)
}

/// Run a command that must fail; its stderr.
fn fails(mut cmd: Command, args: &[&str]) -> String {
    cmd.args(args);
    let (status, out, err) = run(cmd, LIMIT);
    assert!(!status.success(), "bakeoff {args:?} succeeded: {out}");
    err
}

fn count(pg: &PgServer, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql).trim().parse().expect("a count")
}

/// The checks at their smallest, canaries off (their sizes are tested in gate.rs).
const LIGHT_CHECKS: &str = "[checks]\ncanaries = false\nagreement_prompts = 2\nagreement_tokens = 16\nkld_chunks = 4\ntg_reps = 1\ntg_tokens = 16\n";

#[test]
fn bench_report_compare_and_gate_run_against_postgres_and_no_password_is_kept() {
    let pg = pg::shared();
    let url = pg.fresh_database("commands");
    let sandbox = Sandbox::new();
    let model = smollm();
    let model = model.to_str().unwrap();
    let bench = ["bench", "-m", model, "-p", "16", "-n", "8", "-r", "2"];
    // Once with the URL on the command line, where the stored command must not keep its password.
    let mut first = on(&sandbox, "unused");
    first.args(["--db", &url]);
    let (table, err) = ok(
        first,
        &[&bench[..], &["--kv", "f16,q8_0", "--tag", "a"]].concat(),
    );
    assert!(table.contains("pp16") && table.contains("tg8"), "{table}");
    let (_, err2) = ok(
        on(&sandbox, &url),
        &[&bench[..], &["--kv", "f16", "--tag", "b"]].concat(),
    );
    for text in [&table, &err, &err2] {
        assert!(
            !text.contains(pg.password()),
            "the password was printed: {text}"
        );
    }
    let commands = pg.psql("commands", "SELECT command FROM runs ORDER BY id");
    assert!(!commands.contains(pg.password()), "{commands}");
    assert!(
        commands.contains(":***@"),
        "the URL is kept, masked: {commands}"
    );
    assert!(count(pg, "commands", "SELECT count(*) FROM samples") > 0);
    assert_eq!(
        count(
            pg,
            "commands",
            "SELECT count(DISTINCT uuid) FROM runs WHERE host IS NOT NULL"
        ),
        2
    );

    let (list, _) = ok(on(&sandbox, &url), &["runs", "list"]);
    assert!(list.contains(" a ") || list.contains("a  "), "{list}");
    let (show, _) = ok(on(&sandbox, &url), &["runs", "show", "a"]);
    assert!(show.contains("pp16"), "{show}");
    let (compared, _) = ok(on(&sandbox, &url), &["compare", "a", "b"]);
    assert!(compared.contains("What differs"), "{compared}");
    let (report, _) = ok(on(&sandbox, &url), &["report", "a", "-o", "md"]);
    assert!(report.contains("pp16"), "{report}");

    let gate = sandbox.dir.path().join("gate.toml");
    let spec = format!(
        "model = \"{model}\"\nctx = 1024\n[baseline]\nname = \"f16\"\nflags = \"-fa on\"\n[[candidate]]\nname = \"q8_0\"\nflags = \"-fa on -ctk q8_0 -ctv q8_0\"\n{LIGHT_CHECKS}"
    );
    std::fs::write(&gate, spec).unwrap();
    let (readiness, _) = ok(
        on(&sandbox, &url),
        &["gate", gate.to_str().unwrap(), "--tag", "g"],
    );
    assert!(readiness.contains("q8_0"), "{readiness}");
    let (shown, _) = ok(on(&sandbox, &url), &["gate", "--show", "g"]);
    assert!(shown.contains("q8_0"), "{shown}");
    assert!(count(pg, "commands", "SELECT count(*) FROM fidelity") > 0);
}

#[test]
fn credentials_come_from_the_url_a_password_file_or_pgpassword() {
    let pg = pg::shared();
    pg.fresh_database("creds");
    let sandbox = Sandbox::new();
    let bare = format!("postgres://{}@127.0.0.1:{}/creds", pg::USER, pg.port());
    let with_password = format!(
        "postgres://{}:{}@127.0.0.1:{}/creds",
        pg::USER,
        pg.password(),
        pg.port()
    );
    ok(on(&sandbox, &with_password), &["runs", "list"]);

    let mut refused = on(&sandbox, &bare);
    refused.env("PGPASSFILE", sandbox.dir.path().join("none"));
    let err = fails(refused, &["runs", "list"]);
    assert!(
        err.contains("postgres://bakeoff@127.0.0.1"),
        "names the store: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let mut env_password = on(&sandbox, &bare);
    env_password.env("PGPASSWORD", pg.password());
    ok(env_password, &["runs", "list"]);

    let passfile = sandbox.dir.path().join("pgpass");
    let line = format!(
        "127.0.0.1:{}:creds:{}:{}\n",
        pg.port(),
        pg::USER,
        pg.password()
    );
    std::fs::write(&passfile, line).unwrap();
    let in_url = format!("{bare}?passfile={}", passfile.display());
    ok(on(&sandbox, &in_url), &["runs", "list"]);
    let mut in_env = on(&sandbox, &bare);
    in_env.env("PGPASSFILE", &passfile);
    let (_, err) = ok(in_env, &["db", "status"]);
    assert!(!err.contains(pg.password()));
}

#[test]
fn a_schema_older_or_newer_than_the_binary_is_refused_naming_both_versions() {
    let pg = pg::shared();
    let url = pg.fresh_database("versions");
    let sandbox = Sandbox::new();
    let (status, _) = ok(on(&sandbox, &url), &["db", "status"]);
    assert!(status.contains("schema version 0"), "{status}");
    ok(on(&sandbox, &url), &["runs", "list"]); // an empty store gets the schema
    let (status, _) = ok(on(&sandbox, &url), &["db", "status"]);
    let current: usize = pg
        .psql("versions", "SELECT version FROM bakeoff_schema")
        .trim()
        .parse()
        .unwrap();
    assert!(
        status.contains(&format!("schema version {current}, current")),
        "{status}"
    );

    pg.psql("versions", "UPDATE bakeoff_schema SET version = 99");
    let err = fails(on(&sandbox, &url), &["runs", "list"]);
    assert!(
        err.contains("schema version 99, newer than this bakeoff's"),
        "{err}"
    );
    assert!(err.contains(&current.to_string()), "{err}");

    // A real older schema: the store as migration 11 left it (before the queue tables).
    pg.psql(
        "versions",
        "DROP TABLE queue_builds, queue_requires, queue_items, queue_experiments CASCADE;
         ALTER TABLE runs DROP COLUMN queue_item;
         UPDATE bakeoff_schema SET version = 11",
    );
    let err = fails(on(&sandbox, &url), &["runs", "list"]);
    assert!(
        err.contains("schema version 11, older than this bakeoff's"),
        "{err}"
    );
    assert!(err.contains("bakeoff db migrate"), "{err}");
    let (migrated, _) = ok(on(&sandbox, &url), &["db", "migrate"]);
    assert!(migrated.contains(&format!("11 → {current}")), "{migrated}");
    ok(on(&sandbox, &url), &["runs", "list"]);
    ok(on(&sandbox, &url), &["queue"]);
}
