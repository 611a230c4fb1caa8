//! The model registry: uploaded TorchScript files and built-in specs become
//! immutable, content-addressed model versions. Registration stores the
//! model as `probing` and submits a `probe_model` job; a worker loads the
//! model on its device, runs a probe batch and records the layers (or the
//! error). The registering request waits for that outcome, so a model that
//! cannot load, names no layers or rejects its declared input is a 400 and
//! leaves no model behind.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::arrays::ByteStream;
use super::stimuli::display_name;
use super::Service;
use crate::architecture::{InputSpec, ModelSpec};
use crate::auth::Caller;
use crate::blobs::BlobWriter;
use crate::error::{Error, ErrorCode, Result};
use crate::model::{JobSpec, NewJob, Page, ProbeModelSpec};
use crate::resources::{Model, ModelLayer, NewBuiltinModel};

/// How long a registering request waits for its probe before answering
/// that the model is still probing.
pub const PROBE_WAIT: Duration = Duration::from_secs(300);

/// A TorchScript upload as the transports receive it.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TorchScriptParams {
    pub name: Option<String>,
    /// The input spec as JSON, e.g. {"kind": "images", "size": [224, 224], "channels": 3,
    /// "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}.
    pub input: Option<String>,
    /// Comma-separated names of the tensors a tuple-returning model yields.
    pub layer_names: Option<String>,
    /// Wait for the probe (default true); false answers 202 at once.
    pub wait: Option<bool>,
}

pub struct TorchScriptUpload {
    pub name: String,
    pub input: InputSpec,
    pub layer_names: Option<Vec<String>>,
}

impl TorchScriptParams {
    pub fn into_upload(self) -> Result<TorchScriptUpload> {
        let text = self
            .input
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Error::invalid("input: required (the model's input spec as JSON)"))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let input: InputSpec = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| Error::invalid(format!("input.{}: {}", e.path(), e.inner())))?;
        input.check()?;
        let layer_names = self.layer_names.filter(|s| !s.trim().is_empty()).map(|s| {
            s.split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        });
        Ok(TorchScriptUpload {
            name: self.name.unwrap_or_default(),
            input,
            layer_names,
        })
    }
}

const COLUMNS: &str =
    "id, name, version, kind, content_hash, version_hash, spec, input_spec, layer_names, state, \
     error, layers, weights_sha256, probe_job_id, created_at";

fn from_row(r: &sqlx::postgres::PgRow) -> Result<Model> {
    let layers: Value = r.try_get("layers")?;
    Ok(Model {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        kind: r.try_get("kind")?,
        content_hash: r.try_get("content_hash")?,
        version_hash: r.try_get("version_hash")?,
        spec: r.try_get("spec")?,
        input: serde_json::from_value(r.try_get("input_spec")?).map_err(Error::internal)?,
        layer_names: r.try_get("layer_names")?,
        state: r.try_get("state")?,
        error: r.try_get("error")?,
        layers: serde_json::from_value(layers).map_err(Error::internal)?,
        weights_sha256: r.try_get("weights_sha256")?,
        probe_job_id: r.try_get("probe_job_id")?,
        created_at: r.try_get("created_at")?,
    })
}

fn sha_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// What a worker needs to load a model.
pub struct ModelSource {
    pub model: Model,
    pub lab_id: Uuid,
    pub file_blob: Option<Uuid>,
    pub checkpoint_blob: Option<Uuid>,
}

/// A probe's outcome, written by the worker.
pub enum ProbeOutcome {
    Ready {
        layers: Vec<ModelLayer>,
        weights_sha256: Option<String>,
        checkpoint: Option<Vec<u8>>,
    },
    Failed(String),
}

impl Service {
    pub async fn register_torchscript(
        &self,
        caller: &Caller,
        up: TorchScriptUpload,
        mut body: ByteStream,
    ) -> Result<Model> {
        let name = display_name("name", &up.name, "model")?;
        let mut writer = BlobWriter::begin(
            &self.pool,
            self.cfg.blob_chunk_bytes,
            self.cfg.max_upload_bytes,
        )
        .await?;
        while let Some(piece) = body.next().await {
            writer.write(&piece?).await?;
        }
        if writer.size() == 0 {
            return Err(Error::invalid("body: the upload is empty"));
        }
        let input = serde_json::to_vec(&up.input).map_err(Error::internal)?;
        let names = up.layer_names.clone().unwrap_or_default().join(",");
        let mut tx = self.pool.begin().await?;
        let blob = writer.finalize(&mut tx).await?;
        let version_hash = sha_hex(&[
            b"torchscript",
            blob.sha256.as_bytes(),
            &input,
            names.as_bytes(),
        ]);
        let out = self
            .insert_model(
                &mut tx,
                caller,
                &name,
                "torchscript",
                &blob.sha256,
                &version_hash,
                None,
                &up.input,
                up.layer_names.as_deref(),
                Some(blob.id),
            )
            .await?;
        tx.commit().await?;
        writer.committed();
        self.start_probe(caller, out).await
    }

