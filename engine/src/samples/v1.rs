//! A simulated V1 recording: each neuron is a Gabor filter (random
//! orientation, spatial frequency, phase and position), half-rectified,
//! divisively normalized across the whole bank, turned into a firing rate by
//! the LIF f–I curve, and observed as Poisson spike counts in a time bin over
//! repetitions. The generating parameters come back with the data.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::images::grid;
use super::neurons::{divisive_normalization, Lif};
use super::uniform;
use crate::error::{EngineError, Result};
use crate::splits::SplitMix64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V1Params {
    pub neurons: usize,
    pub repetitions: usize,
    /// Counting window, seconds.
    pub bin: f64,
    /// Divisive normalization: semi-saturation σ and exponent n.
    pub sigma: f64,
    pub exponent: f64,
    /// Current per unit of normalized drive, and a constant offset.
    pub gain: f64,
    pub bias: f64,
    pub lif: Lif,
    /// Spatial frequencies are drawn uniformly from this range (cycles per image).
    pub freq_range: (f64, f64),
    pub seed: u64,
}

impl Default for V1Params {
    fn default() -> Self {
        V1Params {
            neurons: 100,
            repetitions: 8,
            bin: 0.1,
            sigma: 0.5,
            exponent: 2.0,
            gain: 1.5,
            bias: 0.8,
            lif: Lif::default(),
            freq_range: (2.0, 8.0),
            seed: 0,
        }
    }
}

/// One neuron's receptive field.
#[derive(Debug, Clone, Serialize)]
pub struct ReceptiveField {
    pub orientation: f64,
    pub frequency: f64,
    pub phase: f64,
    pub center: (f64, f64),
    pub sigma: f64,
}

pub struct V1Recording {
    /// repetitions × stimuli × neurons spike counts.
    pub counts: Tensor,
    /// stimuli × neurons true firing rates (Hz).
    pub rates: Tensor,
    /// stimuli × neurons normalized drive (before the LIF stage).
    pub drive: Tensor,
    pub fields: Vec<ReceptiveField>,
    pub params: V1Params,
}

/// Poisson draw by sequential inversion (means here are at most a few hundred).
fn poisson(rng: &mut SplitMix64, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let u = uniform(rng);
    let (mut k, mut p) = (0.0, (-mean).exp());
    let mut cdf = p;
    while u > cdf && k < 10_000.0 {
        k += 1.0;
        p *= mean / k;
        cdf += p;
    }
    k
}

