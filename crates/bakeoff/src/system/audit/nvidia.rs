//! NVIDIA GPUs through `nvidia-smi --query-gpu` (bounded to two seconds): persistence mode,
//! application clocks, power limit against its maximum, PCIe link generation and width, ECC.

use super::{under, Check, Status};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fields asked for, in order (`--format=csv,noheader,nounits`).
const FIELDS: &str =
    "index,name,persistence_mode,clocks.applications.graphics,clocks.applications.memory,\
clocks.max.graphics,clocks.max.memory,power.limit,power.max_limit,pcie.link.gen.current,\
pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,ecc.mode.current";

/// How long nvidia-smi may take: the audit runs at the start of every run.
pub const LIMIT: Duration = Duration::from_secs(2);

/// One GPU's answers; `None` where nvidia-smi said `[N/A]` or `[Not Supported]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSettings {
    pub index: String,
    pub name: String,
    pub persistence: Option<String>,
    pub app_graphics: Option<u64>,
    pub app_memory: Option<u64>,
    pub max_graphics: Option<u64>,
    pub max_memory: Option<u64>,
    pub power_limit: Option<f64>,
    pub power_max: Option<f64>,
    pub gen_current: Option<u64>,
    pub gen_max: Option<u64>,
    pub width_current: Option<u64>,
    pub width_max: Option<u64>,
    pub ecc: Option<String>,
}

/// `[N/A]`, `N/A`, `[Not Supported]` and `Not Supported` mean no value.
fn value(field: &str) -> Option<String> {
    let field = field.trim();
    let bare = field.trim_start_matches('[').trim_end_matches(']');
    match bare {
        "" | "N/A" | "Not Supported" | "Unknown Error" => None,
        _ => Some(field.to_string()),
    }
}

/// The `--query-gpu` CSV (one line per GPU, fields in [`FIELDS`] order).
pub fn parse_query(text: &str) -> Result<Vec<GpuSettings>, String> {
    let expected = FIELDS.split(',').count();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != expected {
                return Err(format!(
                    "nvidia-smi line {}: {} fields, expected {expected}: '{line}'",
                    n + 1,
                    fields.len()
                ));
            }
            let text = |i: usize| value(fields[i]);
            let int = |i: usize| text(i).and_then(|v| v.parse::<u64>().ok());
            let float = |i: usize| text(i).and_then(|v| v.parse::<f64>().ok());
            Ok(GpuSettings {
                index: fields[0].trim().to_string(),
                name: fields[1].trim().to_string(),
                persistence: text(2),
                app_graphics: int(3),
                app_memory: int(4),
                max_graphics: int(5),
                max_memory: int(6),
                power_limit: float(7),
                power_max: float(8),
                gen_current: int(9),
                gen_max: int(10),
                width_current: int(11),
                width_max: int(12),
                ecc: text(13),
            })
        })
        .collect()
}

/// `nvidia-smi` on PATH for the real machine; in a fixture tree, `ROOT/usr/bin/nvidia-smi`.
fn program(root: &Path) -> PathBuf {
    match root == Path::new("/") {
        true => PathBuf::from("nvidia-smi"),
        false => under(root, "/usr/bin/nvidia-smi"),
    }
}

pub fn checks(root: &Path) -> Vec<Check> {
    let summary = Check::new("nvidia.gpus", "nvidia", "NVIDIA GPUs")
        .recommend("-", "the NVIDIA checks need nvidia-smi's answers");
    let query = format!("--query-gpu={FIELDS}");
    let args = [query.as_str(), "--format=csv,noheader,nounits"];
    let text = match super::run_bounded(&program(root), &args, LIMIT) {
        Ok(text) => text,
        Err(super::RunError::NotFound) => {
            return vec![summary.not_applicable("no NVIDIA GPU (nvidia-smi not found)")]
        }
        Err(super::RunError::Failed(why)) => {
            return vec![summary.unknown(format!("nvidia-smi: {why}"))]
        }
    };
    match parse_query(&text) {
        Ok(gpus) if gpus.is_empty() => {
            vec![summary.not_applicable("no NVIDIA GPU (nvidia-smi lists none)")]
        }
        Ok(gpus) => gpus.iter().flat_map(gpu_checks).collect(),
        Err(why) => vec![summary.unknown(why)],
    }
}

