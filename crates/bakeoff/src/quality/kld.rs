//! Distribution fidelity. Exact: llama-perplexity's two passes (`--kl-divergence-base` on the
//! baseline, then `--kl-divergence` on the candidate, same -b/-ub) over the fixed text, parsed
//! into PPL, PPL ratio, mean KLD and percentiles, same-top % and RMS Δp. Estimated: for engines
//! llama-perplexity cannot run, KL over each side's top-k logprobs on teacher-forced tokens.

use super::hygiene::RequestLog;
use crate::engines::http::Http;
use crate::engines::process::Supervised;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One llama-perplexity invocation's fixed parts.
#[derive(Debug, Clone)]
pub struct Perplexity {
    pub binary: PathBuf,
    /// Context per chunk (`-c`); the second half of each chunk is scored.
    pub ctx: u32,
    pub chunks: u32,
    /// `-b`/`-ub`, the same on both passes: logits depend on the batch size.
    pub batch: u32,
}

/// The flags of an engine configuration that change llama-perplexity's logits; server-only flags
/// (slots, speculation, templates, ports) are dropped, and bakeoff sets -c/-b/-ub itself.
pub fn perplexity_flags(args: &[String]) -> Vec<String> {
    const SWITCHES: &[&str] = &["--no-mmap", "-nkvo", "--no-kv-offload", "--swa-full"];
    const WITH_VALUE: &[&str] = &[
        "-ctk",
        "--cache-type-k",
        "-ctv",
        "--cache-type-v",
        "-fa",
        "--flash-attn",
        "-ngl",
        "--n-gpu-layers",
        "--gpu-layers",
        "-t",
        "--threads",
        "-sm",
        "--split-mode",
        "-ts",
        "--tensor-split",
        "-mg",
        "--main-gpu",
        "-ot",
        "--override-tensor",
        "--override-kv",
        "-dev",
        "--device",
        "-ncmoe",
        "--n-cpu-moe",
    ];
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if SWITCHES.contains(&arg.as_str()) {
            out.push(arg.clone());
        } else if WITH_VALUE.contains(&arg.as_str()) {
            if let Some(value) = iter.next() {
                out.extend([arg.clone(), value.clone()]);
            }
        }
    }
    out
}

impl Perplexity {
    fn common(&self, model: &Path, flags: &[String]) -> Vec<String> {
        let mut args = vec![
            "-m".to_string(),
            model.display().to_string(),
            "-c".into(),
            self.ctx.to_string(),
            "-b".into(),
            self.batch.to_string(),
            "-ub".into(),
            self.batch.to_string(),
            "--chunks".into(),
            self.chunks.to_string(),
        ];
        args.extend(perplexity_flags(flags));
        args
    }

    /// Pass 1: score `text` with the baseline and save its logits to `base`. Returns the PPL.
    pub fn save_base(
        &self,
        model: &Path,
        flags: &[String],
        text: &Path,
        base: &Path,
        log: &Path,
    ) -> Result<f64> {
        let mut args = self.common(model, flags);
        args.extend([
            "-f".into(),
            text.display().to_string(),
            "--kl-divergence-base".into(),
            base.display().to_string(),
        ]);
        let output = self.invoke(&args, log)?;
        parse_final_ppl(&output).ok_or_else(|| {
            Error::engine(format!(
                "{}: no \"Final estimate: PPL\" line",
                log.display()
            ))
        })
    }

    /// Pass 2: score the candidate against the saved baseline logits.
    pub fn compare(
        &self,
        model: &Path,
        flags: &[String],
        base: &Path,
        log: &Path,
    ) -> Result<KldReport> {
        let mut args = self.common(model, flags);
        args.extend([
            "--kl-divergence-base".into(),
            base.display().to_string(),
            "--kl-divergence".into(),
        ]);
        let output = self.invoke(&args, log)?;
        parse_kld(&output).map_err(|e| Error::engine(format!("{}: {e}", log.display())))
    }

