//! `bakeoff doctor --audit` as text: the settings checklist (check, status, current, recommended,
//! fix) with its score, then deployment readiness (profiles' models, the port, other processes on
//! the GPU and CPU, the measurement lock).

use super::render::{Column, Table};
use crate::serve::deployment::{ModelState, Readiness};
use crate::system::audit::Audit;
use crate::system::lock::LockState;
use std::fmt::Write;

pub fn audit_table(audit: &Audit) -> Table {
    let mut table = Table::new(vec![
        Column::left("check", "check"),
        Column::left("status", "status"),
        Column::left("current", "current"),
        Column::left("recommended", "recommended"),
        Column::left("fix", "fix"),
    ]);
    for check in &audit.checks {
        table.push([
            check.title.clone(),
            check.status.label().to_string(),
            check.current.clone(),
            check.recommended.clone(),
            check.fix.clone().unwrap_or_default(),
        ]);
    }
    table
}

/// The checklist, its score, and why each warned or failed check matters.
pub fn audit_markdown(audit: &Audit) -> String {
    let mut out = format!("Settings audit ({}):\n\n", audit.root);
    out.push_str(&audit_table(audit).markdown());
    let _ = writeln!(out, "\n{}", audit.score_line());
    let flagged: Vec<_> = audit.checks.iter().filter(|c| c.fix.is_some()).collect();
    if !flagged.is_empty() {
        out.push_str("\nWhy, and the command (bakeoff runs none of them):\n");
    }
    for check in flagged {
        let fix = check.fix.as_deref().unwrap_or_default();
        // Indented: a code block, so `|` and `*` are shown as typed.
        let _ = writeln!(out, "- {}: {}\n\n      {fix}\n", check.title, check.why);
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str("Every run stores this audit; `bakeoff compare A B` names what changed.\n");
    out
}

fn model_line(state: &ModelState) -> String {
    match state {
        ModelState::Matches => "sha256 matches".into(),
        ModelState::Changed { actual } => format!("CHANGED: sha256 now {actual}"),
        ModelState::NotRecorded { actual } => format!("no sha256 recorded (now {actual})"),
        ModelState::Missing { reason } => format!("MISSING: {reason}"),
    }
}

fn lock_line(lock: &LockState) -> String {
    match lock {
        LockState::Free => "free".into(),
        LockState::Held { holder, program } => {
            let program = program.as_deref().unwrap_or("?");
            match holder {
                Some(h) => format!("held by pid {} ({program}) running `{}`", h.pid, h.command),
                None => "held (holder not yet recorded)".into(),
            }
        }
        LockState::Stale { holder } => format!(
            "stale: pid {} (`{}`) died holding it; the next measuring command takes it over",
            holder.pid, holder.command
        ),
        LockState::Unknown { reason } => format!("unknown: {reason}"),
    }
}

pub fn readiness_markdown(readiness: &Readiness) -> String {
    let mut out = String::from("\nDeployment readiness:\n");
    if readiness.profiles.is_empty() {
        out.push_str("  profiles   none saved (`bakeoff profile save NAME --from RUN`)\n");
    }
    for p in &readiness.profiles {
        let resolved = match &p.resolved {
            Some(r) if *r != p.model_path => format!(" → {r}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  profile    {}: {}{resolved}: {}",
            p.name,
            p.model_path,
            model_line(&p.model)
        );
    }
    let port = &readiness.port;
    let held = match (port.free, port.pid) {
        (true, _) => "free".to_string(),
        (false, Some(pid)) => format!(
            "held by pid {pid} ({})",
            port.program.as_deref().unwrap_or("?")
        ),
        (false, None) => "held (by a process we cannot see)".to_string(),
    };
    let _ = writeln!(out, "  port       {}: {held}", port.port);
    match (&readiness.gpu_note, readiness.gpu_processes.is_empty()) {
        (Some(note), _) => {
            let _ = writeln!(out, "  GPU        {note}");
        }
        (None, true) => out.push_str("  GPU        no other process holds GPU memory\n"),
        (None, false) => {}
    }
    for g in &readiness.gpu_processes {
        let memory = g.memory_mib.map_or("? MiB".into(), |m| format!("{m} MiB"));
        let _ = writeln!(
            out,
            "  GPU        pid {} ({}) holds {memory}",
            g.pid, g.program
        );
    }
    if readiness.busy_processes.is_empty() {
        out.push_str("  CPU        no other process is busy\n");
    }
    for b in &readiness.busy_processes {
        let _ = writeln!(
            out,
            "  CPU        pid {} ({}) uses {:.2} cores",
            b.pid, b.program, b.cores
        );
    }
    let _ = writeln!(
        out,
        "  lock       {} ({})",
        lock_line(&readiness.lock),
        readiness.lock_path
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::audit::{collect, fixture};

    #[test]
    fn the_table_shows_each_check_with_its_fix_and_the_score() {
        let dir = tempfile::tempdir().unwrap();
        fixture::untuned(dir.path());
        let text = audit_markdown(&collect(dir.path()));
        let governor = text
            .lines()
            .find(|l| l.starts_with("| CPU governor"))
            .expect(&text);
        assert!(
            governor.contains("| FAIL | powersave | performance |"),
            "{governor}"
        );
        assert!(
            governor.contains("echo performance \\| sudo tee"),
            "{governor}"
        );
        assert!(text.contains("score 0/7 (2 not applicable)"), "{text}");
        assert!(text.contains("- swappiness: a low value keeps"), "{text}");
        let raw = "\n      echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor\n";
        assert!(text.contains(raw), "{text}");
    }

    #[test]
    fn lock_states_read_as_sentences() {
        let holder = crate::system::lock::Holder {
            pid: 42,
            command: "bakeoff bench".into(),
            started_unix: 0,
        };
        let held = LockState::Held {
            holder: Some(holder.clone()),
            program: Some("bakeoff".into()),
        };
        assert_eq!(
            lock_line(&held),
            "held by pid 42 (bakeoff) running `bakeoff bench`"
        );
        assert!(lock_line(&LockState::Stale { holder }).starts_with("stale: pid 42"));
        assert_eq!(lock_line(&LockState::Free), "free");
    }
}
