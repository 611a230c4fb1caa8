//! Dimensionality reduction of the model side before comparing, for inputs
//! too wide to compare directly: PCA (top principal components, through the
//! smaller Gram matrix) or a Gaussian random projection drawn from
//! SplitMix64, so a lab can regenerate the exact matrix.

use neuralign_core::inference::{ReduceMethod, ReduceSpec};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::splits::SplitMix64;

#[derive(Debug, Clone, Serialize)]
pub struct Reduction {
    pub method: ReduceMethod,
    pub k: usize,
    pub seed: u64,
    pub features_before: i64,
    /// PCA only: fraction of variance the k components keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variance_kept: Option<f64>,
}

/// A p × k standard-normal matrix / sqrt(k), Box–Muller over SplitMix64.
pub fn gaussian_projection(p: i64, k: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64(seed);
    let mut unit = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let n = (p as usize) * k;
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let (u1, u2) = (unit(), unit());
        let r = (-2.0 * u1.ln()).sqrt();
        v.push(r * (2.0 * std::f64::consts::PI * u2).cos());
        v.push(r * (2.0 * std::f64::consts::PI * u2).sin());
    }
    v.truncate(n);
    Tensor::from_slice(&v).reshape([p, k as i64]) / (k as f64).sqrt()
}

/// The projection (p × k) and its description, fitted on `x` (stimuli × p).
pub fn fit(x: &Tensor, spec: &ReduceSpec) -> Result<Option<(Tensor, Reduction)>> {
    let p = x.size()[1];
    if p <= spec.k as i64 {
        return Ok(None);
    }
    let k = spec.k as i64;
    let (w, variance_kept) = match spec.method {
        ReduceMethod::RandomProjection => (
            gaussian_projection(p, spec.k, spec.seed).to_device(x.device()),
            None,
        ),
        ReduceMethod::Pca => {
            let xc = x - x.mean_dim(0, true, Kind::Double);
            let n = x.size()[0];
            // Principal axes from the smaller eigenproblem.
            let (lambda, axes) = if p <= n {
                let (l, v) = xc.transpose(0, 1).matmul(&xc).f_linalg_eigh("L")?;
                (l, v)
            } else {
                let (l, u) = xc.matmul(&xc.transpose(0, 1)).f_linalg_eigh("L")?;
                let v = xc.transpose(0, 1).matmul(&u)
                    / l.clamp_min(f64::MIN_POSITIVE).sqrt().unsqueeze(0);
                (l, v)
            };
            let total = lambda.clamp_min(0.0).sum(Kind::Double).double_value(&[]);
            let m = lambda.size()[0];
            let keep = k.min(m);
            let top = axes.narrow(1, m - keep, keep).flip([1]);
            let kept = lambda
                .narrow(0, m - keep, keep)
                .clamp_min(0.0)
                .sum(Kind::Double)
                .double_value(&[]);
            (top, Some(if total > 0.0 { kept / total } else { 1.0 }))
        }
    };
    Ok(Some((
        w,
        Reduction {
            method: spec.method,
            k: spec.k,
            seed: spec.seed,
            features_before: p,
            variance_kept,
        },
    )))
}

/// Applies a fitted projection to stimuli × p, or to any tensor whose
/// feature axis is `axis`.
pub fn apply(t: &Tensor, w: &Tensor, axis: i64) -> Tensor {
    t.movedim([axis], [-1]).matmul(w).movedim([-1], [axis])
}
