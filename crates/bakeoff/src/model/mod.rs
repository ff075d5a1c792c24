//! Model intelligence from a GGUF file alone: architecture facts (`inspect`), a KV-cache and
//! memory planner that follows llama.cpp's own allocation rules (`plan`), and the roofline.

mod describe;
pub mod facts;
pub mod plan;
pub mod synth;

pub use facts::ModelFacts;
