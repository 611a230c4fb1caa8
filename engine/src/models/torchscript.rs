//! Uploaded TorchScript models: `forward` returns a `Dict[str, Tensor]` of
//! named layers, a tuple of tensors whose names the registration declares,
//! or one tensor. Loading and running are checked, so a module that fails to
//! load, names no layers or rejects the declared input shape becomes a clear
//! error instead of a crash.

use std::io::Cursor;

use tch::{CModule, Device, IValue, Kind, Tensor};

use crate::error::{EngineError, Result};

pub struct ScriptModel {
    module: CModule,
    names: Option<Vec<String>>,
    device: Device,
}

impl ScriptModel {
    pub fn load(bytes: &[u8], device: Device, names: Option<Vec<String>>) -> Result<ScriptModel> {
        let mut module = CModule::load_data_on_device(&mut Cursor::new(bytes), device).map_err(|e| {
            EngineError::invalid(format!(
                "file: not a loadable TorchScript module ({}); export with torch.jit.script or torch.jit.trace and save with .save()",
                first_line(&e.to_string())
            ))
        })?;
        module.set_eval();
        Ok(ScriptModel {
            module,
            names,
            device,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Every named layer's output for a batch.
    pub fn forward_layers(&self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let out = self
            .module
            .forward_is(&[IValue::Tensor(x.to_kind(Kind::Float))])
            .map_err(|e| {
                EngineError::invalid(format!(
                    "input: the model rejected a batch of shape {:?} ({})",
                    x.size(),
                    first_line(&e.to_string())
                ))
            })?;
        let tensor = |name: &str, v: IValue| match v {
            IValue::Tensor(t) => Ok(t),
            other => Err(EngineError::invalid(format!(
                "layers: output {name:?} is {}, not a tensor",
                kind_name(&other)
            ))),
        };
        let layers: Vec<(String, Tensor)> = match out {
            IValue::GenericDict(pairs) => pairs
                .into_iter()
                .map(|(k, v)| match k {
                    IValue::String(name) => {
                        let t = tensor(&name, v)?;
                        Ok((name, t))
                    }
                    other => Err(EngineError::invalid(format!(
                        "layers: the returned dict has a {} key; keys must be layer names (str)",
                        kind_name(&other)
                    ))),
                })
                .collect::<Result<_>>()?,
            IValue::Tuple(items) | IValue::GenericList(items) => {
                let names = self.names.as_ref().ok_or_else(|| {
                    EngineError::invalid(format!(
                        "layer_names: the model returns {} unnamed tensors; declare their names at registration",
                        items.len()
                    ))
                })?;
                if names.len() != items.len() {
                    return Err(EngineError::invalid(format!(
                        "layer_names: {} names declared for {} returned tensors",
                        names.len(),
                        items.len()
                    )));
                }
                names
                    .iter()
                    .zip(items)
                    .map(|(n, v)| Ok((n.clone(), tensor(n, v)?)))
                    .collect::<Result<_>>()?
            }
            IValue::Tensor(t) => {
                let name = self.names.as_ref().and_then(|n| n.first().cloned()).unwrap_or_else(|| "output".into());
                vec![(name, t)]
            }
            other => {
                return Err(EngineError::invalid(format!(
                    "layers: forward returns {}; expected Dict[str, Tensor], a tuple of tensors or one tensor",
                    kind_name(&other)
                )))
            }
        };
        if layers.is_empty() {
            return Err(EngineError::invalid(
                "layers: the model returns no named layers",
            ));
        }
        for (name, t) in &layers {
            if t.dim() == 0 || t.size()[0] != x.size()[0] {
                return Err(EngineError::invalid(format!(
                    "layers: {name:?} has shape {:?}; every layer needs the batch ({}) as its first axis",
                    t.size(),
                    x.size()[0]
                )));
            }
        }
        Ok(layers)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .chars()
        .take(300)
        .collect()
}

fn kind_name(v: &IValue) -> &'static str {
    match v {
        IValue::None => "None",
        IValue::Tensor(_) => "a tensor",
        IValue::Double(_) | IValue::Int(_) | IValue::Bool(_) => "a number",
        IValue::Tuple(_) => "a tuple",
        IValue::GenericList(_)
        | IValue::TensorList(_)
        | IValue::DoubleList(_)
        | IValue::IntList(_)
        | IValue::BoolList(_) => "a list",
        IValue::String(_) => "a string",
        IValue::GenericDict(_) => "a dict",
        _ => "an object",
    }
}
