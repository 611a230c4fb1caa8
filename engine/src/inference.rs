//! Bootstrap intervals, permutation p-values and split-half ceilings around
//! any metric. RSA is special-cased so that resampling never recomputes an
//! RDM or sorts again: a bootstrap sample is a multiset of stimuli, so its
//! RDM is the original entries weighted by m_u·m_v (pairs of a stimulus with
//! its own copy get weight 0, as rsatoolbox drops them), and rank-based
//! comparisons become weighted sums over the original sort order, batched
//! over many samples at once.

use neuralign_core::catalog::{ExplicitSplit, Metric, RdmComparison};
use neuralign_core::inference::{
    BootstrapSpec, CeilingMethod, CeilingSpec, PermutationSpec, ResampleOver,
};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::metrics::{compare_rdms, compute};
use crate::predictivity::outer_splits;
use crate::splits::{bootstrap_indices, permutation_from, Split, SplitMix64};
use crate::{rank, rdm};

/// Bootstrap samples processed per batch in the weighted RSA path.
const BATCH: i64 = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub ci: [f64; 2],
    pub std: f64,
    pub samples: usize,
    pub seed: u64,
    pub confidence: f64,
    pub over: &'static str,
}

/// numpy.percentile with linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(mut values: Vec<f64>, spec: &BootstrapSpec, over: &'static str) -> Result<Interval> {
    values.retain(|v| v.is_finite());
    if values.len() < 2 {
        return Err(EngineError::invalid(
            "bootstrap: fewer than 2 samples gave a finite value",
        ));
    }
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std =
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt();
    let tail = (1.0 - spec.confidence) / 2.0;
    Ok(Interval {
        ci: [percentile(&values, tail), percentile(&values, 1.0 - tail)],
        std,
        samples: values.len(),
        seed: spec.seed,
        confidence: spec.confidence,
        over,
    })
}

/// The sort structure of one RDM vector, computed once for every draw.
struct Ordered {
    order: Tensor,
    inverse: Tensor,
    /// Last sorted position of each group of tied values.
    ends: Tensor,
    /// Group of each entry (entry order).
    group: Tensor,
    ties: bool,
}

impl Ordered {
    fn new(v: &Tensor) -> Self {
        let m = v.size()[0];
        let dev = v.device();
        let (sorted, order) = rank::snap_ties(v).sort(0, false);
        let is_end = Tensor::cat(
            &[
                sorted
                    .slice(0, 1, m, 1)
                    .ne_tensor(&sorted.slice(0, 0, m - 1, 1)),
                Tensor::ones([1], (Kind::Bool, dev)),
            ],
            0,
        );
        let ends = is_end.nonzero().squeeze_dim(1);
        let sorted_group =
            is_end.to_kind(Kind::Int64).cumsum(0, Kind::Int64) - is_end.to_kind(Kind::Int64);
        let inverse =
            Tensor::empty_like(&order).scatter(0, &order, &Tensor::arange(m, (Kind::Int64, dev)));
        let ties = ends.size()[0] < m;
        Ordered {
            group: sorted_group.index_select(0, &inverse),
            order,
            inverse,
            ends,
            ties,
        }
    }

    /// Average ranks (1-based) of every entry within the weighted multiset
    /// of each column of `w` (M × B). Groups of tied values are contiguous
    /// in sorted order, so everything is one cumulative sum and gathers.
    fn ranks(&self, w: &Tensor) -> Tensor {
        // Weights, their prefix sums and the (half-integer) ranks are exact
        // in float32 below 2^24, which halves the memory traffic; the
        // prefix sum runs along the contiguous axis, where it vectorizes.
        let kind = w.kind();
        let cum = w
            .index_select(0, &self.order)
            .transpose(0, 1)
            .contiguous()
            .cumsum(1, kind)
            .transpose(0, 1)
            .contiguous();
        if !self.ties {
            // rank = (weight before) + (w + 1) / 2 = cum_inclusive − w/2 + 1/2
            let mut r = cum.index_select(0, &self.inverse);
            let _ = r.g_sub_(&(w * 0.5)).g_add_scalar_(0.5);
            return r;
        }
        let cum_end = cum.index_select(0, &self.ends);
        let dev = w.device();
        let cum_before = Tensor::cat(
            &[
                Tensor::zeros([1, w.size()[1]], (kind, dev)),
                cum_end.slice(0, 0, -1, 1),
            ],
            0,
        );
        let rank_g = &cum_before + (&cum_end - &cum_before + 1.0) / 2.0;
        rank_g.index_select(0, &self.group)
    }
}

