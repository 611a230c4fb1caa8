//! Engine benchmarks, one workload per process so peak memory is per
//! workload: `cargo bench -p neuralign-engine --bench engine -- WORKLOAD DIR`.
//! Inputs are read from DIR (written by bench/engine_reference.py, so both
//! sides see identical data); prints one JSON line with seconds and peak RSS.

use std::time::Instant;

use neuralign_core::catalog::{Metric, MetricRequest};
use neuralign_core::inference::BootstrapSpec;
use neuralign_engine::{inference, metrics, pipeline};
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn load(dir: &str, name: &str) -> Tensor {
    let bytes =
        std::fs::read(format!("{dir}/{name}.npy")).expect("input written by engine_reference.py");
    let (shape, values) = neuralign_core::npy::decode_f64(&bytes).unwrap();
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&values).reshape(&dims)
}

fn metric(id: &str, options: serde_json::Value) -> Metric {
    Metric::parse(
        "m",
        &MetricRequest::WithOptions {
            id: id.into(),
            options: options.as_object().unwrap().clone(),
        },
    )
    .unwrap()
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn gflops(kind: Kind) -> f64 {
    let a = Tensor::randn([4096, 4096], (kind, Device::Cpu));
    let _ = a.matmul(&a);
    let t = Instant::now();
    for _ in 0..3 {
        let _ = a.matmul(&a);
    }
    3.0 * 2.0 * 4096f64.powi(3) / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let (workload, dir) = (
        args[1].as_str(),
        args.get(2)
            .map(String::as_str)
            .unwrap_or("target/bench/engine"),
    );
    let _guard = tch::no_grad_guard();
    let mut ok = || Ok(());
    let start = Instant::now();
    let out = match workload {
        "matmul" => json!({"f64_gflops": gflops(Kind::Double), "f32_gflops": gflops(Kind::Float)}),
        "rsa_bootstrap" => {
            let (a, b) = (load(dir, "rsa_a"), load(dir, "rsa_b"));
            let m = metric("rsa", json!({"rdm": "correlation", "comparison": "rho_a"}));
            let v = metrics::compute(&m, &a, &b).unwrap();
            let ci = inference::bootstrap(
                &m,
                &a,
                &b,
                &BootstrapSpec {
                    samples: 1000,
                    seed: 0,
                    confidence: 0.95,
                    over: Default::default(),
                },
                &mut ok,
            )
            .unwrap();
            json!({"value": v, "ci": ci.ci})
        }
        "rsa_profile" => {
            let (a, b) = (load(dir, "rsa_a"), load(dir, "rsa_b"));
            let t = Instant::now();
            let ra =
                neuralign_engine::rdm::rdm(&a, neuralign_core::catalog::RdmMethod::Correlation)
                    .unwrap();
            let rb =
                neuralign_engine::rdm::rdm(&b, neuralign_core::catalog::RdmMethod::Correlation)
                    .unwrap();
            let t_rdm = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let _ = neuralign_engine::rank::snap_ties(&ra);
            let t_snap = t.elapsed().as_secs_f64();
            let idx = neuralign_engine::splits::bootstrap_indices(500, 64, 0);
            let d = Tensor::from_slice(&idx).reshape([64, 500]);
            let t = Instant::now();
            let _ = inference::rsa_bootstrap_values(
                &ra,
                &rb,
                500,
                neuralign_core::catalog::RdmComparison::RhoA,
                &d,
            )
            .unwrap();
            let t_batch = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let _ = neuralign_engine::splits::bootstrap_indices(500, 1000, 0);
            json!({"rdm": t_rdm, "snap": t_snap, "batch64": t_batch, "draws": t.elapsed().as_secs_f64(), "threads": tch::get_num_threads()})
        }
        "ridge" => {
            let (x, y) = (load(dir, "ridge_x"), load(dir, "ridge_y"));
            let alphas: Vec<f64> = (0..20)
                .map(|i| 10f64.powf(-2.0 + 8.0 * i as f64 / 19.0))
                .collect();
            let m = metric(
                "ridge",
                json!({"alphas": alphas, "folds": 5, "inner_folds": 5, "seed": 0}),
            );
            json!({"value": metrics::compute(&m, &x, &y).unwrap()})
        }
        "pls" => {
            let (x, y) = (load(dir, "ridge_x"), load(dir, "pls_y"));
            let splits: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{dir}/pls_splits.json")).unwrap(),
            )
            .unwrap();
            let m = metric("pls", json!({"n_components": 25, "splits": splits}));
            json!({"value": metrics::compute(&m, &x, &y).unwrap()})
        }
        "cka" | "cka_f32" => {
            let kind = if workload == "cka" {
                Kind::Double
            } else {
                Kind::Float
            };
            let (x, y) = (
                load(dir, "cka_x").to_kind(kind),
                load(dir, "cka_y").to_kind(kind),
            );
            let t = Instant::now();
            let both = [
                metric("linear_cka", json!({})),
                metric("linear_cka", json!({"debiased": true})),
            ];
            let plan = pipeline::ComparePlan {
                metrics: &both,
                bootstrap: None,
                permutation: None,
                ceiling: None,
                reduce: None,
            };
            let r = pipeline::run(&x, &y, &plan, &mut |_, _| Ok(())).unwrap();
            json!({"linear": r[0].value, "unbiased": r[1].value, "compute_s": t.elapsed().as_secs_f64()})
        }
        // The metric work of the end-to-end score benchmark's children on a
        // cached re-score: every layer on both halves, per metric
        // (inputs written by bench/score_layers.py).
        "score_layers" => {
            // One thread, as each of the worker's slots runs its metrics.
            tch::set_num_threads(1);
            tch::manual_seed(0);
            let rec = load(dir, "rec");
            let n = rec.size()[1];
            let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
            let halves = [perm.slice(0, 0, n / 2, 1), perm.slice(0, n / 2, n, 1)];
            let layers: Vec<Tensor> = ["relu1", "relu2", "relu3", "relu4", "relu5"]
                .iter()
                .map(|l| load(dir, l))
                .collect();
            let mut times = serde_json::Map::new();
            // Ridge twice: "ridge_kept" finds the decompositions the first
            // pass made, as a worker's re-score does.
            let decompositions = neuralign_engine::DecompositionCache::new(1 << 30);
            let ridge = metric("ridge", json!({"inner": "loo"}));
            for (name, m) in [
                ("ridge", ridge.clone()),
                ("ridge_kept", ridge),
                ("rsa", metric("rsa", json!({}))),
                ("linear_cka", metric("linear_cka", json!({}))),
            ] {
                let plan = pipeline::ComparePlan {
                    metrics: std::slice::from_ref(&m),
                    bootstrap: None,
                    permutation: None,
                    ceiling: None,
                    reduce: None,
                };
                let t = Instant::now();
                let mut values = Vec::new();
                for half in &halves {
                    // As the worker does: b averaged, and its RDM, once for every layer.
                    let b = pipeline::averaged_target(&rec.index_select(1, half), &plan);
                    let memo = neuralign_engine::TargetMemo::default();
                    for (l, a) in layers.iter().enumerate() {
                        let a = a.index_select(0, half);
                        let design = format!("layer {l} half {}", half.int64_value(&[0]));
                        let kept = neuralign_engine::Kept {
                            target: Some((&memo, "half")),
                            design: Some((&decompositions, design.as_str())),
                        };
                        let r = pipeline::run_with(&a, &b, &plan, kept, &mut |_, _| Ok(()));
                        values.push(r.unwrap()[0].value);
                    }
                }
                times.insert(
                    name.into(),
                    json!({"seconds": t.elapsed().as_secs_f64(), "values": values}),
                );
            }
            serde_json::Value::Object(times)
        }
        other => panic!("unknown workload {other}"),
    };
    let mut out = out;
    out["workload"] = json!(workload);
    out["seconds"] = json!(start.elapsed().as_secs_f64());
    out["peak_rss_mib"] = json!(peak_rss_mib());
    println!("{out}");
}
