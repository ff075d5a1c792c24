//! The vocabulary of bakeoff as plain data: engine configurations, units and metric names.
//! Nothing here performs I/O.

pub mod combine;
pub mod config;
pub mod rng;
pub mod seconds;
pub mod units;

pub use combine::Combine;
pub use config::EngineConfig;
pub use units::Unit;
