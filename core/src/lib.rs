//! neuralign's domain: types, the error type, configuration, the Postgres
//! store (blobs, arrays), the job queue and the service layer that both the
//! HTTP and gRPC transports call. This crate knows neither axum, tonic nor
//! tch: transports and compute depend on it, never the other way round.

pub mod architecture;
pub mod auth;
pub mod blobs;
pub mod budget;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod inference;
pub mod model;
pub mod notify;
pub mod npy;
pub mod queue;
pub mod resources;
pub mod service;
pub mod spool;

/// Recorded with every score.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The libtorch the workspace builds against (the PyPI `torch` wheel that
/// `tch` 0.26 expects; `scripts/setup.sh` installs exactly this).
pub const LIBTORCH_VERSION: &str = "2.13.0";

pub use auth::Caller;
pub use config::ServiceConfig;
pub use error::{Error, ErrorCode, Result};
pub use service::Service;
