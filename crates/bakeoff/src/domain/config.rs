//! An engine configuration: the flags an engine was started with, in a canonical form whose hash
//! identifies the configuration across runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Engine flags as `flag → value` (value empty for switches), plus pass-through arguments kept in
/// order. Two configs with the same flags in a different order are the same config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub flags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

impl EngineConfig {
    pub fn with_flag(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.flags.insert(flag.to_string(), value.into());
        self
    }

    /// Canonical JSON: keys sorted, no whitespace.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// First 16 hex digits of the SHA-256 of the canonical JSON.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The argument vector to hand to the engine (flags sorted, then the pass-through arguments).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in &self.flags {
            args.push(flag.clone());
            if !value.is_empty() {
                args.push(value.clone());
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// A short human label such as `-ctk q8_0 -fa on`.
    pub fn label(&self) -> String {
        let args = self.args();
        if args.is_empty() {
            "(defaults)".to_string()
        } else {
            args.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_insertion_order() {
        let a = EngineConfig::default()
            .with_flag("-ctk", "q8_0")
            .with_flag("-fa", "on");
        let b = EngineConfig::default()
            .with_flag("-fa", "on")
            .with_flag("-ctk", "q8_0");
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), EngineConfig::default().hash());
        assert_eq!(a.args(), ["-ctk", "q8_0", "-fa", "on"]);
    }
}
