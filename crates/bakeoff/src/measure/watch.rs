//! What every trial watches beside its own figures, one helper for bench, load and tune: how much
//! CPU (and GPU) other processes used while it ran (noise), and what the machine did (telemetry,
//! issue 17): energy, power, peak memory and throttling, stored as the trial's samples.

use crate::domain::units::Unit;
use crate::measure::noise::{self, CpuSnapshot};
use crate::measure::sink::{TrialRow, TrialSink};
use crate::system::telemetry::smi::{self, GpuState};
use crate::system::telemetry::trial::MIN_ENERGY_SPAN_S;
use crate::system::telemetry::{self, sampler::Handle, Sampler, TelemetrySummary};
use crate::Result;
use serde::Serialize;

/// What to watch: telemetry (`None`: off, `--no-telemetry`), and whether to ask `nvidia-smi`
/// about other GPU processes and utilisation (a process start on each side of the trial).
#[derive(Clone, Debug, Default)]
pub struct WatchConfig {
    pub telemetry: Option<telemetry::Config>,
    pub gpu_processes: bool,
}

impl WatchConfig {
    /// Telemetry on (unless `off`), other GPU processes checked.
    pub fn new(telemetry_off: bool) -> Self {
        WatchConfig {
            telemetry: (!telemetry_off).then(telemetry::Config::from_env),
            gpu_processes: true,
        }
    }
}

/// A trial being watched; [`Watch::finish`] ends it.
pub struct Watch {
    pids: Vec<i32>,
    before: CpuSnapshot,
    foreign_gpu: Vec<(i32, String)>,
    gpu_before: Vec<GpuState>,
    gpu_processes: bool,
    telemetry: Option<Handle>,
}

/// What a watched trial saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// Cores other processes used on average.
    pub others_cores: f64,
    /// GPU utilisation (%) before and after, when `nvidia-smi` answers: the busiest GPU's.
    pub gpu_util: [Option<f64>; 2],
    /// Each GPU before and after (`nvidia-smi`), kept per device for multi-GPU trials.
    pub gpus: [Vec<GpuState>; 2],
    pub telemetry: Option<TelemetrySummary>,
    /// The engine's peak resident memory so far (`VmHWM`).
    pub rss_peak_bytes: Option<f64>,
    /// `noisy: …` reasons: busy neighbours, other GPU processes, throttling.
    pub flags: Vec<String>,
}

impl Watch {
    /// Start watching a trial of the engine processes `pids`.
    pub fn start(pids: &[i32], config: &WatchConfig) -> Watch {
        let (foreign_gpu, gpu_before) = match config.gpu_processes {
            true => (noise::foreign_gpu_processes(pids), smi::query()),
            false => (Vec::new(), Vec::new()),
        };
        Watch {
            pids: pids.to_vec(),
            before: CpuSnapshot::take(pids),
            foreign_gpu,
            gpu_before,
            gpu_processes: config.gpu_processes,
            telemetry: config.telemetry.as_ref().map(|c| Sampler::start(c, None)),
        }
    }

    /// Stop watching: the telemetry summary, the engine's peak memory and the noise flags.
    pub fn finish(self) -> Watched {
        let telemetry = self.telemetry.map(Handle::stop);
        let others_cores = self.before.others_cores(&CpuSnapshot::take(&self.pids));
        let gpu_after = match self.gpu_processes {
            true => smi::query(),
            false => Vec::new(),
        };
        let mut flags = Vec::new();
        if others_cores > noise::NOISY_CORES {
            flags.push(format!(
                "noisy: other processes used {others_cores:.2} cores"
            ));
        }
        if !self.foreign_gpu.is_empty() {
            let names: Vec<String> = (self.foreign_gpu.iter())
                .map(|(pid, name)| format!("{name} (pid {pid})"))
                .collect();
            flags.push(format!("noisy: other GPU processes: {}", names.join(", ")));
        }
        flags.extend(telemetry.as_ref().and_then(telemetry::trial::noisy_flag));
        Watched {
            others_cores,
            gpu_util: [busiest(&self.gpu_before), busiest(&gpu_after)],
            gpus: [self.gpu_before, gpu_after],
            telemetry,
            rss_peak_bytes: self
                .pids
                .iter()
                .filter_map(|pid| telemetry::trial::rss_peak_bytes(*pid))
                .reduce(|a, b| a + b),
            flags,
        }
    }
}

/// The busiest GPU's utilisation (what one figure per trial recorded before per-GPU samples).
fn busiest(gpus: &[GpuState]) -> Option<f64> {
    gpus.iter().filter_map(|g| g.util_pct).reduce(f64::max)
}

