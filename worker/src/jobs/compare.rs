//! `compare`: two uploaded arrays, a list of metrics (with bootstrap,
//! permutation and ceiling when asked), numbers out. Arrays are read from
//! the blob store on the async side; all tensor work happens in
//! `spawn_blocking`, checking the cancellation token between units of work.

use std::time::{Duration, Instant};

use neuralign_core::catalog::parse_metrics;
use neuralign_core::model::{CompareSpec, Precision};
use neuralign_engine::pipeline::{self, ComparePlan, MetricResult};
use neuralign_engine::EngineError;
use serde::Serialize;
use tch::Tensor;

use super::{JobContext, JobError, JobKind, Step};

pub struct Compare;

#[derive(Serialize)]
pub struct CompareOutput {
    pub a: uuid::Uuid,
    pub b: uuid::Uuid,
    pub shape_a: Vec<u64>,
    pub shape_b: Vec<u64>,
    pub device: String,
    pub precision: &'static str,
    pub engine_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduction: Option<neuralign_engine::reduce::Reduction>,
    pub results: Vec<MetricResult>,
}

fn load(field: &str, bytes: &[u8], device: tch::Device) -> Result<(Vec<u64>, Tensor), EngineError> {
    let (shape, t) = super::npy_tensor(field, bytes)?;
    Ok((shape, t.to_device(device)))
}

impl JobKind for Compare {
    const KIND: &'static str = "compare";
    type Spec = CompareSpec;
    type Output = CompareOutput;

    async fn run(ctx: JobContext, spec: CompareSpec) -> Result<Step<CompareOutput>, JobError> {
        let svc = &ctx.service;
        let (_, blob_a) = svc.array_with_blob(ctx.lab_id, spec.a).await?;
        let (_, blob_b) = svc.array_with_blob(ctx.lab_id, spec.b).await?;
        let bytes_a = neuralign_core::blobs::read_all(svc.pool(), blob_a).await?;
        let bytes_b = neuralign_core::blobs::read_all(svc.pool(), blob_b).await?;
        ctx.report(0.05, Some("arrays loaded".into()));
        let metrics = parse_metrics(&spec.metrics)?;
        let c = ctx.clone();
        let s = spec.clone();
        let (shape_a, shape_b, results, reduction) = ctx
            .compute
            .run(move || -> Result<_, EngineError> {
                let (shape_a, ta) = load("a", &bytes_a, c.device)?;
                drop(bytes_a);
                let (shape_b, tb) = load("b", &bytes_b, c.device)?;
                drop(bytes_b);
                let (ta, tb) = match s.precision {
                    Precision::Float64 => (ta, tb),
                    Precision::Float32 => {
                        (ta.to_kind(tch::Kind::Float), tb.to_kind(tch::Kind::Float))
                    }
                };
                let (ta, reduction) = pipeline::reduce_model_side(&ta, s.reduce.as_ref())?;
                let plan = ComparePlan {
                    metrics: &metrics,
                    bootstrap: s.bootstrap.as_ref(),
                    permutation: s.permutation.as_ref(),
                    ceiling: s.ceiling.as_ref(),
                    reduce: s.reduce.as_ref(),
                };
                let mut last = Instant::now();
                let results = pipeline::run(&ta, &tb, &plan, &mut |done, total| {
                    if c.cancel.is_cancelled() {
                        return Err(EngineError::Cancelled);
                    }
                    if last.elapsed() > Duration::from_millis(250) {
                        last = Instant::now();
                        c.report(0.05 + 0.95 * done as f64 / total as f64, None);
                    }
                    Ok(())
                })?;
                Ok((shape_a, shape_b, results, reduction))
            })
            .await??;
        ctx.report(1.0, Some("metrics done".into()));
        Ok(Step::Done(CompareOutput {
            a: spec.a,
            b: spec.b,
            shape_a,
            shape_b,
            device: format!("{:?}", ctx.device).to_lowercase(),
            precision: spec.precision.as_str(),
            engine_version: env!("CARGO_PKG_VERSION"),
            reduction,
            results,
        }))
    }
}
