//! The KV-cache and memory planner. It follows llama.cpp's allocation rules (b11434):
//! - context padded to 256 cells; with `--parallel P` and no unified cache, P streams of
//!   `pad(ctx / P, 256)` cells each, otherwise one stream of `ctx` cells;
//! - per layer, K is `row_size(type_k, head_dim_k · n_head_kv(layer))` bytes per cell, V likewise;
//! - sliding-window layers get their own cache of `pad(min(ctx, window·(unified ? P : 1) + n_ubatch), 256)` cells;
//! - layers that share another layer's KV (gemma3n) and recurrent layers allocate no KV; recurrent
//!   layers hold a fixed F32 state per sequence instead.

use super::facts::ModelFacts;
use crate::formats::gguf::GgmlType;
use serde::Serialize;

/// llama.cpp's default physical batch.
pub const DEFAULT_UBATCH: u64 = 512;
const PAD: u64 = 256;

fn pad(n: u64) -> u64 {
    n.div_ceil(PAD) * PAD
}

#[derive(Debug, Clone)]
pub struct KvSettings {
    pub ctx: u64,
    pub parallel: u64,
    pub type_k: GgmlType,
    pub type_v: GgmlType,
    pub unified: bool,
    pub n_ubatch: u64,
    /// `--swa-full`: sliding-window layers get a full-size cache.
    pub swa_full: bool,
}

impl KvSettings {
    pub fn new(ctx: u64, type_k: GgmlType, type_v: GgmlType) -> Self {
        KvSettings {
            ctx,
            parallel: 1,
            type_k,
            type_v,
            unified: false,
            n_ubatch: DEFAULT_UBATCH,
            swa_full: false,
        }
    }
}

/// One KV cache as llama.cpp allocates it (and logs it: `llama_kv_cache: size = …`).
#[derive(Debug, Clone, Serialize)]
pub struct CachePlan {
    /// `full` or `swa`.
    pub kind: String,
    /// Cells per stream (what the log calls cells).
    pub cells: u64,
    pub streams: u64,
    pub layers: u64,
    pub k_bytes: u64,
    pub v_bytes: u64,
}