/// `gpu1_util_after_pct` and the like for each GPU, when there are two or more.
fn per_gpu_samples(gpus: &[Vec<GpuState>; 2]) -> Vec<(String, f64, Unit)> {
    let mut out = Vec::new();
    for (side, states) in ["before", "after"].iter().zip(gpus) {
        if states.len() < 2 {
            continue;
        }
        for gpu in states {
            let i = gpu.index;
            out.extend(
                gpu.util_pct
                    .map(|v| (format!("gpu{i}_util_{side}_pct"), v, Unit::Percent)),
            );
            if *side == "after" {
                let mem = gpu
                    .mem_used_bytes
                    .map(|v| (format!("gpu{i}_mem_used_after_bytes"), v, Unit::Bytes));
                out.extend(mem);
                out.extend(
                    gpu.power_w
                        .map(|v| (format!("gpu{i}_power_after_w"), v, Unit::Watts)),
                );
            }
        }
    }
    out
}

/// `GPU 0: 412 W mean, 39.4 GiB peak, 87 % busy` per GPU, from a stored trial's per-GPU samples
/// (empty for a trial on fewer than two GPUs): what `runs show` prints under the trial.
pub fn per_gpu_lines(samples: &[crate::measure::sink::SampleRow]) -> Vec<String> {
    let mut gpus: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    let figures = [
        ("power_w_mean", "W mean"),
        ("vram_peak_bytes", "peak"),
        ("mem_used_after_bytes", "in use after"),
        ("util_after_pct", "% busy at the end"),
    ];
    for sample in samples {
        let Some((index, figure)) = sample
            .metric
            .strip_prefix("gpu")
            .and_then(|m| m.split_once('_'))
        else {
            continue;
        };
        let (Ok(index), Some((_, label))) = (
            index.parse::<u32>(),
            figures.iter().find(|(f, _)| *f == figure),
        ) else {
            continue;
        };
        let value = match figure.ends_with("bytes") {
            true => crate::domain::units::human_bytes(sample.value as u64),
            false => format!("{:.0}", sample.value),
        };
        gpus.entry(index)
            .or_default()
            .push(format!("{value} {label}"));
    }
    gpus.into_iter()
        .map(|(index, parts)| format!("GPU {index}: {}", parts.join(", ")))
        .collect()
}

impl Watched {
    /// Store what was seen as the trial's samples: `system` (other processes' cores, GPU
    /// utilisation) and `telemetry` (energy, power, peak memory; per token of `tokens`).
    pub fn store(&self, sink: &dyn TrialSink, trial_id: i64, tokens: Option<f64>) -> Result<()> {
        let [before, after] = self.gpu_util;
        for (metric, value) in [
            ("gpu_util_before_pct", before),
            ("gpu_util_after_pct", after),
        ] {
            if let Some(value) = value {
                sink.sample(trial_id, metric, value, Unit::Percent, "system", 0)?;
            }
        }
        let others = self.others_cores;
        sink.sample(
            trial_id,
            "others_cpu_cores",
            others,
            Unit::Count,
            "system",
            0,
        )?;
        for (metric, value, unit) in per_gpu_samples(&self.gpus) {
            sink.sample(trial_id, &metric, value, unit, "system", 0)?;
        }
        let source = telemetry::trial::SOURCE;
        if let Some(rss) = self.rss_peak_bytes {
            sink.sample(trial_id, "rss_peak_bytes", rss, Unit::Bytes, source, 0)?;
        }
        if let Some(summary) = &self.telemetry {
            for (metric, value, unit) in telemetry::trial::metrics(summary, tokens) {
                sink.sample(trial_id, metric, value, unit, source, 0)?;
            }
            for (metric, value, unit) in telemetry::trial::device_metrics(summary) {
                sink.sample(trial_id, &metric, value, unit, source, 0)?;
            }
        }
        Ok(())
    }

    /// Tokens per joule of `tokens`, when an energy counter measured the trial.
    pub fn tokens_per_j(&self, tokens: f64) -> Option<f64> {
        let summary = self.telemetry.as_ref()?;
        telemetry::trial::metrics(summary, Some(tokens))
            .into_iter()
            .find(|(metric, _, _)| *metric == "tokens_per_j")
            .map(|(_, value, _)| value)
    }
}

