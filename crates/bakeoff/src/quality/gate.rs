//! Gates: a TOML spec of checks and thresholds, applied to a candidate's fidelity figures to give
//! PASS / WARN / FAIL per check and overall. Defaults suit a KV-cache-only change.

use super::Status;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl GateSpec {
    /// The defaults overridden by a TOML table: `[mean_kld] pass = 0.02 warn = 0.05`,
    /// `off = ["greedy_prefix"]`, `tie_gap = 0.1`. `origin` names the file in errors.
    pub fn from_toml(value: toml::Value, origin: &str) -> Result<GateSpec> {
        let bad = |what: String| Error::input(format!("{origin}: gate{what}"));
        let table = value
            .as_table()
            .ok_or_else(|| bad(": expected a table".into()))?;
        let mut spec = GateSpec::default();
        for (key, item) in table {
            match key.as_str() {
                "tie_gap" => {
                    spec.tie_gap =
                        number(item).ok_or_else(|| bad(".tie_gap: expected a number".into()))?
                }
                "off" => {
                    for name in item.as_array().into_iter().flatten() {
                        let name = name
                            .as_str()
                            .ok_or_else(|| bad(".off: expected check names".into()))?;
                        known(name, origin)?;
                        spec.thresholds.remove(name);
                    }
                }
                name => {
                    let def = known(name, origin)?;
                    let t: Thresholds = item
                        .clone()
                        .try_into()
                        .map_err(|e: toml::de::Error| bad(format!(".{name}: {}", e.message())))?;
                    check_order(def, &t).map_err(|e| bad(format!(".{name}: {e}")))?;
                    spec.thresholds.insert(name.to_string(), t);
                }
            }
        }
        Ok(spec)
    }

    pub fn load(path: &Path) -> Result<GateSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::input(format!("{}: {}", path.display(), e.message())))?;
        GateSpec::from_toml(value, &path.display().to_string())
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

fn number(item: &toml::Value) -> Option<f64> {
    item.as_float()
        .or_else(|| item.as_integer().map(|i| i as f64))
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

fn known(name: &str, origin: &str) -> Result<&'static CheckDef> {
    check_def(name).ok_or_else(|| {
        let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        Error::input(format!("{origin}: gate: unknown check `{name}`"))
            .with_hint(format!("known checks: {}", names.join(", ")))
    })
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
        GateSpec::from_toml(toml::from_str(text).unwrap(), "gates.toml")
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
        let err = spec("[mean_kdl]\npass = 1\nwarn = 2\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("gates.toml: gate: unknown check `mean_kdl`"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("mean_kld"));
        let err = spec("[same_top]\npass = 90\nwarn = 95\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gate.same_top"), "{err}");
        let err = spec("[same_top]\npass = 90\n").unwrap_err().to_string();
        assert!(err.contains("warn"), "{err}");
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
