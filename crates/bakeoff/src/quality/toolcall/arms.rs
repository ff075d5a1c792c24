//! The arms. (A) **json**: the engine's tools API renders the template and parses the calls (OpenAI
//! `/v1/chat/completions`, Ollama `/api/chat`). (B) **native**: bakeoff renders the model's own
//! template, posts the prompt raw (llama-server `/completion`, Ollama `/api/generate` with `raw`) and
//! parses the native spans. (C) **reference**: either kind against another engine, config or model.

use super::grammar;
use crate::chat::{ChatTemplate, Message, ToolCall, ToolCallFormat};
use crate::engines::http::{Http, Timeouts};
use crate::engines::llama_api::{self, RawCompletion, RawParams};
use crate::engines::ollama::Ollama;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Where an arm sends its requests.
#[derive(Clone)]
pub enum Endpoint {
    /// llama-server: OpenAI chat, `/completion`, `/apply-template`.
    LlamaServer(Http),
    /// Another OpenAI-compatible server (vLLM, SGLang, ...): chat only.
    OpenAi {
        http: Http,
        model: String,
    },
    Ollama(Ollama),
}

impl Endpoint {
    pub fn llama_server(url: &str) -> Self {
        Endpoint::LlamaServer(Http::new(url, Duration::from_secs(600)))
    }

    /// The same endpoint under other request bounds (the command's `--*-timeout` flags).
    pub fn retimed(self, timeouts: Timeouts) -> Self {
        match self {
            Endpoint::LlamaServer(http) => Endpoint::LlamaServer(http.retimed(timeouts)),
            Endpoint::OpenAi { http, model } => Endpoint::OpenAi {
                http: http.retimed(timeouts),
                model,
            },
            Endpoint::Ollama(ollama) => Endpoint::Ollama(ollama.retimed(timeouts)),
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Endpoint::LlamaServer(_) => "llama-server",
            Endpoint::OpenAi { .. } => "openai",
            Endpoint::Ollama(_) => "ollama",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Endpoint::LlamaServer(http) | Endpoint::OpenAi { http, .. } => http.base().to_string(),
            Endpoint::Ollama(ollama) => ollama.url().to_string(),
        }
    }
}

/// Sampling of every turn: greedy and seeded by default, so arms are comparable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub max_tokens: u32,
    pub temperature: f64,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            max_tokens: 256,
            temperature: 0.0,
            seed: 0,
        }
    }
}

/// When to force a tool call: a grammar on the native arm, `tool_choice: "required"` on the JSON arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForceTools {
    Never,
    /// Only on the first step: the tool path is exercised, later steps may answer.
    First,
    Always,
}

impl ForceTools {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "never" | "no" => Ok(ForceTools::Never),
            "first" => Ok(ForceTools::First),
            "always" => Ok(ForceTools::Always),
            other => Err(Error::input(format!(
                "--force-tools {other}: expected never, first or always"
            ))),
        }
    }

    pub fn applies(self, step: u32) -> bool {
        match self {
            ForceTools::Never => false,
            ForceTools::First => step == 1,
            ForceTools::Always => true,
        }
    }
}

/// What produced an arm's turns, stored with its traces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArmInfo {
    /// `json`, `native` or `reference`.
    pub name: String,
    /// `json` or `native`: which path the arm takes.
    pub path: String,
    pub engine: String,
    pub url: String,
    pub model: String,
    pub api: String,
    /// Native arm: the tool-call format parsed, and the template's SHA-256.
    pub format: Option<String>,
    pub template_sha256: Option<String>,
    pub force_tools: ForceTools,
    pub sampling: Sampling,
    /// JSON arm: text prefilled as the start of a forced assistant turn (the family's call opener).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<String>,
}

