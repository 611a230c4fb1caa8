//! neuralign's API server: axum HTTP on one port and tonic gRPC on another,
//! both thin adapters over `neuralign_core::Service`, sharing state and one
//! cancellation token, with job workers running in-process by default.

pub mod config;
pub mod demo;
pub mod error_map;
pub mod grpc;
pub mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use neuralign_core::{auth, blobs, db, notify::Notifications, Service};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;

/// Bound sockets, so tests can listen on port 0 and learn the ports.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &ServerConfig) -> anyhow::Result<Self> {
        Ok(Listeners {
            http: TcpListener::bind(cfg.http_addr).await?,
            grpc: TcpListener::bind(cfg.grpc_addr).await?,
        })
    }
}

/// State shared by both transports.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub ready: Arc<AtomicBool>,
    pub max_json_bytes: usize,
}

/// Runs the server until `shutdown` is cancelled. Order on the way out:
/// readiness off, workers stop claiming and drain, then the servers stop.
pub async fn run(
    cfg: ServerConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.service.validate()?;
    let device = cfg.worker.resolve_device()?;
    let pool = db::connect(&cfg.database_url, 32).await?;
    db::migrate(&pool).await?;
    if let Some(key) = auth::ensure_admin_key(
        &pool,
        cfg.admin_key.as_deref(),
        cfg.service.default_lab_max_running,
    )
    .await?
    {
        println!("admin api key (shown once, store it now): {key}");
    }
    let removed = blobs::delete_abandoned(&pool, std::time::Duration::from_secs(3600)).await?;
    if removed > 0 {
        tracing::info!(removed, "deleted abandoned uploads");
    }
    let inner = CancellationToken::new();
    let notes = Notifications::new();
    let listener_task = notes.spawn(pool.clone(), inner.clone());
    let service = Service::new(pool, cfg.service.clone(), notes);
    let state = AppState {
        service: service.clone(),
        ready: Arc::new(AtomicBool::new(true)),
        max_json_bytes: cfg.max_json_bytes,
    };

    let workers_stop = CancellationToken::new();
    let reaper = neuralign_worker::spawn_reaper(service.clone(), workers_stop.clone());
    let slots = if cfg.in_process_workers {
        let threads = cfg.worker.apply_compute_threads(1);
        tracing::info!(threads, "in-process workers: libtorch CPU threads");
        neuralign_worker::spawn_workers(
            service.clone(),
            cfg.worker.clone(),
            device,
            workers_stop.clone(),
        )
    } else {
        Vec::new()
    };

    let http_addr = listeners.http.local_addr()?;
    let grpc_addr = listeners.grpc.local_addr()?;
    tracing::info!(%http_addr, %grpc_addr, ?device, "neuralign-server listening");
    let http_task = {
        let router = http::router(state.clone());
        let stop = inner.clone();
        tokio::spawn(async move {
            axum::serve(listeners.http, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    let grpc_task = {
        let stop = inner.clone();
        let routes = grpc::routes(state.clone()).await;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await })
                .await
        })
    };
    if cfg.demo {
        let (svc, key) = (service.clone(), cfg.admin_key.clone());
        tokio::spawn(async move {
            if let Err(e) = demo::run(&svc, key.as_deref(), http_addr, grpc_addr).await {
                eprintln!("demo failed: {e:#}");
            }
        });
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    state.ready.store(false, Ordering::SeqCst);
    workers_stop.cancel();
    for s in slots {
        let _ = s.await;
    }
    let _ = reaper.await;
    inner.cancel();
    let _ = http_task.await;
    let _ = grpc_task.await;
    let _ = listener_task.await;
    Ok(())
}
