//! `bakeoff journal add|show|set`: the optimisation log, each entry judged from two stored runs
//! with `bakeoff compare`'s statistics (or given a verdict by hand).

use crate::cli::{Global, JournalCommand};
use crate::cli_values::JournalFormat;
use crate::printer::Printer;
use bakeoff::analysis::journal::{self, Evidence, GateSource, Verdict};
use bakeoff::report::journal as render;
use bakeoff::store::{JournalEntry, Store};
use bakeoff::Error;
use std::process::ExitCode;

pub fn run(global: &Global, command: JournalCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = match command {
        JournalCommand::Show { .. } => super::open_existing_store(global)?,
        _ => super::open_store(global)?,
    };
    match command {
        JournalCommand::Add {
            title,
            change,
            before,
            after,
            gate,
            verdict,
            note,
            output,
        } => {
            let runs = Runs {
                before: before.as_deref(),
                after: after.as_deref(),
                gates: &gate,
            };
            let id = add(
                &store,
                title,
                change,
                note,
                &runs,
                verdict.map(Verdict::from),
                printer,
            )?;
            print_entry(&store, id, output.wants_json())
        }
        JournalCommand::Show {
            ids,
            format,
            md,
            json,
        } => show(
            &store,
            &ids,
            JournalFormat::resolve(format, md, json),
            printer,
        ),
        JournalCommand::Set {
            id,
            verdict,
            note,
            before,
            after,
            gate,
            output,
        } => {
            let runs = Runs {
                before: before.as_deref(),
                after: after.as_deref(),
                gates: &gate,
            };
            set(&store, id, note, &runs, verdict.map(Verdict::from), printer)?;
            print_entry(&store, id, output.wants_json())
        }
    }
}

/// The runs an entry is judged from, as the user named them.
struct Runs<'a> {
    before: Option<&'a str>,
    after: Option<&'a str>,
    gates: &'a [String],
}

