//! Domain types: what the service stores and returns, independent of any
//! wire format. Transports convert to and from these.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Lab {
    pub id: Uuid,
    pub name: String,
    pub max_running_jobs: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ArrayMeta {
    pub id: Uuid,
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub sha256: String,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    RetryWait,
    /// Fanned out: waits, holding no worker, until its child jobs are final.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::RetryWait,
        JobState::Waiting,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::RetryWait => "retry_wait",
            JobState::Waiting => "waiting",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("state: unknown job state {s:?} (expected one of queued, running, retry_wait, waiting, succeeded, failed, cancelled)")))
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What a job does. The JSON form (`{"kind": "compare", ...}`) is what HTTP
/// clients send and what the `jobs.spec` column stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSpec {
    /// Compare two uploaded arrays with a list of metrics.
    Compare(CompareSpec),
    /// Does nothing for a while; for queue tests, benchmarks and health checks.
    Noop(NoopSpec),
    /// Score a model version against benchmarks, layer by layer.
    Score(ScoreSpec),
    /// Load a newly registered model on a worker and record its layers
    /// (submitted by registration, not by clients).
    ProbeModel(ProbeModelSpec),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    pub model: Uuid,
    /// Benchmark references: ids, `lab/name@version` or `lab/name`.
    pub benchmarks: Vec<String>,
    /// How spatial layers become features (default avg over space).
    #[serde(default)]
    pub pooling: crate::architecture::Pooling,
    /// Score only these layers (default: every layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// Reduce each layer to k dimensions before scoring (declared in results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce: Option<crate::inference::ReduceSpec>,
    /// Bootstrap interval of the selected layer's score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<crate::inference::BootstrapSpec>,
    /// Fixed extraction batch size (default: sized to memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeModelSpec {
    pub model: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    pub a: Uuid,
    pub b: Uuid,
    /// Metric ids, or `{"id": ..., "options": {...}}` objects.
    #[serde(default = "CompareSpec::default_metrics")]
    pub metrics: Vec<crate::catalog::MetricRequest>,
    /// Bootstrap confidence intervals over stimuli.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<crate::inference::BootstrapSpec>,
    /// Permutation p-values (stimulus labels of b shuffled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permutation: Option<crate::inference::PermutationSpec>,
    /// `float64` (default; what the reference checks use) or `float32`
    /// (large products in single precision, reductions still in float64).
    #[serde(default)]
    pub precision: Precision,
    /// Reduce features to k dimensions first (PCA or random projection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce: Option<crate::inference::ReduceSpec>,
    /// Split-half noise ceiling of b (needs repetitions: b shaped reps × stimuli × neurons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<crate::inference::CeilingSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Float64,
    Float32,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Float64 => "float64",
            Precision::Float32 => "float32",
        }
    }
}

impl CompareSpec {
    pub fn default_metrics() -> Vec<crate::catalog::MetricRequest> {
        ["linear_cka", "rsa"]
            .into_iter()
            .map(|id| crate::catalog::MetricRequest::Id(id.to_string()))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopSpec {
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub fail_attempts: u32,
}

impl JobSpec {
    /// Kinds clients may submit.
    pub const KINDS: [&'static str; 3] = ["compare", "noop", "score"];

    /// Decodes a spec from JSON, naming the offending field (`spec.b`) in
    /// errors, which serde's tagged-enum decoding cannot do by itself.
    pub fn from_json(value: serde_json::Value) -> Result<JobSpec> {
        let serde_json::Value::Object(mut fields) = value else {
            return Err(Error::invalid(
                "spec: must be an object with a `kind` field",
            ));
        };
        let kind = match fields.remove("kind") {
            Some(serde_json::Value::String(k)) => k,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "spec.kind: expected a string, got {other}"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "spec.kind: missing (one of {})",
                    Self::KINDS.join(", ")
                )))
            }
        };
        fn typed<T: serde::de::DeserializeOwned>(
            fields: serde_json::Map<String, serde_json::Value>,
        ) -> Result<T> {
            serde_path_to_error::deserialize(serde_json::Value::Object(fields))
                .map_err(|e| Error::invalid(format!("spec.{}: {}", e.path(), e.inner())))
        }
        match kind.as_str() {
            "compare" => typed(fields).map(JobSpec::Compare),
            "noop" => typed(fields).map(JobSpec::Noop),
            "score" => typed(fields).map(JobSpec::Score),
            "probe_model" => Err(Error::invalid(
                "spec.kind: probe_model jobs are started by model registration (POST /v1/models)",
            )),
            other => Err(Error::invalid(format!(
                "spec.kind: unknown job kind {other:?} (known: {})",
                Self::KINDS.join(", ")
            ))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Compare(_) => "compare",
            JobSpec::Noop(_) => "noop",
            JobSpec::Score(_) => "score",
            JobSpec::ProbeModel(_) => "probe_model",
        }
    }
}

/// A job submission after transport decoding.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub spec: JobSpec,
    pub priority: i32,
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub state: JobState,
    pub priority: i32,
    pub attempt: u32,
    pub max_attempts: u32,
    pub progress: f64,
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub cancel_requested: bool,
    /// The job that fanned this one out, if any.
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: Uuid,
    pub kind: String,
    pub state: Option<JobState>,
    pub progress: Option<f64>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// Filters and a cursor for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub limit: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `limit + 1` (newest first): the
    /// extra row only tells that another page exists; the token points after
    /// the last row kept. `key` gives a row's (created_at, id) sort key.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Self {
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| {
                let (at, id) = key(last);
                encode_cursor(at, id)
            })
        } else {
            None
        };
        Page {
            items,
            next_page_token,
        }
    }
}

fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{}", at.timestamp_micros(), id.simple())
}

/// Reads a page token this server issued.
pub(crate) fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || {
        Error::invalid(format!(
            "page_token: {s:?} is not a token this server issued"
        ))
    };
    let (micros, id) = s.split_once('_').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// Parses a snake_case enum value, naming the field and the known values.
pub fn parse_choice<T: serde::de::DeserializeOwned>(
    field: &str,
    v: Option<&str>,
    known: &str,
) -> Result<Option<T>> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(s) => serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map(Some)
            .map_err(|_| Error::invalid(format!("{field}: unknown value {s:?} (known: {known})"))),
    }
}

/// Parses an id from a path or request field, naming the field on failure.
pub fn parse_id(field: &str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| {
        Error::invalid(format!(
            "{field}: {s:?} is not a valid id (expected a UUID)"
        ))
    })
}
