//! Reports: tables, CSV/JSON/JSONL, Markdown and HTML.
