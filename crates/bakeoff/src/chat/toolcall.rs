//! Native tool-call parsers: pull tool calls and thinking content out of a raw completion in the
//! format a model family was trained on (Hermes/Qwen, Llama 3 JSON, Mistral, Gemma 4, pythonic).
//!
//! Each parser first sets thinking aside (`<think>…</think>`, Gemma 4's `<|channel>thought…<channel|>`,
//! Mistral's `[THINK]…[/THINK]`), then finds the format's call spans in what is left; text outside
//! them is the content (trimmed). Malformed spans give a [`ToolCallError`] naming the format and
//! the byte offset in the completion; no input makes a parser panic.

use crate::chat::literal::{Cursor, SyntaxError};
use crate::chat::ToolCall;
use serde_json::Value;
use std::fmt;

/// A model family's native tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallFormat {
    /// `<tool_call>{"name": .., "arguments": {..}}</tool_call>`, repeated (Hermes, Qwen 2.5/3, SmolLM3).
    Hermes,
    /// `{"name": .., "parameters": {..}}`, possibly after `<|python_tag|>`, several separated by
    /// `;` (Llama 3.x); `<|python_tag|>name.call(k="v")` for built-in tools.
    Llama3Json,
    /// `[TOOL_CALLS][{"name": .., "arguments": {..}, "id": ..}]` (Nemo) or
    /// `[TOOL_CALLS]name[CALL_ID]id[ARGS]{..}` / `[TOOL_CALLS]name[ARGS]{..}` per call (Small 3.2, Ministral 3).
    Mistral,
    /// `<|tool_call>call:name{key:value,…}<tool_call|>` with `<|"|>`-quoted strings (Gemma 4).
    Gemma4,
    /// `[f(a=1, b="x"), g()]` with Python literals, bare at the start of the completion or inside
    /// `<|tool_call_start|>…<|tool_call_end|>` (LFM2) or `<|python_start|>…<|python_end|>` (Llama 4).
    Pythonic,
}

/// A completion split into visible content, thinking content and tool calls.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ParsedCompletion {
    pub content: String,
    /// The thinking text (trimmed); `None` when there was no thinking block or it was empty.
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

impl ParsedCompletion {
    /// The assistant message to replay in the conversation: content and tool calls, never the
    /// thinking. Replaying thinking can corrupt the next prompt (a Gemma 4 template then appends a
    /// spurious end-of-turn). Content stays `Some("")` when empty, since some templates (Qwen 3)
    /// fail on an assistant message without content.
    pub fn into_message(self) -> crate::chat::Message {
        crate::chat::Message {
            role: "assistant".into(),
            content: Some(self.content),
            tool_calls: self.tool_calls,
            ..crate::chat::Message::default()
        }
    }
}

/// A completion that is not valid in its format; names the format and the byte offset at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallError {
    pub format: ToolCallFormat,
    /// Byte offset in the completion as given to [`ToolCallFormat::parse`].
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

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format a chat template renders tool calls in, judged from markers in its source.
    /// `None` for templates without tool calls or with a syntax not parsed here (Qwen3-Coder's XML).
    pub fn detect(template_source: &str) -> Option<Self> {
        let has = |marker: &str| template_source.contains(marker);
        if has("<|tool_call>") {
            Some(ToolCallFormat::Gemma4)
        } else if has("[TOOL_CALLS]") {
            Some(ToolCallFormat::Mistral)
        } else if has("<|tool_call_start|>") || has("<|python_start|>") || has("func_name1(") {
            Some(ToolCallFormat::Pythonic)
        } else if has("<function=") {
            None
        } else if has("<tool_call>") {
            Some(ToolCallFormat::Hermes)
        } else if has("<|python_tag|>") || has("\"parameters\": dictionary of argument name") {
            Some(ToolCallFormat::Llama3Json)
        } else {
            None
        }
    }

    /// Split `completion` into content, thinking and tool calls.
    pub fn parse(self, completion: &str) -> Result<ParsedCompletion, ToolCallError> {
        let fail = |e: SyntaxError, visible: &Visible| ToolCallError {
            format: self,
            offset: visible.original(e.offset),
            reason: e.reason,
        };
        let (open, close) = self.thinking_tags();
        let (reasoning, visible) =
            split_thinking(completion, open, close).map_err(|e| ToolCallError {
                format: self,
                offset: e.offset,
                reason: e.reason,
            })?;
        let text = visible.text.as_str();
        let (content, tool_calls) = match self {
            ToolCallFormat::Hermes => parse_hermes(text),
            ToolCallFormat::Llama3Json => parse_llama3(text),
            ToolCallFormat::Mistral => parse_mistral(text),
            ToolCallFormat::Gemma4 => parse_gemma4(text),
            ToolCallFormat::Pythonic => parse_pythonic(text),
        }
        .map_err(|e| fail(e, &visible))?;
        Ok(ParsedCompletion {
            content: content.trim().to_string(),
            reasoning,
            tool_calls,
        })
    }

    fn thinking_tags(self) -> (&'static str, &'static str) {
        match self {
            ToolCallFormat::Gemma4 => ("<|channel>", "<channel|>"),
            ToolCallFormat::Mistral => ("[THINK]", "[/THINK]"),
            _ => ("<think>", "</think>"),
        }
    }
}