/// One model turn as an arm saw it.
#[derive(Debug, Clone, Default)]
pub struct ArmTurn {
    /// Visible content (thinking already split off where the engine or parser did).
    pub content: String,
    pub thinking: String,
    pub tool_calls: Vec<ToolCall>,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    /// The prompt this turn was generated from: bakeoff's rendering (native) or the engine's own
    /// (json, when the engine can show it).
    pub prompt: Option<String>,
    pub finish_reason: Option<String>,
    /// The raw completion text (native arm) or the engine's reply message as JSON (json arm).
    pub raw: Option<String>,
    /// A native span or JSON arguments that did not parse.
    pub parse_error: Option<String>,
}

/// A failed turn and the stage it failed in (`render`, `grammar`, `request`), for `error:<stage>`.
#[derive(Debug)]
pub struct StepError {
    pub stage: &'static str,
    pub error: Error,
}

impl StepError {
    fn at(stage: &'static str) -> impl FnOnce(Error) -> StepError {
        move |error| StepError { stage, error }
    }
}

pub trait Arm {
    fn info(&self) -> &ArmInfo;
    /// Generate the next turn of `history` with `tools` offered; `step` counts from 1.
    fn turn(
        &mut self,
        history: &[Message],
        tools: &[Value],
        step: u32,
    ) -> std::result::Result<ArmTurn, StepError>;
}

/// Arm A: the engine's JSON tools API.
pub struct JsonArm {
    info: ArmInfo,
    endpoint: Endpoint,
    /// Also ask the engine for the prompt it rendered (llama-server `/apply-template`, Ollama
    /// `_debug_render_only`), so prompts can be compared with the native arm's.
    pub engine_render: bool,
}

impl JsonArm {
    pub fn new(
        name: &str,
        endpoint: Endpoint,
        model: &str,
        sampling: Sampling,
        force_tools: ForceTools,
    ) -> Result<Self> {
        let api = match &endpoint {
            Endpoint::Ollama(_) if force_tools != ForceTools::Never => {
                return Err(Error::input(
                    "Ollama's /api/chat has no tool_choice: a tool call cannot be forced on its JSON arm",
                )
                .with_hint("use --force-tools never with Ollama"))
            }
            Endpoint::Ollama(_) => "/api/chat",
            _ => "/v1/chat/completions",
        };
        let info = ArmInfo {
            name: name.into(),
            path: "json".into(),
            engine: endpoint.engine().into(),
            url: endpoint.url(),
            model: model.into(),
            api: api.into(),
            format: None,
            template_sha256: None,
            force_tools,
            sampling,
            prefill: None,
        };
        Ok(JsonArm {
            info,
            endpoint,
            engine_render: true,
        })
    }

    /// On forced steps, also prefill the assistant turn with `format`'s call opener. llama-server
    /// (b11434) builds its `tool_choice: "required"` grammar as `free text? tool-call`, so a small
    /// model writes prose until `max_tokens` and never reaches the call; the prefill makes the call
    /// start at once, and the engine's own parser still turns it into JSON `tool_calls`.
    pub fn prefill_calls(mut self, format: ToolCallFormat) -> Self {
        if self.info.force_tools != ForceTools::Never {
            self.info.prefill = Some(call_opener(format).to_string());
        }
        self
    }

    fn chat_body(&self, history: &[Message], tools: &[Value], step: u32) -> Value {
        let sampling = self.info.sampling;
        let forced = !tools.is_empty() && self.info.force_tools.applies(step);
        let mut messages = openai_messages(history);
        if let Some(prefill) = self.info.prefill.as_ref().filter(|_| forced) {
            messages.push(json!({ "role": "assistant", "content": prefill }));
        }
        let mut body = json!({
            "model": self.info.model,
            "messages": messages,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "seed": sampling.seed,
            "stream": false,
        });
        if !tools.is_empty() {
            body["tools"] = json!(tools);
            if forced {
                // Exactly one call, as the native arm's grammar forces.
                body["tool_choice"] = json!("required");
                body["parallel_tool_calls"] = json!(false);
            }
        }
        body
    }

