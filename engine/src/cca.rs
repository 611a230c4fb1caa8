//! Canonical correlation analysis and its descendants. Canonical
//! correlations are the singular values of Qxᵀ Qy, where Q spans each
//! centered representation's column space (from a rank-revealing SVD, so
//! N < D and collinear features are handled).

use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};

/// An orthonormal basis of the centered column space, and its rank.
fn basis(x: &Tensor, what: &str) -> Result<Tensor> {
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let (u, s, _) = xc.f_svd(true, true)?;
    let n = x.size()[0].max(x.size()[1]) as f64;
    let tol = s.max().double_value(&[]) * n * f64::EPSILON;
    let rank = s.gt(tol).sum(Kind::Int64).int64_value(&[]);
    if rank == 0 {
        return Err(EngineError::invalid(format!(
            "{what}: every feature is constant across stimuli"
        )));
    }
    Ok(u.narrow(1, 0, rank))
}

/// Canonical correlations (descending) and the canonical variates of `x`
/// in stimulus space.
fn canonical(qx: &Tensor, qy: &Tensor) -> Result<(Tensor, Tensor)> {
    let (u, s, _) = qx.transpose(0, 1).matmul(qy).f_svd(true, true)?;
    let k = s.size()[0];
    Ok((s.clamp(0.0, 1.0), qx.matmul(&u.narrow(1, 0, k))))
}

/// Mean squared canonical correlation, R²_CCA.
pub fn mean_sq_cca(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (rho, _) = canonical(&basis(x, "a")?, &basis(y, "b")?)?;
    Ok(rho.square().mean(Kind::Double).double_value(&[]))
}

/// Projects centered `x` onto its top principal components keeping
/// `variance_kept` of the variance.
fn top_components(x: &Tensor, variance_kept: f64) -> Result<Tensor> {
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let (u, s, _) = xc.f_svd(true, true)?;
    let var = s.square();
    let frac = var.cumsum(0, Kind::Double) / var.sum(Kind::Double);
    // The smallest k whose cumulative fraction reaches the target.
    let k = frac
        .lt(variance_kept - 1e-12)
        .sum(Kind::Int64)
        .int64_value(&[])
        + 1;
    let k = k.min(s.size()[0]);
    Ok(u.narrow(1, 0, k) * s.narrow(0, 0, k))
}

/// SVCCA: mean canonical correlation after reducing each side to the
/// principal components keeping `variance_kept` of its variance.
pub fn svcca(x: &Tensor, y: &Tensor, variance_kept: f64) -> Result<f64> {
    let (rx, ry) = (
        top_components(x, variance_kept)?,
        top_components(y, variance_kept)?,
    );
    let (rho, _) = canonical(&basis(&rx, "a")?, &basis(&ry, "b")?)?;
    Ok(rho.mean(Kind::Double).double_value(&[]))
}

/// PWCCA (Morcos et al. 2018): Σ αᵢ ρᵢ with αᵢ ∝ Σⱼ |⟨hᵢ, xⱼ⟩|, hᵢ the unit
/// canonical variates of `x` and xⱼ its centered features.
pub fn pwcca(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (rho, h) = canonical(&basis(x, "a")?, &basis(y, "b")?)?;
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let alpha = h
        .transpose(0, 1)
        .matmul(&xc)
        .abs()
        .sum_dim_intlist(1, false, Kind::Double);
    let alpha = &alpha / alpha.sum(Kind::Double);
    Ok((alpha * rho).sum(Kind::Double).double_value(&[]))
}
