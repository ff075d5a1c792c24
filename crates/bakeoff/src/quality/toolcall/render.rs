//! Does the engine render the conversation as the model's template does? Render a few conversations
//! of a task with bakeoff's [`ChatTemplate`] and ask the engine for its own rendering (llama-server
//! `/apply-template`, Ollama `_debug_render_only`); report the first differing position of each.

use super::arms::{openai_messages, Endpoint};
use super::task::Task;
use super::textdiff::{first_difference, TextDiff};
use crate::chat::{ChatTemplate, Message, ToolCall};
use crate::engines::llama_api;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// One conversation to render both ways.
#[derive(Debug, Clone)]
pub struct RenderCase {
    pub name: &'static str,
    pub messages: Vec<Message>,
    pub tools: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderComparison {
    pub case: String,
    pub identical: bool,
    pub ours_chars: Option<usize>,
    pub engine_chars: Option<usize>,
    /// `a` = bakeoff's rendering, `b` = the engine's.
    pub diff: Option<TextDiff>,
    pub error: Option<String>,
}

/// The task's opening without and with tools, after one tool call and its result, and after a
/// final answer: the places where templates and engines usually part.
pub fn cases(task: &Task) -> Vec<RenderCase> {
    let tools = task.tool_definitions();
    let opening = task.initial_messages();
    let tool = &task.tools[0];
    let mut call = ToolCall::new(&tool.name, example_arguments(&tool.parameters));
    call.id = Some("c00010000".into());
    let mut after_call = opening.clone();
    // As the episode loop replays a call-only turn: empty content.
    after_call.push(super::episode::assistant_message("", vec![call.clone()]));
    let result = task.call(&call).to_string();
    after_call.push(Message::tool_result(call.id.clone(), &call.name, result));
    let mut answered = after_call.clone();
    answered.push(Message::assistant("Done."));
    answered.push(Message::user("Thanks!"));
    vec![
        RenderCase {
            name: "opening",
            messages: opening.clone(),
            tools: Vec::new(),
        },
        RenderCase {
            name: "opening_with_tools",
            messages: opening,
            tools: tools.clone(),
        },
        RenderCase {
            name: "after_tool_call",
            messages: after_call,
            tools: tools.clone(),
        },
        RenderCase {
            name: "after_answer",
            messages: answered,
            tools,
        },
    ]
}

/// Arguments fitting a JSON schema (first enum value, `"example"`, 1, 1.5, true, ...).
pub fn example_arguments(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("array") => json!([example_arguments(&schema["items"])]),
        Some("object") => {
            let properties = schema["properties"].as_object();
            let fields: Map<String, Value> = properties
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), example_arguments(v)))
                .collect();
            Value::Object(fields)
        }
        _ => json!("example"),
    }
}

/// The engine's rendering of `case` (with the generation prompt, as a chat request gets).
pub fn engine_rendering(endpoint: &Endpoint, case: &RenderCase) -> Result<String> {
    match endpoint {
        Endpoint::LlamaServer(http) => {
            let mut body = json!({ "messages": openai_messages(&case.messages) });
            if !case.tools.is_empty() {
                body["tools"] = json!(case.tools);
            }
            llama_api::apply_template(http, &body)
        }
        Endpoint::Ollama(ollama) => ollama.render_chat(&case.messages, &case.tools),
        Endpoint::OpenAi { http, .. } => Err(Error::engine(format!(
            "{}: an OpenAI-compatible server cannot show the prompt it renders",
            http.base()
        ))),
    }
}

/// Render every case both ways. A failure on one side is reported on its case, not raised.
pub fn compare(
    template: &ChatTemplate,
    endpoint: &Endpoint,
    cases: &[RenderCase],
) -> Vec<RenderComparison> {
    cases
        .iter()
        .map(|case| {
            let ours = template
                .render(&case.messages, &case.tools, true, &Map::new())
                .map_err(Error::from);
            let theirs = engine_rendering(endpoint, case);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    let diff = first_difference(&ours, &theirs);
                    RenderComparison {
                        case: case.name.into(),
                        identical: diff.is_none(),
                        ours_chars: Some(ours.chars().count()),
                        engine_chars: Some(theirs.chars().count()),
                        diff,
                        error: None,
                    }
                }
                (ours, theirs) => RenderComparison {
                    case: case.name.into(),
                    identical: false,
                    ours_chars: ours.as_ref().ok().map(|s| s.chars().count()),
                    engine_chars: theirs.as_ref().ok().map(|s| s.chars().count()),
                    diff: None,
                    error: Some(
                        [
                            ours.err().map(|e| format!("bakeoff: {e}")),
                            theirs.err().map(|e| format!("engine: {e}")),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("; "),
                    ),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_cover_tools_and_a_call_with_its_result() {
        let task = Task::builtin("movies").unwrap();
        let cases = cases(&task);
        let names: Vec<_> = cases.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "opening",
                "opening_with_tools",
                "after_tool_call",
                "after_answer"
            ]
        );
        let call = &cases[2].messages[cases[2].messages.len() - 2];
        assert_eq!(call.tool_calls[0].arguments, json!({"title": "example"}));
        assert_eq!(cases[2].messages.last().unwrap().role, "tool");
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}, "u": {"enum": ["c", "f"]}, "xs": {"type": "array", "items": {"type": "number"}}}});
        assert_eq!(
            example_arguments(&schema),
            json!({"n": 1, "u": "c", "xs": [1.5]})
        );
    }
}
