//! The engine a tool-call run talks to: a llama-server bakeoff launches on a GGUF (with `--jinja`,
//! one slot, `-c`), or a server it attaches to; and the arms built on it.

use crate::cli::Global;
use crate::cli_tools::{ToolSampling, ToolTarget};
use crate::cli_values::ToolFormatArg;
use bakeoff::chat::{ChatTemplate, ToolCallFormat};
use bakeoff::domain::EngineConfig;
use bakeoff::engines::ollama::Ollama;
use bakeoff::engines::EngineKind;
use bakeoff::formats::gguf::GgufFile;
use bakeoff::quality::toolcall::{Arm, Endpoint, ForceTools, JsonArm, NativeArm, Sampling};
use bakeoff::session::{self, Engine, Launch, Session};
use bakeoff::store::Store;
use bakeoff::{Error, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// The engine (launched or attached, registered with the run) and how the arms reach it.
pub struct Target {
    pub engine: session::Target,
    pub endpoint: Endpoint,
    pub model_name: String,
    pub config: EngineConfig,
}

/// Launch or attach as `target` says; the engine and model are recorded with `session`'s run.
pub fn open(
    global: &Global,
    target: &ToolTarget,
    log_dir: &Path,
    session: Option<&Session>,
) -> Result<Target> {
    let mut opened = match (&target.model, &target.url) {
        (Some(model), _) => launch(global, target, model, log_dir, session),
        (None, Some(url)) => attach_to(url, target, session.map(Session::store)),
        (None, None) => Err(Error::input("no engine: pass --model FILE or --url URL")),
    }?;
    let timeouts = target.timeouts.timeouts();
    opened.engine.set_timeouts(timeouts);
    opened.endpoint = opened.endpoint.retimed(timeouts);
    Ok(opened)
}

fn launch(
    global: &Global,
    target: &ToolTarget,
    model: &Path,
    log_dir: &Path,
    session: Option<&Session>,
) -> Result<Target> {
    let model = crate::commands::resolve_model(model);
    let store = session.map(Session::store);
    let engine = Engine::find(store, global.engine_path.as_deref(), "llama-server")?;
    let model_row = store.map(|s| s.model(&model)).transpose()?;
    let mut launch = Launch::new(engine, &model, model_row, log_dir);
    launch.args = server_args(&target.engine_args, target.ctx);
    launch.health_timeout = Duration::from_secs(target.health_timeout);
    let extra = launch.args.clone();
    let engine = launch.start(session)?;
    Ok(launched(engine, target, &model, extra))
}

/// The arms reach a launched llama-server at its URL, naming the model by its file.
fn launched(
    engine: session::Target,
    target: &ToolTarget,
    model: &Path,
    extra: Vec<String>,
) -> Target {
    let file_name = model.file_name().map(|n| n.to_string_lossy().to_string());
    let config = EngineConfig {
        flags: Default::default(),
        extra,
    };
    Target {
        endpoint: Endpoint::llama_server(&engine.url),
        engine,
        model_name: target
            .model_name
            .clone()
            .unwrap_or(file_name.unwrap_or_default()),
        config,
    }
}

/// `--jinja`, one slot and `-c CTX` unless the user's flags say otherwise.
fn server_args(user: &[String], ctx: u32) -> Vec<String> {
    let lacks = |names: [&str; 2]| !user.iter().any(|a| names.contains(&a.as_str()));
    let jinja = lacks(["--jinja", "--no-jinja"]).then(|| "--jinja".to_string());
    let slots = lacks(["-np", "--parallel"]).then(|| ["-np".to_string(), "1".into()]);
    let context = lacks(["-c", "--ctx-size"]).then(|| ["-c".to_string(), ctx.to_string()]);
    let defaults = slots.into_iter().chain(context).flatten();
    jinja
        .into_iter()
        .chain(user.iter().cloned())
        .chain(defaults)
        .collect()
}

fn attach_to(url: &str, target: &ToolTarget, store: Option<&Store>) -> Result<Target> {
    let mut engine = session::Target::attach(store, url)?;
    engine.register_served_file(store)?;
    let model_name = target.model_name.clone().or(engine.served_model());
    let endpoint = endpoint(&engine, model_name.clone(), target.ctx)?;
    Ok(Target {
        engine,
        endpoint,
        model_name: model_name.unwrap_or_else(|| "default".into()),
        config: EngineConfig::default(),
    })
}

/// How the arms talk to an attached server of each kind.
fn endpoint(engine: &session::Target, model_name: Option<String>, ctx: u32) -> Result<Endpoint> {
    Ok(match engine.kind {
        EngineKind::Ollama => {
            let name = model_name.ok_or_else(|| {
                Error::input(format!(
                    "{} is Ollama: pass --model-name (e.g. gemma4:latest)",
                    engine.url
                ))
                .with_hint("`ollama list` shows the models it has")
            })?;
            Endpoint::Ollama(Ollama::new(&engine.url, &name, ctx))
        }
        EngineKind::LlamaServer => Endpoint::llama_server(&engine.url),
        _ => Endpoint::OpenAi {
            http: engine.http.clone(),
            model: model_name.unwrap_or_else(|| "default".into()),
        },
    })
}

/// The template the native arm renders: `--template FILE`, else the one llama-server reports
/// (which honours `--chat-template-file`); BOS/EOS strings from the server or the GGUF.
pub fn native_template(args: &ToolTarget, target: &Target) -> Result<ChatTemplate> {
    let props = match &target.endpoint {
        Endpoint::LlamaServer(http) => http.get_json("/props").ok(),
        _ => None,
    };
    let gguf_path = target.engine.model_path.as_deref();
    let gguf = gguf_path.and_then(|p| GgufFile::open(p).ok());
    let from_gguf = gguf.and_then(|g| ChatTemplate::from_gguf(&g).ok());
    let prop = |key: &str| {
        props
            .as_ref()
            .and_then(|p| p[key].as_str().map(str::to_string))
    };
    let from_file =
        |pick: fn(&ChatTemplate) -> &String| from_gguf.as_ref().map(|t| pick(t).clone());
    let bos = prop("bos_token").or_else(|| from_file(|t| &t.bos_token));
    let eos = prop("eos_token").or_else(|| from_file(|t| &t.eos_token));
    let source = match &args.template {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => prop("chat_template")
            .or_else(|| from_file(|t| &t.source))
            .ok_or_else(|| no_template(target))?,
    };
    Ok(ChatTemplate::new(
        source,
        bos.unwrap_or_default(),
        eos.unwrap_or_default(),
    ))
}

fn no_template(target: &Target) -> Error {
    let label = &target.engine.label;
    Error::input(format!(
        "{label}: no Jinja chat template to render for the native arm"
    ))
    .with_hint("pass --template FILE (Ollama's own templates are Go templates, not Jinja)")
}

/// `--tool-format NAME`, else the format the template's source shows.
pub fn native_format(
    given: Option<ToolFormatArg>,
    template: &ChatTemplate,
) -> Result<ToolCallFormat> {
    match given {
        Some(format) => Ok(format.into()),
        None => ToolCallFormat::detect(&template.source).ok_or_else(undetected_format),
    }
}

fn undetected_format() -> Error {
    let names: Vec<&str> = ToolCallFormat::ALL.iter().map(|f| f.name()).collect();
    Error::input("cannot tell the template's native tool-call format (it may ignore tools)")
        .with_hint(format!(
            "pass --tool-format ({}), or a tool-capable --template / --chat-template-file",
            names.join(", ")
        ))
}

/// Sampling settings and the force policy from the command line.
pub fn sampling(args: &ToolSampling) -> Result<(Sampling, ForceTools)> {
    let sampling = Sampling {
        max_tokens: args.max_tokens,
        temperature: 0.0,
        seed: args.seed,
    };
    Ok((sampling, args.force_tools.into()))
}

/// Builds arms on one target with one sampling policy.
pub struct ArmMaker<'a> {
    pub args: &'a ToolTarget,
    pub target: &'a Target,
    pub sampling: Sampling,
    pub force: ForceTools,
    pub force_thinking: bool,
}