/// Weighted comparison of two RDM vectors (M entries) for a batch of
/// weight columns (M × B, one column per draw: row gathers stay contiguous).
/// Sums of fixed values against the weights are matrix–vector products.
fn weighted_compare(
    ra: &Tensor,
    rb: &Tensor,
    oa: &Ordered,
    ob: &Ordered,
    w: &Tensor,
    how: RdmComparison,
) -> Tensor {
    let total = w.sum_dim_intlist(0, false, Kind::Double);
    let dot = |v: &Tensor| v.unsqueeze(0).matmul(w).squeeze_dim(0);
    match how {
        RdmComparison::Cosine => dot(&(ra * rb)) / (dot(&ra.square()) * dot(&rb.square())).sqrt(),
        RdmComparison::Pearson => {
            let (sa, sb) = (dot(ra), dot(rb));
            let cov = dot(&(ra * rb)) - &sa * &sb / &total;
            let va = dot(&ra.square()) - sa.square() / &total;
            let vb = dot(&rb.square()) - sb.square() / &total;
            cov / (va * vb).sqrt()
        }
        _ => {
            // Weighted mean of average ranks is (W + 1) / 2 whatever the ties.
            let (x, y) = (oa.ranks(w), ob.ranks(w));
            // Σ w·p·q: w·p is exact in float32 (small integer times a
            // half-integer rank); the product with q needs float64.
            let wdot = |p: &Tensor, q: &Tensor| {
                ((p * w).to_kind(Kind::Double) * q).sum_dim_intlist(0, false, Kind::Double)
            };
            let mean = (&total + 1.0) / 2.0;
            let (sxx, syy) = if how == RdmComparison::Spearman {
                (wdot(&x, &x), wdot(&y, &y))
            } else {
                (total.zeros_like(), total.zeros_like())
            };
            let cov = wdot(&x, &y) - &total * mean.square();
            if how == RdmComparison::RhoA {
                12.0 * cov / (&total * &total * &total - &total)
            } else {
                let (va, vb) = (sxx - &total * mean.square(), syy - &total * mean.square());
                cov / (va * vb).sqrt()
            }
        }
    }
}

/// RSA values for explicit bootstrap draws (B × n stimulus indices).
pub fn rsa_bootstrap_values(
    ra: &Tensor,
    rb: &Tensor,
    n: i64,
    how: RdmComparison,
    draws: &Tensor,
) -> Result<Vec<f64>> {
    let dev = ra.device();
    let weighted_form = matches!(
        how,
        RdmComparison::Cosine
            | RdmComparison::Pearson
            | RdmComparison::Spearman
            | RdmComparison::RhoA
    );
    if dev == Device::Cpu && weighted_form {
        let (va, vb) = (
            Vec::<f64>::try_from(&ra.contiguous())?,
            Vec::<f64>::try_from(&rb.contiguous())?,
        );
        let d = Vec::<i64>::try_from(&draws.contiguous().reshape([-1]))?;
        return Ok(crate::bootstrap_cpu::rsa_bootstrap(
            &va, &vb, n as usize, how, &d,
        ));
    }
    rsa_bootstrap_values_tensor(ra, rb, n, how, draws)
}

