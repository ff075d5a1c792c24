//! The tool-call bakeoff (seed 001): run the same agentic tasks through an engine's JSON tools API
//! and through the model's native format (bakeoff renders the template, parses the spans), record
//! per-turn traces, and report where the arms diverge; plus a small BFCL-style single-turn set.

pub mod arms;
pub mod bfcl;
pub mod diverge;
pub mod episode;
pub mod grammar;
pub mod render;
pub mod task;
pub mod textdiff;

pub use arms::{Arm, ArmInfo, Endpoint, ForceTools, JsonArm, NativeArm, Sampling};
pub use episode::{Trace, Turn};
pub use task::Task;
