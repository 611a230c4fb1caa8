//! Representational dissimilarity matrices, vectorized as the strict upper
//! triangle in row-major order (scipy's `squareform` / rsatoolbox order).
//! Each method follows the reference it is named after; see the catalogue.

use neuralign_core::catalog::RdmMethod;
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};

/// The RDM of `x` (stimuli × channels) as its upper-triangle vector.
pub fn rdm(x: &Tensor, method: RdmMethod) -> Result<Tensor> {
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
