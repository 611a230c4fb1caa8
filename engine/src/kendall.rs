//! Kendall's τ in O(n log n) (Knight 1966, as scipy implements it): sort by
//! (x, y), count discordant pairs with a Fenwick tree, correct for ties.
//! This is sequential integer bookkeeping, so it runs on the CPU in plain
//! Rust on the (already computed) RDM vectors.

/// Pair counts behind τ: concordant − discordant, all pairs, pairs tied in
/// x, pairs tied in y.
pub struct KendallParts {
    pub con_minus_dis: f64,
    pub total: f64,
    pub x_ties: f64,
    pub y_ties: f64,
}

fn dense_ranks(v: &[f64], order: &[usize]) -> Vec<usize> {
    let mut ranks = vec![0usize; v.len()];
    let mut r = 0;
    for (k, &i) in order.iter().enumerate() {
        if k == 0 || v[i] != v[order[k - 1]] {
            r += 1;
        }
        ranks[i] = r;
    }
    ranks
}

fn tied_pairs(sorted_ranks: &[usize]) -> f64 {
    let mut total = 0.0;
    let mut run = 1.0;
    for k in 1..=sorted_ranks.len() {
        if k < sorted_ranks.len() && sorted_ranks[k] == sorted_ranks[k - 1] {
            run += 1.0;
        } else {
            total += run * (run - 1.0) / 2.0;
            run = 1.0;
        }
    }
    total
}

pub fn kendall_parts(x: &[f64], y: &[f64]) -> KendallParts {
    let n = x.len();
    let mut by_y: Vec<usize> = (0..n).collect();
    by_y.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let ry = dense_ranks(y, &by_y);
    let mut by_x: Vec<usize> = (0..n).collect();
    by_x.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(ry[a].cmp(&ry[b])));
    let rx = dense_ranks(x, &by_x);
    let xs: Vec<usize> = by_x.iter().map(|&i| rx[i]).collect();
    let ys: Vec<usize> = by_x.iter().map(|&i| ry[i]).collect();

    // Discordant pairs: earlier (smaller x) elements with a larger y.
    let sup = ys.iter().copied().max().unwrap_or(0) + 1;
    let mut tree = vec![0u64; sup];
    let (mut i, mut k, mut dis) = (0usize, 0usize, 0u64);
    while i < n {
        while k < n && xs[i] == xs[k] {
            dis += i as u64;
            let mut idx = ys[k];
            while idx != 0 {
                dis -= tree[idx];
                idx &= idx - 1;
            }
            k += 1;
        }
        while i < k {
            let mut idx = ys[i];
            while idx < sup {
                tree[idx] += 1;
                idx += idx & idx.wrapping_neg();
            }
            i += 1;
        }
    }
    // Pairs tied in both, in x, in y.
    let mut joint = 0.0;
    let mut run = 1.0;
    for k in 1..=n {
        if k < n && xs[k] == xs[k - 1] && ys[k] == ys[k - 1] {
            run += 1.0;
        } else {
            joint += run * (run - 1.0) / 2.0;
            run = 1.0;
        }
    }
    let x_ties = tied_pairs(&xs);
    let mut ys_sorted = ys.clone();
    ys_sorted.sort_unstable();
    let y_ties = tied_pairs(&ys_sorted);
    let total = (n as f64) * (n as f64 - 1.0) / 2.0;
    KendallParts {
        con_minus_dis: total - x_ties - y_ties + joint - 2.0 * dis as f64,
        total,
        x_ties,
        y_ties,
    }
}

pub fn tau_a(x: &[f64], y: &[f64]) -> f64 {
    let p = kendall_parts(x, y);
    p.con_minus_dis / p.total
}

pub fn tau_b(x: &[f64], y: &[f64]) -> f64 {
    let p = kendall_parts(x, y);
    p.con_minus_dis / ((p.total - p.x_ties).sqrt() * (p.total - p.y_ties).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The O(n²) definition, for comparison.
    fn naive(x: &[f64], y: &[f64]) -> (f64, f64, f64, f64) {
        let (mut s, mut tx, mut ty, mut t) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let (a, b) = (
                    (x[i] - x[j]).signum() * (x[i] != x[j]) as i32 as f64,
                    (y[i] - y[j]).signum() * (y[i] != y[j]) as i32 as f64,
                );
                s += a * b;
                tx += (a == 0.0) as i32 as f64;
                ty += (b == 0.0) as i32 as f64;
                t += 1.0;
            }
        }
        (s, t, tx, ty)
    }

    #[test]
    fn matches_the_quadratic_definition_with_ties() {
        let mut seed = 42u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 33) % m) as f64
        };
        for (n, levels) in [(2, 3), (7, 2), (50, 5), (300, 40), (300, 100_000)] {
            let x: Vec<f64> = (0..n).map(|_| next(levels)).collect();
            let y: Vec<f64> = (0..n).map(|_| next(levels)).collect();
            let p = kendall_parts(&x, &y);
            let (s, t, tx, ty) = naive(&x, &y);
            assert_eq!(
                (p.con_minus_dis, p.total, p.x_ties, p.y_ties),
                (s, t, tx, ty),
                "n={n} levels={levels}"
            );
        }
    }
}
