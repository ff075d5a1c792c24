//! `bakeoff bench --engine llama-bench`: run llama-bench itself (`-o json`) over the same matrix,
//! one invocation per (build, model, configuration) (a rejected combination aborts llama-bench's
//! whole run, so configurations are isolated), and store its per-repetition figures in the same
//! tables.

use super::bench::{BenchContext, Event, Subject};
use super::matrix::{PlannedConfig, PromptSet, Test};
use super::sink::NewTrial;
use crate::domain::{EngineConfig, Unit};
use crate::engines::process::Supervised;
use crate::{Error, Result};
use serde_json::{json, Value};

/// Flags llama-bench shares with llama-server.
/// `-ts` is stored as `3/1`, which is llama-bench's own spelling (a comma there separates values).
const SHARED_FLAGS: [&str; 10] = [
    "-ctk", "-ctv", "-fa", "-b", "-ub", "-t", "-ngl", "-sm", "-ts", "-mg",
];

/// The test a llama-bench JSON result measured.
pub fn result_test(result: &Value) -> Option<Test> {
    let n_prompt = result["n_prompt"].as_u64()? as u32;
    let n_gen = result["n_gen"].as_u64()? as u32;
    let depth = result["n_depth"].as_u64().unwrap_or(0) as u32;
    let (kind, tokens) = if n_gen == 0 {
        ("pp", n_prompt)
    } else {
        ("tg", n_gen)
    };
    Some(Test {
        kind: kind.into(),
        tokens,
        depth,
        prompts: PromptSet::Random,
    })
}

/// Run the plan with llama-bench, in-process.
pub struct LlamaBenchRun<'a> {
    pub ctx: BenchContext<'a>,
}

