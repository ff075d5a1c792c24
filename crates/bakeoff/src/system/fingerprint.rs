//! The hardware and OS fingerprint recorded with every run: the facts that change benchmark
//! results (CPU, memory, GPUs, kernel, CPU governor, transparent huge pages, swappiness).

use super::topology::{self, Topology};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::process::Command;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub memory_bytes: Option<u64>,
    pub driver: Option<String>,
    /// How it was found: `nvidia-smi` or `amdgpu-sysfs`.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub hostname: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub ram_bytes: u64,
    pub gpus: Vec<Gpu>,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_governor: Option<String>,
    pub transparent_hugepages: Option<String>,
    pub swappiness: Option<u32>,
    /// How the GPUs are linked (`nvidia-smi topo -m`), with two NVIDIA GPUs or more; absent
    /// otherwise, so that fingerprints (and their hashes) of other machines are as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_topology: Option<Topology>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Fingerprint {
    /// Read the fingerprint of the machine we run on. Missing facts are left empty, never an error.
    pub fn collect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mut gpus = nvidia_gpus();
        let nvidia = gpus.len();
        gpus.extend(amd_gpus());
        Fingerprint {
            hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
            cpu_model: cpu_model(&cpuinfo),
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            ram_bytes: mem_total(&meminfo),
            gpus,
            os: os_name(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            arch: std::env::consts::ARCH.to_string(),
            cpu_governor: read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            transparent_hugepages: read_trimmed("/sys/kernel/mm/transparent_hugepage/enabled")
                .map(|s| selected_choice(&s)),
            swappiness: read_trimmed("/proc/sys/vm/swappiness").and_then(|s| s.parse().ok()),
            gpu_topology: (nvidia >= 2).then(topology::collect).flatten(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short stable id of the fingerprint (first 16 hex digits of the SHA-256 of its JSON).
    pub fn hash(&self) -> String {
        Sha256::digest(self.to_json())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(key.trim(), "model name" | "Model" | "cpu model")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

fn os_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// `always [madvise] never` → `madvise`.
fn selected_choice(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| text.to_string())
}

fn nvidia_gpus() -> Vec<Gpu> {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let Ok(output) = output else {
        return Vec::new();
    };
    if !output.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let name = fields.first().filter(|n| !n.is_empty())?;
            Some(Gpu {
                name: name.to_string(),
                memory_bytes: fields
                    .get(1)
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(|mib| mib << 20),
                driver: fields.get(2).map(|d| d.to_string()),
                source: "nvidia-smi".into(),
            })
        })
        .collect()
}

fn amd_gpus() -> Vec<Gpu> {
    let Ok(cards) = std::fs::read_dir("/sys/class/drm") else {
        return Vec::new();
    };
    let mut gpus = Vec::new();
    for card in cards.flatten() {
        let name = card.file_name().to_string_lossy().to_string();
        if !name.starts_with("card") || name.contains('-') {
            continue;
        }
        let device = card.path().join("device");
        let vendor = std::fs::read_to_string(device.join("vendor")).unwrap_or_default();
        if vendor.trim() != "0x1002" {
            continue;
        }
        let memory = std::fs::read_to_string(device.join("mem_info_vram_total"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let product = std::fs::read_to_string(device.join("product_name"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("AMD GPU ({name})"));
        gpus.push(Gpu {
            name: product,
            memory_bytes: memory,
            driver: None,
            source: "amdgpu-sysfs".into(),
        });
    }
    gpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 9654\n"),
            "AMD EPYC 9654"
        );
        assert_eq!(mem_total("MemTotal:       24576000 kB\n"), 24576000 * 1024);
        assert_eq!(selected_choice("always [madvise] never"), "madvise");
    }

    #[test]
    fn a_machine_without_gpus_has_the_json_and_hash_it_had_before_topology() {
        let fp = Fingerprint {
            hostname: "h".into(),
            cpu_model: "c".into(),
            cpu_cores: 2,
            ..Default::default()
        };
        let json = fp.to_json();
        assert!(!json.contains("gpu_topology"), "{json}");
        // The hash of this fingerprint as computed before the field existed.
        assert_eq!(fp.hash(), "99893ba862ba6f97");
        let read: Fingerprint = serde_json::from_str(&json).unwrap();
        assert_eq!(read, fp);
    }

    #[test]
    fn collects_this_machine() {
        let fp = Fingerprint::collect();
        assert!(fp.cpu_cores >= 1);
        assert!(fp.ram_bytes > 0, "MemTotal should be readable on Linux");
        assert_eq!(fp.hash().len(), 16);
    }
}
