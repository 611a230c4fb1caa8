//! Memory estimates for a comparison, from shapes and metrics alone, so a
//! job that cannot fit is refused at submit with the numbers that explain
//! why, instead of dying on a worker. Estimates are upper-bound-ish sums of
//! the largest tensors each metric materializes (float64), not measurements.

use crate::architecture::Pooling;
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

/// Bytes extraction may give one batch of forward passes on a device.
pub fn extraction_budget(on_gpu: bool) -> u64 {
    if on_gpu {
        8 << 30
    } else {
        2 << 30
    }
}

/// Features one stimulus gives a layer after pooling: channels of a
/// C × H × W map under avg/max pooling, every unit otherwise.
pub fn pooled_width(shape: &[i64], pooling: Pooling) -> u64 {
    let units = shape.iter().map(|&d| d.max(0) as u64).product::<u64>();
    match (shape, pooling) {
        ([c, _, _], Pooling::Avg | Pooling::Max) => (*c).max(0) as u64,
        _ => units,
    }
}

/// A score job's memory for one benchmark, estimated at submit from the
/// model's probed layer shapes, the stimulus set and the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ScoreEstimate {
    /// The stimulus set as float32.
    pub stimuli: u64,
    /// Every pooled layer held at once (float32), plus the widest in
    /// float64 twice: a benchmark's layers are scored as pieces, two at a
    /// time when a core is free.
    pub activations: u64,
    /// Forward passes: whole-batch layer outputs, at most the batch budget.
    pub extraction: u64,
    /// The metric's largest step on the widest layer (report half), for two
    /// pieces at once, plus the selected layer's bootstrap.
    pub metric: u64,
    /// Stimuli and activations plus the larger of extraction and metric,
    /// which never run at the same time.
    pub total: u64,
}

/// What a score of `layers` needs: `n_set` stimuli of `stimulus_units`
/// values each, a recording of `n_rec` stimuli × `neurons`.
#[allow(clippy::too_many_arguments)]
pub fn score_estimate(
    layers: &[(&str, &[i64])],
    pooling: Pooling,
    n_set: u64,
    stimulus_units: u64,
    n_rec: u64,
    neurons: u64,
    metric: &Metric,
    reduce: Option<&ReduceSpec>,
    bootstrap: Option<&BootstrapSpec>,
    batch_budget: u64,
) -> ScoreEstimate {
    const F32: u64 = 4;
    let widths: Vec<u64> = layers
        .iter()
        .map(|(_, s)| pooled_width(s, pooling))
        .collect();
    let widest = widths.iter().copied().max().unwrap_or(0);
    let units: u64 = layers
        .iter()
        .map(|(_, s)| s.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum();
    let stimuli = n_set * stimulus_units * F32;
    let activations = n_set * widths.iter().sum::<u64>() * F32 + 2 * n_rec * widest * F64;
    let extraction = (n_set * units * F32).min(batch_budget);
    let half = n_rec - n_rec / 2;
    let p = reduce.map_or(widest, |r| widest.min(r.k as u64));
    let piece = 2 * half * (p + neurons) * F64 + metric_bytes(metric, half, p, neurons);
    let metric = 2 * piece + bootstrap.map_or(0, |b| bootstrap_bytes(b, half));
    ScoreEstimate {
        stimuli,
        activations,
        extraction,
        metric,
        total: stimuli + activations + extraction.max(metric),
    }
}
