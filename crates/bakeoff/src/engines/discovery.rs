//! Finding llama.cpp builds: an explicit `--engine-path`, the set-up cache, then `PATH`.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The llama.cpp tools bakeoff drives.
pub const TOOLS: [&str; 4] = [
    "llama-server",
    "llama-bench",
    "llama-perplexity",
    "llama-quantize",
];

/// One llama.cpp build: a directory holding (some of) its tools.
#[derive(Debug, Clone, Serialize)]
pub struct LlamaCppInstall {
    pub bin_dir: PathBuf,
    /// Where it was found: `--engine-path`, `cache` or `PATH`.
    pub source: String,
    /// e.g. `11434 (unknown)` as `llama-server --version` prints it.
    pub version: Option<String>,
    pub build_number: Option<u64>,
    pub commit: Option<String>,
    /// e.g. `built with GNU 12.2.0 for Linux x86_64`.
    pub built_with: Option<String>,
    /// Which of [`TOOLS`] are present.
    pub tools: Vec<String>,
}

impl LlamaCppInstall {
    pub fn tool(&self, name: &str) -> Option<PathBuf> {
        let path = self.bin_dir.join(name);
        path.is_file().then_some(path)
    }

    fn probe(bin_dir: &Path, source: &str) -> Option<Self> {
        let tools: Vec<String> = TOOLS
            .iter()
            .filter(|t| bin_dir.join(t).is_file())
            .map(|t| t.to_string())
            .collect();
        if tools.is_empty() {
            return None;
        }
        let mut install = LlamaCppInstall {
            bin_dir: bin_dir.to_path_buf(),
            source: source.to_string(),
            version: None,
            build_number: None,
            commit: None,
            built_with: None,
            tools,
        };
        let probe_tool = install.tools[0].clone();
        if let Ok(output) = Command::new(bin_dir.join(&probe_tool))
            .arg("--version")
            .output()
        {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            install.apply_version_text(&text);
        }
        Some(install)
    }

    fn apply_version_text(&mut self, text: &str) {
        let info = VersionInfo::parse(text);
        self.version = info.version;
        self.build_number = info.build_number;
        self.commit = info.commit;
        self.built_with = info.built_with.or(self.built_with.take());
    }

    /// `llama.cpp b11434 (cpu)`-style label.
    pub fn label(&self) -> String {
        match self.build_number {
            Some(b) => format!("llama.cpp b{b} ({})", self.bin_dir.display()),
            None => format!("llama.cpp ({})", self.bin_dir.display()),
        }
    }
}

/// What a llama.cpp tool's `--version` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// e.g. `0.6.0-dev`, or `11434` from older builds.
    pub version: Option<String>,
    pub build_number: Option<u64>,
    pub commit: Option<String>,
    /// e.g. `built with GNU 12.2.0 for Linux x86_64`.
    pub built_with: Option<String>,
}

impl VersionInfo {
    /// Parse `version: 0.6.0-dev (build 11434, commit unknown)` (or the older
    /// `version: 11434 (abcdef0)`) and `built with ...` lines; the last of each wins.
    pub fn parse(text: &str) -> VersionInfo {
        let mut info = VersionInfo::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("version:") {
                let built_with = info.built_with.take();
                info = VersionInfo::parse_version_line(rest.trim());
                info.built_with = built_with;
            } else if line.starts_with("built with") {
                info.built_with = Some(line.to_string());
            }
        }
        info
    }

    fn parse_version_line(rest: &str) -> VersionInfo {
        let (head, paren) = match rest.split_once('(') {
            Some((head, paren)) => (head.trim(), paren.trim_end_matches(')')),
            None => (rest, ""),
        };
        let mut info = VersionInfo {
            version: Some(head.to_string()),
            ..VersionInfo::default()
        };
        for part in paren.split(',').map(str::trim) {
            if let Some(build) = part.strip_prefix("build ") {
                info.build_number = build.trim().parse().ok();
            } else if let Some(commit) = part.strip_prefix("commit ") {
                info.commit = Some(commit.trim().to_string());
            }
        }
        if info.build_number.is_none() {
            // Older builds: `version: 11434 (abcdef0)`.
            info.build_number = head.parse().ok();
            info.commit = Some(paren.to_string()).filter(|c| !c.is_empty());
        }
        info
    }

    /// True when a `version:` line was found.
    pub fn found(&self) -> bool {
        self.version.is_some()
    }
}

/// Every llama.cpp build we can find, best first: `explicit` (a tool or a directory), then the
/// set-up cache (`$BAKEOFF_HOME/engines/*/bin`), then `PATH`.
pub fn discover(explicit: Option<&Path>) -> Vec<LlamaCppInstall> {
    let mut found: Vec<LlamaCppInstall> = Vec::new();
    let mut push = |dir: &Path, source: &str| {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if found.iter().any(|f| f.bin_dir == canonical) {
            return;
        }
        if let Some(install) = LlamaCppInstall::probe(&canonical, source) {
            found.push(install);
        }
    };
    if let Some(path) = explicit {
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        push(dir, "--engine-path");
    }
    if let Ok(entries) = std::fs::read_dir(crate::system::paths::engines_dir()) {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        newest_first(&mut dirs);
        for dir in dirs.iter().map(|d| d.join("bin")) {
            push(&dir, "cache");
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("llama-server").is_file() || dir.join("llama-bench").is_file() {
                push(&dir, "PATH");
            }
        }
    }
    found
}

