//! Stimulus images on a unit square (coordinates in [-0.5, 0.5)), gray
//! background 0.5, values in [0, 1], shaped stimuli × 1 × H × W.

use std::f64::consts::PI;

use tch::{Kind, Tensor};

use super::uniform;
use crate::splits::SplitMix64;

/// x and y coordinate grids (H × W).
pub fn grid(size: i64) -> (Tensor, Tensor) {
    let c = (Tensor::arange(size, (Kind::Double, tch::Device::Cpu)) + 0.5) / size as f64 - 0.5;
    let y = c.unsqueeze(1).expand([size, size], false);
    let x = c.unsqueeze(0).expand([size, size], false);
    (x, y)
}

/// One sinusoidal grating: orientation θ (radians), spatial frequency in
/// cycles per image, phase, Michelson contrast.
pub fn grating(size: i64, theta: f64, freq: f64, phase: f64, contrast: f64) -> Tensor {
    let (x, y) = grid(size);
    let u = x * theta.cos() + y * theta.sin();
    ((u * (2.0 * PI * freq) + phase).cos() * (0.5 * contrast)) + 0.5
}

/// The sum of two gratings at half contrast each.
pub fn plaid(size: i64, theta1: f64, theta2: f64, freq: f64, contrast: f64) -> Tensor {
    (grating(size, theta1, freq, 0.0, contrast) + grating(size, theta2, freq, 0.0, contrast)) / 2.0
}

/// A grating windowed by a Gaussian envelope of width σ (image units).
pub fn gabor_patch(
    size: i64,
    theta: f64,
    freq: f64,
    phase: f64,
    sigma: f64,
    contrast: f64,
) -> Tensor {
    let (x, y) = grid(size);
    let envelope = ((x.square() + y.square()) / (-2.0 * sigma * sigma)).exp();
    let carrier = (x * theta.cos() + y * theta.sin()) * (2.0 * PI * freq) + phase;
    carrier.cos() * envelope * (0.5 * contrast) + 0.5
}

/// Gratings over every combination of orientations, frequencies and
/// contrasts (phase 0), with their parameters.
pub fn grating_set(
    size: i64,
    orientations: usize,
    freqs: &[f64],
    contrasts: &[f64],
) -> (Tensor, Vec<serde_json::Value>) {
    let mut images = Vec::new();
    let mut info = Vec::new();
    for o in 0..orientations {
        let theta = PI * o as f64 / orientations as f64;
        for &f in freqs {
            for &c in contrasts {
                images.push(grating(size, theta, f, 0.0, c));
                info.push(serde_json::json!({"kind": "grating", "orientation": theta, "frequency": f, "contrast": c}));
            }
        }
    }
    (Tensor::stack(&images, 0).unsqueeze(1), info)
}

/// Dead-leaves images: disks of uniform random gray, radii drawn from
/// p(r) ∝ r^-3 between `r_min` and `r_max`, each new disk falling behind
/// the ones already there, until the image is covered. Their occlusions give
/// natural-image-like edges and a roughly 1/f² power spectrum.
pub fn dead_leaves(n: usize, size: i64, r_min: f64, r_max: f64, seed: u64) -> Tensor {
    let mut rng = SplitMix64(seed);
    let (x, y) = grid(size);
    let alpha: f64 = 3.0;
    let (lo, hi) = (r_min.powf(1.0 - alpha), r_max.powf(1.0 - alpha));
    let images: Vec<Tensor> = (0..n)
        .map(|_| {
            let mut img = Tensor::full([size, size], -1.0, (Kind::Double, tch::Device::Cpu));
            for _ in 0..20_000 {
                let r = (lo + uniform(&mut rng) * (hi - lo)).powf(1.0 / (1.0 - alpha));
                let (cx, cy) = (uniform(&mut rng) * 1.2 - 0.6, uniform(&mut rng) * 1.2 - 0.6);
                let gray = uniform(&mut rng);
                let inside = ((&x - cx).square() + (&y - cy).square()).lt(r * r);
                let free = img.lt(0.0);
                img = img.where_self(
                    &inside.logical_and(&free).logical_not(),
                    &Tensor::from(gray),
                );
                if img.lt(0.0).sum(Kind::Int64).int64_value(&[]) == 0 {
                    break;
                }
            }
            // Any pixel no leaf reached (rare) shows the gray background.
            img.where_self(&img.ge(0.0), &Tensor::from(0.5))
        })
        .collect();
    Tensor::stack(&images, 0).unsqueeze(1)
}

/// Which outline a shape stimulus has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    Square,
    Triangle,
    Cross,
}

/// How one shape stimulus was drawn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShapeParams {
    pub kind: ShapeKind,
    /// Rotation about the shape's centre, radians.
    pub rotation: f64,
    /// Centre, in image units from the image centre.
    pub dx: f64,
    pub dy: f64,
    /// Half-width, in image units.
    pub scale: f64,
}

/// One white shape on the gray background, rotated then translated.
pub fn shape(size: i64, p: &ShapeParams) -> Tensor {
    let (x, y) = grid(size);
    let (c, s) = (p.rotation.cos(), p.rotation.sin());
    let (x, y) = (x - p.dx, y - p.dy);
    // Coordinates in the shape's own frame.
    let u = &x * c + &y * s;
    let v = &y * c - &x * s;
    let r = p.scale;
    let inside = match p.kind {
        ShapeKind::Square => u.abs().le(r).logical_and(&v.abs().le(r)),
        ShapeKind::Cross => {
            let arm = |a: &Tensor, b: &Tensor| a.abs().le(r).logical_and(&b.abs().le(r / 3.0));
            arm(&u, &v).logical_or(&arm(&v, &u))
        }
        ShapeKind::Triangle => {
            let k = 3f64.sqrt();
            v.ge(-r / 2.0)
                .logical_and(&(&u * k + &v).le(r))
                .logical_and(&(&v - &u * k).le(r))
        }
    };
    inside.to_kind(Kind::Double) * 0.5 + 0.5
}

