//! The `neuralign` command line against a real server: `score --fail-under`
//! exits 0 above the threshold and 1 under it, 3 when the job cannot score,
//! 4 when the service refuses the request, 5 when it is unreachable.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sqlx::PgPool;

use crate::common;
use crate::models::{file, recovery_benchmark};

/// The CLI binary, built if this checkout has not built it yet.
fn cli() -> PathBuf {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let bin = root.join("target/debug/neuralign");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let ok = Command::new(cargo)
        .args(["build", "-q", "-p", "neuralign-cli"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(
        ok.success() && bin.exists(),
        "could not build the neuralign CLI"
    );
    bin
}

/// Runs the CLI against `url` with `key`, off the async runtime.
fn run_cli(
    bin: &Path,
    url: &str,
    key: &str,
    args: Vec<String>,
) -> impl std::future::Future<Output = std::process::Output> + 'static {
    let (bin, url, key) = (bin.to_path_buf(), url.to_string(), key.to_string());
    async move {
        tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .args(args)
                .env("NEURALIGN_URL", url)
                .env("NEURALIGN_API_KEY", key)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

fn models_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/fixtures/models"
    ))
}

#[sqlx::test(migrations = "../migrations")]
async fn score_fail_under_sets_the_exit_code(pool: PgPool) {
    let bin = cli();
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("cilab").await;
    let bench = recovery_benchmark(&srv, &key, "cilab", file("recovery_recording.npy")).await;
    let model = models_dir().join("dict_cnn.pt");
    let input = r#"{"kind": "images", "size": [16, 16], "channels": 3}"#;
    let run = |args: Vec<String>| run_cli(&bin, &srv.http, &key, args);
    let score = |threshold: &str| {
        vec![
            "score".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--input".into(),
            input.into(),
            "--benchmark".into(),
            bench.clone(),
            "--fail-under".into(),
            threshold.into(),
            "--json".into(),
        ]
    };
    let above = run(score("0.0")).await;
    assert_eq!(
        above.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&above.stderr)
    );
    let card: Value = serde_json::from_slice(&above.stdout).unwrap();
    let normalized = card["benchmarks"][0]["normalized"].as_f64().unwrap();
    assert!(normalized > 0.0 && normalized < 1.5, "{card}");
    assert_eq!(card["benchmarks"][0]["layer"], "relu2");
    // The model was registered once and reused.
    let under = run(score("1.5")).await;
    assert_eq!(
        under.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&under.stderr)
    );
    assert!(String::from_utf8_lossy(&under.stderr).contains("under --fail-under 1.5"));
    assert_eq!(srv.count("models").await, 1);
    // A table without --json, and a leaderboard.
    let table = run(vec!["leaderboard".into(), bench.clone()]).await;
    assert_eq!(table.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&table.stdout).contains("cnn@1"));
    // Refused (unknown benchmark): 4. Unreachable: 5. Bad usage: 2.
    let mut refused = score("0.0");
    refused[6] = "cilab/nope".into();
    assert_eq!(run(refused).await.status.code(), Some(4));
    let unreachable = run_cli(
        &bin,
        "http://127.0.0.1:9",
        "k",
        vec!["leaderboard".into(), "x/y".into()],
    )
    .await;
    assert_eq!(unreachable.status.code(), Some(5));
    assert_eq!(run(vec!["score".into()]).await.status.code(), Some(2));
    srv.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_cli_speaks_grpc_with_the_same_commands_and_exit_codes(pool: PgPool) {
    let bin = cli();
    let srv = common::start(&pool, |_| {}).await;
    let (_, key) = srv.lab("grpccli").await;
    let grpc_url = srv.grpc.replace("http://", "grpc://");
    let run = |args: Vec<String>, url: String| run_cli(&bin, &url, &key, args);
    let ok = |out: &std::process::Output| -> Value {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let path = |name: &str| models_dir().join(name).display().to_string();
    let set = ok(&run(
        vec![
            "upload-stimuli".into(),
            path("recovery_stimuli.npy"),
            "--name".into(),
            "noise".into(),
        ],
        grpc_url.clone(),
    )
    .await);
    assert_eq!(set["count"], 240, "{set}");
    let rec = ok(&run(
        vec![
            "upload-recording".into(),
            path("recovery_recording.npy"),
            "--stimulus-set".into(),
            set["id"].as_str().unwrap().into(),
            "--opt".into(),
            "region=V4".into(),
        ],
        grpc_url.clone(),
    )
    .await);
    assert_eq!(rec["region"], "V4");
    let spec = std::env::temp_dir().join(format!("bench-{}.json", rec["id"].as_str().unwrap()));
    std::fs::write(
        &spec,
        serde_json::json!({"name": "recovery", "recording": rec["id"],
            "metric": {"id": "ridge", "options": {"folds": 4}},
            "ceiling": {"splits": 10, "seed": 1}, "splits": {"seed": 3}})
        .to_string(),
    )
    .unwrap();
    let bench = ok(&run(
        vec!["create-benchmark".into(), spec.display().to_string()],
        grpc_url.clone(),
    )
    .await);
    let _ = std::fs::remove_file(&spec);
    let reference = bench["reference"].as_str().unwrap().to_string();
    assert_eq!(reference, "grpccli/recovery@1");
    let score = |model: String, threshold: &str| {
        vec![
            "score".to_string(),
            "--model".into(),
            model,
            "--input".into(),
            r#"{"kind": "images", "size": [16, 16], "channels": 3}"#.into(),
            "--benchmark".into(),
            reference.clone(),
            "--fail-under".into(),
            threshold.into(),
            "--json".into(),
        ]
    };
    let card = ok(&run(score(path("dict_cnn.pt"), "0.0"), grpc_url.clone()).await);
    assert_eq!(card["benchmarks"][0]["layer"], "relu2", "{card}");
    // The same numbers over HTTP, from the same model (reused, not re-registered).
    let over_http = ok(&run(score(path("dict_cnn.pt"), "0.0"), srv.http.clone()).await);
    assert_eq!(
        over_http["benchmarks"][0]["raw"],
        card["benchmarks"][0]["raw"]
    );
    assert_eq!(srv.count("models").await, 1);
    let under = run(score(path("dict_cnn.pt"), "1.5"), grpc_url.clone()).await;
    assert_eq!(
        under.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&under.stderr)
    );
    let table = run(
        vec!["leaderboard".into(), reference.clone()],
        grpc_url.clone(),
    )
    .await;
    assert_eq!(table.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&table.stdout).contains("cnn@1"));
    // Refused (unknown benchmark): 4; unreachable: 5; an option gRPC has no field for: 2.
    let mut refused = score(path("dict_cnn.pt"), "0.0");
    refused[6] = "grpccli/nope".into();
    let out = run(refused, grpc_url.clone()).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("gRPC InvalidArgument"));
    let out = run(
        vec!["leaderboard".into(), "x/y".into()],
        "grpc://127.0.0.1:9".into(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        vec![
            "upload-stimuli".into(),
            path("recovery_stimuli.npy"),
            "--opt".into(),
            "colour=red".into(),
        ],
        grpc_url.clone(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop().await;
}
