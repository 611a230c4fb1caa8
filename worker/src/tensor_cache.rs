//! Arrays this worker decoded lately, kept in memory by blob id, so a job
//! that reads what an earlier job read (a re-score's cached activations,
//! the recording every benchmark child of one score job shares) skips the
//! Postgres read and the decode. Blobs are immutable and their ids never
//! reused, so an entry is never stale. Bounded in bytes, least recently
//! used out first.
//!
//! Entries are shared (libtorch shallow clones): callers read them and
//! never modify them in place.

use neuralign_engine::lru::ByteLru;
use tch::Tensor;
use uuid::Uuid;

pub struct TensorCache(ByteLru<Uuid, Tensor>);

fn size_of(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

impl TensorCache {
    pub fn new(capacity_bytes: u64) -> TensorCache {
        TensorCache(ByteLru::new(capacity_bytes))
    }

    /// The blob's decoded array, if it is held.
    pub fn get(&self, blob: Uuid) -> Option<Tensor> {
        self.0.get_with(&blob, Tensor::shallow_clone)
    }

    /// Keeps the blob's decoded array, evicting the least recently used
    /// ones to make room; an array larger than the whole cache is not kept.
    pub fn insert(&self, blob: Uuid, tensor: &Tensor) {
        self.0.insert(blob, tensor.shallow_clone(), size_of(tensor));
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.0.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn array(floats: i64) -> Tensor {
        Tensor::ones([floats], (Kind::Float, tch::Device::Cpu))
    }

    #[test]
    fn holds_arrays_by_blob_within_its_bytes() {
        let cache = TensorCache::new(1000);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, &array(100));
        cache.insert(b, &array(100));
        assert!(cache.get(a).is_some(), "a is now more recent than b");
        cache.insert(c, &array(100));
        assert_eq!(cache.bytes(), 800);
        assert!(cache.get(b).is_none(), "b was the least recently used");
        assert_eq!(cache.get(c).unwrap().numel(), 100);
        cache.insert(a, &array(300));
        assert!(cache.get(a).is_none(), "1,200 bytes do not fit in 1,000");
    }
}
