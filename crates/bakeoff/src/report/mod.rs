//! Reports: bench tables (Markdown in llama-bench's shape, CSV, JSON, JSONL) and comparisons.

pub mod journal;
pub mod table;
