//! Domain types of brain data (stimulus sets, recordings, benchmarks) and
//! the requests that create them, independent of any wire format.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{ExplicitSplit, MetricRequest};
use crate::inference::CeilingSpec;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StimulusSet {
    pub id: Uuid,
    pub name: String,
    /// images | features | sequences
    pub kind: String,
    pub count: u64,
    /// The normalized array (images N × C × H × W): download it from
    /// `/v1/arrays/{array_id}/data`.
    pub array_id: Uuid,
    pub shape: Vec<u64>,
    pub dtype: String,
    /// How the upload was read: format, source dtype, layout (declared or
    /// inferred), value range, resize.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub extra_columns: Vec<String>,
    pub has_labels: bool,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Stimulus {
    pub index: u32,
    pub stimulus_id: String,
    pub label: Option<String>,
    /// The manifest's extra columns, by name.
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub has_thumbnail: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Spikes,
    Calcium,
    Fmri,
    Eeg,
    Meg,
    Lfp,
    Other,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Spikes => "spikes",
            Modality::Calcium => "calcium",
            Modality::Fmri => "fmri",
            Modality::Eeg => "eeg",
            Modality::Meg => "meg",
            Modality::Lfp => "lfp",
            Modality::Other => "other",
        }
    }
    pub fn parse(s: &str) -> crate::Result<Modality> {
        crate::model::parse_choice(
            "modality",
            Some(s),
            "spikes, calcium, fmri, eeg, meg, lfp, other",
        )?
        .ok_or_else(|| crate::Error::invalid("modality: must not be empty"))
    }
}

