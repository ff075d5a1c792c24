//! Many hosts, one experiment: `--queue` puts a bench, load, gate or tune on a team store's queue
//! ([`enqueue`]) and `bakeoff worker` on each host runs what it may take ([`Worker::run`]): it
//! claims an item, runs `bakeoff` itself on it as a child (its own measuring run, lock and
//! engines; `--shard K/N` for one shard of a split), renews the item's lease while the child
//! measures, and marks the item done once the child's run is committed. There is no scheduler
//! daemon: PostgreSQL's row locks are the whole coordination.

use crate::engines::process::{self, Supervised};
use crate::store::queue::{Claim, Enqueued, NewExperiment, QueueMode, Requirement};
use crate::store::{Location, Store};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable a worker's child finds its item in (its run records it).
pub const ITEM_ENV: &str = "BAKEOFF_QUEUE_ITEM";

/// What `--queue` enqueues.
pub struct Request<'a> {
    pub kind: &'a str,
    pub mode: QueueMode,
    pub argv: Vec<String>,
    /// The experiment's cells (a split makes one item per cell; 1 for gate and tune).
    pub cells: usize,
    pub host_tag: Option<&'a str>,
    pub tag: Option<&'a str>,
    /// The model files it reads: a worker takes it only where it holds each (by SHA-256).
    pub models: &'a [PathBuf],
}

/// Enqueue an experiment (hashing its models here, so workers can match them by content).
pub fn enqueue(store: &Store, request: &Request) -> Result<Enqueued> {
    let mut requires = Vec::new();
    for path in request.models {
        let row = store.model(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        requires.push(Requirement {
            sha256: row.sha256,
            name,
            path: row.path,
        });
    }
    let shards = match request.mode {
        QueueMode::Split => request.cells.max(1),
        QueueMode::Each => 1,
    };
    store.enqueue(&NewExperiment {
        kind: request.kind,
        mode: request.mode,
        argv: &request.argv,
        shards,
        host_tag: request.host_tag,
        tag: request.tag,
        requires: &requires,
    })
}

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in the queue (default `HOST:PID`).
    pub name: String,
    /// The host it stands for (its runs record it; `each` experiments run once per host).
    pub host: String,
    pub tags: Vec<String>,
    /// Seconds a claim holds without renewal; renewed every third of it.
    pub lease_s: f64,
    /// Pause between polls of an empty queue.
    pub poll: Duration,
    /// Stop after this many items (`--once` is 1).
    pub max_items: Option<usize>,
    /// Stop once the queue has offered nothing for this long.
    pub idle_exit: Option<Duration>,
    /// Folders to look for required models in (besides their enqueued path and the cache).
    pub model_dirs: Vec<PathBuf>,
    /// Where each item's child output goes.
    pub log_dir: PathBuf,
    /// The `bakeoff` binary the children run.
    pub exe: PathBuf,
}