pub fn simulate(stimuli: &Tensor, params: &V1Params) -> Result<V1Recording> {
    let dims = stimuli.size();
    if dims.len() != 4 || dims[1] != 1 || dims[2] != dims[3] {
        return Err(EngineError::invalid(format!(
            "stimuli: expected N × 1 × S × S images, got {dims:?}"
        )));
    }
    let (n, size) = (dims[0], dims[2]);
    let mut rng = SplitMix64(params.seed);
    let (x, y) = grid(size);
    let mut filters = Vec::with_capacity(params.neurons);
    let mut fields = Vec::with_capacity(params.neurons);
    for _ in 0..params.neurons {
        let f = ReceptiveField {
            orientation: PI * uniform(&mut rng),
            frequency: params.freq_range.0
                + (params.freq_range.1 - params.freq_range.0) * uniform(&mut rng),
            phase: 2.0 * PI * uniform(&mut rng),
            center: (
                uniform(&mut rng) * 0.5 - 0.25,
                uniform(&mut rng) * 0.5 - 0.25,
            ),
            sigma: 0.0,
        };
        let sigma = 0.5 / f.frequency;
        let (dx, dy) = (&x - f.center.0, &y - f.center.1);
        let envelope = ((dx.square() + dy.square()) / (-2.0 * sigma * sigma)).exp();
        let carrier = ((&dx * f.orientation.cos() + &dy * f.orientation.sin())
            * (2.0 * PI * f.frequency)
            + f.phase)
            .cos();
        let g = envelope * carrier;
        filters.push(&g / g.square().sum(Kind::Double).sqrt());
        fields.push(ReceptiveField { sigma, ..f });
    }
    let bank = Tensor::stack(&filters, 0).reshape([params.neurons as i64, -1]); // neurons × pixels
    let images = (stimuli.to_kind(Kind::Double) - 0.5).reshape([n, -1]);
    let z = images.matmul(&bank.transpose(0, 1)).clamp_min(0.0); // simple cells: half-rectified
    let drive = divisive_normalization(&z, params.sigma, params.exponent);
    let rates = params.lif.rate(&(&drive * params.gain + params.bias));
    let means = Vec::<f64>::try_from(&(&rates * params.bin).reshape([-1]))?;
    let mut counts = Vec::with_capacity(params.repetitions * means.len());
    for _ in 0..params.repetitions {
        counts.extend(means.iter().map(|&m| poisson(&mut rng, m)));
    }
    let counts =
        Tensor::from_slice(&counts).reshape([params.repetitions as i64, n, params.neurons as i64]);
    Ok(V1Recording {
        counts,
        rates,
        drive,
        fields,
        params: params.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::images::dead_leaves;

    #[test]
    fn counts_are_poisson_around_the_lif_rates() {
        let stimuli = dead_leaves(40, 32, 0.02, 0.4, 1);
        let p = V1Params {
            neurons: 30,
            repetitions: 60,
            seed: 4,
            ..V1Params::default()
        };
        let rec = simulate(&stimuli, &p).unwrap();
        assert_eq!(rec.counts.size(), vec![60, 40, 30]);
        let expected = &rec.rates * p.bin;
        let mean = rec.counts.mean_dim(0, false, Kind::Double);
        let var = rec.counts.var_dim(0, true, false);
        // Mean and variance both match λ (Poisson), up to sampling error.
        let z = ((&mean - &expected) / (&expected / 60.0).sqrt().clamp_min(1e-9)).abs();
        let frac_ok = z
            .lt(4.0)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        assert!(
            frac_ok > 0.99,
            "{frac_ok} of means within 4 standard errors"
        );
        let active = expected.gt(2.0);
        let ratio = (var.masked_select(&active) / expected.masked_select(&active))
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((0.8..1.2).contains(&ratio), "Fano factor {ratio}");
        assert!(
            rec.rates.gt(0.0).any().int64_value(&[]) == 1,
            "some neurons fire"
        );
        assert!(
            rec.rates.eq(0.0).any().int64_value(&[]) == 1,
            "and some stimuli stay below threshold"
        );
    }

    #[test]
    fn the_truth_scores_best_and_ceilings_grow_with_repetitions() {
        use neuralign_core::catalog::{Metric, MetricRequest};
        use neuralign_core::inference::{CeilingSpec, Normalization};
        let stimuli = dead_leaves(80, 32, 0.02, 0.4, 2);
        let ridge = Metric::parse(
            "m",
            &MetricRequest::WithOptions {
                id: "ridge".into(),
                options: serde_json::json!({"alphas": [0.01, 0.1, 1.0, 10.0], "folds": 4})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        )
        .unwrap();
        let ceiling = |reps: usize| {
            let rec = simulate(
                &stimuli,
                &V1Params {
                    neurons: 25,
                    repetitions: reps,
                    seed: 9,
                    ..V1Params::default()
                },
            )
            .unwrap();
            let spec = CeilingSpec {
                method: Default::default(),
                splits: 20,
                seed: 1,
                normalization: Normalization::ROverC,
            };
            let c =
                crate::inference::split_half_ceiling(&ridge, &rec.counts, &spec, &mut || Ok(()))
                    .unwrap()
                    .ceiling;
            (c, rec)
        };
        let (few, _) = ceiling(4);
        let (many, rec) = ceiling(32);
        assert!(
            many > few,
            "more repetitions, more reliable: {few} -> {many}"
        );
        // The generating drive predicts the counts better than unrelated features do.
        let counts = rec.counts.mean_dim(0, false, Kind::Double);
        let truth = crate::metrics::compute(&ridge, &rec.drive, &counts).unwrap();
        tch::manual_seed(0);
        let noise = Tensor::randn([80, 25], (Kind::Double, tch::Device::Cpu));
        let unrelated = crate::metrics::compute(&ridge, &noise, &counts).unwrap();
        assert!(
            truth > unrelated + 0.2,
            "truth {truth} vs unrelated {unrelated}"
        );
    }
}
