//! Ollama's native API as documented (docs/api.md, api/types.go): `/api/chat` with `tools` (Ollama
//! renders the template and parses tool calls itself), `/api/generate` with `raw: true` (the prompt is
//! sent as it is: no template, no system, no context), and `_debug_render_only` (the prompt Ollama
//! would render). Replies stream as NDJSON; every stream, live or recorded, is folded by
//! [`read_stream`]. Durations are nanoseconds; tool-call arguments are JSON objects, not strings.

use super::http::Http;
use crate::chat::{Message, ToolCall};
use crate::formats::ndjson::NdjsonReader;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::io::BufRead;
use std::time::Duration;

/// An Ollama server and the model and options every request carries.
#[derive(Clone)]
pub struct Ollama {
    http: Http,
    pub model: String,
    /// `options` of every request; `num_ctx` is always set (Ollama's default depends on VRAM).
    pub options: Map<String, Value>,
}

/// What one `/api/chat` or `/api/generate` exchange returned, folded from its NDJSON lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OllamaReply {
    /// `message.content` (chat) or `response` (generate), concatenated over the stream.
    pub content: String,
    /// `message.thinking` / `thinking`, concatenated; never replayed into a conversation.
    pub thinking: String,
    pub tool_calls: Vec<ToolCall>,
    pub done_reason: Option<String>,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub total_duration_ns: Option<u64>,
    pub load_duration_ns: Option<u64>,
    pub prompt_eval_duration_ns: Option<u64>,
    pub eval_duration_ns: Option<u64>,
    /// NDJSON lines read, the final one included.
    pub lines: usize,
}

impl OllamaReply {
    /// A duration field in seconds.
    pub fn seconds(ns: Option<u64>) -> Option<f64> {
        ns.map(|ns| ns as f64 / 1e9)
    }
}

impl Ollama {
    /// `num_ctx` is required: without it Ollama picks a context from free VRAM, which makes runs
    /// on different machines incomparable.
    pub fn new(url: &str, model: &str, num_ctx: u32) -> Self {
        let mut options = Map::new();
        options.insert("num_ctx".into(), json!(num_ctx));
        options.insert("temperature".into(), json!(0));
        options.insert("seed".into(), json!(0));
        Ollama {
            http: Http::new(url, Duration::from_secs(600)),
            model: model.to_string(),
            options,
        }
    }

    pub fn url(&self) -> &str {
        self.http.base()
    }

    /// The same client under other request bounds.
    pub fn retimed(mut self, timeouts: super::http::Timeouts) -> Self {
        self.http = self.http.retimed(timeouts);
        self
    }

    /// Set one entry of `options` (e.g. `num_predict`).
    pub fn with_option(mut self, key: &str, value: Value) -> Self {
        self.options.insert(key.to_string(), value);
        self
    }

    /// The `/api/chat` body: streamed, with tools when there are any.
    pub fn chat_body(&self, messages: &[Message], tools: &[Value]) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": ollama_messages(messages),
            "stream": true,
            "options": self.options,
        });
        if !tools.is_empty() {
            body["tools"] = json!(tools);
        }
        body
    }

    /// The `/api/generate` raw body. Raw mode rejects `template`, `system` and `context`, so they
    /// are never set; it also returns no `context`.
    pub fn generate_raw_body(&self, prompt: &str) -> Value {
        json!({
            "model": self.model,
            "prompt": prompt,
            "raw": true,
            "stream": true,
            "options": self.options,
        })
    }

    /// One chat turn through Ollama's JSON tools path.
    pub fn chat(&self, messages: &[Message], tools: &[Value]) -> Result<OllamaReply> {
        let body = self.chat_body(messages, tools);
        let reader = self.http.post_reader("/api/chat", &body)?;
        read_stream(reader, &self.http.url("/api/chat"))
    }

    /// One raw completion of an already-rendered prompt.
    pub fn generate_raw(&self, prompt: &str) -> Result<OllamaReply> {
        let body = self.generate_raw_body(prompt);
        let reader = self.http.post_reader("/api/generate", &body)?;
        read_stream(reader, &self.http.url("/api/generate"))
    }

    /// The prompt Ollama renders for `messages` and `tools` (`_debug_render_only`; it still loads
    /// the model, but generates nothing).
    pub fn render_chat(&self, messages: &[Message], tools: &[Value]) -> Result<String> {
        let mut body = self.chat_body(messages, tools);
        body["stream"] = json!(false);
        body["_debug_render_only"] = json!(true);
        let response = self.http.post_json("/api/chat", &body)?;
        rendered_template(&response, &self.http.url("/api/chat"))
    }
}

/// Messages in Ollama's shape: tool results carry `tool_name`, tool calls carry arguments as objects,
/// and thinking is never sent back.
pub fn ollama_messages(messages: &[Message]) -> Vec<Value> {
    messages.iter().map(ollama_message).collect()
}

