//! The report as Markdown: the same sections, with every chart given as its data table.

use super::document::{chart_table, Block, Document};
use super::escape::markdown_cell;
use super::render::Table;
use std::fmt::Write;

pub fn render(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", markdown_cell(&doc.title));
    for line in &doc.intro {
        let _ = writeln!(out, "{}\n", markdown_cell(line));
    }
    for s in &doc.sections {
        let _ = writeln!(out, "## {}\n", markdown_cell(s.title));
        for block in &s.blocks {
            match block {
                Block::Text(text) => {
                    let _ = writeln!(out, "{}\n", markdown_cell(text));
                }
                Block::Table(table) => table_md(&mut out, table),
                Block::Chart { chart, tabulated } => {
                    if !tabulated {
                        table_md(&mut out, &chart_table(chart));
                    }
                }
            }
        }
    }
    out
}

/// A table and a blank line; an empty one says `(none)` under its caption.
fn table_md(out: &mut String, table: &Table) {
    if table.rows.is_empty() {
        if let Some(caption) = &table.caption {
            let _ = writeln!(out, "**{}**\n", markdown_cell(caption));
        }
        out.push_str("(none)\n\n");
        return;
    }
    out.push_str(&table.markdown());
    out.push('\n');
}
