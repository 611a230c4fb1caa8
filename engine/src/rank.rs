//! Ranks with ties averaged (scipy's `rankdata(method="average")`), and the
//! correlations built on them.

use tch::{Kind, Tensor};

/// Values closer than this, relative to the largest magnitude, are ties.
/// Dissimilarities that are equal in exact arithmetic (common with spike
/// counts) come out of floating point a few ulps apart, in an order that
/// depends on the BLAS; without a tolerance their ranks would be decided by
/// rounding.
pub const TIE_TOLERANCE: f64 = 1e-12;

/// Runs of near-equal values (consecutive sorted differences within the
/// tolerance), from one sort: the sort order, and each sorted value's run.
struct TieRuns {
    sorted: Tensor,
    order: Tensor,
    /// Marks the first value of each run, in sorted order.
    first: Tensor,
    /// The run of each value, in sorted order (0-based).
    run: Tensor,
}

fn tie_runs(x: &Tensor) -> TieRuns {
    let n = x.size()[0];
    let (sorted, order) = x.sort(0, false);
    let tol = TIE_TOLERANCE * x.abs().max().double_value(&[]);
    let gaps = (sorted.slice(0, 1, n, 1) - sorted.slice(0, 0, n - 1, 1)).gt(tol);
    let first = Tensor::cat(&[Tensor::ones([1], (Kind::Bool, x.device())), gaps], 0);
    let run = first.to_kind(Kind::Int64).cumsum(0, Kind::Int64) - 1;
    TieRuns {
        sorted,
        order,
        first,
        run,
    }
}

/// Replaces each run of near-equal values (consecutive sorted differences
/// within the tolerance) by the run's smallest value.
pub fn snap_ties(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    if n < 2 {
        return x.shallow_clone();
    }
    let r = tie_runs(x);
    let snapped = r.sorted.masked_select(&r.first).index_select(0, &r.run);
    Tensor::zeros([n], (Kind::Double, x.device())).scatter(0, &r.order, &snapped)
}

/// 1-based average ranks of a 1-D tensor, ties (within the tolerance)
/// averaged. One sort: a run of near-equal values is one tie group.
pub fn average_ranks(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    if n < 2 {
        return Tensor::ones([n], (Kind::Double, dev));
    }
    let r = tie_runs(x);
    let counts = r.run.bincount::<Tensor>(None, 0).to_kind(Kind::Double);
    let starts = counts.cumsum(0, Kind::Double) - &counts;
    let avg = starts + (&counts - 1.0) / 2.0 + 1.0;
    let ranks_sorted = avg.index_select(0, &r.run);
    Tensor::zeros([n], (Kind::Double, dev)).scatter(0, &r.order, &ranks_sorted)
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