fn ollama_message(message: &Message) -> Value {
    let mut out = json!({
        "role": message.role,
        "content": message.content.clone().unwrap_or_default(),
    });
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|c| json!({ "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
        out["tool_calls"] = json!(calls);
    }
    if message.role == "tool" {
        if let Some(name) = &message.name {
            out["tool_name"] = json!(name);
        }
    }
    out
}

/// `_debug_info.rendered_template` of a render-only reply.
pub fn rendered_template(response: &Value, source: &str) -> Result<String> {
    response["_debug_info"]["rendered_template"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            Error::http(
                source,
                "no _debug_info.rendered_template in the reply (Ollama too old for _debug_render_only?)",
            )
        })
}

/// Fold an NDJSON reply (chat or generate) into one [`OllamaReply`]. An `error` line, a line that
/// is not a JSON object, tool-call arguments that are not an object, or a stream without a final
/// `done: true` line is an error naming the source and line.
pub fn read_stream(reader: impl BufRead, source: &str) -> Result<OllamaReply> {
    let mut reply = OllamaReply::default();
    let mut lines = NdjsonReader::new(reader, source);
    for line in lines.by_ref() {
        let line = line?;
        reply.lines += 1;
        let at = |message: String| Error::http(source, format!("line {}: {message}", line.line));
        if let Some(error) = line.value.get("error") {
            let text = error.as_str().map(str::to_string);
            return Err(at(format!(
                "Ollama reported an error: {}",
                text.unwrap_or_else(|| error.to_string())
            )));
        }
        absorb_chunk(&mut reply, &line.value).map_err(at)?;
        if line.value["done"].as_bool() == Some(true) {
            absorb_final(&mut reply, &line.value);
            return Ok(reply);
        }
    }
    Err(Error::http(
        source,
        format!(
            "stream ended after {} lines without a final `done: true` line (truncated)",
            lines.lines_read().saturating_sub(1)
        ),
    ))
}

fn absorb_chunk(reply: &mut OllamaReply, chunk: &Value) -> std::result::Result<(), String> {
    let (message, top) = (&chunk["message"], chunk);
    for text in [&message["content"], &top["response"]] {
        if let Some(text) = text.as_str() {
            reply.content.push_str(text);
        }
    }
    for text in [&message["thinking"], &top["thinking"]] {
        if let Some(text) = text.as_str() {
            reply.thinking.push_str(text);
        }
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        for call in calls {
            reply.tool_calls.push(tool_call(call)?);
        }
    }
    Ok(())
}

fn tool_call(call: &Value) -> std::result::Result<ToolCall, String> {
    let function = &call["function"];
    let name = function["name"]
        .as_str()
        .ok_or_else(|| format!("tool call without function.name: {call}"))?;
    let arguments = match &function["arguments"] {
        Value::Object(_) => function["arguments"].clone(),
        Value::Null => json!({}),
        other => {
            return Err(format!(
                "tool call {name}: arguments must be a JSON object, got {other}"
            ))
        }
    };
    let mut parsed = ToolCall::new(name, arguments);
    parsed.id = call["id"].as_str().map(str::to_string);
    Ok(parsed)
}

