//! `bakeoff tune --dry-run` as tables: the space (each knob, its values, why), what pruning
//! excluded and why (counts, examples, memory margins), and the planned cost.

use super::render::{Cell, Table};
use super::table::Format;
use crate::domain::units::human_bytes;
use crate::search::answer::{Answer, Finalist};
use crate::search::prune::{Fit, Pruned};
use crate::search::space::{Knob, KnobKind, Space};
use crate::search::{minutes, Cost, DryRun};

/// The dry run in `format`: Markdown tables one after another; JSON one object of three lists
/// (`space`, `pruned`, `plan`); CSV and JSONL the three tables in turn.
pub fn render(dry: &DryRun, format: Format) -> String {
    let tables = [
        space_table(&dry.space),
        pruned_table(&dry.space, &dry.pruned),
        cost_table(dry),
    ];
    match format {
        Format::Json => {
            let [space, pruned, plan] = tables.map(|t| serde_json::Value::Array(t.json_rows()));
            let object = serde_json::json!({ "space": space, "pruned": pruned, "plan": plan });
            serde_json::to_string_pretty(&object).unwrap_or_default() + "\n"
        }
        Format::Markdown => tables.map(|t| t.markdown()).join("\n"),
        _ => tables.map(|t| t.render(format)).join(""),
    }
}

/// One row per knob.
pub fn space_table(space: &Space) -> Table {
    let mut table = Table::from_titles(&["knob", "flags", "count#", "kind", "values", "why"])
        .caption(format!(
            "search space: {} configurations before pruning",
            space.size()
        ));
    for knob in &space.knobs {
        table.push(knob_row(knob));
    }
    table
}

fn knob_row(knob: &Knob) -> Vec<Cell> {
    let labels: Vec<&str> = knob.values.iter().map(|s| s.label.as_str()).collect();
    let kind = match knob.kind {
        KnobKind::Ordinal => "ordinal",
        KnobKind::Categorical => "categorical",
    };
    vec![
        knob.name.as_str().into(),
        knob.flags.join(" ").into(),
        Cell::new(knob.values.len().to_string(), knob.values.len()),
        kind.into(),
        Cell::new(labels.join(", "), labels),
        knob.why.as_str().into(),
    ]
}

/// Exclusions with their counts and an example, knobs left out, and the memory margins.
pub fn pruned_table(space: &Space, pruned: &Pruned) -> Table {
    let caption = format!(
        "pruned: {} of {} configurations excluded before measuring (memory budget {} at ctx {})",
        pruned.total - pruned.kept,
        pruned.total,
        human_bytes(pruned.budget),
        pruned.ctx
    );
    let mut table =
        Table::from_titles(&["kind", "reason", "configurations#", "example"]).caption(caption);
    for e in &pruned.exclusions {
        let count = Cell::new(
            e.count.to_string(),
            u64::try_from(e.count).unwrap_or(u64::MAX),
        );
        table.push([
            e.kind.as_str().into(),
            e.reason.as_str().into(),
            count,
            e.example.as_str().into(),
        ]);
    }
    for (knob, why) in &space.left_out {
        table.push([
            "left out".into(),
            why.as_str().into(),
            Cell::new("-", 0),
            knob.as_str().into(),
        ]);
    }
    let fits = [
        ("tightest fit", &pruned.tightest),
        ("most room", &pruned.roomiest),
    ];
    for (kind, fit) in fits {
        if let Some(fit) = fit {
            table.push(fit_row(kind, fit));
        }
    }
    table
}

fn fit_row(kind: &str, fit: &Fit) -> Vec<Cell> {
    let margin = fit.margin();
    vec![
        kind.into(),
        format!("kept: margin {}", human_bytes(margin.max(0) as u64)).into(),
        Cell::new("-", 0),
        fit.describe().into(),
    ]
}

/// Configurations after pruning, engine starts and wall time.
pub fn cost_table(dry: &DryRun) -> Table {
    let cost: &Cost = &dry.cost;
    let mut table = Table::from_titles(&["item", "value"]).caption("planned cost");
    let rows = [
        ("context", dry.pruned.ctx.to_string()),
        ("memory budget", human_bytes(dry.pruned.budget)),
        (
            "configurations after pruning",
            cost.configurations.to_string(),
        ),
        ("limit", cost.limit.clone()),
        ("engine starts (at most)", cost.engine_starts.to_string()),
        ("planned wall time", minutes(cost.wall)),
        (
            "exhaustive wall time (every configuration once)",
            minutes(cost.exhaustive),
        ),
        ("estimate per trial", minutes(crate::search::TRIAL_ESTIMATE)),
    ];
    for (item, value) in rows {
        table.push([item, value.as_str()]);
    }
    table
}

