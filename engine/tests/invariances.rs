//! Properties every similarity must have, on random data: self-similarity
//! is 1, the value is symmetric where the metric is, and it does not change
//! under the transforms the catalogue lists (consistent stimulus
//! permutation, orthogonal transforms, isotropic scaling).

use neuralign_core::catalog::{Metric, MetricRequest};
use neuralign_engine::compute;
use tch::{Device, Kind, Tensor};

fn metric(id: &str, options: serde_json::Value) -> Metric {
    let options = options.as_object().unwrap().clone();
    Metric::parse(
        "m",
        &MetricRequest::WithOptions {
            id: id.into(),
            options,
        },
    )
    .unwrap()
}

fn all() -> Vec<Metric> {
    use serde_json::json;
    vec![
        metric("rsa", json!({})),
        metric("rsa", json!({"rdm": "euclidean", "comparison": "tau_a"})),
        metric("linear_cka", json!({})),
        metric("linear_cka", json!({"debiased": true})),
        metric("rbf_cka", json!({"median": "off_diagonal"})),
        metric("cca", json!({})),
        metric("svcca", json!({})),
        metric("mutual_knn", json!({"k": 5})),
    ]
}

fn random(n: i64, d: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([n, d], (Kind::Double, Device::Cpu))
}

fn orthogonal(d: i64, seed: i64) -> Tensor {
    let (q, _) = Tensor::linalg_qr(&random(d, d, seed), "reduced");
    q
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn self_similarity_is_one() {
    let x = random(30, 12, 1);
    for m in all() {
        let v = compute(&m, &x, &x).unwrap();
        assert!(
            close(v, 1.0),
            "{} {} self-similarity {v}",
            m.id(),
            m.options_json()
        );
    }
}

#[test]
fn invariant_to_permuting_stimuli_consistently() {
    let (x, y) = (
        random(30, 12, 2),
        random(30, 7, 3) + random(30, 12, 2).narrow(1, 0, 7),
    );
    let perm = Tensor::randperm(30, (Kind::Int64, Device::Cpu));
    for m in all() {
        let v = compute(&m, &x, &y).unwrap();
        let p = compute(&m, &x.index_select(0, &perm), &y.index_select(0, &perm)).unwrap();
        assert!(
            close(v, p),
            "{} {}: {v} vs permuted {p}",
            m.id(),
            m.options_json()
        );
    }
}

#[test]
fn invariant_to_rotation_and_scaling_where_listed() {
    let (x, y) = (
        random(30, 12, 4),
        random(30, 12, 4) * 0.7 + random(30, 12, 5),
    );
    let q = orthogonal(12, 6);
    let rotation_invariant = [
        metric("linear_cka", serde_json::json!({})),
        metric("linear_cka", serde_json::json!({"debiased": true})),
        metric("rbf_cka", serde_json::json!({})),
        metric("cca", serde_json::json!({})),
        metric("svcca", serde_json::json!({})),
        metric("rsa", serde_json::json!({"rdm": "euclidean"})),
    ];
    for m in rotation_invariant {
        let v = compute(&m, &x, &y).unwrap();
        let r = compute(&m, &(x.matmul(&q) * 3.5), &y).unwrap();
        assert!(
            close(v, r),
            "{} {}: {v} vs rotated and scaled {r}",
            m.id(),
            m.options_json()
        );
    }
}

#[test]
fn symmetric_metrics_are_symmetric_and_bounded() {
    let (x, y) = (random(25, 9, 7), random(25, 14, 8));
    for m in all() {
        let (v, w) = (compute(&m, &x, &y).unwrap(), compute(&m, &y, &x).unwrap());
        assert!(
            close(v, w),
            "{} {}: {v} vs swapped {w}",
            m.id(),
            m.options_json()
        );
        assert!(
            (-1.0 - 1e-12..=1.0 + 1e-12).contains(&v),
            "{} out of bounds: {v}",
            m.id()
        );
    }
}

#[test]
fn too_few_stimuli_is_a_clear_error() {
    let x = random(3, 5, 9);
    let err = compute(
        &metric("linear_cka", serde_json::json!({"debiased": true})),
        &x,
        &x,
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least 4 stimuli"), "{err}");
}

#[test]
fn shape_distance_is_zero_to_a_rotated_copy_and_symmetric() {
    use serde_json::json;
    let x = random(30, 8, 10);
    let q = orthogonal(8, 11);
    for alpha in [1.0, 0.3, 0.0] {
        let m = metric("procrustes", json!({"alpha": alpha}));
        let d = compute(&m, &x, &(x.matmul(&q) + 2.0)).unwrap();
        assert!(
            d.abs() < 1e-6,
            "alpha {alpha}: distance to a rotated, shifted copy {d}"
        );
        let y = random(30, 5, 12);
        let (dxy, dyx) = (compute(&m, &x, &y).unwrap(), compute(&m, &y, &x).unwrap());
        assert!(
            close(dxy, dyx) && dxy > 0.1 && dxy <= std::f64::consts::PI,
            "alpha {alpha}: {dxy} vs {dyx}"
        );
    }
}

#[test]
fn pca_reduction_to_the_data_rank_keeps_linear_cka_and_projection_is_reproducible() {
    use neuralign_core::inference::{ReduceMethod, ReduceSpec};
    use neuralign_engine::pipeline::reduce_model_side;
    let x = random(30, 50, 13);
    let y = random(30, 7, 14) + x.narrow(1, 0, 7);
    let m = metric("linear_cka", serde_json::json!({}));
    let spec = ReduceSpec {
        method: ReduceMethod::Pca,
        k: 29,
        seed: 0,
    };
    let (xr, info) = reduce_model_side(&x, Some(&spec)).unwrap();
    let info = info.unwrap();
    assert_eq!((xr.size(), info.features_before), (vec![30, 29], 50));
    assert!(
        (info.variance_kept.unwrap() - 1.0).abs() < 1e-9,
        "30 centered stimuli span 29 dimensions"
    );
    let (before, after) = (compute(&m, &x, &y).unwrap(), compute(&m, &xr, &y).unwrap());
    assert!(
        close(before, after),
        "PCA onto the full span changed CKA: {before} vs {after}"
    );
    // Random projections are a pure function of the seed.
    let rp = |seed| ReduceSpec {
        method: ReduceMethod::RandomProjection,
        k: 20,
        seed,
    };
    let (r1, _) = reduce_model_side(&x, Some(&rp(5))).unwrap();
    let (r2, _) = reduce_model_side(&x, Some(&rp(5))).unwrap();
    let (r3, _) = reduce_model_side(&x, Some(&rp(6))).unwrap();
    assert!(r1.equal(&r2) && !r1.equal(&r3));
    // Narrow inputs are left alone.
    let (same, none) = reduce_model_side(&y, Some(&spec)).unwrap();
    assert!(none.is_none() && same.equal(&y));
}

#[test]
fn missing_repetitions_are_left_out_of_the_trial_mean() {
    use neuralign_engine::pipeline::{run, ComparePlan};
    // Ragged: stimulus 4 lost its third repetition (NaN, as ingest stores it).
    let b = Tensor::randn([3, 20, 5], (Kind::Double, Device::Cpu));
    let ragged = b.copy();
    let _ = ragged.get(2).get(4).fill_(f64::NAN);
    let a = random(20, 7, 3);
    let metrics = [metric("linear_cka", serde_json::json!({}))];
    let plan = ComparePlan {
        metrics: &metrics,
        bootstrap: None,
        permutation: None,
        ceiling: None,
        reduce: None,
    };
    let got = run(&a, &ragged, &plan, &mut |_, _| Ok(())).unwrap()[0].value;
    let mean = b.mean_dim(0, false, Kind::Double);
    mean.get(4)
        .copy_(&b.narrow(0, 0, 2).mean_dim(0, false, Kind::Double).get(4));
    assert!(got.is_finite());
    assert!(close(got, compute(&metrics[0], &a, &mean).unwrap()));
}

#[test]
fn time_resolved_inputs_are_scored_bin_by_bin() {
    use neuralign_engine::pipeline::{run, ComparePlan};
    // reps × stimuli × features × bins for b; a static model.
    let b = Tensor::randn([3, 25, 6, 4], (Kind::Double, Device::Cpu));
    let a = random(25, 9, 15);
    let metrics = [
        metric("linear_cka", serde_json::json!({})),
        metric("rsa", serde_json::json!({})),
    ];
    let plan = ComparePlan {
        metrics: &metrics,
        bootstrap: None,
        permutation: None,
        ceiling: None,
        reduce: None,
    };
    let out = run(&a, &b, &plan, &mut |_, _| Ok(())).unwrap();
    assert_eq!(out.len(), 8, "2 metrics × 4 bins");
    for r in &out {
        let bin = r.time_bin.expect("time-resolved results name their bin");
        let y = b.select(3, bin).mean_dim(0, false, Kind::Double);
        let m = metrics.iter().find(|m| m.id() == r.metric).unwrap();
        assert!(
            close(r.value, compute(m, &a, &y).unwrap()),
            "{} bin {bin}",
            r.metric
        );
    }
}

#[test]
fn bootstrap_splits_keep_every_copy_of_a_stimulus_on_one_side() {
    use neuralign_engine::inference::grouped_splits;
    use neuralign_engine::splits::{bootstrap_indices, kfold, permutation};
    let n = 40;
    let original = kfold(&permutation(n, 3), 4);
    let draw = bootstrap_indices(n, 1, 9);
    let splits = grouped_splits(&original, &draw);
    assert!(!splits.is_empty());
    for s in &splits {
        let train: std::collections::HashSet<i64> =
            s.train.iter().map(|&r| draw[r as usize]).collect();
        let test: std::collections::HashSet<i64> =
            s.test.iter().map(|&r| draw[r as usize]).collect();
        assert!(
            train.is_disjoint(&test),
            "a stimulus on both sides of a split"
        );
        assert_eq!(s.train.len() + s.test.len(), n, "every drawn row is placed");
        // Copies are adjacent in the training order, so inner folds keep them together.
        let ids: Vec<i64> = s.train.iter().map(|&r| draw[r as usize]).collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]));
    }
}
