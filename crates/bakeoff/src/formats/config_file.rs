//! Settings files (experiments, candidates, gates, tasks, canaries) read through serde, with every
//! error as `file:line:col: message` and a `hint:` when an unknown key has a close known spelling.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Read and deserialize a TOML file.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, &path.display().to_string())
}

/// Deserialize TOML text; `origin` names it in errors.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| to_error(&e, text, origin))
}

/// A TOML error as one line naming the file and position, plus a hint for a misspelled key.
pub fn to_error(error: &toml::de::Error, text: &str, origin: &str) -> Error {
    // serde quotes names in backticks; plain quotes read better on a terminal.
    // One line: toml puts what it expected on a line of its own.
    let message = error.message().trim().replace('`', "'");
    let message = message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(", ");
    let hint = suggestion(&message);
    let (position, field) = match error.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            (format!("{origin}:{line}:{col}"), field_at(text, span.start))
        }
        None => (origin.to_string(), None),
    };
    // An unknown key is itself the subject of its message; every other error says which key.
    let error = match field {
        Some(field) if !message.starts_with("unknown field") => {
            Error::input(format!("{position}: {field}: {message}"))
        }
        _ => Error::input(format!("{position}: {message}")),
    };
    match hint {
        Some(close) => error.with_hint(format!("did you mean '{close}'?")),
        None => error,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The dotted key (`matrix.b`, `candidate.flags`) whose value starts at or spans `offset`, read
/// from the text: toml's errors carry the key only in their multi-line rendering.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let (head, current) = before.rsplit_once('\n').unwrap_or(("", before));
    let key = key_of(current).or_else(|| {
        // A value inside a multi-line array: the key is on the line that opened it.
        head.lines()
            .rev()
            .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('['))
            .find_map(|l| key_of(l).filter(|_| l.contains('[')))
    })?;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key,
    })
}

/// `key` of a `key = ...` line (bare or quoted, possibly dotted).
fn key_of(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || "-_.\"' ".contains(c);
    (!key.is_empty() && !key.starts_with('[') && key.chars().all(bare)).then(|| key.to_string())
}

/// For "unknown field 'x', expected one of 'a', 'b'" (or variant, check, ...): the closest
/// expected name.
fn suggestion(message: &str) -> Option<String> {
    if !message.starts_with("unknown ") || !message.contains("expected") {
        return None;
    }
    let mut quoted = message.split('\'').skip(1).step_by(2);
    let given = quoted.next()?;
    quoted
        .map(|name| (edit_distance(given, name), name))
        .filter(|(distance, name)| *distance <= 2.max(name.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name.to_string())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only the errors are tested")]
    struct Sample {
        reps: Option<u32>,
        warmup: Option<u32>,
        #[serde(default)]
        matrix: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only the errors are tested")]
    struct Inner {
        kv: Option<String>,
    }

    fn error_of(text: &str) -> (String, Option<String>) {
        let error = parse::<Sample>(text, "experiment.toml").unwrap_err();
        (error.to_string(), error.hint())
    }

    #[test]
    fn unknown_key_names_file_line_and_column_with_a_hint() {
        let (message, hint) = error_of("warmup = 1\nrep = 5\n");
        assert!(
            message.starts_with("experiment.toml:2:1: unknown field 'rep', expected one of"),
            "{message}"
        );
        assert_eq!(hint.as_deref(), Some("did you mean 'reps'?"));
    }

    #[test]
    fn unknown_key_in_a_table_points_into_the_table() {
        let (message, hint) = error_of("reps = 3\n[matrix]\n  kb = \"f16\"\n");
        assert!(
            message.starts_with("experiment.toml:3:3: unknown field 'kb'"),
            "{message}"
        );
        assert_eq!(hint.as_deref(), Some("did you mean 'kv'?"));
    }

    #[test]
    fn a_key_far_from_every_name_has_no_hint() {
        let (message, hint) = error_of("banana = 1\n");
        assert!(message.contains("unknown field 'banana'"), "{message}");
        assert_eq!(hint, None);
    }

    #[test]
    fn wrong_type_and_bad_syntax_name_the_position() {
        let (message, _) = error_of("reps = \"many\"\n");
        assert!(message.starts_with("experiment.toml:1:8: "), "{message}");
        let (message, _) = error_of("reps = 3\nwarmup = = 1\n");
        assert!(message.starts_with("experiment.toml:2:"), "{message}");
    }

    #[test]
    fn a_wrong_type_names_its_field() {
        let (message, _) = error_of("warmup = 1\n\nreps = \"five\"\n");
        assert!(
            message.starts_with("experiment.toml:3:8: reps: invalid type: string \"five\""),
            "{message}"
        );
        let (message, _) = error_of("[matrix]\nkv = 5\n");
        assert!(
            message.starts_with("experiment.toml:2:6: matrix.kv: invalid type: integer"),
            "{message}"
        );
    }

    #[test]
    fn the_field_of_a_position_comes_from_its_line_or_the_array_it_is_in() {
        let text = "reps = 1\n[[candidate]]\nflags = [\n  \"-fa\",\n  3,\n]\n";
        let offset = text.find('3').unwrap();
        assert_eq!(field_at(text, offset).as_deref(), Some("candidate.flags"));
        assert_eq!(field_at(text, 7).as_deref(), Some("reps"));
        assert_eq!(field_at("[gate\n", 5), None);
        assert_eq!(field_at("[a]\n\n", 5), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("rep", "reps"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
