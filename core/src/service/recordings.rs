//! Recordings: read from any supported format, aligned to their stimulus
//! set by id, normalized to repetitions × stimuli × neurons [× bins] with
//! NaN for missing values, scored for per-neuron split-half reliability,
//! and stored in one transaction.

use std::fs::File;

use sqlx::Row;
use uuid::Uuid;

use neuralign_ingest::npy::encode_header;
use neuralign_ingest::recording::{self, RecordingOptions};
use neuralign_ingest::reliability;

use super::arrays::{insert_array, ByteStream};
use super::stimuli::{display_name, join_error};
use super::Service;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::model::Page;
use crate::resources::{Modality, Neuron, Recording, RecordingMeta, Reliability};
use crate::spool::{spool, TempFile};

pub const RELIABILITY_METHOD: &str = "split_half_even_odd_spearman_brown";

pub struct RecordingUpload {
    pub name: String,
    pub stimulus_set: Uuid,
    pub meta: RecordingMeta,
    pub options: RecordingOptions,
}

fn check_meta(m: &RecordingMeta) -> Result<()> {
    for (field, v) in [
        ("region", &m.region),
        ("species", &m.species),
        ("subject", &m.subject),
        ("session", &m.session),
        ("units", &m.units),
    ] {
        if v.as_ref().is_some_and(|v| v.chars().count() > 255) {
            return Err(Error::invalid(format!(
                "{field}: must be at most 255 characters"
            )));
        }
    }
    if let Some(b) = m.bin_size_ms {
        if !(b > 0.0 && b.is_finite()) {
            return Err(Error::invalid(format!(
                "bin_size_ms: must be a positive number, got {b}"
            )));
        }
    }
    Ok(())
}

pub fn summarize(per_neuron: &[Option<f64>]) -> Reliability {
    let mut v: Vec<f64> = per_neuron.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    };
    Reliability {
        method: RELIABILITY_METHOD.to_string(),
        median,
        defined: v.len() as u64,
        above_half: v.iter().filter(|&&x| x >= 0.5).count() as u64,
    }
}

const REC_COLUMNS: &str = "r.id, r.name, r.stimulus_set_id, r.array_id, r.region, r.species, r.subject, r.session, \
     r.modality, r.units, r.bin_size_ms, r.reliability, r.nan_count, r.trial_averaged, r.source, r.created_at, \
     a.shape, a.dtype";
const REC_FROM: &str = "recordings r JOIN arrays a ON a.id = r.array_id";

