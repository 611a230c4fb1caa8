//! The job queue: a table with a lease column. Claims are short transactions
//! (`FOR UPDATE SKIP LOCKED`, commit at once); a running job holds a lease
//! renewed by heartbeats; every write a worker makes afterwards is fenced by
//! `(job_id, attempt, worker_id)` so a worker that lost its lease cannot
//! overwrite the job's next attempt. Wake-ups go out by NOTIFY with the job
//! id only; workers also poll, so a lost notification costs latency, not jobs.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::config::ServiceConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::model::{decode_cursor, Job, JobEvent, JobFilter, JobSpec, JobState, NewJob, Page};

pub const CHANNEL_JOBS: &str = "neuralign_jobs";
pub const CHANNEL_EVENTS: &str = "neuralign_events";
pub const CHANNEL_CANCEL: &str = "neuralign_cancel";

const JOB_COLUMNS: &str =
    "id, kind, state, priority, attempt, max_attempts, progress, spec, result, last_error, \
     idempotency_key, cancel_requested, parent_id, created_at, started_at, finished_at";

fn job_from_row(r: &sqlx::postgres::PgRow) -> Result<Job> {
    let state: String = r.try_get("state")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        state: JobState::parse(&state)?,
        priority: r.try_get("priority")?,
        attempt: r.try_get::<i32, _>("attempt")? as u32,
        max_attempts: r.try_get::<i32, _>("max_attempts")? as u32,
        progress: r.try_get("progress")?,
        spec: r.try_get("spec")?,
        result: r.try_get("result")?,
        error: r.try_get("last_error")?,
        idempotency_key: r.try_get("idempotency_key")?,
        cancel_requested: r.try_get("cancel_requested")?,
        parent_id: r.try_get("parent_id")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// Appends an event and tells listeners which job changed.
pub(crate) async fn insert_event(
    conn: &mut PgConnection,
    job_id: Uuid,
    kind: &str,
    state: Option<JobState>,
    progress: Option<f64>,
    message: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "WITH e AS (INSERT INTO job_events (job_id, kind, state, progress, message) VALUES ($1, $2, $3, $4, $5)) \
         SELECT pg_notify($6, $1::text)",
    )
    .bind(job_id)
    .bind(kind)
    .bind(state.map(JobState::as_str))
    .bind(progress)
    .bind(message)
    .bind(CHANNEL_EVENTS)
    .execute(conn)
    .await?;
    Ok(())
}

/// Enqueues a job, or returns the lab's existing job with the same
/// idempotency key. The bool is true when a new job was created.
pub async fn submit(
    pool: &PgPool,
    lab_id: Uuid,
    job: NewJob,
    cfg: &ServiceConfig,
) -> Result<(Job, bool)> {
    let max_attempts = job.max_attempts.unwrap_or(cfg.default_max_attempts);
    if max_attempts == 0 || max_attempts > 100 {
        return Err(Error::invalid(format!(
            "max_attempts: must be between 1 and 100, got {max_attempts}"
        )));
    }
    if let Some(key) = &job.idempotency_key {
        if key.is_empty() || key.len() > 255 {
            return Err(Error::invalid(
                "idempotency_key: must be 1 to 255 characters",
            ));
        }
    }
    let spec = serde_json::to_value(&job.spec).map_err(Error::internal)?;
    let mut tx = pool.begin().await?;
    let id = Uuid::new_v4();
    let inserted = sqlx::query(&format!(
        "INSERT INTO jobs (id, lab_id, kind, spec, state, priority, max_attempts, idempotency_key) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7) \
         ON CONFLICT (lab_id, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .bind(lab_id)
    .bind(job.spec.kind())
    .bind(&spec)
    .bind(job.priority)
    .bind(max_attempts as i32)
    .bind(&job.idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        tx.rollback().await?;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE lab_id = $1 AND idempotency_key = $2"
        ))
        .bind(lab_id)
        .bind(&job.idempotency_key)
        .fetch_one(pool)
        .await?;
        let existing = job_from_row(&row)?;
        if existing.spec != spec {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "idempotency_key: {:?} was already used for job {} with a different spec",
                    job.idempotency_key.unwrap_or_default(),
                    existing.id
                ),
            ));
        }
        return Ok((existing, false));
    };
    let created = job_from_row(&row)?;
    insert_event(&mut tx, id, "state", Some(JobState::Queued), None, None).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL_JOBS)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((created, true))
}