impl CachePlan {
    pub fn bytes(&self) -> u64 {
        self.k_bytes + self.v_bytes
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KvPlan {
    pub ctx: u64,
    pub caches: Vec<CachePlan>,
    /// Recurrent-layer state for all sequences (hybrid and SSM models).
    pub recurrent_bytes: u64,
    pub total_bytes: u64,
    /// Bytes one more token of context adds while it is inside every window.
    pub bytes_per_token: u64,
}

/// KV bytes per cell for one layer.
fn layer_cell_bytes(facts: &ModelFacts, il: usize, s: &KvSettings) -> Option<(u64, u64)> {
    let layer = &facts.layers[il];
    let (k_dim, v_dim) = match facts.kv_lora_rank {
        // MLA caches the compressed latent (plus the rope part for K).
        Some(rank) => (
            rank + layer.key_length.saturating_sub(layer.value_length).max(64),
            rank,
        ),
        None => (
            layer.key_length * layer.n_head_kv,
            layer.value_length * layer.n_head_kv,
        ),
    };
    Some((s.type_k.row_bytes(k_dim)?, s.type_v.row_bytes(v_dim)?))
}

/// Cells per stream: (streams, full-attention cells, sliding-window cells).
fn cache_cells(facts: &ModelFacts, s: &KvSettings) -> (u64, u64, u64) {
    let n_ctx = pad(s.ctx.max(1));
    let parallel = s.parallel.max(1);
    let (streams, size_base) = if s.unified || parallel == 1 {
        (1, n_ctx)
    } else {
        (parallel, pad(n_ctx / parallel))
    };
    let window = facts.sliding_window.unwrap_or(0);
    let size_swa = if s.swa_full {
        size_base
    } else {
        pad(size_base.min(window * if s.unified { parallel } else { 1 } + s.n_ubatch))
    };
    (streams, size_base, size_swa)
}

/// One layer's KV: its cache (`None` when the layer allocates none) and bytes per cell (K, V).
fn layer_kv(
    facts: &ModelFacts,
    il: usize,
    s: &KvSettings,
) -> Option<Option<(&'static str, u64, u64)>> {
    let kv_layers = facts
        .layers
        .len()
        .saturating_sub(facts.shared_kv_layers as usize);
    let layer = &facts.layers[il];
    if il >= kv_layers || layer.recurrent || layer.n_head_kv == 0 && facts.kv_lora_rank.is_none() {
        return Some(None);
    }
    let (k, v) = layer_cell_bytes(facts, il, s)?;
    let swa = layer.sliding_window && facts.sliding_window.unwrap_or(0) > 0;
    Some(Some((if swa { "swa" } else { "full" }, k, v)))
}

/// The KV bytes each layer allocates (recurrent layers: their state for every sequence), in
/// layer order: what a layer split puts on the layer's device. `None` as for [`plan_kv`].
pub fn kv_bytes_by_layer(facts: &ModelFacts, s: &KvSettings) -> Option<Vec<u64>> {
    let (streams, size_base, size_swa) = cache_cells(facts, s);
    let recurrent_layers = facts.layers.iter().filter(|l| l.recurrent).count() as u64;
    let state = (recurrent_state_bytes(facts) * s.parallel.max(1))
        .checked_div(recurrent_layers)
        .unwrap_or(0);
    (0..facts.layers.len())
        .map(|il| {
            Some(match layer_kv(facts, il, s)? {
                Some((kind, k, v)) => {
                    let cells = if kind == "swa" { size_swa } else { size_base };
                    (k + v) * cells * streams
                }
                None if facts.layers[il].recurrent => state,
                None => 0,
            })
        })
        .collect()
}

/// Plan the KV cache for `settings`. `None` when a cache type cannot hold the model's rows
/// (a head dimension that is not a multiple of the type's block size).
pub fn plan_kv(facts: &ModelFacts, s: &KvSettings) -> Option<KvPlan> {
    let n_ctx = pad(s.ctx.max(1));
    let (streams, size_base, size_swa) = cache_cells(facts, s);
    let cache = |kind: &str, cells| CachePlan {
        kind: kind.into(),
        cells,
        streams,
        layers: 0,
        k_bytes: 0,
        v_bytes: 0,
    };
    let (mut full, mut swa) = (cache("full", size_base), cache("swa", size_swa));
    let mut bytes_per_token = 0;
    for il in 0..facts.layers.len() {
        let Some((kind, k, v)) = layer_kv(facts, il, s)? else {
            continue;
        };
        bytes_per_token += k + v;
        let cache = if kind == "swa" { &mut swa } else { &mut full };
        cache.layers += 1;
        cache.k_bytes += k * cache.cells * streams;
        cache.v_bytes += v * cache.cells * streams;
    }
    let caches: Vec<CachePlan> = [full, swa].into_iter().filter(|c| c.layers > 0).collect();
    let recurrent_bytes = recurrent_state_bytes(facts) * s.parallel.max(1);
    let total_bytes = caches.iter().map(CachePlan::bytes).sum::<u64>() + recurrent_bytes;
    Some(KvPlan {
        ctx: n_ctx,
        caches,
        recurrent_bytes,
        total_bytes,
        bytes_per_token,
    })
}

/// F32 recurrent state per sequence: conv state `(d_conv − 1) · d_inner` plus SSM state
/// `d_state · d_inner`, per recurrent layer (Mamba-style; an estimate for other recurrences).
fn recurrent_state_bytes(facts: &ModelFacts) -> u64 {
    let layers = facts.layers.iter().filter(|l| l.recurrent).count() as u64;
    match (facts.ssm_state_size, facts.ssm_inner_size) {
        (Some(d_state), Some(d_inner)) => {
            let conv = facts.ssm_conv_kernel.unwrap_or(4).saturating_sub(1) * d_inner;
            layers * (conv + d_state * d_inner) * 4
        }
        _ => 0,
    }
}

/// A rough compute-buffer estimate (llama.cpp sizes it by reserving the worst-case graph): the
/// output logits of one token per sequence, FFN and attention activations for one ubatch, and
/// attention scores for the whole context when flash attention is off. An estimate, not a plan.
pub fn compute_buffer_estimate(
    facts: &ModelFacts,
    ctx: u64,
    n_ubatch: u64,
    flash_attention: bool,
) -> u64 {
    let vocab = facts.n_vocab.unwrap_or(32000);
    let heads = facts.layers.first().map(|l| l.n_head).unwrap_or(1);
    let logits = vocab * 4;
    let activations = n_ubatch * 4 * (3 * facts.n_ff + 4 * facts.n_embd);
    let scores = if flash_attention {
        0
    } else {
        heads * pad(ctx) * n_ubatch * 4
    };
    logits + activations + scores
}

/// The cache types of the planning table (as in hand-made "KV savings" tables).
pub const TABLE_TYPES: [&str; 8] = [
    "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl",
];

/// Weights + KV + compute estimate for a context.
pub fn memory_needed(facts: &ModelFacts, s: &KvSettings, flash_attention: bool) -> Option<u64> {
    let kv = plan_kv(facts, s)?;
    Some(
        facts.tensor_bytes
            + kv.total_bytes
            + compute_buffer_estimate(facts, s.ctx, s.n_ubatch, flash_attention),
    )
}

/// The largest context (a multiple of 256, at most the trained context unless `allow_beyond`)
/// whose weights + KV + compute estimate fit in `budget` bytes.
pub fn largest_context(
    facts: &ModelFacts,
    base: &KvSettings,
    budget: u64,
    flash_attention: bool,
) -> Option<u64> {
    let limit = facts.context_length.unwrap_or(131_072).max(PAD);
    let fits = |ctx: u64| {
        memory_needed(
            facts,
            &KvSettings {
                ctx,
                ..base.clone()
            },
            flash_attention,
        )
        .is_some_and(|m| m <= budget)
    };
    if !fits(PAD) {
        return None;
    }
    let (mut lo, mut hi) = (1u64, limit / PAD);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid * PAD) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo * PAD)
}

