//! Arrays this worker decoded lately, kept in memory by blob id, so a job
//! that reads what an earlier job read (a re-score's cached activations,
//! the recording every benchmark child of one score job shares) skips the
//! Postgres read and the decode. Blobs are immutable and their ids never
//! reused, so an entry is never stale. Bounded in bytes, least recently
//! used out first.
//!
//! Entries are shared (libtorch shallow clones): callers read them and
//! never modify them in place.

use std::collections::HashMap;
use std::sync::Mutex;

use tch::Tensor;
use uuid::Uuid;

pub struct TensorCache {
    capacity: u64,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Uuid, Entry>,
    bytes: u64,
    clock: u64,
}

struct Entry {
    tensor: Tensor,
    bytes: u64,
    used: u64,
}

fn size_of(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

impl TensorCache {
    pub fn new(capacity_bytes: u64) -> TensorCache {
        TensorCache {
            capacity: capacity_bytes,
            inner: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The blob's decoded array, if it is held.
    pub fn get(&self, blob: Uuid) -> Option<Tensor> {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        e.map.get_mut(&blob).map(|entry| {
            entry.used = now;
            entry.tensor.shallow_clone()
        })
    }

    /// Keeps the blob's decoded array, evicting the least recently used
    /// ones to make room; an array larger than the whole cache is not kept.
    pub fn insert(&self, blob: Uuid, tensor: &Tensor) {
        let bytes = size_of(tensor);
        if bytes > self.capacity {
            return;
        }
        let mut e = self.lock();
        if let Some(old) = e.map.remove(&blob) {
            e.bytes -= old.bytes;
        }
        while e.bytes + bytes > self.capacity {
            let Some(oldest) = e.map.iter().min_by_key(|(_, v)| v.used).map(|(k, _)| *k) else {
                break;
            };
            let gone = e.map.remove(&oldest).expect("a key just found");
            e.bytes -= gone.bytes;
        }
        e.clock += 1;
        let used = e.clock;
        e.bytes += bytes;
        e.map.insert(
            blob,
            Entry {
                tensor: tensor.shallow_clone(),
                bytes,
                used,
            },
        );
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
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
    fn evicts_the_least_recently_used_to_stay_within_its_bytes() {
        let cache = TensorCache::new(1000);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.insert(a, &array(100));
        cache.insert(b, &array(100));
        assert!(cache.get(a).is_some(), "a is now more recent than b");
        cache.insert(c, &array(100));
        assert_eq!(cache.bytes(), 800);
        assert!(cache.get(a).is_some());
        assert!(cache.get(b).is_none(), "b was the least recently used");
        assert!(cache.get(c).is_some());
        assert_eq!(cache.bytes(), 800);
    }

    #[test]
    fn keeps_nothing_larger_than_itself_and_replaces_an_entry_in_place() {
        let cache = TensorCache::new(1000);
        let a = Uuid::new_v4();
        cache.insert(a, &array(300));
        assert!(cache.get(a).is_none(), "1,200 bytes do not fit in 1,000");
        cache.insert(a, &array(10));
        cache.insert(a, &array(20));
        assert_eq!(cache.bytes(), 80);
        assert_eq!(cache.get(a).unwrap().numel(), 20);
    }
}
