//! The optimisation journal's judgement: a before/after comparison (the cells, ratios, bootstrap
//! CIs and Mann–Whitney tests of `bakeoff compare`) and the after-run's fidelity gates, reduced to
//! one proposed verdict by the rule documented on [`propose`].

use super::compare::{self, Cell, CompareRow};
use crate::store::{RunRow, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A journal verdict, spelled as the optimisation logs spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Applied for good: measurably faster, fidelity intact.
    #[serde(rename = "KEEP")]
    Keep,
    /// Tested and undone: measurably slower, or a fidelity gate failed.
    #[serde(rename = "REVERTED")]
    Reverted,
    /// Tested; the difference is within noise.
    #[serde(rename = "NO IMPACT")]
    NoImpact,
    /// Not tested yet (set by hand).
    #[serde(rename = "PENDING")]
    Pending,
    /// Cannot be tested yet (set by hand).
    #[serde(rename = "BLOCKED")]
    Blocked,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Keep,
        Verdict::Reverted,
        Verdict::NoImpact,
        Verdict::Pending,
        Verdict::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Keep => "KEEP",
            Verdict::Reverted => "REVERTED",
            Verdict::NoImpact => "NO IMPACT",
            Verdict::Pending => "PENDING",
            Verdict::Blocked => "BLOCKED",
        }
    }

    /// Case-insensitive; `NO IMPACT`, `no-impact` and `no_impact` are one verdict.
    pub fn parse(text: &str) -> Result<Self> {
        let wanted = text.trim().to_uppercase().replace(['-', '_'], " ");
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == wanted)
            .ok_or_else(|| {
                Error::input(format!(
                    "--verdict {text}: expected KEEP, REVERTED, NO IMPACT, PENDING or BLOCKED"
                ))
            })
    }

    /// Whether evidence can decide it (PENDING and BLOCKED are only ever set by hand).
    pub fn is_judgement(self) -> bool {
        matches!(self, Verdict::Keep | Verdict::Reverted | Verdict::NoImpact)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as the journal refers to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRef {
    pub id: i64,
    pub tag: Option<String>,
    pub kind: String,
    pub status: String,
    pub started_at: String,
}

impl From<&RunRow> for RunRef {
    fn from(run: &RunRow) -> Self {
        RunRef {
            id: run.id,
            tag: run.tag.clone(),
            kind: run.kind.clone(),
            status: run.status.clone(),
            started_at: run.started_at.clone(),
        }
    }
}

impl RunRef {
    /// `run 3 (base)` or `run 3`.
    pub fn label(&self) -> String {
        match &self.tag {
            Some(tag) => format!("run {} ({tag})", self.id),
            None => format!("run {}", self.id),
        }
    }
}

/// One compared cell, before → after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceRow {
    pub config: String,
    pub test: String,
    /// `pp`, `tg` or `load`.
    pub kind: String,
    pub before_median: f64,
    pub after_median: f64,
    pub before_n: usize,
    pub after_n: usize,
    pub unit: String,
    /// median(after) / median(before).
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p_value: f64,
    /// `bakeoff compare`'s verdict for the cell: FASTER, SLOWER or NO CHANGE (`*`: CI alone).
    pub verdict: String,
    /// Whether the cell measures the headline metric (and so takes part in the proposal).
    pub headline: bool,
}

/// A fidelity gate check of the after-run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateCheck {
    pub candidate: String,
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub value: Option<f64>,
}

/// Something recorded that differs between the runs (engine, model hash, flags, system, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difference {
    pub what: String,
    pub before: String,
    pub after: String,
}

