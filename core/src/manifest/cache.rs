//! Parsed files by content: a re-pull parses only files whose bytes changed. Bounded by the
//! source bytes it holds; when full it starts over (simple, and a fabric's files fit many times).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::manifest::{self, KindRegistry, Options, ParsedFile, SourceFile};

/// Source bytes the cache may hold parsed results for.
const BUDGET_BYTES: usize = 32 * 1024 * 1024;

/// (path, default namespace, length, hash of the bytes): what a parse result depends on.
type Key = (String, String, usize, u64);

#[derive(Default)]
pub struct ParseCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Arc<ParsedFile>>,
    bytes: usize,
}

impl ParseCache {
    /// The parse of `file`, from the cache or fresh.
    pub fn parse(&self, file: &SourceFile, registry: &KindRegistry, options: &Options) -> Arc<ParsedFile> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        file.bytes.hash(&mut hasher);
        let key = (file.path.clone(), options.default_namespace.clone(), file.bytes.len(), hasher.finish());
        if let Some(hit) = self.lock().entries.get(&key) {
            return hit.clone();
        }
        let parsed = Arc::new(manifest::parse_file(file, registry, options));
        let mut state = self.lock();
        if state.bytes + file.bytes.len() > BUDGET_BYTES {
            state.entries.clear();
            state.bytes = 0;
        }
        state.bytes += file.bytes.len();
        state.entries.insert(key, parsed.clone());
        parsed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_hit_and_changed_bytes_miss() {
        let cache = ParseCache::default();
        let registry = KindRegistry::hedgehog();
        let options = Options::default();
        let a = SourceFile {
            path: "a.yaml".into(),
            bytes: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_vec(),
        };
        let first = cache.parse(&a, registry, &options);
        assert!(Arc::ptr_eq(&first, &cache.parse(&a, registry, &options)));
        let changed =
            SourceFile { bytes: b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n".to_vec(), ..a.clone() };
        assert!(!Arc::ptr_eq(&first, &cache.parse(&changed, registry, &options)));
        let elsewhere = SourceFile { path: "b.yaml".into(), ..a };
        assert_eq!(cache.parse(&elsewhere, registry, &options).diagnostics[0].file, "b.yaml");
    }
}
