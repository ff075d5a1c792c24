//! Fatal-line scanning of engine logs: the lines that mean an engine aborted or cannot work.

use serde::Serialize;
use std::path::Path;

/// Substrings (matched case-insensitively) that mark a fatal engine log line.
const PATTERNS: &[&str] = &[
    "ggml_abort",
    "ggml_assert",
    "cuda error",
    "failed to load model",
    "segmentation fault",
    "terminate called",
    "out of memory",
    "error while loading",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FatalLine {
    /// 1-based line number in the log.
    pub line: usize,
    pub text: String,
}

pub fn is_fatal(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    PATTERNS.iter().any(|p| lower.contains(p))
}

/// Every fatal line in `text`, with its line number.
pub fn scan(text: &str) -> Vec<FatalLine> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| is_fatal(line))
        .map(|(i, line)| FatalLine {
            line: i + 1,
            text: line.trim().to_string(),
        })
        .collect()
}

/// Scan a log file; an unreadable file has no fatal lines.
pub fn scan_file(path: &Path) -> Vec<FatalLine> {
    std::fs::read(path)
        .map(|bytes| scan(&String::from_utf8_lossy(&bytes)))
        .unwrap_or_default()
}

/// Substrings (matched case-insensitively) of lines that name why an engine refused to start or
/// stopped, below the fatal ones: argument errors (`error while handling argument "--rope-scaling":
/// invalid value`) come before the usage text whose last line says nothing.
const ERROR_PATTERNS: &[&str] = &["error", "invalid", "unknown argument", "exception"];

/// The log's first line that says what went wrong: the first fatal line, else the first line
/// that mentions an error. The cause comes first; what follows it is consequence (usage text,
/// shutdown messages).
pub fn first_error_in(text: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let fatal = lines.clone().find(|l| is_fatal(l));
    let error = || {
        lines.find(|l| {
            let lower = l.to_ascii_lowercase();
            ERROR_PATTERNS.iter().any(|p| lower.contains(p))
        })
    };
    fatal.or_else(error).map(str::to_string)
}

/// [`first_error_in`] of a log file; an unreadable file has none.
pub fn first_error(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    first_error_in(&String::from_utf8_lossy(&bytes))
}

/// How a process ended, in words: `exited with status 1`, `was killed by signal 9 (SIGKILL)`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}{}", signal_name(signal)),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// The last `n` non-empty lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_aborts_asserts_and_load_failures() {
        let log = "main: loading\n/src/ggml.c:12: GGML_ASSERT(n > 0) failed\nok\nsrv load_model: failed to load model, 'x.gguf'\nCUDA error: out of memory\n";
        let lines: Vec<usize> = scan(log).iter().map(|f| f.line).collect();
        assert_eq!(lines, [2, 4, 5]);
        assert!(!is_fatal("llama_context: n_ctx = 4096"));
    }

    #[test]
    fn the_first_error_line_is_the_cause_not_the_usage_text_after_it() {
        // Regression: a bad flag showed the log's last line, "to show complete usage, run with -h".
        let log = "build: 11434 (unknown)\nerror while handling argument \"--rope-scaling\": invalid value\n\nusage:\n-h, --help  print usage and exit\n\nto show complete usage, run with -h\n";
        let first = first_error_in(log);
        assert_eq!(
            first.as_deref(),
            Some("error while handling argument \"--rope-scaling\": invalid value")
        );
        // A fatal line wins over an earlier ordinary error line.
        let log = "srv error: something\nGGML_ASSERT(x) failed\n";
        assert_eq!(
            first_error_in(log).as_deref(),
            Some("GGML_ASSERT(x) failed")
        );
        assert_eq!(first_error_in("all fine\n"), None);
    }

    #[test]
    fn exits_are_named_by_status_or_signal() {
        use std::os::unix::process::ExitStatusExt;
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(describe_exit(killed), "was killed by signal 9 (SIGKILL)");
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(describe_exit(exited), "exited with status 1");
    }
}
