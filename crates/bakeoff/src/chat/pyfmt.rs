//! Python's spelling of template values, so rendered prompts match transformers byte for byte:
//! `json.dumps` as transformers' `tojson` filter calls it, and `str()`/`repr()` as jinja2 prints
//! values (`None`, `True`, `1e-05`, `['a', 'b']`).

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// Nesting deeper than this is refused rather than risk the stack (JSON input stops at 128).
const MAX_DEPTH: usize = 256;

/// The options of `json.dumps` that transformers' `tojson` exposes.
#[derive(Debug, Clone)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(unit)`: one item per line, indented by `unit` per level.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

fn type_error(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `json.dumps(value, ...)`.
pub(crate) fn dumps(value: &Value, options: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_json(&mut out, value, options, 0)?;
    Ok(out)
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(type_error("tojson: value nested too deeply".into()));
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&json_number(value)),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), opts),
        ValueKind::Seq => write_json_seq(out, value, opts, depth)?,
        ValueKind::Map if !value.is_kwargs() => write_json_map(out, value, opts, depth)?,
        ValueKind::Plain if crate::chat::template::is_py_none(value) => out.push_str("null"),
        kind => {
            return Err(type_error(format!(
                "tojson: object of type {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

fn json_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(x) if x.is_nan() => "NaN".into(),
        Ok(x) if x.is_infinite() => if x > 0.0 { "Infinity" } else { "-Infinity" }.into(),
        Ok(x) => float_repr(x),
        Err(_) => value.to_string(),
    }
}

/// Before item `index` of a container at `depth`: the separator and, when indenting, a new line.
fn item_prefix(out: &mut String, index: usize, opts: &JsonOptions, depth: usize) {
    if index > 0 {
        out.push_str(&opts.item_separator);
    }
    newline_indent(out, opts, depth + 1);
}

fn newline_indent(out: &mut String, opts: &JsonOptions, level: usize) {
    if let Some(unit) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(unit);
        }
    }
}

fn write_json_seq(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    depth: usize,
) -> Result<(), Error> {
    let items: Vec<Value> = value.try_iter()?.collect();
    if items.is_empty() {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    for (index, item) in items.iter().enumerate() {
        item_prefix(out, index, opts, depth);
        write_json(out, item, opts, depth + 1)?;
    }
    newline_indent(out, opts, depth);
    out.push(']');
    Ok(())
}

fn write_json_map(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    depth: usize,
) -> Result<(), Error> {
    let mut entries = Vec::new();
    for key in value.try_iter()? {
        let item = value.get_item(&key)?;
        entries.push((json_key(&key)?, item));
    }
    if entries.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    if opts.sort_keys {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    out.push('{');
    for (index, (key, item)) in entries.iter().enumerate() {
        item_prefix(out, index, opts, depth);
        write_json_string(out, key, opts);
        out.push_str(&opts.key_separator);
        write_json(out, item, opts, depth + 1)?;
    }
    newline_indent(out, opts, depth);
    out.push('}');
    Ok(())
}

/// `json.dumps` turns non-string keys into strings the way it writes them as values.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::Number => Ok(json_number(key)),
        kind => Err(type_error(format!(
            "tojson: keys must be str, int, float, bool or None, not {kind}"
        ))),
    }
}

fn write_json_string(out: &mut String, text: &str, opts: &JsonOptions) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
            c if opts.ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(out, u32::from(*unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, unit: u32) {
    out.push_str(&format!("\\u{unit:04x}"));
}

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation for
/// exponents -4..16 and `1.5e-07` style otherwise; integral values keep a `.0`.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-5", "1e16".
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        format!("{sign}{}", positional(&digits, exponent))
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{first}{fraction}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}

fn positional(digits: &str, exponent: i32) -> String {
    if exponent < 0 {
        let zeros = "0".repeat(exponent.unsigned_abs() as usize - 1);
        return format!("0.{zeros}{digits}");
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        format!("{digits}{}.0", "0".repeat(int_len - digits.len()))
    } else {
        format!("{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// Python's `str(value)`, which jinja2 uses to print `{{ value }}`; undefined prints nothing.
pub(crate) fn py_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut out = String::new();
            py_repr(&mut out, value, 0);
            out
        }
    }
}

