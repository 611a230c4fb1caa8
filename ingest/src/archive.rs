//! Zip archives (`.npz`, zip + CSV manifest) opened defensively: entry paths
//! must stay inside the archive, declared sizes must fit the decoded limit,
//! and reads stop at the declared size, so a zip bomb or an entry that lies
//! about its size is refused instead of filling memory or disk.

use std::collections::HashMap;
use std::io::{Read, Seek};

use crate::error::{IngestError, Result};
use crate::limits::Limits;

pub struct Archive<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    /// Entry name → (index, declared uncompressed size).
    entries: HashMap<String, (usize, u64)>,
    order: Vec<String>,
    field: String,
}

/// Whether a path is relative and never climbs out (`..`) of the archive.
pub fn is_safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.starts_with('\\')
        && !p.contains(':')
        && p.split(['/', '\\']).all(|part| part != "..")
}

impl<R: Read + Seek> Archive<R> {
    pub fn open(r: R, limits: &Limits, field: &str) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(r).map_err(|e| {
            IngestError::invalid(format!("{field}: not a readable zip archive ({e})"))
        })?;
        limits.check(
            &format!("{field}: entries"),
            zip.len() as u64,
            limits.max_archive_entries,
        )?;
        let mut entries = HashMap::new();
        let mut order = Vec::new();
        let mut total: u64 = 0;
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).map_err(|e| {
                IngestError::invalid(format!("{field}: entry {i} is unreadable ({e})"))
            })?;
            let name = f
                .name()
                .map_err(|e| {
                    IngestError::invalid(format!("{field}: entry {i} has a bad name ({e})"))
                })?
                .to_string();
            if !is_safe_path(&name) || f.enclosed_name().is_none() {
                return Err(IngestError::invalid(format!(
                    "{field}: entry {name:?} has an unsafe path (absolute or with '..')"
                )));
            }
            if f.is_dir() {
                continue;
            }
            total = total.saturating_add(f.size());
            if total > limits.max_decoded_bytes {
                return Err(IngestError::too_large(format!(
                    "{field}: entries decompress to more than the limit of {} bytes",
                    limits.max_decoded_bytes
                )));
            }
            order.push(name.clone());
            entries.insert(name, (i, f.size()));
        }
        Ok(Archive {
            zip,
            entries,
            order,
            field: field.to_string(),
        })
    }

    /// Entry names in archive order (directories left out).
    pub fn names(&self) -> &[String] {
        &self.order
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn declared_size(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|e| e.1)
    }

    /// A reader over one entry that fails once it yields more than the
    /// entry's declared size.
    pub fn open_entry(&mut self, name: &str) -> Result<impl Read + '_> {
        let (idx, size) = *self.entries.get(name).ok_or_else(|| {
            IngestError::invalid(format!("{}: has no entry {name:?}", self.field))
        })?;
        let f = self.zip.by_index(idx).map_err(|e| {
            IngestError::invalid(format!(
                "{}: entry {name:?} cannot be read ({e})",
                self.field
            ))
        })?;
        Ok(Bounded {
            inner: f,
            left: size,
            name: name.to_string(),
        })
    }

    /// A whole entry in memory (images, manifests, small arrays).
    pub fn read_entry(&mut self, name: &str) -> Result<Vec<u8>> {
        let size = self.declared_size(name).unwrap_or(0);
        let field = self.field.clone();
        let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
        self.open_entry(name)?
            .read_to_end(&mut out)
            .map_err(|e| IngestError::invalid(format!("{field}: entry {name:?}: {e}")))?;
        Ok(out)
    }
}

struct Bounded<R> {
    inner: R,
    left: u64,
    name: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One probe byte tells an honest end from an entry that lies.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "entry {:?} decompresses to more than its declared size",
                    self.name
                ))),
            };
        }
        let n = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}
