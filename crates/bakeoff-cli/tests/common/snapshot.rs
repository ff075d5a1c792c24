//! Snapshots of a command's whole result (success, exit code, stdout, stderr) with insta, in the
//! manner of uv's `crates/uv-test`: filters mask what differs between machines and runs (paths,
//! dates, hashes, pids, ports; and, for measured output, every figure), so a snapshot is stable.

use super::{run, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Masks every snapshot needs: paths, dates, hashes, pids, ports, bakeoff's version.
pub fn filters(sandbox: &Sandbox) -> Vec<(String, String)> {
    // The binary under test, wherever CARGO_TARGET_DIR put it.
    let exe = escape(env!("CARGO_BIN_EXE_bakeoff"));
    let mut filters = vec![(exe, "[WORKSPACE]/target/debug/bakeoff".to_string())];
    for (path, name) in [
        (sandbox.dir.path().to_path_buf(), "[TEMP]"),
        (super::cache_home(), "[CACHE]"),
        (workspace_root(), "[WORKSPACE]"),
    ] {
        for form in path_forms(&path) {
            filters.push((escape(&form), name.to_string()));
        }
    }
    let fixed = [
        // Dates and times, with or without seconds, fractions and zone.
        (
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( ?(UTC|Z|[+-]\d{2}:?\d{2}))?",
            "[DATE]",
        ),
        (r"\b\d{4}-\d{2}-\d{2}\b", "[DATE]"),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
        (r"\b[0-9a-f]{8,40}\b", "[HASH]"),
        (r"\bpid:? \d+", "pid [PID]"),
        (r"127\.0\.0\.1:\d+", "[LOCALHOST]:[PORT]"),
        (r#""(pid|port)": \d+"#, r#""$1": [N]"#),
        (&escape(env!("CARGO_PKG_VERSION")), "[VERSION]"),
        // The machine a run is recorded on (`runs show`).
        (r"(?m)^  host     .+$", "  host     [HOST]"),
    ];
    filters.extend(fixed.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    filters
}

/// [`filters`] plus masks for what a measurement varies: durations, rates, every decimal figure
/// (t/s, ms, CIs, p-values), percentile tuples in table cells, and the noise warnings a busy
/// machine adds. Other integers stay: counts of tokens, requests and trials are exact.
pub fn measured_filters(sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut filters = self::filters(sandbox);
    let figures = [
        // Noise markers come and go with the machine's load: a bench progress line's trailing
        // `  [marker; marker]` goes whole (a line whose first marker was not `noisy:` used to vanish).
        (
            r"(?m)^(  \[\d+/\d+ eta \d+s\] .+? rep \d+: \S+ \S+)  \[.*\]$",
            "${1}",
        ),
        (r" *\[noisy: [^\]]*\]", ""),
        (r"(?m)^.*\bnoisy: .*\n", ""),
        (r"\b\d+(\.\d+)?\s?(ms|µs|us|ns|s|min)\b", "[TIME]"),
        (r"\b\d+(\.\d+)?\s?(t/s|tok/s|req/s)", "[RATE]"),
        (r"[±+-]?\b\d+\.\d+(e[+-]?\d+)?%?", "[N]"),
        // Percentile tuples in a cell, `| 1777 / 4017 / 4844 |` (the last step twice: neighbouring
        // matches would share a `/`).
        (r"\| \d+ / ", "| [N] / "),
        (r" / \d+( /| \|)", " / [N]${1}"),
        (r" / \d+( /| \|)", " / [N]${1}"),
        // Measured peak memory and its distance from the plan (`412 MiB (+3 MiB, [N] %)`).
        (r"[+-]?\b\d+ MiB", "[MEM]"),
    ];
    filters.extend(figures.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    filters
}

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path as written and as resolved (temporary directories and caches may be symlinks).
fn path_forms(path: &Path) -> Vec<String> {
    let mut forms = Vec::new();
    if let Ok(real) = path.canonicalize() {
        forms.push(real.display().to_string());
    }
    forms.push(path.display().to_string());
    forms.dedup();
    forms
}

/// `text` as a regex matching itself (ASCII punctuation escaped).
pub fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_punctuation() && c != '_' && c != '-' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Run `cmd` (bounded by `limit`) and lay its result out as uv's snapshots do.
pub fn run_and_format(cmd: Command, limit: Duration) -> String {
    let (status, stdout, stderr) = run(cmd, limit);
    format!(
        "success: {}\nexit_code: {}\n----- stdout -----\n{stdout}\n----- stderr -----\n{stderr}",
        status.success(),
        status.code().map_or("none".to_string(), |c| c.to_string()),
    )
}

/// insta settings applying `filters`, snapshots kept in `tests/snapshots/`.
pub fn settings(filters: &[(String, String)]) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (pattern, replacement) in filters {
        settings.add_filter(pattern, replacement.clone());
    }
    settings
}

/// `bakeoff_snapshot!(name, filters, cmd)`: run `cmd` (5 minutes at most), snapshot its result
/// into `tests/snapshots/NAME.snap` under `filters`, and return the formatted (unfiltered) text.
#[macro_export]
macro_rules! bakeoff_snapshot {
    ($name:expr, $filters:expr, $cmd:expr) => {{
        let text = common::snapshot::run_and_format($cmd, std::time::Duration::from_secs(300));
        common::snapshot::settings(&$filters).bind(|| {
            insta::assert_snapshot!($name, text.clone());
        });
        text
    }};
}
