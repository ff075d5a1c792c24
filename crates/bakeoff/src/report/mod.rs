//! Reports: bench tables (Markdown in llama-bench's shape, CSV, JSON, JSONL) and comparisons
//! (`table`), and whole-run reports (`bakeoff report`): data gathered from the store once
//! (`data`), laid out as a format-free document (`document`), written by one exporter per format.

pub mod data;
pub mod document;
pub mod escape;
pub mod html;
pub mod markdown;
pub mod svg;
pub mod table;

use data::ReportData;
use std::path::Path;

/// Writes a report in one format.
pub trait Exporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8>;
}

/// A self-contained HTML page with inline SVG charts.
pub struct HtmlExporter;
/// Markdown tables (charts become tables).
pub struct MarkdownExporter;
/// The gathered data as JSON, for other tools.
pub struct JsonExporter;

impl Exporter for HtmlExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        html::render(&document::build(data)).into_bytes()
    }
}

impl Exporter for MarkdownExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        markdown::render(&document::build(data)).into_bytes()
    }
}

impl Exporter for JsonExporter {
    fn serialize(&self, data: &ReportData) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(data).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Markdown,
    Json,
}

impl ReportFormat {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "html" | "htm" => ReportFormat::Html,
            "md" | "markdown" => ReportFormat::Markdown,
            "json" => ReportFormat::Json,
            _ => return None,
        })
    }

    /// The format a file name's extension asks for.
    pub fn from_path(path: &Path) -> Option<Self> {
        Self::parse(path.extension()?.to_str()?)
    }

    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ReportFormat::Html => Box::new(HtmlExporter),
            ReportFormat::Markdown => Box::new(MarkdownExporter),
            ReportFormat::Json => Box::new(JsonExporter),
        }
    }
}
