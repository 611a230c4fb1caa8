//! Built-in model architectures as a lab writes them (JSON), and the input
//! spec every model declares. Decoded and validated here, without libtorch,
//! so a bad spec fails at registration with the field named; the engine
//! builds the network from the decoded value (`engine::models::builtin`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Leaky integrate-and-fire f–I curve parameters (seconds, ohms, volts in
/// consistent units) and the smoothing that makes it differentiable at
/// threshold: the drive above threshold x = RI − v_th enters as
/// γ·softplus(x/γ) (γ = 0: the exact curve).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifParams {
    #[serde(default = "LifParams::tau")]
    pub tau: f64,
    #[serde(default = "LifParams::tau_ref")]
    pub tau_ref: f64,
    #[serde(default = "LifParams::one")]
    pub r: f64,
    #[serde(default = "LifParams::one")]
    pub v_th: f64,
    #[serde(default)]
    pub v_r: f64,
    #[serde(default = "LifParams::smoothing")]
    pub smoothing: f64,
}

impl LifParams {
    fn tau() -> f64 {
        0.02
    }
    fn tau_ref() -> f64 {
        0.002
    }
    fn one() -> f64 {
        1.0
    }
    fn smoothing() -> f64 {
        0.05
    }
}

impl Default for LifParams {
    fn default() -> Self {
        LifParams {
            tau: 0.02,
            tau_ref: 0.002,
            r: 1.0,
            v_th: 1.0,
            v_r: 0.0,
            smoothing: 0.05,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Sigmoid,
    LifRate(LifParams),
}

/// Which channels pool into a unit's divisive normalization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NormPool {
    /// w_ij = 1/N for every channel j.
    #[default]
    Uniform,
    /// w_ij ∝ exp(−d(i,j)² / 2s²) over channel-index distance on a ring, rows summing to 1.
    Gaussian { width: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    #[default]
    None,
    Batch,
    Layer,
    /// r_i = (z_i⁺)ⁿ / (σⁿ + Σ_j w_ij (z_j⁺)ⁿ) across channels (features).
    Divisive {
        #[serde(default = "one")]
        sigma: f64,
        #[serde(default = "two")]
        exponent: f64,
        #[serde(default)]
        pool: NormPool,
    },
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

/// What every unit of a block does after its linear map: normalization, then activation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    #[serde(default)]
    pub activation: Activation,
    #[serde(default)]
    pub norm: Normalization,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub kind: PoolKind,
    #[serde(default = "Pool::two")]
    pub size: usize,
}

impl Pool {
    fn two() -> usize {
        2
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvBlock {
    pub channels: usize,
    #[serde(default = "ConvBlock::three")]
    pub kernel: usize,
    #[serde(default = "ConvBlock::one")]
    pub stride: usize,
    /// Default: kernel / 2 ("same" for odd kernels at stride 1).
    pub padding: Option<usize>,
    pub pool: Option<Pool>,
    /// Overrides the model's unit for this block.
    pub unit: Option<Unit>,
}

impl ConvBlock {
    fn three() -> usize {
        3
    }
    fn one() -> usize {
        1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Rnn,
    Lstm,
    Gru,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Architecture {
    /// Features in (N × input); a fully connected layer per `hidden` width.
    Mlp {
        input: usize,
        hidden: Vec<usize>,
        #[serde(default)]
        unit: Unit,
    },
    /// Images in (N × channels × height × width); conv blocks, then an
    /// optional global pool.
    Cnn {
        channels: usize,
        height: usize,
        width: usize,
        blocks: Vec<ConvBlock>,
        global_pool: Option<PoolKind>,
        #[serde(default)]
        unit: Unit,
    },
    /// Sequences in (N × T × input); stacked recurrent layers with an output
    /// per time step.
    Recurrent {
        cell: Cell,
        input: usize,
        hidden: usize,
        #[serde(default = "one_usize")]
        layers: usize,
    },
    /// Sequences in (N × T × input); a projection to `dim`, then blocks of
    /// multi-head scaled dot-product self-attention (softmax(QKᵀ/√d_head)V)
    /// and a unit-wise feed-forward layer, each with a residual.
    Attention {
        input: usize,
        dim: usize,
        heads: usize,
        #[serde(default = "one_usize")]
        blocks: usize,
        #[serde(default)]
        unit: Unit,
    },
}

fn one_usize() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// libtorch's defaults (Kaiming-uniform weights).
    #[default]
    Default,
    Normal {
        std: f64,
    },
    Orthogonal {
        gain: f64,
    },
}

/// A built-in model: the architecture, its initialization and the seed that
/// makes the weights reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub architecture: Architecture,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub seed: u64,
}

fn positive(field: &str, v: f64) -> Result<()> {
    if !(v > 0.0 && v.is_finite()) {
        return Err(Error::invalid(format!(
            "{field}: must be a positive number, got {v}"
        )));
    }
    Ok(())
}

fn check_unit(field: &str, u: &Unit) -> Result<()> {
    if let Activation::LifRate(p) = u.activation {
        positive(&format!("{field}.activation.lif_rate.tau"), p.tau)?;
        positive(&format!("{field}.activation.lif_rate.r"), p.r)?;
        if !(p.tau_ref >= 0.0 && p.tau_ref.is_finite()) {
            return Err(Error::invalid(format!(
                "{field}.activation.lif_rate.tau_ref: must be >= 0"
            )));
        }
        if p.v_th.is_nan() || p.v_r.is_nan() || p.v_th <= p.v_r {
            return Err(Error::invalid(format!(
                "{field}.activation.lif_rate: v_th ({}) must be above v_r ({})",
                p.v_th, p.v_r
            )));
        }
        if !(p.smoothing >= 0.0 && p.smoothing.is_finite()) {
            return Err(Error::invalid(format!(
                "{field}.activation.lif_rate.smoothing: must be >= 0"
            )));
        }
    }
    if let Normalization::Divisive {
        sigma,
        exponent,
        pool,
    } = u.norm
    {
        positive(&format!("{field}.norm.divisive.sigma"), sigma)?;
        positive(&format!("{field}.norm.divisive.exponent"), exponent)?;
        if let NormPool::Gaussian { width } = pool {
            positive(&format!("{field}.norm.divisive.pool.gaussian.width"), width)?;
        }
    }
    Ok(())
}

fn nonzero(field: &str, v: usize) -> Result<()> {
    if v == 0 || v > 1 << 16 {
        return Err(Error::invalid(format!(
            "{field}: must be between 1 and 65536, got {v}"
        )));
    }
    Ok(())
}

impl ModelSpec {
    /// Decodes a spec, naming the offending field on failure.
    pub fn parse(value: serde_json::Value) -> Result<ModelSpec> {
        let spec: ModelSpec = serde_path_to_error::deserialize(value)
            .map_err(|e| Error::invalid(format!("spec.{}: {}", e.path(), e.inner())))?;
        spec.check()?;
        Ok(spec)
    }

    pub fn check(&self) -> Result<()> {
        match &self.architecture {
            Architecture::Mlp {
                input,
                hidden,
                unit,
            } => {
                nonzero("spec.architecture.input", *input)?;
                if hidden.is_empty() {
                    return Err(Error::invalid(
                        "spec.architecture.hidden: needs at least one layer",
                    ));
                }
                for (i, h) in hidden.iter().enumerate() {
                    nonzero(&format!("spec.architecture.hidden[{i}]"), *h)?;
                }
                check_unit("spec.architecture.unit", unit)
            }
            Architecture::Cnn {
                channels,
                height,
                width,
                blocks,
                unit,
                ..
            } => {
                nonzero("spec.architecture.channels", *channels)?;
                nonzero("spec.architecture.height", *height)?;
                nonzero("spec.architecture.width", *width)?;
                if blocks.is_empty() {
                    return Err(Error::invalid(
                        "spec.architecture.blocks: needs at least one block",
                    ));
                }
                check_unit("spec.architecture.unit", unit)?;
                let (mut h, mut w) = (*height, *width);
                for (i, b) in blocks.iter().enumerate() {
                    let at = format!("spec.architecture.blocks[{i}]");
                    nonzero(&format!("{at}.channels"), b.channels)?;
                    nonzero(&format!("{at}.kernel"), b.kernel)?;
                    nonzero(&format!("{at}.stride"), b.stride)?;
                    if let Some(u) = &b.unit {
                        check_unit(&format!("{at}.unit"), u)?;
                    }
                    let pad = b.padding.unwrap_or(b.kernel / 2);
                    if h + 2 * pad < b.kernel || w + 2 * pad < b.kernel {
                        return Err(Error::invalid(format!(
                            "{at}.kernel: {} is larger than the {h}×{w} input (padding {pad})",
                            b.kernel
                        )));
                    }
                    h = (h + 2 * pad - b.kernel) / b.stride + 1;
                    w = (w + 2 * pad - b.kernel) / b.stride + 1;
                    if let Some(p) = b.pool {
                        nonzero(&format!("{at}.pool.size"), p.size)?;
                        if p.size > h || p.size > w {
                            return Err(Error::invalid(format!(
                                "{at}.pool.size: {} is larger than the {h}×{w} feature map",
                                p.size
                            )));
                        }
                        h /= p.size;
                        w /= p.size;
                    }
                }
                Ok(())
            }
            Architecture::Recurrent {
                input,
                hidden,
                layers,
                ..
            } => {
                nonzero("spec.architecture.input", *input)?;
                nonzero("spec.architecture.hidden", *hidden)?;
                nonzero("spec.architecture.layers", *layers)
            }
            Architecture::Attention {
                input,
                dim,
                heads,
                blocks,
                unit,
            } => {
                nonzero("spec.architecture.input", *input)?;
                nonzero("spec.architecture.dim", *dim)?;
                nonzero("spec.architecture.heads", *heads)?;
                nonzero("spec.architecture.blocks", *blocks)?;
                if dim % heads != 0 {
                    return Err(Error::invalid(format!(
                        "spec.architecture.heads: dim {dim} is not divisible by {heads} heads"
                    )));
                }
                check_unit("spec.architecture.unit", unit)
            }
        }?;
        if let Init::Normal { std } = self.init {
            positive("spec.init.normal.std", std)?;
        }
        if let Init::Orthogonal { gain } = self.init {
            positive("spec.init.orthogonal.gain", gain)?;
        }
        Ok(())
    }

    /// The input a model built from this spec takes.
    pub fn input_kind(&self) -> InputKind {
        match self.architecture {
            Architecture::Mlp { .. } => InputKind::Features,
            Architecture::Cnn { .. } => InputKind::Images,
            Architecture::Recurrent { .. } | Architecture::Attention { .. } => InputKind::Sequences,
        }
    }
}

/// How a layer with spatial axes (N × C × H × W) becomes features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over space: N × C.
    #[default]
    Avg,
    /// Max over space: N × C.
    Max,
    /// Every unit: N × (C·H·W).
    Flatten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Images,
    Features,
    Sequences,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// What a model expects as input; stimuli are converted to it before the
/// forward pass. Stimulus images are stored in [0, 1]; they are resized to
/// `size`, converted to `channels` in `channel_order`, mapped linearly onto
/// `value_range`, then normalized per channel by `mean`/`std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub kind: InputKind,
    /// Images: [height, width] the model takes (stimuli are resized, bilinear).
    pub size: Option<[usize; 2]>,
    /// Images: 1 or 3.
    pub channels: Option<usize>,
    #[serde(default)]
    pub channel_order: ChannelOrder,
    #[serde(default = "InputSpec::unit_range")]
    pub value_range: [f64; 2],
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    /// Sequences: features per step and steps, when fixed.
    pub features: Option<usize>,
    pub steps: Option<usize>,
}

impl InputSpec {
    fn unit_range() -> [f64; 2] {
        [0.0, 1.0]
    }

    pub fn check(&self) -> Result<()> {
        if let Some(c) = self.channels {
            if c != 1 && c != 3 {
                return Err(Error::invalid(format!(
                    "input.channels: must be 1 or 3, got {c}"
                )));
            }
        }
        if let Some([h, w]) = self.size {
            nonzero("input.size[0]", h)?;
            nonzero("input.size[1]", w)?;
        }
        let [lo, hi] = self.value_range;
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(Error::invalid(format!(
                "input.value_range: [{lo}, {hi}] must be increasing and finite"
            )));
        }
        let channels = self.channels.unwrap_or(3);
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if let Some(v) = v {
                if v.len() != channels && v.len() != 1 {
                    return Err(Error::invalid(format!(
                        "input.{name}: {} values for {channels} channels",
                        v.len()
                    )));
                }
                if v.iter().any(|x| !x.is_finite())
                    || (name == "std" && v.iter().any(|x| *x <= 0.0))
                {
                    return Err(Error::invalid(format!(
                        "input.{name}: values must be finite (std positive)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The input a built-in architecture takes, in [0, 1], unnormalized.
    pub fn for_architecture(a: &Architecture) -> InputSpec {
        let base = InputSpec {
            kind: InputKind::Features,
            size: None,
            channels: None,
            channel_order: ChannelOrder::Rgb,
            value_range: [0.0, 1.0],
            mean: None,
            std: None,
            features: None,
            steps: None,
        };
        match a {
            Architecture::Mlp { input, .. } => InputSpec {
                features: Some(*input),
                ..base
            },
            Architecture::Cnn {
                channels,
                height,
                width,
                ..
            } => InputSpec {
                kind: InputKind::Images,
                size: Some([*height, *width]),
                channels: Some(*channels),
                ..base
            },
            Architecture::Recurrent { input, .. } | Architecture::Attention { input, .. } => {
                InputSpec {
                    kind: InputKind::Sequences,
                    features: Some(*input),
                    ..base
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_decode_with_defaults_and_name_bad_fields() {
        let s = ModelSpec::parse(json!({
            "architecture": {"type": "cnn", "channels": 1, "height": 32, "width": 32,
              "blocks": [{"channels": 8, "pool": {"kind": "max"}}, {"channels": 16}],
              "global_pool": "avg",
              "unit": {"activation": {"lif_rate": {"tau": 0.01}}, "norm": {"divisive": {"sigma": 0.5}}}},
            "seed": 3
        }))
        .unwrap();
        let Architecture::Cnn { unit, blocks, .. } = &s.architecture else {
            panic!()
        };
        assert!(
            matches!(unit.activation, Activation::LifRate(LifParams { tau, v_th, .. }) if tau == 0.01 && v_th == 1.0)
        );
        assert!(matches!(unit.norm, Normalization::Divisive { exponent, .. } if exponent == 2.0));
        assert_eq!(blocks[0].kernel, 3);
        let e =
            ModelSpec::parse(json!({"architecture": {"type": "mlp", "input": 4, "hidden": [0]}}))
                .unwrap_err();
        assert!(e.to_string().contains("spec.architecture.hidden[0]"), "{e}");
        let e = ModelSpec::parse(json!({"architecture": {"type": "mlp", "input": 4, "hidden": [3], "unit": {"activation": "swish"}}})).unwrap_err();
        assert!(
            e.to_string().starts_with("spec.architecture") && e.to_string().contains("`swish`"),
            "{e}"
        );
        let e = ModelSpec::parse(
            json!({"architecture": {"type": "attention", "input": 4, "dim": 10, "heads": 3}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not divisible"), "{e}");
        let e = ModelSpec::parse(
            json!({"architecture": {"type": "cnn", "channels": 1, "height": 4, "width": 4,
            "blocks": [{"channels": 2, "pool": {"kind": "max", "size": 8}}]}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("blocks[0].pool.size"), "{e}");
    }
}
