//! The sampler: every source polled on its own thread at a stated interval, energy counters read
//! at start and at stop (and at each sample, to cross RAPL roll-overs), so the energy figure does
//! not depend on the rate; the rest folds into a [`TelemetrySummary`].

use super::cpu::Cpu;
use super::hwmon::Amdgpu;
use super::nvml::Nvml;
use super::rapl::Rapl;
use super::{counter_delta, Counter, EnergyKind, Metric, Reading, Source, Throttle, Unavailable};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The default interval: fine enough for a peak, light enough not to perturb a benchmark.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct Config {
    /// Where sysfs is read from: `/`, or a fixture tree in tests.
    pub root: PathBuf,
    pub interval: Duration,
    /// Whether to load NVML (off for fixture trees: it reads the real machine).
    pub nvml: bool,
}

impl Config {
    /// The default, or the fixture tree `$BAKEOFF_TELEMETRY_ROOT` names (NVML off then: it would
    /// read the real machine). Tests use it to give a machine without counters a RAPL tree.
    pub fn from_env() -> Self {
        match std::env::var_os("BAKEOFF_TELEMETRY_ROOT") {
            Some(root) if !root.is_empty() => Config {
                root: PathBuf::from(root),
                nvml: false,
                ..Config::default()
            },
            _ => Config::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/"),
            interval: DEFAULT_INTERVAL,
            nvml: true,
        }
    }
}

/// Every source's readings at one instant, `t_s` seconds after start.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub readings: Vec<Reading>,
    pub throttle: Vec<Throttle>,
}

/// One source over the sampled span.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub energy_j: Option<f64>,
    pub power_w_mean: Option<f64>,
    pub power_w_peak: Option<f64>,
    pub mem_used_peak_bytes: Option<f64>,
    pub clock_mhz_min: Option<f64>,
    pub clock_mhz_max: Option<f64>,
    pub temp_c_max: Option<f64>,
    pub throttle_reasons: Vec<String>,
    #[serde(skip)]
    power_sum: f64,
    #[serde(skip)]
    power_n: usize,
}

/// What the sampled span cost and how the hardware behaved; totals over the sources that add up
/// (GPU boards, CPU packages, DRAM; RAPL core/uncore sit inside the package figure).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TelemetrySummary {
    pub seconds: f64,
    pub interval_ms: u64,
    pub samples: usize,
    pub energy_gpu_j: Option<f64>,
    pub energy_cpu_j: Option<f64>,
    pub energy_dram_j: Option<f64>,
    pub power_w_mean: Option<f64>,
    pub power_w_peak: Option<f64>,
    pub mem_used_peak_bytes: Option<f64>,
    /// `source reason`, each once.
    pub throttle_reasons: Vec<String>,
    pub sources: Vec<SourceSummary>,
    pub unavailable: Vec<Unavailable>,
}

/// The sampler's state, moved into its thread and back.
struct State {
    sources: Vec<Box<dyn Source + Send>>,
    unavailable: Vec<Unavailable>,
    started: Instant,
    last_at: Instant,
    last: BTreeMap<String, Counter>,
    energy: BTreeMap<String, (EnergyKind, f64)>,
    per_source: BTreeMap<String, SourceSummary>,
    samples: usize,
    power_w_peak: Option<f64>,
    rows: Option<mpsc::Sender<Sample>>,
}

// SAFETY: NVML is documented thread-safe; its handles may be used from the sampler thread.
unsafe impl Send for Nvml {}

pub struct Sampler;

/// A running sampler; [`Handle::stop`] ends it and returns the summary.
pub struct Handle {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<State>,
    interval: Duration,
}

