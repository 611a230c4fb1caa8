//! The compare pipeline: every requested metric between two arrays, per
//! time bin when an input is time-resolved (reps × stimuli × features ×
//! bins), with the bootstrap interval, permutation p-value and ceiling the
//! request asks for. The worker calls this inside `spawn_blocking`.

use neuralign_core::catalog::Metric;
use neuralign_core::inference::{BootstrapSpec, CeilingSpec, PermutationSpec, ReduceSpec};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::inference::{self, Ceiling, Interval, PermutationTest};
use crate::metrics::{compare_rdms, compute_detailed_with, Kept};
use crate::rdm;
use crate::{cka, reduce};

pub struct ComparePlan<'a> {
    pub metrics: &'a [Metric],
    pub bootstrap: Option<&'a BootstrapSpec>,
    pub permutation: Option<&'a PermutationSpec>,
    pub ceiling: Option<&'a CeilingSpec>,
    pub reduce: Option<&'a ReduceSpec>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub metric: &'static str,
    pub options: serde_json::Value,
    pub direction: &'static str,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_bin: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permutation: Option<PermutationTest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalization: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Time bins of an input: 1 unless it is 4-D.
fn bins(t: &Tensor) -> i64 {
    if t.dim() == 4 {
        t.size()[3]
    } else {
        1
    }
}

/// The input at one time bin, with repetitions kept (reps × N × D) when it has them.
fn at_bin(t: &Tensor, bin: i64) -> Tensor {
    if t.dim() == 4 {
        t.select(3, bin)
    } else {
        t.shallow_clone()
    }
}

/// Stimuli × features: the mean over repetitions when there are any,
/// skipping NaN (missing repetitions of ragged recordings).
fn mean_over_reps(t: &Tensor) -> Tensor {
    if t.dim() == 3 {
        t.nanmean(0, false, t.kind())
    } else {
        t.shallow_clone()
    }
}

fn name(e: EngineError, i: usize, m: &Metric) -> EngineError {
    match e {
        EngineError::Invalid(msg) => {
            EngineError::Invalid(format!("metrics[{i}] ({}): {msg}", m.id()))
        }
        other => other,
    }
}

/// `b` as `run` compares it under `plan`: averaged over repetitions now,
/// when no metric and no ceiling of the plan needs the repetitions and b
/// has no time bins; unchanged otherwise. Callers that compare many `a`
/// with one `b` average it once this way instead of once per comparison.
pub fn averaged_target(b: &Tensor, plan: &ComparePlan) -> Tensor {
    let needs_reps = plan.ceiling.is_some()
        || plan.metrics.iter().any(|m| {
            matches!(m, Metric::Rsa(o)
                if o.rdm.needs_repetitions() || o.rdm_a.is_some_and(|r| r.needs_repetitions()))
        });
    if b.dim() == 3 && !needs_reps {
        mean_over_reps(b)
    } else {
        b.shallow_clone()
    }
}

/// Runs the plan. `check` is called between units of work; it reports
/// progress (done, total) and may stop the run by returning an error.
/// Reduces a's features when the plan asks (fitted on the repetition- and
/// time-averaged stimuli × features, applied to every repetition and bin).
pub fn reduce_model_side(
    a: &Tensor,
    spec: Option<&ReduceSpec>,
) -> Result<(Tensor, Option<reduce::Reduction>)> {
    let Some(spec) = spec else {
        return Ok((a.shallow_clone(), None));
    };
    let mut summary = a.shallow_clone();
    if summary.dim() == 4 {
        summary = summary.mean_dim(3, false, Kind::Double);
    }
    let summary = mean_over_reps(&summary);
    match reduce::fit(&summary, spec)? {
        None => Ok((a.shallow_clone(), None)),
        Some((w, info)) => {
            let axis = if a.dim() == 2 { 1 } else { 2 };
            Ok((reduce::apply(a, &w, axis), Some(info)))
        }
    }
}

