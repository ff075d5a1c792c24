//! How big a server a load plan needs: enough slots for its most concurrent step, and a context
//! that holds every slot's longest request; and how long a step must run for its window to hold
//! enough requests.

use super::executor::{Shape, StepLimits};
use super::metrics::RequestRecord;
use super::{LoadPlan, MIN_WINDOW_REQUESTS};
use crate::measure::stats::median;

/// Slots assumed for open-loop steps, whose concurrency is not fixed in advance.
const OPEN_LOOP_SLOTS: usize = 4;

/// The flags a launched llama-server gets for a load plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSizing {
    pub slots: usize,
    pub ctx: u32,
    /// `--metrics -np SLOTS -c CTX`, then the user's flags (which win where they repeat one).
    pub args: Vec<String>,
}

impl LoadPlan {
    /// The most concurrent requests any step can have (sizes the server's slots).
    pub fn peak_concurrency(&self) -> usize {
        let sweep = if self.sweep_rates.is_some() {
            OPEN_LOOP_SLOTS
        } else {
            1
        };
        self.shapes
            .iter()
            .map(|shape| match shape {
                Shape::Concurrency(n) => *n,
                _ => OPEN_LOOP_SLOTS,
            })
            .max()
            .unwrap_or(OPEN_LOOP_SLOTS)
            .max(sweep)
    }

    /// Slots, context (a multiple of 256) and the launch flags, with `user` flags last.
    pub fn server_sizing(&self, user: &[String]) -> ServerSizing {
        let slots = self.peak_concurrency();
        let per_slot = self.workload.max_tokens_per_request() + 64;
        let ctx = (slots as u32 * per_slot).div_ceil(256) * 256;
        let mut args = vec!["--metrics".to_string()];
        args.extend([
            "-np".into(),
            slots.to_string(),
            "-c".into(),
            ctx.to_string(),
        ]);
        args.extend(user.iter().cloned());
        ServerSizing { slots, ctx, args }
    }
}

/// What to change so a step's measured window holds [`MIN_WINDOW_REQUESTS`] requests, after
/// "only N request(s) completed inside the measured window". The step's own bound (its duration,
/// else its request count) is sized from the median end-to-end time of the requests that did
/// finish, counting the rounds its warmup and cooldown take out of the window; with none
/// finished, or a bound that would be absurd (a cooldown hundreds of requests long), it names the
/// bound to change.
pub(super) fn window_remedy(
    shape: &Shape,
    limits: &StepLimits,
    records: &[RequestRecord],
) -> String {
    let trimmed = !limits.warmup.is_zero() || !limits.cooldown.is_zero();
    let or_trim = if trimmed {
        " (or shorten --warmup/--cooldown)"
    } else {
        ""
    };
    let generic = match limits.duration {
        Some(_) => format!("; lengthen --duration{or_trim} for figures worth reading"),
        None => format!("; raise --requests{or_trim} for figures worth reading"),
    };
    let finished: Vec<f64> = records
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.e2e_ms() / 1000.0)
        .collect();
    let per_request = median(&finished);
    if finished.is_empty() || per_request <= 0.0 {
        return generic;
    }
    let need = MIN_WINDOW_REQUESTS as f64;
    let (warmup, cooldown) = (limits.warmup.as_secs_f64(), limits.cooldown.as_secs_f64());
    // Closed loop: each user sends a request per `per_request`; the rounds begun in the warmup
    // and those ending in the cooldown are outside the window.
    let rounds_out = (warmup / per_request).ceil() + (cooldown / per_request).ceil();
    let remedy = match (limits.duration, shape) {
        (Some(_), Shape::Concurrency(users)) => {
            let rounds = (need / *users as f64).ceil() + rounds_out;
            Bound::Seconds(rounds * per_request)
        }
        (Some(_), Shape::Rate { rate, .. }) => {
            Bound::Seconds(warmup + cooldown + need / rate + per_request)
        }
        (None, Shape::Concurrency(users)) => {
            let users = *users as f64;
            Bound::Requests(users * ((need / users).ceil() + rounds_out))
        }
        (None, Shape::Rate { rate, .. }) => {
            Bound::Requests(need + (rate * (warmup + cooldown)).ceil())
        }
        (_, Shape::MaxThroughput) => return generic,
    };
    match remedy {
        Bound::Seconds(s) if s / per_request <= 100.0 * need => {
            let with = if trimmed {
                " with this warmup and cooldown"
            } else {
                ""
            };
            format!(
                " (a request took {per_request:.1} s, median); --duration {}s{with} would hold about {MIN_WINDOW_REQUESTS}",
                round_up_nicely(s)
            )
        }
        Bound::Requests(n) if n <= 100.0 * need => {
            format!(
                "; raise --requests to {}{or_trim} for figures worth reading",
                n.ceil()
            )
        }
        _ => generic,
    }
}

