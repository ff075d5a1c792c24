//! AMD GPUs (amdgpu in sysfs): the GTT size an integrated GPU can borrow from system memory, the
//! IOMMU mode on the kernel command line, and the amdgpu module's `gttsize` option where present.

use super::{mem_total, numbered, read, under, Check, Status};
use crate::domain::units::human_bytes;
use std::path::{Path, PathBuf};

/// Above this much VRAM a GPU is taken as discrete: its weights live in VRAM, not in GTT.
const DISCRETE_VRAM: u64 = 8 << 30;

/// The `device` directories of amdgpu cards (PCI vendor 0x1002) under `/sys/class/drm`.
fn cards(root: &Path) -> Vec<(String, PathBuf)> {
    numbered(&under(root, "/sys/class/drm"), "card")
        .into_iter()
        .filter(|card| read(&card.join("device/vendor")).is_ok_and(|v| v == "0x1002"))
        .map(|card| {
            let name = card
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            (name, card.join("device"))
        })
        .collect()
}

pub fn checks(root: &Path) -> Vec<Check> {
    let cards = cards(root);
    if cards.is_empty() {
        let summary = Check::new("amd.gpus", "amd", "AMD GPUs").recommend("-", "");
        let drm = under(root, "/sys/class/drm");
        return vec![
            summary.not_applicable(format!("no AMD GPU (no amdgpu card in {})", drm.display()))
        ];
    }
    let mut checks: Vec<Check> = cards
        .iter()
        .map(|(name, dev)| gtt(root, name, dev))
        .collect();
    checks.push(iommu(root));
    checks
}

fn number(path: &Path) -> Result<u64, String> {
    let text = read(path)?;
    text.parse()
        .map_err(|_| format!("{}: '{text}' is not a number", path.display()))
}

fn gtt(root: &Path, card: &str, device: &Path) -> Check {
    let check = Check::new(
        &format!("amd.{card}.gtt"),
        "amd",
        &format!("{card} GTT size"),
    );
    let option = read(&under(root, "/sys/module/amdgpu/parameters/gttsize"))
        .map(|v| format!(" (amdgpu.gttsize={v})"))
        .unwrap_or_default();
    let (gtt, vram) = match (
        number(&device.join("mem_info_gtt_total")),
        number(&device.join("mem_info_vram_total")),
    ) {
        (Ok(gtt), Ok(vram)) => (gtt, vram),
        (Err(why), _) | (_, Err(why)) => return check.unknown(why),
    };
    let current = format!("{}{option}, VRAM {}", human_bytes(gtt), human_bytes(vram));
    if vram >= DISCRETE_VRAM {
        let check = check.recommend(
            "any (discrete GPU)",
            "a discrete GPU keeps the weights in VRAM; GTT only carries transfers",
        );
        return check.judged(current, true, Status::Pass, "");
    }
    let Some(ram) = mem_total(root) else {
        return check.unknown("not available: MemTotal in /proc/meminfo");
    };
    let wanted = ram / 4 * 3;
    let mib = wanted >> 20;
    let check = check.recommend(
        format!("{} or more (3/4 of RAM)", human_bytes(wanted)),
        "an integrated GPU holds the weights and KV cache in GTT (system memory it may map); the \
         default cap (half of RAM or less) limits the model size it can run",
    );
    let fix = format!(
        "add `amdgpu.gttsize={mib} ttm.pages_limit={}` to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then `sudo update-grub` and reboot)",
        wanted / 4096
    );
    check.judged(current, gtt >= wanted, Status::Warn, &fix)
}

fn iommu(root: &Path) -> Check {
    let check = Check::new("amd.iommu", "amd", "IOMMU mode").recommend(
        "iommu=pt (or amd_iommu=off)",
        "ROCm's tuning guides recommend passthrough: translated DMA adds latency to every \
         host-device transfer",
    );
    let path = under(root, "/proc/cmdline");
    let cmdline = match read(&path) {
        Ok(text) => text,
        Err(why) => return check.unknown(why),
    };
    let words: Vec<&str> = cmdline
        .split_whitespace()
        .filter(|w| {
            w.starts_with("iommu=") || w.starts_with("amd_iommu=") || w.starts_with("intel_iommu=")
        })
        .collect();
    let good = words
        .iter()
        .any(|w| *w == "iommu=pt" || *w == "amd_iommu=off");
    let current = match words.is_empty() {
        true => "default (translated)".to_string(),
        false => words.join(" "),
    };
    let fix = "add `iommu=pt` to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then `sudo update-grub` and reboot)";
    check.judged(current, good, Status::Warn, fix)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{tuned, write};
    use super::super::{collect, Status};

    /// An APU with 512 MiB of VRAM and an 8 GiB GTT on a 16 GB machine.
    fn apu(root: &std::path::Path) {
        tuned(root);
        write(root, "/sys/class/drm/card0/device/vendor", "0x1002\n");
        write(
            root,
            "/sys/class/drm/card0/device/mem_info_vram_total",
            "536870912\n",
        );
        write(
            root,
            "/sys/class/drm/card0/device/mem_info_gtt_total",
            "8388608000\n",
        );
        write(root, "/sys/module/amdgpu/parameters/gttsize", "-1\n");
    }

    #[test]
    fn an_apu_with_the_default_gtt_warns_with_the_kernel_options() {
        let dir = tempfile::tempdir().unwrap();
        apu(dir.path());
        let audit = collect(dir.path());
        let gtt = audit.check("amd.card0.gtt").unwrap();
        assert_eq!(gtt.status, Status::Warn, "{gtt:?}");
        assert!(gtt.current.contains("amdgpu.gttsize=-1"), "{gtt:?}");
        assert!(
            gtt.fix.as_deref().unwrap().contains("amdgpu.gttsize=12000"),
            "{gtt:?}"
        );
        let iommu = audit.check("amd.iommu").unwrap();
        assert_eq!(
            (iommu.status, iommu.current.as_str()),
            (Status::Warn, "default (translated)")
        );
        assert!(audit.check("amd.gpus").is_none());
    }

    #[test]
    fn a_large_gtt_and_passthrough_pass() {
        let dir = tempfile::tempdir().unwrap();
        apu(dir.path());
        write(
            dir.path(),
            "/sys/class/drm/card0/device/mem_info_gtt_total",
            "15000000000\n",
        );
        write(dir.path(), "/proc/cmdline", "root=/dev/sda1 iommu=pt\n");
        let audit = collect(dir.path());
        assert_eq!(audit.check("amd.card0.gtt").unwrap().status, Status::Pass);
        assert_eq!(audit.check("amd.iommu").unwrap().status, Status::Pass);
    }
}
