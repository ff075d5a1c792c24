//! Copying runs between two stores of either backend (`bakeoff push` / `pull`). A run is known
//! everywhere by its uuid: a copy adds what the destination lacks (with everything that belongs
//! to the run, ids remapped, in one transaction), leaves what it already holds alone, and reports
//! a run that differs there as a conflict instead of overwriting it.

use super::db::{DbError, OptionalExtension, Row, Value};
use super::{runs, Store};
use crate::Result;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// What a copy did (or, in a dry run, would do) with each run, journal entry and profile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub runs: Vec<RunSync>,
    pub journal: Vec<EntrySync>,
    pub profiles: Vec<ProfileSync>,
}

/// One source run and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSync {
    pub source_id: i64,
    pub uuid: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One journal entry that names a copied (or already present) run.
#[derive(Debug, Clone, Serialize)]
pub struct EntrySync {
    pub source_id: i64,
    pub uuid: Option<String>,
    pub title: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One profile saved from a copied (or already present) run, by name.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileSync {
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Added to the destination as `id` (none in a dry run: it would be added).
    Copied { id: Option<i64> },
    /// The destination holds it already, as `id`, with the same content.
    Unchanged { id: i64 },
    /// The destination holds it as `id` with different content; nothing was overwritten.
    Conflict {
        id: i64,
        differences: Vec<Difference>,
    },
    /// Not copied, and why (still being measured; a run it names is not in the destination).
    Skipped { reason: String },
}

/// A field that differs between the two stores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub field: String,
    pub source: String,
    pub destination: String,
}

impl SyncReport {
    /// Everything that conflicts: runs, journal entries and profiles.
    pub fn conflicts(&self) -> usize {
        self.outcomes()
            .filter(|o| matches!(o, Outcome::Conflict { .. }))
            .count()
    }

    fn outcomes(&self) -> impl Iterator<Item = &Outcome> {
        let runs = self.runs.iter().map(|r| &r.outcome);
        let journal = self.journal.iter().map(|e| &e.outcome);
        runs.chain(journal)
            .chain(self.profiles.iter().map(|p| &p.outcome))
    }
}

/// Copy `runs` (ids in `from`) into `to`; see the module docs.
pub fn copy_runs(from: &Store, to: &Store, runs: &[i64]) -> Result<SyncReport> {
    Sync::new(from, to, false)
        .all(runs)
        .map_err(|e| e.store_error(from, to))
}

/// What [`copy_runs`] would do, changing neither store (`--dry-run`).
pub fn plan_runs(from: &Store, to: &Store, runs: &[i64]) -> Result<SyncReport> {
    Sync::new(from, to, true)
        .all(runs)
        .map_err(|e| e.store_error(from, to))
}

