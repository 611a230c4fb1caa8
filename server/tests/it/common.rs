//! Starting a server for a test, and small client helpers.

use std::time::Duration;

use neuralign_core::ServiceConfig;
use neuralign_server::{run, Listeners, ServerConfig};
use neuralign_worker::WorkerConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "nl_test_admin_key";

pub struct TestServer {
    pub http: String,
    pub grpc: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

async fn db_url(pool: &PgPool) -> String {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{db}")
}

pub async fn start(pool: &PgPool, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut cfg = ServerConfig {
        database_url: db_url(pool).await,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        admin_key: Some(ADMIN.into()),
        in_process_workers: true,
        max_json_bytes: 64 * 1024,
        demo: false,
        service: ServiceConfig {
            poll_ms: 100,
            ..ServiceConfig::default()
        },
        worker: WorkerConfig {
            concurrency: 2,
            device: "cpu".into(),
            ..WorkerConfig::default()
        },
    };
    tweak(&mut cfg);
    let http = TcpListener::bind(cfg.http_addr).await.unwrap();
    let grpc = TcpListener::bind(cfg.grpc_addr).await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(cfg, Listeners { http, grpc }, shutdown.clone()));
    let server = TestServer {
        http: format!("http://{http_addr}"),
        grpc: format!("http://{grpc_addr}"),
        client: reqwest::Client::new(),
        pool: pool.clone(),
        shutdown,
        task: Some(task),
    };
    for _ in 0..200 {
        if let Ok(r) = server
            .client
            .get(format!("{}/readyz", server.http))
            .send()
            .await
        {
            if r.status() == 200 {
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server did not become ready");
}

impl TestServer {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// Creates a lab over HTTP with the admin key; returns (lab id, key).
    pub async fn lab(&self, name: &str) -> (String, String) {
        let r = self
            .client
            .post(self.url("/v1/labs"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        (
            v["lab"]["id"].as_str().unwrap().to_string(),
            v["api_key"].as_str().unwrap().to_string(),
        )
    }

    pub async fn upload(&self, key: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/arrays?name={name}")))
            .bearer_auth(key)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// `count`, after waiting up to 5 s for it to reach `want`: a failed
    /// upload's blob rows are removed by a task its writer spawns on drop.
    pub async fn settled_count(&self, table: &str, want: i64) -> i64 {
        for _ in 0..200 {
            let n = self.count(table).await;
            if n == want {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.count(table).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Deterministic pseudo-random values (no shared code with the server).
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// A `.npy` file written by hand, the way NumPy lays it out.
pub fn npy(descr: &str, shape: &[usize], vals: &[f64]) -> Vec<u8> {
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in vals {
        match descr {
            "<f4" => out.extend_from_slice(&(*v as f32).to_le_bytes()),
            _ => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out
}

/// Standard normal draws from `values` (Box–Muller): test data that does not
/// depend on libtorch's global generator, which servers in other tests use.
pub fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let u = values(2 * n, seed);
    (0..n)
        .map(|i| {
            let (a, b) = ((u[2 * i] + 1.0) / 2.0, (u[2 * i + 1] + 1.0) / 2.0);
            (-2.0 * a.max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
        })
        .collect()
}

/// Poisson counts of the given means (inversion), from `values`.
pub fn poisson(means: &[f64], seed: u64) -> Vec<f64> {
    let u = values(means.len(), seed);
    means
        .iter()
        .zip(u)
        .map(|(&m, u)| {
            let u = (u + 1.0) / 2.0;
            let (mut k, mut p) = (0.0, (-m).exp());
            let mut cdf = p;
            while u > cdf && k < 10_000.0 {
                k += 1.0;
                p *= m / k;
                cdf += p;
            }
            k
        })
        .collect()
}
