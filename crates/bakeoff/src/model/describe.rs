//! A model's facts in words, as `bakeoff model inspect` prints them: one line per fact, the
//! optional ones (sliding window, shared KV, MLA, experts, recurrent layers) only when present.

use super::ModelFacts;
use crate::domain::units::human_bytes;
use std::collections::{BTreeMap, BTreeSet};

impl ModelFacts {
    /// The inspect lines, each starting with two spaces and a padded label.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "  architecture   {}{}",
                self.architecture,
                self.display_name()
            ),
            format!("  parameters     {}", self.parameter_text()),
            format!(
                "  file size      {} (tensor data {})",
                human_bytes(self.file_size),
                human_bytes(self.tensor_bytes)
            ),
            format!("  context length {}", or_unknown(self.context_length)),
            format!("  by type        {}", bytes_list(&self.bytes_by_type)),
            format!("  by role        {}", bytes_list(&self.bytes_by_role)),
            self.attention_line(),
        ];
        lines.extend(self.optional_lines());
        lines.push(self.tokenizer_line());
        lines.push(format!("  chat template  {}", self.template_text()));
        lines.extend(
            self.split_count
                .map(|n| format!("  split          {n} files")),
        );
        lines.extend(self.notes.iter().map(|note| format!("  note: {note}")));
        lines
    }

    fn display_name(&self) -> String {
        self.name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    }

    fn parameter_text(&self) -> String {
        let total = format!("{:.2} M", self.parameters as f64 / 1e6);
        if self.active_parameters == self.parameters {
            return total;
        }
        let active = self.active_parameters as f64 / 1e6;
        format!("{total}, {active:.2} M active per token")
    }

    fn attention_line(&self) -> String {
        let first = self.layers.first();
        let kv_heads: BTreeSet<u64> = self.layers.iter().map(|l| l.n_head_kv).collect();
        format!(
            "  attention      {} layers, {} heads, KV heads {kv_heads:?}, head dims K {} / V {}",
            self.n_layer,
            first.map(|l| l.n_head).unwrap_or(0),
            first.map(|l| l.key_length).unwrap_or(0),
            first.map(|l| l.value_length).unwrap_or(0)
        )
    }

    /// Lines for the architecture features only some models have.
    fn optional_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.sliding_window.map(|w| self.window_line(w)));
        if self.shared_kv_layers > 0 {
            let n = self.shared_kv_layers;
            lines.push(format!(
                "  shared KV      last {n} layers reuse earlier layers' KV"
            ));
        }
        if let Some(rank) = self.kv_lora_rank {
            let q = self.q_lora_rank.map_or("-".into(), |r| r.to_string());
            lines.push(format!(
                "  MLA            kv_lora_rank {rank}, q_lora_rank {q}"
            ));
        }
        if let (Some(n), Some(k)) = (self.expert_count, self.expert_used_count) {
            lines.push(format!("  experts        {k} of {n} per token"));
        }
        lines.extend(self.recurrent_line());
        lines
    }

    fn window_line(&self, window: u64) -> String {
        let pattern: String = self
            .layers
            .iter()
            .map(|l| if l.sliding_window { 'S' } else { 'F' })
            .collect();
        format!("  sliding window {window} tokens; layers (S=windowed, F=full): {pattern}")
    }

    fn recurrent_line(&self) -> Option<String> {
        let recurrent = self.layers.iter().filter(|l| l.recurrent).count();
        (recurrent > 0 || self.ssm_state_size.is_some()).then(|| {
            let state = self.ssm_state_size.unwrap_or(0);
            format!("  recurrent      {recurrent} SSM layers (state size {state})")
        })
    }

    fn tokenizer_line(&self) -> String {
        format!(
            "  tokenizer      {} ({} tokens)",
            self.tokenizer_model.as_deref().unwrap_or("?"),
            or_unknown(self.n_vocab)
        )
    }

    fn template_text(&self) -> String {
        self.chat_template_sha256
            .as_ref()
            .map(|h| format!("present (sha256 {h}…)"))
            .unwrap_or_else(|| "none".into())
    }
}

fn or_unknown(value: Option<u64>) -> String {
    value.map_or_else(|| "?".into(), |v| v.to_string())
}

/// `name SIZE, name SIZE, ...`
fn bytes_list(bytes: &BTreeMap<String, u64>) -> String {
    bytes
        .iter()
        .map(|(name, b)| format!("{name} {}", human_bytes(*b)))
        .collect::<Vec<_>>()
        .join(", ")
}