impl Store {
    /// The id of every stored run, oldest first (what `push` and `pull` copy by default).
    pub fn run_ids(&self) -> Result<Vec<i64>> {
        self.db
            .query_map("SELECT id FROM runs ORDER BY id", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// A database error and the store it came from.
#[derive(Debug)]
enum Side {
    From(DbError),
    To(DbError),
}

impl From<DbError> for Side {
    fn from(e: DbError) -> Self {
        Side::To(e)
    }
}

impl Side {
    fn store_error(self, from: &Store, to: &Store) -> crate::Error {
        match self {
            Side::From(e) => from.err(e),
            Side::To(e) => to.err(e),
        }
    }
}

/// The tables a run's rows point at that are shared between runs: matched in the destination by
/// their identity (`key`), inserted there when missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// The run being copied (its new id).
    Run,
    /// A trial of the run being copied (its new id).
    Trial,
    System,
    Config,
    Engine,
    Model,
    /// A row of the source's own bookkeeping (a run's queue item): the destination gets NULL.
    Local,
}

impl Key {
    /// The shared table and its identity columns; `true` marks a nullable column compared as
    /// `coalesce(column, '')`, as the unique index over `engines` does.
    fn dimension(self) -> Option<(&'static str, &'static [(&'static str, bool)])> {
        Some(match self {
            Key::System => ("systems", &[("hash", false)]),
            Key::Config => ("configs", &[("hash", false)]),
            Key::Model => (
                "models",
                &[("path", false), ("size", false), ("mtime", false)],
            ),
            Key::Engine => (
                "engines",
                &[
                    ("kind", false),
                    ("path", false),
                    ("version", true),
                    ("build_name", true),
                    ("binary_sha256", true),
                    ("backends", true),
                    ("devices", true),
                ],
            ),
            // Runs and trials are copied, not matched; local rows are not carried.
            Key::Run | Key::Trial | Key::Local => return None,
        })
    }
}

/// A table of rows that belong to one run: how to select them and which columns to remap.
struct Child {
    table: &'static str,
    select: &'static str,
    remap: &'static [(&'static str, Key)],
}

const TRIALS: Child = Child {
    table: "trials",
    select: "SELECT * FROM trials WHERE run_id = ?1 ORDER BY id",
    remap: &[
        ("run_id", Key::Run),
        ("config_id", Key::Config),
        ("engine_id", Key::Engine),
        ("model_id", Key::Model),
    ],
};

/// The rows under a run's trials, in an order that satisfies their foreign keys.
const LEAVES: &[Child] = &[
    Child {
        table: "samples",
        select: "SELECT s.* FROM samples s JOIN trials t ON t.id = s.trial_id WHERE t.run_id = ?1 ORDER BY s.id",
        remap: &[("trial_id", Key::Trial)],
    },
    Child {
        table: "engine_logs",
        select: "SELECT * FROM engine_logs WHERE run_id = ?1 ORDER BY id",
        remap: &[("run_id", Key::Run), ("trial_id", Key::Trial)],
    },
    Child {
        table: "fidelity",
        select: "SELECT * FROM fidelity WHERE run_id = ?1 ORDER BY id",
        remap: &[
            ("run_id", Key::Run),
            ("trial_id", Key::Trial),
            ("config_id", Key::Config),
        ],
    },
    Child {
        table: "tool_traces",
        select: "SELECT * FROM tool_traces WHERE run_id = ?1 ORDER BY id",
        remap: &[("run_id", Key::Run), ("trial_id", Key::Trial)],
    },
    Child {
        table: "tune_decisions",
        select: "SELECT * FROM tune_decisions WHERE run_id = ?1 ORDER BY id",
        remap: &[("run_id", Key::Run)],
    },
    Child {
        table: "tune_answers",
        select: "SELECT * FROM tune_answers WHERE run_id = ?1",
        remap: &[("run_id", Key::Run)],
    },
    Child {
        table: "run_audits",
        select: "SELECT * FROM run_audits WHERE run_id = ?1",
        remap: &[("run_id", Key::Run)],
    },
];

/// A run's queue item is the team store's record of who measured it; the item itself is not
/// copied, so the copy names none (the item keeps the run's uuid).
const RUN_REMAP: &[(&str, Key)] = &[("system_id", Key::System), ("queue_item", Key::Local)];

const PROFILE_REMAP: &[(&str, Key)] = &[
    ("run_id", Key::Run),
    ("config_id", Key::Config),
    ("model_id", Key::Model),
    ("engine_id", Key::Engine),
];

/// Values per multi-row INSERT (well under both backends' parameter limits).
const BATCH_VALUES: usize = 900;

/// The fields a run is compared on, as both stores hold them.
struct RunState {
    id: i64,
    uuid: Option<String>,
    status: String,
    ended_at: Option<String>,
    error: Option<String>,
    trials: i64,
    samples: i64,
    pid: Option<i32>,
    pid_start: Option<i64>,
    host: Option<String>,
}

const RUN_STATE: &str = "SELECT r.id, r.uuid, r.status, r.ended_at, r.error,
    (SELECT count(*) FROM trials t WHERE t.run_id = r.id),
    (SELECT count(*) FROM samples s JOIN trials t ON t.id = s.trial_id WHERE t.run_id = r.id),
    r.pid, r.pid_start, r.host FROM runs r";

fn run_state(r: &Row) -> Result<RunState, DbError> {
    Ok(RunState {
        id: r.get(0)?,
        uuid: r.get(1)?,
        status: r.get(2)?,
        ended_at: r.get(3)?,
        error: r.get(4)?,
        trials: r.get(5)?,
        samples: r.get(6)?,
        pid: r.get(7)?,
        pid_start: r.get(8)?,
        host: r.get(9)?,
    })
}

impl RunState {
    fn differences(&self, there: &RunState) -> Vec<Difference> {
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        let fields = [
            ("status", self.status.clone(), there.status.clone()),
            ("ended_at", text(&self.ended_at), text(&there.ended_at)),
            ("error", text(&self.error), text(&there.error)),
            ("trials", self.trials.to_string(), there.trials.to_string()),
            (
                "samples",
                self.samples.to_string(),
                there.samples.to_string(),
            ),
        ];
        differences(fields)
    }

    /// Being measured right now by a process on this host (copying it would copy half a run).
    fn live_here(&self) -> bool {
        let here = self.host.is_none() || self.host == runs::own_host();
        let (status, host) = (self.status.clone(), self.host.clone());
        here && runs::live_status(status, self.pid, self.pid_start, host) == "running"
    }
}

fn differences<const N: usize>(fields: [(&str, String, String); N]) -> Vec<Difference> {
    fields
        .into_iter()
        .filter(|(_, source, destination)| source != destination)
        .map(|(field, source, destination)| Difference {
            field: field.into(),
            source,
            destination,
        })
        .collect()
}

struct Sync<'a> {
    from: &'a Store,
    to: &'a Store,
    dry_run: bool,
    /// Shared rows already matched: (table, source id) → destination id.
    dimensions: HashMap<(Key, i64), i64>,
    /// Source run → destination run, for runs known there (`None`: a dry run would copy it).
    runs: HashMap<i64, Option<i64>>,
}

/// The new ids of the run being copied and of its trials.
struct Ids<'a> {
    run: i64,
    trials: &'a HashMap<i64, i64>,
}

impl<'a> Sync<'a> {
    fn new(from: &'a Store, to: &'a Store, dry_run: bool) -> Self {
        Sync {
            from,
            to,
            dry_run,
            dimensions: HashMap::new(),
            runs: HashMap::new(),
        }
    }

