//! Stimulus sets: an upload in any supported format is spooled, read off
//! the async runtime into a normalized array plus per-stimulus metadata and
//! thumbnails, then stored in one transaction (blob, array row, set row,
//! stimulus rows), so a failure anywhere leaves nothing behind.

use serde_json::{json, Map, Value};
use sqlx::Row;
use uuid::Uuid;

use neuralign_ingest::stimuli::{self, StimulusOptions};

use super::arrays::{insert_array, ByteStream};
use super::{page_limit, Service};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::model::{parse_choice, Page};
use crate::resources::{Stimulus, StimulusSet};
use crate::spool::{spool, TempFile};

/// Rows per INSERT … UNNEST batch of stimuli.
const BATCH: usize = 5000;

pub struct StimulusSetUpload {
    pub name: String,
    pub options: StimulusOptions,
}

/// A display name: trimmed, non-empty, at most 255 characters.
pub(super) fn display_name(field: &str, name: &str, default: &str) -> Result<String> {
    let name = name.trim();
    let name = if name.is_empty() { default } else { name };
    if name.chars().count() > 255 {
        return Err(Error::invalid(format!(
            "{field}: must be at most 255 characters"
        )));
    }
    Ok(name.to_string())
}

pub(super) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::internal(e)
}

const SET_COLUMNS: &str =
    "s.id, s.name, s.kind, s.count, s.array_id, s.source, s.extra_columns, s.has_labels, \
     s.created_at, a.shape, a.dtype, b.sha256";
const SET_FROM: &str =
    "stimulus_sets s JOIN arrays a ON a.id = s.array_id JOIN blobs b ON b.id = a.blob_id";

fn set_from_row(r: &sqlx::postgres::PgRow) -> Result<StimulusSet> {
    let shape: Vec<i64> = r.try_get("shape")?;
    Ok(StimulusSet {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        count: r.try_get::<i64, _>("count")? as u64,
        array_id: r.try_get("array_id")?,
        shape: shape.into_iter().map(|d| d as u64).collect(),
        dtype: r.try_get("dtype")?,
        source: r.try_get("source")?,
        extra_columns: r.try_get("extra_columns")?,
        has_labels: r.try_get("has_labels")?,
        sha256: hex::encode(r.try_get::<Vec<u8>, _>("sha256")?),
        created_at: r.try_get("created_at")?,
    })
}

impl Service {
    pub async fn upload_stimulus_set(
        &self,
        caller: &Caller,
        up: StimulusSetUpload,
        body: ByteStream,
    ) -> Result<StimulusSet> {
        let name = display_name("name", &up.name, "stimuli")?;
        let dir = self.cfg.spool_dir();
        let (input, _) = spool(body, &dir, self.cfg.max_upload_bytes).await?;
        let out = TempFile::new_in(&dir, "stimuli");
        let (inp, outp, limits, opts) = (
            input.path().to_owned(),
            out.path().to_owned(),
            self.cfg.ingest_limits(),
            up.options,
        );
        let data = tokio::task::spawn_blocking(move || stimuli::read(&inp, &opts, &limits, &outp))
            .await
            .map_err(join_error)??;
        drop(input);

        let mut writer = self.blob_from_file(out.path()).await?;
        let mut tx = self.pool.begin().await?;
        let array = insert_array(
            &mut tx,
            &mut writer,
            caller.lab_id(),
            &name,
            data.dtype.name(),
            &data.shape,
        )
        .await?;
        let id = Uuid::new_v4();
        let source = json!({
            "format": data.format.as_str(),
            "source_dtype": data.source_dtype,
            "layout": data.layout,
            "value_range": [data.value_range.0, data.value_range.1],
            "resized_to": data.resized_to.map(|(w, h)| format!("{w}x{h}")),
        });
        let row = sqlx::query(
            "INSERT INTO stimulus_sets (id, lab_id, array_id, name, kind, count, source, extra_columns, has_labels) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at",
        )
        .bind(id)
        .bind(caller.lab_id())
        .bind(array.id)
        .bind(&name)
        .bind(kind_name(data.kind))
        .bind(data.ids.len() as i64)
        .bind(&source)
        .bind(&data.extra_columns)
        .bind(data.labels.is_some())
        .fetch_one(&mut *tx)
        .await?;
        let n = data.ids.len();
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            let idx: Vec<i32> = (start as i32..end as i32).collect();
            let labels: Vec<Option<String>> = (start..end)
                .map(|i| data.labels.as_ref().map(|l| l[i].clone()))
                .collect();
            let extra: Vec<Value> = (start..end)
                .map(|i| {
                    let m: Map<String, Value> = data
                        .extra_columns
                        .iter()
                        .zip(data.extra.get(i).map(Vec::as_slice).unwrap_or(&[]))
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect();
                    Value::Object(m)
                })
                .collect();
            let q = if data.thumbnails.is_empty() {
                sqlx::query(
                    "INSERT INTO stimuli (set_id, idx, stimulus_id, label, extra) \
                     SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::jsonb[])",
                )
            } else {
                sqlx::query(
                    "INSERT INTO stimuli (set_id, idx, stimulus_id, label, extra, thumbnail) \
                     SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[])",
                )
            };
            q.bind(id)
                .bind(&idx)
                .bind(&data.ids[start..end])
                .bind(&labels)
                .bind(&extra)
                .bind(data.thumbnails.get(start..end).unwrap_or(&[]))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        writer.committed();
        Ok(StimulusSet {
            id,
            name,
            kind: kind_name(data.kind).to_string(),
            count: n as u64,
            array_id: array.id,
            shape: array.shape,
            dtype: array.dtype,
            source,
            extra_columns: data.extra_columns,
            has_labels: data.labels.is_some(),
            sha256: array.sha256,
            created_at: row.try_get("created_at")?,
        })
    }

