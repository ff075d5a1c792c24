//! Tool-call bakeoff rows: one per (arm, task) episode in seed 001's trace schema, or per (arm,
//! item) of the single-turn set, each under a trial that names the engine, model and config, and
//! committed as soon as the episode or item ends.

use super::db::params;
use super::Store;
use crate::quality::toolcall::bfcl::ItemResult;
use crate::quality::toolcall::Trace;
use crate::{Error, Result};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct ToolTraceRow {
    pub id: i64,
    pub trial_id: Option<i64>,
    /// `episode` or `bfcl`.
    pub kind: String,
    pub arm: String,
    pub task: String,
    pub halt_reason: String,
    pub steps_used: i64,
    pub tool_calls_total: i64,
    pub wall_clock_s: f64,
    pub final_history_chars: i64,
    pub passed: Option<bool>,
    pub trace: Value,
}

impl Store {
    /// Store an episode's trace. Returns the row id.
    pub fn record_episode(&self, run_id: i64, trial_id: Option<i64>, trace: &Trace) -> Result<i64> {
        let outcome = &trace.outcome;
        let text = serde_json::to_string(trace).map_err(|e| Error::input(e.to_string()))?;
        self.insert_tool_trace(
            run_id,
            trial_id,
            "episode",
            (&trace.arm, &trace.task, &outcome.halt_reason),
            (outcome.steps_used as i64, outcome.tool_calls_total as i64),
            (outcome.wall_clock_s, outcome.final_history_chars as i64),
            None,
            &text,
        )
    }

    /// Store one single-turn item's result.
    pub fn record_bfcl(
        &self,
        run_id: i64,
        trial_id: Option<i64>,
        result: &ItemResult,
    ) -> Result<i64> {
        let text = serde_json::to_string(result).map_err(|e| Error::input(e.to_string()))?;
        let halt = if result.calls.is_empty() {
            "no_tool_calls"
        } else {
            "tool_calls"
        };
        self.insert_tool_trace(
            run_id,
            trial_id,
            "bfcl",
            (&result.arm, &result.id, halt),
            (1, result.calls.len() as i64),
            (result.elapsed_s, 0),
            Some(result.verdict.valid),
            &text,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one column group per argument; private"
    )]
    fn insert_tool_trace(
        &self,
        run_id: i64,
        trial_id: Option<i64>,
        kind: &str,
        (arm, task, halt): (&str, &str, &str),
        (steps, calls): (i64, i64),
        (wall, history): (f64, i64),
        passed: Option<bool>,
        trace: &str,
    ) -> Result<i64> {
        self.db
            .insert(
                "INSERT INTO tool_traces (run_id, trial_id, kind, arm, task, halt_reason, steps_used, tool_calls_total, wall_clock_s, final_history_chars, passed, trace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![run_id, trial_id, kind, arm, task, halt, steps, calls, wall, history, passed, trace],
            )
            .map_err(|e| self.err(e))
    }

    /// Every tool-call row of a run, in the order stored.
    pub fn tool_traces(&self, run_id: i64) -> Result<Vec<ToolTraceRow>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, trial_id, kind, arm, task, halt_reason, steps_used, tool_calls_total, wall_clock_s, final_history_chars, passed, trace
                 FROM tool_traces WHERE run_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(ToolTraceRow {
                    id: r.get(0)?,
                    trial_id: r.get(1)?,
                    kind: r.get(2)?,
                    arm: r.get(3)?,
                    task: r.get(4)?,
                    halt_reason: r.get(5)?,
                    steps_used: r.get(6)?,
                    tool_calls_total: r.get(7)?,
                    wall_clock_s: r.get(8)?,
                    final_history_chars: r.get(9)?,
                    passed: r.get(10)?,
                    trace: serde_json::from_str(&r.get::<String>(11)?).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// The episodes of a run as traces.
    pub fn episodes(&self, run_id: i64) -> Result<Vec<Trace>> {
        self.tool_traces(run_id)?
            .into_iter()
            .filter(|row| row.kind == "episode")
            .map(|row| {
                serde_json::from_value(row.trace).map_err(|e| {
                    Error::input(format!(
                        "run {run_id}: stored trace {} is unreadable: {e}",
                        row.id
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::toolcall::arms::{ArmInfo, ForceTools, Sampling};
    use crate::quality::toolcall::episode::{Final, Turn};
    use crate::system::Fingerprint;

    #[test]
    fn episodes_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("b.db");
        let store = Store::open(&db).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(
                "tools",
                "bakeoff tools run",
                system,
                None,
                &serde_json::json!({}),
            )
            .unwrap();
        let trace = Trace {
            arm: "native".into(),
            model: "m".into(),
            engine: "llama-server".into(),
            task: "memory".into(),
            task_prompt: "q".into(),
            arm_info: ArmInfo {
                name: "native".into(),
                path: "native".into(),
                engine: "llama-server".into(),
                url: "http://127.0.0.1:1".into(),
                model: "m".into(),
                api: "/completion".into(),
                format: Some("hermes".into()),
                template_sha256: None,
                force_tools: ForceTools::First,
                sampling: Sampling::default(),
                prefill: None,
            },
            turns: vec![Turn {
                step: 1,
                tool_call_count: 1,
                ..Turn::default()
            }],
            outcome: Final {
                halt_reason: "step_budget".into(),
                steps_used: 1,
                tool_calls_total: 1,
                ..Final::default()
            },
        };
        store.record_episode(run, None, &trace).unwrap();
        drop(store);
        let store = Store::open(&db).unwrap();
        let rows = store.tool_traces(run).unwrap();
        assert_eq!(
            (
                rows[0].kind.as_str(),
                rows[0].halt_reason.as_str(),
                rows[0].steps_used
            ),
            ("episode", "step_budget", 1)
        );
        assert_eq!(rows[0].trace["final"]["halt_reason"], "step_budget");
        let back = store.episodes(run).unwrap();
        assert_eq!(back[0].arm_info, trace.arm_info);
    }
}
