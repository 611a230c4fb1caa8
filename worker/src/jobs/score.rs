//! `score`: one model version against one or more benchmarks. For each
//! benchmark: activations of every layer on the benchmark's stimulus set,
//! from the cache or extracted (and cached); the recording's kept neurons;
//! then layer selection on held-out data — the recording's stimuli split in
//! two seeded halves, the layer chosen by the metric on the selection half
//! and every layer's curve, ceiling, normalization and interval computed on
//! the report half, which selection never saw. Time-binned recordings
//! against sequence models are scored per bin. A benchmark that fails is
//! reported as failed while the others go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use neuralign_core::blobs::read_all;
use neuralign_core::catalog::Metric;
use neuralign_core::inference::CeilingSpec;
use neuralign_core::model::{JobSpec, JobState, ScoreSpec};
use neuralign_core::resources::{LayerScore, Model};
use neuralign_core::service::{NewScore, ScoringInput};
use neuralign_engine::models::extract::{extract, ExtractOptions};
use neuralign_engine::models::LayerModel;
use neuralign_engine::pipeline::{self, ComparePlan};
use neuralign_engine::splits::{permutation_from, SplitMix64};
use neuralign_engine::{EngineError, Kept, TargetMemo};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};
use uuid::Uuid;

use super::{models, JobContext, JobError, JobKind, Step};

pub struct Score;

#[derive(Serialize, Deserialize)]
pub struct CacheUse {
    pub hits: usize,
    pub misses: usize,
}

#[derive(Serialize, Deserialize)]
pub struct BenchmarkOutcome {
    pub benchmark: String,
    pub state: String,
    /// The child job that scored this benchmark, when the job fanned out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
    #[serde(default)]
    pub curve: Vec<LayerScore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<serde_json::Value>,
    /// The submit-time memory estimate for this benchmark (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_memory_bytes: Option<u64>,
}

impl BenchmarkOutcome {
    fn failed(benchmark: &str, job: Option<Uuid>, error: String) -> Self {
        BenchmarkOutcome {
            benchmark: benchmark.to_string(),
            state: "failed".into(),
            job,
            error: Some(error),
            layer: None,
            raw: None,
            ceiling: None,
            normalized: None,
            ci: None,
            curve: Vec::new(),
            cache: None,
            selection: None,
            estimated_memory_bytes: None,
        }
    }
}

#[derive(Serialize)]
pub struct ScoreOutput {
    pub model: Uuid,
    pub model_version_hash: String,
    /// How layers became features, and any reduction applied before scoring.
    pub pooling: neuralign_core::architecture::Pooling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce: Option<neuralign_core::inference::ReduceSpec>,
    pub benchmarks: Vec<BenchmarkOutcome>,
    pub failed: usize,
    pub device: String,
    pub engine_version: &'static str,
    pub libtorch_version: &'static str,
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What a stored array is, which decides its decoded dtype.
#[derive(Clone, Copy)]
enum Stored {
    /// Kept in their stored float32.
    Activations,
    /// Float64, as the metrics compute.
    Recording,
}

/// A stored array as a tensor, from the worker's tensor cache when a job
/// decoded it lately.
async fn stored_tensor(ctx: &JobContext, what: Stored, blob: Uuid) -> Result<Tensor, JobError> {
    if let Some(t) = ctx.caches.tensors.get(blob) {
        return Ok(t);
    }
    let bytes = read_all(ctx.service.pool(), blob).await?;
    let t = ctx
        .compute
        .run(move || -> Result<Tensor, EngineError> {
            Ok(match what {
                Stored::Activations => super::npy_tensor_native("activations", &bytes)?.1,
                Stored::Recording => super::npy_tensor("recording", &bytes)?.1,
            })
        })
        .await??;
    ctx.caches.tensors.insert(blob, &t);
    Ok(t)
}

fn npy_f32(t: &Tensor) -> Result<(Vec<u8>, Vec<u64>), EngineError> {
    let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
    let v = Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view(-1))?;
    let mut out = neuralign_ingest::npy::encode_header("<f4", &shape);
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok((out, shape))
}

/// The model, loaded at most once per job, only when a layer is not cached.
struct Loader {
    model: Model,
    file: Option<Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
    device: Device,
    loaded: std::sync::Mutex<Option<LayerModel>>,
}

impl Loader {
    /// Runs `f` with the loaded model (loading it the first time).
    fn with<T>(
        &self,
        f: impl FnOnce(&LayerModel) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut slot = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(models::load(
                &self.model,
                self.file.as_deref(),
                self.checkpoint.as_deref(),
                self.device,
            )?);
        }
        f(slot.as_ref().expect("loaded"))
    }
}

/// Where one benchmark's work sits in the job's progress.
#[derive(Clone, Copy)]
struct Progress {
    index: usize,
    total: usize,
}

impl Progress {
    fn at(self, fraction: f64) -> f64 {
        (self.index as f64 + fraction) / self.total as f64
    }
}

impl JobKind for Score {
    const KIND: &'static str = "score";
    type Spec = ScoreSpec;
    type Output = ScoreOutput;

