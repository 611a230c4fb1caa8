//! Uploaded arrays: `.npy` files validated as they stream into the blob
//! store, then recorded with their dtype and shape. Nothing is stored unless
//! the whole file is valid.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sqlx::Row;
use uuid::Uuid;

use super::Service;
use crate::auth::Caller;
use crate::blobs::{self, BlobWriter};
use crate::error::{Error, Result};
use crate::model::{ArrayMeta, Page};
use crate::npy::Validator;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

const ARRAY_COLUMNS: &str =
    "a.id, a.name, a.dtype, a.shape, a.created_at, b.sha256, b.size_bytes, a.blob_id";

/// Finalizes `writer`'s blob and records it as an array, inside `tx`.
pub(super) async fn insert_array(
    tx: &mut sqlx::PgConnection,
    writer: &mut BlobWriter,
    lab_id: Uuid,
    name: &str,
    dtype: &str,
    shape: &[u64],
) -> Result<ArrayMeta> {
    let blob = writer.finalize(&mut *tx).await?;
    let id = Uuid::new_v4();
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let created_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO arrays (id, lab_id, blob_id, name, dtype, shape) VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
    )
    .bind(id)
    .bind(lab_id)
    .bind(blob.id)
    .bind(name)
    .bind(dtype)
    .bind(&dims)
    .fetch_one(&mut *tx)
    .await?;
    Ok(ArrayMeta {
        id,
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape: shape.to_vec(),
        sha256: blob.sha256,
        size_bytes: blob.size_bytes,
        created_at,
    })
}

fn array_from_row(r: &sqlx::postgres::PgRow) -> Result<ArrayMeta> {
    let shape: Vec<i64> = r.try_get("shape")?;
    let sha: Vec<u8> = r.try_get("sha256")?;
    Ok(ArrayMeta {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        dtype: r.try_get("dtype")?,
        shape: shape.into_iter().map(|d| d as u64).collect(),
        sha256: hex::encode(sha),
        size_bytes: r.try_get::<i64, _>("size_bytes")? as u64,
        created_at: r.try_get("created_at")?,
    })
}

impl Service {
    pub async fn upload_array(
        &self,
        caller: &Caller,
        name: &str,
        mut body: ByteStream,
    ) -> Result<ArrayMeta> {
        let name = if name.trim().is_empty() {
            "array"
        } else {
            name.trim()
        };
        if name.len() > 255 {
            return Err(Error::invalid("name: must be at most 255 characters"));
        }
        let mut writer = BlobWriter::begin(
            &self.pool,
            self.cfg.blob_chunk_bytes,
            self.cfg.max_upload_bytes,
        )
        .await?;
        let mut validator = Validator::new();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            validator.feed(&piece)?;
            writer.write(&piece).await?;
        }
        let header = validator.finish()?;
        if header.shape.len() > 4 {
            return Err(Error::invalid(format!(
                "shape: {:?} has more than 4 dimensions",
                header.shape
            )));
        }
        let mut tx = self.pool.begin().await?;
        let meta = insert_array(
            &mut tx,
            &mut writer,
            caller.lab_id(),
            name,
            header.dtype.name(),
            &header.shape,
        )
        .await?;
        tx.commit().await?;
        writer.committed();
        Ok(meta)
    }

    /// Streams a normalized `.npy` file from disk into a new blob; the caller
    /// finalizes it with `insert_array` inside its own transaction.
    pub(super) async fn blob_from_file(&self, path: &std::path::Path) -> Result<BlobWriter> {
        use tokio::io::AsyncReadExt;
        let mut writer = BlobWriter::begin(&self.pool, self.cfg.blob_chunk_bytes, u64::MAX).await?;
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; self.cfg.blob_chunk_bytes];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]).await?;
        }
        Ok(writer)
    }

    /// The array's metadata and the id of the blob behind it.
    pub async fn array_with_blob(&self, lab_id: Uuid, id: Uuid) -> Result<(ArrayMeta, Uuid)> {
        let row = sqlx::query(&format!(
            "SELECT {ARRAY_COLUMNS} FROM arrays a JOIN blobs b ON b.id = a.blob_id WHERE a.id = $1 AND a.lab_id = $2"
        ))
        .bind(id)
        .bind(lab_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("array", id))?;
        Ok((array_from_row(&row)?, row.try_get("blob_id")?))
    }

    pub async fn get_array(&self, caller: &Caller, id: Uuid) -> Result<ArrayMeta> {
        Ok(self.array_with_blob(caller.lab_id(), id).await?.0)
    }

    pub async fn list_arrays(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<ArrayMeta>> {
        let select =
            format!("SELECT {ARRAY_COLUMNS} FROM arrays a JOIN blobs b ON b.id = a.blob_id");
        self.lab_page(
            &select,
            "a",
            caller.lab_id(),
            (limit, page_token),
            array_from_row,
            |a| (a.created_at, a.id),
        )
        .await
    }

    /// The stored `.npy` file as a stream, one chunk in memory at a time.
    pub async fn download_array(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(ArrayMeta, ByteStream)> {
        let (meta, blob_id) = self.array_with_blob(caller.lab_id(), id).await?;
        Ok((
            meta,
            Box::pin(blobs::read_stream(self.pool.clone(), blob_id)),
        ))
    }
}
