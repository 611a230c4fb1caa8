//! The claim → run → finish loop. Each slot claims one job at a time; while
//! it runs, a companion task renews the lease and turns a cancellation
//! request (by notification or seen in a heartbeat) or a lost lease into the
//! job's cancellation token. On shutdown a slot stops claiming, gives its
//! job `drain` to finish, then releases it to the queue.

use std::time::Duration;

use neuralign_core::queue::{self, ClaimedJob, Heartbeat, Outcome};
use neuralign_core::Service;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::caches::Caches;
use crate::config::WorkerConfig;
use crate::jobs::{run_claimed, JobContext};

/// Starts `cfg.concurrency` worker slots; they end after `shutdown`.
pub fn spawn_workers(
    service: Service,
    cfg: WorkerConfig,
    device: tch::Device,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let worker_id = cfg.worker_id();
    tracing::info!(worker_id, ?device, concurrency = cfg.concurrency, kinds = ?cfg.kinds, "worker starting");
    let caches = std::sync::Arc::new(Caches::new(&cfg));
    let cores = crate::compute::Cores::of_this_machine();
    (0..cfg.concurrency)
        .map(|slot| {
            let (svc, cfg, shutdown) = (service.clone(), cfg.clone(), shutdown.clone());
            let id = format!("{worker_id}/{slot}");
            let (caches, cores) = (caches.clone(), cores.clone());
            tokio::spawn(
                async move { slot_loop(svc, cfg, id, device, caches, cores, shutdown).await },
            )
        })
        .collect()
}

/// Re-queues expired leases, and queues waiting parents whose children are
/// all final, every poll interval until `shutdown`.
pub fn spawn_reaper(service: Service, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = service.config().poll();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = queue::reap_expired(service.pool(), service.config()).await {
                tracing::warn!(error = %e, "reaper pass failed");
            }
            if let Err(e) = queue::wake_waiting_parents(service.pool()).await {
                tracing::warn!(error = %e, "waking waiting parents failed");
            }
        }
    })
}

async fn slot_loop(
    svc: Service,
    cfg: WorkerConfig,
    worker_id: String,
    device: tch::Device,
    caches: std::sync::Arc<Caches>,
    cores: std::sync::Arc<crate::compute::Cores>,
    shutdown: CancellationToken,
) {
    let mut wake = svc.notifications().jobs.subscribe();
    let compute = std::sync::Arc::new(crate::compute::ComputeThread::spawn(
        &format!("compute-{}", worker_id.rsplit('/').next().unwrap_or("0")),
        cores,
    ));
    while !shutdown.is_cancelled() {
        match queue::claim(svc.pool(), &worker_id, &cfg.kinds, svc.config().lease()).await {
            Ok(Some(job)) => execute(&svc, &cfg, job, device, &compute, &caches, &shutdown).await,
            Ok(None) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = wake.recv() => {}
                    _ = tokio::time::sleep(svc.config().poll()) => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker_id, error = %e, "claim failed; backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    tracing::info!(worker_id, "worker slot stopped");
}

async fn execute(
    svc: &Service,
    cfg: &WorkerConfig,
    job: ClaimedJob,
    device: tch::Device,
    compute: &std::sync::Arc<crate::compute::ComputeThread>,
    caches: &std::sync::Arc<Caches>,
    shutdown: &CancellationToken,
) {
    let lease = job.lease.clone();
    let cancel = CancellationToken::new();
    let lost = CancellationToken::new();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(f64, Option<String>)>();
    tracing::info!(job_id = %lease.job_id, attempt = lease.attempt, kind = job.kind, "job started");

    // Lease keeper: heartbeats, cancellation requests, progress writes.
    let keeper = {
        let (svc, lease, cancel, lost) = (svc.clone(), lease.clone(), cancel.clone(), lost.clone());
        let mut cancels = svc.notifications().cancels.subscribe();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(svc.config().heartbeat());
            beat.tick().await;
            loop {
                tokio::select! {
                    _ = beat.tick() => match queue::heartbeat(svc.pool(), &lease, svc.config().lease()).await {
                        Ok(Heartbeat::Held { cancel_requested }) => if cancel_requested { cancel.cancel() },
                        Ok(Heartbeat::Lost) => {
                            tracing::warn!(job_id = %lease.job_id, "lease lost; abandoning the attempt");
                            lost.cancel();
                            cancel.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(job_id = %lease.job_id, error = %e, "heartbeat failed"),
                    },
                    got = cancels.recv() => if matches!(got, Ok(id) if id == lease.job_id) { cancel.cancel() },
                    p = progress_rx.recv() => match p {
                        Some(first) => {
                            // Events that arrived while the last write ran go in one transaction.
                            let mut events = vec![first];
                            while let Ok(more) = progress_rx.try_recv() {
                                events.push(more);
                            }
                            if let Err(e) = queue::progress_many(svc.pool(), &lease, &events).await {
                                tracing::warn!(job_id = %lease.job_id, error = %e, "progress write failed");
                            }
                        }
                        None => return,
                    },
                }
            }
        })
    };

    let ctx = JobContext {
        service: svc.clone(),
        job_id: lease.job_id,
        lab_id: job.lab_id,
        parent_id: job.parent_id,
        attempt: lease.attempt,
        device,
        cancel: cancel.clone(),
        progress: progress_tx,
        compute: compute.clone(),
        caches: caches.clone(),
    };
    let mut run = std::pin::pin!(run_claimed(&job.kind, ctx, job.spec.clone()));
    let outcome = tokio::select! {
        o = &mut run => o,
        _ = shutdown.cancelled() => {
            // Drain: let the job finish within the bound, else give it back.
            match tokio::time::timeout(Duration::from_millis(cfg.drain_ms), &mut run).await {
                Ok(o) => o,
                Err(_) => {
                    cancel.cancel();
                    let _ = run.await;
                    Outcome::Released
                }
            }
        }
    };
    // Let the keeper flush pending progress before the final state.
    let _ = tokio::time::timeout(Duration::from_secs(2), keeper).await;
    if lost.is_cancelled() {
        return;
    }
    let label = outcome_label(&outcome);
    match queue::finish(svc.pool(), &lease, outcome, svc.config()).await {
        Ok(true) => {
            tracing::info!(job_id = %lease.job_id, attempt = lease.attempt, outcome = label, "job finished")
        }
        Ok(false) => {
            tracing::warn!(job_id = %lease.job_id, "lease lost before the result was written; discarded")
        }
        Err(e) => {
            tracing::error!(job_id = %lease.job_id, error = %e, "could not write the job's outcome; the reaper will retry it")
        }
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Retryable(_) => "retryable error",
        Outcome::Fatal(_) => "failed",
        Outcome::Cancelled => "cancelled",
        Outcome::Released => "released",
        Outcome::Waiting { .. } => "waiting for child jobs",
    }
}
