//! Gates: a TOML spec of checks and thresholds, applied to a candidate's fidelity figures to give
//! PASS / WARN / FAIL per check and overall. Defaults suit a KV-cache-only change.

use super::Status;
use crate::formats::config_file;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// A check bakeoff knows how to measure.
pub struct CheckDef {
    pub name: &'static str,
    pub better: Better,
    pub what: &'static str,
    /// `(pass, warn)`; `None`: reported without a verdict unless the spec sets thresholds.
    pub default: Option<(f64, f64)>,
}

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        name: "mean_kld",
        better: Better::Lower,
        what: "mean KL-divergence from the baseline (llama-perplexity)",
        default: Some((0.01, 0.03)),
    },
    CheckDef {
        name: "same_top",
        better: Better::Higher,
        what: "% of positions whose most likely token matches the baseline's",
        default: Some((96.0, 94.0)),
    },
    CheckDef {
        name: "ppl_ratio",
        better: Better::Lower,
        what: "PPL(candidate) / PPL(baseline)",
        default: Some((1.005, 1.01)),
    },
    CheckDef {
        name: "kld_p99",
        better: Better::Lower,
        what: "99th percentile of the per-token KL-divergence",
        default: None,
    },
    CheckDef {
        name: "http_kld",
        better: Better::Lower,
        what: "KL estimate over top-k logprobs on teacher-forced tokens (a lower bound)",
        default: Some((0.01, 0.03)),
    },
    CheckDef {
        name: "http_same_top",
        better: Better::Higher,
        what: "% same top token at the teacher-forced positions",
        default: None,
    },
    CheckDef {
        name: "greedy_prefix",
        better: Better::Higher,
        what: "mean common prefix of greedy completions, as a fraction of the baseline's",
        default: Some((0.5, 0.25)),
    },
    CheckDef {
        name: "greedy_exact",
        better: Better::Higher,
        what: "fraction of prompts whose greedy completion matches the baseline's exactly",
        default: None,
    },
    CheckDef {
        name: "canary_loss",
        better: Better::Lower,
        what: "share of the canaries the baseline passes that the candidate fails (one in four is a WARN: greedy answers of small models flip on tiny logit changes)",
        default: Some((0.0, 0.25)),
    },
    CheckDef {
        name: "hygiene",
        better: Better::Lower,
        what: "failed requests, fatal log lines, missing draft timings",
        default: Some((0.0, 0.0)),
    },
    CheckDef {
        name: "spec_divergences",
        better: Better::Lower,
        what: "greedy divergences with speculation on vs off, beyond near-ties",
        default: Some((0.0, 0.0)),
    },
    CheckDef {
        name: "spec_near_ties",
        better: Better::Lower,
        what: "greedy divergences with speculation at near-tied tokens",
        default: Some((0.0, f64::INFINITY)),
    },
];

pub fn check_def(name: &str) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.name == name)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub pass: f64,
    pub warn: f64,
}

/// Which checks apply and where their lines are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    pub thresholds: BTreeMap<String, Thresholds>,
    /// A divergence where the baseline's top-1/top-2 logprob gap is below this is a near-tie.
    pub tie_gap: f64,
}

impl Default for GateSpec {
    fn default() -> Self {
        GateSpec {
            thresholds: CHECKS
                .iter()
                .filter_map(|c| {
                    Some((
                        c.name.to_string(),
                        c.default.map(|(pass, warn)| Thresholds { pass, warn })?,
                    ))
                })
                .collect(),
            tie_gap: 0.05,
        }
    }
}

/// A `[gate]` table of a candidates file, or a `--gate` file: thresholds per check (one optional
/// field per entry of [`CHECKS`]), checks turned off, the near-tie gap. Unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_gap: Option<f64>,
    /// Checks to leave without a verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub off: Vec<CheckName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_kld: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_top: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppl_ratio: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kld_p99: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_kld: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_same_top: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy_prefix: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy_exact: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_loss: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hygiene: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_divergences: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_near_ties: Option<Thresholds>,
}

impl GateTable {
    /// The thresholds the table sets, by check name.
    pub fn thresholds(&self) -> Vec<(&'static str, Thresholds)> {
        let all = [
            ("mean_kld", self.mean_kld),
            ("same_top", self.same_top),
            ("ppl_ratio", self.ppl_ratio),
            ("kld_p99", self.kld_p99),
            ("http_kld", self.http_kld),
            ("http_same_top", self.http_same_top),
            ("greedy_prefix", self.greedy_prefix),
            ("greedy_exact", self.greedy_exact),
            ("canary_loss", self.canary_loss),
            ("hygiene", self.hygiene),
            ("spec_divergences", self.spec_divergences),
            ("spec_near_ties", self.spec_near_ties),
        ];
        all.into_iter()
            .filter_map(|(name, t)| Some((name, t?)))
            .collect()
    }
}

/// The name of a check in [`CHECKS`]; anything else is refused where it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CheckName(pub String);

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CheckName, D::Error> {
        let name = String::deserialize(deserializer)?;
        if check_def(&name).is_some() {
            return Ok(CheckName(name));
        }
        let names: Vec<String> = CHECKS.iter().map(|c| format!("`{}`", c.name)).collect();
        Err(serde::de::Error::custom(format!(
            "unknown check `{name}`, expected one of {}",
            names.join(", ")
        )))
    }
}

impl GateSpec {
    /// The defaults overridden by a gate table. `origin` names the file in errors.
    pub fn from_table(table: &GateTable, origin: &str) -> Result<GateSpec> {
        let mut spec = GateSpec::default();
        if let Some(gap) = table.tie_gap {
            spec.tie_gap = gap;
        }
        for CheckName(name) in &table.off {
            spec.thresholds.remove(name);
        }
        for (name, t) in table.thresholds() {
            let def = check_def(name)
                .ok_or_else(|| Error::input(format!("{origin}: gate.{name}: no such check")))?;
            check_order(def, &t)
                .map_err(|e| Error::input(format!("{origin}: gate.{name}: {e}")))?;
            spec.thresholds.insert(name.to_string(), t);
        }
        Ok(spec)
    }

