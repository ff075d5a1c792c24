//! `bakeoff tune --dry-run` as tables: the space (each knob, its values, why), what pruning
//! excluded and why (counts, examples, memory margins), and the planned cost.

use super::render::{Cell, Table};
use super::table::Format;
use crate::domain::units::human_bytes;
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
