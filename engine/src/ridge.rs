//! Linear predictivity: ridge regression from model features to each
//! neuron, with the penalty chosen per neuron by inner cross-validation and
//! the fit scored on held-out stimuli. One eigendecomposition per training
//! set serves every alpha (himalaya's trick): with the centered design's
//! eigenpairs (λ, V), the weights for penalty α are V diag(1/(λ+α)) Vᵀ XᵀY.
//! With more features than stimuli the same is done in kernel form on
//! blocks of one Gram matrix X Xᵀ computed once. Intercepts are fitted (X
//! and Y centered on the training stimuli), as scikit-learn's
//! `Ridge(fit_intercept=True)`.

use neuralign_core::catalog::{RidgeInner, RidgeOptions};
use std::cell::OnceCell;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::lru::ByteLru;
use crate::predictivity::{outer_splits, r2, Predictivity, Scorer};
use crate::splits::{kfold, Split};

#[derive(Debug, Clone, Serialize)]
pub struct RidgeResult {
    #[serde(flatten)]
    pub scores: Predictivity,
    /// Per neuron, the alpha chosen most often over splits.
    pub per_neuron_alpha: Vec<f64>,
}

/// The design matrix, with its Gram matrix X Xᵀ when features outnumber
/// stimuli: then every fit is kernel ridge on blocks of that one Gram
/// matrix (computed once per call, when a fit needs it), and no fit touches
/// the p features again.
struct Design<'a> {
    x: &'a Tensor,
    gram: OnceCell<Option<Tensor>>,
}

impl<'a> Design<'a> {
    fn new(x: &'a Tensor) -> Self {
        Design {
            x,
            gram: OnceCell::new(),
        }
    }

    fn gram(&self) -> Option<&Tensor> {
        self.gram
            .get_or_init(|| {
                let (n, p) = (self.x.size()[0], self.x.size()[1]);
                (p > n).then(|| self.x.matmul(&self.x.transpose(0, 1)))
            })
            .as_ref()
    }
}

/// What one training set's fit takes from the design alone: the same for
/// every target fitted on these rows, so a caller scoring one model layer
/// again (a re-score, another recording of the same stimuli) can keep it
/// (`DecompositionCache`).
struct Decomposed {
    train: Tensor,
    /// The eigenvalues λ kept (k).
    lambda: Tensor,
    /// Kernel form: U (m × k); feature form: V (p × k).
    vectors: Tensor,
    /// Feature form: the training mean of X.
    x_mean: Option<Tensor>,
    /// Feature form without the LOO search: the centered training rows,
    /// for X_cᵀ y (such decompositions are never kept).
    centered: Option<Tensor>,
    /// What the LOO search reads.
    loo: Option<LooBasis>,
    /// The projection of the held-out rows it was made for.
    held_out: Option<Tensor>,
}

struct LooBasis {
    /// The orthonormal basis U (m × k) of the centered training rows.
    u: Tensor,
    /// Feature form: X_c V = U Λ^½, whose transpose gives Λ^½ Uᵀ y_c.
    projection: Option<Tensor>,
    /// ‖UᵀU − I‖_F: how far U is from orthonormal (widens the LOO bounds).
    delta: f64,
}

impl Decomposed {
    /// The same decomposition, sharing its tensors (never written to).
    fn share(&self) -> Decomposed {
        let opt = |t: &Option<Tensor>| t.as_ref().map(Tensor::shallow_clone);
        Decomposed {
            train: self.train.shallow_clone(),
            lambda: self.lambda.shallow_clone(),
            vectors: self.vectors.shallow_clone(),
            x_mean: opt(&self.x_mean),
            centered: opt(&self.centered),
            loo: self.loo.as_ref().map(|l| LooBasis {
                u: l.u.shallow_clone(),
                projection: opt(&l.projection),
                delta: l.delta,
            }),
            held_out: opt(&self.held_out),
        }
    }

