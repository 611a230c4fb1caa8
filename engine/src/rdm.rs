//! Representational dissimilarity matrices, vectorized as the strict upper
//! triangle in row-major order (scipy's `squareform` / rsatoolbox order).

use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};

/// Correlation distance `1 - r` between every pair of stimulus patterns
/// (rows of `x`, stimuli × features), as the upper-triangle vector.
pub fn correlation_rdm(x: &Tensor) -> Result<Tensor> {
    let n = x.size()[0];
    let centered = x - x.mean_dim(1, true, Kind::Double);
    let norms = centered
        .square()
        .sum_dim_intlist(1, false, Kind::Double)
        .sqrt();
    let zero = norms.eq(0.0).nonzero();
    if zero.size()[0] > 0 {
        let i = zero.int64_value(&[0, 0]);
        return Err(EngineError::invalid(format!(
            "stimulus {i} has a constant response pattern; correlation distance is undefined for it"
        )));
    }
    let z = centered / norms.unsqueeze(1);
    let corr = z.matmul(&z.transpose(0, 1));
    Ok(upper_triangle(&(1.0 - corr), n))
}

/// The strict upper triangle of an n×n matrix, row by row.
pub fn upper_triangle(m: &Tensor, n: i64) -> Tensor {
    let idx = Tensor::triu_indices(n, n, 1, (Kind::Int64, m.device()));
    let flat = idx.get(0) * n + idx.get(1);
    m.reshape([-1]).index_select(0, &flat)
}