// ---- thinking ------------------------------------------------------------------------------

/// The completion with thinking blocks removed, and where each kept piece came from.
struct Visible {
    text: String,
    /// (offset in `text`, offset in the completion) at the start of each kept piece.
    pieces: Vec<(usize, usize)>,
}

impl Visible {
    fn push(&mut self, completion: &str, start: usize, end: usize) {
        self.pieces.push((self.text.len(), start));
        self.text.push_str(&completion[start..end]);
    }

    fn original(&self, offset: usize) -> usize {
        match self
            .pieces
            .iter()
            .rev()
            .find(|(visible, _)| *visible <= offset)
        {
            Some((visible, original)) => original + (offset - visible),
            None => offset,
        }
    }
}

/// Thinking blocks out, the rest kept. A close tag with no open tag before it ends thinking that
/// began in the prompt (templates that open `<think>` in the generation prompt).
fn split_thinking(
    completion: &str,
    open: &str,
    close: &str,
) -> Result<(Option<String>, Visible), SyntaxError> {
    let mut visible = Visible {
        text: String::new(),
        pieces: Vec::new(),
    };
    let mut parts = Vec::new();
    let mut pos = 0;
    if let Some(end) = completion.find(close) {
        if completion.find(open).is_none_or(|start| start > end) {
            parts.push(&completion[..end]);
            pos = end + close.len();
        }
    }
    while let Some(found) = completion[pos..].find(open) {
        let start = pos + found;
        visible.push(completion, pos, start);
        let inner = start + open.len();
        let Some(len) = completion[inner..].find(close) else {
            return Err(SyntaxError {
                offset: start,
                reason: format!("{open} is never closed by {close}"),
            });
        };
        parts.push(&completion[inner..inner + len]);
        pos = inner + len + close.len();
    }
    if let Some(stray) = completion[pos..].find(close) {
        return Err(SyntaxError {
            offset: pos + stray,
            reason: format!("{close} without a matching {open}"),
        });
    }
    visible.push(completion, pos, completion.len());
    let parts: Vec<&str> = parts
        .iter()
        .map(|p| strip_channel_name(p).trim())
        .filter(|p| !p.is_empty())
        .collect();
    let reasoning = (!parts.is_empty()).then(|| parts.join("\n"));
    Ok((reasoning, visible))
}

/// Gemma 4 names the channel on the block's first line (`thought`).
fn strip_channel_name(part: &str) -> &str {
    part.strip_prefix("thought").unwrap_or(part)
}

// ---- JSON helpers --------------------------------------------------------------------------

/// One JSON value at the start of `text` (after whitespace) and the bytes it took.
fn json_prefix(text: &str, base: usize) -> Result<(Value, usize), SyntaxError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match stream.next() {
        Some(Ok(value)) => Ok((value, stream.byte_offset())),
        Some(Err(e)) => Err(json_error(text, base, &e)),
        None => Err(SyntaxError {
            offset: base + text.len(),
            reason: "expected JSON, found the end of the text".into(),
        }),
    }
}

