//! A bench plan in words for `bench --dry-run`: the configurations in the order they start (for
//! each build, each model, each configuration), the tests, the flags bakeoff adds, and how many
//! trials and engine starts the run will take. A sharded plan lists only its shard's cells, each
//! numbered as in the full matrix.

use super::bench::{subject_label, BenchPlan, CellAt};
use super::matrix::PlannedConfig;
use std::fmt::Write;

impl BenchPlan {
    /// The dry-run text, one line per fact, ending with a newline.
    pub fn describe(&self) -> String {
        let configs = self.configs();
        let mut out = self.headline(configs.len());
        if let Some(shard) = self.shard {
            let _ = writeln!(out, "  {}", shard.summary(self.cell_count()));
        }
        match self.is_shootout() {
            true => out += &self.sweep_lines(&configs),
            false => {
                if let Some(build) = self.builds.first() {
                    let path = build.path.display();
                    let _ = writeln!(out, "  build: {}={path}", build.name);
                }
                for at in self.cells() {
                    let line = config_line(&configs, at.config, &configs[at.config]);
                    let _ = writeln!(out, "{line}");
                }
            }
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
            self.subjects_text(),
            self.matrix.tests().len(),
            self.reps,
        )
    }

    /// The one model's path, or `N models × M builds`.
    fn subjects_text(&self) -> String {
        match (self.is_shootout(), self.models.first()) {
            (false, Some(model)) => model.display().to_string(),
            _ => format!(
                "{} model(s) × {} build(s)",
                self.models.len(),
                self.builds.len().max(1)
            ),
        }
    }

    /// The models and builds, then every engine start in order (and each skip where it falls).
    fn sweep_lines(&self, configs: &[PlannedConfig]) -> String {
        let models: Vec<String> = self
            .models
            .iter()
            .map(|m| m.display().to_string())
            .collect();
        let mut out = format!("  models: {}\n", models.join(", "));
        if !self.builds.is_empty() {
            let builds = self.builds.iter();
            let builds: Vec<String> = builds
                .map(|b| format!("{}={}", b.name, b.path.display()))
                .collect();
            let _ = writeln!(out, "  builds: {}", builds.join(", "));
        }
        let starts = self.engine_starts(configs);
        let subjects = self.subject_order();
        let mut start = 0;
        for at in self.cells() {
            let (build, model) = subjects[at.subject];
            let subject = subject_label(build, model);
            let config = &configs[at.config];
            let label = config.config.label();
            let _ = match &config.rejected {
                Some(reason) => writeln!(out, "  skip: {subject} · {label}: {reason}"),
                None => {
                    start += 1;
                    writeln!(out, "  engine start {start}/{starts}: {subject} · {label}")
                }
            };
        }
        out
    }

    /// The engines this run (its shard, if it has one) starts: its cells not rejected.
    fn engine_starts(&self, configs: &[PlannedConfig]) -> usize {
        let runnable = |at: &CellAt| configs[at.config].rejected.is_none();
        self.cells().iter().filter(|at| runnable(at)).count()
    }

    fn totals(&self, configs: &[PlannedConfig], tests: usize) -> String {
        let starts = self.engine_starts(configs);
        format!(
            "  trials: {}; engine starts: {starts} (restarts: {})\n",
            starts * tests * self.reps as usize,
            starts.saturating_sub(1)
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
