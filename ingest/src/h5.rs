//! HDF5 datasets (and so NWB files) read with a pure-Rust decoder: no C
//! library to crash on a hostile file, reads bounded by the decoded limit,
//! every numeric type widened to f64 and ids read as text or integers.

use std::path::Path;

use hdf5_reader::{Datatype, Hdf5File, OpenOptions};

use crate::error::{IngestError, Result};
use crate::limits::Limits;

pub struct H5 {
    file: Hdf5File,
}

/// HDF5's 8-byte signature, at offset 0 for the files labs write.
pub const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

fn h5err(field: &str, e: hdf5_reader::error::Error) -> IngestError {
    match e {
        hdf5_reader::error::Error::ResourceLimit(m) => {
            IngestError::too_large(format!("{field}: {m}"))
        }
        e => IngestError::invalid(format!("{field}: {e}")),
    }
}

impl H5 {
    pub fn open(path: &Path, limits: &Limits) -> Result<H5> {
        let opts = OpenOptions::default()
            .with_max_read_bytes(limits.max_decoded_bytes.min(usize::MAX as u64) as usize);
        let file = Hdf5File::open_with_options(path, opts)
            .map_err(|e| IngestError::invalid(format!("file: not a readable HDF5 file ({e})")))?;
        Ok(H5 { file })
    }

    pub fn has(&self, path: &str) -> bool {
        self.file.dataset(path).is_ok()
    }

    pub fn has_group(&self, path: &str) -> bool {
        self.file.group(path).is_ok()
    }

    /// The dataset at `path`; `param` names the request field that gave it.
    pub fn dataset(&self, param: &str, path: &str) -> Result<hdf5_reader::Dataset> {
        self.file.dataset(path).map_err(|e| {
            IngestError::invalid(format!(
                "{param}: no dataset at {path:?} in the HDF5 file ({e})"
            ))
        })
    }

    /// A numeric dataset as (shape, values in C order).
    pub fn read_f64(
        &self,
        param: &str,
        path: &str,
        limits: &Limits,
    ) -> Result<(Vec<u64>, Vec<f64>)> {
        let ds = self.dataset(param, path)?;
        let shape = ds.shape().to_vec();
        limits.check_bytes(param, &shape, 8)?;
        let field = format!("{param} {path:?}");
        macro_rules! read_as {
            ($t:ty) => {
                ds.read_array::<$t>()
                    .map_err(|e| h5err(&field, e))?
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<f64>>()
            };
        }
        let values = match ds.dtype() {
            Datatype::FloatingPoint { size: 8, .. } => read_as!(f64),
            Datatype::FloatingPoint { size: 4, .. } => read_as!(f32),
            Datatype::FixedPoint {
                size: 1,
                signed: true,
                ..
            } => read_as!(i8),
            Datatype::FixedPoint {
                size: 1,
                signed: false,
                ..
            } => read_as!(u8),
            Datatype::FixedPoint {
                size: 2,
                signed: true,
                ..
            } => read_as!(i16),
            Datatype::FixedPoint {
                size: 2,
                signed: false,
                ..
            } => read_as!(u16),
            Datatype::FixedPoint {
                size: 4,
                signed: true,
                ..
            } => read_as!(i32),
            Datatype::FixedPoint {
                size: 4,
                signed: false,
                ..
            } => read_as!(u32),
            Datatype::FixedPoint {
                size: 8,
                signed: true,
                ..
            } => read_as!(i64),
            Datatype::FixedPoint {
                size: 8,
                signed: false,
                ..
            } => read_as!(u64),
            other => {
                return Err(IngestError::invalid(format!(
                    "{field}: has type {other:?}; a numeric (integer or float) dataset is needed"
                )))
            }
        };
        Ok((shape, values))
    }

    /// The element type name of a numeric dataset, for provenance.
    pub fn type_name(&self, param: &str, path: &str) -> Result<String> {
        let ds = self.dataset(param, path)?;
        Ok(match ds.dtype() {
            Datatype::FloatingPoint { size, .. } => format!("float{}", 8 * *size as u32),
            Datatype::FixedPoint {
                size, signed: true, ..
            } => format!("int{}", 8 * *size as u32),
            Datatype::FixedPoint {
                size,
                signed: false,
                ..
            } => format!("uint{}", 8 * *size as u32),
            other => format!("{other:?}"),
        })
    }

    /// A 1-D dataset of text, or of integers written as decimal text.
    pub fn read_strings(&self, param: &str, path: &str, limits: &Limits) -> Result<Vec<String>> {
        let ds = self.dataset(param, path)?;
        if ds.ndim() != 1 {
            return Err(IngestError::invalid(format!(
                "{param}: {path:?} must be 1-D, got shape {:?}",
                ds.shape()
            )));
        }
        match ds.dtype() {
            Datatype::String { .. } | Datatype::VarLen { .. } => ds
                .read_strings()
                .map_err(|e| h5err(&format!("{param} {path:?}"), e)),
            Datatype::FixedPoint { .. } => Ok(self
                .read_f64(param, path, limits)?
                .1
                .into_iter()
                .map(|v| format!("{}", v as i64))
                .collect()),
            other => Err(IngestError::invalid(format!(
                "{param}: {path:?} has type {other:?}; ids must be text or integers"
            ))),
        }
    }
}
