//! Models whose layers are scored: built-in architectures from a JSON spec
//! (`builtin`, with the units of `units`) and uploaded TorchScript
//! (`torchscript`), behind one `LayerModel` interface that yields every
//! named layer's output for a batch.

pub mod builtin;
pub mod units;
