//! bakeoff finds the fastest *faithful* way to run an LLM on given hardware, and keeps the evidence.
//!
//! The library is layered as in `DESIGN.md`; a module may use only its own layer and those below
//! (`tests/layers.rs` enforces it): [`domain`] and [`error`] (no I/O) → [`formats`] → [`model`]
//! and [`chat`] → [`system`] → [`engines`] → [`measure`] (results go to a
//! [`measure::sink::TrialSink`]) → [`quality`] → [`store`] → [`analysis`], [`report`], [`serve`]
//! and [`session`] (analysis of stored runs, reports, saved profiles started behind a readiness
//! gate, and one measuring command's run and engine).

pub mod analysis;
pub mod chat;
pub mod domain;
pub mod engines;
pub mod error;
pub mod formats;
pub mod measure;
pub mod model;
pub mod quality;
pub mod report;
pub mod search;
pub mod serve;
pub mod session;
pub mod store;
pub mod system;

pub use error::{Error, Result};

/// The version recorded with every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
