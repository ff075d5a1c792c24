//! Each NVIDIA GPU's utilisation, memory in use and power draw at one instant, from
//! `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,power.draw --format=csv,noheader,nounits`:
//! what a trial records per device on each side of it (the sampler's NVML figures are per source
//! too, but NVML gives no utilisation there).

use serde::Serialize;
use std::process::Command;

/// The fields asked for, in the order they come back.
pub const QUERY: &str = "--query-gpu=index,utilization.gpu,memory.used,power.draw";

/// One GPU at one instant; `None` where nvidia-smi said `[N/A]` or `[Not Supported]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuState {
    pub index: u32,
    pub util_pct: Option<f64>,
    pub mem_used_bytes: Option<f64>,
    pub power_w: Option<f64>,
}

/// Every GPU now (empty without nvidia-smi or when it fails).
pub fn query() -> Vec<GpuState> {
    let output = Command::new("nvidia-smi")
        .args([QUERY, "--format=csv,noheader,nounits"])
        .output();
    match output {
        Ok(output) if output.status.success() => parse(&String::from_utf8_lossy(&output.stdout)),
        _ => Vec::new(),
    }
}

/// `0, 87, 40321, 612.45` per line (MiB and W, as `nounits` prints them); lines without an index
/// are skipped.
pub fn parse(text: &str) -> Vec<GpuState> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let number = |at: usize| fields.get(at).and_then(|f| f.parse::<f64>().ok());
            Some(GpuState {
                index: fields.first()?.parse().ok()?,
                util_pct: number(1),
                mem_used_bytes: number(2).map(|mib| mib * 1024.0 * 1024.0),
                power_w: number(3),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_gpu_and_leaves_unsupported_fields_empty() {
        // Two H200s under a layer split, and a board that reports no power.
        let text =
            "0, 87, 40321, 612.45\n1, 64, 38110, 455.10\n2, 0, 1, [N/A]\n\nNo devices were found\n";
        let gpus = parse(text);
        assert_eq!(gpus.len(), 3);
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].util_pct, Some(64.0));
        assert_eq!(gpus[1].mem_used_bytes, Some(38110.0 * 1024.0 * 1024.0));
        assert_eq!(gpus[0].power_w, Some(612.45));
        assert_eq!(gpus[2].power_w, None);
        assert!(parse("").is_empty());
    }
}
