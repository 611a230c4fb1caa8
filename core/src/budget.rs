//! Memory estimates for a comparison, from shapes and metrics alone, so a
//! job that cannot fit is refused at submit with the numbers that explain
//! why, instead of dying on a worker. Estimates are upper-bound-ish sums of
//! the largest tensors each metric materializes (float64), not measurements.

use crate::catalog::Metric;
use crate::inference::{BootstrapSpec, ReduceSpec};

const F64: u64 = 8;

/// Bytes the largest step of one metric needs for n stimuli and widths p, q.
pub fn metric_bytes(m: &Metric, n: u64, p: u64, q: u64) -> u64 {
    let gram = n * n * F64;
    let rdm_pairs = n * (n.saturating_sub(1)) / 2;
    match m {
        Metric::Rsa(_) => 2 * n * (p.max(q)) * F64 + 4 * gram + 4 * rdm_pairs * F64,
        Metric::LinearCka(_) => {
            // The cheaper of the feature-space and Gram forms.
            let feature = (p * p + q * q + p * q) * F64;
            let gram_form = 3 * gram;
            (n * (p + q)) * F64 + feature.min(gram_form)
        }
        Metric::RbfCka(_) | Metric::MutualKnn(_) => n * (p + q) * F64 + 6 * gram,
        Metric::Cca(_) | Metric::Svcca(_) | Metric::Pwcca(_) => {
            3 * n * (p + q) * F64 + (p.min(n) * q.min(n)) * F64
        }
        Metric::Ridge(o) => {
            let k = n.min(p);
            let kernel = if p > n { 3 * gram } else { 3 * p * p * F64 };
            n * (p + q) * F64 + kernel + o.alphas.len() as u64 * k * q * F64 * 2
        }
        Metric::Pls(_) => 3 * n * p * F64 + p * q * F64 + q * q * F64,
        Metric::OneToOne(_) => 2 * n * (p + q) * F64 + p * q * F64,
        Metric::Procrustes(_) => 3 * n * p.max(q) * F64 + 3 * p.max(q) * p.max(q) * F64,
    }
}

/// Extra bytes the stimulus bootstrap's batched RSA path holds at once.
pub fn bootstrap_bytes(b: &BootstrapSpec, n: u64) -> u64 {
    let pairs = n * n.saturating_sub(1) / 2;
    64.min(b.samples as u64) * pairs * 6 * 4
}

/// Estimated peak for a comparison after any reduction.
pub fn estimate(
    metrics: &[Metric],
    n: u64,
    p: u64,
    q: u64,
    reduce: Option<&ReduceSpec>,
    bootstrap: Option<&BootstrapSpec>,
) -> u64 {
    let p = reduce.map_or(p, |r| p.min(r.k as u64));
    let inputs = 2 * n * (p + q) * F64;
    let peak = metrics
        .iter()
        .map(|m| metric_bytes(m, n, p, q))
        .max()
        .unwrap_or(0);
    inputs + peak + bootstrap.map_or(0, |b| bootstrap_bytes(b, n))
}

pub fn human(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