/// Order set-up cache entries (`llama.cpp-b11434-cpu`, `llama.cpp-b10798-cpu`) newest build first,
/// so that installing an older second build does not change which build is used by default.
fn newest_first(dirs: &mut [PathBuf]) {
    dirs.sort_by_key(|dir| {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        (std::cmp::Reverse(build_number_in_name(&name)), dir.clone())
    });
}

/// `11434` from `llama.cpp-b11434-cpu`.
fn build_number_in_name(name: &str) -> Option<u64> {
    name.split('-')
        .filter_map(|part| part.strip_prefix('b'))
        .find_map(|digits| digits.parse().ok())
}

/// The best install providing `tool`, honouring an explicit `--engine-path`.
pub fn find_tool(explicit: Option<&Path>, tool: &str) -> crate::Result<(LlamaCppInstall, PathBuf)> {
    let installs = discover(explicit);
    if let Some(path) = explicit {
        let install = installs.into_iter().find(|i| i.source == "--engine-path");
        return install
            .and_then(|i| i.tool(tool).map(|t| (i, t)))
            .ok_or_else(|| missing_explicit(path, tool));
    }
    installs
        .into_iter()
        .find_map(|i| i.tool(tool).map(|t| (i, t)))
        .ok_or_else(|| {
            crate::Error::engine(format!(
                "no {tool} found (looked in --engine-path, {}, PATH)",
                crate::system::paths::engines_dir().display()
            ))
            .with_hint("run scripts/setup to build llama.cpp into the cache, or pass --engine-path")
        })
}

/// `--engine-path` that does not lead to `tool`: a path that does not exist is said so.
fn missing_explicit(path: &Path, tool: &str) -> crate::Error {
    let shown = path.display();
    let hint = "give a llama.cpp build's bin directory (holding llama-server, llama-bench ...) or the path of one tool";
    let message = match path.exists() {
        true => format!("--engine-path {shown}: no {tool} there"),
        false => format!("--engine-path {shown}: no such file or directory"),
    };
    crate::Error::input(message).with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_path_that_leads_nowhere_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = find_tool(Some(dir.path()), "llama-server").unwrap_err();
        assert!(
            error.to_string().ends_with(": no llama-server there"),
            "{error}"
        );
        let missing = dir.path().join("build/bin");
        let error = find_tool(Some(&missing), "llama-server").unwrap_err();
        assert!(
            error.to_string().ends_with(": no such file or directory"),
            "{error}"
        );
        assert!(error.hint().is_some());
    }

    #[test]
    fn the_newest_cached_build_comes_first() {
        // Regression: sorting by name put a second, older build (b10798) before b11434.
        let mut dirs: Vec<PathBuf> = ["llama.cpp-b10798-cpu", "custom", "llama.cpp-b11434-cpu"]
            .iter()
            .map(PathBuf::from)
            .collect();
        newest_first(&mut dirs);
        let names: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            names,
            ["llama.cpp-b11434-cpu", "llama.cpp-b10798-cpu", "custom"]
        );
    }

    #[test]
    fn version_info_reads_the_last_version_line_after_other_output() {
        let text = "ggml_cuda_init: found 1 CUDA devices:\nversion: 0.6.0-dev (build 10798, commit abc1234)\nbuilt with GNU 12.2.0 for Linux x86_64\n";
        let info = VersionInfo::parse(text);
        assert_eq!(info.build_number, Some(10798));
        assert_eq!(info.commit.as_deref(), Some("abc1234"));
        assert!(info.found());
        assert!(!VersionInfo::parse("usage: llama-server [options]").found());
    }

    #[test]
    fn parses_version_output() {
        let mut install = LlamaCppInstall {
            bin_dir: PathBuf::new(),
            source: String::new(),
            version: None,
            build_number: None,
            commit: None,
            built_with: None,
            tools: vec![],
        };
        install.apply_version_text("version: 0.6.0-dev (build 11434, commit unknown)\nbuilt with GNU 12.2.0 for Linux x86_64\n");
        assert_eq!(install.version.as_deref(), Some("0.6.0-dev"));
        assert_eq!(install.build_number, Some(11434));
        assert_eq!(install.commit.as_deref(), Some("unknown"));
        install.apply_version_text("version: 4567 (abcdef0)\n");
        assert_eq!(
            (install.build_number, install.commit.as_deref()),
            (Some(4567), Some("abcdef0"))
        );
        assert_eq!(
            install.built_with.as_deref(),
            Some("built with GNU 12.2.0 for Linux x86_64")
        );
    }
}