/// A tune's answer in `format`. Markdown: the verdict in words (winner with its CI, the speed-up
/// over the engine's defaults, the fastest overall and why it lost, the smallest faithful), the
/// finalists table, the knob contributions and the search's cost. JSON: the whole answer.
pub fn answer(answer: &Answer, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(answer).unwrap_or_default() + "\n",
        Format::Markdown => {
            let mut out = summary_lines(answer).join("\n") + "\n\n";
            out.push_str(&finalists_table(answer).markdown());
            if !answer.contributions.is_empty() {
                out.push('\n');
                out.push_str(&contributions_table(answer).markdown());
            }
            out
        }
        _ => finalists_table(answer).render(format),
    }
}

fn speed(f: &Finalist) -> String {
    format!(
        "{:.2} t/s [{:.2}, {:.2}] (n={})",
        f.median, f.ci_low, f.ci_high, f.n
    )
}

/// The answer in sentences.
pub fn summary_lines(answer: &Answer) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "goal {} at ctx {}: {}",
        answer.goal, answer.ctx, answer.score
    ));
    match &answer.winner {
        Some(w) => lines.push(format!(
            "winner (fastest faithful): {}: {}",
            w.label,
            speed(w)
        )),
        None => lines
            .push("winner: none: no configuration measured passed the fidelity gate".to_string()),
    }
    if let (Some(d), Some(pct)) = (&answer.defaults, answer.speedup_over_defaults_pct) {
        lines.push(format!(
            "speed-up over the engine's defaults ({}): {pct:+.1} %",
            speed(d)
        ));
    }
    if let Some(f) = &answer.fastest {
        let lost = answer.fastest_lost.as_deref();
        match lost {
            Some(why) => lines.push(format!(
                "fastest overall: {}: {}; lost: {why}",
                f.label,
                speed(f)
            )),
            None => lines.push("fastest overall: the winner".to_string()),
        }
    }
    if let Some(s) = &answer.smallest {
        let memory = s.memory_bytes.map(human_bytes).unwrap_or_default();
        lines.push(format!(
            "smallest-memory faithful: {}: {memory}, {}",
            s.label,
            speed(s)
        ));
    }
    lines.push(format!("fidelity reference: {}", answer.reference));
    lines.push(format!(
        "search: {} candidates, {} measured, {} trials, {} engine starts, {} gated, {} rounds, {:.0} s; stopped: {}",
        answer.configurations,
        answer.points.len(),
        answer.trials,
        answer.engine_starts,
        answer.gated,
        answer.rounds,
        answer.wall_s,
        answer.stop
    ));
    lines
}

/// Every measured configuration, fastest first: speed with CI, memory, fidelity.
pub fn finalists_table(answer: &Answer) -> Table {
    let mut table = Table::from_titles(&[
        "configuration",
        "median t/s#",
        "95% CI",
        "n#",
        "memory",
        "fidelity",
        "note",
    ])
    .caption(format!("measured configurations ({})", answer.score));
    let winner = answer.winner.as_ref().map(|w| w.config_hash.as_str());
    for point in &answer.points {
        let label = match Some(point.config_hash.as_str()) == winner {
            true => format!("**{}** (winner)", point.label),
            false => point.label.clone(),
        };
        let memory = point.memory_bytes.map(human_bytes).unwrap_or_default();
        table.push([
            Cell::from(label),
            Cell::new(format!("{:.2}", point.median), point.median),
            format!("[{:.2}, {:.2}]", point.ci_low, point.ci_high).into(),
            Cell::new(point.n.to_string(), point.n),
            Cell::new(memory, point.memory_bytes.unwrap_or(0)),
            point.fidelity.as_str().into(),
            point.fidelity_note.clone().unwrap_or_default().into(),
        ]);
    }
    table
}

/// What each of the winner's knobs is worth.
pub fn contributions_table(answer: &Answer) -> Table {
    let mut table = Table::from_titles(&["knob", "winner", "vs", "speed %#", "memory %#"])
        .caption("what each of the winner's knobs contributes (against the measured configuration differing there alone)");
    for c in &answer.contributions {
        let memory = c.memory_pct.map_or(String::new(), |m| format!("{m:+.1}"));
        table.push([
            Cell::from(c.knob.as_str()),
            c.winner_value.as_str().into(),
            c.other_value.as_str().into(),
            Cell::new(format!("{:+.1}", c.speed_pct), c.speed_pct),
            Cell::new(memory, c.memory_pct.unwrap_or(0.0)),
        ]);
    }
    table
}
