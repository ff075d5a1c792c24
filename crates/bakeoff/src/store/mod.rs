//! The result store: one SQLite file in WAL mode. Every row says what produced it (engine, model
//! hash, config flags, system fingerprint, bakeoff version), and every sample is committed the
//! moment it is measured, so a crash or kill keeps everything measured before it.

mod audits;
pub(crate) mod db;
mod fidelity;
mod journal;
pub mod location;
mod profiles;
pub mod queue;
pub mod report_rows;
mod runs;
mod schema;
pub mod sync;
mod tool_traces;
mod tune;

pub use runs::{own_host, TrialTally};
pub use tool_traces::ToolTraceRow;
pub use tune::TuneDecision;

pub use fidelity::{FidelityRow, NewCheck};
pub use journal::{GateCheckRow, JournalEntry};
pub use profiles::{EngineRow, Profile, RunConfig};
// The measuring seam's types, re-exported where stored rows are read.
pub use crate::formats::sha256_file;
pub use crate::measure::sink::{NewTrial, SampleRow, TrialRow};

use crate::domain::{EngineConfig, Unit};
use crate::engines::build::BuildIdentity;
use crate::engines::discovery::LlamaCppInstall;
use crate::measure::sink::TrialSink;
use crate::system::Fingerprint;
use crate::{Error, Result};
pub use db::Dialect;
use db::{params, Db, DbError, OptionalExtension};
pub use location::{redact, Location};
use schema::Upgrade;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub struct Store {
    db: Db,
    /// What to show: the SQLite file, or the PostgreSQL URL without its password.
    path: PathBuf,
    location: Location,
}

/// A run as listed by `bakeoff runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub command: String,
    pub bakeoff_version: String,
    pub tag: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// As recorded, except that a `running` run whose bakeoff process is gone reads `abandoned`.
    pub status: String,
    pub error: Option<String>,
    pub trials: i64,
    pub samples: i64,
    /// The bakeoff process that ran it last (absent for runs stored before pids were recorded).
    pub pid: Option<i32>,
    /// The machine it ran on: the name recorded with the run (`$BAKEOFF_HOST` or the kernel's
    /// host name), else the host name in its system fingerprint (runs stored before hosts were).
    pub host: Option<String>,
}

/// A machine the store holds runs of.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub host: String,
    pub runs: i64,
    pub newest_run: i64,
    pub newest_started_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub id: i64,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    pub trial_id: Option<i64>,
    pub path: String,
    pub excerpt: String,
    pub fatal_lines: serde_json::Value,
}

/// Everything stored about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub params: serde_json::Value,
    pub system: Option<serde_json::Value>,
    pub trials: Vec<TrialRow>,
    pub logs: Vec<LogRow>,
    /// The named builds (`--build NAME=PATH`) its trials ran on, with their identity; absent
    /// from the JSON of a run without builds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<report_rows::EngineInfo>,
}

impl Store {
    /// Open (creating if needed) the store `--db` names: a SQLite file, or a PostgreSQL URL.
    pub fn open(path: &Path) -> Result<Self> {
        Store::open_location(&Location::parse(path)?)
    }

    /// Open (creating if needed) a store and bring its schema up to date: a SQLite file is
    /// migrated; a PostgreSQL store is created when empty, and otherwise must be at this
    /// bakeoff's schema version (`bakeoff db migrate` upgrades a shared one on purpose).
    pub fn open_location(location: &Location) -> Result<Self> {
        let store = Store::open_unchecked(location)?;
        match location {
            Location::Sqlite(_) => store.migrate(Upgrade::Automatic)?,
            Location::Postgres(_) => store.migrate(Upgrade::WhenEmpty)?,
        }
        Ok(store)
    }

    /// Open a store without touching its schema (`bakeoff db status|migrate`).
    pub fn open_unchecked(location: &Location) -> Result<Self> {
        match location {
            Location::Sqlite(path) => Store::open_sqlite(path),
            Location::Postgres(target) => Ok(Store {
                db: Db::postgres(target.config.clone(), &target.display).map_err(|e| {
                    Error::Store {
                        path: PathBuf::from(&target.display),
                        source: e.into(),
                    }
                })?,
                path: PathBuf::from(&target.display),
                location: location.clone(),
            }),
        }
    }

