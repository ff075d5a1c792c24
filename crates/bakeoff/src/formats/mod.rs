//! Parsers for what engines and models hand us: GGUF files, server-sent-event and NDJSON streams,
//! llama-bench JSON, settings files. Every parser of untrusted bytes returns errors naming the
//! position at fault.

pub mod config_file;
pub mod gguf;
pub mod ndjson;
pub mod sse;