    /// The body whose rendering is compared with the native arm's prompt: the request without the
    /// prefill, which the native arm gets from its grammar instead.
    fn render_body(&self, history: &[Message], tools: &[Value]) -> Value {
        let mut body = json!({ "messages": openai_messages(history) });
        if !tools.is_empty() {
            body["tools"] = json!(tools);
        }
        body
    }

    fn openai_turn(
        &self,
        http: &Http,
        history: &[Message],
        tools: &[Value],
        step: u32,
    ) -> std::result::Result<ArmTurn, StepError> {
        let body = self.chat_body(history, tools, step);
        let prompt = match (&self.endpoint, self.engine_render) {
            (Endpoint::LlamaServer(_), true) => Some(
                llama_api::apply_template(http, &self.render_body(history, tools))
                    .map_err(StepError::at("request"))?,
            ),
            _ => None,
        };
        let reply = http
            .post_json("/v1/chat/completions", &body)
            .map_err(StepError::at("request"))?;
        let mut turn = parse_openai_reply(&reply);
        turn.prompt = prompt;
        Ok(turn)
    }

    fn ollama_turn(
        &self,
        ollama: &Ollama,
        history: &[Message],
        tools: &[Value],
    ) -> std::result::Result<ArmTurn, StepError> {
        let prompt = if self.engine_render {
            Some(
                ollama
                    .render_chat(history, tools)
                    .map_err(StepError::at("request"))?,
            )
        } else {
            None
        };
        let reply = ollama
            .chat(history, tools)
            .map_err(StepError::at("request"))?;
        Ok(ArmTurn {
            content: reply.content,
            thinking: reply.thinking,
            tool_calls: reply.tool_calls,
            prompt_eval_count: reply.prompt_eval_count,
            eval_count: reply.eval_count,
            prompt,
            finish_reason: reply.done_reason,
            raw: None,
            parse_error: None,
        })
    }
}

impl Arm for JsonArm {
    fn info(&self) -> &ArmInfo {
        &self.info
    }

    fn turn(
        &mut self,
        history: &[Message],
        tools: &[Value],
        step: u32,
    ) -> std::result::Result<ArmTurn, StepError> {
        match &self.endpoint {
            Endpoint::LlamaServer(http) | Endpoint::OpenAi { http, .. } => {
                self.openai_turn(http, history, tools, step)
            }
            Endpoint::Ollama(ollama) => self.ollama_turn(ollama, history, tools),
        }
    }
}

/// The text a family's tool call starts with.
pub fn call_opener(format: ToolCallFormat) -> &'static str {
    match format {
        ToolCallFormat::Hermes => "<tool_call>\n",
        ToolCallFormat::Llama3Json => "{",
        ToolCallFormat::Mistral => "[TOOL_CALLS]",
        ToolCallFormat::Gemma4 => "<|tool_call>",
        ToolCallFormat::Pythonic => "[",
    }
}

/// Messages in the OpenAI wire shape: tool-call arguments as JSON text, tool results with their
/// call id and name. Thinking (`reasoning_content`) is never sent.
pub fn openai_messages(history: &[Message]) -> Vec<Value> {
    history.iter().map(openai_message).collect()
}

fn openai_message(message: &Message) -> Value {
    let mut out = json!({ "role": message.role });
    if let Some(content) = &message.content {
        out["content"] = json!(content);
    }
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments.to_string() },
                })
            })
            .collect();
        out["tool_calls"] = json!(calls);
    }
    if let Some(id) = &message.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    if let Some(name) = &message.name {
        out["name"] = json!(name);
    }
    out
}

/// One `/v1/chat/completions` reply as a turn. Arguments that are not JSON are a parse error.
pub fn parse_openai_reply(reply: &Value) -> ArmTurn {
    let choice = &reply["choices"][0];
    let message = &choice["message"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut turn = ArmTurn {
        content: text(&message["content"]),
        thinking: text(&message["reasoning_content"]),
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        prompt_eval_count: reply["usage"]["prompt_tokens"].as_u64(),
        eval_count: reply["usage"]["completion_tokens"].as_u64(),
        // The engine's message as it came, for forensics when its parse and ours disagree.
        raw: Some(message.to_string()),
        ..ArmTurn::default()
    };
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        match openai_call(call) {
            Ok(call) => turn.tool_calls.push(call),
            Err(reason) => {
                turn.parse_error = Some(reason);
                break;
            }
        }
    }
    turn
}