    /// Read a `--gate` file; errors name the key, the file and the line.
    pub fn load(path: &Path) -> Result<GateSpec> {
        let table: GateTable = config_file::read(path)?;
        GateSpec::from_table(&table, &path.display().to_string())
    }

    /// Judge one figure; `None` when the check is off or has no thresholds.
    pub fn judge(&self, name: &str, value: f64) -> Option<CheckOutcome> {
        let def = check_def(name)?;
        let t = self.thresholds.get(name)?;
        let within = |limit: f64| match def.better {
            Better::Lower => value <= limit,
            Better::Higher => value >= limit,
        };
        let status = if value.is_nan() {
            Status::Fail
        } else if within(t.pass) {
            Status::Pass
        } else if within(t.warn) {
            Status::Warn
        } else {
            Status::Fail
        };
        Some(CheckOutcome {
            name: name.to_string(),
            value,
            thresholds: *t,
            better: def.better,
            status,
        })
    }
}

fn check_order(def: &CheckDef, t: &Thresholds) -> std::result::Result<(), String> {
    let (ordered, relation, better) = match def.better {
        Better::Lower => (t.pass <= t.warn, "no higher", "lower"),
        Better::Higher => (t.pass >= t.warn, "no lower", "higher"),
    };
    if ordered {
        Ok(())
    } else {
        Err(format!(
            "pass {} must be {relation} than warn {} ({better} is better)",
            t.pass, t.warn
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub name: String,
    pub value: f64,
    pub thresholds: Thresholds,
    pub better: Better,
    pub status: Status,
}

/// The worst status of a set of outcomes; `None` when nothing was judged.
pub fn overall(outcomes: &[CheckOutcome]) -> Option<Status> {
    outcomes.iter().map(|o| o.status).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<GateSpec> {
        let table: GateTable = config_file::parse(text, "gates.toml")?;
        GateSpec::from_table(&table, "gates.toml")
    }

    #[test]
    fn defaults_follow_the_kv_cache_rule_of_thumb() {
        let spec = GateSpec::default();
        let status = |name, v| spec.judge(name, v).unwrap().status;
        assert_eq!(status("mean_kld", 0.0052), Status::Pass);
        assert_eq!(status("mean_kld", 0.02), Status::Warn);
        assert_eq!(status("mean_kld", 0.5), Status::Fail);
        assert_eq!(status("same_top", 95.1), Status::Warn);
        assert_eq!(status("same_top", 97.0), Status::Pass);
        assert_eq!(status("same_top", 90.0), Status::Fail);
        assert_eq!(status("ppl_ratio", 1.002), Status::Pass);
        assert_eq!(status("ppl_ratio", 1.02), Status::Fail);
        assert_eq!(status("spec_near_ties", 3.0), Status::Warn);
        assert_eq!(status("hygiene", 1.0), Status::Fail);
        assert_eq!(status("canary_loss", 0.25), Status::Warn);
        assert_eq!(status("canary_loss", 0.5), Status::Fail);
        assert_eq!(status("mean_kld", f64::NAN), Status::Fail);
        assert!(
            spec.judge("kld_p99", 1.0).is_none(),
            "no default thresholds"
        );
    }

    #[test]
    fn a_spec_overrides_and_turns_checks_off() {
        let spec = spec(
            "tie_gap = 0.1\noff = [\"greedy_prefix\"]\n[mean_kld]\npass = 0.02\nwarn = 0.05\n",
        )
        .unwrap();
        assert_eq!(spec.judge("mean_kld", 0.015).unwrap().status, Status::Pass);
        assert!(spec.judge("greedy_prefix", 0.0).is_none());
        assert_eq!(spec.tie_gap, 0.1);
    }

    #[test]
    fn bad_specs_name_the_file_and_the_check() {
        // A misspelt check is refused at its line, with the close name as a hint.
        let err = spec("tie_gap = 0.1\n[mean_kdl]\npass = 1\nwarn = 2\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gates.toml:2:2: unknown field 'mean_kdl'"),
            "{err}"
        );
        assert_eq!(err.hint().as_deref(), Some("did you mean 'mean_kld'?"));
        let err = spec("off = [\"greedy_prefx\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gates.toml:1:7: off: unknown check 'greedy_prefx'"),
            "{err}"
        );
        assert_eq!(err.hint().as_deref(), Some("did you mean 'greedy_prefix'?"));
        let err = spec("[same_top]\npass = 90\nwarn = 95\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gate.same_top"), "{err}");
        let err = spec("[same_top]\npass = 90\n").unwrap_err().to_string();
        assert!(err.contains("warn"), "{err}");
    }

    #[test]
    fn the_gate_table_has_a_field_for_every_check() {
        for check in CHECKS {
            let text = format!("[{}]\npass = 0\nwarn = 0\n", check.name);
            let table: GateTable = config_file::parse(&text, "gates.toml").unwrap();
            assert_eq!(table.thresholds().len(), 1, "{}", check.name);
            assert_eq!(table.thresholds()[0].0, check.name);
        }
    }

    #[test]
    fn overall_is_the_worst() {
        let spec = GateSpec::default();
        let outcomes: Vec<_> = [("mean_kld", 0.001), ("same_top", 95.0)]
            .iter()
            .filter_map(|(n, v)| spec.judge(n, *v))
            .collect();
        assert_eq!(overall(&outcomes), Some(Status::Warn));
        assert_eq!(overall(&[]), None);
    }
}