    fn bytes(&self) -> u64 {
        let size = |t: &Tensor| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64;
        let opt = |t: &Option<Tensor>| t.as_ref().map_or(0, size);
        size(&self.train)
            + size(&self.lambda)
            + size(&self.vectors)
            + opt(&self.x_mean)
            + opt(&self.centered)
            + opt(&self.held_out)
            + self
                .loo
                .as_ref()
                .map_or(0, |l| size(&l.u) + opt(&l.projection))
    }
}

/// Every outer split's decomposition of one design under one set of
/// splits, as a `DecompositionCache` keeps it.
struct Decompositions(Vec<Decomposed>);

impl Decompositions {
    fn share(&self) -> Decompositions {
        Decompositions(self.0.iter().map(Decomposed::share).collect())
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(Decomposed::bytes).sum()
    }
}

/// Where a caller keeps ridge's decompositions between calls, under a name
/// for the design's contents that it chooses (ridge adds the splits and
/// the device), bounded in bytes. Only fits that choose alpha by LOO are
/// kept: a k-fold inner search refits on every inner split.
pub struct DecompositionCache(ByteLru<String, Decompositions>);

impl DecompositionCache {
    pub fn new(capacity_bytes: u64) -> Self {
        DecompositionCache(ByteLru::new(capacity_bytes))
    }

    fn get(&self, key: &str) -> Option<Decompositions> {
        self.0.get_with(key, Decompositions::share)
    }

    fn put(&self, key: String, d: Decompositions) {
        let bytes = d.bytes();
        self.0.insert(key, d, bytes);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }

    /// Designs held now.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls that found their decompositions, since the start.
    pub fn hits(&self) -> u64 {
        self.0.hits()
    }
}

/// One training set's fit: predictions for rows r are
/// proj(r) · diag(1 / (λ + α)) · uty, with the eigenvalues λ of the
/// centered Gram (kernel form) or covariance (feature form).
struct Fit {
    d: Decomposed,
    alphas: Tensor,
    /// k × n_alphas: 1 / (λ + α).
    shrink: Tensor,
    uty: Tensor,
    y_mean: Tensor,
}

/// Eigenpairs of a symmetric positive semi-definite matrix, dropping the
/// numerically zero ones (ridge never divides by them).
fn eig_psd(m: &Tensor, scale: i64) -> Result<(Tensor, Tensor)> {
    let (lambda, vecs) = m.f_linalg_eigh("L")?;
    let tol = lambda.max().double_value(&[]).max(0.0) * scale as f64 * f64::EPSILON;
    let keep = lambda.gt(tol).nonzero().squeeze_dim(1);
    Ok((lambda.index_select(0, &keep), vecs.index_select(1, &keep)))
}

/// Rows `r` × training rows `t` of the Gram matrix of X centered on the
/// training mean: K_rt − mean_t(K_rt) − mean_t(K_tt)ᵀ + mean(K_tt).
fn centered_gram(gram: &Tensor, r: &Tensor, t: &Tensor) -> Tensor {
    let k_tt = gram.index_select(0, t).index_select(1, t);
    let k_rt = gram.index_select(0, r).index_select(1, t);
    let row_mean = k_rt.mean_dim(1, true, Kind::Double);
    let col_mean = k_tt.mean_dim(0, true, Kind::Double);
    &k_rt - row_mean - col_mean + k_tt.mean(Kind::Double)
}

/// ‖UᵀU − I‖_F.
fn orthogonality_loss(u: &Tensor) -> f64 {
    let eye = Tensor::eye(u.size()[1], (Kind::Double, u.device()));
    (u.transpose(0, 1).matmul(u) - eye)
        .square()
        .sum(Kind::Double)
        .sqrt()
        .double_value(&[])
}