    pub async fn register_builtin(&self, caller: &Caller, req: NewBuiltinModel) -> Result<Model> {
        let name = display_name("name", &req.name, "model")?;
        let spec = ModelSpec::parse(req.spec)?;
        let input = match req.input {
            Some(i) => {
                i.check()?;
                if i.kind != spec.input_kind() {
                    return Err(Error::invalid(format!(
                        "input.kind: the architecture takes {:?}, the input spec says {:?}",
                        spec.input_kind(),
                        i.kind
                    )));
                }
                i
            }
            None => InputSpec::for_architecture(&spec.architecture),
        };
        let canonical = serde_json::to_vec(&spec).map_err(Error::internal)?;
        let content_hash = sha_hex(&[b"builtin", &canonical]);
        let input_bytes = serde_json::to_vec(&input).map_err(Error::internal)?;
        let version_hash = sha_hex(&[content_hash.as_bytes(), &input_bytes]);
        let spec_json = serde_json::to_value(&spec).map_err(Error::internal)?;
        let mut tx = self.pool.begin().await?;
        let out = self
            .insert_model(
                &mut tx,
                caller,
                &name,
                "builtin",
                &content_hash,
                &version_hash,
                Some(&spec_json),
                &input,
                None,
                None,
            )
            .await?;
        tx.commit().await?;
        self.start_probe(caller, out).await
    }

