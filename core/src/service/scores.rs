//! What score jobs read and write: a benchmark's inputs (recording, kept
//! neurons, stimulus set), the activation cache, score rows; and what
//! clients read: a model's score card, leaderboards per benchmark and over
//! a benchmark set, and the region → layer map.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::Service;
use crate::auth::Caller;
use crate::budget::human;
use crate::error::{Error, Result};
use crate::resources::{
    Benchmark, BenchmarkScore, LayerScore, LeaderboardEntry, RegionLayer, RegionMap, ScoreCard,
};

/// Everything a score job needs about one benchmark.
pub struct ScoringInput {
    pub benchmark: Benchmark,
    pub region: Option<String>,
    pub recording_blob: Uuid,
    pub recording_shape: Vec<u64>,
    /// Neuron indices the benchmark keeps (None: all).
    pub neurons: Option<Vec<i64>>,
    /// Index into the stimulus set of each recording stimulus.
    pub stimulus_index: Vec<i64>,
    pub stimulus_set_id: Uuid,
    pub stimulus_set_kind: String,
    /// The stimulus set's array shape (stimuli first).
    pub stimulus_shape: Vec<u64>,
    pub stimulus_blob: Uuid,
    /// sha256 of the stimulus set's normalized array (the cache's key part).
    pub stimulus_sha256: String,
}

/// A layer's scores in one region and the benchmarks they come from.
type LayerScores = (Vec<f64>, Vec<String>);

/// One score row to store.
pub struct NewScore {
    pub layer: String,
    pub metric: String,
    pub time_bin: Option<i32>,
    pub selection_value: Option<f64>,
    pub raw: f64,
    pub ceiling: Option<f64>,
    pub normalized: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub selected: bool,
    pub per_neuron_array_id: Option<Uuid>,
    pub seeds: Value,
}

impl Service {
    pub(super) async fn validate_score(
        &self,
        caller: &Caller,
        s: &crate::model::ScoreSpec,
    ) -> Result<()> {
        let model = self
            .ready_model(caller.lab_id(), s.model)
            .await
            .map_err(|e| match e.code() {
                crate::ErrorCode::NotFound => {
                    Error::invalid(format!("model: {} is not a model of this lab", s.model))
                }
                _ => Error::new(e.code(), e.client_message()),
            })?;
        if s.benchmarks.is_empty() || s.benchmarks.len() > 50 {
            return Err(Error::invalid(
                "benchmarks: name between 1 and 50 benchmarks",
            ));
        }
        let want = match model.input.kind {
            crate::architecture::InputKind::Images => "images",
            crate::architecture::InputKind::Features => "features",
            crate::architecture::InputKind::Sequences => "sequences",
        };
        for (i, r) in s.benchmarks.iter().enumerate() {
            let input =
                self.scoring_input(caller.lab_id(), r)
                    .await
                    .map_err(|e| match e.code() {
                        crate::ErrorCode::NotFound => Error::invalid(format!(
                            "benchmarks[{i}]: no benchmark {r:?} is visible to this lab"
                        )),
                        _ => Error::invalid(format!("benchmarks[{i}]: {}", e.client_message())),
                    })?;
            if input.stimulus_set_kind != want {
                return Err(Error::invalid(format!(
                    "benchmarks[{i}]: {} shows {} but model {} takes {want}",
                    input.benchmark.reference, input.stimulus_set_kind, model.id
                )));
            }
            if s.bootstrap.is_some()
                && input
                    .benchmark
                    .splits
                    .as_ref()
                    .is_some_and(|s| s.explicit.is_some())
            {
                return Err(Error::invalid(format!(
                    "bootstrap: {} has explicit splits, where layers are selected inside each split and the score is a nested \
                     cross-validation estimate with no bootstrap interval; leave bootstrap out",
                    input.benchmark.reference
                )));
            }
            if input.stimulus_index.len() < 6 {
                return Err(Error::invalid(format!(
                    "benchmarks[{i}]: {} has {} stimuli; layer selection holds out half of them and needs at least 6",
                    input.benchmark.reference,
                    input.stimulus_index.len()
                )));
            }
            let est = self.score_estimate(&model, s, &input)?;
            if est.total > self.cfg.max_compute_bytes {
                return Err(Error::new(
                    crate::ErrorCode::ResourceExhausted,
                    format!(
                        "benchmarks[{i}]: scoring {} on {} needs an estimated {} (stimuli {}, activations {}, extraction {}, metric {}), \
                         over this service's limit of {}; score fewer \"layers\", use avg or max \"pooling\", or add \"reduce\": {{\"method\": \"pca\", \"k\": 256}}",
                        model.id,
                        input.benchmark.reference,
                        human(est.total),
                        human(est.stimuli),
                        human(est.activations),
                        human(est.extraction),
                        human(est.metric),
                        human(self.cfg.max_compute_bytes)
                    ),
                ));
            }
        }
        if let Some(layers) = &s.layers {
            if layers.is_empty() {
                return Err(Error::invalid(
                    "layers: name at least one layer, or leave it out for all",
                ));
            }
            if let Some(bad) = layers
                .iter()
                .find(|l| !model.layers.iter().any(|m| &m.name == *l))
            {
                let names: Vec<&str> = model.layers.iter().map(|l| l.name.as_str()).collect();
                return Err(Error::invalid(format!(
                    "layers: model {} has no layer {bad:?} (it has {})",
                    model.id,
                    names.join(", ")
                )));
            }
        }
        if let Some(r) = &s.reduce {
            if r.k == 0 {
                return Err(Error::invalid("reduce.k: must be at least 1"));
            }
        }
        crate::inference::validate(s.bootstrap.as_ref(), None, None)?;
        if s.batch_size.is_some_and(|b| b == 0 || b > 4096) {
            return Err(Error::invalid("batch_size: must be between 1 and 4096"));
        }
        Ok(())
    }

