//! The readiness table `bakeoff gate` prints: seed 002's "Candidate Final Readiness" columns
//! (candidate, gate, PPL status, coherence, tg t/s and draft acceptance, KV at the target
//! context, blocker), one row per candidate.

use super::render::{Column, Table};
use crate::domain::units::{human_bytes, human_count};
use crate::quality::readiness::Readiness;
use crate::quality::Status;

/// The readiness table as Markdown.
pub fn markdown(rows: &[Readiness], ctx: u64) -> String {
    table(rows, ctx).markdown()
}

/// One row per candidate; `—` where a figure was not measured.
pub fn table(rows: &[Readiness], ctx: u64) -> Table {
    let mut table = Table::new(vec![
        Column::left("candidate", "Candidate"),
        Column::left("gate", "Gate"),
        Column::left("ppl_status", "PPL status"),
        Column::left("coherence", "Coherence"),
        Column::left("speed", "tg t/s / accept"),
        Column::left("kv", format!("KV @ {}", human_count(ctx))),
        Column::left("blocker", "Blocker"),
    ]);
    for row in rows {
        table.push(cells(row));
    }
    table
}

fn cells(row: &Readiness) -> [String; 7] {
    [
        if row.baseline {
            format!("{} (baseline)", row.candidate)
        } else {
            row.candidate.clone()
        },
        row.overall.map_or("—".into(), |s| s.label().to_string()),
        ppl_status(row),
        coherence(row),
        speed(row),
        row.kv_bytes.map_or("—".into(), human_bytes),
        row.blocker.clone().unwrap_or_else(|| "—".into()),
    ]
}

fn ppl_status(row: &Readiness) -> String {
    if let Some(ppl) = row.ppl {
        return format!("base {ppl:.4}");
    }
    let Some(k) = &row.kld else {
        return row.kld_estimate.as_ref().map_or("not run".into(), |e| {
            format!("KL≈{:.4} (top-{})", e.mean_kld, e.k)
        });
    };
    let status = row
        .outcomes
        .iter()
        .filter(|o| matches!(o.name.as_str(), "mean_kld" | "same_top" | "ppl_ratio"))
        .map(|o| o.status)
        .max()
        .map_or("", Status::label);
    format!(
        "{status} {:.4} (×{:.4}, KLD {:.4}, same-top {:.1} %)",
        k.ppl, k.ppl_ratio, k.mean_kld, k.same_top_pct
    )
}

fn coherence(row: &Readiness) -> String {
    if row.canaries.is_empty() {
        return "not run".into();
    }
    let mut text = format!("{}/{} canaries", row.canaries_passed(), row.canaries.len());
    if let Some(a) = &row.agreement {
        let label = if row.baseline {
            "noise floor"
        } else {
            "greedy"
        };
        text += &format!(
            "; {label} {}/{} exact, prefix {:.0} %",
            a.exact,
            a.prompts,
            100.0 * a.mean_prefix_fraction
        );
    }
    if let Some(s) = &row.speculative {
        text += &format!("; spec {} divergence(s)", s.divergences.len());
    }
    text
}

fn speed(row: &Readiness) -> String {
    let tg = row.tg_tps.map_or("—".into(), |t| format!("{t:.1} t/s"));
    match row.draft_acceptance {
        Some(a) => format!("{tg}, {:.1} % accept", 100.0 * a),
        None => tg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::readiness::{Candidate, Flags};
    use std::path::Path;

    #[test]
    fn markdown_escapes_cells() {
        // Cells used to escape only `|`: a candidate or blocker text could carry raw HTML.
        let mut row = Readiness::new(
            &Candidate {
                name: "a|b".into(),
                model: None,
                flags: Flags::default(),
            },
            Path::new("m.gguf"),
            false,
        );
        row.blocker = Some("line\nbreak <script>".into());
        let md = markdown(&[row], 4096);
        assert!(md.contains("a\\|b") && md.contains("line<br>break"), "{md}");
        assert!(
            md.contains("&lt;script&gt;") && !md.contains("<script"),
            "{md}"
        );
    }

    #[test]
    fn rules_follow_the_titles() {
        let md = markdown(&[], 4096);
        let rule = md.lines().nth(1).unwrap();
        assert_eq!(
            rule,
            "| --------- | ---- | ---------- | --------- | --------------- | ------- | ------- |"
        );
    }
}
