//! Measurement: sweep expansion, scheduling, statistics, load generation, noise detection.