/// Descriptive metadata of a recording; all optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RecordingMeta {
    pub region: Option<String>,
    pub species: Option<String>,
    pub subject: Option<String>,
    pub session: Option<String>,
    pub modality: Option<Modality>,
    /// Units of the values (e.g. "spikes/s", "dF/F").
    pub units: Option<String>,
    pub bin_size_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Reliability {
    /// "split_half_even_odd_spearman_brown"
    pub method: String,
    /// Median over neurons with a defined value; None when none has one.
    pub median: Option<f64>,
    pub defined: u64,
    /// Neurons at or above 0.5.
    pub above_half: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Recording {
    pub id: Uuid,
    pub name: String,
    pub stimulus_set_id: Uuid,
    /// The normalized array, repetitions × stimuli × neurons [× time bins].
    pub array_id: Uuid,
    pub shape: Vec<u64>,
    pub dtype: String,
    #[serde(flatten)]
    pub meta: RecordingMeta,
    pub repetitions: u64,
    pub stimuli: u64,
    pub neurons: u64,
    pub time_bins: u64,
    pub trial_averaged: bool,
    /// Missing values (ragged repetitions, masked NaN), stored as NaN.
    pub nan_count: u64,
    pub reliability: Reliability,
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Neuron {
    pub index: u32,
    pub neuron_id: String,
    pub reliability: Option<f64>,
}

/// Neurons a benchmark keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NeuronFilter {
    /// Keep neurons whose split-half reliability is at least this.
    pub min_reliability: f64,
}

/// Outer splits of a benchmark's cross-validated metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkSplits {
    /// Seed of the metric's seeded splits.
    pub seed: Option<u64>,
    /// Explicit train/test stimulus indices (into the recording's stimulus axis).
    #[schema(value_type = Option<Vec<Object>>)]
    pub explicit: Option<Vec<ExplicitSplit>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBenchmark {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub recording: Uuid,
    pub metric: MetricRequest,
    /// Ceiling method and normalization formula; none: raw scores only.
    #[schema(value_type = Option<Object>)]
    pub ceiling: Option<CeilingSpec>,
    pub neuron_filter: Option<NeuronFilter>,
    pub splits: Option<BenchmarkSplits>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Benchmark {
    pub id: Uuid,
    /// `lab/name@version`
    pub reference: String,
    pub lab: String,
    pub name: String,
    pub version: i32,
    pub description: String,
    pub recording_id: Uuid,
    pub metric: MetricRequest,
    #[schema(value_type = Option<Object>)]
    pub ceiling: Option<CeilingSpec>,
    pub neuron_filter: Option<NeuronFilter>,
    /// Neurons kept by the filter (all when absent).
    pub neurons_kept: u64,
    pub splits: Option<BenchmarkSplits>,
    pub public: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub deprecated_at: Option<DateTime<Utc>>,
    pub deprecation_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One layer of a registered model and its per-stimulus output shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ModelLayer {
    pub name: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Model {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    /// torchscript | builtin
    pub kind: String,
    /// sha256 of the TorchScript file, or of the canonical spec.
    pub content_hash: String,
    /// sha256 over the content hash and the declared input: the version's identity.
    pub version_hash: String,
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub input: crate::architecture::InputSpec,
    pub layer_names: Option<Vec<String>>,
    /// probing | ready | failed
    pub state: String,
    pub error: Option<String>,
    pub layers: Vec<ModelLayer>,
    /// sha256 of a built-in model's weights (safetensors checkpoint).
    pub weights_sha256: Option<String>,
    pub probe_job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBuiltinModel {
    pub name: String,
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// Defaults to what the architecture takes, in [0, 1], unnormalized.
    #[schema(value_type = Option<Object>)]
    pub input: Option<crate::architecture::InputSpec>,
}

/// One scored layer of one benchmark.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LayerScore {
    pub layer: String,
    pub time_bin: Option<i32>,
    pub selection_value: Option<f64>,
    pub raw: f64,
    pub ceiling: Option<f64>,
    pub normalized: Option<f64>,
    pub selected: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BenchmarkScore {
    pub benchmark_id: Uuid,
    pub benchmark: String,
    pub region: Option<String>,
    pub metric: String,
    pub job_id: Uuid,
    pub layer: String,
    pub raw: f64,
    pub ceiling: Option<f64>,
    pub normalized: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub per_neuron_array_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub seeds: serde_json::Value,
    pub engine_version: String,
    pub libtorch_version: String,
    pub curve: Vec<LayerScore>,
    pub scored_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ScoreCard {
    pub model: Model,
    /// The latest score of each benchmark this model was scored on.
    pub benchmarks: Vec<BenchmarkScore>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct LeaderboardEntry {
    pub rank: u32,
    pub lab: String,
    pub model_id: Uuid,
    /// `name@version`
    pub model: String,
    pub layer: Option<String>,
    /// The ranked value: the normalized score when there is a ceiling, else
    /// the raw score (a mean over benchmarks for an aggregate board).
    pub score: f64,
    pub raw: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub benchmarks: u32,
    pub job_id: Option<Uuid>,
    pub scored_at: DateTime<Utc>,
}

/// Which layer best matches each brain region, from a model's scores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegionLayer {
    pub region: String,
    pub layer: String,
    /// Mean normalized (else raw) score of that layer over the region's benchmarks.
    pub score: f64,
    pub benchmarks: Vec<String>,
}

/// A model's region→layer map. Score jobs store one per run (an artifact
/// with an id, reusable by other tools); a model never scored by a job of
/// this lab since maps were stored gets one computed on request (no id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RegionMap {
    pub id: Option<Uuid>,
    pub model: Uuid,
    /// The score job that stored it.
    pub job_id: Option<Uuid>,
    pub created_at: Option<DateTime<Utc>>,
    pub regions: Vec<RegionLayer>,
}

/// A benchmark's score from its selected layer's rows: the mean over time
/// bins (one row for a static recording); the interval only when there is
/// one row. Returns (raw, ceiling, normalized, ci).
pub fn selected_summary(
    rows: &[&LayerScore],
    ci_of_single: Option<[f64; 2]>,
) -> (f64, Option<f64>, Option<f64>, Option<[f64; 2]>) {
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let raw = mean(rows.iter().map(|r| r.raw).collect()).unwrap_or(f64::NAN);
    let ceiling = mean(rows.iter().filter_map(|r| r.ceiling).collect());
    let normalized = mean(rows.iter().filter_map(|r| r.normalized).collect());
    (
        raw,
        ceiling,
        normalized,
        if rows.len() == 1 { ci_of_single } else { None },
    )
}