    /// The schema version this bakeoff writes.
    pub fn current_schema_version() -> usize {
        schema::MIGRATIONS.len()
    }

    fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let err = |source: rusqlite::Error| Error::Store {
            path: path.to_path_buf(),
            source: source.into(),
        };
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        Ok(Store {
            db: Db::sqlite(conn),
            path: path.to_path_buf(),
            location: Location::Sqlite(path.to_path_buf()),
        })
    }

    /// Open a store that must already exist (for commands that only read): a mistyped
    /// `--db` used to create an empty database and answer "no runs" from it. (A PostgreSQL
    /// database exists or the connection says so.)
    pub fn open_existing(path: &Path) -> Result<Self> {
        let location = Location::parse(path)?;
        if location.is_postgres() || path.exists() {
            return Store::open_location(&location);
        }
        let hint = "nothing was measured into it yet: run bench, load or gate first, or pass --db (BAKEOFF_DB) naming the database you meant";
        Err(Error::input(format!("no database at {}", path.display())).with_hint(hint))
    }

    /// The SQLite file, or the PostgreSQL URL without its password: what to show a user.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the store is, to open it again (a signal handler, a worker's second connection).
    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    fn err(&self, source: DbError) -> Error {
        Error::Store {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<usize> {
        schema::version(&self.db).map_err(|e| self.err(e))
    }

    /// Upgrade a PostgreSQL store to this bakeoff's schema (SQLite stores upgrade on open).
    pub fn migrate_to_current(&self) -> Result<(usize, usize)> {
        let before = self.schema_version()?;
        self.migrate(Upgrade::Automatic)?;
        Ok((before, schema::MIGRATIONS.len()))
    }

    /// Apply the pending migrations in one write transaction taken before the version is read:
    /// two bakeoffs opening a new database at once (a test polling it, two commands started
    /// together) would otherwise both see version 0 and the second fail ("table already exists").
    fn migrate(&self, upgrade: Upgrade) -> Result<()> {
        let result = schema::migrate(&self.db, upgrade);
        result.map_err(|e| match e {
            schema::MigrateError::Db(e) => self.err(e),
            schema::MigrateError::Version { found, wanted } => {
                let store = self.path.display();
                let message = if found > wanted {
                    format!("database {store} has schema version {found}, newer than this bakeoff's {wanted}")
                } else {
                    format!("database {store} has schema version {found}, older than this bakeoff's {wanted}")
                };
                let hint = if found > wanted {
                    "upgrade bakeoff on this host to the version the rest of the team uses".to_string()
                } else {
                    format!("upgrade the shared store with `bakeoff db migrate --db {store}` once every host runs this bakeoff")
                };
                Error::input(message).with_hint(hint)
            }
            schema::MigrateError::BrokenKeys(broken) => Error::input(format!(
                "database {}: migration left {broken} broken foreign keys; nothing was changed",
                self.path.display()
            )),
        })
    }

    pub fn system_id(&self, fingerprint: &Fingerprint) -> Result<i64> {
        self.db
            .execute(
                "INSERT INTO systems (hash, fingerprint) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
                params![fingerprint.hash(), fingerprint.to_json()],
            )
            .map_err(|e| self.err(e))?;
        self.db
            .query_row(
                "SELECT id FROM systems WHERE hash = ?1",
                [fingerprint.hash()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn engine_id(
        &self,
        kind: &str,
        path: &str,
        install: Option<&LlamaCppInstall>,
        version: Option<&str>,
    ) -> Result<i64> {
        let version = version
            .map(str::to_string)
            .or_else(|| install.and_then(|i| i.version.clone()))
            .unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO engines (kind, path, version, build_number, commit_id, built_with) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO NOTHING",
                params![
                    kind,
                    path,
                    version,
                    install.and_then(|i| i.build_number).map(|b| b as i64),
                    install.and_then(|i| i.commit.clone()),
                    install.and_then(|i| i.built_with.clone()),
                ],
            )
            .map_err(|e| self.err(e))?;
        self.db
            .query_row(
                "SELECT id FROM engines WHERE kind = ?1 AND path = ?2 AND version = ?3
                 AND build_name IS NULL AND binary_sha256 IS NULL AND backends IS NULL AND devices IS NULL",
                params![kind, path, version],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The engine row of a named build's `kind` tool: one row per whole identity (path,
    /// version, build name, binary hash, backends, devices), so a rebuilt binary at the same path
    /// gets a new row and a row never changes under the runs that recorded it.
    pub fn build_engine_id(&self, kind: &str, identity: &BuildIdentity) -> Result<i64> {
        let json = |items: &[String]| serde_json::to_string(items).unwrap_or_default();
        let key = (
            kind,
            identity.binary.display().to_string(),
            identity.version.clone().unwrap_or_default(),
            identity.name.as_str(),
            identity.binary_sha256.as_str(),
            json(&identity.backends),
            json(&identity.devices),
        );
        self.db
            .execute(
                "INSERT INTO engines (kind, path, version, build_name, binary_sha256, backends, devices,
                                      build_number, commit_id, built_with)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
                params![
                    key.0, key.1, key.2, key.3, key.4, key.5, key.6,
                    identity.build_number.map(|b| b as i64),
                    identity.commit,
                    identity.built_with,
                ],
            )
            .map_err(|e| self.err(e))?;
        self.db
            .query_row(
                "SELECT id FROM engines WHERE kind = ?1 AND path = ?2 AND version = ?3 AND build_name = ?4
                 AND binary_sha256 = ?5 AND backends = ?6 AND devices = ?7",
                params![key.0, key.1, key.2, key.3, key.4, key.5, key.6],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The stored record of a model file, hashing it (and reading its GGUF summary) only when the
    /// path, size or modification time is new.
    pub fn model(&self, path: &Path) -> Result<ModelRow> {
        let canonical = path.canonicalize().map_err(|e| Error::io(path, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| Error::io(&canonical, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let path_text = canonical.display().to_string();
        let lookup = |store: &Store| {
            store
                .db
                .query_row(
                    "SELECT id, sha256, summary FROM models WHERE path = ?1 AND size = ?2 AND mtime = ?3",
                    params![path_text, meta.len() as i64, mtime],
                    |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
                )
                .optional()
                .map_err(|e| store.err(e))
        };
        if let Some((id, sha256, summary)) = lookup(self)? {
            let summary = serde_json::from_str(&summary).unwrap_or_default();
            return Ok(ModelRow {
                id,
                path: path_text,
                size: meta.len(),
                sha256,
                summary,
            });
        }
        let sha256 = sha256_file(&canonical)?;
        let summary = crate::formats::gguf::GgufFile::open(&canonical)
            .map(|f| model_summary(&f))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        let id = self
            .db
            .insert(
                "INSERT INTO models (path, size, mtime, sha256, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![path_text, meta.len() as i64, mtime, sha256, summary.to_string()],
            )
            .map_err(|e| self.err(e))?;
        Ok(ModelRow {
            id,
            path: path_text,
            size: meta.len(),
            sha256,
            summary,
        })
    }

    pub fn config_id(&self, config: &EngineConfig) -> Result<i64> {
        self.db
            .execute(
                "INSERT INTO configs (hash, flags) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
                params![config.hash(), config.canonical_json()],
            )
            .map_err(|e| self.err(e))?;
        self.db
            .query_row(
                "SELECT id FROM configs WHERE hash = ?1",
                [config.hash()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Record the start of a run; returns its id.
    pub fn begin_run(
        &self,
        kind: &str,
        command: &str,
        system_id: i64,
        tag: Option<&str>,
        params: &serde_json::Value,
    ) -> Result<i64> {
        self.db
            .insert(
                "INSERT INTO runs (kind, command, bakeoff_version, system_id, tag, params, pid, pid_start, uuid, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![kind, redact(command), crate::VERSION, system_id, tag, params.to_string(), runs::own_pid(), runs::own_start(), runs::new_uuid(), runs::own_host()],
            )
            .map_err(|e| self.err(e))
    }

    /// Record the end of a run: `ok`, `failed`/`partial` (with the error) or `interrupted`. A
    /// trial still `running` in it is marked `interrupted`: a finished run holds no running trial.
    pub fn end_run(&self, run_id: i64, status: &str, error: Option<&str>) -> Result<()> {
        self.interrupt_trials(run_id)?;
        self.db
            .execute(
                "UPDATE runs SET status = ?2, error = ?3, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![run_id, status, error],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Mark a run as running again by this process (`--resume`); the trials its last process
    /// left `running` are marked `interrupted` (they are measured again).
    pub fn reopen_run(&self, run_id: i64) -> Result<()> {
        self.interrupt_trials(run_id)?;
        self.db
            .execute(
                "UPDATE runs SET status = 'running', error = NULL, ended_at = NULL, pid = ?2, pid_start = ?3 WHERE id = ?1",
                params![run_id, runs::own_pid(), runs::own_start()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn begin_trial(&self, run_id: i64, trial: &NewTrial) -> Result<i64> {
        let config_id = trial.config.map(|c| self.config_id(c)).transpose()?;
        self.db
            .insert(
                "INSERT INTO trials (run_id, config_id, engine_id, model_id, workload, repetition) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, config_id, trial.engine_id, trial.model_id, trial.workload.to_string(), trial.repetition],
            )
            .map_err(|e| self.err(e))
    }

    pub fn end_trial(&self, trial_id: i64, status: &str, note: Option<&str>) -> Result<()> {
        self.db
            .execute(
                "UPDATE trials SET status = ?2, note = ?3, ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![trial_id, status, note],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Store one measured value, committed at once.
    pub fn sample(
        &self,
        trial_id: i64,
        metric: &str,
        value: f64,
        unit: Unit,
        source: &str,
        seq: usize,
    ) -> Result<()> {
        crate::measure::sink::check_finite(trial_id, metric, value)?;
        self.db
            .execute(
                "INSERT INTO samples (trial_id, metric, value, unit, source, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![trial_id, metric, value, unit.as_str(), source, seq as i64],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Keep an excerpt of an engine log (its fatal lines and last lines) with the run.
    pub fn engine_log(&self, run_id: i64, trial_id: Option<i64>, path: &Path) -> Result<()> {
        let fatal = crate::engines::fatal::scan_file(path);
        let excerpt = crate::engines::fatal::tail(path, 40).join("\n");
        self.db
            .execute(
                "INSERT INTO engine_logs (run_id, trial_id, path, excerpt, fatal_lines) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, trial_id, path.display().to_string(), excerpt, serde_json::to_string(&fatal).unwrap_or_default()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Record `run` as measured on `host` (tests standing in for other machines).
    #[cfg(test)]
    pub(crate) fn set_run_host(&self, run: i64, host: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE runs SET host = ?1 WHERE id = ?2",
                params![host, run],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The newest `limit` runs.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        self.runs_on(None, limit)
    }

    /// The newest `limit` runs, of one machine when `host` names it (`runs list --host NAME`).
    pub fn runs_on(&self, host: Option<&str>, limit: usize) -> Result<Vec<RunRow>> {
        let select = run_select(self.db.dialect());
        let host_is = host_sql(self.db.dialect());
        let filter = match host {
            Some(_) => format!("WHERE {host_is} = ?2"),
            None => String::new(),
        };
        let sql = format!("{select} {filter} ORDER BY r.id DESC LIMIT ?1");
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.err(e))?;
        let limit = limit as i64;
        let rows = match host {
            Some(host) => stmt.query_map(params![limit, host], run_row),
            None => stmt.query_map(params![limit], run_row),
        };
        let rows = rows.map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Every machine the store has runs of (`runs list --host`), by name.
    pub fn hosts(&self) -> Result<Vec<HostRow>> {
        let host = host_sql(self.db.dialect());
        let sql = format!(
            "SELECT {host}, count(*), max(r.id), max(r.started_at)
             FROM runs r LEFT JOIN systems s ON s.id = r.system_id
             WHERE {host} IS NOT NULL GROUP BY {host} ORDER BY {host}"
        );
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.err(e))?;
        let host_row = |r: &db::Row| {
            Ok(HostRow {
                host: r.get(0)?,
                runs: r.get(1)?,
                newest_run: r.get(2)?,
                newest_started_at: r.get(3)?,
            })
        };
        let rows = stmt.query_map([], host_row).map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Resolve a run reference: a number, `last`, `last~N` (the Nth run before the newest), or a
    /// tag (newest run with it).
    pub fn resolve_run(&self, reference: &str) -> Result<i64> {
        let back = reference
            .strip_prefix("last~")
            .and_then(|n| n.parse::<i64>().ok());
        let found: Option<i64> = if reference == "last" {
            self.db
                .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
                .map_err(|e| self.err(e))?
        } else if let Some(back) = back {
            self.db
                .query_row(
                    "SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?1",
                    [back],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(e))?
        } else if let Ok(id) = reference.parse::<i64>() {
            self.db
                .query_row("SELECT id FROM runs WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?
        } else {
            self.db
                .query_row(
                    "SELECT max(id) FROM runs WHERE tag = ?1",
                    [reference],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?
        };
        found.ok_or_else(|| {
            Error::input(format!("no run '{reference}' in {}", self.path.display()))
                .with_hint("`bakeoff runs list` shows the stored runs")
        })
    }

    pub fn run_detail(&self, run_id: i64) -> Result<RunDetail> {
        let select = run_select(self.db.dialect());
        let sql = format!("{select} WHERE r.id = ?1");
        let run = self
            .db
            .query_row(&sql, [run_id], run_row)
            .map_err(|e| self.err(e))?;
        let (params_text, system): (String, Option<String>) = self
            .db
            .query_row(
                "SELECT r.params, s.fingerprint FROM runs r LEFT JOIN systems s ON s.id = r.system_id WHERE r.id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        Ok(RunDetail {
            run,
            params: serde_json::from_str(&params_text).unwrap_or_default(),
            system: system.and_then(|s| serde_json::from_str(&s).ok()),
            trials: self.trials(run_id)?,
            logs: self.logs(run_id)?,
            builds: self.run_builds(run_id)?,
        })
    }

    /// The engines of a run's trials that are named builds.
    pub fn run_builds(&self, run_id: i64) -> Result<Vec<report_rows::EngineInfo>> {
        let engines = self.run_engines(run_id)?;
        Ok(engines
            .into_iter()
            .filter(|e| e.build_name.is_some())
            .collect())
    }

    /// Every trial of a run, with its samples.
    pub fn trials(&self, run_id: i64) -> Result<Vec<TrialRow>> {
        self.trials_where("t.run_id = ?1", run_id)
    }

    /// One trial, with its samples.
    pub fn trial(&self, trial_id: i64) -> Result<TrialRow> {
        self.trials_where("t.id = ?1", trial_id)?
            .pop()
            .ok_or_else(|| Error::input(format!("no trial {trial_id} in {}", self.path.display())))
    }

    fn trials_where(&self, condition: &str, id: i64) -> Result<Vec<TrialRow>> {
        let sql = format!(
            "SELECT t.id, c.hash, c.flags, e.kind || ' ' || coalesce(e.version, '?') || ' (build ' || coalesce(CAST(e.build_number AS TEXT), '?') || ')', m.sha256, t.workload, t.repetition, t.status, t.note,
                    t.engine_id, t.model_id, coalesce(e.build_name, 'b' || e.build_number, nullif(e.version, ''), e.kind), m.path
             FROM trials t LEFT JOIN configs c ON c.id = t.config_id LEFT JOIN engines e ON e.id = t.engine_id
             LEFT JOIN models m ON m.id = t.model_id WHERE {condition} ORDER BY t.id"
        );
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(TrialRow {
                    id: r.get(0)?,
                    config_hash: r.get(1)?,
                    flags: r
                        .get::<Option<String>>(2)?
                        .and_then(|f| serde_json::from_str(&f).ok()),
                    engine: r.get(3)?,
                    model_sha256: r.get(4)?,
                    workload: serde_json::from_str(&r.get::<String>(5)?).unwrap_or_default(),
                    repetition: r.get(6)?,
                    status: r.get(7)?,
                    note: r.get(8)?,
                    engine_id: r.get(9)?,
                    model_id: r.get(10)?,
                    build: r.get(11)?,
                    model_name: r.get::<Option<String>>(12)?.map(|p| file_stem(&p)),
                    samples: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut trials: Vec<TrialRow> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for trial in &mut trials {
            trial.samples = self.samples(trial.id)?;
        }
        Ok(trials)
    }

    pub fn samples(&self, trial_id: i64) -> Result<Vec<SampleRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT metric, value, unit, source, seq FROM samples WHERE trial_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([trial_id], |r| {
                Ok(SampleRow {
                    metric: r.get(0)?,
                    value: r.get(1)?,
                    unit: r.get(2)?,
                    source: r.get(3)?,
                    seq: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn logs(&self, run_id: i64) -> Result<Vec<LogRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT trial_id, path, excerpt, fatal_lines FROM engine_logs WHERE run_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(LogRow {
                    trial_id: r.get(0)?,
                    path: r.get(1)?,
                    excerpt: r.get(2)?,
                    fatal_lines: serde_json::from_str(&r.get::<String>(3)?).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Record a measured machine property (e.g. `memory_bandwidth` in GB/s).
    pub fn system_measurement(
        &self,
        system_id: i64,
        name: &str,
        value: f64,
        unit: &str,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO system_measurements (system_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
                params![system_id, name, value, unit],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The newest value of a machine property for this system.
    pub fn latest_system_measurement(&self, system_id: i64, name: &str) -> Result<Option<f64>> {
        self.db
            .query_row(
                "SELECT value FROM system_measurements WHERE system_id = ?1 AND name = ?2 ORDER BY id DESC LIMIT 1",
                params![system_id, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

/// The runners' seam, over the inherent methods above (each commits at once).
impl TrialSink for Store {
    fn begin_trial(&self, run_id: i64, trial: &NewTrial) -> Result<i64> {
        Store::begin_trial(self, run_id, trial)
    }

    fn end_trial(&self, trial_id: i64, status: &str, note: Option<&str>) -> Result<()> {
        Store::end_trial(self, trial_id, status, note)
    }

    fn sample(
        &self,
        trial_id: i64,
        metric: &str,
        value: f64,
        unit: Unit,
        source: &str,
        seq: usize,
    ) -> Result<()> {
        Store::sample(self, trial_id, metric, value, unit, source, seq)
    }

    fn exclude_samples(&self, trial_id: i64, seqs: &[usize]) -> Result<()> {
        for seq in seqs {
            self.db
                .execute(
                    "UPDATE samples SET source = 'client-excluded' WHERE trial_id = ?1 AND seq = ?2 AND source = 'client'",
                    params![trial_id, *seq as i64],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn engine_log(&self, run_id: i64, trial_id: Option<i64>, path: &Path) -> Result<()> {
        Store::engine_log(self, run_id, trial_id, path)
    }

    fn run_dir(&self, run_id: i64) -> PathBuf {
        self.location.runs_dir().join(run_id.to_string())
    }

    fn trials(&self, run_id: i64) -> Result<Vec<TrialRow>> {
        Store::trials(self, run_id)
    }

    fn trial(&self, trial_id: i64) -> Result<TrialRow> {
        Store::trial(self, trial_id)
    }
}

/// A run's machine: the host recorded with it, else its fingerprint's host name.
fn host_sql(dialect: db::Dialect) -> &'static str {
    match dialect {
        db::Dialect::Sqlite => "COALESCE(r.host, json_extract(s.fingerprint, '$.hostname'))",
        db::Dialect::Postgres => "COALESCE(r.host, s.fingerprint::json ->> 'hostname')",
    }
}

/// The columns [`run_row`] reads, from `runs r` joined to its system `s`.
fn run_select(dialect: db::Dialect) -> String {
    let host = host_sql(dialect);
    format!(
        "SELECT r.id, r.kind, r.command, r.bakeoff_version, r.tag, r.started_at, r.ended_at, r.status, r.error,
    (SELECT count(*) FROM trials t WHERE t.run_id = r.id),
    (SELECT count(*) FROM samples x JOIN trials t ON t.id = x.trial_id WHERE t.run_id = r.id),
    r.pid, r.pid_start, {host}
    FROM runs r LEFT JOIN systems s ON s.id = r.system_id"
    )
}

fn run_row(r: &db::Row) -> Result<RunRow, db::DbError> {
    Ok(RunRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        command: r.get(2)?,
        bakeoff_version: r.get(3)?,
        tag: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        status: runs::live_status(r.get(7)?, r.get(11)?, r.get(12)?, r.get(13)?),
        error: r.get(8)?,
        trials: r.get(9)?,
        samples: r.get(10)?,
        pid: r.get(11)?,
        host: r.get(13)?,
    })
}

/// A model's display name: its file name without the extension.
pub fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| path.to_string())
}

/// The metadata summary stored with a model: architecture, name, sizes, context length.
pub fn model_summary(file: &crate::formats::gguf::GgufFile) -> serde_json::Value {
    let params: u64 = file.tensors.iter().map(|t| t.elements()).sum();
    serde_json::json!({
        "architecture": file.architecture(),
        "name": file.get_str("general.name"),
        "file_type": file.get_u64("general.file_type"),
        "parameters": params,
        "tensors": file.tensors.len(),
        "context_length": file.get_u64(&file.arch_key("context_length")),
        "block_count": file.get_u64(&file.arch_key("block_count")),
        "gguf_version": file.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_survive_reopening_and_runs_list() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let store = Store::open(&db).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::MIGRATIONS.len());
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(
                "bench",
                "bakeoff bench",
                system,
                Some("base"),
                &serde_json::json!({}),
            )
            .unwrap();
        let config = EngineConfig::default().with_flag("-ctk", "q8_0");
        let workload = serde_json::json!({"tg": 32});
        let trial = store
            .begin_trial(run, &NewTrial::new(Some(&config), &workload, 0))
            .unwrap();
        store
            .sample(trial, "tg", 101.5, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        drop(store); // no end_run: as if the process died

        let store = Store::open(&db).unwrap();
        let runs = store.runs(10).unwrap();
        assert_eq!(
            (runs[0].id, runs[0].status.as_str(), runs[0].samples),
            (run, "running", 1)
        );
        assert_eq!(store.resolve_run("base").unwrap(), run);
        let newer = store
            .begin_run(
                "bench",
                "bakeoff bench",
                system,
                None,
                &serde_json::json!({}),
            )
            .unwrap();
        assert_eq!(store.resolve_run("last").unwrap(), newer);
        assert_eq!(store.resolve_run("last~1").unwrap(), run);
        assert_eq!(store.resolve_run("last~0").unwrap(), newer);
        assert!(store.resolve_run("last~2").is_err());
        let detail = store.run_detail(run).unwrap();
        assert_eq!(detail.trials[0].samples[0].value, 101.5);
        assert_eq!(
            detail.trials[0].config_hash.as_deref(),
            Some(config.hash().as_str())
        );
        assert!(store.resolve_run("nope").is_err());
    }

    #[test]
    fn excluded_samples_leave_the_window_by_request_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run("load", "bakeoff load", system, None, &serde_json::json!({}))
            .unwrap();
        let workload = serde_json::json!({"test": "c1"});
        let trial = NewTrial::new(None, &workload, 0);
        let sink: &dyn TrialSink = &store;
        let id = sink.begin_trial(run, &trial).unwrap();
        for (seq, source) in [(0, "client"), (1, "client"), (1, "step"), (2, "client")] {
            sink.sample(id, "e2e_ms", 1.0, Unit::Milliseconds, source, seq)
                .unwrap();
        }
        sink.exclude_samples(id, &[1, 2]).unwrap();
        let sources: Vec<String> = sink
            .trial(id)
            .unwrap()
            .samples
            .into_iter()
            .map(|s| s.source)
            .collect();
        assert_eq!(
            sources,
            ["client", "client-excluded", "step", "client-excluded"]
        );
        assert_eq!(
            sink.run_dir(run),
            dir.path().join("b.runs").join(run.to_string())
        );
    }

    fn identity(name: &str, sha: &str) -> BuildIdentity {
        BuildIdentity {
            name: name.into(),
            binary: PathBuf::from("/opt/llama.cpp/build/bin/llama-server"),
            version: Some("0.6.0-dev".into()),
            build_number: Some(11434),
            backends: vec!["CPU".into()],
            binary_sha256: sha.into(),
            ..BuildIdentity::default()
        }
    }

    #[test]
    fn a_rebuilt_binary_at_the_same_path_and_version_gets_its_own_engine_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).unwrap();
        let first = store
            .build_engine_id("llama-server", &identity("new", "aa"))
            .unwrap();
        let again = store
            .build_engine_id("llama-server", &identity("new", "aa"))
            .unwrap();
        let rebuilt = store
            .build_engine_id("llama-server", &identity("new", "bb"))
            .unwrap();
        let renamed = store
            .build_engine_id("llama-server", &identity("other", "aa"))
            .unwrap();
        assert_eq!(first, again);
        assert_ne!(first, rebuilt);
        assert_ne!(first, renamed);
        assert_ne!(rebuilt, renamed);
        // The same path found by discovery (no build identity) is yet another row, stable too.
        let path = "/opt/llama.cpp/build/bin/llama-server";
        let found = store
            .engine_id("llama-server", path, None, Some("0.6.0-dev"))
            .unwrap();
        assert!(![first, rebuilt, renamed].contains(&found));
        assert_eq!(
            store
                .engine_id("llama-server", path, None, Some("0.6.0-dev"))
                .unwrap(),
            found
        );

        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(
                "bench",
                "bakeoff bench",
                system,
                None,
                &serde_json::json!({}),
            )
            .unwrap();
        let workload = serde_json::json!({"tg": 32});
        for engine in [first, rebuilt] {
            let trial = NewTrial {
                engine_id: Some(engine),
                ..NewTrial::new(None, &workload, 0)
            };
            store.begin_trial(run, &trial).unwrap();
        }
        let engines = store.run_engines(run).unwrap();
        let hashes: Vec<_> = engines.iter().map(|e| e.binary_sha256.as_deref()).collect();
        assert_eq!(
            hashes,
            [Some("aa"), Some("bb")],
            "the first run's row was rewritten"
        );
        assert_eq!(engines[0].build_name.as_deref(), Some("new"));
        assert_eq!(engines[0].backends, ["CPU"]);
    }

    #[test]
    fn migration_8_keeps_engine_ids_and_the_trials_that_point_at_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v7.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        for sql in &schema::MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 7;
             INSERT INTO engines (id, kind, path, version, build_number) VALUES (5, 'llama-server', '/bin/llama-server', '0.6.0-dev', 11434);
             INSERT INTO runs (id, kind, command, bakeoff_version) VALUES (1, 'bench', 'bakeoff bench', '0.1.0');
             INSERT INTO trials (id, run_id, engine_id) VALUES (1, 1, 5);",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&db).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::MIGRATIONS.len());
        let engines = store.run_engines(1).unwrap();
        assert_eq!((engines[0].id, engines[0].build_number), (5, Some(11434)));
        // The discovery row is found again, not duplicated.
        let id = store.engine_id("llama-server", "/bin/llama-server", None, Some("0.6.0-dev"));
        assert_eq!(id.unwrap(), 5);
        // The trials' foreign key points at the rebuilt table: deleting its row is refused.
        assert!(store
            .db
            .execute("DELETE FROM engines WHERE id = 5", [])
            .is_err());
    }
}
