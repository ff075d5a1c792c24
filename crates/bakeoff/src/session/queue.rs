//! Many hosts, one experiment: `--queue` puts a bench, load, gate or tune on a team store's queue
//! ([`enqueue`]) and `bakeoff worker` on each host runs what it may take ([`Worker::run`]): it
//! claims an item, runs `bakeoff` itself on it as a child (its own measuring run, lock and
//! engines; `--shard K/N` for one shard of a split), renews the item's lease while the child
//! measures, and marks the item done once the child's run is committed. There is no scheduler
//! daemon: PostgreSQL's row locks are the whole coordination.

use crate::engines::build::BuildRef;
use crate::engines::discovery::{self, LlamaCppInstall};
use crate::engines::process::{self, Supervised};
use crate::store::queue::{BuildNeed, Claim, Enqueued, NewExperiment, QueueMode, Requirement};
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
    /// The llama.cpp builds it runs on ([`build_needs`]): a worker takes it only where it has
    /// each (by build number and commit).
    pub builds: Vec<BuildNeed>,
}

/// `b11434 (abc1234)`: how an install's build is matched across hosts (its number and commit as
/// `--version` prints them; the backend may differ, so a CUDA and a CPU build of one commit
/// match). `None` when its `--version` names neither.
pub fn build_key(install: &LlamaCppInstall) -> Option<String> {
    match (install.build_number, install.commit.as_deref()) {
        (Some(number), Some(commit)) => Some(format!("b{number} ({commit})")),
        (Some(number), None) => Some(format!("b{number}")),
        (None, Some(commit)) => Some(commit.to_string()),
        (None, None) => None,
    }
}

/// The builds a queued command runs on: each `--build NAME=PATH`, or, with none, the engine it
/// would use here by default (`--engine-path`, else the newest in the cache, else on PATH).
pub fn build_needs(engine_path: Option<&Path>, builds: &[BuildRef]) -> Result<Vec<BuildNeed>> {
    let unknown = |what: String| {
        Error::input(format!(
            "{what}: its --version names no build number or commit, so no worker can be matched to it"
        ))
        .with_hint("queue a llama.cpp build whose --version prints `version: NUMBER (COMMIT)`")
    };
    if builds.is_empty() {
        let install = discovery::discover(engine_path).into_iter().next();
        let install = install.ok_or_else(|| {
            Error::engine("no llama.cpp build found here to queue the experiment on").with_hint(
                "run scripts/setup, or pass --engine-path PATH (the build the workers must have)",
            )
        })?;
        let build = build_key(&install)
            .ok_or_else(|| unknown(format!("the build at {}", install.bin_dir.display())))?;
        let path = engine_path.map(|p| p.display().to_string());
        return Ok(vec![BuildNeed {
            build,
            name: String::new(),
            path: path.unwrap_or_default(),
        }]);
    }
    builds
        .iter()
        .map(|b| {
            let install = discovery::discover(Some(&b.path))
                .into_iter()
                .find(|i| i.source == "--engine-path");
            let what = || format!("build {} ({})", b.name, b.path.display());
            let install = install
                .ok_or_else(|| Error::input(format!("{}: no llama.cpp tools there", what())))?;
            Ok(BuildNeed {
                build: build_key(&install).ok_or_else(|| unknown(what()))?,
                name: b.name.clone(),
                path: b.path.display().to_string(),
            })
        })
        .collect()
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
        builds: &request.builds,
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
    /// A llama.cpp build this host offers besides the cache's and PATH's (`--engine-path`).
    pub engine_path: Option<PathBuf>,
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
    /// A required llama.cpp build this host does not have (by build number and commit).
    MissingBuild(&'a BuildNeed),
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
    /// Build (`b11434 (abc1234)`) → the directory of this host's install of it.
    builds: HashMap<String, PathBuf>,
    /// Builds already reported missing (each is said once).
    missing_builds: Vec<String>,
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
        let mut builds = HashMap::new();
        for install in discovery::discover(config.engine_path.as_deref()) {
            if let Some(key) = build_key(&install) {
                builds.entry(key).or_insert(install.bin_dir);
            }
        }
        Ok(Worker {
            config,
            location,
            held: HashMap::new(),
            builds,
            missing_builds: Vec::new(),
        })
    }

    /// The builds this host has (`b11434 (abc1234)` → its directory), best first per build.
    pub fn builds(&self) -> &HashMap<String, PathBuf> {
        &self.builds
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
            let builds: Vec<String> = self.builds.keys().cloned().collect();
            for need in store.queue_builds_missing(&builds)? {
                if !self.missing_builds.contains(&need.build) {
                    on_event(WorkerEvent::MissingBuild(&need));
                    self.missing_builds.push(need.build);
                }
            }
            let config = &self.config;
            let claim = store.claim(
                &config.name,
                &config.host,
                &config.tags,
                &held,
                &builds,
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

    /// The child's command line: the enqueued arguments, each required model's and build's
    /// enqueued path replaced by where this host has it (the default engine named with
    /// `--engine-path`, so the child runs the matched build), and the item's shard of a split.
    fn child_args(&self, claim: &Claim) -> Vec<String> {
        let models = claim.requires.iter().filter_map(|need| {
            let local = self.held.get(&need.sha256)?.as_ref()?;
            Some((need.path.as_str(), local))
        });
        let builds = claim.builds.iter().filter_map(|need| {
            let local = self.builds.get(&need.build)?;
            Some((need.path.as_str(), local))
        });
        let places: Vec<(&str, &PathBuf)> = models
            .chain(builds)
            .filter(|(path, _)| !path.is_empty())
            .collect();
        let mut args: Vec<String> = claim
            .argv
            .iter()
            .map(|arg| {
                places.iter().fold(arg.clone(), |arg, (path, local)| {
                    arg.replace(path, &local.display().to_string())
                })
            })
            .collect();
        let default = claim.builds.iter().find(|need| need.path.is_empty());
        if let Some(local) = default.and_then(|need| self.builds.get(&need.build)) {
            let engine = ["--engine-path".to_string(), local.display().to_string()];
            args.splice(0..0, engine);
        }
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
