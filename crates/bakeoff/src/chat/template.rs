//! Jinja chat templates rendered with transformers' semantics (`_compile_jinja_template`): trimmed
//! and lstripped blocks, loop controls, Python-compatible `tojson`, `raise_exception`, `strftime_now`.

use crate::chat::Message;
use crate::formats::gguf::GgufFile;
use crate::{Error, Result};

/// A chat template with the special-token strings it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
    /// Fixed "now" for `strftime_now` (seconds since the epoch, local time zone); `None` = the clock.
    pub now: Option<i64>,
}

impl ChatTemplate {
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Self {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            now: None,
        }
    }

    /// The template in `tokenizer.chat_template`, with BOS/EOS strings from the vocabulary.
    pub fn from_gguf(_gguf: &GgufFile) -> Result<Self> {
        Err(Error::input("chat templates are not implemented yet"))
    }

    /// Render `messages` (see the module docs of [`crate::chat`] for their shape). `tools` are
    /// OpenAI-style function definitions (`None` to the template when empty); `extra` adds
    /// variables such as `enable_thinking`.
    pub fn render(
        &self,
        _messages: &[Message],
        _tools: &[serde_json::Value],
        _add_generation_prompt: bool,
        _extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        Err(Error::input("chat templates are not implemented yet"))
    }
}
