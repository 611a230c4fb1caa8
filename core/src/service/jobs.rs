//! Jobs: submission (with validation of everything a job will need, so a bad
//! request fails now rather than on a worker), reads, cancellation and the
//! live event stream.

use futures::Stream;
use uuid::Uuid;

use super::Service;
use crate::auth::Caller;
use crate::catalog::parse_metrics;
use crate::error::{Error, Result};
use crate::model::{ArrayMeta, Job, JobEvent, JobFilter, JobSpec, NewJob, Page};
use crate::queue;

/// Stimuli a compare job needs at least (an RDM over 3 stimuli has 3 pairs).
pub const MIN_STIMULI: u64 = 3;

/// The stimulus axis of a compare input: N×D, or reps×N×D averaged over reps.
pub fn stimulus_count(field: &str, meta: &ArrayMeta) -> Result<u64> {
    match meta.shape.as_slice() {
        [n, _] | [_, n, _] | [_, n, _, _] => Ok(*n),
        other => Err(Error::invalid(format!(
            "{field}: array {} has shape {other:?}; compare needs stimuli × features (2-D), repetitions × stimuli × \
             features (3-D) or repetitions × stimuli × features × time bins (4-D)",
            meta.id
        ))),
    }
}

/// Repetitions (the first axis of a 3-D or 4-D array); 1 for 2-D.
fn reps(meta: &ArrayMeta) -> u64 {
    if meta.shape.len() >= 3 {
        meta.shape[0]
    } else {
        1
    }
}

/// Features per stimulus: the last axis, or the third of a 4-D array.
fn features(meta: &ArrayMeta) -> u64 {
    match meta.shape.as_slice() {
        [_, _, f, _] => *f,
        s => *s.last().unwrap_or(&0),
    }
}

impl Service {
    pub async fn submit_job(&self, caller: &Caller, job: NewJob) -> Result<(Job, bool)> {
        self.validate_spec(caller, &job.spec).await?;
        queue::submit(&self.pool, caller.lab_id(), job, &self.cfg).await
    }

    async fn validate_spec(&self, caller: &Caller, spec: &JobSpec) -> Result<()> {
        match spec {
            JobSpec::Compare(c) => {
                let metrics = parse_metrics(&c.metrics)?;
                crate::inference::validate(
                    c.bootstrap.as_ref(),
                    c.permutation.as_ref(),
                    c.ceiling.as_ref(),
                )?;
                let (a, _) = self
                    .array_with_blob(caller.lab_id(), c.a)
                    .await
                    .map_err(|e| name_field(e, "a"))?;
                let (b, _) = self
                    .array_with_blob(caller.lab_id(), c.b)
                    .await
                    .map_err(|e| name_field(e, "b"))?;
                let (na, nb) = (stimulus_count("a", &a)?, stimulus_count("b", &b)?);
                if let ([_, _, _, ta], [_, _, _, tb]) = (a.shape.as_slice(), b.shape.as_slice()) {
                    if ta != tb {
                        return Err(Error::invalid(format!(
                            "b: time bins differ: a {} has {ta}, b {} has {tb}",
                            a.id, b.id
                        )));
                    }
                }
                if let Some(r) = &c.reduce {
                    if r.k == 0 {
                        return Err(Error::invalid("reduce.k: must be at least 1"));
                    }
                }
                let (pa, pb) = (features(&a), features(&b));
                let need = crate::budget::estimate(
                    &metrics,
                    na,
                    pa,
                    pb,
                    c.reduce.as_ref(),
                    c.bootstrap.as_ref(),
                );
                if need > self.cfg.max_compute_bytes {
                    return Err(Error::new(
                        crate::ErrorCode::ResourceExhausted,
                        format!(
                            "compare: {na} stimuli × {pa} and {pb} features need an estimated {} for these metrics, over this \
                             service's limit of {}; add \"reduce\": {{\"method\": \"pca\", \"k\": 512}} or use fewer stimuli",
                            crate::budget::human(need),
                            crate::budget::human(self.cfg.max_compute_bytes)
                        ),
                    ));
                }
                if c.ceiling
                    .as_ref()
                    .is_some_and(|s| s.method == crate::inference::CeilingMethod::Subjects)
                {
                    if let Some((i, m)) = metrics.iter().enumerate().find(|(_, m)| m.id() != "rsa")
                    {
                        return Err(Error::invalid(format!(
                            "ceiling.method: subjects applies to rsa only, but metrics[{i}] is {}",
                            m.id()
                        )));
                    }
                }
                if c.ceiling.is_some()
                    && !matches!(b.shape.as_slice(), [reps, ..] if b.shape.len() >= 3 && *reps >= 2)
                {
                    return Err(Error::invalid(format!(
                        "ceiling: b {} has shape {:?}; a split-half ceiling needs repetitions (reps >= 2 × stimuli × neurons)",
                        b.id, b.shape
                    )));
                }
                if na != nb {
                    return Err(Error::invalid(format!(
                        "b: stimulus counts differ: a {} has {na} stimuli (shape {:?}), b {} has {nb} (shape {:?})",
                        a.id, a.shape, b.id, b.shape
                    )));
                }
                if na < MIN_STIMULI {
                    return Err(Error::invalid(format!(
                        "a: compare needs at least {MIN_STIMULI} stimuli, got {na}"
                    )));
                }
                for (i, m) in metrics.iter().enumerate() {
                    if na < m.min_stimuli() {
                        return Err(Error::invalid(format!(
                            "metrics[{i}]: {} with options {} needs at least {} stimuli, the arrays have {na}",
                            m.id(),
                            m.options_json(),
                            m.min_stimuli()
                        )));
                    }
                    m.check_against(&format!("metrics[{i}]"), na, reps(&a), reps(&b))?;
                }
                Ok(())
            }
            JobSpec::Noop(n) => {
                if n.duration_ms > 3_600_000 {
                    return Err(Error::invalid("duration_ms: must be at most one hour"));
                }
                Ok(())
            }
            JobSpec::Score(s) => self.validate_score(caller, s).await,
            JobSpec::ProbeModel(_) => Err(Error::invalid(
                "spec.kind: probe_model jobs are started by model registration (POST /v1/models)",
            )),
        }
    }

