//! The blob store and array uploads against a real Postgres: streaming
//! writes in chunk rows, dedupe of identical bytes, clean-up of failed
//! uploads, streaming reads.

use bytes::Bytes;
use futures::StreamExt;
use neuralign_core::blobs::{self, BlobWriter};
use neuralign_core::notify::Notifications;
use neuralign_core::{auth, npy, ErrorCode, Service, ServiceConfig};
use sqlx::PgPool;

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn write_blob(pool: &PgPool, data: &[u8], piece: usize) -> blobs::BlobRef {
    let mut w = BlobWriter::begin(pool, 1 << 20, u64::MAX).await.unwrap();
    for p in data.chunks(piece) {
        w.write(p).await.unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    let r = w.finalize(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    w.committed();
    r
}

#[sqlx::test(migrations = "../migrations")]
async fn identical_bytes_are_stored_once_and_read_back(pool: PgPool) {
    let data: Vec<u8> = (0..(3 << 20) + 12345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let a = write_blob(&pool, &data, 100_000).await;
    let b = write_blob(&pool, &data, 777_777).await;
    assert_eq!(a, b);
    assert_eq!(count(&pool, "blobs").await, 1);
    assert_eq!(
        count(&pool, "blob_chunks").await,
        4,
        "3 MiB + a bit in 1 MiB chunks"
    );
    use sha2::Digest;
    assert_eq!(a.sha256, hex::encode(sha2::Sha256::digest(&data)));
    let mut back = Vec::new();
    let mut s = std::pin::pin!(blobs::read_stream(pool.clone(), a.id));
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        assert!(c.len() <= 1 << 20);
        back.extend_from_slice(&c);
    }
    assert_eq!(back, data);
}

#[sqlx::test(migrations = "../migrations")]
async fn abandoned_writer_leaves_nothing(pool: PgPool) {
    {
        let mut w = BlobWriter::begin(&pool, 1 << 20, u64::MAX).await.unwrap();
        w.write(&vec![1u8; 3 << 20]).await.unwrap();
    }
    // The clean-up runs on the runtime after the drop.
    for _ in 0..50 {
        if count(&pool, "blobs").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(count(&pool, "blobs").await, 0);
    assert_eq!(count(&pool, "blob_chunks").await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn invalid_uploads_store_nothing(pool: PgPool) {
    let cfg = ServiceConfig {
        max_upload_bytes: 10_000,
        blob_chunk_bytes: 1 << 20,
        ..ServiceConfig::default()
    };
    let svc = Service::new(pool.clone(), cfg, Notifications::new());
    auth::ensure_admin_key(&pool, Some("nl_admin"), 4)
        .await
        .unwrap();
    let admin = svc.authenticate(Some("nl_admin")).await.unwrap();
    let (_, key) = svc.create_lab(&admin, "lab", None).await.unwrap();
    let caller = svc.authenticate(Some(&key)).await.unwrap();
    let good = npy::encode_f64(&[4, 3], &[0.5; 12]);
    let mut nan = good.clone();
    let n = nan.len();
    nan[n - 8..].copy_from_slice(&f64::NAN.to_le_bytes());
    let big = npy::encode_f64(&[2000], &[1.0; 2000]);
    let cases: Vec<(Vec<u8>, ErrorCode, &str)> = vec![
        (
            good[..good.len() - 5].to_vec(),
            ErrorCode::InvalidArgument,
            "truncated",
        ),
        (nan, ErrorCode::InvalidArgument, "non-finite"),
        (
            b"not an npy file at all".to_vec(),
            ErrorCode::InvalidArgument,
            "magic",
        ),
        (
            npy::encode_f64(&[0, 4], &[]),
            ErrorCode::InvalidArgument,
            "empty",
        ),
        (big, ErrorCode::PayloadTooLarge, "limit"),
    ];
    for (bytes, code, needle) in cases {
        let body = Box::pin(futures::stream::iter(
            bytes
                .chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        ));
        let err = svc.upload_array(&caller, "x", body).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(count(&pool, "arrays").await, 0);
    assert_eq!(count(&pool, "blobs").await, 0);
    assert_eq!(count(&pool, "blob_chunks").await, 0);
    let ok = svc
        .upload_array(
            &caller,
            "good",
            Box::pin(futures::stream::iter([Ok(Bytes::from(good))])),
        )
        .await
        .unwrap();
    assert_eq!(
        (ok.dtype.as_str(), ok.shape.as_slice()),
        ("float64", &[4u64, 3][..])
    );
}
