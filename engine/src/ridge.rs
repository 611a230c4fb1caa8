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
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::predictivity::{outer_splits, r2, Predictivity, Scorer};
use crate::splits::kfold;

#[derive(Debug, Clone, Serialize)]
pub struct RidgeResult {
    #[serde(flatten)]
    pub scores: Predictivity,
    /// Per neuron, the alpha chosen most often over splits.
    pub per_neuron_alpha: Vec<f64>,
}

/// The design matrix, with its Gram matrix X Xᵀ when features outnumber
/// stimuli: then every fit is kernel ridge on blocks of that one Gram
/// matrix (computed once per job), and no fit touches the p features again.
struct Design<'a> {
    x: &'a Tensor,
    gram: Option<Tensor>,
}

impl<'a> Design<'a> {
    fn new(x: &'a Tensor) -> Self {
        let (n, p) = (x.size()[0], x.size()[1]);
        Design {
            x,
            gram: (p > n).then(|| x.matmul(&x.transpose(0, 1))),
        }
    }
}

/// One training set's solution for every alpha: predictions for rows r are
/// proj(r) · diag(1 / (λ + α)) · uty, with the eigenvalues λ of the
/// centered Gram (kernel form) or covariance (feature form).
struct Fit {
    train: Tensor,
    /// The eigenvalues λ kept (k).
    lambda: Tensor,
    alphas: Tensor,
    /// Kernel form: U (m × k); feature form: V (p × k).
    basis: Tensor,
    /// k × n_alphas: 1 / (λ + α).
    shrink: Tensor,
    uty: Tensor,
    y_mean: Tensor,
    /// Feature form: the training mean of X.
    x_mean: Option<Tensor>,
    /// Feature form, when kept: X_c V on the training rows.
    train_projection: Option<Tensor>,
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

/// One training set's fit; `keep_projection`: keep the training rows'
/// projection X_c V (feature form), which the LOO search reads.
fn fit(
    d: &Design,
    y: &Tensor,
    train: &Tensor,
    alphas: &Tensor,
    keep_projection: bool,
) -> Result<Fit> {
    let y_t = y.index_select(0, train);
    let y_mean = y_t.mean_dim(0, true, Kind::Double);
    let yc = &y_t - &y_mean;
    let n = train.size()[0];
    let (lambda, basis, uty, x_mean, train_projection) = match &d.gram {
        Some(gram) => {
            let (lambda, u) = eig_psd(&centered_gram(gram, train, train), n)?;
            let uty = u.transpose(0, 1).matmul(&yc);
            (lambda, u, uty, None, None)
        }
        None => {
            let x_t = d.x.index_select(0, train);
            let x_mean = x_t.mean_dim(0, true, Kind::Double);
            let xc = x_t - &x_mean;
            let (lambda, v) = eig_psd(&xc.transpose(0, 1).matmul(&xc), n.max(d.x.size()[1]))?;
            let (uty, proj) = if keep_projection {
                // X_c V once, for the LOO search too; uty = (X_c V)ᵀ y_c.
                let proj = xc.matmul(&v);
                (proj.transpose(0, 1).matmul(&yc), Some(proj))
            } else {
                (
                    v.transpose(0, 1).matmul(&xc.transpose(0, 1).matmul(&yc)),
                    None,
                )
            };
            (lambda, v, uty, Some(x_mean), proj)
        }
    };
    let shrink = (lambda.unsqueeze(1) + alphas.unsqueeze(0)).reciprocal();
    Ok(Fit {
        train: train.shallow_clone(),
        lambda,
        alphas: alphas.shallow_clone(),
        basis,
        shrink,
        uty,
        y_mean,
        x_mean,
        train_projection,
    })
}

impl Fit {
    fn project(&self, d: &Design, rows: &Tensor) -> Tensor {
        match (&d.gram, &self.x_mean) {
            (Some(gram), _) => centered_gram(gram, rows, &self.train).matmul(&self.basis),
            (None, Some(mean)) => (d.x.index_select(0, rows) - mean).matmul(&self.basis),
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
    /// when only one alpha is left). Since y⊥ ⟂ U,
    /// ‖r_α‖² = ‖y⊥‖² + Σ g_α² Q² exactly, so min_i w_αi ‖r_α‖² ≤ error ≤
    /// max_i w_αi ‖r_α‖²: an alpha whose lower bound exceeds the least
    /// upper bound over alphas is out. (On the score bench 86% of the pairs
    /// go, and 79% of neurons keep a single alpha.) The rest are computed in
    /// float64.
    fn loo_best(&self, d: &Design, y: &Tensor) -> Tensor {
        let m = self.train.size()[0] as f64;
        let (u, coords) = match &d.gram {
            // Kernel form: the basis is U, and uty = Uᵀy_c.
            Some(_) => (self.basis.shallow_clone(), self.uty.shallow_clone()),
            // Feature form: proj = X_c V = U Λ^½, uty = Λ^½ Uᵀy_c.
            None => {
                let root = self.lambda.sqrt();
                let proj = match &self.train_projection {
                    Some(p) => p.shallow_clone(),
                    None => self.project(d, &self.train),
                };
                (proj / &root, &self.uty / root.unsqueeze(1))
            }
        };
        // Leverage per eigen-direction: u_k² λ / (λ + α).
        let h = (u.square() * self.lambda.unsqueeze(0)).matmul(&self.shrink) + 1.0 / m; // m × a
        let keep: Tensor = 1.0 - h;
        let weights = keep.square().reciprocal() / m; // m × a
        let yc = y.index_select(0, &self.train) - &self.y_mean;
        let y_perp = &yc - u.matmul(&coords); // m × q
        let spared = &self.shrink * self.alphas.unsqueeze(0); // g: k × a
        let candidates = candidates(&u, &coords, &y_perp, &spared, &weights);
        // A neuron with one candidate has its alpha; only the others'
        // candidates are computed.
        let count = candidates.sum_dim_intlist(0, false, Kind::Int64);
        let contested = count.gt(1);
        let errors = loo_errors(
            &u,
            &coords,
            &y_perp,
            &spared,
            &weights,
            &candidates.logical_and(&contested.unsqueeze(0)),
        );
        let only = candidates.to_kind(Kind::Int64).argmax(0, false);
        errors.argmin(0, false).where_self(&contested, &only)
    }

    /// Predictions with a per-neuron alpha index: n_rows × q.
    fn predict_chosen(&self, d: &Design, rows: &Tensor, best: &Tensor) -> Tensor {
        self.project(d, rows)
            .matmul(&(self.shrink.index_select(1, best) * &self.uty))
            + &self.y_mean
    }
}

/// Which (alpha, neuron) pairs may hold the neuron's least LOO error
/// (a × q, bool), by the bounds of `Fit::loo_best`. The identity
/// ‖r_α‖² = ‖y⊥‖² + Σ g² Q² holds to the basis' orthogonality: with
/// δ = ‖UᵀU − I‖_F the two differ by at most 3δ‖Q‖², which widens the
/// bounds, as does a relative 1e-10 for rounding. A neuron whose bounds
/// are not finite keeps every alpha.
fn candidates(
    u: &Tensor,
    coords: &Tensor,
    y_perp: &Tensor,
    spared: &Tensor,
    weights: &Tensor,
) -> Tensor {
    let k = u.size()[1];
    let eye = Tensor::eye(k, (Kind::Double, u.device()));
    let delta = (u.transpose(0, 1).matmul(u) - eye)
        .square()
        .sum(Kind::Double)
        .sqrt()
        .double_value(&[]);
    let q2 = coords.square(); // k × q
    let q2_sum = q2.sum_dim_intlist(0, false, Kind::Double);
    let perp2 = y_perp.square().sum_dim_intlist(0, false, Kind::Double); // q
    let norms = perp2.unsqueeze(0) + spared.square().transpose(0, 1).matmul(&q2); // a × q
    let slack = (&q2_sum * (3.0 * delta) + (&perp2 + &q2_sum) * 1e-10).unsqueeze(0);
    let lower = weights.amin(0, false).unsqueeze(1) * (&norms - &slack).clamp_min(0.0);
    let upper = weights.amax(0, false).unsqueeze(1) * (&norms + &slack);
    let candidate = lower.le_tensor(&upper.amin(0, true));
    let decided = candidate.any_dim(0, true);
    candidate.logical_or(&decided.logical_not())
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

pub fn ridge(
    x: &Tensor,
    y: &Tensor,
    o: &RidgeOptions,
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
        let f = fit(&design, y, &tr, &alphas, o.inner == RidgeInner::Loo)?;
        let best = match o.inner {
            // Inner CV on the training stimuli, in their given order.
            RidgeInner::Kfold => {
                let mut inner_score =
                    Tensor::zeros([o.alphas.len() as i64, q], (Kind::Double, dev));
                for inner in kfold(&split.train, o.inner_folds) {
                    let (itr, iva) = inner.tensors(dev);
                    let fi = fit(&design, y, &itr, &alphas, false)?;
                    let pred = fi.predict_all(&design, &iva);
                    inner_score += r2(&pred, &y.index_select(0, &iva).unsqueeze(0));
                }
                inner_score.argmax(0, false) // first maximum, as numpy
            }
            // Least LOO error: the first minimum, as RidgeCV's strict update.
            RidgeInner::Loo => f.loo_best(&design, y),
        };
        alpha_votes += best
            .one_hot(o.alphas.len() as i64)
            .transpose(0, 1)
            .to_kind(Kind::Double);
        let pred = f.predict_chosen(&design, &te, &best);
        scorer.add(&pred, &y.index_select(0, &te));
        step()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alpha's LOO error computed directly (no pruning), as the
    /// definition reads: residual y_c − ŷ_α over 1 − H_α,ii, squared, mean.
    fn brute_force_best(f: &Fit, d: &Design, y: &Tensor) -> Tensor {
        let m = f.train.size()[0] as f64;
        let proj = f.project(d, &f.train);
        let lever = match &d.gram {
            Some(_) => &proj * &f.basis,
            None => proj.square(),
        };
        let h = lever.matmul(&f.shrink) + 1.0 / m;
        let yc = y.index_select(0, &f.train) - &f.y_mean;
        let errors: Vec<Tensor> = (0..f.shrink.size()[1])
            .map(|i| {
                let fitted = proj.matmul(&(f.shrink.select(1, i).unsqueeze(1) * &f.uty));
                let keep: Tensor = 1.0 - h.select(1, i);
                let loo = (&yc - fitted) / keep.unsqueeze(1);
                loo.square().mean_dim(0, false, Kind::Double)
            })
            .collect();
        Tensor::stack(&errors, 0).argmin(0, false)
    }

    /// The pruned search chooses what the exhaustive one does: features
    /// fewer and more than stimuli, rows of very unequal leverage, neurons
    /// with and without signal, a wide alpha grid.
    #[test]
    fn pruned_loo_search_equals_the_exhaustive_one() {
        let opts = (Kind::Double, tch::Device::Cpu);
        let alphas = Tensor::logspace(-3.0, 7.0, 21, 10.0, opts);
        let mut checked = 0;
        for (seed, n, p) in [(1, 120, 20), (2, 80, 60), (3, 40, 90), (4, 200, 150)] {
            tch::manual_seed(seed);
            let x = Tensor::randn([n, p], opts) * Tensor::logspace(-2.0, 1.0, p, 10.0, opts);
            // A few far-out rows: leverage near 1 at small alpha.
            let _ = x.narrow(0, 0, 3).g_mul_scalar_(25.0);
            let signal = x.matmul(&Tensor::randn([p, 30], opts)) / (p as f64).sqrt();
            let noise = Tensor::randn([n, 30], opts);
            let scale = Tensor::logspace(-3.0, 2.0, 30, 10.0, opts);
            let y = signal * &scale + noise;
            let design = Design::new(&x);
            let train = Tensor::arange_start(n / 5, n, (Kind::Int64, tch::Device::Cpu));
            let f = fit(&design, &y, &train, &alphas, true).unwrap();
            let pruned = f.loo_best(&design, &y);
            let exhaustive = brute_force_best(&f, &design, &y);
            assert_eq!(
                Vec::<i64>::try_from(&pruned).unwrap(),
                Vec::<i64>::try_from(&exhaustive).unwrap(),
                "n {n}, p {p}"
            );
            checked += 30;
        }
        assert_eq!(checked, 120);
    }
}
