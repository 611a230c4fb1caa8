//! Centered kernel alignment (Kornblith et al. 2019), linear kernel.
//! The feature-space and Gram forms are algebraically equal; the cheaper
//! one is chosen from the shapes.

use tch::{Kind, Tensor};

/// Linear CKA of two stimulus × feature matrices with the same stimuli.
pub fn linear_cka(x: &Tensor, y: &Tensor) -> f64 {
    let n = x.size()[0];
    let (dx, dy) = (x.size()[1], y.size()[1]);
    let xc = x - x.mean_dim(0, true, Kind::Double);
    let yc = y - y.mean_dim(0, true, Kind::Double);
    let feature_cost = n * (dx * dy + dx * dx + dy * dy);
    let gram_cost = n * n * (dx + dy + 1);
    let (num, den) = if feature_cost <= gram_cost {
        let xy = yc.transpose(0, 1).matmul(&xc).square().sum(Kind::Double);
        let xx = xc
            .transpose(0, 1)
            .matmul(&xc)
            .square()
            .sum(Kind::Double)
            .sqrt();
        let yy = yc
            .transpose(0, 1)
            .matmul(&yc)
            .square()
            .sum(Kind::Double)
            .sqrt();
        (xy, xx * yy)
    } else {
        let k = xc.matmul(&xc.transpose(0, 1));
        let l = yc.matmul(&yc.transpose(0, 1));
        let kl = (&k * &l).sum(Kind::Double);
        (
            kl,
            k.square().sum(Kind::Double).sqrt() * l.square().sum(Kind::Double).sqrt(),
        )
    };
    (num / den).double_value(&[])
}
