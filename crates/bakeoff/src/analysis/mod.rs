//! Analysis of stored runs: comparisons of two runs cell by cell (ratios, bootstrap CIs,
//! Mann–Whitney tests) and the journal's proposed verdicts. It reads the store; it measures nothing.

pub mod compare;
pub mod journal;
pub mod tune_journal;
