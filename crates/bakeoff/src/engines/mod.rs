//! Engines bakeoff drives: discovery of llama.cpp builds, supervised launches of llama-server,
//! attaching to running servers (llama-server, Ollama, OpenAI-compatible), and HTTP streaming.

pub mod attach;
pub mod build;
pub mod discovery;
pub mod fatal;
pub mod http;
pub mod llama_api;
pub mod llama_server;
pub mod ollama;
pub mod process;
#[cfg(test)]
pub(crate) mod replay;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    LlamaServer,
    LlamaBench,
    Ollama,
    #[serde(rename = "openai")]
    OpenAi,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::LlamaServer => "llama-server",
            EngineKind::LlamaBench => "llama-bench",
            EngineKind::Ollama => "ollama",
            EngineKind::OpenAi => "openai",
        }
    }
}
