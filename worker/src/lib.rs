//! neuralign's job runner. The same loop runs in the `neuralign-worker`
//! binary (any number of processes on any number of machines, all pointed at
//! one Postgres) and inside `neuralign-server` for the one-machine default.
//! Compute runs off the async runtime on one long-lived compute thread per
//! slot (`compute`), with a cancellation token and a progress channel.

pub mod caches;
pub mod compute;
pub mod config;
pub mod jobs;
pub mod runner;
pub mod tensor_cache;

pub use config::WorkerConfig;
pub use runner::{spawn_reaper, spawn_workers};
