//! `tune`'s engine room: the search over candidate configurations. [`race`] decides what to
//! measure next (screen, race, explore) and why; the caller turns its requests into engine starts.

pub mod race;
