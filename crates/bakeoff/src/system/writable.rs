//! Why a database location cannot be written: SQLite only says "unable to open database file",
//! so a probe of the file and its folder tells a read-only file system from a permission problem.

use crate::Error;
use std::io::ErrorKind;
use std::path::Path;

/// The error to show for a database that could not be opened at `db`, when the cause is its
/// location: a directory, or a place that cannot be written; `None` otherwise (the original
/// error then stands).
pub fn unwritable_db(db: &Path) -> Option<Error> {
    let hint = "pass --db PATH (or set BAKEOFF_DB) to a writable place";
    if db.is_dir() {
        let message = format!("the database {} is a directory", db.display());
        return Some(
            Error::input(message)
                .with_hint("pass --db naming a file, e.g. --db results/bakeoff.db"),
        );
    }
    let why = match probe(db).err()?.kind() {
        ErrorKind::ReadOnlyFilesystem => "read-only file system",
        ErrorKind::PermissionDenied => "permission denied",
        _ => return None,
    };
    let message = format!("cannot write the database {}: {why}", db.display());
    Some(Error::input(message).with_hint(hint))
}

/// Write access to the file (when it exists) and to the folder SQLite creates its journal in:
/// the nearest existing ancestor, where the folders would be created.
fn probe(db: &Path) -> std::io::Result<()> {
    if db.is_file() {
        std::fs::OpenOptions::new().append(true).open(db)?;
    }
    let folder = db
        .ancestors()
        .skip(1)
        .find(|a| a.as_os_str().is_empty() || a.is_dir())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = folder.join(format!(".bakeoff-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_place_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unwritable_db(&dir.path().join("a/b/x.db")).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let error = unwritable_db(dir.path()).expect("a directory");
        assert!(error.to_string().ends_with("is a directory"), "{error}");
    }

    #[test]
    fn an_unwritable_place_is_named_with_its_reason() {
        // /sys refuses new files even to root (permission denied, or read-only in containers).
        let error = unwritable_db(Path::new("/sys/bakeoff-test/x.db")).expect("unwritable");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot write the database /sys/bakeoff-test/x.db: "),
            "{message}"
        );
        assert!(error.hint().unwrap().contains("--db"));
    }
}
