//! Connecting to Postgres and keeping the schema current. Only the server
//! applies migrations (sqlx takes an advisory lock while it does); workers
//! check the schema and refuse to start against an older one.

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::error::{Error, ErrorCode, Result};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::Unavailable,
                format!("cannot connect to postgres: {e}"),
            )
        })
}

/// A transaction that commits without waiting for the WAL flush, for
/// writes whose durability a later synchronous commit provides or that may
/// be lost in a crash: what a running job writes before its finish (the
/// finish, later in the WAL, flushes it; a crash before it retries the
/// job), progress events and cache-hit counts (telemetry). On a loaded disk
/// each flush costs milliseconds on a job's critical path.
pub async fn begin_unflushed(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(Error::internal)
}

/// Fails unless every migration this binary knows has been applied.
pub async fn check_schema(pool: &PgPool) -> Result<()> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let missing: Vec<i64> = MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::FailedPrecondition,
            format!("database schema is behind this binary (missing migrations {missing:?}); start the server to migrate"),
        ))
    }
}
