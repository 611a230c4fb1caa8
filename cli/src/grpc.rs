//! The gRPC client (`--url grpc://host:port`): the same operations as the
//! HTTP one, answered with the JSON the HTTP API would give for the fields
//! the CLI prints, so every command reads one shape whatever the transport.

use std::time::Duration;

use neuralign_proto::v1;
use serde_json::{json, Value};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::api::ApiError;

/// Adds the lab's API key to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

pub struct Grpc {
    target: String,
    channel: Channel,
    auth: Bearer,
}

/// The bytes of one streamed upload message.
const CHUNK: usize = 1 << 20;

fn refused(s: Status) -> ApiError {
    let code = match s.code() {
        Code::InvalidArgument => "invalid_argument",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::Unauthenticated => "unauthenticated",
        Code::FailedPrecondition => "failed_precondition",
        Code::ResourceExhausted => "resource_exhausted",
        Code::OutOfRange => "out_of_range",
        Code::Aborted => "aborted",
        _ => {
            return ApiError::Unavailable(format!(
                "the service answered gRPC {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    };
    ApiError::Refused {
        via: format!("gRPC {:?}", s.code()),
        code: code.into(),
        message: s.message().to_string(),
    }
}

fn usage(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::Usage(format!("{field}: {message}"))
}

/// A client-streaming upload: the file in `CHUNK`-sized messages (at least
/// one, which the caller gives the options).
fn chunked<M: Default>(body: &[u8], set_data: impl Fn(&mut M, Vec<u8>)) -> Vec<M> {
    let mut msgs: Vec<M> = body
        .chunks(CHUNK)
        .map(|c| {
            let mut m = M::default();
            set_data(&mut m, c.to_vec());
            m
        })
        .collect();
    if msgs.is_empty() {
        msgs.push(M::default());
    }
    msgs
}

/// A JSON text field of a message: parsed, or null when empty.
fn parsed(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt_f64(field: &str, v: &str) -> Result<Option<f64>, ApiError> {
    v.parse::<f64>()
        .map(Some)
        .map_err(|_| usage(&format!("--opt {field}"), format!("{v:?} is not a number")))
}

impl Grpc {
    /// `grpc://host:port`: plaintext gRPC, as the service serves it.
    pub fn new(url: &str, key: &str) -> Result<Grpc, ApiError> {
        let hostport = url
            .strip_prefix("grpc://")
            .ok_or_else(|| usage("--url", format!("{url:?} is not grpc://host:port")))?;
        let target = format!("http://{}", hostport.trim_end_matches('/'));
        let channel = Channel::from_shared(target.clone())
            .map_err(|e| usage("--url", e))?
            .connect_timeout(Duration::from_secs(10))
            .connect_lazy();
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| usage("--key", "is not a valid header value"))?;
        Ok(Grpc {
            target,
            channel,
            auth: Bearer(value),
        })
    }

    fn unreachable(&self, s: Status) -> ApiError {
        if s.code() == Code::Unavailable || s.code() == Code::Unknown {
            ApiError::Unavailable(format!("cannot reach {}: {}", self.target, s.message()))
        } else {
            refused(s)
        }
    }

    fn data(&self) -> v1::data_service_client::DataServiceClient<Authed> {
        v1::data_service_client::DataServiceClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
        .max_decoding_message_size(64 << 20)
    }

    fn jobs(&self) -> v1::job_service_client::JobServiceClient<Authed> {
        v1::job_service_client::JobServiceClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
        .max_decoding_message_size(64 << 20)
    }

    fn models(&self) -> v1::model_service_client::ModelServiceClient<Authed> {
        v1::model_service_client::ModelServiceClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
        .max_decoding_message_size(64 << 20)
    }

    fn benchmarks(&self) -> v1::benchmark_service_client::BenchmarkServiceClient<Authed> {
        v1::benchmark_service_client::BenchmarkServiceClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
    }

    pub async fn upload_stimuli(
        &self,
        name: &str,
        opts: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        let mut o = v1::StimulusSetOptions {
            name: name.to_string(),
            ..Default::default()
        };
        for (k, v) in opts {
            let slot = match k.as_str() {
                "format" => &mut o.format,
                "kind" => &mut o.kind,
                "layout" => &mut o.layout,
                "key" => &mut o.key,
                "dataset" => &mut o.dataset,
                "ids_dataset" => &mut o.ids_dataset,
                "labels_dataset" => &mut o.labels_dataset,
                "resize" => &mut o.resize,
                "resize_filter" => &mut o.resize_filter,
                other => {
                    return Err(usage(
                        "--opt",
                        format!("unknown stimulus set option {other:?}"),
                    ))
                }
            };
            *slot = v.clone();
        }
        let mut msgs = chunked(&body, |m: &mut v1::UploadStimulusSetRequest, d| {
            m.data = d.into()
        });
        msgs[0].options = Some(o);
        let s = self
            .data()
            .upload_stimulus_set(futures::stream::iter(msgs))
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(json!({
            "id": s.id, "name": s.name, "kind": s.kind, "count": s.count, "array_id": s.array_id,
            "shape": s.shape, "dtype": s.dtype, "source": parsed(&s.source_json),
            "extra_columns": s.extra_columns, "has_labels": s.has_labels, "sha256": s.sha256,
            "created_at": s.created_at,
        }))
    }

    pub async fn upload_recording(
        &self,
        stimulus_set: &str,
        name: &str,
        opts: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        let mut o = v1::RecordingOptions {
            name: name.to_string(),
            stimulus_set: stimulus_set.to_string(),
            ..Default::default()
        };
        for (k, v) in opts {
            match k.as_str() {
                "region" => o.region = v.clone(),
                "species" => o.species = v.clone(),
                "subject" => o.subject = v.clone(),
                "session" => o.session = v.clone(),
                "modality" => o.modality = v.clone(),
                "units" => o.units = v.clone(),
                "bin_size_ms" => o.bin_size_ms = opt_f64(k, v)?,
                "format" => o.format = v.clone(),
                "key" => o.key = v.clone(),
                "dataset" => o.dataset = v.clone(),
                "stimulus_ids_dataset" => o.stimulus_ids_dataset = v.clone(),
                "neuron_ids_dataset" => o.neuron_ids_dataset = v.clone(),
                "nan_policy" => o.nan_policy = v.clone(),
                "intervals" => o.intervals = v.clone(),
                "stimulus_column" => o.stimulus_column = v.clone(),
                "window_start" => o.window_start = opt_f64(k, v)?,
                "window_end" => o.window_end = opt_f64(k, v)?,
                "bin_size" => o.bin_size = opt_f64(k, v)?,
                other => {
                    return Err(usage(
                        "--opt",
                        format!("unknown recording option {other:?}"),
                    ))
                }
            }
        }
        let mut msgs = chunked(&body, |m: &mut v1::UploadRecordingRequest, d| {
            m.data = d.into()
        });
        msgs[0].options = Some(o);
        let r = self
            .data()
            .upload_recording(futures::stream::iter(msgs))
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(json!({
            "id": r.id, "name": r.name, "stimulus_set_id": r.stimulus_set_id, "array_id": r.array_id,
            "shape": r.shape, "dtype": r.dtype, "region": r.region, "species": r.species,
            "subject": r.subject, "session": r.session, "modality": r.modality, "units": r.units,
            "bin_size_ms": r.bin_size_ms, "repetitions": r.repetitions, "stimuli": r.stimuli,
            "neurons": r.neurons, "time_bins": r.time_bins, "trial_averaged": r.trial_averaged,
        }))
    }

    pub async fn register_torchscript(
        &self,
        name: &str,
        input: &str,
        layer_names: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        let options = v1::TorchScriptOptions {
            name: name.to_string(),
            input_json: input.to_string(),
            layer_names: layer_names
                .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            no_wait: false,
        };
        let mut msgs = chunked(&body, |m: &mut v1::RegisterTorchScriptRequest, d| {
            m.data = d.into()
        });
        msgs[0].options = Some(options);
        let m = self
            .models()
            .register_torch_script(futures::stream::iter(msgs))
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(model_json(m))
    }

    /// `body` as the HTTP API takes it: {"name", "spec", "input"?}.
    pub async fn register_builtin(&self, body: &Value) -> Result<Value, ApiError> {
        let req = v1::RegisterBuiltinRequest {
            name: text(&body["name"]),
            spec_json: body["spec"].to_string(),
            input_json: text(&body["input"]),
            no_wait: false,
        };
        let m = self
            .models()
            .register_builtin(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(model_json(m))
    }

    /// `body` as the HTTP API takes it.
    pub async fn create_benchmark(&self, body: &Value) -> Result<Value, ApiError> {
        let json_field = |k: &str| match &body[k] {
            Value::Null => String::new(),
            v => v.to_string(),
        };
        let req = v1::CreateBenchmarkRequest {
            name: text(&body["name"]),
            description: text(&body["description"]),
            recording: text(&body["recording"]),
            metric: Some(metric(&body["metric"])),
            ceiling_json: json_field("ceiling"),
            neuron_filter_json: json_field("neuron_filter"),
            splits_json: json_field("splits"),
        };
        let b = self
            .benchmarks()
            .create_benchmark(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        let m = b.metric.unwrap_or_default();
        Ok(json!({
            "id": b.id, "reference": b.reference, "lab": b.lab, "name": b.name, "version": b.version,
            "description": b.description, "recording_id": b.recording_id,
            "metric": {"id": m.id, "options": parsed(&m.options_json)},
            "ceiling": parsed(&b.ceiling_json), "neuron_filter": parsed(&b.neuron_filter_json),
            "neurons_kept": b.neurons_kept, "splits": parsed(&b.splits_json), "public": b.public,
            "created_at": b.created_at,
        }))
    }

    /// `body` as the HTTP API takes it: {"spec": {"kind", ...}, "priority"?, ...}.
    pub async fn submit(&self, body: &Value) -> Result<Value, ApiError> {
        let spec = &body["spec"];
        let json_field = |k: &str| match &spec[k] {
            Value::Null => String::new(),
            v => v.to_string(),
        };
        let strings = |k: &str| -> Vec<String> {
            spec[k]
                .as_array()
                .map(|a| a.iter().map(text).collect())
                .unwrap_or_default()
        };
        let kind = spec["kind"].as_str().unwrap_or_default();
        let spec = match kind {
            "score" => v1::submit_job_request::Spec::Score(v1::ScoreSpec {
                model: text(&spec["model"]),
                benchmarks: strings("benchmarks"),
                pooling: text(&spec["pooling"]),
                layers: strings("layers"),
                reduce_json: json_field("reduce"),
                bootstrap_json: json_field("bootstrap"),
                batch_size: spec["batch_size"].as_u64().unwrap_or(0) as u32,
            }),
            "compare" => v1::submit_job_request::Spec::Compare(v1::CompareSpec {
                a: text(&spec["a"]),
                b: text(&spec["b"]),
                metrics: spec["metrics"]
                    .as_array()
                    .map(|a| a.iter().map(metric).collect())
                    .unwrap_or_default(),
                bootstrap_json: json_field("bootstrap"),
                permutation_json: json_field("permutation"),
                ceiling_json: json_field("ceiling"),
                reduce_json: json_field("reduce"),
                precision: text(&spec["precision"]),
            }),
            "noop" => v1::submit_job_request::Spec::Noop(v1::NoopSpec {
                duration_ms: spec["duration_ms"].as_u64().unwrap_or(0),
                fail_attempts: spec["fail_attempts"].as_u64().unwrap_or(0) as u32,
            }),
            other => {
                return Err(usage(
                    "spec.kind",
                    format!("{other:?} cannot be submitted over gRPC (score, compare or noop)"),
                ))
            }
        };
        let req = v1::SubmitJobRequest {
            spec: Some(spec),
            priority: body["priority"].as_i64().unwrap_or(0) as i32,
            max_attempts: body["max_attempts"].as_u64().unwrap_or(0) as u32,
            idempotency_key: text(&body["idempotency_key"]),
        };
        let j = self
            .jobs()
            .submit_job(req)
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(job_json(j))
    }

    pub async fn job(&self, id: &str) -> Result<Value, ApiError> {
        let j = self
            .jobs()
            .get_job(v1::GetJobRequest { id: id.to_string() })
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(job_json(j))
    }

    pub async fn events(&self, id: &str, after: i64) -> Result<Value, ApiError> {
        let r = self
            .jobs()
            .list_job_events(v1::ListJobEventsRequest {
                id: id.to_string(),
                after_event_id: after,
            })
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(Value::Array(
            r.events
                .into_iter()
                .map(|e| {
                    json!({"id": e.id, "job_id": e.job_id, "kind": e.kind,
                           "state": (!e.state.is_empty()).then_some(e.state),
                           "progress": e.progress,
                           "message": (!e.message.is_empty()).then_some(e.message), "at": e.at})
                })
                .collect(),
        ))
    }

    pub async fn leaderboard(&self, benchmark: &str) -> Result<Value, ApiError> {
        let b = self
            .models()
            .get_leaderboard(v1::LeaderboardRequest {
                benchmarks: vec![benchmark.to_string()],
            })
            .await
            .map_err(|s| self.unreachable(s))?
            .into_inner();
        Ok(json!({
            "benchmarks": b.benchmarks,
            "entries": b.entries.into_iter().map(|e| json!({
                "rank": e.rank, "lab": e.lab, "model_id": e.model_id, "model": e.model,
                "layer": (!e.layer.is_empty()).then_some(e.layer), "score": e.score, "raw": e.raw,
                "ci": (!e.ci.is_empty()).then_some(e.ci), "benchmarks": e.benchmarks,
                "job_id": (!e.job_id.is_empty()).then_some(e.job_id), "scored_at": e.scored_at,
            })).collect::<Vec<_>>(),
        }))
    }
}

/// A metric as the HTTP API takes it: "rsa" or {"id", "options"}.
fn metric(v: &Value) -> v1::MetricRequest {
    match v {
        Value::String(id) => v1::MetricRequest {
            id: id.clone(),
            options_json: String::new(),
        },
        other => v1::MetricRequest {
            id: text(&other["id"]),
            options_json: match &other["options"] {
                Value::Null => String::new(),
                o => o.to_string(),
            },
        },
    }
}

fn model_json(m: v1::Model) -> Value {
    json!({
        "id": m.id, "name": m.name, "version": m.version, "kind": m.kind,
        "content_hash": m.content_hash, "version_hash": m.version_hash,
        "spec": parsed(&m.spec_json), "input": parsed(&m.input_json), "state": m.state,
        "error": (!m.error.is_empty()).then_some(m.error),
        "layers": m.layers.into_iter().map(|l| json!({"name": l.name, "shape": l.shape})).collect::<Vec<_>>(),
        "created_at": m.created_at,
    })
}

fn job_json(j: v1::Job) -> Value {
    let opt = |s: String| (!s.is_empty()).then_some(s);
    json!({
        "id": j.id, "kind": j.kind, "state": j.state, "priority": j.priority, "attempt": j.attempt,
        "max_attempts": j.max_attempts, "progress": j.progress, "spec": parsed(&j.spec_json),
        "result": parsed(&j.result_json), "error": opt(j.error),
        "idempotency_key": opt(j.idempotency_key), "cancel_requested": j.cancel_requested,
        "parent_id": opt(j.parent_id), "created_at": j.created_at,
        "started_at": opt(j.started_at), "finished_at": opt(j.finished_at),
    })
}