/// The tensor formulation of `rsa_bootstrap_values`, used on CUDA devices
/// (and for Kendall's τ everywhere).
pub fn rsa_bootstrap_values_tensor(
    ra: &Tensor,
    rb: &Tensor,
    n: i64,
    how: RdmComparison,
    draws: &Tensor,
) -> Result<Vec<f64>> {
    let dev = ra.device();
    let idx = Tensor::triu_indices(n, n, 1, (Kind::Int64, dev));
    let (iu, iv) = (idx.get(0), idx.get(1));
    let finite = ra
        .isfinite()
        .logical_and(&rb.isfinite())
        .to_kind(Kind::Double);
    let (ra, rb) = (
        ra.nan_to_num(0.0, None, None),
        rb.nan_to_num(0.0, None, None),
    );
    let (oa, ob) = (Ordered::new(&ra), Ordered::new(&rb));
    let mut out = Vec::new();
    let total = draws.size()[0];
    let mut start = 0;
    while start < total {
        let d = draws.narrow(0, start, BATCH.min(total - start));
        let counts = Tensor::zeros([d.size()[0], n], (Kind::Double, dev)).scatter_add(
            1,
            &d,
            &Tensor::ones_like(&d).to_kind(Kind::Double),
        );
        let counts = counts.transpose(0, 1).contiguous();
        let mut w = counts.index_select(0, &iu) * counts.index_select(0, &iv) * finite.unsqueeze(1);
        // Pair weights m_u·m_v sum to at most n²/2: exact in float32 (< 2^24)
        // for the rank path when n ≤ 5000.
        if n <= 5000 && !matches!(how, RdmComparison::Pearson | RdmComparison::Cosine) {
            w = w.to_kind(Kind::Float);
        }
        let vals = match how {
            RdmComparison::TauA | RdmComparison::TauB => {
                // Kendall's τ has no cheap weighted form: expand each sample.
                let mut v = Vec::new();
                for row in 0..d.size()[0] {
                    let reps = w.select(1, row).to_kind(Kind::Int64);
                    let (xa, xb) = (
                        ra.repeat_interleave_self_tensor(&reps, 0, None),
                        rb.repeat_interleave_self_tensor(&reps, 0, None),
                    );
                    v.push(compare_rdms(&xa, &xb, how)?);
                }
                Tensor::from_slice(&v)
            }
            _ => weighted_compare(&ra, &rb, &oa, &ob, &w, how),
        };
        out.extend(Vec::<f64>::try_from(&vals.to_device(Device::Cpu))?);
        start += BATCH;
    }
    Ok(out)
}

fn draws(n: usize, spec: &BootstrapSpec, dev: Device) -> Tensor {
    Tensor::from_slice(&bootstrap_indices(n, spec.samples, spec.seed))
        .reshape([spec.samples as i64, n as i64])
        .to_device(dev)
}