/// A claimed attempt of a job. Every later write names all three fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub job_id: Uuid,
    pub attempt: u32,
    pub worker_id: String,
}

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub lab_id: Uuid,
    pub kind: String,
    pub spec: Value,
    pub max_attempts: u32,
    /// The job that fanned this one out, if any.
    pub parent_id: Option<Uuid>,
}

/// Claims the most urgent runnable job of the given kinds whose lab is under
/// its running limit. The lab row lock serializes claims within one lab so
/// that two workers cannot both take the lab's last free slot.
pub async fn claim(
    pool: &PgPool,
    worker_id: &str,
    kinds: &[String],
    lease: Duration,
) -> Result<Option<ClaimedJob>> {
    let mut full_labs: Vec<Uuid> = Vec::new();
    for _ in 0..8 {
        let mut tx = pool.begin().await?;
        let cand = sqlx::query(
            // Labs under their limit are found once per claim (one count per
            // lab, not per queued job), so the claim stays cheap however deep
            // the queue is; the index on (priority, run_at, created_at) then
            // yields the first eligible job.
            "SELECT j.id, j.lab_id FROM jobs j \
             WHERE j.state IN ('queued', 'retry_wait') AND j.run_at <= now() AND j.kind = ANY($1) \
               AND NOT (j.lab_id = ANY($2)) \
               AND j.lab_id IN (SELECT l.id FROM labs l \
                 WHERE (SELECT count(*) FROM jobs r WHERE r.lab_id = l.id AND r.state = 'running') < l.max_running_jobs) \
             ORDER BY j.priority DESC, j.run_at, j.created_at \
             LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
        )
        .bind(kinds)
        .bind(&full_labs)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cand) = cand else {
            tx.commit().await?;
            return Ok(None);
        };
        let (job_id, lab_id): (Uuid, Uuid) = (cand.try_get("id")?, cand.try_get("lab_id")?);
        let max_running: i32 =
            sqlx::query_scalar("SELECT max_running_jobs FROM labs WHERE id = $1 FOR UPDATE")
                .bind(lab_id)
                .fetch_one(&mut *tx)
                .await?;
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE lab_id = $1 AND state = 'running'")
                .bind(lab_id)
                .fetch_one(&mut *tx)
                .await?;
        if running >= max_running as i64 {
            tx.rollback().await?;
            full_labs.push(lab_id);
            continue;
        }
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker_id = $2, \
               lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(), \
               started_at = coalesce(started_at, now()), updated_at = now() \
             WHERE id = $1 RETURNING attempt, kind, spec, max_attempts, parent_id",
        )
        .bind(job_id)
        .bind(worker_id)
        .bind(lease.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        let attempt = row.try_get::<i32, _>("attempt")? as u32;
        let msg = format!("attempt {attempt} claimed by {worker_id}");
        insert_event(
            &mut tx,
            job_id,
            "state",
            Some(JobState::Running),
            None,
            Some(&msg),
        )
        .await?;
        tx.commit().await?;
        return Ok(Some(ClaimedJob {
            lease: Lease {
                job_id,
                attempt,
                worker_id: worker_id.to_string(),
            },
            lab_id,
            kind: row.try_get("kind")?,
            spec: row.try_get("spec")?,
            max_attempts: row.try_get::<i32, _>("max_attempts")? as u32,
            parent_id: row.try_get("parent_id")?,
        }));
    }
    Ok(None)
}

const FENCE: &str = "id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'";

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Held { cancel_requested: bool },
    Lost,
}

