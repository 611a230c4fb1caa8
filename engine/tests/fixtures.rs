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
    let doc = fixtures();
    let cases = doc["ridge"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let (a, b) = (
            tensor(&case["a"]).to_device(device()),
            tensor(&case["b"]).to_device(device()),
        );
        let req = MetricRequest::WithOptions {
            id: "ridge".into(),
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
