//! The start-up demo: a `demo` lab uploads the built-in sample data as
//! first-class resources (dead-leaves images as a stimulus set; the
//! simulated V1 recording: a Gabor bank, divisive normalization, LIF rates
//! and Poisson counts over repetitions, with its per-neuron reliability),
//! defines and publishes the `demo/v1-simulated` benchmark on them, then
//! compares the features of a "model" (a different random Gabor bank on the
//! same images) with the recording through the queue and prints the scores
//! and where everything lives. It uses the service layer exactly as the
//! transports do, with a real key; a restart reuses the benchmark.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use neuralign_core::catalog::MetricRequest;
use neuralign_core::inference::{BootstrapSpec, CeilingSpec, Normalization};
use neuralign_core::model::{CompareSpec, JobSpec, NewJob};
use neuralign_core::resources::{
    Benchmark, BenchmarkSplits, Modality, NeuronFilter, NewBenchmark, Recording, RecordingMeta,
};
use neuralign_core::service::{RecordingUpload, StimulusSetUpload};
use neuralign_core::{npy, Service};
use neuralign_engine::samples::{images, v1};

fn npy_of(t: &tch::Tensor) -> anyhow::Result<Vec<u8>> {
    let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
    let values = Vec::<f64>::try_from(&t.to_kind(tch::Kind::Double).reshape([-1]))?;
    Ok(npy::encode_f64(&shape, &values))
}

/// The demo's files: the 120 dead-leaves images (stimuli × 1 × 32 × 32), a
/// "model layer" (stimuli × 200 Gabor-bank features) and a simulated V1
/// recording (8 repetitions × stimuli × 60 neurons) of the same images.
pub struct DemoData {
    pub images: Vec<u8>,
    pub layer: Vec<u8>,
    pub recording: Vec<u8>,
}

pub fn demo_arrays(seed: u64) -> anyhow::Result<DemoData> {
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
    Ok(DemoData {
        images: npy_of(&stimuli)?,
        layer: npy_of(&model.drive)?,
        recording: npy_of(&brain.counts)?,
    })
}

pub const BENCHMARK: &str = "demo/v1-simulated";

/// The demo benchmark (and its recording), created and published once.
async fn demo_benchmark(
    svc: &Service,
    caller: &neuralign_core::Caller,
    data: &DemoData,
) -> anyhow::Result<(Benchmark, Recording)> {
    if let Ok(b) = svc.get_benchmark(caller, BENCHMARK).await {
        let rec = svc.get_recording(caller, b.recording_id).await?;
        return Ok((b, rec));
    }
    let set = svc
        .upload_stimulus_set(
            caller,
            StimulusSetUpload {
                name: "dead-leaves-120".into(),
                options: Default::default(),
            },
            once(data.images.clone()),
        )
        .await?;
    let rec = svc
        .upload_recording(
            caller,
            RecordingUpload {
                name: "simulated-v1".into(),
                stimulus_set: set.id,
                meta: RecordingMeta {
                    region: Some("V1".into()),
                    species: Some("simulated".into()),
                    modality: Some(Modality::Spikes),
                    units: Some("spikes per presentation".into()),
                    ..Default::default()
                },
                options: Default::default(),
            },
            once(data.recording.clone()),
        )
        .await?;
    let b = svc
        .create_benchmark(
            caller,
            NewBenchmark {
                name: "v1-simulated".into(),
                description:
                    "Ridge predictivity of the simulated V1 recording (built-in generator), \
                              split-half ceiling, r/c normalization"
                        .into(),
                recording: rec.id,
                metric: MetricRequest::Id("ridge".into()),
                ceiling: Some(CeilingSpec {
                    method: Default::default(),
                    splits: 20,
                    seed: 1,
                    normalization: Normalization::ROverC,
                }),
                neuron_filter: Some(NeuronFilter {
                    min_reliability: 0.3,
                }),
                splits: Some(BenchmarkSplits {
                    seed: Some(1),
                    explicit: None,
                }),
            },
        )
        .await?;
    let b = svc.publish_benchmark(caller, &b.id.to_string()).await?;
    Ok((b, rec))
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
    let data = tokio::task::spawn_blocking(|| demo_arrays(7)).await??;
    let (bench, rec) = demo_benchmark(svc, &caller, &data).await?;
    println!(
        "demo: benchmark {} on recording {} ({} repetitions × {} stimuli × {} neurons; median split-half reliability {:.3}; {} neurons kept)",
        bench.reference,
        rec.id,
        rec.repetitions,
        rec.stimuli,
        rec.neurons,
        rec.reliability.median.unwrap_or(f64::NAN),
        bench.neurons_kept,
    );
    let a = svc
        .upload_array(&caller, "demo-layer", once(data.layer))
        .await?;
    let metrics = ["linear_cka", "rsa", "ridge"]
        .into_iter()
        .map(|m| MetricRequest::Id(m.into()))
        .collect();
    let spec = JobSpec::Compare(CompareSpec {
        a: a.id,
        b: rec.array_id,
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
    demo_leaderboard(svc, &caller, &bench.reference).await?;
    println!("neuralign is serving:");
    println!("  HTTP API  http://{http}/v1   (OpenAPI: http://{http}/v1/openapi.json, health: http://{http}/healthz)");
    println!("  gRPC      {grpc}   (neuralign.v1, with reflection and grpc.health.v1)");
    println!("  events    curl -N -H 'Accept: text/event-stream' -H 'Authorization: Bearer {key}' http://{http}/v1/jobs/{}/events", job.id);
    println!("  benchmark curl -H 'Authorization: Bearer {key}' http://{http}/v1/benchmarks/demo%2Fv1-simulated");
    println!("  leaderboard curl -H 'Authorization: Bearer {key}' http://{http}/v1/benchmarks/demo%2Fv1-simulated/leaderboard");
    println!("  demo lab key: {key}");
    Ok(())
}

/// A small built-in CNN on the demo images with the given unit.
fn demo_cnn(activation: serde_json::Value, norm: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "architecture": {"type": "cnn", "channels": 1, "height": 32, "width": 32,
            "blocks": [{"channels": 16, "kernel": 5, "pool": {"kind": "max"}},
                       {"channels": 32, "pool": {"kind": "max"}},
                       {"channels": 32}],
            "unit": {"activation": activation, "norm": norm}},
        "seed": 1
    })
}

