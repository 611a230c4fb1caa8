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
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::config::ServiceConfig;
use crate::error::{Error, Result};
use crate::model::{decode_cursor, Page};
use crate::notify::Notifications;

pub use arrays::ByteStream;
pub use benchmarks::{BenchmarkFilter, BenchmarkScope};
pub use models::{ModelSource, ProbeOutcome, TorchScriptParams, TorchScriptUpload, PROBE_WAIT};
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

/// `limit` of a list request: 50 by default, at most 1000.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid(format!(
            "limit: must be between 1 and 1000, got {limit}"
        )));
    }
    Ok(limit)
}

type Key<T> = fn(&T) -> (chrono::DateTime<chrono::Utc>, Uuid);

impl Service {
    /// One newest-first page of a lab's rows. `select` is `SELECT … FROM …`
    /// over a table aliased `alias` ("" for none) with lab_id, created_at
    /// and id columns; the page token is the last row's (created_at, id).
    async fn lab_page<T>(
        &self,
        select: &str,
        alias: &str,
        lab_id: Uuid,
        (limit, page_token): (Option<u32>, Option<&str>),
        from_row: fn(&sqlx::postgres::PgRow) -> Result<T>,
        key: Key<T>,
    ) -> Result<Page<T>> {
        let limit = page_limit(limit)?;
        let cursor = page_token.map(decode_cursor).transpose()?;
        let p = if alias.is_empty() {
            String::new()
        } else {
            format!("{alias}.")
        };
        let rows = sqlx::query(&format!(
            "{select} WHERE {p}lab_id = $1 AND ($2::timestamptz IS NULL OR ({p}created_at, {p}id) < ($2, $3)) \
             ORDER BY {p}created_at DESC, {p}id DESC LIMIT $4"
        ))
        .bind(lab_id)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, key))
    }
}