/// The training rows' decomposition; `loo`: with what the LOO search
/// reads; `held_out`: rows to project now, for the predictions.
fn decompose(
    d: &Design,
    train: &Tensor,
    held_out: Option<&Tensor>,
    loo: bool,
) -> Result<Decomposed> {
    let n = train.size()[0];
    match d.gram() {
        Some(gram) => {
            let (lambda, u) = eig_psd(&centered_gram(gram, train, train), n)?;
            let held_out = held_out.map(|r| centered_gram(gram, r, train).matmul(&u));
            let loo = loo.then(|| LooBasis {
                u: u.shallow_clone(),
                projection: None,
                delta: orthogonality_loss(&u),
            });
            Ok(Decomposed {
                train: train.shallow_clone(),
                lambda,
                vectors: u,
                x_mean: None,
                centered: None,
                loo,
                held_out,
            })
        }
        None => {
            let x_t = d.x.index_select(0, train);
            let x_mean = x_t.mean_dim(0, true, Kind::Double);
            let xc = x_t - &x_mean;
            let (lambda, v) = eig_psd(&xc.transpose(0, 1).matmul(&xc), n.max(d.x.size()[1]))?;
            let held_out = held_out.map(|r| (d.x.index_select(0, r) - &x_mean).matmul(&v));
            let (loo, centered) = if loo {
                // X_c V once: uty = (X_c V)ᵀ y_c, and U = X_c V Λ^-½.
                let projection = xc.matmul(&v);
                let u = &projection / lambda.sqrt();
                let delta = orthogonality_loss(&u);
                (
                    Some(LooBasis {
                        u,
                        projection: Some(projection),
                        delta,
                    }),
                    None,
                )
            } else {
                (None, Some(xc))
            };
            Ok(Decomposed {
                train: train.shallow_clone(),
                lambda,
                vectors: v,
                x_mean: Some(x_mean),
                centered,
                loo,
                held_out,
            })
        }
    }
}

/// The fit of y on a decomposition, for every alpha.
fn fit(d: Decomposed, y: &Tensor, alphas: &Tensor) -> Fit {
    let y_t = y.index_select(0, &d.train);
    let y_mean = y_t.mean_dim(0, true, Kind::Double);
    let yc = &y_t - &y_mean;
    let uty = match (&d.loo, &d.centered) {
        (
            Some(LooBasis {
                projection: Some(p),
                ..
            }),
            _,
        ) => p.transpose(0, 1).matmul(&yc),
        (_, Some(xc)) => d
            .vectors
            .transpose(0, 1)
            .matmul(&xc.transpose(0, 1).matmul(&yc)),
        // Kernel form: the vectors are U.
        _ => d.vectors.transpose(0, 1).matmul(&yc),
    };
    let shrink = (d.lambda.unsqueeze(1) + alphas.unsqueeze(0)).reciprocal();
    Fit {
        d,
        alphas: alphas.shallow_clone(),
        shrink,
        uty,
        y_mean,
    }
}

impl Fit {
    fn project(&self, d: &Design, rows: &Tensor) -> Tensor {
        match (d.gram(), &self.d.x_mean) {
            (Some(gram), _) => centered_gram(gram, rows, &self.d.train).matmul(&self.d.vectors),
            (None, Some(mean)) => (d.x.index_select(0, rows) - mean).matmul(&self.d.vectors),
            (None, None) => unreachable!("feature-form fits keep their mean"),
        }
    }

    /// Predictions for every alpha: n_alphas × n_rows × q.
    fn predict_all(&self, d: &Design, rows: &Tensor) -> Tensor {
        let proj = self.project(d, rows);
        let scaled = self.shrink.transpose(0, 1).unsqueeze(2) * self.uty.unsqueeze(0); // a × k × q
        proj.unsqueeze(0).matmul(&scaled) + self.y_mean.unsqueeze(0)
    }

