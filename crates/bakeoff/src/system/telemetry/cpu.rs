//! CPU clocks (`cpufreq/scaling_cur_freq`, kHz) and thermal zones (`thermal_zoneN/temp`, m°C,
//! named by `type`): throttling on a laptop or a hot box shows here first.

use super::{entries, read_number, read_text, under, Counter, Metric, Reading, Source, Throttle};
use std::path::{Path, PathBuf};

pub struct Cpu {
    freqs: Vec<PathBuf>,
    zones: Vec<(String, PathBuf)>,
}

impl Cpu {
    /// The readable clock and thermal files under `root`, or why there are none.
    pub fn probe(root: &Path) -> Result<Cpu, String> {
        let freqs: Vec<PathBuf> = entries(&under(root, "/sys/devices/system/cpu"), "cpu")
            .into_iter()
            .map(|c| c.join("cpufreq/scaling_cur_freq"))
            .filter(|f| read_number(f).is_ok())
            .collect();
        let zones: Vec<(String, PathBuf)> =
            entries(&under(root, "/sys/class/thermal"), "thermal_zone")
                .into_iter()
                .filter(|z| read_number(&z.join("temp")).is_ok())
                .map(|z| {
                    let kind = read_text(&z.join("type")).unwrap_or_else(|_| "zone".into());
                    (kind, z.join("temp"))
                })
                .collect();
        if freqs.is_empty() && zones.is_empty() {
            return Err("no readable cpufreq scaling_cur_freq or thermal_zone temp".into());
        }
        Ok(Cpu { freqs, zones })
    }
}

impl Source for Cpu {
    fn read(&mut self) -> (Vec<Reading>, Vec<Throttle>) {
        let reading = |name: String, metric, value| Reading {
            source: "cpu".into(),
            name,
            metric,
            value,
        };
        let khz: Vec<f64> = self
            .freqs
            .iter()
            .filter_map(|f| read_number(f).ok())
            .collect();
        let mut out = Vec::new();
        if !khz.is_empty() {
            let min = khz.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = khz.iter().cloned().fold(0.0, f64::max);
            out.push(reading("clock:min".into(), Metric::ClockMhz, min / 1e3));
            out.push(reading("clock:max".into(), Metric::ClockMhz, max / 1e3));
        }
        for (kind, temp) in &self.zones {
            if let Ok(mc) = read_number(temp) {
                out.push(reading(format!("temp:{kind}"), Metric::TempC, mc / 1e3));
            }
        }
        (out, Vec::new())
    }

    fn counters(&mut self) -> Vec<Counter> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn clocks_and_zones() {
        let root = tempfile::tempdir().unwrap();
        for (cpu, khz) in [("cpu0", "1200000"), ("cpu1", "3400000")] {
            let dir = root
                .path()
                .join("sys/devices/system/cpu")
                .join(cpu)
                .join("cpufreq");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("scaling_cur_freq"), khz).unwrap();
        }
        fs::create_dir_all(root.path().join("sys/devices/system/cpu/cpufreq")).unwrap();
        let zone = root.path().join("sys/class/thermal/thermal_zone0");
        fs::create_dir_all(&zone).unwrap();
        fs::write(zone.join("temp"), "55500\n").unwrap();
        fs::write(zone.join("type"), "x86_pkg_temp\n").unwrap();
        let (readings, _) = Cpu::probe(root.path()).unwrap().read();
        let get = |n: &str| readings.iter().find(|r| r.name == n).map(|r| r.value);
        assert_eq!(get("clock:min"), Some(1200.0));
        assert_eq!(get("clock:max"), Some(3400.0));
        assert_eq!(get("temp:x86_pkg_temp"), Some(55.5));
    }

    #[test]
    fn nothing_readable_is_not_available() {
        let root = tempfile::tempdir().unwrap();
        assert!(Cpu::probe(root.path()).is_err());
    }
}
