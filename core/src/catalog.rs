//! The metric catalogue: every metric's id, typed options (with defaults),
//! direction and invariances. Pure data, so the service validates a request
//! and lists metrics without linking the numerical engine; the engine
//! matches on `Metric` to compute.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How a representational dissimilarity matrix is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RdmMethod {
    /// Plain Euclidean distance (scipy `pdist(metric="euclidean")`).
    Euclidean,
    /// Squared Euclidean divided by the number of channels (rsatoolbox's "euclidean").
    SqEuclidean,
    /// 1 − Pearson r between patterns (rsatoolbox/scipy "correlation").
    Correlation,
    /// 1 − cosine similarity (scipy "cosine").
    Cosine,
    /// Symmetric Poisson KL divergence per channel (rsatoolbox "poisson", prior λ=1, weight 0.1).
    Poisson,
    /// Squared Mahalanobis distance between repetition-averaged patterns with
    /// the noise precision estimated from the residuals, divided by channels
    /// (rsatoolbox "mahalanobis"). Needs repetitions.
    Mahalanobis,
    /// Cross-validated Mahalanobis: each repetition against the mean of the
    /// others, averaged over repetitions (rsatoolbox "crossnobis" with the
    /// repetition as cv_descriptor); unbiased, so it can be negative. Needs repetitions.
    Crossnobis,
}

impl RdmMethod {
    pub fn needs_repetitions(self) -> bool {
        matches!(self, RdmMethod::Mahalanobis | RdmMethod::Crossnobis)
    }
}

/// The noise model of the Mahalanobis-type RDMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseModel {
    /// Identity precision (Mahalanobis becomes rsatoolbox's squared Euclidean).
    Identity,
    /// Precision from the residuals around each stimulus's mean, covariance
    /// shrunk towards a scaled identity (rsatoolbox `prec_from_residuals`,
    /// method "shrinkage_eye", dof = observations − stimuli).
    ShrinkageEye,
}

/// How two RDM vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RdmComparison {
    Cosine,
    Pearson,
    Spearman,
    /// Spearman's ρ_A (rsatoolbox): 12 Σ (r−r̄)(s−s̄) / (n³ − n), no tie correction.
    RhoA,
    /// Kendall's τ_A: (concordant − discordant) / (n(n−1)/2).
    TauA,
    /// Kendall's τ_B (scipy `kendalltau`), tie-corrected.
    TauB,
    /// Pearson after whitening by the RDM entries' covariance under iid noise
    /// (rsatoolbox "corr_cov", sigma_k = identity). No NaN entries.
    CorrCov,
    /// Cosine after the same whitening, an unbiased distance correlation
    /// (rsatoolbox "cosine_cov"). No NaN entries.
    CosineCov,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsaOptions {
    #[serde(default = "RsaOptions::default_rdm")]
    pub rdm: RdmMethod,
    /// The RDM of a when it should differ from b's (a model without
    /// repetitions compared with a crossnobis brain RDM, say).
    #[serde(default)]
    pub rdm_a: Option<RdmMethod>,
    #[serde(default = "RsaOptions::default_noise")]
    pub noise: NoiseModel,
    #[serde(default = "RsaOptions::default_comparison")]
    pub comparison: RdmComparison,
}

impl RsaOptions {
    fn default_noise() -> NoiseModel {
        NoiseModel::ShrinkageEye
    }
    fn default_rdm() -> RdmMethod {
        RdmMethod::Correlation
    }
    fn default_comparison() -> RdmComparison {
        RdmComparison::Spearman
    }
}

