//! Uncertainty and reliability requested with a comparison: bootstrap
//! confidence intervals, permutation p-values and the split-half noise
//! ceiling with an explicit normalization formula. Typed, validated specs;
//! the engine implements them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bootstrap over stimuli: resample stimuli with replacement, recompute.
/// For RDM metrics a resampled stimulus paired with its own copy is dropped
/// (its dissimilarity would be a spurious zero), as rsatoolbox does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSpec {
    #[serde(default = "BootstrapSpec::default_samples")]
    pub samples: usize,
    #[serde(default)]
    pub seed: u64,
    /// Central interval reported as `ci` (percentile method).
    #[serde(default = "BootstrapSpec::default_confidence")]
    pub confidence: f64,
    /// What is resampled: stimuli (both arrays' rows), or neurons (b's columns).
    #[serde(default)]
    pub over: ResampleOver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResampleOver {
    #[default]
    Stimuli,
    Neurons,
}

impl BootstrapSpec {
    fn default_samples() -> usize {
        1000
    }
    fn default_confidence() -> f64 {
        0.95
    }
}

/// Permutation test: stimulus labels of `b` shuffled, p = (1 + #{null ≥ observed}) / (1 + count).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermutationSpec {
    #[serde(default = "PermutationSpec::default_count")]
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
}

impl PermutationSpec {
    fn default_count() -> usize {
        1000
    }
}

/// How a raw score r is divided by a ceiling c.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// r / c
    ROverC,
    /// (r / c)²
    ROverCSquared,
    /// r² / c (Brain-Score since 2026)
    R2OverC,
}

impl Normalization {
    pub fn apply(self, r: f64, c: f64) -> f64 {
        match self {
            Normalization::ROverC => r / c,
            Normalization::ROverCSquared => (r / c).powi(2),
            Normalization::R2OverC => r * r / c,
        }
    }
    pub fn formula(self) -> &'static str {
        match self {
            Normalization::ROverC => "r / c",
            Normalization::ROverCSquared => "(r / c)^2",
            Normalization::R2OverC => "r^2 / c",
        }
    }
}

/// Where the ceiling comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CeilingMethod {
    /// Split-half reliability over b's repetitions (first axis), Spearman–Brown corrected.
    #[default]
    SplitHalf,
    /// RSA only: b's first axis holds subjects; lower bound = mean over subjects of the
    /// comparison with the pooled RDM of the others, upper = with the pooled RDM of all
    /// (rsatoolbox's `boot_noise_ceiling`); normalization uses the upper bound.
    Subjects,
}

/// Split-half reliability of `b` over its repetitions: many random halvings
/// of the repetitions, each half averaged, the halves correlated across
/// stimuli, Spearman–Brown corrected (2r / (1 + r)), averaged over splits.
/// For `ridge` the ceiling is per neuron and its median is reported; for
/// other metrics the halves are compared with the metric itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CeilingSpec {
    #[serde(default)]
    pub method: CeilingMethod,
    #[serde(default = "CeilingSpec::default_splits")]
    pub splits: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "CeilingSpec::default_normalization")]
    pub normalization: Normalization,
}

impl CeilingSpec {
    fn default_splits() -> usize {
        100
    }
    fn default_normalization() -> Normalization {
        Normalization::ROverC
    }
}

/// Reduce a's features (the model side) to k dimensions before comparing,
/// when it has more than k; b (neurons, the prediction targets) is never
/// reduced. Declared in the job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    pub method: ReduceMethod,
    pub k: usize,
    /// Seed of the random projection.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReduceMethod {
    /// Projection on the top k principal components (centered, via the smaller Gram matrix).
    Pca,
    /// Gaussian random projection scaled by 1/sqrt(k) (Johnson–Lindenstrauss; distances preserved in expectation).
    RandomProjection,
}

/// Checks the specs' numbers, naming the field.
pub fn validate(
    b: Option<&BootstrapSpec>,
    p: Option<&PermutationSpec>,
    c: Option<&CeilingSpec>,
) -> Result<()> {
    if let Some(b) = b {
        if !(10..=100_000).contains(&b.samples) {
            return Err(Error::invalid(format!(
                "bootstrap.samples: must be between 10 and 100000, got {}",
                b.samples
            )));
        }
        if !(b.confidence > 0.0 && b.confidence < 1.0) {
            return Err(Error::invalid(format!(
                "bootstrap.confidence: must be in (0, 1), got {}",
                b.confidence
            )));
        }
    }
    if let Some(p) = p {
        if !(1..=100_000).contains(&p.count) {
            return Err(Error::invalid(format!(
                "permutation.count: must be between 1 and 100000, got {}",
                p.count
            )));
        }
    }
    if let Some(c) = c {
        if !(1..=10_000).contains(&c.splits) {
            return Err(Error::invalid(format!(
                "ceiling.splits: must be between 1 and 10000, got {}",
                c.splits
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_formulas_and_names() {
        assert_eq!(Normalization::ROverC.apply(0.3, 0.6), 0.5);
        assert!((Normalization::ROverCSquared.apply(0.3, 0.6) - 0.25).abs() < 1e-15);
        assert!((Normalization::R2OverC.apply(0.3, 0.6) - 0.15).abs() < 1e-15);
        let names: Vec<&str> = [
            Normalization::ROverC,
            Normalization::ROverCSquared,
            Normalization::R2OverC,
        ]
        .iter()
        .map(|n| n.formula())
        .collect();
        assert_eq!(names, ["r / c", "(r / c)^2", "r^2 / c"]);
        let parsed: Normalization = serde_json::from_str("\"r2_over_c\"").unwrap();
        assert_eq!(parsed, Normalization::R2OverC);
    }

    #[test]
    fn specs_are_range_checked() {
        let b = BootstrapSpec {
            samples: 5,
            seed: 0,
            confidence: 0.95,
            over: ResampleOver::Stimuli,
        };
        assert!(validate(Some(&b), None, None)
            .unwrap_err()
            .to_string()
            .contains("bootstrap.samples"));
        let b = BootstrapSpec {
            samples: 100,
            seed: 0,
            confidence: 1.0,
            over: ResampleOver::Stimuli,
        };
        assert!(validate(Some(&b), None, None)
            .unwrap_err()
            .to_string()
            .contains("bootstrap.confidence"));
        let p = PermutationSpec { count: 0, seed: 0 };
        assert!(validate(None, Some(&p), None)
            .unwrap_err()
            .to_string()
            .contains("permutation.count"));
    }
}
