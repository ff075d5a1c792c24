//! Load shapes: closed-loop concurrency (N users, each sending its next request when the last
//! finishes), open-loop rates (constant, Poisson, or gamma with a burstiness shape) whose send
//! schedule is fixed in advance, and max throughput (everything scheduled at once). Records flow
//! back over a channel to the caller's thread, which stores them; the step ends at its duration or
//! request bound, on Ctrl-C, or early when the server saturates.

use super::client;
use super::metrics::RequestRecord;
use super::workload::Generator;
use crate::engines::http::{Http, Timeouts};
use crate::engines::process;
use crate::measure::stats::{median, Rng};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Stored as `{"kind": "concurrency", "users": 4}`, `{"kind": "rate", "rate_per_s": 2.0,
/// "burstiness": 1.0}` or `{"kind": "max_throughput"}` (docs/json.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ShapeRecord", try_from = "ShapeRecord")]
pub enum Shape {
    Concurrency(usize),
    /// Requests per second; `burstiness` is the gamma shape of inter-arrival times (1 = Poisson,
    /// below 1 burstier, above 1 smoother); `None` sends at a constant pace.
    Rate {
        rate: f64,
        burstiness: Option<f64>,
    },
    MaxThroughput,
}

impl Shape {
    pub fn label(&self) -> String {
        match self {
            Shape::Concurrency(n) => format!("c{n}"),
            Shape::Rate {
                rate,
                burstiness: None,
            } => format!("rate {rate:.2}/s"),
            Shape::Rate {
                rate,
                burstiness: Some(k),
            } if (*k - 1.0).abs() < 1e-9 => format!("poisson {rate:.2}/s"),
            Shape::Rate {
                rate,
                burstiness: Some(k),
            } => format!("gamma(k={k}) {rate:.2}/s"),
            Shape::MaxThroughput => "max".into(),
        }
    }
}

/// The flat, documented form of a [`Shape`] in JSON.
#[derive(Serialize, Deserialize)]
struct ShapeRecord {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burstiness: Option<f64>,
}

impl From<Shape> for ShapeRecord {
    fn from(shape: Shape) -> Self {
        let record = |kind: &str| ShapeRecord {
            kind: kind.into(),
            users: None,
            rate_per_s: None,
            burstiness: None,
        };
        match shape {
            Shape::Concurrency(users) => ShapeRecord {
                users: Some(users),
                ..record("concurrency")
            },
            Shape::Rate { rate, burstiness } => ShapeRecord {
                rate_per_s: Some(rate),
                burstiness,
                ..record("rate")
            },
            Shape::MaxThroughput => record("max_throughput"),
        }
    }
}

impl TryFrom<ShapeRecord> for Shape {
    type Error = String;

    fn try_from(r: ShapeRecord) -> Result<Self, String> {
        let missing = |field: &str| format!("load shape '{}' needs '{field}'", r.kind);
        match r.kind.as_str() {
            "concurrency" => Ok(Shape::Concurrency(r.users.ok_or_else(|| missing("users"))?)),
            "rate" => Ok(Shape::Rate {
                rate: r.rate_per_s.ok_or_else(|| missing("rate_per_s"))?,
                burstiness: r.burstiness,
            }),
            "max_throughput" => Ok(Shape::MaxThroughput),
            other => Err(format!(
                "unknown load shape '{other}' (expected concurrency, rate or max_throughput)"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLimits {
    #[serde(rename = "duration_s", with = "crate::domain::seconds::option")]
    pub duration: Option<Duration>,
    pub requests: Option<usize>,
    #[serde(rename = "warmup_s", with = "crate::domain::seconds")]
    pub warmup: Duration,
    #[serde(rename = "cooldown_s", with = "crate::domain::seconds")]
    pub cooldown: Duration,
    /// Open-loop worker threads (the most requests in flight at once).
    pub max_inflight: usize,
    /// Stop a step early when the server saturates.
    pub stop_on_saturation: bool,
}

/// How long one `/metrics` or `/slots` scrape may take (they are taken once a second).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Live figures for progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub done: usize,
    pub errors: usize,
    pub elapsed_s: f64,
    pub rate: f64,
    pub p50_ttft_ms: f64,
}

pub struct StepResult {
    pub records: Vec<RequestRecord>,
    pub wall_s: f64,
    pub saturated: Option<String>,
    pub client_cpu_cores: f64,
    /// (second, name, value) from the server's /metrics and /slots.
    pub server_samples: Vec<(usize, String, f64)>,
}

/// Gamma(k, θ) by Marsaglia–Tsang (k < 1 boosted by U^(1/k)).
fn gamma(rng: &mut Rng, shape: f64, scale: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.unit().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0, scale) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = super::workload::standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.unit().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * scale;
        }
    }
}

/// Send times (seconds from the start) for an open-loop shape, fixed in advance from `seed`.
pub fn schedule(shape: &Shape, count: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut t = 0.0;
    (0..count)
        .map(|i| match shape {
            Shape::Rate {
                rate,
                burstiness: None,
            } => i as f64 / rate,
            Shape::Rate {
                rate,
                burstiness: Some(k),
            } => {
                let at = t;
                t += gamma(&mut rng, *k, 1.0 / (k * rate));
                at
            }
            _ => 0.0,
        })
        .collect()
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, r)| {
            r.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0)) / ticks
}

