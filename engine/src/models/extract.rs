//! Activation extraction: stimuli converted to the model's declared input
//! (resize, channels, value range, mean/std), batched forward passes in
//! eval mode under `no_grad` on the model's device, each kept layer pooled
//! or flattened into a preallocated stimuli × features tensor, so peak
//! memory is the activations plus one batch. The batch is sized from a
//! one-stimulus probe to fit a memory budget and halved on out-of-memory.
//!
//! On the CPU, image batches go in channels-last (NHWC strides, the same
//! NCHW shape), the layout oneDNN's convolutions are fastest with, and are
//! kept small enough that a batch's layer outputs stay a few tens of MiB:
//! together 2.7× PyTorch eager's NCHW batches of 256 on the score bench's
//! CNN (BENCHMARKS.md). Strides change no value (flatten, pooling and every
//! elementwise op read by index); only `view` cares, so a model that
//! rejects a channels-last probe is run with contiguous batches instead.

use neuralign_core::architecture::{ChannelOrder, InputKind, InputSpec, Pooling};
use tch::{Device, Kind, Tensor};

use super::LayerModel;
use crate::error::{EngineError, Result};

/// Converts a batch of stored stimuli to what the model takes.
pub fn preprocess(stimuli: &Tensor, spec: &InputSpec) -> Result<Tensor> {
    let x = stimuli.to_kind(Kind::Float);
    match spec.kind {
        InputKind::Images => {
            if x.dim() != 4 {
                return Err(EngineError::invalid(format!(
                    "input: the model takes images but the stimuli have shape {:?}",
                    x.size()
                )));
            }
            let mut x = x;
            let want_c = spec.channels.unwrap_or(x.size()[1] as usize) as i64;
            let have_c = x.size()[1];
            x = match (have_c, want_c) {
                (a, b) if a == b => x,
                (3, 1) => {
                    let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
                        .view([1, 3, 1, 1])
                        .to_device(x.device());
                    (&x * w).sum_dim_intlist(1, true, Kind::Float)
                }
                (1, 3) => x.expand([-1, 3, -1, -1], false).contiguous(),
                (a, b) => {
                    return Err(EngineError::invalid(format!(
                        "input.channels: the model takes {b} channels, the stimuli have {a}"
                    )))
                }
            };
            if want_c == 3 && spec.channel_order == ChannelOrder::Bgr {
                x = x.flip([1]);
            }
            if let Some([h, w]) = spec.size {
                let (h, w) = (h as i64, w as i64);
                if x.size()[2] != h || x.size()[3] != w {
                    x = x.upsample_bilinear2d([h, w], false, None, None);
                }
            }
            let [lo, hi] = spec.value_range;
            if (lo, hi) != (0.0, 1.0) {
                x = x * (hi - lo) + lo;
            }
            let dev = x.device();
            let per_channel = |v: &Vec<f64>| {
                let t = Tensor::from_slice(&v.iter().map(|&a| a as f32).collect::<Vec<_>>())
                    .to_device(dev);
                t.view([1, v.len() as i64, 1, 1])
            };
            if let Some(m) = &spec.mean {
                x = &x - per_channel(m);
            }
            if let Some(s) = &spec.std {
                x = &x / per_channel(s);
            }
            Ok(x)
        }
        InputKind::Features | InputKind::Sequences => {
            let want_dim = if spec.kind == InputKind::Features {
                2
            } else {
                3
            };
            if x.dim() != want_dim {
                return Err(EngineError::invalid(format!(
                    "input: the model takes {} but the stimuli have shape {:?}",
                    if want_dim == 2 {
                        "features (N × D)"
                    } else {
                        "sequences (N × T × D)"
                    },
                    x.size()
                )));
            }
            if let Some(f) = spec.features {
                if *x.size().last().unwrap() != f as i64 {
                    return Err(EngineError::invalid(format!(
                        "input.features: the model takes {f} features, the stimuli have {}",
                        x.size().last().unwrap()
                    )));
                }
            }
            Ok(x)
        }
    }
}

/// A layer's batch output as features: spatial maps pooled (or flattened),
/// sequences kept as N × T × H, everything else flattened per stimulus.
fn features(t: &Tensor, pooling: Pooling) -> Tensor {
    match (t.dim(), pooling) {
        (4, Pooling::Avg) => t.mean_dim([2i64, 3].as_slice(), false, Kind::Float),
        (4, Pooling::Max) => t.amax([2, 3], false),
        (3, _) => t.shallow_clone(),
        _ => t.flatten(1, -1),
    }
}

pub struct ExtractOptions<'a> {
    pub pooling: Pooling,
    /// Layers to keep (all when None).
    pub layers: Option<&'a [String]>,
    /// Fixed batch size; sized from the budget when None.
    pub batch_size: Option<usize>,
    /// Bytes a batch's forward pass may take on the device.
    pub batch_budget: u64,
}

/// Layer outputs a CPU batch may produce at once. Larger batches are
/// slower (their outputs outgrow the caches and are fresh allocations each
/// batch); measured on the score bench's CNN (0.94 MB of layer outputs per
/// stimulus, 1,000 stimuli, two threads, channels-last): 8–32 stimuli per
/// batch took 0.61–0.69 s, 256 took 1.04 s.
const CPU_BATCH_BYTES: u64 = 24 << 20;
/// Below this a forward pass is mostly per-call overhead (1–2 stimuli per
/// batch took 1.4 s on the same model), unless memory allows no more.
const CPU_MIN_BATCH: u64 = 8;
const MAX_BATCH: u64 = 256;