/// A cell's telemetry: the joules, tokens and seconds of its trials added up (a short trial's
/// energy is too coarse alone: see [`MIN_ENERGY_SPAN_S`]), and the peak memory over them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Energy {
    pub joules: f64,
    /// Tokens the measured trials made (prompt tokens for pp, generated for tg and load).
    pub tokens: f64,
    pub seconds: f64,
    /// The engine process's peak resident memory (`VmHWM`).
    pub rss_peak_bytes: Option<f64>,
    /// The GPU memory in use at its peak (the whole device's, as NVML or amdgpu report it).
    pub vram_peak_bytes: Option<f64>,
    /// What the planner says the configuration needs (weights + KV + compute), filled in by
    /// the caller as the roofline is.
    pub plan_bytes: Option<f64>,
}

impl Energy {
    /// Add one trial's telemetry samples.
    pub fn add(&mut self, trial: &TrialRow) {
        let source = crate::system::telemetry::trial::SOURCE;
        let value = |metric: &str| {
            (trial.samples.iter())
                .find(|s| s.metric == metric && s.source == source)
                .map(|s| s.value)
        };
        let joules: f64 = ["energy_gpu_j", "energy_cpu_j", "energy_dram_j"]
            .iter()
            .filter_map(|m| value(m))
            .sum();
        if let (Some(seconds), Some(tokens)) = (value("energy_span_s"), value("energy_tokens")) {
            self.joules += joules;
            self.tokens += tokens;
            self.seconds += seconds;
        }
        let max = |old: Option<f64>, new: Option<f64>| match (old, new) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.rss_peak_bytes = max(self.rss_peak_bytes, value("rss_peak_bytes"));
        self.vram_peak_bytes = max(self.vram_peak_bytes, value("vram_peak_bytes"));
    }

    /// Whether the trials' energy spans add up to a figure worth giving.
    fn long_enough(&self) -> bool {
        self.seconds >= MIN_ENERGY_SPAN_S && self.joules > 0.0
    }

    /// Whether any trial of the cell had telemetry.
    pub fn measured(&self) -> bool {
        self.seconds > 0.0 || self.peak_bytes().is_some()
    }

    /// The peak memory to hold against the plan: the GPU's when one was measured (the weights
    /// and KV live there), else the engine process's resident peak.
    pub fn peak_bytes(&self) -> Option<f64> {
        self.vram_peak_bytes.or(self.rss_peak_bytes)
    }

    /// `412 MiB (+3.1 %)`: the peak, and how far it is from the plan, in MiB and per cent.
    pub fn peak_vs_plan(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let Some(peak) = self.peak_bytes() else {
            return "-".into();
        };
        match self.plan_bytes.filter(|p| *p > 0.0) {
            Some(plan) => format!(
                "{:.0} MiB ({:+.0} MiB, {:+.1} %)",
                peak / MIB,
                (peak - plan) / MIB,
                (peak / plan - 1.0) * 100.0
            ),
            None => format!("{:.0} MiB", peak / MIB),
        }
    }

    /// All the tokens over all the joules, when the trials measured long enough.
    pub fn tokens_per_j(&self) -> Option<f64> {
        self.long_enough().then(|| self.tokens / self.joules)
    }

    /// All the joules over all the seconds the counters ran.
    pub fn watts(&self) -> Option<f64> {
        self.long_enough().then(|| self.joules / self.seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_gpu_trial_keeps_each_gpus_utilisation_memory_and_power() {
        let states = smi::parse("0, 90, 40000, 610.5\n1, 55, 30000, [N/A]\n");
        let gpus = [states.clone(), states];
        assert_eq!(busiest(&gpus[0]), Some(90.0));
        let samples = per_gpu_samples(&gpus);
        let names: Vec<&str> = samples.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "gpu0_util_before_pct",
                "gpu1_util_before_pct",
                "gpu0_util_after_pct",
                "gpu0_mem_used_after_bytes",
                "gpu0_power_after_w",
                "gpu1_util_after_pct",
                "gpu1_mem_used_after_bytes",
            ]
        );
        let rows: Vec<crate::measure::sink::SampleRow> = samples
            .iter()
            .map(|(metric, value, unit)| crate::measure::sink::SampleRow {
                metric: metric.clone(),
                value: *value,
                unit: unit.as_str().to_string(),
                source: "system".into(),
                seq: 0,
            })
            .collect();
        assert_eq!(
            per_gpu_lines(&rows),
            [
                "GPU 0: 90 % busy at the end, 39.06 GiB in use after",
                "GPU 1: 55 % busy at the end, 29.30 GiB in use after"
            ]
        );
        // One GPU: the trial's own figures say it all; nothing per device.
        let one = [smi::parse("0, 90, 40000, 610.5"), Vec::new()];
        assert!(per_gpu_samples(&one).is_empty());
    }
}
