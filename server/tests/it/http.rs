//! The HTTP API: the compare path end to end with live events, auth and
//! lab isolation, bad input, and the discovery endpoints.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{self, npy, values, TestServer, ADMIN};
use crate::reference;

const N: usize = 25;

/// Uploads a 2-D float32 "layer" and a 3-D float64 "recording" over the
/// same stimuli; returns their ids and the reference values.
async fn upload_pair(s: &TestServer, key: &str) -> (String, String, f64, f64) {
    let va = values(N * 8, 1);
    let vb: Vec<f64> = values(3 * N * 12, 2);
    let ra = s.upload(key, "layer", npy("<f4", &[N, 8], &va)).await;
    assert_eq!(ra.status(), 201);
    let a: Value = ra.json().await.unwrap();
    assert_eq!(
        (a["dtype"].as_str(), a["shape"].clone()),
        (Some("float32"), json!([N, 8]))
    );
    let rb = s
        .upload(key, "recording", npy("<f8", &[3, N, 12], &vb))
        .await;
    assert_eq!(rb.status(), 201);
    let b: Value = rb.json().await.unwrap();
    let xa = reference::from_flat(
        &va.iter().map(|v| *v as f32 as f64).collect::<Vec<_>>(),
        N,
        8,
    );
    let xb = reference::average_reps(&vb, 3, N, 12);
    (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
        reference::linear_cka(&xa, &xb),
        reference::rsa_spearman(&xa, &xb),
    )
}

