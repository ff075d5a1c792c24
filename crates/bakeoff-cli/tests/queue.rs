//! Many hosts, one experiment: `--queue` and `bakeoff worker` on a real PostgreSQL server, with
//! several worker processes on this machine standing in for hosts (each its own measurement lock
//! and `--host`), and the faults a team store meets: a worker killed with -9, the database
//! restarted and stopped mid-sweep, workers racing for one item; and a worker takes only what it
//! can run (a build it lacks is left to others).

use crate::common;

use bakeoff::store::queue::{NewExperiment, QueueMode};
use bakeoff::store::Store;
use common::pg::{self, PgServer};
use common::{run, second_build, smollm, wait_exit, Sandbox};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(900);

/// `bakeoff` on `url`, as a host of its own (its own lock and run files).
fn host_cmd(host: &Sandbox, url: &str) -> Command {
    let mut cmd = host.cmd();
    cmd.env("BAKEOFF_DB", url)
        .env("XDG_DATA_HOME", host.dir.path())
        .env_remove("PGPASSWORD");
    cmd
}

fn enqueue(url: &str, args: &[&str]) -> String {
    let sandbox = Sandbox::new();
    let model = smollm();
    let mut cmd = host_cmd(&sandbox, url);
    cmd.args(["bench", "-m", model.to_str().unwrap(), "-p", "16"])
        .args(args)
        .arg("--queue");
    let (status, out, err) = run(cmd, LIMIT);
    assert!(status.success(), "enqueue failed: {err}");
    assert!(err.contains("enqueued bench experiment"), "{err}");
    out.trim().to_string()
}

fn worker(host: &Sandbox, url: &str, name: &str, extra: &[&str]) -> Child {
    let log = std::fs::File::create(host.dir.path().join(format!("{name}.log"))).unwrap();
    // Quick polls, unless the test sets its own.
    let poll = match extra.contains(&"--poll") {
        true => &[][..],
        false => &["--poll", "200ms"][..],
    };
    host_cmd(host, url)
        .args(["worker", "--host", name])
        .args(poll)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a worker")
}

fn worker_log(host: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(host.dir.path().join(format!("{name}.log"))).unwrap_or_default()
}

fn value(pg: &PgServer, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql).trim().parse().expect("a number")
}

