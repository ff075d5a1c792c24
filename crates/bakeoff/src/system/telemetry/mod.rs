//! Power, energy, clocks, temperatures and memory while something runs (issue 17): one reader per
//! source (RAPL, amdgpu hwmon, cpufreq/thermal, NVML), each rooted at a path so tests can point
//! it at a fixture tree, and a [`sampler::Sampler`] that polls them on its own thread. A source
//! this machine lacks is reported as "not available: why", never as an error.

pub mod cpu;
pub mod hwmon;
pub mod nvml;
pub mod rapl;
pub mod sampler;
pub mod smi;
pub mod trial;

pub use sampler::{Config, Sampler, TelemetrySummary};

use serde::Serialize;
use std::path::Path;

/// What a reading measures; decides how the summary folds it (mean/peak, min/max, max).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    PowerW,
    TempC,
    ClockMhz,
    MemUsedBytes,
    /// Cumulative energy since the sampler started.
    EnergyJ,
}

/// One instantaneous value of one source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    /// `rapl:package-0`, `amdgpu:card0`, `nvml:0`, `cpu`.
    pub source: String,
    /// What within the source: `power`, `temp:edge`, `clock:sm`, `vram`.
    pub name: String,
    pub metric: Metric,
    pub value: f64,
}

/// Which total an energy counter adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyKind {
    Gpu,
    CpuPackage,
    Dram,
    /// RAPL core/uncore/psys zones: inside the package figure, not added again.
    Other,
}

/// A monotonic energy counter read at one instant; `wrap_j` is where it rolls over (RAPL).
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    pub source: String,
    pub kind: EnergyKind,
    pub joules: f64,
    pub wrap_j: Option<f64>,
}

/// Joules between two reads of one counter, across one roll-over at `wrap_j`.
pub fn counter_delta(before: f64, after: f64, wrap_j: Option<f64>) -> f64 {
    match wrap_j {
        Some(wrap) if after < before => wrap - before + after,
        _ => (after - before).max(0.0),
    }
}

/// A source this machine does not offer, with why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unavailable {
    pub source: String,
    pub reason: String,
}

/// What every reader offers the sampler.
pub trait Source {
    /// Instantaneous readings (power, temperature, clocks, memory); throttle reasons seen now.
    fn read(&mut self) -> (Vec<Reading>, Vec<Throttle>);
    /// The energy counters, read now.
    fn counters(&mut self) -> Vec<Counter>;
}

/// A throttling reason a source reported at one sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Throttle {
    pub source: String,
    pub reason: String,
}

/// A sysfs file's trimmed text, or why not (`path: Permission denied`).
fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A sysfs file holding one number.
fn read_number(path: &Path) -> Result<f64, String> {
    let text = read_text(path)?;
    text.parse::<f64>()
        .map_err(|_| format!("{}: '{text}' is not a number", path.display()))
}

/// Entries of `dir` whose file name starts with `prefix`, sorted; none when `dir` is missing.
fn entries(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// `root` joined with an absolute sysfs path.
fn under(root: &Path, absolute: &str) -> std::path::PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_delta_crosses_one_wrap() {
        assert_eq!(counter_delta(10.0, 15.0, Some(100.0)), 5.0);
        assert_eq!(counter_delta(95.0, 3.0, Some(100.0)), 8.0);
        assert_eq!(counter_delta(95.0, 3.0, None), 0.0);
    }
}