    fn invoke(&self, args: &[String], log: &Path) -> Result<String> {
        let start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut child = Supervised::spawn(&self.binary, args, log)?;
        let status = child.wait_interruptible()?;
        let bytes = std::fs::read(log).map_err(|e| Error::io(log, e))?;
        let output = String::from_utf8_lossy(&bytes[start as usize..]).into_owned();
        if !status.success() {
            let reason = crate::engines::fatal::scan(&output)
                .first()
                .map(|f| f.text.clone())
                .or_else(|| {
                    output
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            return Err(Error::engine(format!(
                "llama-perplexity exited with {status}: {}",
                reason.trim()
            ))
            .with_hint(format!("full log: {}", log.display())));
        }
        Ok(output)
    }
}

/// What the KL-divergence pass printed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KldReport {
    pub ppl: f64,
    pub ppl_base: f64,
    pub ppl_ratio: f64,
    pub mean_kld: f64,
    /// `max`, `99.9`, `99.0`, `95.0`, `90.0`, `median`, `10.0`, `5.0`, `1.0`, `0.1`, `min`.
    pub kld_percentiles: BTreeMap<String, f64>,
    /// Percent of positions where both sides' most likely token agree.
    pub same_top_pct: f64,
    /// Root mean square of the change in the probability of the right token, in percent.
    pub rms_dp_pct: f64,
}

fn number_after(line: &str, label: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix(label)?;
    let rest = rest.trim_start().strip_prefix(':').unwrap_or(rest);
    rest.split_whitespace()
        .next()?
        .trim_end_matches('%')
        .parse()
        .ok()
}

fn parse_final_ppl(output: &str) -> Option<f64> {
    output.lines().find_map(|l| {
        let at = l.find("Final estimate: PPL = ")?;
        l[at + 22..].split_whitespace().next()?.parse().ok()
    })
}

/// Parse the statistics llama-perplexity prints after `--kl-divergence`.
pub fn parse_kld(output: &str) -> std::result::Result<KldReport, String> {
    let mut report = KldReport::default();
    let mut seen = 0;
    for line in output.lines() {
        let mut set = |label: &str, slot: &mut f64| {
            if let Some(v) = number_after(line, label) {
                *slot = v;
                seen += 1;
            }
        };
        set("Mean PPL(Q)/PPL(base)", &mut report.ppl_ratio);
        set("Mean PPL(Q)", &mut report.ppl);
        set("Mean PPL(base)", &mut report.ppl_base);
        set("Mean    KLD", &mut report.mean_kld);
        set("RMS Δp", &mut report.rms_dp_pct);
        set("Same top p", &mut report.same_top_pct);
        for (label, key) in [
            ("Maximum KLD", "max"),
            ("99.9%   KLD", "99.9"),
            ("99.0%   KLD", "99.0"),
            ("95.0%   KLD", "95.0"),
            ("90.0%   KLD", "90.0"),
            ("Median  KLD", "median"),
            ("10.0%   KLD", "10.0"),
            ("5.0%   KLD", "5.0"),
            ("1.0%   KLD", "1.0"),
            ("0.1%   KLD", "0.1"),
            ("Minimum KLD", "min"),
        ] {
            if let Some(v) = number_after(line, label) {
                report.kld_percentiles.insert(key.to_string(), v);
            }
        }
    }
    if seen < 6 {
        return Err(
            if output.contains("you need at least")
                || output.contains("only") && output.contains("tokens")
            {
                "the text is too short for this context size".to_string()
            } else {
                "no KL-divergence statistics in the output (fewer than 100 scored tokens, or the pass failed)".to_string()
            },
        );
    }
    Ok(report)
}

/// The HTTP-only estimate: each side's top-k distribution at teacher-forced positions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopK {
    /// Per position: `(token id, logprob)`, most likely first.
    pub positions: Vec<Vec<(i64, f64)>>,
}

