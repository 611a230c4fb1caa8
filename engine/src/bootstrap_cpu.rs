//! The RSA stimulus bootstrap on the CPU, where a tensor formulation is
//! memory-bound: per draw, the pair weights m_u·m_v are looked up from the
//! draw's n stimulus counts (which stay in L1) while walking each RDM's fixed
//! sort order once, so nothing of size draws × pairs is ever materialized.
//! Draws are split across threads. The result equals the tensor path in
//! `inference` (tested against it); CUDA devices keep the tensor path.

use neuralign_core::catalog::RdmComparison;

use crate::rank::TIE_TOLERANCE;

/// One RDM's pairs in ascending order of dissimilarity, cut into groups of
/// ties (within the tolerance).
struct SortedPairs {
    order: Vec<u32>,
    /// Start of each tie group in `order`, plus `order.len()` at the end.
    groups: Vec<u32>,
}

impl SortedPairs {
    fn new(v: &[f64]) -> Self {
        let mut order: Vec<u32> = (0..v.len() as u32).collect();
        order.sort_by(|&a, &b| v[a as usize].total_cmp(&v[b as usize]));
        let tol = TIE_TOLERANCE * v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut groups = vec![0u32];
        for k in 1..order.len() {
            if v[order[k] as usize] - v[order[k - 1] as usize] > tol {
                groups.push(k as u32);
            }
        }
        groups.push(order.len() as u32);
        SortedPairs { order, groups }
    }

    /// Writes each pair's average rank within the weighted multiset into
    /// `ranks`; returns the total weight.
    fn ranks(&self, weight: impl Fn(usize) -> f64, ranks: &mut [f64]) -> f64 {
        let mut before = 0.0;
        for g in self.groups.windows(2) {
            let members = &self.order[g[0] as usize..g[1] as usize];
            let total: f64 = members.iter().map(|&e| weight(e as usize)).sum();
            let rank = before + (total + 1.0) / 2.0;
            for &e in members {
                ranks[e as usize] = rank;
            }
            before += total;
        }
        before
    }
}

/// Comparison values for each draw (`draws` holds `n` stimulus indices per
/// draw, row after row). Only the comparisons with a weighted form:
/// cosine, pearson, spearman, rho_a.
pub fn rsa_bootstrap(
    ra: &[f64],
    rb: &[f64],
    n: usize,
    how: RdmComparison,
    draws: &[i64],
) -> Vec<f64> {
    let pairs: Vec<(u32, u32)> = (0..n as u32)
        .flat_map(|u| (u + 1..n as u32).map(move |v| (u, v)))
        .collect();
    let finite: Vec<bool> = ra
        .iter()
        .zip(rb)
        .map(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    let clean = |v: &[f64]| {
        v.iter()
            .map(|x| if x.is_finite() { *x } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    let (ra, rb) = (clean(ra), clean(rb));
    let ranked = matches!(how, RdmComparison::Spearman | RdmComparison::RhoA);
    let (sa, sb) = if ranked {
        (Some(SortedPairs::new(&ra)), Some(SortedPairs::new(&rb)))
    } else {
        (None, None)
    };
    let total = draws.len() / n;
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(total.max(1));
    let chunk = total.div_ceil(threads);
    let mut out = vec![0.0; total];
    std::thread::scope(|scope| {
        for (t, slot) in out.chunks_mut(chunk).enumerate() {
            let (pairs, finite, ra, rb, sa, sb) = (&pairs, &finite, &ra, &rb, &sa, &sb);
            scope.spawn(move || {
                let mut counts = vec![0.0f64; n];
                let (mut rank_a, mut rank_b) = (vec![0.0; pairs.len()], vec![0.0; pairs.len()]);
                for (k, value) in slot.iter_mut().enumerate() {
                    let d = t * chunk + k;
                    counts.iter_mut().for_each(|c| *c = 0.0);
                    for &s in &draws[d * n..(d + 1) * n] {
                        counts[s as usize] += 1.0;
                    }
                    let weight = |e: usize| {
                        let (u, v) = pairs[e];
                        if finite[e] {
                            counts[u as usize] * counts[v as usize]
                        } else {
                            0.0
                        }
                    };
                    let (x, y): (&[f64], &[f64]) = if ranked {
                        sa.as_ref().expect("sorted").ranks(weight, &mut rank_a);
                        sb.as_ref().expect("sorted").ranks(weight, &mut rank_b);
                        (&rank_a, &rank_b)
                    } else {
                        (ra, rb)
                    };
                    let (mut w, mut sx, mut sy, mut sxy, mut sxx, mut syy) =
                        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
                    for e in 0..pairs.len() {
                        let we = weight(e);
                        if we == 0.0 {
                            continue;
                        }
                        let (xe, ye) = (x[e], y[e]);
                        w += we;
                        sx += we * xe;
                        sy += we * ye;
                        sxy += we * xe * ye;
                        sxx += we * xe * xe;
                        syy += we * ye * ye;
                    }
                    *value = match how {
                        RdmComparison::Cosine => sxy / (sxx * syy).sqrt(),
                        RdmComparison::RhoA => {
                            let mean = (w + 1.0) / 2.0;
                            12.0 * (sxy - w * mean * mean) / (w * w * w - w)
                        }
                        _ => {
                            let cov = sxy - sx * sy / w;
                            cov / ((sxx - sx * sx / w) * (syy - sy * sy / w)).sqrt()
                        }
                    };
                }
            });
        }
    });
    out
}