impl Sampler {
    /// Probe the sources, take the first sample now (so the energy span starts here), and keep
    /// sampling on a thread; each sample also goes to `rows` when given.
    pub fn start(config: &Config, rows: Option<mpsc::Sender<Sample>>) -> Handle {
        let mut state = probe(config, rows);
        state.sample();
        let (stop, stopped) = mpsc::channel();
        let interval = config.interval;
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                state.sample();
            }
            state
        });
        Handle {
            stop,
            thread,
            interval,
        }
    }
}

impl Handle {
    /// Stop sampling, take the closing sample (energy read at stop) and fold the summary.
    pub fn stop(self) -> TelemetrySummary {
        let _ = self.stop.send(());
        match self.thread.join() {
            Ok(mut state) => {
                state.sample();
                state.summary(self.interval)
            }
            Err(_) => TelemetrySummary {
                unavailable: vec![Unavailable {
                    source: "sampler".into(),
                    reason: "the sampler thread panicked".into(),
                }],
                ..TelemetrySummary::default()
            },
        }
    }
}

/// The energy counters this machine offers (`rapl:package-0`, `nvml:0`), or why there is none:
/// each source's reason, in one line.
pub fn energy_sources(config: &Config) -> Result<Vec<String>, String> {
    let summary = Sampler::start(config, None).stop();
    let found: Vec<String> = (summary.sources.iter())
        .filter(|s| s.energy_j.is_some())
        .map(|s| s.source.clone())
        .collect();
    if !found.is_empty() {
        return Ok(found);
    }
    let why: Vec<String> = (summary.unavailable.iter())
        .map(|u| format!("{}: {}", u.source, u.reason))
        .collect();
    Err(match why.is_empty() {
        true => "the sources found count no energy".into(),
        false => why.join("; "),
    })
}

/// Every source this machine offers, and why the others are not available.
fn probe(config: &Config, rows: Option<mpsc::Sender<Sample>>) -> State {
    let mut sources: Vec<Box<dyn Source + Send>> = Vec::new();
    let mut unavailable = Vec::new();
    let mut add = |name: &str, found: Result<Box<dyn Source + Send>, String>| match found {
        Ok(source) => sources.push(source),
        Err(reason) => unavailable.push(Unavailable {
            source: name.into(),
            reason,
        }),
    };
    let root = &config.root;
    add("rapl", Rapl::probe(root).map(|s| Box::new(s) as _));
    add("amdgpu", Amdgpu::probe(root).map(|s| Box::new(s) as _));
    add("cpu", Cpu::probe(root).map(|s| Box::new(s) as _));
    if config.nvml {
        add("nvml", Nvml::probe().map(|s| Box::new(s) as _));
    } else {
        add("nvml", Err("off (fixture root)".into()));
    }
    let now = Instant::now();
    State {
        sources,
        unavailable,
        started: now,
        last_at: now,
        last: BTreeMap::new(),
        energy: BTreeMap::new(),
        per_source: BTreeMap::new(),
        samples: 0,
        power_w_peak: None,
        rows,
    }
}

impl State {
    /// Read every source once, fold it, and pass the row on.
    fn sample(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64();
        self.last_at = now;
        let mut readings = Vec::new();
        let mut throttle = Vec::new();
        let mut counters = Vec::new();
        for source in &mut self.sources {
            let (r, t) = source.read();
            readings.extend(r);
            throttle.extend(t);
            counters.extend(source.counters());
        }
        readings.extend(self.fold_counters(counters, dt, &readings));
        self.fold(&readings, &throttle);
        self.samples += 1;
        let row = Sample {
            t_s: now.duration_since(self.started).as_secs_f64(),
            readings,
            throttle,
        };
        if let Some(rows) = &self.rows {
            let _ = rows.send(row);
        }
    }

