//! Where a tune keeps what it decides: the race's decisions as they are made, the fidelity gate's
//! readiness rows, and the answer. The store implements it (as it implements `TrialSink` for the
//! trials), so the search never knows SQL.

use crate::measure::sink::TrialSink;
use crate::quality::readiness::Readiness;
use crate::Result;
use serde::Serialize;

/// One stored decision of a tune's race.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneDecision {
    pub round: i64,
    /// The candidate's configuration hash (its trials carry the same).
    pub config_hash: String,
    /// The candidate's label.
    pub candidate: String,
    /// `screened`, `promoted`, `explored`, `eliminated`, `vetoed`, `winner`, `unresolved`, `skipped`.
    pub action: String,
    /// The candidate it was judged against.
    pub reference: Option<String>,
    pub why: String,
}

/// A tune's own records beside its trials.
pub trait TuneSink: TrialSink {
    fn record_decision(&self, run_id: i64, decision: &TuneDecision) -> Result<()>;
    fn record_readiness(&self, run_id: i64, engine_id: i64, row: &Readiness) -> Result<()>;
    /// The readiness rows a (resumed) run already holds.
    fn readiness_rows(&self, run_id: i64) -> Result<Vec<Readiness>>;
    fn save_answer(&self, run_id: i64, answer: &serde_json::Value) -> Result<()>;
}