/// Everything an entry was judged on; stored with it as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub before: RunRef,
    pub after: RunRef,
    /// `config`: cells matched on (config, test), as `bakeoff compare` does. `test`: the runs
    /// measured one config each and those differ (the change *was* a flag), so cells are matched
    /// on the test alone.
    pub matched_by: String,
    /// `tg`, else `load` (output tok/s), else `pp`: the metric the proposal rests on.
    pub headline: Option<String>,
    pub rows: Vec<EvidenceRow>,
    /// Cells measured in only one of the runs.
    pub unmatched: Vec<String>,
    pub differences: Vec<Difference>,
    pub gates: Vec<GateCheck>,
    /// None when there is nothing to judge (no cell measured in both runs).
    pub proposed: Option<Verdict>,
    /// Why: the deciding cells or gates.
    pub reason: String,
}

/// Headline metrics in order of preference: decode speed is what users feel in a chat.
const HEADLINE_ORDER: [&str; 3] = ["tg", "load", "pp"];

/// Where gate checks come from besides the after-run: a `bakeoff gate` run, optionally one of its
/// candidates.
#[derive(Debug, Clone)]
pub struct GateSource {
    pub run: i64,
    pub candidate: Option<String>,
}

/// The fidelity gate checks that judge the after-run: its own, then those of each source.
fn gate_checks(store: &Store, after: i64, sources: &[GateSource]) -> Result<Vec<GateCheck>> {
    let convert = |g: crate::store::GateCheckRow| GateCheck {
        candidate: g.candidate,
        name: g.name,
        status: g.status,
        value: g.value,
    };
    let mut checks: Vec<GateCheck> = store
        .journal_gate_checks(after)?
        .into_iter()
        .map(convert)
        .collect();
    for source in sources {
        let rows = store.journal_gate_checks(source.run)?;
        let mut candidates: Vec<String> = rows.iter().map(|r| r.candidate.clone()).collect();
        candidates.dedup();
        let chosen: Vec<GateCheck> = rows
            .into_iter()
            .filter(|r| source.candidate.as_ref().is_none_or(|c| *c == r.candidate))
            .map(convert)
            .collect();
        if chosen.is_empty() {
            let what = match &source.candidate {
                Some(c) => format!("run {} has no gate checks for candidate '{c}'", source.run),
                None => format!("run {} has no fidelity gate checks", source.run),
            };
            let hint = if candidates.is_empty() {
                "`bakeoff gate` stores gate checks; pass one of its runs".to_string()
            } else {
                format!("its candidates: {}", candidates.join(", "))
            };
            return Err(Error::input(what).with_hint(hint));
        }
        checks.extend(chosen);
    }
    Ok(checks)
}

/// Compare `before` with `after` and propose a verdict; `gates` adds the checks of `bakeoff gate`
/// runs to the after-run's own.
pub fn gather(store: &Store, before: i64, after: i64, gates: &[GateSource]) -> Result<Evidence> {
    let (db, da) = (store.run_detail(before)?, store.run_detail(after)?);
    let (cb, ca) = (compare::cells(&db), compare::cells(&da));
    let comparison = compare::compare(store, before, after)?;
    let (matched_by, pairs, unmatched) =
        if comparison.rows.is_empty() && single_config_each(&cb, &ca) {
            let (pairs, unmatched) = pair_by_test(&cb, &ca);
            ("test", pairs, unmatched)
        } else {
            let pairs = comparison
                .rows
                .iter()
                .map(|row| (row.clone(), kind_of(&cb, &row.config, &row.test)))
                .collect();
            ("config", pairs, comparison.unmatched.clone())
        };
    let headline = HEADLINE_ORDER
        .into_iter()
        .find(|h| pairs.iter().any(|(_, kind)| kind == h))
        .map(str::to_string);
    let rows: Vec<EvidenceRow> = pairs
        .into_iter()
        .map(|(row, kind)| evidence_row(row, &kind, headline.as_deref() == Some(kind.as_str())))
        .collect();
    let gates = gate_checks(store, after, gates)?;
    let (proposed, reason) = propose(&rows, &gates);
    Ok(Evidence {
        before: RunRef::from(&db.run),
        after: RunRef::from(&da.run),
        matched_by: matched_by.to_string(),
        headline,
        rows,
        unmatched,
        differences: comparison
            .differences
            .into_iter()
            .map(|d| Difference {
                what: d.what,
                before: d.a,
                after: d.b,
            })
            .collect(),
        gates,
        proposed,
        reason,
    })
}

