//! The one table model every table bakeoff prints goes through (bench, load, plan, journal,
//! readiness, compare, the report's sections), with its renderers: Markdown (one escaping rule),
//! CSV per RFC 4180 (LF line ends), JSON rows keyed by column id, JSONL and HTML.

use super::escape::{html as esc, markdown_cell};
use super::table::Format;
use serde_json::{Map, Value};
use std::fmt::Write;

/// How a column's cells line up; right-aligned columns hold numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub struct Column {
    /// Stable key of the column in JSON and the CSV header.
    pub id: String,
    /// The heading Markdown and HTML show.
    pub title: String,
    pub align: Align,
}

impl Column {
    pub fn left(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self::new(id, title, Align::Left)
    }

    pub fn right(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self::new(id, title, Align::Right)
    }

    fn new(id: impl Into<String>, title: impl Into<String>, align: Align) -> Self {
        Column {
            id: id.into(),
            title: title.into(),
            align,
        }
    }

    pub fn numeric(&self) -> bool {
        self.align == Align::Right
    }
}

/// One cell: the text the text formats show and, where it differs, the value JSON holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    pub text: String,
    /// The JSON value; `None` means the text, as a JSON string.
    pub value: Option<Value>,
}

impl Cell {
    pub fn new(text: impl Into<String>, value: impl Into<Value>) -> Self {
        Cell {
            text: text.into(),
            value: Some(value.into()),
        }
    }

    fn json(&self) -> Value {
        self.value
            .clone()
            .unwrap_or_else(|| Value::String(self.text.clone()))
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, value: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::from(text.to_string())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub cells: Vec<Cell>,
    /// A style hint (`pass`, `warn`, `fail`, `info`, `optimal`); formats without style ignore it.
    pub class: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: Option<String>,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Self {
        Table {
            caption: None,
            columns,
            rows: Vec::new(),
        }
    }

    /// Columns from titles; a title ending in `#` (stripped) is numeric, right-aligned. Ids are
    /// the titles in snake case.
    pub fn from_titles(titles: &[&str]) -> Self {
        let columns = titles
            .iter()
            .map(|t| {
                let title = t.trim_end_matches('#');
                let align = if t.ends_with('#') {
                    Align::Right
                } else {
                    Align::Left
                };
                Column::new(column_id(title), title, align)
            })
            .collect();
        Table::new(columns)
    }

    pub fn caption(mut self, text: impl Into<String>) -> Self {
        self.caption = Some(text.into());
        self
    }

    pub fn push<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>) {
        self.rows.push(Row {
            cells: cells.into_iter().map(Into::into).collect(),
            class: None,
        });
    }

    pub fn push_class<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>, class: &str) {
        self.push(cells);
        if let Some(row) = self.rows.last_mut() {
            row.class = Some(class.to_string());
        }
    }

    /// The same table with only the columns whose ids are given, in the order given.
    pub fn only(&self, ids: &[&str]) -> Table {
        let picks: Vec<usize> = ids
            .iter()
            .filter_map(|id| self.columns.iter().position(|c| c.id == *id))
            .collect();
        let rows = self.rows.iter().map(|row| Row {
            cells: picks
                .iter()
                .map(|&i| row.cells.get(i).cloned().unwrap_or_default())
                .collect(),
            class: row.class.clone(),
        });
        Table {
            caption: self.caption.clone(),
            columns: picks.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: rows.collect(),
        }
    }

    /// The table in one of the library's output formats.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => self.markdown(),
            Format::Csv => self.csv(),
            Format::Json => self.json(),
            Format::Jsonl => self.jsonl(),
        }
    }

    /// A GitHub-flavoured Markdown table, the caption (if any) above it in bold. Every title and
    /// cell goes through [`markdown_cell`]; each rule is as wide as its title.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if let Some(caption) = &self.caption {
            let _ = writeln!(out, "**{}**\n", markdown_cell(caption));
        }
        let titles = self.columns.iter().map(|c| markdown_cell(&c.title));
        markdown_line(&mut out, titles);
        markdown_line(&mut out, self.columns.iter().map(rule));
        for row in &self.rows {
            markdown_line(&mut out, row.cells.iter().map(|c| markdown_cell(&c.text)));
        }
        out
    }

    /// CSV per RFC 4180: a header of column ids, fields quoted where they hold `,`, `"`, CR or
    /// LF (quotes doubled), every record ended by LF (not CRLF, as the Unix tools reading it expect).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        csv_line(&mut out, self.columns.iter().map(|c| c.id.as_str()));
        for row in &self.rows {
            csv_line(&mut out, row.cells.iter().map(|c| c.text.as_str()));
        }
        out
    }

    /// Each row as a JSON object keyed by column id, in column order.
    pub fn json_rows(&self) -> Vec<Value> {
        self.rows.iter().map(|row| self.json_row(row)).collect()
    }

    fn json_row(&self, row: &Row) -> Value {
        let mut map = Map::new();
        for (column, cell) in self.columns.iter().zip(&row.cells) {
            map.insert(column.id.clone(), cell.json());
        }
        Value::Object(map)
    }

    /// The rows as a pretty-printed JSON array.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.json_rows()).unwrap_or_default() + "\n"
    }

    /// One JSON object per line.
    pub fn jsonl(&self) -> String {
        self.json_rows()
            .iter()
            .map(|row| row.to_string() + "\n")
            .collect()
    }

    /// An HTML table in a scrolling `div`; numeric columns carry `class="num"`, rows their class.
    pub fn html(&self) -> String {
        let mut out = String::from("<div class=\"scroll\"><table>");
        if let Some(caption) = &self.caption {
            let _ = write!(out, "<caption>{}</caption>", esc(caption));
        }
        out.push_str("<thead><tr>");
        for c in &self.columns {
            let _ = write!(out, "<th{}>{}</th>", num_class(c), esc(&c.title));
        }
        out.push_str("</tr></thead><tbody>\n");
        for row in &self.rows {
            self.html_row(&mut out, row);
        }
        out.push_str("</tbody></table></div>\n");
        out
    }

    fn html_row(&self, out: &mut String, row: &Row) {
        match &row.class {
            Some(class) => {
                let _ = write!(out, "<tr class=\"{}\">", esc(class));
            }
            None => out.push_str("<tr>"),
        }
        for (i, cell) in row.cells.iter().enumerate() {
            let class = self.columns.get(i).map_or("", num_class);
            let _ = write!(out, "<td{class}>{}</td>", esc(&cell.text));
        }
        out.push_str("</tr>\n");
    }
}

