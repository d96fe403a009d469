//! The auth layer's cache: entries (token rows, fabric names) are trusted for `TTL`, then read
//! again, which bounds how long a revocation or a fabric's rename takes to be seen.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is trusted without reading it again.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries beyond which the cache starts over (real keys are few; this bounds a flood).
const MAX_ENTRIES: usize = 10_000;

pub struct Cache<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// The value of `key` if it was put less than `TTL` ago.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(_, at)| at.elapsed() < TTL).map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Changes a cached value in place, keeping its age.
    pub fn update<Q: Eq + Hash + ?Sized>(&self, key: &Q, change: impl FnOnce(&mut V))
    where
        K: Borrow<Q>,
    {
        if let Some((value, _)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
            change(value);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_updated_and_bounded() {
        let cache: Cache<String, u32> = Cache::default();
        assert_eq!(cache.get("a"), None);
        cache.put("a".into(), 1);
        cache.update("a", |v| *v += 1);
        assert_eq!(cache.get("a"), Some(2));
        for i in 0..MAX_ENTRIES {
            cache.put(i.to_string(), 0);
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }
}
