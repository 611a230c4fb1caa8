//! The queue against a real Postgres (`#[sqlx::test]` gives each test its own
//! database): exclusive claims under concurrency, cancellation, retries to
//! failure, idempotency, fencing of a stale worker, the per-lab limit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuralign_core::model::{JobSpec, JobState, NewJob, NoopSpec};
use neuralign_core::notify::Notifications;
use neuralign_core::queue::{self, Outcome};
use neuralign_core::{auth, Caller, ErrorCode, Service, ServiceConfig};
use sqlx::PgPool;

fn cfg() -> ServiceConfig {
    ServiceConfig {
        retry_base_ms: 50,
        retry_max_ms: 200,
        lease_ms: 60_000,
        ..ServiceConfig::default()
    }
}

async fn setup(pool: &PgPool, labs: &[(&str, i32)]) -> (Service, Vec<Caller>) {
    let svc = Service::new(pool.clone(), cfg(), Notifications::new());
    auth::ensure_admin_key(pool, Some("nl_test_admin"), 4)
        .await
        .unwrap();
    let admin = svc.authenticate(Some("nl_test_admin")).await.unwrap();
    let mut callers = Vec::new();
    for (name, max) in labs {
        let (_, key) = svc.create_lab(&admin, name, Some(*max)).await.unwrap();
        callers.push(svc.authenticate(Some(&key)).await.unwrap());
    }
    (svc, callers)
}

fn noop(key: Option<&str>, max_attempts: Option<u32>) -> NewJob {
    NewJob {
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        max_attempts,
        idempotency_key: key.map(str::to_string),
    }
}

