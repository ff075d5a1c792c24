//! The settings of one tune: a layer from the command line over a layer from the TOML tune file
//! (unknown keys rejected, errors naming file, line and key), resolved once into [`Tune`].

use super::space::{Edit, EditKind, Goal};
use crate::domain::Combine;
use crate::engines::build::BuildRef;
use crate::measure::experiment::Values;
use crate::measure::load::metrics::Slo;
use crate::measure::matrix::{parse_values, PromptSet};
use crate::quality::gate::{GateSpec, GateTable};
use crate::quality::readiness::Checks;
use crate::{Error, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The budget when neither `--budget` nor `--max-trials` is given.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30 * 60);

/// One layer of tune settings; `None` where this source does not say.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TuneSettings {
    /// Model file(s): a comma list, glob, directory or catalog names, or an array of them.
    pub model: Option<Values>,
    pub category: Option<String>,
    /// Only models no larger than this (`"20G"`).
    pub max_size: Option<Values>,
    pub catalog: Option<PathBuf>,
    /// `[builds]`: `NAME = "PATH"`.
    #[serde(default, deserialize_with = "build_table")]
    pub builds: Option<Vec<BuildRef>>,
    pub ctx: Option<u64>,
    pub parallel: Option<u64>,
    pub goal: Option<Goal>,
    /// `"30m"`, `"1h"`, `"90s"`.
    pub budget: Option<String>,
    pub max_trials: Option<u64>,
    /// The memory budget (`"8G"`).
    pub mem: Option<Values>,
    pub save: Option<String>,
    /// `[pin]`: `KNOB = VALUE`.
    #[serde(default, deserialize_with = "knob_table")]
    pub pin: Vec<(String, Values)>,
    /// `[only]`: `KNOB = [VALUES]`.
    #[serde(default, deserialize_with = "knob_table")]
    pub only: Vec<(String, Values)>,
    /// `[extend]`: `KNOB = [VALUES]`.
    #[serde(default, deserialize_with = "knob_table")]
    pub extend: Vec<(String, Values)>,
    /// Depths the goal is measured at (default 0 and half the context).
    pub depth: Option<Values>,
    /// Generated tokens per tg test.
    pub gen: Option<u32>,
    /// Prompt tokens per pp test.
    pub prompt: Option<u32>,
    /// `random`, `natural`, `code` or a file of prompts.
    pub prompts: Option<String>,
    /// Goal load: requests per load step (default twice `parallel`, at least 10).
    pub requests: Option<u64>,
    /// Goal load: `ttft=500ms,tpot=50ms,e2e=10s`; with one, the score is goodput.
    pub slo: Option<String>,
    /// `[checks]`: the fidelity gate's checks, as in a `bakeoff gate` candidates file.
    pub checks: Option<Checks>,
    /// `[gate]`: the gate's thresholds, as in a `bakeoff gate` candidates file.
    pub gate: Option<GateTable>,
}

impl TuneSettings {
    /// Read a tune file.
    pub fn read(path: &Path) -> Result<TuneSettings> {
        crate::formats::config_file::read(path)
    }

