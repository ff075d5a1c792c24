//! What a GGUF file says about a model: per-layer attention layout (heads, KV heads, head dims,
//! sliding-window layers, shared-KV layers, MLA, recurrent layers), parameters (total and active
//! per token for MoE) and tensor bytes by type and by role.

use crate::formats::gguf::{GgufFile, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Default sliding-window patterns llama.cpp applies when the file does not carry one
/// (`load_swa_pattern(ml, n, dense_first)` in its model sources): (arch, n, dense_first).
const SWA_PATTERNS: &[(&str, u32, bool)] = &[
    ("gemma2", 2, false),
    ("gemma3", 6, false),
    ("gemma-embedding", 6, false),
    ("gemma3n", 5, false),
    ("cohere2", 4, false),
    ("llama4", 4, false),
    ("olmo2", 4, false),
    ("exaone4", 4, false),
    ("gpt-oss", 2, false),
    ("openai-moe", 2, false),
    ("smallthinker", 4, true),
    ("plamo3", 8, false),
];

#[derive(Debug, Clone, Serialize)]
pub struct LayerAttention {
    pub n_head: u64,
    pub n_head_kv: u64,
    pub key_length: u64,
    pub value_length: u64,
    pub sliding_window: bool,
    /// Recurrent (SSM) layer: no KV cache, fixed state instead.
    pub recurrent: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelFacts {
    pub architecture: String,
    pub name: Option<String>,
    pub file_size: u64,
    pub parameters: u64,
    /// Parameters used per token (differs from `parameters` for mixture-of-experts models).
    pub active_parameters: u64,
    pub tensor_bytes: u64,
    pub bytes_by_type: BTreeMap<String, u64>,
    pub bytes_by_role: BTreeMap<String, u64>,
    pub context_length: Option<u64>,
    pub n_layer: u64,
    pub n_embd: u64,
    /// FFN hidden size (first layer's, when it varies).
    pub n_ff: u64,
    pub n_vocab: Option<u64>,
    pub layers: Vec<LayerAttention>,
    pub sliding_window: Option<u64>,
    /// Layers that reuse another layer's KV cache (gemma3n-style), counted from the end.
    pub shared_kv_layers: u64,
    pub kv_lora_rank: Option<u64>,
    pub q_lora_rank: Option<u64>,
    pub expert_count: Option<u64>,
    pub expert_used_count: Option<u64>,
    pub ssm_state_size: Option<u64>,
    pub ssm_conv_kernel: Option<u64>,
    pub ssm_inner_size: Option<u64>,
    pub tokenizer_model: Option<String>,
    pub chat_template_sha256: Option<String>,
    pub split_count: Option<u64>,
    pub notes: Vec<String>,
}

/// A tensor's role, from its name.
pub fn role(name: &str) -> &'static str {
    if name.starts_with("token_embd") || name.starts_with("per_layer_token_embd") {
        "embeddings"
    } else if name.starts_with("output.") || name == "output" {
        "output"
    } else if name.contains("_exps") || name.contains("_shexp") && name.contains("exp") {
        if name.contains("_shexp") {
            "ffn"
        } else {
            "experts"
        }
    } else if name.contains(".attn_") {
        "attention"
    } else if name.contains(".ffn_") {
        "ffn"
    } else if name.contains(".ssm_") {
        "recurrent"
    } else if name.contains("norm") {
        "norm"
    } else {
        "other"
    }
}

/// A per-layer value that may be a scalar or an array.
fn per_layer(file: &GgufFile, key: &str, n_layer: u64) -> Option<Vec<u64>> {
    match file.get(key)? {
        Value::Array(items) => {
            let values: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
            (values.len() as u64 == n_layer).then_some(values)
        }
        value => value.as_u64().map(|v| vec![v; n_layer as usize]),
    }
}

fn swa_layers(file: &GgufFile, arch: &str, n_layer: u64, notes: &mut Vec<String>) -> Vec<bool> {
    let window = file
        .get_u64(&format!("{arch}.attention.sliding_window"))
        .unwrap_or(0);
    if window == 0 {
        return vec![false; n_layer as usize];
    }
    let key = format!("{arch}.attention.sliding_window_pattern");
    if let Some(Value::Array(items)) = file.get(&key) {
        if items.len() as u64 == n_layer {
            return items.iter().map(|v| v.as_u64().unwrap_or(0) != 0).collect();
        }
    }
    let (n, dense_first) = match file.get_u64(&key) {
        Some(n) => (
            n as u32,
            SWA_PATTERNS
                .iter()
                .find(|p| p.0 == arch)
                .is_some_and(|p| p.2),
        ),
        None => match SWA_PATTERNS.iter().find(|p| p.0 == arch) {
            Some(&(_, n, dense_first)) => (n, dense_first),
            None => {
                notes.push(format!("{arch}: sliding window {window} without a known layer pattern; treating every layer as windowed"));
                (0, false)
            }
        },
    };
    (0..n_layer as u32)
        .map(|il| {
            if dense_first {
                n == 0 || il % n != 0
            } else {
                n == 0 || il % n < n - 1
            }
        })
        .collect()
}

impl ModelFacts {
    pub fn from_gguf(file: &GgufFile) -> Self {
        let arch = file.architecture().unwrap_or("unknown").to_string();
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let mut notes = Vec::new();
        let n_layer = file.get_u64(&key("block_count")).unwrap_or(0);
        let n_embd = file.get_u64(&key("embedding_length")).unwrap_or(0);
        let heads = per_layer(file, &key("attention.head_count"), n_layer)
            .unwrap_or_else(|| vec![0; n_layer as usize]);
        let heads_kv = per_layer(file, &key("attention.head_count_kv"), n_layer)
            .unwrap_or_else(|| heads.clone());
        let swa = swa_layers(file, &arch, n_layer, &mut notes);
        let default_head_dim = |il: usize| n_embd.checked_div(heads[il]).unwrap_or(0);
        let key_length = file.get_u64(&key("attention.key_length"));
        let value_length = file.get_u64(&key("attention.value_length"));
        let key_length_swa = file.get_u64(&key("attention.key_length_swa"));
        let value_length_swa = file.get_u64(&key("attention.value_length_swa"));
        let ssm_state = file.get_u64(&key("ssm.state_size"));
        let layers = (0..n_layer as usize)
            .map(|il| {
                let windowed = swa[il];
                let k = if windowed {
                    key_length_swa.or(key_length)
                } else {
                    key_length
                };
                let v = if windowed {
                    value_length_swa.or(value_length)
                } else {
                    value_length
                };
                LayerAttention {
                    n_head: heads[il],
                    n_head_kv: heads_kv[il],
                    key_length: k.unwrap_or_else(|| default_head_dim(il)),
                    value_length: v.unwrap_or_else(|| default_head_dim(il)),
                    sliding_window: windowed,
                    // Hybrid models mark recurrent layers with zero KV heads.
                    recurrent: ssm_state.is_some() && heads_kv[il] == 0,
                }
            })
            .collect();
        let mut bytes_by_type = BTreeMap::new();
        let mut bytes_by_role = BTreeMap::new();
        let (mut parameters, mut expert_params) = (0u64, 0u64);
        for t in &file.tensors {
            *bytes_by_type
                .entry(t.ggml_type.name().to_string())
                .or_insert(0) += t.bytes();
            let r = role(&t.name);
            *bytes_by_role.entry(r.to_string()).or_insert(0) += t.bytes();
            parameters += t.elements();
            if r == "experts" {
                expert_params += t.elements();
            }
        }
        let expert_count = file.get_u64(&key("expert_count")).filter(|&n| n > 0);
        let expert_used_count = file.get_u64(&key("expert_used_count")).filter(|&n| n > 0);
        let active_parameters = match (expert_count, expert_used_count) {
            (Some(n), Some(k)) => parameters - expert_params + expert_params * k / n,
            _ => parameters,
        };
        let chat_template_sha256 = file.get_str("tokenizer.chat_template").map(|t| {
            Sha256::digest(t.as_bytes())
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        ModelFacts {
            name: file.get_str("general.name").map(str::to_string),
            file_size: file.file_size,
            parameters,
            active_parameters,
            tensor_bytes: file.tensors.iter().map(|t| t.bytes()).sum(),
            bytes_by_type,
            bytes_by_role,
            context_length: file.get_u64(&key("context_length")),
            n_layer,
            n_embd,
            n_ff: per_layer(file, &key("feed_forward_length"), n_layer)
                .and_then(|v| v.into_iter().max())
                .unwrap_or(4 * n_embd),
            n_vocab: file
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(|a| a.len() as u64)
                .or_else(|| file.get_u64(&key("vocab_size"))),
            layers,
            sliding_window: file
                .get_u64(&key("attention.sliding_window"))
                .filter(|&w| w > 0),
            shared_kv_layers: file
                .get_u64(&key("attention.shared_kv_layers"))
                .unwrap_or(0),
            kv_lora_rank: file.get_u64(&key("attention.kv_lora_rank")),
            q_lora_rank: file.get_u64(&key("attention.q_lora_rank")),
            expert_count,
            expert_used_count,
            ssm_state_size: ssm_state,
            ssm_conv_kernel: file.get_u64(&key("ssm.conv_kernel")),
            ssm_inner_size: file.get_u64(&key("ssm.inner_size")),
            tokenizer_model: file.get_str("tokenizer.ggml.model").map(str::to_string),
            chat_template_sha256,
            split_count: file.get_u64("split.count"),
            architecture: arch,
            notes,
        }
    }

    /// Weight bytes read per generated token: every tensor except the embedding table (one row
    /// is read); for MoE, shared weights plus the active share of the experts.
    pub fn bytes_read_per_token(&self) -> u64 {
        // With tied embeddings (no output tensor) the whole embedding matrix is read as the output.
        let tied = !self.bytes_by_role.contains_key("output");
        let embeddings = if tied {
            0
        } else {
            self.bytes_by_role.get("embeddings").copied().unwrap_or(0)
        };
        let experts = self.bytes_by_role.get("experts").copied().unwrap_or(0);
        let dense = self.tensor_bytes - embeddings - experts;
        let active_experts = match (self.expert_count, self.expert_used_count) {
            (Some(n), Some(k)) => experts * k / n,
            _ => experts,
        };
        dense + active_experts
    }
}
