//! Loading a registered model onto the worker's device, shared by the probe
//! and score jobs.

use neuralign_core::architecture::{InputKind, InputSpec, ModelSpec};
use neuralign_core::resources::Model;
use neuralign_engine::models::builtin::BuiltinModel;
use neuralign_engine::models::torchscript::ScriptModel;
use neuralign_engine::models::LayerModel;
use neuralign_engine::EngineError;
use tch::{Device, Kind, Tensor};

/// Builds or loads the model: TorchScript from its file; a built-in from its
/// spec, with the stored checkpoint's weights when there is one.
pub fn load(
    model: &Model,
    file: Option<&[u8]>,
    checkpoint: Option<&[u8]>,
    device: Device,
) -> Result<LayerModel, EngineError> {
    match model.kind.as_str() {
        "torchscript" => {
            let bytes =
                file.ok_or_else(|| EngineError::invalid("model: the TorchScript file is missing"))?;
            Ok(LayerModel::Script(ScriptModel::load(
                bytes,
                device,
                model.layer_names.clone(),
            )?))
        }
        _ => {
            let spec: ModelSpec = serde_json::from_value(model.spec.clone().unwrap_or_default())
                .map_err(|e| EngineError::invalid(format!("spec: {e}")))?;
            let mut m = BuiltinModel::new(&spec, device)?;
            if let Some(c) = checkpoint {
                m.load_checkpoint(c)?;
            }
            Ok(LayerModel::Builtin(m))
        }
    }
}

/// Two stimuli in the stored form ([0, 1]) of what the model takes, for the
/// registration probe. Deterministic (a fixed pseudo-random pattern), so a
/// probe never draws from libtorch's global generator.
pub fn probe_stimuli(input: &InputSpec) -> Result<Tensor, EngineError> {
    let pattern = |shape: &[i64]| {
        let n: i64 = shape.iter().product();
        // Fractional parts of i·φ: spread over [0, 1) without a generator.
        (Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.618_033_988_749_895)
            .frac()
            .to_kind(Kind::Float)
            .view(shape)
    };
    match input.kind {
        InputKind::Images => {
            let [h, w] = input.size.ok_or_else(|| {
                EngineError::invalid("input.size: required for image models ([height, width])")
            })?;
            Ok(pattern(&[
                2,
                input.channels.unwrap_or(3) as i64,
                h as i64,
                w as i64,
            ]))
        }
        InputKind::Features => {
            let f = input.features.ok_or_else(|| {
                EngineError::invalid("input.features: required for feature models")
            })?;
            Ok(pattern(&[2, f as i64]))
        }
        InputKind::Sequences => {
            let f = input.features.ok_or_else(|| {
                EngineError::invalid("input.features: required for sequence models")
            })?;
            Ok(pattern(&[2, input.steps.unwrap_or(8) as i64, f as i64]))
        }
    }
}
