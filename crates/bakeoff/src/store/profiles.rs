//! Saved serving profiles (a winning configuration under a name) and the readiness checks each
//! supervised start of one ran.

use super::db::{params, OptionalExtension};
use super::Store;
use crate::{Error, Result};
use serde::Serialize;

/// A saved profile: what to start (engine binary, model file, flags) and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub run_id: Option<i64>,
    pub config_id: Option<i64>,
    /// The source config's hash (as `bakeoff compare` and `runs show` print it).
    pub config_hash: Option<String>,
    pub model_id: Option<i64>,
    pub model_path: String,
    pub model_sha256: Option<String>,
    pub engine_id: Option<i64>,
    /// Absolute path of the llama-server binary.
    pub engine_path: Option<String>,
    /// e.g. `llama-server 0.6.0-dev (build 11434)`.
    pub engine_version: Option<String>,
    /// llama-server flags after `-m/--host/--port` (which are chosen at start).
    pub flags: Vec<String>,
    /// The profile to start when this one fails its readiness gate.
    pub fallback: Option<String>,
    /// The canaries it passed the first time it became ready (every later start must pass them).
    pub canary_reference: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: String,
}

/// One configuration a run measured, with the model and engine of its first trial.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub config_id: i64,
    pub hash: String,
    pub flags: serde_json::Value,
    pub model_id: Option<i64>,
    pub engine_id: Option<i64>,
}

/// A stored engine build.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRow {
    pub id: i64,
    pub kind: String,
    pub path: String,
    pub version: Option<String>,
    pub build_number: Option<i64>,
}

const PROFILE_SELECT: &str = "SELECT p.name, p.run_id, p.config_id, c.hash, p.model_id, p.model_path, p.model_sha256, p.engine_id,
    p.engine_path, e.kind || ' ' || coalesce(e.version, '?') || ' (build ' || coalesce(CAST(e.build_number AS TEXT), '?') || ')',
    p.flags, p.fallback, p.created_at, p.updated_at, p.canary_reference
    FROM profiles p LEFT JOIN configs c ON c.id = p.config_id LEFT JOIN engines e ON e.id = p.engine_id";