fn kinds() -> Vec<String> {
    vec!["noop".to_string()]
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_workers_run_each_job_once(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 1000)]).await;
    let jobs = 60;
    for _ in 0..jobs {
        svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    }
    let running: Arc<Mutex<HashSet<uuid::Uuid>>> = Default::default();
    let done: Arc<Mutex<Vec<uuid::Uuid>>> = Default::default();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (pool, running, done, cfg) = (pool.clone(), running.clone(), done.clone(), cfg());
        tasks.push(tokio::spawn(async move {
            let id = format!("w{w}");
            while let Some(job) = queue::claim(&pool, &id, &kinds(), Duration::from_secs(60))
                .await
                .unwrap()
            {
                assert!(
                    running.lock().unwrap().insert(job.lease.job_id),
                    "job claimed twice at once"
                );
                tokio::task::yield_now().await;
                running.lock().unwrap().remove(&job.lease.job_id);
                assert!(queue::finish(
                    &pool,
                    &job.lease,
                    Outcome::Succeeded(serde_json::json!({})),
                    &cfg
                )
                .await
                .unwrap());
                done.lock().unwrap().push(job.lease.job_id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), jobs);
    assert_eq!(
        done.iter().collect::<HashSet<_>>().len(),
        jobs,
        "a job ran twice"
    );
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND attempt = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(succeeded, jobs as i64);
}

#[sqlx::test(migrations = "../migrations")]
async fn queued_job_cancels_at_once(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4)]).await;
    let (job, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    let cancelled = svc.cancel_job(&callers[0], job.id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    // Cancelling again is harmless; a finished job cannot be cancelled.
    assert_eq!(
        svc.cancel_job(&callers[0], job.id).await.unwrap().state,
        JobState::Cancelled
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn running_job_gets_cancel_request_in_heartbeat(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4)]).await;
    let (job, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    let claimed = queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let after = svc.cancel_job(&callers[0], job.id).await.unwrap();
    assert_eq!(after.state, JobState::Running);
    assert!(after.cancel_requested);
    let hb = queue::heartbeat(&pool, &claimed.lease, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        hb,
        queue::Heartbeat::Held {
            cancel_requested: true
        }
    );
    assert!(
        queue::finish(&pool, &claimed.lease, Outcome::Cancelled, &cfg())
            .await
            .unwrap()
    );
    assert_eq!(
        svc.get_job(&callers[0], job.id).await.unwrap().state,
        JobState::Cancelled
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn retries_back_off_then_fail(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4)]).await;
    let (job, _) = svc
        .submit_job(&callers[0], noop(None, Some(2)))
        .await
        .unwrap();
    let c1 = queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    queue::finish(
        &pool,
        &c1.lease,
        Outcome::Retryable("boom 1".into()),
        &cfg(),
    )
    .await
    .unwrap();
    let j = svc.get_job(&callers[0], job.id).await.unwrap();
    assert_eq!(
        (j.state, j.error.as_deref()),
        (JobState::RetryWait, Some("boom 1"))
    );
    // Not claimable until the backoff (50 ms) has passed.
    assert!(queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(120)).await;
    let c2 = queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.lease.attempt, 2);
    queue::finish(
        &pool,
        &c2.lease,
        Outcome::Retryable("boom 2".into()),
        &cfg(),
    )
    .await
    .unwrap();
    let j = svc.get_job(&callers[0], job.id).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.error.as_deref(), Some("boom 2 (after 2 attempts)"));
    assert!(j.finished_at.is_some());
    let states: Vec<Option<JobState>> = svc
        .job_events(&callers[0], job.id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "state")
        .map(|e| e.state)
        .collect();
    use JobState::*;
    assert_eq!(
        states,
        vec![
            Some(Queued),
            Some(Running),
            Some(RetryWait),
            Some(Running),
            Some(Failed)
        ]
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn idempotency_key_returns_the_existing_job(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4), ("b", 4)]).await;
    let (first, created) = svc
        .submit_job(&callers[0], noop(Some("k1"), None))
        .await
        .unwrap();
    assert!(created);
    let (again, created) = svc
        .submit_job(&callers[0], noop(Some("k1"), None))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(first.id, again.id);
    // Another lab's key space is its own.
    let (other, created) = svc
        .submit_job(&callers[1], noop(Some("k1"), None))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(other.id, first.id);
    // The same key with a different spec is a conflict, not a silent reuse.
    let mut different = noop(Some("k1"), None);
    different.spec = JobSpec::Noop(NoopSpec {
        duration_ms: 5,
        fail_attempts: 0,
    });
    let err = svc.submit_job(&callers[0], different).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AlreadyExists);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn stale_worker_is_fenced_after_its_lease_expires(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4)]).await;
    let (job, _) = svc
        .submit_job(&callers[0], noop(None, Some(3)))
        .await
        .unwrap();
    let stale = queue::claim(&pool, "stale", &kinds(), Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(queue::reap_expired(&pool, &cfg()).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let fresh = queue::claim(&pool, "fresh", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.lease.attempt, 2);
    // The stale worker comes back: its heartbeat, progress and result are refused.
    assert_eq!(
        queue::heartbeat(&pool, &stale.lease, Duration::from_secs(60))
            .await
            .unwrap(),
        queue::Heartbeat::Lost
    );
    assert!(!queue::progress(&pool, &stale.lease, 0.5, None)
        .await
        .unwrap());
    assert!(!queue::finish(
        &pool,
        &stale.lease,
        Outcome::Succeeded(serde_json::json!({"by": "stale"})),
        &cfg()
    )
    .await
    .unwrap());
    assert!(queue::finish(
        &pool,
        &fresh.lease,
        Outcome::Succeeded(serde_json::json!({"by": "fresh"})),
        &cfg()
    )
    .await
    .unwrap());
    let j = svc.get_job(&callers[0], job.id).await.unwrap();
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(j.result, Some(serde_json::json!({"by": "fresh"})));
}

#[sqlx::test(migrations = "../migrations")]
async fn expired_lease_on_last_attempt_fails_the_job(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 4)]).await;
    let (job, _) = svc
        .submit_job(&callers[0], noop(None, Some(1)))
        .await
        .unwrap();
    queue::claim(&pool, "w", &kinds(), Duration::from_millis(10))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue::reap_expired(&pool, &cfg()).await.unwrap();
    let j = svc.get_job(&callers[0], job.id).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(j.error.unwrap().contains("lease expired"));
}

#[sqlx::test(migrations = "../migrations")]
async fn per_lab_limit_keeps_one_lab_from_starving_others(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("busy", 2), ("quiet", 2)]).await;
    for _ in 0..6 {
        svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    }
    let mut quiet = noop(None, None);
    quiet.priority = -5; // lower priority than every busy job
    svc.submit_job(&callers[1], quiet).await.unwrap();
    let mut claimed = Vec::new();
    while let Some(c) = queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
    {
        claimed.push(c);
    }
    let busy = claimed
        .iter()
        .filter(|c| c.lab_id == callers[0].lab_id())
        .count();
    let quiet = claimed
        .iter()
        .filter(|c| c.lab_id == callers[1].lab_id())
        .count();
    assert_eq!(
        (busy, quiet),
        (2, 1),
        "busy lab capped at 2 running, quiet lab still served"
    );
    // Finishing one busy job frees exactly one slot.
    queue::finish(
        &pool,
        &claimed[0].lease,
        Outcome::Succeeded(serde_json::json!({})),
        &cfg(),
    )
    .await
    .unwrap();
    let next = queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.lab_id, callers[0].lab_id());
    assert!(queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
}

