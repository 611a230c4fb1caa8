//! Which reader a file goes to: the request may say; otherwise the first
//! bytes decide (npy magic, zip, HDF5 signature), and a zip holding a
//! `manifest.csv` is an image archive rather than an `.npz`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IngestError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Npy,
    Npz,
    /// Zip of PNG/JPEG files with a `manifest.csv`.
    Zip,
    Hdf5,
    /// Long CSV: `stimulus_id,neuron_id,repetition,value[,time_bin]`.
    Csv,
    Nwb,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Zip => "zip",
            Format::Hdf5 => "hdf5",
            Format::Csv => "csv",
            Format::Nwb => "nwb",
        }
    }
    pub fn parse(s: &str) -> Result<Format> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            IngestError::invalid(format!(
                "format: unknown format {s:?} (known: npy, npz, zip, hdf5, csv, nwb)"
            ))
        })
    }
}

/// The manifest an image archive must carry.
pub const MANIFEST: &str = "manifest.csv";

/// Guesses the format from the file's first bytes. HDF5 files that are NWB
/// are told apart by the caller (they have `/units` or `/intervals`).
pub fn sniff(path: &Path) -> Result<Format> {
    let mut head = [0u8; 8];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| IngestError::io("file", e))?;
    let head = &head[..n];
    if n == 0 {
        return Err(IngestError::invalid("file: the upload is empty"));
    }
    if head.starts_with(crate::npy::MAGIC) {
        return Ok(Format::Npy);
    }
    if head.starts_with(crate::h5::MAGIC) {
        return Ok(Format::Hdf5);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        let f = File::open(path).map_err(|e| IngestError::io("file", e))?;
        let has_manifest = zip::ZipArchive::new(f)
            .map(|z| z.file_names().any(|n| n.is_ok_and(|n| n == MANIFEST)))
            .unwrap_or(false);
        return Ok(if has_manifest {
            Format::Zip
        } else {
            Format::Npz
        });
    }
    if head.iter().all(|b| b.is_ascii()) {
        return Ok(Format::Csv);
    }
    Err(IngestError::invalid(
        "format: cannot tell the file's format from its first bytes; set format (npy, npz, zip, hdf5, csv, nwb)",
    ))
}
