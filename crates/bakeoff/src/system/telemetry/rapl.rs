//! Intel/AMD RAPL energy through powercap: `/sys/class/powercap/intel-rapl:N` (package) and its
//! `intel-rapl:N:M` subzones (dram, core, uncore). `energy_uj` is root-only on kernels since the
//! PLATYPUS fix, so EACCES is the common answer and is said as such.

use super::{
    entries, read_number, read_text, under, Counter, EnergyKind, Reading, Source, Throttle,
};
use std::path::{Path, PathBuf};

struct Zone {
    source: String,
    kind: EnergyKind,
    energy: PathBuf,
    wrap_j: Option<f64>,
}

pub struct Rapl {
    zones: Vec<Zone>,
}

impl Rapl {
    /// The readable zones under `root`, or why there are none.
    pub fn probe(root: &Path) -> Result<Rapl, String> {
        let base = under(root, "/sys/class/powercap");
        let dirs = entries(&base, "intel-rapl:");
        if dirs.is_empty() {
            return Err(format!("no {}/intel-rapl:* zones", base.display()));
        }
        let mut zones = Vec::new();
        let mut why = Vec::new();
        for dir in dirs {
            match zone(&dir) {
                Ok(z) => zones.push(z),
                Err(e) => why.push(e),
            }
        }
        if zones.is_empty() {
            let first = why.into_iter().next().unwrap_or_default();
            return Err(format!(
                "{first} (energy_uj is root-only on recent kernels)"
            ));
        }
        Ok(Rapl { zones })
    }
}

/// One zone, if its counter reads.
fn zone(dir: &Path) -> Result<Zone, String> {
    let name = read_text(&dir.join("name")).unwrap_or_else(|_| "zone".into());
    let energy = dir.join("energy_uj");
    read_number(&energy)?;
    let wrap_j = read_number(&dir.join("max_energy_range_uj"))
        .ok()
        .map(|uj| uj / 1e6);
    let kind = match name.as_str() {
        n if n.starts_with("package") => EnergyKind::CpuPackage,
        "dram" => EnergyKind::Dram,
        _ => EnergyKind::Other,
    };
    let id = dir
        .file_name()
        .map(|f| {
            f.to_string_lossy()
                .trim_start_matches("intel-rapl:")
                .to_string()
        })
        .unwrap_or_default();
    Ok(Zone {
        source: format!("rapl:{name}:{id}"),
        kind,
        energy,
        wrap_j,
    })
}

impl Source for Rapl {
    fn read(&mut self) -> (Vec<Reading>, Vec<Throttle>) {
        (Vec::new(), Vec::new())
    }

    fn counters(&mut self) -> Vec<Counter> {
        self.zones
            .iter()
            .filter_map(|z| {
                Some(Counter {
                    source: z.source.clone(),
                    kind: z.kind,
                    joules: read_number(&z.energy).ok()? / 1e6,
                    wrap_j: z.wrap_j,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn zone_at(root: &Path, id: &str, name: &str, uj: u64) -> PathBuf {
        let dir = root
            .join("sys/class/powercap")
            .join(format!("intel-rapl:{id}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("energy_uj"), format!("{uj}\n")).unwrap();
        fs::write(dir.join("max_energy_range_uj"), "1000000\n").unwrap();
        dir
    }

    #[test]
    fn package_and_dram_counters_in_joules() {
        let root = tempfile::tempdir().unwrap();
        zone_at(root.path(), "0", "package-0", 500_000);
        zone_at(root.path(), "0:0", "dram", 250_000);
        let mut rapl = Rapl::probe(root.path()).unwrap();
        let counters = rapl.counters();
        assert_eq!(counters.len(), 2);
        assert_eq!(counters[0].source, "rapl:package-0:0");
        assert_eq!(counters[0].kind, EnergyKind::CpuPackage);
        assert_eq!(counters[0].joules, 0.5);
        assert_eq!(counters[0].wrap_j, Some(1.0));
        assert_eq!(counters[1].kind, EnergyKind::Dram);
    }

    #[test]
    fn wrap_is_counted_once_through() {
        let root = tempfile::tempdir().unwrap();
        let dir = zone_at(root.path(), "0", "package-0", 900_000);
        let mut rapl = Rapl::probe(root.path()).unwrap();
        let before = rapl.counters()[0].clone();
        fs::write(dir.join("energy_uj"), "100000\n").unwrap();
        let after = rapl.counters()[0].clone();
        let delta = super::super::counter_delta(before.joules, after.joules, after.wrap_j);
        assert!((delta - 0.2).abs() < 1e-9, "{delta}");
    }

    #[test]
    fn missing_tree_is_not_available() {
        let root = tempfile::tempdir().unwrap();
        let why = Rapl::probe(root.path()).err().unwrap();
        assert!(why.contains("no ") && why.contains("intel-rapl"), "{why}");
    }

    #[test]
    fn unreadable_counter_says_why() {
        let root = tempfile::tempdir().unwrap();
        let dir = zone_at(root.path(), "0", "package-0", 1);
        // A directory where the file should be reads as an error for root too (chmod would not).
        fs::remove_file(dir.join("energy_uj")).unwrap();
        fs::create_dir(dir.join("energy_uj")).unwrap();
        let why = Rapl::probe(root.path()).err().unwrap();
        assert!(
            why.contains("energy_uj") && why.contains("root-only"),
            "{why}"
        );
    }
}
