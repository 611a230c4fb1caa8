//! Single-neuron transfer functions from the science notes.

use tch::{Kind, Tensor};

/// Leaky integrate-and-fire parameters (seconds, ohms, volts as consistent units).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lif {
    pub tau: f64,
    pub tau_ref: f64,
    pub r: f64,
    pub v_th: f64,
    pub v_r: f64,
}

impl Default for Lif {
    fn default() -> Self {
        // 20 ms membrane, 2 ms refractory, unit resistance, threshold 1, reset 0.
        Lif {
            tau: 0.02,
            tau_ref: 0.002,
            r: 1.0,
            v_th: 1.0,
            v_r: 0.0,
        }
    }
}

impl Lif {
    /// The steady-state f–I curve: r(I) = 1 / (τ_ref + τ ln((RI − v_r)/(RI − v_th)))
    /// when RI > v_th, else 0.
    pub fn rate(&self, current: &Tensor) -> Tensor {
        let v_inf = current.to_kind(Kind::Double) * self.r;
        let above = v_inf.gt(self.v_th);
        // Evaluate the log only where it is defined; elsewhere the rate is 0.
        let safe = v_inf.where_scalarother(&above, self.v_th + 1.0);
        let t_charge = ((&safe - self.v_r) / (&safe - self.v_th)).log() * self.tau;
        let rate = (t_charge + self.tau_ref).reciprocal();
        rate.where_scalarother(&above, 0.0)
    }
}

/// Divisive normalization across the last axis:
/// r_i = z_i^n / (σ^n + Σ_j w_j z_j^n), with uniform pool weights w_j = 1/N.
pub fn divisive_normalization(z: &Tensor, sigma: f64, exponent: f64) -> Tensor {
    let zn = z
        .to_kind(Kind::Double)
        .clamp_min(0.0)
        .pow_tensor_scalar(exponent);
    let pool = zn.mean_dim(-1, true, Kind::Double);
    &zn / (pool + sigma.powf(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lif_rate_is_the_published_formula_and_zero_below_threshold() {
        let lif = Lif::default();
        let currents = [0.0, 0.5, 1.0, 1.0001, 1.5, 3.0, 10.0];
        let rates = Vec::<f64>::try_from(&lif.rate(&Tensor::from_slice(&currents))).unwrap();
        for (i, r) in currents.iter().zip(&rates) {
            let v = lif.r * i;
            let want = if v > lif.v_th {
                1.0 / (lif.tau_ref + lif.tau * ((v - lif.v_r) / (v - lif.v_th)).ln())
            } else {
                0.0
            };
            assert!(
                (r - want).abs() < 1e-9 * want.max(1.0),
                "I = {i}: {r} vs {want}"
            );
        }
        assert!(rates.windows(2).all(|w| w[1] >= w[0]), "monotone");
        assert!(rates[6] < 1.0 / lif.tau_ref, "saturates below 1/tau_ref");
    }

    #[test]
    fn divisive_normalization_is_contrast_invariant_at_high_contrast() {
        let z = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0]);
        let low = divisive_normalization(&(&z * 0.01), 1.0, 2.0);
        let low2 = divisive_normalization(&(&z * 0.02), 1.0, 2.0);
        let high = divisive_normalization(&(&z * 100.0), 1.0, 2.0);
        let higher = divisive_normalization(&(&z * 200.0), 1.0, 2.0);
        let diff = (&high - &higher).abs().max().double_value(&[]);
        assert!(
            diff < 1e-3,
            "saturated responses barely change with contrast: {diff}"
        );
        // At low contrast the response grows like c^n: doubling c quadruples it.
        let ratio = (low2 / low).mean(Kind::Double).double_value(&[]);
        assert!((ratio - 4.0).abs() < 0.01, "expansive regime ratio {ratio}");
    }
}
