//! Domain values to proto messages.

use neuralign_core::model::{ArrayMeta, Job, JobEvent, Lab};
use neuralign_proto::v1;

pub fn lab(l: Lab) -> v1::Lab {
    let Lab {
        id,
        name,
        max_running_jobs,
        created_at,
    } = l;
    v1::Lab {
        id: id.to_string(),
        name,
        max_running_jobs,
        created_at: created_at.to_rfc3339(),
    }
}

pub fn array(a: ArrayMeta) -> v1::Array {
    let ArrayMeta {
        id,
        name,
        dtype,
        shape,
        sha256,
        size_bytes,
        created_at,
    } = a;
    v1::Array {
        id: id.to_string(),
        name,
        dtype,
        shape,
        sha256,
        size_bytes,
        created_at: created_at.to_rfc3339(),
    }
}

pub fn job(j: Job) -> v1::Job {
    let Job {
        id,
        kind,
        state,
        priority,
        attempt,
        max_attempts,
        progress,
        spec,
        result,
        error,
        idempotency_key,
        cancel_requested,
        parent_id,
        created_at,
        started_at,
        finished_at,
    } = j;
    v1::Job {
        id: id.to_string(),
        kind,
        state: state.as_str().to_string(),
        priority,
        attempt,
        max_attempts,
        progress,
        spec_json: spec.to_string(),
        result_json: result.map(|r| r.to_string()).unwrap_or_default(),
        error: error.unwrap_or_default(),
        idempotency_key: idempotency_key.unwrap_or_default(),
        cancel_requested,
        created_at: created_at.to_rfc3339(),
        started_at: started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        finished_at: finished_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        parent_id: parent_id.map(|p| p.to_string()).unwrap_or_default(),
    }
}

pub fn event(e: JobEvent) -> v1::JobEvent {
    let JobEvent {
        id,
        job_id,
        kind,
        state,
        progress,
        message,
        at,
    } = e;
    v1::JobEvent {
        id,
        job_id: job_id.to_string(),
        kind,
        state: state.map(|s| s.as_str().to_string()).unwrap_or_default(),
        progress: progress.unwrap_or_default(),
        message: message.unwrap_or_default(),
        at: at.to_rfc3339(),
    }
}

/// Empty proto strings mean "not set".
/// A page size from a proto field: 0 means the server default.
pub fn limit(l: u32) -> Option<u32> {
    (l != 0).then_some(l)
}

pub fn opt(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// An optional JSON object field (`ceiling_json`, …); empty means absent.
pub fn optional_json<T: serde::de::DeserializeOwned>(
    field: &str,
    text: &str,
) -> Result<Option<T>, neuralign_core::Error> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de)
        .map(Some)
        .map_err(|e| neuralign_core::Error::invalid(format!("{field}.{}: {}", e.path(), e.inner())))
}

/// A proto metric request; `field` names it in errors.
pub fn metric_request(
    field: &str,
    m: v1::MetricRequest,
) -> Result<neuralign_core::catalog::MetricRequest, neuralign_core::Error> {
    use neuralign_core::catalog::MetricRequest;
    let v1::MetricRequest { id, options_json } = m;
    if options_json.trim().is_empty() {
        return Ok(MetricRequest::Id(id));
    }
    match serde_json::from_str(&options_json) {
        Ok(serde_json::Value::Object(options)) => Ok(MetricRequest::WithOptions { id, options }),
        _ => Err(neuralign_core::Error::invalid(format!(
            "{field}.options_json: not a JSON object"
        ))),
    }
}

pub fn metric_to_proto(m: neuralign_core::catalog::MetricRequest) -> v1::MetricRequest {
    use neuralign_core::catalog::MetricRequest;
    match m {
        MetricRequest::Id(id) => v1::MetricRequest {
            id,
            options_json: String::new(),
        },
        MetricRequest::WithOptions { id, options } => v1::MetricRequest {
            id,
            options_json: serde_json::Value::Object(options).to_string(),
        },
    }
}

/// JSON text of an optional value; empty when absent.
pub fn json_text<T: serde::Serialize>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| serde_json::to_string(v).unwrap_or_default())
        .unwrap_or_default()
}
