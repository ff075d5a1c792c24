//! `bakeoff runs list|show`: what the store holds.

use crate::cli::{Global, RunsCommand};
use std::process::ExitCode;

pub fn run(global: &Global, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    match command {
        RunsCommand::List { limit, output } => {
            let runs = store.runs(limit)?;
            if output.wants_json() {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                eprintln!("no runs stored in {}", store.path().display());
            } else {
                println!(
                    "{:>5}  {:<8} {:<11} {:<24} {:>6} {:>8}  {:<10} COMMAND",
                    "RUN", "KIND", "STATUS", "STARTED", "TRIALS", "SAMPLES", "TAG"
                );
                for r in runs {
                    println!(
                        "{:>5}  {:<8} {:<11} {:<24} {:>6} {:>8}  {:<10} {}",
                        r.id,
                        r.kind,
                        r.status,
                        r.started_at,
                        r.trials,
                        r.samples,
                        r.tag.unwrap_or_default(),
                        r.command
                    );
                }
            }
        }
        RunsCommand::Show { run, output } => {
            let id = store.resolve_run(&run)?;
            let detail = store.run_detail(id)?;
            if output.wants_json() {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_detail(&detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_detail(d: &bakeoff::store::RunDetail) {
    let r = &d.run;
    println!("run {} ({}) {}", r.id, r.kind, r.status);
    println!("  command  {}", r.command);
    println!("  bakeoff  {}", r.bakeoff_version);
    println!(
        "  started  {}  ended {}",
        r.started_at,
        r.ended_at.as_deref().unwrap_or("-")
    );
    if let Some(tag) = &r.tag {
        println!("  tag      {tag}");
    }
    if let Some(error) = &r.error {
        println!("  error    {error}");
    }
    if let Some(system) = &d.system {
        println!(
            "  system   {} / {} cores / kernel {}",
            system["cpu_model"].as_str().unwrap_or("?"),
            system["cpu_cores"],
            system["kernel"].as_str().unwrap_or("?")
        );
    }
    for t in &d.trials {
        let flags = t.flags.as_ref().map(|f| f.to_string()).unwrap_or_default();
        println!(
            "  trial {} rep {} [{}] {} {}",
            t.id, t.repetition, t.status, flags, t.workload
        );
        if let Some(note) = &t.note {
            println!("    note: {note}");
        }
        for s in t.samples.iter().take(12) {
            println!(
                "    {:<24} {:>12.3} {:<7} ({})",
                s.metric, s.value, s.unit, s.source
            );
        }
        if t.samples.len() > 12 {
            println!(
                "    … {} more samples (-o json shows all)",
                t.samples.len() - 12
            );
        }
    }
    for log in &d.logs {
        println!("  engine log {}", log.path);
        for line in log.fatal_lines.as_array().into_iter().flatten() {
            println!(
                "    FATAL line {}: {}",
                line["line"],
                line["text"].as_str().unwrap_or("")
            );
        }
    }
}