/// `n` shapes of random kind, rotation, position and size: the translated
/// and rotated shapes a lab uses to probe invariance.
pub fn shapes(n: usize, size: i64, seed: u64) -> (Tensor, Vec<ShapeParams>) {
    let mut rng = SplitMix64(seed);
    let kinds = [ShapeKind::Square, ShapeKind::Triangle, ShapeKind::Cross];
    let params: Vec<ShapeParams> = (0..n)
        .map(|_| ShapeParams {
            kind: kinds[(rng.next_u64() % 3) as usize],
            rotation: 2.0 * PI * uniform(&mut rng),
            dx: 0.4 * uniform(&mut rng) - 0.2,
            dy: 0.4 * uniform(&mut rng) - 0.2,
            scale: 0.12 + 0.1 * uniform(&mut rng),
        })
        .collect();
    let imgs: Vec<Tensor> = params.iter().map(|p| shape(size, p)).collect();
    (Tensor::stack(&imgs, 0).unsqueeze(1), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratings_vary_only_across_their_orientation() {
        let g = grating(32, 0.0, 4.0, 0.0, 1.0);
        // θ = 0 varies along x only: every row is the same.
        assert!((g.get(0) - g.get(17)).abs().max().double_value(&[]) < 1e-12);
        assert!(g.max().double_value(&[]) <= 1.0 && g.min().double_value(&[]) >= 0.0);
        let (set, info) = grating_set(16, 4, &[2.0, 4.0], &[0.25, 1.0]);
        assert_eq!(set.size(), vec![16, 1, 16, 16]);
        assert_eq!(info.len(), 16);
        let p = gabor_patch(32, 0.3, 4.0, 0.0, 0.1, 1.0);
        assert!(
            (p.double_value(&[0, 0]) - 0.5).abs() < 1e-6,
            "the envelope fades to gray at the corners"
        );
    }

    #[test]
    fn shapes_rotate_and_translate_as_their_parameters_say() {
        let p = |kind, rotation, dx, dy| ShapeParams {
            kind,
            rotation,
            dx,
            dy,
            scale: 0.2,
        };
        // A square turned a quarter turn about the image centre is itself.
        let a = shape(32, &p(ShapeKind::Square, 0.0, 0.0, 0.0));
        let b = shape(32, &p(ShapeKind::Square, PI / 2.0, 0.0, 0.0));
        assert!(a.equal(&b));
        // A cross turned a quarter turn too, a triangle not.
        let t0 = shape(32, &p(ShapeKind::Triangle, 0.0, 0.0, 0.0));
        let t1 = shape(32, &p(ShapeKind::Triangle, PI / 2.0, 0.0, 0.0));
        assert!(!t0.equal(&t1));
        // Translating moves the shape's centre of mass by the offset.
        let (x, _) = grid(64);
        let com = |img: &Tensor| {
            let w = img - 0.5;
            ((&w * &x).sum(Kind::Double) / w.sum(Kind::Double)).double_value(&[])
        };
        let c0 = com(&shape(64, &p(ShapeKind::Cross, 0.3, 0.0, 0.0)));
        let c1 = com(&shape(64, &p(ShapeKind::Cross, 0.3, 0.125, 0.0)));
        assert!((c1 - c0 - 0.125).abs() < 1e-9, "{c0} {c1}");
        let (set, info) = shapes(9, 32, 5);
        assert_eq!(set.size(), vec![9, 1, 32, 32]);
        assert_eq!(info.len(), 9);
        assert!(set.min().double_value(&[]) >= 0.5 && set.max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn dead_leaves_are_covered_occluding_and_have_a_natural_spectrum() {
        let imgs = dead_leaves(4, 64, 0.01, 0.5, 3);
        assert_eq!(imgs.size(), vec![4, 1, 64, 64]);
        assert!(imgs.min().double_value(&[]) >= 0.0 && imgs.max().double_value(&[]) <= 1.0);
        // The radially averaged power spectrum falls off like a power law
        // with a natural-image-like exponent (about −2).
        let centered = imgs.squeeze_dim(1) - imgs.mean(Kind::Double);
        let power = centered
            .fft_fft2(None::<&[i64]>, [1, 2], "backward")
            .abs()
            .square()
            .mean_dim(0, false, Kind::Double);
        let k = Tensor::fft_fftfreq(64, 1.0 / 64.0, (Kind::Double, tch::Device::Cpu));
        let radius = (k.unsqueeze(1).square() + k.unsqueeze(0).square()).sqrt();
        let band = |lo: f64, hi: f64| {
            let m = radius.ge(lo).logical_and(&radius.lt(hi));
            power.masked_select(&m).mean(Kind::Double).double_value(&[])
        };
        let slope = (band(12.0, 20.0) / band(2.0, 4.0)).ln() / (16f64 / 3.0).ln();
        let img = imgs.get(0).get(0);
        assert!((-3.5..=-1.0).contains(&slope), "spectral slope {slope}");
        let distinct = Vec::<f64>::try_from(&img.reshape([-1])).unwrap();
        let mut levels: Vec<i64> = distinct.iter().map(|v| (v * 1e6) as i64).collect();
        levels.sort_unstable();
        levels.dedup();
        assert!(
            levels.len() > 10,
            "many occluding leaves: {} gray levels",
            levels.len()
        );
    }
}
