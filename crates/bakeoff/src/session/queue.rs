//! Many hosts, one experiment: `--queue` puts a bench, load, gate or tune on a team store's queue
//! ([`enqueue`]) and `bakeoff worker` on each host runs what it may take ([`Worker::run`]): it
//! claims an item, runs `bakeoff` itself on it as a child (its own measuring run, lock and
//! engines; `--shard K/N` for one shard of a split; the files the command named, shipped with it
//! and laid out again: [`ship`], [`lay_out`]), renews the item's lease while the child measures,
//! and marks the item done once the child's run is committed. There is no scheduler daemon:
//! PostgreSQL's row locks are the whole coordination.

use crate::engines::build::BuildRef;
use crate::engines::discovery::{self, LlamaCppInstall};
use crate::engines::process::{self, Supervised};
use crate::store::queue::{
    BuildNeed, Claim, Enqueued, NewExperiment, QueueMode, Requirement, Shipped, ShippedFile,
    ShippedModel,
};
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
    /// The files it reads besides models (experiment, candidates, dataset, suite, catalog):
    /// shipped with it ([`ship`]), so a worker needs none of them at the same path.
    pub files: Vec<PathBuf>,
}

/// The most a shipped file may hold: these are settings and prompts, not data sets of models.
const MAX_SHIPPED_BYTES: u64 = 16 << 20;