/// What a worker reports as it goes.
#[derive(Debug)]
pub enum WorkerEvent<'a> {
    Claimed(&'a Claim),
    /// The item's run was already committed (by a worker that died before marking it done).
    AlreadyDone {
        item: i64,
        run_uuid: &'a str,
    },
    Done {
        item: i64,
        run_uuid: Option<&'a str>,
    },
    Failed {
        item: i64,
        error: &'a str,
        log: &'a Path,
    },
    /// Another worker holds the item now (this one's lease ran out); its child was stopped.
    LeaseLost {
        item: i64,
    },
    /// A required model this host does not hold (by SHA-256).
    Missing(&'a Requirement),
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WorkerSummary {
    pub done: usize,
    pub failed: usize,
    pub already_done: usize,
    pub lease_lost: usize,
}

pub struct Worker {
    config: WorkerConfig,
    location: Location,
    /// SHA-256 → the local file that has it (`None`: looked, not here).
    held: HashMap<String, Option<PathBuf>>,
}

impl Worker {
    pub fn new(config: WorkerConfig, location: Location) -> Result<Worker> {
        if !location.is_postgres() {
            let message = format!(
                "bakeoff worker needs a team store, and {} is a SQLite file",
                location.display()
            );
            return Err(Error::input(message).with_hint(
                "pass --db postgres://USER@HOST/DB (or set BAKEOFF_DB): the store the experiments were enqueued in",
            ));
        }
        Ok(Worker {
            config,
            location,
            held: HashMap::new(),
        })
    }

    /// Claim and run items until the queue is idle past `idle_exit`, `max_items` are done, or
    /// a signal arrives.
    pub fn run(&mut self, mut on_event: impl FnMut(WorkerEvent)) -> Result<WorkerSummary> {
        let store = Store::open_location(&self.location)?;
        let mut summary = WorkerSummary::default();
        let mut idle_since = Instant::now();
        let mut taken = 0;
        loop {
            if process::interrupted().is_some() {
                return Ok(summary);
            }
            if self.config.max_items.is_some_and(|max| taken >= max) {
                return Ok(summary);
            }
            let held = self.held_models(&store, &mut on_event)?;
            let config = &self.config;
            let claim = store.claim(
                &config.name,
                &config.host,
                &config.tags,
                &held,
                config.lease_s,
            )?;
            let Some(claim) = claim else {
                if config
                    .idle_exit
                    .is_some_and(|idle| idle_since.elapsed() >= idle)
                {
                    return Ok(summary);
                }
                // Polling an empty queue (LISTEN/NOTIFY would save the wait, not the work).
                std::thread::sleep(config.poll);
                continue;
            };
            taken += 1;
            on_event(WorkerEvent::Claimed(&claim));
            self.work(&store, &claim, &mut summary, &mut on_event)?;
            idle_since = Instant::now();
        }
    }

    fn work(
        &self,
        store: &Store,
        claim: &Claim,
        summary: &mut WorkerSummary,
        on_event: &mut impl FnMut(WorkerEvent),
    ) -> Result<()> {
        let name = &self.config.name;
        if let Some(run_uuid) = store.run_of_item(claim.item)? {
            store.finish_item(claim.item, name, Ok(Some(&run_uuid)))?;
            summary.already_done += 1;
            on_event(WorkerEvent::AlreadyDone {
                item: claim.item,
                run_uuid: &run_uuid,
            });
            return Ok(());
        }
        let log = self.config.log_dir.join(format!(
            "item-{}-attempt-{}.log",
            claim.item, claim.attempts
        ));
        let env = vec![
            ("BAKEOFF_DB".to_string(), self.location.to_db_arg()),
            (ITEM_ENV.to_string(), claim.item.to_string()),
            ("BAKEOFF_HOST".to_string(), self.config.host.clone()),
        ];
        let args = self.child_args(claim);
        let mut child = Supervised::spawn_with_env(&self.config.exe, &args, &env, None, &log)?;
        let renew_every = Duration::from_secs_f64((self.config.lease_s / 3.0).max(0.2));
        let mut renewed = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait() {
                break status;
            }
            if process::interrupted().is_some() {
                child.stop(process::GRACE);
                let why = "the worker was interrupted";
                store.finish_item(claim.item, name, Err(why))?;
                return Ok(());
            }
            if renewed.elapsed() >= renew_every {
                if !store.renew_lease(claim.item, name, self.config.lease_s)? {
                    child.stop(process::GRACE);
                    summary.lease_lost += 1;
                    on_event(WorkerEvent::LeaseLost { item: claim.item });
                    return Ok(());
                }
                renewed = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if status.success() {
            let run_uuid = store.run_of_item(claim.item)?;
            store.finish_item(claim.item, name, Ok(run_uuid.as_deref()))?;
            summary.done += 1;
            on_event(WorkerEvent::Done {
                item: claim.item,
                run_uuid: run_uuid.as_deref(),
            });
        } else {
            let last = crate::engines::fatal::tail(&log, 1).join("");
            let error = format!("{status}: {}", last.trim());
            store.finish_item(claim.item, name, Err(&error))?;
            summary.failed += 1;
            on_event(WorkerEvent::Failed {
                item: claim.item,
                error: &error,
                log: &log,
            });
        }
        Ok(())
    }

    /// The child's command line: the enqueued arguments, each required model's enqueued path
    /// replaced by where this host holds it, and the item's shard of a split.
    fn child_args(&self, claim: &Claim) -> Vec<String> {
        let mut args: Vec<String> = claim
            .argv
            .iter()
            .map(|arg| {
                claim.requires.iter().fold(arg.clone(), |arg, need| {
                    match self.held.get(&need.sha256) {
                        Some(Some(local)) if !need.path.is_empty() => {
                            arg.replace(&need.path, &local.display().to_string())
                        }
                        _ => arg,
                    }
                })
            })
            .collect();
        if claim.shards > 1 {
            args.push("--shard".into());
            args.push(format!("{}/{}", claim.shard_k, claim.shards));
        }
        args
    }

    /// The SHA-256s of the open experiments' models that this host holds (each looked up once:
    /// its enqueued path, then each model folder, by file name, checked by hash).
    fn held_models(
        &mut self,
        store: &Store,
        on_event: &mut impl FnMut(WorkerEvent),
    ) -> Result<Vec<String>> {
        for need in store.queue_requirements()? {
            if self.held.contains_key(&need.sha256) {
                continue;
            }
            let found = self.find_model(&need);
            if found.is_none() {
                on_event(WorkerEvent::Missing(&need));
            }
            self.held.insert(need.sha256.clone(), found);
        }
        Ok(self
            .held
            .iter()
            .filter(|(_, path)| path.is_some())
            .map(|(sha, _)| sha.clone())
            .collect())
    }

    fn find_model(&self, need: &Requirement) -> Option<PathBuf> {
        let mut candidates = Vec::new();
        if !need.path.is_empty() {
            candidates.push(PathBuf::from(&need.path));
        }
        let dirs = self
            .config
            .model_dirs
            .iter()
            .cloned()
            .chain([crate::system::paths::models_dir()]);
        candidates.extend(dirs.map(|d| d.join(&need.name)));
        candidates.into_iter().find(|path| {
            path.is_file() && crate::formats::sha256_file(path).is_ok_and(|sha| sha == need.sha256)
        })
    }
}
