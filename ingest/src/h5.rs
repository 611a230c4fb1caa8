//! HDF5 datasets (and so NWB files) read with a pure-Rust decoder: no C
//! library to crash on a hostile file, reads bounded by the decoded limit,
//! every numeric type widened to f64 and ids read as text or integers.

use std::path::Path;

use hdf5_reader::{Dataset, Datatype, H5Type, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem};

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
        Ok((shape, numeric(&ds, &format!("{param} {path:?}"), None)?))
    }

    /// The shape of a dataset.
    pub fn shape(&self, param: &str, path: &str) -> Result<Vec<u64>> {
        Ok(self.dataset(param, path)?.shape().to_vec())
    }

    /// Rows `start..start + count` along the first axis of a numeric dataset,
    /// so large datasets are read a slab at a time.
    pub fn read_rows_f64(
        &self,
        param: &str,
        path: &str,
        start: u64,
        count: u64,
    ) -> Result<Vec<f64>> {
        let ds = self.dataset(param, path)?;
        let mut selections = vec![SliceInfoElem::Slice {
            start,
            end: start + count,
            step: 1,
        }];
        selections.extend((1..ds.ndim()).map(|_| SliceInfoElem::Slice {
            start: 0,
            end: u64::MAX,
            step: 1,
        }));
        numeric(
            &ds,
            &format!("{param} {path:?}"),
            Some(&SliceInfo { selections }),
        )
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

/// Numbers that widen to f64 (int64 beyond 2^53 rounds, as in numpy).
trait Widen: H5Type + Copy {
    fn widen(self) -> f64;
}

macro_rules! widen {
    ($($t:ty),*) => {$(impl Widen for $t { fn widen(self) -> f64 { self as f64 } })*};
}
widen!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

fn read_as<T: Widen>(ds: &Dataset, field: &str, sel: Option<&SliceInfo>) -> Result<Vec<f64>> {
    let a = match sel {
        Some(s) => ds.read_slice::<T>(s),
        None => ds.read_array::<T>(),
    }
    .map_err(|e| h5err(field, e))?;
    Ok(a.iter().map(|&v| v.widen()).collect())
}

/// A numeric dataset (or a slab of it) as f64, whatever its stored type.
fn numeric(ds: &Dataset, field: &str, sel: Option<&SliceInfo>) -> Result<Vec<f64>> {
    match ds.dtype() {
        Datatype::FloatingPoint { size: 8, .. } => read_as::<f64>(ds, field, sel),
        Datatype::FloatingPoint { size: 4, .. } => read_as::<f32>(ds, field, sel),
        Datatype::FixedPoint {
            size: 1,
            signed: true,
            ..
        } => read_as::<i8>(ds, field, sel),
        Datatype::FixedPoint {
            size: 1,
            signed: false,
            ..
        } => read_as::<u8>(ds, field, sel),
        Datatype::FixedPoint {
            size: 2,
            signed: true,
            ..
        } => read_as::<i16>(ds, field, sel),
        Datatype::FixedPoint {
            size: 2,
            signed: false,
            ..
        } => read_as::<u16>(ds, field, sel),
        Datatype::FixedPoint {
            size: 4,
            signed: true,
            ..
        } => read_as::<i32>(ds, field, sel),
        Datatype::FixedPoint {
            size: 4,
            signed: false,
            ..
        } => read_as::<u32>(ds, field, sel),
        Datatype::FixedPoint {
            size: 8,
            signed: true,
            ..
        } => read_as::<i64>(ds, field, sel),
        Datatype::FixedPoint {
            size: 8,
            signed: false,
            ..
        } => read_as::<u64>(ds, field, sel),
        other => Err(IngestError::invalid(format!(
            "{field}: has type {other:?}; a numeric (integer or float) dataset is needed"
        ))),
    }
}

/// How many rows of `row_values` elements fit a slab of about 64 MiB of f64.
pub fn rows_per_slab(row_values: u64) -> u64 {
    ((64u64 << 20) / (8 * row_values.max(1))).max(1)
}