/// Reads server-sent events until the stream ends; returns their JSON data.
async fn read_sse(s: &TestServer, key: &str, job: &str) -> Vec<Value> {
    let r = s
        .client
        .get(s.url(&format!("/v1/jobs/{job}/events")))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("event stream ends after the final state");
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn compare_over_http_matches_the_float64_reference(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (_, key) = s.lab("lab-a").await;
    let (a, b, cka, rsa) = upload_pair(&s, &key).await;
    let r = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&json!({"spec": {"kind": "compare", "a": a, "b": b}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let events = read_sse(&s, &key, id).await;
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, vec!["queued", "running", "succeeded"]);
    assert!(
        events.iter().any(|e| e["kind"] == "progress"),
        "progress events stream live"
    );
    let result: Value = s
        .client
        .get(s.url(&format!("/v1/jobs/{id}/result")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = |m: &str| {
        result["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert!(
        (got("linear_cka") - cka).abs() < 1e-9,
        "cka {} vs reference {cka}",
        got("linear_cka")
    );
    assert!(
        (got("rsa") - rsa).abs() < 1e-9,
        "rsa {} vs reference {rsa}",
        got("rsa")
    );
    assert_eq!(result["shape_b"], json!([3, N, 12]));
    let job: Value = s
        .client
        .get(s.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (job["state"].as_str(), job["progress"].as_f64()),
        (Some("succeeded"), Some(1.0))
    );
    // float32 mode: the same numbers to single-precision rounding, and declared.
    let r = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&json!({"spec": {"kind": "compare", "a": a, "b": b, "precision": "float32"}}))
        .send()
        .await
        .unwrap();
    let id32 = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    read_sse(&s, &key, &id32).await;
    let r32: Value = s
        .client
        .get(s.url(&format!("/v1/jobs/{id32}/result")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r32["precision"], "float32");
    let v32 = r32["results"][0]["value"].as_f64().unwrap();
    assert!((v32 - cka).abs() < 1e-4, "float32 cka {v32} vs {cka}");
    // The stored array downloads byte for byte.
    let back = s
        .client
        .get(s.url(&format!("/v1/arrays/{b}/data")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        back.to_vec(),
        npy("<f8", &[3, N, 12], &values(3 * N * 12, 2))
    );
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn idempotency_key_header_returns_the_same_job(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (_, key) = s.lab("lab-a").await;
    let submit = || {
        s.client
            .post(s.url("/v1/jobs"))
            .bearer_auth(&key)
            .header("idempotency-key", "ci-run-42")
            .json(&json!({"spec": {"kind": "noop"}}))
            .send()
    };
    let first = submit().await.unwrap();
    assert_eq!(first.status(), 201);
    let second = submit().await.unwrap();
    assert_eq!(second.status(), 200);
    let (f, g): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(f["id"], g["id"]);
    assert_eq!(s.count("jobs").await, 1);
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn running_job_cancels_within_seconds(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (_, key) = s.lab("lab-a").await;
    let job: Value = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&json!({"spec": {"kind": "noop", "duration_ms": 600000}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let get = || async {
        let v: Value = s
            .client
            .get(s.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["state"].as_str().unwrap().to_string()
    };
    for _ in 0..200 {
        if get().await == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let r = s
        .client
        .post(s.url(&format!("/v1/jobs/{id}/cancel")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut state = String::new();
    for _ in 0..100 {
        state = get().await;
        if state == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "cancelled");
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn every_endpoint_needs_a_key_and_labs_are_isolated(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    let (lab_a, key_a) = s.lab("lab-a").await;
    let (_, key_b) = s.lab("lab-b").await;
    let (a, b, _, _) = upload_pair(&s, &key_a).await;
    let job: Value = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key_a)
        .json(&json!({"spec": {"kind": "compare", "a": a, "b": b}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = job["id"].as_str().unwrap().to_string();
    let endpoints: Vec<(&str, String)> = vec![
        ("POST", "/v1/labs".into()),
        ("GET", "/v1/labs".into()),
        ("POST", format!("/v1/labs/{lab_a}/keys")),
        ("POST", "/v1/arrays".into()),
        ("GET", "/v1/arrays".into()),
        ("GET", format!("/v1/arrays/{a}")),
        ("GET", format!("/v1/arrays/{a}/data")),
        ("POST", "/v1/jobs".into()),
        ("GET", "/v1/jobs".into()),
        ("GET", format!("/v1/jobs/{job}")),
        ("POST", format!("/v1/jobs/{job}/cancel")),
        ("GET", format!("/v1/jobs/{job}/events")),
        ("GET", format!("/v1/jobs/{job}/result")),
        ("GET", "/v1/metrics".into()),
    ];
    for (method, path) in &endpoints {
        for auth in [None, Some("Bearer nl_wrong"), Some("Basic abc")] {
            let mut req = s.client.request(method.parse().unwrap(), s.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "unauthenticated");
        }
    }
    // Lab B sees none of lab A's resources, and cannot tell they exist.
    for path in [
        format!("/v1/arrays/{a}"),
        format!("/v1/arrays/{a}/data"),
        format!("/v1/jobs/{job}"),
        format!("/v1/jobs/{job}/events"),
        format!("/v1/jobs/{job}/result"),
    ] {
        let r = s
            .client
            .get(s.url(&path))
            .bearer_auth(&key_b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = s
        .client
        .post(s.url(&format!("/v1/jobs/{job}/cancel")))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key_b)
        .json(&json!({"spec": {"kind": "compare", "a": a, "b": b}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "lab B cannot compute on lab A's arrays");
    let listed: Value = s
        .client
        .get(s.url("/v1/jobs"))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0);
    let listed: Value = s
        .client
        .get(s.url("/v1/arrays"))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["arrays"].as_array().unwrap().len(), 0);
    // Lab keys are not admin keys.
    let r = s
        .client
        .post(s.url("/v1/labs"))
        .bearer_auth(&key_a)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

async fn expect_error(r: reqwest::Response, status: u16, code: &str, needle: &str) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains(needle),
        "message {msg:?} should name {needle:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn bad_input_gets_a_clear_error_and_stores_nothing(pool: PgPool) {
    let s = common::start(&pool, |c| c.service.max_upload_bytes = 100_000).await;
    let (_, key) = s.lab("lab-a").await;
    let (a, b, _, _) = upload_pair(&s, &key).await;
    let (arrays, blobs, chunks) = (
        s.count("arrays").await,
        s.count("blobs").await,
        s.count("blob_chunks").await,
    );

    // Array uploads.
    let good = npy("<f8", &[4, 3], &values(12, 3));
    expect_error(
        s.upload(&key, "t", good[..good.len() - 4].to_vec()).await,
        400,
        "invalid_argument",
        "truncated",
    )
    .await;
    expect_error(
        s.upload(&key, "t", b"PK\x03\x04 a zip file".to_vec()).await,
        400,
        "invalid_argument",
        "magic",
    )
    .await;
    let mut nan = values(12, 3);
    nan[7] = f64::NAN;
    expect_error(
        s.upload(&key, "t", npy("<f8", &[4, 3], &nan)).await,
        400,
        "invalid_argument",
        "flat index 7",
    )
    .await;
    let mut inf = values(12, 3);
    inf[0] = f64::INFINITY;
    expect_error(
        s.upload(&key, "t", npy("<f4", &[4, 3], &inf)).await,
        400,
        "invalid_argument",
        "non-finite",
    )
    .await;
    expect_error(
        s.upload(&key, "t", npy("<f8", &[0, 3], &[])).await,
        400,
        "invalid_argument",
        "empty",
    )
    .await;
    let mut ints = good.clone();
    let p = ints.windows(3).position(|w| w == b"<f8").unwrap();
    ints[p + 1] = b'i';
    expect_error(
        s.upload(&key, "t", ints).await,
        400,
        "invalid_argument",
        "dtype",
    )
    .await;
    expect_error(
        s.upload(&key, "t", npy("<f8", &[20_000], &values(20_000, 1)))
            .await,
        413,
        "payload_too_large",
        "limit",
    )
    .await;

    // Job submissions.
    let submit = |body: String| {
        s.client
            .post(s.url("/v1/jobs"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(
        submit("{not json".into()).await.unwrap(),
        400,
        "invalid_argument",
        "body",
    )
    .await;
    expect_error(
        submit(json!({"spec": {"kind": "noop"}, "colour": 1}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "colour",
    )
    .await;
    expect_error(
        submit(json!({"spec": {"kind": "noop"}, "priority": "high"}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "priority",
    )
    .await;
    expect_error(
        submit(json!({"spec": {"kind": "train"}}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "spec.kind: unknown job kind \"train\"",
    )
    .await;
    expect_error(
        submit(json!({"spec": {"kind": "noop", "duration_ms": "x"}}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "spec.duration_ms",
    )
    .await;
    expect_error(
        submit(json!({"spec": {"kind": "compare", "a": a, "b": "nope"}}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "spec.b: UUID",
    )
    .await;
    expect_error(
        submit(
            json!({"spec": {"kind": "compare", "a": a, "b": b, "metrics": ["cka_magic"]}})
                .to_string(),
        )
        .await
        .unwrap(),
        400,
        "invalid_argument",
        "cka_magic",
    )
    .await;
    let other: Value = s
        .upload(&key, "short", npy("<f8", &[7, 3], &values(21, 9)))
        .await
        .json()
        .await
        .unwrap();
    expect_error(
        submit(json!({"spec": {"kind": "compare", "a": a, "b": other["id"]}}).to_string())
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "stimulus counts differ",
    )
    .await;
    let missing = uuid::Uuid::new_v4();
    expect_error(
        submit(json!({"spec": {"kind": "compare", "a": a, "b": missing}}).to_string())
            .await
            .unwrap(),
        404,
        "not_found",
        "b: array",
    )
    .await;
    expect_error(
        submit("x".repeat(70_000)).await.unwrap(),
        413,
        "payload_too_large",
        "size limit",
    )
    .await;
    let r = s
        .client
        .post(s.url("/v1/jobs"))
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_argument", "content-type").await;

    // Metric options checked against the data at submit.
    let metric_error = |metrics: Value| {
        submit(json!({"spec": {"kind": "compare", "a": a, "b": b, "metrics": metrics}}).to_string())
    };
    expect_error(
        metric_error(json!([{"id": "rsa", "options": {"rdm": "banana"}}]))
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "metrics[0].options.rdm",
    )
    .await;
    expect_error(
        metric_error(json!([{"id": "ridge", "options": {"inner": "gcv"}}]))
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "metrics[0].options.inner",
    )
    .await;
    expect_error(
        metric_error(json!([{"id": "rsa", "options": {"colour": 1}}]))
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "colour",
    )
    .await;
    expect_error(
        metric_error(json!(["linear_cka", {"id": "ridge", "options": {"splits": [{"train": [0, 1, 2], "test": []}]}}])).await.unwrap(),
        400, "invalid_argument", "metrics[1].options.splits[0]: train and test must both be non-empty",
    )
    .await;
    expect_error(
        metric_error(
            json!([{"id": "ridge", "options": {"splits": [{"train": [0, 1], "test": [99]}]}}]),
        )
        .await
        .unwrap(),
        400,
        "invalid_argument",
        "index 99 is out of range",
    )
    .await;
    expect_error(
        metric_error(json!([{"id": "pls", "options": {"folds": 40}}]))
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "folds",
    )
    .await;
    expect_error(
        metric_error(json!([{"id": "rsa", "options": {"rdm": "crossnobis"}}]))
            .await
            .unwrap(),
        400,
        "invalid_argument",
        "rdm_a",
    )
    .await;
    let three: Value = s
        .upload(&key, "three", npy("<f8", &[3, 4], &values(12, 8)))
        .await
        .json()
        .await
        .unwrap();
    let three_b: Value = s
        .upload(&key, "three_b", npy("<f8", &[3, 5], &values(15, 9)))
        .await
        .json()
        .await
        .unwrap();
    expect_error(
        submit(json!({"spec": {"kind": "compare", "a": three["id"], "b": three_b["id"], "metrics": [{"id": "linear_cka", "options": {"debiased": true}}]}}).to_string()).await.unwrap(),
        400, "invalid_argument", "needs at least 4 stimuli",
    )
    .await;

    // Reads.
    let r = s
        .client
        .get(s.url(&format!("/v1/jobs/{missing}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found", &missing.to_string()).await;
    let r = s
        .client
        .get(s.url("/v1/jobs/not-a-uuid"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_argument", "not-a-uuid").await;
    let r = s
        .client
        .get(s.url("/v1/jobs?state=sleeping"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_argument", "sleeping").await;

    // A constant stimulus pattern fails the job with a clear error, not the server.
    let mut flat = values(N * 8, 5);
    for v in &mut flat[8..16] {
        *v = 1.0;
    }
    let c: Value = s
        .upload(&key, "flat", npy("<f8", &[N, 8], &flat))
        .await
        .json()
        .await
        .unwrap();
    let job: Value = submit(json!({"spec": {"kind": "compare", "a": c["id"], "b": b}}).to_string())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let mut state = Value::Null;
    for _ in 0..400 {
        state = s
            .client
            .get(s.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state["state"], "failed");
    assert_eq!(state["attempt"], 1, "bad input is not retried");
    assert!(
        state["error"]
            .as_str()
            .unwrap()
            .contains("a: stimulus 1 has a constant response pattern"),
        "{state}"
    );
    let r = s
        .client
        .get(s.url(&format!("/v1/jobs/{id}/result")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "failed_precondition", "constant").await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.count("arrays").await,
        arrays + 4,
        "only the four valid arrays were added"
    );
    assert_eq!(s.count("blobs").await, blobs + 4);
    assert_eq!(s.count("blob_chunks").await, chunks + 4);
    assert_eq!(s.count("blobs WHERE state = 'writing'").await, 0);
    assert_eq!(
        s.count("jobs").await,
        1,
        "no job row for any rejected submission"
    );
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn comparisons_too_big_for_the_budget_are_refused_until_reduced(pool: PgPool) {
    let s = common::start(&pool, |c| c.service.max_compute_bytes = 2 << 20).await;
    let (_, key) = s.lab("lab-a").await;
    let wide: Value = s
        .upload(
            &key,
            "wide",
            npy("<f8", &[40, 3000], &values(40 * 3000, 21)),
        )
        .await
        .json()
        .await
        .unwrap();
    let narrow: Value = s
        .upload(&key, "narrow", npy("<f8", &[40, 6], &values(40 * 6, 22)))
        .await
        .json()
        .await
        .unwrap();
    let submit = |extra: Value| {
        let mut spec = json!({"kind": "compare", "a": wide["id"], "b": narrow["id"], "metrics": ["linear_cka"]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.client
            .post(s.url("/v1/jobs"))
            .bearer_auth(&key)
            .json(&json!({"spec": spec}))
            .send()
    };
    let r = submit(json!({})).await.unwrap();
    expect_error(r, 429, "resource_exhausted", "reduce").await;
    assert_eq!(s.count("jobs").await, 0);
    let r = submit(json!({"reduce": {"method": "pca", "k": 16}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut job = Value::Null;
    for _ in 0..400 {
        job = s
            .client
            .get(s.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["state"] == "succeeded" || job["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["reduction"]["k"], 16);
    assert_eq!(job["result"]["reduction"]["features_before"], 3000);
    s.stop().await;
}

#[sqlx::test(migrations = false)]
async fn discovery_endpoints(pool: PgPool) {
    let s = common::start(&pool, |_| {}).await;
    assert_eq!(
        s.client
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.client
            .get(s.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let spec: Value = s
        .client
        .get(s.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/arrays",
        "/v1/labs",
        "/v1/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lists {path}");
    }
    assert!(spec["components"]["schemas"]["Job"].is_object());
    let metrics: Value = s
        .client
        .get(s.url("/v1/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"linear_cka") && ids.contains(&"rsa"));
    s.stop().await;
}