/// Scores four built-in CNNs (ReLU vs LIF-rate units, batch vs divisive
/// normalization) on the demo benchmark and prints its leaderboard.
async fn demo_leaderboard(
    svc: &Service,
    caller: &neuralign_core::Caller,
    bench: &str,
) -> anyhow::Result<()> {
    use serde_json::json;
    let variants = [
        ("cnn-relu-batch", json!("relu"), json!("batch")),
        (
            "cnn-relu-divisive",
            json!("relu"),
            json!({"divisive": {"sigma": 0.5}}),
        ),
        ("cnn-lif-batch", json!({"lif_rate": {}}), json!("batch")),
        (
            "cnn-lif-divisive",
            json!({"lif_rate": {}}),
            json!({"divisive": {"sigma": 0.5}}),
        ),
    ];
    for (name, activation, norm) in variants {
        let m = svc
            .register_builtin(
                caller,
                neuralign_core::resources::NewBuiltinModel {
                    name: name.into(),
                    spec: demo_cnn(activation, norm),
                    input: None,
                },
            )
            .await?;
        let m = svc
            .await_probe(caller, m, neuralign_core::service::PROBE_WAIT)
            .await?;
        let spec = JobSpec::Score(neuralign_core::model::ScoreSpec {
            model: m.id,
            benchmarks: vec![bench.to_string()],
            pooling: Default::default(),
            layers: None,
            reduce: None,
            bootstrap: None,
            batch_size: None,
        });
        let (job, _) = svc
            .submit_job(
                caller,
                NewJob {
                    spec,
                    priority: 0,
                    max_attempts: None,
                    idempotency_key: None,
                },
            )
            .await?;
        let mut events = std::pin::pin!(svc.watch_job(caller, job.id, 0));
        while events.next().await.is_some() {}
        let done = svc.get_job(caller, job.id).await?;
        if done.state != neuralign_core::model::JobState::Succeeded {
            anyhow::bail!(
                "demo score job for {name} ended {}: {}",
                done.state.as_str(),
                done.error.unwrap_or_default()
            );
        }
    }
    println!("demo leaderboard ({bench}, best layer chosen on held-out stimuli):");
    for e in svc.leaderboard(caller, bench).await? {
        println!(
            "  {:>2}. {:<22} layer {:<6} normalized {:.4}  raw {:.4}",
            e.rank,
            e.model,
            e.layer.unwrap_or_default(),
            e.score,
            e.raw.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