    async fn run(ctx: JobContext, spec: ScoreSpec) -> Result<Step<ScoreOutput>, JobError> {
        let model = ctx.service.ready_model(ctx.lab_id, spec.model).await?;
        let outcomes = if spec.benchmarks.len() > 1 {
            match fan_out(&ctx, &spec, &model).await? {
                Step::Done(outcomes) => outcomes,
                Step::WaitFor { children, unit } => return Ok(Step::WaitFor { children, unit }),
            }
        } else {
            let loader = ModelFiles::new();
            let reference = &spec.benchmarks[0];
            let at = Progress { index: 0, total: 1 };
            ctx.report(0.0, Some(format!("benchmark 1/1: {reference}")));
            let outcome = match score_benchmark(&ctx, &spec, &model, &loader, reference, at).await {
                Ok(o) => o,
                Err(JobError::Fatal(m)) => BenchmarkOutcome::failed(reference, None, m),
                Err(other) => return Err(other),
            };
            ctx.report(1.0, Some("benchmarks done 1/1".into()));
            vec![outcome]
        };
        let failed = outcomes.iter().filter(|o| o.state == "failed").count();
        if failed == outcomes.len() {
            let errors: Vec<String> = outcomes
                .iter()
                .map(|o| format!("{}: {}", o.benchmark, o.error.clone().unwrap_or_default()))
                .collect();
            return Err(JobError::Fatal(if outcomes.len() == 1 {
                errors.concat()
            } else {
                format!("every benchmark failed: {}", errors.join("; "))
            }));
        }
        // A child's scores reach the map when its parent collects them.
        if ctx.parent_id.is_none() {
            ctx.service
                .store_region_layer_map(ctx.lab_id, model.id, ctx.job_id)
                .await?;
        }
        Ok(Step::Done(ScoreOutput {
            model: model.id,
            model_version_hash: model.version_hash,
            pooling: spec.pooling,
            reduce: spec.reduce.clone(),
            benchmarks: outcomes,
            failed,
            device: format!("{:?}", ctx.device).to_lowercase(),
            engine_version: neuralign_core::ENGINE_VERSION,
            libtorch_version: neuralign_core::LIBTORCH_VERSION,
        }))
    }
}

/// The model's files, read from Postgres (once per attempt) only when a
/// layer is not cached; the model itself is loaded then too.
type ModelFiles = tokio::sync::OnceCell<Arc<Loader>>;

async fn load(ctx: &JobContext, model: &Model) -> Result<Arc<Loader>, JobError> {
    let svc = &ctx.service;
    let src = svc.model_source(model.id).await?;
    let file = match src.file_blob {
        Some(b) => Some(read_all(svc.pool(), b).await?),
        None => None,
    };
    let checkpoint = match src.checkpoint_blob {
        Some(b) => Some(read_all(svc.pool(), b).await?),
        None => None,
    };
    Ok(Arc::new(Loader {
        model: model.clone(),
        file,
        checkpoint,
        device: ctx.device,
        loaded: Default::default(),
    }))
}

/// What one child of a fanned-out score job stands for in its progress.
const BENCHMARKS: &str = "benchmarks";

/// Several benchmarks: the first attempt extracts the activations of every
/// distinct stimulus set once (so the children all read the cache) and
/// fans out one single-benchmark child job per benchmark, which any worker
/// can take; once every child is final the job collects their outcomes, in
/// the order the benchmarks were asked for.
async fn fan_out(
    ctx: &JobContext,
    spec: &ScoreSpec,
    model: &Model,
) -> Result<Step<Vec<BenchmarkOutcome>>, JobError> {
    let svc = &ctx.service;
    let children = svc.child_jobs(ctx.job_id).await?;
    let total = spec.benchmarks.len();
    if children.is_empty() {
        let loader = ModelFiles::new();
        let mut seen = std::collections::HashSet::new();
        for (i, reference) in spec.benchmarks.iter().enumerate() {
            // A benchmark that cannot be resolved fails in its own child.
            let Ok(input) = svc.scoring_input(ctx.lab_id, reference).await else {
                continue;
            };
            if !seen.insert(input.stimulus_sha256.clone()) {
                continue;
            }
            let at = Progress {
                index: i,
                total: 2 * total,
            };
            match activations(ctx, spec, model, &loader, &input, at, true).await {
                Ok(_) => {}
                // Its child reports the same error for that benchmark alone.
                Err(JobError::Fatal(m)) => {
                    tracing::info!(job_id = %ctx.job_id, reference, error = m, "extraction failed; left to the child job")
                }
                Err(other) => return Err(other),
            }
        }
        return Ok(Step::WaitFor {
            children: spec
                .benchmarks
                .iter()
                .map(|b| {
                    JobSpec::Score(ScoreSpec {
                        benchmarks: vec![b.clone()],
                        ..spec.clone()
                    })
                })
                .collect(),
            unit: BENCHMARKS,
        });
    }
    if children.iter().any(|c| !c.state.is_final()) {
        return Ok(Step::WaitFor {
            children: Vec::new(),
            unit: BENCHMARKS,
        });
    }
    let mut unused = children;
    let outcomes = spec
        .benchmarks
        .iter()
        .map(|reference| {
            let pos = unused.iter().position(|c| {
                c.spec
                    .get("benchmarks")
                    .and_then(|b| b.get(0))
                    .and_then(|b| b.as_str())
                    == Some(reference.as_str())
            });
            let Some(child) = pos.map(|p| unused.remove(p)) else {
                return BenchmarkOutcome::failed(
                    reference,
                    None,
                    "no child job scored this benchmark".into(),
                );
            };
            let collected = (child.state == JobState::Succeeded)
                .then(|| {
                    child
                        .result
                        .as_ref()
                        .and_then(|r| r.get("benchmarks"))
                        .and_then(|b| b.get(0))
                        .and_then(|b| serde_json::from_value::<BenchmarkOutcome>(b.clone()).ok())
                })
                .flatten();
            match collected {
                Some(mut o) => {
                    o.job = Some(child.id);
                    o
                }
                None => {
                    // A child's own failure message names its one benchmark.
                    let error = child
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("child job {}", child.state.as_str()));
                    let error = error
                        .strip_prefix(&format!("{reference}: "))
                        .map(str::to_string)
                        .unwrap_or(error);
                    BenchmarkOutcome::failed(reference, Some(child.id), error)
                }
            }
        })
        .collect();
    Ok(Step::Done(outcomes))
}

