//! Server configuration: one typed struct from flags and environment.

use std::net::SocketAddr;

use neuralign_core::ServiceConfig;
use neuralign_worker::WorkerConfig;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "neuralign-server",
    version,
    about = "neuralign API server (HTTP + gRPC) with in-process workers"
)]
pub struct ServerConfig {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// HTTP listen address.
    #[arg(long, env = "NEURALIGN_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC listen address.
    #[arg(long, env = "NEURALIGN_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Admin API key to register; when unset, one is created on first start
    /// and printed once.
    #[arg(long, env = "NEURALIGN_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Run job workers inside the server process (set false when separate
    /// `neuralign-worker` processes do the work).
    #[arg(long, env = "NEURALIGN_IN_PROCESS_WORKERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub in_process_workers: bool,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "NEURALIGN_MAX_JSON_BYTES", default_value_t = 1 << 20)]
    pub max_json_bytes: usize,
    /// After start, create a demo lab, upload two arrays and run a compare job.
    #[arg(long, env = "NEURALIGN_DEMO", default_value_t = false)]
    pub demo: bool,
    #[command(flatten)]
    pub service: ServiceConfig,
    #[command(flatten)]
    pub worker: WorkerConfig,
}
