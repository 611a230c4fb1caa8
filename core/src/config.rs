//! Typed configuration shared by the server and the worker. Every field has a
//! flag and an environment variable; `validate` runs at start-up so a bad
//! value stops the process before it serves anything.

use std::time::Duration;

use crate::error::{Error, Result};

/// Queue and limit settings the service layer and workers need.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "NEURALIGN_MAX_UPLOAD_BYTES", default_value_t = 4 << 30)]
    pub max_upload_bytes: u64,
    /// Bytes per stored blob chunk row (1–8 MiB).
    #[arg(long, env = "NEURALIGN_BLOB_CHUNK_BYTES", default_value_t = 4 << 20)]
    pub blob_chunk_bytes: usize,
    /// Attempts a job gets when the request does not say.
    #[arg(long, env = "NEURALIGN_DEFAULT_MAX_ATTEMPTS", default_value_t = 3)]
    pub default_max_attempts: u32,
    /// Concurrently running jobs a new lab may have.
    #[arg(long, env = "NEURALIGN_DEFAULT_LAB_MAX_RUNNING", default_value_t = 4)]
    pub default_lab_max_running: i32,
    /// How long a claim holds a job without a heartbeat, in milliseconds.
    #[arg(long, env = "NEURALIGN_LEASE_MS", default_value_t = 60_000)]
    pub lease_ms: u64,
    /// How often a worker renews its lease, in milliseconds.
    #[arg(long, env = "NEURALIGN_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// First retry delay in milliseconds; doubles per attempt.
    #[arg(long, env = "NEURALIGN_RETRY_BASE_MS", default_value_t = 2_000)]
    pub retry_base_ms: u64,
    /// Upper bound on a retry delay, in milliseconds.
    #[arg(long, env = "NEURALIGN_RETRY_MAX_MS", default_value_t = 300_000)]
    pub retry_max_ms: u64,
    /// Largest estimated compute memory a job may need, in bytes; bigger
    /// comparisons are refused at submit (use `reduce` to fit them).
    #[arg(long, env = "NEURALIGN_MAX_COMPUTE_BYTES", default_value_t = 16 << 30)]
    pub max_compute_bytes: u64,
    /// Largest normalized stimulus set or recording (and largest total
    /// decompressed size of an uploaded archive), in bytes.
    #[arg(long, env = "NEURALIGN_MAX_DECODED_BYTES", default_value_t = 8 << 30)]
    pub max_decoded_bytes: u64,
    #[arg(long, env = "NEURALIGN_MAX_STIMULI", default_value_t = 1_000_000)]
    pub max_stimuli: u64,
    #[arg(long, env = "NEURALIGN_MAX_NEURONS", default_value_t = 200_000)]
    pub max_neurons: u64,
    #[arg(long, env = "NEURALIGN_MAX_REPETITIONS", default_value_t = 10_000)]
    pub max_repetitions: u64,
    #[arg(long, env = "NEURALIGN_MAX_TIME_BINS", default_value_t = 10_000)]
    pub max_time_bins: u64,
    /// Largest image width or height, in pixels.
    #[arg(long, env = "NEURALIGN_MAX_IMAGE_SIDE", default_value_t = 4096)]
    pub max_image_side: u64,
    /// Where uploads in other formats than `.npy` are spooled while they are
    /// read (default: the system temp dir).
    #[arg(long, env = "NEURALIGN_SPOOL_DIR")]
    pub spool_dir: Option<std::path::PathBuf>,
    /// How often the reaper re-queues expired leases and workers poll when no
    /// notification arrives, in milliseconds.
    #[arg(long, env = "NEURALIGN_POLL_MS", default_value_t = 1_000)]
    pub poll_ms: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_upload_bytes: 4 << 30,
            blob_chunk_bytes: 4 << 20,
            default_max_attempts: 3,
            default_lab_max_running: 4,
            lease_ms: 60_000,
            heartbeat_ms: 10_000,
            retry_base_ms: 2_000,
            retry_max_ms: 300_000,
            poll_ms: 1_000,
            max_compute_bytes: 16 << 30,
            max_decoded_bytes: 8 << 30,
            max_stimuli: 1_000_000,
            max_neurons: 200_000,
            max_repetitions: 10_000,
            max_time_bins: 10_000,
            max_image_side: 4096,
            spool_dir: None,
        }
    }
}

impl ServiceConfig {
    /// The readers' limits, from this configuration.
    pub fn ingest_limits(&self) -> neuralign_ingest::Limits {
        neuralign_ingest::Limits {
            max_decoded_bytes: self.max_decoded_bytes,
            max_stimuli: self.max_stimuli,
            max_neurons: self.max_neurons,
            max_repetitions: self.max_repetitions,
            max_time_bins: self.max_time_bins,
            max_image_side: self.max_image_side,
            ..neuralign_ingest::Limits::default()
        }
    }

    pub fn spool_dir(&self) -> std::path::PathBuf {
        self.spool_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    pub fn validate(&self) -> Result<()> {
        if !(1 << 20..=8 << 20).contains(&self.blob_chunk_bytes) {
            return Err(Error::invalid(format!(
                "blob_chunk_bytes must be between 1 MiB and 8 MiB, got {}",
                self.blob_chunk_bytes
            )));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 2 > self.lease_ms {
            return Err(Error::invalid(format!(
                "heartbeat_ms ({}) must be positive and at most half of lease_ms ({})",
                self.heartbeat_ms, self.lease_ms
            )));
        }
        if self.default_max_attempts == 0 || self.default_lab_max_running <= 0 {
            return Err(Error::invalid(
                "default_max_attempts and default_lab_max_running must be positive",
            ));
        }
        Ok(())
    }
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
    /// Delay before attempt `attempt + 1` after attempt `attempt` failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}
