//! The search over a pruned space (written on another branch).
