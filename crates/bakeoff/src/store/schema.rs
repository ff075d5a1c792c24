//! Schema migrations, one definition for both backends. SQLite's `PRAGMA user_version` (or, in
//! PostgreSQL, the one row of `bakeoff_schema`) holds the number of migrations applied; each entry
//! here is applied once, in order, inside a transaction. PostgreSQL gets each entry with its
//! column types widened ([`postgres_ddl`]), except where [`POSTGRES`] spells an entry its own way.
//! Append; never edit a released entry.

use super::db::{postgres_ddl, Db, DbError, Dialect};

pub const MIGRATIONS: &[&str] = &[
    // 1: the foundation tables.
    r#"
    CREATE TABLE systems (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE engines (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        version TEXT,
        build_number INTEGER,
        commit_id TEXT,
        built_with TEXT,
        UNIQUE (kind, path, version)
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        summary TEXT NOT NULL,
        UNIQUE (path, size, mtime)
    );
    CREATE TABLE configs (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        flags TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        command TEXT NOT NULL,
        bakeoff_version TEXT NOT NULL,
        system_id INTEGER REFERENCES systems(id),
        tag TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        ended_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        error TEXT
    );
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        config_id INTEGER REFERENCES configs(id),
        engine_id INTEGER REFERENCES engines(id),
        model_id INTEGER REFERENCES models(id),
        workload TEXT NOT NULL DEFAULT '{}',
        repetition INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'running',
        note TEXT,
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        ended_at TEXT
    );
    CREATE INDEX trials_run ON trials(run_id);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES trials(id),
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        source TEXT NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX samples_trial ON samples(trial_id);
    CREATE TABLE engine_logs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        trial_id INTEGER REFERENCES trials(id),
        path TEXT NOT NULL,
        excerpt TEXT NOT NULL,
        fatal_lines TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    "#,
    // 2: measured machine properties (memory bandwidth for the roofline).
    r#"
    CREATE TABLE system_measurements (
        id INTEGER PRIMARY KEY,
        system_id INTEGER NOT NULL REFERENCES systems(id),
        name TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        measured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    "#,
    // 3: fidelity evidence (issue 6): canaries, hygiene, greedy agreement, KL-divergence,
    // speculative losslessness and gate checks, one row per check of one candidate.
    r#"
    CREATE TABLE fidelity (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        trial_id INTEGER REFERENCES trials(id),
        candidate TEXT NOT NULL,
        config_id INTEGER REFERENCES configs(id),
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        value REAL,
        detail TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX fidelity_run ON fidelity(run_id);
    "#,
    // 4: the optimisation journal and saved serving profiles (issue 8). A journal entry links its
    // before/after runs and keeps the comparison it was judged on (`evidence`, JSON); `proposed` is
    // the verdict bakeoff derived from it and `verdict_by` says whether `verdict` is that proposal
    // or was set by hand. A profile is a winning configuration: the model file (path + hash), the
    // engine binary, and the llama-server flags, with the run and config it came from;
    // `canary_reference` (JSON list) holds the canaries it passed the first time it became ready.
    r#"
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        change TEXT NOT NULL DEFAULT '',
        before_run INTEGER REFERENCES runs(id),
        after_run INTEGER REFERENCES runs(id),
        verdict TEXT NOT NULL,
        proposed TEXT,
        verdict_by TEXT NOT NULL DEFAULT 'proposal',
        evidence TEXT NOT NULL DEFAULT '{}',
        note TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE profiles (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        run_id INTEGER REFERENCES runs(id),
        config_id INTEGER REFERENCES configs(id),
        model_id INTEGER REFERENCES models(id),
        model_path TEXT NOT NULL,
        model_sha256 TEXT,
        engine_id INTEGER REFERENCES engines(id),
        engine_path TEXT,
        flags TEXT NOT NULL,
        fallback TEXT,
        canary_reference TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    "#,
    // 5: tool-call bakeoff traces (issue 7), one row per (arm, task) episode (`kind` = 'episode',
    // seed 001's trace schema in `trace`) or per (arm, item) of the single-turn set (`kind` = 'bfcl',
    // `passed` set). The trial holds the engine, model and config that produced the row.
    r#"
    CREATE TABLE tool_traces (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        trial_id INTEGER REFERENCES trials(id),
        kind TEXT NOT NULL DEFAULT 'episode',
        arm TEXT NOT NULL,
        task TEXT NOT NULL,
        halt_reason TEXT NOT NULL,
        steps_used INTEGER NOT NULL,
        tool_calls_total INTEGER NOT NULL,
        wall_clock_s REAL NOT NULL,
        final_history_chars INTEGER NOT NULL,
        passed INTEGER,
        trace TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX tool_traces_run ON tool_traces(run_id);
    "#,
    // 6: the bakeoff process that owns a run (issue 14): its pid and start time (clock ticks since
    // boot, `/proc/PID/stat`), so a `running` run whose process is gone reads as abandoned. Runs
    // stored before this have neither and stay as they were recorded.
    r#"
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN pid_start INTEGER;
    "#,
    // 7: engine builds as a matrix dimension (issue 15): the name the user gave a build
    // (`--build NAME=PATH`), the backends it was compiled with and the devices it sees (JSON
    // arrays), and the SHA-256 of its binary. Engines found by discovery have none of these.
    r#"
    ALTER TABLE engines ADD COLUMN build_name TEXT;
    ALTER TABLE engines ADD COLUMN backends TEXT;
    ALTER TABLE engines ADD COLUMN devices TEXT;
    ALTER TABLE engines ADD COLUMN binary_sha256 TEXT;
    "#,
    // 8: an engine row is one identity (issue 15): a tree rebuilt in place keeps its path and
    // version but not its binary hash, and the same binary under two build names is two columns
    // of a shootout. UNIQUE (kind, path, version) made them share a row (and an UPDATE then
    // rewrote what older runs had recorded), so the table is rebuilt without it and a unique index
    // over the whole identity takes its place. Ids are kept, so trials and profiles still point
    // at their rows. Run with foreign keys off (see Store::migrate), checked before commit.
    r#"
    CREATE TABLE engines_v8 (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        version TEXT,
        build_number INTEGER,
        commit_id TEXT,
        built_with TEXT,
        build_name TEXT,
        backends TEXT,
        devices TEXT,
        binary_sha256 TEXT
    );
    INSERT INTO engines_v8 (id, kind, path, version, build_number, commit_id, built_with,
                            build_name, backends, devices, binary_sha256)
        SELECT id, kind, path, version, build_number, commit_id, built_with,
               build_name, backends, devices, binary_sha256 FROM engines;
    DROP TABLE engines;
    ALTER TABLE engines_v8 RENAME TO engines;
    CREATE UNIQUE INDEX engines_identity ON engines (
        kind, path, COALESCE(version, ''), COALESCE(build_name, ''), COALESCE(binary_sha256, ''),
        COALESCE(backends, ''), COALESCE(devices, '')
    );
    "#,
    // 9: `bakeoff tune` (issue 16): every decision of the search as it is made (screened,
    // promoted, eliminated, vetoed, winner, with the reason), and the answer it ended with (JSON:
    // winner, fastest, smallest faithful, defaults, knob contributions, the pareto points).
    r#"
    CREATE TABLE tune_decisions (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        round INTEGER NOT NULL,
        config_hash TEXT NOT NULL,
        candidate TEXT NOT NULL,
        action TEXT NOT NULL,
        reference TEXT,
        why TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX tune_decisions_run ON tune_decisions(run_id);
    CREATE TABLE tune_answers (
        run_id INTEGER PRIMARY KEY REFERENCES runs(id),
        answer TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    "#,
    // 10: the settings audit of the machine at the start of every run (issue 17: governor, THP,
    // swappiness, GPU clocks and power, ...), as `system::audit::Audit` JSON; `compare` names what
    // changed between two runs.
    r#"
    CREATE TABLE run_audits (
        run_id INTEGER PRIMARY KEY REFERENCES runs(id),
        audit TEXT NOT NULL
    );
    "#,
    // 11: runs from many hosts in one store (issue 18): a run's stable identity (`uuid`, so
    // `bakeoff push` adds a run once however often it is pushed) and the host that measured it;
    // journal entries get one too. Older rows get a random uuid now.
    r#"
    ALTER TABLE runs ADD COLUMN uuid TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    UPDATE runs SET uuid = lower(hex(randomblob(16))) WHERE uuid IS NULL;
    CREATE UNIQUE INDEX runs_uuid ON runs (uuid);
    ALTER TABLE journal ADD COLUMN uuid TEXT;
    UPDATE journal SET uuid = lower(hex(randomblob(16))) WHERE uuid IS NULL;
    CREATE UNIQUE INDEX journal_uuid ON journal (uuid);
    "#,
    // 12: the work queue of a team store (issue 18): an experiment enqueued with `--queue` is
    // split into items (one shard of its matrix each; `each` mode makes the items again for every
    // host that works on it), claimed by `bakeoff worker` under a lease (`lease_until`, epoch
    // seconds) that the worker renews while it measures; `requires` lists the model hashes a host
    // must hold to take an item; a run made for an item names it (`runs.queue_item`).
    r#"
    CREATE TABLE queue_experiments (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        mode TEXT NOT NULL,
        argv TEXT NOT NULL,
        shards INTEGER NOT NULL,
        host_tag TEXT,
        tag TEXT,
        models TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE queue_items (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES queue_experiments(id),
        scope TEXT NOT NULL DEFAULT '',
        shard_k INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        worker TEXT,
        host TEXT,
        lease_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        run_uuid TEXT,
        error TEXT,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (experiment_id, scope, shard_k)
    );
    CREATE INDEX queue_items_status ON queue_items (status);
    ALTER TABLE runs ADD COLUMN queue_item INTEGER REFERENCES queue_items(id);
    CREATE TABLE queue_requires (
        experiment_id INTEGER NOT NULL REFERENCES queue_experiments(id),
        sha256 TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT ''
    );
    "#,
    // 13: the engine builds a queued experiment runs on (issue 18): a worker takes an item only
    // where it has each `build` (`b11434 (abc1234)`: llama.cpp's build number and commit), and
    // runs it there; `path` is where the enqueuing host had it (empty: its default engine).
    r#"
    ALTER TABLE queue_experiments ADD COLUMN builds TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE queue_builds (
        experiment_id INTEGER NOT NULL REFERENCES queue_experiments(id),
        build TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT ''
    );
    "#,
    // 14: the files a queued command reads (its experiment, candidates, dataset, suites: JSON
    // `{"cwd": .., "files": [{"path": .., "sha256": .., "text": ..}]}`), shipped with it so a
    // worker runs it where the enqueuing host's files do not exist; `{}` for older experiments.
    r#"
    ALTER TABLE queue_experiments ADD COLUMN shipped TEXT NOT NULL DEFAULT '{}';
    "#,
];

/// The entries PostgreSQL spells its own way (by number, from 1).
const POSTGRES: &[(usize, &str)] = &[
    // 8 rebuilt `engines` to drop a unique constraint, SQLite's only way; PostgreSQL drops it.
    (
        8,
        r#"
    ALTER TABLE engines DROP CONSTRAINT engines_kind_path_version_key;
    CREATE UNIQUE INDEX engines_identity ON engines (
        kind, path, COALESCE(version, ''), COALESCE(build_name, ''), COALESCE(binary_sha256, ''),
        COALESCE(backends, ''), COALESCE(devices, '')
    );
    "#,
    ),
    (
        11,
        r#"
    ALTER TABLE runs ADD COLUMN uuid TEXT;
    ALTER TABLE runs ADD COLUMN host TEXT;
    UPDATE runs SET uuid = md5(random()::text || id::text || clock_timestamp()::text) WHERE uuid IS NULL;
    CREATE UNIQUE INDEX runs_uuid ON runs (uuid);
    ALTER TABLE journal ADD COLUMN uuid TEXT;
    UPDATE journal SET uuid = md5(random()::text || id::text || clock_timestamp()::text) WHERE uuid IS NULL;
    CREATE UNIQUE INDEX journal_uuid ON journal (uuid);
    "#,
    ),
];

/// Migration `number` (from 1) in `dialect`'s spelling.
pub fn migration(number: usize, dialect: Dialect) -> String {
    let sql = MIGRATIONS[number - 1];
    match dialect {
        Dialect::Sqlite => sql.to_string(),
        Dialect::Postgres => POSTGRES
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, sql)| sql.to_string())
            .unwrap_or_else(|| postgres_ddl(sql)),
    }
}

/// Whether opening a store may change its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Apply what is pending (a SQLite file, one user's; `bakeoff db migrate`).
    Automatic,
    /// Create the schema of an empty store, and otherwise require the current version (a team's
    /// store is upgraded on purpose, not by whichever host runs a newer bakeoff first).
    WhenEmpty,
}

#[derive(Debug)]
pub enum MigrateError {
    Db(DbError),
    Version { found: usize, wanted: usize },
    BrokenKeys(i64),
}

impl From<DbError> for MigrateError {
    fn from(e: DbError) -> Self {
        MigrateError::Db(e)
    }
}

/// A key PostgreSQL's migrations serialise on (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x6261_6b65_6f66;

/// The number of migrations applied.
pub fn version(db: &Db) -> Result<usize, DbError> {
    match db.dialect() {
        Dialect::Sqlite => db.query_row("PRAGMA user_version", [], |r| r.get::<usize>(0)),
        Dialect::Postgres => {
            let exists: Option<String> =
                db.query_row("SELECT to_regclass('bakeoff_schema')::text", [], |r| {
                    r.get(0)
                })?;
            if exists.is_none() {
                return Ok(0);
            }
            db.query_row(
                "SELECT coalesce(max(version), 0) FROM bakeoff_schema",
                [],
                |r| r.get::<usize>(0),
            )
        }
    }
}

/// Bring the schema to this bakeoff's version in one transaction (see [`Upgrade`]). SQLite runs
/// it with foreign keys off (a migration that rebuilds a table needs that; the pragma is ignored
/// inside a transaction) and checks the keys before the commit instead.
pub fn migrate(db: &Db, upgrade: Upgrade) -> Result<(), MigrateError> {
    let dialect = db.dialect();
    if dialect == Dialect::Sqlite {
        db.batch("PRAGMA foreign_keys = OFF")?;
    }
    let result = db.transaction(|db| {
        if dialect == Dialect::Postgres {
            db.query_row(
                "SELECT pg_advisory_xact_lock(?1)::text",
                [MIGRATION_LOCK],
                |_| Ok(()),
            )?;
            db.batch("CREATE TABLE IF NOT EXISTS bakeoff_schema (version BIGINT NOT NULL)")?;
        }
        let current = version(db)?;
        let wanted = MIGRATIONS.len();
        let allowed = upgrade == Upgrade::Automatic || current == 0 || current == wanted;
        if current > wanted || !allowed {
            return Err(MigrateError::Version {
                found: current,
                wanted,
            });
        }
        for number in current + 1..=wanted {
            db.batch(&migration(number, dialect))?;
        }
        match dialect {
            Dialect::Sqlite => {
                db.batch(&format!("PRAGMA user_version = {wanted}"))?;
                let broken: i64 =
                    db.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                        r.get(0)
                    })?;
                if broken > 0 {
                    return Err(MigrateError::BrokenKeys(broken));
                }
            }
            Dialect::Postgres if current != wanted => {
                db.batch("DELETE FROM bakeoff_schema")?;
                db.execute("INSERT INTO bakeoff_schema (version) VALUES (?1)", [wanted])?;
            }
            Dialect::Postgres => {}
        }
        Ok(())
    });
    if dialect == Dialect::Sqlite {
        db.batch("PRAGMA foreign_keys = ON")?;
    }
    result
}
