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
        (
            "engine starts (rough: one per estimate per trial)",
            cost.engine_starts.to_string(),
        ),
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

/// A finalist's score with its CI, in the goal's unit, then its energy where it was measured.
fn speed(answer: &Answer, f: &Finalist) -> String {
    let unit = score_unit(answer);
    let mut text = format!(
        "{:.2} {unit} [{:.2}, {:.2}] (n={})",
        f.median, f.ci_low, f.ci_high, f.n
    );
    if answer.goal != "tokens-per-joule" {
        if let Some(tpj) = f.tokens_per_j {
            text.push_str(&format!(", {tpj:.2} tok/J"));
        }
    }
    if let Some(w) = f.watts {
        text.push_str(&format!(" at {w:.0} W"));
    }
    text
}

/// What the score counts: t/s, or tok/J for goal tokens-per-joule, tok/s or req/s under load.
fn score_unit(answer: &Answer) -> &'static str {
    match answer.goal.as_str() {
        "tokens-per-joule" => "tok/J",
        "load" if answer.score.starts_with("goodput") => "req/s",
        "load" => "tok/s",
        _ => "t/s",
    }
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
            speed(answer, w)
        )),
        None => lines
            .push("winner: none: no configuration measured passed the fidelity gate".to_string()),
    }
    if let (Some(d), Some(pct)) = (&answer.defaults, answer.speedup_over_defaults_pct) {
        let basis = match &answer.beside_defaults {
            Some(w) => format!(
                "{} against the winner's {}, interleaved",
                speed(answer, d),
                speed(answer, w)
            ),
            None => speed(answer, d),
        };
        lines.push(format!(
            "speed-up over the engine's defaults ({basis}): {pct:+.1} %"
        ));
    }
    if let Some(f) = &answer.fastest {
        let lost = answer.fastest_lost.as_deref();
        match lost {
            Some(why) => lines.push(format!(
                "fastest overall: {}: {}; lost: {why}",
                f.label,
                speed(answer, f)
            )),
            None => lines.push("fastest overall: the winner".to_string()),
        }
    }
    if let Some(s) = &answer.smallest {
        let memory = s.memory_bytes.map(human_bytes).unwrap_or_default();
        lines.push(format!(
            "smallest-memory faithful: {}: {memory}, {}",
            s.label,
            speed(answer, s)
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
    let median = format!("median {}#", score_unit(answer));
    let energy = (answer.points.iter()).any(|p| p.tokens_per_j.is_some() || p.watts.is_some());
    let mut titles = vec![
        "configuration",
        &median,
        "95% CI",
        "n#",
        "memory",
        "fidelity",
        "note",
    ];
    if energy {
        titles.splice(4..4, ["tok/J#", "W#"]);
    }
    let mut table =
        Table::from_titles(&titles).caption(format!("measured configurations ({})", answer.score));
    let winner = answer.winner.as_ref().map(|w| w.config_hash.as_str());
    for point in &answer.points {
        let label = match Some(point.config_hash.as_str()) == winner {
            true => format!("**{}** (winner)", point.label),
            false => point.label.clone(),
        };
        let memory = point.memory_bytes.map(human_bytes).unwrap_or_default();
        let mut row = vec![
            Cell::from(label),
            Cell::new(format!("{:.2}", point.median), point.median),
            format!("[{:.2}, {:.2}]", point.ci_low, point.ci_high).into(),
            Cell::new(point.n.to_string(), point.n),
            Cell::new(memory, point.memory_bytes.unwrap_or(0)),
            point.fidelity.as_str().into(),
            point.fidelity_note.clone().unwrap_or_default().into(),
        ];
        if energy {
            let figure = |v: Option<f64>, digits: usize| match v {
                Some(v) => Cell::new(format!("{v:.digits$}"), v),
                None => Cell::from("-"),
            };
            row.splice(
                4..4,
                [figure(point.tokens_per_j, 2), figure(point.watts, 0)],
            );
        }
        table.push(row);
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

/// A tune run as `bakeoff report` shows it: its answer and every decision of its race.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TuneReport {
    pub run_id: i64,
    /// `None` when the run stopped before it had one (or it no longer parses).
    pub answer: Option<Answer>,
    pub decisions: Vec<crate::store::TuneDecision>,
}

/// The stored answer and decisions of tune run `run_id`.
pub fn gather(store: &crate::store::Store, run_id: i64) -> crate::Result<TuneReport> {
    let answer = store
        .tune_answer(run_id)?
        .and_then(|json| serde_json::from_value(json).ok());
    Ok(TuneReport {
        run_id,
        answer,
        decisions: store.tune_decisions(run_id)?,
    })
}

/// Which points are on the pareto front of speed against memory: faithful (`pass`) points with a
/// planned memory that no other such point dominates (at least as fast and at least as small,
/// and better in one). Failed and unchecked points are never on it: the front is what may be
/// served.
pub fn pareto_front(points: &[Finalist]) -> Vec<bool> {
    let eligible = |p: &Finalist| p.fidelity == "pass" && p.memory_bytes.is_some();
    let dominates = |a: &Finalist, b: &Finalist| {
        let (fast, small) = (a.median >= b.median, a.memory_bytes <= b.memory_bytes);
        fast && small && (a.median > b.median || a.memory_bytes < b.memory_bytes)
    };
    points
        .iter()
        .map(|p| eligible(p) && !points.iter().any(|q| eligible(q) && dominates(q, p)))
        .collect()
}

/// Every decision of the race in the order it was made.
pub fn decisions_table(decisions: &[crate::store::TuneDecision]) -> Table {
    let mut table = Table::from_titles(&["round#", "candidate", "action", "against", "why"])
        .caption("decisions of the race, in the order they were made");
    for d in decisions {
        table.push([
            Cell::new((d.round + 1).to_string(), d.round + 1),
            d.candidate.as_str().into(),
            d.action.as_str().into(),
            d.reference.clone().unwrap_or_default().into(),
            d.why.as_str().into(),
        ]);
    }
    table
}

/// Speed × memory × fidelity of every measured point, numbered as in the finalists table.
pub fn pareto_chart(run_id: i64, answer: &Answer) -> super::svg::ParetoChart {
    use super::svg::{Fidelity, ParetoMark};
    let front = pareto_front(&answer.points);
    let winner = answer.winner.as_ref().map(|w| w.config_hash.as_str());
    let points = (answer.points.iter().zip(&front).enumerate())
        .filter_map(|(i, (p, &on_front))| {
            let memory = p.memory_bytes? as f64 / (1024.0 * 1024.0);
            Some(ParetoMark {
                label: (i + 1).to_string(),
                name: format!(
                    "{}: {}: {}, {}",
                    i + 1,
                    p.label,
                    speed(answer, p),
                    p.fidelity
                ),
                x: memory,
                y: p.median,
                low: p.ci_low,
                high: p.ci_high,
                fidelity: Fidelity::parse(&p.fidelity),
                front: on_front,
                winner: Some(p.config_hash.as_str()) == winner,
            })
        })
        .collect();
    super::svg::ParetoChart {
        id: format!("tune-pareto-{run_id}"),
        title: format!("run {run_id}: speed, memory and fidelity"),
        x_label: "planned memory (MiB): weights + KV + compute".into(),
        y_label: format!("median {} t/s", answer.goal),
        points,
    }
}

/// The report's tune section: per tune run, the answer in sentences, the pareto chart, the
/// finalists, contributions and decisions. `None` when the report holds no tune run.
pub fn section(data: &super::data::ReportData) -> Option<super::document::Section> {
    use super::document::Block;
    if data.tunes.is_empty() {
        return None;
    }
    let mut blocks = Vec::new();
    for tune in &data.tunes {
        blocks.push(Block::Text(format!("tune run {}", tune.run_id)));
        match &tune.answer {
            Some(answer) => blocks.extend(answer_blocks(tune.run_id, answer)),
            None => blocks.push(Block::Text(
                "no answer stored: the tune stopped before it had one (resume it with `bakeoff tune --resume RUN`)".into(),
            )),
        }
        blocks.push(Block::Table(decisions_table(&tune.decisions)));
    }
    Some(super::document::Section {
        id: "tune",
        title: "Tune: the fastest faithful configuration",
        blocks,
    })
}

fn answer_blocks(run_id: i64, answer: &Answer) -> Vec<super::document::Block> {
    use super::document::Block;
    let mut blocks: Vec<Block> = summary_lines(answer).into_iter().map(Block::Text).collect();
    blocks.push(Block::Text(front_line(answer)));
    blocks.push(Block::Chart {
        chart: super::svg::Chart::Pareto(pareto_chart(run_id, answer)),
        tabulated: true,
    });
    blocks.push(Block::Table(finalists_table(answer)));
    if !answer.contributions.is_empty() {
        blocks.push(Block::Table(contributions_table(answer)));
    }
    blocks
}

/// The front in words (the chart's line), and the points the chart cannot place.
fn front_line(answer: &Answer) -> String {
    let front = pareto_front(&answer.points);
    let on: Vec<String> = (answer.points.iter().zip(&front).enumerate())
        .filter(|(_, (_, &f))| f)
        .map(|(i, (p, _))| format!("{} ({})", i + 1, p.label))
        .collect();
    let mut line = match on.is_empty() {
        true => "pareto front: empty (no faithful point with a planned memory)".to_string(),
        false => format!(
            "pareto front (faithful; none of them both faster and smaller than another faithful point), by row of the table: {}",
            on.join(", ")
        ),
    };
    let unplaced = answer
        .points
        .iter()
        .filter(|p| p.memory_bytes.is_none())
        .count();
    if unplaced > 0 {
        line.push_str(&format!(
            "; {unplaced} point(s) without a planned memory are in the table only"
        ));
    }
    line
}

#[cfg(test)]
mod save_tests {
    use super::*;
    use crate::domain::EngineConfig;
    use crate::serve::tuned::tests::{answer, finalist};

    fn point(label: &str, median: f64, mib: u64, fidelity: &str) -> Finalist {
        let config = EngineConfig::default().with_flag("-b", label);
        Finalist {
            memory_bytes: Some(mib << 20),
            fidelity: fidelity.into(),
            ..finalist(label, median, &config)
        }
    }

    #[test]
    fn the_front_holds_the_faithful_points_nothing_beats_on_both() {
        let points = vec![
            point("a", 100.0, 120, "pass"), // fastest faithful
            point("b", 90.0, 100, "pass"),  // smaller: on the front
            point("c", 80.0, 110, "pass"),  // b is faster and smaller
            point("d", 95.0, 120, "pass"),  // a is as small and faster
            point("e", 200.0, 50, "fail"),  // dominates all, but unfaithful
            point("f", 150.0, 90, "unchecked"),
            point("g", 100.0, 120, "pass"), // a's twin: neither dominates
            Finalist {
                memory_bytes: None,
                ..point("h", 300.0, 1, "pass")
            },
        ];
        let front = pareto_front(&points);
        assert_eq!(front, [true, true, false, false, false, false, true, false]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn the_section_has_the_sentences_chart_and_tables_of_each_tune() {
        let winner = point("a", 100.0, 120, "pass");
        let mut tuned = answer(vec![winner.clone(), point("<script>", 90.0, 100, "fail")]);
        tuned.winner = Some(winner);
        let decision = crate::store::TuneDecision {
            round: 0,
            config_hash: "abc".into(),
            candidate: "-b a".into(),
            action: "winner".into(),
            reference: None,
            why: "separated".into(),
        };
        let data = super::super::data::ReportData {
            tunes: vec![TuneReport {
                run_id: 7,
                answer: Some(tuned),
                decisions: vec![decision],
            }],
            ..Default::default()
        };
        let doc = super::super::document::build(&data);
        let html = super::super::html::render(&doc);
        assert!(html.contains("<section id=\"tune\">"), "{html}");
        assert!(html.contains("id=\"tune-pareto-7\" data-kind=\"pareto\" data-marks=\"2\""));
        assert!(html.contains("winner (fastest faithful): a: 100.00 t/s"));
        assert!(html.contains("pareto front (faithful"));
        assert!(!html.contains("<script>"), "model-derived text is escaped");
        let md = super::super::markdown::render(&doc);
        assert!(md.contains("## Tune: the fastest faithful configuration"));
        assert!(md.contains("| 1 | -b a | winner |  | separated |"), "{md}");
        assert!(!md.contains("<svg"));
    }
}
