//! The engine a run measures: llama-server launched on a model (its log in the run's directory,
//! the flags the command wants) or a server attached by URL, with its engine and model rows.

use super::Session;
use crate::engines::build::{self, BuildIdentity, BuildRef};
use crate::engines::discovery::{self, LlamaCppInstall};
use crate::engines::http::{Http, Timeouts};
use crate::engines::llama_server::{LlamaServer, ServerSpec};
use crate::engines::{attach, EngineKind};
use crate::store::{ModelRow, Store};
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an attached server may take to answer one request.
const ATTACHED_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A llama.cpp tool found on this machine, registered as an engine when a store is given.
#[derive(Debug, Clone)]
pub struct Engine {
    pub install: LlamaCppInstall,
    pub binary: PathBuf,
    pub engine_id: Option<i64>,
    /// Set when the engine is a named build (`--build NAME=PATH`).
    pub build: Option<BuildIdentity>,
}

impl Engine {
    /// Find `tool` (`--engine-path` first) and record it in `store`.
    pub fn find(store: Option<&Store>, engine_path: Option<&Path>, tool: &str) -> Result<Engine> {
        let (install, binary) = discovery::find_tool(engine_path, tool)?;
        let engine_id = store
            .map(|s| s.engine_id(tool, &binary.display().to_string(), Some(&install), None))
            .transpose()?;
        Ok(Engine {
            install,
            binary,
            engine_id,
            build: None,
        })
    }

    /// `tool` of a named build, its identity (version, backends, devices, binary hash) recorded
    /// in `store`.
    pub fn for_build(store: Option<&Store>, build: &BuildRef, tool: &str) -> Result<Engine> {
        let identity = build::identify(build, tool)?;
        let (install, binary) = (identity.install(), identity.binary.clone());
        let engine_id = store
            .map(|s| s.build_engine_id(tool, &identity))
            .transpose()?;
        Ok(Engine {
            install,
            binary,
            engine_id,
            build: Some(identity),
        })
    }

    /// `llama.cpp bNNNN (...)`, for status lines.
    pub fn label(&self) -> String {
        self.install.label()
    }
}

/// llama-server to launch on a model: engine and model already registered, log path chosen.
#[derive(Debug, Clone)]
pub struct Launch {
    pub engine: Engine,
    pub model: PathBuf,
    pub model_row: Option<ModelRow>,
    /// The flags the command wants (its defaults and the user's), as an argument vector.
    pub args: Vec<String>,
    pub host: String,
    /// `None`: a free port.
    pub port: Option<u16>,
    pub health_timeout: Duration,
    pub log_path: PathBuf,
}

impl Launch {
    /// llama-server `engine` on `model` (its stored record when there is one), logging to
    /// `log_dir/llama-server.log`. Loopback, a free port, no flags, a 120 s health timeout.
    pub fn new(
        engine: Engine,
        model: &Path,
        model_row: Option<ModelRow>,
        log_dir: &Path,
    ) -> Launch {
        Launch {
            engine,
            model: model.to_path_buf(),
            model_row,
            args: Vec::new(),
            host: "127.0.0.1".into(),
            port: None,
            health_timeout: Duration::from_secs(120),
            log_path: log_dir.join("llama-server.log"),
        }
    }

    /// Find llama-server and register it and `model` in the session's store; the log goes to
    /// the run's directory.
    pub fn in_session(
        session: &Session,
        engine_path: Option<&Path>,
        model: &Path,
    ) -> Result<Launch> {
        let store = session.store();
        let engine = Engine::find(Some(store), engine_path, "llama-server")?;
        let model_row = store.model(model)?;
        Ok(Self::new(
            engine,
            model,
            Some(model_row),
            &session.run_dir(),
        ))
    }

    /// Start it and wait for health. With a session, the engine log is stored with the run even
    /// when the start fails; ending the run is the session's business.
    pub fn start(self, session: Option<&Session>) -> Result<Target> {
        let spec = ServerSpec {
            binary: self.engine.binary.clone(),
            model: self.model.clone(),
            host: self.host.clone(),
            port: self.port,
            args: self.args.clone(),
            health_timeout: self.health_timeout,
            log_path: self.log_path.clone(),
        };
        match LlamaServer::launch(spec) {
            Ok(server) => Ok(Target::launched(self, server)),
            Err(error) => {
                if let Some(session) = session.filter(|_| self.log_path.exists()) {
                    session
                        .store()
                        .engine_log(session.run_id(), None, &self.log_path)?;
                }
                Err(error)
            }
        }
    }
}

