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

fn fit(d: &Design, y: &Tensor, train: &Tensor, alphas: &Tensor) -> Result<Fit> {
    let y_t = y.index_select(0, train);
    let y_mean = y_t.mean_dim(0, true, Kind::Double);
    let yc = &y_t - &y_mean;
    let n = train.size()[0];
    let (lambda, basis, uty, x_mean) = match &d.gram {
        Some(gram) => {
            let (lambda, u) = eig_psd(&centered_gram(gram, train, train), n)?;
            let uty = u.transpose(0, 1).matmul(&yc);
            (lambda, u, uty, None)
        }
        None => {
            let x_t = d.x.index_select(0, train);
            let x_mean = x_t.mean_dim(0, true, Kind::Double);
            let xc = x_t - &x_mean;
            let (lambda, v) = eig_psd(&xc.transpose(0, 1).matmul(&xc), n.max(d.x.size()[1]))?;
            let uty = v.transpose(0, 1).matmul(&xc.transpose(0, 1).matmul(&yc));
            (lambda, v, uty, Some(x_mean))
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
    /// and Q = Uᵀy_c, the residual is y⊥ + U diag(α / (λ + α)) Q, where
    /// y⊥ = y_c − U Q is computed once in float64. The per-alpha term, the
    /// one product of this size per alpha (most of ridge's time), is
    /// computed in float32: no cancellation against y_c happens in it, so
    /// its rounding is relative to the residual itself. Neurons whose two
    /// least errors are closer than that rounding can account for are
    /// recomputed in float64, so the choice is the float64 one.
    fn loo_best(&self, d: &Design, y: &Tensor) -> Tensor {
        let m = self.train.size()[0] as f64;
        let (u, coords) = match &d.gram {
            // Kernel form: the basis is U, and uty = Uᵀy_c.
            Some(_) => (self.basis.shallow_clone(), self.uty.shallow_clone()),
            // Feature form: proj = X_c V = U Λ^½, uty = Λ^½ Uᵀy_c.
            None => {
                let root = self.lambda.sqrt();
                let proj = self.project(d, &self.train);
                (proj / &root, &self.uty / root.unsqueeze(1))
            }
        };
        // Leverage per eigen-direction: u_k² λ / (λ + α).
        let h = (u.square() * self.lambda.unsqueeze(0)).matmul(&self.shrink) + 1.0 / m; // m × a
        let keep: Tensor = 1.0 - h;
        let weights = keep.square().reciprocal() / m; // m × a
        let yc = y.index_select(0, &self.train) - &self.y_mean;
        let y_perp = &yc - u.matmul(&coords); // m × q
                                              // α / (λ + α), k × a.
        let spared = &self.shrink * self.alphas.unsqueeze(0);
        let errors = loo_errors(&u, &coords, &y_perp, &spared, &weights, Kind::Float);
        let best = errors.argmin(0, false);
        let a = spared.size()[1];
        if a < 2 {
            return best;
        }
        // Higham's bound for a k-term float32 inner product (k u |A||B|),
        // with the conversions, the square and the weighted sum, times the
        // spread of the LOO weights (the weighted sum does not keep y⊥ and
        // the per-alpha term orthogonal), and a factor 4 to spare.
        let k = u.size()[1] as f64;
        let spread = (weights.amax(0, false) / weights.amin(0, false))
            .max()
            .double_value(&[])
            .sqrt();
        let rel = 4.0 * (k + 8.0) * f32::EPSILON as f64 / 2.0 * spread;
        let two = errors.topk(2, 0, false, true).0;
        let close = (two.get(1) - two.get(0))
            .le_tensor(&(two.get(0) * rel))
            .nonzero()
            .squeeze_dim(1);
        if close.size()[0] == 0 {
            return best;
        }
        let exact = loo_errors(
            &u,
            &coords.index_select(1, &close),
            &y_perp.index_select(1, &close),
            &spared,
            &weights,
            Kind::Double,
        );
        best.index_copy(0, &close, &exact.argmin(0, false))
    }

    /// Predictions with a per-neuron alpha index: n_rows × q.
    fn predict_chosen(&self, d: &Design, rows: &Tensor, best: &Tensor) -> Tensor {
        self.project(d, rows)
            .matmul(&(self.shrink.index_select(1, best) * &self.uty))
            + &self.y_mean
    }
}

/// Mean squared leave-one-out errors (a × q, float64) of the residuals
/// y⊥ + U diag(spared_α) Q, rows weighted by `weights` (m × a), with the
/// per-alpha products in `kind`, over blocks of neurons that keep the
/// a × block × m tensor near 64 MiB.
fn loo_errors(
    u: &Tensor,
    coords: &Tensor,
    y_perp: &Tensor,
    spared: &Tensor,
    weights: &Tensor,
    kind: Kind,
) -> Tensor {
    let (m, k) = (u.size()[0], u.size()[1]);
    let (q, a) = (coords.size()[1], spared.size()[1]);
    let width = if kind == Kind::Float { 4 } else { 8 };
    let block = ((64 << 20) / (a * m * width).max(1)).clamp(1, q.max(1));
    let ut = u.transpose(0, 1).to_kind(kind).contiguous(); // k × m
    let w = weights
        .transpose(0, 1)
        .to_kind(kind)
        .unsqueeze(2)
        .contiguous(); // a × m × 1
    let spared = spared.transpose(0, 1).to_kind(kind).unsqueeze(1); // a × 1 × k
    let mut parts = Vec::new();
    for j0 in (0..q).step_by(block as usize) {
        let b = block.min(q - j0);
        let coef = &spared
            * coords
                .slice(1, j0, j0 + b, 1)
                .transpose(0, 1)
                .to_kind(kind)
                .unsqueeze(0);
        let mut t = coef.reshape([a * b, k]).matmul(&ut).reshape([a, b, m]);
        let _ = t.g_add_(&y_perp.slice(1, j0, j0 + b, 1).transpose(0, 1).to_kind(kind));
        let _ = t.square_();
        parts.push(t.bmm(&w).squeeze_dim(2));
    }
    if parts.is_empty() {
        return Tensor::zeros([a, 0], (Kind::Double, u.device()));
    }
    Tensor::cat(&parts, 1).to_kind(Kind::Double)
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
        let f = fit(&design, y, &tr, &alphas)?;
        let best = match o.inner {
            // Inner CV on the training stimuli, in their given order.
            RidgeInner::Kfold => {
                let mut inner_score =
                    Tensor::zeros([o.alphas.len() as i64, q], (Kind::Double, dev));
                for inner in kfold(&split.train, o.inner_folds) {
                    let (itr, iva) = inner.tensors(dev);
                    let fi = fit(&design, y, &itr, &alphas)?;
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
