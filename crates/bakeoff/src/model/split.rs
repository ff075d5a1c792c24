//! How llama.cpp (b11434, `llama_model::load_tensors`) spreads a model over several GPUs, and
//! whether each GPU's share fits it: the planner's per-device memory split for `-sm`/`-ts`/`-mg`.
//!
//! - `layer`: the `n_layer + 1` layers (the last is the output layer) are cut into contiguous ranges
//!   in proportion to `-ts` (default: each device's free memory); layer `il` goes to the first device
//!   whose cumulative share exceeds `il / (n_layer + 1)`. A layer's KV lives on its device; the input
//!   embeddings stay on the host.
//! - `row`: layers are placed as for `layer` (KV with them), but each layer's weight matrices are cut
//!   by rows over every device in proportion to `-ts`.
//! - `tensor` (experimental): weights and KV are both divided over the devices in proportion.
//! - `none`: everything on the main GPU (`-mg`).
//!
//! Weights of the repeating layers are taken as equal per layer (GGUF facts keep bytes by role, not
//! by layer); every device holds a compute buffer, and the output layer's device the logits too.

use super::facts::ModelFacts;
use super::plan::{compute_buffer_estimate, kv_bytes_by_layer, KvSettings};
use crate::domain::units::human_bytes;
use serde::Serialize;
use std::collections::BTreeMap;

/// llama.cpp's `-sm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMode {
    None,
    Layer,
    Row,
    Tensor,
}

impl SplitMode {
    /// From the `-sm` value (`None` for an unknown one).
    pub fn parse(text: &str) -> Option<SplitMode> {
        Some(match text {
            "none" => SplitMode::None,
            "layer" => SplitMode::Layer,
            "row" => SplitMode::Row,
            "tensor" => SplitMode::Tensor,
            _ => return None,
        })
    }
}

/// The split settings of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub mode: SplitMode,
    /// `-ts` proportions; empty for llama.cpp's default (each device's memory).
    pub ratios: Vec<f64>,
    /// `-mg`.
    pub main_gpu: usize,
}

impl Split {
    /// From engine flags (`-sm`, `-ts`, `-mg`, llama.cpp's defaults where absent); `None` for a
    /// value llama.cpp would refuse.
    pub fn of_flags(flags: &BTreeMap<String, String>) -> Option<Split> {
        let mode = flags
            .get("-sm")
            .map_or(Some(SplitMode::Layer), |m| SplitMode::parse(m))?;
        let ratios = match flags.get("-ts") {
            Some(ts) => ratios(ts)?,
            None => Vec::new(),
        };
        let main_gpu = match flags.get("-mg") {
            Some(mg) => mg.parse().ok()?,
            None => 0,
        };
        Some(Split {
            mode,
            ratios,
            main_gpu,
        })
    }
}

/// The proportions of a `-ts` value (`3/1`, `3:1` or `3,1` → `[3.0, 1.0]`).
pub fn ratios(value: &str) -> Option<Vec<f64>> {
    value
        .split(['/', ':', ','])
        .map(|p| p.trim().parse().ok())
        .collect()
}

/// `GPU 1 needs 9.10 GiB of 8.00 GiB` for the first GPU whose share of a configuration (its
/// engine `flags`, every layer offloaded) is over its memory; `None` when all fit, with fewer
/// than two GPUs, or when the flags cannot be planned.
pub fn overflow_note(
    facts: &ModelFacts,
    settings: &KvSettings,
    flags: &BTreeMap<String, String>,
    memory: &[u64],
) -> Option<String> {
    if memory.len() < 2 {
        return None;
    }
    let flash = flags.get("-fa").is_none_or(|v| v != "off");
    let split = Split::of_flags(flags)?;
    let plan = plan_devices(facts, settings, flash, &split, memory)?;
    let over = plan.overflow()?;
    Some(format!(
        "GPU {} needs {} of {}",
        over.device,
        human_bytes(over.total_bytes),
        human_bytes(over.memory_bytes)
    ))
}

/// `-ngl` absent, `all`/`auto`, or at least every layer and the output: what the split plan assumes.
pub fn all_offloaded(facts: &ModelFacts, flags: &BTreeMap<String, String>) -> bool {
    match flags.get("-ngl").map(String::as_str) {
        None | Some("all" | "auto") => true,
        Some(n) => n.parse::<u64>().is_ok_and(|n| n > facts.n_layer),
    }
}