    /// Energy since the last read added to each counter's total; a counter's cumulative energy,
    /// and its power over the step for sources that report no power of their own (RAPL).
    fn fold_counters(
        &mut self,
        counters: Vec<Counter>,
        dt: f64,
        readings: &[Reading],
    ) -> Vec<Reading> {
        let mut out = Vec::new();
        for counter in counters {
            let delta = self
                .last
                .get(&counter.source)
                .map(|before| counter_delta(before.joules, counter.joules, counter.wrap_j));
            let total = self
                .energy
                .entry(counter.source.clone())
                .or_insert((counter.kind, 0.0));
            total.1 += delta.unwrap_or(0.0);
            let reading = |name: &str, metric, value| Reading {
                source: counter.source.clone(),
                name: name.into(),
                metric,
                value,
            };
            out.push(reading("energy", Metric::EnergyJ, total.1));
            let has_power = readings
                .iter()
                .any(|r| r.source == counter.source && r.metric == Metric::PowerW);
            if let (Some(delta), false) = (delta, has_power) {
                if dt > 0.0 {
                    out.push(reading("power", Metric::PowerW, delta / dt));
                }
            }
            self.last.insert(counter.source.clone(), counter);
        }
        out
    }

    /// Readings into the per-source summaries; the sample's summed power into the peak.
    fn fold(&mut self, readings: &[Reading], throttle: &[Throttle]) {
        let mut power_now = None;
        for r in readings {
            let s = self
                .per_source
                .entry(r.source.clone())
                .or_insert_with(|| SourceSummary {
                    source: r.source.clone(),
                    ..SourceSummary::default()
                });
            let max = |old: Option<f64>| Some(old.map_or(r.value, |o: f64| o.max(r.value)));
            match r.metric {
                Metric::PowerW => {
                    s.power_sum += r.value;
                    s.power_n += 1;
                    s.power_w_peak = max(s.power_w_peak);
                    if self
                        .energy
                        .get(&r.source)
                        .is_none_or(|(k, _)| *k != EnergyKind::Other)
                    {
                        power_now = Some(power_now.unwrap_or(0.0) + r.value);
                    }
                }
                Metric::TempC => s.temp_c_max = max(s.temp_c_max),
                Metric::ClockMhz => {
                    s.clock_mhz_max = max(s.clock_mhz_max);
                    s.clock_mhz_min = Some(s.clock_mhz_min.map_or(r.value, |o| o.min(r.value)));
                }
                Metric::MemUsedBytes if r.name == "vram" => {
                    s.mem_used_peak_bytes = max(s.mem_used_peak_bytes)
                }
                Metric::MemUsedBytes | Metric::EnergyJ => {}
            }
        }
        if let Some(now) = power_now {
            self.power_w_peak = Some(self.power_w_peak.map_or(now, |p| p.max(now)));
        }
        for t in throttle {
            if let Some(s) = self.per_source.get_mut(&t.source) {
                if !s.throttle_reasons.contains(&t.reason) {
                    s.throttle_reasons.push(t.reason.clone());
                }
            }
        }
    }

