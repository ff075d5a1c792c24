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
    let store = super::open_store(global)?;
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
            let evidence = judge(&store, before.as_deref(), after.as_deref(), &gate, printer)?;
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
            let entry = decide(entry, evidence, verdict.map(Verdict::from), printer)?;
            let id = store.add_journal_entry(&entry)?;
            print_entry(&store, id, output.wants_json())
        }
        JournalCommand::Show {
            ids,
            format,
            md,
            json,
        } => {
            let format = JournalFormat::resolve(format, md, json);
            let entries = match ids.as_slice() {
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
        JournalCommand::Set {
            id,
            verdict,
            note,
            before,
            after,
            gate,
            output,
        } => {
            if verdict.is_none() && note.is_none() && before.is_none() {
                return Err(Error::input(format!("journal set {id}: nothing to change"))
                    .with_hint("pass --verdict, --note, or --before RUN --after RUN")
                    .into());
            }
            let mut entry = store.journal_entry(id)?;
            if note.is_some() {
                entry.note = note;
            }
            if before.is_some() || verdict.is_some() {
                let judged = judge(&store, before.as_deref(), after.as_deref(), &gate, printer)?;
                let evidence = match judged {
                    Some(evidence) => Some(evidence),
                    None => serde_json::from_value(entry.evidence.clone()).ok(),
                };
                entry.before_run = evidence.as_ref().map(|e| e.before.id);
                entry.after_run = evidence.as_ref().map(|e| e.after.id);
                entry = decide(entry, evidence, verdict.map(Verdict::from), printer)?;
            }
            store.update_journal_entry(&entry)?;
            print_entry(&store, id, output.wants_json())
        }
    }
}

/// The evidence of `before` → `after`, when both are given.
fn judge(
    store: &Store,
    before: Option<&str>,
    after: Option<&str>,
    gates: &[String],
    printer: Printer,
) -> anyhow::Result<Option<Evidence>> {
    let (Some(before), Some(after)) = (before, after) else {
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
    let verdict = match (by_hand, proposed, &evidence) {
        (Some(verdict), _, _) => verdict,
        (None, Some(proposed), _) => proposed,
        (None, None, Some(e)) => {
            return Err(Error::input(format!(
                "nothing to judge between {} and {}: {}",
                e.before.label(),
                e.after.label(),
                e.reason
            ))
            .with_hint(
                "compare runs that measured the same tests, or pass --verdict to record the entry anyway",
            )
            .into())
        }
        (None, None, None) => {
            return Err(Error::input("no evidence and no verdict")
                .with_hint("pass --before RUN --after RUN to judge the change, or --verdict PENDING|BLOCKED for an untested one")
                .into())
        }
    };
    if let (Some(e), Some(proposed)) = (&evidence, proposed) {
        match by_hand {
            Some(verdict) if verdict != proposed => printer.warn(format!(
                "verdict {verdict} set by hand overrides the proposed {proposed} ({})",
                e.reason
            )),
            _ => printer.status(format!("proposed {proposed}: {}", e.reason)),
        }
    }
    entry.verdict = verdict.as_str().to_string();
    entry.proposed = proposed.map(|p| p.as_str().to_string());
    entry.verdict_by = if by_hand.is_some() {
        "hand"
    } else {
        "proposal"
    }
    .to_string();
    entry.evidence = match evidence {
        Some(e) => serde_json::to_value(e)?,
        None => serde_json::json!({}),
    };
    Ok(entry)
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
