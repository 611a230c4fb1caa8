//! Ranks with ties averaged (scipy's `rankdata(method="average")`), and the
//! correlations built on them.

use tch::{Device, Kind, Tensor};

/// Values closer than this, relative to the largest magnitude, are ties.
/// Dissimilarities that are equal in exact arithmetic (common with spike
/// counts) come out of floating point a few ulps apart, in an order that
/// depends on the BLAS; without a tolerance their ranks would be decided by
/// rounding.
pub const TIE_TOLERANCE: f64 = 1e-12;

/// Runs of near-equal values (consecutive sorted differences within the
/// tolerance), from one sort: the sort order, and each sorted value's run.
struct TieRuns {
    sorted: Tensor,
    order: Tensor,
    /// Marks the first value of each run, in sorted order.
    first: Tensor,
    /// The run of each value, in sorted order (0-based).
    run: Tensor,
}

fn tie_runs(x: &Tensor) -> TieRuns {
    let n = x.size()[0];
    let (sorted, order) = x.sort(0, false);
    let tol = TIE_TOLERANCE * x.abs().max().double_value(&[]);
    let gaps = (sorted.slice(0, 1, n, 1) - sorted.slice(0, 0, n - 1, 1)).gt(tol);
    let first = Tensor::cat(&[Tensor::ones([1], (Kind::Bool, x.device())), gaps], 0);
    let run = first.to_kind(Kind::Int64).cumsum(0, Kind::Int64) - 1;
    TieRuns {
        sorted,
        order,
        first,
        run,
    }
}

/// Replaces each run of near-equal values (consecutive sorted differences
/// within the tolerance) by the run's smallest value.
pub fn snap_ties(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    if n < 2 {
        return x.shallow_clone();
    }
    let r = tie_runs(x);
    let snapped = r.sorted.masked_select(&r.first).index_select(0, &r.run);
    Tensor::zeros([n], (Kind::Double, x.device())).scatter(0, &r.order, &snapped)
}

/// 1-based average ranks of a 1-D tensor, ties (within the tolerance)
/// averaged. One sort: a run of near-equal values is one tie group.
/// Finite float64 values on the CPU are ranked by a radix sort in Rust
/// (libtorch's CPU sort took 9 ms of an RDM's 12 ms ranking); other
/// devices sort with libtorch. Both give the same ranks: the runs depend
/// on the sorted values only, not on how equal values are ordered.
pub fn average_ranks(x: &Tensor) -> Tensor {
    if x.device() == Device::Cpu && x.kind() == Kind::Double {
        if let Ok(values) = Vec::<f64>::try_from(x) {
            if values.iter().all(|v| v.is_finite()) {
                return Tensor::from_slice(&average_ranks_of(&values));
            }
        }
    }
    average_ranks_sorted_by_torch(x)
}

/// `average_ranks` with libtorch's sort, on any device.
pub fn average_ranks_sorted_by_torch(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    if n < 2 {
        return Tensor::ones([n], (Kind::Double, dev));
    }
    let r = tie_runs(x);
    let counts = r.run.bincount::<Tensor>(None, 0).to_kind(Kind::Double);
    let starts = counts.cumsum(0, Kind::Double) - &counts;
    let avg = starts + (&counts - 1.0) / 2.0 + 1.0;
    let ranks_sorted = avg.index_select(0, &r.run);
    Tensor::zeros([n], (Kind::Double, dev)).scatter(0, &r.order, &ranks_sorted)
}

/// Average ranks of finite values (see `average_ranks`).
fn average_ranks_of(values: &[f64]) -> Vec<f64> {
    let tol = TIE_TOLERANCE * values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let order = argsort(values);
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len()
            && values[order[end] as usize] - values[order[end - 1] as usize] <= tol
        {
            end += 1;
        }
        let average = (start + end - 1) as f64 / 2.0 + 1.0;
        for &i in &order[start..end] {
            ranks[i as usize] = average;
        }
        start = end;
    }
    ranks
}

/// The ascending order of finite values: an LSD radix sort over the bytes
/// of order-preserving integer keys, skipping bytes all keys share.
fn argsort(values: &[f64]) -> Vec<u32> {
    // Flipping the sign bit (or every bit of a negative) orders the bit
    // patterns as the numbers.
    let key = |v: f64| {
        let bits = v.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        }
    };
    let mut items: Vec<(u64, u32)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (key(v), i as u32))
        .collect();
    if items.len() < 1 << 12 {
        items.sort_unstable_by_key(|&(k, _)| k);
        return items.into_iter().map(|(_, i)| i).collect();
    }
    let mut counts = [[0usize; 256]; 8];
    for &(k, _) in &items {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * byte)) as usize & 255] += 1;
        }
    }
    let mut spare = items.clone();
    for (byte, c) in counts.iter().enumerate() {
        if c.contains(&items.len()) {
            continue;
        }
        let mut next = [0usize; 256];
        let mut at = 0;
        for (d, &n) in c.iter().enumerate() {
            next[d] = at;
            at += n;
        }
        for &item in &items {
            let d = (item.0 >> (8 * byte)) as usize & 255;
            spare[next[d]] = item;
            next[d] += 1;
        }
        std::mem::swap(&mut items, &mut spare);
    }
    items.into_iter().map(|(_, i)| i).collect()
}

/// Cosine similarity of two 1-D tensors.
pub fn cosine(x: &Tensor, y: &Tensor) -> f64 {
    let num = (x * y).sum(Kind::Double);
    (num / (x.square().sum(Kind::Double) * y.square().sum(Kind::Double)).sqrt()).double_value(&[])
}

/// Pearson correlation of two 1-D float64 tensors.
pub fn pearson(x: &Tensor, y: &Tensor) -> f64 {
    cosine(&(x - x.mean(Kind::Double)), &(y - y.mean(Kind::Double)))
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(x: &Tensor, y: &Tensor) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Spearman's ρ_A as rsatoolbox defines it: 12 Σ (r − r̄)(s − s̄) / (n³ − n),
/// which equals ρ without ties and is not tie-corrected with them.
pub fn rho_a(x: &Tensor, y: &Tensor) -> f64 {
    rho_a_of_ranks(&average_ranks(x), &average_ranks(y))
}

/// `rho_a` from the two average-rank vectors.
pub fn rho_a_of_ranks(r: &Tensor, s: &Tensor) -> f64 {
    let n = r.size()[0] as f64;
    let num = ((r - r.mean(Kind::Double)) * (s - s.mean(Kind::Double)))
        .sum(Kind::Double)
        .double_value(&[]);
    12.0 * num / (n * n * n - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The radix path ranks as libtorch's sort does: negative and positive
    /// values, exact ties, near ties within the tolerance, both sizes.
    #[test]
    fn radix_ranks_equal_the_torch_sorted_ranks() {
        let mut seed = 7;
        for n in [5usize, 300, 5000, 70_000] {
            let values: Vec<f64> = (0..n)
                .map(|i| match i % 5 {
                    0 => (lcg(&mut seed) * 20.0).floor() - 10.0,
                    1 => 3.0 + 1e-15 * (i % 3) as f64,
                    2 => -0.0,
                    _ => (lcg(&mut seed) - 0.5) * 1e3,
                })
                .collect();
            let x = Tensor::from_slice(&values);
            let fast = Vec::<f64>::try_from(&average_ranks(&x)).unwrap();
            let torch = Vec::<f64>::try_from(&average_ranks_sorted_by_torch(&x)).unwrap();
            assert_eq!(fast, torch, "n = {n}");
        }
    }
}