    /// Inserts a new version, or returns the existing version with the same
    /// identity (content-addressed); a failed earlier attempt is replaced.
    #[allow(clippy::too_many_arguments)]
    async fn insert_model(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Caller,
        name: &str,
        kind: &str,
        content_hash: &str,
        version_hash: &str,
        spec: Option<&Value>,
        input: &InputSpec,
        layer_names: Option<&[String]>,
        file_blob: Option<Uuid>,
    ) -> Result<(Model, bool)> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 1))")
            .bind(caller.lab_id().to_string())
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM models WHERE lab_id = $1 AND version_hash = $2"
        ))
        .bind(caller.lab_id())
        .bind(version_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let m = from_row(&row)?;
            if m.state != "failed" {
                return Ok((m, false));
            }
            sqlx::query("DELETE FROM models WHERE id = $1")
                .bind(m.id)
                .execute(&mut *tx)
                .await?;
        }
        let id = Uuid::new_v4();
        let row = sqlx::query(&format!(
            "INSERT INTO models (id, lab_id, name, version, kind, content_hash, version_hash, spec, input_spec, layer_names, \
               file_blob_id, state) \
             SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7, $8, $9, $10, 'probing' \
             FROM models WHERE lab_id = $2 AND name = $3 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(caller.lab_id())
        .bind(name)
        .bind(kind)
        .bind(content_hash)
        .bind(version_hash)
        .bind(spec)
        .bind(serde_json::to_value(input).map_err(Error::internal)?)
        .bind(layer_names)
        .bind(file_blob)
        .fetch_one(&mut *tx)
        .await?;
        Ok((from_row(&row)?, true))
    }

    async fn start_probe(&self, caller: &Caller, (model, created): (Model, bool)) -> Result<Model> {
        if !created {
            return Ok(model);
        }
        let job = NewJob {
            spec: JobSpec::ProbeModel(ProbeModelSpec { model: model.id }),
            priority: 10,
            max_attempts: Some(2),
            idempotency_key: Some(format!("probe:{}", model.id)),
        };
        let (job, _) = match crate::queue::submit(&self.pool, caller.lab_id(), job, &self.cfg).await
        {
            Ok(j) => j,
            Err(e) => {
                sqlx::query("DELETE FROM models WHERE id = $1")
                    .bind(model.id)
                    .execute(&self.pool)
                    .await?;
                return Err(e);
            }
        };
        sqlx::query("UPDATE models SET probe_job_id = $2 WHERE id = $1")
            .bind(model.id)
            .bind(job.id)
            .execute(&self.pool)
            .await?;
        self.get_model(caller, model.id).await
    }

    /// Waits for a model's probe; a failed probe is an `invalid_argument`
    /// error carrying the probe's message, and the failed version is removed.
    pub async fn await_probe(
        &self,
        caller: &Caller,
        model: Model,
        timeout: Duration,
    ) -> Result<Model> {
        // A fast worker may have finished the probe before the registering
        // request read the model back: a failed state is a failure here too.
        let m = if model.state == "probing" {
            if let Some(job) = model.probe_job_id {
                let events = self.watch_job(caller, job, 0);
                let _ = tokio::time::timeout(timeout, events.for_each(|_| async {})).await;
            }
            self.get_model(caller, model.id).await?
        } else {
            model
        };
        if m.state == "failed" {
            self.discard_failed(m.id).await?;
            return Err(Error::invalid(
                m.error.unwrap_or_else(|| "model: the probe failed".into()),
            ));
        }
        Ok(m)
    }

    /// Removes a failed version and its file when nothing else uses it.
    async fn discard_failed(&self, id: Uuid) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let blob: Option<Option<Uuid>> = sqlx::query_scalar(
            "DELETE FROM models WHERE id = $1 AND state = 'failed' RETURNING file_blob_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(Some(blob)) = blob {
            sqlx::query(
                "DELETE FROM blobs WHERE id = $1 \
                   AND NOT EXISTS (SELECT 1 FROM arrays WHERE blob_id = $1) \
                   AND NOT EXISTS (SELECT 1 FROM models WHERE file_blob_id = $1 OR checkpoint_blob_id = $1)",
            )
            .bind(blob)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_model(&self, caller: &Caller, id: Uuid) -> Result<Model> {
        self.lab_model(caller.lab_id(), id).await
    }

    /// A model of `lab_id` in any state.
    pub(crate) async fn lab_model(&self, lab_id: Uuid, id: Uuid) -> Result<Model> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM models WHERE id = $1 AND lab_id = $2"
        ))
        .bind(id)
        .bind(lab_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("model", id))?;
        from_row(&row)
    }

    pub async fn list_models(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<Model>> {
        let select = format!("SELECT {COLUMNS} FROM models");
        self.lab_page(
            &select,
            "",
            caller.lab_id(),
            (limit, page_token),
            from_row,
            |m| (m.created_at, m.id),
        )
        .await
    }

    /// A model and where its bytes are, for a worker.
    pub async fn model_source(&self, id: Uuid) -> Result<ModelSource> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, lab_id, file_blob_id, checkpoint_blob_id FROM models WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("model", id))?;
        Ok(ModelSource {
            model: from_row(&row)?,
            lab_id: row.try_get("lab_id")?,
            file_blob: row.try_get("file_blob_id")?,
            checkpoint_blob: row.try_get("checkpoint_blob_id")?,
        })
    }

    /// Records a probe's outcome (worker side).
    pub async fn finish_probe(&self, id: Uuid, outcome: ProbeOutcome) -> Result<()> {
        match outcome {
            ProbeOutcome::Failed(msg) => {
                sqlx::query("UPDATE models SET state = 'failed', error = $2, updated_at = now() WHERE id = $1 AND state = 'probing'")
                    .bind(id)
                    .bind(msg)
                    .execute(&self.pool)
                    .await?;
            }
            ProbeOutcome::Ready {
                layers,
                weights_sha256,
                checkpoint,
            } => {
                let mut writer = match &checkpoint {
                    Some(bytes) => {
                        let mut w =
                            BlobWriter::begin(&self.pool, self.cfg.blob_chunk_bytes, u64::MAX)
                                .await?;
                        w.write(bytes).await?;
                        Some(w)
                    }
                    None => None,
                };
                let mut tx = self.pool.begin().await?;
                let blob = match writer.as_mut() {
                    Some(w) => Some(w.finalize(&mut tx).await?.id),
                    None => None,
                };
                sqlx::query(
                    "UPDATE models SET state = 'ready', layers = $2, weights_sha256 = $3, \
                       checkpoint_blob_id = COALESCE($4, checkpoint_blob_id), error = NULL, updated_at = now() \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(serde_json::to_value(&layers).map_err(Error::internal)?)
                .bind(weights_sha256)
                .bind(blob)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                if let Some(w) = writer {
                    w.committed();
                }
            }
        }
        Ok(())
    }

    /// A ready model of the caller's lab, for scoring.
    pub async fn ready_model(&self, lab_id: Uuid, id: Uuid) -> Result<Model> {
        let m = self.lab_model(lab_id, id).await?;
        if m.state != "ready" {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!("model: {} is {}, not ready", m.id, m.state),
            ));
        }
        Ok(m)
    }
}
