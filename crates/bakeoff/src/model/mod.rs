//! Model intelligence from a GGUF file alone: architecture facts (`inspect`), a KV-cache and
//! memory planner that follows llama.cpp's own allocation rules (`plan`), its per-GPU split
//! (`split`), and the roofline.

pub mod catalog;
mod describe;
pub mod facts;
mod glob;
pub mod plan;
pub mod select;
pub mod split;
pub mod synth;

pub use facts::ModelFacts;

/// A model argument that can be read as a GGUF file: refused up front, naming the path, when it is
/// missing or a directory (a directory used to pass as "found" and fail later as a malformed GGUF),
/// or naming the bad byte when the file is truncated or corrupt.
pub fn check_file(path: &std::path::Path) -> crate::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        let message = format!("model {shown} is a directory, not a GGUF file");
        let hint =
            "pass the .gguf file inside it (a split model: its first part, *-00001-of-*.gguf)";
        return Err(crate::Error::input(message).with_hint(hint));
    }
    if path.is_file() {
        // A truncated or corrupt file is named here, at its bad byte, rather than as an engine
        // that will not start (the engine's log says only "failed to load model").
        crate::formats::gguf::GgufFile::open(path)?;
        return Ok(());
    }
    let hint = "`bakeoff doctor` lists installed models; scripts/setup installs two small ones";
    Err(crate::Error::input(format!("model file not found: {shown}")).with_hint(hint))
}

/// The model's trained context (GGUF `context_length`), when the file says.
pub fn trained_context(path: &std::path::Path) -> Option<u64> {
    let file = crate::formats::gguf::GgufFile::open(path).ok()?;
    ModelFacts::from_gguf(&file).context_length
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_or_a_missing_path_is_not_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let error = super::check_file(dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("is a directory, not a GGUF file"),
            "{error}"
        );
        let missing = dir.path().join("none.gguf");
        let error = super::check_file(&missing).unwrap_err();
        assert!(
            error.to_string().starts_with("model file not found: "),
            "{error}"
        );
        assert_eq!(error.exit_code(), 2);
    }
}