fn distinct_configs(cells: &[Cell]) -> usize {
    let mut labels: Vec<&str> = cells.iter().map(|c| c.config.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    labels.len()
}

fn single_config_each(before: &[Cell], after: &[Cell]) -> bool {
    distinct_configs(before) == 1 && distinct_configs(after) == 1
}

fn kind_of(cells: &[Cell], config: &str, test: &str) -> String {
    cells
        .iter()
        .find(|c| c.config == config && c.test == test)
        .map(|c| c.kind.clone())
        .unwrap_or_default()
}

/// Match cells on the test alone; the config column then reads `before → after`.
fn pair_by_test(before: &[Cell], after: &[Cell]) -> (Vec<(CompareRow, String)>, Vec<String>) {
    let mut pairs = Vec::new();
    let mut unmatched = Vec::new();
    for x in before {
        match after.iter().find(|y| y.test == x.test) {
            Some(y) => {
                let mut row = compare::compare_cells(x, y);
                row.config = format!("{} → {}", x.config, y.config);
                pairs.push((row, x.kind.clone()));
            }
            None => unmatched.push(format!("before only: {} {}", x.config, x.test)),
        }
    }
    for y in after
        .iter()
        .filter(|y| !before.iter().any(|x| x.test == y.test))
    {
        unmatched.push(format!("after only: {} {}", y.config, y.test));
    }
    (pairs, unmatched)
}

fn evidence_row(row: CompareRow, kind: &str, headline: bool) -> EvidenceRow {
    EvidenceRow {
        config: row.config,
        test: row.test,
        kind: kind.to_string(),
        before_median: row.a.median,
        after_median: row.b.median,
        before_n: row.a.n,
        after_n: row.b.n,
        unit: if kind == "load" { "tok/s" } else { "t/s" }.to_string(),
        ratio: row.ratio,
        ci_low: row.ci_low,
        ci_high: row.ci_high,
        p_value: row.p_value,
        verdict: row.verdict,
        headline,
    }
}

/// The proposal rule, in order:
/// 1. any fidelity gate of the after-run with status `fail` → REVERTED (a faster wrong answer is
///    not an optimisation);
/// 2. no cell measured in both runs → no proposal;
/// 3. any headline cell SLOWER (ratio CI below 1 and Mann–Whitney p < 0.05, exactly as
///    `bakeoff compare` decides; with too few repetitions for the test, the CI alone, marked `*`)
///    → REVERTED;
/// 4. else any headline cell FASTER → KEEP;
/// 5. else → NO IMPACT (every headline cell within noise).
///
/// The headline metric is tg t/s; load runs use output tok/s and pp-only runs pp t/s. Gates with
/// status `warn` do not change the verdict; the reason names them.
pub fn propose(rows: &[EvidenceRow], gates: &[GateCheck]) -> (Option<Verdict>, String) {
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| g.status.eq_ignore_ascii_case("fail"))
        .map(gate_label)
        .collect();
    if !failed.is_empty() {
        return (
            Some(Verdict::Reverted),
            format!("fidelity gate failed: {}", failed.join(", ")),
        );
    }
    let headline: Vec<&EvidenceRow> = rows.iter().filter(|r| r.headline).collect();
    if headline.is_empty() {
        return (None, "no cell was measured in both runs".to_string());
    }
    let with = |prefix: &str| -> Vec<&EvidenceRow> {
        headline
            .iter()
            .copied()
            .filter(|r| r.verdict.starts_with(prefix))
            .collect()
    };
    let (slower, faster) = (with("SLOWER"), with("FASTER"));
    let (verdict, reason) = if !slower.is_empty() {
        (Verdict::Reverted, format!("slower: {}", describe(&slower)))
    } else if !faster.is_empty() {
        (Verdict::Keep, format!("faster: {}", describe(&faster)))
    } else {
        (
            Verdict::NoImpact,
            format!("within noise: {}", describe(&headline)),
        )
    };
    let warned: Vec<String> = gates
        .iter()
        .filter(|g| g.status.eq_ignore_ascii_case("warn"))
        .map(gate_label)
        .collect();
    let reason = if warned.is_empty() {
        reason
    } else {
        format!("{reason}; fidelity warnings: {}", warned.join(", "))
    };
    (Some(verdict), reason)
}

