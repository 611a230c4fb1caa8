//! The metric dispatcher: computes a decoded `Metric` between two
//! representations. Ids, options and documentation live in
//! `neuralign_core::catalog`; this is where they become numbers.

use neuralign_core::catalog::{Metric, RdmComparison};
use std::collections::HashMap;
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::ridge::DecompositionCache;
use crate::{cca, cka, kendall, knn, one_to_one, pls, rank, rdm, ridge, shape};

/// Compares two RDM vectors, dropping entries that are NaN in either.
pub fn compare_rdms(a: &Tensor, b: &Tensor, how: RdmComparison) -> Result<f64> {
    let keep = a.isfinite().logical_and(&b.isfinite());
    let (whole_a, whole_b) = (a, b);
    let (a, b) = (a.masked_select(&keep), b.masked_select(&keep));
    if a.size()[0] < 2 {
        return Err(EngineError::invalid(
            "fewer than 2 finite dissimilarities to compare",
        ));
    }
    Ok(match how {
        RdmComparison::CorrCov => whitened_compare(whole_a, whole_b, true)?,
        RdmComparison::CosineCov => whitened_compare(whole_a, whole_b, false)?,
        RdmComparison::Cosine => rank::cosine(&a, &b),
        RdmComparison::Pearson => rank::pearson(&a, &b),
        RdmComparison::Spearman => rank::spearman(&a, &b),
        RdmComparison::RhoA => rank::rho_a(&a, &b),
        RdmComparison::TauA | RdmComparison::TauB => {
            let cpu = |t: &Tensor| Vec::<f64>::try_from(&rank::snap_ties(t).to_device(Device::Cpu));
            let (va, vb) = (cpu(&a)?, cpu(&b)?);
            if how == RdmComparison::TauA {
                kendall::tau_a(&va, &vb)
            } else {
                kendall::tau_b(&va, &vb)
            }
        }
    })
}

/// The whitened comparisons reduce to a Frobenius cosine of double-centered
/// second-moment matrices: with W = −½·D (D the full RDM, zero diagonal),
/// G = H W H, rsatoolbox's weighted vector holds √2·G_ij for i < j and G_kk,
/// so its inner products are ⟨G, G'⟩_F. `centered` subtracts each vector's
/// mean first (corr_cov).
fn whitened_compare(a: &Tensor, b: &Tensor, centered: bool) -> Result<f64> {
    if a.isnan().any().int64_value(&[]) != 0 || b.isnan().any().int64_value(&[]) != 0 {
        return Err(EngineError::invalid(
            "corr_cov and cosine_cov need RDMs without NaN entries",
        ));
    }
    let m = a.size()[0];
    let n = ((1.0 + (1.0 + 8.0 * m as f64).sqrt()) / 2.0).round() as i64;
    let second_moment = |v: &Tensor| {
        let v = if centered {
            v - v.mean(Kind::Double)
        } else {
            v.shallow_clone()
        };
        let idx = Tensor::triu_indices(n, n, 1, (Kind::Int64, v.device()));
        let flat = idx.get(0) * n + idx.get(1);
        let upper = Tensor::zeros([n * n], (Kind::Double, v.device()))
            .index_put(&[Some(flat)], &(v * -0.5), false)
            .reshape([n, n]);
        let w = &upper + upper.transpose(0, 1);
        let row = w.mean_dim(1, true, Kind::Double);
        &w - &row - row.transpose(0, 1) + w.mean(Kind::Double)
    };
    let (ga, gb) = (second_moment(a), second_moment(b));
    Ok(((&ga * &gb).sum(Kind::Double)
        / (ga.square().sum(Kind::Double) * gb.square().sum(Kind::Double)).sqrt())
    .double_value(&[]))
}

fn name_input(e: EngineError, field: &str) -> EngineError {
    match e {
        EngineError::Invalid(m) => EngineError::Invalid(format!("{field}: {m}")),
        other => other,
    }
}

/// One metric between `a` and `b` (same stimuli, same order).
pub fn compute(metric: &Metric, a: &Tensor, b: &Tensor) -> Result<f64> {
    compute_detailed(metric, a, b).map(|(v, _)| v)
}

