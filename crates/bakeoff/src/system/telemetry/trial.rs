//! A trial's telemetry as stored samples (issue 17 point 2): the metrics bench, load and tune
//! trials store under source "telemetry", and the "noisy" flag throttling earns.

use super::TelemetrySummary;
use crate::domain::units::Unit;

/// The stored source of every metric below.
pub const SOURCE: &str = "telemetry";

/// The shortest span an energy figure is given for. Energy counters tick coarsely (NVML's
/// total-energy counter on an H200 moved in steps: 25 ms pp512 trials read 0 J or a whole
/// step), so a trial shorter than this stores its joules and span but no per-token figure;
/// a cell adds its trials' joules, tokens and seconds up and divides once the sum is long enough.
pub const MIN_ENERGY_SPAN_S: f64 = 0.5;

/// `(metric, value, unit)` for each figure the summary has. `tokens` is what the trial made (the
/// prompt tokens of a pp trial, the generated tokens of a tg trial or a load step): it turns the
/// energy measured (GPU boards + CPU packages + DRAM, whichever this machine counts) into
/// `tokens_per_j` and `j_per_token`.
pub fn metrics(summary: &TelemetrySummary, tokens: Option<f64>) -> Vec<(&'static str, f64, Unit)> {
    let energy: Vec<f64> = [
        summary.energy_gpu_j,
        summary.energy_cpu_j,
        summary.energy_dram_j,
    ]
    .into_iter()
    .flatten()
    .collect();
    let total = (!energy.is_empty()).then(|| energy.iter().sum::<f64>());
    let long_enough = summary.seconds >= MIN_ENERGY_SPAN_S;
    let (j_per_token, tokens_per_j) = match (total, tokens) {
        (Some(j), Some(n)) if n > 0.0 && j > 0.0 && long_enough => (Some(j / n), Some(n / j)),
        _ => (None, None),
    };
    let span = total.map(|_| summary.seconds);
    let power_mean = summary
        .power_w_mean
        .filter(|_| long_enough || total.is_none());
    [
        ("energy_gpu_j", summary.energy_gpu_j, Unit::Joules),
        ("energy_cpu_j", summary.energy_cpu_j, Unit::Joules),
        ("energy_dram_j", summary.energy_dram_j, Unit::Joules),
        ("energy_span_s", span, Unit::Seconds),
        ("energy_tokens", total.and(tokens), Unit::Tokens),
        ("power_w_mean", power_mean, Unit::Watts),
        ("power_w_peak", summary.power_w_peak, Unit::Watts),
        ("vram_peak_bytes", summary.mem_used_peak_bytes, Unit::Bytes),
        ("j_per_token", j_per_token, Unit::JoulesPerToken),
        ("tokens_per_j", tokens_per_j, Unit::TokensPerJoule),
    ]
    .into_iter()
    .filter_map(|(metric, value, unit)| Some((metric, value?, unit)))
    .collect()
}

/// Each GPU's own figures, when the trial ran on two GPUs or more (one GPU's are the totals
/// already): `gpu1_power_w_mean`, `gpu1_power_w_peak`, `gpu1_vram_peak_bytes`, `gpu1_energy_j`,
/// named after NVML's device index (`amdgpu_card0_…` for amdgpu boards).
pub fn device_metrics(summary: &TelemetrySummary) -> Vec<(String, f64, Unit)> {
    let gpus: Vec<(String, &super::sampler::SourceSummary)> = (summary.sources.iter())
        .filter_map(|s| Some((device_name(&s.source)?, s)))
        .collect();
    if gpus.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, source) in gpus {
        for (metric, value, unit) in [
            ("power_w_mean", source.power_w_mean, Unit::Watts),
            ("power_w_peak", source.power_w_peak, Unit::Watts),
            ("vram_peak_bytes", source.mem_used_peak_bytes, Unit::Bytes),
            ("energy_j", source.energy_j, Unit::Joules),
        ] {
            if let Some(value) = value {
                out.push((format!("{name}_{metric}"), value, unit));
            }
        }
    }
    out
}

/// `nvml:1` → `gpu1`, `amdgpu:card0` → `amdgpu_card0`; other sources are no GPU.
pub fn device_name(source: &str) -> Option<String> {
    if let Some(index) = source.strip_prefix("nvml:") {
        return Some(format!("gpu{index}"));
    }
    source
        .strip_prefix("amdgpu:")
        .map(|card| format!("amdgpu_{card}"))
}

