//! Text output of `bakeoff tools`: episode summaries, divergence reports, single-turn scores and
//! rendering comparisons (stdout; `--json` prints the same data as JSON instead).

use bakeoff::quality::toolcall::bfcl::{self, ItemResult};
use bakeoff::quality::toolcall::diverge::{CallDiff, Divergence, StepDiff};
use bakeoff::quality::toolcall::render::RenderComparison;
use bakeoff::quality::toolcall::textdiff::TextDiff;
use bakeoff::quality::toolcall::Trace;

pub fn episodes(traces: &[Trace]) {
    println!(
        "{:<10} {:<10} {:<16} {:>5} {:>10} {:>8}  ENGINE",
        "TASK", "ARM", "HALT", "STEPS", "TOOL CALLS", "WALL S"
    );
    for t in traces {
        println!(
            "{:<10} {:<10} {:<16} {:>5} {:>10} {:>8.2}  {} {}",
            t.task,
            t.arm,
            t.outcome.halt_reason,
            t.outcome.steps_used,
            t.outcome.tool_calls_total,
            t.outcome.wall_clock_s,
            t.engine,
            t.arm_info.api
        );
    }
}

pub fn divergence(report: &Divergence) {
    let (a, b) = (&report.a.arm, &report.b.arm);
    println!("{}: {a} vs {b}: {}", report.task, verdict(report));
    report.steps.iter().for_each(step);
    if let Some((ha, hb)) = &report.halt {
        println!("  halt: {ha} vs {hb}");
    }
    for prompt in &report.prompts {
        println!("  step {} prompt: {}", prompt.step, text_diff(&prompt.diff));
    }
}

fn verdict(report: &Divergence) -> String {
    let a = &report.a;
    match (report.same_behaviour, report.first_divergent_step) {
        (true, _) => format!(
            "same behaviour ({} steps, {} tool calls, halt {})",
            a.steps_used, a.tool_calls_total, a.halt_reason
        ),
        (false, Some(step)) => format!("diverge at step {step}"),
        (false, None) => "same calls, different halt".into(),
    }
}

fn step(step: &StepDiff) {
    step.calls.iter().for_each(|c| call(step.step, c));
    if step.answers_differ {
        println!("  step {}: both answered, in different words", step.step);
    } else if step.calls.is_empty() {
        let neither_called = step.a_calls.is_empty() && step.b_calls.is_empty();
        let who = match neither_called {
            true => "only one arm reached it",
            false => "calls differ",
        };
        println!("  step {}: {who}", step.step);
    }
}

fn call(step: u32, call: &CallDiff) {
    let (a, b) = (call.a.as_deref(), call.b.as_deref());
    let names = format!("{} / {}", a.unwrap_or("-"), b.unwrap_or("-"));
    println!("  step {step} call {}: {} ({names})", call.index, call.kind);
    for value in &call.arguments {
        let show = |v: &Option<serde_json::Value>| {
            v.as_ref().map_or("(absent)".to_string(), |v| v.to_string())
        };
        let path = if value.path.is_empty() {
            "/"
        } else {
            &value.path
        };
        println!("    {path}: {} vs {}", show(&value.a), show(&value.b));
    }
}

pub fn text_diff(diff: &TextDiff) -> String {
    format!(
        "first difference at byte {} (line {}, column {})\n      a: {}\n      b: {}",
        diff.byte, diff.line, diff.column, diff.a_context, diff.b_context
    )
}

pub fn bfcl_results(results: &[ItemResult]) {
    println!(
        "{:<22} {:<12} {:<10} {:<6} DETAIL",
        "ITEM", "CATEGORY", "ARM", "PASS"
    );
    for r in results {
        let detail = r.verdict.error_type.clone().unwrap_or_else(|| {
            r.calls
                .iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "{:<22} {:<12} {:<10} {:<6} {detail}",
            r.id,
            r.category,
            r.arm,
            if r.verdict.valid { "yes" } else { "no" }
        );
    }
    let mut arms: Vec<&str> = results.iter().map(|r| r.arm.as_str()).collect();
    arms.dedup();
    for arm in arms {
        let own: Vec<ItemResult> = results.iter().filter(|r| r.arm == arm).cloned().collect();
        let parts: Vec<String> = bfcl::summary(&own)
            .iter()
            .map(|(category, (passed, total))| format!("{category} {passed}/{total}"))
            .collect();
        println!("{arm}: {}", parts.join(", "));
    }
}

pub fn renderings(results: &[RenderComparison]) {
    for r in results {
        match (&r.error, &r.diff) {
            (Some(error), _) => println!("{:<20} error: {error}", r.case),
            (None, None) => println!(
                "{:<20} identical ({} chars)",
                r.case,
                r.ours_chars.unwrap_or(0)
            ),
            (None, Some(diff)) => println!(
                "{:<20} differ (bakeoff {} chars, engine {} chars): {}",
                r.case,
                r.ours_chars.unwrap_or(0),
                r.engine_chars.unwrap_or(0),
                text_diff(diff)
            ),
        }
    }
}