fn json_error(text: &str, base: usize, error: &serde_json::Error) -> SyntaxError {
    let reason = match error.to_string().rsplit_once(" at line ") {
        Some((reason, _)) => reason.to_string(),
        None => error.to_string(),
    };
    let reason = format!("invalid JSON: {reason}");
    if error.is_eof() {
        return SyntaxError {
            offset: base + text.len(),
            reason,
        };
    }
    let line_start: usize = text
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let mut offset = (line_start + error.column().saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    SyntaxError {
        offset: base + offset,
        reason,
    }
}

/// A `{"name": .., "arguments"|"parameters": {..}, "id": ..}` object as a call.
fn call_from_json(value: Value, at: usize) -> Result<ToolCall, SyntaxError> {
    let fail = |reason: &str| SyntaxError {
        offset: at,
        reason: reason.into(),
    };
    let Value::Object(mut object) = value else {
        return Err(fail("a tool call must be a JSON object"));
    };
    let Some(Value::String(name)) = object.remove("name") else {
        return Err(fail("the tool call has no \"name\" string"));
    };
    let arguments = object
        .remove("arguments")
        .or_else(|| object.remove("parameters"));
    let id = match object.remove("id") {
        Some(Value::String(id)) => Some(id),
        _ => None,
    };
    Ok(ToolCall {
        id,
        name,
        arguments: arguments_object(arguments, at)?,
    })
}

/// Arguments must be an object; a JSON-encoded string of one is accepted, absence means `{}`.
fn arguments_object(arguments: Option<Value>, at: usize) -> Result<Value, SyntaxError> {
    match arguments {
        None | Some(Value::Null) => Ok(Value::Object(serde_json::Map::new())),
        Some(Value::Object(map)) => Ok(Value::Object(map)),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(Value::Object(map)),
            _ => Err(SyntaxError {
                offset: at,
                reason: "\"arguments\" is a string that is not a JSON object".into(),
            }),
        },
        Some(_) => Err(SyntaxError {
            offset: at,
            reason: "\"arguments\" must be a JSON object".into(),
        }),
    }
}

type Split = Result<(String, Vec<ToolCall>), SyntaxError>;

// ---- Hermes --------------------------------------------------------------------------------

fn parse_hermes(text: &str) -> Split {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let (mut content, mut calls, mut pos) = (String::new(), Vec::new(), 0);
    while let Some(found) = text[pos..].find(OPEN) {
        let start = pos + found;
        content.push_str(&text[pos..start]);
        let body_start = start + OPEN.len();
        let Some(len) = text[body_start..].find(CLOSE) else {
            return Err(SyntaxError {
                offset: start,
                reason: format!("{OPEN} is never closed by {CLOSE}"),
            });
        };
        let body = &text[body_start..body_start + len];
        let (value, used) = json_prefix(body, body_start)?;
        if !body[used..].trim().is_empty() {
            let at = body_start + used + (body[used..].len() - body[used..].trim_start().len());
            return Err(SyntaxError {
                offset: at,
                reason: format!("unexpected text after the JSON object, before {CLOSE}"),
            });
        }
        calls.push(call_from_json(value, body_start)?);
        pos = body_start + len + CLOSE.len();
    }
    if let Some(stray) = text[pos..].find(CLOSE) {
        return Err(SyntaxError {
            offset: pos + stray,
            reason: format!("{CLOSE} without a matching {OPEN}"),
        });
    }
    content.push_str(&text[pos..]);
    Ok((content, calls))
}

// ---- Llama 3 JSON --------------------------------------------------------------------------

const PYTHON_TAG: &str = "<|python_tag|>";

