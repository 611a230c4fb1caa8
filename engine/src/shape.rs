//! Generalized shape metrics (Williams et al. 2021, as in netrep's
//! `LinearMetric`): each representation is centered and partially whitened
//! (α = 1 rotation only, α = 0 full whitening, total variance preserved),
//! the narrower one zero-padded, the two aligned by the optimal rotation on
//! training stimuli, and the distance measured on held-out stimuli: the
//! angle arccos⟨X̃, Ỹ⟩/(‖X̃‖‖Ỹ‖) or the Euclidean ‖X̃ − Ỹ‖_F.
//! With fewer training stimuli than features the rotation is arbitrary on
//! the directions the training stimuli leave unspanned, so held-out scores
//! are then implementation-dependent (netrep's are too); the result says so.

use neuralign_core::catalog::{ProcrustesOptions, ShapeScore};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::predictivity::outer_splits;

/// Eigenvalues below this are clipped before whitening (netrep's default).
const EIGVAL_TOL: f64 = 1e-7;

fn whitener(xc: &Tensor, alpha: f64) -> Result<Tensor> {
    let p = xc.size()[1];
    if alpha > 1.0 - EIGVAL_TOL {
        return Ok(Tensor::eye(p, (Kind::Double, xc.device())));
    }
    let (lam, v) = xc.transpose(0, 1).matmul(xc).f_linalg_eigh("L")?;
    let lam = lam.clamp_min(EIGVAL_TOL);
    let d = alpha + (1.0 - alpha) * lam.pow_tensor_scalar(-0.5);
    let new_var =
        (alpha * alpha * &lam + 2.0 * alpha * (1.0 - alpha) * lam.sqrt() + (1.0 - alpha).powi(2))
            .sum(Kind::Double);
    let d = d * (lam.sum(Kind::Double) / new_var).sqrt();
    Ok((&v * d.unsqueeze(0)).matmul(&v.transpose(0, 1)))
}

fn pad(x: &Tensor, width: i64) -> Tensor {
    let extra = width - x.size()[1];
    if extra == 0 {
        x.shallow_clone()
    } else {
        Tensor::cat(
            &[
                x.shallow_clone(),
                Tensor::zeros([x.size()[0], extra], (Kind::Double, x.device())),
            ],
            1,
        )
    }
}

struct Alignment {
    mx: Tensor,
    my: Tensor,
    wx: Tensor,
    wy: Tensor,
}

fn fit(x: &Tensor, y: &Tensor, alpha: f64) -> Result<Alignment> {
    let (mx, my) = (
        x.mean_dim(0, true, Kind::Double),
        y.mean_dim(0, true, Kind::Double),
    );
    let (xc, yc) = (x - &mx, y - &my);
    let (zx, zy) = (whitener(&xc, alpha)?, whitener(&yc, alpha)?);
    let (u, _, v) = xc
        .matmul(&zx)
        .transpose(0, 1)
        .matmul(&yc.matmul(&zy))
        .f_svd(true, true)?;
    Ok(Alignment {
        wx: zx.matmul(&u),
        wy: zy.matmul(&v),
        mx,
        my,
    })
}

fn score(a: &Alignment, x: &Tensor, y: &Tensor, how: ShapeScore) -> f64 {
    let (tx, ty) = ((x - &a.mx).matmul(&a.wx), (y - &a.my).matmul(&a.wy));
    match how {
        ShapeScore::Angular => {
            let c = (&tx * &ty).sum(Kind::Double)
                / (tx.square().sum(Kind::Double) * ty.square().sum(Kind::Double)).sqrt();
            c.double_value(&[]).clamp(-1.0, 1.0).acos()
        }
        ShapeScore::Euclidean => (tx - ty)
            .square()
            .sum(Kind::Double)
            .sqrt()
            .double_value(&[]),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ShapeResult {
    pub value: f64,
    /// True when some training set had fewer stimuli than features.
    pub underdetermined: bool,
    /// Held-out distance per split (empty when scored in sample).
    pub splits: Vec<f64>,
}

pub fn procrustes(x: &Tensor, y: &Tensor, o: &ProcrustesOptions) -> Result<ShapeResult> {
    let width = x.size()[1].max(y.size()[1]);
    let (x, y) = (pad(x, width), pad(y, width));
    if o.folds == 0 && o.splits.is_none() {
        let a = fit(&x, &y, o.alpha)?;
        return Ok(ShapeResult {
            value: score(&a, &x, &y, o.score),
            underdetermined: false,
            splits: vec![],
        });
    }
    let n = x.size()[0] as usize;
    let dev = x.device();
    let mut values = Vec::new();
    let mut underdetermined = false;
    for s in outer_splits(n, o.folds, o.seed, o.splits.as_deref(), None)? {
        underdetermined |= (s.train.len() as i64) <= width;
        let (tr, te) = s.tensors(dev);
        let a = fit(&x.index_select(0, &tr), &y.index_select(0, &tr), o.alpha)?;
        values.push(score(
            &a,
            &x.index_select(0, &te),
            &y.index_select(0, &te),
            o.score,
        ));
    }
    Ok(ShapeResult {
        value: values.iter().sum::<f64>() / values.len() as f64,
        underdetermined,
        splits: values,
    })
}
