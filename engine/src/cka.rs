//! Centered kernel alignment (Kornblith et al. 2019) with linear and RBF
//! kernels, biased (HSIC with the centering matrix) or debiased (the
//! unbiased HSIC estimator of Song et al. 2012, Kornblith's `unbiased=True`).
//! The feature-space and Gram forms of linear CKA are equal; the cheaper one
//! is chosen from the shapes.

use neuralign_core::catalog::{MedianOf, RbfCkaOptions};
use tch::{Kind, Tensor};

use crate::rdm::squared_distances;

fn scalar(t: Tensor) -> f64 {
    t.double_value(&[])
}

/// Centers a Gram matrix: HKH, or the unbiased variant (zero diagonal, then
/// row/column means corrected for it).
pub fn center_gram(k: &Tensor, unbiased: bool) -> Tensor {
    let n = k.size()[0];
    if unbiased {
        let eye = Tensor::eye(n, (Kind::Bool, k.device()));
        let k = k.masked_fill(&eye, 0.0);
        let means = k.sum_dim_intlist(0, false, Kind::Double) / (n as f64 - 2.0);
        let means = &means - means.sum(Kind::Double) / (2.0 * (n as f64 - 1.0));
        (k - means.unsqueeze(1) - means.unsqueeze(0)).masked_fill(&eye, 0.0)
    } else {
        let means = k.mean_dim(0, false, Kind::Double);
        let means = &means - means.mean(Kind::Double) / 2.0;
        k - means.unsqueeze(1) - means.unsqueeze(0)
    }
}

/// CKA from two Gram matrices.
pub fn gram_cka(k: &Tensor, l: &Tensor, debiased: bool) -> f64 {
    let (k, l) = (center_gram(k, debiased), center_gram(l, debiased));
    let hsic = (&k * &l).sum(Kind::Double);
    scalar(hsic / (k.square().sum(Kind::Double).sqrt() * l.square().sum(Kind::Double).sqrt()))
}

/// Linear CKA of two stimulus × feature matrices.
pub fn linear_cka(x: &Tensor, y: &Tensor, debiased: bool) -> f64 {
    let n = x.size()[0];
    let (dx, dy) = (x.size()[1], y.size()[1]);
    let feature_cost = n * (dx * dy + dx * dx + dy * dy);
    let gram_cost = n * n * (dx + dy + 1);
    if feature_cost > gram_cost {
        return gram_cka(
            &x.matmul(&x.transpose(0, 1)),
            &y.matmul(&y.transpose(0, 1)),
            debiased,
        );
    }
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let yc = y - y.mean_dim(0, true, Kind::Double);
    let xy = scalar(yc.transpose(0, 1).matmul(&xc).square().sum(Kind::Double));
    let xx = scalar(xc.transpose(0, 1).matmul(&xc).square().sum(Kind::Double));
    let yy = scalar(yc.transpose(0, 1).matmul(&yc).square().sum(Kind::Double));
    if !debiased {
        return xy / (xx.sqrt() * yy.sqrt());
    }
    // Kornblith et al.'s feature-space form of the unbiased estimator.
    let nf = n as f64;
    let rows_x = xc.square().sum_dim_intlist(1, false, Kind::Double);
    let rows_y = yc.square().sum_dim_intlist(1, false, Kind::Double);
    let (sx, sy) = (
        scalar(rows_x.sum(Kind::Double)),
        scalar(rows_y.sum(Kind::Double)),
    );
    let helper = |dot: f64, ra: &Tensor, rb: &Tensor, na: f64, nb: f64| {
        dot - nf / (nf - 2.0) * scalar(ra.dot(rb)) + na * nb / ((nf - 1.0) * (nf - 2.0))
    };
    let num = helper(xy, &rows_x, &rows_y, sx, sy);
    let den_x = helper(xx, &rows_x, &rows_x, sx, sx);
    let den_y = helper(yy, &rows_y, &rows_y, sy, sy);
    num / (den_x.sqrt() * den_y.sqrt())
}

/// The RBF Gram matrix with bandwidth set by the median squared distance.
pub fn rbf_gram(x: &Tensor, threshold: f64, median: MedianOf) -> Tensor {
    let n = x.size()[0];
    let d2 = squared_distances(x);
    let med = match median {
        MedianOf::AllPairs => numpy_median(&d2.reshape([-1])),
        MedianOf::OffDiagonal => {
            let off = Tensor::eye(n, (Kind::Bool, x.device())).logical_not();
            numpy_median(&d2.masked_select(&off))
        }
    };
    (d2 / (-2.0 * threshold * threshold * med)).exp()
}

/// NumPy's median: the mean of the two middle values for even counts.
fn numpy_median(v: &Tensor) -> f64 {
    let n = v.size()[0];
    let (sorted, _) = v.sort(0, false);
    if n % 2 == 1 {
        sorted.double_value(&[n / 2])
    } else {
        (sorted.double_value(&[n / 2 - 1]) + sorted.double_value(&[n / 2])) / 2.0
    }
}

pub fn rbf_cka(x: &Tensor, y: &Tensor, o: &RbfCkaOptions) -> f64 {
    gram_cka(
        &rbf_gram(x, o.threshold, o.median),
        &rbf_gram(y, o.threshold, o.median),
        o.debiased,
    )
}
