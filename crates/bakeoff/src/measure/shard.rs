//! One experiment on many hosts: shard K of N measures the cells whose index i in the full,
//! deterministic expansion order has i % N == K - 1, so the N tasks of a Slurm job array or a
//! Kubernetes indexed Job measure every cell exactly once. K/N comes from `--shard`, else from
//! `BAKEOFF_SHARD`, and `auto` reads it from the scheduler's environment.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;

/// Shard `k` (counting from 1) of `n`; stored as `{"k": K, "n": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// The whole matrix: one shard of one.
    pub const WHOLE: Shard = Shard { k: 1, n: 1 };

    /// Shard `k` of `n`, or why that is no shard (`source` names the flag or variable at fault).
    pub fn new(source: &str, k: u32, n: u32) -> Result<Shard> {
        let reason = match (k, n) {
            (_, 0) => "N must be at least 1",
            (0, _) => "K counts from 1",
            (k, n) if k > n => "K must be at most N",
            _ => return Ok(Shard { k, n }),
        };
        Err(Error::input(format!("{source} {k}/{n}: {reason}")))
    }

    /// `K/N`, as `--shard` and `BAKEOFF_SHARD` spell it.
    pub fn parse(source: &str, text: &str) -> Result<Shard> {
        let number = |part: &str| part.trim().parse::<u32>().ok();
        let parsed = text.split_once('/').map(|(k, n)| (number(k), number(n)));
        match parsed {
            Some((Some(k), Some(n))) => Shard::new(source, k, n),
            _ => Err(Error::input(format!(
                "{source} {text}: expected K/N (such as 2/4) or auto"
            ))),
        }
    }

    /// True when the cell at `index` (0-based, in the full expansion order) is this shard's.
    pub fn contains(self, index: usize) -> bool {
        index % self.n as usize == (self.k - 1) as usize
    }

    /// This shard's items, each with its index in the full order.
    pub fn select<T>(self, items: impl IntoIterator<Item = T>) -> Vec<(usize, T)> {
        let all = items.into_iter().enumerate();
        all.filter(|(index, _)| self.contains(*index)).collect()
    }

    /// How many of `total` cells are this shard's.
    pub fn count(self, total: usize) -> usize {
        (0..total).filter(|&index| self.contains(index)).count()
    }

    /// `shard 3/4 has no cells: the matrix has 2`, for a shard of an array sized generously.
    pub fn empty_note(self, total: usize) -> String {
        format!("shard {self} has no cells: the matrix has {total}")
    }

    /// `shard 1/2: 2 of the matrix's 4 cells`.
    pub fn summary(self, total: usize) -> String {
        let count = self.count(total);
        format!("shard {self}: {count} of the matrix's {total} cells")
    }
}

/// Record a run's shard in its params, so reports can tell shards apart and merge them:
/// `"shard": {"k": K, "n": N}` where it has one, and `"matrix_cells"`, the full matrix's size.
pub fn record(params: &mut Value, shard: Option<Shard>, matrix_cells: usize) {
    let Some(object) = params.as_object_mut() else {
        return;
    };
    if let Some(shard) = shard {
        object.insert("shard".into(), json!({ "k": shard.k, "n": shard.n }));
    }
    object.insert("matrix_cells".into(), json!(matrix_cells));
}

/// The shard and full matrix size a run's params record ([`record`]); `None` for a whole run.
pub fn recorded(params: &Value) -> Option<(Shard, usize)> {
    let shard = Shard::deserialize(params.get("shard")?).ok()?;
    let cells = params.get("matrix_cells").and_then(Value::as_u64)?;
    Some((shard, cells as usize))
}

/// The run's shard: `--shard` (`K/N` or `auto`), else `BAKEOFF_SHARD`, else none. `auto` takes
/// K/N from the scheduler ([`from_scheduler`]). `env` looks a variable up (the process
/// environment in the binary, a map in tests).
pub fn resolve(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
    let variable = env("BAKEOFF_SHARD").filter(|v| !v.trim().is_empty());
    let (source, text) = match (flag, &variable) {
        (Some(text), _) => ("--shard", text.trim()),
        (None, Some(text)) => ("BAKEOFF_SHARD", text.trim()),
        (None, None) => return Ok(None),
    };
    match text {
        "auto" => from_scheduler(source, env).map(Some),
        text => Shard::parse(source, text).map(Some),
    }
}

