//! The optimisation log rendered from stored journal entries: Markdown in the shape of a
//! hand-kept log (date, change, benchmark evidence, verdict per entry), or compact terminal text.

use super::escape::markdown_cell as cell;
use super::render::{Column, Table};
use crate::analysis::journal::{Evidence, EvidenceRow};
use crate::store::JournalEntry;
use std::fmt::Write;

const LEGEND: &str =
    "Verdicts: KEEP (applied permanently), REVERTED (tested: slower, or a fidelity gate failed), \
NO IMPACT (tested: within noise), PENDING (not yet tested), BLOCKED (can't test yet).";

fn evidence(entry: &JournalEntry) -> Option<Evidence> {
    serde_json::from_value(entry.evidence.clone()).ok()
}

/// `2026-03-26` from a stored timestamp.
fn date(timestamp: &str) -> &str {
    timestamp.get(..10).unwrap_or(timestamp)
}

/// `KEEP — faster: …`, saying when the verdict was set by hand and what was proposed.
fn verdict_line(entry: &JournalEntry, evidence: Option<&Evidence>) -> String {
    // Entries judged from other evidence than two runs (a tune's) keep their reason beside it.
    let reason = evidence
        .map(|e| e.reason.as_str())
        .or_else(|| entry.evidence["reason"].as_str())
        .unwrap_or_default();
    match (entry.verdict_by.as_str(), entry.proposed.as_deref()) {
        ("hand", Some(proposed)) if proposed == entry.verdict => {
            format!("{} (set by hand, as proposed) — {reason}", entry.verdict)
        }
        ("hand", Some(proposed)) => format!(
            "{} (set by hand; bakeoff proposed {proposed}: {reason})",
            entry.verdict
        ),
        ("hand", None) => entry.verdict.clone(),
        _ => format!("{} — {reason}", entry.verdict),
    }
}

fn ci(row: &EvidenceRow) -> String {
    format!("[{:.3}, {:.3}]", row.ci_low, row.ci_high)
}

/// Headline cells first (they decide the proposal), each group in measured order.
fn ordered(rows: &[EvidenceRow]) -> Vec<&EvidenceRow> {
    let mut out: Vec<&EvidenceRow> = rows.iter().filter(|r| r.headline).collect();
    out.extend(rows.iter().filter(|r| !r.headline));
    out
}

/// The compared cells of an entry, headline cells first.
fn result_table(rows: &[EvidenceRow]) -> Table {
    let mut table = Table::new(vec![
        Column::left("config", "config"),
        Column::right("test", "test"),
        Column::right("before", "before"),
        Column::right("after", "after"),
        Column::right("ratio", "after/before"),
        Column::right("ci", "95% CI"),
        Column::right("p_value", "p (Mann–Whitney)"),
        Column::left("verdict", "cell verdict"),
    ]);
    for r in ordered(rows) {
        let unit = &r.unit;
        table.push([
            r.config.clone(),
            format!("{}{}", r.test, if r.headline { "" } else { " ¹" }),
            format!("{:.2} {unit} (n={})", r.before_median, r.before_n),
            format!("{:.2} {unit} (n={})", r.after_median, r.after_n),
            format!("{:.3} ({:+.1}%)", r.ratio, (r.ratio - 1.0) * 100.0),
            ci(r),
            format!("{:.4}", r.p_value),
            r.verdict.clone(),
        ]);
    }
    table
}

/// The whole log as Markdown; every stored text (titles, changes, notes, run tags, flags) goes
/// through the one Markdown escaping rule.
pub fn markdown(entries: &[JournalEntry]) -> String {
    let mut out = format!("# Optimization Log\n\n{LEGEND}\n");
    for entry in entries {
        out.push_str("\n---\n\n");
        out.push_str(&markdown_entry(entry));
    }
    if entries.is_empty() {
        out.push_str("\nNo entries yet: `bakeoff journal add TITLE --change ... --before RUN --after RUN`.\n");
    }
    out
}

