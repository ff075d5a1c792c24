//! Rows of `bakeoff tune`: each decision of the search as it is made, and the answer it ended with.

use super::db::{params, OptionalExtension};
use super::Store;
use crate::quality::readiness::Readiness;
pub use crate::search::sink::TuneDecision;
use crate::search::sink::TuneSink;
use crate::Result;

impl Store {
    /// Store one decision of run `run_id`'s race.
    pub fn record_tune_decision(&self, run_id: i64, decision: &TuneDecision) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO tune_decisions (run_id, round, config_hash, candidate, action, reference, why)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run_id,
                    decision.round,
                    decision.config_hash,
                    decision.candidate,
                    decision.action,
                    decision.reference,
                    decision.why
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Forget a run's decisions (a resumed tune replays its race and records them again).
    pub fn clear_tune_decisions(&self, run_id: i64) -> Result<()> {
        self.db
            .execute("DELETE FROM tune_decisions WHERE run_id = ?1", [run_id])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// A run's decisions in the order they were made.
    pub fn tune_decisions(&self, run_id: i64) -> Result<Vec<TuneDecision>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT round, config_hash, candidate, action, reference, why FROM tune_decisions
                 WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(TuneDecision {
                    round: r.get(0)?,
                    config_hash: r.get(1)?,
                    candidate: r.get(2)?,
                    action: r.get(3)?,
                    reference: r.get(4)?,
                    why: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Store (or replace) the answer a tune run ended with.
    pub fn save_tune_answer(&self, run_id: i64, answer: &serde_json::Value) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO tune_answers (run_id, answer) VALUES (?1, ?2)
                 ON CONFLICT (run_id) DO UPDATE SET answer = excluded.answer",
                params![run_id, answer.to_string()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The answer of tune run `run_id`, if it got as far as one.
    pub fn tune_answer(&self, run_id: i64) -> Result<Option<serde_json::Value>> {
        let text: Option<String> = self
            .db
            .query_row(
                "SELECT answer FROM tune_answers WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

impl TuneSink for Store {
    fn record_decision(&self, run_id: i64, decision: &TuneDecision) -> Result<()> {
        self.record_tune_decision(run_id, decision)
    }

    fn record_readiness(&self, run_id: i64, engine_id: i64, row: &Readiness) -> Result<()> {
        Store::record_readiness(self, run_id, engine_id, row).map(drop)
    }

    fn readiness_rows(&self, run_id: i64) -> Result<Vec<Readiness>> {
        self.readiness(run_id)
    }

    fn save_answer(&self, run_id: i64, answer: &serde_json::Value) -> Result<()> {
        self.save_tune_answer(run_id, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_answers_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let system = store
            .system_id(&crate::system::fingerprint::Fingerprint::collect())
            .unwrap();
        let params = serde_json::json!({});
        let run = store
            .begin_run("tune", "bakeoff tune", system, None, &params)
            .unwrap();
        let decision = |round, action: &str| TuneDecision {
            round,
            config_hash: "abc".into(),
            candidate: "-fa on".into(),
            action: action.into(),
            reference: None,
            why: "because".into(),
        };
        store
            .record_tune_decision(run, &decision(0, "screened"))
            .unwrap();
        store
            .record_tune_decision(run, &decision(1, "winner"))
            .unwrap();
        let actions: Vec<String> = store
            .tune_decisions(run)
            .unwrap()
            .into_iter()
            .map(|d| d.action)
            .collect();
        assert_eq!(actions, ["screened", "winner"]);
        store.clear_tune_decisions(run).unwrap();
        assert!(store.tune_decisions(run).unwrap().is_empty());
        assert_eq!(store.tune_answer(run).unwrap(), None);
        store
            .save_tune_answer(run, &serde_json::json!({"a": 1}))
            .unwrap();
        store
            .save_tune_answer(run, &serde_json::json!({"a": 2}))
            .unwrap();
        assert_eq!(
            store.tune_answer(run).unwrap(),
            Some(serde_json::json!({"a": 2}))
        );
    }
}