/// The split-half ceiling of `metric` on the recording `b` (reps × N × D
/// [× bins]) per time bin, as `run` computes it: (bin when there are
/// several, ceiling). It depends on the recording alone, so callers that
/// score many model layers against one recording compute it once.
pub fn ceilings(
    metric: &Metric,
    b: &Tensor,
    spec: &CeilingSpec,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<(Option<i64>, f64)>> {
    let _guard = tch::no_grad_guard();
    let t = bins(b);
    (0..t)
        .map(|bin| {
            let c = inference::split_half_ceiling(metric, &at_bin(b, bin), spec, check)?;
            Ok(((t > 1).then_some(bin), c.ceiling))
        })
        .collect()
}

pub fn run(
    a: &Tensor,
    b: &Tensor,
    plan: &ComparePlan,
    check: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<Vec<MetricResult>> {
    run_with(a, b, plan, Kept::default(), check)
}

/// `run`, keeping what the metrics derive from b alone or from a alone
/// where `kept` says (names suffixed with the time bin), for callers that
/// compare many a with one b, or one a again.
pub fn run_with(
    a: &Tensor,
    b: &Tensor,
    plan: &ComparePlan,
    kept: Kept,
    check: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<Vec<MetricResult>> {
    let _guard = tch::no_grad_guard();
    let (ta, tb) = (bins(a), bins(b));
    let t = ta.max(tb);
    if ta != tb && ta > 1 && tb > 1 {
        return Err(EngineError::invalid(format!(
            "time bins differ: {ta} vs {tb}"
        )));
    }
    let total = t as usize * plan.metrics.len();
    let mut done = 0;
    let mut out = Vec::with_capacity(total);
    for bin in 0..t {
        let (a_bin, b_bin) = (at_bin(a, bin.min(ta - 1)), at_bin(b, bin.min(tb - 1)));
        let (x, y) = (mean_over_reps(&a_bin), mean_over_reps(&b_bin));
        let mut linear_stats = None;
        for (i, m) in plan.metrics.iter().enumerate() {
            let mut tick = || check(done, total);
            let (value, details) = match m {
                // Both linear CKA estimators share their matrix products.
                Metric::LinearCka(o) if cka::feature_form(&x, &y) => (
                    linear_stats
                        .get_or_insert_with(|| cka::LinearStats::new(&x, &y))
                        .value(o.debiased),
                    None,
                ),
                // Mahalanobis-type RDMs need the repetitions, not their mean.
                Metric::Rsa(o)
                    if o.rdm.needs_repetitions()
                        || o.rdm_a.is_some_and(|r| r.needs_repetitions()) =>
                {
                    let ra = rdm::rdm_with_reps(&a_bin, o.rdm_a.unwrap_or(o.rdm), o.noise)
                        .map_err(|e| name(EngineError::Invalid(format!("a: {e}")), i, m))?;
                    let rb = rdm::rdm_with_reps(&b_bin, o.rdm, o.noise)
                        .map_err(|e| name(EngineError::Invalid(format!("b: {e}")), i, m))?;
                    (
                        compare_rdms(&ra, &rb, o.comparison).map_err(|e| name(e, i, m))?,
                        None,
                    )
                }
                _ => {
                    let names = kept.suffixed(&format!("bin {bin}"));
                    compute_detailed_with(m, &x, &y, names.as_kept()).map_err(|e| name(e, i, m))?
                }
            };
            let bootstrap = plan
                .bootstrap
                .map(|s| inference::bootstrap(m, &x, &y, s, &mut || tick()))
                .transpose()
                .map_err(|e| name(e, i, m))?;
            let permutation = plan
                .permutation
                .map(|s| inference::permutation_test(m, &x, &y, value, s, &mut || tick()))
                .transpose()
                .map_err(|e| name(e, i, m))?;
            let ceiling = plan
                .ceiling
                .map(|s| inference::split_half_ceiling(m, &b_bin, s, &mut || tick()))
                .transpose()
                .map_err(|e| name(e, i, m))?;
            let normalization = plan.ceiling.map(|s| s.normalization);
            let normalized = ceiling
                .as_ref()
                .zip(normalization)
                .map(|(c, n)| n.apply(value, c.ceiling));
            out.push(MetricResult {
                metric: m.id(),
                options: m.options_json(),
                direction: m.direction(),
                value,
                time_bin: (t > 1).then_some(bin),
                bootstrap,
                permutation,
                ceiling,
                normalized,
                normalization: normalization.map(|n| n.formula()),
                details,
            });
            done += 1;
            check(done, total)?;
        }
    }
    Ok(out)
}
