//! Which model files a run measures: `-m a.gguf,b.gguf`, a glob, a directory of GGUF files, or
//! entries of the user's model catalog chosen by name glob, `--category` and `--max-size`.
//!
//! Each comma-separated item is, in this order: a glob (a file glob when it has a `/` or ends in
//! `.gguf`, else a catalog name glob, then a file glob in the working directory), a directory
//! (its `*.gguf`, sorted), an existing file, a catalog name (an item with no `/` and no
//! `.gguf`), or a bare file name looked up in the model cache.

use super::catalog::{self, Catalog, Entry};
use super::glob;
use crate::domain::units::human_bytes;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// The model cache where bare file names are looked up (`system::paths::models_dir`).
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
}

/// One selected model: its file and, when it came from the catalog, its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub path: PathBuf,
    pub entry: Option<Entry>,
}

impl Selected {
    fn file(path: PathBuf) -> Self {
        Selected { path, entry: None }
    }

    fn of(entry: &Entry) -> Self {
        let path = entry.path.clone();
        Selected {
            path,
            entry: Some(entry.clone()),
        }
    }

    /// The catalog name, else the file name.
    pub fn name(&self) -> String {
        match &self.entry {
            Some(entry) => entry.name.clone(),
            None => self
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        }
    }
}

/// The files `query` names, in the order given, each once.
pub fn resolve(query: &ModelQuery) -> Result<Vec<PathBuf>> {
    Ok(select(query)?.into_iter().map(|s| s.path).collect())
}

/// The models `query` names, in the order given, each once, with their catalog entries.
pub fn select(query: &ModelQuery) -> Result<Vec<Selected>> {
    let mut catalog = CatalogSource::new(query.catalog.clone());
    let picked = match query.spec.as_deref() {
        Some(spec) => from_spec(spec, query, &mut catalog)?,
        None if query.category.is_some() || query.catalog.is_some() => everything(&mut catalog)?,
        None => {
            let message = "no model: pass --model FILE (or `model` in --config)";
            return Err(Error::input(message));
        }
    };
    let picked = by_category(picked, query.category.as_deref(), &mut catalog)?;
    by_size(picked, query.max_size)
}

/// A bare file name (one component, not a file here) found in `models_dir`; else `path` itself.
pub fn cached(path: &Path, models_dir: &Path) -> PathBuf {
    let candidate = models_dir.join(path);
    let bare = !path.exists() && path.components().count() == 1;
    match bare && candidate.exists() {
        true => candidate,
        false => path.to_path_buf(),
    }
}

/// Refuses two names for one file: `files` pairs each path with its sha256.
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

/// Check that each of `files` is a readable GGUF and that no two are the same file under two
/// names; `sha256` gives a file's hash (the store caches it by path, size and mtime).
pub fn distinct(files: &[PathBuf], sha256: impl Fn(&Path) -> Result<String>) -> Result<()> {
    let mut hashed = Vec::new();
    for file in files {
        super::check_file(file)?;
        hashed.push((file.clone(), sha256(file)?));
    }
    duplicates(&hashed)
}

fn from_spec(spec: &str, query: &ModelQuery, catalog: &mut CatalogSource) -> Result<Vec<Selected>> {
    let mut picked: Vec<Selected> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        for found in from_item(item, query, catalog)? {
            if !picked.iter().any(|p| p.path == found.path) {
                picked.push(found);
            }
        }
    }
    if picked.is_empty() {
        return Err(Error::input(format!("--model {spec}: names no file")));
    }
    Ok(picked)
}

fn from_item(item: &str, query: &ModelQuery, catalog: &mut CatalogSource) -> Result<Vec<Selected>> {
    let path = home_expanded(item);
    if glob::is_glob(item) {
        return from_glob(item, &path, catalog);
    }
    if path.is_dir() {
        return Ok(gguf_files_in(&path)?
            .into_iter()
            .map(Selected::file)
            .collect());
    }
    if path.exists() {
        return Ok(vec![Selected::file(path)]);
    }
    if is_name(item) {
        return catalog.named(item).map(|entry| vec![Selected::of(&entry)]);
    }
    let cache = query.models_dir.as_deref().unwrap_or(Path::new(""));
    Ok(vec![Selected::file(cached(&path, cache))])
}