fn recording_from_row(r: &sqlx::postgres::PgRow) -> Result<Recording> {
    let shape: Vec<u64> = r
        .try_get::<Vec<i64>, _>("shape")?
        .into_iter()
        .map(|d| d as u64)
        .collect();
    let rel: Vec<Option<f64>> = r.try_get("reliability")?;
    let modality: Option<String> = r.try_get("modality")?;
    Ok(Recording {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        stimulus_set_id: r.try_get("stimulus_set_id")?,
        array_id: r.try_get("array_id")?,
        repetitions: shape[0],
        stimuli: shape[1],
        neurons: shape[2],
        time_bins: shape.get(3).copied().unwrap_or(1),
        shape,
        dtype: r.try_get("dtype")?,
        meta: RecordingMeta {
            region: r.try_get("region")?,
            species: r.try_get("species")?,
            subject: r.try_get("subject")?,
            session: r.try_get("session")?,
            modality: modality.as_deref().map(Modality::parse).transpose()?,
            units: r.try_get("units")?,
            bin_size_ms: r.try_get("bin_size_ms")?,
        },
        trial_averaged: r.try_get("trial_averaged")?,
        nan_count: r.try_get::<i64, _>("nan_count")? as u64,
        reliability: summarize(&rel),
        source: r.try_get("source")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Service {
    pub async fn upload_recording(
        &self,
        caller: &Caller,
        up: RecordingUpload,
        body: ByteStream,
    ) -> Result<Recording> {
        let name = display_name("name", &up.name, "recording")?;
        check_meta(&up.meta)?;
        let set_ids = self
            .stimulus_ids(caller, up.stimulus_set)
            .await
            .map_err(|e| match e.code() {
                crate::ErrorCode::NotFound => Error::invalid(format!(
                    "stimulus_set: {} is not a stimulus set of this lab",
                    up.stimulus_set
                )),
                _ => e,
            })?;
        let dir = self.cfg.spool_dir();
        let (input, _) = spool(body, &dir, self.cfg.max_upload_bytes).await?;
        let out = TempFile::new_in(&dir, "recording");
        let (inp, outp, limits, opts) = (
            input.path().to_owned(),
            out.path().to_owned(),
            self.cfg.ingest_limits(),
            up.options,
        );
        let data = tokio::task::spawn_blocking(move || {
            recording::read(&inp, &opts, &set_ids, &limits, &outp)
        })
        .await
        .map_err(join_error)??;
        drop(input);
        // Reliability reads the normalized file while it streams into the
        // blob store: one is CPU-bound, the other waits on Postgres.
        let (outp, dtype, shape) = (out.path().to_owned(), data.dtype, data.shape.clone());
        let reliability = tokio::task::spawn_blocking(move || -> Result<_> {
            let offset = encode_header(dtype.descr(), &shape).len() as u64;
            let mut f = File::open(&outp)?;
            Ok(reliability::split_half(&mut f, offset, dtype, &shape)?)
        });
        let (writer, rel) = tokio::join!(self.blob_from_file(out.path()), reliability);
        let (mut writer, rel) = (writer?, rel.map_err(join_error)??);

        let mut meta = up.meta;
        if meta.bin_size_ms.is_none() {
            meta.bin_size_ms = data.bin_size.map(|s| s * 1000.0);
        }
        let mut source = data.source.clone();
        if let Some(o) = source.as_object_mut() {
            o.insert("format".into(), data.format.as_str().into());
            o.insert("source_dtype".into(), data.source_dtype.clone().into());
        }
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
        let index: Vec<i32> = data.stimulus_index.iter().map(|&i| i as i32).collect();
        let row = sqlx::query(
            "INSERT INTO recordings (id, lab_id, stimulus_set_id, array_id, name, region, species, subject, session, \
               modality, units, bin_size_ms, stimulus_index, neuron_ids, reliability, nan_count, trial_averaged, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING created_at",
        )
        .bind(id)
        .bind(caller.lab_id())
        .bind(up.stimulus_set)
        .bind(array.id)
        .bind(&name)
        .bind(&meta.region)
        .bind(&meta.species)
        .bind(&meta.subject)
        .bind(&meta.session)
        .bind(meta.modality.map(Modality::as_str))
        .bind(&meta.units)
        .bind(meta.bin_size_ms)
        .bind(&index)
        .bind(&data.neuron_ids)
        .bind(&rel)
        .bind(data.nan_count as i64)
        .bind(data.trial_averaged)
        .bind(&source)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        writer.committed();
        let shape = data.shape.clone();
        Ok(Recording {
            id,
            name,
            stimulus_set_id: up.stimulus_set,
            array_id: array.id,
            repetitions: shape[0],
            stimuli: shape[1],
            neurons: shape[2],
            time_bins: shape.get(3).copied().unwrap_or(1),
            shape,
            dtype: array.dtype,
            meta,
            trial_averaged: data.trial_averaged,
            nan_count: data.nan_count,
            reliability: summarize(&rel),
            source,
            created_at: row.try_get("created_at")?,
        })
    }

    pub async fn get_recording(&self, caller: &Caller, id: Uuid) -> Result<Recording> {
        let row = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM {REC_FROM} WHERE r.id = $1 AND r.lab_id = $2"
        ))
        .bind(id)
        .bind(caller.lab_id())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("recording", id))?;
        recording_from_row(&row)
    }

    pub async fn list_recordings(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<Recording>> {
        let select = format!("SELECT {REC_COLUMNS} FROM {REC_FROM}");
        self.lab_page(
            &select,
            "r",
            caller.lab_id(),
            (limit, page_token),
            recording_from_row,
            |r| (r.created_at, r.id),
        )
        .await
    }

    /// Every neuron's id and split-half reliability.
    pub async fn recording_neurons(&self, caller: &Caller, id: Uuid) -> Result<Vec<Neuron>> {
        let row = sqlx::query(
            "SELECT neuron_ids, reliability FROM recordings WHERE id = $1 AND lab_id = $2",
        )
        .bind(id)
        .bind(caller.lab_id())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("recording", id))?;
        let ids: Vec<String> = row.try_get("neuron_ids")?;
        let rel: Vec<Option<f64>> = row.try_get("reliability")?;
        Ok(ids
            .into_iter()
            .zip(rel)
            .enumerate()
            .map(|(i, (neuron_id, reliability))| Neuron {
                index: i as u32,
                neuron_id,
                reliability,
            })
            .collect())
    }

    /// The recording's stimulus ids in axis order.
    pub async fn recording_stimulus_ids(&self, caller: &Caller, id: Uuid) -> Result<Vec<String>> {
        let row = sqlx::query(
            "SELECT stimulus_set_id, stimulus_index FROM recordings WHERE id = $1 AND lab_id = $2",
        )
        .bind(id)
        .bind(caller.lab_id())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("recording", id))?;
        let set: Uuid = row.try_get("stimulus_set_id")?;
        let index: Vec<i32> = row.try_get("stimulus_index")?;
        let ids = self.stimulus_ids(caller, set).await?;
        Ok(index.into_iter().map(|i| ids[i as usize].clone()).collect())
    }
}