/// The peak resident memory of a process so far (`VmHWM` of `/proc/PID/status`), in bytes: what
/// an engine on the CPU really holds (weights it touched, KV cache, buffers).
pub fn rss_peak_bytes(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The trial's flag when the hardware throttled during it.
pub fn noisy_flag(summary: &TelemetrySummary) -> Option<String> {
    (!summary.throttle_reasons.is_empty()).then(|| {
        format!(
            "noisy: thermal/power throttling ({})",
            summary.throttle_reasons.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_only_for_figures_present() {
        let summary = TelemetrySummary {
            seconds: 1.0,
            energy_gpu_j: Some(30.0),
            energy_cpu_j: Some(10.0),
            power_w_peak: Some(300.0),
            ..TelemetrySummary::default()
        };
        let m = metrics(&summary, Some(400.0));
        let names: Vec<&str> = m.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(
            names,
            [
                "energy_gpu_j",
                "energy_cpu_j",
                "energy_span_s",
                "energy_tokens",
                "power_w_peak",
                "j_per_token",
                "tokens_per_j"
            ]
        );
        assert_eq!(m[5].1, 0.1);
        assert_eq!(m[6].1, 10.0);
        let names =
            |m: &[(&str, f64, Unit)]| m.iter().map(|(n, ..)| n.to_string()).collect::<Vec<_>>();
        assert!(!names(&metrics(&summary, Some(0.0))).contains(&"tokens_per_j".into()));
        // Shorter than the counter can be trusted over: the joules and span, no per-token figure.
        let short = TelemetrySummary {
            seconds: 0.02,
            power_w_mean: Some(600.0),
            ..summary.clone()
        };
        let m = names(&metrics(&short, Some(400.0)));
        assert!(m.contains(&"energy_gpu_j".into()) && m.contains(&"energy_span_s".into()));
        assert!(
            !m.contains(&"tokens_per_j".into()) && !m.contains(&"power_w_mean".into()),
            "{m:?}"
        );
        assert!(metrics(&TelemetrySummary::default(), Some(10.0)).is_empty());
    }

    #[test]
    fn each_gpu_of_a_multi_gpu_trial_keeps_its_own_figures() {
        let gpu = |source: &str, watts: f64, vram: f64| {
            let mut gpu = super::super::sampler::SourceSummary::default();
            gpu.source = source.into();
            gpu.power_w_mean = Some(watts);
            gpu.power_w_peak = Some(watts + 50.0);
            gpu.mem_used_peak_bytes = Some(vram);
            gpu
        };
        let mut summary = TelemetrySummary {
            sources: vec![
                gpu("nvml:0", 400.0, 4e10),
                gpu("nvml:1", 250.0, 3e10),
                gpu("cpu", 0.0, 0.0),
            ],
            ..Default::default()
        };
        let metrics = device_metrics(&summary);
        let find = |name: &str| {
            metrics
                .iter()
                .find(|(m, _, _)| m == name)
                .map(|(_, v, _)| *v)
        };
        assert_eq!(find("gpu0_power_w_mean"), Some(400.0));
        assert_eq!(find("gpu1_power_w_peak"), Some(300.0));
        assert_eq!(find("gpu1_vram_peak_bytes"), Some(3e10));
        assert!(
            metrics.iter().all(|(m, _, _)| !m.starts_with("cpu")),
            "{metrics:?}"
        );
        // One GPU: its figures are the trial's totals already.
        summary.sources.remove(1);
        assert!(device_metrics(&summary).is_empty());
    }

    #[test]
    fn a_live_process_has_a_peak_rss() {
        let own = rss_peak_bytes(std::process::id() as i32).unwrap();
        assert!(own > 1024.0 * 1024.0, "{own}");
        assert_eq!(rss_peak_bytes(i32::MAX), None);
    }

    #[test]
    fn throttling_flags_the_trial() {
        let mut summary = TelemetrySummary::default();
        assert_eq!(noisy_flag(&summary), None);
        summary.throttle_reasons = vec!["nvml:0 hw_thermal".into()];
        assert_eq!(
            noisy_flag(&summary).unwrap(),
            "noisy: thermal/power throttling (nvml:0 hw_thermal)"
        );
    }
}