    /// Resolve the merged layers; what is required and missing is named.
    pub fn resolve(self) -> Result<Tune> {
        let ctx = self
            .ctx
            .filter(|&c| c > 0)
            .ok_or_else(|| Error::input("tune needs --ctx N (or ctx in the tune file): the context the configuration must serve"))?;
        let goal = self.goal.ok_or_else(|| {
            Error::input("tune needs --goal tg|pp|balanced|load (or goal in the tune file)")
        })?;
        if self.budget.is_some() && self.max_trials.is_some() {
            return Err(Error::input(
                "tune takes --budget or --max-trials, not both",
            ));
        }
        let mem = self.mem.as_ref().map(|m| size("mem", &m.0)).transpose()?;
        Ok(Tune {
            model: self.model.map(|m| m.0),
            category: self.category,
            max_size: self
                .max_size
                .as_ref()
                .map(|m| size("max-size", &m.0))
                .transpose()?,
            catalog: self.catalog,
            builds: self.builds.unwrap_or_default(),
            ctx,
            parallel: self.parallel.unwrap_or(1).max(1),
            goal,
            budget: self.budget.as_deref().map(parse_budget).transpose()?,
            max_trials: self.max_trials,
            mem,
            save: self.save,
            edits: edits(&self.pin, &self.only, &self.extend)?,
            depths: self.depth.as_ref().map(depths).transpose()?,
            gen: self.gen,
            prompt: self.prompt,
            prompts: PromptSet::parse(self.prompts.as_deref().unwrap_or("random")),
            requests: self.requests.filter(|&r| r > 0),
            slo: match &self.slo {
                Some(text) => Slo::parse(text).map_err(Error::input)?,
                None => Slo::default(),
            },
            checks: self.checks.unwrap_or_else(tune_checks),
            gate: match &self.gate {
                Some(table) => GateSpec::from_table(table, "tune [gate]")?,
                None => GateSpec::default(),
            },
        })
    }
}

impl Combine for TuneSettings {
    fn combine(self, other: TuneSettings) -> TuneSettings {
        TuneSettings {
            model: self.model.combine(other.model),
            category: self.category.combine(other.category),
            max_size: self.max_size.combine(other.max_size),
            catalog: self.catalog.combine(other.catalog),
            builds: self.builds.combine(other.builds),
            ctx: self.ctx.combine(other.ctx),
            parallel: self.parallel.combine(other.parallel),
            goal: self.goal.combine(other.goal),
            budget: self.budget.combine(other.budget),
            max_trials: self.max_trials.combine(other.max_trials),
            mem: self.mem.combine(other.mem),
            save: self.save.combine(other.save),
            pin: self.pin.combine(other.pin),
            only: self.only.combine(other.only),
            extend: self.extend.combine(other.extend),
            depth: self.depth.combine(other.depth),
            gen: self.gen.combine(other.gen),
            prompt: self.prompt.combine(other.prompt),
            prompts: self.prompts.combine(other.prompts),
            requests: self.requests.combine(other.requests),
            slo: self.slo.combine(other.slo),
            checks: self.checks.or(other.checks),
            gate: self.gate.or(other.gate),
        }
    }
}

/// The resolved settings of one tune.
#[derive(Debug, Clone, PartialEq)]
pub struct Tune {
    pub model: Option<String>,
    pub category: Option<String>,
    pub max_size: Option<u64>,
    pub catalog: Option<PathBuf>,
    pub builds: Vec<BuildRef>,
    pub ctx: u64,
    pub parallel: u64,
    pub goal: Goal,
    pub budget: Option<Duration>,
    pub max_trials: Option<u64>,
    pub mem: Option<u64>,
    pub save: Option<String>,
    pub edits: Vec<Edit>,
    pub depths: Option<Vec<u32>>,
    pub gen: Option<u32>,
    pub prompt: Option<u32>,
    pub prompts: PromptSet,
    pub requests: Option<u64>,
    pub slo: Slo,
    pub checks: Checks,
    pub gate: GateSpec,
}

/// The gate's checks in a tune: `bakeoff gate`'s, without its own speed step (the race measured
/// speed already).
pub fn tune_checks() -> Checks {
    Checks {
        tg_reps: 0,
        ..Checks::default()
    }
}

fn depths(values: &Values) -> Result<Vec<u32>> {
    parse_values("depth", &values.0)?
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| Error::input(format!("depth: '{v}' is not a whole number")))
        })
        .collect()
}

fn size(key: &str, text: &str) -> Result<u64> {
    crate::domain::units::parse_bytes(text)
        .ok_or_else(|| Error::input(format!("{key} {text}: not a size such as 8G or 512M")))
}