fn parse_llama3(text: &str) -> Split {
    let mut cursor = Cursor::new(text, 0);
    cursor.skip_whitespace();
    let tagged = cursor.eat(PYTHON_TAG);
    cursor.skip_whitespace();
    if !cursor.rest().starts_with('{') {
        if tagged && cursor.peek().is_some() {
            return builtin_call(cursor);
        }
        return Ok((text.replacen(PYTHON_TAG, "", 1), Vec::new()));
    }
    // Content that merely starts with a brace is not a call: a call names its tool first.
    if !tagged && !starts_like_call(cursor.rest()) {
        return Ok((text.to_string(), Vec::new()));
    }
    let mut calls = Vec::new();
    loop {
        let at = cursor.pos;
        let (value, used) = json_prefix(cursor.rest(), at)?;
        calls.push(call_from_json(value, at)?);
        cursor.pos += used;
        cursor.skip_whitespace();
        let separated = cursor.eat(";");
        cursor.skip_whitespace();
        if !(cursor.rest().starts_with('{') && (separated || starts_like_call(cursor.rest()))) {
            break;
        }
    }
    Ok((cursor.rest().to_string(), calls))
}

fn starts_like_call(text: &str) -> bool {
    let head: String = text
        .chars()
        .take(64)
        .filter(|c| !c.is_whitespace())
        .collect();
    head.starts_with("{\"name\":") || head.starts_with("{\"type\":\"function\"")
}

/// `<|python_tag|>brave_search.call(query="…")`: Llama 3.1's built-in tools.
fn builtin_call(mut cursor: Cursor<'_>) -> Split {
    let call = python_call(&mut cursor)?;
    let name = call
        .name
        .strip_suffix(".call")
        .unwrap_or(&call.name)
        .to_string();
    Ok((cursor.rest().to_string(), vec![ToolCall { name, ..call }]))
}

// ---- Mistral -------------------------------------------------------------------------------

const TOOL_CALLS: &str = "[TOOL_CALLS]";

fn parse_mistral(text: &str) -> Split {
    let (mut content, mut calls, mut pos) = (String::new(), Vec::new(), 0);
    while let Some(found) = text[pos..].find(TOOL_CALLS) {
        content.push_str(&text[pos..pos + found]);
        let mut cursor = Cursor::new(text, pos + found + TOOL_CALLS.len());
        cursor.skip_whitespace();
        if cursor.rest().starts_with('[') {
            let at = cursor.pos;
            let (value, used) = json_prefix(cursor.rest(), at)?;
            let Value::Array(items) = value else {
                return cursor.fail("expected a JSON array of tool calls");
            };
            for item in items {
                calls.push(call_from_json(item, at)?);
            }
            cursor.pos += used;
        } else {
            calls.push(mistral_named_call(&mut cursor)?);
        }
        pos = cursor.pos;
    }
    content.push_str(&text[pos..]);
    Ok((content, calls))
}

/// `name[CALL_ID]id[ARGS]{…}` or `name[ARGS]{…}`.
fn mistral_named_call(cursor: &mut Cursor<'_>) -> Result<ToolCall, SyntaxError> {
    let rest = cursor.rest();
    let name_len = rest
        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() {
        return cursor.fail(format!(
            "expected a tool name then [ARGS], found {}",
            cursor.found()
        ));
    }
    cursor.pos += name_len;
    let mut id = None;
    if cursor.eat("[CALL_ID]") {
        let rest = cursor.rest();
        let len = rest.find('[').unwrap_or(rest.len());
        id = Some(rest[..len].trim().to_string());
        cursor.pos += len;
    }
    cursor.expect("[ARGS]")?;
    let at = cursor.pos;
    let (arguments, used) = json_prefix(cursor.rest(), at)?;
    cursor.pos += used;
    Ok(ToolCall {
        id,
        name: name.to_string(),
        arguments: arguments_object(Some(arguments), at)?,
    })
}

// ---- Gemma 4 -------------------------------------------------------------------------------

