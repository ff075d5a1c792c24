//! Schema migrations. `PRAGMA user_version` holds the number of migrations applied; each entry
//! here is applied once, in order, inside a transaction. Append; never edit a released entry.

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
];