/// The layers a score wants, in order, each one's activation cache key
/// (its contents' name: model version, stimulus set, layer, preprocessing)
/// and what extraction does to the stimuli and the layers.
fn activation_keys(
    spec: &ScoreSpec,
    model: &Model,
    input: &ScoringInput,
) -> (Vec<String>, HashMap<String, String>, serde_json::Value) {
    let wanted: Vec<String> = spec
        .layers
        .clone()
        .unwrap_or_else(|| model.layers.iter().map(|l| l.name.clone()).collect());
    let preprocessing = json!({"input": model.input, "pooling": spec.pooling, "extraction": "v1"});
    let prep_hash = sha(&[&preprocessing.to_string()]);
    let keys = wanted
        .iter()
        .map(|layer| {
            let key = sha(&[
                &model.version_hash,
                &input.stimulus_sha256,
                layer,
                &prep_hash,
            ]);
            (layer.clone(), key)
        })
        .collect();
    (wanted, keys, preprocessing)
}

/// Every wanted layer's activations on the whole stimulus set: cached ones
/// read back, the rest extracted in one pass and cached, each with its
/// cache key (which names its contents). `warm_only`: only fill the cache
/// (a fanning-out parent), reading nothing back and counting no hits.
async fn activations(
    ctx: &JobContext,
    spec: &ScoreSpec,
    model: &Model,
    loader: &ModelFiles,
    input: &ScoringInput,
    at: Progress,
    warm_only: bool,
) -> Result<(Vec<(String, Tensor, String)>, CacheUse), JobError> {
    let svc = &ctx.service;
    let (wanted, keys, preprocessing) = activation_keys(spec, model, input);
    let mut found: HashMap<String, Tensor> = HashMap::new();
    let mut missing = Vec::new();
    let all: Vec<String> = wanted.iter().map(|l| keys[l].clone()).collect();
    if warm_only {
        let held = svc.activations_held(&all).await?;
        missing.extend(wanted.iter().filter(|l| !held.contains(&keys[*l])).cloned());
    } else {
        let held = svc.cached_activations(&all).await?;
        for layer in &wanted {
            match held.get(&keys[layer]) {
                Some(&blob) => {
                    found.insert(
                        layer.clone(),
                        stored_tensor(ctx, Stored::Activations, blob).await?,
                    );
                }
                None => missing.push(layer.clone()),
            }
        }
    }
    let cache = CacheUse {
        hits: wanted.len() - missing.len(),
        misses: missing.len(),
    };
    if !missing.is_empty() {
        let loader = loader.get_or_try_init(|| load(ctx, model)).await?;
        let bytes = read_all(svc.pool(), input.stimulus_blob).await?;
        let (c, loader, spec_in, pooling, batch) = (
            ctx.clone(),
            loader.clone(),
            model.input.clone(),
            spec.pooling,
            spec.batch_size,
        );
        let miss = missing.clone();
        let extracted = ctx
            .compute
            .run(move || -> Result<_, EngineError> {
                let (_, stimuli) = super::npy_tensor_native("stimuli", &bytes)?;
                let stimuli = stimuli.to_kind(Kind::Float);
                drop(bytes);
                let budget = neuralign_core::budget::extraction_budget(c.device != Device::Cpu);
                let opts = ExtractOptions {
                    pooling,
                    layers: Some(&miss),
                    batch_size: batch,
                    batch_budget: budget,
                };
                let _threads = crate::compute::EveryCore::for_this_scope();
                let (layers, _) = loader.with(|m| {
                    extract(m, &stimuli, &spec_in, &opts, &mut |done, n| {
                        if c.cancel.is_cancelled() {
                            return Err(EngineError::Cancelled);
                        }
                        c.report(
                            at.at(0.5 * done as f64 / n as f64),
                            Some(format!("stimuli processed {done}/{n}")),
                        );
                        Ok(())
                    })
                })?;
                layers
                    .into_iter()
                    .map(|(name, t)| npy_f32(&t).map(|(b, s)| (name, t, b, s)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await??;
        for (name, t, npy, shape) in extracted {
            let blob = svc
                .store_activation(
                    ctx.lab_id,
                    &keys[&name],
                    model.id,
                    input.stimulus_set_id,
                    &name,
                    &preprocessing,
                    npy,
                    &shape,
                )
                .await?;
            // As a reader of the blob would decode it: the stored float32,
            // in host memory.
            let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float);
            ctx.caches.tensors.insert(blob, &t);
            found.insert(name, t);
        }
    }
    if warm_only {
        return Ok((Vec::new(), cache));
    }
    Ok((
        wanted
            .into_iter()
            .map(|l| {
                let t = found.remove(&l).expect("every layer found or extracted");
                let key = keys[&l].clone();
                (l, t, key)
            })
            .collect(),
        cache,
    ))
}

async fn score_benchmark(
    ctx: &JobContext,
    spec: &ScoreSpec,
    model: &Model,
    loader: &ModelFiles,
    reference: &str,
    at: Progress,
) -> Result<BenchmarkOutcome, JobError> {
    let svc = &ctx.service;
    let input = svc.scoring_input(ctx.lab_id, reference).await?;
    let estimate = svc.score_estimate(model, spec, &input)?;
    tracing::info!(job_id = %ctx.job_id, benchmark = reference, ?estimate, "scoring");
    let (layers, cache) = activations(ctx, spec, model, loader, &input, at, false).await?;
    // Each layer's cache key names its contents, under which what is
    // derived from them alone is kept between jobs.
    let (layers, contents): (Vec<(String, Tensor)>, Vec<String>) = layers
        .into_iter()
        .map(|(name, t, key)| ((name, t), key))
        .unzip();
    let rec = stored_tensor(ctx, Stored::Recording, input.recording_blob).await?;
    let metric = Metric::parse("metric", &input.benchmark.metric)?;
    let ceiling = input.benchmark.ceiling.clone();
    let seed = input
        .benchmark
        .splits
        .as_ref()
        .and_then(|s| s.seed)
        .unwrap_or(0);
    let ceiling_key = sha(&[
        neuralign_core::ENGINE_VERSION,
        if metric.explicit_splits().is_some() {
            "explicit-test-union-v1"
        } else {
            "report-half-v1"
        },
        &seed.to_string(),
        &serde_json::to_string(&ceiling).unwrap_or_default(),
        &metric.options_json().to_string(),
    ]);
    let known_ceilings = match &ceiling {
        Some(_) => svc
            .cached_ceiling(input.benchmark.id, &ceiling_key)
            .await?
            .and_then(|v| serde_json::from_value::<Ceilings>(v).ok()),
        None => None,
    };
    let fresh_ceiling = ceiling.is_some() && known_ceilings.is_none();
    let (c, index, neurons, reduce, bootstrap) = (
        ctx.clone(),
        input.stimulus_index.clone(),
        input.neurons.clone(),
        spec.reduce.clone(),
        spec.bootstrap.clone(),
    );
    let computed = ctx
        .compute
        .run(move || -> Result<_, EngineError> {
            let rec = rec.to_device(c.device);
            let rec = match &neurons {
                Some(n) => rec.index_select(2, &Tensor::from_slice(n).to_device(c.device)),
                None => rec,
            };
            let idx = Tensor::from_slice(&index).to_device(c.device);
            if let Some(explicit) = metric.explicit_splits() {
                return score_layers_nested(
                    &c,
                    &metric,
                    explicit,
                    ceiling.as_ref(),
                    reduce.as_ref(),
                    &rec,
                    &idx,
                    layers,
                    known_ceilings,
                    at,
                );
            }
            score_layers(
                &c,
                &metric,
                ceiling.as_ref(),
                reduce.as_ref(),
                bootstrap.as_ref(),
                seed,
                &rec,
                &idx,
                layers,
                &contents,
                known_ceilings,
                at,
            )
        })
        .await??;
    let (rows, selection, ceilings) = computed;
    if fresh_ceiling {
        svc.store_ceiling(
            input.benchmark.id,
            &ceiling_key,
            &serde_json::to_value(&ceilings).map_err(|e| JobError::Fatal(e.to_string()))?,
        )
        .await?;
    }
    // Per-neuron values of the selected layer, as an artifact.
    let mut stored = Vec::with_capacity(rows.len());
    for (mut row, per_neuron) in rows {
        if let Some(v) = per_neuron {
            row.per_neuron_array_id = Some(
                svc.store_values(ctx.lab_id, &format!("per-neuron {}", row.layer), &v)
                    .await?,
            );
        }
        stored.push(row);
    }
    svc.insert_scores(
        ctx.job_id,
        ctx.lab_id,
        model.id,
        input.benchmark.id,
        &stored,
    )
    .await?;
    let curve: Vec<LayerScore> = stored
        .iter()
        .map(|r| LayerScore {
            layer: r.layer.clone(),
            time_bin: r.time_bin,
            selection_value: r.selection_value,
            raw: r.raw,
            ceiling: r.ceiling,
            normalized: r.normalized,
            selected: r.selected,
        })
        .collect();
    let selected: Vec<&LayerScore> = curve.iter().filter(|l| l.selected).collect();
    let single_ci = stored.iter().find(|r| r.selected).and_then(|r| r.ci);
    let (raw, ceiling, normalized, ci) =
        neuralign_core::resources::selected_summary(&selected, single_ci);
    let layer = selected.first().map(|l| l.layer.clone());
    Ok(BenchmarkOutcome {
        benchmark: input.benchmark.reference.clone(),
        state: "succeeded".into(),
        job: None,
        error: None,
        layer,
        raw: Some(raw),
        ceiling,
        normalized,
        ci,
        curve,
        cache: Some(cache),
        selection: Some(selection),
        estimated_memory_bytes: Some(estimate.total),
    })
}

/// What `as_model_side` needs of the recording: its device and time bins.
#[derive(Clone, Copy)]
struct RecordingShape {
    device: tch::Device,
    bins: Option<i64>,
}

impl RecordingShape {
    fn of(rec: &Tensor) -> RecordingShape {
        RecordingShape {
            device: rec.device(),
            bins: (rec.dim() == 4).then(|| rec.size()[3]),
        }
    }
}

/// The layer's activations (whole stimulus set) in the form the pipeline
/// scores against the recording: float64 on its device, one row per
/// recording stimulus (`idx` into the set); sequences (N × T × H) per time
/// bin when the recording has T bins, their last step otherwise.
fn as_model_side(a: &Tensor, idx: &Tensor, rec: RecordingShape) -> Tensor {
    let a = a
        .to_device(rec.device)
        .to_kind(Kind::Double)
        .index_select(0, idx);
    match (a.dim(), rec.bins) {
        (3, Some(t)) if a.size()[1] == t => a.permute([0, 2, 1]).unsqueeze(0),
        (3, _) => a.select(1, a.size()[1] - 1),
        _ => a,
    }
}

/// The stimulus axis of a model-side tensor (bins × N × D when 4-D after
/// `as_model_side`'s permute and unsqueeze).
fn stimulus_axis(a: &Tensor) -> i64 {
    if a.dim() == 4 {
        1
    } else {
        0
    }
}

/// The per-neuron held-out r a mapping metric reports in its details.
fn per_neuron_r(r: &pipeline::MetricResult) -> Option<Vec<f64>> {
    r.details
        .as_ref()
        .and_then(|d| d.get("per_neuron_r"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

type Rows = Vec<(NewScore, Option<Vec<f64>>)>;
/// (time bin when there are several, ceiling) of a benchmark's report half.
type Ceilings = Vec<(Option<i64>, f64)>;

#[allow(clippy::too_many_arguments)]
fn score_layers(
    ctx: &JobContext,
    metric: &Metric,
    ceiling: Option<&CeilingSpec>,
    reduce: Option<&neuralign_core::inference::ReduceSpec>,
    bootstrap: Option<&neuralign_core::inference::BootstrapSpec>,
    seed: u64,
    rec: &Tensor,
    idx: &Tensor,
    layers: Vec<(String, Tensor)>,
    contents: &[String],
    known_ceilings: Option<Ceilings>,
    at: Progress,
) -> Result<(Rows, serde_json::Value, Ceilings), EngineError> {
    let n = rec.size()[1] as usize;
    if n < 6 {
        return Err(EngineError::invalid(format!(
            "recording: {n} stimuli are too few to hold out half for layer selection"
        )));
    }
    let perm = permutation_from(&mut SplitMix64(seed), n);
    let half = n / 2;
    let device = rec.device();
    let sel = Tensor::from_slice(&perm[..half]).to_device(device);
    let rep = Tensor::from_slice(&perm[half..]).to_device(device);
    let metrics = [metric.clone()];
    let plain = ComparePlan {
        metrics: &metrics,
        bootstrap: None,
        permutation: None,
        ceiling: None,
        reduce,
    };
    let check = cancel_check(ctx);
    // What the metric derives from each recording half alone (RSA's RDM and
    // its ranks) is computed once for all layers.
    let (on_selection, on_report) = (TargetMemo::default(), TargetMemo::default());
    let memo = |selection: bool| {
        if selection {
            (&on_selection, "selection half")
        } else {
            (&on_report, "report half")
        }
    };
    // What ridge derives from a layer's half alone is kept across jobs,
    // named by the layer's contents, the half's stimuli and what turns them
    // into the model side.
    let shape = RecordingShape::of(rec);
    let half_name = |half: &Tensor| -> Result<String, EngineError> {
        let rows = Vec::<i64>::try_from(idx.index_select(0, half).to_device(tch::Device::Cpu))?;
        Ok(sha(&[
            &format!("{rows:?}"),
            &format!("bins {:?}", shape.bins),
            &format!("reduce {reduce:?}"),
        ]))
    };
    let (sel_name, rep_name) = (half_name(&sel)?, half_name(&rep)?);
    let run = |a: &Tensor,
               b: &Tensor,
               plan: &ComparePlan,
               selection: bool,
               design: &str|
     -> Result<Vec<pipeline::MetricResult>, EngineError> {
        let (a, _) = pipeline::reduce_model_side(a, plan.reduce)?;
        let kept = Kept {
            target: Some(memo(selection)),
            design: Some((&ctx.caches.decompositions, design)),
        };
        pipeline::run_with(&a, b, plan, kept, &mut |d, t| check(d, t))
    };
    let mean = |rs: &[pipeline::MetricResult]| {
        rs.iter().map(|r| r.value).sum::<f64>() / rs.len().max(1) as f64
    };
    // Every layer on both halves (the selection half chooses, the report
    // half reports), and the ceiling when it is not stored yet: independent
    // pieces, shared with a spare core when one is free. The widest layers
    // go first, so the last pieces are short ones.
    let rec_sel = rec.index_select(1, &sel);
    let rec_rep = rec.index_select(1, &rep);
    let nl = layers.len();
    let mut pieces = Vec::with_capacity(2 * nl + 1);
    if let (Some(spec), None) = (ceiling, &known_ceilings) {
        pieces.push(Piece::Ceiling(spec, rec_rep.shallow_clone()));
    }
    // Layers compare with each half averaged over repetitions once.
    let (rec_sel, rec_rep) = (
        pipeline::averaged_target(&rec_sel, &plain),
        pipeline::averaged_target(&rec_rep, &plain),
    );
    // A piece converts its layer when it runs, so two at most (the slot's
    // thread and a helper) hold a float64 copy at once.
    let mut widest: Vec<usize> = (0..nl).collect();
    widest.sort_by_key(|&k| std::cmp::Reverse(layers[k].1.numel()));
    for &k in &widest {
        for (selection, half, b, name) in [
            (true, &sel, &rec_sel, &sel_name),
            (false, &rep, &rec_rep, &rep_name),
        ] {
            pieces.push(Piece::Layer {
                selection,
                k,
                design: format!("{} {name}", contents[k]),
                a: layers[k].1.shallow_clone(),
                idx: idx.shallow_clone(),
                half: half.shallow_clone(),
                b: b.shallow_clone(),
            });
        }
    }
    let (total, finished) = (pieces.len(), AtomicUsize::new(0));
    let (selected_done, reported_done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let done = ctx.compute.cores().share(pieces, |piece| {
        let out = match piece {
            Piece::Ceiling(spec, b) => {
                Done::Ceiling(pipeline::ceilings(metric, &b, spec, &mut || check(0, 0)))
            }
            Piece::Layer {
                selection,
                k,
                design,
                a,
                idx,
                half,
                b,
            } => {
                // The half's rows of the set, converted alone.
                let a = as_model_side(&a, &idx.index_select(0, &half), shape);
                let result = run(&a, &b, &plain, selection, &design);
                let (count, phase) = if selection {
                    (&selected_done, " (selection)")
                } else {
                    (&reported_done, "")
                };
                let count = count.fetch_add(1, Ordering::SeqCst) + 1;
                ctx.report(
                    at.at(0.5 + 0.5 * (finished.load(Ordering::SeqCst) + 1) as f64 / total as f64),
                    Some(format!("layers done {count}/{nl}{phase}")),
                );
                Done::Layer {
                    selection,
                    k,
                    result,
                }
            }
        };
        finished.fetch_add(1, Ordering::SeqCst);
        out
    });
    let mut chosen_on: Vec<Option<Result<_, EngineError>>> = (0..nl).map(|_| None).collect();
    let mut reported: Vec<Option<Result<_, EngineError>>> = (0..nl).map(|_| None).collect();
    let mut fresh_ceilings = None;
    for d in done {
        match d {
            Done::Ceiling(c) => fresh_ceilings = Some(c),
            Done::Layer {
                selection: true,
                k,
                result,
            } => chosen_on[k] = Some(result),
            Done::Layer {
                selection: false,
                k,
                result,
            } => reported[k] = Some(result),
        }
    }
    // Errors in a fixed order: selection by layer, the ceiling, the report.
    let mut selection_values = Vec::with_capacity(nl);
    for (k, r) in chosen_on.into_iter().enumerate() {
        let r = r.expect("every layer ran on the selection half");
        selection_values.push(r.map(|r| mean(&r)).map_err(|e| match e {
            EngineError::Invalid(m) => EngineError::invalid(format!("layer {}: {m}", layers[k].0)),
            other => other,
        })?);
    }
    let ceilings = match (ceiling, known_ceilings, fresh_ceilings) {
        (None, _, _) => Vec::new(),
        (Some(_), Some(known), _) => known,
        (Some(_), None, fresh) => fresh.expect("the ceiling was a piece")?,
    };
    let mut reported = reported
        .into_iter()
        .map(|r| r.expect("every layer ran on the report half"))
        .collect::<Result<Vec<_>, _>>()?;
    let best = best_layer(&selection_values, metric.direction() == "lower").ok_or_else(|| {
        EngineError::invalid("layers: no layer gave a finite score on the selection stimuli")
    })?;
    // The selected layer's interval: the same value with a bootstrap.
    if bootstrap.is_some() {
        let full = ComparePlan {
            metrics: &metrics,
            bootstrap,
            permutation: None,
            ceiling: None,
            reduce,
        };
        let a = as_model_side(&layers[best].1, &idx.index_select(0, &rep), shape);
        let design = format!("{} {rep_name}", contents[best]);
        reported[best] = run(&a, &rec_rep, &full, false, &design)?;
    }
    let ceiling_by_bin: HashMap<Option<i64>, f64> = ceilings.iter().copied().collect();
    let mut rows: Rows = Vec::new();
    let seeds = json!({
        "selection_split_seed": seed,
        "metric": metric.options_json(),
        "ceiling": ceiling.map(|c| json!({"seed": c.seed, "splits": c.splits})),
        "bootstrap": bootstrap.map(|b| json!({"seed": b.seed, "samples": b.samples})),
    });
    for (k, ((name, _), results)) in layers.iter().zip(reported).enumerate() {
        for r in results {
            let c = ceiling_by_bin.get(&r.time_bin).copied();
            let normalized = c
                .zip(ceiling)
                .map(|(c, spec)| spec.normalization.apply(r.value, c));
            let per_neuron = (k == best).then(|| per_neuron_r(&r)).flatten();
            rows.push((
                NewScore {
                    layer: name.clone(),
                    metric: r.metric.to_string(),
                    time_bin: r.time_bin.map(|t| t as i32),
                    selection_value: Some(selection_values[k]),
                    raw: r.value,
                    ceiling: c,
                    normalized,
                    ci: if k == best {
                        r.bootstrap.as_ref().map(|b| b.ci)
                    } else {
                        None
                    },
                    selected: k == best,
                    per_neuron_array_id: None,
                    seeds: seeds.clone(),
                },
                per_neuron,
            ));
        }
    }
    let selection = json!({
        "method": "seeded halves: the layer is chosen on the selection half, every reported number comes from the other half",
        "seed": seed,
        "selection_stimuli": half,
        "report_stimuli": n - half,
        "selected_layer": layers[best].0,
    });
    Ok((rows, selection, ceilings))
}

/// One independent piece of `score_layers`.
enum Piece<'a> {
    /// Layer `k` (`a`, as cached) on the recording stimuli `idx`, the
    /// `half` of them against the recording half `b`.
    Layer {
        selection: bool,
        k: usize,
        /// The name of `a`'s half, as the worker keeps ridge's decompositions.
        design: String,
        a: Tensor,
        idx: Tensor,
        half: Tensor,
        b: Tensor,
    },
    /// The ceiling on the report half.
    Ceiling(&'a CeilingSpec, Tensor),
}

enum Done {
    Layer {
        selection: bool,
        k: usize,
        result: Result<Vec<pipeline::MetricResult>, EngineError>,
    },
    Ceiling(Result<Ceilings, EngineError>),
}

/// The engine's progress callback: stops the computation once the job is cancelled.
fn cancel_check(ctx: &JobContext) -> impl Fn(usize, usize) -> Result<(), EngineError> + '_ {
    |_, _| {
        if ctx.cancel.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The best-scoring layer's index among finite `values`.
fn best_layer(values: &[f64], lower_is_better: bool) -> Option<usize> {
    (0..values.len())
        .filter(|&k| values[k].is_finite())
        .max_by(|&i, &j| {
            let (a, b) = (values[i], values[j]);
            if lower_is_better {
                b.total_cmp(&a)
            } else {
                a.total_cmp(&b)
            }
        })
}

/// Layer selection nested in a benchmark's explicit splits: on each split
/// the layer is chosen by the metric (its seeded inner folds) on that
/// split's training stimuli alone and scored on its test stimuli. Every
/// layer's row scores it on every split (the curve); the selected row is
/// the layer chosen most often, and holds the nested estimate: the mean
/// over splits of each split's chosen layer's test score. The ceiling is
/// taken on the union of the test stimuli.
#[allow(clippy::too_many_arguments)]
fn score_layers_nested(
    ctx: &JobContext,
    metric: &Metric,
    explicit: &[neuralign_core::catalog::ExplicitSplit],
    ceiling: Option<&CeilingSpec>,
    reduce: Option<&neuralign_core::inference::ReduceSpec>,
    rec: &Tensor,
    idx: &Tensor,
    layers: Vec<(String, Tensor)>,
    known_ceilings: Option<Ceilings>,
    at: Progress,
) -> Result<(Rows, serde_json::Value, Ceilings), EngineError> {
    let device = rec.device();
    let (nl, ns) = (layers.len(), explicit.len());
    let check = cancel_check(ctx);
    let run =
        |m: &Metric, a: &Tensor, b: &Tensor| -> Result<Vec<pipeline::MetricResult>, EngineError> {
            let metrics = [m.clone()];
            let plan = ComparePlan {
                metrics: &metrics,
                bootstrap: None,
                permutation: None,
                ceiling: None,
                reduce,
            };
            let (a, _) = pipeline::reduce_model_side(a, plan.reduce)?;
            pipeline::run(&a, b, &plan, &mut |d, t| check(d, t))
        };
    let model_side: Vec<Tensor> = layers
        .iter()
        .map(|(_, a)| as_model_side(a, idx, RecordingShape::of(rec)))
        .collect();
    let indices = |v: &[u64]| {
        Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device)
    };
    let inner = metric.with_explicit_splits(None);
    let lower_is_better = metric.direction() == "lower";
    let steps = (2 * ns * nl).max(1) as f64;
    let mut step = 0usize;
    // 1. Per split: every layer on its training stimuli, the best chosen.
    let mut chosen = Vec::with_capacity(ns);
    let mut selection_sum = vec![0.0; nl];
    for (si, split) in explicit.iter().enumerate() {
        let train = indices(&split.train);
        let rec_train = rec.index_select(1, &train);
        let mut values = Vec::with_capacity(nl);
        for (k, a) in model_side.iter().enumerate() {
            let r = run(
                &inner,
                &a.index_select(stimulus_axis(a), &train),
                &rec_train,
            )
            .map_err(|e| {
                EngineError::invalid(format!("splits[{si}]: layer {}: {e}", layers[k].0))
            })?;
            values.push(r.iter().map(|r| r.value).sum::<f64>() / r.len().max(1) as f64);
            step += 1;
            ctx.report(
                at.at(0.5 + 0.5 * step as f64 / steps),
                Some(format!(
                    "split {}/{ns}: layers done {}/{nl} (selection)",
                    si + 1,
                    k + 1
                )),
            );
        }
        let best = best_layer(&values, lower_is_better).ok_or_else(|| {
            EngineError::invalid(format!(
                "splits[{si}]: no layer gave a finite score on the training stimuli"
            ))
        })?;
        for (k, v) in values.iter().enumerate() {
            selection_sum[k] += v;
        }
        chosen.push(best);
    }
    // 2. Every layer on every split's test stimuli: per layer, per split, per bin.
    let mut tested: Vec<Vec<Vec<pipeline::MetricResult>>> = Vec::with_capacity(nl);
    for (k, a) in model_side.iter().enumerate() {
        let mut per_split = Vec::with_capacity(ns);
        for (si, split) in explicit.iter().enumerate() {
            let one = metric.with_explicit_splits(Some(vec![split.clone()]));
            per_split.push(run(&one, a, rec)?);
            step += 1;
            ctx.report(
                at.at(0.5 + 0.5 * step as f64 / steps),
                Some(format!("split {}/{ns}: layers done {}/{nl}", si + 1, k + 1)),
            );
        }
        tested.push(per_split);
    }
    // The layer chosen most often (ties: the earlier layer).
    let mut votes = vec![0usize; nl];
    for &c in &chosen {
        votes[c] += 1;
    }
    let selected = (0..nl)
        .max_by(|&i, &j| votes[i].cmp(&votes[j]).then(j.cmp(&i)))
        .unwrap_or(0);
    let ceilings = match (ceiling, known_ceilings) {
        (None, _) => Vec::new(),
        (Some(_), Some(known)) => known,
        (Some(spec), None) => {
            let mut union: Vec<u64> = explicit
                .iter()
                .flat_map(|s| s.test.iter().copied())
                .collect();
            union.sort_unstable();
            union.dedup();
            pipeline::ceilings(
                metric,
                &rec.index_select(1, &indices(&union)),
                spec,
                &mut || check(0, 0),
            )?
        }
    };
    let ceiling_by_bin: HashMap<Option<i64>, f64> = ceilings.iter().copied().collect();
    // Per-neuron values of the selected layer over every split.
    let per_neuron = run(metric, &model_side[selected], rec)?
        .iter()
        .map(per_neuron_r)
        .collect::<Vec<_>>();
    let seeds = json!({
        "metric": metric.options_json(),
        "inner_selection": inner.options_json(),
        "ceiling": ceiling.map(|c| json!({"seed": c.seed, "splits": c.splits})),
    });
    let mut rows: Rows = Vec::new();
    for (k, (name, _)) in layers.iter().enumerate() {
        for (b, first) in tested[k][0].iter().enumerate() {
            let mean_over = |pick: &dyn Fn(usize) -> usize| {
                (0..ns).map(|s| tested[pick(s)][s][b].value).sum::<f64>() / ns as f64
            };
            let raw = if k == selected {
                mean_over(&|s| chosen[s])
            } else {
                mean_over(&|_| k)
            };
            let time_bin = first.time_bin;
            let c = ceiling_by_bin.get(&time_bin).copied();
            rows.push((
                NewScore {
                    layer: name.clone(),
                    metric: metric.id().to_string(),
                    time_bin: time_bin.map(|t| t as i32),
                    selection_value: Some(selection_sum[k] / ns as f64),
                    raw,
                    ceiling: c,
                    normalized: c
                        .zip(ceiling)
                        .map(|(c, spec)| spec.normalization.apply(raw, c)),
                    ci: None,
                    selected: k == selected,
                    per_neuron_array_id: None,
                    seeds: seeds.clone(),
                },
                (k == selected)
                    .then(|| per_neuron.get(b).cloned().flatten())
                    .flatten(),
            ));
        }
    }
    let selection = json!({
        "method": "nested in the benchmark's explicit splits: on each split the layer is chosen on its training stimuli and scored on its test stimuli; the selected row is the layer chosen most often and holds the mean over splits of each split's chosen layer's test score; every other row scores its layer on every split",
        "per_split": chosen.iter().enumerate().map(|(s, &k)| json!({"split": s, "layer": layers[k].0})).collect::<Vec<_>>(),
        "selected_layer": layers[selected].0,
    });
    Ok((rows, selection, ceilings))
}
