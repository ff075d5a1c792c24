//! The user's model catalog: a TOML file of `[[model]]` entries (name, path, tags, optional draft
//! model and chat template) that `-m NAME`, name globs, `--category` and `bakeoff models list`
//! read. Default `~/.config/bakeoff/models.toml`, or `$BAKEOFF_MODELS`, or `--catalog FILE`.

use crate::formats::config_file;
use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One catalog entry. Paths are relative to the catalog's directory; `~/` is the home directory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A draft model for speculative decoding.
    #[serde(default)]
    pub draft: Option<PathBuf>,
    /// A chat template file (Jinja) to use instead of the GGUF's own.
    #[serde(default)]
    pub chat_template: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    model: Vec<Entry>,
}

/// The entries of one catalog file, in file order, with their paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub file: PathBuf,
    pub entries: Vec<Entry>,
}

/// `$BAKEOFF_MODELS`, else `$XDG_CONFIG_HOME/bakeoff/models.toml`, else `~/.config/bakeoff/models.toml`.
pub fn default_path() -> PathBuf {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(file) = set("BAKEOFF_MODELS") {
        return PathBuf::from(file);
    }
    let config = set("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = set("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".config")
        });
    config.join("bakeoff").join("models.toml")
}

impl Catalog {
    /// Read `file`; every error names the file (and the line and key where TOML says).
    pub fn read(file: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        Catalog::parse(&text, file)
    }

    /// Parse catalog text that came from `file` (which anchors relative paths).
    pub fn parse(text: &str, file: &Path) -> Result<Catalog> {
        let parsed: CatalogFile = config_file::parse(text, &file.display().to_string())?;
        let base = file.parent().unwrap_or(Path::new(""));
        let mut entries: Vec<Entry> = Vec::new();
        for mut entry in parsed.model {
            check_entry(&entries, &entry, file)?;
            entry.path = anchored(&entry.path, base);
            entry.draft = entry.draft.map(|p| anchored(&p, base));
            entry.chat_template = entry.chat_template.map(|p| anchored(&p, base));
            entries.push(entry);
        }
        let file = file.to_path_buf();
        Ok(Catalog { file, entries })
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Every entry's name, in file order, comma-separated (for "known: ..." messages).
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.join(", ")
    }

    /// Every tag some entry carries, sorted, each once.
    pub fn tags(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = self
            .entries
            .iter()
            .flat_map(|e| &e.tags)
            .map(String::as_str)
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }
}

fn check_entry(seen: &[Entry], entry: &Entry, file: &Path) -> Result<()> {
    let shown = file.display();
    let name = entry.name.trim();
    if name.is_empty() || name.contains(',') {
        let why = "a model name must be non-empty and hold no comma";
        return Err(Error::input(format!(
            "{shown}: model '{}': {why}",
            entry.name
        )));
    }
    if seen.iter().any(|e| e.name == entry.name) {
        let message = format!("{shown}: model '{}' is listed twice", entry.name);
        return Err(Error::input(message));
    }
    Ok(())
}

/// `~/x` under the home directory; a relative path under `base`.
fn anchored(path: &Path, base: &Path) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[model]]
name = "smollm"
path = "SmolLM2-135M-Instruct.Q4_1.gguf"
tags = ["smoke", "dense"]

[[model]]
name = "gemma"
path = "/models/gemma-3-270m-q4_k_m.gguf"
tags = ["smoke"]
draft = "draft.gguf"
"#;

    #[test]
    fn entries_keep_their_order_and_paths_are_anchored_at_the_catalog() {
        let catalog = Catalog::parse(TWO, Path::new("/etc/cat/models.toml")).unwrap();
        assert_eq!(catalog.names(), "smollm, gemma");
        let smollm = catalog.get("smollm").unwrap();
        assert_eq!(
            smollm.path,
            Path::new("/etc/cat/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        let gemma = catalog.get("gemma").unwrap();
        assert_eq!(gemma.path, Path::new("/models/gemma-3-270m-q4_k_m.gguf"));
        assert_eq!(
            gemma.draft.as_deref(),
            Some(Path::new("/etc/cat/draft.gguf"))
        );
        assert_eq!(catalog.tags(), ["dense", "smoke"]);
    }

    #[test]
    fn an_unknown_key_names_the_file_line_and_key() {
        let text = "[[model]]\nname = \"a\"\npath = \"a.gguf\"\ntag = [\"smoke\"]\n";
        let error = Catalog::parse(text, Path::new("models.toml")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("models.toml:4:1: unknown field 'tag'"),
            "{message}"
        );
        assert_eq!(error.hint().as_deref(), Some("did you mean 'tags'?"));
    }

    #[test]
    fn a_missing_path_and_a_duplicate_name_are_refused() {
        let error = Catalog::parse("[[model]]\nname = \"a\"\n", Path::new("m.toml")).unwrap_err();
        assert!(
            error.to_string().contains("missing field 'path'"),
            "{error}"
        );
        let twice =
            "[[model]]\nname = \"a\"\npath = \"x\"\n[[model]]\nname = \"a\"\npath = \"y\"\n";
        let error = Catalog::parse(twice, Path::new("m.toml")).unwrap_err();
        assert_eq!(error.to_string(), "m.toml: model 'a' is listed twice");
    }
}
