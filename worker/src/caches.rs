//! What a worker keeps in memory between jobs, shared by its slots: decoded
//! arrays by blob id (`TensorCache`) and ridge's decompositions of model
//! layers' training sets by the contents they come from
//! (`DecompositionCache`). Both are derived from immutable inputs under
//! names that identify them, so nothing kept is ever stale, and both are
//! bounded in bytes.

use neuralign_engine::DecompositionCache;

use crate::config::WorkerConfig;
use crate::tensor_cache::TensorCache;

pub struct Caches {
    pub tensors: TensorCache,
    pub decompositions: DecompositionCache,
}

impl Caches {
    pub fn new(cfg: &WorkerConfig) -> Caches {
        Caches {
            tensors: TensorCache::new(cfg.tensor_cache_mib << 20),
            decompositions: DecompositionCache::new(cfg.decomposition_cache_mib << 20),
        }
    }
}
