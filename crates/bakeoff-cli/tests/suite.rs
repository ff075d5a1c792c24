//! The integration tests, one binary: every module below is a `tests/<name>.rs` file. One binary
//! lets the test harness run any two tests side by side (an engine test beside one that waits on
//! a timeout), starts each shared engine and the PostgreSQL server once for the whole suite, and
//! links once. Run one file's tests with `cargo test --test suite <name>::`.

mod common;

mod audit;
mod bench;
mod builds;
mod cluster_examples;
mod doctor;
mod faults;
mod fixture;
mod gate;
mod hosts;
mod input;
mod journal;
mod lifecycle;
mod load;
mod model_template;
mod models;
mod monitor;
mod options;
mod pg_harness;
mod plan_exactness;
mod plan_gpus;
mod postgres;
mod profile;
mod push;
mod queue;
mod report;
mod serve;
mod shootout_report;
mod snapshots;
mod telemetry;
mod tools;
mod tune;
mod tune_load;
mod tune_save;
