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

pub fn mutual_knn(x: &Tensor, y: &Tensor, k: usize) -> f64 {
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
