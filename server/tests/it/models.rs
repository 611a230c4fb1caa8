//! Models and scores end to end: TorchScript exported by PyTorch and
//! built-in specs registered (probed on a worker, bad ones refused with
//! nothing left behind), score jobs that recover the layer a recording was
//! generated from, the activation cache, score cards and leaderboards.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{self, TestServer};

pub fn file(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../target/fixtures/models/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!("cannot read {p} ({e}); run scripts/fixtures.sh (scripts/test.sh does)")
    })
}

async fn send(_srv: &TestServer, key: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.bearer_auth(key).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Registers the fixture CNN (`name=cnn`, 16×16 RGB images).
async fn dict_cnn(srv: &TestServer, key: &str) -> (u16, Value) {
    let query = format!(
        "name=cnn&{}",
        input(json!({"kind": "images", "size": [16, 16], "channels": 3}))
    );
    torchscript(srv, key, &query, file("dict_cnn.pt")).await
}

async fn torchscript(srv: &TestServer, key: &str, query: &str, body: Vec<u8>) -> (u16, Value) {
    let req = srv
        .client
        .post(srv.url(&format!("/v1/models/torchscript?{query}")))
        .body(body);
    send(srv, key, req).await
}

fn input(v: Value) -> String {
    format!("input={}", urlencode(&v.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn wait_job(srv: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let (_, j) = send(srv, key, srv.client.get(srv.url(&format!("/v1/jobs/{id}")))).await;
        if matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("job {id} did not finish");
}

async fn stored(srv: &TestServer) -> (i64, i64) {
    (srv.count("models").await, srv.count("blobs").await)
}

#[sqlx::test(migrations = "../migrations")]
async fn torchscript_registration_probes_layers_and_refuses_bad_models(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("modellab").await;
    let img = input(json!({"kind": "images", "size": [16, 16], "channels": 3}));
    let (s, m) = torchscript(&srv, &key, &format!("name=cnn&{img}"), file("dict_cnn.pt")).await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["state"], "ready");
    assert_eq!(m["version"], 1);
    assert_eq!(
        m["layers"],
        json!([{"name": "relu1", "shape": [8, 16, 16]}, {"name": "relu2", "shape": [16, 8, 8]},
               {"name": "relu3", "shape": [16, 4, 4]}, {"name": "fc", "shape": [10]}])
    );
    // Content-addressed: the same file and input is the same version.
    let (s, again) = torchscript(&srv, &key, &format!("name=cnn&{img}"), file("dict_cnn.pt")).await;
    assert_eq!(s, 201);
    assert_eq!(again["id"], m["id"]);
    let (_, v2) = torchscript(
        &srv,
        &key,
        &format!(
            "name=cnn&{}",
            input(json!({"kind": "images", "size": [20, 20], "channels": 3}))
        ),
        file("dict_cnn.pt"),
    )
    .await;
    assert_eq!(v2["version"], 2);
    let (s, t) = torchscript(
        &srv,
        &key,
        &format!(
            "name=mlp&layer_names=hidden,out&{}",
            input(json!({"kind": "features", "features": 6}))
        ),
        file("tuple_mlp.pt"),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(
        t["layers"],
        json!([{"name": "hidden", "shape": [5]}, {"name": "out", "shape": [4]}])
    );

    let before = stored(&srv).await;
    let features4 = input(json!({"kind": "features", "features": 4}));
    for (query, body, fragment) in [
        (
            img.clone(),
            file("state_dict_not_torchscript.pt"),
            "file: not a loadable TorchScript module",
        ),
        (features4.clone(), file("empty_dict.pt"), "no named layers"),
        (
            features4.clone(),
            file("needs_5_features.pt"),
            "input: the model rejected a batch of shape [2, 4]",
        ),
        (
            input(json!({"kind": "features", "features": 6})),
            file("tuple_mlp.pt"),
            "layer_names: the model returns 2 unnamed tensors",
        ),
        (
            input(json!({"kind": "images", "channels": 3})),
            file("dict_cnn.pt"),
            "input.size: required",
        ),
        ("name=x".to_string(), file("dict_cnn.pt"), "input: required"),
        (
            input(json!({"kind": "images", "size": [16, 16], "channels": 2})),
            file("dict_cnn.pt"),
            "input.channels: must be 1 or 3",
        ),
    ] {
        let (s, v) = torchscript(&srv, &key, &query, body).await;
        assert_eq!(s, 400, "{query}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(fragment),
            "{query}: {v}"
        );
        assert_eq!(stored(&srv).await, before, "{query}: nothing stored");
    }
    srv.stop().await;
}

fn cnn_spec() -> Value {
    json!({"architecture": {"type": "cnn", "channels": 1, "height": 24, "width": 24,
        "blocks": [{"channels": 8, "pool": {"kind": "max"}}, {"channels": 16, "pool": {"kind": "max"}}, {"channels": 16}],
        "unit": {"activation": "relu"}}, "seed": 4})
}

#[sqlx::test(migrations = "../migrations")]
async fn builtin_models_register_from_specs(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("builtinlab").await;
    let post = |body: Value| srv.client.post(srv.url("/v1/models/builtin")).json(&body);
    let (s, m) = send(&srv, &key, post(json!({"name": "cnn", "spec": cnn_spec()}))).await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["kind"], "builtin");
    assert_eq!(
        m["layers"][0],
        json!({"name": "conv1", "shape": [8, 24, 24]})
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 8);
    assert!(m["weights_sha256"].as_str().unwrap().len() == 64);
    let (_, again) = send(&srv, &key, post(json!({"name": "cnn", "spec": cnn_spec()}))).await;
    assert_eq!(again["id"], m["id"]);
    let (s, v) = send(&srv, &key, post(json!({"name": "bad", "spec": {"architecture": {"type": "mlp", "input": 3, "hidden": []}}}))).await;
    assert_eq!(s, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.architecture.hidden"),
        "{v}"
    );
    let (s, v) = send(
        &srv,
        &key,
        post(json!({"name": "bad", "spec": cnn_spec(), "input": {"kind": "features"}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["message"].as_str().unwrap().starts_with("input.kind"),
        "{v}"
    );
    srv.stop().await;
}

/// Uploads the recovery stimuli and a recording; returns the benchmark reference.
pub async fn recovery_benchmark(
    srv: &TestServer,
    key: &str,
    lab: &str,
    recording: Vec<u8>,
) -> String {
    let metric = json!({"id": "ridge", "options": {"folds": 4}});
    recovery_benchmark_with(srv, key, lab, recording, metric).await
}

/// `recovery_benchmark` with another metric.
async fn recovery_benchmark_with(
    srv: &TestServer,
    key: &str,
    lab: &str,
    recording: Vec<u8>,
    metric: Value,
) -> String {
    let (s, set) = send(
        srv,
        key,
        srv.client
            .post(srv.url("/v1/stimulus-sets?name=noise"))
            .body(file("recovery_stimuli.npy")),
    )
    .await;
    assert_eq!(s, 201, "{set}");
    let url = format!(
        "/v1/recordings?name=sim&region=V4&stimulus_set={}",
        set["id"].as_str().unwrap()
    );
    let (s, rec) = send(srv, key, srv.client.post(srv.url(&url)).body(recording)).await;
    assert_eq!(s, 201, "{rec}");
    let body = json!({"name": "recovery", "recording": rec["id"], "metric": metric,
        "ceiling": {"splits": 10, "seed": 1}, "splits": {"seed": 3}});
    let (s, b) = send(
        srv,
        key,
        srv.client.post(srv.url("/v1/benchmarks")).json(&body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["reference"], format!("{lab}/recovery@1"));
    b["reference"].as_str().unwrap().to_string()
}

async fn score(srv: &TestServer, key: &str, spec: Value) -> Value {
    let (s, j) = send(
        srv,
        key,
        srv.client
            .post(srv.url("/v1/jobs"))
            .json(&json!({"spec": spec})),
    )
    .await;
    assert_eq!(s, 201, "{j}");
    let done = wait_job(srv, key, j["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done["result"].clone()
}

/// Ridge's decompositions of a layer's training sets, kept by the worker
/// between jobs, change no number: a LOO-ridge benchmark scored on a
/// server that keeps none, then twice on one that does (the second score
/// from kept decompositions, the selected layer's bootstrap too), gives the
/// same curve and interval.
#[sqlx::test(migrations = "../migrations")]
async fn kept_ridge_decompositions_change_no_number(pool: PgPool) {
    let loo = json!({"id": "ridge", "options": {"folds": 4, "inner": "loo"}});
    let srv = common::start(&pool, |c| c.worker.decomposition_cache_mib = 0).await;
    let (_, key) = srv.lab("kept").await;
    let bench =
        recovery_benchmark_with(&srv, &key, "kept", file("recovery_recording.npy"), loo).await;
    let (s, m) = dict_cnn(&srv, &key).await;
    assert_eq!(s, 201, "{m}");
    let spec = json!({"kind": "score", "model": m["id"], "benchmarks": [bench],
        "bootstrap": {"samples": 50, "seed": 2}});
    let fresh = score(&srv, &key, spec.clone()).await;
    srv.stop().await;
    let srv = common::start(&pool, |_| {}).await;
    let made = score(&srv, &key, spec.clone()).await;
    let kept = score(&srv, &key, spec).await;
    let fresh = &fresh["benchmarks"][0];
    assert_eq!(fresh["layer"], "relu2", "{fresh}");
    assert!(fresh["ci"].is_array(), "{fresh}");
    for other in [&made["benchmarks"][0], &kept["benchmarks"][0]] {
        for field in ["curve", "raw", "ci", "layer"] {
            assert_eq!(other[field], fresh[field], "{field}");
        }
    }
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn scoring_a_torchscript_model_recovers_the_generating_layer_and_caches(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("recover").await;
    let bench = recovery_benchmark(&srv, &key, "recover", file("recovery_recording.npy")).await;
    let (s, m) = dict_cnn(&srv, &key).await;
    assert_eq!(s, 201, "{m}");
    let model = m["id"].as_str().unwrap();
    let r = score(
        &srv,
        &key,
        json!({"kind": "score", "model": model, "benchmarks": [bench]}),
    )
    .await;
    let b = &r["benchmarks"][0];
    assert_eq!(b["state"], "succeeded", "{r}");
    assert_eq!(
        b["layer"], "relu2",
        "the generating layer ranks first: {}",
        b["curve"]
    );
    assert_eq!(b["cache"], json!({"hits": 0, "misses": 4}));
    let curve = b["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 4);
    let best = curve.iter().find(|l| l["selected"] == true).unwrap();
    assert!(
        best["normalized"].as_f64().unwrap() > 0.0 && best["ceiling"].as_f64().unwrap() > 0.5,
        "{best}"
    );
    // Same inputs: every layer from the cache, same numbers.
    let again = score(
        &srv,
        &key,
        json!({"kind": "score", "model": model, "benchmarks": [bench]}),
    )
    .await;
    assert_eq!(
        again["benchmarks"][0]["cache"],
        json!({"hits": 4, "misses": 0})
    );
    assert_eq!(again["benchmarks"][0]["raw"], b["raw"]);
    // The ceiling came from the benchmark's stored one, unchanged.
    assert_eq!(again["benchmarks"][0]["ceiling"], b["ceiling"]);
    assert_eq!(again["benchmarks"][0]["normalized"], b["normalized"]);
    // Each curve row is that layer's score: scoring one layer alone (from
    // the cache, the same halves) gives its row's numbers. The rows are
    // computed as parallel pieces; this catches a piece landing on the
    // wrong layer.
    for row in curve {
        let name = row["layer"].as_str().unwrap();
        let alone = score(
            &srv,
            &key,
            json!({"kind": "score", "model": model, "benchmarks": [bench], "layers": [name]}),
        )
        .await;
        let only = &alone["benchmarks"][0]["curve"][0];
        assert_eq!(only["layer"], name);
        assert_eq!(only["raw"], row["raw"], "{name}: {only} vs {row}");
        assert_eq!(only["selection_value"], row["selection_value"], "{name}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM benchmark_ceilings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "one ceiling per benchmark, computed once");
    // Changed preprocessing: a miss.
    let maxed = score(&srv, &key, json!({"kind": "score", "model": model, "benchmarks": [bench], "pooling": "max", "layers": ["relu2"]})).await;
    assert_eq!(
        maxed["benchmarks"][0]["cache"],
        json!({"hits": 0, "misses": 1})
    );
    // Score card, region map and leaderboard.
    let (_, card) = send(
        &srv,
        &key,
        srv.client
            .get(srv.url(&format!("/v1/models/{model}/scores"))),
    )
    .await;
    assert_eq!(card["benchmarks"][0]["benchmark"], bench);
    assert_eq!(card["benchmarks"][0]["layer"], "relu2");
    assert_eq!(card["benchmarks"][0]["libtorch_version"], "2.13.0");
    let (_, map) = send(
        &srv,
        &key,
        srv.client
            .get(srv.url(&format!("/v1/models/{model}/region-map"))),
    )
    .await;
    assert_eq!(map["regions"][0]["region"], "V4");
    let (_, board) = send(
        &srv,
        &key,
        srv.client.get(srv.url(&format!(
            "/v1/benchmarks/{}/leaderboard",
            bench.replace('/', "%2F")
        ))),
    )
    .await;
    assert_eq!(board["entries"][0]["model"], "cnn@1");
    assert_eq!(board["entries"][0]["rank"], 1);
    fans_out_over_benchmarks(&srv, &key, model, &bench).await;
    selects_layers_inside_explicit_splits(&srv, &key, model, &bench).await;
    srv.stop().await;
}

/// A benchmark with explicit splits: the layer is chosen inside each split
/// on its training stimuli; the selected row holds the nested estimate.
async fn selects_layers_inside_explicit_splits(
    srv: &TestServer,
    key: &str,
    model: &str,
    bench: &str,
) {
    let (_, b) = send(
        srv,
        key,
        srv.client
            .get(srv.url(&format!("/v1/benchmarks/{}", bench.replace('/', "%2F")))),
    )
    .await;
    // Four contiguous folds over the 240 stimuli.
    let splits: Vec<Value> = (0..4u64)
        .map(|f| {
            let test: Vec<u64> = (f * 60..(f + 1) * 60).collect();
            let train: Vec<u64> = (0..240).filter(|i| !test.contains(i)).collect();
            json!({"train": train, "test": test})
        })
        .collect();
    let body = json!({"name": "recovery-explicit", "recording": b["recording_id"],
        "metric": {"id": "ridge", "options": {"folds": 4}}, "ceiling": {"splits": 5, "seed": 1},
        "splits": {"explicit": splits}});
    let (s, eb) = send(
        srv,
        key,
        srv.client.post(srv.url("/v1/benchmarks")).json(&body),
    )
    .await;
    assert_eq!(s, 201, "{eb}");
    let reference = eb["reference"].as_str().unwrap();
    let (s, v) = send(srv, key, srv.client.post(srv.url("/v1/jobs")).json(&json!({"spec":
        {"kind": "score", "model": model, "benchmarks": [reference], "bootstrap": {"samples": 10, "seed": 1}}}))).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().starts_with("bootstrap:"),
        "{v}"
    );
    let r = score(
        srv,
        key,
        json!({"kind": "score", "model": model, "benchmarks": [reference]}),
    )
    .await;
    let o = &r["benchmarks"][0];
    assert_eq!(o["state"], "succeeded", "{r}");
    assert_eq!(o["layer"], "relu2", "{o}");
    let per_split = o["selection"]["per_split"].as_array().unwrap();
    assert_eq!(per_split.len(), 4);
    let curve = o["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 4);
    let selected = curve.iter().find(|l| l["selected"] == true).unwrap();
    assert_eq!(selected["raw"], o["raw"]);
    assert!(
        selected["raw"].as_f64().unwrap() > 0.3 && selected["ceiling"].as_f64().unwrap() > 0.5,
        "{selected}"
    );
    // A non-selected row scores its layer on every split: scoring that layer
    // alone (where every split must choose it) gives the same number.
    let relu1 = score(
        srv,
        key,
        json!({"kind": "score", "model": model, "benchmarks": [reference], "layers": ["relu1"]}),
    )
    .await;
    let row = curve.iter().find(|l| l["layer"] == "relu1").unwrap();
    assert_eq!(relu1["benchmarks"][0]["raw"], row["raw"]);
    // So does the nested estimate when every split chose the same layer.
    if per_split.iter().all(|p| p["layer"] == "relu2") {
        let relu2 = score(srv, key, json!({"kind": "score", "model": model, "benchmarks": [reference], "layers": ["relu2"]})).await;
        assert_eq!(relu2["benchmarks"][0]["raw"], selected["raw"]);
    }
}

/// Several benchmarks: one child job per benchmark, collected by the parent
/// in the order asked; the region→layer map is stored as the parent's artifact.
async fn fans_out_over_benchmarks(srv: &TestServer, key: &str, model: &str, bench: &str) {
    let (_, b) = send(
        srv,
        key,
        srv.client
            .get(srv.url(&format!("/v1/benchmarks/{}", bench.replace('/', "%2F")))),
    )
    .await;
    let body = json!({"name": "recovery-rsa", "recording": b["recording_id"], "metric": "rsa", "ceiling": {"splits": 5, "seed": 1}});
    let (s, rsa) = send(
        srv,
        key,
        srv.client.post(srv.url("/v1/benchmarks")).json(&body),
    )
    .await;
    assert_eq!(s, 201, "{rsa}");
    let rsa = rsa["reference"].as_str().unwrap();
    let (s, j) = send(srv, key, srv.client.post(srv.url("/v1/jobs")).json(&json!({"spec":
        {"kind": "score", "model": model, "benchmarks": [rsa, bench], "layers": ["relu1", "relu2"], "pooling": "max"}}))).await;
    assert_eq!(s, 201, "{j}");
    let parent = j["id"].as_str().unwrap().to_string();
    let done = wait_job(srv, key, &parent).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let outcomes = done["result"]["benchmarks"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0]["benchmark"], rsa);
    assert_eq!(outcomes[1]["benchmark"], bench);
    // The parent extracted (max pooling of relu1 is new; relu2 was cached
    // by the max-pooled score above), so both children read the cache.
    for o in outcomes {
        assert_eq!(o["state"], "succeeded", "{o}");
        assert_eq!(o["cache"], json!({"hits": 2, "misses": 0}), "{o}");
        assert!(
            o["estimated_memory_bytes"].as_u64().unwrap() > 240 * 3 * 16 * 16 * 4,
            "{o}"
        );
        let (_, child) = send(
            srv,
            key,
            srv.client
                .get(srv.url(&format!("/v1/jobs/{}", o["job"].as_str().unwrap()))),
        )
        .await;
        assert_eq!(child["parent_id"], parent.as_str());
        assert_eq!(child["spec"]["benchmarks"], json!([o["benchmark"]]));
        assert_eq!(child["state"], "succeeded");
    }
    let (_, events) = send(
        srv,
        key,
        srv.client
            .get(srv.url(&format!("/v1/jobs/{parent}/events"))),
    )
    .await;
    let messages: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for want in [
        "fanned out into 2 child jobs",
        "benchmarks done 2/2",
        "stimuli processed",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(want)),
            "{want}: {messages:?}"
        );
    }
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["state"] == "waiting"));
    // The map is the parent's artifact, fetchable by id, private to the lab.
    let (_, map) = send(
        srv,
        key,
        srv.client
            .get(srv.url(&format!("/v1/models/{model}/region-map"))),
    )
    .await;
    assert_eq!(map["job_id"], parent.as_str(), "{map}");
    assert_eq!(map["regions"][0]["region"], "V4");
    let (s, by_id) = send(
        srv,
        key,
        srv.client
            .get(srv.url(&format!("/v1/region-maps/{}", map["id"].as_str().unwrap()))),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(by_id, map);
    let (_, other) = srv.lab("otherlab").await;
    let (s, _) = send(
        srv,
        &other,
        srv.client
            .get(srv.url(&format!("/v1/region-maps/{}", map["id"].as_str().unwrap()))),
    )
    .await;
    assert_eq!(s, 404);
    // A benchmark that fails on the worker (a constant recording has no
    // correlation-distance RDM) is reported failed, with its child's error,
    // while the other succeeds.
    let flat = neuralign_core::npy::encode_f64(&[2, 240, 3], &vec![1.0; 2 * 240 * 3]);
    let (_, source) = send(
        srv,
        key,
        srv.client.get(srv.url(&format!(
            "/v1/recordings/{}",
            b["recording_id"].as_str().unwrap()
        ))),
    )
    .await;
    let url = format!(
        "/v1/recordings?name=flat&region=V4&stimulus_set={}",
        source["stimulus_set_id"].as_str().unwrap()
    );
    let (s, flat_rec) = send(srv, key, srv.client.post(srv.url(&url)).body(flat)).await;
    assert_eq!(s, 201, "{flat_rec}");
    let (s, flat_bench) = send(
        srv,
        key,
        srv.client
            .post(srv.url("/v1/benchmarks"))
            .json(&json!({"name": "flat", "recording": flat_rec["id"], "metric": "rsa"})),
    )
    .await;
    assert_eq!(s, 201, "{flat_bench}");
    let r = score(srv, key, json!({"kind": "score", "model": model, "benchmarks": [flat_bench["reference"], rsa], "layers": ["relu1", "relu2"], "pooling": "max"})).await;
    assert_eq!(r["failed"], 1, "{r}");
    let failed = &r["benchmarks"][0];
    assert_eq!(failed["state"], "failed");
    assert!(failed["job"].is_string());
    assert!(
        failed["error"].as_str().unwrap().starts_with(
            "layer relu1: metrics[0] (rsa): b: stimulus 0 has a constant response pattern"
        ),
        "{failed}"
    );
    assert_eq!(r["benchmarks"][1]["state"], "succeeded");
}

#[sqlx::test(migrations = "../migrations")]
async fn scoring_a_builtin_model_recovers_the_generating_layer(pool: PgPool) {
    use neuralign_core::architecture::ModelSpec;
    use neuralign_engine::models::builtin::BuiltinModel;
    use tch::{Device, Kind, Tensor};
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("builtinrec").await;
    // The recording: a random readout of act2 (spatially averaged) of the
    // very model registered below, plus Poisson noise.
    let recording = {
        let _g = tch::no_grad_guard();
        let m = BuiltinModel::new(&ModelSpec::parse(cnn_spec()).unwrap(), Device::Cpu).unwrap();
        let p = format!(
            "{}/../target/fixtures/models/recovery_stimuli.npy",
            env!("CARGO_MANIFEST_DIR")
        );
        let x = Tensor::read_npy(&p).unwrap();
        let act = m
            .forward_layers(&x)
            .unwrap()
            .into_iter()
            .find(|l| l.0 == "act2")
            .unwrap()
            .1;
        let f = act.mean_dim([2i64, 3].as_slice(), false, Kind::Double);
        let f = (&f - f.mean_dim(0, true, Kind::Double)) / (f.std_dim(0, true, true) + 1e-9);
        let w = Tensor::from_slice(&common::gaussian(16 * 30, 9)).view([16, 30]) / 4.0;
        let rates = (f.matmul(&w).exp() + 1.0).log() * 4.0;
        let means = Vec::<f64>::try_from(
            &rates
                .unsqueeze(0)
                .expand([4, -1, -1], false)
                .contiguous()
                .view(-1),
        )
        .unwrap();
        let counts = Tensor::from_slice(&common::poisson(&means, 10)).view([4, 240, 30]);
        let shape: Vec<u64> = counts.size().iter().map(|&d| d as u64).collect();
        neuralign_core::npy::encode_f64(
            &shape,
            &Vec::<f64>::try_from(&counts.reshape([-1])).unwrap(),
        )
    };
    let bench = recovery_benchmark(&srv, &key, "builtinrec", recording).await;
    let (s, m) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/models/builtin"))
            .json(&json!({"name": "cnn", "spec": cnn_spec()})),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    // The activation stages only: pooling stages copy their block's features.
    let r = score(&srv, &key, json!({"kind": "score", "model": m["id"], "benchmarks": [bench], "layers": ["act1", "act2", "act3"]})).await;
    assert_eq!(
        r["benchmarks"][0]["layer"], "act2",
        "{}",
        r["benchmarks"][0]["curve"]
    );
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn score_jobs_are_validated_at_submit(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("validlab").await;
    let bench = recovery_benchmark(&srv, &key, "validlab", file("recovery_recording.npy")).await;
    // Five stimuli: too few to hold out half for layer selection.
    let images: Vec<f64> = (0..5 * 3 * 16 * 16).map(|i| (i % 7) as f64 / 7.0).collect();
    let (s, set) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/stimulus-sets?name=five"))
            .body(neuralign_core::npy::encode_f64(&[5, 3, 16, 16], &images)),
    )
    .await;
    assert_eq!(s, 201, "{set}");
    let responses: Vec<f64> = (0..2 * 5 * 3).map(|i| ((i * 37) % 11) as f64).collect();
    let url = format!(
        "/v1/recordings?name=five&stimulus_set={}",
        set["id"].as_str().unwrap()
    );
    let (s, rec) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url(&url))
            .body(neuralign_core::npy::encode_f64(&[2, 5, 3], &responses)),
    )
    .await;
    assert_eq!(s, 201, "{rec}");
    let (s, b) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/benchmarks"))
            .json(&json!({"name": "five", "recording": rec["id"], "metric": "rsa"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let tiny = b["reference"].as_str().unwrap().to_string();
    let (_, mlp) = torchscript(
        &srv,
        &key,
        &format!(
            "name=mlp&layer_names=hidden,out&{}",
            input(json!({"kind": "features", "features": 6}))
        ),
        file("tuple_mlp.pt"),
    )
    .await;
    let (_, cnn) = dict_cnn(&srv, &key).await;
    for (spec, fragment) in [
        (
            json!({"kind": "score", "model": mlp["id"], "benchmarks": [bench]}),
            "shows images but model",
        ),
        (
            json!({"kind": "score", "model": cnn["id"], "benchmarks": ["validlab/nope"]}),
            "benchmarks[0]: no benchmark",
        ),
        (
            json!({"kind": "score", "model": cnn["id"], "benchmarks": [bench], "layers": ["relu9"]}),
            "has no layer \"relu9\"",
        ),
        (
            json!({"kind": "score", "model": "00000000-0000-0000-0000-000000000000", "benchmarks": [bench]}),
            "not a model of this lab",
        ),
        (
            json!({"kind": "score", "model": cnn["id"], "benchmarks": []}),
            "between 1 and 50",
        ),
        (
            json!({"kind": "probe_model", "model": cnn["id"]}),
            "started by model registration",
        ),
        (
            json!({"kind": "score", "model": cnn["id"], "benchmarks": [tiny]}),
            "has 5 stimuli; layer selection holds out half of them and needs at least 6",
        ),
    ] {
        let (s, v) = send(
            &srv,
            &key,
            srv.client
                .post(srv.url("/v1/jobs"))
                .json(&json!({"spec": spec})),
        )
        .await;
        assert_eq!(s, 400, "{spec}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(fragment),
            "{spec}: {v}"
        );
    }
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_recording_with_masked_trials_is_scored(pool: PgPool) {
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("masklab").await;
    // The recovery recording with its last repetition missing for 30 stimuli.
    let (shape, mut values) =
        neuralign_core::npy::decode_f64(&file("recovery_recording.npy")).unwrap();
    let (stimuli, neurons) = (shape[1] as usize, shape[2] as usize);
    for s in 0..30 {
        for n in 0..neurons {
            values[(3 * stimuli + s) * neurons + n] = f64::NAN;
        }
    }
    let recording = neuralign_core::npy::encode_f64(&shape, &values);
    let (s, set) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/stimulus-sets?name=noise"))
            .body(file("recovery_stimuli.npy")),
    )
    .await;
    assert_eq!(s, 201, "{set}");
    let url = format!(
        "/v1/recordings?name=masked&region=V4&nan_policy=mask&stimulus_set={}",
        set["id"].as_str().unwrap()
    );
    let (s, rec) = send(&srv, &key, srv.client.post(srv.url(&url)).body(recording)).await;
    assert_eq!(s, 201, "{rec}");
    let body = json!({"name": "masked", "recording": rec["id"], "metric": {"id": "ridge", "options": {"folds": 4}},
        "ceiling": {"splits": 10, "seed": 1}, "splits": {"seed": 3}});
    let (s, b) = send(
        &srv,
        &key,
        srv.client.post(srv.url("/v1/benchmarks")).json(&body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, m) = dict_cnn(&srv, &key).await;
    let r = score(
        &srv,
        &key,
        json!({"kind": "score", "model": m["id"], "benchmarks": [b["reference"]]}),
    )
    .await;
    let o = &r["benchmarks"][0];
    assert_eq!(o["state"], "succeeded", "{r}");
    assert_eq!(o["layer"], "relu2");
    assert!(
        o["raw"].as_f64().unwrap().is_finite() && o["ceiling"].as_f64().unwrap().is_finite(),
        "{o}"
    );
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_score_job_over_the_memory_limit_is_refused_at_submit(pool: PgPool) {
    // The 240 stimuli of 3×16×16 alone take 720 KiB as float32.
    let srv = common::start(&pool, |c| c.service.max_compute_bytes = 512 << 10).await;
    let (_, key) = srv.lab("memlab").await;
    let bench = recovery_benchmark(&srv, &key, "memlab", file("recovery_recording.npy")).await;
    let (_, cnn) = dict_cnn(&srv, &key).await;
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (s, v) = send(
        &srv,
        &key,
        srv.client.post(srv.url("/v1/jobs")).json(&json!({"spec":
        {"kind": "score", "model": cnn["id"], "benchmarks": [bench], "pooling": "flatten"}})),
    )
    .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["code"], "resource_exhausted");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with("benchmarks[0]: scoring")
            && msg.contains("needs an estimated")
            && msg.contains("\"reduce\""),
        "{msg}"
    );
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs_before, jobs_after, "nothing was queued");
    srv.stop().await;
}

type GrpcAuth =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

fn grpc_auth(key: &str) -> GrpcAuth {
    let k = key.to_string();
    Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert(
            "authorization",
            tonic::metadata::MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
        );
        Ok(req)
    })
}

#[sqlx::test(migrations = "../migrations")]
async fn models_and_scores_over_grpc(pool: PgPool) {
    use neuralign_proto::v1;
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("grpcmodels").await;
    let bench = recovery_benchmark(&srv, &key, "grpcmodels", file("recovery_recording.npy")).await;
    let channel = tonic::transport::Channel::from_shared(srv.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut models = v1::model_service_client::ModelServiceClient::with_interceptor(
        channel.clone(),
        grpc_auth(&key),
    );
    let mut jobs =
        v1::job_service_client::JobServiceClient::with_interceptor(channel, grpc_auth(&key));
    let bytes = file("dict_cnn.pt");
    let mut msgs: Vec<v1::RegisterTorchScriptRequest> = bytes
        .chunks(5000)
        .map(|c| v1::RegisterTorchScriptRequest {
            options: None,
            data: c.to_vec().into(),
        })
        .collect();
    msgs[0].options = Some(v1::TorchScriptOptions {
        name: "cnn".into(),
        input_json: r#"{"kind": "images", "size": [16, 16], "channels": 3}"#.into(),
        ..Default::default()
    });
    let m = models
        .register_torch_script(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.state, "ready");
    assert_eq!(m.layers.len(), 4);
    let e = models
        .register_builtin(v1::RegisterBuiltinRequest {
            name: "x".into(),
            spec_json: "{\"architecture\": 3}".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("spec.architecture"),
        "{}",
        e.message()
    );
    let job = jobs
        .submit_job(v1::SubmitJobRequest {
            spec: Some(v1::submit_job_request::Spec::Score(v1::ScoreSpec {
                model: m.id.clone(),
                benchmarks: vec![bench.clone()],
                layers: vec!["relu1".into(), "relu2".into()],
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let done = wait_job(&srv, &key, &job.id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let card = models
        .get_score_card(v1::GetByIdRequest { id: m.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(card.benchmarks.len(), 1);
    assert_eq!(card.benchmarks[0].layer, "relu2");
    assert_eq!(card.benchmarks[0].curve.len(), 2);
    let board = models
        .get_leaderboard(v1::LeaderboardRequest {
            benchmarks: vec![bench],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(board.entries[0].model, "cnn@1");
    let map = models
        .get_region_map(v1::GetByIdRequest { id: m.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(map.regions[0].layer, "relu2");
    // The score job stored it; the artifact reads back by its id.
    assert!(!map.id.is_empty() && !map.job_id.is_empty(), "{map:?}");
    let artifact = models
        .get_region_map_artifact(v1::GetByIdRequest { id: map.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(artifact, map);
    let missing = models
        .get_region_map_artifact(v1::GetByIdRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn sequence_models_are_scored_per_time_bin_and_new_weights_miss_the_cache(pool: PgPool) {
    use neuralign_core::architecture::ModelSpec;
    use neuralign_engine::models::builtin::BuiltinModel;
    use tch::{Device, Kind, Tensor};
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("seqlab").await;
    let spec = |seed: u64| json!({"architecture": {"type": "recurrent", "cell": "gru", "input": 5, "hidden": 8, "layers": 2}, "seed": seed});
    // 120 sequences of 4 steps; the recording is a readout of gru1 at every step (4 bins).
    let (stimuli, recording) = {
        let _g = tch::no_grad_guard();
        let u: Vec<f32> = common::values(120 * 4 * 5, 2)
            .iter()
            .map(|v| ((v + 1.0) / 2.0) as f32)
            .collect();
        let x = Tensor::from_slice(&u).view([120, 4, 5]);
        let m = BuiltinModel::new(&ModelSpec::parse(spec(1)).unwrap(), Device::Cpu).unwrap();
        let h = m
            .forward_layers(&x)
            .unwrap()
            .remove(0)
            .1
            .to_kind(Kind::Double); // 120 × 4 × 8
        let w = Tensor::from_slice(&common::gaussian(8 * 12, 3)).view([8, 12]);
        let rates = (h.matmul(&w).exp() + 1.0).log() * 3.0; // 120 × 4 × 12
        let means = rates
            .permute([0, 2, 1])
            .unsqueeze(0)
            .expand([4, -1, -1, -1], false)
            .contiguous(); // 4 × 120 × 12 × 4
        let counts = Tensor::from_slice(&common::poisson(
            &Vec::<f64>::try_from(&means.view(-1)).unwrap(),
            4,
        ))
        .view([4, 120, 12, 4]);
        let enc = |t: &Tensor| {
            let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
            neuralign_core::npy::encode_f64(
                &shape,
                &Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap(),
            )
        };
        (enc(&x), enc(&counts))
    };
    let (s, set) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/stimulus-sets?kind=sequences"))
            .body(stimuli),
    )
    .await;
    assert_eq!(s, 201, "{set}");
    let (s, rec) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url(&format!(
                "/v1/recordings?stimulus_set={}",
                set["id"].as_str().unwrap()
            )))
            .body(recording),
    )
    .await;
    assert_eq!(s, 201, "{rec}");
    assert_eq!(rec["time_bins"], 4);
    let (s, b) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/benchmarks"))
            .json(&json!({"name": "seq", "recording": rec["id"], "metric": "linear_cka"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, m) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/models/builtin"))
            .json(&json!({"name": "gru", "spec": spec(1)})),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let r = score(
        &srv,
        &key,
        json!({"kind": "score", "model": m["id"], "benchmarks": [b["reference"]]}),
    )
    .await;
    let out = &r["benchmarks"][0];
    assert_eq!(out["state"], "succeeded", "{r}");
    let curve = out["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 8, "2 layers × 4 time bins: {out}");
    let bins: Vec<i64> = curve
        .iter()
        .filter(|l| l["layer"] == "gru1")
        .map(|l| l["time_bin"].as_i64().unwrap())
        .collect();
    assert_eq!(bins, vec![0, 1, 2, 3]);
    assert_eq!(out["layer"], "gru1", "{out}");
    // The benchmark's score is the mean over bins of the selected layer.
    let sel: Vec<f64> = curve
        .iter()
        .filter(|l| l["selected"] == true)
        .map(|l| l["raw"].as_f64().unwrap())
        .collect();
    assert_eq!(sel.len(), 4);
    assert!((out["raw"].as_f64().unwrap() - sel.iter().sum::<f64>() / 4.0).abs() < 1e-12);
    let (_, board) = send(
        &srv,
        &key,
        srv.client.get(srv.url(&format!(
            "/v1/benchmarks/{}/leaderboard",
            b["reference"].as_str().unwrap().replace('/', "%2F")
        ))),
    )
    .await;
    assert!(
        (board["entries"][0]["score"].as_f64().unwrap() - out["raw"].as_f64().unwrap()).abs()
            < 1e-12,
        "{board}"
    );
    // Other weights (another seed) are another version: nothing from the cache.
    let (_, m2) = send(
        &srv,
        &key,
        srv.client
            .post(srv.url("/v1/models/builtin"))
            .json(&json!({"name": "gru", "spec": spec(2)})),
    )
    .await;
    assert_eq!(m2["version"], 2);
    let r2 = score(
        &srv,
        &key,
        json!({"kind": "score", "model": m2["id"], "benchmarks": [b["reference"]]}),
    )
    .await;
    assert_eq!(
        r2["benchmarks"][0]["cache"],
        json!({"hits": 0, "misses": 2})
    );
    srv.stop().await;
}