/// `30m`, `1h`, `90s` or `90` (seconds).
pub fn parse_budget(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    let seconds = number.parse::<f64>().map(|n| n * scale).unwrap_or(f64::NAN);
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(Error::input(format!(
            "--budget {text}: expected a duration such as 30m, 1h or 90s"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn edits(
    pin: &[(String, Values)],
    only: &[(String, Values)],
    extend: &[(String, Values)],
) -> Result<Vec<Edit>> {
    let layers = [
        (EditKind::Pin, pin),
        (EditKind::Only, only),
        (EditKind::Extend, extend),
    ];
    let mut all = Vec::new();
    for (kind, entries) in layers {
        for (key, values) in entries {
            all.push(Edit::parse(kind, &format!("{key}={}", values.0))?);
        }
    }
    Ok(all)
}

/// `[pin]`-style tables: `KNOB = VALUES` (keys such as `"-ctk"` quoted in TOML).
fn knob_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, Values)>, D::Error> {
    let table = BTreeMap::<String, Values>::deserialize(deserializer)?;
    Ok(table.into_iter().collect())
}

fn build_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<BuildRef>>, D::Error> {
    let table = BTreeMap::<String, PathBuf>::deserialize(deserializer)?;
    Ok(Some(
        table
            .into_iter()
            .map(|(name, path)| BuildRef { name, path })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TuneSettings> {
        crate::formats::config_file::parse(text, "tune.toml")
    }

    #[test]
    fn a_tune_file_resolves_with_its_edits() {
        let text = "model = \"smol.gguf\"\nctx = 4096\ngoal = \"load\"\nparallel = 4\nmax-trials = 20\nmem = \"8G\"\n\n[pin]\n\"-ctk\" = \"q8_0\"\n\n[only]\n\"-t\" = [1, 2]\n";
        let tune = parse(text).unwrap().resolve().unwrap();
        assert_eq!((tune.ctx, tune.goal, tune.parallel), (4096, Goal::Load, 4));
        assert_eq!(tune.mem, Some(8 << 30));
        assert_eq!(tune.edits.len(), 2);
        assert_eq!(tune.edits[1].values, ["1", "2"]);
    }

    #[test]
    fn goal_load_takes_requests_and_an_slo_from_the_file() {
        let text = "ctx = 512\ngoal = \"load\"\nrequests = 12\nslo = \"ttft=500ms,tpot=50ms\"\n";
        let tune = parse(text).unwrap().resolve().unwrap();
        assert_eq!(tune.requests, Some(12));
        assert_eq!(
            (tune.slo.ttft_ms, tune.slo.tpot_ms),
            (Some(500.0), Some(50.0))
        );
        let error = parse("ctx = 512\ngoal = \"load\"\nslo = \"ttft=soon\"\n")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--slo ttft=soon: 'soon' is not a duration like 500ms or 2s"
        );
    }

    #[test]
    fn a_misspelt_key_names_file_line_and_key() {
        let error = parse("ctx = 4096\ngoall = \"tg\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("tune.toml:2:1: unknown field 'goall'"),
            "{error}"
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let cli = TuneSettings {
            ctx: Some(8192),
            pin: vec![("-ctk".into(), Values("f16".into()))],
            ..Default::default()
        };
        let file =
            parse("ctx = 4096\ngoal = \"tg\"\n[pin]\n\"-ctk\" = \"q8_0\"\n\"-fa\" = \"on\"\n")
                .unwrap();
        let tune = cli.combine(file).resolve().unwrap();
        assert_eq!(tune.ctx, 8192);
        assert_eq!(tune.edits[0].values, ["f16"]);
        assert_eq!(tune.edits.len(), 2);
    }

    #[test]
    fn budgets_and_missing_settings_are_one_line_errors() {
        assert_eq!(parse_budget("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_budget("90").unwrap(), Duration::from_secs(90));
        let error = parse_budget("soon").unwrap_err().to_string();
        assert_eq!(
            error,
            "--budget soon: expected a duration such as 30m, 1h or 90s"
        );
        let error = TuneSettings::default().resolve().unwrap_err().to_string();
        assert!(error.starts_with("tune needs --ctx N"), "{error}");
    }
}
