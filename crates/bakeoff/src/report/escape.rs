//! Escaping for text that came from a model, a user or a log (tags, flags, paths, error text,
//! fidelity details): HTML text and attributes (SVG included), and Markdown table cells.

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

/// Escape for one Markdown table cell: pipes, line breaks, and the HTML that Markdown renderers
/// pass through (`<script>` in a cell stays text).
pub fn markdown_cell(text: &str) -> String {
    markdown_text(text)
        .replace('|', "\\|")
        .replace('\n', "<br>")
}

/// Escape Markdown paragraph text: HTML-significant characters become entities; line breaks stay.
pub fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => {}
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
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
