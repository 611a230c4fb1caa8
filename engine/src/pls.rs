//! Partial least squares regression (PLS1/PLS2, NIPALS with regression
//! deflation, unscaled: scikit-learn's `PLSRegression(scale=False)`, which
//! Brain-Score uses with 25 components). Each component's weights are the
//! dominant left singular vector of Xₖᵀ Yₖ, taken exactly from the small
//! q × q eigenproblem rather than by scikit-learn's power iteration (whose
//! default tolerance stops within about 1e-3 of it); the cross-product is
//! deflated by a rank-one update, so X is multiplied by Y only once.

use neuralign_core::catalog::PlsOptions;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{EngineError, Result};
use crate::predictivity::{outer_splits, Predictivity, Scorer};

#[derive(Debug, Clone, Serialize)]
pub struct PlsResult {
    #[serde(flatten)]
    pub scores: Predictivity,
    /// Components actually fitted (fewer when Y's residual vanishes).
    pub components: usize,
}

struct PlsFit {
    x_mean: Tensor,
    y_mean: Tensor,
    coef: Tensor,
    components: usize,
}

fn fit(x: &Tensor, y: &Tensor, n_components: usize) -> Result<PlsFit> {
    let x_mean = x.mean_dim(0, true, Kind::Double);
    let y_mean = y.mean_dim(0, true, Kind::Double);
    let mut xk = x - &x_mean;
    let yc = y - &y_mean;
    let mut c = xk.transpose(0, 1).matmul(&yc); // p × q, deflated in place of Y
    let (mut ws, mut ps, mut qs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n_components {
        // Dominant left singular vector of C through the q × q problem.
        let (lambda, v) = c.transpose(0, 1).matmul(&c).f_linalg_eigh("L")?;
        let top = lambda.size()[0] - 1;
        if lambda.double_value(&[top])
            <= f64::EPSILON * lambda.abs().max().double_value(&[]).max(f64::MIN_POSITIVE)
        {
            break; // Y's residual is (numerically) gone
        }
        let mut w = c.matmul(&v.select(1, top));
        w = &w / w.norm();
        // scikit-learn's sign convention: the largest |weight| is positive.
        let sign = w.get(w.abs().argmax(0, false).int64_value(&[])).sign();
        w *= sign;
        let t = xk.matmul(&w);
        let tt = t.dot(&t);
        let p = xk.transpose(0, 1).matmul(&t) / &tt;
        let q = yc.transpose(0, 1).matmul(&t) / &tt; // deflated Y gives the same: t ⟂ earlier scores
        xk -= t.unsqueeze(1).matmul(&p.unsqueeze(0));
        c -= (&tt * p.unsqueeze(1)).matmul(&q.unsqueeze(0));
        ws.push(w);
        ps.push(p);
        qs.push(q);
    }
    if ws.is_empty() {
        return Err(EngineError::invalid(
            "pls: the responses have no variance on the training stimuli",
        ));
    }
    let (w, p, q) = (
        Tensor::stack(&ws, 1),
        Tensor::stack(&ps, 1),
        Tensor::stack(&qs, 1),
    );
    let rotations = w.matmul(&p.transpose(0, 1).matmul(&w).f_linalg_pinv(1e-15, false)?);
    Ok(PlsFit {
        x_mean,
        y_mean,
        coef: rotations.matmul(&q.transpose(0, 1)),
        components: ws.len(),
    })
}

pub fn pls(
    x: &Tensor,
    y: &Tensor,
    o: &PlsOptions,
    mut step: impl FnMut() -> Result<()>,
) -> Result<PlsResult> {
    let n = x.size()[0] as usize;
    let dev = x.device();
    let splits = outer_splits(
        n,
        o.folds,
        o.seed,
        o.splits.as_deref(),
        o.shuffle_splits.map(|k| (k, o.test_fraction)),
    )?;
    let mut scorer = Scorer::new(y.size()[1], dev);
    let mut components = o.n_components;
    for split in &splits {
        let (tr, te) = split.tensors(dev);
        let f = fit(
            &x.index_select(0, &tr),
            &y.index_select(0, &tr),
            o.n_components,
        )?;
        components = components.min(f.components);
        let pred = (x.index_select(0, &te) - &f.x_mean).matmul(&f.coef) + &f.y_mean;
        scorer.add(&pred, &y.index_select(0, &te));
        step()?;
    }
    Ok(PlsResult {
        scores: scorer.finish()?,
        components,
    })
}
