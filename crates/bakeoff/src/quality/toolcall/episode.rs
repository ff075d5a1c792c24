//! One agentic episode: ask an arm for a turn, run the calls it made against the task's fake tools,
//! append the results, and repeat until the model answers without calls, the step budget runs out,
//! or a turn fails. The trace keeps seed 001's schema (per-turn `elapsed_s`, `prompt_eval_count`,
//! `eval_count`, `tool_call_count`, `content_len`; final `halt_reason`, `steps_used`,
//! `tool_calls_total`, `wall_clock_s`, `final_history_chars`) and adds what divergence needs.
//!
//! Rule: thinking-channel text is never replayed. An assistant message appended to the history
//! carries only visible content with every thinking block removed and no `reasoning_content`; seed
//! 001 found that keeping Gemma 4's `<|channel>thought\n<channel|>` prefix made the template append
//! a spurious `<turn|>` after the tool responses and corrupted the next prompt.

use super::arms::{Arm, ArmInfo, ArmTurn};
use super::task::Task;
use crate::chat::{Message, ToolCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;

/// A whole episode of one arm on one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trace {
    pub arm: String,
    pub model: String,
    pub engine: String,
    pub task: String,
    pub task_prompt: String,
    pub arm_info: ArmInfo,
    pub turns: Vec<Turn>,
    #[serde(rename = "final")]
    pub outcome: Final,
}

/// One model turn.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Turn {
    /// 1-based.
    pub step: u32,
    /// Client clock around the whole turn (render, request, parse).
    pub elapsed_s: f64,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub tool_call_count: usize,
    /// Characters of visible content (thinking excluded).
    pub content_len: usize,
    pub content: String,
    /// Characters of thinking text the engine or parser split off (never replayed).
    pub thinking_len: usize,
    pub tool_calls: Vec<CallRecord>,
    pub finish_reason: Option<String>,
    /// The prompt of this turn: bakeoff's rendering (native) or the engine's (json), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The raw completion (native arm) or the engine's reply message (json arm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    pub name: String,
    pub arguments: Value,
    /// What the fake tool answered (`null`: not run, the turn failed to parse).
    pub result: Value,
}

/// How the episode ended.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Final {
    /// `no_tool_calls`, `step_budget`, or `error:<stage>` (`render`, `grammar`, `request`, `parse`).
    pub halt_reason: String,
    pub steps_used: u32,
    pub tool_calls_total: usize,
    pub wall_clock_s: f64,
    /// Characters of the final history as JSON (messages as the arm would send them).
    pub final_history_chars: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Run `task` through `arm`; `observe` sees each turn as it completes.
pub fn run(arm: &mut dyn Arm, task: &Task, observe: &mut dyn FnMut(&Turn)) -> Trace {
    let started = Instant::now();
    let tools = task.tool_definitions();
    let mut history = task.initial_messages();
    let mut turns: Vec<Turn> = Vec::new();
    let (halt_reason, error) = loop {
        let step = turns.len() as u32 + 1;
        if step > task.step_budget {
            break ("step_budget".to_string(), None);
        }
        let clock = Instant::now();
        let result = arm.turn(&history, &tools, step);
        let elapsed_s = clock.elapsed().as_secs_f64();
        let turn = match result {
            Ok(turn) => turn,
            Err(failure) => {
                let message = failure.error.to_string();
                let failed = Turn {
                    step,
                    elapsed_s,
                    error: Some(message.clone()),
                    ..Turn::default()
                };
                observe(&failed);
                turns.push(failed);
                break (format!("error:{}", failure.stage), Some(message));
            }
        };
        let calls = with_ids(turn.tool_calls.clone(), step);
        let mut record = turn_record(step, elapsed_s, &turn);
        if let Some(reason) = &turn.parse_error {
            // The calls that did parse are kept (not run: the turn failed), so the record shows
            // how far the model got.
            record.tool_calls = calls
                .iter()
                .map(|c| CallRecord {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                    result: Value::Null,
                })
                .collect();
            record.error = Some(reason.clone());
            observe(&record);
            turns.push(record);
            break ("error:parse".into(), turn.parse_error.clone());
        }
        history.push(assistant_message(&turn.content, calls.clone()));
        for call in &calls {
            let result = task.call(call);
            history.push(Message::tool_result(
                call.id.clone(),
                &call.name,
                result.to_string(),
            ));
            record.tool_calls.push(CallRecord {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                result,
            });
        }
        observe(&record);
        turns.push(record);
        if calls.is_empty() {
            break ("no_tool_calls".into(), None);
        }
    };
    let info = arm.info().clone();
    Trace {
        arm: info.name.clone(),
        model: info.model.clone(),
        engine: info.engine.clone(),
        task: task.name.clone(),
        task_prompt: task.user.clone(),
        outcome: Final {
            halt_reason,
            steps_used: turns.len() as u32,
            tool_calls_total: turns.iter().map(|t| t.tool_call_count).sum(),
            wall_clock_s: started.elapsed().as_secs_f64(),
            final_history_chars: history_chars(&history),
            error,
        },
        arm_info: info,
        turns,
    }
}

