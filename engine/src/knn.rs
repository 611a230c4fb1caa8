//! Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic
//! Representation Hypothesis"): the mean fraction of each stimulus's k
//! nearest neighbours (cosine similarity, self excluded) shared by both
//! representations.

use tch::{Kind, Tensor};

fn neighbours(x: &Tensor, k: i64) -> Tensor {
    let n = x.size()[0];
    let norms = x
        .square()
        .sum_dim_intlist(1, true, Kind::Double)
        .sqrt()
        .clamp_min(1e-300);
    let z = x / norms;
    let sim = z
        .matmul(&z.transpose(0, 1))
        .masked_fill(&Tensor::eye(n, (Kind::Bool, x.device())), f64::NEG_INFINITY);
    sim.topk(k, 1, true, true).1
}

/// Clamps values to the q-quantile of their magnitudes (numpy's linear quantile).
pub fn clip_outliers(x: &Tensor, q: f64) -> Tensor {
    let (sorted, _) = x.abs().reshape([-1]).sort(0, false);
    let pos = q * (sorted.size()[0] - 1) as f64;
    let (lo, hi) = (pos.floor() as i64, pos.ceil() as i64);
    let (a, b) = (sorted.double_value(&[lo]), sorted.double_value(&[hi]));
    let c = a + (b - a) * (pos - lo as f64);
    x.clamp(-c, c)
}

pub fn mutual_knn(x: &Tensor, y: &Tensor, k: usize, clip_quantile: Option<f64>) -> f64 {
    let (x, y) = match clip_quantile {
        Some(q) => (clip_outliers(x, q), clip_outliers(y, q)),
        None => (x.shallow_clone(), y.shallow_clone()),
    };
    let (x, y) = (&x, &y);
    let n = x.size()[0];
    let k = k as i64;
    let (na, nb) = (neighbours(x, k), neighbours(y, k));
    let dev = x.device();
    let mask_a = Tensor::zeros([n, n], (Kind::Double, dev)).scatter_value(1, &na, 1.0);
    let mask_b = Tensor::zeros([n, n], (Kind::Double, dev)).scatter_value(1, &nb, 1.0);
    ((mask_a * mask_b).sum_dim_intlist(1, false, Kind::Double) / k as f64)
        .mean(Kind::Double)
        .double_value(&[])
}
