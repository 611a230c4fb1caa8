//! Scoring a linear mapping by held-out prediction, shared by ridge and
//! PLS: the outer splits, per-neuron Pearson r and R² on the test stimuli,
//! medians over neurons and mean ± SEM over splits.

use neuralign_core::catalog::ExplicitSplit;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::splits::{kfold, permutation, shuffle_splits, Split};

#[derive(Debug, Clone, Serialize)]
pub struct SplitScore {
    /// Median over neurons of the held-out Pearson r.
    pub median_r: f64,
    /// Median over neurons of the held-out R².
    pub median_r2: f64,
}

/// R² per column (scikit-learn's `r2_score`, raw values; a constant column
/// scores 1 if predicted exactly and 0 otherwise).
pub(crate) fn r2(pred: &Tensor, truth: &Tensor) -> Tensor {
    let dim = pred.dim() as i64 - 2;
    let ss_res = (truth - pred)
        .square()
        .sum_dim_intlist(dim, false, Kind::Double);
    let centered = truth - truth.mean_dim(dim, true, Kind::Double);
    let ss_tot = centered
        .square()
        .sum_dim_intlist(dim, false, Kind::Double)
        .expand_as(&ss_res);
    let r: Tensor = 1.0 - &ss_res / &ss_tot;
    let perfect = ss_res.eq(0.0).to_kind(Kind::Double);
    r.where_self(&ss_tot.ne(0.0), &perfect)
}

/// Pearson r per column; NaN where either side is constant.
pub(crate) fn pearson_columns(pred: &Tensor, truth: &Tensor) -> Tensor {
    let pc = pred - pred.mean_dim(0, true, Kind::Double);
    let tc = truth - truth.mean_dim(0, true, Kind::Double);
    let num = (&pc * &tc).sum_dim_intlist(0, false, Kind::Double);
    num / (pc.square().sum_dim_intlist(0, false, Kind::Double)
        * tc.square().sum_dim_intlist(0, false, Kind::Double))
    .sqrt()
}

pub(crate) fn nanmedian(t: &Tensor) -> f64 {
    let v = t.masked_select(&t.isnan().logical_not());
    let n = v.size()[0];
    if n == 0 {
        return f64::NAN;
    }
    let (s, _) = v.sort(0, false);
    if n % 2 == 1 {
        s.double_value(&[n / 2])
    } else {
        (s.double_value(&[n / 2 - 1]) + s.double_value(&[n / 2])) / 2.0
    }
}

/// The outer splits: explicit ones (validated), seeded shuffle splits
/// (`shuffle` = (count, test fraction)), or seeded K-fold.
pub fn outer_splits(
    n: usize,
    folds: usize,
    seed: u64,
    splits: Option<&[ExplicitSplit]>,
    shuffle: Option<(usize, f64)>,
) -> Result<Vec<Split>> {
    if let (None, Some((count, fraction))) = (splits, shuffle) {
        let test = (fraction * n as f64).ceil() as usize;
        if count == 0 || test == 0 || test >= n {
            return Err(EngineError::invalid(format!(
                "shuffle_splits: {count} splits with test_fraction {fraction} leave an empty train or test set for {n} stimuli"
            )));
        }
        return Ok(shuffle_splits(n, count, test, seed));
    }
    match splits {
        Some(explicit) => {
            for (i, s) in explicit.iter().enumerate() {
                if s.train.is_empty() || s.test.is_empty() {
                    return Err(EngineError::invalid(format!(
                        "splits[{i}]: train and test must both be non-empty"
                    )));
                }
                if let Some(bad) = s.train.iter().chain(&s.test).find(|&&j| j >= n as u64) {
                    return Err(EngineError::invalid(format!(
                        "splits[{i}]: index {bad} is out of range for {n} stimuli"
                    )));
                }
                if s.train.iter().any(|j| s.test.contains(j)) {
                    return Err(EngineError::invalid(format!(
                        "splits[{i}]: a stimulus is in both train and test"
                    )));
                }
            }
            Ok(explicit
                .iter()
                .map(|s| Split {
                    train: s.train.iter().map(|&j| j as i64).collect(),
                    test: s.test.iter().map(|&j| j as i64).collect(),
                })
                .collect())
        }
        None => {
            if folds < 2 || folds > n {
                return Err(EngineError::invalid(format!(
                    "folds: must be between 2 and the {n} stimuli, got {}",
                    folds
                )));
            }
            Ok(kfold(&permutation(n, seed), folds))
        }
    }
}

/// Held-out predictivity of a mapping, as every mapping metric reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Predictivity {
    /// Mean over splits of the median held-out r.
    pub value: f64,
    /// Standard error of that mean over splits.
    pub sem: f64,
    pub splits: Vec<SplitScore>,
    /// Per neuron, the held-out r averaged over splits (neurons constant on
    /// a test set are left out of that split's average).
    pub per_neuron_r: Vec<f64>,
}

/// Accumulates held-out scores over splits.
pub(crate) struct Scorer {
    scores: Vec<SplitScore>,
    r_sum: Tensor,
    r_count: Tensor,
}

impl Scorer {
    pub(crate) fn new(q: i64, dev: Device) -> Self {
        Scorer {
            scores: Vec::new(),
            r_sum: Tensor::zeros([q], (Kind::Double, dev)),
            r_count: Tensor::zeros([q], (Kind::Double, dev)),
        }
    }

    pub(crate) fn add(&mut self, pred: &Tensor, truth: &Tensor) {
        let r = pearson_columns(pred, truth);
        self.r_sum += r.nan_to_num(0.0, None, None);
        self.r_count += r.isnan().logical_not().to_kind(Kind::Double);
        self.scores.push(SplitScore {
            median_r: nanmedian(&r),
            median_r2: nanmedian(&r2(pred, truth)),
        });
    }

    pub(crate) fn finish(self) -> Result<Predictivity> {
        let k = self.scores.len() as f64;
        let value = self.scores.iter().map(|s| s.median_r).sum::<f64>() / k;
        let sem = if k > 1.0 {
            (self
                .scores
                .iter()
                .map(|s| (s.median_r - value).powi(2))
                .sum::<f64>()
                / (k - 1.0))
                .sqrt()
                / k.sqrt()
        } else {
            f64::NAN
        };
        let per_neuron_r =
            Vec::<f64>::try_from(&(self.r_sum / self.r_count).to_device(Device::Cpu))?;
        Ok(Predictivity {
            value,
            sem,
            splits: self.scores,
            per_neuron_r,
        })
    }
}
