//! Measurement: sweep expansion and scheduling, prompts with exact token counts, the bench runner
//! (through llama-server, or llama-bench in-process), statistics, noise detection and comparison.

pub mod bench;
pub mod compare;
mod describe;
pub mod journal;
pub mod llama_bench;
pub mod load;
pub mod matrix;
pub mod noise;
pub mod prompts;
pub mod stats;