/// Saturation: over the last three windows (each at least 2 s and 5 completed requests, so a
/// median means something), throughput no longer rises (≤ 5 % above the best earlier window) while
/// the median TTFT rises by more than 10 % every window and by half in all. Closed-loop steps
/// whose TTFT merely wobbles (requests falling into phase) do not trip it.
struct SaturationWatch {
    windows: Vec<(f64, f64)>,
    current_tokens: f64,
    current_ttfts: Vec<f64>,
    window_start: f64,
}

const WINDOW_S: f64 = 2.0;
const WINDOW_MIN_REQUESTS: usize = 5;

impl SaturationWatch {
    fn new(start: f64) -> Self {
        SaturationWatch {
            windows: Vec::new(),
            current_tokens: 0.0,
            current_ttfts: Vec::new(),
            window_start: start,
        }
    }

    fn observe(&mut self, r: &RequestRecord) -> Option<String> {
        let elapsed = r.end_s - self.window_start;
        if elapsed >= WINDOW_S && self.current_ttfts.len() >= WINDOW_MIN_REQUESTS {
            self.windows
                .push((self.current_tokens / elapsed, median(&self.current_ttfts)));
            self.current_tokens = 0.0;
            self.current_ttfts.clear();
            self.window_start = r.end_s;
            if let Some(reason) = self.check() {
                return Some(reason);
            }
        }
        if r.error.is_none() {
            self.current_tokens += r.output_tokens() as f64;
            if let Some(t) = r.ttft_ms() {
                self.current_ttfts.push(t);
            }
        }
        None
    }

    fn check(&self) -> Option<String> {
        let n = self.windows.len();
        if n < 4 {
            return None;
        }
        let last = &self.windows[n - 3..];
        let best_before = self.windows[..n - 3]
            .iter()
            .map(|w| w.0)
            .fold(0.0, f64::max);
        let flat = last.iter().all(|w| w.0 <= best_before * 1.05);
        let rising = last.windows(2).all(|p| p[1].1 > p[0].1 * 1.10)
            && self.windows[n - 4].1 < last[0].1
            && last[2].1 >= self.windows[n - 4].1 * 1.5;
        (flat && rising).then(|| {
            format!(
                "saturated: throughput flat at {:.1} tok/s while median TTFT rose {:.0} → {:.0} ms over the last three windows",
                last[2].0,
                self.windows[n - 4].1,
                last[2].1,
            )
        })
    }
}

