//! One client over either transport: `--url http://…` speaks HTTP,
//! `--url grpc://…` gRPC. Every operation answers the HTTP API's JSON, so
//! the commands never look at the transport.

use serde_json::Value;

use crate::api::{enc, Api, ApiError};
use crate::grpc::Grpc;

pub enum Client {
    Http(Api),
    Grpc(Grpc),
}

impl Client {
    pub fn new(url: &str, key: &str) -> Result<Client, ApiError> {
        if url.starts_with("grpcs://") {
            return Err(ApiError::Usage(format!(
                "--url: {url:?}: this CLI speaks plaintext gRPC only (grpc://host:port); use https:// for HTTP over TLS"
            )));
        }
        if url.starts_with("grpc://") {
            Ok(Client::Grpc(Grpc::new(url, key)?))
        } else {
            Ok(Client::Http(Api::new(url, key)))
        }
    }

    pub async fn upload_stimuli(
        &self,
        name: &str,
        opts: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => {
                let q = format!("?name={}{}", enc(name), query(opts));
                api.post_bytes(&format!("/v1/stimulus-sets{q}"), body).await
            }
            Client::Grpc(g) => g.upload_stimuli(name, opts, body).await,
        }
    }

    pub async fn upload_recording(
        &self,
        stimulus_set: &str,
        name: &str,
        opts: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => {
                let q = format!(
                    "?stimulus_set={}&name={}{}",
                    enc(stimulus_set),
                    enc(name),
                    query(opts)
                );
                api.post_bytes(&format!("/v1/recordings{q}"), body).await
            }
            Client::Grpc(g) => g.upload_recording(stimulus_set, name, opts, body).await,
        }
    }

    pub async fn register_torchscript(
        &self,
        name: &str,
        input: &str,
        layer_names: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => {
                let mut q = format!("?name={}&input={}", enc(name), enc(input));
                if let Some(l) = layer_names {
                    q.push_str(&format!("&layer_names={}", enc(l)));
                }
                api.post_bytes(&format!("/v1/models/torchscript{q}"), body)
                    .await
            }
            Client::Grpc(g) => g.register_torchscript(name, input, layer_names, body).await,
        }
    }

    pub async fn register_builtin(&self, body: &Value) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => api.post_json("/v1/models/builtin", body).await,
            Client::Grpc(g) => g.register_builtin(body).await,
        }
    }

    pub async fn create_benchmark(&self, body: &Value) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => api.post_json("/v1/benchmarks", body).await,
            Client::Grpc(g) => g.create_benchmark(body).await,
        }
    }

    /// `body`: {"spec": {...}, ...} as POST /v1/jobs takes it.
    pub async fn submit(&self, body: &Value) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => api.post_json("/v1/jobs", body).await,
            Client::Grpc(g) => g.submit(body).await,
        }
    }

    pub async fn job(&self, id: &str) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => api.get(&format!("/v1/jobs/{}", enc(id))).await,
            Client::Grpc(g) => g.job(id).await,
        }
    }

    pub async fn events(&self, id: &str, after: i64) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => {
                api.get(&format!("/v1/jobs/{}/events?after={after}", enc(id)))
                    .await
            }
            Client::Grpc(g) => g.events(id, after).await,
        }
    }

    /// A succeeded job's result; refused (exit 4) for any other state.
    pub async fn result(&self, id: &str) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => api.get(&format!("/v1/jobs/{}/result", enc(id))).await,
            Client::Grpc(g) => {
                let j = g.job(id).await?;
                if j["state"] == "succeeded" {
                    Ok(j["result"].clone())
                } else {
                    Err(ApiError::Refused {
                        via: "gRPC".into(),
                        code: "failed_precondition".into(),
                        message: format!(
                            "job {id} is {}; only a succeeded job has a result",
                            j["state"].as_str().unwrap_or("?")
                        ),
                    })
                }
            }
        }
    }

    pub async fn leaderboard(&self, benchmark: &str) -> Result<Value, ApiError> {
        match self {
            Client::Http(api) => {
                api.get(&format!("/v1/benchmarks/{}/leaderboard", enc(benchmark)))
                    .await
            }
            Client::Grpc(g) => g.leaderboard(benchmark).await,
        }
    }
}

fn query(opts: &[(String, String)]) -> String {
    opts.iter()
        .map(|(k, v)| format!("&{}={}", enc(k), enc(v)))
        .collect()
}