fn add(
    store: &Store,
    title: String,
    change: String,
    note: Option<String>,
    runs: &Runs,
    verdict: Option<Verdict>,
    printer: Printer,
) -> anyhow::Result<i64> {
    let evidence = judge(store, runs, printer)?;
    let entry = JournalEntry {
        id: 0,
        title,
        change,
        before_run: evidence.as_ref().map(|e| e.before.id),
        after_run: evidence.as_ref().map(|e| e.after.id),
        verdict: String::new(),
        proposed: None,
        verdict_by: String::new(),
        evidence: serde_json::json!({}),
        note,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let entry = decide(entry, evidence, verdict, printer)?;
    Ok(store.add_journal_entry(&entry)?)
}

fn show(
    store: &Store,
    ids: &[i64],
    format: JournalFormat,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    let entries = match ids {
        [] => store.journal_entries()?,
        ids => ids
            .iter()
            .map(|&id| store.journal_entry(id))
            .collect::<bakeoff::Result<_>>()?,
    };
    if format == JournalFormat::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if format == JournalFormat::Md {
        print!("{}", render::markdown(&entries));
    } else if entries.is_empty() {
        printer.status(format!(
            "no journal entries in {}; `bakeoff journal add --help` shows how to add one",
            store.path().display()
        ));
    } else {
        print!("{}", render::text(&entries));
    }
    Ok(ExitCode::SUCCESS)
}

fn set(
    store: &Store,
    id: i64,
    note: Option<String>,
    runs: &Runs,
    verdict: Option<Verdict>,
    printer: Printer,
) -> anyhow::Result<()> {
    if verdict.is_none() && note.is_none() && runs.before.is_none() {
        return Err(Error::input(format!("journal set {id}: nothing to change"))
            .with_hint("pass --verdict, --note, or --before RUN --after RUN")
            .into());
    }
    let mut entry = store.journal_entry(id)?;
    if note.is_some() {
        entry.note = note;
    }
    if runs.before.is_some() || verdict.is_some() {
        entry = rejudge(store, entry, runs, verdict, printer)?;
    }
    Ok(store.update_journal_entry(&entry)?)
}

/// Judge again from the runs given, else from the evidence the entry already holds.
fn rejudge(
    store: &Store,
    mut entry: JournalEntry,
    runs: &Runs,
    verdict: Option<Verdict>,
    printer: Printer,
) -> anyhow::Result<JournalEntry> {
    let stored = || serde_json::from_value(entry.evidence.clone()).ok();
    let evidence = judge(store, runs, printer)?.or_else(stored);
    if let (None, Some(verdict)) = (&evidence, verdict) {
        // Evidence of another shape (a tune's answer) stays with its entry and its run.
        entry.verdict = verdict.as_str().to_string();
        entry.verdict_by = "hand".to_string();
        return Ok(entry);
    }
    entry.before_run = evidence.as_ref().map(|e| e.before.id);
    entry.after_run = evidence.as_ref().map(|e| e.after.id);
    decide(entry, evidence, verdict, printer)
}

/// The evidence of `before` → `after`, when both are given.
fn judge(store: &Store, runs: &Runs, printer: Printer) -> anyhow::Result<Option<Evidence>> {
    let gates = runs.gates;
    let (Some(before), Some(after)) = (runs.before, runs.after) else {
        return Ok(None);
    };
    let (before, after) = (store.resolve_run(before)?, store.resolve_run(after)?);
    let sources = gates
        .iter()
        .map(|g| {
            super::resolve_run_and_suffix(store, g)
                .map(|(run, candidate)| GateSource { run, candidate })
        })
        .collect::<bakeoff::Result<Vec<_>>>()?;
    let evidence = journal::gather(store, before, after, &sources)?;
    for run in [&evidence.before, &evidence.after] {
        if run.status != "ok" {
            printer.warn(format!(
                "{} ended '{}': its evidence may be incomplete",
                run.label(),
                run.status
            ));
        }
    }
    Ok(Some(evidence))
}

/// Set the entry's verdict: the one given by hand, else the proposal (an error when there is none).
fn decide(
    mut entry: JournalEntry,
    evidence: Option<Evidence>,
    by_hand: Option<Verdict>,
    printer: Printer,
) -> anyhow::Result<JournalEntry> {
    let proposed = evidence.as_ref().and_then(|e| e.proposed);
    let verdict = by_hand
        .or(proposed)
        .ok_or_else(|| nothing_to_judge(evidence.as_ref()))?;
    if let (Some(e), Some(proposed)) = (&evidence, proposed) {
        explain(e, proposed, by_hand, printer);
    }
    entry.verdict = verdict.as_str().to_string();
    entry.proposed = proposed.map(|p| p.as_str().to_string());
    entry.verdict_by = if by_hand.is_some() {
        "hand"
    } else {
        "proposal"
    }
    .to_string();
    entry.evidence = evidence.map_or(Ok(serde_json::json!({})), serde_json::to_value)?;
    Ok(entry)
}

/// No verdict given and none proposed: say why the evidence judged nothing, or that there is none.
fn nothing_to_judge(evidence: Option<&Evidence>) -> Error {
    let Some(e) = evidence else {
        return Error::input("no evidence and no verdict")
            .with_hint("pass --before RUN --after RUN to judge the change, or --verdict PENDING|BLOCKED for an untested one");
    };
    let (before, after) = (e.before.label(), e.after.label());
    Error::input(format!(
        "nothing to judge between {before} and {after}: {}",
        e.reason
    ))
    .with_hint(
        "compare runs that measured the same tests, or pass --verdict to record the entry anyway",
    )
}

/// The proposal and its reason, or a warning when a hand verdict overrides it.
fn explain(evidence: &Evidence, proposed: Verdict, by_hand: Option<Verdict>, printer: Printer) {
    let reason = &evidence.reason;
    match by_hand {
        Some(verdict) if verdict != proposed => printer.warn(format!(
            "verdict {verdict} set by hand overrides the proposed {proposed} ({reason})"
        )),
        _ => printer.status(format!("proposed {proposed}: {reason}")),
    }
}

fn print_entry(store: &Store, id: i64, json: bool) -> anyhow::Result<ExitCode> {
    let entry = store.journal_entry(id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
    } else {
        print!("{}", render::text(std::slice::from_ref(&entry)));
    }
    Ok(ExitCode::SUCCESS)
}