impl ArmMaker<'_> {
    /// The arms named in `--arms` (json, native).
    pub fn named(&self, names: &str) -> Result<Vec<Box<dyn Arm>>> {
        let names = names.split(',').map(str::trim).filter(|n| !n.is_empty());
        let arms = names
            .map(|name| self.build(name, name))
            .collect::<Result<Vec<_>>>()?;
        if arms.is_empty() {
            return Err(Error::input("--arms: name at least one of json, native"));
        }
        Ok(arms)
    }

    /// An arm called `name` taking the `path` (json or native).
    pub fn build(&self, name: &str, path: &str) -> Result<Box<dyn Arm>> {
        match path {
            "json" => self.json(name),
            "native" => self.native(name),
            other => Err(Error::input(format!(
                "arm '{other}': expected json or native"
            ))),
        }
    }

    fn json(&self, name: &str) -> Result<Box<dyn Arm>> {
        let (target, endpoint) = (self.target, self.target.endpoint.clone());
        let arm = JsonArm::new(
            name,
            endpoint,
            &target.model_name,
            self.sampling,
            self.force,
        )?;
        // A forced call starts with the family's opener when the format is known.
        let format = native_template(self.args, target).and_then(|t| self.format(&t));
        let is_llama = matches!(target.endpoint, Endpoint::LlamaServer(_));
        Ok(Box::new(match format.ok() {
            Some(format) if is_llama => arm.prefill_calls(format),
            _ => arm,
        }))
    }

    fn native(&self, name: &str) -> Result<Box<dyn Arm>> {
        let template = native_template(self.args, self.target)?;
        let format = self.format(&template)?;
        let (endpoint, model) = (self.target.endpoint.clone(), &self.target.model_name);
        let (sampling, force) = (self.sampling, self.force);
        let mut arm = NativeArm::new(name, endpoint, model, template, format, sampling, force)?;
        arm.force_thinking = self.force_thinking;
        Ok(Box::new(arm))
    }

    fn format(&self, template: &ChatTemplate) -> Result<ToolCallFormat> {
        native_format(self.args.tool_format, template)
    }
}

/// A short summary of a value for progress lines.
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_args_add_only_what_is_missing() {
        assert_eq!(
            server_args(&[], 4096),
            ["--jinja", "-np", "1", "-c", "4096"]
        );
        let user: Vec<String> = ["-c", "8192", "--no-jinja"].map(String::from).to_vec();
        assert_eq!(
            server_args(&user, 4096),
            ["-c", "8192", "--no-jinja", "-np", "1"]
        );
    }
}