    /// Per neuron, the index of the alpha with the least mean squared
    /// leave-one-out error on the training rows (the first, on exact ties),
    /// in closed form: with the hat matrix H_α = 11ᵀ/m + X_c (X_cᵀX_c + αI)⁻¹
    /// X_cᵀ (the intercept unpenalized), the LOO residual of row i is
    /// (y_i − ŷ_i) / (1 − H_α,ii). This is the criterion of scikit-learn's
    /// `RidgeCV(alpha_per_target=True)`.
    ///
    /// With U the orthonormal basis of the centered design's column space
    /// and Q = Uᵀy_c, the residual is r_α = y⊥ + U diag(g_α) Q, where
    /// y⊥ = y_c − U Q and g_α = α / (λ + α); the error is Σ_i w_αi r_αi²
    /// with w_αi = 1 / (m (1 − H_α,ii)²). Each (alpha, neuron) error costs
    /// a product over rows × directions, most of ridge's time; most of them
    /// cannot be the least and are never computed (nor are any of a neuron's
    /// when only one alpha is left), by bounds that cost no such product
    /// (`loo_bounds`; on the score bench 95% of the pairs go). The rest are
    /// computed in float64.
    fn loo_best(&self, y: &Tensor) -> Tensor {
        let t = self.loo_terms(y);
        let (lower, upper) = loo_bounds(&t.coords, &t.y_perp, &t.spared, &t.weights, t.delta);
        let candidates = candidates(&lower, &upper);
        // A neuron with one candidate has its alpha; only the others'
        // candidates are computed.
        let count = candidates.sum_dim_intlist(0, false, Kind::Int64);
        let contested = count.gt(1);
        let errors = loo_errors(
            &t.u,
            &t.coords,
            &t.y_perp,
            &t.spared,
            &t.weights,
            &candidates.logical_and(&contested.unsqueeze(0)),
        );
        let only = candidates.to_kind(Kind::Int64).argmax(0, false);
        errors.argmin(0, false).where_self(&contested, &only)
    }

    /// The terms of `loo_best`'s residuals and weights.
    fn loo_terms(&self, y: &Tensor) -> LooTerms {
        let m = self.d.train.size()[0] as f64;
        let basis = self.d.loo.as_ref().expect("LOO fits keep their basis");
        let u = basis.u.shallow_clone();
        let coords = match &basis.projection {
            // Feature form: uty = Λ^½ Uᵀy_c.
            Some(_) => &self.uty / self.d.lambda.sqrt().unsqueeze(1),
            // Kernel form: uty = Uᵀy_c.
            None => self.uty.shallow_clone(),
        };
        // Leverage per eigen-direction: u_k² λ / (λ + α).
        let h = (u.square() * self.d.lambda.unsqueeze(0)).matmul(&self.shrink) + 1.0 / m; // m × a
        let keep: Tensor = 1.0 - h;
        let weights = keep.square().reciprocal() / m; // m × a
        let yc = y.index_select(0, &self.d.train) - &self.y_mean;
        let y_perp = &yc - u.matmul(&coords); // m × q
        let spared = &self.shrink * self.alphas.unsqueeze(0); // g: k × a
        LooTerms {
            u,
            coords,
            y_perp,
            spared,
            weights,
            delta: basis.delta,
        }
    }

    /// Predictions from the rows' projection with a per-neuron alpha
    /// index: n_rows × q.
    fn predict_chosen(&self, proj: &Tensor, best: &Tensor) -> Tensor {
        proj.matmul(&(self.shrink.index_select(1, best) * &self.uty)) + &self.y_mean
    }
}

struct LooTerms {
    /// U (m × k).
    u: Tensor,
    /// Q = Uᵀy_c (k × q).
    coords: Tensor,
    /// y⊥ = y_c − U Q (m × q).
    y_perp: Tensor,
    /// g_α = α / (λ + α) (k × a).
    spared: Tensor,
    /// w_αi = 1 / (m (1 − H_α,ii)²) (m × a).
    weights: Tensor,
    delta: f64,
}

/// Which (alpha, neuron) pairs may hold the neuron's least LOO error: those
/// whose lower bound is at most the neuron's least upper bound; a neuron
/// left with none (no finite bound) keeps every alpha.
fn candidates(lower: &Tensor, upper: &Tensor) -> Tensor {
    let candidate = lower.le_tensor(&upper.amin(0, true));
    let decided = candidate.any_dim(0, true);
    candidate.logical_or(&decided.logical_not())
}