/// The same images with NHWC strides: what PyTorch calls channels-last,
/// without a memory-format API (tch has none).
fn channels_last(x: Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Stimuli per batch when the job does not fix it: what fits the budget,
/// and on the CPU no more than keeps a batch's outputs cache-sized.
fn batch_size(per_stimulus: u64, budget: u64, device: Device) -> u64 {
    let per_stimulus = per_stimulus.max(1);
    let fit = (budget / per_stimulus).clamp(1, MAX_BATCH);
    match device {
        Device::Cpu => (CPU_BATCH_BYTES / per_stimulus)
            .clamp(CPU_MIN_BATCH, MAX_BATCH)
            .min(fit),
        _ => fit,
    }
}

fn is_oom(e: &EngineError) -> bool {
    let m = e.to_string().to_lowercase();
    m.contains("out of memory") || m.contains("cuda error: out of memory")
}

/// Extracts every kept layer for all stimuli (N first). Returns the layers
/// (CPU, float32) and the batch size used.
pub fn extract(
    model: &LayerModel,
    stimuli: &Tensor,
    spec: &InputSpec,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(i64, i64) -> Result<()>,
) -> Result<(Vec<(String, Tensor)>, usize)> {
    let _guard = tch::no_grad_guard();
    let n = stimuli.size()[0];
    let device = model.device();
    // Each batch's layers (pooled) and the bytes all its layer outputs took.
    let run = |from: i64, len: i64, nhwc: bool| -> Result<(Vec<(String, Tensor)>, u64)> {
        let mut x = preprocess(&stimuli.narrow(0, from, len), spec)?.to_device(device);
        if nhwc {
            x = channels_last(x);
        }
        let layers = model.forward_layers(&x)?;
        let bytes = layers
            .iter()
            .map(|(_, t)| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64)
            .sum();
        let kept = layers
            .into_iter()
            .filter(|(name, _)| {
                opts.layers
                    .is_none_or(|keep| keep.iter().any(|k| k == name))
            })
            .map(|(name, t)| (name, features(&t, opts.pooling)))
            .collect();
        Ok((kept, bytes))
    };
    // A one-stimulus probe tells the output shapes, the per-stimulus cost
    // and whether the model takes channels-last batches.
    let mut nhwc = device == Device::Cpu && stimuli.dim() == 4 && spec.kind == InputKind::Images;
    let (probe, per_stimulus) = match run(0, 1, nhwc) {
        Ok(probe) => probe,
        Err(_) if nhwc => {
            nhwc = false;
            run(0, 1, false)?
        }
        Err(e) => return Err(e),
    };
    if let Some(keep) = opts.layers {
        if let Some(missing) = keep.iter().find(|k| !probe.iter().any(|(n, _)| n == *k)) {
            return Err(EngineError::invalid(format!(
                "layers: the model has no layer {missing:?}"
            )));
        }
    }
    let mut batch = opts.batch_size.map_or_else(
        || batch_size(per_stimulus, opts.batch_budget, device) as i64,
        |b| b as i64,
    );
    let mut out: Vec<(String, Tensor)> = probe
        .iter()
        .map(|(name, t)| {
            let mut shape = t.size();
            shape[0] = n;
            (
                name.clone(),
                Tensor::zeros(shape, (Kind::Float, Device::Cpu)),
            )
        })
        .collect();
    let mut from = 0;
    while from < n {
        let len = batch.min(n - from);
        match run(from, len, nhwc) {
            Ok((layers, _)) => {
                for ((_, dst), (_, src)) in out.iter_mut().zip(layers) {
                    dst.narrow(0, from, len)
                        .copy_(&src.to_device(Device::Cpu).to_kind(Kind::Float));
                }
                from += len;
                progress(from, n)?;
            }
            Err(e) if is_oom(&e) && batch > 1 => batch = (batch / 2).max(1),
            Err(e) => return Err(e),
        }
    }
    Ok((out, batch as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_batches_stay_cache_sized_and_every_batch_fits_the_budget() {
        const MIB: u64 = 1 << 20;
        // 1 MiB of outputs per stimulus: 24 per batch on the CPU, all the
        // budget allows on a GPU (capped).
        assert_eq!(batch_size(MIB, 2 << 30, Device::Cpu), 24);
        assert_eq!(batch_size(MIB, 8 << 30, Device::Cuda(0)), MAX_BATCH);
        // Wide outputs: no fewer than the minimum, unless the budget says so.
        assert_eq!(batch_size(100 * MIB, 2 << 30, Device::Cpu), CPU_MIN_BATCH);
        assert_eq!(batch_size(100 * MIB, 350 * MIB, Device::Cpu), 3);
        assert_eq!(batch_size(100 * MIB, 10 * MIB, Device::Cpu), 1);
        assert_eq!(batch_size(100 * MIB, 350 * MIB, Device::Cuda(0)), 3);
        // Narrow outputs: the cap.
        assert_eq!(batch_size(16, 2 << 30, Device::Cpu), MAX_BATCH);
        assert_eq!(batch_size(0, 0, Device::Cpu), 1);
    }

    #[test]
    fn channels_last_keeps_shape_and_values_and_changes_strides() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let y = channels_last(x.shallow_clone());
        assert_eq!(y.size(), x.size());
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert!(y.equal(&x));
    }
}
