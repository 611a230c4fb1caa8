//! Built-in models from a `ModelSpec`, built with `tch::nn` so every stage
//! (linear/conv map, normalization, activation, pooling, recurrent or
//! attention block) is a named, addressable layer. Weights come from the
//! spec's seed, so a spec is a reproducible model; the content hash covers
//! the spec and every weight.

use neuralign_core::architecture::{
    Activation, Architecture, Cell, Init, ModelSpec, Normalization, PoolKind, Unit,
};
use sha2::{Digest, Sha256};
use tch::nn::{self, Module, ModuleT, RNN};
use tch::{Device, Kind, Tensor};

use super::units::{divisive, lif_rate, pool_weights};
use crate::error::{EngineError, Result};

enum Stage {
    Linear(nn::Linear),
    Conv(nn::Conv2D),
    Batch(nn::BatchNorm, /* sequence input */ bool),
    Layer(nn::LayerNorm),
    Divisive {
        sigma: f64,
        exponent: f64,
        weights: Option<Tensor>,
        dim: i64,
    },
    Act(Activation),
    Pool(PoolKind, i64),
    GlobalPool(PoolKind),
    Lstm(nn::LSTM),
    Gru(nn::GRU),
    Rnn {
        ih: nn::Linear,
        hh: nn::Linear,
    },
    Attention {
        q: nn::Linear,
        k: nn::Linear,
        v: nn::Linear,
        o: nn::Linear,
        heads: i64,
        norm: Option<Box<Stage>>,
    },
    FeedForward {
        ff: nn::Linear,
        act: Activation,
    },
}

pub struct BuiltinModel {
    pub spec: ModelSpec,
    vs: nn::VarStore,
    stages: Vec<(String, Stage)>,
}

fn linear_cfg(init: Init) -> nn::LinearConfig {
    match init {
        Init::Default => nn::LinearConfig::default(),
        Init::Normal { std } => nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
        Init::Orthogonal { gain } => nn::LinearConfig {
            ws_init: nn::Init::Orthogonal { gain },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        },
    }
}

fn conv_cfg(init: Init, stride: i64, padding: i64) -> nn::ConvConfig {
    let base = nn::ConvConfig {
        stride,
        padding,
        ..Default::default()
    };
    match init {
        Init::Default => base,
        Init::Normal { std } => nn::ConvConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
            bs_init: nn::Init::Const(0.0),
            ..base
        },
        Init::Orthogonal { gain } => nn::ConvConfig {
            ws_init: nn::Init::Orthogonal { gain },
            bs_init: nn::Init::Const(0.0),
            ..base
        },
    }
}

/// The normalization stage of a unit over `features` channels (dim 1, or the
/// last dim of sequences); `shape` is the per-sample shape for layer norm.
fn norm_stage(
    p: nn::Path,
    unit: &Unit,
    features: i64,
    shape: Vec<i64>,
    sequence: bool,
) -> Option<Stage> {
    match unit.norm {
        Normalization::None => None,
        Normalization::Batch => Some(Stage::Batch(
            if shape.len() == 3 {
                nn::batch_norm2d(p, features, Default::default())
            } else {
                nn::batch_norm1d(p, features, Default::default())
            },
            sequence,
        )),
        Normalization::Layer => Some(Stage::Layer(nn::layer_norm(p, shape, Default::default()))),
        Normalization::Divisive {
            sigma,
            exponent,
            pool,
        } => Some(Stage::Divisive {
            sigma,
            exponent,
            weights: pool_weights(features, pool, Kind::Float, Device::Cpu),
            dim: if sequence { 2 } else { 1 },
        }),
    }
}