/// Bounds (a × q each) on every (alpha, neuron) pair's LOO error that
/// cost no product over rows × directions. With s = U c, c = g_α ∘ Q (so
/// ‖s‖² = ‖c‖² and ⟨y⊥, s⟩ = 0 for an orthonormal U), the error
/// Σ_i w_i (y⊥_i + s_i)² is
///
///   A + 2 Σ_i (w_i − w̄) y⊥_i s_i + 2 w̄ ⟨y⊥, s⟩ + Σ_i w_i s_i²,
///
/// A = Σ w_i y⊥_i² exact, w̄ = A / ‖y⊥‖²; Cauchy–Schwarz bounds the
/// second term by 2 √B ‖s‖, B = Σ (w_i − w̄)² y⊥_i² (computed as
/// Σ w² y⊥² − A² / ‖y⊥‖²), and the last lies within [min w, max w] ‖s‖².
/// The noise outside the features, often most of a neuron, thus enters
/// exactly, and only its correlation with the row weights is bounded. The
/// plainer bounds min w ‖r‖² ≤ error ≤ max w ‖r‖², ‖r‖² = ‖y⊥‖² + ‖c‖²,
/// are intersected with these. The identities hold to the basis'
/// orthogonality: with δ = ‖UᵀU − I‖_F, ‖s‖² is within δ‖c‖² of ‖c‖² and
/// |⟨y⊥, s⟩| ≤ δ ‖Q‖ ‖c‖, which widen the bounds, as does a relative 1e-10
/// for rounding. A bound that is not a number (a weight of +∞ times 0)
/// becomes 0 (lower) or +∞ (upper).
fn loo_bounds(
    coords: &Tensor,
    y_perp: &Tensor,
    spared: &Tensor,
    weights: &Tensor,
    delta: f64,
) -> (Tensor, Tensor) {
    let q2 = coords.square(); // k × q
    let q2_sum = q2.sum_dim_intlist(0, false, Kind::Double); // ‖Q‖², q
    let perp_sq = y_perp.square(); // m × q
    let perp2 = perp_sq.sum_dim_intlist(0, false, Kind::Double); // ‖y⊥‖², q
    let c2 = spared.square().transpose(0, 1).matmul(&q2); // ‖c‖², a × q
    let (w_min, w_max) = (
        weights.amin(0, false).unsqueeze(1),
        weights.amax(0, false).unsqueeze(1),
    ); // a × 1
    let rounding = (&perp2 + &q2_sum).unsqueeze(0) * 1e-10;
    // The plainer bounds, from ‖r‖².
    let norms = &perp2.unsqueeze(0) + &c2;
    let slack = (&q2_sum * (3.0 * delta)).unsqueeze(0) + &rounding;
    let lower_norm = &w_min * (&norms - &slack).clamp_min(0.0);
    let upper_norm = &w_max * (&norms + &slack);
    // The bounds that keep the noise's own weighted sum exact.
    let wt = weights.transpose(0, 1); // a × m
    let exact = wt.matmul(&perp_sq); // A, a × q
    let squares = wt.square().matmul(&perp_sq); // Σ w² y⊥², a × q
    let positive = perp2.gt(0.0).unsqueeze(0);
    let perp2_safe = perp2.clamp_min(f64::MIN_POSITIVE).unsqueeze(0);
    let w_bar = (&exact / &perp2_safe).where_scalarother(&positive, 0.0);
    let spread = ((&squares - exact.square() / &perp2_safe).clamp_min(0.0) + &squares * 1e-10)
        .where_scalarother(&positive, 0.0);
    let c = c2.sqrt();
    let cross = spread.sqrt() * (&c * (2.0 * (1.0 + delta).sqrt()))
        + &w_bar * (q2_sum.sqrt().unsqueeze(0) * (2.0 * delta)) * &c;
    let margin = &w_max * &rounding;
    let lower_exact = (&exact - &cross + &w_min * (&c2 * (1.0 - delta)) - &margin).clamp_min(0.0);
    let upper_exact = &exact + &cross + &w_max * (&c2 * (1.0 + delta)) + &margin;
    let lower = lower_norm.fmax(&lower_exact);
    let upper = upper_norm.fmin(&upper_exact);
    (
        lower.where_scalarother(&lower.isnan().logical_not(), 0.0),
        upper.where_scalarother(&upper.isnan().logical_not(), f64::INFINITY),
    )
}

