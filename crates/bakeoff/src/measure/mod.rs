//! Measurement: sweep expansion and scheduling, prompts with exact token counts, the bench runner
//! (through llama-server, or llama-bench in-process), statistics, load generation, noise detection
//! and sharding a sweep across hosts; results go to a [`sink::TrialSink`].

pub mod bench;
mod describe;
pub mod experiment;
pub mod llama_bench;
pub mod load;
pub mod matrix;
pub mod noise;
pub mod prompts;
pub mod shard;
pub mod sink;
pub mod stats;
pub mod watch;
