//! The server's own view during a load step: llama-server `/metrics` (Prometheus text: tokens,
//! decode calls, requests processing and deferred, speculative counters) and `/slots` (how many
//! slots are busy, prompt tokens held), sampled once a second.

use crate::engines::http::Http;
use serde_json::Value;

/// `name value` pairs of a Prometheus text exposition (labels dropped; comments skipped).
pub fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            let value: f64 = parts.next()?.parse().ok()?;
            let name = name.split('{').next().unwrap_or(name);
            Some((name.to_string(), value))
        })
        .collect()
}

/// One scrape: `/metrics` values and `/slots` aggregates. Missing endpoints give nothing.
pub fn scrape(http: &Http) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Ok((200, text)) = http.get_raw("/metrics") {
        out.extend(parse_prometheus(&text));
    }
    if let Ok(Value::Array(slots)) = http.get_json("/slots") {
        let busy = slots
            .iter()
            .filter(|s| s["is_processing"].as_bool() == Some(true))
            .count();
        let held: u64 = slots
            .iter()
            .filter_map(|s| s["n_prompt_tokens"].as_u64())
            .sum();
        out.push(("slots:total".into(), slots.len() as f64));
        out.push(("slots:processing".into(), busy as f64));
        out.push(("slots:prompt_tokens".into(), held as f64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama_server_metrics() {
        let text = "# HELP llamacpp:tokens_predicted_total Number\n# TYPE x counter\nllamacpp:tokens_predicted_total 5\nllamacpp:requests_deferred 0\nfoo{a=\"b\"} 1.5\n";
        let parsed = parse_prometheus(text);
        assert_eq!(
            parsed,
            [
                ("llamacpp:tokens_predicted_total".into(), 5.0),
                ("llamacpp:requests_deferred".into(), 0.0),
                ("foo".into(), 1.5)
            ]
        );
    }
}
