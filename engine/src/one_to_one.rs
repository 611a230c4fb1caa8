//! One-to-one mapping (Brain-Score's `OneToOne`): each neuron is matched to
//! the single model unit that correlates best with it on the training
//! stimuli; that unit, mapped by the training set's least-squares line,
//! predicts the neuron on held-out stimuli, scored like ridge and PLS.

use neuralign_core::catalog::OneToOneOptions;
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::predictivity::{outer_splits, Predictivity, Scorer};

/// Column-standardized copy (zero mean, unit norm); constant columns become 0.
fn unit_columns(x: &Tensor) -> Tensor {
    let c = x - x.mean_dim(0, true, Kind::Double);
    let norm = c.square().sum_dim_intlist(0, true, Kind::Double).sqrt();
    c / norm.clamp_min(f64::MIN_POSITIVE)
}

pub fn one_to_one(x: &Tensor, y: &Tensor, o: &OneToOneOptions) -> Result<Predictivity> {
    let n = x.size()[0] as usize;
    let dev = x.device();
    let mut scorer = Scorer::new(y.size()[1], dev);
    for split in outer_splits(
        n,
        o.folds,
        o.seed,
        o.splits.as_deref(),
        o.shuffle_splits.map(|k| (k, o.test_fraction)),
    )? {
        let (tr, te) = split.tensors(dev);
        let (xt, yt) = (x.index_select(0, &tr), y.index_select(0, &tr));
        // Correlation of every unit with every neuron on the training stimuli.
        let corr = unit_columns(&xt).transpose(0, 1).matmul(&unit_columns(&yt)); // p × q
        let best = corr.argmax(0, false); // first maximum per neuron
        let (u_train, u_test) = (
            xt.index_select(1, &best),
            x.index_select(0, &te).index_select(1, &best),
        );
        // Least-squares line per neuron on the training stimuli.
        let (mu, my) = (
            u_train.mean_dim(0, true, Kind::Double),
            yt.mean_dim(0, true, Kind::Double),
        );
        let (uc, yc) = (&u_train - &mu, &yt - &my);
        let slope = (&uc * &yc).sum_dim_intlist(0, true, Kind::Double)
            / uc.square()
                .sum_dim_intlist(0, true, Kind::Double)
                .clamp_min(f64::MIN_POSITIVE);
        let pred = (u_test - &mu) * slope + my;
        scorer.add(&pred, &y.index_select(0, &te));
    }
    scorer.finish()
}
