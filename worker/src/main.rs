//! `neuralign-worker`: a standalone job runner. Point any number of them at
//! the service's Postgres; each claims jobs, runs them on its device and
//! writes results. SIGTERM stops claiming, drains, and exits.

use clap::Parser;
use neuralign_core::{db, notify::Notifications, Service, ServiceConfig};
use neuralign_worker::{spawn_reaper, spawn_workers, WorkerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "neuralign-worker",
    version,
    about = "Runs neuralign jobs from the Postgres queue"
)]
struct Args {
    /// Postgres connection URL of the service.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    service: ServiceConfig,
    #[command(flatten)]
    worker: WorkerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let args = Args::parse();
    args.service.validate()?;
    let device = args.worker.resolve_device()?;
    let threads = args.worker.apply_compute_threads(1);
    tracing::info!(threads, "libtorch CPU threads");
    let pool = db::connect(&args.database_url, (args.worker.concurrency as u32) * 3 + 4).await?;
    db::check_schema(&pool).await?;
    let shutdown = CancellationToken::new();
    let notes = Notifications::new();
    let listener = notes.spawn(pool.clone(), shutdown.clone());
    let service = Service::new(pool, args.service, notes);
    let reaper = spawn_reaper(service.clone(), shutdown.clone());
    let slots = spawn_workers(service, args.worker, device, shutdown.clone());
    wait_for_signal().await;
    tracing::info!("shutting down: no new claims, draining running jobs");
    shutdown.cancel();
    for s in slots {
        let _ = s.await;
    }
    let _ = reaper.await;
    let _ = listener.await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