impl BuiltinModel {
    /// Builds the model with the spec's seeded weights on the CPU, then
    /// moves it to `device`.
    pub fn new(spec: &ModelSpec, device: Device) -> Result<BuiltinModel> {
        spec.check()
            .map_err(|e| EngineError::invalid(e.client_message()))?;
        let mut vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut stages: Vec<(String, Stage)> = Vec::new();
        let init = spec.init;
        match &spec.architecture {
            Architecture::Mlp {
                input,
                hidden,
                unit,
            } => {
                let mut d = *input as i64;
                for (i, &h) in hidden.iter().enumerate() {
                    let (h, n) = (h as i64, i + 1);
                    stages.push((
                        format!("fc{n}"),
                        Stage::Linear(nn::linear(&root / format!("fc{n}"), d, h, linear_cfg(init))),
                    ));
                    if let Some(s) = norm_stage(&root / format!("norm{n}"), unit, h, vec![h], false)
                    {
                        stages.push((format!("norm{n}"), s));
                    }
                    stages.push((format!("act{n}"), Stage::Act(unit.activation)));
                    d = h;
                }
            }
            Architecture::Cnn {
                channels,
                height,
                width,
                blocks,
                global_pool,
                unit,
            } => {
                let (mut c, mut h, mut w) = (*channels as i64, *height as i64, *width as i64);
                for (i, b) in blocks.iter().enumerate() {
                    let n = i + 1;
                    let u = b.unit.unwrap_or(*unit);
                    let (k, s) = (b.kernel as i64, b.stride as i64);
                    let pad = b.padding.unwrap_or(b.kernel / 2) as i64;
                    let out = b.channels as i64;
                    stages.push((
                        format!("conv{n}"),
                        Stage::Conv(nn::conv2d(
                            &root / format!("conv{n}"),
                            c,
                            out,
                            k,
                            conv_cfg(init, s, pad),
                        )),
                    ));
                    h = (h + 2 * pad - k) / s + 1;
                    w = (w + 2 * pad - k) / s + 1;
                    c = out;
                    if let Some(st) =
                        norm_stage(&root / format!("norm{n}"), &u, c, vec![c, h, w], false)
                    {
                        stages.push((format!("norm{n}"), st));
                    }
                    stages.push((format!("act{n}"), Stage::Act(u.activation)));
                    if let Some(p) = b.pool {
                        stages.push((format!("pool{n}"), Stage::Pool(p.kind, p.size as i64)));
                        h /= p.size as i64;
                        w /= p.size as i64;
                    }
                }
                if let Some(g) = global_pool {
                    stages.push(("gpool".into(), Stage::GlobalPool(*g)));
                }
            }
            Architecture::Recurrent {
                cell,
                input,
                hidden,
                layers,
            } => {
                let (mut d, h) = (*input as i64, *hidden as i64);
                let cfg = nn::RNNConfig {
                    batch_first: true,
                    ..Default::default()
                };
                for l in 1..=*layers {
                    let p = &root / format!("layer{l}");
                    let (name, stage) = match cell {
                        Cell::Lstm => (format!("lstm{l}"), Stage::Lstm(nn::lstm(p, d, h, cfg))),
                        Cell::Gru => (format!("gru{l}"), Stage::Gru(nn::gru(p, d, h, cfg))),
                        Cell::Rnn => (
                            format!("rnn{l}"),
                            Stage::Rnn {
                                ih: nn::linear(&p / "ih", d, h, linear_cfg(init)),
                                hh: nn::linear(
                                    &p / "hh",
                                    h,
                                    h,
                                    nn::LinearConfig {
                                        bias: false,
                                        ..linear_cfg(init)
                                    },
                                ),
                            },
                        ),
                    };
                    stages.push((name, stage));
                    d = h;
                }
            }
            Architecture::Attention {
                input,
                dim,
                heads,
                blocks,
                unit,
            } => {
                let (d, e) = (*input as i64, *dim as i64);
                stages.push((
                    "embed".into(),
                    Stage::Linear(nn::linear(&root / "embed", d, e, linear_cfg(init))),
                ));
                for b in 1..=*blocks {
                    let p = &root / format!("block{b}");
                    let lin = |name: &str| nn::linear(&p / name, e, e, linear_cfg(init));
                    let norm = norm_stage(&p / "norm", unit, e, vec![e], true).map(Box::new);
                    stages.push((
                        format!("attn{b}"),
                        Stage::Attention {
                            q: lin("q"),
                            k: lin("k"),
                            v: lin("v"),
                            o: lin("o"),
                            heads: *heads as i64,
                            norm,
                        },
                    ));
                    stages.push((
                        format!("ff{b}"),
                        Stage::FeedForward {
                            ff: lin("ff"),
                            act: unit.activation,
                        },
                    ));
                }
            }
        }
        seeded_weights(&vs, spec.seed, init)?;
        vs.set_device(device);
        let stages = stages
            .into_iter()
            .map(|(n, s)| match s {
                Stage::Divisive {
                    sigma,
                    exponent,
                    weights,
                    dim,
                } => (
                    n,
                    Stage::Divisive {
                        sigma,
                        exponent,
                        weights: weights.map(|w| w.to_device(device)),
                        dim,
                    },
                ),
                other => (n, other),
            })
            .collect();
        Ok(BuiltinModel {
            spec: spec.clone(),
            vs,
            stages,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Layer names in forward order.
    pub fn layer_names(&self) -> Vec<String> {
        self.stages.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Every stage's output, in order, for a batch (eval mode).
    pub fn forward_layers(&self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let mut h = x.to_kind(Kind::Float);
        let mut out = Vec::with_capacity(self.stages.len());
        for (name, s) in &self.stages {
            h = apply(s, &h).map_err(|e| EngineError::invalid(format!("layer {name}: {e}")))?;
            out.push((name.clone(), h.shallow_clone()));
        }
        Ok(out)
    }

    /// sha256 over the canonical spec and every weight (sorted by name).
    pub fn content_hash(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        hasher.update(
            serde_json::to_vec(&self.spec).map_err(|e| EngineError::invalid(e.to_string()))?,
        );
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            hasher.update(name.as_bytes());
            let t = t
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous()
                .view(-1);
            hasher.update(format!("{:?}", t.size()).as_bytes());
            let v = Vec::<f32>::try_from(&t)?;
            for x in v {
                hasher.update(x.to_le_bytes());
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// The weights as a safetensors file.
    pub fn checkpoint(&self) -> Result<Vec<u8>> {
        let tmp = std::env::temp_dir().join(format!("neuralign-ckpt-{}.safetensors", uuid_like()));
        self.vs.save(&tmp)?;
        let bytes = std::fs::read(&tmp).map_err(|e| EngineError::invalid(e.to_string()));
        let _ = std::fs::remove_file(&tmp);
        bytes
    }

    /// Replaces the weights with a checkpoint's.
    pub fn load_checkpoint(&mut self, bytes: &[u8]) -> Result<()> {
        let tmp = std::env::temp_dir().join(format!("neuralign-ckpt-{}.safetensors", uuid_like()));
        std::fs::write(&tmp, bytes).map_err(|e| EngineError::invalid(e.to_string()))?;
        let r = self.vs.load(&tmp);
        let _ = std::fs::remove_file(&tmp);
        r.map_err(|e| EngineError::invalid(format!("checkpoint: {e}")))
    }
}

/// Draws every weight matrix or kernel from the spec's seed with SplitMix64
/// (one stream per variable, keyed by its name), so the weights do not
/// depend on libtorch's global generator, which other threads draw from.
/// `default`: U(−1/√fan_in, 1/√fan_in) (PyTorch's default for linear and
/// convolution weights); `normal`: N(0, std²); `orthogonal`: QR of a
/// seeded Gaussian, times gain. Biases start at zero; normalization scales
/// and running statistics keep their constant initial values.
fn seeded_weights(vs: &nn::VarStore, seed: u64, init: Init) -> Result<()> {
    use crate::splits::SplitMix64;
    let _guard = tch::no_grad_guard();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut t) in vars {
        let leaf = name.rsplit('.').next().unwrap_or(&name);
        if leaf.starts_with("bias") {
            if t.dim() == 1 && !name.contains("norm") {
                let _ = t.zero_();
            }
            continue;
        }
        if t.dim() < 2 || !leaf.starts_with("weight") {
            continue;
        }
        let mut key = SplitMix64(seed ^ 0x6e65_7572_616c_6967);
        for b in name.bytes() {
            key = SplitMix64(key.next_u64() ^ b as u64);
        }
        let mut rng = SplitMix64(key.next_u64());
        let shape = t.size();
        let n: i64 = shape.iter().product();
        let fan_in: i64 = shape[1..].iter().product::<i64>().max(1);
        let uniform = |rng: &mut SplitMix64| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let gauss = |rng: &mut SplitMix64| {
            let (u1, u2) = (uniform(rng).max(f64::MIN_POSITIVE), uniform(rng));
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let values: Vec<f64> = match init {
            Init::Default => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n)
                    .map(|_| (2.0 * uniform(&mut rng) - 1.0) * bound)
                    .collect()
            }
            Init::Normal { std } => (0..n).map(|_| gauss(&mut rng) * std).collect(),
            Init::Orthogonal { .. } => (0..n).map(|_| gauss(&mut rng)).collect(),
        };
        let mut w = Tensor::from_slice(&values).view([shape[0], fan_in]);
        if let Init::Orthogonal { gain } = init {
            // Orthonormal rows (or columns, whichever are fewer), like torch's.
            let flip = shape[0] < fan_in;
            let m = if flip { w.tr() } else { w };
            let (q, r) = Tensor::linalg_qr(&m, "reduced");
            let q = q * r.diagonal(0, 0, 1).sign().unsqueeze(0);
            w = if flip { q.tr() } else { q } * gain;
        }
        t.copy_(&w.view(shape.as_slice()).to_kind(t.kind()));
    }
    Ok(())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}", std::process::id())
}

pub fn activate(a: &Activation, x: &Tensor) -> Tensor {
    match a {
        Activation::Relu => x.relu(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::LifRate(p) => lif_rate(x, p),
    }
}

fn apply(s: &Stage, x: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
    Ok(match s {
        Stage::Linear(l) => l.forward(x),
        Stage::Conv(c) => c.forward(x),
        Stage::Batch(b, false) => b.forward_t(x, false),
        Stage::Batch(b, true) => b.forward_t(&x.transpose(1, 2), false).transpose(1, 2),
        Stage::Layer(l) => l.forward(x),
        Stage::Divisive {
            sigma,
            exponent,
            weights,
            dim,
        } => {
            let moved = x.movedim(*dim, 1);
            divisive(&moved, *sigma, *exponent, weights.as_ref()).movedim(1, *dim)
        }
        Stage::Act(a) => activate(a, x),
        Stage::Pool(PoolKind::Max, k) => {
            x.f_max_pool2d([*k, *k], [*k, *k], [0, 0], [1, 1], false)?
        }
        Stage::Pool(PoolKind::Avg, k) => {
            x.f_avg_pool2d([*k, *k], [*k, *k], [0, 0], false, true, None::<i64>)?
        }
        Stage::GlobalPool(PoolKind::Max) => x.f_amax([2, 3], false)?,
        Stage::GlobalPool(PoolKind::Avg) => {
            x.f_mean_dim(Some([2i64, 3].as_slice()), false, None::<Kind>)?
        }
        Stage::Lstm(l) => l.seq(x).0,
        Stage::Gru(g) => g.seq(x).0,
        Stage::Rnn { ih, hh } => {
            // h_t = tanh(W_ih x_t + b + W_hh h_{t−1}), every step kept.
            let pre = ih.forward(x);
            let (n, t, hdim) = (pre.size()[0], pre.size()[1], pre.size()[2]);
            let mut h = Tensor::zeros([n, hdim], (pre.kind(), pre.device()));
            let mut steps = Vec::with_capacity(t as usize);
            for i in 0..t {
                h = (pre.select(1, i) + hh.forward(&h)).tanh();
                steps.push(h.shallow_clone());
            }
            Tensor::stack(&steps, 1)
        }
        Stage::Attention {
            q,
            k,
            v,
            o,
            heads,
            norm,
        } => {
            let (n, t, e) = (x.size()[0], x.size()[1], x.size()[2]);
            let dh = e / heads;
            let split = |y: Tensor| y.view([n, t, *heads, dh]).transpose(1, 2);
            let (qh, kh, vh) = (
                split(q.forward(x)),
                split(k.forward(x)),
                split(v.forward(x)),
            );
            let scores = qh.matmul(&kh.transpose(-2, -1)) / (dh as f64).sqrt();
            let att = scores.softmax(-1, scores.kind()).matmul(&vh);
            let y = x + o.forward(&att.transpose(1, 2).contiguous().view([n, t, e]));
            match norm {
                Some(s) => apply(s, &y)?,
                None => y,
            }
        }
        Stage::FeedForward { ff, act } => x + activate(act, &ff.forward(x)),
    })
}
