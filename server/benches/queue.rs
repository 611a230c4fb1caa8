//! Queue benchmark: no-op job throughput with 1, 2 and 4 worker slots, and
//! submit→start latency (p50/p99) on an idle fleet. Run through
//! `scripts/bench.sh`, which starts a private Postgres; prints Markdown rows
//! for BENCHMARKS.md. Timings come from one run on a shared machine: compare
//! rows with each other, not across machines.

use std::time::{Duration, Instant};

use neuralign_core::model::{JobSpec, NewJob, NoopSpec};
use neuralign_core::notify::Notifications;
use neuralign_core::{auth, db, Service, ServiceConfig};
use neuralign_worker::{spawn_workers, WorkerConfig};
use tokio_util::sync::CancellationToken;

fn noop() -> NewJob {
    NewJob {
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        max_attempts: None,
        idempotency_key: None,
    }
}

async fn count_done(svc: &Service) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
        .fetch_one(svc.pool())
        .await
        .unwrap()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")?;
    let jobs: i64 = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let pool = db::connect(&url, 24).await?;
    db::migrate(&pool).await?;
    sqlx::query("TRUNCATE jobs, job_events, api_keys, labs CASCADE")
        .execute(&pool)
        .await?;
    let cfg = ServiceConfig {
        poll_ms: 200,
        ..ServiceConfig::default()
    };
    let notes = Notifications::new();
    let stop_listen = CancellationToken::new();
    let listener = notes.spawn(pool.clone(), stop_listen.clone());
    let svc = Service::new(pool.clone(), cfg, notes);
    auth::ensure_admin_key(&pool, Some("nl_bench_admin"), 4).await?;
    let admin = svc.authenticate(Some("nl_bench_admin")).await?;
    let (_, key) = svc.create_lab(&admin, "bench", Some(10_000)).await?;
    let caller = svc.authenticate(Some(&key)).await?;

    println!("| workers | jobs | submit (jobs/s, 1 client) | run (jobs/s) |");
    println!("|---|---|---|---|");
    for workers in [1usize, 2, 4] {
        sqlx::query("TRUNCATE jobs, job_events")
            .execute(&pool)
            .await?;
        let t = Instant::now();
        for _ in 0..jobs {
            svc.submit_job(&caller, noop()).await?;
        }
        let submit_rate = jobs as f64 / t.elapsed().as_secs_f64();
        let stop = CancellationToken::new();
        let t = Instant::now();
        let wcfg = WorkerConfig {
            concurrency: workers,
            device: "cpu".into(),
            ..Default::default()
        };
        let slots = spawn_workers(svc.clone(), wcfg, tch::Device::Cpu, stop.clone());
        while count_done(&svc).await < jobs {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let run_rate = jobs as f64 / t.elapsed().as_secs_f64();
        stop.cancel();
        for s in slots {
            s.await?;
        }
        println!("| {workers} | {jobs} | {submit_rate:.0} | {run_rate:.0} |");
    }

    // Latency: an idle fleet of 2 slots, jobs submitted one at a time.
    sqlx::query("TRUNCATE jobs, job_events")
        .execute(&pool)
        .await?;
    let stop = CancellationToken::new();
    let wcfg = WorkerConfig {
        concurrency: 2,
        device: "cpu".into(),
        ..Default::default()
    };
    let slots = spawn_workers(svc.clone(), wcfg, tch::Device::Cpu, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = 500;
    for _ in 0..n {
        svc.submit_job(&caller, noop()).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while count_done(&svc).await < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    for s in slots {
        s.await?;
    }
    let mut lat: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM (started_at - created_at))::float8 * 1000 FROM jobs ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!();
    println!("submit→start latency over {n} jobs (2 idle slots, woken by NOTIFY): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", pct(0.5), pct(0.99), pct(1.0));
    stop_listen.cancel();
    listener.await?;
    Ok(())
}
