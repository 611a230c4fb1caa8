//! The service layer: every operation the HTTP and gRPC adapters expose, as
//! plain async functions over domain types. Each takes a `Caller`, which only
//! `authenticate` can produce, and scopes every read and write to the
//! caller's lab; another lab's resources answer `not_found`.

mod arrays;
mod benchmarks;
mod jobs;
mod labs;
mod models;
mod recordings;
mod scores;
mod stimuli;

use sqlx::PgPool;

use crate::auth::{self, Caller};
use crate::config::ServiceConfig;
use crate::error::Result;
use crate::notify::Notifications;

pub use arrays::ByteStream;
pub use benchmarks::{BenchmarkFilter, BenchmarkScope};
pub use models::{ModelSource, ProbeOutcome, TorchScriptParams, TorchScriptUpload};
pub use recordings::{RecordingParams, RecordingUpload, RELIABILITY_METHOD};
pub use scores::{NewScore, ScoringInput};
pub use stimuli::{StimulusSetParams, StimulusSetUpload};

#[derive(Clone)]
pub struct Service {
    pool: PgPool,
    cfg: ServiceConfig,
    notes: Notifications,
}

impl Service {
    pub fn new(pool: PgPool, cfg: ServiceConfig, notes: Notifications) -> Self {
        Service { pool, cfg, notes }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    pub fn notifications(&self) -> &Notifications {
        &self.notes
    }

    /// Resolves a bearer token (without the `Bearer ` prefix) to a caller.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller> {
        auth::authenticate(&self.pool, token).await
    }

    /// True when the database answers.
    pub async fn ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub fn metrics(&self) -> Vec<crate::catalog::MetricInfo> {
        crate::catalog::metrics()
    }
}
