//! Real `neuralign-worker` processes against a real Postgres: a worker
//! killed with SIGKILL mid-job loses its lease and another completes the
//! job; SIGTERM drains and releases; cancelling a running job stops it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use neuralign_core::model::{JobSpec, JobState, NewJob, NoopSpec};
use neuralign_core::notify::Notifications;
use neuralign_core::{auth, Caller, Service, ServiceConfig};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn db_url(pool: &PgPool) -> String {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{db}")
}

async fn setup(pool: &PgPool, cfg: ServiceConfig) -> (Service, Caller) {
    let svc = Service::new(pool.clone(), cfg, Notifications::new());
    auth::ensure_admin_key(pool, Some("nl_admin"), 4)
        .await
        .unwrap();
    let admin = svc.authenticate(Some("nl_admin")).await.unwrap();
    let (_, key) = svc.create_lab(&admin, "lab", None).await.unwrap();
    let caller = svc.authenticate(Some(&key)).await.unwrap();
    (svc, caller)
}

fn spawn_worker(url: &str, id: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_neuralign-worker"))
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .args([
            "--worker-id",
            id,
            "--device",
            "cpu",
            "--worker-concurrency",
            "1",
        ])
        .args([
            "--lease-ms",
            "1500",
            "--heartbeat-ms",
            "300",
            "--poll-ms",
            "200",
            "--retry-base-ms",
            "100",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("worker binary starts")
}

async fn wait_for(
    pool: &PgPool,
    id: Uuid,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&str, Option<&str>) -> bool,
) {
    let start = Instant::now();
    loop {
        let (state, worker): (String, Option<String>) =
            sqlx::query_as("SELECT state, worker_id FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        if cond(&state, worker.as_deref()) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; job is {state} on {worker:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn noop(duration_ms: u64) -> NewJob {
    NewJob {
        spec: JobSpec::Noop(NoopSpec {
            duration_ms,
            fail_attempts: 0,
        }),
        priority: 0,
        max_attempts: Some(3),
        idempotency_key: None,
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn killed_worker_loses_the_lease_and_another_finishes(pool: PgPool) {
    let url = db_url(&pool).await;
    let cfg = ServiceConfig::default();
    let (svc, caller) = setup(&pool, cfg).await;
    let (job, _) = svc.submit_job(&caller, noop(2_000)).await.unwrap();
    let mut a = spawn_worker(&url, "A", &[]);
    wait_for(
        &pool,
        job.id,
        "worker A to run the job",
        Duration::from_secs(30),
        |s, w| s == "running" && w.is_some_and(|w| w.starts_with("A/")),
    )
    .await;
    a.kill().unwrap(); // SIGKILL: no clean-up, no release
    a.wait().unwrap();
    let mut b = spawn_worker(&url, "B", &[]);
    wait_for(
        &pool,
        job.id,
        "worker B to finish the job",
        Duration::from_secs(60),
        |s, _| s == "succeeded",
    )
    .await;
    b.kill().unwrap();
    b.wait().unwrap();
    let done = svc.get_job(&caller, job.id).await.unwrap();
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result.unwrap()["attempt"], 2);
    let events = svc.job_events(&caller, job.id, 0).await.unwrap();
    let messages: Vec<String> = events.iter().filter_map(|e| e.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("lease expired: worker A/0")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("claimed by B/0")),
        "{messages:?}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn sigterm_drains_then_releases_the_job(pool: PgPool) {
    let url = db_url(&pool).await;
    let (svc, caller) = setup(&pool, ServiceConfig::default()).await;
    let (job, _) = svc.submit_job(&caller, noop(60_000)).await.unwrap();
    let mut w = spawn_worker(&url, "T", &["--drain-ms", "300"]);
    wait_for(
        &pool,
        job.id,
        "the worker to run the job",
        Duration::from_secs(30),
        |s, _| s == "running",
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = w.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "worker exited with {exit:?}");
    let released = svc.get_job(&caller, job.id).await.unwrap();
    assert_eq!(
        released.state,
        JobState::Queued,
        "released for another worker"
    );
    assert_eq!(released.attempt, 0, "a released attempt does not count");
}

#[sqlx::test(migrations = "../migrations")]
async fn running_job_is_cancelled_cooperatively(pool: PgPool) {
    let cfg = ServiceConfig {
        poll_ms: 100,
        ..ServiceConfig::default()
    };
    let (svc, caller) = setup(&pool, cfg).await;
    let stop = CancellationToken::new();
    let listener = svc.notifications().spawn(pool.clone(), stop.clone());
    let wcfg = neuralign_worker::WorkerConfig {
        concurrency: 1,
        device: "cpu".into(),
        ..Default::default()
    };
    let slots = neuralign_worker::spawn_workers(svc.clone(), wcfg, tch::Device::Cpu, stop.clone());
    let (job, _) = svc.submit_job(&caller, noop(600_000)).await.unwrap();
    wait_for(
        &pool,
        job.id,
        "the job to run",
        Duration::from_secs(30),
        |s, _| s == "running",
    )
    .await;
    svc.cancel_job(&caller, job.id).await.unwrap();
    // Heartbeats are every 10 s here: only the notification can make it this fast.
    wait_for(
        &pool,
        job.id,
        "cancellation",
        Duration::from_secs(5),
        |s, _| s == "cancelled",
    )
    .await;
    stop.cancel();
    for s in slots {
        s.await.unwrap();
    }
    listener.await.unwrap();
}