fn num_class(column: &Column) -> &'static str {
    if column.numeric() {
        " class=\"num\""
    } else {
        ""
    }
}

/// `median t/s` → `median_t_s`: lower case, runs of other characters as one `_`.
fn column_id(title: &str) -> String {
    let mut id = String::new();
    for c in title.chars() {
        if c.is_alphanumeric() {
            id.extend(c.to_lowercase());
        } else if !id.is_empty() && !id.ends_with('_') {
            id.push('_');
        }
    }
    id.trim_end_matches('_').to_string()
}

/// A delimiter cell as wide as the title (at least one hyphen), `:` ending right-aligned ones.
fn rule(column: &Column) -> String {
    let width = column.title.chars().count();
    let colon = usize::from(column.numeric());
    let hyphens = "-".repeat(width.saturating_sub(colon).max(1));
    if column.numeric() {
        hyphens + ":"
    } else {
        hyphens
    }
}

fn markdown_line(out: &mut String, cells: impl Iterator<Item = String>) {
    let cells: Vec<String> = cells.collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn csv_line<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    let fields: Vec<String> = fields.map(csv_field).collect();
    let _ = writeln!(out, "{}", fields.join(","));
}

/// One RFC 4180 field: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Table {
        let mut table = Table::new(vec![
            Column::left("name", "name"),
            Column::right("tps", "t/s"),
            Column::right("n", "n"),
        ]);
        table.push([Cell::from("a|b"), Cell::new("1.50", 1.5), Cell::new("3", 3)]);
        table.push([
            Cell::from("<script>x</script>"),
            Cell::new("-", Value::Null),
            "4".into(),
        ]);
        table
    }

    #[test]
    fn markdown_rules_are_as_wide_as_titles_and_mark_numbers() {
        let md = sample().markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| name | t/s | n |");
        assert_eq!(lines[1], "| ---- | --: | -: |");
        assert_eq!(lines[2], "| a\\|b | 1.50 | 3 |");
    }

    #[test]
    fn markdown_escapes_every_cell_title_and_caption() {
        let mut table = sample().caption("<b>caption</b>");
        table.columns[0].title = "a|b".into();
        let md = table.markdown();
        assert!(
            md.starts_with("**&lt;b&gt;caption&lt;/b&gt;**\n\n| a\\|b |"),
            "{md}"
        );
        assert!(
            md.contains("| &lt;script&gt;x&lt;/script&gt; | - | 4 |"),
            "{md}"
        );
        assert!(!md.contains('<'), "{md}");
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let mut table = Table::new(vec![Column::left("text", "text"), Column::left("b", "b")]);
        for text in ["plain", "a,b", "say \"hi\"", "two\nlines", "cr\rhere"] {
            table.push([text, "x"]);
        }
        let csv = table.csv();
        assert_eq!(
            csv,
            "text,b\nplain,x\n\"a,b\",x\n\"say \"\"hi\"\"\",x\n\"two\nlines\",x\n\"cr\rhere\",x\n"
        );
        assert!(!csv.contains("\r\n"), "LF line ends");
    }

    #[test]
    fn json_rows_are_keyed_by_column_id_in_order() {
        let rows = sample().json_rows();
        assert_eq!(rows[0], json!({"name": "a|b", "tps": 1.5, "n": 3}));
        assert_eq!(
            rows[1],
            json!({"name": "<script>x</script>", "tps": null, "n": "4"})
        );
        let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "tps", "n"]);
        assert_eq!(sample().jsonl().lines().count(), 2);
        assert_eq!(Table::default().json(), "[]\n");
    }

    #[test]
    fn html_escapes_and_marks_numeric_cells() {
        let mut table = sample();
        table.rows[0].class = Some("warn".into());
        let html = table.html();
        assert!(html.contains("<tr class=\"warn\"><td>a|b</td><td class=\"num\">1.50</td>"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script"));
    }

    #[test]
    fn titles_give_ids_and_alignment() {
        let table = Table::from_titles(&["run#", "median t/s#", "95% CI#", "KV type"]);
        let ids: Vec<&str> = table.columns.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["run", "median_t_s", "95_ci", "kv_type"]);
        assert!(table.columns[0].numeric() && !table.columns[3].numeric());
        let only = sample().only(&["n", "name"]);
        assert_eq!(only.json_rows()[0], json!({"n": 3, "name": "a|b"}));
    }
}
