//! Which model files a run measures: `-m a.gguf,b.gguf`, a glob, a directory of GGUF files, or
//! entries of the user's model catalog chosen by name glob, `--category` and `--max-size`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The model selection of one command, as the user gave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelQuery {
    /// `-m`: comma-separated files, globs, directories or catalog names.
    pub spec: Option<String>,
    /// `--category`: catalog entries carrying this tag.
    pub category: Option<String>,
    /// `--max-size`: catalog entries (or files) no larger than this many bytes.
    pub max_size: Option<u64>,
    /// `--catalog`: the catalog file (default `~/.config/bakeoff/models.toml`).
    pub catalog: Option<PathBuf>,
}

/// The files `query` names, in the order given, each once.
pub fn resolve(query: &ModelQuery) -> Result<Vec<PathBuf>> {
    let spec = query
        .spec
        .as_deref()
        .ok_or_else(|| Error::input("no model: pass --model FILE (or `model` in --config)"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let path = PathBuf::from(item);
        let found = if path.is_dir() {
            gguf_files_in(&path)?
        } else {
            vec![path]
        };
        for file in found {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    if files.is_empty() {
        return Err(Error::input(format!("--model {spec}: names no file")));
    }
    Ok(files)
}

fn gguf_files_in(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::input(format!(
            "{}: a directory with no .gguf file",
            dir.display()
        )));
    }
    Ok(files)
}

/// Refuse two files with the same sha256: the same model measured twice under two names.
pub fn duplicates(files: &[(PathBuf, String)]) -> Result<()> {
    for (at, (path, sha256)) in files.iter().enumerate() {
        let Some((first, _)) = files[..at].iter().find(|(_, other)| other == sha256) else {
            continue;
        };
        let short: String = sha256.chars().take(8).collect();
        let (first, path) = (first.display(), path.display());
        let message = format!("{first} and {path} are the same model (sha256 {short}…)");
        return Err(Error::input(message).with_hint("measure each file once: drop one of the two"));
    }
    Ok(())
}
