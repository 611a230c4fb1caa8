//! Size and dimension limits, checked from headers and manifests before any
//! buffer is allocated or any byte is stored.

use crate::error::{IngestError, Result};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest normalized array (and largest total decompressed size of an
    /// archive), in bytes.
    pub max_decoded_bytes: u64,
    pub max_stimuli: u64,
    pub max_neurons: u64,
    pub max_repetitions: u64,
    pub max_time_bins: u64,
    /// Largest image width or height, in pixels.
    pub max_image_side: u64,
    /// Most entries a zip archive may list.
    pub max_archive_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 8 << 30,
            max_stimuli: 1_000_000,
            max_neurons: 200_000,
            max_repetitions: 10_000,
            max_time_bins: 10_000,
            max_image_side: 4096,
            max_archive_entries: 1_000_000,
        }
    }
}

impl Limits {
    pub fn check(&self, what: &str, value: u64, max: u64) -> Result<()> {
        if value > max {
            return Err(IngestError::too_large(format!(
                "{what}: {value} exceeds the limit of {max}"
            )));
        }
        Ok(())
    }

    /// Checks the element count times the item size against the decoded
    /// limit, without overflowing on hostile shapes.
    pub fn check_bytes(&self, what: &str, shape: &[u64], item: u64) -> Result<u64> {
        let bytes = shape
            .iter()
            .try_fold(item, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| IngestError::too_large(format!("{what}: shape {shape:?} overflows")))?;
        if bytes > self.max_decoded_bytes {
            return Err(IngestError::too_large(format!(
                "{what}: shape {shape:?} needs {bytes} bytes, over the limit of {} bytes",
                self.max_decoded_bytes
            )));
        }
        Ok(bytes)
    }
}
