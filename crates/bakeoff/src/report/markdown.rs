//! The report as Markdown: the same sections, with every chart given as its data table.

use super::document::{chart_table, Block, Document, Table};
use super::escape::{markdown_cell, markdown_text};
use std::fmt::Write;

pub fn render(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", markdown_text(&doc.title));
    for line in &doc.intro {
        let _ = writeln!(out, "{}\n", markdown_text(line));
    }
    for s in &doc.sections {
        let _ = writeln!(out, "## {}\n", markdown_text(s.title));
        for block in &s.blocks {
            match block {
                Block::Text(text) => {
                    let _ = writeln!(out, "{}\n", markdown_text(text));
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

fn table_md(out: &mut String, table: &Table) {
    if let Some(caption) = &table.caption {
        let _ = writeln!(out, "**{}**\n", markdown_text(caption));
    }
    if table.rows.is_empty() {
        out.push_str("(none)\n\n");
        return;
    }
    let titles: Vec<String> = table
        .columns
        .iter()
        .map(|c| markdown_cell(&c.title))
        .collect();
    let _ = writeln!(out, "| {} |", titles.join(" | "));
    let rules: Vec<&str> = table
        .columns
        .iter()
        .map(|c| if c.numeric { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rules.join(" | "));
    for row in &table.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| markdown_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}