/// K/N from the scheduler running this task: a Slurm job array (`SLURM_ARRAY_TASK_ID` counted
/// from `SLURM_ARRAY_TASK_MIN` in steps of `SLURM_ARRAY_TASK_STEP`, of `SLURM_ARRAY_TASK_COUNT`),
/// else a Kubernetes indexed Job (`JOB_COMPLETION_INDEX`, 0-based, of `BAKEOFF_SHARDS`).
pub fn from_scheduler(source: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    if env("SLURM_ARRAY_TASK_ID").is_some() {
        return from_slurm(env);
    }
    if env("JOB_COMPLETION_INDEX").is_some() {
        return from_indexed_job(env);
    }
    Err(Error::input(format!(
        "{source} auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set"
    ))
    .with_hint("outside a scheduler, pass --shard K/N"))
}

/// A whole number from the variable `name`, or an error naming it.
fn number(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<u32>> {
    let Some(text) = env(name) else {
        return Ok(None);
    };
    let parsed = text.trim().parse::<u32>();
    let error = || Error::input(format!("{name}={text}: expected a whole number"));
    parsed.map(Some).map_err(|_| error())
}

fn required(env: &dyn Fn(&str) -> Option<String>, name: &str, why: &str) -> Result<u32> {
    number(env, name)?.ok_or_else(|| Error::input(format!("--shard auto: {name} is not set {why}")))
}

fn from_slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let why = "(a Slurm array task sets it)";
    let id = required(env, "SLURM_ARRAY_TASK_ID", why)?;
    let count = required(env, "SLURM_ARRAY_TASK_COUNT", why)?;
    let min = required(env, "SLURM_ARRAY_TASK_MIN", why)?;
    let step = number(env, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    let offset = id.checked_sub(min).filter(|offset| offset % step == 0);
    let source = format!(
        "SLURM_ARRAY_TASK_ID={id} (min {min}, step {step}) of SLURM_ARRAY_TASK_COUNT={count}:"
    );
    let Some(offset) = offset else {
        return Err(Error::input(format!("{source} not on the array's steps"))
            .with_hint("for an array of listed ids, pass --shard K/N"));
    };
    Shard::new(&source, offset / step + 1, count)
}

fn from_indexed_job(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let why = "(the Job's completions: set it beside completionMode: Indexed)";
    let index = required(env, "JOB_COMPLETION_INDEX", why)?;
    let count = required(env, "BAKEOFF_SHARDS", why)?;
    let source = format!("JOB_COMPLETION_INDEX={index} of BAKEOFF_SHARDS={count}:");
    Shard::new(&source, index.saturating_add(1), count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn shard(k: u32, n: u32) -> Option<Shard> {
        Some(Shard { k, n })
    }

    fn error(flag: Option<&str>, pairs: &[(&str, &str)]) -> String {
        resolve(flag, &env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn shard_k_of_n_takes_every_nth_cell_from_k() {
        let cells = ["a", "b", "c", "d", "e"];
        let first = Shard::parse("--shard", "1/2").unwrap();
        assert_eq!(first.select(cells), [(0, "a"), (2, "c"), (4, "e")]);
        let second = Shard::parse("--shard", "2/2").unwrap();
        assert_eq!(second.select(cells), [(1, "b"), (3, "d")]);
        assert_eq!(Shard::WHOLE.count(5), 5);
        assert_eq!(Shard { k: 3, n: 4 }.count(2), 0);
    }

    #[test]
    fn bad_shards_name_the_flag_and_what_is_wrong() {
        let parse = |text| Shard::parse("--shard", text).unwrap_err().to_string();
        assert_eq!(parse("0/4"), "--shard 0/4: K counts from 1");
        assert_eq!(parse("5/4"), "--shard 5/4: K must be at most N");
        assert_eq!(parse("1/0"), "--shard 1/0: N must be at least 1");
        assert_eq!(parse("2"), "--shard 2: expected K/N (such as 2/4) or auto");
        assert_eq!(
            parse("-1/4"),
            "--shard -1/4: expected K/N (such as 2/4) or auto"
        );
        assert_eq!(
            parse("a/b"),
            "--shard a/b: expected K/N (such as 2/4) or auto"
        );
    }

    #[test]
    fn the_flag_wins_over_bakeoff_shard_and_nothing_means_no_shard() {
        let set = [("BAKEOFF_SHARD", "2/3")];
        assert_eq!(resolve(Some("1/3"), &env(&set)).unwrap(), shard(1, 3));
        assert_eq!(resolve(None, &env(&set)).unwrap(), shard(2, 3));
        assert_eq!(resolve(None, &env(&[])).unwrap(), None);
        assert_eq!(
            resolve(None, &env(&[("BAKEOFF_SHARD", " ")])).unwrap(),
            None
        );
        let bad = [("BAKEOFF_SHARD", "4/3")];
        assert_eq!(error(None, &bad), "BAKEOFF_SHARD 4/3: K must be at most N");
    }

    #[test]
    fn auto_counts_a_slurm_task_from_the_arrays_first_id() {
        let array = |id, min| {
            [
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", min),
            ]
        };
        // --array=1-4 and --array=0-3: both the first of four.
        assert_eq!(
            resolve(Some("auto"), &env(&array("1", "1"))).unwrap(),
            shard(1, 4)
        );
        assert_eq!(
            resolve(Some("auto"), &env(&array("0", "0"))).unwrap(),
            shard(1, 4)
        );
        assert_eq!(
            resolve(Some("auto"), &env(&array("13", "10"))).unwrap(),
            shard(4, 4)
        );
        let from_variable = [array("2", "1").as_slice(), &[("BAKEOFF_SHARD", "auto")]].concat();
        assert_eq!(resolve(None, &env(&from_variable)).unwrap(), shard(2, 4));
    }

    #[test]
    fn auto_follows_a_slurm_arrays_step_and_refuses_ids_off_it() {
        // --array=0-12:4 runs ids 0, 4, 8, 12.
        let stepped = |id| {
            [
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_STEP", "4"),
            ]
        };
        assert_eq!(
            resolve(Some("auto"), &env(&stepped("8"))).unwrap(),
            shard(3, 4)
        );
        let message = error(Some("auto"), &stepped("6"));
        assert!(
            message.contains("SLURM_ARRAY_TASK_ID=6 (min 0, step 4)"),
            "{message}"
        );
        assert!(message.ends_with("not on the array's steps"), "{message}");
    }

    #[test]
    fn auto_names_the_missing_or_bad_slurm_variable() {
        let no_min = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let message = error(Some("auto"), &no_min);
        assert!(
            message.starts_with("--shard auto: SLURM_ARRAY_TASK_MIN is not set"),
            "{message}"
        );
        let bad = [("SLURM_ARRAY_TASK_ID", "x")];
        assert_eq!(
            error(Some("auto"), &bad),
            "SLURM_ARRAY_TASK_ID=x: expected a whole number"
        );
        let beyond = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        let message = error(Some("auto"), &beyond);
        assert!(message.ends_with("5/4: K must be at most N"), "{message}");
    }

    #[test]
    fn auto_reads_a_kubernetes_indexed_jobs_zero_based_index() {
        let job = [("JOB_COMPLETION_INDEX", "0"), ("BAKEOFF_SHARDS", "4")];
        assert_eq!(resolve(Some("auto"), &env(&job)).unwrap(), shard(1, 4));
        let last = [("JOB_COMPLETION_INDEX", "3"), ("BAKEOFF_SHARDS", "4")];
        assert_eq!(resolve(Some("auto"), &env(&last)).unwrap(), shard(4, 4));
        let message = error(Some("auto"), &[("JOB_COMPLETION_INDEX", "3")]);
        assert!(
            message.starts_with("--shard auto: BAKEOFF_SHARDS is not set"),
            "{message}"
        );
        let beyond = [("JOB_COMPLETION_INDEX", "4"), ("BAKEOFF_SHARDS", "4")];
        let message = error(Some("auto"), &beyond);
        assert_eq!(
            message,
            "JOB_COMPLETION_INDEX=4 of BAKEOFF_SHARDS=4: 5/4: K must be at most N"
        );
    }

    #[test]
    fn auto_outside_a_scheduler_says_what_it_looked_for() {
        let error = resolve(Some("auto"), &env(&[])).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("--shard auto: neither SLURM_ARRAY_TASK_ID"),
            "{message}"
        );
        assert_eq!(
            error.hint().as_deref(),
            Some("outside a scheduler, pass --shard K/N")
        );
    }

    #[test]
    fn a_runs_params_record_its_shard_and_the_full_matrix() {
        let mut params = json!({ "plan": {} });
        record(&mut params, Some(Shard { k: 2, n: 4 }), 7);
        assert_eq!(params["shard"], json!({ "k": 2, "n": 4 }));
        assert_eq!(params["matrix_cells"], 7);
        assert_eq!(recorded(&params), Some((Shard { k: 2, n: 4 }, 7)));
        let mut whole = json!({});
        record(&mut whole, None, 7);
        assert_eq!(whole, json!({ "matrix_cells": 7 }));
        assert_eq!(recorded(&whole), None);
    }

    proptest! {
        /// The N shards of any matrix are disjoint and together hold every cell.
        #[test]
        fn shards_partition_the_cells(n in 1u32..40, total in 0usize..300) {
            let mut seen = vec![0u32; total];
            for k in 1..=n {
                for (index, _) in (Shard { k, n }).select(0..total) {
                    seen[index] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&times| times == 1));
        }
    }
}