/// One cache type's plan at the planned context; `bakeoff plan --json` lists these under `table`.
#[derive(Debug, Clone, Serialize)]
pub struct KvTypeRow {
    #[serde(rename = "type")]
    pub kind: String,
    pub bytes_per_token: u64,
    pub total_bytes: u64,
    /// The largest context that fits the budget (`None` without a budget or when none fits).
    pub largest_context: Option<u64>,
}

/// What a model needs at some settings: its KV plan, weights, compute estimate and total, how
/// that compares with a memory budget, each cache type's cost, and the tg roofline.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryPlan {
    pub kv: KvPlan,
    pub weights_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    pub budget_bytes: Option<u64>,
    /// The largest context whose total fits the budget, at these settings.
    pub largest_context: Option<u64>,
    /// Every cache type of [`TABLE_TYPES`] the model's rows allow, for both caches.
    pub by_type: Vec<KvTypeRow>,
    /// Weights plus KV read per generated token at `depth`.
    pub bytes_read_per_token: u64,
    pub depth: u64,
    /// tg upper bound from memory bandwidth, when the bandwidth is known.
    pub roofline_tg: Option<f64>,
}

impl MemoryPlan {
    /// `None` when the settings' cache types cannot hold the model's rows.
    pub fn of(
        facts: &ModelFacts,
        settings: &KvSettings,
        flash_attention: bool,
        budget: Option<u64>,
        depth: u64,
        bandwidth_bytes_per_s: Option<f64>,
    ) -> Option<MemoryPlan> {
        let kv = plan_kv(facts, settings)?;
        let compute =
            compute_buffer_estimate(facts, settings.ctx, settings.n_ubatch, flash_attention);
        let largest =
            |s: &KvSettings| budget.and_then(|b| largest_context(facts, s, b, flash_attention));
        let by_type = TABLE_TYPES
            .iter()
            .filter_map(|name| {
                let ty = GgmlType::from_name(name)?;
                let typed = KvSettings {
                    type_k: ty,
                    type_v: ty,
                    ..settings.clone()
                };
                let p = plan_kv(facts, &typed)?;
                Some(KvTypeRow {
                    kind: name.to_string(),
                    bytes_per_token: p.bytes_per_token,
                    total_bytes: p.total_bytes,
                    largest_context: largest(&typed),
                })
            })
            .collect();
        let roofline =
            bandwidth_bytes_per_s.map(|bw| roofline_tg(facts, kv.bytes_per_token, depth, bw));
        Some(MemoryPlan {
            weights_bytes: facts.tensor_bytes,
            compute_bytes: compute,
            total_bytes: facts.tensor_bytes + kv.total_bytes + compute,
            budget_bytes: budget,
            largest_context: largest(settings),
            by_type,
            bytes_read_per_token: facts.bytes_read_per_token() + kv.bytes_per_token * depth,
            depth,
            roofline_tg: roofline,
            kv,
        })
    }

    /// Whether the total fits the budget (`None` without one).
    pub fn fits(&self) -> Option<bool> {
        self.budget_bytes.map(|b| self.total_bytes <= b)
    }
}

/// Upper bound on generation speed: bandwidth / bytes read per token (weights + KV at `depth`).
pub fn roofline_tg(
    facts: &ModelFacts,
    kv_bytes_per_token: u64,
    depth: u64,
    bandwidth_bytes_per_s: f64,
) -> f64 {
    let bytes = facts.bytes_read_per_token() + kv_bytes_per_token * depth;
    bandwidth_bytes_per_s / bytes as f64
}

