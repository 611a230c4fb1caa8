//! Labs and API keys (admin operations).

use uuid::Uuid;

use super::Service;
use crate::auth::{insert_key, new_key, Caller};
use crate::error::{Error, Result};
use crate::model::Lab;

impl Service {
    /// Creates a lab and its first key; the key is returned once.
    pub async fn create_lab(
        &self,
        caller: &Caller,
        name: &str,
        max_running: Option<i32>,
    ) -> Result<(Lab, String)> {
        caller.require_admin()?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::invalid(format!(
                "name: {name:?} must be 1 to 100 characters of letters, digits, '-', '_' or '.'"
            )));
        }
        let max_running = max_running.unwrap_or(self.cfg.default_lab_max_running);
        if !(1..=10_000).contains(&max_running) {
            return Err(Error::invalid(format!(
                "max_running_jobs: must be between 1 and 10000, got {max_running}"
            )));
        }
        let mut tx = self.pool.begin().await?;
        let lab: (Uuid, String, i32, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
            "INSERT INTO labs (id, name, max_running_jobs) VALUES ($1, $2, $3) RETURNING id, name, max_running_jobs, created_at",
        )
        .bind(Uuid::new_v4())
        .bind(name)
        .bind(max_running)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match Error::from(e) {
            Error::Client { code: crate::ErrorCode::AlreadyExists, .. } => {
                Error::new(crate::ErrorCode::AlreadyExists, format!("name: a lab named {name:?} already exists"))
            }
            other => other,
        })?;
        let key = new_key();
        insert_key(&mut tx, lab.0, &key, false).await?;
        tx.commit().await?;
        Ok((
            Lab {
                id: lab.0,
                name: lab.1,
                max_running_jobs: lab.2,
                created_at: lab.3,
            },
            key,
        ))
    }

    pub async fn list_labs(&self, caller: &Caller) -> Result<Vec<Lab>> {
        caller.require_admin()?;
        let rows: Vec<(Uuid, String, i32, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT id, name, max_running_jobs, created_at FROM labs ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, max_running_jobs, created_at)| Lab {
                id,
                name,
                max_running_jobs,
                created_at,
            })
            .collect())
    }

    /// Issues another key for a lab; returns (key id, key).
    pub async fn create_api_key(&self, caller: &Caller, lab_id: Uuid) -> Result<(Uuid, String)> {
        caller.require_admin()?;
        let mut conn = self.pool.acquire().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM labs WHERE id = $1)")
            .bind(lab_id)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Err(Error::not_found("lab", lab_id));
        }
        let key = new_key();
        let id = insert_key(&mut conn, lab_id, &key, false).await?;
        Ok((id, key))
    }
}
