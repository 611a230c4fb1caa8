//! One LISTEN connection per process, fanned out to in-process subscribers.
//! Payloads are job ids only; subscribers re-read the rows they care about,
//! and everyone also polls, so a dropped connection costs only latency.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::queue::{CHANNEL_CANCEL, CHANNEL_EVENTS, CHANNEL_JOBS};

#[derive(Clone)]
pub struct Notifications {
    /// A job became claimable.
    pub jobs: broadcast::Sender<Uuid>,
    /// A job has new events.
    pub events: broadcast::Sender<Uuid>,
    /// Cancellation of a running job was requested.
    pub cancels: broadcast::Sender<Uuid>,
}

impl Default for Notifications {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifications {
    pub fn new() -> Self {
        Notifications {
            jobs: broadcast::channel(1024).0,
            events: broadcast::channel(4096).0,
            cancels: broadcast::channel(256).0,
        }
    }

    /// Listens until `shutdown` resolves. sqlx's listener reconnects by
    /// itself; notifications sent while it was away are lost, which the
    /// polling fallbacks cover.
    pub fn spawn(&self, pool: PgPool, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut listener = loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l
                        .listen_all([CHANNEL_JOBS, CHANNEL_EVENTS, CHANNEL_CANCEL])
                        .await
                    {
                        Ok(()) => break l,
                        Err(e) => tracing::warn!(error = %e, "listen failed; retrying"),
                    },
                    Err(e) => tracing::warn!(error = %e, "listener connect failed; retrying"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            };
            loop {
                let n = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = listener.recv() => n,
                };
                match n {
                    Ok(n) => {
                        let Ok(id) = Uuid::parse_str(n.payload()) else {
                            continue;
                        };
                        let tx = match n.channel() {
                            CHANNEL_JOBS => &this.jobs,
                            CHANNEL_EVENTS => &this.events,
                            CHANNEL_CANCEL => &this.cancels,
                            _ => continue,
                        };
                        let _ = tx.send(id);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "notification listener error; reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
        })
    }
}