    /// The jobs `parent` fanned out (for the worker collecting them).
    pub async fn child_jobs(&self, parent: Uuid) -> Result<Vec<Job>> {
        queue::children(&self.pool, parent).await
    }

    pub async fn get_job(&self, caller: &Caller, id: Uuid) -> Result<Job> {
        queue::get(&self.pool, caller.lab_id(), id).await
    }

    pub async fn list_jobs(&self, caller: &Caller, filter: &JobFilter) -> Result<Page<Job>> {
        queue::list(&self.pool, caller.lab_id(), filter).await
    }

    pub async fn cancel_job(&self, caller: &Caller, id: Uuid) -> Result<Job> {
        queue::cancel(&self.pool, caller.lab_id(), id).await
    }

    pub async fn job_events(&self, caller: &Caller, id: Uuid, after: i64) -> Result<Vec<JobEvent>> {
        queue::events(&self.pool, caller.lab_id(), id, after).await
    }

    /// Every event of the job after `after`, live, ending after the final
    /// state. Woken by notifications, with polling as the fallback.
    pub fn watch_job(
        &self,
        caller: &Caller,
        id: Uuid,
        after: i64,
    ) -> impl Stream<Item = Result<JobEvent>> + Send + 'static {
        let (pool, lab_id, poll) = (self.pool.clone(), caller.lab_id(), self.cfg.poll());
        let mut rx = self.notes.events.subscribe();
        async_stream::try_stream! {
            let mut last = after;
            loop {
                let batch = queue::events(&pool, lab_id, id, last).await?;
                let mut finished = false;
                for e in batch {
                    last = e.id;
                    finished |= e.state.is_some_and(|s| s.is_final());
                    yield e;
                }
                if finished || (last == after && queue::get(&pool, lab_id, id).await?.state.is_final() && after > 0) {
                    break;
                }
                let deadline = tokio::time::sleep(poll);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        got = rx.recv() => match got {
                            Ok(changed) if changed != id => continue,
                            _ => break,
                        },
                    }
                }
            }
        }
    }
}

fn name_field(e: Error, field: &str) -> Error {
    match e {
        Error::Client { code, message } => Error::Client {
            code,
            message: format!("{field}: {message}"),
        },
        other => other,
    }
}
