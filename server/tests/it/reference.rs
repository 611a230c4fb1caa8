//! Float64 reference values computed directly from the published formulas
//! with plain loops, independent of the engine's tensor code: linear CKA as
//! HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with explicitly centered Gram
//! matrices (Kornblith et al. 2019), and RSA as the Spearman correlation of
//! correlation-distance RDM upper triangles with average ranks for ties.

pub type Matrix = Vec<Vec<f64>>;

pub fn from_flat(vals: &[f64], rows: usize, cols: usize) -> Matrix {
    (0..rows)
        .map(|i| vals[i * cols..(i + 1) * cols].to_vec())
        .collect()
}

/// Mean over the first axis of reps × n × d.
pub fn average_reps(vals: &[f64], reps: usize, n: usize, d: usize) -> Matrix {
    (0..n)
        .map(|i| {
            (0..d)
                .map(|j| (0..reps).map(|r| vals[r * n * d + i * d + j]).sum::<f64>() / reps as f64)
                .collect()
        })
        .collect()
}

fn centered_gram(x: &Matrix) -> Matrix {
    let n = x.len();
    let k: Matrix = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| x[i].iter().zip(&x[j]).map(|(a, b)| a * b).sum())
                .collect()
        })
        .collect();
    let row: Vec<f64> = k.iter().map(|r| r.iter().sum::<f64>() / n as f64).collect();
    let all: f64 = row.iter().sum::<f64>() / n as f64;
    (0..n)
        .map(|i| (0..n).map(|j| k[i][j] - row[i] - row[j] + all).collect())
        .collect()
}

fn frob(a: &Matrix, b: &Matrix) -> f64 {
    a.iter()
        .zip(b)
        .map(|(r, s)| r.iter().zip(s).map(|(x, y)| x * y).sum::<f64>())
        .sum()
}

pub fn linear_cka(x: &Matrix, y: &Matrix) -> f64 {
    let (k, l) = (centered_gram(x), centered_gram(y));
    frob(&k, &l) / (frob(&k, &k) * frob(&l, &l)).sqrt()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn rdm(x: &Matrix) -> Vec<f64> {
    let n = x.len();
    let mut out = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            out.push(1.0 - pearson(&x[i], &x[j]));
        }
    }
    out
}

fn ranks(v: &[f64]) -> Vec<f64> {
    v.iter()
        .map(|x| {
            let below = v.iter().filter(|y| *y < x).count() as f64;
            let equal = v.iter().filter(|y| *y == x).count() as f64;
            below + (equal + 1.0) / 2.0
        })
        .collect()
}

pub fn rsa_spearman(x: &Matrix, y: &Matrix) -> f64 {
    pearson(&ranks(&rdm(x)), &ranks(&rdm(y)))
}

#[test]
fn ranks_average_ties() {
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
}
