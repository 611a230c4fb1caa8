//! Models whose layers are scored: built-in architectures from a JSON spec
//! (`builtin`, with the units of `units`) and uploaded TorchScript
//! (`torchscript`), behind one `LayerModel` interface that yields every
//! named layer's output for a batch.

pub mod builtin;
pub mod extract;
pub mod torchscript;
pub mod units;

use tch::{Device, Tensor};

use crate::error::Result;

/// A model whose layers can be read out.
pub enum LayerModel {
    Builtin(builtin::BuiltinModel),
    Script(torchscript::ScriptModel),
}

impl LayerModel {
    pub fn forward_layers(&self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        match self {
            LayerModel::Builtin(m) => m.forward_layers(x),
            LayerModel::Script(m) => m.forward_layers(x),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            LayerModel::Builtin(m) => m.device(),
            LayerModel::Script(m) => m.device(),
        }
    }
}
