//! The engine a tool-call run talks to: a llama-server bakeoff launches on a GGUF (with `--jinja`,
//! one slot, `-c`), or a server it attaches to; and the arms built on it.

use crate::cli::Global;
use crate::cli_tools::{ToolSampling, ToolTarget};
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
    match (&target.model, &target.url) {
        (Some(model), _) => launch(global, target, model, log_dir, session),
        (None, Some(url)) => attach_to(url, target, session.map(Session::store)),
        (None, None) => Err(Error::input("no engine: pass --model FILE or --url URL")),
    }
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
    let config = EngineConfig {
        flags: Default::default(),
        extra: launch.args.clone(),
    };
    let engine = launch.start(session)?;
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(Target {
        endpoint: Endpoint::llama_server(&engine.url),
        engine,
        model_name: target.model_name.clone().unwrap_or(name),
        config,
    })
}

/// `--jinja`, one slot and `-c CTX` unless the user's flags say otherwise.
fn server_args(user: &[String], ctx: u32) -> Vec<String> {
    let has = |names: &[&str]| user.iter().any(|a| names.contains(&a.as_str()));
    let mut args = user.to_vec();
    if !has(&["--jinja", "--no-jinja"]) {
        args.insert(0, "--jinja".into());
    }
    if !has(&["-np", "--parallel"]) {
        args.extend(["-np".into(), "1".into()]);
    }
    if !has(&["-c", "--ctx-size"]) {
        args.extend(["-c".into(), ctx.to_string()]);
    }
    args
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
    let from_gguf = target
        .engine
        .model_path
        .as_deref()
        .and_then(|p| GgufFile::open(p).ok())
        .and_then(|g| ChatTemplate::from_gguf(&g).ok());
    let token = |key: &str, fallback: Option<&String>| {
        props
            .as_ref()
            .and_then(|p| p[key].as_str().map(str::to_string))
            .or_else(|| fallback.cloned())
            .unwrap_or_default()
    };
    let bos = token("bos_token", from_gguf.as_ref().map(|t| &t.bos_token));
    let eos = token("eos_token", from_gguf.as_ref().map(|t| &t.eos_token));
    let source = match &args.template {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => props
            .as_ref()
            .and_then(|p| p["chat_template"].as_str().map(str::to_string))
            .or_else(|| from_gguf.as_ref().map(|t| t.source.clone()))
            .ok_or_else(|| {
                Error::input(format!(
                    "{}: no Jinja chat template to render for the native arm",
                    target.engine.label
                ))
                .with_hint(
                    "pass --template FILE (Ollama's own templates are Go templates, not Jinja)",
                )
            })?,
    };
    Ok(ChatTemplate::new(source, bos, eos))
}

/// `--format NAME`, else the format the template's source shows.
pub fn native_format(name: Option<&str>, template: &ChatTemplate) -> Result<ToolCallFormat> {
    let names = || {
        ToolCallFormat::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => ToolCallFormat::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| Error::input(format!("--format {name}: expected one of {}", names()))),
        None => ToolCallFormat::detect(&template.source).ok_or_else(|| {
            Error::input("cannot tell the template's native tool-call format (it may ignore tools)")
                .with_hint(format!(
                    "pass --format ({}), or a tool-capable --template / --chat-template-file",
                    names()
                ))
        }),
    }
}

/// Sampling settings and the force policy from the command line.
pub fn sampling(args: &ToolSampling) -> Result<(Sampling, ForceTools)> {
    let sampling = Sampling {
        max_tokens: args.max_tokens,
        temperature: 0.0,
        seed: args.seed,
    };
    Ok((sampling, ForceTools::parse(&args.force_tools)?))
}

/// The arms named in `--arms` (json, native) on `target`.
pub fn build_arms(
    names: &str,
    target_args: &ToolTarget,
    target: &Target,
    sampling: Sampling,
    force: ForceTools,
    force_thinking: bool,
) -> Result<Vec<Box<dyn Arm>>> {
    let mut arms: Vec<Box<dyn Arm>> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        arms.push(build_arm(
            name,
            name,
            target_args,
            target,
            sampling,
            force,
            force_thinking,
        )?);
    }
    if arms.is_empty() {
        return Err(Error::input("--arms: name at least one of json, native"));
    }
    Ok(arms)
}

pub fn build_arm(
    name: &str,
    path: &str,
    target_args: &ToolTarget,
    target: &Target,
    sampling: Sampling,
    force: ForceTools,
    force_thinking: bool,
) -> Result<Box<dyn Arm>> {
    let endpoint = target.endpoint.clone();
    match path {
        "json" => {
            let arm = JsonArm::new(name, endpoint, &target.model_name, sampling, force)?;
            // A forced call starts with the family's opener when the format is known.
            let format = native_template(target_args, target)
                .and_then(|t| native_format(target_args.format.as_deref(), &t))
                .ok();
            let is_llama = matches!(target.endpoint, Endpoint::LlamaServer(_));
            Ok(Box::new(match format {
                Some(format) if is_llama => arm.prefill_calls(format),
                _ => arm,
            }))
        }
        "native" => {
            let template = native_template(target_args, target)?;
            let format = native_format(target_args.format.as_deref(), &template)?;
            let mut arm = NativeArm::new(
                name,
                endpoint,
                &target.model_name,
                template,
                format,
                sampling,
                force,
            )?;
            arm.force_thinking = force_thinking;
            Ok(Box::new(arm))
        }
        other => Err(Error::input(format!(
            "arm '{other}': expected json or native"
        ))),
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