#[sqlx::test(migrations = "../migrations")]
async fn priorities_order_claims(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 100)]).await;
    let mut ids = Vec::new();
    for p in [0, 10, 5] {
        let mut j = noop(None, None);
        j.priority = p;
        ids.push(svc.submit_job(&callers[0], j).await.unwrap().0.id);
    }
    let mut sequential = Vec::new();
    for _ in 0..3 {
        sequential.push(
            queue::claim(&pool, "w", &kinds(), Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap()
                .lease
                .job_id,
        );
    }
    assert_eq!(sequential, vec![ids[1], ids[2], ids[0]]);
}

#[sqlx::test(migrations = "../migrations")]
async fn list_paginates_and_filters(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 100), ("b", 100)]).await;
    for _ in 0..7 {
        svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    }
    svc.submit_job(&callers[1], noop(None, None)).await.unwrap();
    let mut seen = Vec::new();
    let mut filter = neuralign_core::model::JobFilter {
        limit: Some(3),
        ..Default::default()
    };
    loop {
        let page = svc.list_jobs(&callers[0], &filter).await.unwrap();
        seen.extend(page.items.iter().map(|j| j.id));
        match page.next_page_token {
            Some(t) => filter.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "all of lab a's jobs, none of lab b's");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
    filter = neuralign_core::model::JobFilter {
        state: Some(JobState::Succeeded),
        ..Default::default()
    };
    assert!(svc
        .list_jobs(&callers[0], &filter)
        .await
        .unwrap()
        .items
        .is_empty());
    let bad = neuralign_core::model::JobFilter {
        page_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        svc.list_jobs(&callers[0], &bad).await.unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
}

async fn claim_one(pool: &PgPool, worker: &str) -> queue::ClaimedJob {
    queue::claim(pool, worker, &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a claimable job")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_fanned_out_job_waits_without_a_slot_and_collects_when_children_are_final(pool: PgPool) {
    // A lab limit of 1: the waiting parent must not hold it, or its
    // children could never run.
    let (svc, callers) = setup(&pool, &[("a", 1)]).await;
    let (parent, _) = svc
        .submit_job(&callers[0], noop(None, Some(3)))
        .await
        .unwrap();
    let p = claim_one(&pool, "w1").await;
    let children = vec![JobSpec::Noop(NoopSpec::default()); 2];
    assert!(queue::finish(
        &pool,
        &p.lease,
        Outcome::Waiting {
            children,
            unit: "child jobs"
        },
        &cfg()
    )
    .await
    .unwrap());
    let waiting = svc.get_job(&callers[0], parent.id).await.unwrap();
    assert_eq!(waiting.state, JobState::Waiting);
    assert_eq!(waiting.attempt, 0, "a fan-out does not use up an attempt");
    let kids = svc.child_jobs(parent.id).await.unwrap();
    assert_eq!(kids.len(), 2);
    assert!(kids
        .iter()
        .all(|k| k.parent_id == Some(parent.id) && k.state == JobState::Queued));

    // Children run one at a time under the lab limit; the parent is not
    // claimable until both are final.
    let c1 = claim_one(&pool, "w1").await;
    assert_eq!(c1.parent_id, Some(parent.id));
    assert!(queue::claim(&pool, "w2", &kinds(), Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    queue::finish(
        &pool,
        &c1.lease,
        Outcome::Succeeded(serde_json::json!({"n": 1})),
        &cfg(),
    )
    .await
    .unwrap();
    let half = svc.get_job(&callers[0], parent.id).await.unwrap();
    assert_eq!(half.state, JobState::Waiting);
    assert_eq!(half.progress, 0.5);
    let c2 = claim_one(&pool, "w1").await;
    queue::finish(&pool, &c2.lease, Outcome::Fatal("bad".into()), &cfg())
        .await
        .unwrap();
    assert_eq!(
        svc.get_job(&callers[0], parent.id).await.unwrap().state,
        JobState::Queued
    );

    // The parent runs again (same attempt number) and collects.
    let again = claim_one(&pool, "w1").await;
    assert_eq!(again.lease.job_id, parent.id);
    assert_eq!(again.lease.attempt, 1);
    queue::finish(
        &pool,
        &again.lease,
        Outcome::Succeeded(serde_json::json!({})),
        &cfg(),
    )
    .await
    .unwrap();
    let events: Vec<String> = queue::events(&pool, callers[0].lab_id(), parent.id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    for want in [
        "fanned out into 2 child jobs",
        "child jobs done 1/2",
        "child jobs done 2/2",
    ] {
        assert!(events.iter().any(|m| m == want), "{want} in {events:?}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn cancelling_a_waiting_parent_cancels_its_children(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 10)]).await;
    let (parent, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    let p = claim_one(&pool, "w1").await;
    let children = vec![JobSpec::Noop(NoopSpec::default()); 2];
    queue::finish(
        &pool,
        &p.lease,
        Outcome::Waiting {
            children,
            unit: "child jobs",
        },
        &cfg(),
    )
    .await
    .unwrap();
    let running = claim_one(&pool, "w2").await;
    let job = svc.cancel_job(&callers[0], parent.id).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let kids = svc.child_jobs(parent.id).await.unwrap();
    let queued = kids.iter().find(|k| k.id != running.lease.job_id).unwrap();
    let busy = kids.iter().find(|k| k.id == running.lease.job_id).unwrap();
    assert_eq!(queued.state, JobState::Cancelled);
    assert_eq!(busy.state, JobState::Running);
    assert!(busy.cancel_requested, "the running child is asked to stop");
    // A wait that starts after cancellation was requested ends cancelled.
    let (other, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    let o = claim_one(&pool, "w3").await;
    assert_eq!(o.lease.job_id, other.id);
    svc.cancel_job(&callers[0], other.id).await.unwrap();
    queue::finish(
        &pool,
        &o.lease,
        Outcome::Waiting {
            children: vec![JobSpec::Noop(NoopSpec::default())],
            unit: "child jobs",
        },
        &cfg(),
    )
    .await
    .unwrap();
    assert_eq!(
        svc.get_job(&callers[0], other.id).await.unwrap().state,
        JobState::Cancelled
    );
    assert!(svc.child_jobs(other.id).await.unwrap().is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn the_sweep_wakes_a_parent_whose_wake_up_was_missed(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 10)]).await;
    let (parent, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
    let p = claim_one(&pool, "w1").await;
    queue::finish(
        &pool,
        &p.lease,
        Outcome::Waiting {
            children: vec![JobSpec::Noop(NoopSpec::default())],
            unit: "child jobs",
        },
        &cfg(),
    )
    .await
    .unwrap();
    // The child ends behind the queue's back (as the reaper failing an
    // expired last attempt leaves it).
    sqlx::query("UPDATE jobs SET state = 'failed', finished_at = now() WHERE parent_id = $1")
        .bind(parent.id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        svc.get_job(&callers[0], parent.id).await.unwrap().state,
        JobState::Waiting
    );
    assert_eq!(queue::wake_waiting_parents(&pool).await.unwrap(), 1);
    assert_eq!(
        svc.get_job(&callers[0], parent.id).await.unwrap().state,
        JobState::Queued
    );
    assert_eq!(queue::wake_waiting_parents(&pool).await.unwrap(), 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn children_finishing_at_once_wake_their_parent_exactly_once(pool: PgPool) {
    let (svc, callers) = setup(&pool, &[("a", 100)]).await;
    for round in 0..5 {
        let (parent, _) = svc.submit_job(&callers[0], noop(None, None)).await.unwrap();
        let p = claim_one(&pool, "w0").await;
        assert_eq!(p.lease.job_id, parent.id);
        let children = vec![JobSpec::Noop(NoopSpec::default()); 4];
        queue::finish(
            &pool,
            &p.lease,
            Outcome::Waiting {
                children,
                unit: "child jobs",
            },
            &cfg(),
        )
        .await
        .unwrap();
        let mut claimed = Vec::new();
        for w in 0..4 {
            claimed.push(claim_one(&pool, &format!("w{w}")).await);
        }
        let finishes = claimed.into_iter().map(|c| {
            let pool = pool.clone();
            tokio::spawn(async move {
                queue::finish(
                    &pool,
                    &c.lease,
                    Outcome::Succeeded(serde_json::json!({})),
                    &cfg(),
                )
                .await
                .unwrap()
            })
        });
        for f in finishes.collect::<Vec<_>>() {
            assert!(f.await.unwrap());
        }
        let job = svc.get_job(&callers[0], parent.id).await.unwrap();
        assert_eq!(
            job.state,
            JobState::Queued,
            "round {round}: woken without the sweep"
        );
        let done: Vec<String> = queue::events(&pool, callers[0].lab_id(), parent.id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.message)
            .filter(|m| m.starts_with("child jobs done"))
            .collect();
        assert_eq!(
            done,
            [
                "child jobs done 1/4",
                "child jobs done 2/4",
                "child jobs done 3/4",
                "child jobs done 4/4"
            ],
            "round {round}"
        );
        let again = claim_one(&pool, "w0").await;
        queue::finish(
            &pool,
            &again.lease,
            Outcome::Succeeded(serde_json::json!({})),
            &cfg(),
        )
        .await
        .unwrap();
    }
}
