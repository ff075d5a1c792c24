//! llama-server's own endpoints used by the tool-call bakeoff: `/completion` on a raw prompt (with an
//! optional GBNF grammar), `/apply-template` (the prompt the server renders for a chat request) and
//! the chat template it loaded (`/props`).

use super::http::Http;
use crate::Result;
use serde::Serialize;
use serde_json::{json, Value};

/// Sampling settings of one raw completion.
#[derive(Debug, Clone, Serialize)]
pub struct RawParams {
    pub n_predict: u32,
    pub temperature: f64,
    pub seed: u64,
    /// GBNF the output must match (constrained decoding).
    pub grammar: Option<String>,
}

/// What `/completion` returned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RawCompletion {
    pub content: String,
    /// Prompt tokens (`tokens_evaluated`, cached ones included).
    pub prompt_tokens: Option<u64>,
    pub predicted_tokens: Option<u64>,
    /// `eos`, `limit`, `word` (a stop string) or `none`.
    pub stop_type: Option<String>,
}

/// POST a rendered prompt to `/completion` as it is (special tokens in the text are parsed).
pub fn complete(http: &Http, prompt: &str, params: &RawParams) -> Result<RawCompletion> {
    let mut body = json!({
        "prompt": prompt,
        "n_predict": params.n_predict,
        "temperature": params.temperature,
        "seed": params.seed,
        "stream": false,
    });
    if let Some(grammar) = &params.grammar {
        body["grammar"] = json!(grammar);
    }
    let reply = http.post_json("/completion", &body)?;
    Ok(RawCompletion {
        content: reply["content"].as_str().unwrap_or_default().to_string(),
        prompt_tokens: reply["tokens_evaluated"].as_u64(),
        predicted_tokens: reply["tokens_predicted"].as_u64(),
        stop_type: reply["stop_type"].as_str().map(str::to_string),
    })
}

/// The prompt llama-server renders for an OpenAI chat body (`messages`, `tools`, ...).
pub fn apply_template(http: &Http, chat_body: &Value) -> Result<String> {
    let reply = http.post_json("/apply-template", chat_body)?;
    reply["prompt"].as_str().map(str::to_string).ok_or_else(|| {
        crate::Error::http(http.url("/apply-template"), "reply has no `prompt` string")
    })
}

/// The chat template the server uses (`/props` → `chat_template`), if it reports one.
pub fn server_template(http: &Http) -> Result<Option<String>> {
    let props = http.get_json("/props")?;
    Ok(props["chat_template"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string))
}