    fn all(&mut self, runs: &[i64]) -> Result<SyncReport, Side> {
        let ids: BTreeSet<i64> = runs.iter().copied().collect();
        let mut report = SyncReport::default();
        for &id in &ids {
            let (run, profiles) = self.run(id)?;
            report.runs.push(run);
            report.profiles.extend(profiles);
        }
        report.journal = self.journal(&ids)?;
        Ok(report)
    }

    fn run(&mut self, id: i64) -> Result<(RunSync, Vec<ProfileSync>), Side> {
        let sql = format!("{RUN_STATE} WHERE r.id = ?1");
        let source = self
            .from
            .db
            .query_row(&sql, [id], run_state)
            .map_err(Side::From)?;
        let uuid = source.uuid.clone();
        let (outcome, profiles) = match &uuid {
            None => (skipped("it has no uuid"), Vec::new()),
            Some(_) if source.live_here() => {
                let pid = source.pid.unwrap_or_default();
                (skipped(format!("still running (pid {pid})")), Vec::new())
            }
            Some(uuid) => self.run_by_uuid(&source, uuid)?,
        };
        let run = RunSync {
            source_id: id,
            uuid,
            outcome,
        };
        Ok((run, profiles))
    }

    fn run_by_uuid(
        &mut self,
        source: &RunState,
        uuid: &str,
    ) -> Result<(Outcome, Vec<ProfileSync>), Side> {
        let sql = format!("{RUN_STATE} WHERE r.uuid = ?1");
        let there = self.to.db.query_row(&sql, [uuid], run_state).optional()?;
        let Some(there) = there else {
            if self.dry_run {
                self.runs.insert(source.id, None);
                let profiles = self.profiles(source.id, None)?;
                return Ok((Outcome::Copied { id: None }, profiles));
            }
            let (id, profiles) = self.copy_run(source.id)?;
            self.runs.insert(source.id, Some(id));
            return Ok((Outcome::Copied { id: Some(id) }, profiles));
        };
        let differences = source.differences(&there);
        if !differences.is_empty() {
            let id = there.id;
            return Ok((Outcome::Conflict { id, differences }, Vec::new()));
        }
        self.runs.insert(source.id, Some(there.id));
        let profiles = self.profiles(source.id, Some(there.id))?;
        Ok((Outcome::Unchanged { id: there.id }, profiles))
    }

    /// Copy one run with everything under it in one destination transaction.
    fn copy_run(&mut self, source: i64) -> Result<(i64, Vec<ProfileSync>), Side> {
        let to = self.to;
        to.db.transaction(|db| {
            let run = self.rows("SELECT * FROM runs WHERE id = ?1", source)?;
            let no_trials = HashMap::new();
            let ids = Ids {
                run: 0,
                trials: &no_trials,
            };
            let row = run.first().ok_or(Side::From(DbError::NoRows))?;
            let values = self.remapped(row, RUN_REMAP, &ids)?;
            let id = db.insert(&insert_sql("runs", row, 1), values.as_slice())?;
            let trials = self.copy_trials(source, id)?;
            let ids = Ids {
                run: id,
                trials: &trials,
            };
            for child in LEAVES {
                self.copy_leaves(child, source, &ids)?;
            }
            let profiles = self.profiles(source, Some(id))?;
            Ok((id, profiles))
        })
    }

    fn copy_trials(&mut self, source: i64, run: i64) -> Result<HashMap<i64, i64>, Side> {
        let mut trials = HashMap::new();
        for row in self.rows(TRIALS.select, source)? {
            let no_trials = HashMap::new();
            let ids = Ids {
                run,
                trials: &no_trials,
            };
            let values = self.remapped(&row, TRIALS.remap, &ids)?;
            let id = self
                .to
                .db
                .insert(&insert_sql(TRIALS.table, &row, 1), values.as_slice())?;
            trials.insert(row.get::<i64>(0).map_err(Side::From)?, id);
        }
        Ok(trials)
    }

    /// Rows nothing points at, inserted many to a statement (a load run holds thousands).
    fn copy_leaves(&mut self, child: &Child, source: i64, ids: &Ids) -> Result<(), Side> {
        let rows = self.rows(child.select, source)?;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let width = first.columns().iter().filter(|c| *c != "id").count().max(1);
        for chunk in rows.chunks((BATCH_VALUES / width).max(1)) {
            let mut values = Vec::with_capacity(chunk.len() * width);
            for row in chunk {
                values.extend(self.remapped(row, child.remap, ids)?);
            }
            let sql = insert_sql(child.table, first, chunk.len());
            self.to.db.execute(&sql, values.as_slice())?;
        }
        Ok(())
    }

    /// A source row's values without its `id`, foreign keys mapped to the destination's ids.
    fn remapped(
        &mut self,
        row: &Row,
        remap: &[(&str, Key)],
        ids: &Ids,
    ) -> Result<Vec<Value>, Side> {
        let mut values = Vec::with_capacity(row.values().len());
        for (column, value) in row.columns().iter().zip(row.values()) {
            if column == "id" {
                continue;
            }
            let key = remap.iter().find(|(c, _)| c == column).map(|(_, k)| *k);
            values.push(match (key, value) {
                (Some(Key::Local), _) => Value::Null,
                (Some(key), Value::Int(id)) => Value::Int(self.map_id(key, *id, ids, column)?),
                _ => value.clone(),
            });
        }
        Ok(values)
    }

