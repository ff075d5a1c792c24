//! Attach mode: use a server someone else started, after finding out what kind it is.

use super::http::Http;
use super::EngineKind;
use crate::{Error, Result};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Detected {
    pub kind: EngineKind,
    pub url: String,
    pub version: Option<String>,
    /// Models the server says it serves.
    pub models: Vec<String>,
}

/// Probe `url`: llama-server answers `/props`, Ollama `/api/version`, any OpenAI-compatible
/// server `/v1/models`.
pub fn detect(url: &str) -> Result<Detected> {
    let http = Http::new(url, Duration::from_secs(5));
    let models = http
        .get_json("/v1/models")
        .ok()
        .map(|v| model_ids(&v))
        .unwrap_or_default();
    if let Ok(props) = http.get_json("/props") {
        if props.get("build_info").is_some() || props.get("total_slots").is_some() {
            let version = props
                .get("build_info")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            return Ok(Detected {
                kind: EngineKind::LlamaServer,
                url: http.base().to_string(),
                version,
                models,
            });
        }
    }
    if let Ok(version) = http.get_json("/api/version") {
        if let Some(v) = version.get("version").and_then(|v| v.as_str()) {
            let tags = http.get_json("/api/tags").ok();
            let models = tags
                .as_ref()
                .and_then(|t| t.get("models")?.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.get("name")?.as_str().map(str::to_string))
                .collect();
            return Ok(Detected {
                kind: EngineKind::Ollama,
                url: http.base().to_string(),
                version: Some(v.to_string()),
                models,
            });
        }
    }
    if http
        .get_json("/v1/models")
        .is_ok_and(|v| v.get("data").is_some())
    {
        return Ok(Detected {
            kind: EngineKind::OpenAi,
            url: http.base().to_string(),
            version: None,
            models,
        });
    }
    Err(Error::engine(format!(
        "{url}: no llama-server, Ollama or OpenAI-compatible server answers there"
    ))
    .with_hint("check the URL and that the server is running (`curl URL/v1/models`)"))
}

fn model_ids(value: &serde_json::Value) -> Vec<String> {
    value
        .get("data")
        .and_then(|d| d.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m.get("id")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
