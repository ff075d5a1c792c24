//! The work queue of a team store (PostgreSQL): experiments enqueued with `--queue`, split into
//! items that `bakeoff worker`s claim with `FOR UPDATE SKIP LOCKED` (two workers never take one
//! item), hold under a lease they renew while measuring, and mark done once the item's run is
//! committed. A worker that dies stops renewing; its lease expires and the item is claimed again.

use super::db::{params, Dialect, OptionalExtension, Row};
use super::Store;
use crate::{Error, Result};
use serde::Serialize;

/// The channel enqueuing and requeuing `NOTIFY`, and idle workers `LISTEN` on.
const QUEUE_CHANNEL: &str = "bakeoff_queue";

/// How an experiment spreads over the hosts that work on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// Its cells split across the workers (one sweep finished sooner on identical hosts).
    Split,
    /// The whole experiment on every matching host (machines compared).
    Each,
}

impl QueueMode {
    fn as_str(self) -> &'static str {
        match self {
            QueueMode::Split => "split",
            QueueMode::Each => "each",
        }
    }
}

/// A model an experiment needs, by content.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    pub sha256: String,
    /// The file name it was enqueued under (a worker looks for it in its model cache).
    pub name: String,
    /// The path on the enqueuing host.
    pub path: String,
}

/// The files a queued command reads, shipped with it: each at its absolute path on the
/// enqueuing host, and the directory the command was given in (its relative paths resolve there).
/// A worker lays them out again under a folder of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Shipped {
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub files: Vec<ShippedFile>,
    /// Every path the command reached a model by (as named and as resolved, both absolute): a
    /// worker links each to its own copy, so relative model paths resolve as they did.
    #[serde(default)]
    pub models: Vec<ShippedModel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ShippedModel {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ShippedFile {
    /// Absolute, on the enqueuing host.
    pub path: String,
    pub sha256: String,
    pub text: String,
}

/// An engine build an experiment runs on: a worker takes it only where it has the same build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BuildNeed {
    /// llama.cpp's build number and commit as `--version` prints them: `b11434 (abc1234)`.
    pub build: String,
    /// The `--build NAME` it was enqueued under; empty for the command's default engine.
    pub name: String,
    /// Where the enqueuing host had it (in the command line, replaced on each worker by where
    /// that host has it); empty for the default engine, found the default way.
    pub path: String,
}

pub struct NewExperiment<'a> {
    pub kind: &'a str,
    pub mode: QueueMode,
    /// The command's arguments after `bakeoff`, without the queue's own options.
    pub argv: &'a [String],
    /// How many items a split makes (the matrix's cells; 1 for a command that is one unit).
    pub shards: usize,
    pub host_tag: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub requires: &'a [Requirement],
    pub builds: &'a [BuildNeed],
    pub shipped: &'a Shipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    pub id: i64,
    pub uuid: String,
    /// Items made now (a split's shards; `each` makes them as hosts come).
    pub items: usize,
}

/// An item a worker holds.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub item: i64,
    pub experiment: i64,
    pub experiment_uuid: String,
    pub kind: String,
    pub mode: String,
    pub argv: Vec<String>,
    /// 1-based shard of `shards`.
    pub shard_k: usize,
    pub shards: usize,
    pub attempts: usize,
    pub requires: Vec<Requirement>,
    pub builds: Vec<BuildNeed>,
    pub shipped: Shipped,
}

/// One row of `bakeoff queue` (the items and where they stand).
#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    pub item: i64,
    pub experiment_uuid: String,
    pub kind: String,
    pub mode: String,
    pub tag: Option<String>,
    pub scope: String,
    pub shard: String,
    /// `queued`, `running`, `done`, `failed`, or `expired` (running past its lease).
    pub status: String,
    pub worker: Option<String>,
    pub host: Option<String>,
    pub attempts: i64,
    pub run_uuid: Option<String>,
    pub error: Option<String>,
}

/// Attempts an item gets (a lease that expired counts as one).
pub const MAX_ATTEMPTS: i64 = 3;

const EPOCH_NOW: &str = "extract(epoch from clock_timestamp())::float8";