    fn map_id(&mut self, key: Key, id: i64, ids: &Ids, column: &str) -> Result<i64, Side> {
        match key {
            Key::Run => Ok(ids.run),
            Key::Trial => ids.trials.get(&id).copied().ok_or_else(|| {
                Side::From(DbError::Other(format!(
                    "{column} {id} names a trial of another run"
                )))
            }),
            Key::Local => Err(Side::From(DbError::Other(format!(
                "{column} is not carried"
            )))),
            shared => self.dimension(shared, id),
        }
    }

    /// The destination's id of a shared row (a system, config, engine or model), inserted there
    /// when it has none with the same identity.
    fn dimension(&mut self, key: Key, id: i64) -> Result<i64, Side> {
        if let Some(found) = self.dimensions.get(&(key, id)) {
            return Ok(*found);
        }
        let (table, identity) = key
            .dimension()
            .ok_or_else(|| Side::From(DbError::Other(format!("{key:?} is not a shared table"))))?;
        let rows = self.rows(&format!("SELECT * FROM {table} WHERE id = ?1"), id)?;
        let row = rows
            .first()
            .ok_or_else(|| Side::From(DbError::Other(format!("{table} row {id} is missing"))))?;
        let no_trials = HashMap::new();
        let ids = Ids {
            run: 0,
            trials: &no_trials,
        };
        let values = self.remapped(row, &[], &ids)?;
        let insert = format!("{} ON CONFLICT DO NOTHING", insert_sql(table, row, 1));
        self.to.db.execute(&insert, values.as_slice())?;
        let mut conditions = Vec::new();
        let mut key_values = Vec::new();
        for (n, (column, nullable)) in identity.iter().enumerate() {
            conditions.push(match nullable {
                true => format!("coalesce({column}, '') = coalesce(?{}, '')", n + 1),
                false => format!("{column} = ?{}", n + 1),
            });
            key_values.push(column_value(row, column).cloned().unwrap_or(Value::Null));
        }
        let select = format!("SELECT id FROM {table} WHERE {}", conditions.join(" AND "));
        let found: i64 = self
            .to
            .db
            .query_row(&select, key_values.as_slice(), |r| r.get(0))?;
        self.dimensions.insert((key, id), found);
        Ok(found)
    }

    fn rows(&self, sql: &str, id: i64) -> Result<Vec<Row>, Side> {
        self.from.db.query(sql, [id]).map_err(Side::From)
    }

    /// The profiles saved from source run `source`, matched by name in the destination and
    /// copied there (pointing at `run`) when missing; `run` is `None` in a dry run.
    fn profiles(&mut self, source: i64, run: Option<i64>) -> Result<Vec<ProfileSync>, Side> {
        let rows = self.rows(
            "SELECT * FROM profiles WHERE run_id = ?1 ORDER BY id",
            source,
        )?;
        rows.iter().map(|row| self.profile(row, run)).collect()
    }

