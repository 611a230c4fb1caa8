//! The start-up demo: a `demo` lab uploads a simulated V1 recording (the
//! engine's built-in generator: dead-leaves images through a Gabor bank,
//! divisive normalization, LIF rates and Poisson counts over repetitions)
//! and the features of a "model" (a different random Gabor bank on the same
//! images), runs a `compare` job through the queue and prints the scores and
//! where everything lives. It uses the service layer exactly as the
//! transports do, with a real key.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use neuralign_core::catalog::MetricRequest;
use neuralign_core::inference::{BootstrapSpec, CeilingSpec, Normalization};
use neuralign_core::model::{CompareSpec, JobSpec, NewJob};
use neuralign_core::{npy, Service};
use neuralign_engine::samples::{images, v1};

fn npy_of(t: &tch::Tensor) -> anyhow::Result<Vec<u8>> {
    let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
    let values = Vec::<f64>::try_from(&t.to_kind(tch::Kind::Double).reshape([-1]))?;
    Ok(npy::encode_f64(&shape, &values))
}

/// A "model layer" (stimuli × 200 Gabor-bank features) and a simulated V1
/// recording (8 repetitions × stimuli × 60 neurons) for the same 120
/// dead-leaves images.
pub fn demo_arrays(seed: u64) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let _guard = tch::no_grad_guard();
    let stimuli = images::dead_leaves(120, 32, 0.02, 0.4, seed);
    let brain = v1::simulate(
        &stimuli,
        &v1::V1Params {
            neurons: 60,
            repetitions: 8,
            seed,
            ..Default::default()
        },
    )?;
    let model = v1::simulate(
        &stimuli,
        &v1::V1Params {
            neurons: 200,
            repetitions: 1,
            seed: seed + 1,
            ..Default::default()
        },
    )?;
    Ok((npy_of(&model.drive)?, npy_of(&brain.counts)?))
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
    let (layer, recording) = tokio::task::spawn_blocking(|| demo_arrays(7)).await??;
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
