//! The stored rows a report shows as they are: the systems, engine builds and model files a run
//! used, and its fidelity rows with their configurations' arguments.

use super::db::params;
use super::Store;
use crate::domain::EngineConfig;
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// One row of the `fidelity` table (readiness rows aside: see `report::data::GateCandidate`).
#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    pub id: i64,
    pub run_id: i64,
    pub trial_id: Option<i64>,
    pub candidate: String,
    pub config_hash: Option<String>,
    /// The engine arguments of that config (to match configs of other runs with the same flags).
    pub config_args: Vec<String>,
    pub kind: String,
    pub name: String,
    pub status: String,
    pub value: Option<f64>,
    /// The stored JSON text, as stored.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    pub id: i64,
    pub hash: String,
    pub fingerprint: serde_json::Value,
    /// The newest value of each measured machine property (memory bandwidth, client ceiling).
    pub measurements: BTreeMap<String, (f64, String)>,
    pub runs: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub id: i64,
    pub kind: String,
    pub path: String,
    pub version: Option<String>,
    pub build_number: Option<i64>,
    pub commit: Option<String>,
    pub built_with: Option<String>,
    /// The name of a `--build NAME=PATH` build; `None` for an engine found by discovery.
    pub build_name: Option<String>,
    pub backends: Vec<String>,
    pub devices: Vec<String>,
    pub binary_sha256: Option<String>,
    pub runs: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub id: i64,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub summary: serde_json::Value,
    pub runs: Vec<i64>,
}

impl Store {
    /// Rows of a query whose one parameter is the run id.
    fn run_rows<T>(
        &self,
        run_id: i64,
        sql: &str,
        map: impl Fn(&super::db::Row) -> Result<T, super::db::DbError>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.db.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], map)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, super::db::DbError>>()
            .map_err(|e| self.err(e))
    }

    /// The system a run ran on, with its newest measured properties.
    pub fn run_systems(&self, run_id: i64) -> Result<Vec<SystemInfo>> {
        let mut systems = self.run_rows(
            run_id,
            "SELECT s.id, s.hash, s.fingerprint FROM runs r JOIN systems s ON s.id = r.system_id WHERE r.id = ?1",
            |r| {
                Ok(SystemInfo {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    fingerprint: serde_json::from_str(&r.get::<String>(2)?).unwrap_or_default(),
                    measurements: BTreeMap::new(),
                    runs: vec![run_id],
                })
            },
        )?;
        for system in &mut systems {
            // Ordered by id, so the newest value of each name is inserted last.
            let rows = self.run_rows(
            run_id,
                "SELECT m.name, m.value, m.unit FROM runs r JOIN system_measurements m ON m.system_id = r.system_id WHERE r.id = ?1 ORDER BY m.id",
                |r| Ok((r.get::<String>(0)?, r.get::<f64>(1)?, r.get::<String>(2)?)),
            )?;
            system.measurements = rows.into_iter().map(|(n, v, u)| (n, (v, u))).collect();
        }
        Ok(systems)
    }

    /// The engine builds a run's trials used.
    pub fn run_engines(&self, run_id: i64) -> Result<Vec<EngineInfo>> {
        self.run_rows(
            run_id,
            "SELECT DISTINCT e.id, e.kind, e.path, e.version, e.build_number, e.commit_id, e.built_with,
                    e.build_name, e.backends, e.devices, e.binary_sha256
             FROM trials t JOIN engines e ON e.id = t.engine_id WHERE t.run_id = ?1 ORDER BY e.id",
            |r| {
                Ok(EngineInfo {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    path: r.get(2)?,
                    version: r.get(3)?,
                    build_number: r.get(4)?,
                    commit: r.get(5)?,
                    built_with: r.get(6)?,
                    build_name: r.get(7)?,
                    backends: json_list(r.get(8)?),
                    devices: json_list(r.get(9)?),
                    binary_sha256: r.get(10)?,
                    runs: vec![run_id],
                })
            },
        )
    }

    /// The model files a run's trials used.
    pub fn run_models(&self, run_id: i64) -> Result<Vec<ModelInfo>> {
        self.run_rows(
            run_id,
            "SELECT DISTINCT m.id, m.path, m.size, m.sha256, m.summary
             FROM trials t JOIN models m ON m.id = t.model_id WHERE t.run_id = ?1 ORDER BY m.id",
            |r| {
                Ok(ModelInfo {
                    id: r.get(0)?,
                    path: r.get(1)?,
                    size: r.get::<i64>(2)?.max(0) as u64,
                    sha256: r.get(3)?,
                    summary: serde_json::from_str(&r.get::<String>(4)?).unwrap_or_default(),
                    runs: vec![run_id],
                })
            },
        )
    }

    /// A run's fidelity rows as stored, readiness rows aside.
    pub fn run_fidelity(&self, run_id: i64) -> Result<Vec<FidelityRow>> {
        self.run_rows(
            run_id,
            "SELECT f.id, f.run_id, f.trial_id, f.candidate, c.hash, f.kind, f.name, f.status, f.value, f.detail, c.flags
             FROM fidelity f LEFT JOIN configs c ON c.id = f.config_id
             WHERE f.run_id = ?1 AND f.kind != 'readiness' ORDER BY f.id",
            |r| {
                let config: Option<EngineConfig> = r
                    .get::<Option<String>>(10)?
                    .and_then(|f| serde_json::from_str(&f).ok());
                Ok(FidelityRow {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    trial_id: r.get(2)?,
                    candidate: r.get(3)?,
                    config_hash: r.get(4)?,
                    config_args: config.map(|c| c.args()).unwrap_or_default(),
                    kind: r.get(5)?,
                    name: r.get(6)?,
                    status: r.get(7)?,
                    value: r.get(8)?,
                    detail: r.get(9)?,
                })
            },
        )
    }
}

/// A JSON array column (`NULL` or unreadable: empty).
fn json_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}
