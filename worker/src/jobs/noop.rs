//! A job that waits and reports progress: used by queue tests, throughput
//! benchmarks and as a liveness probe of the worker fleet.

use std::time::Duration;

use neuralign_core::model::NoopSpec;
use serde::Serialize;

use super::{JobContext, JobError, JobKind, Step};

pub struct Noop;

#[derive(Serialize)]
pub struct NoopOutput {
    pub attempt: u32,
}

impl JobKind for Noop {
    const KIND: &'static str = "noop";
    type Spec = NoopSpec;
    type Output = NoopOutput;

    async fn run(ctx: JobContext, spec: NoopSpec) -> Result<Step<NoopOutput>, JobError> {
        if ctx.attempt <= spec.fail_attempts {
            return Err(JobError::Retryable(format!(
                "noop: attempt {} fails on purpose",
                ctx.attempt
            )));
        }
        let steps = (spec.duration_ms / 50).max(1);
        let step = Duration::from_millis(spec.duration_ms / steps);
        for i in 0..steps {
            if spec.duration_ms > 0 {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
                    _ = tokio::time::sleep(step) => {}
                }
                if steps >= 4 && (i + 1) % (steps / 4) == 0 {
                    ctx.report((i + 1) as f64 / steps as f64, None);
                }
            }
        }
        Ok(Step::Done(NoopOutput {
            attempt: ctx.attempt,
        }))
    }
}
