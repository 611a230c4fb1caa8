//! Job kinds. Each is a type implementing `JobKind` with a typed spec and
//! output; `run_claimed` dispatches on the stored kind name.

mod compare;
mod models;
mod noop;
mod probe;
mod score;

use std::future::Future;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use neuralign_core::queue::Outcome;
use neuralign_core::Service;

pub use compare::Compare;
pub use noop::Noop;
pub use probe::Probe;
pub use score::Score;

/// How a job attempt failed.
#[derive(Debug)]
pub enum JobError {
    /// Transient: worth another attempt.
    Retryable(String),
    /// Permanent: the input is wrong or the job cannot succeed.
    Fatal(String),
    Cancelled,
}

impl From<neuralign_engine::EngineError> for JobError {
    fn from(e: neuralign_engine::EngineError) -> Self {
        match e {
            neuralign_engine::EngineError::Invalid(m) => JobError::Fatal(m),
            neuralign_engine::EngineError::Cancelled => JobError::Cancelled,
            other => JobError::Retryable(other.to_string()),
        }
    }
}

impl From<neuralign_core::Error> for JobError {
    fn from(e: neuralign_core::Error) -> Self {
        match e.code() {
            neuralign_core::ErrorCode::InvalidArgument
            | neuralign_core::ErrorCode::NotFound
            | neuralign_core::ErrorCode::FailedPrecondition => JobError::Fatal(e.client_message()),
            _ => JobError::Retryable(e.to_string()),
        }
    }
}

/// A stored `.npy` (float32/float64) as a float64 tensor on the CPU, with
/// its shape; `field` names it in errors.
pub fn npy_tensor(
    field: &str,
    bytes: &[u8],
) -> Result<(Vec<u64>, tch::Tensor), neuralign_engine::EngineError> {
    let (shape, t) = npy_tensor_native(field, bytes)?;
    Ok((shape, t.f_to_kind(tch::Kind::Double)?))
}

/// A stored `.npy` as a tensor of its own dtype, copied once from the bytes.
/// Values were checked when the array was stored (finite, or NaN where a
/// recording masks missing trials), so they are not checked again here.
pub fn npy_tensor_native(
    field: &str,
    bytes: &[u8],
) -> Result<(Vec<u64>, tch::Tensor), neuralign_engine::EngineError> {
    let invalid = |m: String| neuralign_engine::EngineError::invalid(format!("{field}: {m}"));
    let h = neuralign_core::npy::parse_header(bytes)
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid("truncated .npy header".into()))?;
    let data = &bytes[h.data_offset..];
    if data.len() as u64 != h.data_bytes() {
        return Err(invalid(format!(
            "{} data bytes for shape {:?}, expected {}",
            data.len(),
            h.shape,
            h.data_bytes()
        )));
    }
    let kind = match h.dtype {
        neuralign_core::npy::DType::F32 => tch::Kind::Float,
        neuralign_core::npy::DType::F64 => tch::Kind::Double,
    };
    let dims: Vec<i64> = h.shape.iter().map(|&d| d as i64).collect();
    Ok((h.shape, tch::Tensor::f_from_data_size(data, &dims, kind)?))
}

/// A compute task that panicked hit a bug (a libtorch error on an
/// unchecked op): retrying would fail the same way, so the job fails with
/// the panic's message.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> JobError {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    let first_line = msg.lines().next().unwrap_or(msg);
    tracing::error!(panic = msg, "compute task panicked");
    JobError::Fatal(format!("internal compute error: {first_line}"))
}

/// What a running job can see and use.
#[derive(Clone)]
pub struct JobContext {
    pub service: Service,
    pub job_id: Uuid,
    pub lab_id: Uuid,
    /// The job that fanned this one out, if any.
    pub parent_id: Option<Uuid>,
    pub attempt: u32,
    pub device: tch::Device,
    pub cancel: CancellationToken,
    pub progress: mpsc::UnboundedSender<(f64, Option<String>)>,
    /// Where this slot's tensor work runs.
    pub compute: std::sync::Arc<crate::compute::ComputeThread>,
    /// What the worker keeps between jobs, shared by its slots.
    pub caches: std::sync::Arc<crate::caches::Caches>,
}

impl JobContext {
    pub fn report(&self, fraction: f64, message: Option<String>) {
        let _ = self.progress.send((fraction, message));
    }
}

/// Where an attempt got to: done with an output, or fanned out.
pub enum Step<T> {
    Done(T),
    /// Wait for child jobs: these new ones (none when they already exist),
    /// each one `unit` of the work as the parent's progress counts them
    /// ("benchmarks"); the job runs again once every child is final.
    WaitFor {
        children: Vec<neuralign_core::model::JobSpec>,
        unit: &'static str,
    },
}

pub trait JobKind {
    const KIND: &'static str;
    type Spec: DeserializeOwned + Send;
    type Output: Serialize;
    fn run(
        ctx: JobContext,
        spec: Self::Spec,
    ) -> impl Future<Output = Result<Step<Self::Output>, JobError>> + Send;
}

async fn run_kind<K: JobKind>(ctx: JobContext, spec: Value) -> Outcome {
    // The stored spec is tagged with its kind; the typed spec is the rest.
    let spec = match spec {
        Value::Object(mut m) => {
            m.remove("kind");
            Value::Object(m)
        }
        other => other,
    };
    let spec: K::Spec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => return Outcome::Fatal(format!("spec: {e}")),
    };
    match K::run(ctx, spec).await {
        Ok(Step::WaitFor { children, unit }) => Outcome::Waiting { children, unit },
        Ok(Step::Done(out)) => match serde_json::to_value(out) {
            Ok(v) => Outcome::Succeeded(v),
            Err(e) => Outcome::Fatal(format!("result could not be encoded: {e}")),
        },
        Err(JobError::Retryable(m)) => Outcome::Retryable(m),
        Err(JobError::Fatal(m)) => Outcome::Fatal(m),
        Err(JobError::Cancelled) => Outcome::Cancelled,
    }
}

pub async fn run_claimed(kind: &str, ctx: JobContext, spec: Value) -> Outcome {
    match kind {
        Compare::KIND => run_kind::<Compare>(ctx, spec).await,
        Noop::KIND => run_kind::<Noop>(ctx, spec).await,
        Probe::KIND => run_kind::<Probe>(ctx, spec).await,
        Score::KIND => run_kind::<Score>(ctx, spec).await,
        other => Outcome::Fatal(format!(
            "kind: this worker cannot run jobs of kind {other:?}"
        )),
    }
}
