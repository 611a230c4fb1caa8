//! Every metric and option against the reference values that
//! `fixtures/engine_fixtures.py` computes with rsatoolbox, scipy and the
//! published formulas (`scripts/fixtures.sh` writes the JSON; the test suite
//! runs it first). Agreement is required to 1e-6 in float64.

use neuralign_core::catalog::{Metric, MetricRequest, RdmComparison};
use neuralign_engine::metrics::compare_rdms;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-6;

fn fixtures() -> Value {
    let path = std::env::var("NEURALIGN_FIXTURES").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/fixtures/engine.json"
        )
        .to_string()
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {path} ({e}); run scripts/fixtures.sh (scripts/test.sh does)")
    });
    serde_json::from_str(&text).unwrap()
}

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<i64> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let vals: Vec<f64> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    Tensor::from_slice(&vals)
        .reshape(&shape)
        .to_kind(Kind::Double)
}

fn device() -> Device {
    Device::cuda_if_available()
}

#[test]
fn every_metric_matches_its_reference() {
    let doc = fixtures();
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in doc["cases"].as_array().unwrap() {
        let (a, b) = (
            tensor(&case["a"]).to_device(device()),
            tensor(&case["b"]).to_device(device()),
        );
        for m in case["metrics"].as_array().unwrap() {
            let req = MetricRequest::WithOptions {
                id: m["id"].as_str().unwrap().to_string(),
                options: m["options"].as_object().unwrap().clone(),
            };
            let metric = Metric::parse("metric", &req).unwrap();
            let expected = m["value"].as_f64().unwrap();
            let got = neuralign_engine::compute(&metric, &a, &b).unwrap();
            checked += 1;
            if (got - expected).abs() > TOLERANCE * expected.abs().max(1.0) {
                failures.push(format!(
                    "{} {} {}: got {got}, reference {expected}",
                    case["name"], m["id"], m["options"]
                ));
            }
        }
    }
    assert!(checked > 100, "only {checked} values checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn nan_dissimilarities_are_dropped_pairwise() {
    let doc = fixtures();
    let vec = |k: &str| -> Tensor {
        let v: Vec<f64> = doc["nan_rdms"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect();
        Tensor::from_slice(&v).to_device(device())
    };
    let (a, b) = (vec("a"), vec("b"));
    for e in doc["nan_rdms"]["expected"].as_array().unwrap() {
        let how: RdmComparison = serde_json::from_value(e["comparison"].clone()).unwrap();
        let got = compare_rdms(&a, &b, how).unwrap();
        let want = e["value"].as_f64().unwrap();
        assert!(
            (got - want).abs() < TOLERANCE,
            "{how:?}: got {got}, reference {want}"
        );
    }
}

#[test]
fn ridge_matches_brute_force_scikit_learn() {
    check_predictivity("ridge", "ridge");
}

#[test]
fn one_to_one_matches_its_numpy_reference() {
    check_predictivity("one_to_one", "one_to_one");
}

#[test]
fn pls_matches_converged_scikit_learn() {
    check_predictivity("pls", "pls");
}

fn check_predictivity(section: &str, id: &str) {
    let doc = fixtures();
    let cases = doc[section].as_array().unwrap();
    assert!(!cases.is_empty(), "no {section} fixtures");
    for case in cases {
        let (a, b) = (
            tensor(&case["a"]).to_device(device()),
            tensor(&case["b"]).to_device(device()),
        );
        let req = MetricRequest::WithOptions {
            id: id.into(),
            options: case["options"].as_object().unwrap().clone(),
        };
        let metric = Metric::parse("metric", &req).unwrap();
        let (value, details) = neuralign_engine::compute_detailed(&metric, &a, &b).unwrap();
        let details = details.unwrap();
        let name = case["name"].as_str().unwrap();
        let near = |got: f64, want: f64, what: &str| {
            assert!(
                (got - want).abs() < TOLERANCE,
                "{name} {what}: got {got}, scikit-learn {want}"
            );
        };
        near(value, case["value"].as_f64().unwrap(), "value");
        near(
            details["sem"].as_f64().unwrap(),
            case["sem"].as_f64().unwrap(),
            "sem",
        );
        for (i, (g, w)) in details["splits"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["splits"].as_array().unwrap())
            .enumerate()
        {
            near(
                g["median_r"].as_f64().unwrap(),
                w["median_r"].as_f64().unwrap(),
                &format!("split {i} median r"),
            );
            near(
                g["median_r2"].as_f64().unwrap(),
                w["median_r2"].as_f64().unwrap(),
                &format!("split {i} median R2"),
            );
        }
        if let Some(want) = case.get("per_neuron_alpha") {
            assert_eq!(
                details["per_neuron_alpha"], *want,
                "{name}: alpha chosen per neuron"
            );
        }
        for (j, (g, w)) in details["per_neuron_r"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["per_neuron_r"].as_array().unwrap())
            .enumerate()
        {
            match (g.as_f64(), w.as_f64()) {
                (Some(g), Some(w)) => near(g, w, &format!("neuron {j} r")),
                (g, w) => assert_eq!(
                    g.is_none(),
                    w.is_none(),
                    "{name} neuron {j}: {g:?} vs {w:?}"
                ),
            }
        }
    }
}

fn metric_of(v: &Value) -> Metric {
    let req = MetricRequest::WithOptions {
        id: v["id"].as_str().unwrap().to_string(),
        options: v["options"].as_object().unwrap().clone(),
    };
    Metric::parse("metric", &req).unwrap()
}

#[test]
fn bootstrap_permutation_and_ceiling_match_their_references() {
    use neuralign_core::inference::{BootstrapSpec, CeilingSpec, Normalization, PermutationSpec};
    use neuralign_engine::inference;
    let doc = fixtures();
    let inf = &doc["inference"];
    let a = tensor(&inf["a"]).to_device(device());
    let reps = tensor(&inf["b_reps"]).to_device(device());
    let b = reps.mean_dim(0, false, Kind::Double);
    let mut ok = || Ok(());
    for case in inf["bootstrap"].as_array().unwrap() {
        let m = metric_of(&case["metric"]);
        let spec = BootstrapSpec {
            samples: 200,
            seed: 5,
            confidence: 0.95,
            over: Default::default(),
        };
        let got = inference::bootstrap(&m, &a, &b, &spec, &mut ok).unwrap();
        let want: Vec<f64> = case["ci"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (k, want_k) in want.iter().enumerate() {
            assert!(
                (got.ci[k] - want_k).abs() < TOLERANCE,
                "{} ci[{k}]: got {}, reference {}",
                case["metric"],
                got.ci[k],
                want[k]
            );
        }
        assert!(
            (got.std - case["std"].as_f64().unwrap()).abs() < TOLERANCE,
            "{} std",
            case["metric"]
        );
    }
    for case in inf["bootstrap_neurons"].as_array().unwrap() {
        let m = metric_of(&case["metric"]);
        let spec = BootstrapSpec {
            samples: 100,
            seed: 21,
            confidence: 0.95,
            over: neuralign_core::inference::ResampleOver::Neurons,
        };
        let got = inference::bootstrap(&m, &a, &b, &spec, &mut ok).unwrap();
        let want: Vec<f64> = case["ci"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            (got.ci[0] - want[0]).abs() < TOLERANCE && (got.ci[1] - want[1]).abs() < TOLERANCE,
            "{} over neurons: {:?} vs {want:?}",
            case["metric"],
            got.ci
        );
        assert!((got.std - case["std"].as_f64().unwrap()).abs() < TOLERANCE);
        assert_eq!(got.over, "neurons");
    }
    for case in inf["permutation"].as_array().unwrap() {
        let m = metric_of(&case["metric"]);
        let observed = neuralign_engine::compute(&m, &a, &b).unwrap();
        let got = inference::permutation_test(
            &m,
            &a,
            &b,
            observed,
            &PermutationSpec {
                count: 100,
                seed: 9,
            },
            &mut ok,
        )
        .unwrap();
        assert!(
            (got.p_value - case["p_value"].as_f64().unwrap()).abs() < 1e-12,
            "{} p-value",
            case["metric"]
        );
        let want = case["null_mean"].as_f64().unwrap();
        assert!(
            (got.null_mean - want).abs() < TOLERANCE,
            "{} null mean: got {}, reference {want}",
            case["metric"],
            got.null_mean
        );
    }
    for case in inf["ceiling"].as_array().unwrap() {
        let m = metric_of(&case["metric"]);
        let spec = CeilingSpec {
            method: Default::default(),
            splits: 20,
            seed: 11,
            normalization: Normalization::ROverC,
        };
        let got = inference::split_half_ceiling(&m, &reps, &spec, &mut ok).unwrap();
        let want = case["ceiling"].as_f64().unwrap();
        assert!(
            (got.ceiling - want).abs() < TOLERANCE,
            "{} ceiling: got {}, reference {want}",
            case["metric"],
            got.ceiling
        );
        if let Some(per) = case["per_neuron"].as_array() {
            for (g, w) in got.per_neuron.unwrap().iter().zip(per) {
                assert!((g - w.as_f64().unwrap()).abs() < TOLERANCE);
            }
        }
    }
}

#[test]
fn subject_ceilings_match_rsatoolbox() {
    use neuralign_core::inference::{CeilingMethod, CeilingSpec, Normalization};
    let doc = fixtures();
    let subj = &doc["inference"]["subjects"];
    let subjects = tensor(subj).to_device(device());
    for e in subj["expected"].as_array().unwrap() {
        let m = metric_of(
            &serde_json::json!({"id": "rsa", "options": {"comparison": e["comparison"]}}),
        );
        let spec = CeilingSpec {
            method: CeilingMethod::Subjects,
            splits: 1,
            seed: 0,
            normalization: Normalization::ROverC,
        };
        let c =
            neuralign_engine::inference::split_half_ceiling(&m, &subjects, &spec, &mut || Ok(()))
                .unwrap();
        let (lo, hi) = (e["lower"].as_f64().unwrap(), e["upper"].as_f64().unwrap());
        assert!(
            (c.lower.unwrap() - lo).abs() < TOLERANCE,
            "{}: lower {:?} vs {lo}",
            e["comparison"],
            c.lower
        );
        assert!(
            (c.ceiling - hi).abs() < TOLERANCE,
            "{}: upper {} vs {hi}",
            e["comparison"],
            c.ceiling
        );
    }
}

#[test]
fn weighted_bootstrap_equals_explicit_resampling() {
    use neuralign_core::catalog::RdmMethod;
    use neuralign_engine::{inference, rdm};
    // The weighted path against building each resampled RDM by hand with
    // NaN for a stimulus paired with its own copy.
    let doc = fixtures();
    let a = tensor(&doc["inference"]["a"]).to_device(device());
    let b = tensor(&doc["inference"]["b_reps"])
        .to_device(device())
        .mean_dim(0, false, Kind::Double);
    let n = a.size()[0];
    let (ra, rb) = (
        rdm::rdm(&a, RdmMethod::Correlation).unwrap(),
        rdm::rdm(&b, RdmMethod::Correlation).unwrap(),
    );
    let draws_flat = neuralign_engine::splits::bootstrap_indices(n as usize, 20, 77);
    let draws = Tensor::from_slice(&draws_flat)
        .reshape([20, n])
        .to_device(device());
    for how in [
        RdmComparison::Pearson,
        RdmComparison::Cosine,
        RdmComparison::Spearman,
        RdmComparison::RhoA,
        RdmComparison::TauB,
    ] {
        let fast = inference::rsa_bootstrap_values(&ra, &rb, n, how, &draws).unwrap();
        let tensor_path = inference::rsa_bootstrap_values_tensor(&ra, &rb, n, how, &draws).unwrap();
        for (f, t) in fast.iter().zip(&tensor_path) {
            assert!(
                (f - t).abs() < 1e-9,
                "{how:?}: CPU kernel {f} vs tensor path {t}"
            );
        }
        for (s, fast) in fast.iter().enumerate() {
            let d = &draws_flat[s * n as usize..(s + 1) * n as usize];
            let (mut xa, mut xb) = (Vec::new(), Vec::new());
            for i in 0..d.len() {
                for j in i + 1..d.len() {
                    let (u, v) = (d[i].min(d[j]), d[i].max(d[j]));
                    if u == v {
                        continue;
                    }
                    let k = u * n - u * (u + 1) / 2 + (v - u - 1);
                    xa.push(ra.double_value(&[k]));
                    xb.push(rb.double_value(&[k]));
                }
            }
            let slow =
                compare_rdms(&Tensor::from_slice(&xa), &Tensor::from_slice(&xb), how).unwrap();
            assert!(
                (fast - slow).abs() < 1e-9,
                "{how:?} draw {s}: weighted {fast} vs explicit {slow}"
            );
        }
    }
}

#[test]
fn mahalanobis_and_crossnobis_rdms_match_rsatoolbox() {
    use neuralign_core::catalog::{NoiseModel, RdmMethod};
    let doc = fixtures();
    let case = &doc["rdm_reps"];
    let reps = tensor(case).to_device(device());
    for e in case["expected"].as_array().unwrap() {
        let method: RdmMethod = serde_json::from_value(e["method"].clone()).unwrap();
        let noise: NoiseModel = serde_json::from_value(e["noise"].clone()).unwrap();
        let got = Vec::<f64>::try_from(
            &neuralign_engine::rdm::rdm_with_reps(&reps, method, noise)
                .unwrap()
                .to_device(Device::Cpu),
        )
        .unwrap();
        let want: Vec<f64> = e["rdm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < TOLERANCE * w.abs().max(1.0),
                "{method:?}/{noise:?} entry {k}: {g} vs rsatoolbox {w}"
            );
        }
    }
    // Without repetitions the methods say what they need.
    let flat = reps.mean_dim(0, false, Kind::Double);
    let err = neuralign_engine::rdm::rdm_with_reps(
        &flat,
        RdmMethod::Crossnobis,
        NoiseModel::ShrinkageEye,
    )
    .unwrap_err();
    assert!(err.to_string().contains("repetitions"), "{err}");
}

#[test]
fn compare_pipeline_uses_repetitions_for_crossnobis() {
    use neuralign_core::catalog::{NoiseModel, RdmMethod};
    use neuralign_engine::pipeline::{run, ComparePlan};
    let doc = fixtures();
    let reps = tensor(&doc["rdm_reps"]).to_device(device());
    let model = reps.mean_dim(0, false, Kind::Double).narrow(1, 0, 6);
    let m = metric_of(
        &serde_json::json!({"id": "rsa", "options": {"rdm": "crossnobis", "rdm_a": "sq_euclidean", "comparison": "pearson"}}),
    );
    let plan = ComparePlan {
        metrics: std::slice::from_ref(&m),
        bootstrap: None,
        permutation: None,
        ceiling: None,
        reduce: None,
    };
    let got = run(&model, &reps, &plan, &mut |_, _| Ok(())).unwrap()[0].value;
    let ra = neuralign_engine::rdm::rdm(&model, RdmMethod::SqEuclidean).unwrap();
    let rb = neuralign_engine::rdm::rdm_with_reps(
        &reps,
        RdmMethod::Crossnobis,
        NoiseModel::ShrinkageEye,
    )
    .unwrap();
    assert!((got - compare_rdms(&ra, &rb, RdmComparison::Pearson).unwrap()).abs() < 1e-12);
}

#[test]
fn every_metric_runs_in_float32_close_to_float64() {
    // float32 inputs put the large products on the fast path; reductions
    // still accumulate in float64, so values stay within float32 rounding.
    let doc = fixtures();
    let mut worst: (f64, String) = (0.0, String::new());
    for case in doc["cases"].as_array().unwrap() {
        let (a, b) = (
            tensor(&case["a"]).to_device(device()),
            tensor(&case["b"]).to_device(device()),
        );
        let (a32, b32) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
        for m in case["metrics"].as_array().unwrap() {
            let metric = metric_of(m);
            let full = neuralign_engine::compute(&metric, &a, &b).unwrap();
            let single = neuralign_engine::compute(&metric, &a32, &b32)
                .unwrap_or_else(|e| panic!("{} {} in float32: {e}", case["name"], m["id"]));
            let diff = (full - single).abs();
            if diff > worst.0 {
                worst = (
                    diff,
                    format!("{} {} {}", case["name"], m["id"], m["options"]),
                );
            }
        }
    }
    assert!(
        worst.0 < 5e-3,
        "largest float32 deviation {} at {}",
        worst.0,
        worst.1
    );
}