fn openai_call(call: &Value) -> std::result::Result<ToolCall, String> {
    let function = &call["function"];
    let name = function["name"]
        .as_str()
        .ok_or_else(|| format!("tool call without function.name: {call}"))?;
    let arguments = match &function["arguments"] {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| format!("tool call {name}: arguments are not JSON ({e}): {text}"))?,
        Value::Object(_) => function["arguments"].clone(),
        other => return Err(format!("tool call {name}: arguments are {other}")),
    };
    let mut parsed = ToolCall::new(name, arguments);
    parsed.id = call["id"].as_str().map(str::to_string);
    Ok(parsed)
}

/// Arm B: bakeoff renders the template and parses the model's native tool-call spans.
pub struct NativeArm {
    info: ArmInfo,
    endpoint: Endpoint,
    template: ChatTemplate,
    format: ToolCallFormat,
    /// Extra template variables (e.g. `enable_thinking`).
    pub template_vars: Map<String, Value>,
    /// The forcing grammar starts with a `<think>` block (a test aid: thinking must never be
    /// replayed into the next prompt).
    pub force_thinking: bool,
}

impl NativeArm {
    pub fn new(
        name: &str,
        endpoint: Endpoint,
        model: &str,
        template: ChatTemplate,
        format: ToolCallFormat,
        sampling: Sampling,
        force_tools: ForceTools,
    ) -> Result<Self> {
        let api = match &endpoint {
            Endpoint::LlamaServer(_) => "/completion",
            Endpoint::Ollama(_) if force_tools != ForceTools::Never => {
                return Err(Error::input(
                    "Ollama's /api/generate takes no grammar: a tool call cannot be forced on its native arm",
                )
                .with_hint("use --force-tools never with Ollama"))
            }
            Endpoint::Ollama(_) => "/api/generate (raw)",
            Endpoint::OpenAi { .. } => {
                return Err(Error::input(
                    "the native arm needs a raw completion endpoint (llama-server or Ollama); OpenAI-compatible servers have none here",
                ))
            }
        };
        let info = ArmInfo {
            name: name.into(),
            path: "native".into(),
            engine: endpoint.engine().into(),
            url: endpoint.url(),
            model: model.into(),
            api: api.into(),
            format: Some(format.name().into()),
            template_sha256: Some(crate::formats::sha256_hex(template.source.as_bytes())),
            force_tools,
            sampling,
            prefill: None,
        };
        Ok(NativeArm {
            info,
            endpoint,
            template,
            format,
            template_vars: Map::new(),
            force_thinking: false,
        })
    }

    fn complete(
        &self,
        prompt: &str,
        grammar: Option<String>,
    ) -> std::result::Result<RawCompletion, StepError> {
        let sampling = self.info.sampling;
        match &self.endpoint {
            Endpoint::LlamaServer(http) => {
                let params = RawParams {
                    n_predict: sampling.max_tokens,
                    temperature: sampling.temperature,
                    seed: sampling.seed,
                    grammar,
                };
                llama_api::complete(http, prompt, &params).map_err(StepError::at("request"))
            }
            Endpoint::Ollama(ollama) => {
                let ollama = ollama
                    .clone()
                    .with_option("num_predict", json!(sampling.max_tokens));
                let reply = ollama
                    .generate_raw(prompt)
                    .map_err(StepError::at("request"))?;
                Ok(RawCompletion {
                    content: reply.content,
                    prompt_tokens: reply.prompt_eval_count,
                    predicted_tokens: reply.eval_count,
                    stop_type: reply.done_reason,
                })
            }
            Endpoint::OpenAi { .. } => Err(StepError {
                stage: "request",
                error: Error::input("no raw completion endpoint"),
            }),
        }
    }
}

