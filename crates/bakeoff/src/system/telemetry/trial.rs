//! A trial's telemetry as stored samples (issue 17 point 2, groundwork): the metrics bench and
//! tune trials will store under source "telemetry", and the "noisy" flag throttling earns.

use super::TelemetrySummary;

/// The stored source of every metric below.
pub const SOURCE: &str = "telemetry";

/// `(metric, value, unit)` for each figure the summary has; `tokens` (generated and prompt tokens
/// of the trial) gives `j_per_token` over all the energy measured.
pub fn metrics(
    summary: &TelemetrySummary,
    tokens: Option<f64>,
) -> Vec<(&'static str, f64, &'static str)> {
    let energy: Vec<f64> = [
        summary.energy_gpu_j,
        summary.energy_cpu_j,
        summary.energy_dram_j,
    ]
    .into_iter()
    .flatten()
    .collect();
    let total = (!energy.is_empty()).then(|| energy.iter().sum::<f64>());
    let j_per_token = match (total, tokens) {
        (Some(j), Some(n)) if n > 0.0 => Some(j / n),
        _ => None,
    };
    [
        ("energy_gpu_j", summary.energy_gpu_j, "J"),
        ("energy_cpu_j", summary.energy_cpu_j, "J"),
        ("energy_dram_j", summary.energy_dram_j, "J"),
        ("power_w_mean", summary.power_w_mean, "W"),
        ("power_w_peak", summary.power_w_peak, "W"),
        ("mem_used_peak_bytes", summary.mem_used_peak_bytes, "bytes"),
        ("j_per_token", j_per_token, "J/token"),
    ]
    .into_iter()
    .filter_map(|(metric, value, unit)| Some((metric, value?, unit)))
    .collect()
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
                "power_w_peak",
                "j_per_token"
            ]
        );
        assert_eq!(m[3].1, 0.1);
        assert!(metrics(&TelemetrySummary::default(), Some(10.0)).is_empty());
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