fn gate_label(gate: &GateCheck) -> String {
    format!("{} ({})", gate.name, gate.candidate)
}

/// `tg32 ×1.080 [1.031, 1.122] p=0.008` for up to three cells.
fn describe(rows: &[&EvidenceRow]) -> String {
    let mut parts: Vec<String> = rows
        .iter()
        .take(3)
        .map(|r| {
            let ci_only = if r.verdict.ends_with('*') {
                " (CI alone: too few repetitions for the test)"
            } else {
                ""
            };
            format!(
                "{} {} ×{:.3} [{:.3}, {:.3}] p={:.3}{ci_only}",
                r.config, r.test, r.ratio, r.ci_low, r.ci_high, r.p_value
            )
        })
        .collect();
    if rows.len() > 3 {
        parts.push(format!("and {} more", rows.len() - 3));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::store::{NewCheck, NewTrial};
    use crate::system::Fingerprint;

    fn row(test: &str, kind: &str, verdict: &str, headline: bool) -> EvidenceRow {
        EvidenceRow {
            config: "(defaults)".into(),
            test: test.into(),
            kind: kind.into(),
            before_median: 100.0,
            after_median: 100.0,
            before_n: 5,
            after_n: 5,
            unit: "t/s".into(),
            ratio: 1.0,
            ci_low: 0.9,
            ci_high: 1.1,
            p_value: 0.5,
            verdict: verdict.into(),
            headline,
        }
    }

    fn gate(status: &str) -> GateCheck {
        GateCheck {
            candidate: "q4_0".into(),
            name: "canaries".into(),
            status: status.into(),
            value: None,
        }
    }

    #[test]
    fn the_proposal_rule() {
        let faster = [row("tg32", "tg", "FASTER", true)];
        assert_eq!(propose(&faster, &[]).0, Some(Verdict::Keep));
        assert_eq!(propose(&faster, &[gate("pass")]).0, Some(Verdict::Keep));
        let (verdict, reason) = propose(&faster, &[gate("fail")]);
        assert_eq!(verdict, Some(Verdict::Reverted));
        assert!(reason.contains("canaries (q4_0)"), "{reason}");
        let (verdict, reason) = propose(&faster, &[gate("warn")]);
        assert_eq!(verdict, Some(Verdict::Keep));
        assert!(reason.contains("fidelity warnings"), "{reason}");
        // A regression anywhere on the headline metric outweighs a gain elsewhere.
        let mixed = [
            row("tg32", "tg", "FASTER", true),
            row("tg32 @ d512", "tg", "SLOWER*", true),
        ];
        assert_eq!(propose(&mixed, &[]).0, Some(Verdict::Reverted));
        // pp is not the headline when tg was measured: a pp gain alone is no impact.
        let pp_only_gain = [
            row("pp64", "pp", "FASTER", false),
            row("tg32", "tg", "NO CHANGE", true),
        ];
        assert_eq!(propose(&pp_only_gain, &[]).0, Some(Verdict::NoImpact));
        assert_eq!(propose(&[], &[]).0, None);
    }

    #[test]
    fn verdicts_parse_as_logs_spell_them() {
        assert_eq!(Verdict::parse("no-impact").unwrap(), Verdict::NoImpact);
        assert_eq!(Verdict::parse("NO IMPACT").unwrap(), Verdict::NoImpact);
        assert_eq!(Verdict::parse("keep").unwrap(), Verdict::Keep);
        assert!(Verdict::parse("maybe").is_err());
        assert!(!Verdict::Pending.is_judgement());
        assert_eq!(
            serde_json::to_string(&Verdict::NoImpact).unwrap(),
            "\"NO IMPACT\""
        );
    }

    /// A gate check as `bakeoff gate` stores it.
    fn gate_check<'a>(candidate: &'a str, name: &'a str, status: &'a str) -> NewCheck<'a> {
        NewCheck {
            candidate,
            config: None,
            kind: "gate",
            name,
            status,
            value: None,
            detail: serde_json::json!({}),
        }
    }

    /// A bench run of one config with tg32 samples.
    fn bench_run(store: &Store, flags: &[(&str, &str)], values: &[f64]) -> i64 {
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run(
                "bench",
                "bakeoff bench",
                system,
                None,
                &serde_json::json!({}),
            )
            .unwrap();
        let mut config = EngineConfig::default();
        for (flag, value) in flags {
            config = config.with_flag(flag, *value);
        }
        let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
        for (rep, value) in values.iter().enumerate() {
            let trial = NewTrial::new(Some(&config), &workload, rep as u32);
            let id = store.begin_trial(run, &trial).unwrap();
            store
                .sample(id, "tg_tps", *value, Unit::TokensPerSecond, "client", 0)
                .unwrap();
            store.end_trial(id, "ok", None).unwrap();
        }
        store.end_run(run, "ok", None).unwrap();
        run
    }

    #[test]
    fn a_flag_change_is_compared_test_by_test_and_a_failed_gate_reverts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.db")).unwrap();
        let base = [100.0, 101.0, 99.0, 100.5, 100.2];
        let before = bench_run(&store, &[], &base);
        let after = bench_run(&store, &[("-b", "256")], &base.map(|v| v * 1.2));
        let evidence = gather(&store, before, after, &[]).unwrap();
        assert_eq!(evidence.matched_by, "test");
        assert_eq!(evidence.rows[0].config, "(defaults) → -b 256");
        assert_eq!(evidence.headline.as_deref(), Some("tg"));
        assert_eq!(
            evidence.proposed,
            Some(Verdict::Keep),
            "{}",
            evidence.reason
        );

        store
            .record_check(
                after,
                None,
                &gate_check("-b 256", "greedy agreement", "fail"),
            )
            .unwrap();
        let evidence = gather(&store, before, after, &[]).unwrap();
        assert_eq!(evidence.proposed, Some(Verdict::Reverted));
        assert!(evidence.reason.contains("greedy agreement"));

        // Gate checks of a separate `bakeoff gate` run, chosen by candidate.
        let gate_run = bench_run(&store, &[], &base);
        for (candidate, status) in [("q8_0", "pass"), ("q4_0", "fail")] {
            store
                .record_check(gate_run, None, &gate_check(candidate, "mean_kld", status))
                .unwrap();
        }
        let source = |candidate: &str| GateSource {
            run: gate_run,
            candidate: Some(candidate.to_string()),
        };
        let other = bench_run(&store, &[("-b", "256")], &base.map(|v| v * 1.2));
        let kept = gather(&store, before, other, &[source("q8_0")]).unwrap();
        assert_eq!(kept.proposed, Some(Verdict::Keep), "{}", kept.reason);
        let reverted = gather(&store, before, other, &[source("q4_0")]).unwrap();
        assert_eq!(reverted.proposed, Some(Verdict::Reverted));
        let missing = gather(&store, before, other, &[source("f16")]).unwrap_err();
        assert!(missing
            .to_string()
            .contains("no gate checks for candidate 'f16'"));
    }
}
