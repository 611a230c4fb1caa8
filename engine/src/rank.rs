//! Ranks with ties averaged (scipy's `rankdata(method="average")`), and the
//! correlations built on them.

use tch::{Kind, Tensor};

/// Values closer than this, relative to the largest magnitude, are ties.
/// Dissimilarities that are equal in exact arithmetic (common with spike
/// counts) come out of floating point a few ulps apart, in an order that
/// depends on the BLAS; without a tolerance their ranks would be decided by
/// rounding.
pub const TIE_TOLERANCE: f64 = 1e-12;

/// Replaces each run of near-equal values (consecutive sorted differences
/// within the tolerance) by the run's smallest value.
pub fn snap_ties(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    if n < 2 {
        return x.shallow_clone();
    }
    let (sorted, order) = x.sort(0, false);
    let tol = TIE_TOLERANCE * x.abs().max().double_value(&[]);
    let gaps = (sorted.slice(0, 1, n, 1) - sorted.slice(0, 0, n - 1, 1)).gt(tol);
    let new_group = Tensor::cat(&[Tensor::ones([1], (Kind::Bool, x.device())), gaps], 0);
    let group_id = new_group.to_kind(Kind::Int64).cumsum(0, Kind::Int64) - 1;
    let group_min = sorted.masked_select(&new_group);
    let snapped = group_min.index_select(0, &group_id);
    Tensor::zeros([n], (Kind::Double, x.device())).scatter(0, &order, &snapped)
}

/// 1-based average ranks of a 1-D tensor, ties (within the tolerance) averaged.
pub fn average_ranks(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let (sorted, order) = snap_ties(x).sort(0, false);
    let dev = x.device();
    let changes = sorted
        .slice(0, 1, n, 1)
        .ne_tensor(&sorted.slice(0, 0, n - 1, 1));
    let new_group = Tensor::cat(&[Tensor::ones([1], (Kind::Bool, dev)), changes], 0);
    let group_id = new_group.to_kind(Kind::Int64).cumsum(0, Kind::Int64) - 1;
    let counts = group_id.bincount::<Tensor>(None, 0).to_kind(Kind::Double);
    let starts = counts.cumsum(0, Kind::Double) - &counts;
    let avg = starts + (&counts - 1.0) / 2.0 + 1.0;
    let ranks_sorted = avg.index_select(0, &group_id);
    Tensor::zeros([n], (Kind::Double, dev)).scatter(0, &order, &ranks_sorted)
}

/// Cosine similarity of two 1-D tensors.
pub fn cosine(x: &Tensor, y: &Tensor) -> f64 {
    let num = (x * y).sum(Kind::Double);
    (num / (x.square().sum(Kind::Double) * y.square().sum(Kind::Double)).sqrt()).double_value(&[])
}

/// Pearson correlation of two 1-D float64 tensors.
pub fn pearson(x: &Tensor, y: &Tensor) -> f64 {
    cosine(&(x - x.mean(Kind::Double)), &(y - y.mean(Kind::Double)))
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(x: &Tensor, y: &Tensor) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Spearman's ρ_A as rsatoolbox defines it: 12 Σ (r − r̄)(s − s̄) / (n³ − n),
/// which equals ρ without ties and is not tie-corrected with them.
pub fn rho_a(x: &Tensor, y: &Tensor) -> f64 {
    let n = x.size()[0] as f64;
    let (r, s) = (average_ranks(x), average_ranks(y));
    let num = ((&r - r.mean(Kind::Double)) * (&s - s.mean(Kind::Double)))
        .sum(Kind::Double)
        .double_value(&[]);
    12.0 * num / (n * n * n - n)
}