pub async fn heartbeat(pool: &PgPool, lease: &Lease, duration: Duration) -> Result<Heartbeat> {
    let row: Option<bool> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4), heartbeat_at = now() \
         WHERE {FENCE} RETURNING cancel_requested"
    ))
    .bind(lease.job_id)
    .bind(lease.attempt as i32)
    .bind(&lease.worker_id)
    .bind(duration.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(cancel_requested) => Heartbeat::Held { cancel_requested },
        None => Heartbeat::Lost,
    })
}

/// Records progress (a fraction, optionally a message) of a running job;
/// false if the lease is lost.
pub async fn progress(
    pool: &PgPool,
    lease: &Lease,
    fraction: f64,
    message: Option<&str>,
) -> Result<bool> {
    progress_many(pool, lease, &[(fraction, message.map(str::to_string))]).await
}

/// Records several progress events of a running job in one transaction
/// (the job's progress becomes the last one's); false if the lease is lost.
pub async fn progress_many(
    pool: &PgPool,
    lease: &Lease,
    events: &[(f64, Option<String>)],
) -> Result<bool> {
    let Some((last, _)) = events.last() else {
        return Ok(true);
    };
    // Progress is telemetry: a crash may lose the last few events, and the
    // job's state changes (synchronous) flush them anyway.
    let mut tx = crate::db::begin_unflushed(pool).await?;
    let r = sqlx::query(&format!(
        "UPDATE jobs SET progress = $4, updated_at = now() WHERE {FENCE}"
    ))
    .bind(lease.job_id)
    .bind(lease.attempt as i32)
    .bind(&lease.worker_id)
    .bind(last.clamp(0.0, 1.0))
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    for (fraction, message) in events {
        insert_event(
            &mut tx,
            lease.job_id,
            "progress",
            None,
            Some(fraction.clamp(0.0, 1.0)),
            message.as_deref(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Appends a log line to a running job's events; false if the lease is lost.
pub async fn log(pool: &PgPool, lease: &Lease, message: &str) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let held: bool =
        sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM jobs WHERE {FENCE})"))
            .bind(lease.job_id)
            .bind(lease.attempt as i32)
            .bind(&lease.worker_id)
            .fetch_one(&mut *tx)
            .await?;
    if held {
        insert_event(&mut tx, lease.job_id, "log", None, None, Some(message)).await?;
    }
    tx.commit().await?;
    Ok(held)
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Value),
    /// Worth another attempt (after backoff) if attempts remain.
    Retryable(String),
    /// Retrying cannot help: bad input, an unknown kind.
    Fatal(String),
    /// The compute stopped because cancellation was requested.
    Cancelled,
    /// Given back unfinished (worker shutdown); the attempt does not count.
    Released,
    /// Fan out: enqueue these child jobs (none when they exist already) and
    /// wait, holding no worker, until every child is final; the job is then
    /// queued again to collect their results. The attempt does not count.
    /// `unit` names what one child stands for in the parent's progress
    /// ("benchmarks done 2/3").
    Waiting {
        children: Vec<JobSpec>,
        unit: &'static str,
    },
}

/// Writes an attempt's outcome. Returns false when the lease was lost, in
/// which case nothing is written.
pub async fn finish(
    pool: &PgPool,
    lease: &Lease,
    outcome: Outcome,
    cfg: &ServiceConfig,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    lock_parent(&mut tx, lease.job_id).await?;
    let row: Option<(i32, i32, bool, Uuid, i32, Option<Uuid>)> = sqlx::query_as(&format!(
        "SELECT attempt, max_attempts, cancel_requested, lab_id, priority, parent_id FROM jobs WHERE {FENCE} FOR UPDATE"
    ))
    .bind(lease.job_id)
    .bind(lease.attempt as i32)
    .bind(&lease.worker_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attempt, max_attempts, cancel_requested, lab_id, priority, parent_id)) = row else {
        tx.rollback().await?;
        return Ok(false);
    };
    let (mut children, mut children_unit) = (Vec::new(), None);
    let (state, result, error, delay, attempt_delta): (
        JobState,
        Option<Value>,
        Option<String>,
        Duration,
        i32,
    ) = match outcome {
        Outcome::Succeeded(v) => (JobState::Succeeded, Some(v), None, Duration::ZERO, 0),
        Outcome::Fatal(e) => (JobState::Failed, None, Some(e), Duration::ZERO, 0),
        Outcome::Cancelled => (
            JobState::Cancelled,
            None,
            Some("cancelled".into()),
            Duration::ZERO,
            0,
        ),
        Outcome::Waiting { .. } if cancel_requested => (
            JobState::Cancelled,
            None,
            Some("cancelled".into()),
            Duration::ZERO,
            0,
        ),
        Outcome::Waiting {
            children: specs,
            unit,
        } => {
            children = specs;
            children_unit = Some(unit);
            (JobState::Waiting, None, None, Duration::ZERO, -1)
        }
        Outcome::Released => (JobState::Queued, None, None, Duration::ZERO, -1),
        Outcome::Retryable(e) if attempt >= max_attempts => (
            JobState::Failed,
            None,
            Some(format!("{e} (after {attempt} attempts)")),
            Duration::ZERO,
            0,
        ),
        Outcome::Retryable(e) => (
            JobState::RetryWait,
            None,
            Some(e),
            cfg.backoff(attempt as u32),
            0,
        ),
    };
    sqlx::query(
        "UPDATE jobs SET state = $2, result = $3, last_error = coalesce($4, last_error), \
           run_at = now() + make_interval(secs => $5), attempt = attempt + $6, \
           progress = CASE WHEN $2 = 'succeeded' THEN 1 ELSE progress END, \
           worker_id = NULL, lease_expires_at = NULL, updated_at = now(), \
           finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN now() END, \
           children_unit = coalesce($7, children_unit) \
         WHERE id = $1",
    )
    .bind(lease.job_id)
    .bind(state.as_str())
    .bind(&result)
    .bind(&error)
    .bind(delay.as_secs_f64())
    .bind(attempt_delta)
    .bind(children_unit)
    .execute(&mut *tx)
    .await?;
    let waiting_msg = (state == JobState::Waiting).then(|| {
        if children.is_empty() {
            "waiting for its child jobs".to_string()
        } else {
            format!("fanned out into {} child jobs", children.len())
        }
    });
    insert_event(
        &mut tx,
        lease.job_id,
        "state",
        Some(state),
        None,
        error.as_deref().or(waiting_msg.as_deref()),
    )
    .await?;
    for spec in &children {
        let child = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO jobs (id, lab_id, kind, spec, state, priority, max_attempts, parent_id) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7)",
        )
        .bind(child)
        .bind(lab_id)
        .bind(spec.kind())
        .bind(serde_json::to_value(spec).map_err(Error::internal)?)
        .bind(priority)
        .bind(max_attempts)
        .bind(lease.job_id)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, child, "state", Some(JobState::Queued), None, None).await?;
    }
    if state == JobState::Waiting {
        // Children that all finished before this wait began leave nothing to
        // wake the parent, so it collects at once.
        wake_if_children_final(&mut tx, lease.job_id).await?;
    }
    if state.is_final() {
        if let Some(parent) = parent_id {
            child_finished(&mut tx, parent).await?;
        }
    }
    if !state.is_final() || !children.is_empty() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL_JOBS)
            .bind(lease.job_id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Locks a job's parent row, if it has one. Every transaction that ends a
/// child takes the parent's lock before the child's, so sibling finishes
/// run one after the other (each counts the others' committed states) and
/// a parent's cancellation, which locks parent then children, cannot
/// deadlock with them.
async fn lock_parent(conn: &mut PgConnection, job_id: Uuid) -> Result<()> {
    sqlx::query(
        "SELECT p.id FROM jobs p WHERE p.id = (SELECT parent_id FROM jobs WHERE id = $1) FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(())
}

/// A child reached a final state: the parent's progress moves on, and the
/// parent is queued to collect once no child is left unfinished.
async fn child_finished(conn: &mut PgConnection, parent: Uuid) -> Result<()> {
    let (done, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled')), count(*) \
         FROM jobs WHERE parent_id = $1",
    )
    .bind(parent)
    .fetch_one(&mut *conn)
    .await?;
    let fraction = done as f64 / total.max(1) as f64;
    let unit: Option<String> = sqlx::query_scalar(
        "UPDATE jobs SET progress = greatest(progress, $2), updated_at = now() \
         WHERE id = $1 AND state = 'waiting' RETURNING coalesce(children_unit, 'child jobs')",
    )
    .bind(parent)
    .bind(fraction)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(unit) = unit {
        let msg = format!("{unit} done {done}/{total}");
        insert_event(conn, parent, "progress", None, Some(fraction), Some(&msg)).await?;
        wake_if_children_final(conn, parent).await?;
    }
    Ok(())
}

/// Queues a waiting job whose children are all final. Children that end
/// outside `finish` and `cancel` (the reaper's expiries) leave it to the
/// reaper's sweep (`wake_waiting_parents`).
async fn wake_if_children_final(conn: &mut PgConnection, parent: Uuid) -> Result<()> {
    let woke = sqlx::query(
        "UPDATE jobs p SET state = 'queued', run_at = now(), updated_at = now() \
         WHERE p.id = $1 AND p.state = 'waiting' AND NOT EXISTS ( \
           SELECT 1 FROM jobs c WHERE c.parent_id = p.id AND c.state NOT IN ('succeeded', 'failed', 'cancelled'))",
    )
    .bind(parent)
    .execute(&mut *conn)
    .await?;
    if woke.rows_affected() > 0 {
        insert_event(
            conn,
            parent,
            "state",
            Some(JobState::Queued),
            None,
            Some("every child job is final; queued to collect their results"),
        )
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL_JOBS)
            .bind(parent.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Queues every waiting job whose children are all final (for children that
/// ended outside `finish` and `cancel`: expired leases on a last attempt).
pub async fn wake_waiting_parents(pool: &PgPool) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT p.id FROM jobs p WHERE p.state = 'waiting' AND NOT EXISTS ( \
           SELECT 1 FROM jobs c WHERE c.parent_id = p.id AND c.state NOT IN ('succeeded', 'failed', 'cancelled')) \
         FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    for id in &ids {
        wake_if_children_final(&mut tx, *id).await?;
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// The jobs a job fanned out, oldest first.
pub async fn children(pool: &PgPool, parent: Uuid) -> Result<Vec<Job>> {
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE parent_id = $1 ORDER BY created_at, id"
    ))
    .bind(parent)
    .fetch_all(pool)
    .await?;
    rows.iter().map(job_from_row).collect()
}

/// Re-queues (or fails, or cancels) running jobs whose lease expired.
/// Safe to run from every process at once.
pub async fn reap_expired(pool: &PgPool, cfg: &ServiceConfig) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "WITH expired AS ( \
           SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < now() FOR UPDATE SKIP LOCKED) \
         UPDATE jobs j SET \
           state = CASE WHEN j.cancel_requested THEN 'cancelled' \
                        WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'retry_wait' END, \
           run_at = now() + make_interval(secs => least($2::float8, $1::float8 * power(2, greatest(j.attempt - 1, 0)))), \
           last_error = 'lease expired: worker ' || coalesce(j.worker_id, '?') || ' stopped heartbeating during attempt ' || j.attempt, \
           worker_id = NULL, lease_expires_at = NULL, updated_at = now(), \
           finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN now() END \
         FROM expired WHERE j.id = expired.id RETURNING j.id, j.state, j.last_error",
    )
    .bind(cfg.retry_base_ms as f64 / 1000.0)
    .bind(cfg.retry_max_ms as f64 / 1000.0)
    .fetch_all(&mut *tx)
    .await?;
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        let state = JobState::parse(&r.try_get::<String, _>("state")?)?;
        let msg: String = r.try_get("last_error")?;
        insert_event(&mut tx, id, "state", Some(state), None, Some(&msg)).await?;
        if !state.is_final() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL_JOBS)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    if !rows.is_empty() {
        tracing::info!(count = rows.len(), "re-queued jobs with expired leases");
    }
    Ok(rows.len() as u64)
}

pub async fn get(pool: &PgPool, lab_id: Uuid, id: Uuid) -> Result<Job> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND lab_id = $2"
    ))
    .bind(id)
    .bind(lab_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::not_found("job", id))?;
    job_from_row(&row)
}

