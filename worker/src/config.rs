//! Worker settings: how many jobs at once, which kinds, on which device.

/// Settings of the job-running loop.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// Jobs this process runs at once.
    #[arg(
        long = "worker-concurrency",
        env = "NEURALIGN_WORKER_CONCURRENCY",
        default_value_t = 2
    )]
    pub concurrency: usize,
    /// Compute device: `auto` (cuda:0 when present, else cpu), `cpu`, or
    /// `cuda:N` (fails at start when absent).
    #[arg(long, env = "NEURALIGN_DEVICE", default_value = "auto")]
    pub device: String,
    /// Job kinds this worker takes (comma separated).
    #[arg(
        long = "worker-kinds",
        env = "NEURALIGN_WORKER_KINDS",
        value_delimiter = ',',
        default_value = "compare,noop,score,probe_model"
    )]
    pub kinds: Vec<String>,
    /// libtorch intra-op threads for CPU compute (default: every core but
    /// one). libtorch's threads meet at barriers; when heartbeats, progress
    /// writes, Postgres and API requests need a core too, a team as wide as
    /// the machine stalls at every barrier (measured on 2 cores: ridge 4–5×
    /// slower with 2 threads than with 1).
    #[arg(long = "compute-threads", env = "NEURALIGN_COMPUTE_THREADS")]
    pub compute_threads: Option<usize>,
    /// Memory for arrays decoded lately (activations, recordings), kept
    /// across jobs by blob id, in MiB; 0 turns it off.
    #[arg(
        long = "tensor-cache-mib",
        env = "NEURALIGN_WORKER_TENSOR_CACHE_MIB",
        default_value_t = 512
    )]
    pub tensor_cache_mib: u64,
    /// Memory for ridge's decompositions of model layers' training sets,
    /// kept across jobs (a re-score, or another recording of the same
    /// stimuli, reuses them), in MiB; 0 turns it off.
    #[arg(
        long = "decomposition-cache-mib",
        env = "NEURALIGN_WORKER_DECOMPOSITION_CACHE_MIB",
        default_value_t = 256
    )]
    pub decomposition_cache_mib: u64,
    /// A name for this worker in job events; defaults to host:pid.
    #[arg(long = "worker-id", env = "NEURALIGN_WORKER_ID")]
    pub worker_id: Option<String>,
    /// On shutdown, how long a running job may take to finish before it is
    /// released back to the queue, in milliseconds.
    #[arg(
        long = "drain-ms",
        env = "NEURALIGN_DRAIN_MS",
        default_value_t = 20_000
    )]
    pub drain_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            device: "auto".into(),
            kinds: ["compare", "noop", "score", "probe_model"]
                .map(String::from)
                .to_vec(),
            compute_threads: None,
            tensor_cache_mib: 512,
            decomposition_cache_mib: 256,
            worker_id: None,
            drain_ms: 20_000,
        }
    }
}

impl WorkerConfig {
    /// Sets libtorch's CPU thread count: the configured one, else every
    /// core but `reserve`. Returns the count in use.
    pub fn apply_compute_threads(&self, reserve: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = self
            .compute_threads
            .unwrap_or(cores.saturating_sub(reserve))
            .max(1);
        tch::set_num_threads(n as i32);
        n
    }

    /// Resolves the device, failing fast when CUDA is asked for and absent.
    pub fn resolve_device(&self) -> anyhow::Result<tch::Device> {
        if self.device == "auto" {
            return Ok(tch::Device::cuda_if_available());
        }
        Ok(neuralign_engine::parse_device(&self.device)?)
    }

    pub fn worker_id(&self) -> String {
        self.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "host".into());
            format!("{}:{}", host.trim(), std::process::id())
        })
    }
}