/// Read the files a queued command names, each under its absolute path (lexically normalised,
/// so a file's relative references land where they did here), with the directory it was given
/// in and the paths it reached its models by (`(path, sha256)`). A file that cannot be read, is
/// too large or is not UTF-8 text is an error naming it.
pub fn ship(files: &[PathBuf], models: &[(PathBuf, String)]) -> Result<Shipped> {
    let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    let mut shipped = Shipped {
        cwd: cwd.display().to_string(),
        ..Shipped::default()
    };
    for (path, sha256) in models {
        let path = normalise(&cwd.join(path)).display().to_string();
        if !shipped.models.iter().any(|m| m.path == path) {
            let sha256 = sha256.clone();
            shipped.models.push(ShippedModel { path, sha256 });
        }
    }
    for file in files {
        let path = normalise(&cwd.join(file));
        let shown = path.display().to_string();
        if shipped.files.iter().any(|f| f.path == shown) {
            continue;
        }
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(file, e))?
            .len();
        if size > MAX_SHIPPED_BYTES {
            return Err(Error::input(format!(
                "{}: {:.1} MiB is too large to ship with a queued experiment (at most {} MiB)",
                file.display(),
                size as f64 / (1 << 20) as f64,
                MAX_SHIPPED_BYTES >> 20
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(file, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::input(format!(
                "{}: not UTF-8 text at byte {}, so it cannot be shipped with a queued experiment",
                file.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        shipped.files.push(ShippedFile {
            path: shown,
            sha256: crate::formats::sha256_hex(text.as_bytes()),
            text,
        });
    }
    Ok(shipped)
}

/// `a/./b/../c` as `a/c`, without touching the filesystem.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Where the enqueuing host's absolute `path` lies under a worker's `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Why a child failed, from its log: its `error:` line (the hint that follows says less), else
/// its last line.
fn child_error(log: &Path) -> String {
    let tail = crate::engines::fatal::tail(log, 20);
    let error = tail.iter().rev().find(|l| l.trim().starts_with("error:"));
    error
        .or(tail.last())
        .map_or(String::new(), |l| l.trim().to_string())
}

/// `arg` with a shipped file's absolute path (the whole argument, or after `--flag=`) replaced
/// by where it lies under `root`.
fn relocate(arg: &str, shipped: &Shipped, root: &Path) -> String {
    let (flag, value) = match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (Some(flag), value),
        _ => (None, arg),
    };
    if !shipped.files.iter().any(|file| file.path == value) {
        return arg.to_string();
    }
    let moved = under(root, value).display().to_string();
    match flag {
        Some(flag) => format!("{flag}={moved}"),
        None => moved,
    }
}

/// Lay out what a claim shipped under `root`, as the enqueuing host had it: each file at its
/// path, this host's copy of each model linked at every path the command reached it by (so a
/// relative model path, on the command line or in a shipped file, finds it), and the command's
/// directory. Returns that directory, where the command's relative paths resolve; `None` for an
/// experiment enqueued before files were shipped.
pub fn lay_out(
    shipped: &Shipped,
    local: impl Fn(&str) -> Option<PathBuf>,
    root: &Path,
) -> Result<Option<PathBuf>> {
    if shipped.cwd.is_empty() {
        return Ok(None);
    }
    let io = |path: &Path, e| Error::io(path, e);
    for file in &shipped.files {
        let at = under(root, &file.path);
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        std::fs::write(&at, &file.text).map_err(|e| io(&at, e))?;
    }
    for model in &shipped.models {
        let Some(copy) = local(&model.sha256) else {
            continue;
        };
        let at = under(root, &model.path);
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(copy, &at).map_err(|e| io(&at, e))?;
    }
    let cwd = under(root, &shipped.cwd);
    std::fs::create_dir_all(&cwd).map_err(|e| io(&cwd, e))?;
    Ok(Some(cwd))
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
    let mut links = Vec::new();
    for path in request.models {
        let row = store.model(path)?;
        links.push((path.clone(), row.sha256.clone()));
        links.push((PathBuf::from(&row.path), row.sha256.clone()));
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
        shipped: &ship(&request.files, &links)?,
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
    /// The longest an idle worker waits before looking at the queue again; new work wakes it
    /// at once (PostgreSQL `LISTEN`/`NOTIFY`).
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
                // An empty queue: wait for an announcement, or look again after `poll` (an
                // item whose lease ran out is not announced), a second at a time so that a
                // signal is heard.
                let until = Instant::now() + config.poll;
                while process::interrupted().is_none() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || store.wait_for_work(left.min(Duration::from_secs(1)))? {
                        break;
                    }
                }
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
        let files = self
            .config
            .log_dir
            .join(format!("item-{}-files", claim.item));
        let local = |sha256: &str| self.held.get(sha256).cloned().flatten();
        let cwd = match lay_out(&claim.shipped, local, &files) {
            Ok(cwd) => cwd,
            // A disk that refuses the files fails this item, not the worker.
            Err(e) => {
                let error = format!("laying out its files: {e}");
                return self.failed(store, claim, &error, &log, summary, on_event);
            }
        };
        let args = self.child_args(claim, &files);
        let mut child =
            Supervised::spawn_with_env(&self.config.exe, &args, &env, cwd.as_deref(), None, &log)?;
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
            let error = format!("{status}: {}", child_error(&log));
            return self.failed(store, claim, &error, &log, summary, on_event);
        }
        Ok(())
    }

    fn failed(
        &self,
        store: &Store,
        claim: &Claim,
        error: &str,
        log: &Path,
        summary: &mut WorkerSummary,
        on_event: &mut impl FnMut(WorkerEvent),
    ) -> Result<()> {
        store.finish_item(claim.item, &self.config.name, Err(error))?;
        summary.failed += 1;
        on_event(WorkerEvent::Failed {
            item: claim.item,
            error,
            log,
        });
        Ok(())
    }

    /// The child's command line: the enqueued arguments, each required model's and build's
    /// enqueued path replaced by where this host has it (the default engine named with
    /// `--engine-path`, so the child runs the matched build), each shipped file's absolute path
    /// by where it was laid out under `files` (relative ones resolve from the child's directory,
    /// which [`lay_out`] made), and the item's shard of a split.
    fn child_args(&self, claim: &Claim, files: &Path) -> Vec<String> {
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
                let arg = places.iter().fold(arg.clone(), |arg, (path, local)| {
                    arg.replace(path, &local.display().to_string())
                });
                relocate(&arg, &claim.shipped, files)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_are_laid_out_where_the_enqueuing_host_had_them() {
        let here = tempfile::tempdir().unwrap();
        let exp = here.path().join("exp");
        std::fs::create_dir_all(exp.join("suites")).unwrap();
        std::fs::write(
            exp.join("gate.toml"),
            "[checks]\nsuite = \"suites/s.toml\"\n",
        )
        .unwrap();
        std::fs::write(exp.join("suites/s.toml"), "[[canary]]\n").unwrap();
        // Spelt with `.` and `..`, as a user may; shipped once, under its normalised path.
        let gate = exp.join("suites/../gate.toml");
        let files = [gate.clone(), exp.join("./suites/s.toml"), gate];
        let models = [(exp.join("models/m.gguf"), "ab".to_string())];
        let shipped = ship(&files, &models).unwrap();
        assert_eq!(shipped.files.len(), 2);
        let gate_path = exp.join("gate.toml").display().to_string();
        assert_eq!(shipped.files[0].path, gate_path);
        assert_eq!(shipped.files[1].text, "[[canary]]\n");
        assert_eq!(
            shipped.files[1].sha256,
            crate::formats::sha256_hex(b"[[canary]]\n")
        );

        // The worker's side: none of the enqueuing host's files exist there.
        let worker = tempfile::tempdir().unwrap();
        let model = worker.path().join("held.gguf");
        std::fs::write(&model, "GGUF").unwrap();
        let root = worker.path().join("item-1-files");
        let held = |sha256: &str| (sha256 == "ab").then(|| model.clone());
        let cwd = lay_out(&shipped, held, &root).unwrap().unwrap();
        assert_eq!(cwd, under(&root, &shipped.cwd));
        assert!(cwd.is_dir());
        let laid = under(&root, &gate_path);
        let suite = laid.parent().unwrap().join("suites/s.toml");
        assert_eq!(std::fs::read_to_string(suite).unwrap(), "[[canary]]\n");
        // A shipped file's relative reference to a model finds the worker's copy.
        let linked = laid.parent().unwrap().join("models/m.gguf");
        assert_eq!(std::fs::read_to_string(linked).unwrap(), "GGUF");
        // Laying out again (a retried item) replaces what is there.
        assert!(lay_out(&shipped, held, &root).is_ok());

        // Absolute spellings move under the root; other arguments stay.
        let moved = laid.display().to_string();
        assert_eq!(relocate(&gate_path, &shipped, &root), moved);
        let flag = format!("--config={gate_path}");
        assert_eq!(
            relocate(&flag, &shipped, &root),
            format!("--config={moved}")
        );
        assert_eq!(relocate("gate.toml", &shipped, &root), "gate.toml");
        assert_eq!(relocate("-ctk=q8_0", &shipped, &root), "-ctk=q8_0");
        // An experiment enqueued before files were shipped runs where the worker stands.
        assert_eq!(lay_out(&Shipped::default(), held, &root).unwrap(), None);
    }

    #[test]
    fn a_failed_child_is_described_by_its_error_line_not_the_hint_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("item.log");
        let text = "bench: 1 configuration\nerror: exp.toml: No such file\nhint: check the path\n";
        std::fs::write(&log, text).unwrap();
        assert_eq!(child_error(&log), "error: exp.toml: No such file");
        std::fs::write(&log, "killed\n").unwrap();
        assert_eq!(child_error(&log), "killed");
    }

    #[test]
    fn a_file_that_cannot_be_shipped_is_an_error_naming_it() {
        let here = tempfile::tempdir().unwrap();
        let binary = here.path().join("data.bin");
        std::fs::write(&binary, [b'o', b'k', 0xff, 0xfe]).unwrap();
        let error = ship(std::slice::from_ref(&binary), &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("data.bin: not UTF-8 text at byte 2"),
            "{error}"
        );
        let missing = here.path().join("gone.toml");
        let error = ship(&[missing], &[]).unwrap_err().to_string();
        assert!(error.contains("gone.toml"), "{error}");
    }
}
