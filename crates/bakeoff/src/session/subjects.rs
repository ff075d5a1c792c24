//! What a bench sweep measures on: each build's engine (or the one engine discovery finds) and
//! each model, registered in the store, paired build-major into [`Subject`]s. Two files with the
//! same sha256 are refused here, before anything runs.

use super::Engine;
use crate::engines::build::{BuildRef, KnownFlags};
use crate::measure::bench::Subject;
use crate::model::select;
use crate::store::{ModelRow, Store};
use crate::Result;
use std::path::{Path, PathBuf};

/// The engines and models of a sweep and their pairs in the order measured.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub engines: Vec<Engine>,
    pub models: Vec<ModelRow>,
    /// For each engine, each model.
    pub subjects: Vec<Subject>,
}

impl Sweep {
    /// Register `tool` of each build (or the one `--engine-path`/discovery finds when there are
    /// none), read the flags each build's `--help` lists, and register each model (hashed once per
    /// path, size and modification time).
    pub fn resolve(
        store: &Store,
        engine_path: Option<&Path>,
        tool: &str,
        builds: &[BuildRef],
        models: &[PathBuf],
    ) -> Result<Sweep> {
        let rows = model_rows(store, models)?;
        let engines = engines(store, engine_path, tool, builds)?;
        let mut subjects = Vec::new();
        for (engine, known_flags) in &engines {
            for (path, row) in models.iter().zip(&rows) {
                subjects.push(subject(engine, known_flags, path, row));
            }
        }
        let engines = engines.into_iter().map(|(engine, _)| engine).collect();
        Ok(Sweep {
            engines,
            models: rows,
            subjects,
        })
    }
}

/// Each model's row; two files holding the same model are an error naming both.
fn model_rows(store: &Store, models: &[PathBuf]) -> Result<Vec<ModelRow>> {
    let rows: Vec<ModelRow> = models
        .iter()
        .map(|m| store.model(m))
        .collect::<Result<_>>()?;
    let hashes: Vec<(PathBuf, String)> = models
        .iter()
        .zip(&rows)
        .map(|(path, row)| (path.clone(), row.sha256.clone()))
        .collect();
    select::duplicates(&hashes)?;
    Ok(rows)
}

fn engines(
    store: &Store,
    engine_path: Option<&Path>,
    tool: &str,
    builds: &[BuildRef],
) -> Result<Vec<(Engine, KnownFlags)>> {
    if builds.is_empty() {
        let engine = Engine::find(Some(store), engine_path, tool)?;
        return Ok(vec![(engine, KnownFlags::default())]);
    }
    let built = builds.iter().map(|build| {
        let engine = Engine::for_build(Some(store), build, tool)?;
        let known = KnownFlags::of(&engine.binary)?;
        Ok((engine, known))
    });
    built.collect()
}

fn subject(engine: &Engine, known_flags: &KnownFlags, path: &Path, row: &ModelRow) -> Subject {
    Subject {
        build: engine.build.as_ref().map(|b| b.name.clone()),
        binary: engine.binary.clone(),
        engine_id: engine.engine_id.unwrap_or_default(),
        model: path.to_path_buf(),
        model_id: row.id,
        model_sha256: row.sha256.clone(),
        known_flags: known_flags.clone(),
    }
}