/// A bootstrap interval over stimuli for any metric.
pub fn bootstrap(
    metric: &Metric,
    a: &Tensor,
    b: &Tensor,
    spec: &BootstrapSpec,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<Interval> {
    let _guard = tch::no_grad_guard();
    if spec.over == ResampleOver::Neurons {
        // b's neurons resampled with replacement; a is fixed.
        let q = b.size()[1];
        let d = draws(q as usize, spec, b.device());
        let mut v = Vec::with_capacity(spec.samples);
        for i in 0..spec.samples as i64 {
            check()?;
            v.push(compute(metric, a, &b.index_select(1, &d.get(i))).unwrap_or(f64::NAN));
        }
        return interval(v, spec, "neurons");
    }
    let n = a.size()[0];
    let d = draws(n as usize, spec, a.device());
    let values = match metric {
        Metric::Rsa(o)
            if matches!(
                o.comparison,
                RdmComparison::CorrCov | RdmComparison::CosineCov
            ) =>
        {
            return Err(EngineError::invalid(
                "bootstrap over stimuli is not available for corr_cov and cosine_cov (a resample's RDM has undefined \
                 self-pairs); use \"over\": \"neurons\"",
            ));
        }
        Metric::Rsa(o) => {
            let (ra, rb) = (rdm::rdm(a, o.rdm_a.unwrap_or(o.rdm))?, rdm::rdm(b, o.rdm)?);
            rsa_bootstrap_values(&ra, &rb, n, o.comparison, &d)?
        }
        _ => {
            // Cross-validated metrics keep every copy of a stimulus on one
            // side of each split, or the copies would leak test stimuli into
            // training and inflate the score.
            let original = held_out_splits(metric, n as usize)?;
            let mut v = Vec::with_capacity(spec.samples);
            for i in 0..spec.samples as i64 {
                check()?;
                let idx = d.get(i);
                let resampled = match &original {
                    Some(splits) => {
                        let draw = Vec::<i64>::try_from(&idx.to_device(Device::Cpu))?;
                        with_splits(metric, grouped_splits(splits, &draw))
                    }
                    None => Some(metric.clone()),
                };
                // A degenerate resample (e.g. a split whose test stimuli were
                // never drawn everywhere) counts as missing.
                v.push(match resampled {
                    Some(m) => compute(&m, &a.index_select(0, &idx), &b.index_select(0, &idx))
                        .unwrap_or(f64::NAN),
                    None => f64::NAN,
                });
            }
            v
        }
    };
    interval(values, spec, "stimuli")
}

/// The outer splits of a cross-validated metric over the original stimuli.
fn held_out_splits(metric: &Metric, n: usize) -> Result<Option<Vec<Split>>> {
    metric
        .split_plan()
        .map(|p| outer_splits(n, p.folds, p.seed, p.splits, p.shuffle))
        .transpose()
}

/// The original splits carried over to a bootstrap draw (`draw[r]` is the
/// original stimulus at row r): a row goes where its stimulus went, training
/// rows ordered by stimulus so copies stay together in inner folds. Splits
/// left without training or test rows are dropped.
pub fn grouped_splits(splits: &[Split], draw: &[i64]) -> Vec<ExplicitSplit> {
    splits
        .iter()
        .filter_map(|s| {
            let rows_of = |set: &[i64]| {
                let mut rows: Vec<(i64, u64)> = draw
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| set.contains(o))
                    .map(|(r, &o)| (o, r as u64))
                    .collect();
                rows.sort_unstable();
                rows.into_iter().map(|(_, r)| r).collect::<Vec<u64>>()
            };
            let (train, test) = (rows_of(&s.train), rows_of(&s.test));
            (!train.is_empty() && !test.is_empty()).then_some(ExplicitSplit { train, test })
        })
        .collect()
}

/// The metric with explicit splits; None when no split survived the draw.
fn with_splits(metric: &Metric, splits: Vec<ExplicitSplit>) -> Option<Metric> {
    if splits.is_empty() {
        return None;
    }
    let mut m = metric.clone();
    match &mut m {
        Metric::Ridge(o) => o.splits = Some(splits),
        Metric::Pls(o) => o.splits = Some(splits),
        Metric::OneToOne(o) => o.splits = Some(splits),
        Metric::Procrustes(o) => o.splits = Some(splits),
        _ => {}
    }
    Some(m)
}

#[derive(Debug, Clone, Serialize)]
pub struct PermutationTest {
    pub p_value: f64,
    pub count: usize,
    pub seed: u64,
    pub null_mean: f64,
}

