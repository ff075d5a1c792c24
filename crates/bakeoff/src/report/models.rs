//! `bakeoff models list`: one row per model (size, architecture, parameters, quant, short sha256
//! from the store's cache, tags) and whether it fits this machine at a context, from the planner.
//! A file that is missing or not a GGUF is a row carrying its error, never a failed listing.

use super::render::{Cell, Column, Table};
use crate::domain::units::human_bytes;
use crate::formats::gguf::{file_type_name, GgmlType, GgufFile};
use crate::model::plan::{self, KvSettings};
use crate::model::select::Selected;
use crate::model::ModelFacts;
use crate::store::Store;
use serde_json::Value;
use std::path::PathBuf;

/// What is known of one listed model.
#[derive(Debug, Clone)]
pub struct Listing {
    pub name: String,
    pub path: PathBuf,
    pub tags: Vec<String>,
    pub facts: Result<ModelFacts, String>,
    /// The quant the file declares (`general.file_type`), else its heaviest weight type.
    pub quant: Option<String>,
    pub sha256: Option<String>,
    /// Weights + f16 KV + compute estimate at the listing's context (flash attention on).
    pub needed: Option<u64>,
}

/// Read each model and its sha256 (cached in `store` by path, size and mtime).
pub fn listings(selected: &[Selected], store: &Store, ctx: u64) -> Vec<Listing> {
    selected.iter().map(|s| listing(s, store, ctx)).collect()
}

fn listing(selected: &Selected, store: &Store, ctx: u64) -> Listing {
    let read = read_facts(selected);
    let quant = read
        .as_ref()
        .ok()
        .map(|(facts, file_type)| quant(facts, *file_type));
    let facts = read.map(|(facts, _)| facts);
    let sha256 = facts
        .as_ref()
        .ok()
        .and_then(|_| store.model(&selected.path).ok())
        .map(|row| row.sha256);
    let f16 = GgmlType(1); // F16, the engine's default cache type
    let kv = KvSettings::new(ctx, f16, f16);
    let needed = facts
        .as_ref()
        .ok()
        .and_then(|facts| plan::memory_needed(facts, &kv, true));
    let tags = selected
        .entry
        .as_ref()
        .map(|e| e.tags.clone())
        .unwrap_or_default();
    let (name, path) = (selected.name(), selected.path.clone());
    Listing {
        name,
        path,
        tags,
        facts,
        quant,
        sha256,
        needed,
    }
}

fn read_facts(selected: &Selected) -> Result<(ModelFacts, Option<u64>), String> {
    let checked = crate::model::check_file(&selected.path);
    let file = checked.and_then(|()| Ok(GgufFile::open(&selected.path)?));
    let facts = |file: GgufFile| {
        (
            ModelFacts::from_gguf(&file),
            file.get_u64("general.file_type"),
        )
    };
    file.map(facts).map_err(|e| e.to_string())
}

/// The quant the file declares; else the weight type holding the most bytes (F32 norms aside).
pub fn quant(facts: &ModelFacts, file_type: Option<u64>) -> String {
    if let Some(name) = file_type.and_then(file_type_name) {
        return name.to_string();
    }
    let weights = facts
        .bytes_by_type
        .iter()
        .filter(|(name, _)| name.as_str() != "F32");
    let largest = weights
        .max_by_key(|(_, bytes)| **bytes)
        .map(|(name, _)| name.clone());
    largest.unwrap_or_else(|| "F32".to_string())
}

/// The listing as a table; `budget` is the memory one engine can use on this machine.
pub fn table(listings: &[Listing], ctx: u64, budget: u64) -> Table {
    let titles = [
        "model", "size", "arch", "params", "quant", "sha256", "tags", "fits", "needs", "path",
        "error",
    ];
    let mut columns: Vec<Column> = titles.iter().map(|t| Column::left(*t, *t)).collect();
    for at in [1, 3, 8] {
        columns[at] = Column::right(titles[at], titles[at]);
    }
    columns[7] = Column::left("fits", format!("fits @ ctx {ctx}"));
    let mut table =
        Table::new(columns).caption(format!("memory for one engine: {}", human_bytes(budget)));
    for listing in listings {
        let class = fits(listing, budget)
            .map(|f| if f { "pass" } else { "fail" })
            .unwrap_or("warn");
        table.push_class(row(listing, budget), class);
    }
    table
}

fn row(listing: &Listing, budget: u64) -> Vec<Cell> {
    let path = Cell::from(listing.path.display().to_string());
    let tags = Cell::new(listing.tags.join(" "), listing.tags.clone());
    let name = Cell::from(listing.name.clone());
    let Ok(facts) = &listing.facts else {
        let error = listing.facts.as_ref().err().cloned().unwrap_or_default();
        let mut cells = vec![name];
        cells.extend((0..5).map(|_| Cell::new("-", Value::Null)));
        cells.extend([
            tags,
            Cell::new("error", Value::Null),
            Cell::new("-", Value::Null),
        ]);
        cells.extend([path, Cell::from(error)]);
        return cells;
    };
    let sha = listing.sha256.as_deref().unwrap_or("-");
    vec![
        name,
        Cell::new(human_bytes(facts.file_size), facts.file_size),
        Cell::from(facts.architecture.clone()),
        Cell::new(params(facts.parameters), facts.parameters),
        Cell::from(listing.quant.clone().unwrap_or_default()),
        Cell::new(sha.chars().take(12).collect::<String>(), sha),
        tags,
        fits_cell(listing, budget),
        needs_cell(listing),
        path,
        Cell::new("", Value::Null),
    ]
}

// Parameters as model cards write them: 135M, 7.6B.
fn params(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

fn fits(listing: &Listing, budget: u64) -> Option<bool> {
    listing.needed.map(|needed| needed <= budget)
}

fn fits_cell(listing: &Listing, budget: u64) -> Cell {
    match fits(listing, budget) {
        Some(true) => Cell::new("yes", true),
        Some(false) => Cell::new("no", false),
        None => Cell::new("unknown (the planner cannot size it)", Value::Null),
    }
}

fn needs_cell(listing: &Listing) -> Cell {
    match listing.needed {
        Some(needed) => Cell::new(human_bytes(needed), needed),
        None => Cell::new("-", Value::Null),
    }
}

/// The memory one engine can use here: the largest GPU's, else the machine's RAM.
pub fn machine_budget() -> u64 {
    let machine = crate::system::fingerprint::Fingerprint::collect();
    let gpu = machine.gpus.iter().filter_map(|g| g.memory_bytes).max();
    gpu.unwrap_or(machine.ram_bytes)
}