/// A catalog name has no path separator and no `.gguf` ending.
pub fn is_name(item: &str) -> bool {
    !item.contains('/') && !item.ends_with(".gguf")
}

fn from_glob(item: &str, path: &Path, catalog: &mut CatalogSource) -> Result<Vec<Selected>> {
    if is_name(item) {
        let entries = catalog.matching(item)?;
        if !entries.is_empty() {
            return Ok(entries.iter().map(Selected::of).collect());
        }
    }
    let files = file_glob(item, path)?;
    if files.is_empty() {
        let place = match is_name(item) {
            true => "no catalog name and no file here".to_string(),
            false => format!("no file in {}", shown_dir(path).display()),
        };
        return Err(Error::input(format!(
            "model '{item}': the glob matches {place}"
        )));
    }
    Ok(files.into_iter().map(Selected::file).collect())
}

/// Files (not directories) in the glob's directory whose names match its file-name part, sorted.
fn file_glob(item: &str, path: &Path) -> Result<Vec<PathBuf>> {
    let dir = shown_dir(path);
    let pattern = path.file_name().unwrap_or_default().to_string_lossy();
    if glob::is_glob(&dir.to_string_lossy()) {
        let message =
            format!("model '{item}': a glob may only be in the file name, not the directory");
        return Err(Error::input(message));
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let name_matches = |p: &PathBuf| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        p.is_file() && glob::matches(&pattern, &name)
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(name_matches)
        .collect();
    files.sort();
    Ok(files.into_iter().map(|f| strip_dot(f, path)).collect())
}

/// The directory part of `path`; `.` for a bare name.
fn shown_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file found by a bare-name glob, named as the user would (`a.gguf`, not `./a.gguf`).
fn strip_dot(file: PathBuf, pattern: &Path) -> PathBuf {
    match pattern.components().count() {
        1 => file
            .strip_prefix(".")
            .map(Path::to_path_buf)
            .unwrap_or(file),
        _ => file,
    }
}

fn home_expanded(item: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (item.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(item),
    }
}

fn gguf_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    if files.is_empty() {
        let message = format!("{}: a directory with no .gguf file", dir.display());
        return Err(Error::input(message));
    }
    Ok(files)
}

fn everything(catalog: &mut CatalogSource) -> Result<Vec<Selected>> {
    let catalog = catalog.get()?;
    if catalog.entries.is_empty() {
        let message = format!("{}: the catalog lists no model", catalog.file.display());
        return Err(Error::input(message));
    }
    Ok(catalog.entries.iter().map(Selected::of).collect())
}

/// `--category TAG` keeps the catalog entries carrying it (plain files are kept as given).
fn by_category(
    picked: Vec<Selected>,
    tag: Option<&str>,
    catalog: &mut CatalogSource,
) -> Result<Vec<Selected>> {
    let Some(tag) = tag else { return Ok(picked) };
    let catalog = catalog.get()?;
    if !catalog.tags().contains(&tag) {
        let known = catalog.tags().join(", ");
        let file = catalog.file.display();
        return Err(Error::input(format!(
            "--category {tag}: no model in {file} carries this tag (tags: {known})"
        )));
    }
    let carries = |s: &Selected| {
        s.entry
            .as_ref()
            .is_none_or(|e| e.tags.iter().any(|t| t == tag))
    };
    let kept: Vec<Selected> = picked.into_iter().filter(carries).collect();
    if kept.is_empty() {
        return Err(Error::input(format!(
            "--category {tag}: none of the selected models carries this tag"
        )));
    }
    Ok(kept)
}

/// `--max-size` keeps models no larger than the limit (a file that cannot be read is kept, so
/// that the command names what is wrong with it).
fn by_size(picked: Vec<Selected>, limit: Option<u64>) -> Result<Vec<Selected>> {
    let Some(limit) = limit else {
        return Ok(picked);
    };
    let size = |s: &Selected| std::fs::metadata(&s.path).map(|m| m.len()).ok();
    let (kept, dropped): (Vec<Selected>, Vec<Selected>) = picked
        .into_iter()
        .partition(|s| size(s).is_none_or(|n| n <= limit));
    if kept.is_empty() {
        let smallest = dropped.iter().filter_map(size).min().unwrap_or(0);
        let (limit, smallest) = (human_bytes(limit), human_bytes(smallest));
        let message = format!(
            "--max-size {limit}: every selected model is larger (the smallest is {smallest})"
        );
        return Err(Error::input(message));
    }
    Ok(kept)
}

