//! Built-in sample data, so demos and tests run on a fresh machine with no
//! downloads: stimulus sets (gratings and plaids, Gabor patches, translated and
//! rotated shapes, dead-leaves images) and a simulated V1 recording (a Gabor filter bank, divisive
//! normalization across the bank, the LIF rate function, Poisson spike
//! counts over repetitions) whose generating parameters are returned, so
//! tests can check that ceilings and scores behave as the truth says.
//! All randomness comes from SplitMix64 seeds.

pub mod images;
pub mod neurons;
pub mod v1;

use crate::splits::SplitMix64;

/// Uniform in [0, 1) from 53 random bits.
pub(crate) fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