/// A recording upload as the transports receive it: flat fields (HTTP query
/// parameters, gRPC's first message), parsed in one place.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingParams {
    pub name: Option<String>,
    /// The stimulus set the recording's stimulus ids refer to (required).
    pub stimulus_set: Option<String>,
    pub region: Option<String>,
    pub species: Option<String>,
    pub subject: Option<String>,
    pub session: Option<String>,
    /// spikes | calcium | fmri | eeg | meg | lfp | other
    pub modality: Option<String>,
    pub units: Option<String>,
    pub bin_size_ms: Option<f64>,
    /// npy | npz | hdf5 | csv | nwb; sniffed when absent.
    pub format: Option<String>,
    pub key: Option<String>,
    /// HDF5 (or an NWB processed array): dataset path.
    pub dataset: Option<String>,
    pub stimulus_ids_dataset: Option<String>,
    pub neuron_ids_dataset: Option<String>,
    /// reject (default) | mask: store NaN as missing values.
    pub nan_policy: Option<String>,
    /// NWB: intervals table of stimulus presentations (default trials).
    pub intervals: Option<String>,
    /// NWB: the column naming each presentation's stimulus (default stimulus_id).
    pub stimulus_column: Option<String>,
    /// NWB: counting window after each presentation's start, seconds.
    pub window_start: Option<f64>,
    pub window_end: Option<f64>,
    /// NWB: bin width, seconds (default: the whole window).
    pub bin_size: Option<f64>,
}

impl RecordingParams {
    pub fn into_upload(self) -> Result<RecordingUpload> {
        use super::stimuli::nonempty;
        use crate::model::parse_choice;
        let set = nonempty(self.stimulus_set).ok_or_else(|| {
            Error::invalid("stimulus_set: required (the id of the recording's stimulus set)")
        })?;
        Ok(RecordingUpload {
            name: self.name.unwrap_or_default(),
            stimulus_set: crate::model::parse_id("stimulus_set", &set)?,
            meta: RecordingMeta {
                region: nonempty(self.region),
                species: nonempty(self.species),
                subject: nonempty(self.subject),
                session: nonempty(self.session),
                modality: parse_choice(
                    "modality",
                    self.modality.as_deref(),
                    "spikes, calcium, fmri, eeg, meg, lfp, other",
                )?,
                units: nonempty(self.units),
                bin_size_ms: self.bin_size_ms,
            },
            options: RecordingOptions {
                format: parse_choice("format", self.format.as_deref(), "npy, npz, hdf5, csv, nwb")?,
                key: nonempty(self.key),
                dataset: nonempty(self.dataset),
                stimulus_ids_dataset: nonempty(self.stimulus_ids_dataset),
                neuron_ids_dataset: nonempty(self.neuron_ids_dataset),
                nan_policy: parse_choice("nan_policy", self.nan_policy.as_deref(), "reject, mask")?,
                intervals: nonempty(self.intervals),
                stimulus_column: nonempty(self.stimulus_column),
                window_start: self.window_start,
                window_end: self.window_end,
                bin_size: self.bin_size,
            },
        })
    }
}
