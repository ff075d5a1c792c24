//! The settings audit stored with every run (`run_audits`, migration 10).

use super::db::{params, OptionalExtension};
use super::Store;
use crate::system::audit::Audit;
use crate::{Error, Result};

impl Store {
    /// Store `audit` as run `run_id`'s (replacing one stored before).
    pub fn record_audit(&self, run_id: i64, audit: &Audit) -> Result<()> {
        let text = serde_json::to_string(audit)
            .map_err(|e| Error::input(format!("audit of run {run_id}: {e}")))?;
        self.db
            .execute(
                "INSERT INTO run_audits (run_id, audit) VALUES (?1, ?2)
                 ON CONFLICT (run_id) DO UPDATE SET audit = ?2",
                params![run_id, text],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Run `run_id`'s audit; `None` for runs stored before audits were (or whose audit no longer
    /// parses: an audit is information, not something to fail a comparison over).
    pub fn audit(&self, run_id: i64) -> Result<Option<Audit>> {
        let text: Option<String> = self
            .db
            .query_row(
                "SELECT audit FROM run_audits WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::audit;
    use crate::system::Fingerprint;

    #[test]
    fn an_audit_round_trips_through_migration_10() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        assert!(store.schema_version().unwrap() >= 10);
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(
                "bench",
                "bakeoff bench",
                system,
                None,
                &serde_json::json!({}),
            )
            .unwrap();
        assert_eq!(store.audit(run).unwrap(), None, "none recorded yet");
        let root = tempfile::tempdir().unwrap();
        audit::fixture::tuned(root.path());
        let recorded = audit::collect(root.path());
        store.record_audit(run, &recorded).unwrap();
        assert_eq!(store.audit(run).unwrap(), Some(recorded.clone()));
        let mut changed = recorded;
        changed.checks.pop();
        store.record_audit(run, &changed).unwrap();
        assert_eq!(store.audit(run).unwrap(), Some(changed), "replaced");
        let missing = store.record_audit(run + 100, &audit::collect(root.path()));
        assert!(missing.is_err(), "a run that does not exist is refused");
    }
}
