//! What a bench table shows beside the measured cells: the model line (file name, size,
//! parameters) and each tg cell's memory-bandwidth roofline.

use super::table::ModelInfo;
use crate::analysis::compare::Cell;
use crate::domain::units::human_bytes;
use crate::store::ModelRow;
use std::path::Path;

/// The model columns of a bench table, from its stored record.
pub fn model_info(model: &ModelRow) -> ModelInfo {
    columns_of(&model.path, model.size, &model.sha256, &model.summary)
}

/// [`model_info`] from a report's model row.
pub fn report_model_info(model: &crate::store::report_rows::ModelInfo) -> ModelInfo {
    columns_of(&model.path, model.size, &model.sha256, &model.summary)
}

fn columns_of(path: &str, size: u64, sha256: &str, summary: &serde_json::Value) -> ModelInfo {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let params = summary["parameters"]
        .as_u64()
        .map(|p| format!("{:.2} M", p as f64 / 1e6))
        .unwrap_or_default();
    ModelInfo {
        name,
        size: human_bytes(size),
        params,
        sha256: sha256.to_string(),
    }
}

/// Fill in the tg roofline of each cell when the memory bandwidth (GB/s) is known; a model that
/// cannot be read as GGUF leaves the cells without one.
pub fn add_roofline(cells: &mut [Cell], model: &Path, bandwidth_gbs: Option<f64>) {
    let Some(gbs) = bandwidth_gbs else { return };
    if let Some(facts) = facts_of(model) {
        fill_roofline(cells.iter_mut(), &facts, gbs);
    }
}

/// [`add_roofline`] for a run of several models: each cell gets the roofline of its own model
/// (matched by sha256); cells of a model not given keep none.
pub fn add_rooflines(cells: &mut [Cell], models: &[ModelRow], bandwidth_gbs: Option<f64>) {
    let Some(gbs) = bandwidth_gbs else { return };
    let facts = facts_by_model(models);
    for cell in cells.iter_mut().filter(|c| c.kind == "tg") {
        if let Some(facts) = cell.model_sha256.as_deref().and_then(|s| facts.get(s)) {
            cell.roofline_tps =
                crate::model::plan::roofline_for_flags(facts, &cell.flags, cell.depth, gbs * 1e9);
        }
    }
}

/// Fill in each measured cell's planned memory (weights + KV + compute at `context`, or the
/// cell's own `-c`), to hold the measured peak against; cells of a model not given keep none.
pub fn add_memory_plans(cells: &mut [Cell], models: &[ModelRow], context: Option<u64>) {
    let facts = facts_by_model(models);
    for cell in cells.iter_mut().filter(|c| c.energy.measured()) {
        if let Some(facts) = cell.model_sha256.as_deref().and_then(|s| facts.get(s)) {
            let needed = super::data::memory_needed_at(&cell.flags, context, facts);
            cell.energy.plan_bytes = needed.map(|b| b as f64);
        }
    }
}

/// The facts of each model that reads as GGUF, by sha256.
fn facts_by_model(
    models: &[ModelRow],
) -> std::collections::HashMap<&str, crate::model::ModelFacts> {
    (models.iter())
        .filter_map(|m| Some((m.sha256.as_str(), facts_of(Path::new(&m.path))?)))
        .collect()
}

fn facts_of(model: &Path) -> Option<crate::model::ModelFacts> {
    let file = crate::formats::gguf::GgufFile::open(model).ok()?;
    Some(crate::model::ModelFacts::from_gguf(&file))
}

fn fill_roofline<'a>(
    cells: impl Iterator<Item = &'a mut Cell>,
    facts: &crate::model::ModelFacts,
    gbs: f64,
) {
    for cell in cells.filter(|c| c.kind == "tg") {
        cell.roofline_tps =
            crate::model::plan::roofline_for_flags(facts, &cell.flags, cell.depth, gbs * 1e9);
    }
}