/// What RSA derives from its target side alone (b's RDM, and its ranks
/// when every entry is finite), kept across the comparisons of many model
/// layers with one recording: the score job compares every layer with the
/// same recording half.
#[derive(Default)]
pub struct TargetMemo {
    rdms: Mutex<HashMap<String, (Tensor, Option<Tensor>)>>,
}

impl TargetMemo {
    /// b's RDM under `key` (the caller's name for b and the metric's
    /// options), computed by `make` the first time.
    fn rdm(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let lock = || self.rdms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rdm, ranks)) = lock().get(key) {
            return Ok((
                rdm.shallow_clone(),
                ranks.as_ref().map(Tensor::shallow_clone),
            ));
        }
        let rdm = make()?;
        let finite = rdm.isfinite().all().int64_value(&[]) != 0;
        let ranks = finite.then(|| rank::average_ranks(&rdm));
        let out = (
            rdm.shallow_clone(),
            ranks.as_ref().map(Tensor::shallow_clone),
        );
        lock().insert(key.to_string(), (rdm, ranks));
        Ok(out)
    }
}

/// Compares a's RDM with a target RDM whose ranks are known (all its
/// entries finite): the rank comparisons reuse them when a's entries are
/// finite too, the rest go through `compare_rdms`.
fn compare_with_target(
    ra: &Tensor,
    rb: &Tensor,
    rb_ranks: Option<&Tensor>,
    how: RdmComparison,
) -> Result<f64> {
    match (how, rb_ranks) {
        (RdmComparison::Spearman | RdmComparison::RhoA, Some(sb))
            if ra.isfinite().all().int64_value(&[]) != 0 =>
        {
            let sa = rank::average_ranks(ra);
            Ok(if how == RdmComparison::Spearman {
                rank::pearson(&sa, sb)
            } else {
                rank::rho_a_of_ranks(&sa, sb)
            })
        }
        _ => compare_rdms(ra, rb, how),
    }
}

/// One metric, with the metric's details where it has any.
pub fn compute_detailed(
    metric: &Metric,
    a: &Tensor,
    b: &Tensor,
) -> Result<(f64, Option<serde_json::Value>)> {
    compute_detailed_with(metric, a, b, Kept::default())
}

/// What a caller comparing many model sides with many targets lets the
/// metrics keep, each under the caller's name for the input it derives
/// from.
#[derive(Clone, Copy, Default)]
pub struct Kept<'a> {
    /// b's derived values (RSA's RDM and its ranks), within one job.
    pub target: Option<(&'a TargetMemo, &'a str)>,
    /// a's derived values (ridge's decompositions of its training sets),
    /// under a name that identifies a's contents, kept as long as the
    /// cache keeps them.
    pub design: Option<(&'a DecompositionCache, &'a str)>,
}

impl<'a> Kept<'a> {
    /// The same stores, the names suffixed (one time bin of the inputs).
    pub fn suffixed(&self, suffix: &str) -> KeptNames<'a> {
        KeptNames {
            target: self.target.map(|(m, k)| (m, format!("{k} {suffix}"))),
            design: self.design.map(|(s, k)| (s, format!("{k} {suffix}"))),
        }
    }
}

/// `Kept` with owned names.
pub struct KeptNames<'a> {
    target: Option<(&'a TargetMemo, String)>,
    design: Option<(&'a DecompositionCache, String)>,
}

impl KeptNames<'_> {
    pub fn as_kept(&self) -> Kept<'_> {
        Kept {
            target: self.target.as_ref().map(|(m, k)| (*m, k.as_str())),
            design: self.design.as_ref().map(|(s, k)| (*s, k.as_str())),
        }
    }
}

