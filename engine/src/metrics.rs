//! The metric dispatcher: turns metric ids from a job into numbers. Ids and
//! their documentation live in `neuralign_core::catalog`; this is where they
//! are computed.

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::{cka, rank, rdm};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricValue {
    pub metric: String,
    pub direction: &'static str,
    pub value: f64,
}

/// Turns an uploaded array (N×D, or reps×N×D averaged over repetitions) into
/// a float64 stimulus × feature tensor on `device`.
pub fn prepare(field: &str, shape: &[u64], values: &[f64], device: Device) -> Result<Tensor> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::f_from_slice(values)?
        .f_reshape(&dims)?
        .to_device(device);
    match dims.len() {
        2 => Ok(t),
        3 => Ok(t.mean_dim(0, false, Kind::Double)),
        _ => Err(EngineError::invalid(format!(
            "{field}: shape {shape:?} is neither stimuli × features nor repetitions × stimuli × features"
        ))),
    }
}

/// Computes each metric between `a` and `b` (same stimuli, same order),
/// calling `step` after each so the caller can report progress or stop.
pub fn compare(
    a: &Tensor,
    b: &Tensor,
    metric_ids: &[String],
    mut step: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<MetricValue>> {
    let _guard = tch::no_grad_guard();
    if a.size()[0] != b.size()[0] {
        return Err(EngineError::invalid(format!(
            "stimulus counts differ: {} vs {}",
            a.size()[0],
            b.size()[0]
        )));
    }
    let mut out = Vec::with_capacity(metric_ids.len());
    for (i, id) in metric_ids.iter().enumerate() {
        let value = match id.as_str() {
            "linear_cka" => cka::linear_cka(a, b),
            "rsa_correlation_spearman" => {
                let ra = rdm::correlation_rdm(a).map_err(|e| name_input(e, "a"))?;
                let rb = rdm::correlation_rdm(b).map_err(|e| name_input(e, "b"))?;
                rank::spearman(&ra, &rb)
            }
            other => {
                return Err(EngineError::invalid(format!(
                    "metrics: unknown metric id {other:?}"
                )))
            }
        };
        if !value.is_finite() {
            return Err(EngineError::invalid(format!(
                "{id}: the result is not finite (an input has no variance)"
            )));
        }
        out.push(MetricValue {
            metric: id.clone(),
            direction: "similarity",
            value,
        });
        step(i + 1)?;
    }
    Ok(out)
}

fn name_input(e: EngineError, field: &str) -> EngineError {
    match e {
        EngineError::Invalid(m) => EngineError::Invalid(format!("{field}: {m}")),
        other => other,
    }
}
