//! Serving metrics, defined once (see docs/metrics.md for how they map to other tools):
//! - **TTFT**: scheduled send time → first content token (client clock). Open-loop runs measure
//!   from the *scheduled* time, so time spent waiting to be sent counts (no coordinated omission).
//! - **ITL**: gaps between consecutive tokens, first token excluded, one value per token: a chunk
//!   carrying k tokens after a gap g contributes k values of g/k (server token counts, not chunks).
//! - **TPOT**: (E2E − TTFT) / (output tokens − 1), per request with at least 2 tokens.
//! - **E2E**: scheduled send time → last byte.
//! - **request throughput**: completed requests / measured window; **output tok/s**: output tokens
//!   of those requests / window.
//! - **goodput**: requests per second that met every SLO given.
//!
//! Percentiles use type-7 interpolation over the raw per-request (or per-token) samples.

use crate::measure::stats::{quantile_sorted, sorted};
use serde::Serialize;
use std::collections::BTreeMap;

/// Percentiles every latency metric reports.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// What one request did, on the client clock (seconds from the start of its step).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestRecord {
    pub index: usize,
    pub scheduled_s: f64,
    pub sent_s: f64,
    /// Arrival time and token count of every chunk that carried tokens.
    pub arrivals: Vec<(f64, u32)>,
    pub end_s: f64,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// `None` on success; else an error kind (`http_503`, `timeout`, `truncated`, …).
    pub error: Option<String>,
    pub error_message: Option<String>,
}

impl RequestRecord {
    pub fn output_tokens(&self) -> u64 {
        self.arrivals.iter().map(|a| u64::from(a.1)).sum()
    }

    pub fn ttft_ms(&self) -> Option<f64> {
        self.arrivals
            .first()
            .map(|a| (a.0 - self.scheduled_s) * 1000.0)
    }

    pub fn e2e_ms(&self) -> f64 {
        (self.end_s - self.scheduled_s) * 1000.0
    }

    pub fn queue_ms(&self) -> f64 {
        (self.sent_s - self.scheduled_s) * 1000.0
    }

    pub fn tpot_ms(&self) -> Option<f64> {
        let out = self.output_tokens();
        (out >= 2).then(|| (self.e2e_ms() - self.ttft_ms().unwrap_or(0.0)) / (out - 1) as f64)
    }

    pub fn itl_ms(&self) -> Vec<f64> {
        token_gaps_ms(&self.arrivals)
    }
}

/// Per-token gaps: the first token is excluded; a chunk of k tokens after a gap g gives k × g/k.
/// The first chunk's extra tokens (k − 1) arrived with the first token: gap 0 each.
pub fn token_gaps_ms(arrivals: &[(f64, u32)]) -> Vec<f64> {
    let mut gaps = Vec::new();
    for (i, &(at, count)) in arrivals.iter().enumerate() {
        if i == 0 {
            gaps.extend(std::iter::repeat_n(0.0, count.saturating_sub(1) as usize));
        } else {
            let gap = (at - arrivals[i - 1].0) * 1000.0 / f64::from(count.max(1));
            gaps.extend(std::iter::repeat_n(gap, count as usize));
        }
    }
    gaps
}

/// Service-level objectives for goodput (milliseconds).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
}

impl Slo {
    /// `ttft=500ms,tpot=50ms,e2e=10s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut slo = Slo::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("--slo {part}: expected NAME=DURATION"))?;
            let ms = parse_duration_ms(value).ok_or_else(|| {
                format!("--slo {part}: '{value}' is not a duration like 500ms or 2s")
            })?;
            match key {
                "ttft" => slo.ttft_ms = Some(ms),
                "tpot" => slo.tpot_ms = Some(ms),
                "e2e" => slo.e2e_ms = Some(ms),
                other => {
                    return Err(format!(
                        "--slo {part}: unknown metric '{other}' (ttft, tpot, e2e)"
                    ))
                }
            }
        }
        Ok(slo)
    }

    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2e_ms.is_none()
    }

    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let within = |limit: Option<f64>, value: Option<f64>| {
            limit.is_none_or(|l| value.is_some_and(|v| v <= l))
        };
        r.error.is_none()
            && within(self.ttft_ms, r.ttft_ms())
            && within(self.tpot_ms, r.tpot_ms())
            && within(self.e2e_ms, Some(r.e2e_ms()))
    }
}

/// `500ms`, `2s`, `1.5s`, `250` (milliseconds).
pub fn parse_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(|v| v * scale)
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub n: usize,
    pub mean: f64,
    pub percentiles: BTreeMap<String, f64>,
}

impl Distribution {
    pub fn of(samples: &[f64]) -> Self {
        let s = sorted(samples);
        let mean = if s.is_empty() {
            f64::NAN
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        };
        Distribution {
            n: s.len(),
            mean,
            percentiles: PERCENTILES
                .iter()
                .map(|(name, q)| (name.to_string(), quantile_sorted(&s, *q)))
                .collect(),
        }
    }

    pub fn p(&self, name: &str) -> f64 {
        self.percentiles.get(name).copied().unwrap_or(f64::NAN)
    }
}

/// The step-level aggregates of one load step, stored beside its raw samples (the percentile
/// tables are computed from the stored samples: see `StepTable`).
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub step: String,
    pub window_s: f64,
    pub completed: usize,
    pub errors: BTreeMap<String, usize>,
    pub request_throughput: f64,
    pub output_tps: f64,
    pub goodput_rps: Option<f64>,
    /// Output tokens per second, second by second (whole step, warmup included).
    pub timeline_tps: Vec<f64>,
    pub saturated: Option<String>,
}

