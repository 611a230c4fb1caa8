//! Per-neuron split-half reliability of a normalized recording, computed on
//! upload so a lab sees data quality at once. Repetitions split into even
//! (0, 2, …) and odd (1, 3, …) as uploaded; each half is averaged per
//! stimulus and time bin ignoring NaN (ragged repetitions); the Pearson
//! correlation of the two halves over the (stimulus, bin) cells both halves
//! have is Spearman–Brown corrected: 2r / (1 + r). A fixed split, unlike the
//! engine's seeded random halves, so it reads the file once, a block of
//! neurons at a time, in bounded memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::error::{IngestError, Result};
use crate::npy::OutType;

/// Scratch memory budget for the per-block accumulators.
const BLOCK_BYTES: u64 = 64 << 20;

/// `shape` is reps × stimuli × neurons [× bins]; `data_offset` where the
/// values start in `file`. None for a neuron with fewer than 3 shared cells,
/// no variance, or when there is only one repetition.
pub fn split_half(
    file: &mut File,
    data_offset: u64,
    ty: OutType,
    shape: &[u64],
) -> Result<Vec<Option<f64>>> {
    let (r, s, n) = (shape[0], shape[1], shape[2]);
    let b = shape.get(3).copied().unwrap_or(1);
    if r < 2 {
        return Ok(vec![None; n as usize]);
    }
    let item = ty.size();
    // Per neuron in a block: 4 f64 accumulators per (stimulus, bin).
    let width = (BLOCK_BYTES / (32 * s * b).max(1)).clamp(1, n);
    let mut out = Vec::with_capacity(n as usize);
    let mut n0 = 0;
    while n0 < n {
        let w = width.min(n - n0);
        let cells = (s * w * b) as usize;
        let (mut sum, mut cnt) = (vec![[0f64; 2]; cells], vec![[0u32; 2]; cells]);
        let mut buf = vec![0u8; (w * b * item) as usize];
        for rep in 0..r {
            let half = (rep % 2) as usize;
            for st in 0..s {
                let off = data_offset + (((rep * s + st) * n + n0) * b) * item;
                file.seek(SeekFrom::Start(off))
                    .and_then(|_| file.read_exact(&mut buf))
                    .map_err(|e| IngestError::io("reliability", e))?;
                for (k, raw) in buf.chunks_exact(item as usize).enumerate() {
                    let v = match ty {
                        OutType::F32 => f32::from_le_bytes(raw.try_into().expect("4")) as f64,
                        OutType::F64 => f64::from_le_bytes(raw.try_into().expect("8")),
                    };
                    if v.is_finite() {
                        // k runs over (neuron in block, bin); cells are (neuron, stimulus, bin).
                        let (j, t) = (k as u64 / b, k as u64 % b);
                        let c = ((j * s + st) * b + t) as usize;
                        sum[c][half] += v;
                        cnt[c][half] += 1;
                    }
                }
            }
        }
        for j in 0..w as usize {
            let span = j * (s * b) as usize..(j + 1) * (s * b) as usize;
            let pairs: Vec<(f64, f64)> = span
                .filter(|&c| cnt[c][0] > 0 && cnt[c][1] > 0)
                .map(|c| (sum[c][0] / cnt[c][0] as f64, sum[c][1] / cnt[c][1] as f64))
                .collect();
            out.push(spearman_brown(pearson(&pairs)));
        }
        n0 += w;
    }
    Ok(out)
}

fn pearson(p: &[(f64, f64)]) -> Option<f64> {
    if p.len() < 3 {
        return None;
    }
    let m = p.len() as f64;
    let (mx, my) = p
        .iter()
        .fold((0.0, 0.0), |a, &(x, y)| (a.0 + x / m, a.1 + y / m));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in p {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let r = sxy / (sxx * syy).sqrt();
    r.is_finite().then_some(r)
}

fn spearman_brown(r: Option<f64>) -> Option<f64> {
    r.map(|r| 2.0 * r / (1.0 + r)).filter(|v| v.is_finite())
}
