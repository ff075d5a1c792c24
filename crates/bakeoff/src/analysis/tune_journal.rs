//! The journal entry of a finished tune: "fastest faithful for MODEL at ctx N", the winner's
//! flags as the change, the tune run as the after-run, the answer as the evidence, and a verdict
//! proposed from the winner against the engine's defaults by the rule on [`propose`].

use super::journal::Verdict;
use crate::search::answer::{Answer, Finalist};
use crate::store::{JournalEntry, Store};
use crate::Result;

/// `tune: fastest faithful for SmolLM2-135M-Instruct.Q4_1.gguf at ctx 512`.
pub fn title(answer: &Answer) -> String {
    format!(
        "tune: fastest faithful for {} at ctx {}",
        model_name(answer),
        answer.ctx
    )
}

/// The winner's model file name; without a winner, those measured (else the reference's).
fn model_name(answer: &Answer) -> String {
    let file = |f: &Finalist| {
        f.model
            .file_name()
            .map_or(f.model.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            })
    };
    if let Some(winner) = &answer.winner {
        return file(winner);
    }
    let mut names: Vec<String> = answer.points.iter().map(file).collect();
    names.dedup();
    match names.is_empty() {
        true => answer
            .reference
            .split(' ')
            .next()
            .unwrap_or("?")
            .to_string(),
        false => names.join(", "),
    }
}

fn speed(f: &Finalist) -> String {
    format!("{:.2} t/s [{:.2}, {:.2}]", f.median, f.ci_low, f.ci_high)
}

/// The verdict and why. The winner is compared with the engine's defaults, measured in the same
/// run after the race: KEEP when its 95 % CI lies wholly above the defaults' (measurably faster,
/// and it passed the fidelity gate), REVERTED when wholly below (applying it would be slower),
/// NO IMPACT when the CIs overlap. PENDING when there is nothing to judge: no faithful winner,
/// the defaults not measured, or the tune interrupted before its answer was final.
pub fn propose(answer: &Answer) -> (Verdict, String) {
    if answer.stop == "interrupted" {
        let why = "the tune was interrupted before its answer was final; resume it";
        return (Verdict::Pending, why.into());
    }
    let Some(winner) = &answer.winner else {
        let why = "no configuration passed the fidelity gate: nothing to apply";
        return (Verdict::Pending, why.into());
    };
    let Some(defaults) = &answer.defaults else {
        let why = format!(
            "winner {}; the engine's defaults were not measured to compare with",
            speed(winner)
        );
        return (Verdict::Pending, why);
    };
    // Interleaved with the defaults when it was measured so (see `Answer::beside_defaults`).
    let (winner, when) = match &answer.beside_defaults {
        Some(beside) => (beside, " measured interleaved"),
        None => (winner, ""),
    };
    let pct = answer
        .speedup_over_defaults_pct
        .unwrap_or((winner.median / defaults.median - 1.0) * 100.0);
    let figures = format!(
        "winner {} vs the engine's defaults {}{when} ({pct:+.1} %), fidelity pass against {}",
        speed(winner),
        speed(defaults),
        answer.reference
    );
    if winner.ci_low > defaults.ci_high {
        (Verdict::Keep, format!("faster: {figures}"))
    } else if winner.ci_high < defaults.ci_low {
        (Verdict::Reverted, format!("slower: {figures}"))
    } else {
        (Verdict::NoImpact, format!("within noise: {figures}"))
    }
}