    pub async fn get_stimulus_set(&self, caller: &Caller, id: Uuid) -> Result<StimulusSet> {
        let row = sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM {SET_FROM} WHERE s.id = $1 AND s.lab_id = $2"
        ))
        .bind(id)
        .bind(caller.lab_id())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("stimulus set", id))?;
        set_from_row(&row)
    }

    pub async fn list_stimulus_sets(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<StimulusSet>> {
        let select = format!("SELECT {SET_COLUMNS} FROM {SET_FROM}");
        self.lab_page(
            &select,
            "s",
            caller.lab_id(),
            (limit, page_token),
            set_from_row,
            |s| (s.created_at, s.id),
        )
        .await
    }

    /// Stimuli in set order; the page token is the next index.
    pub async fn list_stimuli(
        &self,
        caller: &Caller,
        set_id: Uuid,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<Stimulus>> {
        self.get_stimulus_set(caller, set_id).await?;
        let limit = page_limit(limit)?;
        let from: i32 = match page_token {
            None | Some("") => 0,
            Some(t) => t.parse().map_err(|_| {
                Error::invalid(format!(
                    "page_token: {t:?} is not a token this server issued"
                ))
            })?,
        };
        let rows = sqlx::query(
            "SELECT idx, stimulus_id, label, extra, thumbnail IS NOT NULL AS has_thumbnail FROM stimuli \
             WHERE set_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        )
        .bind(set_id)
        .bind(from)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                let extra: Value = r.try_get("extra")?;
                Ok(Stimulus {
                    index: r.try_get::<i32, _>("idx")? as u32,
                    stimulus_id: r.try_get("stimulus_id")?,
                    label: r.try_get("label")?,
                    extra: match extra {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    },
                    has_thumbnail: r.try_get("has_thumbnail")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            (items.last().map_or(0, |s| s.index) + 1).to_string()
        });
        Ok(Page {
            items,
            next_page_token: next,
        })
    }

    /// The stimulus's PNG thumbnail.
    pub async fn stimulus_thumbnail(
        &self,
        caller: &Caller,
        set_id: Uuid,
        stimulus_id: &str,
    ) -> Result<Vec<u8>> {
        self.get_stimulus_set(caller, set_id).await?;
        let png: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT thumbnail FROM stimuli WHERE set_id = $1 AND stimulus_id = $2",
        )
        .bind(set_id)
        .bind(stimulus_id)
        .fetch_optional(&self.pool)
        .await?;
        match png {
            None => Err(Error::not_found("stimulus", format!("{stimulus_id:?}"))),
            Some(None) => Err(Error::not_found(
                "thumbnail of stimulus",
                format!("{stimulus_id:?} (only image sets have thumbnails)"),
            )),
            Some(Some(p)) => Ok(p),
        }
    }

    /// The set's stimulus ids in order, for aligning a recording.
    pub(super) async fn stimulus_ids(&self, caller: &Caller, set_id: Uuid) -> Result<Vec<String>> {
        self.get_stimulus_set(caller, set_id).await?;
        Ok(
            sqlx::query_scalar("SELECT stimulus_id FROM stimuli WHERE set_id = $1 ORDER BY idx")
                .bind(set_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

fn kind_name(k: stimuli::StimulusKind) -> &'static str {
    match k {
        stimuli::StimulusKind::Images => "images",
        stimuli::StimulusKind::Features => "features",
        stimuli::StimulusKind::Sequences => "sequences",
    }
}

pub(super) fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A stimulus-set upload as the transports receive it: flat text fields
/// (HTTP query parameters, gRPC's first message), parsed in one place.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StimulusSetParams {
    /// A name for the set.
    pub name: Option<String>,
    /// npy | npz | zip (PNG/JPEG + manifest.csv) | hdf5; sniffed when absent.
    pub format: Option<String>,
    /// images | features | sequences; inferred when unambiguous.
    pub kind: Option<String>,
    /// nhwc | nchw for 4-D image arrays; inferred when unambiguous.
    pub layout: Option<String>,
    /// The array inside an .npz.
    pub key: Option<String>,
    /// HDF5: dataset path of the stimuli, and optional id and label datasets.
    pub dataset: Option<String>,
    pub ids_dataset: Option<String>,
    pub labels_dataset: Option<String>,
    /// WxH: resize every archive image to this size.
    pub resize: Option<String>,
    /// nearest | bilinear | bicubic | lanczos (default bilinear).
    pub resize_filter: Option<String>,
}

impl StimulusSetParams {
    pub fn into_upload(self) -> Result<StimulusSetUpload> {
        Ok(StimulusSetUpload {
            name: self.name.unwrap_or_default(),
            options: StimulusOptions {
                format: parse_choice("format", self.format.as_deref(), "npy, npz, zip, hdf5")?,
                kind: parse_choice("kind", self.kind.as_deref(), "images, features, sequences")?,
                layout: parse_choice("layout", self.layout.as_deref(), "nhwc, nchw")?,
                key: nonempty(self.key),
                dataset: nonempty(self.dataset),
                ids_dataset: nonempty(self.ids_dataset),
                labels_dataset: nonempty(self.labels_dataset),
                resize: nonempty(self.resize),
                resize_filter: parse_choice(
                    "resize_filter",
                    self.resize_filter.as_deref(),
                    "nearest, bilinear, bicubic, lanczos",
                )?,
            },
        })
    }
}