fn absorb_final(reply: &mut OllamaReply, last: &Value) {
    let number = |key: &str| last[key].as_u64();
    reply.done_reason = last["done_reason"].as_str().map(str::to_string);
    reply.prompt_eval_count = number("prompt_eval_count");
    reply.eval_count = number("eval_count");
    reply.total_duration_ns = number("total_duration");
    reply.load_duration_ns = number("load_duration");
    reply.prompt_eval_duration_ns = number("prompt_eval_duration");
    reply.eval_duration_ns = number("eval_duration");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::replay::Replay;
    use std::path::PathBuf;

    fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ollama")
            .join(name)
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(fixture_path(name)).expect("fixture")
    }

    fn read_fixture(name: &str) -> Result<OllamaReply> {
        let file = std::fs::File::open(fixture_path(name)).expect("fixture");
        read_stream(std::io::BufReader::new(file), name)
    }

    #[test]
    fn chat_stream_with_tool_call_and_thinking() {
        let reply = read_fixture("chat_tool_call.ndjson").unwrap();
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].name, "get_current_weather");
        assert_eq!(
            reply.tool_calls[0].arguments,
            json!({"format": "celsius", "location": "Toronto"})
        );
        assert_eq!(
            reply.thinking,
            "The user wants the weather in Toronto, in celsius."
        );
        assert_eq!(reply.content, "");
        assert_eq!(
            (reply.prompt_eval_count, reply.eval_count),
            (Some(122), Some(33))
        );
        assert_eq!(reply.done_reason.as_deref(), Some("stop"));
        // Durations are nanoseconds.
        assert_eq!(reply.total_duration_ns, Some(885_095_291));
        let eval_s = OllamaReply::seconds(reply.eval_duration_ns).unwrap();
        assert!((eval_s - 0.552222).abs() < 1e-9);
        assert_eq!(reply.lines, 4);
    }

    #[test]
    fn chat_stream_concatenates_content_and_skips_blank_lines() {
        let reply = read_fixture("chat_answer.ndjson").unwrap();
        assert_eq!(reply.content, "The sky is blue.");
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.lines, 4);
    }

    #[test]
    fn raw_generate_stream_keeps_the_native_span_as_text() {
        let reply = read_fixture("generate_raw.ndjson").unwrap();
        assert_eq!(
            reply.content,
            "<tool_call>\n{\"name\": \"search_movies\", \"arguments\": {\"title\": \"Dune\"}}\n</tool_call>"
        );
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.prompt_eval_count, Some(171));
    }

    #[test]
    fn render_only_reply_gives_the_rendered_template() {
        let value: Value = serde_json::from_str(&fixture("render_only.json")).unwrap();
        let prompt = rendered_template(&value, "render_only.json").unwrap();
        assert!(prompt.starts_with("<|im_start|>system\n"));
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
        let error = rendered_template(&json!({"done": true}), "x").unwrap_err();
        assert!(error.to_string().contains("_debug_info"), "{error}");
    }

    #[test]
    fn faults_are_errors_naming_the_line() {
        let cases = [
            ("malformed.ndjson", "malformed.ndjson: line 2: not JSON"),
            ("error.ndjson", "error.ndjson: line 2: Ollama reported an error: an error was encountered"),
            ("truncated.ndjson", "truncated.ndjson: stream ended after 2 lines without a final `done: true` line"),
            ("string_arguments.ndjson", "string_arguments.ndjson: line 1: tool call get_current_weather: arguments must be a JSON object"),
        ];
        for (name, expected) in cases {
            let error = read_fixture(name).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{name}: {error}");
        }
    }

    #[test]
    fn request_bodies_follow_the_documented_shapes() {
        let ollama = Ollama::new("http://127.0.0.1:1", "qwen3", 4096);
        let call = ToolCall::new("search", json!({"q": "dune"}));
        let mut assistant = Message::tool_calls(vec![call]);
        assistant.reasoning_content = Some("secret plan".into());
        let messages = vec![
            Message::user("find dune"),
            assistant,
            Message::tool_result(None, "search", "{\"hits\": 1}"),
        ];
        let tools = vec![json!({"type": "function", "function": {"name": "search"}})];
        let chat = ollama.chat_body(&messages, &tools);
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["options"]["num_ctx"], 4096);
        assert_eq!(chat["tools"][0]["function"]["name"], "search");
        let sent = &chat["messages"];
        assert_eq!(
            sent[1]["tool_calls"][0]["function"]["arguments"],
            json!({"q": "dune"})
        );
        assert!(
            !chat.to_string().contains("secret plan"),
            "thinking replayed"
        );
        assert_eq!(sent[2]["tool_name"], "search");
        let raw = ollama.generate_raw_body("<|im_start|>user\nhi");
        assert_eq!(raw["raw"], true);
        for forbidden in ["template", "system", "context"] {
            assert!(raw.get(forbidden).is_none(), "raw mode rejects {forbidden}");
        }
    }

    #[test]
    fn live_http_path_reads_the_same_stream() {
        let replay = Replay::serve(vec![
            (200, fixture("chat_tool_call.ndjson")),
            (200, fixture("generate_raw.ndjson")),
            (200, fixture("render_only.json")),
            (404, "{\"error\":\"model 'nope' not found\"}".into()),
        ]);
        let ollama = Ollama::new(&replay.url, "qwen3", 2048);
        let messages = vec![Message::user("weather in Toronto?")];
        let live = ollama.chat(&messages, &[]).unwrap();
        assert_eq!(live, read_fixture("chat_tool_call.ndjson").unwrap());
        let raw = ollama.generate_raw("<|im_start|>user\nhi").unwrap();
        assert!(raw.content.starts_with("<tool_call>"));
        let prompt = ollama.render_chat(&messages, &[]).unwrap();
        assert!(prompt.contains("Find Dune showtimes."));
        let error = ollama.chat(&messages, &[]).unwrap_err().to_string();
        assert!(
            error.contains("HTTP 404") && error.contains("not found"),
            "{error}"
        );
        let received = replay.finish();
        assert_eq!(received[0].path, "POST /api/chat");
        assert_eq!(received[0].body, ollama.chat_body(&messages, &[]));
        assert_eq!(received[1].path, "POST /api/generate");
        assert_eq!(received[1].body["raw"], true);
        assert_eq!(received[2].body["_debug_render_only"], true);
    }
}
