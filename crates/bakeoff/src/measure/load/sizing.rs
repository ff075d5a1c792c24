//! How big a server a load plan needs: enough slots for its most concurrent step, and a context
//! that holds every slot's longest request.

use super::executor::Shape;
use super::LoadPlan;

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
