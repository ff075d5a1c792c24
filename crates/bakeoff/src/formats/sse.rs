//! Line-level decoding of streamed responses: server-sent events (`data: {...}` lines, as
//! llama-server and OpenAI-compatible servers send them) and NDJSON (one object a line, as Ollama
//! sends them).

/// What one line of a server-sent-event stream carries.
#[derive(Debug, PartialEq, Eq)]
pub enum SseLine<'a> {
    /// A `data:` payload (JSON for every server bakeoff speaks to).
    Data(&'a str),
    /// `data: [DONE]`, the OpenAI end-of-stream marker.
    Done,
    /// An `error:` line (llama-server reports mid-stream failures this way).
    Error(&'a str),
    /// Blank lines, comments, `event:`/`id:`/`retry:` fields: nothing to act on.
    Ignored,
}

pub fn parse_line(line: &str) -> SseLine<'_> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(payload) = line.strip_prefix("data:") {
        let payload = payload.trim_start();
        if payload == "[DONE]" {
            SseLine::Done
        } else {
            SseLine::Data(payload)
        }
    } else if let Some(payload) = line.strip_prefix("error:") {
        SseLine::Error(payload.trim_start())
    } else {
        SseLine::Ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_lines() {
        assert_eq!(parse_line("data: {\"a\":1}\n"), SseLine::Data("{\"a\":1}"));
        assert_eq!(parse_line("data:[DONE]\r\n"), SseLine::Done);
        assert_eq!(
            parse_line("error: {\"code\":500}"),
            SseLine::Error("{\"code\":500}")
        );
        assert_eq!(parse_line(": keep-alive"), SseLine::Ignored);
        assert_eq!(parse_line(""), SseLine::Ignored);
    }
}