impl Default for Split {
    /// llama.cpp's defaults: `-sm layer`, no `-ts`, `-mg 0`.
    fn default() -> Split {
        Split {
            mode: SplitMode::Layer,
            ratios: Vec::new(),
            main_gpu: 0,
        }
    }
}

/// One device's share of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceShare {
    pub device: usize,
    /// Repeating layers placed on it (the output layer is counted in `output`).
    pub layers: u64,
    /// Whether it holds the output layer.
    pub output: bool,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// The device's memory.
    pub memory_bytes: u64,
}

impl DeviceShare {
    pub fn fits(&self) -> bool {
        self.total_bytes <= self.memory_bytes
    }
}

/// Every device's share, and what stays on the host (the input embeddings).
#[derive(Debug, Clone, Serialize)]
pub struct DevicePlan {
    pub mode: SplitMode,
    pub devices: Vec<DeviceShare>,
    pub host_bytes: u64,
}

impl DevicePlan {
    /// The first device whose share is over its memory.
    pub fn overflow(&self) -> Option<&DeviceShare> {
        self.devices.iter().find(|d| !d.fits())
    }
}

/// The device of each of the `n_layer + 1` layers (the last is the output layer), as
/// llama.cpp's `get_layer_buft_list` picks it with every layer offloaded.
pub fn layer_devices(n_layer: usize, ratios: &[f64]) -> Vec<usize> {
    let sum: f64 = ratios.iter().sum();
    if ratios.is_empty() || sum <= 0.0 {
        return vec![0; n_layer + 1];
    }
    let mut cumulative = 0.0;
    let splits: Vec<f64> = ratios
        .iter()
        .map(|r| {
            cumulative += r;
            cumulative / sum
        })
        .collect();
    let slots = (n_layer + 1) as f64;
    (0..=n_layer)
        .map(|il| {
            let at = il as f64 / slots;
            splits.partition_point(|&s| s <= at).min(ratios.len() - 1)
        })
        .collect()
}

/// The proportions a split uses over `memory` (one entry per device): `-ts`, padded with zeros,
/// or the devices' memory; with `-sm none` all on the main GPU.
fn proportions(split: &Split, memory: &[u64]) -> Vec<f64> {
    if split.mode == SplitMode::None {
        let main = split.main_gpu.min(memory.len().saturating_sub(1));
        return (0..memory.len())
            .map(|d| if d == main { 1.0 } else { 0.0 })
            .collect();
    }
    if split.ratios.iter().any(|&r| r > 0.0) {
        return (0..memory.len())
            .map(|d| split.ratios.get(d).copied().unwrap_or(0.0))
            .collect();
    }
    memory.iter().map(|&m| m as f64).collect()
}

/// `total` divided in proportion (the remainder to the last device with a share).
fn divide(total: u64, proportions: &[f64]) -> Vec<u64> {
    let sum: f64 = proportions.iter().sum();
    let mut parts: Vec<u64> = proportions
        .iter()
        .map(|p| (total as f64 * p / sum).floor() as u64)
        .collect();
    let given: u64 = parts.iter().sum();
    if let Some(last) = proportions.iter().rposition(|&p| p > 0.0) {
        parts[last] += total - given;
    }
    parts
}

/// Plan each device's memory for `split` over devices of `memory` bytes, every layer offloaded.
/// `None` when the cache types cannot hold the model's rows, or there is no device.
pub fn plan_devices(
    facts: &ModelFacts,
    settings: &KvSettings,
    flash_attention: bool,
    split: &Split,
    memory: &[u64],
) -> Option<DevicePlan> {
    if memory.is_empty() {
        return None;
    }
    let n_layer = facts.layers.len();
    let kv = kv_bytes_by_layer(facts, settings)?;
    let role = |name: &str| facts.bytes_by_role.get(name).copied().unwrap_or(0);
    let embeddings = role("embeddings");
    // Tied embeddings: the output layer holds a duplicate of the token embeddings.
    let output_weights = if facts.bytes_by_role.contains_key("output") {
        role("output")
    } else {
        embeddings
    };
    let repeating = facts
        .tensor_bytes
        .saturating_sub(embeddings + role("output"));
    let per_layer = repeating / n_layer.max(1) as u64;
    let shares = proportions(split, memory);
    let devices = layer_devices(n_layer, &shares);
    let mut plan: Vec<DeviceShare> = (0..memory.len())
        .map(|device| DeviceShare {
            device,
            layers: 0,
            output: false,
            weights_bytes: 0,
            kv_bytes: 0,
            compute_bytes: 0,
            total_bytes: 0,
            memory_bytes: memory[device],
        })
        .collect();
    place_layers(&mut plan, &devices, per_layer, &kv);
    let output = devices[n_layer];
    plan[output].output = true;
    plan[output].weights_bytes += output_weights;
    match split.mode {
        SplitMode::Row => spread(&mut plan, |d| &mut d.weights_bytes, &shares),
        SplitMode::Tensor => {
            spread(&mut plan, |d| &mut d.weights_bytes, &shares);
            spread(&mut plan, |d| &mut d.kv_bytes, &shares);
        }
        SplitMode::None | SplitMode::Layer => {}
    }
    add_compute(&mut plan, facts, settings, flash_attention, &shares);
    Some(DevicePlan {
        mode: split.mode,
        devices: plan,
        host_bytes: embeddings,
    })
}