/// Query `http` (llama-server) for its top-`k` next-token distribution after each prefix of
/// `tokens` in `cuts`: one request per position, one token generated. The cuts rise, so with the
/// prompt cache on each request evaluates only the tokens past the one before it (the text once,
/// not once per position); baseline and candidate are read the same way.
pub fn top_k_at(
    http: &Http,
    tokens: &[i64],
    cuts: &[usize],
    k: u32,
    log: &mut RequestLog,
) -> Result<TopK> {
    let mut positions = Vec::with_capacity(cuts.len());
    for &cut in cuts {
        let body = json!({
            "prompt": &tokens[..cut.min(tokens.len())],
            "n_predict": 1,
            "temperature": 0,
            "n_probs": k,
            "cache_prompt": true,
            "stream": false,
        });
        let response = http.post_json("/completion", &body);
        log.record(&response, response.as_ref().ok().map(|r| &r["timings"]));
        let response = response?;
        let top = response["completion_probabilities"][0]["top_logprobs"]
            .as_array()
            .ok_or_else(|| {
                Error::http(
                    http.url("/completion"),
                    "no completion_probabilities[0].top_logprobs",
                )
            })?
            .iter()
            .filter_map(|t| Some((t["id"].as_i64()?, t["logprob"].as_f64()?)))
            .collect();
        positions.push(top);
    }
    Ok(TopK { positions })
}

