//! Uploads in formats that need random access (zip, HDF5, NWB) or a second
//! pass land in a temp file first, streamed in with the size limit enforced,
//! and are removed when the request ends, whatever the outcome.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorCode, Result};
use crate::service::ByteStream;

/// A file under the spool dir, deleted on drop.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub fn new_in(dir: &Path, what: &str) -> TempFile {
        TempFile {
            path: dir.join(format!(
                "neuralign-{what}-{}",
                uuid::Uuid::new_v4().simple()
            )),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the body to a new temp file; at most `max` bytes.
pub async fn spool(mut body: ByteStream, dir: &Path, max: u64) -> Result<(TempFile, u64)> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = TempFile::new_in(dir, "upload");
    let mut f =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(tmp.path()).await?);
    let mut size = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        size += piece.len() as u64;
        if size > max {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("body: upload exceeds the limit of {max} bytes"),
            ));
        }
        f.write_all(&piece).await?;
    }
    f.flush().await?;
    if size == 0 {
        return Err(Error::invalid("body: the upload is empty"));
    }
    Ok((tmp, size))
}
