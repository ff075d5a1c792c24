//! bakeoff finds the fastest *faithful* way to run an LLM on given hardware, and keeps the evidence.
//!
//! The library is layered as in `DESIGN.md`; each module depends only on those listed before it:
//! [`domain`] (no I/O) → [`formats`] → [`model`] → [`chat`] → [`system`] → [`engines`] →
//! [`measure`] → [`quality`] → [`store`] → [`report`]; [`serve`] (saved profiles started behind a
//! readiness gate) and [`session`] (one measuring command's run and engine) sit beside [`report`].

pub mod chat;
pub mod domain;
pub mod engines;
pub mod error;
pub mod formats;
pub mod measure;
pub mod model;
pub mod quality;
pub mod report;
pub mod serve;
pub mod session;
pub mod store;
pub mod system;

pub use error::{Error, Result};

/// The version recorded with every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