fn markdown_entry(entry: &JournalEntry) -> String {
    let evidence = evidence(entry);
    let mut out = format!("## {}. {}\n\n", entry.id, cell(&entry.title));
    let _ = writeln!(out, "- **Date:** {}", date(&entry.created_at));
    if !entry.change.is_empty() {
        let _ = writeln!(out, "- **Change:** {}", cell(&entry.change));
    }
    if let Some(e) = &evidence {
        let runs = format!("{} → {}", e.before.label(), e.after.label());
        let _ = writeln!(out, "- **Benchmark:** {}", cell(&runs));
        out.push_str(&markdown_result(e));
    }
    if let Some(note) = &entry.note {
        let _ = writeln!(out, "- **Notes:** {}", cell(note));
    }
    let _ = writeln!(
        out,
        "- **Verdict:** {}",
        cell(&verdict_line(entry, evidence.as_ref()))
    );
    out
}

fn markdown_result(e: &Evidence) -> String {
    let mut out = String::new();
    if !e.rows.is_empty() {
        let result = format!(
            "headline metric: {}; cells matched by {}",
            e.headline.as_deref().unwrap_or("-"),
            e.matched_by
        );
        let _ = writeln!(out, "- **Result** ({}):\n", cell(&result));
        // Indented under the list item it belongs to.
        for line in result_table(&e.rows).markdown().lines() {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
        if e.rows.iter().any(|r| !r.headline) {
            out.push_str("  ¹ not the headline metric: shown, not used for the verdict.\n");
        }
        if e.rows.iter().any(|r| r.verdict.ends_with('*')) {
            out.push_str("  \\* too few repetitions for a Mann–Whitney test to reach p < 0.05; cell verdict from the 95 % CI alone.\n");
        }
        if out.ends_with(".\n") {
            out.push('\n');
        }
    }
    for u in &e.unmatched {
        let _ = writeln!(out, "- **Not compared:** {}", cell(u));
    }
    if !e.differences.is_empty() {
        let list: Vec<String> = e
            .differences
            .iter()
            .map(|d| format!("{}: {} → {}", d.what, d.before, d.after))
            .collect();
        let _ = writeln!(out, "- **What differs:** {}", cell(&list.join("; ")));
    }
    if !e.gates.is_empty() {
        let list: Vec<String> = e
            .gates
            .iter()
            .map(|g| format!("{} ({}): {}", g.name, g.candidate, g.status))
            .collect();
        let _ = writeln!(out, "- **Fidelity gates:** {}", cell(&list.join(", ")));
    }
    out
}

/// The log as compact text for a terminal.
pub fn text(entries: &[JournalEntry]) -> String {
    let mut out = String::new();
    for entry in entries {
        let evidence = evidence(entry);
        let _ = writeln!(
            out,
            "#{:<3} {}  {:<9}  {}",
            entry.id,
            date(&entry.created_at),
            entry.verdict,
            entry.title
        );
        if !entry.change.is_empty() {
            let _ = writeln!(out, "     change   {}", entry.change);
        }
        if let Some(e) = &evidence {
            let _ = writeln!(
                out,
                "     runs     {} → {}",
                e.before.label(),
                e.after.label()
            );
            for r in ordered(&e.rows) {
                let _ = writeln!(
                    out,
                    "     {:<8} {}  {:.2} → {:.2} {}  ×{:.3} {}  p={:.4}  {}{}",
                    r.test,
                    r.config,
                    r.before_median,
                    r.after_median,
                    r.unit,
                    r.ratio,
                    ci(r),
                    r.p_value,
                    r.verdict,
                    if r.headline { "" } else { "  (not headline)" }
                );
            }
            for d in &e.differences {
                let _ = writeln!(out, "     differs  {}: {} → {}", d.what, d.before, d.after);
            }
            for g in &e.gates {
                let _ = writeln!(
                    out,
                    "     gate     {} ({}): {}",
                    g.name, g.candidate, g.status
                );
            }
        }
        if let Some(note) = &entry.note {
            let _ = writeln!(out, "     note     {note}");
        }
        let _ = writeln!(
            out,
            "     verdict  {}\n",
            verdict_line(entry, evidence.as_ref())
        );
    }
    out
}