fn gpu_checks(gpu: &GpuSettings) -> Vec<Check> {
    vec![
        persistence(gpu),
        application_clocks(gpu),
        power_limit(gpu),
        pcie_generation(gpu),
        pcie_width(gpu),
        ecc(gpu),
    ]
}

fn new(gpu: &GpuSettings, key: &str, title: &str) -> Check {
    Check::new(
        &format!("nvidia.gpu{}.{key}", gpu.index),
        "nvidia",
        &format!("GPU{} {title}", gpu.index),
    )
}

fn unsupported(check: Check) -> Check {
    check.not_applicable("not supported by this GPU or driver ([N/A])")
}

fn persistence(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "persistence", "persistence mode").recommend(
        "Enabled",
        "without it the driver tears the GPU down when the last client exits: every engine start \
         pays the initialisation again and clock and power settings can reset",
    );
    let Some(mode) = &gpu.persistence else {
        return unsupported(check);
    };
    let fix = format!("sudo nvidia-smi -i {} -pm 1", gpu.index);
    check.judged(mode, mode == "Enabled", Status::Warn, &fix)
}

fn application_clocks(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "application_clocks", "application clocks").recommend(
        "the maximum",
        "application clocks are the target clock under load on datacenter GPUs; below the maximum \
         they slow compute-bound prefill (memory-bound decode gains less)",
    );
    let (Some(gfx), Some(mem), Some(max_gfx), Some(max_mem)) = (
        gpu.app_graphics,
        gpu.app_memory,
        gpu.max_graphics,
        gpu.max_memory,
    ) else {
        return unsupported(check);
    };
    let why = check.why.clone();
    let check = check.recommend(format!("{max_mem},{max_gfx} MHz (memory,graphics)"), why);
    let fix = format!("sudo nvidia-smi -i {} -ac {max_mem},{max_gfx}", gpu.index);
    let good = gfx >= max_gfx && mem >= max_mem;
    check.judged(format!("{mem},{gfx} MHz"), good, Status::Warn, &fix)
}

fn power_limit(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "power_limit", "power limit");
    let (Some(limit), Some(max)) = (gpu.power_limit, gpu.power_max) else {
        return unsupported(check.recommend("the maximum", ""));
    };
    let check = check.recommend(
        format!("{max:.0} W (the maximum)"),
        "a lower limit caps the clock when the GPU is busy; decode at high batch and prefill hit it first",
    );
    let fix = format!("sudo nvidia-smi -i {} -pl {max:.0}", gpu.index);
    check.judged(
        format!("{limit:.0} W"),
        limit + 0.5 >= max,
        Status::Warn,
        &fix,
    )
}

fn pcie_generation(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "pcie_generation", "PCIe link generation");
    let (Some(current), Some(max)) = (gpu.gen_current, gpu.gen_max) else {
        return unsupported(check.recommend("the maximum", ""));
    };
    let check = check.recommend(
        format!("gen {max}"),
        "an idle GPU drops its link generation to save power, so a low value at rest is normal; \
         if it stays low under load, model loading and host-device copies (offloaded layers) slow down",
    );
    let fix = format!(
        "read it under load: nvidia-smi -i {} --query-gpu=pcie.link.gen.current --format=csv -lms 500 (if still low: slot, riser or BIOS PCIe setting)",
        gpu.index
    );
    check.judged(format!("gen {current}"), current >= max, Status::Warn, &fix)
}

