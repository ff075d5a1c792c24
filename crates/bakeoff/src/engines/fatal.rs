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
}