/// Tokenize with the server's own tokenizer.
pub fn tokenize(http: &Http, text: &str) -> Result<Vec<i64>> {
    let response = http.post_json("/tokenize", &json!({"content": text}))?;
    response["tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .ok_or_else(|| Error::http(http.url("/tokenize"), "response has no tokens array"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KldEstimate {
    pub positions: usize,
    pub k: usize,
    /// Mean KL(baseline ‖ candidate) over the distributions coarsened to the baseline's top-k
    /// tokens plus one "everything else" bucket: a lower bound on the true KL.
    pub mean_kld: f64,
    pub same_top_pct: f64,
}

/// KL between two top-k lists coarsened to `p`'s tokens plus a remainder bucket. A token of `p`
/// missing from `q`'s list gets the most `q` can give it: its smallest listed probability, or
/// what `q`'s list leaves unassigned if that is smaller.
pub fn coarse_kl(p: &[(i64, f64)], q: &[(i64, f64)]) -> f64 {
    const FLOOR: f64 = 1e-10;
    let q_listed: f64 = q.iter().map(|(_, l)| l.exp()).sum();
    let q_ceiling = q
        .iter()
        .map(|(_, l)| l.exp())
        .fold(f64::INFINITY, f64::min)
        .min((1.0 - q_listed).max(0.0));
    let mut kl = 0.0;
    let (mut p_mass, mut q_mass) = (0.0, 0.0);
    for &(id, logp) in p {
        let pi = logp.exp();
        let qi = q
            .iter()
            .find(|(qid, _)| *qid == id)
            .map(|(_, l)| l.exp())
            .unwrap_or(q_ceiling)
            .max(FLOOR);
        kl += pi * (pi / qi).ln();
        p_mass += pi;
        q_mass += qi;
    }
    let (p_rest, q_rest) = ((1.0 - p_mass).max(0.0), (1.0 - q_mass).max(FLOOR));
    if p_rest > FLOOR {
        kl += p_rest * (p_rest / q_rest).ln();
    }
    kl.max(0.0)
}

pub fn estimate(baseline: &TopK, candidate: &TopK) -> KldEstimate {
    let pairs: Vec<_> = baseline
        .positions
        .iter()
        .zip(&candidate.positions)
        .filter(|(p, q)| !p.is_empty() && !q.is_empty())
        .collect();
    let n = pairs.len().max(1) as f64;
    KldEstimate {
        positions: pairs.len(),
        k: baseline.positions.first().map_or(0, Vec::len),
        mean_kld: pairs.iter().map(|(p, q)| coarse_kl(p, q)).sum::<f64>() / n,
        same_top_pct: 100.0 * pairs.iter().filter(|(p, q)| p[0].0 == q[0].0).count() as f64 / n,
    }
}

/// `count` evenly spaced cut points in `min..len`.
pub fn cut_points(len: usize, min: usize, count: usize) -> Vec<usize> {
    if len <= min || count == 0 {
        return Vec::new();
    }
    let span = len - min;
    let mut cuts: Vec<usize> = (0..count).map(|i| min + i * span / count).collect();
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p
   1      18.0446 ±    4.2137       0.01194 ±    0.00817       0.00548 ±    0.00074     2.154 ±  0.290 %    96.063 ±  1.223 %

====== Perplexity statistics ======
Mean PPL(Q)                   :  21.871240 ±   1.197016
Mean PPL(base)                :  21.826543 ±   1.194049
Cor(ln(PPL(Q)), ln(PPL(base))):  99.82%
Mean ln(PPL(Q)/PPL(base))     :   0.002046 ±   0.002337
Mean PPL(Q)/PPL(base)         :   1.002048 ±   0.002342
Mean PPL(Q)-PPL(base)         :   0.044697 ±   0.051133

====== KL divergence statistics ======
Mean    KLD:   0.005217 ±   0.000336
Maximum KLD:   0.141939
99.9%   KLD:   0.129212
99.0%   KLD:   0.046930
95.0%   KLD:   0.018718
90.0%   KLD:   0.012300
Median  KLD:   0.002689
10.0%   KLD:   0.000161
 5.0%   KLD:   0.000058
 1.0%   KLD:   0.000008
 0.1%   KLD:  -0.000001
Minimum KLD:  -0.000003

====== Token probability statistics ======
Mean    Δp: -0.063 ± 0.061 %
RMS Δp    :  1.915 ± 0.119 %
Same top p: 95.117 ± 0.673 %
";

    #[test]
    fn the_kld_statistics_are_parsed() {
        let r = parse_kld(OUTPUT).unwrap();
        assert_eq!(r.ppl, 21.87124);
        assert_eq!(r.ppl_base, 21.826543);
        assert_eq!(r.ppl_ratio, 1.002048);
        assert_eq!(r.mean_kld, 0.005217);
        assert_eq!(r.same_top_pct, 95.117);
        assert_eq!(r.rms_dp_pct, 1.915);
        assert_eq!(r.kld_percentiles["99.0"], 0.04693);
        assert_eq!(r.kld_percentiles["median"], 0.002689);
        assert_eq!(r.kld_percentiles["0.1"], -0.000001);
        assert_eq!(r.kld_percentiles.len(), 11);
    }

    #[test]
    fn output_without_statistics_is_an_error_not_zeros() {
        assert!(parse_kld("chunk PPL\n   1  18.0\n").is_err());
        assert!(parse_kld("").is_err());
    }

    #[test]
    fn the_final_ppl_line_is_found() {
        let out = "[1]12.3,[2]14.5,\nFinal estimate: PPL = 21.8265 +/- 1.19405\n";
        assert_eq!(parse_final_ppl(out), Some(21.8265));
    }

    #[test]
    fn only_logit_changing_flags_reach_llama_perplexity() {
        let args: Vec<String> =
            "-fa on -ctk q8_0 -np 1 --spec-type ngram-mod -c 4096 --no-mmap -ngl 99 --jinja"
                .split_whitespace()
                .map(String::from)
                .collect();
        assert_eq!(
            perplexity_flags(&args).join(" "),
            "-fa on -ctk q8_0 --no-mmap -ngl 99"
        );
    }

    #[test]
    fn coarse_kl_is_zero_for_equal_lists_and_grows_with_disagreement() {
        let p = vec![(1, 0.7f64.ln()), (2, 0.2f64.ln())];
        assert!(coarse_kl(&p, &p) < 1e-12);
        let close = vec![(1, 0.68f64.ln()), (2, 0.22f64.ln())];
        let far = vec![(3, 0.9f64.ln()), (1, 0.05f64.ln())];
        assert!(coarse_kl(&p, &close) > 0.0);
        assert!(coarse_kl(&p, &far) > 10.0 * coarse_kl(&p, &close));
    }

    #[test]
    fn estimate_counts_same_top() {
        let a = TopK {
            positions: vec![vec![(1, -0.1)], vec![(2, -0.1)]],
        };
        let b = TopK {
            positions: vec![vec![(1, -0.1)], vec![(3, -0.1)]],
        };
        assert_eq!(estimate(&a, &b).same_top_pct, 50.0);
    }

    #[test]
    fn cut_points_are_spread_and_bounded() {
        assert_eq!(cut_points(100, 20, 4), vec![20, 40, 60, 80]);
        assert!(cut_points(10, 20, 4).is_empty());
    }
}