/// The tg roofline for an engine configuration (`-ctk`/`-ctv` flags, f16 by default) at `depth`.
pub fn roofline_for_flags(
    facts: &ModelFacts,
    flags: &std::collections::BTreeMap<String, String>,
    depth: u64,
    bandwidth_bytes_per_s: f64,
) -> Option<f64> {
    let cache =
        |flag: &str| GgmlType::from_name(flags.get(flag).map(String::as_str).unwrap_or("f16"));
    let kv = plan_kv(
        facts,
        &KvSettings::new(depth.max(1), cache("-ctk")?, cache("-ctv")?),
    )?;
    Some(roofline_tg(
        facts,
        kv.bytes_per_token,
        depth,
        bandwidth_bytes_per_s,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::facts::LayerAttention;

    fn toy(layers: usize, window: Option<u64>, swa_every: usize) -> ModelFacts {
        let layer = |il: usize| LayerAttention {
            n_head: 8,
            n_head_kv: 2,
            key_length: 64,
            value_length: 64,
            sliding_window: window.is_some() && il % swa_every < swa_every - 1,
            recurrent: false,
        };
        ModelFacts {
            architecture: "toy".into(),
            name: None,
            file_size: 0,
            parameters: 0,
            active_parameters: 0,
            tensor_bytes: 1 << 20,
            bytes_by_type: Default::default(),
            bytes_by_role: Default::default(),
            context_length: Some(8192),
            n_layer: layers as u64,
            n_embd: 512,
            n_ff: 2048,
            n_vocab: Some(1000),
            layers: (0..layers).map(layer).collect(),
            sliding_window: window,
            ..Default::default()
        }
    }

    #[test]
    fn gqa_f16_cache_is_rows_times_cells() {
        let f16 = GgmlType::from_name("f16").unwrap();
        let plan = plan_kv(&toy(4, None, 1), &KvSettings::new(1000, f16, f16)).unwrap();
        // 1000 → 1024 cells; K and V: 2 heads × 64 dims × 2 bytes × 1024 cells × 4 layers each.
        assert_eq!(plan.ctx, 1024);
        assert_eq!(plan.total_bytes, 2 * 2 * 64 * 2 * 1024 * 4);
    }

    #[test]
    fn sliding_window_layers_cache_only_the_window() {
        let q8 = GgmlType::from_name("q8_0").unwrap();
        let plan = plan_kv(&toy(6, Some(512), 3), &KvSettings::new(8192, q8, q8)).unwrap();
        let swa = plan.caches.iter().find(|c| c.kind == "swa").unwrap();
        assert_eq!(
            (swa.layers, swa.cells),
            (4, 1024),
            "window 512 + ubatch 512"
        );
        let full = plan.caches.iter().find(|c| c.kind == "full").unwrap();
        assert_eq!((full.layers, full.cells), (2, 8192));
    }

    #[test]
    fn parallel_streams_split_the_context() {
        let f16 = GgmlType::from_name("f16").unwrap();
        let s = KvSettings {
            parallel: 4,
            ..KvSettings::new(4096, f16, f16)
        };
        let plan = plan_kv(&toy(2, None, 1), &s).unwrap();
        assert_eq!((plan.caches[0].cells, plan.caches[0].streams), (1024, 4));
        let unified = plan_kv(&toy(2, None, 1), &KvSettings { unified: true, ..s }).unwrap();
        assert_eq!(
            (unified.caches[0].cells, unified.caches[0].streams),
            (4096, 1)
        );
        assert_eq!(plan.total_bytes, unified.total_bytes);
    }

    #[test]
    fn largest_context_fits_the_budget() {
        let f16 = GgmlType::from_name("f16").unwrap();
        let facts = toy(4, None, 1);
        let base = KvSettings::new(256, f16, f16);
        let budget = 64 << 20;
        let ctx = largest_context(&facts, &base, budget, true).unwrap();
        assert!(
            memory_needed(
                &facts,
                &KvSettings {
                    ctx,
                    ..base.clone()
                },
                true
            )
            .unwrap()
                <= budget
        );
        assert!(
            ctx == 8192
                || memory_needed(
                    &facts,
                    &KvSettings {
                        ctx: ctx + 256,
                        ..base
                    },
                    true
                )
                .unwrap()
                    > budget
        );
    }
}