impl Arm for NativeArm {
    fn info(&self) -> &ArmInfo {
        &self.info
    }

    fn turn(
        &mut self,
        history: &[Message],
        tools: &[Value],
        step: u32,
    ) -> std::result::Result<ArmTurn, StepError> {
        let prompt = self
            .template
            .render(history, tools, true, &self.template_vars)
            .map_err(|e| StepError::at("render")(e.into()))?;
        let grammar = if self.info.force_tools.applies(step) && !tools.is_empty() {
            Some(
                grammar::tool_call_grammar(self.format, tools, self.force_thinking)
                    .map_err(StepError::at("grammar"))?,
            )
        } else {
            None
        };
        let reply = self.complete(&prompt, grammar)?;
        let raw = reply.content;
        let mut turn = ArmTurn {
            prompt_eval_count: reply.prompt_tokens,
            eval_count: reply.predicted_tokens,
            prompt: Some(prompt),
            finish_reason: reply.stop_type,
            raw: Some(raw.clone()),
            ..ArmTurn::default()
        };
        match self.format.parse(&raw) {
            Ok(parsed) => {
                turn.content = parsed.content;
                turn.thinking = parsed.reasoning.unwrap_or_default();
                turn.tool_calls = parsed.tool_calls;
            }
            Err(error) => {
                turn.content = raw;
                turn.parse_error = Some(error.to_string());
            }
        }
        Ok(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_reply_with_tool_calls_and_reasoning() {
        let reply = json!({
            "choices": [{
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant", "content": null, "reasoning_content": "plan",
                    "tool_calls": [{"id": "abc", "type": "function",
                        "function": {"name": "search_movies", "arguments": "{\"title\":\"Dune\"}"}}]
                }
            }],
            "usage": {"prompt_tokens": 120, "completion_tokens": 17}
        });
        let turn = parse_openai_reply(&reply);
        assert_eq!(turn.tool_calls[0].name, "search_movies");
        assert_eq!(turn.tool_calls[0].arguments, json!({"title": "Dune"}));
        assert_eq!(turn.tool_calls[0].id.as_deref(), Some("abc"));
        assert_eq!(
            (turn.thinking.as_str(), turn.content.as_str()),
            ("plan", "")
        );
        assert_eq!(
            (turn.prompt_eval_count, turn.eval_count),
            (Some(120), Some(17))
        );
        assert!(turn.parse_error.is_none());
    }

    #[test]
    fn openai_arguments_that_are_not_json_are_a_parse_error() {
        let reply = json!({"choices": [{"message": {"tool_calls": [
            {"function": {"name": "f", "arguments": "{\"a\": "}}]}}]});
        let turn = parse_openai_reply(&reply);
        assert!(turn
            .parse_error
            .unwrap()
            .contains("tool call f: arguments are not JSON"));
    }

    #[test]
    fn openai_messages_send_arguments_as_text_and_never_thinking() {
        let mut call = ToolCall::new("f", json!({"a": 1}));
        call.id = Some("c000100001".into());
        let mut assistant = Message::tool_calls(vec![call]);
        assistant.reasoning_content = Some("secret".into());
        let tool = Message::tool_result(Some("c000100001".into()), "f", "{\"ok\":true}");
        let sent = openai_messages(&[assistant, tool]);
        assert_eq!(
            sent[0]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(sent[0]["content"], "");
        assert!(!Value::Array(sent.clone()).to_string().contains("secret"));
        assert_eq!(sent[1]["tool_call_id"], "c000100001");
        assert_eq!(sent[1]["name"], "f");
    }

    #[test]
    fn forced_json_steps_require_a_call_and_prefill_the_opener() {
        let endpoint = Endpoint::llama_server("http://127.0.0.1:1");
        let arm = JsonArm::new(
            "json",
            endpoint,
            "m",
            Sampling::default(),
            ForceTools::First,
        )
        .unwrap()
        .prefill_calls(ToolCallFormat::Hermes);
        let tools = vec![json!({"type": "function", "function": {"name": "f"}})];
        let history = vec![Message::user("hi")];
        let first = arm.chat_body(&history, &tools, 1);
        assert_eq!(first["tool_choice"], "required");
        assert_eq!(first["parallel_tool_calls"], false);
        assert_eq!(
            first["messages"][1],
            json!({"role": "assistant", "content": "<tool_call>\n"})
        );
        let second = arm.chat_body(&history, &tools, 2);
        assert!(second.get("tool_choice").is_none());
        assert_eq!(second["messages"].as_array().unwrap().len(), 1);
    }

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ollama")
            .join(name);
        std::fs::read_to_string(path).expect("fixture")
    }

    /// Both Ollama arms end to end over HTTP, on replies recorded from Ollama's documented API.
    #[test]
    fn ollama_arms_run_through_recorded_replies() {
        use crate::engines::replay::Replay;
        let replay = Replay::serve(vec![
            (200, fixture("render_only.json")),
            (200, fixture("chat_tool_call.ndjson")),
            (200, fixture("generate_raw.ndjson")),
        ]);
        let ollama = Ollama::new(&replay.url, "qwen3", 4096);
        let tools = vec![
            json!({"type": "function", "function": {"name": "search_movies", "parameters": {"type": "object"}}}),
        ];
        let history = vec![
            Message::system("Be brief."),
            Message::user("Find Dune showtimes."),
        ];
        let mut json_arm = JsonArm::new(
            "json",
            Endpoint::Ollama(ollama.clone()),
            "qwen3",
            Sampling::default(),
            ForceTools::Never,
        )
        .unwrap();
        let turn = json_arm.turn(&history, &tools, 1).unwrap();
        assert_eq!(turn.tool_calls[0].name, "get_current_weather");
        assert_eq!(
            turn.thinking,
            "The user wants the weather in Toronto, in celsius."
        );
        assert_eq!(turn.prompt_eval_count, Some(122));
        assert!(turn.prompt.unwrap().ends_with("<|im_start|>assistant\n"));
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let template = ChatTemplate::new(chatml, "", "<|im_end|>");
        let mut native = NativeArm::new(
            "native",
            Endpoint::Ollama(ollama),
            "qwen2.5",
            template,
            ToolCallFormat::Hermes,
            Sampling::default(),
            ForceTools::Never,
        )
        .unwrap();
        let turn = native.turn(&history, &tools, 1).unwrap();
        assert_eq!(turn.parse_error, None);
        assert_eq!(turn.tool_calls[0].name, "search_movies");
        assert_eq!(turn.tool_calls[0].arguments, json!({"title": "Dune"}));
        let received = replay.finish();
        assert_eq!(received[0].body["_debug_render_only"], true);
        assert_eq!(
            received[1].body["tools"][0]["function"]["name"],
            "search_movies"
        );
        let raw = &received[2].body;
        assert_eq!(
            (received[2].path.as_str(), raw["raw"].as_bool()),
            ("POST /api/generate", Some(true))
        );
        assert_eq!(raw["prompt"], "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nFind Dune showtimes.<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(raw["options"]["num_predict"], 256);
        assert_eq!(raw["options"]["num_ctx"], 4096);
    }

    #[test]
    fn force_policy_and_ollama_limits() {
        assert!(ForceTools::First.applies(1) && !ForceTools::First.applies(2));
        assert!(ForceTools::Always.applies(7) && !ForceTools::Never.applies(1));
        assert!(ForceTools::parse("sometimes").is_err());
        let ollama = Endpoint::Ollama(Ollama::new("http://127.0.0.1:1", "m", 2048));
        let error = JsonArm::new("json", ollama, "m", Sampling::default(), ForceTools::First);
        assert!(error.err().unwrap().to_string().contains("no tool_choice"));
    }
}
