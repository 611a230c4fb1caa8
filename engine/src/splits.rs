//! Cross-validation splits. Seeded splits use a SplitMix64 Fisher–Yates
//! shuffle (a few lines any language can reproduce, so a lab can recreate
//! them), then contiguous folds sized as scikit-learn's `KFold` sizes them:
//! the first n mod k folds get one extra item.

/// Indices of a training and a test set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Split {
    pub train: Vec<i64>,
    pub test: Vec<i64>,
}

impl Split {
    /// The training and test indices as index tensors on `device`.
    pub fn tensors(&self, device: tch::Device) -> (tch::Tensor, tch::Tensor) {
        (
            tch::Tensor::from_slice(&self.train).to_device(device),
            tch::Tensor::from_slice(&self.test).to_device(device),
        )
    }
}

pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) by rejection, so every language agrees.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// A seeded permutation of 0..n (Fisher–Yates from the end).
pub fn permutation(n: usize, seed: u64) -> Vec<i64> {
    permutation_from(&mut SplitMix64(seed), n)
}

/// The next permutation of 0..n from a running generator.
pub fn permutation_from(rng: &mut SplitMix64, n: usize) -> Vec<i64> {
    let mut p: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// `samples` bootstrap draws of n indices in [0, n), row by row.
pub fn bootstrap_indices(n: usize, samples: usize, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix64(seed);
    (0..n * samples)
        .map(|_| rng.below(n as u64) as i64)
        .collect()
}

/// `count` independent shuffles (one SplitMix64 stream from `seed`), each
/// taking its first `test` items as the test set and the rest, sorted, as the
/// training set: scikit-learn's `ShuffleSplit` scheme with our generator.
pub fn shuffle_splits(n: usize, count: usize, test: usize, seed: u64) -> Vec<Split> {
    let mut rng = SplitMix64(seed);
    (0..count)
        .map(|_| {
            let p = permutation_from(&mut rng, n);
            let (mut te, mut tr) = (p[..test].to_vec(), p[test..].to_vec());
            te.sort_unstable();
            tr.sort_unstable();
            Split {
                train: tr,
                test: te,
            }
        })
        .collect()
}

/// Contiguous K-fold splits of `items` (in the given order).
pub fn kfold(items: &[i64], k: usize) -> Vec<Split> {
    let n = items.len();
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for f in 0..k {
        let size = n / k + usize::from(f < n % k);
        let test = items[start..start + size].to_vec();
        let train = items[..start]
            .iter()
            .chain(&items[start + size..])
            .copied()
            .collect();
        out.push(Split { train, test });
        start += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_items_like_kfold() {
        let items: Vec<i64> = (0..11).collect();
        let folds = kfold(&items, 3);
        let sizes: Vec<usize> = folds.iter().map(|s| s.test.len()).collect();
        assert_eq!(sizes, vec![4, 4, 3]);
        let mut all: Vec<i64> = folds.iter().flat_map(|s| s.test.clone()).collect();
        all.sort();
        assert_eq!(all, items);
        let p = permutation(100, 7);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(p, sorted);
        assert_eq!(p, permutation(100, 7));
    }
}