/// Cancels a job: at once if it is queued or waiting on children (which
/// are cancelled with it), cooperatively if it runs.
pub async fn cancel(pool: &PgPool, lab_id: Uuid, id: Uuid) -> Result<Job> {
    let mut tx = pool.begin().await?;
    lock_parent(&mut tx, id).await?;
    let row: Option<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT state, parent_id FROM jobs WHERE id = $1 AND lab_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(lab_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (state, parent_id) = row.ok_or_else(|| Error::not_found("job", id))?;
    let state = JobState::parse(&state)?;
    match state {
        JobState::Queued | JobState::RetryWait | JobState::Waiting => {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let msg = if state == JobState::Waiting {
                "cancelled while waiting for its child jobs"
            } else {
                "cancelled before it ran"
            };
            insert_event(
                &mut tx,
                id,
                "state",
                Some(JobState::Cancelled),
                None,
                Some(msg),
            )
            .await?;
            cancel_children(&mut tx, id).await?;
            if let Some(parent) = parent_id {
                child_finished(&mut tx, parent).await?;
            }
        }
        JobState::Running => {
            request_cancel(&mut tx, id).await?;
        }
        JobState::Cancelled => {}
        JobState::Succeeded | JobState::Failed => {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "job {id} already {} and cannot be cancelled",
                    state.as_str()
                ),
            ));
        }
    }
    tx.commit().await?;
    get(pool, lab_id, id).await
}