/// Mean squared leave-one-out errors (a × q, float64) of the residuals
/// y⊥ + U diag(g_α) Q, rows weighted by `weights` (m × a), for the
/// candidate pairs; +∞ elsewhere. The pairs go through one product
/// (pairs × directions by directions × rows), in blocks of at most 64 MiB.
fn loo_errors(
    u: &Tensor,
    coords: &Tensor,
    y_perp: &Tensor,
    spared: &Tensor,
    weights: &Tensor,
    candidates: &Tensor,
) -> Tensor {
    let (m, q, a) = (u.size()[0], coords.size()[1], spared.size()[1]);
    let dev = u.device();
    let block = ((64 << 20) / (16 * m).max(1)).max(1);
    let ut = u.transpose(0, 1).contiguous(); // k × m
    let coords_t = coords.transpose(0, 1).contiguous(); // q × k
    let perp_t = y_perp.transpose(0, 1).contiguous(); // q × m
    let spared_t = spared.transpose(0, 1).contiguous(); // a × k
    let weights_t = weights.transpose(0, 1).contiguous(); // a × m
    let pairs = candidates.nonzero(); // P × (alpha, neuron)
    let count = pairs.size()[0];
    let mut flat = Tensor::full([a * q], f64::INFINITY, (Kind::Double, dev));
    for start in (0..count).step_by(block as usize) {
        let p = pairs.slice(0, start, (start + block).min(count), 1);
        let (alpha, neuron) = (p.select(1, 0), p.select(1, 1));
        let resid = (coords_t.index_select(0, &neuron) * spared_t.index_select(0, &alpha))
            .matmul(&ut)
            + perp_t.index_select(0, &neuron);
        let e = (resid.square() * weights_t.index_select(0, &alpha)).sum_dim_intlist(
            1,
            false,
            Kind::Double,
        );
        let _ = flat.index_copy_(0, &(alpha * q + neuron), &e);
    }
    flat.reshape([a, q])
}

