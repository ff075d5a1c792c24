//! Where bakeoff keeps things. `BAKEOFF_HOME` (default `~/.cache/bakeoff`) holds what set-up
//! installs: engines and models. The result store defaults to `~/.local/share/bakeoff/bakeoff.db`
//! and each run's files (engine logs) live in `NAME.runs/` beside a database `NAME.db`.

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

/// Per-run files (engine logs) live in `NAME.runs/<id>/` beside the database `NAME.db`: each
/// database its own folder, so two databases in one directory never share (or mix) run logs.
pub fn run_dir(db: &Path, run_id: i64) -> PathBuf {
    runs_dir(db).join(run_id.to_string())
}

/// The folder of a database's run files: `NAME.db` → `NAME.runs` (a name without an extension
/// gets `.runs` appended).
pub fn runs_dir(db: &Path) -> PathBuf {
    let stem = db.file_stem().unwrap_or(db.as_os_str());
    let mut name = stem.to_os_string();
    name.push(".runs");
    db.with_file_name(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_has_its_own_runs_folder() {
        // Regression: every database in a folder wrote its logs to the same `runs/<id>/`.
        let a = run_dir(Path::new("/data/a.db"), 1);
        let b = run_dir(Path::new("/data/b.db"), 1);
        assert_eq!(a, PathBuf::from("/data/a.runs/1"));
        assert_eq!(b, PathBuf::from("/data/b.runs/1"));
        assert_eq!(
            run_dir(Path::new("store"), 2),
            PathBuf::from("store.runs/2")
        );
    }
}
