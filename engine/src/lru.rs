//! A map bounded in bytes that drops its least recently used entries to
//! make room: what the worker keeps between jobs (decoded arrays by blob
//! id, ridge's decompositions by design) lives in one of these. Values are
//! handed out through a function of a reference (a libtorch shallow clone,
//! typically), so they need not be `Clone` or `Sync`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub struct ByteLru<K, V> {
    capacity: u64,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    bytes: u64,
    clock: u64,
    hits: u64,
}

struct Entry<V> {
    value: V,
    bytes: u64,
    used: u64,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    pub fn new(capacity_bytes: u64) -> Self {
        ByteLru {
            capacity: capacity_bytes,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                bytes: 0,
                clock: 0,
                hits: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `read` of the entry under `key`, if there is one (now the most
    /// recently used).
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        let found = e.map.get_mut(key).map(|entry| {
            entry.used = now;
            read(&entry.value)
        });
        e.hits += found.is_some() as u64;
        found
    }

    /// Keeps `value` (`bytes` large) under `key`, replacing what was there
    /// and evicting the least recently used entries to make room; a value
    /// larger than the whole capacity is not kept (nor is what it replaces).
    pub fn insert(&self, key: K, value: V, bytes: u64) {
        let mut e = self.lock();
        if let Some(old) = e.map.remove(&key) {
            e.bytes -= old.bytes;
        }
        if bytes > self.capacity {
            return;
        }
        while e.bytes + bytes > self.capacity {
            let Some(oldest) = e
                .map
                .iter()
                .min_by_key(|(_, v)| v.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let gone = e.map.remove(&oldest).expect("a key just found");
            e.bytes -= gone.bytes;
        }
        e.clock += 1;
        let used = e.clock;
        e.bytes += bytes;
        e.map.insert(key, Entry { value, bytes, used });
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found their entry, since the start.
    pub fn hits(&self) -> u64 {
        self.lock().hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_to_stay_within_its_bytes() {
        let lru = ByteLru::new(1000);
        lru.insert("a", 1, 400);
        lru.insert("b", 2, 400);
        assert_eq!(
            lru.get_with("a", |v| *v),
            Some(1),
            "a is now more recent than b"
        );
        lru.insert("c", 3, 400);
        assert_eq!(lru.bytes(), 800);
        assert_eq!(lru.get_with("a", |v| *v), Some(1));
        assert_eq!(
            lru.get_with("b", |v| *v),
            None,
            "b was the least recently used"
        );
        assert_eq!(lru.get_with("c", |v| *v), Some(3));
        assert_eq!((lru.len(), lru.hits()), (2, 3));
    }

    #[test]
    fn keeps_nothing_larger_than_itself_and_replaces_an_entry_in_place() {
        let lru = ByteLru::new(1000);
        lru.insert("a", 1, 1200);
        assert!(lru.is_empty(), "1,200 bytes do not fit in 1,000");
        lru.insert("a", 2, 40);
        lru.insert("a", 3, 80);
        assert_eq!(lru.bytes(), 80);
        assert_eq!(lru.get_with("a", |v| *v), Some(3));
        lru.insert("a", 4, 2000);
        assert!(lru.is_empty(), "what a too large value replaces goes too");
    }
}