/// Python's `repr(value)` for the kinds JSON and templates produce; other objects print as
/// minijinja shows them.
fn py_repr(out: &mut String, value: &Value, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match value.kind() {
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(x) => out.push_str(&float_repr(x)),
            Err(_) => out.push_str(&value.to_string()),
        },
        ValueKind::String => push_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => py_repr_seq(out, value, depth),
        ValueKind::Map => py_repr_map(out, value, depth),
        _ => out.push_str(&value.to_string()),
    }
}

/// A list, or a tuple (`dictsort` and `items` pairs) in parentheses as Python prints it.
fn py_repr_seq(out: &mut String, value: &Value, depth: usize) {
    let tuple = value.is_tuple();
    out.push(if tuple { '(' } else { '[' });
    let mut count = 0;
    if let Ok(items) = value.try_iter() {
        for item in items {
            if count > 0 {
                out.push_str(", ");
            }
            py_repr(out, &item, depth + 1);
            count += 1;
        }
    }
    if tuple && count == 1 {
        out.push(',');
    }
    out.push(if tuple { ')' } else { ']' });
}

fn py_repr_map(out: &mut String, value: &Value, depth: usize) {
    out.push('{');
    if let Ok(keys) = value.try_iter() {
        for (index, key) in keys.enumerate() {
            if index > 0 {
                out.push_str(", ");
            }
            py_repr(out, &key, depth + 1);
            out.push_str(": ");
            py_repr(out, &value.get_item(&key).unwrap_or_default(), depth + 1);
        }
    }
    out.push('}');
}

/// Python's string repr: single quotes unless the text has a `'` and no `"`, backslash escapes
/// for the quote, backslash and non-printable characters.
fn push_str_repr(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let code = c as u32;
                match code {
                    0..=0xff => out.push_str(&format!("\\x{code:02x}")),
                    0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
                    _ => out.push_str(&format!("\\U{code:08x}")),
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for the characters that occur in practice: control and format
/// characters, separators other than the space, private use. (Unassigned code points, which
/// Python also escapes, are not known here.)
fn is_printable(c: char) -> bool {
    let code = c as u32;
    !matches!(code,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680
        | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f
        | 0x3000 | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456789012345.0, "123456789012345.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (f64::INFINITY, "inf"),
            (std::f64::consts::PI, "3.141592653589793"),
        ];
        for (x, expected) in cases {
            assert_eq!(float_repr(x), expected, "{x:e}");
        }
    }

    #[test]
    fn json_matches_python_defaults() {
        let value = Value::from_serialize_json(
            r#"{"b": [1, 2.0, null, true], "a": {"x": "é\"\n\u0001<>&"}, "e": [], "o": {}}"#,
        );
        assert_eq!(
            dumps(&value, &JsonOptions::default()).unwrap(),
            r#"{"b": [1, 2.0, null, true], "a": {"x": "é\"\n\u0001<>&"}, "e": [], "o": {}}"#
        );
        let indented = JsonOptions {
            indent: Some("  ".into()),
            item_separator: ",".into(),
            sort_keys: true,
            ensure_ascii: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(&value, &indented).unwrap(),
            "{\n  \"a\": {\n    \"x\": \"\\u00e9\\\"\\n\\u0001<>&\"\n  },\n  \"b\": [\n    1,\n    2.0,\n    null,\n    true\n  ],\n  \"e\": [],\n  \"o\": {}\n}"
        );
    }

    #[test]
    fn astral_characters_escape_as_surrogate_pairs() {
        let ascii = JsonOptions {
            ensure_ascii: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(&Value::from("😀"), &ascii).unwrap(),
            r#""\ud83d\ude00""#
        );
        assert_eq!(
            dumps(&Value::from("😀"), &JsonOptions::default()).unwrap(),
            "\"😀\""
        );
    }

    #[test]
    fn str_of_containers_is_python_repr() {
        let value = Value::from_serialize_json(r#"[null, true, 1.0, "it's", "a\"b'c", {"k": []}]"#);
        assert_eq!(
            py_str(&value),
            r#"[None, True, 1.0, "it's", 'a"b\'c', {'k': []}]"#
        );
        assert_eq!(py_str(&Value::UNDEFINED), "");
        assert_eq!(py_str(&Value::from("\u{a0}x")), "\u{a0}x");
        assert_eq!(py_str(&Value::from(vec!["\u{a0}\u{1}"])), r"['\xa0\x01']");
    }

    trait FromJson {
        fn from_serialize_json(text: &str) -> Value;
    }

    impl FromJson for Value {
        fn from_serialize_json(text: &str) -> Value {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            Value::from(minijinja::value::Serde(json))
        }
    }
}