fn parse_gemma4(text: &str) -> Split {
    const OPEN: &str = "<|tool_call>";
    const CLOSE: &str = "<tool_call|>";
    let (mut content, mut calls, mut pos) = (String::new(), Vec::new(), 0);
    while let Some(found) = text[pos..].find(OPEN) {
        let start = pos + found;
        content.push_str(&text[pos..start]);
        let mut cursor = Cursor::new(text, start + OPEN.len());
        cursor.expect("call:")?;
        let rest = cursor.rest();
        let name_len = rest.find('{').unwrap_or(rest.len());
        let name = &rest[..name_len];
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains(CLOSE) {
            return cursor.fail(format!(
                "expected a tool name then '{{', found {}",
                cursor.found()
            ));
        }
        cursor.pos += name_len;
        let arguments = cursor.gemma_object(0)?;
        if !cursor.eat(CLOSE) {
            return match cursor.peek() {
                None => Err(SyntaxError {
                    offset: start,
                    reason: format!("{OPEN} is never closed by {CLOSE}"),
                }),
                Some(_) => cursor.fail(format!(
                    "expected {CLOSE} after the arguments, found {}",
                    cursor.found()
                )),
            };
        }
        calls.push(ToolCall::new(name, arguments));
        pos = cursor.pos;
    }
    if let Some(stray) = text[pos..].find(CLOSE) {
        return Err(SyntaxError {
            offset: pos + stray,
            reason: format!("{CLOSE} without a matching {OPEN}"),
        });
    }
    content.push_str(&text[pos..]);
    Ok((content, calls))
}

// ---- pythonic ------------------------------------------------------------------------------

/// Wrappers some families put around a pythonic call list.
const PYTHONIC_WRAPPERS: [(&str, &str); 2] = [
    ("<|tool_call_start|>", "<|tool_call_end|>"),
    ("<|python_start|>", "<|python_end|>"),
];

fn parse_pythonic(text: &str) -> Split {
    for (open, close) in PYTHONIC_WRAPPERS {
        if text.contains(open) || text.contains(close) {
            return parse_wrapped_pythonic(text, open, close);
        }
    }
    let mut cursor = Cursor::new(text, 0);
    cursor.skip_whitespace();
    if !looks_like_call_list(cursor.rest()) {
        return Ok((text.to_string(), Vec::new()));
    }
    let calls = python_call_list(&mut cursor)?;
    Ok((cursor.rest().to_string(), calls))
}

fn parse_wrapped_pythonic(text: &str, open: &str, close: &str) -> Split {
    let (mut content, mut calls, mut pos) = (String::new(), Vec::new(), 0);
    while let Some(found) = text[pos..].find(open) {
        let start = pos + found;
        content.push_str(&text[pos..start]);
        let mut cursor = Cursor::new(text, start + open.len());
        cursor.skip_whitespace();
        calls.extend(python_call_list(&mut cursor)?);
        cursor.skip_whitespace();
        if !cursor.eat(close) {
            return match cursor.peek() {
                None => Err(SyntaxError {
                    offset: start,
                    reason: format!("{open} is never closed by {close}"),
                }),
                Some(_) => cursor.fail(format!(
                    "expected {close} after the calls, found {}",
                    cursor.found()
                )),
            };
        }
        pos = cursor.pos;
    }
    if let Some(stray) = text[pos..].find(close) {
        return Err(SyntaxError {
            offset: pos + stray,
            reason: format!("{close} without a matching {open}"),
        });
    }
    content.push_str(&text[pos..]);
    Ok((content, calls))
}

/// `[` then a (dotted) name then `(`: the start of a call list rather than bracketed prose.
fn looks_like_call_list(text: &str) -> bool {
    let mut cursor = Cursor::new(text, 0);
    if !cursor.eat("[") {
        return false;
    }
    cursor.skip_whitespace();
    if cursor.eat("]") {
        return false;
    }
    while cursor.identifier().is_some() {
        if !cursor.eat(".") {
            break;
        }
    }
    cursor.skip_whitespace();
    cursor.pos > 1 && cursor.peek() == Some('(')
}

fn python_call_list(cursor: &mut Cursor<'_>) -> Result<Vec<ToolCall>, SyntaxError> {
    cursor.expect("[")?;
    let mut calls = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.eat("]") {
            return Ok(calls);
        }
        calls.push(python_call(cursor)?);
        cursor.skip_whitespace();
        if !cursor.eat(",") && cursor.peek() != Some(']') {
            return cursor.fail(format!(
                "expected ',' or ']' between calls, found {}",
                cursor.found()
            ));
        }
    }
}