/// Wait (bounded) until `sql` counts above `floor`: the condition itself, not a guessed delay.
fn wait_for(pg: &PgServer, db: &str, sql: &str, floor: i64, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = pg.try_psql(db, sql) {
            let n: i64 = text.trim().parse().unwrap_or(0);
            if n > floor {
                return n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "`{sql}` stayed at {floor} for {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn no_duplicate_samples(pg: &PgServer, db: &str) {
    let duplicates = value(
        pg,
        db,
        "SELECT count(*) FROM (SELECT trial_id, metric, source, seq FROM samples
         GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d",
    );
    assert_eq!(duplicates, 0, "a sample was stored twice");
}

#[test]
fn a_split_sweep_is_measured_once_across_two_workers_and_each_runs_on_every_host() {
    let pg = pg::shared();
    let url = pg.fresh_database("split");
    let uuid = enqueue(
        &url,
        &["-n", "8", "-r", "1", "--kv", "f16,q8_0", "--tag", "split"],
    );
    assert_eq!(uuid.len(), 32, "{uuid}");
    enqueue(
        &url,
        &[
            "-n", "8", "-r", "1", "--kv", "f16", "--tag", "each", "--each",
        ],
    );
    assert_eq!(value(pg, "split", "SELECT count(*) FROM queue_items"), 2);

    let (a, b) = (Sandbox::new(), Sandbox::new());
    let mut workers = [
        worker(&a, &url, "host-a", &["--idle-exit", "3s"]),
        worker(&b, &url, "host-b", &["--idle-exit", "3s"]),
    ];
    for (w, host) in workers.iter_mut().zip([&a, &b]) {
        let status = wait_exit(w, LIMIT);
        assert!(status.success(), "{}", worker_log(host, "host"));
    }
    let done = "SELECT count(*) FROM queue_items WHERE status = 'done'";
    assert_eq!(
        value(pg, "split", done),
        4,
        "2 split cells + 1 each-item per host"
    );
    let split_runs = "SELECT count(*) FROM runs WHERE tag = 'split' AND status = 'ok' AND queue_item IS NOT NULL";
    assert_eq!(value(pg, "split", split_runs), 2);
    let cells = "SELECT count(DISTINCT t.config_id) FROM trials t JOIN runs r ON r.id = t.run_id WHERE r.tag = 'split'";
    assert_eq!(
        value(pg, "split", cells),
        2,
        "each cell measured, none twice"
    );
    let hosts = "SELECT count(DISTINCT host) FROM runs WHERE tag = 'each' AND status = 'ok'";
    assert_eq!(value(pg, "split", hosts), 2, "--each ran on both hosts");
    let shards = pg.psql(
        "split",
        "SELECT command FROM runs WHERE tag = 'split' ORDER BY command",
    );
    assert!(
        shards.contains("--shard 1/2") && shards.contains("--shard 2/2"),
        "{shards}"
    );
    no_duplicate_samples(pg, "split");

    let (status, listing, _) = run(
        {
            let mut c = host_cmd(&a, &url);
            c.arg("queue");
            c
        },
        LIMIT,
    );
    assert!(status.success());
    assert!(
        listing.contains("host-a") && listing.contains("done"),
        "{listing}"
    );
}

#[test]
fn an_idle_worker_is_woken_by_an_enqueue_not_by_its_poll() {
    let pg = pg::shared();
    let url = pg.fresh_database("notify");
    let host = Sandbox::new();
    let mut w = worker(&host, &url, "host-n", &["--poll", "1h"]);
    // It listens once it has found the queue empty.
    let listening = "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = 'notify' AND query = 'LISTEN bakeoff_queue'";
    wait_for(pg, "notify", listening, 0, LIMIT);
    enqueue(
        &url,
        &["-n", "8", "-r", "1", "--kv", "f16", "--tag", "woken"],
    );
    // With an hour between looks, only the notification can have started the item.
    let done = "SELECT count(*) FROM queue_items WHERE status = 'done'";
    wait_for(pg, "notify", done, 0, Duration::from_secs(300));
    // A signal is heard while it waits for the next announcement.
    common::signal(w.id(), libc::SIGTERM);
    let status = wait_exit(&mut w, Duration::from_secs(60));
    assert!(status.code().is_some(), "{}", worker_log(&host, "host-n"));
    let log = worker_log(&host, "host-n");
    assert!(log.contains("item 1: bench"), "{log}");
}

#[test]
fn an_experiment_file_and_relative_model_path_travel_with_the_item() {
    // Regression: a worker ran the enqueued command line as it was, so an experiment file (and
    // a model named relative to it) had to exist at the same path on every worker.
    let pg = pg::shared();
    let url = pg.fresh_database("shipped");
    {
        let here = Sandbox::new();
        let models = here.dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        std::os::unix::fs::symlink(smollm(), models.join("smol.gguf")).unwrap();
        let experiment = "model = \"models/smol.gguf\"\nreps = 1\ntag = \"shipped\"\n\
                          [matrix]\nctk = \"q8_0\"\np = 16\nn = 8\n";
        std::fs::write(here.dir.path().join("exp.toml"), experiment).unwrap();
        let mut cmd = host_cmd(&here, &url);
        cmd.current_dir(here.dir.path())
            .args(["bench", "--config", "exp.toml", "--queue"]);
        let (status, _, err) = run(cmd, LIMIT);
        assert!(status.success(), "enqueue failed: {err}");
    } // the enqueuing host's folder, its experiment file and its model link are gone now
    let host = Sandbox::new();
    let mut w = worker(&host, &url, "host-s", &["--idle-exit", "3s"]);
    let status = wait_exit(&mut w, LIMIT);
    assert!(status.success(), "{}", worker_log(&host, "host-s"));
    let ok = "SELECT count(*) FROM runs WHERE tag = 'shipped' AND status = 'ok'";
    assert_eq!(
        value(pg, "shipped", ok),
        1,
        "{}",
        worker_log(&host, "host-s")
    );
    let flags = pg.psql(
        "shipped",
        "SELECT c.flags FROM configs c JOIN trials t ON t.config_id = c.id",
    );
    assert!(
        flags.contains("q8_0"),
        "the file's matrix was measured: {flags}"
    );
}

#[test]
fn a_worker_killed_with_9_leaves_its_item_to_another_and_it_is_measured_once() {
    let pg = pg::shared();
    let url = pg.fresh_database("killed");
    enqueue(&url, &["-n", "8", "-r", "4", "--kv", "f16", "--tag", "k"]);
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let mut first = worker(&a, &url, "host-a", &["--lease", "2"]);
    wait_for(pg, "killed", "SELECT count(*) FROM samples", 0, LIMIT);
    common::signal(first.id(), libc::SIGKILL);
    wait_exit(&mut first, LIMIT);

    let mut second = worker(&b, &url, "host-b", &["--lease", "2", "--idle-exit", "8s"]);
    let status = wait_exit(&mut second, LIMIT);
    assert!(status.success(), "{}", worker_log(&b, "host-b"));
    let item = pg.psql(
        "killed",
        "SELECT status || ' ' || host || ' ' || attempts FROM queue_items",
    );
    assert_eq!(item.trim(), "done host-b 2", "re-run by the second worker");
    assert_eq!(
        value(
            pg,
            "killed",
            "SELECT count(*) FROM runs WHERE status = 'ok'"
        ),
        1,
        "measured to the end once"
    );
    let dead = pg.psql(
        "killed",
        "SELECT host || ' ' || status FROM runs WHERE status <> 'ok'",
    );
    assert_eq!(
        dead.trim(),
        "host-a running",
        "the killed run stays as it was left"
    );
    no_duplicate_samples(pg, "killed");
}

#[test]
fn the_database_restarted_and_stopped_mid_sweep_loses_and_duplicates_nothing() {
    // Its own server: restarting the shared one would cut off the other tests.
    let mut pg = PgServer::start();
    let url = pg.fresh_database("faults");
    enqueue(
        &url,
        &["-r", "3", "--kv", "f16,q8_0", "-n", "16", "--tag", "f"],
    );
    let host = Sandbox::new();
    let mut w = {
        let mut cmd = host_cmd(&host, &url);
        cmd.env("BAKEOFF_DB_RETRY_S", "120");
        let log = std::fs::File::create(host.dir.path().join("w.log")).unwrap();
        cmd.args([
            "worker",
            "--host",
            "h",
            "--poll",
            "200ms",
            "--idle-exit",
            "3s",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
    };
    let samples = "SELECT count(*) FROM samples";
    let before = wait_for(&pg, "faults", samples, 0, LIMIT);
    pg.restart();
    let after_restart = wait_for(&pg, "faults", samples, before, LIMIT);
    // A partition: the server gone for a while, then back.
    pg.stop();
    std::thread::sleep(Duration::from_secs(3)); // the length of the outage, not a wait for anything
    pg.start_again();
    wait_for(&pg, "faults", samples, after_restart, LIMIT);
    let status = wait_exit(&mut w, LIMIT);
    let log = std::fs::read_to_string(host.dir.path().join("w.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    assert_eq!(
        value(
            &pg,
            "faults",
            "SELECT count(*) FROM queue_items WHERE status = 'done'"
        ),
        2,
        "{log}"
    );
    assert_eq!(
        value(
            &pg,
            "faults",
            "SELECT count(*) FROM runs WHERE status = 'ok'"
        ),
        2,
        "{log}"
    );
    let trials = "SELECT count(*) FROM trials WHERE status = 'ok'";
    assert_eq!(
        value(&pg, "faults", trials),
        12,
        "2 cells × pp, tg × 3 repetitions"
    );
    no_duplicate_samples(&pg, "faults");
}

#[test]
fn a_worker_takes_only_experiments_on_builds_it_has_and_runs_its_own_copy() {
    let pg = pg::shared();
    let url = pg.fresh_database("builds");
    // The enqueuing host has the older build at a path no worker has (a link, removed after).
    let elsewhere = tempfile::tempdir().unwrap();
    let old = elsewhere.path().join("old-build");
    std::os::unix::fs::symlink(second_build(), &old).unwrap();
    let build = format!("old={}", old.display());
    enqueue(
        &url,
        &["-n", "4", "-r", "1", "--build", &build, "--tag", "builds"],
    );
    let needs = pg.psql("builds", "SELECT build || ' ' || name FROM queue_builds");
    assert!(needs.trim().starts_with("b10798"), "{needs}");
    assert!(needs.trim().ends_with(" old"), "{needs}");
    // The default engine is this host's build, unless each worker may use its own.
    let default = enqueue(&url, &["-n", "4", "--tag", "default"]);
    let own = enqueue(&url, &["-n", "4", "--tag", "own", "--any-build"]);
    let needed = |uuid: &str| {
        let sql = format!("SELECT count(*) FROM queue_builds b JOIN queue_experiments x ON x.id = b.experiment_id WHERE x.uuid = '{uuid}'");
        value(pg, "builds", &sql)
    };
    assert_eq!((needed(&default), needed(&own)), (1, 0));
    pg.psql("builds", "DELETE FROM queue_items WHERE experiment_id IN (SELECT id FROM queue_experiments WHERE tag IN ('default', 'own'))");
    std::fs::remove_file(&old).unwrap();

    // A host without that build (an empty engine cache, none on PATH) leaves the item.
    let bare = Sandbox::new();
    let empty_home = bare.dir.path().join("home");
    std::fs::create_dir(&empty_home).unwrap();
    let log = std::fs::File::create(bare.dir.path().join("bare.log")).unwrap();
    let mut cmd = host_cmd(&bare, &url);
    cmd.args([
        "worker",
        "--host",
        "bare",
        "--poll",
        "200ms",
        "--idle-exit",
        "1s",
    ])
    .env("BAKEOFF_HOME", &empty_home)
    .env("PATH", "/usr/bin:/bin")
    .stdout(Stdio::null())
    .stderr(log);
    let status = wait_exit(&mut cmd.spawn().unwrap(), LIMIT);
    let said = worker_log(&bare, "bare");
    assert!(status.success(), "{said}");
    assert!(
        said.contains("not taking experiments that run on llama.cpp b10798"),
        "{said}"
    );
    let queued = "SELECT count(*) FROM queue_items WHERE status = 'queued' AND attempts = 0";
    assert_eq!(value(pg, "builds", queued), 1, "the bare host took it");

    // A host with it (the set-up cache holds both builds) runs it on its own copy.
    let full = Sandbox::new();
    let status = wait_exit(
        &mut worker(&full, &url, "full", &["--idle-exit", "1s"]),
        LIMIT,
    );
    assert!(status.success(), "{}", worker_log(&full, "full"));
    let done = "SELECT count(*) FROM queue_items WHERE status = 'done'";
    assert_eq!(
        value(pg, "builds", done),
        1,
        "{}",
        worker_log(&full, "full")
    );
    let command = pg.psql("builds", "SELECT command FROM runs WHERE tag = 'builds'");
    let local = second_build().canonicalize().unwrap();
    assert!(
        command.contains(&format!("old={}", local.display())),
        "the worker's own copy of the build: {command}"
    );
    let builds = "SELECT count(*) FROM trials t JOIN engines e ON e.id = t.engine_id
                  JOIN runs r ON r.id = t.run_id WHERE r.tag = 'builds' AND e.build_number = 10798";
    assert!(value(pg, "builds", builds) > 0, "measured on b10798");
}

fn experiment(store: &Store, shards: usize) {
    let argv: Vec<String> = Vec::new();
    store
        .enqueue(&NewExperiment {
            kind: "bench",
            mode: QueueMode::Split,
            argv: &argv,
            shards,
            host_tag: None,
            tag: None,
            requires: &[],
            builds: &[],
            shipped: &Default::default(),
        })
        .unwrap();
}

fn open(url: &str) -> Store {
    Store::open(Path::new(url)).unwrap()
}

#[test]
fn workers_racing_for_one_item_have_exactly_one_winner() {
    let url = pg::shared().fresh_database("race");
    let store = open(&url);
    for _ in 0..20 {
        experiment(&store, 1);
        let barrier = std::sync::Barrier::new(4);
        let winners: Vec<Option<i64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (url, barrier) = (&url, &barrier);
                    s.spawn(move || {
                        let store = open(url);
                        barrier.wait();
                        let claim = store
                            .claim(&format!("w{i}"), "h", &[], &[], &[], 60.0)
                            .unwrap();
                        claim.map(|c| c.item)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<i64> = winners.into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "one claim of the one item, not {won:?}");
        store.finish_item(won[0], "w-any", Ok(None)).unwrap();
    }
}

/// The queue's own cost (figures printed, never asserted: `scripts/bench-queue` shows them).
#[test]
fn eight_workers_drain_the_queue_each_item_once_and_its_overhead_is_printed() {
    let url = pg::shared().fresh_database("throughput");
    let store = open(&url);
    let single = 50;
    experiment(&store, single);
    let started = Instant::now();
    while let Some(claim) = store.claim("solo", "h", &[], &[], &[], 60.0).unwrap() {
        store.renew_lease(claim.item, "solo", 60.0).unwrap();
        assert!(store.finish_item(claim.item, "solo", Ok(None)).unwrap());
    }
    let per_item = started.elapsed().as_secs_f64() * 1e3 / single as f64;

    let items = 800;
    experiment(&store, items);
    let started = Instant::now();
    let claimed: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let url = &url;
                s.spawn(move || {
                    let store = open(url);
                    let name = format!("w{i}");
                    let mut mine = Vec::new();
                    while let Some(claim) = store.claim(&name, "h", &[], &[], &[], 60.0).unwrap() {
                        assert!(store.finish_item(claim.item, &name, Ok(None)).unwrap());
                        mine.push(claim.item);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut unique = claimed.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(claimed.len(), items, "every item claimed");
    assert_eq!(unique.len(), items, "no item claimed twice");
    eprintln!(
        "queue overhead per trial (claim + renew + finish, one worker): {per_item:.2} ms; \
         8 workers: {:.0} claims/s ({items} items in {seconds:.2} s)",
        items as f64 / seconds
    );
}
