//! Sending one load request and timing it: llama-server's `/completion` for token prompts (exact
//! counts, server token ids per chunk), `/v1/chat/completions` for chat prompts (token counts from
//! llama-server's per-chunk timings when present, else one per content chunk).

use super::metrics::RequestRecord;
use super::workload::{Prompt, RequestSpec};
use crate::engines::http::{Flow, Http};
use crate::Error;
use serde_json::{json, Value};
use std::time::Instant;

/// An error's kind for the per-kind counts: `http_503`, `timeout`, `connect`, `truncated`, `bad_json`, `other`.
pub fn error_kind(error: &Error) -> String {
    let text = error.to_string();
    if let Some(at) = text.find("HTTP ") {
        let code: String = text[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !code.is_empty() {
            return format!("http_{code}");
        }
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        "timeout".into()
    } else if lower.contains("connection refused")
        || lower.contains("connect") && lower.contains("error")
    {
        "connect".into()
    } else if lower.contains("truncated") || lower.contains("stream broke") {
        "truncated".into()
    } else if lower.contains("not json") {
        "bad_json".into()
    } else {
        "other".into()
    }
}

fn body(spec: &RequestSpec, model: Option<&str>) -> (&'static str, Value) {
    match &spec.prompt {
        Prompt::Tokens(tokens) => (
            "/completion",
            json!({ "prompt": tokens, "n_predict": spec.max_tokens, "stream": true, "ignore_eos": true, "cache_prompt": spec.cache_prompt }),
        ),
        Prompt::Chat(messages) => (
            "/v1/chat/completions",
            json!({
                "model": model.unwrap_or("default"), "messages": messages, "max_tokens": spec.max_tokens, "stream": true,
                "stream_options": { "include_usage": true }, "timings_per_token": true,
            }),
        ),
    }
}

/// Send `spec` (scheduled at `scheduled`, relative to `origin`) and record what happened.
pub fn send(
    http: &Http,
    spec: &RequestSpec,
    index: usize,
    origin: Instant,
    scheduled: Instant,
    model: Option<&str>,
) -> RequestRecord {
    let secs = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
    let mut record = RequestRecord {
        index,
        scheduled_s: secs(scheduled),
        sent_s: secs(Instant::now()),
        ..Default::default()
    };
    let (path, payload) = body(spec, model);
    let mut predicted_so_far: u64 = 0;
    let result = http.post_sse(path, &payload, |at, chunk| {
        let count = chunk_tokens(&chunk, &mut predicted_so_far);
        if count > 0 {
            record.arrivals.push((secs(at), count));
        }
        if let Some(timings) = chunk.get("timings").filter(|t| t.is_object()) {
            record.prompt_tokens = timings["prompt_n"].as_u64().or(record.prompt_tokens);
            record.cached_tokens = timings["cache_n"].as_u64().or(record.cached_tokens);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            record.prompt_tokens = usage["prompt_tokens"].as_u64().or(record.prompt_tokens);
        }
        Ok(if chunk["stop"].as_bool() == Some(true) {
            Flow::Stop
        } else {
            Flow::Continue
        })
    });
    record.end_s = secs(Instant::now());
    if let Err(error) = result {
        record.error = Some(error_kind(&error));
        record.error_message = Some(error.to_string());
    }
    record
}

/// Tokens in one streamed chunk.
fn chunk_tokens(chunk: &Value, predicted_so_far: &mut u64) -> u32 {
    if chunk.get("stop").is_some() && chunk.get("choices").is_none() {
        // llama-server /completion: one event per token, even when its piece decodes to "".
        return crate::measure::bench::event_tokens(chunk) as u32;
    }
    if let Some(tokens) = chunk.get("tokens").and_then(Value::as_array) {
        return tokens.len() as u32; // llama-server /completion: the token ids themselves
    }
    let content = chunk["choices"][0]["delta"]["content"]
        .as_str()
        .or_else(|| chunk["content"].as_str());
    match chunk["timings"]["predicted_n"].as_u64() {
        // llama-server chat with timings_per_token: cumulative counts.
        Some(predicted)
            if content.is_some_and(|c| !c.is_empty()) || predicted > *predicted_so_far =>
        {
            let count = predicted.saturating_sub(*predicted_so_far);
            *predicted_so_far = predicted;
            count as u32
        }
        _ => u32::from(content.is_some_and(|c| !c.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_count_server_tokens_not_chunks() {
        let mut seen = 0;
        assert_eq!(
            chunk_tokens(&json!({"content": "ab", "tokens": [5, 6]}), &mut seen),
            2
        );
        // The role-only first chat chunk is not a token.
        assert_eq!(
            chunk_tokens(
                &json!({"choices": [{"delta": {"role": "assistant", "content": null}}]}),
                &mut seen
            ),
            0
        );
        let chat = |content: &str, n: u64| json!({"choices": [{"delta": {"content": content}}], "timings": {"predicted_n": n}});
        assert_eq!(chunk_tokens(&chat("I", 1), &mut seen), 1);
        assert_eq!(chunk_tokens(&chat(" am here", 4), &mut seen), 3);
        // A generic OpenAI server without timings: one per content chunk.
        let mut none = 0;
        assert_eq!(
            chunk_tokens(
                &json!({"choices": [{"delta": {"content": "x"}}]}),
                &mut none
            ),
            1
        );
    }

    #[test]
    fn error_kinds() {
        assert_eq!(error_kind(&Error::http("u", "HTTP 503: busy")), "http_503");
        assert_eq!(
            error_kind(&Error::http(
                "u",
                "stream ended after 3 events without a final chunk (truncated)"
            )),
            "truncated"
        );
        assert_eq!(
            error_kind(&Error::http("u", "timed out reading response")),
            "timeout"
        );
    }
}
