//! The start-up demo: a `demo` lab uploads a simulated "brain" response and
//! a "model layer" that linearly encodes the same stimuli, runs a `compare`
//! job through the queue and prints where everything lives. It uses the
//! service layer exactly as the transports do, with a real key.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use neuralign_core::catalog::MetricRequest;
use neuralign_core::inference::{BootstrapSpec, CeilingSpec, Normalization};
use neuralign_core::model::{CompareSpec, JobSpec, NewJob};
use neuralign_core::{npy, Service};

/// A small deterministic generator (splitmix64 + Box–Muller), so the demo
/// data are the same on every machine without a dependency.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Stimuli × features "layer" and a reps × stimuli × neurons "recording"
/// that reads it out linearly with noise.
pub fn demo_arrays(
    n: usize,
    d: usize,
    reps: usize,
    neurons: usize,
    seed: u64,
) -> (Vec<u8>, Vec<u8>) {
    let mut g = Gauss(seed);
    let x: Vec<f64> = (0..n * d).map(|_| g.next()).collect();
    let w: Vec<f64> = (0..d * neurons)
        .map(|_| g.next() / (d as f64).sqrt())
        .collect();
    let mut y = Vec::with_capacity(reps * n * neurons);
    for _ in 0..reps {
        for i in 0..n {
            for j in 0..neurons {
                let drive: f64 = (0..d).map(|k| x[i * d + k] * w[k * neurons + j]).sum();
                y.push(drive + 0.5 * g.next());
            }
        }
    }
    (
        npy::encode_f64(&[n as u64, d as u64], &x),
        npy::encode_f64(&[reps as u64, n as u64, neurons as u64], &y),
    )
}

fn once(bytes: Vec<u8>) -> neuralign_core::service::ByteStream {
    Box::pin(futures::stream::iter([Ok(Bytes::from(bytes))]))
}

pub async fn run(
    svc: &Service,
    admin_key: Option<&str>,
    http: SocketAddr,
    grpc: SocketAddr,
) -> anyhow::Result<()> {
    let admin_key =
        admin_key.context("the demo needs NEURALIGN_ADMIN_KEY (the up script sets it)")?;
    let admin = svc.authenticate(Some(admin_key)).await?;
    let labs = svc.list_labs(&admin).await?;
    let key = match labs.iter().find(|l| l.name == "demo") {
        Some(lab) => svc.create_api_key(&admin, lab.id).await?.1,
        None => svc.create_lab(&admin, "demo", None).await?.1,
    };
    let caller = svc.authenticate(Some(&key)).await?;
    let (layer, recording) = demo_arrays(60, 20, 4, 30, 7);
    let a = svc.upload_array(&caller, "demo-layer", once(layer)).await?;
    let b = svc
        .upload_array(&caller, "demo-recording", once(recording))
        .await?;
    let metrics = ["linear_cka", "rsa", "ridge"]
        .into_iter()
        .map(|m| MetricRequest::Id(m.into()))
        .collect();
    let spec = JobSpec::Compare(CompareSpec {
        a: a.id,
        b: b.id,
        metrics,
        bootstrap: Some(BootstrapSpec {
            samples: 200,
            seed: 1,
            confidence: 0.95,
            over: Default::default(),
        }),
        permutation: None,
        reduce: None,
        precision: Default::default(),
        ceiling: Some(CeilingSpec {
            method: Default::default(),
            splits: 20,
            seed: 1,
            normalization: Normalization::ROverC,
        }),
    });
    let (job, _) = svc
        .submit_job(
            &caller,
            NewJob {
                spec,
                priority: 0,
                max_attempts: None,
                idempotency_key: None,
            },
        )
        .await?;
    println!("demo: submitted compare job {} (lab `demo`)", job.id);
    let mut events = std::pin::pin!(svc.watch_job(&caller, job.id, 0));
    while let Some(e) = events.next().await {
        let e = e?;
        if let Some(state) = e.state {
            println!("demo: job {} -> {}", job.id, state.as_str());
        }
    }
    let done = svc.get_job(&caller, job.id).await?;
    match done.result {
        Some(result) if done.state == neuralign_core::model::JobState::Succeeded => {
            println!("demo job succeeded:");
            for r in result["results"].as_array().into_iter().flatten() {
                println!(
                    "  {:<10} value {:.4}  95% CI {}  ceiling {}  normalized {}",
                    r["metric"].as_str().unwrap_or("?"),
                    r["value"].as_f64().unwrap_or(f64::NAN),
                    r["bootstrap"]["ci"],
                    r["ceiling"]["ceiling"],
                    r["normalized"]
                );
            }
        }
        _ => anyhow::bail!(
            "demo job ended {}: {}",
            done.state.as_str(),
            done.error.unwrap_or_default()
        ),
    }
    println!("neuralign is serving:");
    println!("  HTTP API  http://{http}/v1   (OpenAPI: http://{http}/v1/openapi.json, health: http://{http}/healthz)");
    println!("  gRPC      {grpc}   (neuralign.v1, with reflection and grpc.health.v1)");
    println!("  events    curl -N -H 'Accept: text/event-stream' -H 'Authorization: Bearer {key}' http://{http}/v1/jobs/{}/events", job.id);
    println!("  demo lab key: {key}");
    Ok(())
}
