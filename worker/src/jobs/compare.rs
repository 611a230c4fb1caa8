//! `compare`: two uploaded arrays, a list of metrics, numbers out. Arrays
//! are read from the blob store on the async side; all tensor work happens
//! in `spawn_blocking`, checking the cancellation token between metrics.

use neuralign_core::model::CompareSpec;
use neuralign_engine::{EngineError, MetricValue};
use serde::Serialize;

use super::{JobContext, JobError, JobKind};

pub struct Compare;

#[derive(Serialize)]
pub struct CompareOutput {
    pub a: uuid::Uuid,
    pub b: uuid::Uuid,
    pub n_stimuli: i64,
    pub features: [i64; 2],
    pub device: String,
    pub precision: &'static str,
    pub engine_version: &'static str,
    pub results: Vec<MetricValue>,
}

impl JobKind for Compare {
    const KIND: &'static str = "compare";
    type Spec = CompareSpec;
    type Output = CompareOutput;

    async fn run(ctx: JobContext, spec: CompareSpec) -> Result<CompareOutput, JobError> {
        let svc = &ctx.service;
        let (ma, blob_a) = svc.array_with_blob(ctx.lab_id, spec.a).await?;
        let (mb, blob_b) = svc.array_with_blob(ctx.lab_id, spec.b).await?;
        let bytes_a = neuralign_core::blobs::read_all(svc.pool(), blob_a).await?;
        let bytes_b = neuralign_core::blobs::read_all(svc.pool(), blob_b).await?;
        ctx.report(0.1, Some("arrays loaded".into()));
        let metrics = neuralign_core::catalog::parse_metrics(&spec.metrics)?;
        let c = ctx.clone();
        let results = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            let (sa, va) = neuralign_core::npy::decode_f64(&bytes_a)
                .map_err(|e| EngineError::invalid(format!("a: {e}")))?;
            drop(bytes_a);
            let (sb, vb) = neuralign_core::npy::decode_f64(&bytes_b)
                .map_err(|e| EngineError::invalid(format!("b: {e}")))?;
            drop(bytes_b);
            let ta = neuralign_engine::prepare("a", &sa, &va, c.device)?;
            let tb = neuralign_engine::prepare("b", &sb, &vb, c.device)?;
            let n = metrics.len();
            let values = neuralign_engine::compare(&ta, &tb, &metrics, |done| {
                if c.cancel.is_cancelled() {
                    return Err(EngineError::Cancelled);
                }
                c.report(
                    0.1 + 0.9 * done as f64 / n as f64,
                    Some(format!("{} done", metrics[done - 1].id())),
                );
                Ok(())
            })?;
            Ok((values, ta.size()[0], [ta.size()[1], tb.size()[1]]))
        })
        .await
        .map_err(|e| JobError::Retryable(format!("compute task failed: {e}")))??;
        let (results, n_stimuli, features) = results;
        let _ = (ma, mb);
        Ok(CompareOutput {
            a: spec.a,
            b: spec.b,
            n_stimuli,
            features,
            device: format!("{:?}", ctx.device).to_lowercase(),
            precision: "float64",
            engine_version: env!("CARGO_PKG_VERSION"),
            results,
        })
    }
}