impl Store {
    fn require_postgres(&self, what: &str) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            return Ok(());
        }
        Err(Error::input(format!(
            "{what} needs a team store, and {} is a SQLite file",
            self.path.display()
        ))
        .with_hint("pass --db postgres://USER@HOST/DB (or set BAKEOFF_DB) naming the shared PostgreSQL database"))
    }

    /// Put an experiment on the queue (a split's items made at once).
    pub fn enqueue(&self, new: &NewExperiment) -> Result<Enqueued> {
        self.require_postgres("--queue")?;
        let uuid = super::runs::new_uuid();
        let argv = serde_json::to_string(new.argv).unwrap_or_default();
        let shards = new.shards.max(1);
        let models = serde_json::to_string(new.requires).unwrap_or_default();
        let builds = serde_json::to_string(new.builds).unwrap_or_default();
        let shipped = serde_json::to_string(new.shipped).unwrap_or_default();
        self.db
            .transaction(|db| {
                let id = db.insert(
                    "INSERT INTO queue_experiments (uuid, kind, mode, argv, shards, host_tag, tag, models, builds, shipped)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![uuid, new.kind, new.mode.as_str(), argv, shards, new.host_tag, new.tag, models, builds, shipped],
                )?;
                for need in new.requires {
                    db.execute(
                        "INSERT INTO queue_requires (experiment_id, sha256, name, path) VALUES (?1, ?2, ?3, ?4)",
                        params![id, need.sha256, need.name, need.path],
                    )?;
                }
                for need in new.builds {
                    db.execute(
                        "INSERT INTO queue_builds (experiment_id, build, name, path) VALUES (?1, ?2, ?3, ?4)",
                        params![id, need.build, need.name, need.path],
                    )?;
                }
                // Delivered at commit: idle workers look at once instead of at their next poll.
                db.batch(&format!("NOTIFY {QUEUE_CHANNEL}"))?;
                let mut items = 0;
                if new.mode == QueueMode::Split {
                    for k in 1..=shards {
                        db.execute(
                            "INSERT INTO queue_items (experiment_id, shard_k) VALUES (?1, ?2)",
                            params![id, k],
                        )?;
                        items += 1;
                    }
                }
                Ok(Enqueued { id, uuid: uuid.clone(), items })
            })
            .map_err(|e| self.err(e))
    }

    /// The models the open experiments need (a worker checks which it holds before claiming).
    pub fn queue_requirements(&self) -> Result<Vec<Requirement>> {
        self.require_postgres("the queue")?;
        let rows = self
            .db
            .query(
                "SELECT DISTINCT r.sha256, r.name, r.path FROM queue_requires r
                 JOIN queue_experiments x ON x.id = r.experiment_id
                 WHERE x.mode = 'each' OR EXISTS (SELECT 1 FROM queue_items q WHERE q.experiment_id = x.id
                                                  AND q.status IN ('queued', 'running'))",
                [],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(Requirement {
                    sha256: r.get(0)?,
                    name: r.get(1)?,
                    path: r.get(2)?,
                })
            })
            .collect::<std::result::Result<_, super::db::DbError>>()
            .map_err(|e| self.err(e))
    }

    /// The builds the open experiments need that are not among `held` (a worker says once
    /// which it lacks, so an idle worker is explained).
    pub fn queue_builds_missing(&self, held: &[String]) -> Result<Vec<BuildNeed>> {
        let rows = self
            .db
            .query(
                "SELECT DISTINCT b.build, b.name, b.path FROM queue_builds b
                 JOIN queue_experiments x ON x.id = b.experiment_id
                 WHERE b.build <> ALL(string_to_array(?1, ','))
                   AND (x.mode = 'each' OR EXISTS (SELECT 1 FROM queue_items q WHERE q.experiment_id = x.id
                                                   AND q.status IN ('queued', 'running')))",
                params![held.join(",")],
            )
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(BuildNeed {
                    build: r.get(0)?,
                    name: r.get(1)?,
                    path: r.get(2)?,
                })
            })
            .collect::<std::result::Result<_, super::db::DbError>>()
            .map_err(|e| self.err(e))
    }

    /// Claim the oldest item this worker may take: queued, or running past its lease, with
    /// attempts left; for everyone or this host (`each`); tagged for no host or one of
    /// `tags`; needing only models in `held` (sha256s) and builds in `builds` (`b11434
    /// (abc1234)`). `None` when there is nothing to do.
    pub fn claim(
        &self,
        worker: &str,
        host: &str,
        tags: &[String],
        held: &[String],
        builds: &[String],
        lease_s: f64,
    ) -> Result<Option<Claim>> {
        self.require_postgres("bakeoff worker")?;
        let tags = tags.join(",");
        let held = held.join(",");
        let builds = builds.join(",");
        // An `each` experiment gets this host's items the first time the host asks.
        self.db
            .execute(
                "INSERT INTO queue_items (experiment_id, scope, shard_k)
                 SELECT x.id, ?1, 1 FROM queue_experiments x
                 WHERE x.mode = 'each' AND (x.host_tag IS NULL OR x.host_tag = ANY(string_to_array(?2, ',')))
                 ON CONFLICT DO NOTHING",
                params![host, tags],
            )
            .map_err(|e| self.err(e))?;
        let sql = format!(
            "UPDATE queue_items SET status = 'running', worker = ?1, host = ?2,
                    lease_until = {EPOCH_NOW} + ?3, attempts = attempts + 1, error = NULL,
                    updated_at = {now}
             WHERE id = (
                SELECT q.id FROM queue_items q JOIN queue_experiments x ON x.id = q.experiment_id
                WHERE (q.status = 'queued' OR (q.status = 'running' AND q.lease_until < {EPOCH_NOW}))
                  AND q.attempts < ?6
                  AND (q.scope = '' OR q.scope = ?2)
                  AND (x.host_tag IS NULL OR x.host_tag = ANY(string_to_array(?4, ',')))
                  AND NOT EXISTS (SELECT 1 FROM queue_requires r WHERE r.experiment_id = x.id
                                  AND r.sha256 <> ALL(string_to_array(?5, ',')))
                  AND NOT EXISTS (SELECT 1 FROM queue_builds b WHERE b.experiment_id = x.id
                                  AND b.build <> ALL(string_to_array(?7, ',')))
                ORDER BY q.id LIMIT 1
                FOR UPDATE OF q SKIP LOCKED)
             RETURNING id, experiment_id, shard_k, attempts",
            now = super::db::NOW
        );
        let claimed = self
            .db
            .query_row(
                &sql,
                params![worker, host, lease_s, tags, held, MAX_ATTEMPTS, builds],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<i64>(1)?,
                        r.get::<usize>(2)?,
                        r.get::<usize>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((item, experiment, shard_k, attempts)) = claimed else {
            return Ok(None);
        };
        let claim = self
            .db
            .query_row(
                "SELECT uuid, kind, mode, argv, shards, models, builds, shipped FROM queue_experiments WHERE id = ?1",
                [experiment],
                |r| claim_of(r, item, experiment, shard_k, attempts),
            )
            .map_err(|e| self.err(e))?;
        Ok(Some(claim))
    }

    /// Extend a held item's lease; `false` when it is no longer this worker's (its lease ran
    /// out and another worker took it): the worker must stop measuring it.
    pub fn renew_lease(&self, item: i64, worker: &str, lease_s: f64) -> Result<bool> {
        let sql = format!(
            "UPDATE queue_items SET lease_until = {EPOCH_NOW} + ?3
             WHERE id = ?1 AND worker = ?2 AND status = 'running'"
        );
        let changed = self
            .db
            .execute(&sql, params![item, worker, lease_s])
            .map_err(|e| self.err(e))?;
        Ok(changed == 1)
    }

    /// The committed (`ok`) run an item already produced: a worker that died after its run
    /// ended but before marking the item done left one; it is not measured again.
    pub fn run_of_item(&self, item: i64) -> Result<Option<String>> {
        self.db
            .query_row(
                "SELECT uuid FROM runs WHERE queue_item = ?1 AND status = 'ok' ORDER BY id DESC LIMIT 1",
                [item],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record that run `run_id` is made for queue item `item`.
    pub fn set_run_queue_item(&self, run_id: i64, item: i64) -> Result<()> {
        self.db
            .execute(
                "UPDATE runs SET queue_item = ?2 WHERE id = ?1",
                params![run_id, item],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// End a held item: `done` with its run, or failed (queued again while attempts remain).
    /// Wait up to `timeout` for new work (an experiment enqueued, an item given back to the
    /// queue): `true` when some was announced. Items whose leases run out are not announced;
    /// a worker finds them at its next look.
    pub fn wait_for_work(&self, timeout: std::time::Duration) -> Result<bool> {
        self.require_postgres("the queue")?;
        (self.db.wait_for_notify(QUEUE_CHANNEL, timeout)).map_err(|e| self.err(e))
    }

    pub fn finish_item(
        &self,
        item: i64,
        worker: &str,
        outcome: std::result::Result<Option<&str>, &str>,
    ) -> Result<bool> {
        let now = super::db::NOW;
        let changed = match outcome {
            Ok(run_uuid) => self.db.execute(
                &format!(
                    "UPDATE queue_items SET status = 'done', run_uuid = ?3, error = NULL, lease_until = NULL, updated_at = {now}
                     WHERE id = ?1 AND worker = ?2 AND status = 'running'"
                ),
                params![item, worker, run_uuid],
            ),
            Err(error) => {
                let changed = self.db.execute(
                    &format!(
                        "UPDATE queue_items SET status = CASE WHEN attempts >= {MAX_ATTEMPTS} THEN 'failed' ELSE 'queued' END,
                                error = ?3, lease_until = NULL, updated_at = {now}
                         WHERE id = ?1 AND worker = ?2 AND status = 'running'"
                    ),
                    params![item, worker, error],
                );
                // An item back on the queue is work for another worker.
                changed.and_then(|n| self.db.batch(&format!("NOTIFY {QUEUE_CHANNEL}")).map(|()| n))
            }
        }
        .map_err(|e| self.err(e))?;
        Ok(changed == 1)
    }

    /// The queue's items, newest experiment first.
    pub fn queue_items(&self) -> Result<Vec<ItemRow>> {
        self.require_postgres("the queue")?;
        let sql = format!(
            "SELECT q.id, x.uuid, x.kind, x.mode, x.tag, q.scope, q.shard_k, x.shards,
                    CASE WHEN q.status = 'running' AND q.lease_until < {EPOCH_NOW} THEN 'expired' ELSE q.status END,
                    q.worker, q.host, q.attempts, q.run_uuid, q.error
             FROM queue_items q JOIN queue_experiments x ON x.id = q.experiment_id
             ORDER BY x.id DESC, q.scope, q.shard_k"
        );
        self.db
            .query_map(&sql, [], |r| {
                Ok(ItemRow {
                    item: r.get(0)?,
                    experiment_uuid: r.get(1)?,
                    kind: r.get(2)?,
                    mode: r.get(3)?,
                    tag: r.get(4)?,
                    scope: r.get(5)?,
                    shard: format!("{}/{}", r.get::<i64>(6)?, r.get::<i64>(7)?),
                    status: r.get(8)?,
                    worker: r.get(9)?,
                    host: r.get(10)?,
                    attempts: r.get(11)?,
                    run_uuid: r.get(12)?,
                    error: r.get(13)?,
                })
            })
            .map_err(|e| self.err(e))
    }
}

fn claim_of(
    r: &Row,
    item: i64,
    experiment: i64,
    shard_k: usize,
    attempts: usize,
) -> std::result::Result<Claim, super::db::DbError> {
    let argv: String = r.get(3)?;
    let models: String = r.get(5)?;
    let builds: String = r.get(6)?;
    let shipped: String = r.get(7)?;
    Ok(Claim {
        item,
        experiment,
        experiment_uuid: r.get(0)?,
        kind: r.get(1)?,
        mode: r.get(2)?,
        argv: serde_json::from_str(&argv).unwrap_or_default(),
        shard_k,
        shards: r.get(4)?,
        attempts,
        requires: serde_json::from_str::<Vec<RequirementText>>(&models)
            .unwrap_or_default()
            .into_iter()
            .map(|m| Requirement {
                sha256: m.sha256,
                name: m.name,
                path: m.path,
            })
            .collect(),
        builds: serde_json::from_str(&builds).unwrap_or_default(),
        shipped: serde_json::from_str(&shipped).unwrap_or_default(),
    })
}

#[derive(serde::Deserialize)]
struct RequirementText {
    sha256: String,
    name: String,
    path: String,
}
