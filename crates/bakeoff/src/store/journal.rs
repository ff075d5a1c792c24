//! Rows of the optimisation journal: each entry links its before/after runs and keeps the evidence
//! (JSON) it was judged on, the verdict bakeoff proposed and the verdict that stands.

use super::db::{params, OptionalExtension};
use super::Store;
use crate::{Error, Result};
use serde::Serialize;

/// One stored journal entry.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub title: String,
    pub change: String,
    pub before_run: Option<i64>,
    pub after_run: Option<i64>,
    /// The verdict that stands: KEEP, REVERTED, NO IMPACT, PENDING or BLOCKED.
    pub verdict: String,
    /// The verdict bakeoff derived from the evidence, when there was evidence to judge.
    pub proposed: Option<String>,
    /// `proposal` when `verdict` is the proposal, `hand` when someone set it.
    pub verdict_by: String,
    pub evidence: serde_json::Value,
    pub note: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A fidelity gate check stored for a run (`fidelity` rows of kind `gate`).
#[derive(Debug, Clone, Serialize)]
pub struct GateCheckRow {
    pub candidate: String,
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub value: Option<f64>,
}

const ENTRY_SELECT: &str = "SELECT id, title, change, before_run, after_run, verdict, proposed, verdict_by, evidence, note, created_at, updated_at FROM journal";

fn entry_row(r: &super::db::Row) -> Result<JournalEntry, super::db::DbError> {
    Ok(JournalEntry {
        id: r.get(0)?,
        title: r.get(1)?,
        change: r.get(2)?,
        before_run: r.get(3)?,
        after_run: r.get(4)?,
        verdict: r.get(5)?,
        proposed: r.get(6)?,
        verdict_by: r.get(7)?,
        evidence: serde_json::from_str(&r.get::<String>(8)?).unwrap_or_default(),
        note: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl Store {
    /// Store a new entry (its `id`, `created_at` and `updated_at` are assigned here); returns its id.
    pub fn add_journal_entry(&self, entry: &JournalEntry) -> Result<i64> {
        self.db
            .insert(
                "INSERT INTO journal (title, change, before_run, after_run, verdict, proposed, verdict_by, evidence, note, uuid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    entry.title,
                    entry.change,
                    entry.before_run,
                    entry.after_run,
                    entry.verdict,
                    entry.proposed,
                    entry.verdict_by,
                    entry.evidence.to_string(),
                    entry.note,
                    super::runs::new_uuid()
                ],
            )
            .map_err(|e| self.err(e))
    }

    /// Write back an entry's runs, verdicts, evidence and note (title and change stay).
    pub fn update_journal_entry(&self, entry: &JournalEntry) -> Result<()> {
        self.db
            .execute(
                "UPDATE journal SET before_run = ?2, after_run = ?3, verdict = ?4, proposed = ?5, verdict_by = ?6,
                 evidence = ?7, note = ?8, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![
                    entry.id,
                    entry.before_run,
                    entry.after_run,
                    entry.verdict,
                    entry.proposed,
                    entry.verdict_by,
                    entry.evidence.to_string(),
                    entry.note
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every entry, oldest first (the order of the log).
    pub fn journal_entries(&self) -> Result<Vec<JournalEntry>> {
        let sql = format!("{ENTRY_SELECT} ORDER BY id");
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], entry_row).map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    pub fn journal_entry(&self, id: i64) -> Result<JournalEntry> {
        let sql = format!("{ENTRY_SELECT} WHERE id = ?1");
        self.db
            .query_row(&sql, [id], entry_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                Error::input(format!("no journal entry {id} in {}", self.path.display()))
                    .with_hint("`bakeoff journal show` lists the entries")
            })
    }

    /// The fidelity gate checks stored for a run, in the order they were recorded.
    pub fn journal_gate_checks(&self, run_id: i64) -> Result<Vec<GateCheckRow>> {
        let mut stmt = self
            .db
            .prepare("SELECT candidate, name, status, value FROM fidelity WHERE run_id = ?1 AND kind = 'gate' ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(GateCheckRow {
                    candidate: r.get(0)?,
                    name: r.get(1)?,
                    status: r.get(2)?,
                    value: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }
}
