//! Small hand-written grammars for tool-call arguments that are not JSON: Python call syntax and
//! literals (`f(a=1, b='x', c=[True, None])`) and Gemma 4's `{key:<|"|>text<|"|>,n:1}` values.
//! Errors carry the byte offset in the text being parsed; nesting is bounded, so hostile input
//! cannot exhaust the stack.

use serde_json::{Map, Number, Value};

/// Values nested deeper than this are refused.
const MAX_DEPTH: usize = 64;

/// Gemma 4 delimits strings with this token instead of quotes; there are no escapes.
pub(crate) const GEMMA_QUOTE: &str = "<|\"|>";

/// A parse failure at a byte offset of the text given to the [`Cursor`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub offset: usize,
    pub reason: String,
}

pub(crate) type Parsed<T> = Result<T, SyntaxError>;

/// A position in a text, with the primitives both grammars share.
pub(crate) struct Cursor<'a> {
    pub text: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str, pos: usize) -> Self {
        Cursor { text, pos }
    }

    pub fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    pub fn fail<T>(&self, reason: impl Into<String>) -> Parsed<T> {
        Err(SyntaxError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    pub fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Consume `token` if the text continues with it.
    pub fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, token: &str) -> Parsed<()> {
        if self.eat(token) {
            Ok(())
        } else {
            self.fail(format!("expected {token:?}, found {}", self.found()))
        }
    }

    /// What is at the cursor, for messages.
    pub fn found(&self) -> String {
        match self.peek() {
            None => "the end of the text".into(),
            Some(_) => format!("{:?}", self.rest().chars().take(12).collect::<String>()),
        }
    }

    /// A Python identifier (ASCII letters, digits, `_`; not starting with a digit).
    pub fn identifier(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    fn depth_guard(&self, depth: usize) -> Parsed<()> {
        if depth > MAX_DEPTH {
            self.fail(format!("values nested deeper than {MAX_DEPTH} levels"))
        } else {
            Ok(())
        }
    }

    /// A number as Python or JSON write it (`-1`, `7.5`, `1e-07`, `12345678901234567890`).
    pub fn number(&mut self) -> Parsed<Value> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_')))
            .unwrap_or(rest.len());
        let literal: String = rest[..len].chars().filter(|&c| c != '_').collect();
        let parsed = parse_number(literal.trim_start_matches('+'));
        match parsed {
            Some(number) if len > 0 => {
                self.pos += len;
                Ok(Value::Number(number))
            }
            _ => self.fail(format!("invalid number {:?}", &rest[..len])),
        }
    }

    // ---- Python literals -------------------------------------------------------------------

    /// A Python literal: a string, number, `True`/`False`/`None` (or JSON's `true`/`false`/`null`,
    /// which some templates write for nested values), a list, tuple or dict of literals.
    pub fn python_literal(&mut self, depth: usize) -> Parsed<Value> {
        self.depth_guard(depth)?;
        self.skip_whitespace();
        match self.peek() {
            Some('\'' | '"') => self.python_string().map(Value::String),
            Some('[') => self.python_sequence('[', ']', depth),
            Some('(') => self.python_sequence('(', ')', depth),
            Some('{') => self.python_dict(depth),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.python_constant(),
            _ => self.fail(format!("expected a Python literal, found {}", self.found())),
        }
    }

    fn python_constant(&mut self) -> Parsed<Value> {
        let start = self.pos;
        let word = self.identifier().unwrap_or_default();
        match word {
            "True" | "true" => Ok(Value::Bool(true)),
            "False" | "false" => Ok(Value::Bool(false)),
            "None" | "null" => Ok(Value::Null),
            "r" | "R" if matches!(self.peek(), Some('\'' | '"')) => {
                self.raw_python_string().map(Value::String)
            }
            _ => {
                self.pos = start;
                self.fail(format!(
                    "expected a Python literal, found {:?} (variables are not allowed)",
                    word
                ))
            }
        }
    }

    fn python_sequence(&mut self, open: char, close: char, depth: usize) -> Parsed<Value> {
        self.pos += open.len_utf8();
        let mut items = Vec::new();
        let mut saw_comma = false;
        loop {
            self.skip_whitespace();
            if self.peek() == Some(close) {
                self.pos += close.len_utf8();
                break;
            }
            items.push(self.python_literal(depth + 1)?);
            self.skip_whitespace();
            if self.eat(",") {
                saw_comma = true;
            } else if self.peek() != Some(close) {
                return self.fail(format!("expected ',' or '{close}', found {}", self.found()));
            }
        }
        // `(x)` is just x in Python; `(x,)` and `()` are tuples, which JSON spells as arrays.
        if open == '(' && items.len() == 1 && !saw_comma {
            return Ok(items.pop().unwrap_or(Value::Null));
        }
        Ok(Value::Array(items))
    }

    fn python_dict(&mut self, depth: usize) -> Parsed<Value> {
        self.pos += 1;
        let mut map = Map::new();
        loop {
            self.skip_whitespace();
            if self.eat("}") {
                return Ok(Value::Object(map));
            }
            let key_at = self.pos;
            let key = match self.python_literal(depth + 1)? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    self.pos = key_at;
                    return self.fail("dict keys must be strings, numbers or booleans");
                }
            };
            self.skip_whitespace();
            self.expect(":")?;
            let value = self.python_literal(depth + 1)?;
            map.insert(key, value);
            self.skip_whitespace();
            if !self.eat(",") && self.peek() != Some('}') {
                return self.fail(format!("expected ',' or '}}', found {}", self.found()));
            }
        }
    }

    /// A quoted Python string with its escapes (`\n`, `\'`, `\xNN`, `\uNNNN`, …); triple quotes too.
    pub fn python_string(&mut self) -> Parsed<String> {
        let start = self.pos;
        let quote = if self.rest().starts_with("'''") || self.rest().starts_with("\"\"\"") {
            &self.rest()[..3]
        } else {
            &self.rest()[..1]
        };
        self.pos += quote.len();
        let mut out = String::new();
        loop {
            if self.eat(quote) {
                return Ok(out);
            }
            match self.peek() {
                None => {
                    self.pos = start;
                    return self.fail("unterminated string");
                }
                Some('\n') if quote.len() == 1 => {
                    return self.fail("unterminated string (newline in a one-line string)")
                }
                Some('\\') => self.python_escape(&mut out)?,
                Some(c) => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn raw_python_string(&mut self) -> Parsed<String> {
        let quote = &self.rest()[..1];
        let start = self.pos;
        self.pos += 1;
        match self.rest().find(quote) {
            Some(end) => {
                let text = self.rest()[..end].to_string();
                self.pos += end + 1;
                Ok(text)
            }
            None => {
                self.pos = start;
                self.fail("unterminated string")
            }
        }
    }

    /// The escape at the cursor (on its backslash).
    fn python_escape(&mut self, out: &mut String) -> Parsed<()> {
        let backslash = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return self.fail("unterminated string");
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            '0' => Some('\0'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' => Some(c),
            '\n' => return Ok(()),
            _ => None,
        };
        if let Some(unescaped) = simple {
            out.push(unescaped);
            return Ok(());
        }
        let digits = match c {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => {
                // Python keeps unknown escapes as written.
                out.push('\\');
                out.push(c);
                return Ok(());
            }
        };
        let hex = self.rest().get(..digits).unwrap_or("");
        match u32::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() == digits)
            .and_then(char::from_u32)
        {
            Some(decoded) => {
                out.push(decoded);
                self.pos += digits;
                Ok(())
            }
            None => {
                self.pos = backslash;
                self.fail(format!("invalid \\{c} escape"))
            }
        }
    }

    // ---- Gemma 4 values ----------------------------------------------------------------------

    /// A Gemma 4 value: `<|"|>text<|"|>`, a number, `true`/`false`, `None`/`null`, `[…]` or `{…}`.
    pub fn gemma_value(&mut self, depth: usize) -> Parsed<Value> {
        self.depth_guard(depth)?;
        self.skip_whitespace();
        if self.rest().starts_with(GEMMA_QUOTE) {
            return self.gemma_string().map(Value::String);
        }
        match self.peek() {
            Some('{') => self.gemma_object(depth),
            Some('[') => self.gemma_array(depth),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                match self.identifier().unwrap_or_default() {
                    "true" | "True" => Ok(Value::Bool(true)),
                    "false" | "False" => Ok(Value::Bool(false)),
                    "None" | "null" | "none" => Ok(Value::Null),
                    word => {
                        self.pos = start;
                        self.fail(format!("expected a value, found the bare word {word:?}"))
                    }
                }
            }
            _ => self.fail(format!("expected a value, found {}", self.found())),
        }
    }

    pub fn gemma_string(&mut self) -> Parsed<String> {
        let start = self.pos;
        self.pos += GEMMA_QUOTE.len();
        match self.rest().find(GEMMA_QUOTE) {
            Some(end) => {
                let text = self.rest()[..end].to_string();
                self.pos += end + GEMMA_QUOTE.len();
                Ok(text)
            }
            None => {
                self.pos = start;
                self.fail("unterminated <|\"|> string")
            }
        }
    }

    /// `{key:value,…}` with bare or `<|"|>`-quoted keys.
    pub fn gemma_object(&mut self, depth: usize) -> Parsed<Value> {
        self.expect("{")?;
        let mut map = Map::new();
        loop {
            self.skip_whitespace();
            if self.eat("}") {
                return Ok(Value::Object(map));
            }
            let key = self.gemma_key()?;
            self.skip_whitespace();
            self.expect(":")?;
            let value = self.gemma_value(depth + 1)?;
            map.insert(key, value);
            self.skip_whitespace();
            if !self.eat(",") && self.peek() != Some('}') {
                return self.fail(format!("expected ',' or '}}', found {}", self.found()));
            }
        }
    }

    fn gemma_key(&mut self) -> Parsed<String> {
        if self.rest().starts_with(GEMMA_QUOTE) {
            return self.gemma_string();
        }
        let rest = self.rest();
        let len = rest
            .find(|c: char| matches!(c, ':' | ',' | '{' | '}' | '[' | ']') || c.is_whitespace())
            .unwrap_or(rest.len());
        if len == 0 {
            return self.fail(format!("expected a key, found {}", self.found()));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    fn gemma_array(&mut self, depth: usize) -> Parsed<Value> {
        self.expect("[")?;
        let mut items = Vec::new();
        loop {
            self.skip_whitespace();
            if self.eat("]") {
                return Ok(Value::Array(items));
            }
            items.push(self.gemma_value(depth + 1)?);
            self.skip_whitespace();
            if !self.eat(",") && self.peek() != Some(']') {
                return self.fail(format!("expected ',' or ']', found {}", self.found()));
            }
        }
    }
}

/// An integer (any size that fits u64/i64) or a float, parsed exactly (`1.`, `.5` included).
fn parse_number(literal: &str) -> Option<Number> {
    if !literal.contains(['.', 'e', 'E']) {
        if let Ok(n) = literal.parse::<i64>() {
            return Some(n.into());
        }
        if let Ok(n) = literal.parse::<u64>() {
            return Some(n.into());
        }
    }
    Number::from_f64(literal.parse::<f64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn python(text: &str) -> Parsed<Value> {
        Cursor::new(text, 0).python_literal(0)
    }

    #[test]
    fn python_literals_parse_to_json() {
        assert_eq!(
            python(r#"{'a': [1, -2.5, 1e-07, True, None], "b\n": ('x',), 3: (7)}"#).unwrap(),
            json!({"a": [1, -2.5, 1e-7, true, null], "b\n": ["x"], "3": 7})
        );
        assert_eq!(
            python(r#"'it\'s \x41\u00e9\U0001F600 \q'"#).unwrap(),
            json!("it's Aé😀 \\q")
        );
        assert_eq!(python("'''multi\nline'''").unwrap(), json!("multi\nline"));
        assert_eq!(python("r'C:\\path'").unwrap(), json!("C:\\path"));
        assert_eq!(
            python("12345678901234567890").unwrap(),
            json!(12345678901234567890u64)
        );
    }

    #[test]
    fn python_errors_point_at_the_fault() {
        assert_eq!(python("[1, 2").unwrap_err().offset, 5);
        assert_eq!(
            python("'open").unwrap_err(),
            SyntaxError {
                offset: 0,
                reason: "unterminated string".into()
            }
        );
        assert_eq!(python("[1, x]").unwrap_err().offset, 4);
        assert!(python(&"[".repeat(1000))
            .unwrap_err()
            .reason
            .contains("nested"));
    }

    #[test]
    fn gemma_values_parse_to_json() {
        let text = r#"{big:12345678901234567890,empty:{},filters:{adult:false,alpha:None},genres:[<|"|>sci-fi<|"|>],q:<|"|>a "b", c<|"|>,tiny:1e-07}"#;
        assert_eq!(
            Cursor::new(text, 0).gemma_value(0).unwrap(),
            json!({"big": 12345678901234567890u64, "empty": {}, "filters": {"adult": false, "alpha": null}, "genres": ["sci-fi"], "q": "a \"b\", c", "tiny": 1e-7})
        );
    }
}