fn turn_record(step: u32, elapsed_s: f64, turn: &ArmTurn) -> Turn {
    let visible = strip_thinking(&turn.content);
    Turn {
        step,
        elapsed_s,
        prompt_eval_count: turn.prompt_eval_count,
        eval_count: turn.eval_count,
        tool_call_count: turn.tool_calls.len(),
        content_len: visible.chars().count(),
        thinking_len: turn.thinking.chars().count() + thinking_chars(&turn.content),
        content: visible,
        tool_calls: Vec::new(),
        finish_reason: turn.finish_reason.clone(),
        prompt: turn.prompt.clone(),
        raw: turn.raw.clone(),
        error: None,
    }
}

/// Deterministic call ids (`c` + step + index, 9 alphanumerics, which Mistral templates require),
/// so both arms replay identical histories whatever ids an engine generated.
fn with_ids(calls: Vec<ToolCall>, step: u32) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(index, mut call)| {
            call.id = Some(format!("c{:04}{:04}", step % 10_000, index % 10_000));
            call
        })
        .collect()
}

/// The assistant message replayed into the history: visible content only (see the module rule),
/// `""` when there is none (as llama.cpp fills it in; templates that concatenate `content` fail on
/// a missing one).
pub fn assistant_message(content: &str, calls: Vec<ToolCall>) -> Message {
    Message {
        role: "assistant".into(),
        content: Some(strip_thinking(content)),
        reasoning_content: None,
        tool_calls: calls,
        ..Message::default()
    }
}

/// Thinking-channel delimiters: `<think>…</think>` (Qwen, DeepSeek, SmolLM3) and Gemma 4's
/// `<|channel>…<channel|>`. A closing tag with no opening one (the template opened it in the
/// generation prompt) ends a thinking block that began at the start.
const THINKING: [(&str, &str); 2] = [("<think>", "</think>"), ("<|channel>", "<channel|>")];

/// Visible content: every thinking block removed, surrounding whitespace trimmed.
pub fn strip_thinking(content: &str) -> String {
    let mut text = content.to_string();
    for (open, close) in THINKING {
        if let Some(end) = text.find(close) {
            if text.find(open).is_none_or(|start| start > end) {
                text = text[end + close.len()..].to_string();
            }
        }
        while let Some(start) = text.find(open) {
            match text[start..].find(close) {
                Some(length) => text.replace_range(start..start + length + close.len(), ""),
                // An unterminated block runs to the end: all of it is thinking.
                None => text.truncate(start),
            }
        }
    }
    text.trim().to_string()
}

fn thinking_chars(content: &str) -> usize {
    content
        .trim()
        .chars()
        .count()
        .saturating_sub(strip_thinking(content).chars().count())
}