/// `name(a=1, b='x')`, the name possibly dotted.
fn python_call(cursor: &mut Cursor<'_>) -> Result<ToolCall, SyntaxError> {
    let start = cursor.pos;
    loop {
        if cursor.identifier().is_none() {
            return cursor.fail(format!(
                "expected a function name, found {}",
                cursor.found()
            ));
        }
        if !cursor.eat(".") {
            break;
        }
    }
    let name = cursor.text[start..cursor.pos].to_string();
    cursor.skip_whitespace();
    cursor.expect("(")?;
    let mut arguments = serde_json::Map::new();
    loop {
        cursor.skip_whitespace();
        if cursor.eat(")") {
            return Ok(ToolCall::new(name, Value::Object(arguments)));
        }
        let key_at = cursor.pos;
        let Some(key) = cursor.identifier() else {
            return cursor.fail(format!(
                "arguments must be passed by name (name=value), found {}",
                cursor.found()
            ));
        };
        cursor.skip_whitespace();
        if !cursor.eat("=") {
            cursor.pos = key_at;
            return cursor.fail("arguments must be passed by name (name=value)");
        }
        let value = cursor.python_literal(0)?;
        arguments.insert(key.to_string(), value);
        cursor.skip_whitespace();
        if !cursor.eat(",") && cursor.peek() != Some(')') {
            return cursor.fail(format!("expected ',' or ')', found {}", cursor.found()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: Value) -> ToolCall {
        ToolCall::new(name, arguments)
    }

    #[test]
    fn thinking_is_set_aside_and_offsets_still_point_into_the_completion() {
        let parsed = ToolCallFormat::Hermes
            .parse("<think>\nplan it\n</think>\n\nOK <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>")
            .unwrap();
        assert_eq!(parsed.reasoning.as_deref(), Some("plan it"));
        assert_eq!(parsed.content, "OK");
        assert_eq!(parsed.tool_calls, vec![call("f", json!({}))]);
        let text = "<think>x</think>ab<tool_call>{\"name\": 1}</tool_call>";
        let err = ToolCallFormat::Hermes.parse(text).unwrap_err();
        assert_eq!(&text[err.offset..err.offset + 1], "{", "{err}");
    }

    #[test]
    fn thinking_opened_by_the_prompt_ends_at_the_close_tag() {
        let parsed = ToolCallFormat::Hermes
            .parse("reasoning here\n</think>\nanswer")
            .unwrap();
        assert_eq!(parsed.reasoning.as_deref(), Some("reasoning here"));
        assert_eq!(parsed.content, "answer");
    }

    #[test]
    fn replayed_messages_drop_thinking() {
        // Regression (seed 001): a replayed thought-channel prefix made Gemma 4's template emit a spurious <turn|>.
        let parsed = ToolCallFormat::Gemma4
            .parse("<|channel>thought\nweather first<channel|><|tool_call>call:f{}<tool_call|>")
            .unwrap();
        assert_eq!(parsed.reasoning.as_deref(), Some("weather first"));
        let message = parsed.into_message();
        assert_eq!(message.reasoning_content, None);
        assert_eq!(message.content.as_deref(), Some(""));
        assert_eq!(message.tool_calls, vec![call("f", json!({}))]);
    }

    #[test]
    fn detect_reads_template_markers() {
        assert_eq!(
            ToolCallFormat::detect("{{ '<tool_call>\\n' }}"),
            Some(ToolCallFormat::Hermes)
        );
        assert_eq!(ToolCallFormat::detect("<tool_call>\n<function=x>"), None);
        assert_eq!(
            ToolCallFormat::detect("{{ '[TOOL_CALLS]' }}"),
            Some(ToolCallFormat::Mistral)
        );
        assert_eq!(
            ToolCallFormat::detect("'<|tool_call>call:'"),
            Some(ToolCallFormat::Gemma4)
        );
        assert_eq!(
            ToolCallFormat::detect("<|python_tag|>"),
            Some(ToolCallFormat::Llama3Json)
        );
        assert_eq!(
            ToolCallFormat::detect("<|tool_call_start|>["),
            Some(ToolCallFormat::Pythonic)
        );
        assert_eq!(ToolCallFormat::detect("{{ messages }}"), None);
    }
}
