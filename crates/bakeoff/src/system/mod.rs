//! Facts about this machine and the places bakeoff keeps things: cache and data paths, the
//! hardware/OS fingerprint stored with every run, and the machine-wide measurement lock.

pub mod bandwidth;
pub mod fingerprint;
pub mod lock;
pub mod paths;

pub use fingerprint::Fingerprint;
pub use lock::MeasureLock;