/// `compute_detailed`, with derived values kept where `kept` says.
pub fn compute_detailed_with(
    metric: &Metric,
    a: &Tensor,
    b: &Tensor,
    kept: Kept,
) -> Result<(f64, Option<serde_json::Value>)> {
    let _guard = tch::no_grad_guard();
    if a.size()[0] != b.size()[0] {
        return Err(EngineError::invalid(format!(
            "stimulus counts differ: {} vs {}",
            a.size()[0],
            b.size()[0]
        )));
    }
    let n = a.size()[0] as u64;
    if n < metric.min_stimuli() {
        return Err(EngineError::invalid(format!(
            "{} needs at least {} stimuli, got {n}",
            metric.id(),
            metric.min_stimuli()
        )));
    }
    let mut details = None;
    let value = match metric {
        Metric::Rsa(o) => {
            let ra = rdm::rdm(a, o.rdm_a.unwrap_or(o.rdm)).map_err(|e| name_input(e, "a"))?;
            let target = || rdm::rdm(b, o.rdm).map_err(|e| name_input(e, "b"));
            match kept.target {
                Some((memo, key)) => {
                    let key = format!("{key} {}", metric.options_json());
                    let (rb, ranks) = memo.rdm(&key, target)?;
                    compare_with_target(&ra, &rb, ranks.as_ref(), o.comparison)?
                }
                None => compare_rdms(&ra, &target()?, o.comparison)?,
            }
        }
        Metric::LinearCka(o) => cka::linear_cka(a, b, o.debiased),
        Metric::RbfCka(o) => cka::rbf_cka(a, b, o),
        Metric::Cca(_) => cca::mean_sq_cca(a, b)?,
        Metric::Svcca(o) => cca::svcca(a, b, o.variance_kept)?,
        Metric::Pwcca(_) => cca::pwcca(a, b)?,
        Metric::MutualKnn(o) => knn::mutual_knn(a, b, o.k, o.clip_quantile),
        Metric::OneToOne(o) => {
            let r = one_to_one::one_to_one(a, b, o)?;
            details = Some(serde_json::to_value(&r).unwrap_or_default());
            r.value
        }
        Metric::Procrustes(o) => {
            let r = shape::procrustes(a, b, o)?;
            details = Some(serde_json::to_value(&r).unwrap_or_default());
            r.value
        }
        Metric::Pls(o) => {
            let r = pls::pls(a, b, o, || Ok(()))?;
            details = Some(serde_json::to_value(&r).unwrap_or_default());
            r.scores.value
        }
        Metric::Ridge(o) => {
            let r = ridge::ridge(a, b, o, kept.design, || Ok(()))?;
            details = Some(serde_json::to_value(&r).unwrap_or_default());
            r.scores.value
        }
    };
    if !value.is_finite() {
        return Err(EngineError::invalid(format!(
            "{}: the result is not finite (an input has no variance)",
            metric.id()
        )));
    }
    Ok((value, details))
}

#[cfg(test)]
mod memo_tests {
    use super::*;
    use neuralign_core::catalog::MetricRequest;

    fn rsa(comparison: &str) -> Metric {
        let options = serde_json::json!({"comparison": comparison});
        Metric::parse(
            "m",
            &MetricRequest::WithOptions {
                id: "rsa".into(),
                options: options.as_object().unwrap().clone(),
            },
        )
        .unwrap()
    }

    /// Many layers against one kept target give what each comparison
    /// alone gives, for the rank comparisons that reuse b's ranks and for
    /// one that does not; a target with tied dissimilarities included.
    #[test]
    fn a_kept_target_gives_the_same_values() {
        tch::manual_seed(3);
        let b = Tensor::randn([30, 12], (Kind::Double, Device::Cpu)).round();
        for how in ["spearman", "rho_a", "pearson", "tau_a"] {
            let m = rsa(how);
            let memo = TargetMemo::default();
            for layer in 0..3 {
                let a = Tensor::randn([30, 8 + layer], (Kind::Double, Device::Cpu));
                let alone = compute_detailed(&m, &a, &b).unwrap().0;
                let target = Some((&memo, "b"));
                let kept = compute_detailed_with(
                    &m,
                    &a,
                    &b,
                    Kept {
                        target,
                        design: None,
                    },
                )
                .unwrap()
                .0;
                assert_eq!(alone, kept, "{how}, layer {layer}");
            }
            assert_eq!(
                memo.rdms.lock().unwrap().len(),
                1,
                "{how}: one target RDM kept"
            );
        }
    }
}
