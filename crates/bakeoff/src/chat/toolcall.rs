//! Native tool-call parsers: pull tool calls and thinking content out of a raw completion in the
//! format a model family was trained on (Hermes/Qwen, Llama 3 JSON, Mistral, Gemma 4, pythonic).

use crate::chat::ToolCall;
use std::fmt;

/// A model family's native tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallFormat {
    /// `<tool_call>{"name": .., "arguments": {..}}</tool_call>` (Hermes, Qwen 2.5/3).
    Hermes,
    /// `{"name": .., "parameters": {..}}`, possibly after `<|python_tag|>` (Llama 3.x).
    Llama3Json,
    /// `[TOOL_CALLS][{..}]` or `[TOOL_CALLS]name[ARGS]{..}` (Mistral).
    Mistral,
    /// `<|tool_call>call:name{..}<tool_call|>` (Gemma 4).
    Gemma4,
    /// `[f(a=1, b="x"), g()]` (Llama 3.2 pythonic style).
    Pythonic,
}

/// A completion split into visible content, thinking content and tool calls.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ParsedCompletion {
    pub content: String,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// A completion that is not valid in its format; names the format and the byte offset at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallError {
    pub format: ToolCallFormat,
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for ToolCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed {} tool call at byte {}: {}",
            self.format.name(),
            self.offset,
            self.reason
        )
    }
}

impl std::error::Error for ToolCallError {}

impl From<ToolCallError> for crate::Error {
    fn from(e: ToolCallError) -> Self {
        crate::Error::input(e.to_string())
    }
}

impl ToolCallFormat {
    pub const ALL: [ToolCallFormat; 5] = [
        ToolCallFormat::Hermes,
        ToolCallFormat::Llama3Json,
        ToolCallFormat::Mistral,
        ToolCallFormat::Gemma4,
        ToolCallFormat::Pythonic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "hermes",
            ToolCallFormat::Llama3Json => "llama3_json",
            ToolCallFormat::Mistral => "mistral",
            ToolCallFormat::Gemma4 => "gemma4",
            ToolCallFormat::Pythonic => "pythonic",
        }
    }

    /// The format a chat template renders tool calls in, judged from its source.
    pub fn detect(_template_source: &str) -> Option<Self> {
        None
    }

    /// Split `completion` into content, thinking and tool calls.
    pub fn parse(self, completion: &str) -> Result<ParsedCompletion, ToolCallError> {
        Err(ToolCallError {
            format: self,
            offset: completion.len(),
            reason: "not implemented yet".into(),
        })
    }
}
