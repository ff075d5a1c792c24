//! Where bakeoff keeps things. `BAKEOFF_HOME` (default `~/.cache/bakeoff`) holds what set-up
//! installs: engines and models. The result store defaults to `~/.local/share/bakeoff/bakeoff.db`
//! and each run's files (engine logs) live in `runs/` beside it.

use std::path::{Path, PathBuf};

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The cache set-up fills: `$BAKEOFF_HOME`, else `~/.cache/bakeoff`.
pub fn cache_home() -> PathBuf {
    match std::env::var_os("BAKEOFF_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home().join(".cache").join("bakeoff"),
    }
}

/// Directory of installed models.
pub fn models_dir() -> PathBuf {
    cache_home().join("models")
}

/// Directory holding one folder per installed engine build.
pub fn engines_dir() -> PathBuf {
    cache_home().join("engines")
}

/// The default result database: `$XDG_DATA_HOME/bakeoff/bakeoff.db`, else `~/.local/share/bakeoff/bakeoff.db`.
pub fn default_db() -> PathBuf {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home().join(".local").join("share"),
    };
    data.join("bakeoff").join("bakeoff.db")
}

/// Per-run files (engine logs) live in `runs/<id>/` next to the database.
pub fn run_dir(db: &Path, run_id: i64) -> PathBuf {
    db.parent()
        .unwrap_or(Path::new("."))
        .join("runs")
        .join(run_id.to_string())
}

/// `~/x` → `$HOME/x`; a relative path → relative to `base` (the directory of the file that
/// named it); an absolute path as it is.
pub fn expand_user(path: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}
