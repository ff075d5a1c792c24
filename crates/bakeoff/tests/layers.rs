//! The library's layers (shared/DESIGN.md): a module may use its own layer and those below it,
//! never one above. Scans every `crate::` path in `src/` — `use` lines, grouped `crate::{a, b}`
//! imports and inline paths alike — and names the file, line and both modules of each violation.

use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first; modules of one entry share a layer.
const LAYERS: [&[&str]; 10] = [
    &["domain", "error"],
    &["formats"],
    &["model", "chat"],
    &["system"],
    &["engines"],
    &["measure"],
    &["quality"],
    &["search"],
    &["store"],
    &["analysis", "report", "serve", "session"],
];

/// Items `lib.rs` defines or re-exports at the crate root, with the layer they belong to.
const ROOT_ITEMS: [(&str, &str); 3] = [
    ("Error", "error"),
    ("Result", "error"),
    ("VERSION", "domain"),
];

fn layer_of(module: &str) -> Option<usize> {
    let module = ROOT_ITEMS
        .iter()
        .find(|(item, _)| *item == module)
        .map_or(module, |(_, owner)| owner);
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/measure/load/mod.rs` → `measure`.
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// A line without its `//` comment (a crude cut that is enough for this code base's paths).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The leading identifier of `text`.
fn ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(|c: char| !is_ident(c)).unwrap_or(text.len());
    &text[..end]
}

/// The first identifier of each item of a `{ … }` group starting at `text` (nested groups skipped).
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (at, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                item_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if depth == 1 && item_start && is_ident(c) => {
                heads.push(ident(&text[at..]).to_string());
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The top-level modules named by `crate::` paths in `source`, with their 1-based line numbers.
/// A grouped import may span lines; its heads are reported at the line of its `crate::`.
fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let code: Vec<&str> = source.lines().map(code_of).collect();
    let mut found = Vec::new();
    for (index, line) in code.iter().enumerate() {
        let mut from = 0;
        while let Some(offset) = line[from..].find("crate::") {
            let at = from + offset;
            from = at + "crate::".len();
            // `$crate::` in macros and `other_crate::` are not this crate's paths.
            if line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == '$')
            {
                continue;
            }
            let after = &line[from..];
            if after.trim_start().starts_with('{') {
                let tail = [after.to_string(), code[index + 1..].join("\n")].join("\n");
                found.extend(group_heads(&tail).into_iter().map(|head| (index + 1, head)));
            } else {
                found.push((index + 1, ident(after).to_string()));
            }
        }
    }
    found
}

/// Every upward `crate::` path under `src/`, as messages naming the file, line and both modules.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut messages = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        if relative == Path::new("lib.rs") {
            continue;
        }
        let from = module_of(relative);
        let Some(from_layer) = layer_of(&from) else {
            messages.push(format!(
                "src/{}: module `{from}` is in no layer of tests/layers.rs",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for (line, to) in crate_paths(&source) {
            match layer_of(&to) {
                Some(to_layer) if to_layer <= from_layer => {}
                Some(to_layer) => messages.push(format!(
                    "src/{}:{line}: `{from}` (layer {}) uses `crate::{to}` (layer {}), a layer above it",
                    relative.display(),
                    from_layer + 1,
                    to_layer + 1
                )),
                None => messages.push(format!(
                    "src/{}:{line}: `{from}` uses `crate::{to}`, which is in no layer of tests/layers.rs",
                    relative.display()
                )),
            }
        }
    }
    messages
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let messages = violations(&src);
    assert!(
        messages.is_empty(),
        "upward dependencies:\n{}",
        messages.join("\n")
    );
}

#[test]
fn the_scanner_sees_plain_grouped_and_inline_paths() {
    let source = "use crate::store::Store;\nuse crate::{\n    domain::Unit,\n    report::{a, b},\n};\n// crate::serve in a comment\nlet x = crate::analysis::compare::cells(d); $crate::x; bakeoff_crate::y;\n";
    let found = crate_paths(source);
    let names: Vec<(usize, &str)> = found.iter().map(|(l, m)| (*l, m.as_str())).collect();
    assert_eq!(
        names,
        [(1, "store"), (2, "domain"), (2, "report"), (7, "analysis")]
    );
}

#[test]
fn an_upward_path_is_reported_with_file_line_and_modules() {
    let dir = tempfile::tempdir().unwrap();
    let measure = dir.path().join("measure");
    std::fs::create_dir_all(&measure).unwrap();
    std::fs::write(
        measure.join("bench.rs"),
        "//! x\nuse crate::{domain::Unit, store::Store};\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("error.rs"), "use crate::VERSION;\n").unwrap();
    let messages = violations(dir.path());
    assert_eq!(
        messages,
        ["src/measure/bench.rs:2: `measure` (layer 6) uses `crate::store` (layer 9), a layer above it"]
    );
}