/// `store`: where to find and keep the decompositions of x's training
/// sets (LOO search only), under the caller's name for x's contents.
pub fn ridge(
    x: &Tensor,
    y: &Tensor,
    o: &RidgeOptions,
    store: Option<(&DecompositionCache, &str)>,
    mut step: impl FnMut() -> Result<()>,
) -> Result<RidgeResult> {
    let n = x.size()[0] as usize;
    let q = y.size()[1];
    let dev = x.device();
    let alphas = Tensor::from_slice(&o.alphas)
        .to_kind(Kind::Double)
        .to_device(dev);
    let splits = outer_splits(
        n,
        o.folds,
        o.seed,
        o.splits.as_deref(),
        o.shuffle_splits.map(|k| (k, o.test_fraction)),
    )?;
    let design = Design::new(x);
    let loo = o.inner == RidgeInner::Loo;
    let store = store
        .filter(|_| loo)
        .map(|(s, name)| (s, format!("{name} ridge {}", splits_key(&splits, dev))));
    let mut kept = store
        .as_ref()
        .and_then(|(s, key)| s.get(key))
        .filter(|d| d.0.len() == splits.len())
        .map(|d| d.0.into_iter());
    let mut made = Vec::new();
    let mut scorer = Scorer::new(q, dev);
    let mut alpha_votes = Tensor::zeros([o.alphas.len() as i64, q], (Kind::Double, dev));
    for (si, split) in splits.iter().enumerate() {
        let inner_min = match o.inner {
            RidgeInner::Kfold => o.inner_folds.max(2),
            RidgeInner::Loo => 3,
        };
        if split.train.len() < inner_min {
            return Err(EngineError::invalid(format!(
                "splits[{si}]: {} training stimuli are too few to choose alpha ({inner_min} at least)",
                split.train.len()
            )));
        }
        let (tr, te) = split.tensors(dev);
        let d = match kept.as_mut().and_then(Iterator::next) {
            Some(d) => d,
            None => {
                let d = decompose(&design, &tr, Some(&te), loo)?;
                if store.is_some() {
                    made.push(d.share());
                }
                d
            }
        };
        let f = fit(d, y, &alphas);
        let best = match o.inner {
            // Inner CV on the training stimuli, in their given order.
            RidgeInner::Kfold => {
                let mut inner_score =
                    Tensor::zeros([o.alphas.len() as i64, q], (Kind::Double, dev));
                for inner in kfold(&split.train, o.inner_folds) {
                    let (itr, iva) = inner.tensors(dev);
                    let fi = fit(decompose(&design, &itr, None, false)?, y, &alphas);
                    let pred = fi.predict_all(&design, &iva);
                    inner_score += r2(&pred, &y.index_select(0, &iva).unsqueeze(0));
                }
                inner_score.argmax(0, false) // first maximum, as numpy
            }
            // Least LOO error: the first minimum, as RidgeCV's strict update.
            RidgeInner::Loo => f.loo_best(y),
        };
        alpha_votes += best
            .one_hot(o.alphas.len() as i64)
            .transpose(0, 1)
            .to_kind(Kind::Double);
        let held_out =
            f.d.held_out
                .as_ref()
                .expect("outer fits project their test rows");
        let pred = f.predict_chosen(held_out, &best);
        scorer.add(&pred, &y.index_select(0, &te));
        step()?;
    }
    if let (Some((s, key)), false) = (store, made.is_empty()) {
        s.put(key, Decompositions(made));
    }
    let scores = scorer.finish()?;
    let chosen = alpha_votes.argmax(0, false);
    let per_neuron_alpha =
        Vec::<f64>::try_from(&alphas.index_select(0, &chosen).to_device(tch::Device::Cpu))?;
    Ok(RidgeResult {
        scores,
        per_neuron_alpha,
    })
}