/// The catalog, read on first need (a command naming only files never reads it).
struct CatalogSource {
    file: Option<PathBuf>,
    loaded: Option<Catalog>,
}

impl CatalogSource {
    fn new(file: Option<PathBuf>) -> Self {
        CatalogSource { file, loaded: None }
    }

    fn get(&mut self) -> Result<&Catalog> {
        let catalog = match self.loaded.take() {
            Some(catalog) => catalog,
            None => read_catalog(&self.file.clone().unwrap_or_else(catalog::default_path))?,
        };
        Ok(self.loaded.insert(catalog))
    }

    fn named(&mut self, name: &str) -> Result<Entry> {
        let file = self.file.clone().unwrap_or_else(catalog::default_path);
        if self.file.is_none() && !file.exists() {
            let message = format!(
                "model '{name}': no such file, and no model catalog at {}",
                file.display()
            );
            let hint = "a catalog names models: see examples/models.toml (--catalog FILE or $BAKEOFF_MODELS)";
            return Err(Error::input(message).with_hint(hint));
        }
        let catalog = self.get()?;
        let known = catalog.names();
        let file = catalog.file.display();
        let message =
            format!("model '{name}': no such file, nor a name in {file} (known: {known})");
        catalog
            .get(name)
            .cloned()
            .ok_or_else(|| Error::input(message))
    }

    /// Entries whose names match `pattern`; none when there is no catalog at the default place.
    fn matching(&mut self, pattern: &str) -> Result<Vec<Entry>> {
        if self.file.is_none() && !catalog::default_path().exists() {
            return Ok(Vec::new());
        }
        let catalog = self.get()?;
        let matching = catalog
            .entries
            .iter()
            .filter(|e| glob::matches(pattern, &e.name));
        Ok(matching.cloned().collect())
    }
}

