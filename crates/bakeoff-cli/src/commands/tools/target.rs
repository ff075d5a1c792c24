//! The engine a tool-call run talks to: a llama-server bakeoff launches on a GGUF (with `--jinja`,
//! one slot, `-c`), or a server it attaches to; and the arms built on it.

use crate::cli::Global;
use crate::cli_tools::{ToolSampling, ToolTarget};
use crate::cli_values::ToolFormatArg;
use bakeoff::chat::{ChatTemplate, ToolCallFormat};
use bakeoff::domain::EngineConfig;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::engines::ollama::Ollama;
use bakeoff::engines::{attach, discovery, http::Http, EngineKind};
use bakeoff::formats::gguf::GgufFile;
use bakeoff::quality::toolcall::{Arm, Endpoint, ForceTools, JsonArm, NativeArm, Sampling};
use bakeoff::store::Store;
use bakeoff::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Target {
    pub endpoint: Endpoint,
    /// Kept alive for the command's duration; stopped on drop.
    pub server: Option<LlamaServer>,
    pub engine_id: Option<i64>,
    pub model_id: Option<i64>,
    pub model_name: String,
    pub model_path: Option<PathBuf>,
    pub config: EngineConfig,
    pub label: String,
}

/// Launch or attach as `target` says; the engine and model are recorded when `store` is given.
pub fn open(
    global: &Global,
    target: &ToolTarget,
    log_dir: &Path,
    store: Option<&Store>,
) -> Result<Target> {
    match (&target.model, &target.url) {
        (Some(model), _) => launch(global, target, model, log_dir, store),
        (None, Some(url)) => attach_to(url, target.model_name.as_deref(), target.ctx, store),
        (None, None) => Err(Error::input("no engine: pass --model FILE or --url URL")),
    }
}

fn launch(
    global: &Global,
    target: &ToolTarget,
    model: &Path,
    log_dir: &Path,
    store: Option<&Store>,
) -> Result<Target> {
    let model = crate::commands::resolve_model(model);
    let (install, binary) = discovery::find_tool(global.engine_path.as_deref(), "llama-server")?;
    let args = server_args(&target.engine_args, target.ctx);
    let config = EngineConfig {
        flags: Default::default(),
        extra: args.clone(),
    };
    let (engine_id, model_id) = match store {
        Some(store) => (
            Some(store.engine_id(
                "llama-server",
                &binary.display().to_string(),
                Some(&install),
                None,
            )?),
            Some(store.model(&model)?.id),
        ),
        None => (None, None),
    };
    let spec = ServerSpec {
        binary,
        model: model.clone(),
        host: "127.0.0.1".into(),
        port: None,
        args,
        health_timeout: Duration::from_secs(target.health_timeout),
        log_path: log_dir.join("llama-server.log"),
    };
    let server = LlamaServer::launch(spec)?;
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Ok(Target {
        endpoint: Endpoint::llama_server(&server.url),
        label: format!("{} on {}", install.label(), name),
        server: Some(server),
        engine_id,
        model_id,
        model_name: target.model_name.clone().unwrap_or(name),
        model_path: Some(model),
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

fn attach_to(
    url: &str,
    model_name: Option<&str>,
    ctx: u32,
    store: Option<&Store>,
) -> Result<Target> {
    let detected = attach::detect(url)?;
    let first_model = detected.models.first().cloned();
    let model_name = model_name.map(str::to_string).or(first_model);
    let endpoint = match detected.kind {
        EngineKind::Ollama => {
            let name = model_name.clone().ok_or_else(|| {
                Error::input(format!(
                    "{url} is Ollama: pass --model-name (e.g. gemma4:latest)"
                ))
                .with_hint("`ollama list` shows the models it has")
            })?;
            Endpoint::Ollama(Ollama::new(&detected.url, &name, ctx))
        }
        EngineKind::LlamaServer => Endpoint::llama_server(&detected.url),
        _ => Endpoint::OpenAi {
            http: Http::new(&detected.url, Duration::from_secs(600)),
            model: model_name.clone().unwrap_or_else(|| "default".into()),
        },
    };
    let model_path = match &endpoint {
        Endpoint::LlamaServer(http) => http
            .get_json("/props")
            .ok()
            .and_then(|p| p["model_path"].as_str().map(PathBuf::from))
            .filter(|p| p.is_file()),
        _ => None,
    };
    let (engine_id, model_id) = match store {
        Some(store) => (
            Some(store.engine_id(
                detected.kind.as_str(),
                &detected.url,
                None,
                detected.version.as_deref(),
            )?),
            model_path
                .as_deref()
                .map(|p| store.model(p).map(|m| m.id))
                .transpose()?,
        ),
        None => (None, None),
    };
    Ok(Target {
        label: format!("{} at {}", detected.kind.as_str(), detected.url),
        endpoint,
        server: None,
        engine_id,
        model_id,
        model_name: model_name.unwrap_or_else(|| "default".into()),
        model_path,
        config: EngineConfig::default(),
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
                    target.label
                ))
                .with_hint(
                    "pass --template FILE (Ollama's own templates are Go templates, not Jinja)",
                )
            })?,
    };
    Ok(ChatTemplate::new(source, bos, eos))
}

/// `--tool-format NAME`, else the format the template's source shows.
pub fn native_format(
    given: Option<ToolFormatArg>,
    template: &ChatTemplate,
) -> Result<ToolCallFormat> {
    if let Some(format) = given {
        return Ok(format.into());
    }
    ToolCallFormat::detect(&template.source).ok_or_else(|| {
        let names: Vec<&str> = ToolCallFormat::ALL.iter().map(|f| f.name()).collect();
        Error::input("cannot tell the template's native tool-call format (it may ignore tools)")
            .with_hint(format!(
                "pass --tool-format ({}), or a tool-capable --template / --chat-template-file",
                names.join(", ")
            ))
    })
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
                .and_then(|t| native_format(target_args.tool_format, &t))
                .ok();
            let is_llama = matches!(target.endpoint, Endpoint::LlamaServer(_));
            Ok(Box::new(match format {
                Some(format) if is_llama => arm.prefill_calls(format),
                _ => arm,
            }))
        }
        "native" => {
            let template = native_template(target_args, target)?;
            let format = native_format(target_args.tool_format, &template)?;
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