/// The engine a run talks to.
pub struct Target {
    pub http: Http,
    pub url: String,
    pub kind: EngineKind,
    pub engine_id: Option<i64>,
    pub model_id: Option<i64>,
    pub model_path: Option<PathBuf>,
    /// The models an attached server lists; the first is the one requests name.
    pub served_models: Vec<String>,
    /// `llama.cpp bNNNN on model.gguf` or `ollama at http://...`, for status lines.
    pub label: String,
    /// A launched engine, kept alive while the target lives and stopped on drop.
    pub server: Option<LlamaServer>,
}

impl Target {
    fn launched(launch: Launch, server: LlamaServer) -> Target {
        let name = launch
            .model
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Target {
            http: server.http.clone(),
            url: server.url.clone(),
            kind: EngineKind::LlamaServer,
            engine_id: launch.engine.engine_id,
            model_id: launch.model_row.map(|m| m.id),
            model_path: Some(launch.model),
            served_models: Vec::new(),
            label: format!("{} on {name}", launch.engine.label()),
            server: Some(server),
        }
    }

    /// Attach to a running server: find out what kind it is and record it as an engine.
    pub fn attach(store: Option<&Store>, url: &str) -> Result<Target> {
        let detected = attach::detect(url)?;
        let kind = detected.kind.as_str();
        let version = detected.version.as_deref();
        let engine_id = store
            .map(|s| s.engine_id(kind, &detected.url, None, version))
            .transpose()?;
        Ok(Target {
            http: Http::new(&detected.url, ATTACHED_READ_TIMEOUT),
            label: format!("{kind} at {}", detected.url),
            url: detected.url,
            kind: detected.kind,
            engine_id,
            model_id: None,
            model_path: None,
            served_models: detected.models,
            server: None,
        })
    }

    /// Bound every later request to the engine by `timeouts` (the command's `--*-timeout` flags).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.http = self.http.retimed(timeouts);
        if let Some(server) = &mut self.server {
            server.http = server.http.retimed(timeouts);
        }
    }

    /// Why a launched engine can no longer answer (it died or is frozen), in words; `None` for
    /// a running or an attached one. Asked after requests failed.
    pub fn trouble(&self) -> Option<String> {
        let server = self.server.as_ref()?;
        server.trouble_within(Duration::from_secs(1))
    }

    /// The served model name requests should carry, when the server lists one.
    pub fn served_model(&self) -> Option<String> {
        self.served_models.first().cloned()
    }

    /// For an attached llama-server on this machine: the GGUF it serves (from `/props`),
    /// recorded as the target's model.
    pub fn register_served_file(&mut self, store: Option<&Store>) -> Result<()> {
        if self.kind != EngineKind::LlamaServer || self.server.is_some() {
            return Ok(());
        }
        self.model_path = self
            .http
            .get_json("/props")
            .ok()
            .and_then(|p| p["model_path"].as_str().map(PathBuf::from))
            .filter(|p| p.is_file());
        if let (Some(store), Some(path)) = (store, &self.model_path) {
            self.model_id = Some(store.model(path)?.id);
        }
        Ok(())
    }

    /// The pids whose CPU use is the work, not noise: our engine, or a local attached server.
    pub fn tracked_pids(&self) -> Vec<i32> {
        if let Some(server) = &self.server {
            return vec![server.pid()];
        }
        let port = self.url.trim_end_matches('/').rsplit(':').next();
        port.and_then(|p| p.parse().ok())
            .and_then(crate::system::listening_pid)
            .into_iter()
            .collect()
    }

    /// Store a launched engine's log with the session's run.
    pub fn store_log(&self, session: &Session) -> Result<()> {
        match &self.server {
            Some(server) => session
                .store()
                .engine_log(session.run_id(), None, server.log_path()),
            None => Ok(()),
        }
    }
}