impl LlamaBenchRun<'_> {
    fn args(
        &self,
        subject: &Subject,
        config: &EngineConfig,
    ) -> std::result::Result<Vec<String>, String> {
        if let Some(flag) = config
            .flags
            .keys()
            .find(|f| !SHARED_FLAGS.contains(&f.as_str()))
        {
            return Err(format!(
                "{flag} is a llama-server setting; llama-bench cannot measure it"
            ));
        }
        let m = &self.ctx.plan.matrix;
        let list = |v: &[u32]| {
            if v.is_empty() {
                "0".to_string()
            } else {
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let mut args = vec![
            "-m".into(),
            subject.model.display().to_string(),
            "-o".into(),
            "json".into(),
            "-r".into(),
            self.ctx.plan.reps.max(1).to_string(),
        ];
        args.extend([
            "-p".into(),
            list(&m.prompt_tokens),
            "-n".into(),
            list(&m.gen_tokens),
        ]);
        args.extend([
            "-d".into(),
            if m.depths.is_empty() {
                "0".into()
            } else {
                list(&m.depths)
            },
        ]);
        if self.ctx.plan.warmup == 0 {
            args.push("--no-warmup".into());
        }
        args.extend(config.args());
        args.extend(self.ctx.plan.extra_args.iter().cloned());
        match subject.unknown_flags(&args) {
            Some(reason) => Err(reason),
            None => Ok(args),
        }
    }

    pub fn run(&self, observe: &mut dyn FnMut(Event)) -> Result<()> {
        let configs = self.ctx.plan.configs();
        if self
            .ctx
            .plan
            .matrix
            .prompts
            .iter()
            .any(|p| *p != PromptSet::Random)
        {
            observe(Event::Warning(
                "llama-bench feeds random tokens; --prompts other than random are ignored".into(),
            ));
        }
        let total = self.ctx.plan.cell_count();
        for (at, subject, planned) in self.ctx.cells(&configs) {
            let label = self.ctx.label(subject, &planned.config);
            observe(Event::Config {
                index: at.index,
                total,
                label: &label,
            });
            self.run_cell((at.subject, subject, planned), &label, observe)?;
        }
        Ok(())
    }

    /// One llama-bench invocation: a configuration on one (build, model), unless a resumed run
    /// holds it already or it cannot run there.
    fn run_cell(
        &self,
        (index, subject, planned): (usize, &Subject, &PlannedConfig),
        label: &str,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let hash = planned.config.hash();
        let build = subject.build.clone().unwrap_or_default();
        let done = self.ctx.done.iter().any(|key| {
            key.config_hash == hash
                && key.model_sha256 == subject.model_sha256
                && key.build == build
        });
        if done {
            return Ok(());
        }
        let args = match planned.rejected.clone() {
            Some(reason) => Err(reason),
            None => self.args(subject, &planned.config),
        };
        let dir = self.ctx.sink.run_dir(self.ctx.run_id);
        let stem = match self.ctx.plan.is_shootout() {
            true => format!("llama-bench-{}-{hash}", index + 1),
            false => format!("llama-bench-{hash}"),
        };
        let (out, log) = (
            dir.join(format!("{stem}.json")),
            dir.join(format!("{stem}.log")),
        );
        let results = args.and_then(|args| {
            let invoked = self.invoke(&subject.binary, &args, &out, &log);
            invoked.map_err(|error| error.to_string())
        });
        match results {
            Ok(results) => {
                for result in &results {
                    self.store_result(subject, &planned.config, result, label, observe)?;
                }
            }
            Err(reason) => {
                let config = &planned.config;
                self.ctx.record_skip(subject, config, &reason)?;
                observe(Event::Skipped {
                    label,
                    reason: &reason,
                });
            }
        }
        self.ctx.sink.engine_log(self.ctx.run_id, None, &log)
    }

    fn invoke(
        &self,
        binary: &std::path::Path,
        args: &[String],
        out: &std::path::Path,
        log: &std::path::Path,
    ) -> Result<Vec<Value>> {
        let mut child = Supervised::spawn_with_stdout(binary, args, Some(out), log)?;
        let status = child.wait_interruptible()?;
        if !status.success() {
            let fatal = crate::engines::fatal::scan_file(log);
            let reason = fatal
                .first()
                .map(|f| f.text.clone())
                .or_else(|| crate::engines::fatal::tail(log, 1).pop())
                .unwrap_or_default();
            return Err(Error::engine(format!(
                "llama-bench exited with {status}: {reason}"
            )));
        }
        let text = std::fs::read_to_string(out).map_err(|e| Error::io(out, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{}: llama-bench output is not JSON: {e}",
                out.display()
            ))
        })?;
        value.as_array().cloned().ok_or_else(|| {
            Error::input(format!(
                "{}: expected a JSON array of results",
                out.display()
            ))
        })
    }

    fn store_result(
        &self,
        subject: &Subject,
        config: &EngineConfig,
        result: &Value,
        label: &str,
        observe: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let Some(test) = result_test(result) else {
            observe(Event::Warning(format!(
                "llama-bench result without n_prompt/n_gen: {result}"
            )));
            return Ok(());
        };
        let metric = if test.kind == "pp" {
            "pp_tps"
        } else {
            "tg_tps"
        };
        let samples: Vec<f64> = result["samples_ts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let mut workload = test.to_json();
        workload["llama_bench"] = json!({
            "build_number": result["build_number"], "build_commit": result["build_commit"], "backends": result["backends"],
            "cpu_info": result["cpu_info"], "gpu_info": result["gpu_info"], "n_threads": result["n_threads"],
            "avg_ts": result["avg_ts"], "stddev_ts": result["stddev_ts"],
        });
        for (rep, value) in samples.iter().enumerate() {
            let trial = NewTrial {
                config: Some(config),
                engine_id: Some(subject.engine_id),
                model_id: Some(subject.model_id),
                workload: &workload,
                repetition: rep as u32,
            };
            let id = self.ctx.sink.begin_trial(self.ctx.run_id, &trial)?;
            self.ctx
                .sink
                .sample(id, metric, *value, Unit::TokensPerSecond, "llama-bench", 0)?;
            if let Some(ns) = result["samples_ns"].get(rep).and_then(Value::as_f64) {
                self.ctx.sink.sample(
                    id,
                    "duration_ms",
                    ns / 1e6,
                    Unit::Milliseconds,
                    "llama-bench",
                    0,
                )?;
            }
            self.ctx.sink.end_trial(id, "ok", None)?;
            observe(Event::Trial {
                done: rep + 1,
                total: samples.len(),
                label,
                test: &test.name(),
                rep: rep as u32,
                value: *value,
                unit: "t/s",
                flags: &[],
            });
        }
        Ok(())
    }
}