    /// The memory one benchmark of a score job needs, from the model's
    /// probed layers (the wanted ones) and the benchmark's data shapes.
    pub fn score_estimate(
        &self,
        model: &crate::resources::Model,
        s: &crate::model::ScoreSpec,
        input: &ScoringInput,
    ) -> Result<crate::budget::ScoreEstimate> {
        let metric = crate::catalog::Metric::parse("metric", &input.benchmark.metric)?;
        let layers: Vec<(&str, &[i64])> = model
            .layers
            .iter()
            .filter(|l| s.layers.as_ref().is_none_or(|w| w.contains(&l.name)))
            .map(|l| (l.name.as_str(), l.shape.as_slice()))
            .collect();
        let n_set = input.stimulus_shape.first().copied().unwrap_or(0);
        let units = input.stimulus_shape.iter().skip(1).product::<u64>();
        let n_rec = input.stimulus_index.len() as u64;
        let neurons = match &input.neurons {
            Some(n) => n.len() as u64,
            None => input.recording_shape.get(2).copied().unwrap_or(1),
        };
        Ok(crate::budget::score_estimate(
            &layers,
            s.pooling,
            n_set,
            units,
            n_rec,
            neurons,
            &metric,
            s.reduce.as_ref(),
            s.bootstrap.as_ref(),
            crate::budget::extraction_budget(false),
        ))
    }

    pub async fn scoring_input(&self, lab_id: Uuid, reference: &str) -> Result<ScoringInput> {
        let benchmark = self.benchmark_for_lab(lab_id, reference).await?;
        let row = sqlx::query(
            "SELECT r.region, r.stimulus_index, r.stimulus_set_id, ra.blob_id AS rec_blob, ra.shape AS rec_shape, \
                    b.neurons, s.kind, sa.blob_id AS set_blob, sa.shape AS set_shape, sb.sha256 AS set_sha \
             FROM benchmarks b JOIN recordings r ON r.id = b.recording_id JOIN arrays ra ON ra.id = r.array_id \
             JOIN stimulus_sets s ON s.id = r.stimulus_set_id JOIN arrays sa ON sa.id = s.array_id \
             JOIN blobs sb ON sb.id = sa.blob_id WHERE b.id = $1",
        )
        .bind(benchmark.id)
        .fetch_one(&self.pool)
        .await?;
        let shape: Vec<i64> = row.try_get("rec_shape")?;
        let index: Vec<i32> = row.try_get("stimulus_index")?;
        let neurons: Option<Vec<i32>> = row.try_get("neurons")?;
        Ok(ScoringInput {
            benchmark,
            region: row.try_get("region")?,
            recording_blob: row.try_get("rec_blob")?,
            recording_shape: shape.into_iter().map(|d| d as u64).collect(),
            neurons: neurons.map(|n| n.into_iter().map(i64::from).collect()),
            stimulus_index: index.into_iter().map(i64::from).collect(),
            stimulus_set_id: row.try_get("stimulus_set_id")?,
            stimulus_set_kind: row.try_get("kind")?,
            stimulus_blob: row.try_get("set_blob")?,
            stimulus_shape: row
                .try_get::<Vec<i64>, _>("set_shape")?
                .into_iter()
                .map(|d| d as u64)
                .collect(),
            stimulus_sha256: hex::encode(row.try_get::<Vec<u8>, _>("set_sha")?),
        })
    }