fn profile_row(r: &super::db::Row) -> Result<Profile, super::db::DbError> {
    Ok(Profile {
        name: r.get(0)?,
        run_id: r.get(1)?,
        config_id: r.get(2)?,
        config_hash: r.get(3)?,
        model_id: r.get(4)?,
        model_path: r.get(5)?,
        model_sha256: r.get(6)?,
        engine_id: r.get(7)?,
        engine_path: r.get(8)?,
        engine_version: r.get(9)?,
        flags: serde_json::from_str(&r.get::<String>(10)?).unwrap_or_default(),
        fallback: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        canary_reference: r
            .get::<Option<String>>(14)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

impl Store {
    /// Save `profile` under its name; an existing profile of that name is replaced only when
    /// `replace` is set.
    pub fn save_profile(&self, profile: &Profile, replace: bool) -> Result<()> {
        if !replace && self.find_profile(&profile.name)?.is_some() {
            return Err(
                Error::input(format!("profile '{}' already exists", profile.name))
                    .with_hint("pass --force to replace it, or `bakeoff profile delete` it first"),
            );
        }
        self.db
            .execute(
                "INSERT INTO profiles (name, run_id, config_id, model_id, model_path, model_sha256, engine_id, engine_path, flags, fallback)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (name) DO UPDATE SET run_id = ?2, config_id = ?3, model_id = ?4, model_path = ?5, model_sha256 = ?6,
                   engine_id = ?7, engine_path = ?8, flags = ?9, fallback = ?10, canary_reference = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                params![
                    profile.name,
                    profile.run_id,
                    profile.config_id,
                    profile.model_id,
                    profile.model_path,
                    profile.model_sha256,
                    profile.engine_id,
                    profile.engine_path,
                    serde_json::to_string(&profile.flags).unwrap_or_default(),
                    profile.fallback
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn find_profile(&self, name: &str) -> Result<Option<Profile>> {
        let sql = format!("{PROFILE_SELECT} WHERE p.name = ?1");
        self.db
            .query_row(&sql, [name], profile_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The profile called `name`, or an error listing what exists.
    pub fn profile(&self, name: &str) -> Result<Profile> {
        if let Some(profile) = self.find_profile(name)? {
            return Ok(profile);
        }
        let names: Vec<String> = self.profiles()?.into_iter().map(|p| p.name).collect();
        let hint = if names.is_empty() {
            "no profiles saved yet; `bakeoff profile save NAME --from RUN` saves one".to_string()
        } else {
            format!("saved profiles: {}", names.join(", "))
        };
        Err(Error::input(format!("no profile '{name}' in {}", self.path.display())).with_hint(hint))
    }

    pub fn profiles(&self) -> Result<Vec<Profile>> {
        let sql = format!("{PROFILE_SELECT} ORDER BY p.name");
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], profile_row).map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Delete a profile; refused while another profile names it as its fallback.
    pub fn delete_profile(&self, name: &str) -> Result<()> {
        self.profile(name)?;
        let dependants: Vec<String> = self
            .profiles()?
            .into_iter()
            .filter(|p| p.fallback.as_deref() == Some(name))
            .map(|p| p.name)
            .collect();
        if !dependants.is_empty() {
            return Err(Error::input(format!(
                "profile '{name}' is the fallback of {}",
                dependants.join(", ")
            ))
            .with_hint("save those profiles with another --fallback first"));
        }
        self.db
            .execute("DELETE FROM profiles WHERE name = ?1", [name])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The configurations a run measured, in the order it first measured them.
    pub fn run_configs(&self, run_id: i64) -> Result<Vec<RunConfig>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT c.id, c.hash, c.flags, t.model_id, t.engine_id FROM trials t JOIN configs c ON c.id = t.config_id
                 WHERE t.run_id = ?1 AND t.id = (SELECT min(u.id) FROM trials u WHERE u.run_id = ?1 AND u.config_id = c.id)
                 ORDER BY t.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(RunConfig {
                    config_id: r.get(0)?,
                    hash: r.get(1)?,
                    flags: serde_json::from_str(&r.get::<String>(2)?).unwrap_or_default(),
                    model_id: r.get(3)?,
                    engine_id: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// A stored model by id (no hashing: the row as recorded).
    pub fn model_by_id(&self, id: i64) -> Result<super::ModelRow> {
        self.db
            .query_row(
                "SELECT id, path, size, sha256, summary FROM models WHERE id = ?1",
                [id],
                |r| {
                    Ok(super::ModelRow {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        size: r.get::<i64>(2)? as u64,
                        sha256: r.get(3)?,
                        summary: serde_json::from_str(&r.get::<String>(4)?).unwrap_or_default(),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    pub fn engine_by_id(&self, id: i64) -> Result<EngineRow> {
        self.db
            .query_row(
                "SELECT id, kind, path, version, build_number FROM engines WHERE id = ?1",
                [id],
                |r| {
                    Ok(EngineRow {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        path: r.get(2)?,
                        version: r.get(3)?,
                        build_number: r.get(4)?,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Keep the canaries a profile passed as its reference.
    pub fn set_canary_reference(&self, name: &str, passed: &[String]) -> Result<()> {
        self.db
            .execute(
                "UPDATE profiles SET canary_reference = ?2 WHERE name = ?1",
                params![name, serde_json::to_string(passed).unwrap_or_default()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Record one readiness check of a supervised start (a `fidelity` row of kind
    /// `serve-readiness`; canary results of the start go in rows of kind `canary`).
    pub fn record_readiness_check(
        &self,
        run_id: i64,
        candidate: &str,
        name: &str,
        passed: bool,
        detail: &serde_json::Value,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO fidelity (run_id, candidate, kind, name, status, detail) VALUES (?1, ?2, 'serve-readiness', ?3, ?4, ?5)",
                params![run_id, candidate, name, if passed { "pass" } else { "fail" }, detail.to_string()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Record one canary answered during a supervised start (a `fidelity` row of kind `canary`).
    pub fn record_serve_canary(
        &self,
        run_id: i64,
        candidate: &str,
        result: &crate::quality::canary::CanaryResult,
    ) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO fidelity (run_id, candidate, kind, name, status, value, detail) VALUES (?1, ?2, 'canary', ?3, ?4, ?5, ?6)",
                params![
                    run_id,
                    candidate,
                    result.name,
                    if result.pass { "pass" } else { "fail" },
                    result.tokens_per_second,
                    serde_json::to_string(result).unwrap_or_default()
                ],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}