    fn profile(&mut self, row: &Row, run: Option<i64>) -> Result<ProfileSync, Side> {
        let text = |column| text_value(row, column);
        let name = text("name");
        let there = self
            .to
            .db
            .query_row(
                "SELECT id, flags, model_sha256 FROM profiles WHERE name = ?1",
                [name.as_str()],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Option<String>>(2)?,
                    ))
                },
            )
            .optional()?;
        let outcome = match (there, run) {
            (Some((id, flags, sha256)), _) => {
                let none = || "none".to_string();
                let differences = differences([
                    ("flags", text("flags"), flags),
                    (
                        "model_sha256",
                        text("model_sha256"),
                        sha256.unwrap_or_else(none),
                    ),
                ]);
                match differences.is_empty() {
                    true => Outcome::Unchanged { id },
                    false => Outcome::Conflict { id, differences },
                }
            }
            (None, None) => Outcome::Copied { id: None },
            (None, Some(run)) => {
                let no_trials = HashMap::new();
                let ids = Ids {
                    run,
                    trials: &no_trials,
                };
                let values = self.remapped(row, PROFILE_REMAP, &ids)?;
                let sql = insert_sql("profiles", row, 1);
                let id = self.to.db.insert(&sql, values.as_slice())?;
                Outcome::Copied { id: Some(id) }
            }
        };
        Ok(ProfileSync { name, outcome })
    }

    /// The journal entries that name any of `runs`, each copied when every run it names is in
    /// the destination (by uuid), unchanged or a conflict when the destination has its uuid.
    fn journal(&mut self, runs: &BTreeSet<i64>) -> Result<Vec<EntrySync>, Side> {
        let rows = self
            .from
            .db
            .query("SELECT * FROM journal ORDER BY id", [])
            .map_err(Side::From)?;
        let names = |row: &Row| {
            let run = |c| column_value(row, c).and_then(i64_value);
            [run("before_run"), run("after_run")]
        };
        let mut entries = Vec::new();
        for row in rows {
            if names(&row).iter().flatten().any(|r| runs.contains(r)) {
                entries.push(self.entry(&row, names(&row))?);
            }
        }
        Ok(entries)
    }

    fn entry(&mut self, row: &Row, names: [Option<i64>; 2]) -> Result<EntrySync, Side> {
        let source_id: i64 = row.get(0).map_err(Side::From)?;
        let title = text_value(row, "title");
        let mut mapped = [None, None];
        for (slot, run) in mapped.iter_mut().zip(names) {
            let Some(run) = run else { continue };
            match self.destination_run(run)? {
                Some(id) => *slot = id,
                None => {
                    let reason = format!("run {run} it names is not in the destination");
                    let uuid = column_value(row, "uuid").and_then(text_of);
                    return Ok(EntrySync {
                        source_id,
                        uuid,
                        title,
                        outcome: skipped(reason),
                    });
                }
            }
        }
        let uuid = self.entry_uuid(row, source_id)?;
        let outcome = match &uuid {
            Some(uuid) => self.entry_by_uuid(row, uuid, mapped)?,
            None => Outcome::Copied { id: None },
        };
        Ok(EntrySync {
            source_id,
            uuid,
            title,
            outcome,
        })
    }

    /// An entry's uuid; one written before entries got theirs is given one now (in the source,
    /// so the next copy finds it again), except in a dry run.
    fn entry_uuid(&self, row: &Row, id: i64) -> Result<Option<String>, Side> {
        if let Some(uuid) = column_value(row, "uuid").and_then(text_of) {
            return Ok(Some(uuid));
        }
        if self.dry_run {
            return Ok(None);
        }
        let uuid = runs::new_uuid();
        let sql = "UPDATE journal SET uuid = ?2 WHERE id = ?1 AND uuid IS NULL";
        let args = [Value::Int(id), Value::Text(uuid.clone())];
        self.from
            .db
            .execute(sql, args.as_slice())
            .map_err(Side::From)?;
        Ok(Some(uuid))
    }

    fn entry_by_uuid(
        &mut self,
        row: &Row,
        uuid: &str,
        mapped: [Option<i64>; 2],
    ) -> Result<Outcome, Side> {
        let there = self
            .to
            .db
            .query("SELECT * FROM journal WHERE uuid = ?1", [uuid])?;
        if let Some(there) = there.first() {
            return Ok(entry_differences(row, there, mapped));
        }
        if self.dry_run {
            return Ok(Outcome::Copied { id: None });
        }
        let mut values = Vec::new();
        for (column, value) in row.columns().iter().zip(row.values()) {
            values.push(match column.as_str() {
                "id" => continue,
                "before_run" => mapped[0].map_or(Value::Null, Value::Int),
                "after_run" => mapped[1].map_or(Value::Null, Value::Int),
                "uuid" => Value::Text(uuid.to_string()),
                _ => value.clone(),
            });
        }
        let id = self
            .to
            .db
            .insert(&insert_sql("journal", row, 1), values.as_slice())?;
        Ok(Outcome::Copied { id: Some(id) })
    }

    /// Where source run `run` is in the destination: `Some(Some(id))`; `Some(None)` when a dry
    /// run would copy it; `None` when it is not there.
    fn destination_run(&mut self, run: i64) -> Result<Option<Option<i64>>, Side> {
        if let Some(known) = self.runs.get(&run) {
            return Ok(Some(*known));
        }
        let uuid: Option<String> = self
            .from
            .db
            .query_row("SELECT uuid FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .optional()
            .map_err(Side::From)?
            .flatten();
        let Some(uuid) = uuid else { return Ok(None) };
        let found: Option<i64> = self
            .to
            .db
            .query_row("SELECT id FROM runs WHERE uuid = ?1", [uuid], |r| r.get(0))
            .optional()?;
        if let Some(id) = found {
            self.runs.insert(run, Some(id));
        }
        Ok(found.map(Some))
    }
}

/// Unchanged, or a conflict naming the fields that differ (the runs compared as mapped).
fn entry_differences(source: &Row, there: &Row, mapped: [Option<i64>; 2]) -> Outcome {
    let id = there.get::<i64>(0).unwrap_or_default();
    let field = |name: &'static str| (name, text_value(source, name), text_value(there, name));
    let mut fields = vec![
        field("title"),
        field("change"),
        field("verdict"),
        field("proposed"),
        field("verdict_by"),
        field("evidence"),
        field("note"),
    ];
    for (name, mapped) in ["before_run", "after_run"].into_iter().zip(mapped) {
        let there_run = text_value(there, name);
        // A run a dry run would copy has no id to compare yet.
        if let Some(id) = mapped {
            fields.push((name, id.to_string(), there_run));
        }
    }
    let differences: Vec<Difference> = fields
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(field, source, destination)| Difference {
            field: field.into(),
            source,
            destination,
        })
        .collect();
    match differences.is_empty() {
        true => Outcome::Unchanged { id },
        false => Outcome::Conflict { id, differences },
    }
}

fn skipped(reason: impl Into<String>) -> Outcome {
    Outcome::Skipped {
        reason: reason.into(),
    }
}

/// `INSERT INTO table (columns but id) VALUES (?1, ..), (..)` for `rows` rows shaped like `row`.
fn insert_sql(table: &str, row: &Row, rows: usize) -> String {
    let columns: Vec<&str> = row
        .columns()
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "id")
        .collect();
    let width = columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let slots: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", slots.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        columns.join(", "),
        tuples.join(", ")
    )
}

fn column_value<'r>(row: &'r Row, column: &str) -> Option<&'r Value> {
    let index = row.columns().iter().position(|c| c == column)?;
    row.values().get(index)
}