/// Summarise a step over its measured window `[from_s, to_s]`. The requests whose latencies count
/// (`completed`, errors, the stored percentiles) are those sent after the warmup and finished
/// inside the window. Throughput counts what happened inside the window, whoever sent it: the
/// requests that finished in it (req/s, goodput) and the output tokens that arrived in it (tok/s).
/// Counting only the latency set's tokens over the window's length would leave out the window's
/// share of the requests sent during the warmup: a step whose requests last as long as its
/// window would read at half its rate (a 70B shape at 32 users did).
pub fn summarize(
    step: &str,
    records: &[RequestRecord],
    from_s: f64,
    to_s: f64,
    slo: &Slo,
    saturated: Option<String>,
) -> StepSummary {
    let inside = |t: f64| t >= from_s && t <= to_s;
    let window: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.scheduled_s >= from_s && r.end_s <= to_s)
        .collect();
    let mut errors = BTreeMap::new();
    for r in window.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(r.clone()).or_insert(0) += 1;
    }
    let succeeded = || records.iter().filter(|r| r.error.is_none());
    let finished_inside: Vec<&RequestRecord> = succeeded().filter(|r| inside(r.end_s)).collect();
    let tokens_inside: u64 = succeeded()
        .flat_map(|r| &r.arrivals)
        .filter(|(at, _)| inside(*at))
        .map(|(_, count)| u64::from(*count))
        .sum();
    let span = (to_s - from_s).max(1e-9);
    let end = records.iter().map(|r| r.end_s).fold(0.0, f64::max);
    let mut timeline = vec![0.0; end.ceil() as usize];
    for &(at, count) in succeeded().flat_map(|r| &r.arrivals) {
        if let Some(slot) = timeline.get_mut(at as usize) {
            *slot += f64::from(count);
        }
    }
    StepSummary {
        step: step.to_string(),
        window_s: span,
        completed: window.iter().filter(|r| r.error.is_none()).count(),
        errors,
        request_throughput: finished_inside.len() as f64 / span,
        output_tps: tokens_inside as f64 / span,
        goodput_rps: (!slo.is_empty()).then(|| {
            let met = finished_inside.iter().filter(|r| slo.met_by(r)).count();
            met as f64 / span
        }),
        timeline_tps: timeline,
        saturated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scheduled: f64, arrivals: &[(f64, u32)], end: f64) -> RequestRecord {
        RequestRecord {
            scheduled_s: scheduled,
            sent_s: scheduled,
            arrivals: arrivals.to_vec(),
            end_s: end,
            ..Default::default()
        }
    }

    #[test]
    fn itl_is_per_token_not_per_chunk() {
        // first token at 0.1 s, then one token at 0.2 s, then a chunk of 3 tokens at 0.5 s.
        let gaps = token_gaps_ms(&[(0.1, 1), (0.2, 1), (0.5, 3)]);
        let rounded: Vec<i64> = gaps.iter().map(|g| g.round() as i64).collect();
        assert_eq!(rounded, [100, 100, 100, 100]);
    }

    #[test]
    fn latencies_count_from_the_scheduled_time() {
        let mut r = record(1.0, &[(1.5, 1), (1.6, 1), (1.7, 1)], 1.7);
        r.sent_s = 1.2; // waited 200 ms to be sent: still part of TTFT
        assert!((r.ttft_ms().unwrap() - 500.0).abs() < 1e-9);
        assert!((r.tpot_ms().unwrap() - 100.0).abs() < 1e-9);
        assert!((r.queue_ms() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn throughput_counts_what_the_window_saw_whoever_sent_it() {
        // Closed loop, one user, 4 s requests of 4 tokens (one a second from 0.5 s), a 2 s
        // warmup: the first request was sent in the warmup, but its last two tokens and its end
        // fall in the window.
        let tokens = |start: f64| [0.5, 1.5, 2.5, 3.5].map(|at| (start + at, 1));
        let first = record(0.0, &tokens(0.0), 4.0);
        let second = record(4.0, &tokens(4.0), 8.0);
        let summary = summarize("c1", &[first, second], 2.0, 8.0, &Slo::default(), None);
        // Latencies: only the request sent after the warmup.
        assert_eq!(summary.completed, 1);
        // Six tokens and two ends in six seconds; the latency set alone would say 4/6 and 1/6.
        assert!(
            (summary.output_tps - 1.0).abs() < 1e-9,
            "{}",
            summary.output_tps
        );
        assert!((summary.request_throughput - 2.0 / 6.0).abs() < 1e-9);
        // A failed request's end is not a completion.
        let mut failed = record(2.0, &[], 3.0);
        failed.error = Some("http_500".into());
        let summary = summarize("c1", &[failed], 2.0, 8.0, &Slo::default(), None);
        assert_eq!((summary.completed, summary.request_throughput), (0, 0.0));
        assert_eq!(summary.errors.get("http_500"), Some(&1));
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let fast = record(0.0, &[(0.1, 1), (0.12, 1)], 0.12);
        let slow_first = record(0.0, &[(0.9, 1), (0.92, 1)], 0.92);
        let slo = Slo::parse("ttft=500ms,tpot=50ms").unwrap();
        assert!(slo.met_by(&fast) && !slo.met_by(&slow_first));
        let summary = summarize("c2", &[fast, slow_first], 0.0, 1.0, &slo, None);
        assert_eq!(summary.goodput_rps, Some(1.0));
        assert_eq!(summary.completed, 2);
        assert!(Slo::parse("ttft=fast").is_err());
        assert_eq!(parse_duration_ms("1.5s"), Some(1500.0));
    }
}
