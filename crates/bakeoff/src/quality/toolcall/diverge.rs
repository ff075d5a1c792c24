//! Where two arms' episodes of the same task part ways: the first step whose tool calls differ (names
//! as text, arguments as JSON values, so key order and 1 vs 1.0 do not count), halt differences, and
//! the first differing position of each step's prompt.

use super::episode::{CallRecord, Trace};
use super::textdiff::{first_difference, TextDiff};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub task: String,
    pub a: Side,
    pub b: Side,
    /// Same tool calls (names and argument values) at every step and the same halt reason.
    pub same_behaviour: bool,
    /// The first step whose tool calls differ, or that only one arm reached.
    pub first_divergent_step: Option<u32>,
    pub steps: Vec<StepDiff>,
    /// Present when the halt reasons differ.
    pub halt: Option<(String, String)>,
    /// Steps whose prompts both arms know and that differ (json: the engine's rendering; native:
    /// bakeoff's).
    pub prompts: Vec<PromptDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub arm: String,
    pub path: String,
    pub engine: String,
    pub model: String,
    pub halt_reason: String,
    pub steps_used: u32,
    pub tool_calls_total: usize,
    pub wall_clock_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepDiff {
    pub step: u32,
    pub a_calls: Vec<String>,
    pub b_calls: Vec<String>,
    pub calls: Vec<CallDiff>,
    /// Both answered without calls, in different words (informational: not a divergence).
    pub answers_differ: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallDiff {
    /// Position of the call within the step.
    pub index: usize,
    /// `only_a`, `only_b`, `name` or `arguments`.
    pub kind: String,
    pub a: Option<String>,
    pub b: Option<String>,
    pub arguments: Vec<ValueDiff>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueDiff {
    /// JSON Pointer of the differing value (`""` for the whole).
    pub path: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptDiff {
    pub step: u32,
    pub diff: TextDiff,
}

/// Divergence reports per task: json vs native and each against the reference, or only `pair`.
pub fn per_task(traces: &[Trace], pair: Option<(&str, &str)>) -> Vec<Divergence> {
    const PAIRS: [(&str, &str); 3] = [
        ("json", "native"),
        ("json", "reference"),
        ("native", "reference"),
    ];
    let pairs: Vec<(&str, &str)> = pair.map_or(PAIRS.to_vec(), |p| vec![p]);
    let mut tasks: Vec<&str> = traces.iter().map(|t| t.task.as_str()).collect();
    tasks.dedup();
    let find = |task: &str, arm: &str| traces.iter().find(|t| t.task == task && t.arm == arm);
    let compare_pair =
        |task: &str, (a, b): (&str, &str)| Some(compare(find(task, a)?, find(task, b)?));
    tasks
        .iter()
        .flat_map(|task| pairs.iter().filter_map(move |p| compare_pair(task, *p)))
        .collect()
}

pub fn compare(a: &Trace, b: &Trace) -> Divergence {
    let steps_total = a.turns.len().max(b.turns.len());
    let mut steps = Vec::new();
    let mut first = None;
    for index in 0..steps_total {
        let step = index as u32 + 1;
        let (ta, tb) = (a.turns.get(index), b.turns.get(index));
        let empty = Vec::new();
        let calls_a = ta.map_or(&empty, |t| &t.tool_calls);
        let calls_b = tb.map_or(&empty, |t| &t.tool_calls);
        let calls = call_diffs(calls_a, calls_b);
        let one_sided = ta.is_none() || tb.is_none();
        let answers_differ = matches!((ta, tb), (Some(x), Some(y)) if calls_a.is_empty() && calls_b.is_empty() && x.content != y.content);
        if (one_sided || !calls.is_empty()) && first.is_none() {
            first = Some(step);
        }
        if one_sided || !calls.is_empty() || answers_differ {
            steps.push(StepDiff {
                step,
                a_calls: calls_a.iter().map(|c| c.name.clone()).collect(),
                b_calls: calls_b.iter().map(|c| c.name.clone()).collect(),
                calls,
                answers_differ,
            });
        }
    }
    let halt = (a.outcome.halt_reason != b.outcome.halt_reason)
        .then(|| (a.outcome.halt_reason.clone(), b.outcome.halt_reason.clone()));
    Divergence {
        task: a.task.clone(),
        a: side(a),
        b: side(b),
        same_behaviour: first.is_none() && halt.is_none(),
        first_divergent_step: first,
        steps,
        halt,
        prompts: prompt_diffs(a, b),
    }
}

fn side(trace: &Trace) -> Side {
    Side {
        arm: trace.arm.clone(),
        path: trace.arm_info.path.clone(),
        engine: trace.engine.clone(),
        model: trace.model.clone(),
        halt_reason: trace.outcome.halt_reason.clone(),
        steps_used: trace.outcome.steps_used,
        tool_calls_total: trace.outcome.tool_calls_total,
        wall_clock_s: trace.outcome.wall_clock_s,
    }
}

fn call_diffs(a: &[CallRecord], b: &[CallRecord]) -> Vec<CallDiff> {
    let mut diffs = Vec::new();
    for index in 0..a.len().max(b.len()) {
        let (ca, cb) = (a.get(index), b.get(index));
        let name = |c: Option<&CallRecord>| c.map(|c| c.name.clone());
        let kind = match (ca, cb) {
            (Some(_), None) => "only_a",
            (None, Some(_)) => "only_b",
            (Some(x), Some(y)) if x.name != y.name => "name",
            (Some(x), Some(y)) if !value_diffs(&x.arguments, &y.arguments).is_empty() => {
                "arguments"
            }
            _ => continue,
        };
        let arguments = match (ca, cb) {
            (Some(x), Some(y)) => value_diffs(&x.arguments, &y.arguments),
            _ => Vec::new(),
        };
        diffs.push(CallDiff {
            index,
            kind: kind.into(),
            a: name(ca),
            b: name(cb),
            arguments,
        });
    }
    diffs
}

/// Differences between two JSON values, by JSON Pointer. Objects compare by key (order ignored),
/// arrays by position, numbers by value.
pub fn value_diffs(a: &Value, b: &Value) -> Vec<ValueDiff> {
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<ValueDiff>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                let child = format!("{path}/{}", pointer_escape(key));
                match y.get(key) {
                    Some(other) => walk(value, other, child, out),
                    None => out.push(ValueDiff {
                        path: child,
                        a: Some(value.clone()),
                        b: None,
                    }),
                }
            }
            for (key, value) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                let child = format!("{path}/{}", pointer_escape(key));
                out.push(ValueDiff {
                    path: child,
                    a: None,
                    b: Some(value.clone()),
                });
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (index, (p, q)) in x.iter().zip(y).enumerate() {
                walk(p, q, format!("{path}/{index}"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(ValueDiff {
            path,
            a: Some(a.clone()),
            b: Some(b.clone()),
        }),
    }
}

fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn prompt_diffs(a: &Trace, b: &Trace) -> Vec<PromptDiff> {
    a.turns
        .iter()
        .zip(&b.turns)
        .filter_map(|(x, y)| {
            let diff = first_difference(x.prompt.as_deref()?, y.prompt.as_deref()?)?;
            Some(PromptDiff { step: x.step, diff })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::toolcall::arms::{ArmInfo, ForceTools, Sampling};
    use crate::quality::toolcall::episode::{Final, Turn};
    use serde_json::json;

    fn trace(arm: &str, steps: Vec<Vec<(&str, Value)>>, halt: &str, prompts: &[&str]) -> Trace {
        let turns = steps
            .into_iter()
            .enumerate()
            .map(|(i, calls)| Turn {
                step: i as u32 + 1,
                tool_call_count: calls.len(),
                tool_calls: calls
                    .into_iter()
                    .map(|(name, arguments)| CallRecord {
                        name: name.into(),
                        arguments,
                        result: json!({}),
                    })
                    .collect(),
                prompt: prompts.get(i).map(|p| p.to_string()),
                ..Turn::default()
            })
            .collect::<Vec<_>>();
        Trace {
            arm: arm.into(),
            model: "m".into(),
            engine: "llama-server".into(),
            task: "movies".into(),
            task_prompt: String::new(),
            arm_info: ArmInfo {
                name: arm.into(),
                path: arm.into(),
                engine: "llama-server".into(),
                url: String::new(),
                model: "m".into(),
                api: String::new(),
                format: None,
                template_sha256: None,
                force_tools: ForceTools::Never,
                sampling: Sampling::default(),
                prefill: None,
            },
            outcome: Final {
                halt_reason: halt.into(),
                steps_used: turns.len() as u32,
                ..Final::default()
            },
            turns,
        }
    }

    #[test]
    fn identical_behaviour_with_reordered_keys_and_int_vs_float() {
        let a = trace(
            "json",
            vec![vec![("f", json!({"x": 1, "y": "a"}))], vec![]],
            "no_tool_calls",
            &[],
        );
        let b = trace(
            "native",
            vec![vec![("f", json!({"y": "a", "x": 1.0}))], vec![]],
            "no_tool_calls",
            &[],
        );
        let report = compare(&a, &b);
        assert!(report.same_behaviour, "{report:?}");
        assert_eq!(report.first_divergent_step, None);
    }

    #[test]
    fn finds_the_first_divergent_step_and_argument_paths() {
        let a = trace(
            "json",
            vec![
                vec![("search", json!({"q": "dune"}))],
                vec![("book", json!({"id": "s-2", "seats": {"n": 2}}))],
                vec![],
            ],
            "no_tool_calls",
            &["p1", "p2 same", "p3"],
        );
        let b = trace(
            "native",
            vec![
                vec![("search", json!({"q": "dune"}))],
                vec![
                    ("book", json!({"id": "s-3", "seats": {"n": 2}, "vip": true})),
                    ("extra", json!({})),
                ],
            ],
            "step_budget",
            &["p1", "p2 diff"],
        );
        let report = compare(&a, &b);
        assert!(!report.same_behaviour);
        assert_eq!(report.first_divergent_step, Some(2));
        let step = &report.steps[0];
        assert_eq!(step.calls[0].kind, "arguments");
        assert_eq!(
            step.calls[0].arguments,
            vec![
                ValueDiff {
                    path: "/id".into(),
                    a: Some(json!("s-2")),
                    b: Some(json!("s-3"))
                },
                ValueDiff {
                    path: "/vip".into(),
                    a: None,
                    b: Some(json!(true))
                },
            ]
        );
        assert_eq!(step.calls[1].kind, "only_b");
        assert_eq!(report.steps[1].step, 3);
        assert_eq!(
            report.halt,
            Some(("no_tool_calls".into(), "step_budget".into()))
        );
        assert_eq!(report.prompts.len(), 1);
        assert_eq!(
            (report.prompts[0].step, report.prompts[0].diff.byte),
            (2, 3)
        );
    }
}