/// Permutation test: b's stimulus labels shuffled `count` times.
pub fn permutation_test(
    metric: &Metric,
    a: &Tensor,
    b: &Tensor,
    observed: f64,
    spec: &PermutationSpec,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<PermutationTest> {
    let _guard = tch::no_grad_guard();
    let n = a.size()[0];
    let mut rng = SplitMix64(spec.seed);
    let rsa = match metric {
        Metric::Rsa(o) => Some((
            rdm::rdm(a, o.rdm_a.unwrap_or(o.rdm))?,
            rdm::rdm(b, o.rdm)?,
            o.comparison,
        )),
        _ => None,
    };
    let dev = a.device();
    let tri = Tensor::triu_indices(n, n, 1, (Kind::Int64, dev));
    let mut null = Vec::with_capacity(spec.count);
    for _ in 0..spec.count {
        check()?;
        let perm = Tensor::from_slice(&permutation_from(&mut rng, n as usize)).to_device(dev);
        let v = match &rsa {
            Some((ra, rb, how)) => {
                // Entry (u, v) of the permuted RDM is entry (π(u), π(v)) of b's.
                let (pu, pv) = (
                    perm.index_select(0, &tri.get(0)),
                    perm.index_select(0, &tri.get(1)),
                );
                let (lo, hi) = (pu.minimum(&pv), pu.maximum(&pv));
                let flat = &lo * n - (&lo * (&lo + 1)).floor_divide_scalar(2) + (&hi - &lo - 1);
                compare_rdms(ra, &rb.index_select(0, &flat), *how)?
            }
            None => compute(metric, a, &b.index_select(0, &perm))?,
        };
        null.push(v);
    }
    let exceed = null.iter().filter(|&&v| v >= observed).count();
    Ok(PermutationTest {
        p_value: (1 + exceed) as f64 / (1 + spec.count) as f64,
        count: spec.count,
        seed: spec.seed,
        null_mean: null.iter().sum::<f64>() / null.len() as f64,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub ceiling: f64,
    /// Subject-level RSA ceilings: the leave-one-subject-out lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    pub method: &'static str,
    pub splits: usize,
    pub seed: u64,
    /// Per neuron (ridge only): Spearman–Brown corrected split-half r.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_neuron: Option<Vec<f64>>,
}

/// rsatoolbox's pooling of RDM vectors before averaging, per comparison:
/// ranks for rank correlations, z-scores for Pearson, unit RMS for cosine.
fn pool_form(v: &Tensor, how: RdmComparison) -> Tensor {
    match how {
        RdmComparison::Spearman
        | RdmComparison::RhoA
        | RdmComparison::TauA
        | RdmComparison::TauB => rank::average_ranks(v),
        RdmComparison::Pearson => {
            let c = v - v.mean(Kind::Double);
            // numpy's nanstd: population standard deviation.
            &c / c.square().mean(Kind::Double).sqrt()
        }
        // subject_ceiling refuses the whitened comparisons before pooling.
        RdmComparison::Cosine | RdmComparison::CorrCov | RdmComparison::CosineCov => {
            v / v.square().mean(Kind::Double).sqrt()
        }
    }
}

/// Lower and upper RSA noise ceilings over subjects (b's first axis).
fn subject_ceiling(metric: &Metric, subjects: &Tensor, spec: &CeilingSpec) -> Result<Ceiling> {
    let Metric::Rsa(o) = metric else {
        return Err(EngineError::invalid(
            "ceiling.method subjects applies to rsa only",
        ));
    };
    if matches!(
        o.comparison,
        RdmComparison::CorrCov | RdmComparison::CosineCov
    ) {
        return Err(EngineError::invalid(
            "ceiling.method subjects is not available for corr_cov and cosine_cov",
        ));
    }
    let s = subjects.size()[0];
    if subjects.dim() != 3 || s < 2 {
        return Err(EngineError::invalid(format!(
            "ceiling: subjects needs subjects × stimuli × features with at least 2 subjects, got shape {:?}",
            subjects.size()
        )));
    }
    let rdms: Vec<Tensor> = (0..s)
        .map(|i| rdm::rdm(&subjects.get(i), o.rdm))
        .collect::<Result<_>>()?;
    let pooled: Vec<Tensor> = rdms.iter().map(|r| pool_form(r, o.comparison)).collect();
    let all = Tensor::stack(&pooled, 0).mean_dim(0, false, Kind::Double);
    let (mut lower, mut upper) = (0.0, 0.0);
    for (i, subject) in rdms.iter().enumerate() {
        let others: Vec<&Tensor> = pooled
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, t)| t)
            .collect();
        let rest = Tensor::stack(&others, 0).mean_dim(0, false, Kind::Double);
        lower += compare_rdms(&rest, subject, o.comparison)?;
        upper += compare_rdms(&all, subject, o.comparison)?;
    }
    Ok(Ceiling {
        ceiling: upper / s as f64,
        lower: Some(lower / s as f64),
        method: "rsa_subjects_upper_bound",
        splits: 0,
        seed: spec.seed,
        per_neuron: None,
    })
}

/// The two halves of b's repetitions for each split (half = ⌊reps/2⌋ each;
/// with an odd count, the last repetition after shuffling is left out).
fn halves(reps: &Tensor, spec: &CeilingSpec) -> Vec<(Tensor, Tensor)> {
    let r = reps.size()[0] as usize;
    let half = (r / 2) as i64;
    let mut rng = SplitMix64(spec.seed);
    (0..spec.splits)
        .map(|_| {
            let p = Tensor::from_slice(&permutation_from(&mut rng, r)).to_device(reps.device());
            let sel = |from: i64| {
                reps.index_select(0, &p.narrow(0, from, half))
                    .nanmean(0, false, Kind::Double)
            };
            (sel(0), sel(half))
        })
        .collect()
}

fn spearman_brown(r: &Tensor) -> Tensor {
    2.0 * r / (1.0 + r)
}

/// Split-half ceiling of `reps` (reps × stimuli × neurons).
pub fn split_half_ceiling(
    metric: &Metric,
    reps: &Tensor,
    spec: &CeilingSpec,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<Ceiling> {
    let _guard = tch::no_grad_guard();
    if spec.method == CeilingMethod::Subjects {
        return subject_ceiling(metric, reps, spec);
    }
    if reps.dim() != 3 || reps.size()[0] < 2 {
        return Err(EngineError::invalid(format!("ceiling: needs repetitions × stimuli × neurons with at least 2 repetitions, got shape {:?}", reps.size())));
    }
    let q = reps.size()[2];
    match metric {
        Metric::Ridge(_) => {
            let mut sum = Tensor::zeros([q], (Kind::Double, reps.device()));
            for (h1, h2) in halves(reps, spec) {
                check()?;
                let (c1, c2) = (
                    &h1 - h1.mean_dim(0, true, Kind::Double),
                    &h2 - h2.mean_dim(0, true, Kind::Double),
                );
                let r = (&c1 * &c2).sum_dim_intlist(0, false, Kind::Double)
                    / (c1.square().sum_dim_intlist(0, false, Kind::Double)
                        * c2.square().sum_dim_intlist(0, false, Kind::Double))
                    .sqrt();
                sum += spearman_brown(&r);
            }
            let per = sum / spec.splits as f64;
            let per_neuron = Vec::<f64>::try_from(&per.to_device(Device::Cpu))?;
            let mut finite: Vec<f64> = per_neuron
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if finite.is_empty() {
                return Err(EngineError::invalid(
                    "ceiling: no neuron has a finite split-half reliability",
                ));
            }
            finite.sort_by(f64::total_cmp);
            let ceiling = percentile(&finite, 0.5);
            Ok(Ceiling {
                ceiling,
                lower: None,
                method: "split_half_spearman_brown_median_over_neurons",
                splits: spec.splits,
                seed: spec.seed,
                per_neuron: Some(per_neuron),
            })
        }
        _ => {
            let mut total = 0.0;
            for (h1, h2) in halves(reps, spec) {
                check()?;
                let r = compute(metric, &h1, &h2)?;
                total += 2.0 * r / (1.0 + r);
            }
            Ok(Ceiling {
                ceiling: total / spec.splits as f64,
                lower: None,
                method: "split_half_spearman_brown_of_metric",
                splits: spec.splits,
                seed: spec.seed,
                per_neuron: None,
            })
        }
    }
}