/// Which median sets the RBF bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MedianOf {
    /// Median of all n² squared distances, the zero diagonal included (Kornblith et al.'s code).
    AllPairs,
    /// Median of the off-diagonal squared distances only (Brain-Score).
    OffDiagonal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearCkaOptions {
    /// Unbiased HSIC estimator (Song et al. 2012); needs n ≥ 4.
    #[serde(default)]
    pub debiased: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbfCkaOptions {
    /// Bandwidth σ as a fraction of the median distance: K = exp(−d² / (2 t² median(d²))).
    #[serde(default = "RbfCkaOptions::default_threshold")]
    pub threshold: f64,
    #[serde(default = "RbfCkaOptions::default_median")]
    pub median: MedianOf,
    #[serde(default)]
    pub debiased: bool,
}

impl RbfCkaOptions {
    fn default_threshold() -> f64 {
        1.0
    }
    fn default_median() -> MedianOf {
        MedianOf::AllPairs
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvccaOptions {
    /// Fraction of variance each representation keeps before CCA.
    #[serde(default = "SvccaOptions::default_variance")]
    pub variance_kept: f64,
}

impl SvccaOptions {
    fn default_variance() -> f64 {
        0.99
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualKnnOptions {
    #[serde(default = "MutualKnnOptions::default_k")]
    pub k: usize,
    /// Clip outliers first: values beyond this quantile of |values| (per
    /// representation) are clamped to it. None keeps the data as is.
    #[serde(default)]
    pub clip_quantile: Option<f64>,
}

impl MutualKnnOptions {
    fn default_k() -> usize {
        10
    }
}

/// Train and test stimulus indices of one outer split (imported splits,
/// e.g. Brain-Score's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitSplit {
    pub train: Vec<u64>,
    pub test: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RidgeOptions {
    /// Candidate penalties; each neuron gets the one with the best inner-CV R².
    #[serde(default = "RidgeOptions::default_alphas")]
    pub alphas: Vec<f64>,
    /// Outer folds when `splits` is not given.
    #[serde(default = "RidgeOptions::default_folds")]
    pub folds: usize,
    /// Inner folds (contiguous, over the training stimuli in order) that choose alpha.
    #[serde(default = "RidgeOptions::default_folds")]
    pub inner_folds: usize,
    /// How alpha is chosen per neuron on each training set.
    #[serde(default, skip_serializing_if = "RidgeInner::is_kfold")]
    pub inner: RidgeInner,
    /// Seed of the outer K-fold shuffle (SplitMix64 Fisher-Yates).
    #[serde(default)]
    pub seed: u64,
    /// Explicit outer splits; when given, `folds` and `seed` are not used.
    #[serde(default)]
    pub splits: Option<Vec<ExplicitSplit>>,
    /// Seeded shuffle splits instead of K-fold: how many.
    #[serde(default)]
    pub shuffle_splits: Option<usize>,
    /// Test fraction of each shuffle split (test size = ceil(fraction · n)).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

/// Ridge's inner search for each neuron's penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RidgeInner {
    /// Best summed R² over `inner_folds` contiguous folds.
    #[default]
    Kfold,
    /// Least mean squared leave-one-out error, in closed form from the one
    /// decomposition of the training set (scikit-learn's
    /// `RidgeCV(alpha_per_target=True)`).
    Loo,
}

impl RidgeInner {
    fn is_kfold(&self) -> bool {
        *self == RidgeInner::Kfold
    }
}

impl RidgeOptions {
    fn default_alphas() -> Vec<f64> {
        (0..17).map(|i| 10f64.powf(-2.0 + 0.5 * i as f64)).collect()
    }
    fn default_folds() -> usize {
        5
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlsOptions {
    #[serde(default = "PlsOptions::default_components")]
    pub n_components: usize,
    #[serde(default = "PlsOptions::default_folds")]
    pub folds: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub splits: Option<Vec<ExplicitSplit>>,
    /// Seeded shuffle splits instead of K-fold: how many.
    #[serde(default)]
    pub shuffle_splits: Option<usize>,
    /// Test fraction of each shuffle split (test size = ceil(fraction · n)).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

impl PlsOptions {
    fn default_components() -> usize {
        25
    }
    fn default_folds() -> usize {
        5
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeScore {
    /// arccos of the normalized Frobenius inner product, in [0, π].
    Angular,
    /// Frobenius norm of the difference.
    Euclidean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcrustesOptions {
    /// 1 = rotations only; 0 = any invertible linear map (full whitening).
    #[serde(default = "ProcrustesOptions::default_alpha")]
    pub alpha: f64,
    #[serde(default = "ProcrustesOptions::default_score")]
    pub score: ShapeScore,
    /// Folds for fitting on train and scoring held-out stimuli; 0 scores in sample.
    #[serde(default)]
    pub folds: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub splits: Option<Vec<ExplicitSplit>>,
}

impl ProcrustesOptions {
    fn default_alpha() -> f64 {
        1.0
    }
    fn default_score() -> ShapeScore {
        ShapeScore::Angular
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneToOneOptions {
    #[serde(default = "OneToOneOptions::default_folds")]
    pub folds: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub splits: Option<Vec<ExplicitSplit>>,
    /// Seeded shuffle splits instead of K-fold: how many.
    #[serde(default)]
    pub shuffle_splits: Option<usize>,
    /// Test fraction of each shuffle split (test size = ceil(fraction · n)).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

impl OneToOneOptions {
    fn default_folds() -> usize {
        5
    }
}

fn default_test_fraction() -> f64 {
    0.1
}

/// Outer splits of a cross-validated metric: explicit splits, else seeded
/// shuffle splits (count, test fraction), else seeded K-fold.
#[derive(Debug, Clone, Copy)]
pub struct SplitPlan<'a> {
    pub folds: usize,
    pub seed: u64,
    pub splits: Option<&'a [ExplicitSplit]>,
    pub shuffle: Option<(usize, f64)>,
}

/// A metric with its options, decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Rsa(RsaOptions),
    LinearCka(LinearCkaOptions),
    RbfCka(RbfCkaOptions),
    Cca(NoOptions),
    Svcca(SvccaOptions),
    Pwcca(NoOptions),
    MutualKnn(MutualKnnOptions),
    Ridge(RidgeOptions),
    Pls(PlsOptions),
    Procrustes(ProcrustesOptions),
    OneToOne(OneToOneOptions),
}

/// A metric as a request names it: an id alone, or an id with options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MetricRequest {
    Id(String),
    WithOptions {
        id: String,
        #[serde(default)]
        #[schema(value_type = Object)]
        options: serde_json::Map<String, Value>,
    },
}

impl MetricRequest {
    pub fn id(&self) -> &str {
        match self {
            MetricRequest::Id(id) | MetricRequest::WithOptions { id, .. } => id,
        }
    }
}

fn options<T: serde::de::DeserializeOwned>(
    field: &str,
    opts: &serde_json::Map<String, Value>,
) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(opts.clone()))
        .map_err(|e| Error::invalid(format!("{field}.options.{}: {}", e.path(), e.inner())))
}

impl Metric {
    /// Decodes one requested metric; `field` names it in errors (`metrics[2]`).
    pub fn parse(field: &str, req: &MetricRequest) -> Result<Metric> {
        let empty = serde_json::Map::new();
        let (id, opts) = match req {
            MetricRequest::Id(id) => (id.as_str(), &empty),
            MetricRequest::WithOptions { id, options } => (id.as_str(), options),
        };
        let m = match id {
            "rsa" => Metric::Rsa(options(field, opts)?),
            "linear_cka" => Metric::LinearCka(options(field, opts)?),
            "rbf_cka" => Metric::RbfCka(options(field, opts)?),
            "cca" => Metric::Cca(options(field, opts)?),
            "svcca" => Metric::Svcca(options(field, opts)?),
            "pwcca" => Metric::Pwcca(options(field, opts)?),
            "mutual_knn" => Metric::MutualKnn(options(field, opts)?),
            "ridge" => Metric::Ridge(options(field, opts)?),
            "pls" => Metric::Pls(options(field, opts)?),
            "procrustes" => Metric::Procrustes(options(field, opts)?),
            "one_to_one" => Metric::OneToOne(options(field, opts)?),
            other => {
                let names: Vec<&str> = metrics().iter().map(|m| m.id).collect();
                return Err(Error::invalid(format!(
                    "{field}: unknown metric id {other:?} (known: {})",
                    names.join(", ")
                )));
            }
        };
        m.check(field)?;
        Ok(m)
    }

    fn check(&self, field: &str) -> Result<()> {
        match self {
            Metric::RbfCka(o) if !(o.threshold > 0.0 && o.threshold.is_finite()) => {
                Err(Error::invalid(format!(
                    "{field}.options.threshold: must be positive, got {}",
                    o.threshold
                )))
            }
            Metric::Svcca(o) if !(o.variance_kept > 0.0 && o.variance_kept <= 1.0) => {
                Err(Error::invalid(format!(
                    "{field}.options.variance_kept: must be in (0, 1], got {}",
                    o.variance_kept
                )))
            }
            Metric::MutualKnn(o) if o.k == 0 => Err(Error::invalid(format!(
                "{field}.options.k: must be at least 1"
            ))),
            Metric::MutualKnn(MutualKnnOptions {
                clip_quantile: Some(q),
                ..
            }) if !(*q > 0.0 && *q <= 1.0) => Err(Error::invalid(format!(
                "{field}.options.clip_quantile: must be in (0, 1], got {q}"
            ))),
            Metric::Ridge(o)
                if o.alphas.is_empty() || o.alphas.iter().any(|a| !(*a > 0.0 && a.is_finite())) =>
            {
                Err(Error::invalid(format!(
                    "{field}.options.alphas: must be a non-empty list of positive numbers"
                )))
            }
            Metric::Ridge(o) if o.inner == RidgeInner::Kfold && o.inner_folds < 2 => {
                Err(Error::invalid(format!(
                    "{field}.options.inner_folds: must be at least 2, got {}",
                    o.inner_folds
                )))
            }
            Metric::Ridge(RidgeOptions {
                splits: Some(s), ..
            })
            | Metric::Pls(PlsOptions {
                splits: Some(s), ..
            }) if s.is_empty() => Err(Error::invalid(format!(
                "{field}.options.splits: must not be empty when given"
            ))),
            Metric::Procrustes(o) if !(0.0..=1.0).contains(&o.alpha) => Err(Error::invalid(
                format!("{field}.options.alpha: must be in [0, 1], got {}", o.alpha),
            )),
            Metric::Procrustes(o) if o.folds == 1 => Err(Error::invalid(format!(
                "{field}.options.folds: must be 0 (in sample) or at least 2"
            ))),
            Metric::Ridge(RidgeOptions {
                test_fraction: f, ..
            })
            | Metric::Pls(PlsOptions {
                test_fraction: f, ..
            })
            | Metric::OneToOne(OneToOneOptions {
                test_fraction: f, ..
            }) if !(*f > 0.0 && *f < 1.0) => Err(Error::invalid(format!(
                "{field}.options.test_fraction: must be in (0, 1), got {f}"
            ))),
            Metric::Pls(o) if o.n_components == 0 => Err(Error::invalid(format!(
                "{field}.options.n_components: must be at least 1"
            ))),
            _ => Ok(()),
        }
    }

    /// Checks what depends on the data: explicit splits against the stimulus
    /// count, folds that would leave a fold empty, repetitions for the
    /// Mahalanobis-type RDMs.
    pub fn check_against(&self, field: &str, n: u64, reps_a: u64, reps_b: u64) -> Result<()> {
        let (folds, splits) = match (self, self.split_plan()) {
            (_, Some(plan)) => (plan.folds, plan.splits),
            (Metric::Rsa(o), None) => {
                if o.rdm.needs_repetitions() && reps_b < 2 {
                    return Err(Error::invalid(format!(
                        "{field}.options.rdm: {:?} needs b with repetitions (reps >= 2 × stimuli × channels); b has {reps_b}",
                        o.rdm
                    )));
                }
                if o.rdm_a.unwrap_or(o.rdm).needs_repetitions() && reps_a < 2 {
                    return Err(Error::invalid(format!(
                        "{field}.options.rdm_a: a has no repetitions for {:?}; set rdm_a to a method without them \
                         (e.g. \"sq_euclidean\")",
                        o.rdm_a.unwrap_or(o.rdm)
                    )));
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        match splits {
            Some(splits) => {
                for (k, s) in splits.iter().enumerate() {
                    let at = format!("{field}.options.splits[{k}]");
                    if s.train.is_empty() || s.test.is_empty() {
                        return Err(Error::invalid(format!(
                            "{at}: train and test must both be non-empty"
                        )));
                    }
                    if let Some(bad) = s.train.iter().chain(&s.test).find(|&&j| j >= n) {
                        return Err(Error::invalid(format!(
                            "{at}: index {bad} is out of range for {n} stimuli"
                        )));
                    }
                    if let Some(both) = s.train.iter().find(|j| s.test.contains(j)) {
                        return Err(Error::invalid(format!(
                            "{at}: stimulus {both} is in both train and test"
                        )));
                    }
                }
                Ok(())
            }
            None if folds as u64 > n => Err(Error::invalid(format!(
                "{field}.options.folds: {folds} folds would leave folds empty with {n} stimuli"
            ))),
            None => Ok(()),
        }
    }

    /// How a cross-validated metric splits its stimuli; None for the
    /// metrics that use every stimulus at once (and in-sample Procrustes).
    /// The metric's explicit outer splits, if it has any.
    pub fn explicit_splits(&self) -> Option<&[ExplicitSplit]> {
        self.split_plan().and_then(|p| p.splits)
    }

    /// The same metric with other explicit outer splits (None: its seeded
    /// splits); metrics that do not split their stimuli are unchanged.
    pub fn with_explicit_splits(&self, splits: Option<Vec<ExplicitSplit>>) -> Metric {
        let mut m = self.clone();
        match &mut m {
            Metric::Ridge(o) => o.splits = splits,
            Metric::Pls(o) => o.splits = splits,
            Metric::OneToOne(o) => o.splits = splits,
            Metric::Procrustes(o) => o.splits = splits,
            _ => {}
        }
        m
    }

    pub fn split_plan(&self) -> Option<SplitPlan<'_>> {
        fn plan(
            folds: usize,
            seed: u64,
            splits: &Option<Vec<ExplicitSplit>>,
            shuffle: Option<usize>,
            fraction: f64,
        ) -> SplitPlan<'_> {
            SplitPlan {
                folds,
                seed,
                splits: splits.as_deref(),
                shuffle: shuffle.map(|k| (k, fraction)),
            }
        }
        match self {
            Metric::Ridge(o) => Some(plan(
                o.folds,
                o.seed,
                &o.splits,
                o.shuffle_splits,
                o.test_fraction,
            )),
            Metric::Pls(o) => Some(plan(
                o.folds,
                o.seed,
                &o.splits,
                o.shuffle_splits,
                o.test_fraction,
            )),
            Metric::OneToOne(o) => Some(plan(
                o.folds,
                o.seed,
                &o.splits,
                o.shuffle_splits,
                o.test_fraction,
            )),
            Metric::Procrustes(o) if o.folds > 0 || o.splits.is_some() => {
                Some(plan(o.folds, o.seed, &o.splits, None, 0.0))
            }
            _ => None,
        }
    }

    pub fn id(&self) -> &'static str {
        match self {
            Metric::Rsa(_) => "rsa",
            Metric::LinearCka(_) => "linear_cka",
            Metric::RbfCka(_) => "rbf_cka",
            Metric::Cca(_) => "cca",
            Metric::Svcca(_) => "svcca",
            Metric::Pwcca(_) => "pwcca",
            Metric::MutualKnn(_) => "mutual_knn",
            Metric::Ridge(_) => "ridge",
            Metric::Pls(_) => "pls",
            Metric::Procrustes(_) => "procrustes",
            Metric::OneToOne(_) => "one_to_one",
        }
    }

    /// The options with every default filled in, as results record them.
    pub fn options_json(&self) -> Value {
        let v = match self {
            Metric::Rsa(o) => serde_json::to_value(o),
            Metric::LinearCka(o) => serde_json::to_value(o),
            Metric::RbfCka(o) => serde_json::to_value(o),
            Metric::Cca(o) | Metric::Pwcca(o) => serde_json::to_value(o),
            Metric::Svcca(o) => serde_json::to_value(o),
            Metric::MutualKnn(o) => serde_json::to_value(o),
            Metric::Ridge(o) => serde_json::to_value(o),
            Metric::Pls(o) => serde_json::to_value(o),
            Metric::Procrustes(o) => serde_json::to_value(o),
            Metric::OneToOne(o) => serde_json::to_value(o),
        };
        v.unwrap_or(Value::Null)
    }

    /// The fewest stimuli the metric is defined for.
    pub fn min_stimuli(&self) -> u64 {
        match self {
            Metric::LinearCka(LinearCkaOptions { debiased: true }) => 4,
            Metric::RbfCka(o) if o.debiased => 4,
            Metric::MutualKnn(o) => o.k as u64 + 1,
            Metric::Ridge(o) if o.inner == RidgeInner::Loo => 2 * o.folds.max(2) as u64,
            Metric::Ridge(o) => 2 * o.folds.max(o.inner_folds) as u64,
            Metric::Pls(o) => (2 * o.folds).max(o.n_components + 2) as u64,
            Metric::Procrustes(o) => (2 * o.folds).max(3) as u64,
            Metric::OneToOne(o) => (2 * o.folds).max(4) as u64,
            _ => 3,
        }
    }

    pub fn direction(&self) -> &'static str {
        match self {
            Metric::Procrustes(_) => "distance",
            _ => "similarity",
        }
    }
}

/// Decodes a request's metric list, naming the offending entry.
pub fn parse_metrics(reqs: &[MetricRequest]) -> Result<Vec<Metric>> {
    if reqs.is_empty() {
        return Err(Error::invalid(
            "metrics: list is empty; name at least one metric id",
        ));
    }
    reqs.iter()
        .enumerate()
        .map(|(i, r)| Metric::parse(&format!("metrics[{i}]"), r))
        .collect()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricOption {
    pub name: &'static str,
    pub kind: &'static str,
    #[schema(value_type = Object)]
    pub default: Value,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricInfo {
    pub id: &'static str,
    /// `similarity` (higher is more alike) or `distance` (lower is).
    pub direction: &'static str,
    pub description: &'static str,
    pub options: Vec<MetricOption>,
    pub invariances: Vec<&'static str>,
    pub min_stimuli: u64,
}

fn opt(
    name: &'static str,
    kind: &'static str,
    default: Value,
    description: &'static str,
) -> MetricOption {
    MetricOption {
        name,
        kind,
        default,
        description,
    }
}

const PERMUTE: &str = "consistent stimulus permutation";

pub fn metrics() -> Vec<MetricInfo> {
    let debiased = || {
        opt(
            "debiased",
            "bool",
            json!(false),
            "unbiased HSIC estimator (Song et al. 2012); needs n >= 4",
        )
    };
    vec![
        MetricInfo {
            id: "rsa",
            direction: "similarity",
            description: "representational similarity analysis: an RDM per representation (strict upper triangle, \
                row-major as scipy squareform), compared; NaN entries are dropped pairwise",
            options: vec![
                opt("rdm", "euclidean | sq_euclidean | correlation | cosine | poisson | mahalanobis | crossnobis", json!("correlation"),
                    "sq_euclidean is rsatoolbox's 'euclidean' (squared, divided by the number of channels); \
                     poisson is rsatoolbox's symmetric KL with prior lambda 1, weight 0.1; mahalanobis and crossnobis \
                     need repetitions (reps x stimuli x channels) and use the noise model"),
                opt("rdm_a", "an rdm method or null", json!(null), "a's RDM when it should differ from b's"),
                opt("noise", "identity | shrinkage_eye", json!("shrinkage_eye"),
                    "noise precision of mahalanobis/crossnobis: from residuals, shrunk towards a scaled identity"),
                opt("comparison", "cosine | pearson | spearman | rho_a | tau_a | tau_b | corr_cov | cosine_cov", json!("spearman"),
                    "rho_a and tau_a as rsatoolbox; tau_b as scipy.stats.kendalltau; ranks average ties; corr_cov and \
                     cosine_cov whiten by the RDM entries' covariance under iid noise (rsatoolbox, sigma_k identity)"),
            ],
            invariances: vec![PERMUTE, "orthogonal transform (euclidean, sq_euclidean)", "per-stimulus affine scaling (correlation)"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "linear_cka",
            direction: "similarity",
            description: "linear centered kernel alignment (Kornblith et al. 2019); the feature-space or Gram form \
                is chosen from the shapes (they are equal)",
            options: vec![debiased()],
            invariances: vec![PERMUTE, "orthogonal transform", "isotropic scaling", "translation"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "rbf_cka",
            direction: "similarity",
            description: "CKA with Gaussian kernels exp(-d^2 / (2 threshold^2 median(d^2)))",
            options: vec![
                opt("threshold", "number > 0", json!(1.0), "bandwidth as a fraction of the median distance"),
                opt("median", "all_pairs | off_diagonal", json!("all_pairs"),
                    "all_pairs includes the zero diagonal (Kornblith et al.'s code); off_diagonal excludes it (Brain-Score)"),
                debiased(),
            ],
            invariances: vec![PERMUTE, "orthogonal transform", "isotropic scaling", "translation"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "cca",
            direction: "similarity",
            description: "mean squared canonical correlation (R^2_CCA) over min(rank a, rank b) pairs, on centered data",
            options: vec![],
            invariances: vec![PERMUTE, "invertible linear transform", "translation"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "svcca",
            direction: "similarity",
            description: "SVCCA (Raghu et al. 2017): each representation reduced to the top principal components \
                keeping variance_kept of its variance, then the mean canonical correlation",
            options: vec![opt("variance_kept", "number in (0, 1]", json!(0.99), "variance each side keeps")],
            invariances: vec![PERMUTE, "orthogonal transform", "isotropic scaling", "translation"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "pwcca",
            direction: "similarity",
            description: "projection-weighted CCA (Morcos et al. 2018): canonical correlations weighted by how much of \
                representation a each canonical variate accounts for; weights come from a (the first array), so the \
                metric is asymmetric; widths may differ",
            options: vec![],
            invariances: vec![PERMUTE, "translation"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "mutual_knn",
            direction: "similarity",
            description: "mutual k-nearest-neighbour alignment (Huh et al. 2024): rows L2-normalized, neighbours by \
                cosine similarity excluding self, mean fraction of shared neighbours",
            options: vec![
                opt("k", "integer >= 1", json!(10), "neighbours per stimulus"),
                opt("clip_quantile", "number in (0, 1] or null", json!(null),
                    "clamp each representation's values to this quantile of their magnitudes before normalizing"),
            ],
            invariances: vec![PERMUTE, "orthogonal transform", "per-stimulus scaling"],
            min_stimuli: 11,
        },
        MetricInfo {
            id: "ridge",
            direction: "similarity",
            description: "linear predictivity: ridge regression from a (model features) to each neuron of b, the \
                penalty chosen per neuron by inner K-fold CV (R^2), intercept fitted; held-out Pearson r per neuron, \
                median over neurons, mean and SEM over outer splits. One SVD per training set serves every alpha",
            options: vec![
                opt("alphas", "list of numbers > 0", json!(RidgeOptions::default_alphas()), "candidate penalties"),
                opt("folds", "integer >= 2", json!(5), "outer folds when splits are not given"),
                opt("inner", "kfold | loo", json!("kfold"), "how each neuron's alpha is chosen: best summed R^2 over inner_folds, or least mean squared leave-one-out error in closed form (scikit-learn's RidgeCV(alpha_per_target=True))"),
                opt("inner_folds", "integer >= 2", json!(5), "contiguous inner folds over the training stimuli (inner = kfold)"),
                opt("seed", "integer", json!(0), "seed of the outer shuffle (SplitMix64 Fisher-Yates)"),
                opt("splits", "list of {train: [i], test: [i]}", json!(null), "explicit outer splits, e.g. Brain-Score's"),
                opt("shuffle_splits", "integer or null", json!(null), "seeded shuffle splits instead of K-fold (scikit-learn's ShuffleSplit scheme)"),
                opt("test_fraction", "number in (0, 1)", json!(0.1), "test share of each shuffle split"),
            ],
            invariances: vec![PERMUTE, "invertible linear transform of a (as alpha -> 0)"],
            min_stimuli: 10,
        },
        MetricInfo {
            id: "pls",
            direction: "similarity",
            description: "linear predictivity by partial least squares regression (NIPALS, regression deflation, \
                unscaled, as scikit-learn's PLSRegression(scale=False)); component weights are exact dominant \
                singular vectors (scikit-learn's power iteration converged); held-out Pearson r per neuron, median \
                over neurons, mean and SEM over outer splits",
            options: vec![
                opt("n_components", "integer >= 1", json!(25), "Brain-Score's default"),
                opt("folds", "integer >= 2", json!(5), "outer folds when splits are not given"),
                opt("seed", "integer", json!(0), "seed of the outer shuffle (SplitMix64 Fisher-Yates)"),
                opt("splits", "list of {train: [i], test: [i]}", json!(null), "explicit outer splits"),
                opt("shuffle_splits", "integer or null", json!(null), "seeded shuffle splits instead of K-fold (scikit-learn's ShuffleSplit scheme)"),
                opt("test_fraction", "number in (0, 1)", json!(0.1), "test share of each shuffle split"),
            ],
            invariances: vec![PERMUTE, "orthogonal transform of a"],
            min_stimuli: 27,
        },
        MetricInfo {
            id: "procrustes",
            direction: "distance",
            description: "generalized shape metric (Williams et al. 2021, netrep's LinearMetric): centered, partially \
                whitened (alpha; variance preserved; eigenvalues clipped at 1e-7), the narrower side zero-padded, \
                aligned by the optimal rotation on training stimuli and scored on held-out ones",
            options: vec![
                opt("alpha", "number in [0, 1]", json!(1.0), "1: rotations only (Procrustes); 0: any invertible linear map (CCA-like)"),
                opt("score", "angular | euclidean", json!("angular"), "arccos of the normalized inner product, or Frobenius distance"),
                opt("folds", "0 or integer >= 2", json!(0), "0 fits and scores on all stimuli; otherwise the mean held-out distance"),
                opt("seed", "integer", json!(0), "seed of the fold shuffle"),
                opt("splits", "list of {train: [i], test: [i]}", json!(null), "explicit splits"),
            ],
            invariances: vec![PERMUTE, "orthogonal transform", "translation", "invertible linear transform (alpha = 0)"],
            min_stimuli: 3,
        },
        MetricInfo {
            id: "one_to_one",
            direction: "similarity",
            description: "one-to-one mapping (Brain-Score's OneToOne): each neuron matched to the model unit with the \
                highest training-set correlation, mapped by the training least-squares line, scored on held-out stimuli \
                (Pearson r per neuron, median over neurons, mean and SEM over splits)",
            options: vec![
                opt("folds", "integer >= 2", json!(5), "outer folds when splits are not given"),
                opt("seed", "integer", json!(0), "seed of the outer shuffle (SplitMix64 Fisher-Yates)"),
                opt("splits", "list of {train: [i], test: [i]}", json!(null), "explicit outer splits"),
                opt("shuffle_splits", "integer or null", json!(null), "seeded shuffle splits instead of K-fold (scikit-learn's ShuffleSplit scheme)"),
                opt("test_fraction", "number in (0, 1)", json!(0.1), "test share of each shuffle split"),
            ],
            invariances: vec![PERMUTE, "per-unit affine transform of a"],
            min_stimuli: 10,
        },
    ]
}