/// Run one step; `on_record` is called on this thread for every finished request. Conversations
/// are numbered from `first_conversation`, so each step sends fresh prompts (no cache hits carried
/// over from an earlier step).
#[expect(
    clippy::too_many_arguments,
    reason = "the step's inputs; bundling them would only rename them"
)]
pub fn run_step(
    http: &Http,
    generator: &Generator,
    shape: &Shape,
    limits: &StepLimits,
    seed: u64,
    first_conversation: usize,
    model: Option<&str>,
    on_record: &mut dyn FnMut(&RequestRecord, &Progress),
) -> StepResult {
    let origin = Instant::now();
    let cpu_before = cpu_seconds();
    let stop = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let issued = AtomicUsize::new(0);
    let deadline = limits.duration.map(|d| origin + d);
    let may_issue = || {
        !stop.load(Ordering::SeqCst)
            && process::interrupted().is_none()
            && deadline.is_none_or(|d| Instant::now() < d)
            && limits
                .requests
                .is_none_or(|max| issued.load(Ordering::SeqCst) < max)
    };
    let (tx, rx) = mpsc::channel::<RequestRecord>();
    let mut records = Vec::new();
    let mut saturated = None;
    let mut server_samples = Vec::new();
    let next_conversation = AtomicUsize::new(first_conversation);
    let (job_tx, job_rx) = mpsc::sync_channel::<(usize, Instant)>(limits.max_inflight.max(1));
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| {
        let scraper = scope.spawn(|| {
            // A frozen server must not hold the step's end for a whole request bound.
            let probe = http.retimed(Timeouts {
                first_byte: SCRAPE_TIMEOUT,
                idle: SCRAPE_TIMEOUT,
                ..http.timeouts()
            });
            let mut samples = Vec::new();
            let mut second = 0;
            while !finished.load(Ordering::SeqCst) {
                for (name, value) in super::scrape::scrape(&probe) {
                    samples.push((second, name, value));
                }
                second += 1;
                let next = origin + Duration::from_secs(second as u64);
                while Instant::now() < next && !finished.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            samples
        });
        match shape {
            Shape::Concurrency(users) => {
                drop(job_tx);
                for _ in 0..*users {
                    let tx = tx.clone();
                    let (may_issue, next_conversation, issued) =
                        (&may_issue, &next_conversation, &issued);
                    scope.spawn(move || {
                        while may_issue() {
                            let index = next_conversation.fetch_add(1, Ordering::SeqCst);
                            for spec in generator.conversation(index) {
                                if !may_issue() {
                                    return;
                                }
                                let i = issued.fetch_add(1, Ordering::SeqCst);
                                let record =
                                    client::send(http, &spec, i, origin, Instant::now(), model);
                                if tx.send(record).is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            }
            Shape::Rate { .. } | Shape::MaxThroughput => {
                let count = limits.requests.unwrap_or_else(|| {
                    let rate = match shape {
                        Shape::Rate { rate, .. } => *rate,
                        _ => 1e6,
                    };
                    (limits.duration.map(|d| d.as_secs_f64()).unwrap_or(60.0) * rate).ceil()
                        as usize
                        + 1
                });
                let times = schedule(shape, count.min(1_000_000), seed);
                let job_rx = &job_rx;
                for _ in 0..limits.max_inflight.max(1) {
                    let tx = tx.clone();
                    scope.spawn(move || loop {
                        let job = job_rx.lock().ok().and_then(|rx| rx.recv().ok());
                        let Some((i, scheduled)) = job else { return };
                        let turns = generator.conversation(first_conversation + i);
                        let spec = &turns[0];
                        if tx
                            .send(client::send(http, spec, i, origin, scheduled, model))
                            .is_err()
                        {
                            return;
                        }
                    });
                }
                let (may_issue, issued) = (&may_issue, &issued);
                scope.spawn(move || {
                    for (i, at) in times.iter().enumerate() {
                        let scheduled = origin + Duration::from_secs_f64(*at);
                        while Instant::now() < scheduled {
                            if !may_issue() {
                                return;
                            }
                            std::thread::sleep(
                                (scheduled - Instant::now()).min(Duration::from_millis(20)),
                            );
                        }
                        if !may_issue() || job_tx.send((i, scheduled)).is_err() {
                            return;
                        }
                        issued.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        }
        drop(tx);
        let mut watch = SaturationWatch::new(limits.warmup.as_secs_f64());
        let mut progress = Progress::default();
        let mut ttfts: Vec<f64> = Vec::new();
        for record in rx {
            progress.done += 1;
            progress.errors += usize::from(record.error.is_some());
            progress.elapsed_s = origin.elapsed().as_secs_f64();
            progress.rate = progress.done as f64 / progress.elapsed_s.max(1e-9);
            if let Some(t) = record.ttft_ms() {
                ttfts.push(t);
                if ttfts.len() % 8 == 1 {
                    progress.p50_ttft_ms = median(&ttfts);
                }
            }
            if limits.stop_on_saturation
                && saturated.is_none()
                && record.scheduled_s >= limits.warmup.as_secs_f64()
            {
                if let Some(reason) = watch.observe(&record) {
                    saturated = Some(reason);
                    stop.store(true, Ordering::SeqCst);
                }
            }
            on_record(&record, &progress);
            records.push(record);
        }
        finished.store(true, Ordering::SeqCst);
        server_samples = scraper.join().unwrap_or_default();
    });
    let wall_s = origin.elapsed().as_secs_f64();
    let client_cpu_cores = (cpu_seconds() - cpu_before) / wall_s.max(1e-9);
    StepResult {
        records,
        wall_s,
        saturated,
        client_cpu_cores,
        server_samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `runs show --json` printed serde internals: `{"Rate": {...}}` and `{"secs": 10, "nanos": 0}`.
    #[test]
    fn shapes_and_limits_have_documented_json() {
        let shapes = [
            Shape::Concurrency(4),
            Shape::Rate {
                rate: 2.5,
                burstiness: Some(1.0),
            },
            Shape::MaxThroughput,
        ];
        let text = serde_json::to_string(&shapes).unwrap();
        assert_eq!(
            text,
            r#"[{"kind":"concurrency","users":4},{"kind":"rate","rate_per_s":2.5,"burstiness":1.0},{"kind":"max_throughput"}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Shape>>(&text).unwrap(), shapes);
        let bad = serde_json::from_str::<Shape>(r#"{"kind":"rate"}"#).unwrap_err();
        assert!(bad.to_string().contains("needs 'rate_per_s'"), "{bad}");
        let limits = StepLimits {
            duration: Some(Duration::from_secs(30)),
            requests: None,
            warmup: Duration::from_millis(500),
            cooldown: Duration::ZERO,
            max_inflight: 8,
            stop_on_saturation: true,
        };
        let json = serde_json::to_value(&limits).unwrap();
        assert_eq!(json["duration_s"], 30.0);
        assert_eq!(json["warmup_s"], 0.5);
        assert!(!json.to_string().contains("secs"), "{json}");
    }

    #[test]
    fn schedules_are_fixed_in_advance_and_reproducible() {
        let constant = schedule(
            &Shape::Rate {
                rate: 4.0,
                burstiness: None,
            },
            5,
            1,
        );
        assert_eq!(constant, [0.0, 0.25, 0.5, 0.75, 1.0]);
        let poisson = Shape::Rate {
            rate: 10.0,
            burstiness: Some(1.0),
        };
        let a = schedule(&poisson, 2000, 7);
        assert_eq!(a, schedule(&poisson, 2000, 7));
        let mean_gap = a.last().unwrap() / 1999.0;
        assert!(
            (mean_gap - 0.1).abs() < 0.01,
            "mean inter-arrival {mean_gap}"
        );
        // Burstier (k < 1) has more variable gaps than smoother (k > 1).
        let cv = |k: f64| {
            let t = schedule(
                &Shape::Rate {
                    rate: 10.0,
                    burstiness: Some(k),
                },
                4000,
                3,
            );
            let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            crate::measure::stats::std_dev(&gaps) / crate::measure::stats::mean(&gaps)
        };
        assert!(
            cv(0.25) > 1.5 && cv(4.0) < 0.7,
            "cv(0.25) {} cv(4) {}",
            cv(0.25),
            cv(4.0)
        );
    }

    #[test]
    fn saturation_needs_flat_throughput_and_rising_latency() {
        let mut watch = SaturationWatch::new(0.0);
        let mut verdict = None;
        // 100 tok/s throughout while TTFT doubles every window.
        for w in 0..8 {
            for i in 0..10 {
                let end = w as f64 * WINDOW_S + i as f64 * 0.2 + 0.05;
                let ttft = 100.0 * 2f64.powi(w);
                let r = RequestRecord {
                    scheduled_s: end - ttft / 1000.0 - 0.01,
                    end_s: end,
                    arrivals: vec![(end - 0.01, 20)],
                    ..Default::default()
                };
                verdict = verdict.or(watch.observe(&r));
            }
        }
        assert!(
            verdict
                .as_ref()
                .is_some_and(|v| v.starts_with("saturated: throughput flat at")),
            "{verdict:?}"
        );

        // Regression: a closed-loop step whose TTFT wobbles by 10-30 % tripped the first version.
        let mut watch = SaturationWatch::new(0.0);
        let mut tripped = None;
        for w in 0..8 {
            for i in 0..10 {
                let end = w as f64 * WINDOW_S + i as f64 * 0.2 + 0.05;
                let ttft = 400.0 * [1.0, 1.15, 1.3, 1.45, 1.0, 1.15, 1.3, 1.45][w];
                let r = RequestRecord {
                    scheduled_s: end - ttft / 1000.0 - 0.01,
                    end_s: end,
                    arrivals: vec![(end - 0.01, 20)],
                    ..Default::default()
                };
                tripped = tripped.or(watch.observe(&r));
            }
        }
        assert_eq!(tripped, None);
    }
}