fn read_catalog(file: &Path) -> Result<Catalog> {
    Catalog::read(file).map_err(|error| match error {
        Error::Io { .. } if !file.exists() => {
            let message = format!("model catalog {} not found", file.display());
            Error::input(message).with_hint("see examples/models.toml for the format")
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            std::fs::write(dir.path().join(file), file.as_bytes()).unwrap();
        }
        dir
    }

    fn query(spec: &str) -> ModelQuery {
        let spec = Some(spec.to_string());
        ModelQuery {
            spec,
            ..Default::default()
        }
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        paths.iter().map(name).collect()
    }

    #[test]
    fn a_comma_list_keeps_its_order_and_names_each_file_once() {
        let dir = dir_with(&["b.gguf", "a.gguf"]);
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        let spec = format!("{},{},{}", b.display(), a.display(), b.display());
        assert_eq!(resolve(&query(&spec)).unwrap(), [b, a]);
    }

    #[test]
    fn a_glob_and_a_directory_give_their_gguf_files_sorted() {
        let dir = dir_with(&["m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-Q4_0.gguf", "notes.txt"]);
        let glob = format!("{}/*Q4*.gguf", dir.path().display());
        assert_eq!(
            names(&resolve(&query(&glob)).unwrap()),
            ["m-Q4_0.gguf", "m-Q4_K_M.gguf"]
        );
        let all = resolve(&query(&dir.path().display().to_string())).unwrap();
        assert_eq!(names(&all), ["m-Q4_0.gguf", "m-Q4_K_M.gguf", "m-Q8_0.gguf"]);
    }

    #[test]
    fn a_glob_matching_nothing_and_a_directory_without_gguf_are_one_line_errors() {
        let dir = dir_with(&["notes.txt"]);
        let glob = format!("{}/*.gguf", dir.path().display());
        let error = resolve(&query(&glob)).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "model '{glob}': the glob matches no file in {}",
                dir.path().display()
            )
        );
        let error = resolve(&query(&dir.path().display().to_string())).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with(": a directory with no .gguf file"),
            "{error}"
        );
    }

    #[test]
    fn a_bare_file_name_is_found_in_the_model_cache() {
        let dir = dir_with(&["cached-model.gguf"]);
        let mut query = query("cached-model.gguf");
        query.models_dir = Some(dir.path().to_path_buf());
        assert_eq!(
            resolve(&query).unwrap(),
            [dir.path().join("cached-model.gguf")]
        );
        // A name in neither place is passed on as typed, for `check_file` to name.
        query.spec = Some("absent.gguf".into());
        assert_eq!(resolve(&query).unwrap(), [PathBuf::from("absent.gguf")]);
    }

    fn catalog_dir() -> tempfile::TempDir {
        let dir = dir_with(&["small.gguf", "big.gguf", "coder.gguf"]);
        std::fs::write(dir.path().join("big.gguf"), vec![0u8; 4096]).unwrap();
        let text = r#"
[[model]]
name = "small"
path = "small.gguf"
tags = ["smoke", "dense"]
[[model]]
name = "big"
path = "big.gguf"
tags = ["moe"]
[[model]]
name = "coder-7b"
path = "coder.gguf"
tags = ["coder", "dense"]
"#;
        std::fs::write(dir.path().join("models.toml"), text).unwrap();
        dir
    }

    fn catalog_query(dir: &tempfile::TempDir, spec: Option<&str>) -> ModelQuery {
        ModelQuery {
            spec: spec.map(str::to_string),
            catalog: Some(dir.path().join("models.toml")),
            ..Default::default()
        }
    }

    #[test]
    fn catalog_names_name_globs_categories_and_sizes_select_entries() {
        let dir = catalog_dir();
        let pick = |q: &ModelQuery| names(&resolve(q).unwrap());
        assert_eq!(
            pick(&catalog_query(&dir, Some("big,small"))),
            ["big.gguf", "small.gguf"]
        );
        assert_eq!(pick(&catalog_query(&dir, Some("coder-*"))), ["coder.gguf"]);
        let mut dense = catalog_query(&dir, None);
        dense.category = Some("dense".into());
        assert_eq!(pick(&dense), ["small.gguf", "coder.gguf"]);
        let mut small = catalog_query(&dir, None);
        small.max_size = Some(1024);
        assert_eq!(pick(&small), ["small.gguf", "coder.gguf"]);
        let selected = select(&catalog_query(&dir, Some("small"))).unwrap();
        assert_eq!(selected[0].entry.as_ref().unwrap().tags, ["smoke", "dense"]);
    }

    #[test]
    fn an_unknown_name_or_category_lists_the_known_ones() {
        let dir = catalog_dir();
        let error = resolve(&catalog_query(&dir, Some("smal")))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("(known: small, big, coder-7b)"), "{error}");
        assert!(
            error.starts_with("model 'smal': no such file, nor a name in "),
            "{error}"
        );
        let mut query = catalog_query(&dir, None);
        query.category = Some("vision".into());
        let error = resolve(&query).unwrap_err().to_string();
        assert!(
            error.starts_with("--category vision: no model in "),
            "{error}"
        );
        assert!(
            error.ends_with("(tags: coder, dense, moe, smoke)"),
            "{error}"
        );
        let mut query = catalog_query(&dir, None);
        query.max_size = Some(1);
        let error = resolve(&query).unwrap_err().to_string();
        assert_eq!(
            error,
            "--max-size 1 B: every selected model is larger (the smallest is 10 B)"
        );
    }

    #[test]
    fn one_file_under_two_names_is_refused() {
        let files = [
            (PathBuf::from("a.gguf"), "abcd1234ffff".to_string()),
            (PathBuf::from("b.gguf"), "0000".to_string()),
            (PathBuf::from("copy-of-a.gguf"), "abcd1234ffff".to_string()),
        ];
        let error = duplicates(&files).unwrap_err().to_string();
        assert_eq!(
            error,
            "a.gguf and copy-of-a.gguf are the same model (sha256 abcd1234…)"
        );
        assert!(duplicates(&files[..2]).is_ok());
    }
}
