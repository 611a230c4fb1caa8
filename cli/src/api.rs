//! The HTTP client: every call authenticated, every error mapped to an exit
//! code (shared with the gRPC client).

use std::time::Duration;

use serde_json::Value;

#[derive(Debug)]
pub enum ApiError {
    /// 4xx (or the gRPC equivalents): the service's code and message.
    Refused {
        /// "HTTP 400", "gRPC InvalidArgument".
        via: String,
        code: String,
        message: String,
    },
    /// Unreachable, or 5xx.
    Unavailable(String),
    /// A flag or option this client cannot send.
    Usage(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Refused { via, code, message } => write!(f, "{message} ({code}, {via})"),
            ApiError::Unavailable(m) | ApiError::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::Refused { .. } => 4,
            ApiError::Unavailable(_) => 5,
            ApiError::Usage(_) => 2,
        }
    }
}

pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let r = req
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("cannot reach {}: {e}", self.base)))?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(body),
            400..=499 => Err(ApiError::Refused {
                via: format!("HTTP {status}"),
                code: body["code"].as_str().unwrap_or("unknown").to_string(),
                message: body["message"]
                    .as_str()
                    .unwrap_or("the request was refused")
                    .to_string(),
            }),
            _ => Err(ApiError::Unavailable(format!(
                "the service answered HTTP {status}: {}",
                body["message"].as_str().unwrap_or("no message")
            ))),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value, ApiError> {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/octet-stream")
                .body(body),
        )
        .await
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
