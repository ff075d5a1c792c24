//! NDJSON decoding (one JSON object a line, as Ollama streams). The reader takes any `BufRead`, so a
//! recorded fixture file and a live HTTP body go through the same parser; a bad line is an error
//! naming the source and its line number.

use crate::{Error, Result};
use serde_json::Value;
use std::io::BufRead;
use std::time::Instant;

/// One decoded line: its 1-based line number, when it arrived, and its JSON value.
#[derive(Debug)]
pub struct NdjsonLine {
    pub line: usize,
    pub arrived: Instant,
    pub value: Value,
}

/// Iterates the JSON values of an NDJSON stream; blank lines are skipped.
pub struct NdjsonReader<R> {
    reader: R,
    source: String,
    line: usize,
    buf: String,
}

impl<R: BufRead> NdjsonReader<R> {
    /// `source` names the stream in errors (a URL or a file path).
    pub fn new(reader: R, source: impl Into<String>) -> Self {
        NdjsonReader {
            reader,
            source: source.into(),
            line: 0,
            buf: String::new(),
        }
    }

    /// The number of lines read so far.
    pub fn lines_read(&self) -> usize {
        self.line
    }

    fn error(&self, message: String) -> Error {
        Error::http(&self.source, format!("line {}: {message}", self.line))
    }

    fn next_line(&mut self) -> Option<Result<NdjsonLine>> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(self.error(format!("stream broke: {e}")))),
            }
            let arrived = Instant::now();
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Value>(text) {
                Ok(value) if value.is_object() => Ok(NdjsonLine {
                    line: self.line,
                    arrived,
                    value,
                }),
                Ok(_) => Err(self.error(format!("expected a JSON object, got: {}", excerpt(text)))),
                Err(e) => Err(self.error(format!("not JSON ({e}): {}", excerpt(text)))),
            });
        }
    }
}

/// The first 120 characters of a line (control characters blanked), for error messages.
fn excerpt(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect()
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = Result<NdjsonLine>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Vec<Result<NdjsonLine>> {
        NdjsonReader::new(text.as_bytes(), "fixture.ndjson").collect()
    }

    #[test]
    fn decodes_objects_and_skips_blank_lines() {
        let lines = read_all("{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}");
        let values: Vec<_> = lines.into_iter().map(|l| l.unwrap()).collect();
        assert_eq!(
            values.iter().map(|l| l.line).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert_eq!(values[2].value["c"], 3);
    }

    #[test]
    fn malformed_line_names_source_and_line_number() {
        let lines = read_all("{\"a\":1}\n{\"b\": tru\n");
        let error = lines[1].as_ref().unwrap_err().to_string();
        assert!(
            error.starts_with("fixture.ndjson: line 2: not JSON"),
            "{error}"
        );
    }

    #[test]
    fn a_bare_value_is_not_an_object() {
        let lines = read_all("[1,2]\n");
        let error = lines[0].as_ref().unwrap_err().to_string();
        assert!(error.contains("line 1: expected a JSON object"), "{error}");
    }
}
