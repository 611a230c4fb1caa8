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

    /// Per alpha and neuron, the mean squared leave-one-out error on the
    /// training rows (n_alphas × q), in closed form: with the hat matrix
    /// H_α = 11ᵀ/m + X_c (X_cᵀX_c + αI)⁻¹ X_cᵀ (the intercept unpenalized),
    /// the LOO residual of row i is (y_i − ŷ_i) / (1 − H_α,ii). This is the
    /// criterion of scikit-learn's `RidgeCV(alpha_per_target=True)`.
    fn loo_errors(&self, d: &Design, y: &Tensor) -> Tensor {
        let proj = self.project(d, &self.train); // m × k
        let m = self.train.size()[0] as f64;
        // Leverage per eigen-direction: feature form (X_c v_k)² / (λ + α);
        // kernel form u_k² λ / (λ + α), with proj = U Λ.
        let lever = match &d.gram {
            Some(_) => &proj * &self.basis,
            None => proj.square(),
        };
        let h = lever.matmul(&self.shrink) + 1.0 / m; // m × a
        let yc = y.index_select(0, &self.train) - &self.y_mean;
        // Weights of the squared residuals: 1 / (m (1 − h)²), m × a.
        let keep: Tensor = 1.0 - h;
        let weights = keep.square().reciprocal() / m;
        // One alpha at a time, three passes over an m × q block (a fused
        // residual, its square, a weighted sum), where one a × m × q tensor
        // through every elementwise step was memory-bound.
        let per_alpha: Vec<Tensor> = (0..self.shrink.size()[1])
            .map(|i| {
                let neg_coef = -(self.shrink.select(1, i).unsqueeze(1) * &self.uty);
                let resid = yc.addmm(&proj, &neg_coef);
                weights
                    .select(1, i)
                    .unsqueeze(0)
                    .matmul(&resid.square())
                    .squeeze_dim(0)
            })
            .collect();
        Tensor::stack(&per_alpha, 0)
    }

    /// Predictions with a per-neuron alpha index: n_rows × q.
    fn predict_chosen(&self, d: &Design, rows: &Tensor, best: &Tensor) -> Tensor {
        self.project(d, rows)
            .matmul(&(self.shrink.index_select(1, best) * &self.uty))
            + &self.y_mean
    }
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
            RidgeInner::Loo => f.loo_errors(&design, y).neg().argmax(0, false),
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
