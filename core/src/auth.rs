//! API keys and the `Caller` type. A `Caller` can only be made here, from a
//! key found in the database, so every service function that takes one is
//! authenticated by construction, whatever the transport.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};

/// The authenticated identity behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    lab_id: Uuid,
    key_id: Uuid,
    is_admin: bool,
}

impl Caller {
    pub fn lab_id(&self) -> Uuid {
        self.lab_id
    }
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }
    pub fn is_admin(&self) -> bool {
        self.is_admin
    }
    pub(crate) fn require_admin(&self) -> Result<()> {
        if self.is_admin {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::PermissionDenied,
                "this operation needs an admin key",
            ))
        }
    }
}

/// The lab that owns the admin keys.
pub const SYSTEM_LAB: &str = "system";

pub(crate) fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A fresh key: `nl_` + 32 random bytes in hex. Only its hash is stored.
pub(crate) fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("nl_{}", hex::encode(bytes))
}

fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

pub(crate) async fn insert_key(
    conn: &mut sqlx::PgConnection,
    lab_id: Uuid,
    key: &str,
    is_admin: bool,
) -> Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO api_keys (id, lab_id, key_hash, prefix, is_admin) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(lab_id)
    .bind(hash_key(key))
    .bind(key_prefix(key))
    .bind(is_admin)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Resolves a bearer token to a caller, or `unauthenticated`.
pub async fn authenticate(pool: &PgPool, token: Option<&str>) -> Result<Caller> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::unauthenticated("missing api key: send `Authorization: Bearer <key>`")
        })?;
    let row: Option<(Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT id, lab_id, is_admin FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_key(token))
    .fetch_optional(pool)
    .await?;
    let (key_id, lab_id, is_admin) =
        row.ok_or_else(|| Error::unauthenticated("invalid api key"))?;
    Ok(Caller {
        lab_id,
        key_id,
        is_admin,
    })
}

/// Makes sure an admin key exists. With `configured` set, that key is
/// registered (idempotently); otherwise, if no admin key exists yet, a new
/// one is created and returned so that start-up can print it once.
pub async fn ensure_admin_key(
    pool: &PgPool,
    configured: Option<&str>,
    max_running: i32,
) -> Result<Option<String>> {
    let mut tx = pool.begin().await?;
    // Two servers starting together must not both create a key.
    sqlx::query("SELECT pg_advisory_xact_lock(7242001)")
        .execute(&mut *tx)
        .await?;
    let lab_id: Uuid = match sqlx::query_scalar("SELECT id FROM labs WHERE name = $1")
        .bind(SYSTEM_LAB)
        .fetch_optional(&mut *tx)
        .await?
    {
        Some(id) => id,
        None => {
            let id = Uuid::new_v4();
            sqlx::query("INSERT INTO labs (id, name, max_running_jobs) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(SYSTEM_LAB)
                .bind(max_running)
                .execute(&mut *tx)
                .await?;
            id
        }
    };
    let created = match configured {
        Some(key) => {
            let known: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1)")
                    .bind(hash_key(key))
                    .fetch_one(&mut *tx)
                    .await?;
            if !known {
                insert_key(&mut tx, lab_id, key, true).await?;
            }
            None
        }
        None => {
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE is_admin AND revoked_at IS NULL)",
            )
            .fetch_one(&mut *tx)
            .await?;
            if any {
                None
            } else {
                let key = new_key();
                insert_key(&mut tx, lab_id, &key, true).await?;
                Some(key)
            }
        }
    };
    tx.commit().await?;
    Ok(created)
}
