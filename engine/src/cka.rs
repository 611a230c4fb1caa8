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

/// The nine scalars both linear CKA estimators need in feature-space form;
/// computing them is the expensive part (three matrix products), so a
/// comparison that asks for both estimators computes them once.
#[derive(Debug, Clone, Copy)]
pub struct LinearStats {
    n: f64,
    xy: f64,
    xx: f64,
    yy: f64,
    rxry: f64,
    rxrx: f64,
    ryry: f64,
    sx: f64,
    sy: f64,
}

impl LinearStats {
    pub fn new(x: &Tensor, y: &Tensor) -> Self {
        // Products in the inputs' precision (float32 mode stays float32 on
        // the matrix units); every reduction accumulates in float64.
        let kind = if x.kind() == y.kind() {
            x.kind()
        } else {
            Kind::Double
        };
        let (x, y) = (&x.to_kind(kind), &y.to_kind(kind));
        let xc = x - x.mean_dim(0, true, kind);
        let yc = y - y.mean_dim(0, true, kind);
        let rx = xc.square().sum_dim_intlist(1, false, Kind::Double);
        let ry = yc.square().sum_dim_intlist(1, false, Kind::Double);
        LinearStats {
            n: x.size()[0] as f64,
            xy: scalar(yc.transpose(0, 1).matmul(&xc).square().sum(Kind::Double)),
            xx: scalar(xc.transpose(0, 1).matmul(&xc).square().sum(Kind::Double)),
            yy: scalar(yc.transpose(0, 1).matmul(&yc).square().sum(Kind::Double)),
            rxry: scalar(rx.dot(&ry)),
            rxrx: scalar(rx.dot(&rx)),
            ryry: scalar(ry.dot(&ry)),
            sx: scalar(rx.sum(Kind::Double)),
            sy: scalar(ry.sum(Kind::Double)),
        }
    }

    pub fn value(&self, debiased: bool) -> f64 {
        if !debiased {
            return self.xy / (self.xx.sqrt() * self.yy.sqrt());
        }
        // Kornblith et al.'s feature-space form of the unbiased estimator.
        let n = self.n;
        let h = |dot: f64, rows: f64, na: f64, nb: f64| {
            dot - n / (n - 2.0) * rows + na * nb / ((n - 1.0) * (n - 2.0))
        };
        let num = h(self.xy, self.rxry, self.sx, self.sy);
        num / (h(self.xx, self.rxrx, self.sx, self.sx).sqrt()
            * h(self.yy, self.ryry, self.sy, self.sy).sqrt())
    }
}

/// True when the feature-space form is cheaper than the Gram form.
pub fn feature_form(x: &Tensor, y: &Tensor) -> bool {
    let n = x.size()[0];
    let (dx, dy) = (x.size()[1], y.size()[1]);
    n * (dx * dy + dx * dx + dy * dy) <= n * n * (dx + dy + 1)
}

/// Linear CKA of two stimulus × feature matrices.
pub fn linear_cka(x: &Tensor, y: &Tensor, debiased: bool) -> f64 {
    if feature_form(x, y) {
        LinearStats::new(x, y).value(debiased)
    } else {
        gram_cka(
            &x.matmul(&x.transpose(0, 1)),
            &y.matmul(&y.transpose(0, 1)),
            debiased,
        )
    }
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
