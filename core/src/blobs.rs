//! Content-addressed bytes in Postgres. Bytes stream in as chunk rows under a
//! surrogate id, so memory stays at one chunk whatever the size; at the end
//! the sha256 is known and identical bytes collapse onto one stored blob.
//! A writer that is dropped before it commits deletes what it wrote.

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};

/// A stored, complete blob.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobRef {
    pub id: Uuid,
    pub sha256: String,
    pub size_bytes: u64,
}

pub struct BlobWriter {
    pool: PgPool,
    id: Uuid,
    seq: i32,
    buf: Vec<u8>,
    chunk_bytes: usize,
    max_bytes: u64,
    size: u64,
    hasher: Sha256,
    committed: bool,
}

impl BlobWriter {
    pub async fn begin(pool: &PgPool, chunk_bytes: usize, max_bytes: u64) -> Result<Self> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO blobs (id, state) VALUES ($1, 'writing')")
            .bind(id)
            .execute(pool)
            .await?;
        Ok(BlobWriter {
            pool: pool.clone(),
            id,
            seq: 0,
            buf: Vec::with_capacity(chunk_bytes),
            chunk_bytes,
            max_bytes,
            size: 0,
            hasher: Sha256::new(),
            committed: false,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        if self.size > self.max_bytes {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("body: upload exceeds the limit of {} bytes", self.max_bytes),
            ));
        }
        self.hasher.update(data);
        while !data.is_empty() {
            let take = (self.chunk_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.chunk_bytes {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        sqlx::query("INSERT INTO blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)")
            .bind(self.id)
            .bind(self.seq)
            .bind(&self.buf[..])
            .execute(&self.pool)
            .await?;
        self.seq += 1;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last chunk and marks the blob ready inside `tx`, so that the
    /// caller's own rows (an array, a checkpoint) commit together with it.
    /// Call `committed` after the transaction commits.
    pub async fn finalize(&mut self, tx: &mut PgConnection) -> Result<BlobRef> {
        self.flush().await?;
        let sha = self.hasher.clone().finalize().to_vec();
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM blobs WHERE sha256 = $1 AND state = 'ready'")
                .bind(&sha)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(existing) => {
                sqlx::query("DELETE FROM blobs WHERE id = $1")
                    .bind(self.id)
                    .execute(&mut *tx)
                    .await?;
                existing
            }
            None => {
                // A concurrent identical upload may win the unique index; the
                // loser's transaction fails and its writer cleans up on drop.
                sqlx::query("UPDATE blobs SET sha256 = $2, size_bytes = $3, state = 'ready', updated_at = now() WHERE id = $1")
                    .bind(self.id)
                    .bind(&sha)
                    .bind(self.size as i64)
                    .execute(&mut *tx)
                    .await?;
                self.id
            }
        };
        Ok(BlobRef {
            id,
            sha256: hex::encode(sha),
            size_bytes: self.size,
        })
    }

    /// Disarms the clean-up: the blob's transaction has committed.
    pub fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let (pool, id) = (self.pool.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = sqlx::query("DELETE FROM blobs WHERE id = $1 AND state = 'writing'").bind(id).execute(&pool).await {
                    tracing::warn!(blob_id = %id, error = %e, "could not delete an abandoned upload; the janitor will");
                }
            });
        }
    }
}

/// Deletes uploads that never finished (a crashed server) older than `age`.
pub async fn delete_abandoned(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    let r = sqlx::query("DELETE FROM blobs WHERE state = 'writing' AND created_at < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(r.rows_affected())
}

/// The blob's bytes as a stream of chunks, one row in memory at a time.
pub fn read_stream(
    pool: PgPool,
    blob_id: Uuid,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    async_stream::try_stream! {
        let mut seq = 0i32;
        loop {
            let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = $2")
                .bind(blob_id)
                .bind(seq)
                .fetch_optional(&pool)
                .await?;
            match row {
                Some(data) => {
                    seq += 1;
                    yield Bytes::from(data);
                }
                None => break,
            }
        }
    }
}

/// The whole blob in memory, for compute that needs it all anyway.
pub async fn read_all(pool: &PgPool, blob_id: Uuid) -> Result<Vec<u8>> {
    let size: i64 = sqlx::query_scalar("SELECT size_bytes FROM blobs WHERE id = $1")
        .bind(blob_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::not_found("blob", blob_id))?;
    let mut out = Vec::with_capacity(size as usize);
    let mut stream = std::pin::pin!(read_stream(pool.clone(), blob_id));
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}