fn place_layers(plan: &mut [DeviceShare], devices: &[usize], per_layer: u64, kv: &[u64]) {
    for (il, &device) in devices.iter().take(kv.len()).enumerate() {
        let share = &mut plan[device];
        share.layers += 1;
        share.weights_bytes += per_layer;
        share.kv_bytes += kv[il];
    }
}

/// Re-divide one kind of bytes over every device in proportion (row and tensor splits).
fn spread(plan: &mut [DeviceShare], field: impl Fn(&mut DeviceShare) -> &mut u64, shares: &[f64]) {
    let total: u64 = plan.iter_mut().map(|d| *field(d)).sum();
    for (share, part) in plan.iter_mut().zip(divide(total, shares)) {
        *field(share) = part;
    }
}

/// A compute buffer on every device that holds a part of the model; the logits on the output's.
fn add_compute(
    plan: &mut [DeviceShare],
    facts: &ModelFacts,
    settings: &KvSettings,
    flash_attention: bool,
    shares: &[f64],
) {
    let full = compute_buffer_estimate(facts, settings.ctx, settings.n_ubatch, flash_attention);
    let logits = facts.n_vocab.unwrap_or(32000) * 4;
    for (share, &proportion) in plan.iter_mut().zip(shares) {
        let used = share.layers > 0 || share.output || proportion > 0.0;
        share.compute_bytes = match (used, share.output) {
            (false, _) => 0,
            (true, true) => full,
            (true, false) => full.saturating_sub(logits),
        };
        share.total_bytes = share.weights_bytes + share.kv_bytes + share.compute_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::gguf::GgmlType;
    use crate::model::facts::LayerAttention;
    use crate::model::plan::plan_kv;

    /// SmolLM2-135M's shape (30 layers, 9 heads, 3 KV heads of 64, tied embeddings of 49152 × 576).
    fn smollm2() -> ModelFacts {
        let layer = LayerAttention {
            n_head: 9,
            n_head_kv: 3,
            key_length: 64,
            value_length: 64,
            sliding_window: false,
            recurrent: false,
        };
        let embeddings = 49152 * 576 * 2;
        ModelFacts {
            architecture: "llama".into(),
            name: None,
            file_size: 0,
            parameters: 0,
            active_parameters: 0,
            tensor_bytes: embeddings + 30 * 3_000_000,
            bytes_by_type: Default::default(),
            bytes_by_role: [("embeddings".to_string(), embeddings)].into(),
            context_length: Some(8192),
            n_layer: 30,
            n_embd: 576,
            n_ff: 1536,
            n_vocab: Some(49152),
            layers: vec![layer; 30],
            ..Default::default()
        }
    }

    fn kv() -> KvSettings {
        let f16 = GgmlType::from_name("f16").unwrap();
        KvSettings::new(4096, f16, f16)
    }

    fn split(mode: SplitMode, ratios: &[f64]) -> Split {
        Split {
            mode,
            ratios: ratios.to_vec(),
            main_gpu: 0,
        }
    }

    #[test]
    fn layers_are_cut_into_contiguous_ranges_as_llama_cpp_does() {
        // 4 layers + output, -ts 1/1: fractions 0, .2, .4 on GPU 0; .6, .8 (output) on GPU 1.
        assert_eq!(layer_devices(4, &[1.0, 1.0]), [0, 0, 0, 1, 1]);
        assert_eq!(layer_devices(4, &[3.0, 1.0]), [0, 0, 0, 0, 1]);
        assert_eq!(layer_devices(4, &[0.0, 1.0]), [1, 1, 1, 1, 1]);
        assert_eq!(layer_devices(2, &[]), [0, 0, 0]);
    }

    #[test]
    fn a_layer_split_puts_each_layers_kv_with_it_and_the_output_last() {
        let facts = smollm2();
        let gib = 1 << 30;
        let plan = plan_devices(
            &facts,
            &kv(),
            true,
            &split(SplitMode::Layer, &[1.0, 1.0]),
            &[gib, gib],
        )
        .unwrap();
        let [first, second] = [&plan.devices[0], &plan.devices[1]];
        // 31 layers at fractions i/31: 0..=15 below one half, so 16 on GPU 0 and 14 + output on GPU 1.
        assert_eq!((first.layers, second.layers), (16, 14));
        assert!(second.output && !first.output);
        let whole = plan_kv(&facts, &kv()).unwrap().total_bytes;
        assert_eq!(first.kv_bytes + second.kv_bytes, whole);
        assert_eq!(first.kv_bytes, whole / 30 * 16);
        // The tied output duplicates the embeddings on GPU 1; the input embeddings stay on the host.
        assert_eq!(second.weights_bytes, 14 * 3_000_000 + 49152 * 576 * 2);
        assert_eq!(plan.host_bytes, 49152 * 576 * 2);
        assert!(plan.overflow().is_none());
    }

    #[test]
    fn a_device_too_small_for_its_share_is_the_overflow() {
        let facts = smollm2();
        let small = 100 << 20;
        let plan = plan_devices(
            &facts,
            &kv(),
            true,
            &split(SplitMode::Layer, &[1.0, 1.0]),
            &[1 << 30, small],
        )
        .unwrap();
        assert_eq!(plan.overflow().map(|d| d.device), Some(1));
        // The same devices with most layers on the big one fit.
        let plan = plan_devices(
            &facts,
            &kv(),
            true,
            &split(SplitMode::Layer, &[9.0, 1.0]),
            &[1 << 30, small],
        )
        .unwrap();
        assert!(plan.overflow().is_none(), "{:?}", plan.devices);
    }

    #[test]
    fn row_splits_weights_by_ratio_and_none_uses_the_main_gpu() {
        let facts = smollm2();
        let memory = [1 << 30, 1 << 30];
        let row = plan_devices(
            &facts,
            &kv(),
            true,
            &split(SplitMode::Row, &[3.0, 1.0]),
            &memory,
        )
        .unwrap();
        let weights: u64 = row.devices.iter().map(|d| d.weights_bytes).sum();
        assert_eq!(row.devices[1].weights_bytes, weights - weights * 3 / 4);
        let none = Split {
            main_gpu: 1,
            ..split(SplitMode::None, &[])
        };
        let none = plan_devices(&facts, &kv(), true, &none, &memory).unwrap();
        assert_eq!(none.devices[0].total_bytes, 0);
        assert_eq!((none.devices[1].layers, none.devices[1].output), (30, true));
    }

    #[test]
    fn flags_give_the_split_and_the_first_gpu_over_its_memory() {
        let flags: BTreeMap<String, String> = [("-sm", "row"), ("-ts", "3/1"), ("-mg", "1")]
            .map(|(f, v)| (f.into(), v.into()))
            .into();
        let split = Split::of_flags(&flags).unwrap();
        assert_eq!(
            (split.mode, split.ratios, split.main_gpu),
            (SplitMode::Row, vec![3.0, 1.0], 1)
        );
        assert_eq!(Split::of_flags(&BTreeMap::new()), Some(Split::default()));
        let even: BTreeMap<String, String> = [("-ts".to_string(), "1/1".to_string())].into();
        let note = overflow_note(&smollm2(), &kv(), &even, &[1 << 30, 100 << 20]).unwrap();
        assert!(
            note.starts_with("GPU 1 needs ") && note.ends_with(" of 100.00 MiB"),
            "{note}"
        );
        assert!(
            overflow_note(&smollm2(), &kv(), &even, &[100 << 20]).is_none(),
            "one GPU"
        );
    }

    #[test]
    fn tensor_split_divides_kv_too() {
        let facts = smollm2();
        let memory = [1 << 30, 1 << 30];
        let plan = plan_devices(
            &facts,
            &kv(),
            true,
            &split(SplitMode::Tensor, &[1.0, 1.0]),
            &memory,
        )
        .unwrap();
        let whole = plan_kv(&facts, &kv()).unwrap().total_bytes;
        assert_eq!(plan.devices[0].kv_bytes, whole / 2);
    }
}
