//! Escaping for text that came from a model, a user or a log (tags, flags, paths, error text,
//! fidelity details): HTML text and attributes (SVG included), and Markdown (one rule for cells
//! and text alike).

/// Escape for HTML text and double- or single-quoted attribute values.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in HTML text.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The one Markdown escaping rule, for table cells and every other piece of text bakeoff writes
/// into Markdown: HTML-significant characters become entities (so `<script>` stays text in
/// renderers that pass HTML through), `|` is escaped (it would split a cell), and a line break
/// becomes `<br>` (it would end a row or a list item).
pub fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c if c.is_control() && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_injection_becomes_text() {
        let attack = "</script><script>alert(1)</script>\"><img src=x onerror=alert(1)>'";
        let escaped = html(attack);
        assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"'));
        assert_eq!(
            html("a<b>&\"'"),
            "a&lt;b&gt;&amp;&quot;&#39;",
            "every special character"
        );
        let cell = markdown_cell("a|b\r\nc<script>");
        assert_eq!(cell, "a\\|b<br>c&lt;script&gt;");
    }
}