fn i64_value(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    }
}

/// A column as text for comparing and showing: `none` for NULL.
fn text_value(row: &Row, column: &str) -> String {
    match column_value(row, column) {
        None | Some(Value::Null) => "none".into(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Real(f)) => f.to_string(),
        Some(Value::Text(s)) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::measure::sink::NewTrial;
    use crate::store::{JournalEntry, Profile, TuneDecision};
    use crate::system::Fingerprint;

    struct Stores {
        dir: tempfile::TempDir,
        from: Store,
        to: Store,
    }

    fn stores() -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(&dir.path().join("here.db")).unwrap();
        let to = Store::open(&dir.path().join("team.db")).unwrap();
        Stores { dir, from, to }
    }

    /// A finished bench run with two trials, their samples, an engine log, a fidelity check, a
    /// tool trace, a tune decision and answer and an audit; returns its id.
    fn measured_run(stores: &Stores, tag: &str, kv: &str) -> i64 {
        let store = &stores.from;
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let params = serde_json::json!({"p": 16});
        let run = store
            .begin_run("bench", "bakeoff bench", system, Some(tag), &params)
            .unwrap();
        let engine = store
            .engine_id("llama-server", "/opt/llama-server", None, Some("b1"))
            .unwrap();
        let model_path = stores.dir.path().join("m.gguf");
        std::fs::write(&model_path, b"not really a model").unwrap();
        let model = store.model(&model_path).unwrap().id;
        let config = EngineConfig::default().with_flag("-ctk", kv);
        let workload = serde_json::json!({"test": "tg8"});
        let mut trials = Vec::new();
        for repetition in 0..2 {
            let trial = NewTrial {
                engine_id: Some(engine),
                model_id: Some(model),
                ..NewTrial::new(Some(&config), &workload, repetition)
            };
            let id = store.begin_trial(run, &trial).unwrap();
            for seq in 0..3 {
                let value = 100.0 + seq as f64 + repetition as f64 / 2.0;
                store
                    .sample(id, "tg_tps", value, Unit::TokensPerSecond, "client", seq)
                    .unwrap();
            }
            store.end_trial(id, "ok", None).unwrap();
            trials.push(id);
        }
        let log = stores.dir.path().join("server.log");
        std::fs::write(&log, "loading\nready\n").unwrap();
        store.engine_log(run, Some(trials[1]), &log).unwrap();
        let db = &store.db;
        db.execute(
            "INSERT INTO fidelity (run_id, trial_id, candidate, config_id, kind, name, status, value)
             SELECT ?1, ?2, 'c1', config_id, 'canary', 'capital', 'pass', 1.0 FROM trials WHERE id = ?2",
            [run, trials[0]],
        )
        .unwrap();
        db.execute(
            "INSERT INTO tool_traces (run_id, trial_id, arm, task, halt_reason, steps_used, tool_calls_total,
             wall_clock_s, final_history_chars, trace) VALUES (?1, ?2, 'json', 't1', 'done', 3, 2, 1.5, 900, '{}')",
            [run, trials[1]],
        )
        .unwrap();
        store.record_tune_decision(run, &decision()).unwrap();
        store
            .save_tune_answer(run, &serde_json::json!({"winner": kv}))
            .unwrap();
        db.execute(
            "INSERT INTO run_audits (run_id, audit) VALUES (?1, '{}')",
            [run],
        )
        .unwrap();
        store.end_run(run, "ok", None).unwrap();
        run
    }

    fn decision() -> TuneDecision {
        TuneDecision {
            round: 1,
            config_hash: "abc".into(),
            candidate: "-ctk q8_0".into(),
            action: "winner".into(),
            reference: None,
            why: "fastest".into(),
        }
    }

    fn journal_entry(before: i64, after: i64) -> JournalEntry {
        JournalEntry {
            id: 0,
            title: "q8_0 KV".into(),
            change: "-ctk q8_0".into(),
            before_run: Some(before),
            after_run: Some(after),
            verdict: "KEEP".into(),
            proposed: Some("KEEP".into()),
            verdict_by: "proposal".into(),
            evidence: serde_json::json!({"ratio": 1.1}),
            note: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn profile(store: &Store, run: i64, name: &str) -> Profile {
        let config = store.run_configs(run).unwrap().remove(0);
        Profile {
            name: name.into(),
            run_id: Some(run),
            config_id: Some(config.config_id),
            config_hash: None,
            model_id: config.model_id,
            model_path: "/models/m.gguf".into(),
            model_sha256: Some("feed".into()),
            engine_id: config.engine_id,
            engine_path: Some("/opt/llama-server".into()),
            engine_version: None,
            flags: vec!["-ctk".into(), "q8_0".into()],
            fallback: None,
            canary_reference: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn count(store: &Store, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        store.db.query_row(&sql, [], |r| r.get(0)).unwrap()
    }

    const TABLES: &[&str] = &[
        "runs",
        "trials",
        "samples",
        "engine_logs",
        "fidelity",
        "tool_traces",
        "tune_decisions",
        "tune_answers",
        "run_audits",
        "journal",
        "profiles",
        "systems",
        "configs",
        "engines",
        "models",
    ];

    fn counts(store: &Store) -> Vec<i64> {
        TABLES.iter().map(|t| count(store, t)).collect()
    }

    fn copied_id(outcome: &Outcome) -> i64 {
        match outcome {
            Outcome::Copied { id: Some(id) } => *id,
            other => panic!("not copied: {other:?}"),
        }
    }

    /// The destination already holds a run of its own, so copied ids cannot happen to match.
    fn occupy_destination(stores: &Stores) {
        let system = stores.to.system_id(&Fingerprint::collect()).unwrap();
        let params = serde_json::json!({});
        for _ in 0..3 {
            stores
                .to
                .begin_run("load", "bakeoff load", system, None, &params)
                .unwrap();
        }
        let other = EngineConfig::default().with_flag("-fa", "on");
        stores.to.config_id(&other).unwrap();
    }

    #[test]
    fn a_run_is_copied_with_everything_under_it_and_its_ids_remapped() {
        let stores = stores();
        occupy_destination(&stores);
        let before = measured_run(&stores, "base", "f16");
        let after = measured_run(&stores, "new", "q8_0");
        stores
            .from
            .add_journal_entry(&journal_entry(before, after))
            .unwrap();
        let saved = profile(&stores.from, after, "daily");
        stores.from.save_profile(&saved, false).unwrap();

        let report = copy_runs(&stores.from, &stores.to, &[after, before]).unwrap();
        assert_eq!(report.runs.len(), 2);
        assert_eq!(report.runs[0].source_id, before, "copied oldest first");
        let (new_before, new_after) = (
            copied_id(&report.runs[0].outcome),
            copied_id(&report.runs[1].outcome),
        );
        assert_ne!(new_after, after, "ids are the destination's");

        let source = stores.from.run_detail(after).unwrap();
        let copied = stores.to.run_detail(new_after).unwrap();
        assert_eq!(copied.run.status, "ok");
        assert_eq!(copied.run.tag.as_deref(), Some("new"));
        assert_eq!((copied.run.trials, copied.run.samples), (2, 6));
        let summary = |d: &crate::store::RunDetail| -> Vec<_> {
            d.trials
                .iter()
                .map(|t| {
                    let values: Vec<f64> = t.samples.iter().map(|s| s.value).collect();
                    (
                        t.config_hash.clone(),
                        t.engine.clone(),
                        t.model_sha256.clone(),
                        values,
                    )
                })
                .collect()
        };
        assert_eq!(summary(&copied), summary(&source));
        assert_eq!(copied.logs.len(), 1);
        assert_eq!(copied.params, serde_json::json!({"p": 16}));
        assert!(copied.system.is_some());
        let uuid = |store: &Store, id: i64| -> String {
            let sql = "SELECT uuid FROM runs WHERE id = ?1";
            store.db.query_row(sql, [id], |r| r.get(0)).unwrap()
        };
        assert_eq!(uuid(&stores.to, new_after), uuid(&stores.from, after));
        for table in [
            "fidelity",
            "tool_traces",
            "tune_decisions",
            "tune_answers",
            "run_audits",
        ] {
            let sql = format!("SELECT count(*) FROM {table} WHERE run_id = ?1");
            let n: i64 = stores
                .to
                .db
                .query_row(&sql, [new_after], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
        // The fidelity row points at the copied trial and its config, not the source's ids.
        let (trial_run, config_hash): (i64, String) = stores
            .to
            .db
            .query_row(
                "SELECT t.run_id, c.hash FROM fidelity f JOIN trials t ON t.id = f.trial_id
                 JOIN configs c ON c.id = f.config_id WHERE f.run_id = ?1",
                [new_after],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(trial_run, new_after);
        assert_eq!(Some(config_hash), source.trials[0].config_hash);

        assert_eq!(report.journal.len(), 1);
        let entry_id = copied_id(&report.journal[0].outcome);
        let entry = stores.to.journal_entry(entry_id).unwrap();
        assert_eq!(
            (entry.before_run, entry.after_run),
            (Some(new_before), Some(new_after))
        );
        assert_eq!(entry.evidence, serde_json::json!({"ratio": 1.1}));

        assert_eq!(report.profiles.len(), 1);
        let there = stores.to.profile("daily").unwrap();
        assert_eq!(there.run_id, Some(new_after));
        assert_eq!(there.config_hash, source.trials[0].config_hash);
        assert_eq!(there.flags, saved.flags);
        assert_eq!(report.conflicts(), 0);
    }

    #[test]
    fn copying_again_adds_nothing() {
        let stores = stores();
        let before = measured_run(&stores, "base", "f16");
        let after = measured_run(&stores, "new", "q8_0");
        let entry = journal_entry(before, after);
        stores.from.add_journal_entry(&entry).unwrap();
        stores
            .from
            .save_profile(&profile(&stores.from, after, "daily"), false)
            .unwrap();
        let runs = stores.from.run_ids().unwrap();
        copy_runs(&stores.from, &stores.to, &runs).unwrap();
        let once = counts(&stores.to);
        let again = copy_runs(&stores.from, &stores.to, &runs).unwrap();
        assert_eq!(counts(&stores.to), once);
        let all = again.outcomes().collect::<Vec<_>>();
        assert_eq!(all.len(), 4, "two runs, one entry, one profile");
        assert!(
            all.iter().all(|o| matches!(o, Outcome::Unchanged { .. })),
            "{again:?}"
        );
        // And back: the source finds every run it holds in the copy.
        let back = copy_runs(&stores.to, &stores.from, &stores.to.run_ids().unwrap()).unwrap();
        assert_eq!(back.conflicts(), 0);
        assert_eq!(count(&stores.from, "runs"), 2);
    }

    #[test]
    fn a_run_that_differs_there_is_a_conflict_and_is_not_overwritten() {
        let stores = stores();
        let run = measured_run(&stores, "base", "f16");
        stores
            .from
            .save_profile(&profile(&stores.from, run, "daily"), false)
            .unwrap();
        let report = copy_runs(&stores.from, &stores.to, &[run]).unwrap();
        let there = copied_id(&report.runs[0].outcome);
        stores
            .to
            .db
            .execute(
                "UPDATE runs SET status = 'interrupted' WHERE id = ?1",
                [there],
            )
            .unwrap();
        let report = copy_runs(&stores.from, &stores.to, &[run]).unwrap();
        let expected = Outcome::Conflict {
            id: there,
            differences: vec![Difference {
                field: "status".into(),
                source: "ok".into(),
                destination: "interrupted".into(),
            }],
        };
        assert_eq!(report.runs[0].outcome, expected);
        assert_eq!(report.conflicts(), 1);
        assert_eq!(
            stores.to.run_detail(there).unwrap().run.status,
            "interrupted"
        );

        // A profile of the same name saved differently there is a conflict too.
        stores
            .to
            .db
            .execute("UPDATE runs SET status = 'ok'", [])
            .unwrap();
        stores
            .to
            .db
            .execute("UPDATE profiles SET flags = '[\"-fa\",\"on\"]'", [])
            .unwrap();
        let report = copy_runs(&stores.from, &stores.to, &[run]).unwrap();
        assert!(matches!(report.runs[0].outcome, Outcome::Unchanged { .. }));
        let Outcome::Conflict { differences, .. } = &report.profiles[0].outcome else {
            panic!("{report:?}");
        };
        assert_eq!(differences[0].field, "flags");
        assert_eq!(stores.to.profile("daily").unwrap().flags, ["-fa", "on"]);
    }

    #[test]
    fn a_run_measured_for_a_queue_item_is_copied_without_it() {
        // Regression: the copy kept runs.queue_item, an id the destination lacks (SQLite refused
        // the foreign key) or holds for another item (PostgreSQL).
        let stores = stores();
        let run = measured_run(&stores, "base", "f16");
        let db = &stores.from.db;
        db.batch(
            "INSERT INTO queue_experiments (id, uuid, kind, mode, argv, shards) VALUES (7, 'e', 'bench', 'split', '[]', 1);
             INSERT INTO queue_items (id, experiment_id, shard_k) VALUES (9, 7, 1);",
        )
        .unwrap();
        db.execute("UPDATE runs SET queue_item = 9 WHERE id = ?1", [run])
            .unwrap();
        let report = copy_runs(&stores.from, &stores.to, &[run]).unwrap();
        let there = copied_id(&report.runs[0].outcome);
        let sql = "SELECT queue_item FROM runs WHERE id = ?1";
        let item: Option<i64> = stores.to.db.query_row(sql, [there], |r| r.get(0)).unwrap();
        assert_eq!(item, None);
    }

    #[test]
    fn a_dry_run_changes_neither_store() {
        let stores = stores();
        let before = measured_run(&stores, "base", "f16");
        let after = measured_run(&stores, "new", "q8_0");
        stores
            .from
            .add_journal_entry(&journal_entry(before, after))
            .unwrap();
        let (from, to) = (counts(&stores.from), counts(&stores.to));
        let report = plan_runs(&stores.from, &stores.to, &[before, after]).unwrap();
        let all: Vec<_> = report.outcomes().collect();
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|o| **o == Outcome::Copied { id: None }));
        assert_eq!((counts(&stores.from), counts(&stores.to)), (from, to));
        let uuids = "SELECT uuid FROM journal";
        let uuid: Option<String> = stores.from.db.query_row(uuids, [], |r| r.get(0)).unwrap();
        assert!(uuid.is_some(), "an entry has its uuid from the start");
    }

    #[test]
    fn a_run_still_measuring_here_waits_and_an_entry_waits_for_its_runs() {
        let stores = stores();
        let done = measured_run(&stores, "base", "f16");
        let system = stores.from.system_id(&Fingerprint::collect()).unwrap();
        let params = serde_json::json!({});
        let live = stores
            .from
            .begin_run("bench", "bakeoff bench", system, None, &params)
            .unwrap();
        stores
            .from
            .add_journal_entry(&journal_entry(done, live))
            .unwrap();
        let report = copy_runs(&stores.from, &stores.to, &[done, live]).unwrap();
        let Outcome::Skipped { reason } = &report.runs[1].outcome else {
            panic!("{report:?}");
        };
        assert!(reason.starts_with("still running"), "{reason}");
        let Outcome::Skipped { reason } = &report.journal[0].outcome else {
            panic!("{report:?}");
        };
        assert!(reason.contains(&format!("run {live}")), "{reason}");
        assert_eq!(count(&stores.to, "runs"), 1);
        assert_eq!(count(&stores.to, "journal"), 0);
    }
}