/// Names the outer splits (and the device) in a store's key: a hash of
/// every split's rows, in order.
fn splits_key(splits: &[Split], device: tch::Device) -> String {
    let mut h = Sha256::new();
    for s in splits {
        for rows in [&s.train, &s.test] {
            h.update((rows.len() as u64).to_le_bytes());
            for r in rows {
                h.update(r.to_le_bytes());
            }
        }
    }
    format!("{device:?} {}", hex::encode(&h.finalize()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alpha's LOO error computed directly (a × q), as the definition
    /// reads: residual y_c − ŷ_α over 1 − H_α,ii, squared, mean.
    fn brute_force_errors(f: &Fit, d: &Design, y: &Tensor) -> Tensor {
        let m = f.d.train.size()[0] as f64;
        let proj = f.project(d, &f.d.train);
        let lever = match d.gram() {
            Some(_) => &proj * &f.d.vectors,
            None => proj.square(),
        };
        let h = lever.matmul(&f.shrink) + 1.0 / m;
        let yc = y.index_select(0, &f.d.train) - &f.y_mean;
        let errors: Vec<Tensor> = (0..f.shrink.size()[1])
            .map(|i| {
                let fitted = proj.matmul(&(f.shrink.select(1, i).unsqueeze(1) * &f.uty));
                let keep: Tensor = 1.0 - h.select(1, i);
                let loo = (&yc - fitted) / keep.unsqueeze(1);
                loo.square().mean_dim(0, false, Kind::Double)
            })
            .collect();
        Tensor::stack(&errors, 0)
    }

    /// Designs with features fewer and more than stimuli, rows of very
    /// unequal leverage, neurons with and without signal.
    fn designs() -> Vec<(Tensor, Tensor)> {
        let opts = (Kind::Double, tch::Device::Cpu);
        [(1, 120, 20), (2, 80, 60), (3, 40, 90), (4, 200, 150)]
            .into_iter()
            .map(|(seed, n, p)| {
                tch::manual_seed(seed);
                let x = Tensor::randn([n, p], opts) * Tensor::logspace(-2.0, 1.0, p, 10.0, opts);
                // A few far-out rows: leverage near 1 at small alpha.
                let _ = x.narrow(0, 0, 3).g_mul_scalar_(25.0);
                let signal = x.matmul(&Tensor::randn([p, 30], opts)) / (p as f64).sqrt();
                let noise = Tensor::randn([n, 30], opts);
                let scale = Tensor::logspace(-3.0, 2.0, 30, 10.0, opts);
                (x, signal * &scale + noise)
            })
            .collect()
    }

    /// The pruned search chooses what the exhaustive one does, on a wide
    /// alpha grid; every pair's bounds hold its error, and they prune.
    #[test]
    fn pruned_loo_search_equals_the_exhaustive_one() {
        let opts = (Kind::Double, tch::Device::Cpu);
        let alphas = Tensor::logspace(-3.0, 7.0, 21, 10.0, opts);
        let (mut checked, mut pairs, mut kept) = (0, 0, 0);
        for (x, y) in designs() {
            let (n, p) = (x.size()[0], x.size()[1]);
            let design = Design::new(&x);
            let train = Tensor::arange_start(n / 5, n, (Kind::Int64, tch::Device::Cpu));
            let f = fit(decompose(&design, &train, None, true).unwrap(), &y, &alphas);
            let pruned = f.loo_best(&y);
            let errors = brute_force_errors(&f, &design, &y);
            assert_eq!(
                Vec::<i64>::try_from(&pruned).unwrap(),
                Vec::<i64>::try_from(&errors.argmin(0, false)).unwrap(),
                "n {n}, p {p}"
            );
            let t = f.loo_terms(&y);
            let (lower, upper) = loo_bounds(&t.coords, &t.y_perp, &t.spared, &t.weights, t.delta);
            let tol = errors.abs() * 1e-12;
            let below = (&lower - &errors - &tol).max().double_value(&[]);
            let above = (&errors - &upper - &tol).max().double_value(&[]);
            assert!(
                below <= 0.0,
                "n {n}, p {p}: a lower bound exceeds its error by {below}"
            );
            assert!(
                above <= 0.0,
                "n {n}, p {p}: an error exceeds its upper bound by {above}"
            );
            pairs += errors.numel();
            kept += candidates(&lower, &upper).sum(Kind::Int64).int64_value(&[]) as usize;
            checked += 30;
        }
        assert_eq!(checked, 120);
        // These designs are hard ones (far-out rows, a wide grid): a third goes.
        assert!(
            kept * 3 < pairs * 2,
            "{kept} of {pairs} pairs left: the bounds barely prune"
        );
    }

    /// Kept decompositions give the numbers to the bit, for another target
    /// too; other splits or k-fold searches do not use them.
    #[test]
    fn kept_decompositions_give_the_same_numbers() {
        let opts: RidgeOptions =
            serde_json::from_value(serde_json::json!({"inner": "loo"})).unwrap();
        let kfold: RidgeOptions = serde_json::from_value(serde_json::json!({})).unwrap();
        let reseeded = RidgeOptions {
            seed: opts.seed + 1,
            ..opts.clone()
        };
        for (x, y) in designs() {
            let store = DecompositionCache::new(1 << 30);
            let kept = Some((&store, "x"));
            let other = y.flip([0]);
            for o in [&opts, &opts, &reseeded, &reseeded, &kfold] {
                for target in [&y, &other] {
                    let alone = ridge(&x, target, o, None, || Ok(())).unwrap();
                    let with = ridge(&x, target, o, kept, || Ok(())).unwrap();
                    assert_eq!(
                        serde_json::to_value(&alone).unwrap(),
                        serde_json::to_value(&with).unwrap()
                    );
                }
            }
            assert_eq!(
                store.len(),
                2,
                "one entry per set of splits, none for k-fold"
            );
            // Four LOO calls per set of splits: the first misses.
            assert_eq!(store.hits(), 6);
        }
    }
}