enum Bound {
    Seconds(f64),
    Requests(f64),
}

/// Up to a whole second, then to 5 s past 10 s and to 10 s past a minute.
fn round_up_nicely(seconds: f64) -> u64 {
    let s = seconds.ceil() as u64;
    let step = match s {
        0..=10 => 1,
        11..=60 => 5,
        _ => 10,
    };
    s.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(duration: Option<u64>, requests: Option<usize>, warmup: u64) -> StepLimits {
        StepLimits {
            duration: duration.map(Duration::from_secs),
            requests,
            warmup: Duration::from_secs(warmup),
            cooldown: Duration::ZERO,
            max_inflight: 4,
            stop_on_saturation: false,
        }
    }

    /// `count` requests that each took `seconds`.
    fn took(seconds: f64, count: usize) -> Vec<RequestRecord> {
        let record = RequestRecord {
            end_s: seconds,
            ..Default::default()
        };
        vec![record; count]
    }

    #[test]
    fn a_window_shorter_than_a_request_is_sized_from_the_requests_that_finished() {
        // The 70B shape on one H100: 16 users, 15 s requests, an 8 s step after 2 s of warmup.
        // One round inside the window and one begun in the warmup: 30 s.
        let remedy = window_remedy(
            &Shape::Concurrency(16),
            &limits(Some(8), None, 2),
            &took(15.0, 16),
        );
        assert_eq!(
            remedy,
            " (a request took 15.0 s, median); --duration 30s with this warmup and cooldown would hold about 10"
        );
        // One user, 3.6 s requests: ten rounds and the warmup's: 39.6 s, rounded up to 40 s.
        let remedy = window_remedy(
            &Shape::Concurrency(1),
            &limits(Some(8), None, 2),
            &took(3.6, 2),
        );
        assert!(remedy.contains("--duration 40s"), "{remedy}");
        // Two requests a second: 5 s of arrivals, and the last one's 1 s to finish.
        let rate = Shape::Rate {
            rate: 2.0,
            burstiness: None,
        };
        let remedy = window_remedy(&rate, &limits(Some(3), None, 0), &took(1.0, 4));
        assert!(remedy.contains("--duration 6s would"), "{remedy}");
    }

    #[test]
    fn a_request_count_step_is_told_how_many_requests() {
        // Four users, no warmup: three rounds of four.
        let remedy = window_remedy(
            &Shape::Concurrency(4),
            &limits(None, Some(4), 0),
            &took(0.5, 4),
        );
        assert_eq!(remedy, "; raise --requests to 12 for figures worth reading");
        // A 1 s warmup takes two rounds of 0.5 s out of the window.
        let remedy = window_remedy(
            &Shape::Concurrency(4),
            &limits(None, Some(4), 1),
            &took(0.5, 4),
        );
        assert!(
            remedy.contains("raise --requests to 20 (or shorten"),
            "{remedy}"
        );
    }

    #[test]
    fn without_a_finished_request_or_a_sane_bound_the_remedy_names_the_bound() {
        let failed = vec![RequestRecord {
            error: Some("http_500".into()),
            ..Default::default()
        }];
        let remedy = window_remedy(&Shape::Concurrency(2), &limits(Some(8), None, 2), &failed);
        assert_eq!(
            remedy,
            "; lengthen --duration (or shorten --warmup/--cooldown) for figures worth reading"
        );
        // Millisecond requests behind an hour's warmup: shorten the warmup, not a million requests.
        let remedy = window_remedy(
            &Shape::Concurrency(2),
            &limits(None, Some(4), 3600),
            &took(0.001, 4),
        );
        assert_eq!(
            remedy,
            "; raise --requests (or shorten --warmup/--cooldown) for figures worth reading"
        );
        assert_eq!(round_up_nicely(61.0), 70);
        assert_eq!(round_up_nicely(7.2), 8);
    }
}
