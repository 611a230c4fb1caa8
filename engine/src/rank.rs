//! Ranks with ties averaged (scipy's `rankdata(method="average")`), and the
//! correlations built on them.

use tch::{Kind, Tensor};

/// 1-based average ranks of a 1-D tensor.
pub fn average_ranks(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let (sorted, order) = x.sort(0, false);
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

/// Pearson correlation of two 1-D float64 tensors.
pub fn pearson(x: &Tensor, y: &Tensor) -> f64 {
    let xc = x - x.mean(Kind::Double);
    let yc = y - y.mean(Kind::Double);
    let num = (&xc * &yc).sum(Kind::Double);
    let den = ((&xc * &xc).sum(Kind::Double) * (&yc * &yc).sum(Kind::Double)).sqrt();
    (num / den).double_value(&[])
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(x: &Tensor, y: &Tensor) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}
