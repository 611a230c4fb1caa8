//! Representational dissimilarity matrices, vectorized as the strict upper
//! triangle in row-major order (scipy's `squareform` / rsatoolbox order).
//! Each method follows the reference it is named after; see the catalogue.

use neuralign_core::catalog::{NoiseModel, RdmMethod};
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};

/// The RDM of `x` (stimuli × channels) as its upper-triangle vector.
pub fn rdm(x: &Tensor, method: RdmMethod) -> Result<Tensor> {
    // RDMs are ranked and compared entry by entry: always float64.
    let x = &x.to_kind(Kind::Double);
    let n = x.size()[0];
    let channels = x.size()[1] as f64;
    let full = match method {
        RdmMethod::Euclidean => squared_distances(x).sqrt(),
        RdmMethod::SqEuclidean => squared_distances(x) / channels,
        RdmMethod::Correlation => {
            let centered = x - x.mean_dim(1, true, Kind::Double);
            1.0 - unit_rows(&centered, "correlation")?
                .matmul(&unit_rows(&centered, "correlation")?.transpose(0, 1))
        }
        RdmMethod::Cosine => {
            let z = unit_rows(x, "cosine")?;
            1.0 - z.matmul(&z.transpose(0, 1))
        }
        RdmMethod::Mahalanobis | RdmMethod::Crossnobis => {
            return Err(EngineError::invalid(format!(
                "{method:?} RDMs need repetitions (reps × stimuli × channels); set rdm_a for a side without them"
            )))
        }
        RdmMethod::Poisson => {
            // rsatoolbox: shrink towards a prior rate, then the symmetric KL
            // divergence between Poisson rates, averaged over channels.
            let (prior_lambda, prior_weight) = (1.0, 0.1);
            let m = (x + prior_lambda * prior_weight) / (1.0 + prior_weight);
            if m.le(0.0).any().int64_value(&[]) != 0 {
                return Err(EngineError::invalid(
                    "poisson RDM needs non-negative rates (spike counts or firing rates)",
                ));
            }
            let kernel = m.matmul(&m.log().transpose(0, 1));
            let diag = kernel.diagonal(0, 0, 1);
            (diag.unsqueeze(1) + diag.unsqueeze(0) - &kernel - kernel.transpose(0, 1)) / channels
        }
    };
    Ok(upper_triangle(&full, n))
}

/// ‖xᵢ − xⱼ‖² for every pair, clamped at 0 against rounding.
pub fn squared_distances(x: &Tensor) -> Tensor {
    let sq = x.square().sum_dim_intlist(1, true, Kind::Double);
    let d: Tensor = &sq + sq.transpose(0, 1) - 2.0 * x.matmul(&x.transpose(0, 1));
    d.clamp_min(0.0)
}

fn unit_rows(x: &Tensor, what: &str) -> Result<Tensor> {
    let norms = x.square().sum_dim_intlist(1, false, Kind::Double).sqrt();
    let zero = norms.eq(0.0).nonzero();
    if zero.size()[0] > 0 {
        let i = zero.int64_value(&[0, 0]);
        return Err(EngineError::invalid(format!(
            "stimulus {i} has a constant response pattern; {what} distance is undefined for it"
        )));
    }
    Ok(x / norms.unsqueeze(1))
}

/// The strict upper triangle of an n×n matrix, row by row.
pub fn upper_triangle(m: &Tensor, n: i64) -> Tensor {
    let idx = Tensor::triu_indices(n, n, 1, (Kind::Int64, m.device()));
    let flat = idx.get(0) * n + idx.get(1);
    m.reshape([-1]).index_select(0, &flat)
}

/// Noise precision (channels × channels) from the residuals of
/// `reps` (repetitions × stimuli × channels) around each stimulus's mean,
/// as rsatoolbox's `prec_from_residuals(..., method="shrinkage_eye")` with
/// dof = observations − stimuli.
pub fn noise_precision(reps: &Tensor, noise: NoiseModel) -> Result<Tensor> {
    let d = reps.size()[2];
    if noise == NoiseModel::Identity {
        return Ok(Tensor::eye(d, (Kind::Double, reps.device())));
    }
    let (r, n) = (reps.size()[0], reps.size()[1]);
    let resid = (reps - reps.mean_dim(0, true, Kind::Double)).reshape([r * n, d]);
    let resid = &resid - resid.mean_dim(0, true, Kind::Double);
    let rows = (r * n) as f64;
    let dof = rows - n as f64;
    let s = resid.transpose(0, 1).matmul(&resid) / rows;
    let sq = resid.square();
    let b2 = ((sq.transpose(0, 1).matmul(&sq) / rows - s.square()).sum(Kind::Double) / rows)
        .double_value(&[]);
    let m = s.diagonal(0, 0, 1).sum(Kind::Double).double_value(&[]) / d as f64;
    let eye = Tensor::eye(d, (Kind::Double, reps.device()));
    let d2 = (&s - &eye * m).square().sum(Kind::Double).double_value(&[]);
    let b2 = b2.min(d2);
    let shrunk = (&eye * (b2 / d2 * m) + &s * ((d2 - b2) / d2)) * (rows / dof);
    Ok(shrunk.f_inverse()?)
}

/// The RDM of `x`, which keeps its repetitions (reps × stimuli × channels)
/// when it has them: Mahalanobis-type methods use them, the others use the
/// repetition mean.
pub fn rdm_with_reps(x: &Tensor, method: RdmMethod, noise: NoiseModel) -> Result<Tensor> {
    let x = &x.to_kind(Kind::Double);
    if !method.needs_repetitions() {
        let mean = if x.dim() == 3 {
            x.mean_dim(0, false, Kind::Double)
        } else {
            x.shallow_clone()
        };
        return rdm(&mean, method);
    }
    if x.dim() != 3 || x.size()[0] < 2 {
        return Err(EngineError::invalid(format!(
            "{method:?} RDMs need repetitions × stimuli × channels with at least 2 repetitions, got shape {:?}; \
             set rdm_a for a side without repetitions",
            x.size()
        )));
    }
    let (r, n, d) = (x.size()[0], x.size()[1], x.size()[2] as f64);
    let prec = noise_precision(x, noise)?;
    let full = match method {
        RdmMethod::Mahalanobis => {
            let m = x.mean_dim(0, false, Kind::Double);
            let k = m.matmul(&prec).matmul(&m.transpose(0, 1));
            let diag = k.diagonal(0, 0, 1);
            (diag.unsqueeze(0) + diag.unsqueeze(1) - 2.0 * k) / d
        }
        _ => {
            // Each repetition as the test fold against the mean of the rest.
            let total = x.sum_dim_intlist(0, false, Kind::Double);
            let mut acc = Tensor::zeros([n, n], (Kind::Double, x.device()));
            for i in 0..r {
                let test = x.get(i);
                let train = (&total - &test) / (r - 1) as f64;
                let k = train.matmul(&prec).matmul(&test.transpose(0, 1));
                let diag = k.diagonal(0, 0, 1);
                acc += diag.unsqueeze(0) + diag.unsqueeze(1) - &k - k.transpose(0, 1);
            }
            acc / (r as f64 * d)
        }
    };
    Ok(upper_triangle(&full, n))
}
