//! Fidelity rows: one per check of one candidate (canary, hygiene, agreement, kld, speculative,
//! gate), plus the whole readiness row, each committed as the candidate finishes.

use super::db::params;
use super::{NewTrial, Store};
use crate::domain::{EngineConfig, Unit};
use crate::quality::readiness::Readiness;
use crate::Result;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    pub trial_id: Option<i64>,
    pub candidate: String,
    pub config_hash: Option<String>,
    pub kind: String,
    pub name: String,
    /// `pass`, `warn`, `fail` or `info`.
    pub status: String,
    pub value: Option<f64>,
    pub detail: Value,
}

/// One check of one candidate stored on its own (a readiness row stores all of its checks).
pub struct NewCheck<'a> {
    pub candidate: &'a str,
    pub config: Option<&'a EngineConfig>,
    pub kind: &'a str,
    pub name: &'a str,
    /// `pass`, `warn`, `fail` or `info`.
    pub status: &'a str,
    pub value: Option<f64>,
    pub detail: Value,
}

struct Check<'a> {
    kind: &'a str,
    name: &'a str,
    status: &'a str,
    value: Option<f64>,
    detail: Value,
}

impl Store {
    /// Store one candidate's readiness: a trial (config, engine, model), its speed samples, and
    /// a fidelity row per check. Returns the trial id.
    pub fn record_readiness(&self, run_id: i64, engine_id: i64, row: &Readiness) -> Result<i64> {
        let model = self.model(&row.model)?;
        let config = EngineConfig {
            flags: Default::default(),
            extra: row.flags.clone(),
        };
        let workload =
            json!({"test": "fidelity", "candidate": row.candidate, "baseline": row.baseline});
        let trial = self.begin_trial(
            run_id,
            &NewTrial {
                config: Some(&config),
                engine_id: Some(engine_id),
                model_id: Some(model.id),
                workload: &workload,
                repetition: 0,
            },
        )?;
        let config_id = self.config_id(&config)?;
        for (seq, tg) in row.tg_samples.iter().enumerate() {
            self.sample(trial, "tg", *tg, Unit::TokensPerSecond, "server", seq)?;
        }
        if let Some((summary, tokens)) = &row.tg_telemetry {
            let source = crate::system::telemetry::trial::SOURCE;
            for (metric, value, unit) in
                crate::system::telemetry::trial::metrics(summary, Some(*tokens))
            {
                self.sample(trial, metric, value, unit, source, 0)?;
            }
        }
        if let Some(acceptance) = row.draft_acceptance {
            self.sample(
                trial,
                "draft_acceptance",
                acceptance,
                Unit::Ratio,
                "server",
                0,
            )?;
        }
        for check in checks_of(row) {
            self.db
                .execute(
                    "INSERT INTO fidelity (run_id, trial_id, candidate, config_id, kind, name, status, value, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![run_id, trial, row.candidate, config_id, check.kind, check.name, check.status, check.value, check.detail.to_string()],
                )
                .map_err(|e| self.err(e))?;
        }
        let status = if row.blocker.is_some() {
            "failed"
        } else {
            "ok"
        };
        self.end_trial(trial, status, row.blocker.as_deref())?;
        Ok(trial)
    }

    /// Store one fidelity check of a run, committed at once.
    pub fn record_check(&self, run_id: i64, trial_id: Option<i64>, check: &NewCheck) -> Result<()> {
        let config_id = check.config.map(|c| self.config_id(c)).transpose()?;
        self.db
            .execute(
                "INSERT INTO fidelity (run_id, trial_id, candidate, config_id, kind, name, status, value, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![run_id, trial_id, check.candidate, config_id, check.kind, check.name, check.status, check.value, check.detail.to_string()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// A run's fidelity rows, optionally of one kind, in the order they were stored.
    pub fn fidelity_rows(&self, run_id: i64, kind: Option<&str>) -> Result<Vec<FidelityRow>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT f.trial_id, f.candidate, c.hash, f.kind, f.name, f.status, f.value, f.detail
                 FROM fidelity f LEFT JOIN configs c ON c.id = f.config_id
                 WHERE f.run_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR f.kind = ?2) ORDER BY f.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id, kind], |r| {
                Ok(FidelityRow {
                    trial_id: r.get(0)?,
                    candidate: r.get(1)?,
                    config_hash: r.get(2)?,
                    kind: r.get(3)?,
                    name: r.get(4)?,
                    status: r.get(5)?,
                    value: r.get(6)?,
                    detail: serde_json::from_str(&r.get::<String>(7)?).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// The readiness rows of a `gate` run, as stored.
    pub fn readiness(&self, run_id: i64) -> Result<Vec<Readiness>> {
        Ok(self
            .fidelity_rows(run_id, Some("readiness"))?
            .into_iter()
            .filter_map(|r| serde_json::from_value(r.detail).ok())
            .collect())
    }
}

fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "fail"
    }
}

fn checks_of(row: &Readiness) -> Vec<Check<'_>> {
    let mut checks = Vec::new();
    for c in &row.canaries {
        checks.push(Check {
            kind: "canary",
            name: &c.name,
            status: pass_fail(c.pass),
            value: c.tokens_per_second,
            detail: to_json(c),
        });
    }
    if let Some(h) = &row.hygiene {
        checks.push(Check {
            kind: "hygiene",
            name: "hygiene",
            status: pass_fail(h.problems.is_empty()),
            value: Some(h.problems.len() as f64),
            detail: to_json(h),
        });
    }
    if let Some(a) = &row.agreement {
        let name = if row.baseline {
            "noise_floor"
        } else {
            "greedy"
        };
        checks.push(Check {
            kind: "agreement",
            name,
            status: "info",
            value: Some(a.mean_prefix_fraction),
            detail: to_json(a),
        });
    }
    if let Some(s) = &row.speculative {
        checks.push(Check {
            kind: "speculative",
            name: "losslessness",
            status: pass_fail(s.divergences.is_empty()),
            value: Some(s.divergences.len() as f64),
            detail: to_json(s),
        });
    }
    if let Some(k) = &row.kld {
        checks.push(Check {
            kind: "kld",
            name: "llama-perplexity",
            status: "info",
            value: Some(k.mean_kld),
            detail: to_json(k),
        });
    }
    if let Some(e) = &row.kld_estimate {
        checks.push(Check {
            kind: "kld",
            name: "http-top-k",
            status: "info",
            value: Some(e.mean_kld),
            detail: to_json(e),
        });
    }
    for o in &row.outcomes {
        checks.push(Check {
            kind: "gate",
            name: &o.name,
            status: o.status.as_str(),
            value: Some(o.value),
            detail: to_json(o),
        });
    }
    let overall = row.overall.map_or("info", |s| s.as_str());
    checks.push(Check {
        kind: "readiness",
        name: &row.candidate,
        status: overall,
        value: row.tg_tps,
        detail: to_json(row),
    });
    checks
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}
