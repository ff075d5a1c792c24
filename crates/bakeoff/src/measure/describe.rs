//! A bench plan in words for `bench --dry-run`: the configurations in the order they start, the
//! tests, the flags bakeoff adds, and how many trials and engine starts the run will take.

use super::bench::BenchPlan;
use super::matrix::PlannedConfig;
use std::fmt::Write;

impl BenchPlan {
    /// The dry-run text, one line per fact, ending with a newline.
    pub fn describe(&self) -> String {
        let configs = self.configs();
        let mut out = self.headline(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let _ = writeln!(out, "{}", config_line(&configs, index, config));
        }
        let tests: Vec<String> = self.matrix.tests().iter().map(|t| t.name()).collect();
        let _ = writeln!(out, "  tests: {}", tests.join(", "));
        if self.engine == "llama-server" {
            let _ = writeln!(
                out,
                "  server flags added: -np 1 and -c {} unless swept",
                self.matrix.context_needed()
            );
        }
        out + &self.totals(&configs, tests.len())
    }

    fn headline(&self, configs: usize) -> String {
        let adaptive = self
            .ci_target_pct
            .map(|t| format!(", adaptive to ±{t}% up to {}", self.max_reps))
            .unwrap_or_default();
        format!(
            "plan: {} on {} ({configs} configs, {} tests, {} reps{adaptive})\n",
            self.engine,
            self.model.display(),
            self.matrix.tests().len(),
            self.reps,
        )
    }

    fn totals(&self, configs: &[PlannedConfig], tests: usize) -> String {
        let runnable = configs.iter().filter(|c| c.rejected.is_none()).count();
        format!(
            "  trials: {}; engine starts: {runnable} (restarts: {})\n",
            runnable * tests * self.reps as usize,
            runnable.saturating_sub(1)
        )
    }
}

/// `config N: LABEL  (engine start K)`, or `SKIP: reason` for a rejected one.
fn config_line(configs: &[PlannedConfig], index: usize, config: &PlannedConfig) -> String {
    let label = config.config.label();
    match &config.rejected {
        Some(reason) => format!("  config {}: {label}  SKIP: {reason}", index + 1),
        None => {
            let start = configs[..=index]
                .iter()
                .filter(|c| c.rejected.is_none())
                .count();
            format!("  config {}: {label}  (engine start {start})", index + 1)
        }
    }
}
