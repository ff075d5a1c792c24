//! AMD GPUs through amdgpu's sysfs: `/sys/class/drm/cardN/device/` (VRAM and GTT in use) and its
//! `hwmon/hwmonM/` (power in µW, energy in µJ where the board offers it, temperatures in m°C,
//! clocks in Hz).

use super::{
    entries, read_number, read_text, under, Counter, EnergyKind, Metric, Reading, Source, Throttle,
};
use std::path::{Path, PathBuf};

struct Card {
    source: String,
    device: PathBuf,
    hwmon: Option<PathBuf>,
}

pub struct Amdgpu {
    cards: Vec<Card>,
}

impl Amdgpu {
    /// The amdgpu cards under `root`, or why there are none.
    pub fn probe(root: &Path) -> Result<Amdgpu, String> {
        let drm = under(root, "/sys/class/drm");
        let cards: Vec<Card> = entries(&drm, "card")
            .into_iter()
            .filter(|c| {
                !c.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .contains('-')
            })
            .filter_map(|c| card(&c))
            .collect();
        if cards.is_empty() {
            return Err(format!("no amdgpu card under {}", drm.display()));
        }
        Ok(Amdgpu { cards })
    }
}

/// A card whose driver is amdgpu (its hwmon says so, or it has amdgpu's VRAM file).
fn card(dir: &Path) -> Option<Card> {
    let device = dir.join("device");
    let hwmon = entries(&device.join("hwmon"), "hwmon")
        .into_iter()
        .find(|h| read_text(&h.join("name")).is_ok_and(|n| n == "amdgpu"));
    if hwmon.is_none() && !device.join("mem_info_vram_used").exists() {
        return None;
    }
    let name = dir.file_name()?.to_string_lossy().to_string();
    Some(Card {
        source: format!("amdgpu:{name}"),
        device,
        hwmon,
    })
}

impl Card {
    fn readings(&self) -> Vec<Reading> {
        let mut out = Vec::new();
        let mut push = |name: String, metric, value| {
            out.push(Reading {
                source: self.source.clone(),
                name,
                metric,
                value,
            })
        };
        for (file, name) in [("mem_info_vram_used", "vram"), ("mem_info_gtt_used", "gtt")] {
            if let Ok(bytes) = read_number(&self.device.join(file)) {
                push(name.into(), Metric::MemUsedBytes, bytes);
            }
        }
        let Some(hwmon) = &self.hwmon else { return out };
        let power = read_number(&hwmon.join("power1_average"))
            .or_else(|_| read_number(&hwmon.join("power1_input")));
        if let Ok(uw) = power {
            push("power".into(), Metric::PowerW, uw / 1e6);
        }
        for (prefix, metric, scale) in [
            ("temp", Metric::TempC, 1e3),
            ("freq", Metric::ClockMhz, 1e6),
        ] {
            for input in entries(hwmon, prefix).into_iter().filter(|p| is_input(p)) {
                let Ok(value) = read_number(&input) else {
                    continue;
                };
                push(label(&input, prefix), metric, value / scale);
            }
        }
        out
    }
}

fn is_input(path: &Path) -> bool {
    path.to_string_lossy().ends_with("_input")
}

/// `temp:edge` from `temp1_input` and its `temp1_label`; `temp:1` without a label.
fn label(input: &Path, prefix: &str) -> String {
    let file = input
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let stem = file.trim_end_matches("_input");
    let label = read_text(&input.with_file_name(format!("{stem}_label")))
        .unwrap_or_else(|_| stem.trim_start_matches(prefix).to_string());
    format!("{prefix}:{}", label.to_lowercase())
}

impl Source for Amdgpu {
    fn read(&mut self) -> (Vec<Reading>, Vec<Throttle>) {
        (
            self.cards.iter().flat_map(Card::readings).collect(),
            Vec::new(),
        )
    }

    fn counters(&mut self) -> Vec<Counter> {
        self.cards
            .iter()
            .filter_map(|c| {
                let uj = read_number(&c.hwmon.as_ref()?.join("energy1_input")).ok()?;
                Some(Counter {
                    source: c.source.clone(),
                    kind: EnergyKind::Gpu,
                    joules: uj / 1e6,
                    wrap_j: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fixture(root: &Path) -> PathBuf {
        let device = root.join("sys/class/drm/card1/device");
        let hwmon = device.join("hwmon/hwmon3");
        fs::create_dir_all(&hwmon).unwrap();
        fs::create_dir_all(root.join("sys/class/drm/card1-DP-1")).unwrap();
        fs::write(hwmon.join("name"), "amdgpu\n").unwrap();
        fs::write(hwmon.join("power1_average"), "45000000\n").unwrap();
        fs::write(hwmon.join("temp1_input"), "61000\n").unwrap();
        fs::write(hwmon.join("temp1_label"), "edge\n").unwrap();
        fs::write(hwmon.join("freq1_input"), "2100000000\n").unwrap();
        fs::write(hwmon.join("freq1_label"), "sclk\n").unwrap();
        fs::write(device.join("mem_info_vram_used"), "1073741824\n").unwrap();
        hwmon
    }

    #[test]
    fn reads_power_temp_clock_vram() {
        let root = tempfile::tempdir().unwrap();
        fixture(root.path());
        let mut gpu = Amdgpu::probe(root.path()).unwrap();
        let (readings, _) = gpu.read();
        let get = |n: &str| readings.iter().find(|r| r.name == n).map(|r| r.value);
        assert_eq!(get("power"), Some(45.0));
        assert_eq!(get("temp:edge"), Some(61.0));
        assert_eq!(get("freq:sclk"), Some(2100.0));
        assert_eq!(get("vram"), Some(1073741824.0));
        assert_eq!(get("gtt"), None, "missing file: no reading");
        assert!(gpu.counters().is_empty(), "no energy1_input: no counter");
    }

    #[test]
    fn energy_counter_when_offered() {
        let root = tempfile::tempdir().unwrap();
        let hwmon = fixture(root.path());
        fs::write(hwmon.join("energy1_input"), "3000000\n").unwrap();
        let counters = Amdgpu::probe(root.path()).unwrap().counters();
        assert_eq!(counters[0].joules, 3.0);
        assert_eq!(counters[0].kind, EnergyKind::Gpu);
    }

    #[test]
    fn no_card_is_not_available() {
        let root = tempfile::tempdir().unwrap();
        assert!(Amdgpu::probe(root.path())
            .err()
            .unwrap()
            .contains("no amdgpu card"));
    }
}