    /// A benchmark's stored ceiling under `key` (see `store_ceiling`).
    pub async fn cached_ceiling(&self, benchmark_id: Uuid, key: &str) -> Result<Option<Value>> {
        Ok(sqlx::query_scalar(
            "SELECT ceiling FROM benchmark_ceilings WHERE benchmark_id = $1 AND cache_key = $2",
        )
        .bind(benchmark_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a benchmark's ceiling on its report stimuli. A benchmark
    /// version is immutable, so the key only needs what the job adds (the
    /// engine version, the halves' seed, the ceiling and metric settings).
    pub async fn store_ceiling(
        &self,
        benchmark_id: Uuid,
        key: &str,
        ceiling: &Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO benchmark_ceilings (benchmark_id, cache_key, ceiling, engine_version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(benchmark_id)
        .bind(key)
        .bind(ceiling)
        .bind(crate::ENGINE_VERSION)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Which of `keys` the activation cache holds (counting no hit).
    pub async fn activations_held(&self, keys: &[String]) -> Result<HashSet<String>> {
        Ok(
            sqlx::query_scalar("SELECT cache_key FROM activations WHERE cache_key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect(),
        )
    }

    /// The cached activation arrays' blobs of those `keys` that are held,
    /// counting the hits (statistics: committed without waiting for the
    /// WAL flush).
    pub async fn cached_activations(&self, keys: &[String]) -> Result<HashMap<String, Uuid>> {
        let mut tx = crate::db::begin_unflushed(&self.pool).await?;
        let rows = sqlx::query(
            "UPDATE activations SET hits = hits + 1, updated_at = now() WHERE cache_key = ANY($1) \
             RETURNING cache_key, (SELECT blob_id FROM arrays WHERE id = array_id) AS blob_id",
        )
        .bind(keys)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("cache_key")?, r.try_get("blob_id")?)))
            .collect()
    }

    /// Stores one layer's activations (an `.npy`) under `key`; returns the
    /// id of the blob that holds them.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_activation(
        &self,
        lab_id: Uuid,
        key: &str,
        model_id: Uuid,
        stimulus_set_id: Uuid,
        layer: &str,
        preprocessing: &Value,
        npy: Vec<u8>,
        shape: &[u64],
    ) -> Result<Uuid> {
        let mut writer =
            crate::blobs::BlobWriter::begin(&self.pool, self.cfg.blob_chunk_bytes, u64::MAX)
                .await?;
        writer.write(&npy).await?;
        let mut tx = self.pool.begin().await?;
        let array = super::arrays::insert_array(
            &mut tx,
            &mut writer,
            lab_id,
            &format!("activations {layer}"),
            "float32",
            shape,
        )
        .await?;
        sqlx::query(
            "INSERT INTO activations (cache_key, model_id, stimulus_set_id, layer, array_id, preprocessing) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cache_key) DO NOTHING",
        )
        .bind(key)
        .bind(model_id)
        .bind(stimulus_set_id)
        .bind(layer)
        .bind(array.id)
        .bind(preprocessing)
        .execute(&mut *tx)
        .await?;
        let blob: Uuid = sqlx::query_scalar("SELECT blob_id FROM arrays WHERE id = $1")
            .bind(array.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        writer.committed();
        Ok(blob)
    }

    /// Stores a small float64 array (per-neuron values) and returns its id.
    pub async fn store_values(&self, lab_id: Uuid, name: &str, values: &[f64]) -> Result<Uuid> {
        let bytes = crate::npy::encode_f64(&[values.len() as u64], values);
        let mut writer =
            crate::blobs::BlobWriter::begin(&self.pool, self.cfg.blob_chunk_bytes, u64::MAX)
                .await?;
        writer.write(&bytes).await?;
        let mut tx = crate::db::begin_unflushed(&self.pool).await?;
        let array = super::arrays::insert_array(
            &mut tx,
            &mut writer,
            lab_id,
            name,
            "float64",
            &[values.len() as u64],
        )
        .await?;
        tx.commit().await?;
        writer.committed();
        Ok(array.id)
    }

    pub async fn insert_scores(
        &self,
        job_id: Uuid,
        lab_id: Uuid,
        model_id: Uuid,
        benchmark_id: Uuid,
        rows: &[NewScore],
    ) -> Result<()> {
        let mut tx = crate::db::begin_unflushed(&self.pool).await?;
        sqlx::query("DELETE FROM scores WHERE job_id = $1 AND benchmark_id = $2")
            .bind(job_id)
            .bind(benchmark_id)
            .execute(&mut *tx)
            .await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO scores (job_id, lab_id, model_id, benchmark_id, layer, metric, time_bin, selection_value, raw, \
                   ceiling, normalized, ci_low, ci_high, selected, per_neuron_array_id, seeds, engine_version, libtorch_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(job_id)
            .bind(lab_id)
            .bind(model_id)
            .bind(benchmark_id)
            .bind(&r.layer)
            .bind(&r.metric)
            .bind(r.time_bin)
            .bind(r.selection_value)
            .bind(r.raw)
            .bind(r.ceiling)
            .bind(r.normalized)
            .bind(r.ci.map(|c| c[0]))
            .bind(r.ci.map(|c| c[1]))
            .bind(r.selected)
            .bind(r.per_neuron_array_id)
            .bind(&r.seeds)
            .bind(crate::ENGINE_VERSION)
            .bind(crate::LIBTORCH_VERSION)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every benchmark's latest score for a model of the caller's lab.
    pub async fn score_card(&self, caller: &Caller, model_id: Uuid) -> Result<ScoreCard> {
        self.lab_score_card(caller.lab_id(), model_id).await
    }

    async fn lab_score_card(&self, lab_id: Uuid, model_id: Uuid) -> Result<ScoreCard> {
        let model = self.lab_model(lab_id, model_id).await?;
        let rows = sqlx::query(
            "WITH latest AS ( \
               SELECT DISTINCT ON (benchmark_id) benchmark_id, job_id FROM scores WHERE model_id = $1 \
               ORDER BY benchmark_id, created_at DESC) \
             SELECT s.*, r.region FROM scores s JOIN latest l ON l.benchmark_id = s.benchmark_id AND l.job_id = s.job_id \
             JOIN benchmarks b ON b.id = s.benchmark_id JOIN recordings r ON r.id = b.recording_id \
             WHERE s.model_id = $1 ORDER BY s.benchmark_id, s.id",
        )
        .bind(model_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<BenchmarkScore> = Vec::new();
        for r in &rows {
            let bench: Uuid = r.try_get("benchmark_id")?;
            let layer = LayerScore {
                layer: r.try_get("layer")?,
                time_bin: r.try_get("time_bin")?,
                selection_value: r.try_get("selection_value")?,
                raw: r.try_get("raw")?,
                ceiling: r.try_get("ceiling")?,
                normalized: r.try_get("normalized")?,
                selected: r.try_get("selected")?,
            };
            if out.last().is_none_or(|b| b.benchmark_id != bench) {
                let b = self.benchmark_for_lab(lab_id, &bench.to_string()).await?;
                out.push(BenchmarkScore {
                    benchmark_id: bench,
                    benchmark: b.reference,
                    region: r.try_get("region")?,
                    metric: r.try_get("metric")?,
                    job_id: r.try_get("job_id")?,
                    layer: String::new(),
                    raw: f64::NAN,
                    ceiling: None,
                    normalized: None,
                    ci: None,
                    per_neuron_array_id: None,
                    seeds: r.try_get("seeds")?,
                    engine_version: r.try_get("engine_version")?,
                    libtorch_version: r.try_get("libtorch_version")?,
                    curve: Vec::new(),
                    scored_at: r.try_get("created_at")?,
                });
            }
            let b = out.last_mut().expect("pushed");
            if layer.selected {
                b.layer = layer.layer.clone();
                if layer.time_bin.is_none() {
                    let (lo, hi): (Option<f64>, Option<f64>) =
                        (r.try_get("ci_low")?, r.try_get("ci_high")?);
                    b.ci = lo.zip(hi).map(|(l, h)| [l, h]);
                    b.per_neuron_array_id = r.try_get("per_neuron_array_id")?;
                }
            }
            b.curve.push(layer);
        }
        for b in out.iter_mut() {
            let selected: Vec<&LayerScore> = b.curve.iter().filter(|l| l.selected).collect();
            (b.raw, b.ceiling, b.normalized, b.ci) =
                crate::resources::selected_summary(&selected, b.ci);
        }
        Ok(ScoreCard {
            model,
            benchmarks: out,
        })
    }

    /// The best score of every model version on one benchmark (its latest
    /// score job), ranked. A public benchmark ranks every lab's models.
    pub async fn leaderboard(
        &self,
        caller: &Caller,
        reference: &str,
    ) -> Result<Vec<LeaderboardEntry>> {
        let b = self.get_benchmark(caller, reference).await?;
        let rows = sqlx::query(
            "WITH latest AS ( \
               SELECT DISTINCT ON (model_id) model_id, job_id FROM scores \
               WHERE benchmark_id = $1 AND selected AND (lab_id = $2 OR $3) ORDER BY model_id, created_at DESC) \
             SELECT s.model_id, min(s.layer) AS layer, avg(s.raw) AS raw, avg(s.normalized) AS normalized, \
                    CASE WHEN count(*) = 1 THEN min(s.ci_low) END AS ci_low, \
                    CASE WHEN count(*) = 1 THEN min(s.ci_high) END AS ci_high, \
                    s.job_id, max(s.created_at) AS created_at, m.name, m.version, l.name AS lab \
             FROM scores s JOIN latest t ON t.model_id = s.model_id AND t.job_id = s.job_id \
             JOIN models m ON m.id = s.model_id JOIN labs l ON l.id = s.lab_id \
             WHERE s.benchmark_id = $1 AND s.selected \
             GROUP BY s.model_id, s.job_id, m.name, m.version, l.name",
        )
        .bind(b.id)
        .bind(caller.lab_id())
        .bind(b.public)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = rows
            .iter()
            .map(|r| {
                let raw: f64 = r.try_get("raw")?;
                let normalized: Option<f64> = r.try_get("normalized")?;
                let (lo, hi): (Option<f64>, Option<f64>) =
                    (r.try_get("ci_low")?, r.try_get("ci_high")?);
                Ok(LeaderboardEntry {
                    rank: 0,
                    lab: r.try_get("lab")?,
                    model_id: r.try_get("model_id")?,
                    model: format!(
                        "{}@{}",
                        r.try_get::<String, _>("name")?,
                        r.try_get::<i32, _>("version")?
                    ),
                    layer: Some(r.try_get("layer")?),
                    score: normalized.unwrap_or(raw),
                    raw: Some(raw),
                    ci: lo.zip(hi).map(|(l, h)| [l, h]),
                    benchmarks: 1,
                    job_id: Some(r.try_get("job_id")?),
                    scored_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rank(&mut entries);
        Ok(entries)
    }

    /// The mean score over a set of benchmarks, for models scored on all of them.
    pub async fn aggregate_leaderboard(
        &self,
        caller: &Caller,
        references: &[String],
    ) -> Result<Vec<LeaderboardEntry>> {
        if references.is_empty() {
            return Err(Error::invalid("benchmarks: name at least one benchmark"));
        }
        let mut per_model: std::collections::HashMap<Uuid, (LeaderboardEntry, Vec<f64>)> =
            Default::default();
        for reference in references {
            for e in self.leaderboard(caller, reference).await? {
                let slot = per_model
                    .entry(e.model_id)
                    .or_insert_with(|| (e.clone(), Vec::new()));
                slot.1.push(e.score);
                slot.0.scored_at = slot.0.scored_at.max(e.scored_at);
            }
        }
        let mut entries: Vec<LeaderboardEntry> = per_model
            .into_values()
            .filter(|(_, scores)| scores.len() == references.len())
            .map(|(mut e, scores)| {
                e.score = scores.iter().sum::<f64>() / scores.len() as f64;
                e.benchmarks = scores.len() as u32;
                (e.layer, e.raw, e.ci, e.job_id) = (None, None, None, None);
                e
            })
            .collect();
        rank(&mut entries);
        Ok(entries)
    }

    /// The model's region→layer map: the latest one stored by a score job
    /// of the caller's lab, else computed from its scores now (no id).
    pub async fn region_layer_map(&self, caller: &Caller, model_id: Uuid) -> Result<RegionMap> {
        let stored = sqlx::query(
            "SELECT id, model_id, job_id, regions, created_at FROM region_layer_maps \
             WHERE lab_id = $1 AND model_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(caller.lab_id())
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        match stored {
            Some(row) => region_map_from_row(&row),
            None => Ok(RegionMap {
                id: None,
                model: model_id,
                job_id: None,
                created_at: None,
                regions: self
                    .compute_region_layers(caller.lab_id(), model_id)
                    .await?,
            }),
        }
    }

    /// One stored region→layer map of the caller's lab, by its id.
    pub async fn get_region_map(&self, caller: &Caller, id: Uuid) -> Result<RegionMap> {
        let row = sqlx::query(
            "SELECT id, model_id, job_id, regions, created_at FROM region_layer_maps WHERE id = $1 AND lab_id = $2",
        )
        .bind(id)
        .bind(caller.lab_id())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::not_found("region map", id))?;
        region_map_from_row(&row)
    }

    /// Computes the model's region→layer map from the lab's latest scores
    /// and stores it as an artifact of the score job that just finished.
    pub async fn store_region_layer_map(
        &self,
        lab_id: Uuid,
        model_id: Uuid,
        job_id: Uuid,
    ) -> Result<Uuid> {
        let regions = self.compute_region_layers(lab_id, model_id).await?;
        let id = Uuid::new_v4();
        let mut tx = crate::db::begin_unflushed(&self.pool).await?;
        sqlx::query(
            "INSERT INTO region_layer_maps (id, lab_id, model_id, job_id, regions) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(lab_id)
        .bind(model_id)
        .bind(job_id)
        .bind(serde_json::to_value(&regions).map_err(Error::internal)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// For each region a model was scored on, the layer with the best mean
    /// score over that region's benchmarks (from the latest score of each).
    async fn compute_region_layers(
        &self,
        lab_id: Uuid,
        model_id: Uuid,
    ) -> Result<Vec<RegionLayer>> {
        let card = self.lab_score_card(lab_id, model_id).await?;
        let mut by: BTreeMap<String, BTreeMap<String, LayerScores>> = BTreeMap::new();
        for b in &card.benchmarks {
            let region = b.region.clone().unwrap_or_else(|| "unspecified".into());
            for l in &b.curve {
                let slot = by
                    .entry(region.clone())
                    .or_default()
                    .entry(l.layer.clone())
                    .or_default();
                slot.0.push(l.normalized.unwrap_or(l.raw));
                slot.1.push(b.benchmark.clone());
            }
        }
        Ok(by
            .into_iter()
            .filter_map(|(region, layers)| {
                layers
                    .into_iter()
                    .map(|(layer, (v, benches))| {
                        (layer, v.iter().sum::<f64>() / v.len() as f64, benches)
                    })
                    .filter(|(_, s, _)| s.is_finite())
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(layer, score, benchmarks)| RegionLayer {
                        region,
                        layer,
                        score,
                        benchmarks,
                    })
            })
            .collect())
    }
}

fn region_map_from_row(row: &sqlx::postgres::PgRow) -> Result<RegionMap> {
    Ok(RegionMap {
        id: Some(row.try_get("id")?),
        model: row.try_get("model_id")?,
        job_id: row.try_get("job_id")?,
        created_at: Some(row.try_get("created_at")?),
        regions: serde_json::from_value(row.try_get("regions")?).map_err(Error::internal)?,
    })
}

fn rank(entries: &mut [LeaderboardEntry]) {
    entries.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.model.cmp(&b.model)));
    for (i, e) in entries.iter_mut().enumerate() {
        e.rank = i as u32 + 1;
    }
}