fn pcie_width(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "pcie_width", "PCIe link width");
    let (Some(current), Some(max)) = (gpu.width_current, gpu.width_max) else {
        return unsupported(check.recommend("the maximum", ""));
    };
    let check = check.recommend(
        format!("x{max}"),
        "a narrow link (a x16 card in a x4 slot, a riser) divides host-device bandwidth; unlike \
         the generation it does not drop at idle",
    );
    let fix = "no command: move the card to a slot wired for its full width, or check bifurcation in the BIOS";
    check.judged(format!("x{current}"), current >= max, Status::Fail, fix)
}

fn ecc(gpu: &GpuSettings) -> Check {
    let check = new(gpu, "ecc", "ECC").recommend(
        "Enabled (keep it)",
        "on HBM GPUs ECC costs nothing measurable; on GDDR cards turning it off frees a few percent \
         of memory and bandwidth at the price of silent memory errors, so bakeoff does not advise it",
    );
    match &gpu.ecc {
        Some(mode) => check.judged(mode, true, Status::Pass, ""),
        None => unsupported(check),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line 0 as nvidia-smi 580.159.04 printed it on the H200 device machine (December 2026);
    /// line 1 made up in the same format for a consumer card that lacks most settings.
    const CAPTURED: &str = "\
0, NVIDIA H200, Enabled, 1980, 3201, 1980, 3201, 700.00, 700.00, 5, 5, 16, 16, Enabled
1, NVIDIA GeForce RTX 4090, Disabled, [N/A], [N/A], 3105, 10501, 450.00, 600.00, 1, 4, 8, 16, [Not Supported]
";

    #[test]
    fn parses_values_and_missing_ones() {
        let gpus = parse_query(CAPTURED).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA H200");
        assert_eq!(gpus[0].power_max, Some(700.0));
        assert_eq!(gpus[0].ecc.as_deref(), Some("Enabled"));
        assert_eq!(gpus[1].app_graphics, None);
        assert_eq!(gpus[1].max_memory, Some(10501));
        assert_eq!(gpus[1].ecc, None);
        assert_eq!(gpus[1].gen_current, Some(1));
        assert!(parse_query("0, short line\n")
            .unwrap_err()
            .contains("2 fields, expected 14"));
        assert!(parse_query("").unwrap().is_empty());
    }

    #[test]
    fn a_tuned_gpu_passes_and_a_capped_one_gets_each_fix() {
        let gpus = parse_query(CAPTURED).unwrap();
        let good = gpu_checks(&gpus[0]);
        assert!(good.iter().all(|c| c.status == Status::Pass), "{good:#?}");
        let bad = gpu_checks(&gpus[1]);
        let by_key = |key: &str| {
            bad.iter()
                .find(|c| c.id == format!("nvidia.gpu1.{key}"))
                .unwrap()
        };
        assert_eq!(by_key("persistence").status, Status::Warn);
        assert_eq!(
            by_key("persistence").fix.as_deref(),
            Some("sudo nvidia-smi -i 1 -pm 1")
        );
        assert_eq!(by_key("application_clocks").status, Status::NotApplicable);
        let power = by_key("power_limit");
        assert_eq!(
            (power.status, power.current.as_str()),
            (Status::Warn, "450 W")
        );
        assert_eq!(power.fix.as_deref(), Some("sudo nvidia-smi -i 1 -pl 600"));
        assert_eq!(by_key("pcie_generation").status, Status::Warn);
        assert_eq!(by_key("pcie_width").status, Status::Fail);
        assert_eq!(by_key("pcie_width").current, "x8");
        assert_eq!(by_key("ecc").status, Status::NotApplicable);
    }

    #[test]
    fn application_clocks_below_the_maximum_warn_with_both_values() {
        let gpu = GpuSettings {
            index: "0".into(),
            app_graphics: Some(1755),
            app_memory: Some(3201),
            max_graphics: Some(1980),
            max_memory: Some(3201),
            ..Default::default()
        };
        let check = application_clocks(&gpu);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(
            check.fix.as_deref(),
            Some("sudo nvidia-smi -i 0 -ac 3201,1980")
        );
    }
}