/// Asks the worker running a job to stop.
async fn request_cancel(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    insert_event(conn, id, "log", None, None, Some("cancellation requested")).await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL_CANCEL)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Cancels a parent's unfinished children: waiting ones at once, running
/// ones cooperatively.
async fn cancel_children(conn: &mut PgConnection, parent: Uuid) -> Result<()> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, state FROM jobs WHERE parent_id = $1 AND state NOT IN ('succeeded', 'failed', 'cancelled') \
         ORDER BY id FOR UPDATE",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await?;
    for (child, state) in rows {
        if state == "running" {
            request_cancel(conn, child).await?;
        } else {
            sqlx::query(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(child)
            .execute(&mut *conn)
            .await?;
            insert_event(
                conn,
                child,
                "state",
                Some(JobState::Cancelled),
                None,
                Some("cancelled with its parent job"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Lists a lab's jobs, newest first, with keyset pagination.
pub async fn list(pool: &PgPool, lab_id: Uuid, filter: &JobFilter) -> Result<Page<Job>> {
    let limit = filter.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid(format!(
            "limit: must be between 1 and 1000, got {limit}"
        )));
    }
    let cursor = filter
        .page_token
        .as_deref()
        .map(decode_cursor)
        .transpose()?;
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE lab_id = $1 \
           AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR kind = $3) \
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(lab_id)
    .bind(filter.state.map(JobState::as_str))
    .bind(&filter.kind)
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(limit as i64 + 1)
    .fetch_all(pool)
    .await?;
    let items = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, limit, |j| (j.created_at, j.id)))
}

/// A job's events after `after` (an event id), oldest first.
pub async fn events(pool: &PgPool, lab_id: Uuid, id: Uuid, after: i64) -> Result<Vec<JobEvent>> {
    let owned: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND lab_id = $2)")
            .bind(id)
            .bind(lab_id)
            .fetch_one(pool)
            .await?;
    if !owned {
        return Err(Error::not_found("job", id));
    }
    let rows = sqlx::query(
        "SELECT id, job_id, kind, state, progress, message, created_at FROM job_events \
         WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT 1000",
    )
    .bind(id)
    .bind(after)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let state: Option<String> = r.try_get("state")?;
            Ok(JobEvent {
                id: r.try_get("id")?,
                job_id: r.try_get("job_id")?,
                kind: r.try_get("kind")?,
                state: state.as_deref().map(JobState::parse).transpose()?,
                progress: r.try_get("progress")?,
                message: r.try_get("message")?,
                at: r.try_get("created_at")?,
            })
        })
        .collect()
}