fn history_chars(history: &[Message]) -> usize {
    serde_json::to_string(history)
        .map(|s| s.chars().count())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::toolcall::arms::{ArmInfo, ForceTools, Sampling, StepError};
    use serde_json::json;

    /// A scripted arm: unit tests of the loop's bookkeeping (engine paths are tested on real engines).
    struct Scripted {
        info: ArmInfo,
        turns: Vec<ArmTurn>,
        seen: Vec<Vec<Message>>,
    }

    impl Scripted {
        fn new(turns: Vec<ArmTurn>) -> Self {
            let info = ArmInfo {
                name: "native".into(),
                path: "native".into(),
                engine: "scripted".into(),
                url: String::new(),
                model: "m".into(),
                api: String::new(),
                format: None,
                template_sha256: None,
                force_tools: ForceTools::Never,
                sampling: Sampling::default(),
                prefill: None,
            };
            Scripted {
                info,
                turns,
                seen: Vec::new(),
            }
        }
    }

    impl Arm for Scripted {
        fn info(&self) -> &ArmInfo {
            &self.info
        }
        fn turn(&mut self, history: &[Message], _: &[Value], _: u32) -> Result<ArmTurn, StepError> {
            self.seen.push(history.to_vec());
            if self.turns.is_empty() {
                return Err(StepError {
                    stage: "request",
                    error: crate::Error::http("u", "gone"),
                });
            }
            Ok(self.turns.remove(0))
        }
    }

    fn calling(name: &str, arguments: Value, content: &str) -> ArmTurn {
        ArmTurn {
            content: content.into(),
            tool_calls: vec![ToolCall::new(name, arguments)],
            prompt_eval_count: Some(10),
            eval_count: Some(5),
            ..ArmTurn::default()
        }
    }

    fn answering(content: &str) -> ArmTurn {
        ArmTurn {
            content: content.into(),
            ..ArmTurn::default()
        }
    }

    #[test]
    fn strips_every_kind_of_thinking() {
        assert_eq!(strip_thinking("<think>plan</think>\n\nAnswer"), "Answer");
        assert_eq!(strip_thinking("plan continues</think>Answer"), "Answer");
        assert_eq!(
            strip_thinking("<|channel>thought\nplan<channel|>Done."),
            "Done."
        );
        assert_eq!(strip_thinking("<|channel>thought\n<channel|>"), "");
        assert_eq!(strip_thinking("<think>never closed"), "");
        assert_eq!(strip_thinking("A <think>x</think>B<think>y</think>"), "A B");
        assert_eq!(strip_thinking("  plain  "), "plain");
    }

    #[test]
    fn memory_episode_halts_on_an_answer() {
        let task = Task::builtin("memory").unwrap();
        let mut arm = Scripted::new(vec![
            calling("memory_search", json!({"query": "sister birthday"}), ""),
            answering("14 May; a pottery class voucher."),
        ]);
        let trace = run(&mut arm, &task, &mut |_| {});
        assert_eq!(trace.outcome.halt_reason, "no_tool_calls");
        assert_eq!(
            (trace.outcome.steps_used, trace.outcome.tool_calls_total),
            (2, 1)
        );
        assert_eq!(
            trace.turns[0].tool_calls[0].result["memories"][0]["text"],
            "Sister Ana's birthday is on 14 May."
        );
        // The second request saw the call and its result, with a deterministic id.
        let second = &arm.seen[1];
        let tool = second.last().unwrap();
        assert_eq!(
            (tool.role.as_str(), tool.tool_call_id.as_deref()),
            ("tool", Some("c00010000"))
        );
        assert_eq!(
            second[second.len() - 2].tool_calls[0].id.as_deref(),
            Some("c00010000")
        );
        assert!(trace.outcome.final_history_chars > task.user.len());
        let json = serde_json::to_value(&trace).unwrap();
        for key in [
            "elapsed_s",
            "prompt_eval_count",
            "eval_count",
            "tool_call_count",
            "content_len",
        ] {
            assert!(json["turns"][0].get(key).is_some(), "turn lacks {key}");
        }
        for key in [
            "halt_reason",
            "steps_used",
            "tool_calls_total",
            "wall_clock_s",
            "final_history_chars",
        ] {
            assert!(json["final"].get(key).is_some(), "final lacks {key}");
        }
    }

    #[test]
    fn budget_and_errors_halt_with_their_reason() {
        let mut task = Task::builtin("movies").unwrap();
        task.step_budget = 2;
        let call = || calling("search_movies", json!({"title": "dune"}), "");
        let trace = run(
            &mut Scripted::new(vec![call(), call(), call()]),
            &task,
            &mut |_| {},
        );
        assert_eq!(
            (trace.outcome.halt_reason.as_str(), trace.outcome.steps_used),
            ("step_budget", 2)
        );
        let trace = run(&mut Scripted::new(vec![call()]), &task, &mut |_| {});
        assert_eq!(trace.outcome.halt_reason, "error:request");
        assert_eq!(trace.turns[1].error.as_deref(), Some("u: gone"));
        let broken = ArmTurn {
            parse_error: Some("malformed hermes tool call at byte 3".into()),
            ..ArmTurn::default()
        };
        let trace = run(&mut Scripted::new(vec![broken]), &task, &mut |_| {});
        assert_eq!(trace.outcome.halt_reason, "error:parse");
    }

    // Regression (seed 001): the thinking prefix kept in a replayed assistant message made Gemma 4's
    // template append a spurious `<turn|>` and leaked thinking into the next prompt.
    #[test]
    fn thinking_is_never_replayed_into_the_history() {
        let task = Task::builtin("memory").unwrap();
        let mut first = calling(
            "memory_search",
            json!({"query": "sister"}),
            "<|channel>thought\nsecret plan<channel|>",
        );
        first.thinking = "more secret reasoning".into();
        let mut arm = Scripted::new(vec![first, answering("<think>hidden</think>14 May.")]);
        let trace = run(&mut arm, &task, &mut |_| {});
        let replayed = &arm.seen[1][arm.seen[1].len() - 2];
        assert_eq!(replayed.role, "assistant");
        assert_eq!(
            replayed.content.as_deref(),
            Some(""),
            "thinking prefix replayed as content"
        );
        assert_eq!(replayed.reasoning_content, None);
        let sent = serde_json::to_string(&arm.seen[1]).unwrap();
        assert!(
            !sent.contains("secret") && !sent.contains("channel"),
            "{sent}"
        );
        assert_eq!(trace.turns[1].content, "14 May.");
        assert_eq!(
            trace.turns[0].thinking_len,
            "more secret reasoning".len() + "<|channel>thought\nsecret plan<channel|>".len()
        );
    }
}
