//! Tests of the race against a simulated evaluator.