    fn summary(self, interval: Duration) -> TelemetrySummary {
        let seconds = self.last_at.duration_since(self.started).as_secs_f64();
        let kind_total = |kind| {
            let joules: Vec<f64> = self
                .energy
                .values()
                .filter(|(k, _)| *k == kind)
                .map(|(_, j)| *j)
                .collect();
            (!joules.is_empty()).then(|| joules.iter().sum::<f64>())
        };
        let mut sources: Vec<SourceSummary> = self.per_source.into_values().collect();
        for s in &mut sources {
            s.energy_j = self.energy.get(&s.source).map(|(_, j)| *j);
            s.power_w_mean = match s.energy_j {
                Some(j) if seconds > 0.0 => Some(j / seconds),
                _ => (s.power_n > 0).then(|| s.power_sum / s.power_n as f64),
            };
        }
        let adds_up = |s: &&SourceSummary| {
            self.energy
                .get(&s.source)
                .is_none_or(|(k, _)| *k != EnergyKind::Other)
        };
        let means: Vec<f64> = sources
            .iter()
            .filter(adds_up)
            .filter_map(|s| s.power_w_mean)
            .collect();
        let peaks: Vec<f64> = sources
            .iter()
            .filter_map(|s| s.mem_used_peak_bytes)
            .collect();
        let throttle_reasons: BTreeSet<String> = sources
            .iter()
            .flat_map(|s| {
                s.throttle_reasons
                    .iter()
                    .map(move |r| format!("{} {r}", s.source))
            })
            .collect();
        TelemetrySummary {
            seconds,
            interval_ms: interval.as_millis() as u64,
            samples: self.samples,
            energy_gpu_j: kind_total(EnergyKind::Gpu),
            energy_cpu_j: kind_total(EnergyKind::CpuPackage),
            energy_dram_j: kind_total(EnergyKind::Dram),
            power_w_mean: (!means.is_empty()).then(|| means.iter().sum()),
            power_w_peak: self.power_w_peak,
            mem_used_peak_bytes: peaks.into_iter().reduce(f64::max),
            throttle_reasons: throttle_reasons.into_iter().collect(),
            sources,
            unavailable: self.unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn config(root: &Path) -> Config {
        Config {
            root: root.to_path_buf(),
            interval: Duration::from_millis(20),
            nvml: false,
        }
    }

    fn package(root: &Path) -> PathBuf {
        let dir = root.join("sys/class/powercap/intel-rapl:0");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), "package-0").unwrap();
        fs::write(dir.join("max_energy_range_uj"), "262143328850").unwrap();
        dir.join("energy_uj")
    }

    #[test]
    fn energy_is_stop_minus_start_across_a_wrap() {
        let root = tempfile::tempdir().unwrap();
        let energy = package(root.path());
        fs::write(&energy, "262143000000").unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = Sampler::start(&config(root.path()), Some(tx));
        fs::write(&energy, "1671150").unwrap();
        let summary = handle.stop();
        let expected = (262_143_328_850.0 - 262_143_000_000.0 + 1_671_150.0) / 1e6;
        let got = summary.energy_cpu_j.unwrap();
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
        assert_eq!(summary.energy_gpu_j, None);
        assert!(summary.samples >= 2);
        assert_eq!(rx.iter().count(), summary.samples, "one row per sample");
        let names: Vec<&str> = summary
            .unavailable
            .iter()
            .map(|u| u.source.as_str())
            .collect();
        assert_eq!(names, ["amdgpu", "cpu", "nvml"]);
    }

    #[test]
    fn gpu_power_peak_and_memory() {
        let root = tempfile::tempdir().unwrap();
        let hwmon = root.path().join("sys/class/drm/card0/device/hwmon/hwmon0");
        fs::create_dir_all(&hwmon).unwrap();
        fs::write(hwmon.join("name"), "amdgpu").unwrap();
        fs::write(hwmon.join("power1_input"), "30000000").unwrap();
        let vram = root
            .path()
            .join("sys/class/drm/card0/device/mem_info_vram_used");
        fs::write(&vram, "100").unwrap();
        let handle = Sampler::start(&config(root.path()), None);
        fs::write(hwmon.join("power1_input"), "90000000").unwrap();
        fs::write(&vram, "500").unwrap();
        let summary = handle.stop();
        assert_eq!(summary.power_w_peak, Some(90.0));
        assert_eq!(summary.mem_used_peak_bytes, Some(500.0));
        let gpu = &summary.sources[0];
        assert_eq!(gpu.source, "amdgpu:card0");
        assert!(gpu.power_w_mean.unwrap() > 30.0 && gpu.power_w_mean.unwrap() < 90.0);
    }

    #[test]
    fn bare_machine_names_every_source() {
        let root = tempfile::tempdir().unwrap();
        let summary = Sampler::start(&config(root.path()), None).stop();
        assert_eq!(summary.unavailable.len(), 4);
        assert!(summary.unavailable.iter().all(|u| !u.reason.is_empty()));
        assert_eq!(summary.power_w_mean, None);
    }
}
