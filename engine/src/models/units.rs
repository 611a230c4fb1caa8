//! The unit nonlinearities and normalizations of the built-in models, from
//! the science notes: the LIF rate function (smoothed at threshold so it has
//! a gradient) and divisive normalization across channels.

use neuralign_core::architecture::{LifParams, NormPool};
use tch::{Kind, Tensor};

/// r(I) = 1 / (τ_ref + τ ln(1 + (v_th − v_r) / ρ(RI − v_th))), where ρ is
/// max(·, 0) when `smoothing` γ is 0 (the exact f–I curve: 0 at or below
/// threshold) and γ·softplus(·/γ) otherwise (positive, smooth, and within
/// γ·ln 2 of the exact drive above threshold).
pub fn lif_rate(current: &Tensor, p: &LifParams) -> Tensor {
    let above = current * p.r - p.v_th;
    let rho = if p.smoothing > 0.0 {
        (&above / p.smoothing).softplus() * p.smoothing
    } else {
        above.relu()
    };
    // ρ = 0 gives ln(∞) = ∞ and a rate of 1/∞ = 0: the exact curve's zero.
    ((p.v_th - p.v_r) / rho + 1.0)
        .log()
        .multiply_scalar(p.tau)
        .g_add_scalar(p.tau_ref)
        .reciprocal()
}

/// Row-normalized pool weights (channels × channels).
pub fn pool_weights(
    channels: i64,
    pool: NormPool,
    kind: Kind,
    device: tch::Device,
) -> Option<Tensor> {
    match pool {
        NormPool::Uniform => None,
        NormPool::Gaussian { width } => {
            let i = Tensor::arange(channels, (Kind::Double, device));
            let d = (i.unsqueeze(1) - i.unsqueeze(0)).abs();
            // Distance on a ring of channel indices.
            let d = d.minimum(&(channels as f64 - &d));
            let w = (-(d.square()) / (2.0 * width * width)).exp();
            let w = &w / w.sum_dim_intlist(1, true, Kind::Double);
            Some(w.to_kind(kind))
        }
    }
}

/// r_i = (z_i⁺)ⁿ / (σⁿ + Σ_j w_ij (z_j⁺)ⁿ) across dimension 1 (channels or
/// features), at every other index.
pub fn divisive(z: &Tensor, sigma: f64, exponent: f64, weights: Option<&Tensor>) -> Tensor {
    let zn = z.relu().pow_tensor_scalar(exponent);
    let pool = match weights {
        None => zn.mean_dim(1, true, zn.kind()),
        Some(w) => {
            // Move channels last, mix with wᵀ, move back.
            let last = zn.movedim(1, -1);
            last.matmul(&w.tr()).movedim(-1, 1)
        }
    };
    &zn / (pool + sigma.powf(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::neurons::Lif;

    #[test]
    fn exact_lif_rate_is_the_sample_generators_formula() {
        let i = Tensor::linspace(-1.0, 5.0, 61, (Kind::Double, tch::Device::Cpu));
        let p = LifParams {
            smoothing: 0.0,
            ..LifParams::default()
        };
        let lif = Lif {
            tau: p.tau,
            tau_ref: p.tau_ref,
            r: p.r,
            v_th: p.v_th,
            v_r: p.v_r,
        };
        let (a, b) = (lif_rate(&i, &p), lif.rate(&i));
        assert!((a - b).abs().max().double_value(&[]) < 1e-9);
    }

    #[test]
    fn smoothed_lif_rate_has_a_finite_gradient_at_threshold_and_converges() {
        let i = Tensor::linspace(0.5, 3.0, 51, (Kind::Double, tch::Device::Cpu))
            .set_requires_grad(true);
        let p = LifParams {
            smoothing: 0.05,
            ..LifParams::default()
        };
        let r = lif_rate(&i, &p);
        r.sum(Kind::Double).backward();
        let g = i.grad();
        assert!(
            g.isfinite().all().int64_value(&[]) == 1,
            "finite gradient everywhere"
        );
        assert!(g.min().double_value(&[]) >= 0.0, "monotone in the drive");
        // Far from threshold, shrinking γ approaches the exact curve.
        let x = Tensor::from_slice(&[2.0f64, 3.0]);
        let exact = lif_rate(
            &x,
            &LifParams {
                smoothing: 0.0,
                ..p
            },
        );
        let e1 = (lif_rate(
            &x,
            &LifParams {
                smoothing: 0.05,
                ..p
            },
        ) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        let e2 = (lif_rate(
            &x,
            &LifParams {
                smoothing: 0.005,
                ..p
            },
        ) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            e2 < e1 && e2 < 1e-3 * exact.max().double_value(&[]),
            "{e1} {e2}"
        );
    }

    #[test]
    fn divisive_normalization_is_the_formula_and_saturates_with_contrast() {
        let z = Tensor::rand([2, 5, 3, 3], (Kind::Double, tch::Device::Cpu));
        let out = divisive(&z, 0.5, 2.0, None);
        let manual = z.square() / (z.square().mean_dim(1, true, Kind::Double) + 0.25);
        assert!((&out - manual).abs().max().double_value(&[]) < 1e-12);
        // At high contrast, scaling the input barely changes the output.
        let (lo, hi) = (
            divisive(&(&z * 1e3), 0.5, 2.0, None),
            divisive(&(&z * 1e4), 0.5, 2.0, None),
        );
        assert!((lo - hi).abs().max().double_value(&[]) < 1e-3);
        // Gaussian pools are row-normalized and reduce to the uniform pool as they widen.
        let w = pool_weights(
            5,
            NormPool::Gaussian { width: 1e6 },
            Kind::Double,
            tch::Device::Cpu,
        )
        .unwrap();
        assert!(
            (w.sum_dim_intlist(1, false, Kind::Double) - 1.0)
                .abs()
                .max()
                .double_value(&[])
                < 1e-12
        );
        let wide = divisive(&z, 0.5, 2.0, Some(&w));
        assert!((wide - out).abs().max().double_value(&[]) < 1e-9);
    }
}