/// The entry for tune run `run_id` (id and timestamps are the store's to assign).
pub fn entry(run_id: i64, answer: &Answer) -> JournalEntry {
    let (verdict, reason) = propose(answer);
    let change = match &answer.winner {
        Some(w) if w.args.is_empty() => "the engine's defaults".to_string(),
        Some(w) => w.args.join(" "),
        None => "none: no faithful winner".to_string(),
    };
    let evidence = serde_json::json!({
        "kind": "tune",
        "run": run_id,
        "reason": reason,
        "answer": answer,
    });
    JournalEntry {
        id: 0,
        title: title(answer),
        change,
        before_run: None,
        after_run: Some(run_id),
        verdict: verdict.as_str().to_string(),
        proposed: verdict.is_judgement().then(|| verdict.as_str().to_string()),
        verdict_by: "proposal".to_string(),
        evidence,
        note: None,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

/// Add the tune's entry, or bring up to date the one a resumed tune already wrote (a verdict
/// set by hand stays). Returns the entry's id.
pub fn record(store: &Store, run_id: i64, answer: &Answer) -> Result<i64> {
    let fresh = entry(run_id, answer);
    let existing = store
        .journal_entries()?
        .into_iter()
        .find(|e| e.after_run == Some(run_id) && e.title.starts_with("tune:"));
    let Some(mut existing) = existing else {
        return store.add_journal_entry(&fresh);
    };
    if existing.verdict_by != "hand" {
        existing.verdict = fresh.verdict;
    }
    existing.proposed = fresh.proposed;
    existing.evidence = fresh.evidence;
    store.update_journal_entry(&existing)?;
    Ok(existing.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EngineConfig;
    use crate::serve::tuned::tests::{answer, finalist};
    use crate::system::Fingerprint;

    fn tuned(winner_median: f64, defaults_median: f64) -> Answer {
        let config = EngineConfig::default().with_flag("-ctv", "q8_0");
        let winner = finalist("-ctv q8_0", winner_median, &config);
        let defaults = finalist("engine defaults", defaults_median, &EngineConfig::default());
        Answer {
            winner: Some(winner.clone()),
            defaults: Some(defaults),
            beside_defaults: None,
            speedup_over_defaults_pct: Some((winner_median / defaults_median - 1.0) * 100.0),
            ..answer(vec![winner])
        }
    }

    #[test]
    fn the_verdict_follows_the_winner_against_the_defaults() {
        let cases = [
            (
                tuned(120.0, 100.0),
                Verdict::Keep,
                "faster: winner 120.00 t/s",
            ),
            (tuned(101.0, 100.0), Verdict::NoImpact, "within noise"),
            (tuned(80.0, 100.0), Verdict::Reverted, "slower"),
            (answer(vec![]), Verdict::Pending, "no configuration passed"),
            (
                Answer {
                    defaults: None,
                    ..tuned(120.0, 100.0)
                },
                Verdict::Pending,
                "not measured",
            ),
        ];
        for (answer, verdict, why) in cases {
            let (proposed, reason) = propose(&answer);
            assert_eq!(proposed, verdict, "{reason}");
            assert!(reason.contains(why), "{reason}");
        }
        let keep = propose(&tuned(120.0, 100.0)).1;
        assert!(keep.contains("(+20.0 %)"), "{keep}");
    }

    #[test]
    fn one_entry_per_tune_run_listed_by_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.db")).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run("tune", "bakeoff tune", system, None, &serde_json::json!({}))
            .unwrap();
        let answer = tuned(120.0, 100.0);
        let id = record(&store, run, &answer).unwrap();
        let entries = store.journal_entries().unwrap();
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(entry.title, "tune: fastest faithful for m.gguf at ctx 512");
        assert_eq!(entry.change, "-ctv q8_0");
        assert_eq!((entry.after_run, entry.before_run), (Some(run), None));
        assert_eq!(entry.verdict, "KEEP");
        assert_eq!(entry.evidence["answer"]["winner"]["median"], 120.0);
        let text = crate::report::journal::text(&entries);
        assert!(text.contains("KEEP — faster: winner 120.00 t/s"), "{text}");
        // A resumed tune that finishes again updates its entry instead of adding one.
        assert_eq!(record(&store, run, &tuned(101.0, 100.0)).unwrap(), id);
        let entries = store.journal_entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].verdict, "NO IMPACT");
    }
}
