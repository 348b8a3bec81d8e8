//! What each fuzz target checks, one module per parser: `check(bytes)` panics when an input
//! breaks one of the webhook's promises. libFuzzer drives them from `fuzz_targets/` (`make
//! fuzz`); `tests/seeds.rs` replays the seeds, and so every input a run once found, on every
//! `make test`.

pub mod policy;
pub mod review;
pub mod user_options;
pub mod xnat_answers;
