//! How the GPUs of a machine are connected, from `nvidia-smi topo -m`: for each pair of GPUs the
//! link (`NV#` bonded NVLinks, `PIX`, `PXB`, `PHB`, `NODE`, `SYS`), and each GPU's CPU and NUMA
//! affinity. A multi-GPU split's speed depends on it (`-sm row` moves data between GPUs every layer).

use serde::{Deserialize, Serialize};
use std::process::Command;

/// The GPU part of `nvidia-smi topo -m`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// `GPU0`, `GPU1`, ... in nvidia-smi's order (the CUDA device order by default).
    pub gpus: Vec<String>,
    /// `links[a][b]`: how GPU a reaches GPU b (`X` for itself).
    pub links: Vec<Vec<String>>,
    /// Each GPU's CPU affinity (`0-55,112-167`), where nvidia-smi gives one.
    pub cpu_affinity: Vec<Option<String>>,
    /// Each GPU's NUMA node, where nvidia-smi gives one.
    pub numa_affinity: Vec<Option<String>>,
}

impl Topology {
    /// The link between GPUs `a` and `b`.
    pub fn link(&self, a: usize, b: usize) -> Option<&str> {
        self.links.get(a)?.get(b).map(String::as_str)
    }

    /// Each pair once: `GPU0-GPU1 NV18, GPU0-GPU2 PXB, ...`.
    pub fn describe(&self) -> String {
        let n = self.gpus.len();
        let pairs: Vec<String> = (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .map(|(a, b)| {
                let link = self.link(a, b).unwrap_or("?");
                format!("{}-{} {link}", self.gpus[a], self.gpus[b])
            })
            .collect();
        pairs.join(", ")
    }

    /// Whether every pair of GPUs is joined by NVLink.
    pub fn all_nvlink(&self) -> bool {
        let n = self.gpus.len();
        (0..n).all(|a| (0..n).all(|b| a == b || self.link(a, b).is_some_and(is_nvlink)))
    }
}

/// `NV4`, `NV18`: a bonded set of NVLinks.
pub fn is_nvlink(link: &str) -> bool {
    link.strip_prefix("NV")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// Run `nvidia-smi topo -m`; `None` without nvidia-smi, when it fails, or with fewer than two
/// GPUs (one GPU has no links, and leaving it out keeps such fingerprints as they were).
pub fn collect() -> Option<Topology> {
    let output = Command::new("nvidia-smi")
        .args(["topo", "-m"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse(&String::from_utf8_lossy(&output.stdout)).filter(|t| t.gpus.len() >= 2)
}

/// Parse the matrix nvidia-smi prints (its header row names the columns; the legend after a
/// blank line is ignored; terminal escapes are stripped). `None` when no GPU row is found.
pub fn parse(text: &str) -> Option<Topology> {
    let text = strip_escapes(text);
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    let header = columns(lines.next()?);
    let gpu_columns = header.iter().take_while(|c| is_gpu(c)).count();
    let at = |name: &str| header.iter().position(|c| c == name);
    let (cpu, numa) = (at("CPU Affinity"), at("NUMA Affinity"));
    let mut topology = Topology::default();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let cells = columns(line);
        let Some((name, rest)) = cells.split_first() else {
            continue;
        };
        if !is_gpu(name) || rest.len() < gpu_columns {
            continue;
        }
        let cell = |column: Option<usize>| column.and_then(|c| rest.get(c)).cloned();
        topology.gpus.push(name.clone());
        topology.links.push(rest[..gpu_columns].to_vec());
        topology.cpu_affinity.push(cell(cpu).filter(|v| v != "N/A"));
        topology
            .numa_affinity
            .push(cell(numa).filter(|v| v != "N/A"));
    }
    (!topology.gpus.is_empty()).then_some(topology)
}

fn is_gpu(name: &str) -> bool {
    name.strip_prefix("GPU")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// nvidia-smi separates columns by tabs; multi-word headers (`CPU Affinity`) have single spaces.
fn columns(line: &str) -> Vec<String> {
    line.split('\t')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Remove ANSI escape sequences (`ESC [ ... letter`), which nvidia-smi prints on a terminal.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nvidia-smi topo -m` of a 4-GPU host in NVIDIA's documented layout: tab-separated cells,
    /// the header underlined on a terminal, a NIC row, the legend after a blank line.
    const FOUR_GPUS: &str = "\t\u{1b}[4mGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\u{1b}[0m
GPU0\t X \tNV18\tNV18\tPXB\tSYS\t0-55,112-167\t0\t\tN/A
GPU1\tNV18\t X \tNV18\tPXB\tSYS\t0-55,112-167\t0\t\tN/A
GPU2\tNV18\tNV18\t X \tPXB\tSYS\t56-111,168-223\t1\t\tN/A
GPU3\tPXB\tPXB\tPXB\t X \tSYS\t56-111,168-223\t1\t\tN/A
NIC0\tSYS\tSYS\tSYS\tSYS\t X \t\t\t\t

Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks

NIC Legend:

  NIC0: mlx5_0
";

    #[test]
    fn parses_the_gpu_matrix_and_affinities() {
        let topology = parse(FOUR_GPUS).unwrap();
        assert_eq!(topology.gpus, ["GPU0", "GPU1", "GPU2", "GPU3"]);
        assert_eq!(topology.link(0, 1), Some("NV18"));
        assert_eq!(topology.link(3, 0), Some("PXB"));
        assert_eq!(topology.link(2, 2), Some("X"));
        assert_eq!(topology.links[0].len(), 4, "the NIC column is not a GPU");
        assert_eq!(topology.cpu_affinity[2].as_deref(), Some("56-111,168-223"));
        assert_eq!(topology.numa_affinity[3].as_deref(), Some("1"));
        assert!(!topology.all_nvlink());
        assert!(topology
            .describe()
            .starts_with("GPU0-GPU1 NV18, GPU0-GPU2 NV18, GPU0-GPU3 PXB, GPU1-GPU2 NV18"));
        let first_three = Topology {
            gpus: topology.gpus[..3].to_vec(),
            links: topology.links[..3]
                .iter()
                .map(|r| r[..3].to_vec())
                .collect(),
            ..topology
        };
        assert!(first_three.all_nvlink());
    }

    #[test]
    fn the_h200_machines_own_output_parses() {
        // `nvidia-smi topo -m` on the lent H200 (driver 580.159.04), escapes and all.
        let text = "\t\x1b[4mGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\n\
                    GPU0\t X \t0-15\t0\t\tN/A\n\nLegend:\n\n  X    = Self\n";
        let topology = parse(text).unwrap();
        assert_eq!(topology.gpus, ["GPU0"]);
        assert_eq!(topology.link(0, 0), Some("X"));
        assert_eq!(topology.cpu_affinity, [Some("0-15".to_string())]);
        assert_eq!(topology.numa_affinity, [Some("0".to_string())]);
        assert_eq!(topology.describe(), "");
    }

    #[test]
    fn pcie_pairs_and_unparsable_text() {
        let two = "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\n\
                   GPU0\t X \tPHB\t0-15\tN/A\n\
                   GPU1\tPHB\t X \t0-15\tN/A\n";
        let topology = parse(two).unwrap();
        assert_eq!(topology.link(1, 0), Some("PHB"));
        assert_eq!(topology.numa_affinity, [None, None]);
        assert!(is_nvlink("NV4") && !is_nvlink("NV") && !is_nvlink("NODE"));
        assert!(parse("").is_none());
        assert!(parse("NVIDIA-SMI has failed because it couldn't communicate").is_none());
    }
}
