//! Chat conversations in a model's own format: render a GGUF's `tokenizer.chat_template` exactly as
//! Python transformers does ([`ChatTemplate`]), and parse native tool-call spans and thinking
//! content back out of a raw completion ([`ToolCallFormat`]).
//!
//! # How messages reach a template
//!
//! A [`Message`] serialises to the dict a transformers user passes to `apply_chat_template`:
//! `{"role": .., "content": .., "reasoning_content": .., "tool_calls": [..], "tool_call_id": ..,
//! "name": ..}` with absent (`None`/empty) fields left out rather than set to `null`, so a template's
//! `message.content is defined` sees what it would in Python. Each [`ToolCall`] serialises as
//! `{"type": "function", "id": .., "function": {"name": .., "arguments": {..}}}` with `arguments` a
//! JSON object (not a string, as the OpenAI wire format has it); `id` is left out when absent.
//! Deserialising accepts that shape and also `arguments` as a JSON-encoded string. As transformers
//! 5 does before rendering, a message with `reasoning_content` also gets it as `thinking`, its
//! first key (gpt-oss and other templates read that name).

mod literal;
mod pyfmt;
mod pyops;
pub mod template;
pub mod toolcall;

pub use template::{ChatTemplate, TemplateError};
pub use toolcall::{ParsedCompletion, ToolCallError, ToolCallFormat};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One chat message, as sent to a template or an OpenAI-style API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Thinking-channel text; templates that know it (Qwen 3) may render or drop it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a `tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// On a `tool` message: the name of the tool that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: Some(content.into()),
            ..Message::default()
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// An assistant turn that only calls tools. Its content is `""`, not absent: some templates
    /// (Qwen 3) fail on an assistant message without content, as they do in Python.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Message {
            role: "assistant".into(),
            content: Some(String::new()),
            tool_calls: calls,
            ..Message::default()
        }
    }

    /// A tool's result answering the call `id` of tool `name`.
    pub fn tool_result(
        id: Option<String>,
        name: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Message {
            role: "tool".into(),
            content: Some(content.into()),
            tool_call_id: id,
            name: Some(name.into()),
            ..Message::default()
        }
    }
}

/// A call of one tool; `arguments` is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: serde_json::Value,
}

impl ToolCall {
    pub fn new(name: impl Into<String>, arguments: serde_json::Value) -> Self {
        ToolCall {
            id: None,
            name: name.into(),
            arguments,
        }
    }
}

/// The OpenAI / transformers shape of a tool call (see the module docs).
#[derive(Serialize, Deserialize)]
struct WireToolCall<'a> {
    #[serde(rename = "type", default = "function_type")]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Serialize, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default = "empty_object")]
    arguments: serde_json::Value,
}

fn function_type() -> std::borrow::Cow<'static, str> {
    "function".into()
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireToolCall {
            kind: "function".into(),
            id: self.id.clone(),
            function: WireFunction {
                name: self.name.clone(),
                arguments: self.arguments.clone(),
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireToolCall::deserialize(deserializer)?;
        // The OpenAI wire format sends arguments as a JSON-encoded string.
        let arguments = match wire.function.arguments {
            serde_json::Value::String(text) => {
                serde_json::from_str(&text).map_err(serde::de::Error::custom)?
            }
            other => other,
        };
        Ok(ToolCall {
            id: wire.id,
            name: wire.function.name,
            arguments,
        })
    }
}
